"""Checkpoints: written atomically, read with ``weights_only=True``, rejected clearly when broken.

A checkpoint is a dict with ``model`` (state dict) and ``meta`` (what is needed to rebuild the net:
config, width, crop, num_classes, preprocess), plus, for a training checkpoint, ``optimizer``,
``scheduler``, ``rng``, ``step`` and ``epoch``.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from .models import VGG, build, check_state_dict
from .transforms import Preprocess


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    The file gets the permissions of an ordinary new file (0666 less the umask), not mkstemp's 0600:
    a runs folder may be shared. A full disk or a read-only folder is an OSError naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):  # the same errno (so the same subclass), with the file's name
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed atomic write left in ``folder`` (``.<name>.*.tmp``).
    Call it only while no other process writes there (a run folder, under the run's lock)."""
    stale = sorted(Path(folder).glob(".*.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not a checkpoint; delete it and resume from an earlier one, "
                         "or retrain")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, a pickle of arbitrary objects ...
        raise ValueError(
            f"{path} is not a readable checkpoint ({_reason(e)}). "
            "It may be truncated or from another program; delete it and resume from an earlier one, or retrain."
        ) from None
    if not isinstance(obj, dict) or "model" not in obj or "meta" not in obj:
        raise ValueError(f"{path} is a torch file but not a vggrepro checkpoint (expected keys 'model' and 'meta')")
    return obj


def load_training(path: str | Path, device: str | torch.device) -> dict:
    """A training checkpoint for a net on ``device``: the model's tensors mapped there, the optimizer's
    left for ``optimizer.load_state_dict`` to move, and the RNG states kept on the CPU, where
    ``torch.set_rng_state`` wants them (a ByteTensor mapped to a GPU makes every resume fail)."""
    ckpt = load(path, map_location="cpu")
    ckpt["model"] = {k: v.to(device) for k, v in ckpt["model"].items()}
    return ckpt


def rng_state() -> dict:
    """The CPU generator's state and, when CUDA is there, every GPU's (all CPU ByteTensors)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Put back what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to("cpu", torch.uint8) for s in state["cuda"]])


def _reason(e: Exception) -> str:
    """torch's error in one line, without its advice to retry with ``weights_only=False``: that
    would run whatever code an unsafe file holds."""
    text = str(e)
    if "weights_only" in text or "Weights only" in text:
        found = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: Please use|\n|$)", text)
        what = found.group(1).strip() if found else "it holds Python objects"
        return f"{what}; vggrepro loads only tensors and plain containers (weights_only=True)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first[:200]}" if first else type(e).__name__


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
    meta = check_meta(ckpt["meta"], path)
    model = build(meta["config"], width=meta["width"], num_classes=meta["num_classes"], crop=meta["crop"])
    check_state_dict(model, ckpt["model"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), meta


MODEL_META = ("config", "width", "crop", "num_classes")


def check_meta(meta, path: str | Path) -> dict:
    """A checkpoint's ``meta``, refused clearly when it cannot rebuild the net."""
    missing = [k for k in MODEL_META if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)} in its meta, so its net cannot be rebuilt; "
                         "it was not written by `vggrepro train`: retrain, or pass another checkpoint")
    return meta


def preprocess_of(meta: dict) -> Preprocess:
    return Preprocess.from_dict(meta["preprocess"])
