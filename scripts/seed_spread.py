"""How far apart do two trainings of the same net land? Train grid entries with several seeds.

    python scripts/seed_spread.py                       # ci: A/256 and D/256, seeds 0-4
    python scripts/seed_spread.py --profile ci --seeds 0,1,2,3,4,5,6,7 --entries A/256,D/256

One training's error is one draw from the spread of all trainings with other seeds. This script
measures that spread of a net's error *level*: each entry trained with each seed (each seed a whole
chain, D starting from A of the same seed), evaluated on the same validation images (centre crop
at Q = S), and records every error and the spread in ``results/seed_spread_<profile>.json`` with
provenance. It is for planning only (how many chains a scale needs): no verdict reads it. A
claim's seed term is measured on the claim's own chains (``vggrepro.experiments.chains``), where
the spread of a *difference* between two arms of the same chains is what counts, and for one net
under two protocols it is far smaller than this spread of levels. Finished runs are re-used from
``runs/<profile>/``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from vggrepro.core.files import atomic_write_json
from vggrepro.core.profiles import get_profile
from vggrepro.core.runs import REPO, provenance
from vggrepro.evaluate.cached import evaluate_cached
from vggrepro.evaluate.protocols import Protocol
from vggrepro.experiments import grid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="ci")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (at least 2)")
    p.add_argument("--entries", default="A/256,D/256", help="grid entries, comma-separated")
    args = p.parse_args(argv)
    prof = get_profile(args.profile)
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(set(seeds)) < 2:
        raise SystemExit("seed_spread: give at least two different seeds (--seeds 0,1,2)")
    t0 = time.perf_counter()
    entries = {}
    for name in args.entries.split(","):
        Q = grid.test_scales_of(prof, grid.entry(name).train_S, multi=False)
        errors = []
        for seed in seeds:
            r = evaluate_cached(grid.checkpoint(prof, name, seed=seed), prof, Protocol("centre", Q))
            errors.append(round(r["top1_err"], 4))
            print(f"{name} seed {seed}: top-1 error {r['top1_err']:.1f}% (centre crop, Q = {Q[0]})", flush=True)
        entries[name] = dict(
            top1_err_by_seed=dict(zip(map(str, seeds), errors)),
            sd=round(statistics.stdev(errors), 4),
            protocol="centre",
            Q=Q,
        )
        print(f"{name}: seed-to-seed sd {entries[name]['sd']:.2f} points over {len(seeds)} seeds", flush=True)
    record = dict(
        profile=prof.name,
        seeds=seeds,
        entries=entries,
        seed_sd=max(e["sd"] for e in entries.values()),
        command=" ".join(["python scripts/seed_spread.py", *(sys.argv[1:] if argv is None else argv)]),
        seconds=round(time.perf_counter() - t0, 1),
        provenance=provenance(prof.resolved_device()),
    )
    path = REPO / "results" / f"seed_spread_{prof.name}.json"
    atomic_write_json(path, record)
    print(f"seed_sd = {record['seed_sd']:.2f} points -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
