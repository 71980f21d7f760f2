"""Optional packages behind one guard: the core needs only torch, numpy and pillow.

torchvision's import fails with some CPU-only torch builds (a version mismatch raises more than
ImportError), so every use of it goes through :func:`torchvision_or_none`.
"""

from __future__ import annotations

import functools


@functools.cache
def torchvision_or_none():
    """The torchvision module when it imports cleanly, else None (any exception counts as absent)."""
    try:
        import torchvision
        import torchvision.io  # noqa: F401  (the part we use: GPU JPEG decoding)
    except Exception:
        return None
    return torchvision
