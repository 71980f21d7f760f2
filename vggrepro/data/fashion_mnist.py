"""Fashion-MNIST (Xiao et al. 2017), read from the IDX files Debian's ``dataset-fashion-mnist`` installs.

Real photographs of clothing and shoes from Zalando's catalogue, 28 x 28 grey, ten classes: 60,000
training and 10,000 test images (Expat licence). ``bash install.sh --real`` installs the package;
its files lie under ``/usr/share/datasets/fashion-mnist/``, gzipped.

IDX, in brief: a big-endian header of a magic number (two zero bytes, a type code, 0x08 for unsigned
bytes, and the number of axes), then each axis's length as a 32-bit integer, then the values, the
last axis varying fastest. Images are (N, 28, 28), labels (N,). Every length is checked against the
bytes, so a truncated file is one line naming the fix, never a short array.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

ROOT = Path("/usr/share/datasets/fashion-mnist")
FIX = "run `bash install.sh --real` (it installs Debian's dataset-fashion-mnist)"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SIZES = {"train": 60_000, "test": 10_000}
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def read_idx(path: Path) -> np.ndarray:
    """One gzipped IDX file of unsigned bytes as an array of its shape."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable gzip file ({e}): {FIX}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex()}): {FIX}")
    axes = data[3]
    head = 4 + 4 * axes
    if len(data) < head:
        raise ValueError(f"{path}: its header is cut off: {FIX}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(axes))
    need = int(np.prod(shape))
    if len(data) - head != need:
        raise ValueError(f"{path} holds {len(data) - head} values, its shape {shape} needs {need}: {FIX}")
    return np.frombuffer(bytearray(data), np.uint8, offset=head).reshape(shape)  # writable: torch shares it


def available(root: str | Path = ROOT) -> bool:
    """Whether all four files are there (not whether they are whole: :func:`load` checks that)."""
    return all((Path(root) / name).is_file() for pair in FILES.values() for name in pair)


def load(split: str, root: str | Path = ROOT) -> tuple[np.ndarray, np.ndarray]:
    """A split's images (N, 28, 28) uint8 and labels (N,) int64."""
    if split not in FILES:
        raise ValueError(f"split {split!r}: Fashion-MNIST has 'train' and 'test'")
    root = Path(root)
    paths = [root / name for name in FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no Fashion-MNIST at {root} (missing {', '.join(missing)}): {FIX}")
    images, labels = (read_idx(p) for p in paths)
    if images.shape != (SIZES[split], 28, 28) or labels.shape != (SIZES[split],) or labels.max() >= len(CLASSES):
        raise ValueError(f"{root}: the {split} split holds {images.shape} images and {labels.shape} labels: {FIX}")
    return images, labels.astype(np.int64)


def as_rgb(images: np.ndarray) -> torch.Tensor:
    """Grey images (N, H, W) as the (N, 3, H, W) uint8 pixels a net takes: the grey repeated."""
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
