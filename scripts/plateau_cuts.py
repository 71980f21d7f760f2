"""Did the plateau rule cut each net's lr at a plateau, or at a blip while its error was still falling?

    python scripts/plateau_cuts.py --profile cpu --chain 2    # results/cpu_plateau_cuts-2.json

For every classification net of one chain whose run is in ``runs/<profile>/`` (its validation curve,
``metrics.jsonl``, and its result): the epoch at which the rule first cut its lr, the best error
before it and the error at it, the error's trend before it (the least-squares slope over the last
``--window`` epochs, in points an epoch: negative, still falling), the net's epochs and final error.
The package's own rule (:class:`vggrepro.train.loop.PlateauSchedule`) is replayed on each curve and
must cut where the run did: the record reads the rule, not a guess at it. It trains nothing.

Only the rule as run can be replayed: after the first cut the curve is the cut run's, so what a
longer patience would have done is not in it (it would make a design of its own, whose chains never
pool with these).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vggrepro.core.profiles import get_profile
from vggrepro.core.runs import read_metrics
from vggrepro.experiments import grid
from vggrepro.experiments.results import save_figures
from vggrepro.train.loop import PlateauSchedule

#: A trend below this (points of error an epoch) before a cut: the error was still falling. An
#: epoch's validation error on 2,400 images moves by 1-5 points at the high lr, so a net improving
#: half a point an epoch can miss its best three epochs running and be cut.
STILL_FALLING = -0.5


def curve(metrics: Path) -> list[tuple[int, float, float]]:
    """(epoch, top-1 error %, lr after that epoch's step) of each validated epoch."""
    return [(r["epoch"], r["top1_err"], r["lr"]) for r in read_metrics(metrics) if "top1_err" in r]


def first_cut(points: list[tuple[int, float, float]], lr: float, patience: int, hold: int) -> int | None:
    """The epoch after whose validation the rule at ``patience`` first cuts ``lr`` on this curve."""
    rule = PlateauSchedule(lr, patience, hold=hold)
    for epoch, err, _ in points:
        rule.step(100.0 - err)
        if rule.lr < lr:
            return epoch
    return None


def net_cuts(points, lr: float, patience: int, hold: int, window: int) -> dict | None:
    """One net's recorded first cut, the trend before it, and the rule replayed (None: never cut)."""
    cut = next((e for e, _, after in points if after < lr), None)
    if cut is None:
        return None
    before = [x for x in points if x[0] <= cut]
    last = before[-window:]
    slope = np.polyfit([x[0] for x in last], [x[1] for x in last], 1)[0] if len(last) > 2 else None
    return {
        "first_cut_epoch": cut,
        "best_error_before": round(min(x[1] for x in before), 2),
        "error_at_cut": round(before[-1][1], 2),
        f"trend_last_{window}_epochs": None if slope is None else round(float(slope), 2),
        "replayed_first_cut": first_cut(before, lr, patience, hold),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=("ci", "cpu", "gpu"))
    p.add_argument("--chain", type=int, required=True, help="the chain's training seed; its runs must be in runs/")
    p.add_argument("--window", type=int, default=6, help="epochs before the cut over which the trend is fitted")
    p.add_argument("--out", type=Path, default=None, help="default: results/<profile>_plateau_cuts-<K>.json")
    args = p.parse_args(argv)
    prof = get_profile(args.profile)
    nets, missing = {}, []
    for name, entry in grid.GRID.items():
        run = grid.run_of(prof, name, args.chain)
        if entry.finetune:
            continue  # fine-tunes run 10 epochs at lr / 10 and were never cut
        if not run.metrics_path.is_file():
            missing.append(name)
            continue
        found = net_cuts(curve(run.metrics_path), prof.lr, prof.lr_patience, prof.lr_hold_epochs, args.window)
        result = json.loads(run.result_path.read_text()) if run.result_path.is_file() else {}
        nets[name] = (found or {"first_cut_epoch": None}) | {
            "epochs": result.get("epochs"),
            "lr_cuts": result.get("lr_cuts"),
            "final_error": None if result.get("top1_err") is None else round(result["top1_err"], 2),
        }
    if not nets:
        raise SystemExit(f"plateau_cuts: no net of chain {args.chain} is in runs/{prof.name}/; run the chain first")
    replay_ok = all(
        n["first_cut_epoch"] is None or n["replayed_first_cut"] == n["first_cut_epoch"] for n in nets.values()
    )
    if not replay_ok:
        raise SystemExit("plateau_cuts: replaying the profile's own patience does not give the recorded cuts")
    trend = f"trend_last_{args.window}_epochs"
    figures = {
        "chain": args.chain,
        "patience": prof.lr_patience,
        "hold": prof.lr_hold_epochs,
        "nets": nets,
        "missing": missing,
        "cut_while_falling": sorted(n for n, x in nets.items() if (x.get(trend) or 0) < STILL_FALLING),
    }
    out = args.out or Path("results") / f"{prof.name}_plateau_cuts-{args.chain}.json"
    question = "Did the plateau rule cut each net's lr at a plateau, or at a blip while its error was still falling?"
    print(save_figures(prof.name, out.stem, question, figures, out=out))
    for name, n in nets.items():
        print(f"{name:14s} {n}")
    print("first cut while the error still fell by more than half a point an epoch:", figures["cut_while_falling"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
