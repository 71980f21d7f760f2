"""``vggrepro evaluate``: top-1/top-5 error of one net under the protocols of section 3.2."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.devices import check_device
from ..core.metrics import TOP1, TOP5
from ..core.profiles import NAMES, get_profile
from ..core.scales import JITTER
from ..evaluate.cached import ImageSet, evaluate_cached, load_net
from ..evaluate.protocols import PROTOCOLS, Execution, Protocol
from ..evaluate.weights import PREPROCESSINGS

# -- the command line -------------------------------------------------------------------------


def parse_scales(text: str) -> list[int]:
    """``"256,384,512"`` -> ``[256, 384, 512]``, with a clear error for anything else."""
    try:
        scales = [int(s) for s in str(text).replace(" ", "").split(",") if s]
    except ValueError:
        raise ValueError(f"--scales {text!r}: expected whole numbers separated by commas, e.g. 256,384,512") from None
    if not scales:
        raise ValueError("--scales is empty: give at least one test scale Q")
    return scales


def register(subparsers) -> None:
    ci = get_profile("ci")
    p = subparsers.add_parser(
        "evaluate",
        help="top-1/top-5 error of a net with the paper's test protocols (dense, multi-crop, both)",
        description="Evaluate a checkpoint or released weights on an ILSVRC-layout val folder with the "
        "protocols of section 3.2, print top-1/top-5 error and save per-image posteriors for fusion.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a vggrepro checkpoint (.pt), e.g. runs/ci/<run>/checkpoint.pt")
    src.add_argument("--weights", help="released weights (torchvision .pth or the authors' Caffe model)")
    p.add_argument(
        "--preprocess",
        default=None,
        choices=sorted(PREPROCESSINGS),
        help="with --weights: the input the weights expect when their file does not say (a state dict not at "
        "the released width 1, crop 224); default: torchvision's for a state dict, the authors' for a Caffe model",
    )
    p.add_argument("--protocol", default="dense", help=f"one of {', '.join(PROTOCOLS)} (default dense)")
    p.add_argument(
        "--scales",
        default=None,
        help="test scales Q, comma-separated, in the net's pixels: e.g. 256,384,512 for released D; "
        f"for a ci checkpoint (crop {ci.crop}) {','.join(str(ci.S(q)) for q in (256, 384, 512))}. "
        "Default: the paper's Q=384 scaled to the net's crop",
    )
    p.add_argument("--no-flip", action="store_true", help="leave out horizontal flips (dense, multicrop)")
    p.add_argument(
        "--profile",
        default="ci",
        choices=NAMES,
        help="profile giving the data set, device and batch size, one of %(choices)s (default ci)",
    )
    p.add_argument("--data", default=None, help="data folder in the ILSVRC-2012 layout (default: the profile's)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate only N images, spread evenly over the split (every class has its share)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None, help="crops per forward pass (dense: as many pixels)")
    p.add_argument(
        "--out",
        default=None,
        help="folder for posteriors.pt and result.json (default: the cached run folder runs/<profile>/eval-<hash>/)",
    )
    p.set_defaults(func=_main)


def _main(args) -> int:
    if args.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {args.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit {args.limit}: give a positive number of images")
    if args.batch_size is not None and args.batch_size <= 0:
        raise ValueError(f"--batch-size {args.batch_size}: give a positive number of crops per forward pass")
    if args.device is not None:
        check_device(args.device)  # before the net is read or any data touched
    source = Path(args.weights or args.checkpoint)
    if not source.is_file():
        raise FileNotFoundError(f"no {'weights' if args.weights else 'checkpoint'} file at {source}")
    if args.scales is None:
        model, _ = load_net(args.checkpoint, args.weights, args.preprocess)
        scales = JITTER.Q(multi=False, crop=model.crop)  # section 4.1's one Q of a jittered net: 384, scaled
    else:
        scales = parse_scales(args.scales)
    r = evaluate_cached(
        args.checkpoint,
        get_profile(args.profile),
        Protocol(args.protocol, scales, not args.no_flip),
        weights=args.weights,
        images=ImageSet(args.split, args.limit, args.data),
        how=Execution(device=args.device, batch_size=args.batch_size, progress=True),
        out=args.out,
        preprocess=args.preprocess,
    )
    print(
        f"{r['config']} {r['protocol']} Q={','.join(map(str, r['scales']))}: "
        f"top-1 error {r[TOP1]:.2f}%, top-5 error {r[TOP5]:.2f}% on {r['images']} images"
    )
    for name, errs in r.get("part_errors", {}).items():
        print(f"  {name} alone: top-1 error {errs[TOP1]:.2f}%, top-5 error {errs[TOP5]:.2f}%")
    if "preprocess" in r:  # released weights: say what input they were given
        print(f"pre-processing: {r['preprocess']}")
    if r.get("unlabelled_images"):
        print(
            f"note: {r['unlabelled_images']} {args.split} image(s) have no label or one of no class of the set and "
            f"were left out; `vggrepro data check --root {args.data or '<data root>'}` lists them",
            file=sys.stderr,
        )
    print(f"posteriors: {r['posteriors_file']}")
    return 0
