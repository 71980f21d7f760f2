"""Checkpoints: written atomically, read with ``weights_only=True``, rejected clearly when broken.

A checkpoint is a dict with ``model`` (state dict) and ``meta`` (what is needed to rebuild the net:
config, width, crop, num_classes, preprocess), plus, for a training checkpoint, ``optimizer``,
``scheduler``, ``rng``, ``step`` and ``epoch``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .models import VGG, build, check_state_dict
from .transforms import Preprocess


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n").encode())


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def save(obj: dict, path: str | Path) -> None:
    """``torch.save`` into a temporary file beside ``path``, then rename over it."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; a missing, truncated or foreign file is a
    ValueError/FileNotFoundError that names the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `vggrepro train` or pass an existing file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, a pickle of arbitrary objects ...
        raise ValueError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "It may be truncated or from another program; delete it and resume from an earlier one, or retrain."
        ) from None
    if not isinstance(obj, dict) or "model" not in obj or "meta" not in obj:
        raise ValueError(f"{path} is a torch file but not a vggrepro checkpoint (expected keys 'model' and 'meta')")
    return obj


def model_meta(model: VGG, preprocess: Preprocess, **extra) -> dict:
    """The ``meta`` entry: enough to rebuild ``model`` and feed it."""
    return dict(
        config=model.config,
        width=model.width,
        crop=model.crop,
        num_classes=model.num_classes,
        preprocess=preprocess.as_dict(),
        **extra,
    )


def model_from_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[VGG, dict]:
    """The trained net of a checkpoint (in eval mode) and its ``meta``."""
    ckpt = load(path, map_location)
    meta = ckpt["meta"]
    model = build(meta["config"], width=meta["width"], num_classes=meta["num_classes"], crop=meta["crop"])
    check_state_dict(model, ckpt["model"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), meta


def preprocess_of(meta: dict) -> Preprocess:
    return Preprocess.from_dict(meta["preprocess"])
