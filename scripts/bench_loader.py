"""Measure the training loader's images per second and record them with their provenance.

    python scripts/bench_loader.py                      # CPU, the ci set: results/loader_cpu_ci.json
    python scripts/bench_loader.py --profile gpu --device cuda   # GPU decode at 224: loader_gpu_224.json
    python scripts/bench_loader.py --profile gpu --set num_classes=4 --set synth_train_per_class=64 \
        --set data_root=/tmp/synth-224 --set batch_size=32 --batches 6  # CPU at 224 on a small set: loader_cpu_224.json
    python scripts/bench_loader.py --profile gpu --compare-batched --threads 2 --set ...  # the same set: per-image
        # crops against the one-pass device path (device_batch), both on the CPU: loader_batched_cpu_224.json

Each case draws ``--batches`` batches of the first epoch after one warm-up batch (and, at a fixed S
on the tensor path, of the second epoch, which re-uses the images rescaled to S) and reports
wall-clock img/s and CPU-seconds per 1,000 images (steadier than wall time on a shared machine).
The training step it must keep up with runs at ~2,000 img/s for a width/8 net at 64 px on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from vggrepro import data
from vggrepro.core import profiles
from vggrepro.core.files import atomic_write_json
from vggrepro.core.runs import provenance

REPO = Path(__file__).resolve().parent.parent


def measure(loader: data.TrainLoader, batches: int, device: torch.device, epoch: int = 0) -> dict:
    it = loader.batches(epoch)
    next(it)  # warm-up: workers start, kernels load
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu, images = time.perf_counter(), time.process_time(), 0
    for _, (_x, y) in zip(range(batches), it):
        images += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return dict(
        images=images,
        seconds=round(wall, 3),
        images_per_second=round(images / wall, 1),
        cpu_seconds_per_1000_images=round(1000 * cpu / images, 3),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="ci", choices=["ci", "gpu"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the profile's)")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override a profile knob, e.g. a smaller synthetic set: --set synth_train_per_class=64",
    )
    ap.add_argument("--out", default=None, help="the JSON to write (default: results/loader_<cpu|gpu>_<size>.json)")
    ap.add_argument(
        "--compare-batched",
        action="store_true",
        help="the tensor path only, its per-image crops against the one-pass crops (batched_crops)",
    )
    args = ap.parse_args()

    from vggrepro.cli.train import parse_knobs

    profile = profiles.get_profile(args.profile, **parse_knobs(args.set))
    workers = min(profile.workers, len(os.sched_getaffinity(0))) or 2  # as training caps them
    torch.set_num_threads(args.threads or profile.threads)
    device = torch.device(args.device)
    root = data.ensure_synthetic(profile)
    train = data.ILSVRC(root, "train")
    stats = data.dataset_stats(root)
    S, jitter = profile.S(256), profile.jitter
    batched = device.type != "cpu"  # the loader's default
    cases = [("tensor", S, 0, batched), ("tensor", jitter, 0, batched)]
    if args.compare_batched:
        cases = [("tensor", scale, 0, b) for scale in (S, jitter) for b in (False, True)]
    elif device.type == "cpu":
        cases += [("pil", S, 0, False), ("pil", S, workers, False), ("pil", jitter, workers, False)]
    results = []
    for backend, scale, workers, batched in cases:
        start = time.perf_counter()
        loader = data.TrainLoader(
            train,
            data.Augmentation(profile.crop, scale, stats.preprocess(), stats),
            data.Batching(profile.batch_size, seed=0),
            data.Engine(args.device, backend, workers, batched_crops=batched, progress=False),
        )
        setup = time.perf_counter() - start
        row = dict(
            backend=backend,
            crops="one pass" if batched else "per image",
            scale=scale,
            workers=workers,
            batch_size=profile.batch_size,
            crop=profile.crop,
            setup_seconds=round(setup, 2),
            **measure(loader, args.batches, device),
        )
        if backend == "tensor" and device.type == "cuda":
            row["gpu_jpeg_decode"] = loader._jpegs is not None
        rows = [row]
        if backend == "tensor" and isinstance(scale, int) and not batched:  # later epochs re-use the rescaled images
            for _ in loader.batches(0):
                pass
            rows.append(dict(row, epoch=2, **measure(loader, args.batches, device, epoch=1)))
        for row in rows:
            results.append(row)
            print(
                f"{backend:6} {row['crops']:9} S={str(scale):10} workers={workers} epoch {row.get('epoch', 1)}: "
                f"{row['images_per_second']:8.1f} img/s ({row['cpu_seconds_per_1000_images']:.2f} CPU-s per "
                f"1000 images; setup {setup:.1f} s)"
            )
    kind = "gpu" if device.type == "cuda" else "cpu"
    size = profile.name if profile.name == "ci" else profile.crop
    name = f"loader_{'batched_' * args.compare_batched}{kind}_{size}.json"
    out = Path(args.out) if args.out else REPO / "results" / name
    record = dict(
        what="TrainLoader throughput (vggrepro.data), one epoch's first batches after a warm-up; "
        "CPU seconds count the main process only, not DataLoader workers",
        profile=profile.name,
        overrides=args.set,
        data=str(root.relative_to(REPO) if root.is_relative_to(REPO) else root),
        threads=torch.get_num_threads(),
        load_average=[round(v, 2) for v in os.getloadavg()],
        results=results,
        provenance=provenance(args.device),
    )
    if args.compare_batched:
        record["note"] = (
            "'one pass' is vggrepro.data.device_batch (TrainLoader, Engine(batched_crops=True)), the path"
            " a GPU takes, here run on the CPU to compare with the per-image path that the CPU takes. It "
            "is expected to be slower on a CPU: each crop is two dense float32 matrix products over the "
            "image window it reads, where the CPU's uint8 resize kernel reads a few taps per pixel. On a "
            "GPU those products are milliseconds per batch and replace a resize and its Python per image;"
            " no GPU figure is recorded here."
        )
    atomic_write_json(out, record)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
