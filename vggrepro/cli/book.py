"""The command line of the book: ``vggrepro book run|build|sync``, over :mod:`vggrepro.book`."""

from __future__ import annotations

import sys

from ..book.runner import PROFILES, NotebookFailed, build_site, parse_parameters, run_book, sync_twins


def _cmd_run(args) -> int:
    tokens = [t for group in (args.parameter or []) for t in group]
    try:
        paths = run_book(
            args.profile,
            args.only,
            parse_parameters(tokens),
            args.output,
            args.inplace,
            progress=None if args.no_progress else sys.stderr,
        )
    except NotebookFailed as e:
        print(f"vggrepro book run: {e}", file=sys.stderr)
        return 1
    print(f"{len(paths)} notebook(s) ran under the {args.profile!r} profile")
    return 0


def _cmd_build(args) -> int:
    try:
        html = build_site(quiet=False)
    except RuntimeError as e:
        print(f"vggrepro book build: {e}", file=sys.stderr)
        return 1
    print(f"site: {html / 'index.html'}")
    return 0


def _cmd_sync(args) -> int:
    twins = sync_twins()
    print(f"synced {len(twins)} notebook(s)")
    return 0


def register(subparsers) -> None:
    """Add ``vggrepro book run|build|sync``."""
    book = subparsers.add_parser(
        "book",
        help="run the notebooks (papermill), build the site (Jupyter Book)",
        description="The book as a whole: run its notebooks in order, build its site, sync the .py twins.",
    )
    sub = book.add_subparsers(dest="book_command", required=True, metavar="ACTION")

    run = sub.add_parser(
        "run",
        help="execute the notebooks of _toc.yml in order",
        description="Execute the notebooks of _toc.yml in order with papermill, each in book/, with the "
        "profile and any -p values injected after its parameters cell; the executed notebooks go to "
        "runs/<profile>/book/ (or book/ itself with --inplace). The first failing cell stops the run.",
    )
    run.add_argument(
        "--profile", default="ci", choices=PROFILES, help="the size of the run, one of %(choices)s (default: ci)"
    )
    run.add_argument("--only", help="some notebooks, by number or name: --only 01,03")
    run.add_argument(
        "-p",
        "--parameter",
        action="append",
        nargs="+",
        metavar="KEY=VALUE",
        help="a notebook parameter or a profile knob, e.g. -p width=0.0625 (or papermill's -p width 0.0625); "
        "repeatable",
    )
    run.add_argument("--output", help="folder for the executed notebooks (default: runs/<profile>/book)")
    run.add_argument("--inplace", action="store_true", help="refresh the stored ci outputs in book/")
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no live count of each notebook's cells on stderr; one line per notebook only",
    )
    run.set_defaults(func=_cmd_run)

    build = sub.add_parser(
        "build",
        help="jupyter-book build -W into _build/html (warnings fail it)",
        description="Build the site into _build/html from the notebooks' stored outputs (nothing is "
        "executed); any warning fails the build.",
    )
    build.set_defaults(func=_cmd_build)

    sync = sub.add_parser(
        "sync",
        help="jupytext --sync book/*.py (the .py twins are the source)",
        description="Pair each book/*.py with its .ipynb (jupytext --sync): the newer twin rewrites the other.",
    )
    sync.set_defaults(func=_cmd_sync)
