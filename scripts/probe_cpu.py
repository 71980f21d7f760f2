"""A profile's nets trained as the book trains them, measured alike: learning curves, and every net at the same Q.

    python scripts/probe_cpu.py [--profile cpu] [--nets A/256,D/256,E/256,D/384,D/jit] [--seed 0]

Trains (or re-uses from ``runs/<profile>/``) the grid nets named, then records in
``results/<profile>_calibration.json`` (the design as the profile has it; the first `cpu` design's
probe is ``results/cpu_probe.json``), with provenance:

- each net's learning curve: the validation top-1 error (centre crop at Q = its own S, the
  trainer's check) and the mean training loss, epoch by epoch, and where the lr was cut;
- every net evaluated under the same protocols at every fixed test scale of the nets named
  (centre crop and dense, at Q = S for S = 256 and S = 384 in the profile's pixels): a net
  fine-tuned at S = 384 that looks worse than its source on "its own validation crops" may only be
  measured at a harder Q; the cross table sets both nets on the same Q.

Every figure comes from the run cache's records and fresh evaluations; nothing is typed in.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from vggrepro.cli.train import parse_knobs
from vggrepro.core.files import atomic_write_json
from vggrepro.core.profiles import get_profile
from vggrepro.core.runs import provenance, read_metrics
from vggrepro.experiments import grid

REPO = Path(__file__).resolve().parent.parent


def curve(profile, name: str, seed: int | None) -> list[dict]:
    """Per epoch: validation top-1 error, the lr, and the mean of the logged training losses."""
    records = read_metrics(grid.run_of(profile, name, seed).metrics_path)
    losses: dict[int, list[float]] = {}
    for r in records:
        if "loss" in r:
            losses.setdefault(int(r["epoch"]), []).append(float(r["loss"]))
    return [
        dict(
            epoch=int(r["epoch"]),
            top1_err=round(float(r["top1_err"]), 2),
            lr=r["lr"],
            train_loss=round(statistics.fmean(losses.get(int(r["epoch"]) - 1, [float("nan")])), 4),
        )
        for r in records
        if "top1_err" in r
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--nets", default="A/256,D/256,E/256,D/384,D/jit")
    p.add_argument("--seed", type=int, default=None, help="a chain's training seed (default: the profile's)")
    p.add_argument("--out", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="a profile knob, as a literal")
    args = p.parse_args()
    profile = get_profile(args.profile, **parse_knobs(args.set))
    names = [n.strip() for n in args.nets.split(",") if n.strip()]
    out = args.out or str(REPO / "results" / f"{profile.name}_calibration.json")
    start = time.perf_counter()
    record: dict = {
        "what": __doc__.splitlines()[0],
        "profile": profile.name,
        "knobs_set": parse_knobs(args.set),
        "seed": args.seed,
        "nets": {},
    }
    fixed_Q = sorted({grid.scale_of(profile, s) for s in ("256", "384")})
    for name in names:
        result = grid.get(profile, name, seed=args.seed, progress=False)
        entry = {
            "train_S": grid.entry(name).train_S,
            "top1_err_at_own_check": round(float(result["top1_err"]), 2),
            "epochs": result["epochs"],
            "lr_cuts": result.get("lr_cuts"),
            "stopped": result.get("stopped"),
            "seconds": result.get("seconds"),
            "curve": curve(profile, name, args.seed),
            "at_Q": {},
        }
        for Q in fixed_Q:
            for protocol in ("centre", "dense"):
                r = grid.evaluation(profile, name, protocol, Q=Q, seed=args.seed)
                entry["at_Q"][f"{protocol} Q={Q}"] = round(float(r["top1_err"]), 2)
        record["nets"][name] = entry
        print(name, entry["top1_err_at_own_check"], entry["epochs"], entry["stopped"], entry["at_Q"], flush=True)
        # after every net: a probe stopped part way keeps what it measured
        record["seconds"] = round(time.perf_counter() - start, 1)
        record["provenance"] = provenance()
        atomic_write_json(out, record)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
