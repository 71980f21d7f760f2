"""How long does the `cpu` book take on this machine? Measure the rates, then count the book's work.

    python scripts/cpu_budget.py                 # results/cpu_budget.json

Three measurements, all at the cpu profile's crop, width, batch and threads:

1. every grid config's training img/s on random tensors (``bench.bench_one``: the SGD step alone);
2. the loader's cost per image: net A trained for two epochs on the cpu set (the second epoch's
   img/s, the steady state), less the step alone; it is the same for every net (the same images,
   crops and colour shifts), so each config's real rate is 1 / (1 / its step rate + loader s/image);
3. evaluation's forward GFLOP/s: that A evaluated on part of the cpu validation set, on crops
   (centre) and densely at Q = S (whole images, grouped by size). A is the least efficient net per
   FLOP here (the same maps, fewer layers to amortise the per-call cost), so using its rate for
   every net errs on the long side.

The book's work then comes from the grid (``budget.measured_estimate``: every net each notebook
trains first, every epoch the profile allows, the extra seeds of chapter 4's depth claim, the
localisation nets, every evaluation). The rates are per image, so the same record also gives the
minutes of other sizes (``alternatives``): the profile's sizes are chosen from it.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from vggrepro.bench import throughput as bench
from vggrepro.core.files import atomic_write_json
from vggrepro.core.profiles import get_profile
from vggrepro.core.runs import provenance
from vggrepro.data import synth
from vggrepro.evaluate.cached import ImageSet, evaluate_cached
from vggrepro.evaluate.protocols import Protocol
from vggrepro.experiments import budget, grid
from vggrepro.train.recipe import Settings, train

REPO = Path(__file__).resolve().parent.parent
#: the budget the issue sets: about two hours on a 2-core machine, unattended
TARGET_MINUTES = 120
#: Two nets at 30-60% error disagree on about a quarter of the images (an assumption; the paired
#: interval's image term is 1.96 x sqrt(discordance / images)).
DISCORDANCE = 0.25
Z95 = 1.959963984540054  # the standard normal's 97.5% point


#: (train images per class, val images per class, epochs, fine-tuning epochs) of other sizes to price
ALTERNATIVES = [(t, v, e, f) for t in (250, 300, 400) for v in (100, 120) for e, f in ((10, 3), (12, 4), (14, 4))]


def step_rates(profile, steps: int) -> dict[str, float]:
    """Training img/s of the SGD step alone, for every config the grid trains."""
    configs = sorted({e.config for e in grid.GRID.values()})
    rates = {}
    for config in configs:
        case = bench.Case(
            "train",
            config,
            size=profile.crop,
            batch=profile.batch_size,
            width=profile.width,
            crop=profile.crop,
            num_classes=profile.num_classes,
            steps=steps,
        )
        row = bench.bench_one(case, warmup=3, peak=False)
        rates[config] = row["img_per_s"]
        print(f"train step {config:6s} {row['img_per_s']:7.1f} img/s", flush=True)
    return rates


def eval_rates(profile, checkpoint: Path, images: int) -> dict[str, float]:
    """Forward GFLOP/s of a real evaluation: centre crops, and the dense net at Q = S."""
    q = profile.S(256)
    out = {}
    with tempfile.TemporaryDirectory(prefix="cpu-budget-") as tmp:
        for protocol in ("centre", "dense"):
            r = evaluate_cached(
                checkpoint, profile, Protocol(protocol, [q]), images=ImageSet(limit=images), out=Path(tmp) / protocol
            )
            flops = 2 * sum(r["macs_per_image"].values()) * r["images"]
            out[protocol] = flops / r["seconds"] / 1e9
            print(
                f"eval {protocol:6s} Q={q}: {r['images']} images in {r['seconds']:.1f} s, {out[protocol]:.2f} GFLOP/s",
                flush=True,
            )
    return out


def probe_a(profile, work: Path) -> tuple[float, Path, float]:
    """Net A trained for two epochs: its second epoch's img/s (data and steps), its checkpoint, and
    the seconds spent generating (or verifying) the cpu set first."""
    t = time.perf_counter()
    synth.ensure(profile, progress=False, log=lambda *_: None)
    data_seconds = time.perf_counter() - t
    train(profile.replace(epochs=2), Settings(config="A", scale=profile.S(256)), work / "probe", progress=False)
    epochs = [
        json.loads(line) for line in (work / "probe" / "metrics.jsonl").read_text().splitlines() if "img_per_s" in line
    ]
    return epochs[-1]["img_per_s"], work / "probe" / "checkpoint.pt", data_seconds


def interval_of(profile, k: int) -> dict:
    """The half-width of a paired claim's 95% interval at this validation set, with ``k`` seeds per
    arm, the seed spread of A as scripts/calibrate_cpu.py measured it (when it has)."""
    calibration = REPO / "results" / "cpu_calibration.json"
    # the spread at this profile's patience (2) where measured, else at the record's design
    recorded = json.loads(calibration.read_text()) if calibration.is_file() else {}
    seed_sd = recorded.get(f"seed_sd_of_A_at_patience_{profile.lr_patience}") or recorded.get("seed_sd_of_A")
    n_val = profile.num_classes * profile.synth_val_per_class
    image = Z95 * math.sqrt(DISCORDANCE / n_val) * 100
    out = dict(
        validation_images=n_val,
        assumed_discordance=DISCORDANCE,
        image_half_width=round(image, 2),
        formula="image term 1.96 x sqrt(discordance / images) x 100; seed term 1.96 x sd x sqrt(1/k_a + 1/k_b); "
        "half-width sqrt(image^2 + seed^2) (the statistics before chains: a plan, not a verdict)",
        seed_sd_of_A=seed_sd,
    )
    if seed_sd is not None:
        for seeds in sorted({1, k}):
            seed_term = Z95 * seed_sd * math.sqrt(2 / seeds)
            out[f"half_width_{seeds}_seed(s)_each"] = round(math.hypot(image, seed_term), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="timed SGD steps per config")
    ap.add_argument(
        "--images",
        type=int,
        default=None,
        help="validation images per evaluation timing (default: all, the book's path; a limit "
        "takes evaluate's per-image path, which re-fingerprints the split for every image)",
    )
    ap.add_argument("--depth-chains", type=int, default=3, help="chapter 4's depth_chains")
    ap.add_argument("--out", default=str(REPO / "results" / "cpu_budget.json"))
    ap.add_argument(
        "--interval-only",
        action="store_true",
        help="only recompute the existing record's interval (once calibrate_cpu.py has measured A's seed spread)",
    )
    args = ap.parse_args()
    profile = get_profile("cpu")
    if args.interval_only:
        record = json.loads(Path(args.out).read_text())
        record["interval"] = interval_of(profile, record.get("depth_chains", record.get("depth_seeds")))
        atomic_write_json(args.out, record)
        print(record["interval"])
        return
    torch.set_num_threads(profile.threads)
    t0 = time.perf_counter()

    steps = step_rates(profile, args.steps)
    with tempfile.TemporaryDirectory(prefix="cpu-budget-") as tmp:
        real_a, checkpoint, data_seconds = probe_a(profile, Path(tmp))
        loader_s = max(1 / real_a - 1 / steps["A"], 0.0)
        # When the real A outruns its bench step (the bench's few steps are noisier), scale every step
        # rate by that ratio: each net's real rate is then as its step rate says, relative to A's.
        scale = real_a * (1 / steps["A"] + loader_s)
        print(f"loader: {1000 * loader_s:.3f} ms per image (A trains at {real_a} img/s end to end)", flush=True)
        forward = eval_rates(profile, checkpoint, args.images)
    train_img_s = {c: round(scale / (1 / rate + loader_s), 1) for c, rate in steps.items()}
    rates = budget.Rates(train_img_s, crop_gflop_s=forward["centre"], dense_gflop_s=forward["dense"])

    rows = budget.measured_estimate(profile, rates, depth_chains=args.depth_chains)
    counted = sum(r["minutes"] for r in rows)
    data_minutes = data_seconds / 60
    for r in rows:
        print(
            f"{r['notebook']:18s} {r['nets_trained']:2d} nets  train {r['train_minutes']:6.1f}  "
            f"eval {r['eval_minutes']:5.1f}  = {r['minutes']:6.1f} min",
            flush=True,
        )
    print(f"counted: {counted:.0f} min + data {data_minutes:.1f} min; target {TARGET_MINUTES} min")

    alternatives = []
    for per_class, val, epochs, finetune in ALTERNATIVES:
        other = profile.replace(
            synth_train_per_class=per_class, synth_val_per_class=val, epochs=epochs, finetune_epochs=finetune
        )
        minutes = sum(r["minutes"] for r in budget.measured_estimate(other, rates, depth_chains=args.depth_chains))
        alternatives.append(
            dict(
                train_per_class=per_class,
                val_per_class=val,
                epochs=epochs,
                finetune_epochs=finetune,
                counted_minutes=round(minutes, 1),
            )
        )
        print(f"  {per_class} train/class, {val} val/class, {epochs}+{finetune} epochs: {minutes:.0f} min")
    k = args.depth_chains
    interval = interval_of(profile, k)
    atomic_write_json(
        args.out,
        dict(
            question="minutes of the cpu book on this machine, per notebook, from measured rates",
            target_minutes=TARGET_MINUTES,
            step_img_per_s=steps,
            loader_ms_per_image=round(1000 * loader_s, 4),
            train_img_per_s=train_img_s,
            eval_gflop_per_s={k: round(v, 3) for k, v in forward.items()},
            depth_chains=k,
            localisation_epochs=budget.LOCALISATION_EPOCHS,
            notebooks=rows,
            counted_minutes=round(counted, 1),
            data_minutes=round(data_minutes, 2),
            alternatives=alternatives,
            not_counted="notebook 01 (counts), chapter 08's features, the localisation nets' evaluation, plots, "
            "kernel starts: at ci these take about 2.4 of its 7 minutes",
            interval=interval,
            profile=profile.as_dict(),
            measure_seconds=round(time.perf_counter() - t0, 1),
            provenance=provenance("cpu"),
        ),
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
