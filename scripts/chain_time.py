"""Where does a chain's time go? Each chapter's wall time split into training, evaluation and the rest.

    python scripts/chain_time.py --profile cpu --chain 0 --log chain-0.log   # results/cpu_chain_time-0.json

The log is the output of the chain's `vggrepro book run`, its first line the UTC date the run began
(`date -u +%FT%TZ > chain.log` before it, as the README's recipe does). The chapters ran one after
another, so the log gives each chapter's window; every training and evaluation run in
``runs/<profile>/`` that finished inside a window is that chapter's, and its own recorded seconds
are its cost. What is left of a chapter's time is the rest: the kernel's start and imports, data
loading outside the runs, features and SVMs (chapter 8), plots and tables. Runs that finished
before the chain began (trained for an earlier chain or a calibration, and reused) are counted
apart: they cost this chain nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from vggrepro.book.runner import notebook_seconds
from vggrepro.core.profiles import NAMES
from vggrepro.core.runs import read_recorded, runs_root
from vggrepro.experiments.results import save_figures


def started(log: Path) -> dt.datetime:
    """The date on the log's first line."""
    first = log.read_text(errors="replace").splitlines()[0].strip()
    try:
        return dt.datetime.fromisoformat(first.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"chain_time: {log}'s first line is {first!r}, not the date the run began") from None


def runs_by_kind(profile_runs: Path) -> list[dict]:
    """Every finished training, box regressor and evaluation run: its kind, when it ended, its seconds."""
    rows = []
    for path in sorted(profile_runs.glob("*/result.json")):
        kind = path.parent.name.split("-")[0]
        if kind not in ("train", "loc", "eval"):
            continue
        r = read_recorded(path)
        date = r.get("provenance", {}).get("date")
        seconds = r.get("seconds", r.get("wall_s"))
        if date and seconds is not None:
            rows.append({"run": path.parent.name, "kind": kind, "ended": dt.datetime.fromisoformat(date), "s": seconds})
    return rows


def split(begin: dt.datetime, seconds: dict[str, float], runs: list[dict]) -> dict:
    """Each chapter's seconds split into training (nets and box regressors), evaluation and the rest."""
    chapters, t = [], begin
    for notebook, wall in seconds.items():
        end = t + dt.timedelta(seconds=wall)
        mine = [r for r in runs if t <= r["ended"] <= end + dt.timedelta(seconds=1)]
        train = sum(r["s"] for r in mine if r["kind"] in ("train", "loc"))
        evaluate = sum(r["s"] for r in mine if r["kind"] == "eval")
        chapters.append(
            {
                "notebook": notebook,
                "seconds": round(wall, 1),
                "training": round(train, 1),
                "evaluation": round(evaluate, 1),
                "rest": round(wall - train - evaluate, 1),
                "runs": len(mine),
            }
        )
        t = end
    before = [r for r in runs if r["ended"] < begin]
    return {
        "chapters": chapters,
        "total": {k: round(sum(c[k] for c in chapters), 1) for k in ("seconds", "training", "evaluation", "rest")},
        "reused": {"runs": len(before), "their_seconds": round(sum(r["s"] for r in before), 1)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=NAMES)
    p.add_argument("--chain", type=int, required=True, help="the chain's seed (first_chain)")
    p.add_argument("--log", type=Path, required=True, help="the chain's book run output, its first line a date")
    p.add_argument("--out", type=Path, default=None, help="default: results/<profile>_chain_time-<chain>.json")
    args = p.parse_args(argv)
    begin = started(args.log)
    found = split(begin, notebook_seconds(args.log), runs_by_kind(runs_root() / args.profile))
    question = "where a chain's wall time goes: training, evaluation, and the rest, chapter by chapter"
    figures = {"chain": args.chain, "began": begin.isoformat(), **found}
    out = save_figures(args.profile, f"chain_time-{args.chain}", question, figures, args.out)
    for c in found["chapters"]:
        print(
            f"{c['notebook']:<20} {c['seconds']:>8} s: training {c['training']}, evaluation {c['evaluation']}, "
            f"rest {c['rest']}"
        )
    print(f"total {found['total']}; reused from before the chain: {found['reused']} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
