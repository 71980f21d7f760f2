"""Decoding images, and the one cache of decoded images that loaders and evaluation share.

A split of a small set (the synthetic ones) is decoded once per process (:func:`decode_all`) and
kept while its files stay as they were: the training loader, evaluation and the training-set
statistics all read that one copy. A large split (ImageNet) is decoded from disk
each time it is read (:func:`image_at` does either). :class:`EvalImages` hands whole images to
evaluation.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..core.optional import torchvision_or_none
from .ilsvrc import ILSVRC


class CorruptImage(Exception):
    """An image file that cannot be decoded; ``path`` names it."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot decode {path}: {reason}")
        self.path = Path(path)


def as_rgb(im: Image.Image, path: str | Path) -> Image.Image:
    """An opened image as 8-bit RGB. 16-bit greyscale (a PNG's ``I;16``) is scaled to 8 bits, since
    PIL's ``convert`` clips it instead (65535 and 8321 both become 255: an almost white image); a
    32-bit integer or float image, whose range no file states, is refused by name (:class:`CorruptImage`).
    CMYK, greyscale, palette and 16-bit RGB images PIL converts itself."""
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format == "PNG"):  # PNG holds at most 16 bits
        wide = np.asarray(im).astype(np.uint32)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("I", "F"):
        raise CorruptImage(path, f"mode {im.mode}: 32-bit samples of no stated range; save it as an 8- or 16-bit image")
    return im.convert("RGB")


def decode_image(path: str | Path) -> torch.Tensor:
    """An image file as a uint8 RGB tensor (3, H, W) (CMYK, grayscale, palette and 16-bit images
    converted by :func:`as_rgb`).

    The tensor is a (3, H, W) view of (H, W, 3) memory, which the resize kernels prefer. A file that
    does not decode raises :class:`CorruptImage`.
    """
    try:
        with Image.open(path) as im:
            pixels = np.array(as_rgb(im, path))
    except CorruptImage:
        raise
    except Exception as e:  # truncated, not an image, unsupported mode ...
        raise CorruptImage(path, f"{type(e).__name__}: {e}") from None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def warn_skipped(paths: list[Path], where: str) -> None:
    if paths:
        warnings.warn(
            f"skipped {len(paths)} image(s) of {where} that do not decode, e.g. {paths[0]}; "
            "they are listed in the loader's .skipped",
            stacklevel=3,
        )


#: Splits of at most this many images are decoded into the cache; larger ones are read from disk.
CACHE_LIMIT = 20_000

#: decoded images of the last few splits, shared by loaders and evaluation in one process
_DECODED: dict[tuple, tuple[dict[int, torch.Tensor], list[Path]]] = {}


def files_identity(dataset: ILSVRC, indices=None) -> str:
    """A fingerprint of a split's image files (or of those at ``indices``) that is cheap to take: each
    file's path under the data root, size and modification time. Editing, adding, removing or
    renaming an image changes it, so nothing cached from the old files is reused."""
    h = hashlib.sha256()
    for i in range(len(dataset.samples)) if indices is None else indices:
        path = dataset.samples[i].path
        try:
            st = path.stat()
            tag = f"{st.st_size} {st.st_mtime_ns}"
        except OSError:
            tag = "unreadable"
        h.update(os.fsencode(f"{path.relative_to(dataset.root)} {tag}\n"))  # any name, as its bytes
    return h.hexdigest()


def decode_all(dataset: ILSVRC, progress: bool = True) -> tuple[dict[int, torch.Tensor], list[Path]]:
    """Every image of a split decoded into memory: ({sample index: image}, corrupt paths). Cached
    in this process while the files stay as they were (see :func:`files_identity`)."""
    key = (str(dataset.root), dataset.split, files_identity(dataset))
    if key not in _DECODED:
        images, bad = {}, []
        for i, s in enumerate(
            tqdm(dataset.samples, desc=f"decoding {dataset.split}", unit="img", disable=not progress, leave=False)
        ):
            try:
                images[i] = decode_image(s.path)
            except CorruptImage:
                bad.append(s.path)
        while len(_DECODED) >= 2:  # keep the memory bounded: train and val of one set
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[key] = (images, bad)
    dataset.corrupt.update(_DECODED[key][1])
    return _DECODED[key]


def image_at(dataset: ILSVRC, index: int) -> torch.Tensor:
    """The decoded image of ``dataset.samples[index]``: from the cache when the split is small enough
    to be kept (:data:`CACHE_LIMIT`), else decoded from its file. A file that does not decode raises
    :class:`CorruptImage` (and is noted in ``dataset.corrupt``)."""
    if len(dataset.samples) <= CACHE_LIMIT:
        images, _ = decode_all(dataset, progress=False)
        if index in images:
            return images[index]
        raise CorruptImage(dataset.samples[index].path, "it did not decode when the split was cached")
    try:
        return decode_image(dataset.samples[index].path)
    except CorruptImage as e:
        dataset.corrupt.add(e.path)
        raise


def gpu_jpeg_decoder():
    """torchvision when it imports and can decode JPEG on the GPU, else None."""
    tv = torchvision_or_none()
    return tv if tv is not None and torch.cuda.is_available() and hasattr(tv.io, "decode_jpeg") else None


# -- evaluation: whole images --------------------------------------------------------------------------


class EvalImages:
    """The images of a split, whole, for evaluation: iterating gives ``(index, uint8 (3, H, W), label)``.

    ``index`` is the position in ``dataset.samples`` (its boxes are there). With ``cache`` the images
    are decoded once and kept in memory (shared with a TrainLoader of the same split); sets of more
    than :data:`CACHE_LIMIT` images (ImageNet's val) are read from disk each time. Images that do not
    decode are skipped with one warning and listed in ``.skipped``.
    """

    def __init__(self, dataset: ILSVRC, *, cache: bool = True, progress: bool = False):
        self.dataset = dataset
        self.cache = cache and len(dataset.samples) <= CACHE_LIMIT
        self.progress = progress
        self.skipped: list[Path] = []

    def __len__(self) -> int:
        """The images that take part (corrupt ones left out): known at once when cached, else after a pass."""
        if self.cache:
            return len(decode_all(self.dataset, self.progress)[0])
        return len(self.dataset.samples) - len(self.skipped)

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, int]]:
        if self.cache:
            images, bad = decode_all(self.dataset, self.progress)
            self._skip(bad)
            for i in sorted(images):
                yield i, images[i], self.dataset.samples[i].label
            return
        bad = []
        for i, s in enumerate(self.dataset.samples):
            try:
                img = decode_image(s.path)
            except CorruptImage:
                bad.append(s.path)
                continue
            yield i, img, s.label
        self._skip(bad)

    def _skip(self, paths) -> None:
        new = [p for p in paths if p not in self.skipped]
        self.dataset.corrupt.update(new)
        if new:
            self.skipped += new
            warn_skipped(new, str(self.dataset.split_dir))
