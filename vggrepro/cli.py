"""The ``vggrepro`` command. Each sub-command lives beside the code it drives: a module that
offers one defines ``register(subparsers)``, which adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

#: sub-command -> module that registers it
COMMANDS = {"data": "data", "train": "train", "evaluate": "evaluate", "fuse": "fuse", "bench": "bench",
            "book": "book_cli"}


class UserError(Exception):
    """A mistake in the input: printed as one clear line, without a traceback."""


def version() -> str:
    """The installed package's version (its metadata); the source's own where it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("vggrepro")
    except PackageNotFoundError:  # run from a checkout on PYTHONPATH, never pip-installed
        from . import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggrepro", description="Re-run and check the VGG paper (Simonyan & Zisserman, 2014)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        if importlib.util.find_spec(f"vggrepro.{module}") is not None:
            importlib.import_module(f"vggrepro.{module}").register(sub)
    return parser


def error_message(e: Exception) -> str:
    """One line for an error; an OSError as its reason and the file (a full disk, a read-only folder)."""
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError, FloatingPointError) as e:
        print(f"vggrepro {args.command}: error: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: one line (training says where its checkpoint is), not a traceback
        print(f"vggrepro {args.command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
