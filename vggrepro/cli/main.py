"""The ``vggrepro`` command (also ``python -m vggrepro`` and ``torchrun ... -m vggrepro train``).
Each sub-command's flags live in a module of its own beside this one."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed

from .. import __version__
from ..core.project import pin_env_paths
from ..train import distributed
from . import bench, book, data, evaluate, fuse, train

#: sub-command -> the module that adds its parser (``register``) and sets ``func``
COMMANDS = {"data": data, "train": train, "evaluate": evaluate, "fuse": fuse, "bench": bench, "book": book}


def version() -> str:
    """The installed package's version (its metadata); the source's own where it is not installed."""
    try:
        return installed("vggrepro")
    except PackageNotFoundError:  # run from a checkout on PYTHONPATH, never pip-installed
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggrepro", description="Re-run and check the VGG paper (Simonyan & Zisserman, 2014)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.register(sub)
    return parser


def error_message(e: Exception) -> str:
    """One line for an error; an OSError as its reason and the file (a full disk, a read-only folder)."""
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e)


def main(argv: list[str] | None = None) -> int:
    pin_env_paths()  # a relative $VGGREPRO_RUNS, _DATA, ... names a folder under this one, for every process
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"vggrepro {args.command}: error: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: one line (training says where its checkpoint is), not a traceback
        print(f"vggrepro {args.command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130
    finally:
        distributed.close()  # under torchrun: leave the process group cleanly


if __name__ == "__main__":
    sys.exit(main())
