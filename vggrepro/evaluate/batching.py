"""Batching an evaluation's work into forward passes: whole images of one size for the dense
net, crops of any image for the crop protocols; each image's posteriors summed as they come.

On CUDA the forward passes run under bf16 autocast when asked, and the dense net runs with cuDNN
autotuning off: its batches take one shape per image size (hundreds of them on a real val set),
and autotuning each would cost more than it saves. Crop batches have one shape and keep it.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from ..core.devices import Speed, backend_flags
from ..data.transforms import Preprocess


class Accumulator:
    """Sums of posteriors per image; divided by the number of scales at the end."""

    def __init__(self):
        self.sums: dict[int, torch.Tensor] = {}

    def add(self, index: int, p: torch.Tensor) -> None:
        self.sums[index] = self.sums[index] + p if index in self.sums else p.clone()

    def result(self, order: list[int], scales: int) -> torch.Tensor:
        return torch.stack([self.sums[i] for i in order]).div(scales)


class DenseRunner:
    """Dense evaluation, batched by the exact rescaled size so that no padding changes any score.

    Images wait in one bucket per (height, width). A bucket runs when it holds as many pixels as
    ``batch_size`` crops (flips included; at least one image), or, so that memory stays bounded,
    when more than ``max_pending`` images wait in all (the fullest bucket runs first).
    """

    def __init__(self, dense, preprocess, speed: Speed, batch_size, crop, flip, acc, max_pending):
        self.dense, self.preprocess, self.speed = dense, preprocess, speed
        self.pixels = batch_size * crop * crop // (2 if flip else 1)
        self.flip, self.acc, self.max_pending = flip, acc, max_pending
        self.buckets: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = defaultdict(list)
        self.pending = 0
        self.forward_passes = 0

    def add(self, index: int, image: torch.Tensor) -> None:
        key = tuple(image.shape[-2:])
        self.buckets[key].append((index, image))
        self.pending += 1
        if len(self.buckets[key]) >= max(1, self.pixels // (key[0] * key[1])):
            self._run(key)
        elif self.pending > self.max_pending:
            self._run(max(self.buckets, key=lambda k: len(self.buckets[k])))

    def finish(self) -> None:
        for key in list(self.buckets):
            self._run(key)

    def _run(self, key) -> None:
        items = self.buckets.pop(key)
        self.pending -= len(items)
        self.forward_passes += 1
        x = prepare(torch.stack([im for _, im in items]), self.preprocess, self.speed.device)
        if self.flip:
            x = torch.cat([x, x.flip(-1)])
        # Average the score map over space, then soft-max (see the module's docstring).
        with backend_flags(benchmark=False), self.speed.autocast():  # no autotuning per image size
            scores = self.dense(x)
        p = F.softmax(scores.float().mean(dim=(-2, -1)), dim=1).cpu()
        if self.flip:
            p = (p[: len(items)] + p[len(items) :]) / 2
        for (index, _), row in zip(items, p):
            self.acc.add(index, row)


class CropRunner:
    """Crops of ``crop x crop`` from any image, batched together; each crop's soft-max, divided by
    the crops per scale, is added to its image's sum."""

    def __init__(self, model, preprocess, speed: Speed, batch_size, acc):
        self.model, self.preprocess, self.speed, self.batch_size, self.acc = model, preprocess, speed, batch_size, acc
        self.crops: list[torch.Tensor] = []
        self.owners: list[tuple[int, int]] = []  # (image index, crops of that image at this scale)
        self.forward_passes = 0

    def add(self, index: int, crops: list[torch.Tensor]) -> None:
        for c in crops:
            self.crops.append(c)
            self.owners.append((index, len(crops)))
            if len(self.crops) >= self.batch_size:
                self._run()

    def finish(self) -> None:
        if self.crops:
            self._run()

    def _run(self) -> None:
        x = prepare(torch.stack(self.crops), self.preprocess, self.speed.device)
        self.forward_passes += 1
        with self.speed.autocast():
            scores = self.model(x)
        p = F.softmax(scores.float(), dim=1).cpu()
        p /= torch.tensor([n for _, n in self.owners], dtype=p.dtype).view(-1, 1)
        # an image's crops are neighbours in the batch: sum each run of them, then add it
        owners, counts = torch.unique_consecutive(torch.tensor([i for i, _ in self.owners]), return_counts=True)
        for index, rows in zip(owners.tolist(), p.split(counts.tolist())):
            self.acc.add(index, rows.sum(0))
        self.crops, self.owners = [], []


def prepare(batch: torch.Tensor, preprocess: Preprocess, device) -> torch.Tensor:
    x = preprocess(batch.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last)
