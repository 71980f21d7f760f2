"""How often a 95% interval covers a known effect: the chain interval the chapters use
(vggrepro.experiments.chains) against the interval they used before it (``old_interval`` below),
over simulated claims whose truth is known. Records results/coverage.json with provenance.

    python scripts/coverage.py [--sims 1000] [--chains 6] [--images 300]

Each simulated claim: two arms' 0/1 errors on the same images in every chain. Each image has a
difficulty drawn for the population, so the true effect (the mean over images and seeds) is known
exactly; each chain shifts each arm's error rate by a seed term (3 points, the size of the ci
profile's measured seed spread; 1.94 at the evidence scale's size), one shift for both arms where
the claim compares one net under two protocols. The old interval is given the arms' seeds, or, as
the chapters did, one seed each and a spread measured on other nets (``--borrowed-sd``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vggrepro.core.files import atomic_write_json
from vggrepro.core.runs import provenance
from vggrepro.experiments.chains import chain_effect

REPO = Path(__file__).resolve().parent.parent
DELTA = 0.05  # the true effect: 5 points of error


def simulate(rng, chains: int, images: int, chain_sd: float, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """(chains, images) 0/1 errors of arm a and arm b, with a true difference of DELTA."""
    q = rng.uniform(0.2, 0.7, images)
    shift_a = rng.normal(0, chain_sd, chains)
    shift_b = shift_a if shared else rng.normal(0, chain_sd, chains)
    p_a = np.clip(q[None, :] + DELTA + shift_a[:, None], 0, 1)
    p_b = np.clip(q[None, :] + shift_b[:, None], 0, 1)
    return (rng.random(p_a.shape) < p_a).astype(np.int64), (rng.random(p_b.shape) < p_b).astype(np.int64)


def old_interval(a: np.ndarray, b: np.ndarray, borrowed_sd: float | None = None) -> tuple[float, float]:
    """The interval the chapters used before chains: the images' paired term (here its normal
    approximation; the bootstrap it replaces agreed within tenths of a point) widened by
    1.96 sqrt(sd_a^2 / k_a + sd_b^2 / k_b), each arm's spread of error over its own seeds, or the
    borrowed spread for an arm of one seed, as if the arms were independent and the spread known."""
    k, n = a.shape
    d = 100.0 * (a.mean() - b.mean())
    image = 100.0 * (a.mean(0) - b.mean(0)).std(ddof=1) / np.sqrt(n)
    seed_var = 0.0
    for arm in (a, b):
        sd = borrowed_sd if k == 1 else max(float(np.std(100.0 * arm.mean(1), ddof=1)), borrowed_sd or 0.0)
        seed_var += sd**2 / k
    half = 1.959963984540054 * np.sqrt(image**2 + seed_var)
    return d - half, d + half


def coverage(args, chain_sd: float, shared: bool, images: int) -> dict:
    rng = np.random.default_rng(args.seed)
    hits = {"chains": [], "old_own_seeds": [], "old_one_seed_borrowed_sd": []}
    widths = {k: [] for k in hits}
    for _ in range(args.sims):
        a, b = simulate(rng, args.chains, images, chain_sd, shared)
        e = chain_effect(100.0 * (a - b))
        intervals = {
            "chains": (e.low, e.high),
            "old_own_seeds": old_interval(a, b),
            "old_one_seed_borrowed_sd": old_interval(a[:1], b[:1], args.borrowed_sd),
        }
        for name, (low, high) in intervals.items():
            hits[name].append(low <= 100 * DELTA <= high)
            widths[name].append(high - low)
    return {
        name: {"coverage": round(float(np.mean(hits[name])), 3), "mean_width": round(float(np.mean(widths[name])), 2)}
        for name in hits
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sims", type=int, default=1000)
    p.add_argument("--chains", type=int, default=6)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--borrowed-sd", type=float, default=1.94, help="the spread the cpu profile borrows (points)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", default=str(REPO / "results" / "coverage.json"))
    args = p.parse_args()
    start = time.perf_counter()
    scenarios = {
        "two nets (each seed moves each arm)": (0.03, False, args.images),
        "one net under two protocols (a seed moves both arms alike)": (0.03, True, args.images),
        "no seed spread": (0.0, False, args.images),
        "the evidence scale's sizes: two nets, 2,400 images, seed spread 1.94": (0.0194, False, 2400),
        "the evidence scale's sizes: one net, 2,400 images, seed spread 1.94": (0.0194, True, 2400),
    }
    results = {}
    for name, (chain_sd, shared, images) in scenarios.items():
        results[name] = coverage(args, chain_sd, shared, images)
        print(name, results[name], flush=True)
    record = {
        "what": "coverage of a known 5-point effect by 95% intervals (scripts/coverage.py)",
        "settings": vars(args) | {"delta_points": 100 * DELTA, "seed_term_points": 3.0},
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
        "provenance": provenance(),
    }
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
