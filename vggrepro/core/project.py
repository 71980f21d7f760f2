"""The project's folder: the checkout of the repository whose ``runs/``, ``results/`` and ``data/`` the
package reads and writes.

An editable install (``bash install.sh``) runs the package from inside its checkout, which is then the
project. A plain ``pip install .`` puts the package in site-packages, with no checkout beside it: the
project is then ``$VGGREPRO_HOME``, or the current folder (or one above it, as a notebook's ``book/``)
when that is a checkout. Anything else is an error that says how to fix it, rather than a ``runs/``
written inside site-packages.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "VGGREPRO_HOME"
#: The environment variables that name folders. A relative one means a folder under the one the
#: command was run from, resolved once (:func:`pin_env_paths`), never again against book/, where a
#: chapter's kernel runs.
PATH_ENVS = (HOME_ENV, "VGGREPRO_RUNS", "VGGREPRO_DATA", "VGGREPRO_IMAGENET")
#: The files that make a folder a checkout of this project (with its name in the pyproject).
MARKERS = ("pyproject.toml", "_toc.yml")
#: Where the package's own code lies (a test moves it to play an installed copy).
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # vggrepro/, above core/


class NoProject(FileNotFoundError):
    """No checkout to read and write: the message names the fix."""


def is_checkout(folder: Path) -> bool:
    """Both markers, and the pyproject names this project (not another Jupyter Book's folder)."""
    if not all((folder / name).is_file() for name in MARKERS):
        return False
    return 'name = "vggrepro"' in (folder / "pyproject.toml").read_text(encoding="utf-8", errors="replace")


def find_root() -> Path | None:
    """The project's folder, or None when there is none (see the module's notes for the order).

    Raises :class:`NoProject` when ``$VGGREPRO_HOME`` names a folder that is not a checkout: a
    setting that was asked for and is wrong should not silently fall through to the current folder.
    """
    if is_checkout(PACKAGE_DIR.parent):
        return PACKAGE_DIR.parent
    home = os.environ.get(HOME_ENV)
    if home:
        folder = env_path(HOME_ENV).resolve()
        if not is_checkout(folder):
            raise NoProject(
                f"{HOME_ENV}={home} is not a checkout of vggrepro (no vggrepro pyproject.toml and "
                "_toc.yml there); point it at the folder you cloned"
            )
        return folder
    here = Path.cwd().resolve()
    return next((folder for folder in (here, *here.parents) if is_checkout(folder)), None)


def project_root() -> Path:
    """The project's folder; :class:`NoProject`, with the fix, when there is none."""
    root = find_root()
    if root is None:
        raise NoProject(
            f"vggrepro is installed outside a checkout ({PACKAGE_DIR}) and {Path.cwd()} is not "
            f"inside one: set {HOME_ENV} to your checkout of the repository, or install it "
            "editable with `bash install.sh`"
        )
    return root


def env_path(name: str) -> Path | None:
    """The folder an environment variable of :data:`PATH_ENVS` names, absolute (``~`` expanded, a
    relative one under the current folder); None when it is unset or empty."""
    value = os.environ.get(name)
    return Path(os.path.abspath(os.path.expanduser(value))) if value else None


def pin_env_paths() -> None:
    """Write every relative folder of :data:`PATH_ENVS` back as an absolute one, resolved against the
    current folder: the processes this one starts (a chapter's kernel, in book/) then read the same
    folders. Called once where a command starts."""
    for name in PATH_ENVS:
        folder = env_path(name)
        if folder is not None:
            os.environ[name] = str(folder)
