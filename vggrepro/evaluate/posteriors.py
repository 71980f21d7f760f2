"""An evaluation's result: a soft-max posterior per image, its top-k errors, and the file that
keeps the posteriors for fusion (section 4.4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.metrics import TOP1, TOP5, top_errors
from ..train import checkpoints

POSTERIORS_FILE = "posteriors.pt"


@dataclass
class Evaluation:
    """What one evaluation gives: a posterior per image and what it cost.

    ``posteriors`` (N, C) float32 and ``labels``/``indices`` (N,) are sorted by the data set's index.
    For protocol ``both``, ``parts`` holds the ``dense`` and ``multicrop`` posteriors too, so one run
    gives all three rows of Table 5. ``macs_per_image`` is the mean forward cost per image (all
    scales, flips and crops), by method; ``forward_passes`` counts the batches run.
    """

    protocol: str
    scales: list[int]
    crop: int
    flip: bool
    posteriors: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    seconds: float
    macs_per_image: dict[str, float]
    forward_passes: int = 0
    parts: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return len(self.labels)

    @property
    def errors(self) -> dict[str, float]:
        return top_errors(self.posteriors, self.labels)

    @property
    def top1_err(self) -> float:
        return self.errors[TOP1]

    @property
    def top5_err(self) -> float:
        return self.errors[TOP5]

    def summary(self) -> dict:
        """The JSON-able numbers: errors (also of each part), images, seconds, MACs."""
        out = dict(
            protocol=self.protocol,
            scales=list(self.scales),
            crop=self.crop,
            flip=self.flip,
            images=self.images,
            seconds=round(self.seconds, 3),
            images_per_second=round(self.images / self.seconds, 2) if self.seconds > 0 else None,
            macs_per_image=dict(self.macs_per_image),
            forward_passes=self.forward_passes,
            **self.errors,
        )
        if self.parts:
            out["part_errors"] = {name: top_errors(p, self.labels) for name, p in self.parts.items()}
        return out


def save_posteriors(path: str | Path, evaluation: Evaluation, **meta) -> Path:
    """Write an evaluation's posteriors, labels and indices (and parts) atomically with
    ``torch.save``; ``meta`` (JSON-like) rides along. Read back with :func:`load_posteriors`."""
    path = Path(path)
    checkpoints.save(
        dict(
            posteriors=evaluation.posteriors.contiguous(),
            labels=evaluation.labels,
            indices=evaluation.indices,
            parts={k: v.contiguous() for k, v in evaluation.parts.items()},
            meta=dict(evaluation.summary(), **meta),
        ),
        path,
    )
    return path


def load_posteriors(path: str | Path) -> dict:
    """``{"posteriors": (N, C) float32, "labels": (N,), "indices": (N,), "parts": {...}, "meta": {...}}``
    from :func:`save_posteriors` (read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no posteriors at {path}; run `vggrepro evaluate` to make them")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, garbage, or a pickle of arbitrary objects
        raise ValueError(
            f"{path} is not a readable posteriors file ({type(e).__name__}); delete it and run "
            "`vggrepro evaluate` again"
        ) from None
    why = _not_posteriors(obj)
    if why:
        raise ValueError(
            f"{path} is not a posteriors file of `vggrepro evaluate` ({why}); evaluate the net again to make one"
        )
    return obj


def _not_posteriors(obj) -> str | None:
    """Why a loaded file is not what :func:`save_posteriors` writes (None: it is)."""
    keys = ("posteriors", "labels", "indices", "meta")
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        return f"expected the keys {', '.join(keys)}; found {found}"
    post, labels, indices = obj["posteriors"], obj["labels"], obj["indices"]
    if not all(isinstance(t, torch.Tensor) for t in (post, labels, indices)) or post.dim() != 2:
        return "posteriors must be an (images, classes) tensor, labels and indices tensors"
    if not len(labels) == len(indices) == len(post):
        return f"{len(post)} posteriors, {len(labels)} labels, {len(indices)} indices"
    if not isinstance(obj["meta"], dict) or not isinstance(obj["meta"].get("protocol"), str):
        return "its meta names no protocol"
    parts = obj.get("parts", {})
    if not isinstance(parts, dict) or any(
        not isinstance(t, torch.Tensor) or t.shape != post.shape for t in parts.values()
    ):
        return "its parts are not posteriors of the same shape"
    return None
