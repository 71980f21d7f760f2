"""``vggrepro data synth | check``: make the synthetic sets; check a folder in the ILSVRC-2012 layout."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from .. import data
from ..core.profiles import SYNTHETIC
from ..data import synth
from ..data.ilsvrc import ILSVRC, IMAGE_SUFFIXES, IMAGENET_CLASSES, LAYOUTS, check_imagenet_counts
from ..data.images import CorruptImage, decode_image

# -- the command line: vggrepro data synth | check ---------------------------------------------------


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="make the synthetic data sets; check a data folder",
        description="Make the synthetic sets, or check a folder in the ILSVRC-2012 layout.",
    )
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    s = sub.add_parser(
        "synth",
        help="generate (or find and verify) a profile's synthetic set",
        description="Generate a profile's synthetic set in the ILSVRC-2012 layout, deterministically "
        "from its seed; when it exists already, verify it against its manifest instead.",
    )
    s.add_argument(
        "--profile",
        default="ci",
        choices=SYNTHETIC,
        help="the profile whose set to make, one of %(choices)s (default ci)",
    )
    s.add_argument("--out", default=None, help="where to write it (default: the profile's data_root)")
    s.add_argument("--seed", type=int, default=None, help="generator seed (default: the profile's)")
    s.set_defaults(func=_cmd_synth)
    c = sub.add_parser(
        "check",
        help="count images, classes and skipped files of a data folder (exit status 1 when it finds problems)",
        description="Check a data folder in the ILSVRC-2012 layout: count the images, classes and "
        "boxes of each split, list what training or evaluation would skip, and verify a "
        "synthetic set against its manifest. Exit status 1 when it finds problems.",
    )
    c.add_argument("--root", required=True, help="the data root (ILSVRC-2012 layout)")
    c.add_argument("--decode", action="store_true", help="also decode every image and list those that fail")
    c.set_defaults(func=_cmd_check)


def _cmd_synth(args) -> int:
    data.ensure_synthetic(args.profile, out=args.out, seed=args.seed, verbose=True)
    return 0


def _cmd_check(args) -> int:
    root = Path(os.path.expanduser(args.root))
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} not found. {LAYOUTS}")
    problems = 0  # what training or evaluation would refuse or leave out; stray non-image files are not
    if (root / "manifest.json").is_file():
        try:
            manifest = synth.verify(root)
            print(
                f"{root}: synthetic set, {len(manifest['files'])} files match manifest.json (digest "
                f"{manifest['digest'][:12]})"
            )
        except ValueError as e:
            print(e)
            problems += 1
    for split in ("train", "val"):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = ILSVRC(root, split)
        except (FileNotFoundError, ValueError) as e:
            print(f"{split}: {e}")
            problems += 1
            continue
        for w in caught:  # e.g. class folders without images
            print(f"{split}: {w.message}")
            problems += 1
        unused = [p for p in ds.skipped if p.suffix.lower() in IMAGE_SUFFIXES]
        if unused:
            print(f"{split}: {len(unused)} image(s) without a label or of an unknown class, e.g. {unused[0]}")
            problems += 1
        with_boxes = sum(1 for s in ds.samples if s.boxes)
        print(
            f"{split}: {len(ds.samples):,} images, {len(ds.classes)} classes, {with_boxes:,} with boxes, "
            f"{len(ds.skipped)} files skipped"
        )
        names = [f"{w} ({ds.names[w]})" if w in ds.names else w for w in ds.classes[:3]]
        print(f"  classes: {', '.join(names)}{' ...' if len(ds.classes) > 3 else ''}")
        for path in ds.skipped[:5]:
            print(f"  skipped: {path}")
        if len(ds.classes) == IMAGENET_CLASSES:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ok = check_imagenet_counts(ds)
            print(f"  ILSVRC-2012 counts: {'as expected' if ok else caught[-1].message}")
        if args.decode:
            bad = []
            for s in ds.samples:
                try:
                    decode_image(s.path)
                except CorruptImage:
                    bad.append(s.path)
            print(f"  decoded: {len(ds.samples) - len(bad):,} ok, {len(bad)} corrupt")
            for path in bad[:20]:
                print(f"  corrupt: {path}")
            problems += bool(bad)
    if problems:
        print(f"vggrepro data check: {root}: found {problems} problem(s), listed above", file=sys.stderr)
        return 1
    return 0
