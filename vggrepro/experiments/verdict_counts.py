"""The results page's tallies: how many of the paper's claims each scale decides, and how.

:mod:`vggrepro.experiments.results` lines every claim up across the scales; this module counts
them (per chapter and in all, after Holm's control), compares what a larger scale decides against a
smaller one, and says how many chains each undecided claim of a scale would need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import ledger
from .chains import MIN_CHAINS, ChainEffect
from .claims import DENSE_WORSE, FAILS, HOLDS, UNDECIDED, claim_ids
from .results import (
    DASH,
    NOT_RECORDED,
    VERDICTS,
    cell,
    controlled,
    gather,
    lined_up,
    profile_claims,
    recorded,
    results_root,
    saved_tables,
    tested,
)


def counts_by_scale(profile_name: str = "ci", *, runs: Path | None = None, results: Path | None = None) -> list[dict]:
    """How many of the paper's claims hold, do not hold or are undecided at every scale the page
    shows (after Holm), the page's own first: one row per scale, as :func:`summary`'s ``all`` row;
    a scale not run yet counts every claim as not run."""
    shown, _, _ = lined_up(profile_name, runs, results)
    rows = gather(profile_name, runs=runs, results=results)
    order = (profile_name, *[p for p in shown if p != profile_name])
    out = []
    for p in order:
        total = summary(rows, p)[-1]
        out.append(dict(scale=p, **{k: v for k, v in total.items() if k != "notebook"}))
    return out


def summary(rows: Sequence[dict], profile_name: str = "ci") -> list[dict]:
    """How many of the paper's claims hold, do not hold or are undecided under ``profile_name``
    (after Holm), with the fewest and most chains they rest on; and, counted apart, how many
    sanity checks (this scale's nets learn) and design facts (checked exactly) hold: one row per
    notebook and a last row ``all``. A claim without a verdict under that profile counts as not run."""
    column, chains = f"verdict ({profile_name})", f"chains ({profile_name})"
    out = []
    for notebook in [*dict.fromkeys(r["notebook"] for r in rows), "all"]:
        mine = [r for r in rows if notebook in ("all", r["notebook"])]
        claims = [r.get(column, NOT_RECORDED) for r in mine if r.get("role") == "paper"]
        counts = {v: claims.count(v) for v in VERDICTS}
        counts["not run"] = sum(v not in VERDICTS for v in claims)
        ks = [r[chains] for r in mine if r.get("role") == "paper" and isinstance(r.get(chains), int)]
        apart = {}
        for role, name in (("sanity", "sanity checks that hold"), ("design", "design facts that hold")):
            got = [r.get(column, NOT_RECORDED) for r in mine if r.get("role") == role]
            apart[name] = f"{got.count(HOLDS)} of {len(got)}"
        out.append(
            dict(
                notebook=notebook,
                **counts,
                claims=len(claims),
                chains=(f"{min(ks)}" if min(ks) == max(ks) else f"{min(ks)}-{max(ks)}") if ks else DASH,
                **apart,
            )
        )
    return out


def family_size(profile_name: str = "ci", *, runs: Path | None = None, results: Path | None = None) -> int:
    """How many of the paper's claims of a scale were tested (had an interval): Holm's family."""
    return sum(tested(r) for table in saved_tables(profile_name, runs, results).values() for r in table)


def what_scale_decides(
    larger: str, smaller: str = "ci", *, runs: Path | None = None, results: Path | None = None
) -> dict[str, list[dict]]:
    """The measured claims that two runs both made, grouped by what the ``larger`` scale adds:
    ``decided_here_only`` (a verdict at ``larger``, undecided at ``smaller``), ``lost_here`` (the
    reverse), ``agree`` and ``disagree`` (decided at both) and ``undecided_at_both``. Each row: the
    claim's id and text and both verdicts with their effects, as :func:`cell` writes them."""
    _, _, lined = lined_up(larger, runs, results)
    ids = claim_ids([nb for nb, *_ in lined])
    groups: dict[str, list[dict]] = {
        k: [] for k in ("decided_here_only", "lost_here", "agree", "disagree", "undecided_at_both")
    }
    for i, (_, text, first, per) in zip(ids, lined):
        big, small = per.get(larger), per.get(smaller)
        if first.get("role", "paper") != "paper" or first.get("kind") == "design":
            continue
        if not isinstance(big, dict) or not isinstance(small, dict):
            continue
        decided = (big["verdict"] != UNDECIDED, small["verdict"] != UNDECIDED)
        group = {
            (True, False): "decided_here_only",
            (False, True): "lost_here",
            (False, False): "undecided_at_both",
        }.get(decided, "agree" if big["verdict"] == small["verdict"] else "disagree")
        groups[group].append({"#": i, "claim": text, larger: cell(big), smaller: cell(small)})
    return groups


def distance_to_boundary(row: dict) -> float:
    """How far a claim's effect lies from the boundary its verdict must clear (points): zero for
    "lower"; the margin for "no worse"; either end of (-margin, +margin) for "about equal"."""
    d, m = row["effect"], row.get("margin") or 0.0
    if row["kind"] == "lower":
        return abs(d)
    if row["kind"] in ("no-worse", "no-better"):
        return abs(m - d)
    return abs(m - abs(d))


def chains_to_decide(row: dict) -> str:
    """What it would take to decide a measured claim at its scale, in words, if its effect stayed
    where it is: a number of chains, none (the images alone leave more than the effect's distance
    from its boundary), or unknown until the seed term is measured on three chains."""
    gap = distance_to_boundary(row)
    effect = ChainEffect(
        row["effect"], row.get("low"), row.get("high"), row["chains"], row["images"],
        row.get("chain_sd"), row["image_se"], None,
    )  # fmt: skip
    if effect.image_half_width >= gap:
        return (
            f"none: the images alone leave +/-{effect.image_half_width:.1f}, the effect is {gap:.1f} from its boundary"
        )
    if effect.chain_sd is None:
        return f"unknown until {MIN_CHAINS} chains measure the seed term"
    needed = effect.chains_needed(gap)
    return f"about {needed} chains" if needed else "more chains than a plan allows"


def plan(profile_name: str, *, runs: Path | None = None, results: Path | None = None) -> list[dict]:
    """Each of the paper's measured claims at a scale: its verdict, effect, chains, and what it
    would take to decide it (:func:`chains_to_decide`)."""
    tables = saved_tables(profile_name, runs, results)
    out = []
    for notebook, rows in tables.items():
        ids = claim_ids([notebook] * len(rows))
        for i, row in zip(ids, rows):
            if row.get("role", "paper") != "paper" or row.get("kind") == "design" or "image_se" not in row:
                continue
            out.append(
                {
                    "#": i,
                    "claim": row["claim"],
                    "verdict, alone": row["verdict"],
                    "effect": row["effect"],
                    "chains": row["chains"],
                    "to decide": chains_to_decide(row),
                }
            )
    return out


def history(profile_name: str, sizes: Sequence[int], *, results: Path | None = None) -> list[dict]:
    """How each measured claim of a scale's ledger reads as its chains accrue: one row per claim
    (sanity checks included, design facts left out), with a :func:`cell` per recorded chain alone
    (``chain <seed>``) and per pool of its first k chains by seed (``after k``, held to Holm as
    the page holds them); a size larger than the ledger gets no column."""
    chains = ledger.load(profile_name, root=results or results_root())
    if not chains:
        return []
    columns = {f"chain {c['seed']}": controlled(ledger.pool([c["claims"]])) for c in chains}
    columns |= {
        f"after {k}": controlled(ledger.pool([c["claims"] for c in chains[:k]])) for k in sizes if k <= len(chains)
    }
    rows: dict[tuple[str, str], dict] = {}
    for name, tables in columns.items():
        for notebook, table in tables.items():
            for i, row in zip(claim_ids([notebook] * len(table)), table):
                if row.get("kind") == "design":
                    continue
                line = rows.setdefault(
                    (notebook, row["claim"]), {"#": i, "claim": row["claim"]} | dict.fromkeys(columns, DASH)
                )
                line[name] = cell(row)
    return list(rows.values())


def against_the_paper(profile_name: str, *, runs: Path | None = None, results: Path | None = None) -> list[dict]:
    """The paper's claims that a scale decides against the paper (after Holm), and those it leaves
    undecided because a dense arm is shown worse than its centre crop (against Table 5's finding),
    each with the mechanism measured behind it: the ``summary`` of every record under ``results/``
    whose ``claim`` is the claim's text and whose profile is the scale's
    (``<profile>_*mechanism*.json``, written by a script that takes the claim apart on a chain's
    nets), or a plain "not measured"."""
    mechanisms: dict[str, list[str]] = {}
    for path, record in recorded(f"{profile_name}_*mechanism*.json", root=results):
        if record.get("profile") == profile_name and record.get("claim") and record.get("summary"):
            mechanisms.setdefault(record["claim"], []).append(f"{record['summary']} ({path.name})")
    out = []
    for notebook, rows in profile_claims(profile_name, runs=runs, results=results).items():
        for i, row in zip(claim_ids([notebook] * len(rows)), rows):
            stopped = row["verdict"] == UNDECIDED and row.get("reason") == DENSE_WORSE
            if row.get("role", "paper") != "paper" or not (row["verdict"] == FAILS or stopped):
                continue
            found = mechanisms.get(row["claim"])
            mechanism = " ".join(found) if found else "not measured yet: this verdict is unexplained"
            out.append({"#": i, "claim": row["claim"], profile_name: cell(row), "measured mechanism": mechanism})
    return out
