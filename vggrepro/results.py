"""The book's results page: every notebook's claims, under every profile, in one view.

Each notebook ends by saving its claims table (:func:`vggrepro.runs.save_claims`) in
``runs/<profile>/claims/<notebook>.json``. A run made on another machine (the ``gpu`` profile on a
GPU, the ``imagenet`` profile on ILSVRC-2012) is recorded by committing those files under
``results/claims_<profile>/``. This module reads both and lines the claims up side by side; it
copies no number, so the page always says what the saved runs say.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .claims import FAILS, HOLDS, UNDECIDED
from .runs import REPO, load_claims

PROFILES = ("ci", "gpu", "imagenet")
VERDICTS = (HOLDS, FAILS, UNDECIDED)
#: What a cell says when a profile has no claims table for that notebook.
NOT_RECORDED = "not recorded"
#: What a cell says when the notebook's table under that profile lacks this claim.
ABSENT = "-"


def results_root() -> Path:
    """The project's ``results/`` folder: figures recorded on other machines, committed with provenance."""
    return REPO / "results"


def _read_recorded(folder: Path) -> dict[str, list[dict]]:
    found = {}
    for path in sorted(folder.glob("*.json")):
        try:
            found[path.stem] = json.loads(path.read_text())["claims"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a claims table written by runs.save_claims ({e}); "
                             "copy it again from runs/<profile>/claims/") from None
    return found


def profile_claims(profile: str, *, runs: Path | None = None, results: Path | None = None) -> dict[str, list[dict]]:
    """A profile's claims tables by notebook: those recorded in ``results/claims_<profile>/``,
    replaced by this machine's own ``runs/<profile>/claims/`` where it has made them."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    found = _read_recorded((results or results_root()) / f"claims_{profile}")
    found.update(load_claims(profile, root=runs))
    return dict(sorted(found.items()))


def gather(profile: str = "ci", *, runs: Path | None = None, results: Path | None = None) -> list[dict]:
    """One row per claim of every notebook, in notebook order.

    Each row has ``notebook``, ``claim``, ``paper`` (the paper's number, as the notebook states it),
    one column per profile (that run's number; :data:`NOT_RECORDED` when the profile has no table
    for the notebook) and ``verdict (<p>)`` for ``profile`` and for every other profile that has
    any claims. Claims are matched by their text; a claim only another profile has gets a row too.
    """
    by_profile = {p: profile_claims(p, runs=runs, results=results) for p in PROFILES}
    if profile not in by_profile:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    judged = [p for p in PROFILES if p == profile or by_profile[p]]
    rows = []
    for notebook in sorted(set().union(*by_profile.values())):
        texts: dict[str, dict] = {}  # claim -> its row, first as the page's own profile says it
        for p in (profile, *PROFILES):
            for c in by_profile[p].get(notebook, []):
                texts.setdefault(c["claim"], c)
        for text, first in texts.items():
            row = dict(notebook=notebook, claim=text, kind=first.get("kind", "measured"), paper=first["paper"])
            verdicts = {}
            for p in PROFILES:
                table = by_profile[p].get(notebook)
                match = next((c for c in table or [] if c["claim"] == text), None)
                row[p] = match["ours"] if match else (NOT_RECORDED if table is None else ABSENT)
                verdicts[p] = match["verdict"] if match else row[p]
            row.update({f"verdict ({p})": verdicts[p] for p in judged})
            rows.append(row)
    return rows


def summary(rows: Sequence[dict], profile: str = "ci") -> list[dict]:
    """How many measured claims hold, do not hold or are undecided under ``profile``, and how many
    design facts (checked exactly, counted apart) hold: one row per notebook and a last row ``all``.
    A claim without a verdict under that profile counts as not run."""
    column = f"verdict ({profile})"
    out = []
    for notebook in [*dict.fromkeys(r["notebook"] for r in rows), "all"]:
        mine = [r for r in rows if notebook in ("all", r["notebook"])]
        measured = [r.get(column, NOT_RECORDED) for r in mine if r.get("kind") != "design"]
        design = [r.get(column, NOT_RECORDED) for r in mine if r.get("kind") == "design"]
        counts = {v: measured.count(v) for v in VERDICTS}
        counts["not run"] = sum(v not in VERDICTS for v in measured)
        out.append(dict(notebook=notebook, **counts, claims=len(measured),
                        **{"design facts that hold": f"{design.count(HOLDS)} of {len(design)}"}))
    return out


def missing(notebooks: Sequence[str], profile: str = "ci", *, runs: Path | None = None,
            results: Path | None = None) -> list[str]:
    """The notebooks (names like ``04_dense_eval``) that have no claims table under ``profile``."""
    have = profile_claims(profile, runs=runs, results=results)
    return [nb for nb in notebooks if nb not in have]


def run_command(notebooks: Sequence[str], profile: str = "ci") -> str:
    """The command that runs some notebooks of the book, e.g. ``vggrepro book run --only 04,05``."""
    only = ",".join(nb.split("_")[0] for nb in notebooks)
    flag = "" if profile == "ci" else f" --profile {profile}"
    return f"vggrepro book run{flag} --only {only}"
