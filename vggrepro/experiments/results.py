"""The book's results page: every notebook's claims, under every profile, in one view.

Each notebook ends by saving its claims table (:func:`vggrepro.core.runs.save_claims`) in
``runs/<profile>/claims/<notebook>.json``. A run made on another machine (the ``gpu`` profile on a
GPU) is recorded by committing those files under ``results/claims_<profile>/``; the `cpu` scale
records each chain in its ledger (:mod:`vggrepro.experiments.ledger`), pooled here. This module
lines the claims up side by side; it copies no number.

Two things happen on the way, and the page says both. The paper's claims of one scale are held
together to Holm's 5% (:func:`controlled`): a chapter's verdict is its claim's alone, and one that
does not survive the control over all the scale's tested claims reads undecided here, with "Holm"
as its reason. And a table recorded before verdicts rested on chains (its rows name no chains: one
seed per arm and a borrowed seed spread) is withdrawn, not shown (:func:`withdrawn`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from ..core.files import atomic_write_json
from ..core.metrics import TOP1, TOP5
from ..core.profiles import NAMES
from ..core.runs import REPO, load_claims, provenance, read_recorded
from . import ledger
from .chains import holm
from .claims import ALPHA, FAILS, HOLDS, UNDECIDED, anchor, claim_ids, effect_of, paper_way

#: Profiles that get a column on the results page only once they have claims (a run on this machine,
#: or a table committed under results/): the `cpu` evidence scale takes two hours, and until it has
#: run, a column of "not recorded" beside `ci` says nothing. Every other profile always has one.
COLUMN_ONCE_RECORDED = ("cpu",)
VERDICTS = (HOLDS, FAILS, UNDECIDED)
#: What a cell says when a profile has no claims table for that notebook.
NOT_RECORDED = "not recorded"
#: What a cell says when the notebook's table under that profile lacks this claim.
ABSENT = "-"


def results_root() -> Path:
    """The project's ``results/`` folder: figures recorded on other machines, committed with provenance."""
    return REPO / "results"


def save_figures(profile_name: str, name: str, question: str, figures: dict, out: Path | None = None) -> Path:
    """A measured figure recorded under ``results/`` (default ``<profile>_<name>.json``): the
    question it answers, the profile, the figures and the provenance of the machine that measured
    it, written atomically."""
    out = out or results_root() / f"{profile_name}_{name}.json"
    atomic_write_json(out, {"question": question, "profile": profile_name, **figures, "provenance": provenance()})
    return out


def shown_profiles(
    page: str | None = None, *, runs: Path | None = None, results: Path | None = None
) -> tuple[str, ...]:
    """The profiles with a column on the results page, in :data:`~vggrepro.core.profiles.NAMES` order:
    the page's own, every profile not in :data:`COLUMN_ONCE_RECORDED`, and those that have claims."""

    def recorded(p: str) -> bool:
        return bool(profile_claims(p, runs=runs, results=results))

    return tuple(p for p in NAMES if p == page or p not in COLUMN_ONCE_RECORDED or recorded(p))


def recorded(pattern: str, *, root: Path | None = None) -> list[tuple[Path, dict]]:
    """Every record of ``results/`` whose path matches ``pattern`` (a glob under it, e.g.
    ``"bench_train_*.json"``, ``"released/*.json"``, ``"**/*.json"``), as (path, record), in path order."""
    return [(path, read_recorded(path)) for path in sorted((root or results_root()).glob(pattern)) if path.is_file()]


def released_evaluations(*, root: Path | None = None) -> list[dict]:
    """The evaluations of released weights recorded anywhere under ``results/`` (the ``result.json``
    of ``vggrepro evaluate --weights ... --out``, conventionally ``results/released/<name>.json``):
    one row each, with the net, protocol, Q, images, errors and device. Chapters 05 and 06 list them."""
    rows = []
    for path, r in recorded("**/*.json", root=root):
        settings = r.get("settings", {})
        if not (isinstance(settings, dict) and settings.get("kind") == "eval" and settings.get("source") == "weights"):
            continue
        rows.append(
            {
                "run": path.stem,
                "net": r.get("config"),
                "protocol": r.get("protocol"),
                "Q": ",".join(map(str, r.get("scales", []))),
                "images": r.get("images"),
                # a record keeps the spelling it was written with (evaluate wrote top1/top5 before)
                TOP1: r.get(TOP1, r.get("top1")),
                TOP5: r.get(TOP5, r.get("top5")),
                "device": r.get("provenance", {}).get("device", "-"),
            }
        )
    return rows


def read_claims(folder: Path) -> dict[str, list[dict]]:
    found = {}
    for path in sorted(folder.glob("*.json")):
        try:
            claims = read_recorded(path)["claims"]
            if not isinstance(claims, list):
                raise TypeError("'claims' is not a list")
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{path} is not a claims table written by runs.save_claims ({e}); "
                "copy it again from runs/<profile>/claims/"
            ) from None
        found[path.stem] = claims
    return found


def _before_chains(table: list[dict]) -> bool:
    """A table whose measured claims were decided before chains: one seed, a borrowed spread."""
    return any(r.get("kind") != "design" and "chains" not in r for r in table)


def saved_tables(profile_name: str, runs: Path | None, results: Path | None) -> dict[str, list[dict]]:
    """Its ledger pooled (with this machine's chain), else results/claims_<profile> and runs'."""
    local = load_claims(profile_name, root=runs)
    found = ledger.pooled(profile_name, local, root=results or results_root())
    if not found:
        found = read_claims((results or results_root()) / f"claims_{profile_name}")
        found.update(local)
    return dict(sorted(found.items()))


def withdrawn(profile_name: str, *, runs: Path | None = None, results: Path | None = None) -> list[str]:
    """The notebooks whose saved table for ``profile_name`` was decided before verdicts rested on
    chains: the page leaves them out and says so."""
    return [nb for nb, table in saved_tables(profile_name, runs, results).items() if _before_chains(table)]


def controlled(tables: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The tables of one scale with the paper's claims held together to Holm's 5%: every claim
    of role "paper" with a p-value is in the family; one whose Holm-adjusted p-value is not below
    5% reads undecided, its reason "Holm", and keeps its own verdict as ``verdict_alone``. Sanity
    checks and design facts are not in the family. New rows; the tables are not changed."""
    family = [(nb, i) for nb, rows in tables.items() for i, r in enumerate(rows) if tested(r)]
    adjusted = dict(zip(family, holm([tables[nb][i]["p"] for nb, i in family])))
    out = {}
    for nb, rows in tables.items():
        out[nb] = []
        for i, r in enumerate(rows):
            r = dict(r, verdict_alone=r["verdict"])
            if (nb, i) in adjusted:
                r["p_holm"] = adjusted[nb, i]
                if r["verdict"] != UNDECIDED and not adjusted[nb, i] < ALPHA:
                    r.update(verdict=UNDECIDED, reason="Holm")
                    r["why"] = "; ".join(x for x in (r.get("why"), f"not after Holm over {len(family)} claims") if x)
            out[nb].append(r)
    return out


def tested(row: dict) -> bool:
    return row.get("role", "paper") == "paper" and row.get("kind") != "design" and row.get("p") is not None


def profile_claims(
    profile_name: str, *, runs: Path | None = None, results: Path | None = None
) -> dict[str, list[dict]]:
    """A profile's claims tables by notebook, as the page shows them: those recorded in
    ``results/claims_<profile>/``, replaced by this machine's own ``runs/<profile>/claims/`` where
    it has made them, without the :func:`withdrawn` ones, and :func:`controlled`."""
    if profile_name not in NAMES:
        raise ValueError(f"unknown profile {profile_name!r}; choose one of {', '.join(NAMES)}")
    found = saved_tables(profile_name, runs, results)
    return controlled({nb: table for nb, table in found.items() if not _before_chains(table)})


def lined_up(profile_name: str, runs: Path | None, results: Path | None):
    """(shown profiles, judged profiles, [(notebook, claim text, first row, {profile_name: row | None | ABSENT})]):
    every claim of every notebook, matched by its text across the shown profiles (None: that profile has
    no table for the notebook; ABSENT: its table lacks the claim)."""
    if profile_name not in NAMES:
        raise ValueError(f"unknown profile {profile_name!r}; choose one of {', '.join(NAMES)}")
    shown = shown_profiles(profile_name, runs=runs, results=results)
    by_profile = {p: profile_claims(p, runs=runs, results=results) for p in shown}
    judged = tuple(p for p in shown if p == profile_name or by_profile[p])
    lined = []
    for notebook in sorted(set().union(*by_profile.values())):
        texts: dict[str, dict] = {}  # claim -> its row, first as the page's own profile says it
        for p in (profile_name, *shown):
            for c in by_profile[p].get(notebook, []):
                texts.setdefault(c["claim"], c)
        for text, first in texts.items():
            per = {}
            for p in shown:
                table = by_profile[p].get(notebook)
                per[p] = None if table is None else next((c for c in table if c["claim"] == text), ABSENT)
            lined.append((notebook, text, first, per))
    return shown, judged, lined


def gather(profile_name: str = "ci", *, runs: Path | None = None, results: Path | None = None) -> list[dict]:
    """One row per claim of every notebook, in notebook order.

    Each row has ``notebook``, ``claim``, ``paper`` (the paper's number, as the notebook states it),
    one column per profile of :func:`shown_profiles` (that run's number; :data:`NOT_RECORDED` when
    the profile has no table for the notebook) and ``verdict (<p>)`` for ``profile_name`` and for
    every other profile that has any claims. Claims are matched by their text; a claim only another
    profile has gets a row too.
    """
    shown, judged, lined = lined_up(profile_name, runs, results)
    rows = []
    for notebook, text, first, per in lined:
        row = dict(notebook=notebook, claim=text, kind=first.get("kind", "measured"), paper=first["paper"])
        row["role"] = first.get("role", "design" if row["kind"] == "design" else "paper")
        verdicts, chains = {}, {}
        for p in shown:
            match = per[p]
            row[p] = NOT_RECORDED if match is None else ABSENT if match is ABSENT else match["ours"]
            verdicts[p] = row[p] if match is None or match is ABSENT else match["verdict"]
            chains[p] = match.get("chains") if isinstance(match, dict) else None
        row.update({f"verdict ({p})": verdicts[p] for p in judged})
        row.update({f"chains ({p})": chains[p] for p in judged})
        rows.append(row)
    return rows


# -- the page's matrix: one short row per claim, one short cell per scale -------------------------

#: What the matrix and the details show where a profile has no number (not run, or no such claim).
DASH = "-"
SHORT_VERDICT = {HOLDS: "holds", FAILS: "does not hold", UNDECIDED: "undecided"}
#: An effect with its interval as vggrepro.experiments.claims writes it into a claim's "ours": "-9.7 [-16.9, -2.6]".
EFFECT = re.compile(r"[+-]?\d+(?:\.\d+)? \[(?:[+-]?\d+(?:\.\d+)?, [+-]?\d+(?:\.\d+)?|no interval: \d+ chains?)\]")


def cell(claim: dict | None | str) -> str:
    """A profile's short cell for one claim: the verdict, what it rests on or what stopped it, then
    the effect with its 95% interval: ``"holds (3 chains), -9.7 [-16.9, -2.6]"``,
    ``"undecided (1 chain), +2.0 [no interval: 1 chain]"``, ``"undecided (Holm; 3 chains), ..."``;
    ``"holds (exact)"`` for a design fact, :data:`DASH` without a row."""
    if not isinstance(claim, dict):
        return DASH
    verdict = SHORT_VERDICT.get(claim["verdict"], claim["verdict"])
    if claim.get("kind") == "design":
        return f"{verdict} (exact)"
    k = claim.get("chains")
    rests = f"{k} chain{'s' * (k != 1)}" if isinstance(k, int) else ""
    reason = claim.get("reason", "") if claim["verdict"] == UNDECIDED else ""
    if claim.get("role") == "sanity":
        reason = "; ".join(x for x in ("sanity check", reason) if x)
    detail = "; ".join(x for x in dict.fromkeys((reason, rests)) if x)
    verdict += f" ({detail})" if detail else ""
    if claim.get("kind") == "no-better" and isinstance(claim.get("effect"), (int, float)):
        # saved before such claims were kept as "no worse" with the arms swapped: turned round
        # here, so that a negative effect goes the paper's way on every row
        lo, hi = claim.get("low"), claim.get("high")
        interval = f"[{-hi:+.1f}, {-lo:+.1f}]" if lo is not None and hi is not None else ""
        return " ".join(x for x in (f"{verdict}, {-claim['effect']:+.1f}", interval) if x)
    # the effect as the chapter printed it (the saved numbers are rounded once more: 4.05 vs "+4.1")
    shown = EFFECT.search(str(claim.get("ours", "")))
    if shown:
        return f"{verdict}, {shown[0]}"
    if isinstance(claim.get("effect"), (int, float)):
        return f"{verdict}, {claim['effect']:+.1f}"
    return verdict


def matrix(profile_name: str = "ci", *, runs: Path | None = None, results: Path | None = None) -> list[dict]:
    """The results page's first table: per claim its id, ``claim`` (its whole text: a cut label
    made readers guess, and two claims that differ in their tail alike) and one :func:`cell` per
    shown profile, the page's own first. A profile without a run shows :data:`DASH`."""
    shown, _, lined = lined_up(profile_name, runs, results)
    order = (profile_name, *[p for p in shown if p != profile_name])
    ids = claim_ids([nb for nb, *_ in lined])
    return [
        {"#": i, "claim": text, **{p: cell(per[p]) for p in order}} for i, (nb, text, first, per) in zip(ids, lined)
    ]


def matrix_html(rows: Sequence[dict], css_class: str = "claims-matrix", chapters: Sequence[str] = ()) -> str:
    """The matrix as an HTML table: each cell's verdict and its effect in spans of their own, so the
    effect wraps as a whole onto a line below the verdict (custom.css) instead of breaking mid-interval.
    With ``chapters`` (the notebooks' names, ``"04_single_scale"``), each id links to its row in
    its chapter's claims table (``04_single_scale.html#claim-4-3``: :func:`~.claims.anchor`)."""
    if not rows:
        return ""
    columns = list(rows[0])
    page = {f"{int(nb[:2])}": nb for nb in chapters if nb[:2].isdigit()}

    def td(column: str, text: str) -> str:
        if column == "claim":  # a block of fixed width: a table cell ignores min-width (custom.css)
            return f'<td><span class="label">{html.escape(text)}</span></td>'
        if column == "#" and text.partition(".")[0] in page:
            href = f"{page[text.partition('.')[0]]}.html#{anchor(text)}"
            return f'<td><a href="{html.escape(href)}">{html.escape(text)}</a></td>'
        verdict, sep, effect = text.partition(", ") if column != "#" else (text, "", "")
        kind = next((k for k, v in SHORT_VERDICT.items() if verdict.startswith(v)), None)
        inner = html.escape(verdict)
        if kind:
            inner = f'<span class="verdict {kind.split()[0].replace("does", "fails")}">{inner}</span>'
        if sep:
            # "+2.0 [no interval: 1 chain]": the verdict says the chains already; the number alone
            # keeps four scales' columns beside the claims at 1280 px
            number, _, rest = effect.partition(" [no interval")
            hint = f' title="no interval{html.escape(rest.rstrip("]"))}"' if rest else ""
            inner += f'<span class="effect"{hint}> {html.escape(number)}</span>'  # the space: for copied text
        return f"<td>{inner}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(td(c, str(r[c])) for c in columns) + "</tr>" for r in rows)
    return f'<table class="{css_class} dataframe"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def details(profile_name: str = "ci", *, runs: Path | None = None, results: Path | None = None) -> list[dict]:
    """Below the matrix: per claim its id, whole text, the paper's number, each shown profile's
    numbers as its chapter states them (:data:`DASH` where that profile has none; the paper's number
    and the page's own profile's side by side, as tests/test_book.py reads them), and last which arm
    is which and which effect goes the paper's way (``"err(B/256 dense) - err(A/256 dense) < 0"``:
    :func:`~.claims.paper_way`)."""
    shown, _, lined = lined_up(profile_name, runs, results)
    ids = claim_ids([nb for nb, *_ in lined])
    return [
        {
            "#": i,
            "claim": text,
            "paper": first["paper"],
            **{p: per[p]["ours"] if isinstance(per[p], dict) else DASH for p in shown},
            "paper's way": " ".join(x for x in (effect_of(first), paper_way(first)) if x) or DASH,
        }
        for i, (nb, text, first, per) in zip(ids, lined)
    ]


#: What each short reason in a matrix cell means, one line each (the page prints those that occur).
REASONS = {
    "exact": "a design fact (weights, receptive fields, MACs), checked exactly: no interval",
    "sanity check": "a check that this scale's nets learn (they beat chance), not a claim of the paper",
    "chain": "the number of chains the claim rests on; fewer than 3 leave no measured seed term: undecided",
    "failed run": "an arm did not beat chance in some chain: a failed run decides nothing",
    "dense worse than centre crop": (
        "a dense arm was shown worse than the same net's centre crop on the same chains: this "
        "scale's artefact (chapter 5), so the comparison is left undecided"
    ),
    "margin not testable": (
        "the images alone leave an interval wider than the claim's margin: no run of this size can decide it"
    ),
    "interval spans the boundary": "the 95% interval holds both the paper's side and the other: undecided",
    "Holm": "decided in its chapter, but not after Holm's control over all the paper's claims of this scale",
}


def reasons_note(rows: Sequence[dict]) -> list[str]:
    """One line per reason that the matrix ``rows`` show in their cells (:data:`REASONS`), in the
    order of :data:`REASONS`: the matrix's footnotes, ``"*failed run*: an arm did not beat ..."``."""
    cells = " ".join(str(v) for r in rows for k, v in r.items() if k not in ("#", "claim"))
    return [f"*{k}*: {v}" for k, v in REASONS.items() if re.search(rf"[(; ]{re.escape(k)}s?[;)]", cells)]


def runs_note(
    notebooks: Sequence[str], profile_name: str = "ci", *, runs: Path | None = None, results: Path | None = None
) -> str:
    """One sentence (Markdown) saying which runs the page shows: each shown profile that has claims,
    with how many of ``notebooks`` it covers, and those with none yet (a dash in their column)."""
    shown = shown_profiles(profile_name, runs=runs, results=results)
    have, none = [], []
    for p in shown:
        found = [nb for nb in notebooks if nb in profile_claims(p, runs=runs, results=results)]
        (have if found else none).append(f"`{p}` ({len(found)} of {len(notebooks)} chapters)" if found else f"`{p}`")
    text = f"Runs shown: {', '.join(have) if have else 'none yet'}."
    if none:
        shows = "its column shows" if len(none) == 1 else "their columns show"
        text += f" Not run yet: {', '.join(none)}; {shows} a dash."
    return text


def claiming(notebooks: Sequence[str | Path]) -> list[str]:
    """The names of the chapters among ``notebooks`` (paths of the book's .ipynb files) that save
    claims: those whose source calls ``runs.save_claims``. The results page and an appendix of
    reference tables save none, so the page never waits for them."""
    sources = [next((t for t in (Path(nb).with_suffix(".py"), Path(nb)) if t.is_file()), None) for nb in notebooks]
    return [Path(nb).stem for nb, src in zip(notebooks, sources) if src and "save_claims(" in src.read_text()]


def missing(
    notebooks: Sequence[str], profile_name: str = "ci", *, runs: Path | None = None, results: Path | None = None
) -> list[str]:
    """The notebooks (names like ``05_multi_scale``) that have no claims table under ``profile_name``."""
    have = profile_claims(profile_name, runs=runs, results=results)
    return [nb for nb in notebooks if nb not in have]


def run_command(notebooks: Sequence[str], profile_name: str = "ci") -> str:
    """The command that runs some notebooks of the book, e.g. ``vggrepro book run --only 04,05``."""
    only = ",".join(nb.split("_")[0] for nb in notebooks)
    flag = "" if profile_name == "ci" else f" --profile {profile_name}"
    return f"vggrepro book run{flag} --only {only}"
