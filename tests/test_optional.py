"""torchvision is optional (issue 17): one guard imports it, a failing import of any kind counts as
absent, and `pip install -c constraints.txt -e ".[gpu]"` is how a user gets the GPU JPEG decoder."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from vggrepro.core import optional

ROOT = Path(__file__).resolve().parent.parent


class _Broken:
    """An import finder that fails torchvision's import the way a CPU/CUDA mismatch does."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def test_a_torchvision_that_fails_to_import_counts_as_absent(monkeypatch):
    optional.torchvision_or_none.cache_clear()
    monkeypatch.setattr(sys, "meta_path", [_Broken(), *sys.meta_path])
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    try:
        assert optional.torchvision_or_none() is None
    finally:
        optional.torchvision_or_none.cache_clear()


def test_the_gpu_extra_and_the_one_guard():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == ["torchvision"]
    importers = [
        p.name
        for p in (ROOT / "vggrepro").rglob("*.py")
        if re.search(r"^\s*(import|from) torchvision", p.read_text(), re.M)
    ]
    assert importers == ["optional.py"]


def test_a_missing_book_tool_names_the_install(monkeypatch):
    """The book's tools are imported where the book needs them: absent, one line says how to get them."""
    assert optional.book_tool("nbformat").__name__ == "nbformat"
    monkeypatch.setitem(sys.modules, "papermill", None)  # an import of it now fails
    with pytest.raises(ImportError, match=r"papermill is not installed: .*\[book\]"):
        optional.book_tool("papermill")
    with pytest.raises(ValueError, match="not one of the book's tools"):
        optional.book_tool("os")
