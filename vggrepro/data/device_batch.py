"""A training batch's crops made in one pass on the device: the GPU's data path (issue 17).

The CPU path rescales each image to S with an anti-aliased bilinear resize and then cuts out the
crop (``loader.TrainLoader``): one resize per image, which on a GPU is a Python loop of small
kernel launches that cannot keep the device busy. Here the whole batch is made at once.

An anti-aliased bilinear resize is separable and linear: resizing an H x W image to h x w is
``A @ img @ B.T`` with A (h, H) and B (w, W) the resize's weights, and a crop keeps only rows
``top .. top+crop`` of A and ``left .. left+crop`` of B, which read only a window of the image. So
each image's crop is two small matrix products of its window with those rows (B's reversed for a
flip), and the batch is two batched products over the windows padded to one size (the padding
has zero weight). The weights are torch's own
(``interpolate(..., antialias=True)``), so the crops are the CPU path's pixels: the same region,
the same flip, and values within one level where float32 and the CPU's fixed-point uint8 kernel
round differently (tests/test_data_device.py measures it).

The products are dense: each output value sums a whole row or column of the window (crop x the
scale, ~230-460 values at 224 px) where the resize kernel reads a few taps, in float32 where the
CPU kernel works in uint8. That is at most ~0.1 TFLOP for a batch of 256 at 224 px, milliseconds on
a GPU, but slower than the per-image path on a CPU (results/loader_batched_cpu_224.json), which is
why the CPU keeps that path. The padded windows cost memory by the largest: an image shrunk ten
times (a several-thousand-pixel photo at S = 256) pads every window of its batch to ~2,300 px.

Host-side tensors bound for a CUDA device go through pinned memory with non-blocking copies
(:func:`to_device`), so the copy overlaps the training step instead of stalling the host.
"""

from __future__ import annotations

import math

import torch

from ..core.devices import backend_flags


def to_device(t: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``t`` on ``device``: through pinned memory and a non-blocking copy when it goes from the host
    to a GPU (a pageable copy makes the host wait); unchanged elsewhere. pin_memory needs CUDA, so
    a CPU run never calls it."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def source_window(size_in: int, size_out: int, start: int, count: int) -> tuple[int, int]:
    """The input pixels [first, stop) that output pixels ``start .. start+count-1`` of a resize from
    ``size_in`` to ``size_out`` read: the filter's reach either side of their centres, plus one
    pixel of margin. Only this window of each image is sent and multiplied."""
    scale = size_in / size_out
    reach = max(scale, 1.0) + 0.5  # the triangle's half-width, and the pixel centres' half-pixel offset
    first = math.floor(scale * (start + 0.5) - reach)
    stop = math.floor(scale * (start + count - 0.5) + reach) + 2
    return max(first, 0), min(stop, size_in)


def resize_weights(
    in_sizes: torch.Tensor, out_sizes: torch.Tensor, out_px: torch.Tensor, first: torch.Tensor, length: int
) -> torch.Tensor:
    """Rows ``out_px`` of each image's anti-aliased bilinear resize matrix along one axis, for input
    pixels ``first .. first+length-1``: (N, K, length) float64 for out_px (N, K), image n's row k
    weighting its input pixels (none at or beyond in_sizes[n]) for output pixel ``out_px[n, k]``
    of ``out_sizes[n]``.

    The same weights as torch's ``interpolate(mode="bilinear", antialias=True, align_corners=False)``:
    a triangle filter centred on ``scale * (i + 0.5)``, widened by ``scale`` when shrinking, each
    row normalised to sum 1 (which also clamps at the edges as that kernel does). Made where the
    sizes lie: on a GPU, the host only sends the sizes.
    """
    scale = (in_sizes.double() / out_sizes.double()).view(-1, 1, 1)  # input pixels per output pixel
    inv = torch.where(scale >= 1, 1 / scale, torch.ones_like(scale))  # widen the filter only when shrinking
    in_px = torch.arange(length, dtype=torch.float64, device=out_px.device).view(1, 1, -1) + first.view(-1, 1, 1)
    centre = scale * (out_px.unsqueeze(-1) + 0.5)
    w = (in_px + 0.5).sub(centre).mul_(inv).abs_().neg_().add_(1).clamp_(min=0)  # the triangle, in place
    w.mul_(in_px < in_sizes.view(-1, 1, 1))
    return w.div_(w.sum(-1, keepdim=True))


def padded_batch(
    images: list[torch.Tensor], windows: list[tuple[int, int, int, int]], device: str | torch.device
) -> torch.Tensor:
    """Each (3, H, W) uint8 image's window (top, bottom, left, right) in one padded (N, h, w, 3)
    uint8 batch on ``device``, h and w the largest window's.

    Windows of images on the host are packed in (pinned) host memory and sent in one non-blocking
    copy; images already on the device (GPU-decoded) are packed there. The padding is left
    unwritten: it has zero weight, and any uint8 value times zero is zero."""
    device = torch.device(device)
    hmax, wmax = max(b - t for t, b, _, _ in windows), max(r - l for _, _, l, r in windows)
    on_host = all(im.device.type == "cpu" for im in images)
    where = "cpu" if on_host else device
    pin = on_host and device.type == "cuda"
    batch = torch.empty(len(images), hmax, wmax, 3, dtype=torch.uint8, device=where, pin_memory=pin)
    for j, (im, (t, b, l, r)) in enumerate(zip(images, windows)):  # channels-last, as decoders leave pixels
        batch[j, : b - t, : r - l] = im[:, t:b, l:r].permute(1, 2, 0)
    return batch.to(device, non_blocking=True) if on_host else batch


def crop_batch(images: list[torch.Tensor], views: list, crop: int, device: str | torch.device) -> torch.Tensor:
    """The training crops of a batch, made in two batched matrix products on ``device``.

    ``images``: (3, H, W) uint8 tensors (host or device); ``views``: each image's ``loader.View``
    (its size after rescaling to S, crop corner and flip). Returns uint8 (N, crop, crop, 3) on
    ``device``, as the per-image path makes it (rescale, crop, flip, round to uint8).
    """
    device = torch.device(device)
    if not images:
        return torch.empty(0, crop, crop, 3, dtype=torch.uint8, device=device)
    windows = [
        source_window(im.shape[1], v.size[0], v.top, crop) + source_window(im.shape[2], v.size[1], v.left, crop)
        for im, v in zip(images, views)
    ]
    x = padded_batch(images, windows, device)
    n, hmax, wmax = x.shape[:3]
    sizes = torch.tensor(
        [
            (im.shape[1], im.shape[2], *v.size, v.top, v.left, v.flip, win[0], win[2])
            for im, v, win in zip(images, views, windows)
        ],
        dtype=torch.int64,
    )
    H, W, h, w, top, left, flip, y0, x0 = to_device(sizes, device).unbind(1)  # one small copy per batch
    k = torch.arange(crop, device=device)
    across = torch.where(flip.bool().view(-1, 1), crop - 1 - k, k)  # a flip reads the crop's columns backwards
    rows = resize_weights(H, h, top.view(-1, 1) + k, y0, hmax).float()  # (N, crop, window height)
    cols = resize_weights(W, w, left.view(-1, 1) + across, x0, wmax).float()  # (N, crop, window width)
    x = x.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)  # (N, 3, hmax, wmax)
    # Columns first, rounded to whole levels, then rows: the order, and the uint8 step between the
    # passes, of torch's CPU uint8 kernel; it brings the values that differ from ~15% to ~1%.
    # In full float32: TF32 (on while training on a GPU) would round the weights to ~3 digits.
    with backend_flags(benchmark=torch.backends.cudnn.benchmark, tf32=False):
        x = torch.bmm(x.view(n, 3 * hmax, wmax), cols.transpose(1, 2)).round_().clamp_(0, 255)  # (N, 3*hmax, crop)
        x = x.view(n, 3, hmax, crop).permute(0, 2, 1, 3).reshape(n, hmax, 3 * crop)
        y = torch.bmm(rows, x).view(n, crop, 3, crop).permute(0, 1, 3, 2)  # (N, crop, crop, 3)
    return y.round_().clamp_(0, 255).to(torch.uint8, memory_format=torch.contiguous_format)
