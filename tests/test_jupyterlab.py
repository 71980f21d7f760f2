"""JupyterLab, as readers open the book: a chapter's .py twin opens as a notebook (jupytext's
contents manager, and the project's default viewer), and opening and saving it changes no byte of
either twin. Runs a real Jupyter server on a copy of the chapters and talks to its REST API."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("jupyterlab")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A Jupyter server (with JupyterLab and jupytext, as installed) serving a copy of the book."""
    shutil.copy(ROOT / "jupytext.toml", tmp_path)
    (tmp_path / "book").mkdir()
    for twin in sorted((ROOT / "book").glob("01_architecture.*")):
        shutil.copy(twin, tmp_path / "book")
    port, token = _free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tmp_path}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"{}")

    try:
        for _ in range(120):
            try:
                call("GET", "/api/status")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("jupyter lab did not start: " + proc.stderr.read().decode()[-2000:])
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not answer within a minute")
        yield call, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_chapter_opens_as_a_notebook_and_saving_it_changes_nothing(server):
    call, root = server
    twins = {p.name: p.read_bytes() for p in (root / "book").iterdir()}
    model = call("GET", "/api/contents/book/01_architecture.py?type=notebook&content=1")
    assert model["type"] == "notebook" and len(model["content"]["cells"]) > 10
    assert any(o for c in model["content"]["cells"] if c["cell_type"] == "code" for o in c["outputs"]), (
        "the outputs stored in the .ipynb twin come with the notebook"
    )
    call(
        "PUT",
        "/api/contents/book/01_architecture.py",
        {"type": "notebook", "format": "json", "content": model["content"]},
    )
    changed = [name for name, data in twins.items() if (root / "book" / name).read_bytes() != data]
    assert changed == [], f"opening and saving the chapter rewrote {changed}"


def test_the_project_makes_py_chapters_open_as_notebooks(server):
    """install.sh puts jupyterlab/overrides.json in JupyterLab's settings: the default viewer of a
    Python file is jupytext's notebook."""
    call, _ = server
    settings = call("GET", "/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    # overrides become the schema's defaults; a reader's own settings ("raw") may still change them
    viewers = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert viewers.get("python") == "Jupytext Notebook"
