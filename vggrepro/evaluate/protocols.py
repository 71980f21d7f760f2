"""Section 3.2 of the paper: testing a net at one or several scales Q, densely or on crops.

Every protocol turns one image into one soft-max posterior over the classes:

- ``centre``: rescale the image so that its smaller side is Q and classify one centre crop. This is
  torchvision's single-crop protocol, for reference; the paper never uses it for Tables 3-7.
- ``dense``: the fully-convolutional net (:func:`vggrepro.models.to_dense`) runs on the whole
  rescaled image and gives a class-score map. The map is **averaged over space first, then
  soft-maxed** (the paper says the map is "spatially averaged (sum-pooled)" and leaves the order of
  soft-max and pooling open: PAPER_NOTES pitfall 5). The same is done for the horizontally flipped
  image and the two posteriors are averaged.
- ``multicrop``: a 5x5 grid of crops, each also flipped: 50 crops per scale. Each crop is
  soft-maxed and the 50 posteriors are averaged. The paper does not say where the crops lie; here
  they are spaced evenly from corner to corner of the rescaled image
  (:func:`vggrepro.data.transforms.crop_grid`): the first row of crops touches the top edge, the last
  row the bottom edge, and likewise for columns. Where a side equals the crop, every crop along it
  starts at 0, so a ``crop x crop`` image gives 25 identical crops.
- ``both``: the average of the dense and the multi-crop posteriors ("multi-crop & dense").

With several scales, the posteriors of the scales are averaged (section 4.2). Test scales Q are in
the net's own pixels; a profile's ``S()`` turns the paper's 256/384/512 into them.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
from tqdm import tqdm

from ..core.devices import Speed, synchronize
from ..data import transforms as T
from ..data.transforms import Preprocess
from ..models import VGG, layer_table, score_map_size, to_dense
from .batching import Accumulator, CropRunner, DenseRunner
from .posteriors import Evaluation

PROTOCOLS = ("centre", "dense", "multicrop", "both")
#: The paper's multi-crop grid: 5 x 5 positions per scale (and each crop flipped).
GRID = 5

# -- geometry --------------------------------------------------------------------------------


def dense_macs(model: VGG, height: int, width: int) -> int:
    """Multiply-accumulates of the dense net on one ``height x width`` image.

    The convolutional part costs what :func:`vggrepro.models.count_macs` says for that size; the
    fully-connected layers, now convolutions, run once per position of the class-score map.
    """
    rows = layer_table(model, (height, width))
    conv = sum(r["macs"] for r in rows if r["kind"] != "Linear")
    fc = sum(r["macs"] for r in rows if r["kind"] == "Linear")
    return conv + fc * math.prod(score_map_size(model, height, width))


def crop_macs(model: VGG) -> int:
    """Multiply-accumulates of one crop through the net."""
    return sum(r["macs"] for r in layer_table(model))


def ready(model: VGG, device) -> VGG:
    """The model in eval mode on ``device``, in channels-last memory (faster for convolutions on
    CPUs and GPUs alike)."""
    return model.eval().to(device).to(memory_format=torch.channels_last)


@dataclass(frozen=True)
class Protocol:
    """A test protocol of section 3.2: how an image becomes crops (one of :data:`PROTOCOLS`), at
    which test scales Q (the net's pixels; posteriors averaged over them), with or without flips."""

    name: str = "dense"
    scales: tuple[int, ...] = ()
    flip: bool = True

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(int(q) for q in self.scales))  # any sequence, stored one way

    def check(self, crop: int) -> list[int]:
        """The scales, once the protocol is known and every Q holds a ``crop x crop`` crop."""
        if self.name not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.name!r}; choose one of {', '.join(PROTOCOLS)}")
        if not self.scales:
            raise ValueError("no test scales: give at least one Q, e.g. scales=[crop]")
        small = [q for q in self.scales if q < crop]
        if small:
            raise ValueError(
                f"test scale(s) {small} are below the crop {crop}: every Q must be >= the crop, "
                "since the smaller side of the rescaled image must hold one crop"
            )
        return list(self.scales)


@dataclass(frozen=True)
class Execution:
    """How an evaluation runs; none of it changes which crops are scored. ``None`` takes the default:
    the CPU (or the profile's device), 32 crops per forward pass (or the profile's), bf16 on CUDA."""

    device: str | None = None
    batch_size: int | None = None
    max_pending: int | None = None  # rescaled images waiting for a batch of their size (4 x batch)
    bf16: bool | None = None
    progress: bool = False
    total: int | None = None  # images, for the progress bar


def evaluate(
    model: VGG,
    preprocess: Preprocess,
    images: Iterable[tuple[int, torch.Tensor, int]],
    protocol: Protocol,
    *,
    crop: int | None = None,
    how: Execution = Execution(),
) -> Evaluation:
    """Evaluate ``model`` on ``images``, an iterable of ``(index, uint8 RGB image (3, H, W), label)``.

    ``protocol`` names the crops (see the module's docstring) and the test scales Q (each image is
    rescaled so that its smaller side is Q; posteriors are averaged over the scales); without flips,
    dense and multi-crop evaluation take 1 and 25 crops per scale; ``centre`` is always one crop.
    ``crop`` defaults to the net's crop. ``seconds`` is the wall time of the whole loop, decoding
    and rescaling included.

    ``how`` says how it runs: ``batch_size`` counts crops per forward pass (a dense batch holds
    images of one size with as many pixels as that many crops, so memory does not grow with Q); the
    model is put in eval mode and moved to ``device`` in channels-last memory, gradients off;
    ``bf16`` runs the forward passes under bf16 autocast (default: on CUDA, never on a CPU, whose
    float32 sums the stored outputs hold).
    """
    crop = crop or model.crop
    scales, flip = protocol.check(crop), protocol.flip
    device, bf16 = how.device or "cpu", how.bf16
    batch_size = 32 if how.batch_size is None else how.batch_size
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size} must be positive")
    methods = ["dense", "multicrop"] if protocol.name == "both" else [protocol.name]
    was_training = model.training
    model = ready(model, device)
    speed = Speed.of(device)
    if bf16 is not None:
        speed = replace(speed, bf16=bf16)
    accs = {m: Accumulator() for m in methods}
    runners = {}
    if "dense" in methods:
        runners["dense"] = DenseRunner(
            to_dense(model), preprocess, speed, batch_size, crop, flip, accs["dense"], how.max_pending or 4 * batch_size
        )
    for m in ("centre", "multicrop"):
        if m in methods:
            runners[m] = CropRunner(model, preprocess, speed, batch_size, accs[m])
    one_crop = crop_macs(model)
    macs = defaultdict(float)
    labels: dict[int, int] = {}

    if how.progress:
        images = tqdm(images, desc=f"{protocol.name} Q={scales}", unit="img", total=how.total)
    start = time.perf_counter()
    with torch.inference_mode():
        for index, image, label in images:
            index = int(index)
            if index in labels:
                raise ValueError(f"image index {index} came twice: indices must be unique")
            labels[index] = int(label)
            for q in scales:
                img = T.rescale(image, q)
                h, w = img.shape[-2:]
                if "dense" in runners:
                    runners["dense"].add(index, img)
                    macs["dense"] += (2 if flip else 1) * dense_macs(model, h, w)
                if "centre" in runners:
                    runners["centre"].add(index, [T.centre_crop(img, crop)])
                    macs["centre"] += one_crop
                if "multicrop" in runners:
                    crops = [T.crop(img, t, l, crop) for t, l in T.crop_grid(h, w, crop, GRID)]
                    if flip:
                        crops += [c.flip(-1) for c in crops]
                    runners["multicrop"].add(index, crops)
                    macs["multicrop"] += len(crops) * one_crop
        for runner in runners.values():
            runner.finish()
    synchronize(device)  # the wall time includes the GPU's queued work
    seconds = time.perf_counter() - start
    model.train(was_training)

    if not labels:
        raise ValueError("no images to evaluate: the image iterable was empty")
    order = sorted(labels)
    parts = {m: accs[m].result(order, len(scales)) for m in methods}
    for m, p in parts.items():  # NaN scores would rank as class 0 and pass for an answer
        bad = (~torch.isfinite(p).all(dim=1)).nonzero().flatten()
        if len(bad):
            raise FloatingPointError(
                f"net {model.config} gives non-finite {m} scores on {len(bad)} of {len(order)} images (e.g. index "
                f"{order[int(bad[0])]}): its weights or inputs hold NaN/inf; use a checkpoint from before "
                "training diverged"
            )
    posteriors = parts[methods[0]] if len(methods) == 1 else sum(parts.values()) / len(parts)
    return Evaluation(
        protocol=protocol.name,
        scales=scales,
        crop=crop,
        flip=flip,
        posteriors=posteriors.float(),
        labels=torch.tensor([labels[i] for i in order], dtype=torch.int64),
        indices=torch.tensor(order, dtype=torch.int64),
        seconds=seconds,
        macs_per_image={m: macs[m] / len(order) for m in methods},
        forward_passes=sum(r.forward_passes for r in runners.values()),
        parts=parts if len(methods) > 1 else {},
    )
