"""How fast does a recorded chain train, against what the processor could do? Each net's achieved FLOP/s.

    python scripts/chain_rates.py --profile cpu --chain 0      # results/cpu_chain_rates-0.json

For every net of a chain in the ledger (``results/ledger/<profile>/chain-<seed>.json``): its epochs
and wall seconds (as its run recorded them: the SGD steps, the data pipeline, and a centre-crop
validation after every epoch), the images it saw, and the FLOPs it did (``budget.train_flops`` per
training image: forward 2 x MACs, backward twice that; 2 x MACs per validation image). Achieved
GFLOP/s is FLOPs over seconds; the peak is the processor's fp32 vector rate: cores x FLOP a cycle
(AVX2 with two FMA units: 2 x 8 lanes x 2 = 32) x clock. The clock is read from /proc/cpuinfo on the
machine that runs this script, so run it on the machine that ran the chain (the record says which).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from vggrepro.core.profiles import NAMES, get_profile
from vggrepro.experiments import budget, ledger
from vggrepro.experiments.results import save_figures

#: fp32 FLOP a cycle per core with AVX2 and two FMA units: 8 lanes x 2 (multiply and add) x 2 units.
AVX2_FLOP_PER_CYCLE = 32


def clock_ghz(cpuinfo: Path = Path("/proc/cpuinfo")) -> float | None:
    """The cores' reported clock in GHz (the mean over cores), or None where it is not reported."""
    if not cpuinfo.is_file():
        return None
    mhz = [float(x) for x in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo.read_text(), re.M)]
    return round(sum(mhz) / len(mhz) / 1000, 3) if mhz else None


def net_rates(chain: dict, profile, peak_gflops: float | None) -> list[dict]:
    """One row per classification net of the chain: images, seconds, achieved GFLOP/s and % of peak."""
    train_images = profile.synth_train_per_class * profile.num_classes
    rows = []
    for net in chain["nets"]:
        if not net["run"].startswith("train-") or not net.get("seconds") or not net.get("epochs"):
            continue
        config = net["config"]
        val_images = net.get("val_images") or profile.synth_val_per_class * profile.num_classes
        forward = budget.train_flops(config, profile) / 3  # a training image: forward, backward twice that
        train = budget.train_flops(config, profile, net.get("trainable") or "all")  # fc only: less backward
        flops = net["epochs"] * (train_images * train + val_images * forward)
        gflops = flops / net["seconds"] / 1e9
        rows.append(
            {
                "run": net["run"],
                "config": config,
                "epochs": net["epochs"],
                "seconds": round(net["seconds"], 1),
                "train_img_per_s": round(net["epochs"] * train_images / net["seconds"], 1),
                "achieved_gflop_per_s": round(gflops, 1),
                "percent_of_peak": None if not peak_gflops else round(100 * gflops / peak_gflops, 1),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=NAMES)
    p.add_argument("--chain", type=int, required=True, help="the chain's seed in the ledger")
    p.add_argument("--out", type=Path, default=None, help="default: results/<profile>_chain_rates-<chain>.json")
    args = p.parse_args(argv)
    chain = next((c for c in ledger.load(args.profile) if c["seed"] == args.chain), None)
    if chain is None:
        raise SystemExit(f"chain_rates: the {args.profile} ledger holds no chain {args.chain}")
    profile = get_profile(args.profile)
    ghz = clock_ghz()
    cores = profile.threads
    peak = None if ghz is None else cores * AVX2_FLOP_PER_CYCLE * ghz
    rows = net_rates(chain, profile, peak)
    figures = {
        "chain": args.chain,
        "chain_processor": chain.get("provenance", {}).get("processor"),
        "peak": {"cores": cores, "ghz": ghz, "flop_per_cycle": AVX2_FLOP_PER_CYCLE, "gflop_per_s": peak},
        "nets": rows,
    }
    question = "each net's achieved fp32 FLOP/s in a recorded chain, against the processor's peak"
    out = save_figures(args.profile, f"chain_rates-{args.chain}", question, figures, args.out)
    peak_text = "an unknown peak" if peak is None else f"{peak:.1f}"
    print(
        *(
            f"{r['run']:<40} {r['achieved_gflop_per_s']:>6} GFLOP/s, {r['percent_of_peak']}% of {peak_text}"
            for r in rows
        ),
        sep="\n",
    )
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
