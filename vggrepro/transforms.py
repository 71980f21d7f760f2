"""The paper's pre-processing (sections 2.1, 3.1, 3.2), each a small function on image tensors.

Images are uint8 or float tensors in RGB, values 0-255, shaped (3, H, W) or (N, 3, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Preprocess:
    """What a net expects of its input, applied to 0-255 RGB pixels.

    The paper subtracts the training set's mean RGB and nothing else (``std`` = 1). torchvision's
    weights expect ImageNet mean/std on 0-1 pixels (here in 0-255 units), and the authors' Caffe
    models expect BGR order with the mean pixel (103.939, 116.779, 123.68) in BGR.
    """

    mean: tuple[float, float, float]  # in 0-255 units, in RGB order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # in 0-255 units
    order: str = "RGB"  # channel order the net was trained on

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        shape = (3, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        x = (x - mean) / std
        if self.order == "BGR":
            x = x.flip(-3)
        return x

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "order": self.order}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        if d.get("order", "RGB") not in ("RGB", "BGR"):
            raise ValueError(f"pre-processing order {d.get('order')!r}: expected 'RGB' or 'BGR'")
        return cls(tuple(map(float, d["mean"])), tuple(map(float, d.get("std", (1, 1, 1)))), d.get("order", "RGB"))
