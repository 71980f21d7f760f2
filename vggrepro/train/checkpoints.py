"""Checkpoints: written atomically, read with ``weights_only=True``, rejected clearly when broken.

A checkpoint is a dict with ``model`` (state dict) and ``meta`` (what is needed to rebuild the net:
config, width, crop, num_classes, preprocess), plus, for a training checkpoint, ``optimizer``,
``scheduler``, ``rng``, ``step`` and ``epoch``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import torch

from ..core.files import atomic_write_bytes
from ..data.transforms import Preprocess
from ..models import VGG, build, check_state_dict


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
        raise ValueError(
            f"{path} is empty (0 bytes), not a checkpoint; delete it and resume from an earlier one, or retrain"
        )
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
        raise ValueError(
            f"{path} has no {', '.join(missing)} in its meta, so its net cannot be rebuilt; "
            "it was not written by `vggrepro train`: retrain, or pass another checkpoint"
        )
    return meta


def preprocess_of(meta: dict) -> Preprocess:
    return Preprocess.from_dict(meta["preprocess"])
