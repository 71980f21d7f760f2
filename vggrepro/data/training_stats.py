"""The training set's pixel statistics: the mean RGB (the paper's only pre-processing subtracts it)
and the PCA of the RGB values (AlexNet's colour shift, section 3.1), measured once and stored.

The same bits on every machine: the sums are exact integers and the 3x3 eigenproblem is solved by
Jacobi rotations in Python floats, never by a LAPACK that picks its code by processor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.files import atomic_write_json
from .ilsvrc import ILSVRC
from .images import CACHE_LIMIT, CorruptImage, decode_all, decode_image, files_identity
from .transforms import Preprocess


@dataclass(frozen=True)
class Stats:
    """Pixel statistics of a training set.

    ``mean_rgb`` in 0-255 units (the paper's only pre-processing subtracts it); ``eigval``/``eigvec``
    (columns) are the PCA of the RGB values measured in 0-1 units, for AlexNet's colour shift.
    """

    mean_rgb: tuple[float, float, float]
    eigval: torch.Tensor
    eigvec: torch.Tensor
    images: int = 0
    pixels: int = 0

    @property
    def pixel_std(self) -> float:
        """One standard deviation for all pixel values, in 0-255 units (from the PCA's variances)."""
        return float(self.eigval.sum().div(3).sqrt()) * 255.0

    def preprocess(self) -> Preprocess:
        """The paper's mean-RGB subtraction, then one division by the pixel std.

        The division is ours: it puts the input at unit variance, so that the fan-in initialisation
        of the reduced profiles starts every layer at unit variance too (the paper's nets, started
        with a fixed std on 0-255 inputs, needed net A to be trained first).
        """
        s = self.pixel_std
        return Preprocess(mean=self.mean_rgb, std=(s, s, s))

    def as_dict(self) -> dict:
        return dict(
            mean_rgb=list(self.mean_rgb),
            eigval=self.eigval.tolist(),
            eigvec=self.eigvec.tolist(),
            images=self.images,
            pixels=self.pixels,
        )

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        return cls(
            tuple(float(v) for v in d["mean_rgb"]),
            torch.tensor(d["eigval"], dtype=torch.float64).contiguous(),
            torch.tensor(d["eigvec"], dtype=torch.float64).contiguous(),
            int(d.get("images", 0)),
            int(d.get("pixels", 0)),
        )


def pixel_stats(images) -> Stats:
    """Mean RGB and PCA over all pixels of an iterable of uint8 (3, H, W) images.

    The same bits on every machine: the sums are exact integers, and the 3x3 eigenproblem is
    solved in Python floats (``symmetric_eigen``), not by a LAPACK that picks its code by processor.
    """
    total, outer, count, n = torch.zeros(3, dtype=torch.int64), torch.zeros(3, 3, dtype=torch.int64), 0, 0
    for img in images:
        x = img.reshape(3, -1).long()
        total += x.sum(1)
        outer += x @ x.T  # integers: exact, in any order
        count += x.shape[1]
        n += 1
    if not count:
        raise ValueError("no pixels to measure: the training set has no decodable images")
    mean = [int(t) / count for t in total]
    cov = [[(int(outer[i, j]) / count - mean[i] * mean[j]) / 255.0**2 for j in range(3)] for i in range(3)]
    eigval, eigvec = symmetric_eigen(cov)
    return Stats.from_dict(
        dict(mean_rgb=mean, eigval=[max(v, 0.0) for v in eigval], eigvec=eigvec, images=n, pixels=count)
    )


def symmetric_eigen(a: list[list[float]], sweeps: int = 50) -> tuple[list[float], list[list[float]]]:
    """Eigenvalues (largest first) and eigenvectors (columns, each with its largest entry positive)
    of a small symmetric matrix, by cyclic Jacobi rotations in Python floats: IEEE arithmetic and
    square roots only, so the result is the same on every processor."""
    m = len(a)
    a = [list(map(float, row)) for row in a]
    v = [[float(i == j) for j in range(m)] for i in range(m)]
    for _ in range(sweeps):
        if all(a[p][q] == 0.0 for p in range(m) for q in range(p + 1, m)):
            break
        for p in range(m):
            for q in range(p + 1, m):
                if a[p][q] == 0.0:
                    continue
                theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q])  # the rotation that zeroes a[p][q]
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(m):  # A <- A J (columns p, q)
                    akp, akq = a[k][p], a[k][q]
                    a[k][p], a[k][q] = c * akp - s * akq, s * akp + c * akq
                for k in range(m):  # A <- J^T A (rows p, q)
                    apk, aqk = a[p][k], a[q][k]
                    a[p][k], a[q][k] = c * apk - s * aqk, s * apk + c * aqk
                a[p][q] = a[q][p] = 0.0
                for k in range(m):  # V <- V J
                    vkp, vkq = v[k][p], v[k][q]
                    v[k][p], v[k][q] = c * vkp - s * vkq, s * vkp + c * vkq
    order = sorted(range(m), key=lambda i: -a[i][i])  # largest first, as AlexNet lists them
    values = [a[i][i] for i in order]
    vectors = [[v[r][i] for i in order] for r in range(m)]
    for j in range(m):  # a fixed sign per vector: its largest entry positive
        big = max(range(m), key=lambda r: abs(vectors[r][j]))
        if vectors[big][j] < 0:
            for r in range(m):
                vectors[r][j] = -vectors[r][j]
    return values, vectors


#: The keys of a stored ``stats.json``: a file there without them is not ours (a user's own).
STATS_KEYS = ("key", "max_images", "mean_rgb", "eigval", "eigvec")


#: How the package's own ``stats.json`` begins (``atomic_write_json``: sorted keys, indent 1).
OWN_START = '{\n "eigval": ['


def _ours(path: Path) -> bool:
    """Whether ``path`` is a ``stats.json`` this package wrote (or one that began as ours and was
    torn or cut by hand): only such a file may be written over."""
    try:
        text = path.read_text(errors="replace")
        d = json.loads(text)
    except ValueError:
        return text.startswith(OWN_START)
    except OSError:
        return False
    return isinstance(d, dict) and all(k in d for k in STATS_KEYS)


def _read_stats(path: Path, key: str, max_images: int) -> Stats | None:
    """The stored statistics at ``path`` if they are for these images; an unreadable file (torn by a
    crash, edited by hand) counts as absent, with a warning naming it, and is measured again; a file
    that is not ours (a user's own ``stats.json``) counts as absent."""
    if not path.is_file() or not _ours(path):
        return None
    try:
        d = json.loads(path.read_text())
        if d.get("key") != key or d.get("max_images") != max_images:
            return None  # other images (edited in place, added, removed) or another sample of them
        return Stats.from_dict(d)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        warnings.warn(f"{path} is unreadable ({type(e).__name__}); measuring the statistics again", stacklevel=3)
        return None


def dataset_stats(root: str | Path, *, max_images: int = 10_000, progress: bool = True) -> Stats:
    """The training set's mean RGB and colour PCA, computed once and stored as ``<root>/stats.json``.

    Measured over all training images, or ``max_images`` evenly spaced ones of a larger set
    (ImageNet). A read-only root, or one whose ``stats.json`` is not ours (a file of the user's own,
    which is never overwritten: a one-line note says where the statistics went instead), stores them
    in ``~/.cache/vggrepro/``. The file is keyed by the measured images' paths, sizes and modification
    times (:func:`files_identity`), so images edited in place are measured again.
    """
    root = Path(os.path.expanduser(str(root)))
    train = ILSVRC(root, "train", boxes=False)
    n = len(train.samples)
    chosen = range(n) if n <= max_images else [i * n // max_images for i in range(max_images)]
    key = files_identity(train, chosen)
    cache = (
        Path.home()
        / ".cache"
        / "vggrepro"
        / f"stats-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json"
    )
    for path in (root / "stats.json", cache):
        stored = _read_stats(path, key, max_images)
        if stored is not None:
            return stored
    if n <= min(max_images, CACHE_LIMIT):  # small: decode into the cache the loaders share
        decoded, _ = decode_all(train, progress)
        chosen = sorted(decoded)
        stats = pixel_stats(decoded[i] for i in chosen)
    else:
        stats = pixel_stats(_decoded_images(train, chosen, progress))
    record = dict(stats.as_dict(), key=key, max_images=max_images)
    own = root / "stats.json"
    if own.exists() and not _ours(own):  # a user's own file: leave it as it is
        print(f"note: {own} is not vggrepro's; the training statistics are kept in {cache}", file=sys.stderr)
        atomic_write_json(cache, record)
    else:
        try:
            atomic_write_json(own, record)
        except OSError:  # a read-only data folder
            atomic_write_json(cache, record)
    # What a later run will read, exactly: a run that measured the statistics and one that read them
    # must start from the same numbers in the same memory layout.
    return Stats.from_dict(json.loads(json.dumps(record)))


def _decoded_images(train, chosen, progress):
    for i in tqdm(chosen, desc="mean RGB and colour PCA", unit="img", disable=not progress, leave=False):
        try:
            yield decode_image(train.samples[i].path)
        except CorruptImage:
            pass
