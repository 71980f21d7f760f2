"""``vggrepro bench train | eval | gpu``: img/s and MFU of training or dense evaluation; the GPU check."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import models
from ..bench import gpu_check, gpu_window
from ..bench.throughput import Grid, run_grid
from ..core.devices import check_device
from ..core.files import atomic_write_json, check_writable
from ..core.project import project_root
from ..core.runs import provenance


def _variants(text: str) -> list[tuple[bool, bool, bool, bool]]:
    """ "fp32,cl,cl+tf32,cl+bf16,cl+bf16+compile" -> (channels_last, bf16, compile, tf32) tuples."""
    out = []
    for item in text.split(","):
        tags = set(item.split("+"))
        unknown = tags - {"fp32", "tf32", "cl", "bf16", "compile"}
        if unknown:
            raise ValueError(f"--variants: unknown {sorted(unknown)}; use fp32, tf32, cl, bf16, compile joined by '+'")
        out.append(("cl" in tags, "bf16" in tags, "compile" in tags, "tf32" in tags))
    return out


def _check_args(args) -> list[int]:
    """Refuse counts that would measure nothing (a zero throughput would overwrite a real figure);
    return the sizes."""
    for flag in ("steps", "batch", "crop", "num_classes", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} {value}: give a positive whole number")
    if not args.width > 0:
        raise ValueError(f"--width {args.width}: give a positive channel fraction, e.g. 0.125")
    try:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.crop]
    except ValueError:
        raise ValueError(f"--sizes {args.sizes!r}: expected whole numbers separated by commas, e.g. 256,384") from None
    if min(sizes) < 1:
        raise ValueError(f"--sizes {args.sizes}: give positive image sizes")
    return sizes


def run_from_args(args) -> int:
    if args.mode == "gpu":  # the one-command GPU check
        return gpu_check.run_from_args(args)
    if args.mode == "window":  # the check, then as much of chapter 2 as fits
        return gpu_window.run_from_args(args)
    sizes = _check_args(args)  # before anything is measured or written
    device = check_device(args.device) if args.device else ("cuda" if torch.cuda.is_available() else "cpu")
    # where the figures go, found before measuring (an installed copy may have no results/ to write)
    default = f"bench_{args.mode}_{'gpu' if device.startswith('cuda') else 'cpu'}.json"
    out = Path(args.out) if args.out else project_root() / "results" / default
    check_writable(out.parent, "pass --out a file in a writable folder")  # not after minutes of measuring
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    configs = args.configs.split(",")
    for c in configs:
        models.config_layers(c)
    rows = run_grid(
        Grid(
            args.mode,
            configs,
            sizes,
            args.batch,
            width=args.width,
            crop=args.crop,
            device=device,
            variants=_variants(args.variants),
            steps=args.steps,
            num_classes=args.num_classes,
        )
    )
    atomic_write_json(out, {"mode": args.mode, "rows": rows, "provenance": provenance(device)})
    print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="img/s and MFU of training or dense evaluation; `bench gpu`: the GPU check",
        description="Measure how fast VGG nets train (train) or evaluate densely (eval) on this device, in img/s "
        "and MFU, over the given configs, sizes and variants, and record the figures with their provenance "
        "as JSON under results/. `bench gpu` runs the one-command GPU check instead.",
    )
    p.add_argument(
        "mode",
        choices=["train", "eval", "gpu", "window"],
        help="train, eval; gpu: every figure the gpu book needs, in at most 5 minutes (vggrepro.bench.gpu_check); "
        "window: the check, then as much of the gpu book's chapter 2 as fits in 9 minutes (bench.gpu_window)",
    )
    p.add_argument("--dry-run", action="store_true", help="gpu, window: the same control flow on the CPU, tiny")
    p.add_argument(
        "--budget", type=float, default=None, help="gpu: the check's seconds in all (default 300, 5 minutes)"
    )
    p.add_argument("--configs", default="D", help="comma list of Table 1's configs, e.g. A,D,E (default D)")
    p.add_argument("--sizes", default=None, help="eval: image sizes Q (e.g. 256,384,512); train uses the crop")
    p.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--width", type=float, default=1.0, help="fraction of the paper's channels (default 1)")
    p.add_argument("--crop", type=int, default=224, help="training crop, which sets fc6's size (default 224)")
    p.add_argument("--num-classes", type=int, default=1000, help="outputs of fc8 (default 1000)")
    p.add_argument(
        "--variants",
        default="fp32,cl",
        help="comma list of fp32 | cl | cl+tf32 | cl+bf16 | cl+bf16+compile ... (fp32: TF32 off)",
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps per figure, after warm-up (default 10)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda where there is one)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--out",
        default=None,
        help="JSON file (default results/bench_<mode>_<cpu|gpu>.json; gpu: $OUT/gpu_check.json when OUT is set); "
        "window: a folder (default $OUT, else results/gpu_window)",
    )
    p.set_defaults(func=run_from_args)
