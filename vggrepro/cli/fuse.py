"""``vggrepro fuse``: fuse saved evaluations of several nets (section 4.4)."""

from __future__ import annotations

import json

from ..core.metrics import TOP1, TOP5
from ..evaluate.fuse import fuse_saved


def register(subparsers) -> None:
    """Add ``vggrepro fuse``."""
    p = subparsers.add_parser(
        "fuse",
        help="fuse saved evaluations of several nets (section 4.4)",
        description="Average the soft-max posteriors of several saved evaluations "
        "(vggrepro evaluate --out) and print each net's and the fusion's errors.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="EVALUATION",
        help="an evaluation folder (vggrepro evaluate --out) or its posteriors.pt",
    )
    p.add_argument(
        "--protocol",
        default="both",
        choices=["centre", "dense", "multicrop", "both"],
        help="which posteriors of each evaluation to fuse (default: both)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    p.set_defaults(func=_cmd_fuse)


def _cmd_fuse(args) -> int:
    each = {str(p): fuse_saved([p], args.protocol) for p in args.paths}
    fused = fuse_saved(args.paths, args.protocol)
    if args.json:
        print(json.dumps(dict(protocol=args.protocol, nets=each, fused=fused)))
        return 0
    for name, errs in [*each.items(), (f"fused ({len(args.paths)} nets)", fused)]:
        print(f"{name}: top-1 {errs[TOP1]:.1f}%, top-5 {errs[TOP5]:.1f}% ({args.protocol})")
    return 0
