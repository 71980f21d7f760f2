"""Optional packages behind one guard each: the core needs only torch, numpy and pillow.

torchvision's import fails with some CPU-only torch builds (a version mismatch raises more than
ImportError), so every use of it goes through :func:`torchvision_or_none`. The book's tools
(papermill, jupytext, nbformat, yaml) are absent where only the package runs (a GPU machine with no
registry): :func:`book_tool` imports one where the book needs it, so every other command still runs.
"""

from __future__ import annotations

import functools
import importlib


@functools.cache
def torchvision_or_none():
    """The torchvision module when it imports cleanly, else None (any exception counts as absent)."""
    try:
        import torchvision  # noqa: PLC0415  (the one guard: its import may fail in many ways)
        import torchvision.io  # noqa: F401, PLC0415  (the part we use: GPU JPEG decoding)
    except Exception:
        return None
    return torchvision


@functools.cache
def onnx_runtime_or_none():
    """(onnx, onnxruntime) when both import, else None: the peer check of the authors' VGG-16
    convolutions runs the ONNX file itself (``bash install.sh --real`` installs them)."""
    try:
        import onnx  # noqa: PLC0415  (the one guard of the real-weights extras)
        import onnx.shape_inference  # noqa: F401, PLC0415
        import onnx.utils  # noqa: F401, PLC0415
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        return None
    return onnx, onnxruntime


#: the book's tools, and the install that brings them
BOOK_TOOLS = (
    "papermill",
    "papermill.exceptions",
    "papermill.translators",
    "jupytext",
    "jupytext.combine",
    "nbformat",
    "yaml",
)


def book_tool(name: str):
    """One of :data:`BOOK_TOOLS`, imported; a missing one stops with a line naming the install."""
    if name not in BOOK_TOOLS:
        raise ValueError(f"{name!r} is not one of the book's tools {BOOK_TOOLS}")
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(
            f"{name} is not installed: the book needs its extras "
            "(pip install -c constraints.txt -e '.[book]', or bash install.sh)"
        ) from None
