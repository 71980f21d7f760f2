"""The whole book in one command: run its notebooks with papermill, build the site with Jupyter Book.

    vggrepro book run                      # every notebook of _toc.yml, profile ci -> runs/ci/book/
    vggrepro book run --profile gpu --only 01,03 -p width=0.5   # width: a profile knob, for every chapter
    vggrepro book run --inplace            # refresh the stored ci outputs in book/ (what nbval checks)
    vggrepro book build                    # jupyter-book build -W -> _build/html
    vggrepro book sync                     # jupytext --sync book/*.py (the .py twins are the source)

Each notebook runs with its working directory set to book/, in the order of _toc.yml, with the
profile and any ``-p`` values injected by papermill after the cell tagged ``parameters``. A ``-p``
name that a chapter does not declare but that is a profile knob (``width``, ``epochs``, ...) changes
that chapter's profile instead (:func:`chapter_inputs`), so one ``-p width=...`` reaches every net
the book trains. A run with any ``-p`` saves its claims apart from the profile's own
(``runs/<profile>/claims-<variant>/``), so the results page never shows them as the profile's.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from ..core.files import check_writable
from ..core.optional import book_tool
from ..core.profiles import NAMES, OVERRIDES_ENV, get_profile, knobs
from ..core.project import find_root, pin_env_paths, project_root
from ..core.runs import VARIANT_ENV, record_in, runs_root
from .parameters import checked, declared_parameters, parse_parameters  # noqa: F401  (parse_parameters: the CLI's)
from .progress import EpochWatcher

PROFILES = NAMES  # the profiles' names, from vggrepro.core.profiles
#: The profile whose outputs are stored in book/ and checked by nbval.
STORED_PROFILE = "ci"
KERNEL = "python3"


def __getattr__(name: str):
    # ``book.ROOT``, the project's root (the folder holding _toc.yml, _config.yml and book/), is looked
    # up when asked for: an installed copy finds its checkout as vggrepro.core.project says.
    if name == "ROOT":
        return project_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NotebookFailed(RuntimeError):
    """A notebook raised: names the notebook, the cell and the error."""

    def __init__(self, notebook: Path, cell: int | None, source: str, ename: str, evalue: str, output: Path):
        self.notebook, self.cell, self.ename, self.evalue, self.output = notebook, cell, ename, evalue, output
        first_line = next((line for line in source.splitlines() if line.strip()), "")
        where = "" if cell is None else f" in cell {cell} (counting from 0; it starts {first_line.strip()[:60]!r})"
        super().__init__(
            f"{notebook} failed{where}: {ename}: {evalue}\n  the executed notebook, with the error, is {output}"
        )


# -- which notebooks ----------------------------------------------------------------------------


def _toc_files(root: Path) -> list[str]:
    """Every ``file:`` of _toc.yml, in reading order (root first, then parts, chapters, sections)."""
    yaml = book_tool("yaml")
    toc_path = root / "_toc.yml"
    if not toc_path.exists():
        raise FileNotFoundError(f"{toc_path} is missing: run this from a checkout of the vggrepro repository")
    toc = yaml.safe_load(toc_path.read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            for key in ("root", "parts", "chapters", "sections"):
                if key == "root" and key in node:
                    files.append(str(node["root"]))
                elif key in node:
                    walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return files


def notebooks(root: Path | None = None) -> list[Path]:
    """The notebooks of _toc.yml, as ``book/NN_name.ipynb`` paths, in the order of their numbers.

    They run in number order, not reading order: the results page (08) is read first but gathers
    what 01-07 saved, so it runs last (as nbval, which runs files in name order, does too). A toc
    entry counts as a notebook when its ``.ipynb`` or its jupytext ``.py`` twin exists; other pages
    (intro.md, one not written yet) are not run.
    """
    found = []
    root = Path(root or project_root())
    for entry in _toc_files(root):
        stem = root / re.sub(r"\.(ipynb|md|py)$", "", entry)
        if stem.with_suffix(".ipynb").exists() or stem.with_suffix(".py").exists():
            found.append(stem.with_suffix(".ipynb"))
    return sorted(found, key=lambda path: path.name)


def select(all_notebooks: list[Path], only: str | list[str] | None) -> list[Path]:
    """The notebooks named by ``only`` ("01,03", or names like "01_architecture"), in book order.

    ``None`` is the whole book; an empty selection ("", ",") is an error, not the whole book.
    """
    if only is None:
        return list(all_notebooks)
    names = ", ".join(nb.stem for nb in all_notebooks) or "none"
    wanted = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
    if not wanted:
        raise ValueError(
            f"--only {only!r} names no notebook; give numbers or names, e.g. --only 01,03; the book has: {names}"
        )
    chosen = set()
    for w in wanted:
        hits = [nb for nb in all_notebooks if nb.stem == w or nb.stem.split("_")[0] == w.zfill(2)]
        if not hits:
            raise ValueError(f"--only {w!r} matches no notebook of _toc.yml; the book has: {names}")
        chosen.update(hits)
    return [nb for nb in all_notebooks if nb in chosen]


def load_source(notebook: Path):
    """A notebook's cells from its jupytext ``.py`` twin (the source of truth) when there is one,
    with the metadata and cell ids of the stored ``.ipynb`` so that a refresh changes little."""
    jupytext, nbformat = book_tool("jupytext"), book_tool("nbformat")
    twin = notebook.with_suffix(".py")
    if not twin.exists():
        return nbformat.read(notebook, as_version=4)
    source = jupytext.read(twin)
    if not notebook.exists():
        return source
    return book_tool("jupytext.combine").combine_inputs_with_outputs(
        source, nbformat.read(notebook, as_version=4), fmt="py:percent"
    )


# -- running ------------------------------------------------------------------------------------


def _injected_position(nb) -> int:
    """Where papermill puts its injected-parameters cell: after the parameters cell, else first."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i + 1
    return 0


def clean_for_storage(nb, original_metadata: dict):
    """Drop what papermill adds and what changes from run to run, so a stored notebook's diff
    shows only its outputs: the injected-parameters cell, papermill's and nbclient's timing
    metadata. The notebook's own metadata (kernelspec, jupytext pairing) stays as it was; only a
    missing kernelspec or language_info is filled in from the run."""
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        meta.pop("papermill", None)
        meta.pop("execution", None)
        if meta.get("tags") == []:
            meta.pop("tags")
    # The site needs the kernel's language to highlight code; take it from this run if missing.
    for key in ("kernelspec", "language_info"):
        if key in nb.metadata and key not in original_metadata:
            original_metadata[key] = nb.metadata[key]
    nb.metadata = original_metadata
    # Number the code cells 1, 2, ... as a clean top-to-bottom run would.
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            count += 1
            cell.execution_count = count
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = count
    return nb


def _write_atomically(nb, path: Path) -> None:
    nbformat = book_tool("nbformat")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _runs_root(root: Path) -> Path:
    """This project's runs folder ($VGGREPRO_RUNS or runs/); another book's own runs/ folder."""
    if root.resolve() == find_root():
        return runs_root()
    return root / "runs"


def _check_output(folder: Path, book_folders: set[Path]) -> None:
    """``--output`` must not be where the stored notebooks live (only ``--inplace`` refreshes those,
    under its own guard: nbval checks them) nor a folder holding another kind of record."""
    if folder in book_folders:
        raise ValueError(
            f"--output {folder} is the book's own folder, whose stored {STORED_PROFILE} outputs nbval checks; "
            f"refresh them with --inplace (the {STORED_PROFILE} profile, no -p), or pass another --output"
        )
    held = record_in(folder)
    if held is not None:
        raise ValueError(f"--output {folder} holds {held[0]} ({', '.join(held[1])}); pass another --output")


def chapter_inputs(parameters: dict, declared: dict | set[str]) -> tuple[dict, dict]:
    """Split ``-p`` values for one chapter: (its parameters: the names its parameters cell declares,
    profile overrides: the other names that are profile knobs). A chapter's own parameter wins, so
    05's ``epochs`` (its fine-tuning epochs) stays 05's, while 02, which declares no ``epochs``,
    trains the profile's nets for that many epochs."""
    own = {k: v for k, v in parameters.items() if k in declared}
    profile = {k: v for k, v in parameters.items() if k not in declared and k in knobs()}
    return own, profile


def variant_name(parameters: dict) -> str | None:
    """How a run with changed parameters is named where its claims are saved (None: the plain run)."""
    return ",".join(f"{k}={v}" for k, v in sorted(parameters.items())) or None


@contextlib.contextmanager
def _environment(values: dict[str, str | None]):
    """Set (or, for None, unset) environment variables for the kernels started inside; restore after."""

    def put(settings):
        for k, v in settings.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    before = {k: os.environ.get(k) for k in values}
    try:
        put(values)
        yield
    finally:
        put(before)


def run_book(
    profile: str = "ci",
    only: str | list[str] | None = None,
    parameters: dict | None = None,
    output: str | Path | None = None,
    inplace: bool = False,
    root: str | Path | None = None,
    echo=print,
    progress: TextIO | None = None,
) -> list[Path]:
    """Execute the book's notebooks in order with papermill; returns the executed notebooks' paths.

    ``profile`` and ``parameters`` are injected after each notebook's ``parameters`` cell (a
    parameter goes only to the notebooks that declare it). A parameter that a notebook does not
    declare but that is a profile knob overrides that notebook's profile (through
    ``$VGGREPRO_PROFILE_SET``, which :func:`vggrepro.core.profiles.get_profile` applies); one that is
    neither is an error, so a typo does not pass unnoticed. With any parameter the claims are saved
    apart (``runs/<profile>/claims-<variant>/``), never over the profile's own. Executed notebooks go
    to ``output`` (default ``runs/<profile>/book/``, under ``$VGGREPRO_RUNS`` when set); with ``inplace`` the stored
    notebooks in book/ are refreshed instead, which only the ``ci`` profile with the notebooks' own
    parameters may do, since those are the outputs nbval checks. The first failure stops the run
    with :class:`NotebookFailed`.

    ``echo`` prints one line per notebook, with its outcome and time. With a ``progress`` stream
    (the command gives stderr) that line first shows there, live, with the cells done so far.
    """
    papermill = book_tool("papermill")
    PapermillExecutionError = book_tool("papermill.exceptions").PapermillExecutionError
    pin_env_paths()  # a relative $VGGREPRO_RUNS means this folder's, not book/'s, where the kernels run
    root = Path(root or project_root()).resolve()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    parameters = dict(parameters or {})
    if "profile" in parameters:
        raise ValueError("set the profile with --profile, not -p profile=...")
    if inplace and (profile != STORED_PROFILE or parameters):
        raise ValueError(
            f"--inplace refreshes the stored outputs, which are the {STORED_PROFILE!r} profile's with the "
            f"notebooks' own parameters (nbval checks them); drop --profile/-p, or write elsewhere with --output"
        )
    chosen = select(notebooks(root), only)
    if not chosen:
        raise FileNotFoundError(f"{root / '_toc.yml'} lists no notebook under book/ that exists yet")
    sources = {nb: load_source(nb) for nb in chosen}
    declared = {nb: declared_parameters(src) for nb, src in sources.items()}
    for key in parameters:
        if key not in knobs() and not any(key in names for names in declared.values()):
            known = sorted(set().union(*declared.values()) - {"profile"})
            raise ValueError(
                f"-p {key}: no chosen notebook has a parameter {key!r} and no profile has a knob of that name; "
                f"their parameters cells declare {known}; the profile knobs are {sorted(knobs())}"
            )
    plan = {nb: chapter_inputs(parameters, declared[nb]) for nb in chosen}
    for nb, (own, overrides) in plan.items():  # a bad value fails now, before any chapter runs
        for name, value in own.items():
            checked(name, value, declared[nb][name])
        get_profile(profile, **overrides)

    variant = variant_name(parameters)

    # Absolute, since papermill saves the notebook while the kernel's working directory is book/.
    work_dir = Path(output).resolve() if output else _runs_root(root) / profile / "book"
    if not inplace:
        _check_output(work_dir, {nb.parent.resolve() for nb in chosen})
    # where the run writes, checked before the first chapter rather than after the last
    for folder in [_runs_root(root), *([chosen[0].parent] if inplace else [work_dir])]:
        check_writable(folder, "run the book from a writable checkout, or set VGGREPRO_RUNS and pass --output")
    work_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, nb_path in enumerate(chosen, 1):
        source = sources[nb_path]
        original_metadata = copy.deepcopy(source.metadata)
        own, overrides = plan[nb_path]
        injected = {"profile": profile} | own
        shown = ", ".join(f"{k}={v!r}" for k, v in injected.items())
        if overrides:
            shown += "; profile " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        line = f"[{i}/{len(chosen)}] {nb_path.relative_to(root)} ({shown}) ..."
        if progress is None:  # the line waits for its outcome
            echo(line, end=" ", flush=True)
            line, cells = "", False
        else:  # papermill's bar: the line with the cells done, erased when the notebook ends
            cells = dict(
                desc=line,
                file=progress,
                leave=False,
                mininterval=0,  # cells are few and slow
                bar_format="{desc} {n_fmt}/{total_fmt} cells [{elapsed}]",
            )
            line += " "
        run_path = work_dir / nb_path.name
        if run_path.is_symlink():  # papermill writes in place: replace a link, never write through it
            run_path.unlink()
        start = time.perf_counter()
        env = {OVERRIDES_ENV: json.dumps({profile: overrides}) if overrides else None, VARIANT_ENV: variant}
        # A chapter's nets train inside its kernel: show their epochs as they end, from the runs folder.
        watching = contextlib.nullcontext() if progress is None else EpochWatcher(_runs_root(root) / profile, progress)
        try:
            with _environment(env), watching:
                executed = papermill.execute_notebook(
                    source,
                    str(run_path),
                    parameters=injected,
                    kernel_name=KERNEL,
                    language="python",
                    cwd=str(nb_path.parent),
                    progress_bar=cells,
                    log_output=False,
                    # The kernel warns on stderr that it talks over local TCP; keep the progress lines clean.
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                )
        except PapermillExecutionError as e:
            echo(f"{line}FAILED after {time.perf_counter() - start:.1f} s")
            # papermill counts its injected cell; name the cell as the notebook itself numbers it.
            cell = e.cell_index - (1 if e.cell_index > _injected_position(source) else 0)
            raise NotebookFailed(nb_path.relative_to(root), cell, e.source, e.ename, e.evalue, run_path) from None
        except Exception as e:  # the kernel died, a cell timed out, the kernel did not start
            echo(f"{line}FAILED after {time.perf_counter() - start:.1f} s")
            raise NotebookFailed(nb_path.relative_to(root), None, "", type(e).__name__, str(e), run_path) from e
        wall = time.perf_counter() - start
        if inplace:
            _write_atomically(clean_for_storage(executed, original_metadata), nb_path)
            written.append(nb_path)
        else:
            written.append(run_path)
        shown_path = written[-1].relative_to(root) if written[-1].is_relative_to(root) else written[-1]
        echo(f"{line}ok in {wall:.1f} s -> {shown_path}")
    return written


# -- the site -----------------------------------------------------------------------------------


def _tool(name: str) -> str:
    """A console script of this environment (the venv's jupyter-book), else one on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed; run `bash install.sh` (it installs the pins)")
    return found


#: The line `run` prints for a notebook that ran: "[2/8] book/02_training.ipynb (...) ... ok in 123.4 s"
NOTEBOOK_DONE = re.compile(r"\[\d+/\d+\] book/(\S+)\.ipynb .*?ok in ([0-9.]+) s")


def notebook_seconds(log: Path | None) -> dict[str, float]:
    """Each notebook's wall time, read back from the output of :func:`run` (a saved log)."""
    if log is None:
        return {}
    return {m.group(1): float(m.group(2)) for m in NOTEBOOK_DONE.finditer(log.read_text(errors="replace"))}


def build_site(root: str | Path | None = None, quiet: bool = True) -> Path:
    """``jupyter-book build -W`` of the book into ``_build/html``; any warning fails the build.

    The notebooks are not executed here (``execute_notebooks: "off"``): the site shows their stored
    outputs. Returns the html folder; raises RuntimeError with the build's log on failure.
    """
    root = Path(root or project_root())
    cmd = [_tool("jupyter-book"), "build", "-W", "--keep-going", "--path-output", ".", "."]
    done = subprocess.run(cmd, cwd=root, capture_output=quiet, text=True)
    if done.returncode != 0:
        log = (done.stdout or "") + (done.stderr or "") if quiet else ""
        raise RuntimeError(f"jupyter-book build failed (exit {done.returncode}):\n{log[-6000:]}")
    html = root / "_build" / "html"
    if not (html / "index.html").exists():
        raise RuntimeError(f"jupyter-book build finished but {html / 'index.html'} is missing")
    return html


def sync_twins(root: str | Path | None = None) -> list[Path]:
    """``jupytext --sync`` every ``book/*.py`` with its ``.ipynb`` (the newer side wins)."""
    root = Path(root or project_root())
    twins = sorted((root / "book").glob("*.py"))
    if twins:
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", *map(str, twins)], cwd=root, check=True)
    return twins
