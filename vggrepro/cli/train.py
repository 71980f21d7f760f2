"""The command line of training: ``vggrepro train ...``, ``python -m vggrepro train ...`` and
``torchrun ... -m vggrepro train ...`` take the same flags."""

from __future__ import annotations

import argparse
import ast
import sys

from .. import data, models
from ..core.profiles import NAMES, get_profile
from ..train import distributed
from ..train.recipe import Settings, train

DESCRIPTION = (
    "Train one net of Table 1 with the paper's recipe (section 3.1): SGD with momentum, weight decay, "
    "dropout on fc6/fc7, the lr divided by 10 when the val error stops falling, crops at a fixed or "
    "jittered scale S. The run folder (default runs/<profile>/<run-id>/) keeps the checkpoint, the "
    "metrics and, once finished, result.json; a finished run with the same settings is re-used."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default="ci",
        choices=NAMES,
        help="the size of the run, one of %(choices)s: data, width, crop, batch and device (default ci)",
    )
    p.add_argument("--config", required=True, help="A, A-LRN, B, C, D, E or B-5x5")
    p.add_argument(
        "--scale", default=None, help="S (e.g. 73) or Smin,Smax for jittering; default: the paper's S=256, scaled"
    )
    p.add_argument("--init", default="gaussian", help="gaussian | glorot | from-a:CKPT | checkpoint:CKPT")
    p.add_argument("--lr", type=float, default=None, help="initial lr (default: 1e-2 scaled to the batch)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="the most epochs (default: the profile's; its finetune_epochs for a checkpoint: init)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many SGD steps (default: no limit)")
    p.add_argument("--batch-size", type=int, default=None, help="images per SGD step (default: the profile's)")
    p.add_argument(
        "--width",
        type=float,
        default=None,
        help="fraction of the paper's channels, e.g. 0.125 (default: the profile's)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="train on this folder, in the ILSVRC-2012 layout, read as it is "
        "(data_kind=imagenet); default: the profile's data (ci, gpu: a generated synthetic set)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or auto")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="save a checkpoint every this many steps (default: the profile's)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the init, the batches and dropout; a run folder per seed (default: the profile's)",
    )
    p.add_argument("--dropout", type=float, default=None, help="dropout on fc6/fc7 (default: the profile's)")
    p.add_argument(
        "--trainable",
        default="all",
        choices=["all", "fc"],
        help="which layers learn: all (default), or fc (fc6-fc8 only; the convolutions frozen)",
    )
    p.add_argument("--out", default=None, help="run folder (default runs/<profile>/<run-id>)")
    p.add_argument("--resume", action="store_true", help="continue the run in the folder from its checkpoint")
    p.add_argument("--compile", action="store_true", help="torch.compile the net (faster on GPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override any profile knob, e.g. --set num_classes=10 --set crop=32",
    )


def parse_knobs(items: list[str]) -> dict:
    """``["num_classes=10", "synth_min_side=(40, 60)"]`` -> a dict of Python values."""
    knobs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KNOB=VALUE")
        try:
            knobs[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            knobs[key.strip()] = value
    return knobs


def run_from_args(args: argparse.Namespace) -> int:
    overrides = {
        k: v
        for k, v in dict(
            batch_size=args.batch_size,
            width=args.width,
            data_root=args.data,
            device=args.device,
            checkpoint_every=args.checkpoint_every,
        ).items()
        if v is not None
    }
    knobs = parse_knobs(args.set)
    if args.data is not None and knobs.get("data_root", args.data) != args.data:
        raise ValueError(f"--data {args.data} and --set data_root={knobs['data_root']}: give one of them")
    if args.data is not None and "data_kind" not in knobs:
        # --data names the set to train on: never fill it with a generated set or ignore it
        overrides["data_kind"] = "imagenet"
    overrides.update(knobs)
    profile = get_profile(args.profile, **overrides)
    scale = args.scale or profile.S(256)  # Settings parses it (TrainScale.parse)
    settings = Settings(
        config=args.config,
        scale=scale,
        init=args.init,
        lr=args.lr,
        epochs=args.epochs,
        max_steps=args.max_steps,
        dropout=args.dropout,
        seed=args.seed,
        trainable=args.trainable,
    )
    models.config_layers(args.config)  # an unknown config fails before any data is touched
    # a generated set edited by hand is no longer the set a cached run of these knobs was trained on
    data.check_synthetic(profile)
    result = train(profile, settings, args.out, resume=args.resume, compile=args.compile, progress=not args.no_progress)
    if distributed.world()[0] == 0:
        print(
            f"{result['config']} S={result['scale']} init={result['init']}: val top-1 error "
            f"{result['top1_err']:.1f}%, top-5 error {result['top5_err']:.1f}% (centre crop, "
            f"{result['val_images']} images) after {result['epochs']} epochs / {result['steps']} steps "
            f"({result['stopped']}); run folder {result['run_dir']}"
        )
        if result.get("unlabelled_val_images"):
            print(
                f"note: {result['unlabelled_val_images']} val image(s) have no label or one of no class of the set "
                f"and were left out; `vggrepro data check --root {profile.data_path}` lists them",
                file=sys.stderr,
            )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a net with the paper's recipe (section 3.1)", description=DESCRIPTION
    )
    add_arguments(p)
    p.set_defaults(func=run_from_args)
