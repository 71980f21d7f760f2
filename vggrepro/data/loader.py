"""Training batches with the paper's augmentation (section 3.1): rescale to S, random crop, flip,
colour shift, mean subtraction.

Training batches are a pure function of (seed, epoch, step): the epoch's order comes from a generator
seeded by (seed, epoch), and the images of batch ``step`` take their scale, crop, flip and colour
shift from the numbers a generator seeded by (seed, epoch, step) draws for their positions in the
batch. A run resumed at any step therefore sees exactly the batches it would have seen, and the two
data paths (torch tensors, or PIL in DataLoader workers) and all DDP ranks draw the same choices.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.scales import TrainScale
from . import transforms as T
from .device_batch import crop_batch, to_device
from .ilsvrc import ILSVRC
from .images import CorruptImage, as_rgb, decode_all, decode_image, gpu_jpeg_decoder, warn_skipped
from .training_stats import Stats
from .transforms import Preprocess

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a fixed function of integers, e.g. (seed, epoch, step, position)."""
    x = 0
    for p in parts:
        x = _splitmix64(x ^ (int(p) & _MASK64))
    return x >> 1


def generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


@dataclass(frozen=True)
class View:
    """The random choices for one training image: scale S, rescaled size, crop corner, flip, colour alpha."""

    S: int
    size: tuple[int, int]  # (h, w) after rescaling the smaller side to S
    top: int
    left: int
    flip: bool
    alpha: torch.Tensor  # (3,), AlexNet's colour-shift weights


class BatchDraws:
    """The random numbers of one batch: four uniforms (S, crop top, crop left, flip) and the colour
    shift's alpha ~ N(0, std^2) for each position of the global batch, drawn at once from a generator
    seeded by (seed, epoch, step). An image's choices depend on its position alone, so the tensor and
    PIL paths, and each DDP rank, draw the same ones."""

    def __init__(self, seed: int, epoch: int, step: int, batch_size: int, colour_std: float = 0.1):
        g = generator(seed, epoch, step)
        self.uniforms = torch.rand(batch_size, 4, generator=g, dtype=torch.float64).tolist()
        self.alphas = T.draw_alpha(g, batch_size, colour_std)

    def view(
        self,
        pos: int,
        h: int,
        w: int,
        scale: int | tuple[int, int],
        crop: int,
    ) -> View:
        """The augmentation of the image at ``pos``, given its size (h, w)."""
        u_scale, u_top, u_left, u_flip = self.uniforms[pos]
        S = T.scale_from_uniform(u_scale, scale)
        size = T.scaled_size(h, w, S)
        top, left = T.crop_from_uniform(u_top, u_left, size[0], size[1], crop)
        return View(S, size, top, left, u_flip < 0.5, self.alphas[pos])


def crop_view_pil(im: Image.Image, v: View, crop: int) -> np.ndarray:
    """Rescale to S, crop and flip with PIL: only the source region that maps onto the crop is
    resized (PIL's ``box``), which gives the pixels of resizing the whole image and then cropping.

    Returns a uint8 (crop, crop, 3) array.
    """
    W, H = im.size
    sx, sy = W / v.size[1], H / v.size[0]
    box = (v.left * sx, v.top * sy, (v.left + crop) * sx, (v.top + crop) * sy)
    out = im.resize((crop, crop), Image.BILINEAR, box=box)
    if v.flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(out)


def finish_batch(
    crops: torch.Tensor, alphas: torch.Tensor, preprocess: Preprocess, stats: Stats | None, device: str | torch.device
) -> torch.Tensor:
    """uint8 crops (N, crop, crop, 3) -> float32 (N, 3, crop, crop), channels-last in memory, with the
    colour shift (when ``stats`` is given) and then ``preprocess`` (mean subtraction).

    Equal to ``preprocess(colour_shift_by(x, alphas, ...))`` (a test checks it), but done in one pass
    over channels-last memory, where adding a per-channel offset is several times faster.
    """
    x = to_device(crops, device).float()
    # the per-image offsets are a few numbers: made on the host, sent in one (pinned) copy
    offset = -torch.tensor(preprocess.mean, dtype=torch.float32).expand(len(x), 3)
    if stats is not None:  # AlexNet's shift: eigvec @ (alpha * eigval), in 0-255 units
        offset = offset + T.rgb_shift(alphas.cpu(), stats.eigval, stats.eigvec)
    x += to_device(offset, x.device).reshape(len(x), 1, 1, 3)
    if tuple(preprocess.std) != (1.0, 1.0, 1.0):
        x /= to_device(torch.tensor(preprocess.std, dtype=torch.float32), x.device)
    x = x.permute(0, 3, 1, 2)
    return x.flip(1) if preprocess.order == "BGR" else x


@dataclass(frozen=True)
class Augmentation:
    """What section 3.1 does to each training image: rescale to S, crop, flip, colour shift, preprocess."""

    crop: int
    scale: TrainScale  # S fixed, or drawn per image uniform in [Smin, Smax] (a number or a pair is parsed)
    preprocess: Preprocess  # mean subtraction, last
    stats: Stats | None = None  # the colour PCA; None: no colour shift
    colour_std: float = 0.1  # the colour shift's alpha ~ N(0, colour_std^2)

    def __post_init__(self):
        object.__setattr__(self, "scale", TrainScale.parse(self.scale))  # checked there: 0 < Smin <= Smax


@dataclass(frozen=True)
class Batching:
    """Which images make batch ``step`` of an epoch, and this process's share of it under DDP."""

    batch_size: int  # the global batch: every rank's images together
    seed: int = 0  # with (epoch, step), all a batch depends on
    drop_last: bool = True
    rank: int = 0
    world_size: int = 1


@dataclass(frozen=True)
class Engine:
    """Where and how the batches are made; apart from resampling rounding, not which pixels they hold."""

    device: str | torch.device = "cpu"
    backend: str = "tensor"  # "tensor": decoded into memory, cropped with torch; "pil": DataLoader workers
    workers: int = 0  # DataLoader processes of the "pil" backend
    batched_crops: bool | None = None  # None: on any device but the CPU (whose per-image bits CI checks)
    progress: bool = True  # a bar while the "tensor" backend decodes the set


class TrainLoader:
    """Training batches with the paper's augmentation (section 3.1).

    ``augmentation`` (:class:`Augmentation`): each image is rescaled isotropically so that its
    smaller side is S (``scale`` an int: fixed S; a pair: S drawn per image, uniform in [Smin,
    Smax]), a random ``crop`` x ``crop`` window is cut out, flipped at random, colour-shifted (when
    ``stats`` is given) and mean-subtracted by ``preprocess``.

    ``engine`` (:class:`Engine`): ``backend="tensor"`` decodes every image once into memory and crops
    with torch (the synthetic sets); on CUDA with torchvision it keeps the JPEG bytes and decodes each
    batch on the GPU. ``backend="pil"`` decodes and crops with PIL in ``workers`` DataLoader processes
    (ImageNet). Both give the same batches within resampling tolerance. ``batched_crops`` (default: on
    any device but the CPU) makes a tensor batch's crops in one pass on the device
    (:mod:`vggrepro.data.device_batch`) instead of one resize per image; the CPU keeps the per-image
    path, whose bits the stored book and CI check.

    ``batching`` (:class:`Batching`): ``len(loader)`` is the number of batches per epoch;
    ``loader.batches(epoch, start_step)`` yields ``(x, y)``: x float32 (N, 3, crop, crop) (channels-last
    memory), y int64 (N,). A batch depends only on (seed, epoch, step). Under DDP give ``rank``/
    ``world_size``: each process gets its share of every global batch of ``batch_size`` images. Images
    that do not decode are skipped with one warning and listed in ``loader.skipped``; a batch that held
    one is one image shorter.
    """

    JPEG_CACHE_LIMIT = 200_000  # GPU path: files kept in memory up to this many, read per batch beyond

    def __init__(self, dataset: ILSVRC, augmentation: Augmentation, batching: Batching, engine: Engine = Engine()):
        if engine.backend not in ("tensor", "pil"):
            raise ValueError(f"backend={engine.backend!r}: use 'tensor' (in memory) or 'pil' (DataLoader workers)")
        a, b = augmentation, batching
        crop, scale = a.crop, a.scale.S()  # the draws take S as a number, or (Smin, Smax) when jittered
        if a.scale.lo < crop:
            raise ValueError(f"scale S={a.scale} is smaller than the crop {crop}: S must be >= crop")
        if b.batch_size < b.world_size or not 0 <= b.rank < b.world_size:
            raise ValueError(
                f"batch_size={b.batch_size}, rank={b.rank}, world_size={b.world_size}: need 0 <= rank < "
                "world_size <= batch_size"
            )
        # kept flat on the loader: the batch code (and _PilBatches in the workers) reads them
        self.dataset, self.crop, self.scale, self.batch_size = dataset, crop, scale, b.batch_size
        self.preprocess, self.stats, self.colour_std = a.preprocess, a.stats, a.colour_std
        self.seed, self.drop_last, self.rank, self.world_size = b.seed, b.drop_last, b.rank, b.world_size
        self.device, self.backend, self.workers = torch.device(engine.device), engine.backend, engine.workers
        self.progress = engine.progress
        self.batched_crops = self.device.type != "cpu" if engine.batched_crops is None else engine.batched_crops
        self.skipped: list[Path] = []
        self.pil_fallbacks = 0  # files nvjpeg refused and PIL decoded (the GPU path)
        self._warned = False
        self._images: dict[int, torch.Tensor] | None = None
        self._jpegs: dict[int, bytes] | None = None
        self._at_S: dict[int, torch.Tensor] = {}  # fixed S: the rescaled images, made once
        self.indices = list(range(len(dataset.samples)))  # the samples that take part
        if self.backend == "tensor":
            tv = gpu_jpeg_decoder() if self.device.type == "cuda" else None
            if tv is not None:  # keep the files' bytes in memory when the set is small enough
                small = len(dataset.samples) <= self.JPEG_CACHE_LIMIT
                self._jpegs = {i: s.path.read_bytes() for i, s in enumerate(dataset.samples)} if small else {}
            else:
                self._images, bad = decode_all(dataset, self.progress)
                self._skip(bad)
                self.indices = sorted(self._images)

    def _skip(self, paths) -> None:
        new = [Path(p) for p in paths if Path(p) not in set(self.skipped)]
        self.skipped += new
        self.dataset.corrupt.update(new)
        if new and not self._warned:
            self._warned = True
            warn_skipped(new, str(self.dataset.split_dir))

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch: int) -> list[int]:
        """The epoch's order of sample indices: a permutation drawn from (seed, epoch)."""
        # -1 is no step number, so the order's generator is never a batch's
        perm = torch.randperm(len(self.indices), generator=generator(self.seed, epoch, -1))
        return [self.indices[i] for i in perm.tolist()]

    def plan(self, epoch: int, step: int, order: list[int] | None = None) -> list[tuple[int, int]]:
        """(sample index, position in the global batch) of this process's images of batch ``step``."""
        order = self.order(epoch) if order is None else order
        return _members(order, step, self.batch_size, self.rank, self.world_size)

    def batch(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` of ``epoch`` alone (the same as ``batches`` yields)."""
        return next(self.batches(epoch, step, stop=step + 1))

    def batches(
        self, epoch: int, start_step: int = 0, stop: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stop = len(self) if stop is None else min(stop, len(self))
        if not 0 <= start_step <= stop:
            raise ValueError(f"start_step={start_step} is outside the epoch's {len(self)} batches")
        order = self.order(epoch)
        steps = range(start_step, stop)
        if self.backend == "pil":
            yield from self._pil_batches(epoch, steps, order)
            return
        for step in steps:
            yield self._tensor_batch(epoch, step, self.plan(epoch, step, order))

    # -- backend "tensor"
    def _tensor_batch(self, epoch: int, step: int, plan):
        if self._jpegs is not None:
            images, plan = self._decode_gpu(plan)
        else:
            images = [self._images[i] for i, _ in plan]
        draws = BatchDraws(self.seed, epoch, step, self.batch_size, self.colour_std)
        views = [
            draws.view(pos, img.shape[1], img.shape[2], self.scale, self.crop) for (_, pos), img in zip(plan, images)
        ]
        if self.batched_crops:
            crops = crop_batch(images, views, self.crop, self.device)
        else:
            crops = torch.empty(len(plan), self.crop, self.crop, 3, dtype=torch.uint8, device=self.device)
            for j, ((i, _), img, v) in enumerate(zip(plan, images, views)):
                out = T.crop(self._rescaled(i, img, v), v.top, v.left, self.crop)
                crops[j] = (T.hflip(out) if v.flip else out).permute(1, 2, 0)
        alphas = draws.alphas[[pos for _, pos in plan]]
        y = torch.tensor([self.dataset.samples[i].label for i, _ in plan], dtype=torch.int64)
        return finish_batch(crops, alphas, self.preprocess, self.stats, self.device), to_device(y, self.device)

    def _rescaled(self, i: int, img: torch.Tensor, v: View) -> torch.Tensor:
        """The image rescaled to S; at a fixed S, kept after the first epoch (the same every time)."""
        if isinstance(self.scale, int) and self._images is not None:
            if i not in self._at_S:
                self._at_S[i] = T.resize(img, v.size)
            return self._at_S[i]
        return T.resize(img.to(self.device, non_blocking=True), v.size)

    def _decode_gpu(self, plan):
        """Decode a batch's JPEGs on the GPU (torchvision); files nvjpeg refuses go through PIL."""
        tv = gpu_jpeg_decoder()
        raw = []
        for i, _ in plan:
            try:
                raw.append(self._jpegs.get(i) or self.dataset.samples[i].path.read_bytes())
            except OSError:
                raw.append(b"")
        data = [torch.frombuffer(bytearray(r or b"\0"), dtype=torch.uint8) for r in raw]
        try:
            images = tv.io.decode_jpeg(data, mode=tv.io.ImageReadMode.RGB, device=self.device)
        except Exception:  # one odd file (CMYK, PNG named .JPEG) fails the batch: go one by one
            images = []
            for d in data:
                try:
                    images.append(tv.io.decode_jpeg(d, mode=tv.io.ImageReadMode.RGB, device=self.device))
                except Exception:
                    images.append(None)
        kept, out, bad = [], [], []
        refused = [self.dataset.samples[i].path for (i, _), img in zip(plan, images) if img is None]
        if refused:  # said, not silent: PIL's pixels differ slightly from nvjpeg's
            self.pil_fallbacks += len(refused)
            if self.pil_fallbacks == len(refused):
                warnings.warn(
                    f"nvjpeg could not decode {refused[0]} (and maybe more); PIL decodes such files "
                    "instead (the count is the loader's .pil_fallbacks)",
                    stacklevel=3,
                )
        for (i, pos), img in zip(plan, images):
            if img is None:
                try:
                    img = decode_image(self.dataset.samples[i].path)
                except CorruptImage:
                    bad.append(self.dataset.samples[i].path)
                    continue
            kept.append((i, pos))
            out.append(img)
        self._skip(bad)
        return out, kept

    # -- backend "pil"
    def _pil_batches(self, epoch: int, steps, order):
        jobs = _PilBatches(self, epoch, order)
        loader = torch.utils.data.DataLoader(
            jobs,
            batch_size=None,
            sampler=list(steps),
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_one_thread,
            persistent_workers=False,
            prefetch_factor=4 if self.workers else None,
        )
        for crops, alphas, y, bad in loader:
            self._skip(bad)
            yield finish_batch(crops, alphas, self.preprocess, self.stats, self.device), to_device(y, self.device)


def _members(order: list[int], step: int, batch_size: int, rank: int, world_size: int) -> list[tuple[int, int]]:
    chosen = order[step * batch_size : (step + 1) * batch_size]
    return [(i, pos) for pos, i in enumerate(chosen)][rank::world_size]


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers crop with PIL; torch threads in each would only compete


class _PilBatches(torch.utils.data.Dataset):
    """Batch ``step`` of one epoch, made with PIL (runs in DataLoader workers)."""

    def __init__(self, loader: TrainLoader, epoch: int, order: list[int]):
        self.samples, self.order, self.steps = loader.dataset.samples, order, len(loader)
        self.seed, self.epoch, self.scale, self.crop = loader.seed, epoch, loader.scale, loader.crop
        self.batch_size, self.rank, self.world_size = loader.batch_size, loader.rank, loader.world_size
        self.colour_std = loader.colour_std

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int):
        draws = BatchDraws(self.seed, self.epoch, step, self.batch_size, self.colour_std)
        crops, positions, labels, bad = [], [], [], []
        for i, pos in _members(self.order, step, self.batch_size, self.rank, self.world_size):
            sample = self.samples[i]
            try:
                with Image.open(sample.path) as im:
                    im = as_rgb(im, sample.path)
                    v = draws.view(pos, im.height, im.width, self.scale, self.crop)
                    crops.append(crop_view_pil(im, v, self.crop))
            except Exception:
                bad.append(str(sample.path))
                continue
            positions.append(pos)
            labels.append(sample.label)
        crops_t = (
            torch.from_numpy(np.stack(crops)) if crops else torch.empty(0, self.crop, self.crop, 3, dtype=torch.uint8)
        )
        return crops_t, draws.alphas[positions], torch.tensor(labels, dtype=torch.int64), bad
