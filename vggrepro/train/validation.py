"""The quick check that drives the lr schedule: top-1/top-5 error of single centre crops.

Under torchrun each process validates its own share of the images and the counts are summed over
the processes, so that every rank sees the same error and takes the same lr cuts and stop (a
one-image difference would otherwise split the schedule, and the ranks would hang).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..core.devices import Speed
from ..data import CACHE_LIMIT, CorruptImage, decode_all, decode_image, transforms
from . import distributed


@torch.inference_mode()
def validate(net: nn.Module, batches, speed: Speed | None = None) -> tuple[float, float]:
    """Top-1 and top-5 error (%) over ``batches`` of every process (summed across ranks)."""
    speed = speed or Speed.of(next(net.parameters()).device)
    was = net.training
    net.eval()
    hits = torch.zeros(3, dtype=torch.int64, device=next(net.parameters()).device)  # top-1, top-5, images
    for x, y in batches:
        with speed.autocast():
            logits = net(x)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits += torch.stack(
            [
                (top[:, :1] == y[:, None]).any(1).sum(),
                (top == y[:, None]).any(1).sum(),
                torch.tensor(len(y), device=hits.device),
            ]
        )
    net.train(was)
    top1, top5, n = distributed.all_sum(hits.tolist(), hits.device)  # one host read per validation
    if n == 0:
        raise ValueError("no validation images: the val split is empty or every image failed to decode")
    return 100.0 * (1 - top1 / n), 100.0 * (1 - top5 / n)


@dataclass(frozen=True)
class CentreView:
    """What validation shows the net of an image: rescaled to Q, its centre crop x crop, preprocessed."""

    crop: int
    Q: int  # the smaller side before cropping (the test scale of the training scale S)
    preprocess: transforms.Preprocess


class CentreCrops:
    """This process's share of the validation images as centre crops at one scale Q, in batches;
    kept in memory when the set is small (re-read each epoch otherwise, as ImageNet's 50,000)."""

    IN_MEMORY = 20_000

    def __init__(
        self, val, view: CentreView, device, memory_format, batch: int = 256, rank: int = 0, world_size: int = 1
    ):
        self.val, self.crop, self.Q, self.preprocess = val, view.crop, view.Q, view.preprocess
        self.device, self.memory_format, self.batch = device, memory_format, batch
        self.rank, self.world_size = rank, world_size
        self.cached = list(self._make()) if len(val.samples) <= self.IN_MEMORY else None

    def _images(self):
        """(image, label) of this rank's share, every world_size-th image; undecodable ones skipped.

        A small split is decoded once per process and data set (the cache the loaders share), not
        once per training run: a chapter that trains seven nets decodes its validation images once."""
        if len(self.val.samples) <= CACHE_LIMIT:
            images, bad = decode_all(self.val, progress=False)
            if bad:
                warnings.warn(f"validation skipped {len(bad)} image(s) that do not decode, e.g. {bad[0]}", stacklevel=2)
            for i in range(self.rank, len(self.val.samples), self.world_size):
                if i in images:
                    yield images[i], self.val.samples[i].label
            return
        bad = []
        for sample in self.val.samples[self.rank :: self.world_size]:
            try:
                yield decode_image(sample.path), sample.label
            except CorruptImage:
                bad.append(sample.path)
        if bad:
            self.val.corrupt.update(bad)
            warnings.warn(f"validation skipped {len(bad)} image(s) that do not decode, e.g. {bad[0]}", stacklevel=2)

    def _make(self):
        xs, ys = [], []
        for image, label in self._images():
            xs.append(self.preprocess(transforms.centre_crop(transforms.rescale(image, self.Q), self.crop)))
            ys.append(label)
            if len(xs) == self.batch:
                yield self._pack(xs, ys)
                xs, ys = [], []
        if xs:
            yield self._pack(xs, ys)

    def _pack(self, xs, ys):
        x = torch.stack(xs).to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return x, torch.tensor(ys).to(self.device, non_blocking=True)

    def __iter__(self):
        return iter(self.cached) if self.cached is not None else self._make()
