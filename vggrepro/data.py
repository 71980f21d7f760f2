"""Data in the ILSVRC-2012 layout: the reader, decoding, the training-set statistics, and the loaders
that apply the paper's augmentation (section 3.1) for training and hand whole images to evaluation.

One reader serves a real ILSVRC-2012 copy and the embedded synthetic set (``vggrepro.synth``), which
is written in the same layout. Accepted layouts (under a data root)::

    train/<wnid>/<wnid>_<n>.JPEG             training images, one folder per class
      boxes: Annotation/<wnid>/<stem>.xml    (PASCAL VOC, the ILSVRC bounding-box release)
         or  LOC_train_solution.csv           (the Kaggle copy)
    val/<image>.JPEG + LOC_val_solution.csv  flat validation images, labels and boxes in the CSV
    val/<wnid>/<image>.JPEG                  or validation images in class folders,
      boxes: Annotation/<wnid>/<stem>.xml     with VOC boxes (also Annotation/val/<stem>.xml)
    LOC_synset_mapping.txt                   optional: "wnid name, name" per line

The Kaggle copy's nesting (``ILSVRC/Data/CLS-LOC/{train,val}`` and ``ILSVRC/Annotations/CLS-LOC``)
is found by itself. Classes are indexed by sorted wnid, the standard order.

Training batches are a pure function of (seed, epoch, step): the epoch's order comes from a generator
seeded by (seed, epoch), and the images of batch ``step`` take their scale, crop, flip and colour
shift from the numbers a generator seeded by (seed, epoch, step) draws for their positions in the
batch. A run resumed at any step therefore sees exactly the batches it would have seen, and the two
data paths (torch tensors, or PIL in DataLoader workers) and all DDP ranks draw the same choices.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from . import transforms as T
from .transforms import Preprocess

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
IMAGENET_COUNTS = {"train": 1_281_167, "val": 50_000}
IMAGENET_CLASSES = 1000

LAYOUTS = (
    "Accepted layouts: train/<wnid>/*.JPEG (boxes from Annotation/<wnid>/*.xml or LOC_train_solution.csv); "
    "val/*.JPEG with LOC_val_solution.csv, or val/<wnid>/*.JPEG (boxes from Annotation/<wnid>/*.xml); "
    "the Kaggle copy's ILSVRC/Data/CLS-LOC nesting is found too. See data/README.md."
)


@dataclass
class Sample:
    """One image: its file, class index and wnid, boxes (xmin, ymin, xmax, ymax) in the original
    image's pixels as the annotation gives them, and (width, height) when the annotation says."""

    path: Path
    label: int
    wnid: str
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    size: tuple[int, int] | None = None


# -- annotations ----------------------------------------------------------------------------------


def check_box(box, size: tuple[int, int] | None, where: str) -> tuple[float, float, float, float]:
    """``box`` (xmin, ymin, xmax, ymax) if it is finite, ordered and inside a ``size`` = (width, height)
    image (when known); otherwise a ValueError naming ``where``. A malformed box would otherwise
    become a wrong localisation target without anyone noticing."""
    xmin, ymin, xmax, ymax = box
    if not all(math.isfinite(v) for v in box) or min(box) < 0 or xmin > xmax or ymin > ymax:
        raise ValueError(f"{where}: box {list(box)} is not 0 <= xmin <= xmax, 0 <= ymin <= ymax; fix or delete it")
    if size is not None and (xmax > size[0] or ymax > size[1]):
        raise ValueError(f"{where}: box {list(box)} lies outside the {size[0]}x{size[1]} image; fix or delete it")
    return box


def read_voc_xml(path: str | Path, boxes: bool = True
                 ) -> tuple[tuple[int, int] | None, list[tuple[str, tuple[float, float, float, float] | None]]]:
    """A PASCAL-VOC file: ((width, height) or None, [(wnid, (xmin, ymin, xmax, ymax)), ...]).

    A file that does not parse, or a box that is not four numbers inside the image (:func:`check_box`),
    is a ValueError naming the file. ``boxes=False`` reads only the class names (each box is None),
    for a reader that needs labels and not boxes.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise ValueError(f"{path}: not a readable PASCAL-VOC file ({e}); fix or delete it") from None
    size = None
    w, h = root.findtext("size/width"), root.findtext("size/height")
    if boxes and w and h:
        try:
            w, h = int(w), int(h)
        except ValueError:
            raise ValueError(f"{path}: <size> is not whole numbers ({w!r}, {h!r}); fix or delete it") from None
        size = (w, h) if w > 0 and h > 0 else None  # some ILSVRC files say 0: size unknown
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            continue
        name = obj.findtext("name", "").strip()
        if not boxes:
            objects.append((name, None))
            continue
        try:
            coords = tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):  # a missing field (None) or not a number
            found = {k: box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")}
            raise ValueError(f"{path}: <bndbox> needs numbers xmin, ymin, xmax, ymax, got {found}; "
                             "fix or delete it") from None
        objects.append((name, check_box(coords, size, str(path))))
    return size, objects


def read_loc_csv(path: str | Path, boxes: bool = True
                 ) -> dict[str, list[tuple[str, tuple[float, float, float, float] | None]]]:
    """A Kaggle ``LOC_*_solution.csv``: ImageId -> [(wnid, box), ...] from "wnid xmin ymin xmax ymax ...".

    A row whose box is not four numbers with 0 <= min <= max is a ValueError naming the file and the
    row (the CSV gives no image size; :class:`ILSVRC` checks the boxes against the images).
    ``boxes=False`` reads only the class names (each box is None).
    """
    out: dict[str, list] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise ValueError(f"{path}: expected the header 'ImageId,PredictionString', got {header}")
        for row in reader:
            if len(row) < 2:
                continue
            parts = row[1].split()
            if len(parts) % 5:
                raise ValueError(f"{path}: row {row[0]!r} does not hold groups of 'wnid xmin ymin xmax ymax'")
            objects = []
            for i in range(0, len(parts), 5):
                if not boxes:
                    objects.append((parts[i], None))
                    continue
                try:
                    coords = tuple(float(v) for v in parts[i + 1 : i + 5])
                except ValueError:
                    raise ValueError(f"{path}: row {row[0]!r} has a box that is not numbers: "
                                     f"{' '.join(parts[i : i + 5])!r}; fix or delete the row") from None
                objects.append((parts[i], check_box(coords, None, f"{path}, row {row[0]!r}")))
            out[row[0].strip()] = objects
    return out


def read_synset_mapping(path: str | Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt``: wnid -> name (the first of its comma-separated names is kept whole)."""
    names = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            wnid, _, name = line.strip().partition(" ")
            names[wnid] = name.strip()
    return names


# -- the reader -----------------------------------------------------------------------------------


def _first_dir(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


class ILSVRC:
    """One split of a data set in the ILSVRC-2012 layout (see the module docstring).

    Attributes: ``samples`` (list of :class:`Sample`), ``classes`` (sorted wnids; the label is the
    index), ``names`` (wnid -> name, from LOC_synset_mapping.txt when present), ``skipped`` (files
    passed over: not images, or val images without a label or with an unknown class), ``corrupt``
    (images that a loader or evaluation found not to decode; ``usable`` counts the others).
    ``boxes=False`` skips reading the annotations (faster on ImageNet's 544k training XML files, and
    what training needs). With boxes, an annotation that does not parse or holds a box outside its
    image is a ValueError naming the file (and how many others), never a silently wrong target.
    """

    def __init__(self, root: str | Path, split: str = "train", *, boxes: bool = True):
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r}: use 'train' or 'val'")
        self.root = Path(os.path.expanduser(str(root)))
        if not self.root.is_dir():
            raise FileNotFoundError(f"data root {self.root} not found. {LAYOUTS}")
        self.split = split
        # the Kaggle copy nests images under ILSVRC/Data/CLS-LOC and annotations under ILSVRC/Annotations
        kaggle = self.root / "ILSVRC" / "Data" / "CLS-LOC"
        self.image_root = kaggle if (kaggle / split).is_dir() and not (self.root / split).is_dir() else self.root
        self.split_dir = self.image_root / split
        if not self.split_dir.is_dir():
            raise FileNotFoundError(f"no {split}/ folder in {self.root}. {LAYOUTS}")
        mapping = self.root / "LOC_synset_mapping.txt"
        self.names: dict[str, str] = read_synset_mapping(mapping) if mapping.is_file() else {}
        self.skipped: list[Path] = []
        self.corrupt: set[Path] = set()
        self.samples: list[Sample] = []
        self.classes: list[str] = []
        self._listings: dict[Path, dict[str, Path]] = {}
        self._bad: list[str] = []  # malformed annotations, reported together once all are read
        if split == "train":
            self._read_train(boxes)
        else:
            self._read_val(boxes)
        del self._listings  # only needed while reading
        if self._bad:
            more = f" (and {len(self._bad) - 1} more annotation(s))" if len(self._bad) > 1 else ""
            raise ValueError(f"{self._bad[0]}{more}")
        if not self.samples:
            raise ValueError(f"no labelled images in {self.split_dir}. {LAYOUTS}")
        empty = sorted(set(self.classes) - {s.wnid for s in self.samples})
        if empty:
            warnings.warn(f"{len(empty)} class(es) of {self.split_dir} have no images: {empty[:5]}"
                          + (" ..." if len(empty) > 5 else ""), stacklevel=2)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def usable(self) -> int:
        """The images that take part: all samples but those found not to decode (so far)."""
        return len(self.samples) - len(self.corrupt)

    def __repr__(self) -> str:
        return f"ILSVRC({str(self.root)!r}, {self.split!r}: {len(self.samples)} images, {len(self.classes)} classes)"

    # -- where the boxes are
    def _annotation_dirs(self, split: str) -> list[Path]:
        r = self.root
        return [r / "Annotation", r / "Annotations" / "CLS-LOC" / split, r / "ILSVRC" / "Annotations" / "CLS-LOC" / split]

    def _csv(self, split: str, boxes: bool) -> dict | None:
        path = self.root / f"LOC_{split}_solution.csv"
        return read_loc_csv(path, boxes) if path.is_file() else None

    def _voc(self, xml: Path, boxes: bool):
        """read_voc_xml, with a malformed file noted (all are named together at the end) and read as empty."""
        try:
            return read_voc_xml(xml, boxes)
        except ValueError as e:
            self._bad.append(str(e))
            return None, []

    def _csv_boxes(self, path: Path, bxs: list, split: str):
        """Boxes from LOC_<split>_solution.csv (which gives no image size), checked against the image's."""
        if bxs:
            try:
                with Image.open(path) as im:  # reads the header only
                    size = im.size
            except Exception:  # an image that does not decode: the loaders skip it
                return bxs
            try:
                for b in bxs:
                    check_box(b, size, f"{self.root / f'LOC_{split}_solution.csv'}, row {path.stem!r}")
            except ValueError as e:
                self._bad.append(str(e))
                return []
        return bxs

    def _xml_for(self, stem: str, wnid: str | None, folder: Path, split: str) -> Path | None:
        """The VOC file of an image: beside it, or in an annotation folder (by class, flat, or per split)."""
        candidates = [folder]
        for d in self._annotation_dirs(split):
            candidates += ([d / wnid] if wnid else []) + [d, d / split]
        for d in candidates:
            hit = self._xml_files(d).get(stem)
            if hit is not None:
                return hit
        return None

    def _xml_files(self, folder: Path) -> dict[str, Path]:
        """stem -> path of the .xml files in a folder, listed once (ImageNet has 544k of them)."""
        if folder not in self._listings:
            try:
                self._listings[folder] = {e.name[:-4]: Path(e.path) for e in os.scandir(folder)
                                          if e.name.endswith(".xml")}
            except OSError:  # no such folder
                self._listings[folder] = {}
        return self._listings[folder]

    def _images_in(self, folder: Path) -> list[Path]:
        images = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_file():
                continue
            path = Path(entry.path)
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            elif path.suffix.lower() != ".xml":  # annotations may sit beside the images
                self.skipped.append(path)
        return images

    def _boxes(self, path: Path, wnid: str, table: dict | None, boxes: bool, split: str):
        """(boxes of class ``wnid``, size) of one image, from the CSV table or its XML file."""
        if not boxes:
            return [], None
        if table is not None:
            return self._csv_boxes(path, [b for w, b in table.get(path.stem, []) if w == wnid], split), None
        xml = self._xml_for(path.stem, wnid, path.parent, split)
        if xml is None:
            return [], None
        size, objects = self._voc(xml, boxes)
        return [b for w, b in objects if w == wnid], size

    # -- the two splits
    def _class_folders(self, folder: Path) -> list[str]:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))

    def _read_folders(self, folder: Path, boxes: bool, table: dict | None, split: str) -> None:
        index = {w: i for i, w in enumerate(self.classes)}
        for wnid in self._class_folders(folder):
            images = self._images_in(folder / wnid)
            if wnid not in index:
                self.skipped += images
                continue
            for path in images:
                bxs, size = self._boxes(path, wnid, table, boxes, split)
                self.samples.append(Sample(path, index[wnid], wnid, bxs, size))

    def _read_train(self, boxes: bool) -> None:
        self.classes = self._class_folders(self.split_dir)
        if not self.classes:
            raise ValueError(f"{self.split_dir} holds no class folders. {LAYOUTS}")
        table = self._csv("train", boxes) if boxes else None
        self._read_folders(self.split_dir, boxes, table, "train")

    def _read_val(self, boxes: bool) -> None:
        train_dir = self.image_root / "train"
        folders = self._class_folders(self.split_dir)
        if train_dir.is_dir() and self._class_folders(train_dir):
            self.classes = self._class_folders(train_dir)  # val is labelled in train's class order
        elif self.names:
            self.classes = sorted(self.names)
        table = self._csv("val", boxes)
        if folders:  # val/<wnid>/ class folders
            if not self.classes:
                self.classes = folders
            self._read_folders(self.split_dir, boxes, table if boxes else None, "val")
            return
        images = self._images_in(self.split_dir)
        from_csv = table is not None
        if table is None:  # flat val labelled by one XML per image
            table = {}
            for path in images:
                xml = self._xml_for(path.stem, None, path.parent, "val")
                if xml is not None:
                    table[path.stem] = self._voc(xml, boxes)[1]
            if not table and images:
                raise ValueError(f"{self.split_dir} is flat but no LOC_val_solution.csv (or per-image XML) labels it. "
                                 + LAYOUTS)
        if not self.classes:
            self.classes = sorted({objs[0][0] for objs in table.values() if objs})
        index = {w: i for i, w in enumerate(self.classes)}
        for path in images:
            objects = table.get(path.stem)
            if not objects or objects[0][0] not in index:
                self.skipped.append(path)
                continue
            wnid = objects[0][0]
            bxs = [b for w, b in objects if w == wnid] if boxes else []
            if from_csv:
                bxs = self._csv_boxes(path, bxs, "val")
            self.samples.append(Sample(path, index[wnid], wnid, bxs, None))


def check_imagenet_counts(ds: ILSVRC) -> bool:
    """Compare a split with ILSVRC-2012's 1,281,167 train / 50,000 val images and 1000 classes.

    Warns with what differs (a partial copy, or a different release) and returns whether all match.
    """
    expected = IMAGENET_COUNTS[ds.split]
    found = len(ds.samples)
    ok = found == expected and len(ds.classes) == IMAGENET_CLASSES
    if not ok:
        warnings.warn(
            f"{ds.split_dir}: found {found:,} labelled images in {len(ds.classes)} classes, but ILSVRC-2012 "
            f"{ds.split} has {expected:,} images in {IMAGENET_CLASSES} classes ({len(ds.skipped)} files skipped). "
            "A partial or different copy gives numbers that cannot be compared with the paper's.",
            stacklevel=2,
        )
    return ok


# -- decoding -------------------------------------------------------------------------------------


class CorruptImage(Exception):
    """An image file that cannot be decoded; ``path`` names it."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot decode {path}: {reason}")
        self.path = Path(path)


def decode_image(path: str | Path) -> torch.Tensor:
    """An image file as a uint8 RGB tensor (3, H, W) (CMYK, grayscale, palette converted by PIL).

    The tensor is a (3, H, W) view of (H, W, 3) memory, which the resize kernels prefer. A file that
    does not decode raises :class:`CorruptImage`.
    """
    try:
        with Image.open(path) as im:
            pixels = np.array(im.convert("RGB"))
    except Exception as e:  # truncated, not an image, unsupported mode ...
        raise CorruptImage(path, f"{type(e).__name__}: {e}") from None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _warn_skipped(paths: list[Path], where: str) -> None:
    if paths:
        warnings.warn(f"skipped {len(paths)} image(s) of {where} that do not decode, e.g. {paths[0]}; "
                      "they are listed in the loader's .skipped", stacklevel=3)


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
        h.update(f"{path.relative_to(dataset.root)} {tag}\n".encode())
    return h.hexdigest()


def decode_all(dataset: ILSVRC, progress: bool = True) -> tuple[dict[int, torch.Tensor], list[Path]]:
    """Every image of a split decoded into memory: ({sample index: image}, corrupt paths). Cached
    in this process while the files stay as they were (see :func:`files_identity`)."""
    key = (str(dataset.root), dataset.split, files_identity(dataset))
    if key not in _DECODED:
        from tqdm import tqdm

        images, bad = {}, []
        for i, s in enumerate(tqdm(dataset.samples, desc=f"decoding {dataset.split}", unit="img",
                                   disable=not progress, leave=False)):
            try:
                images[i] = decode_image(s.path)
            except CorruptImage:
                bad.append(s.path)
        while len(_DECODED) >= 2:  # keep the memory bounded: train and val of one set
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[key] = (images, bad)
    dataset.corrupt.update(_DECODED[key][1])
    return _DECODED[key]


# -- the training set's statistics: mean RGB and the PCA for the colour shift ----------------------


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
        return dict(mean_rgb=list(self.mean_rgb), eigval=self.eigval.tolist(), eigvec=self.eigvec.tolist(),
                    images=self.images, pixels=self.pixels)

    @classmethod
    def from_dict(cls, d: dict) -> "Stats":
        return cls(tuple(float(v) for v in d["mean_rgb"]),
                   torch.tensor(d["eigval"], dtype=torch.float64).contiguous(),
                   torch.tensor(d["eigvec"], dtype=torch.float64).contiguous(),
                   int(d.get("images", 0)), int(d.get("pixels", 0)))


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
    return Stats.from_dict(dict(mean_rgb=mean, eigval=[max(v, 0.0) for v in eigval], eigvec=eigvec,
                                images=n, pixels=count))


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


def _read_stats(path: Path, key: str, max_images: int) -> Stats | None:
    """The stored statistics at ``path`` if they are for these images; an unreadable file (torn by a
    crash, edited by hand) counts as absent, with a warning naming it, and is measured again."""
    if not path.is_file():
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
    (ImageNet). A read-only root stores the file in ``~/.cache/vggrepro/`` instead. The file is
    keyed by the measured images' paths, sizes and modification times (:func:`files_identity`), so
    images edited in place are measured again.
    """
    from .checkpoints import atomic_write_json

    root = Path(os.path.expanduser(str(root)))
    train = ILSVRC(root, "train", boxes=False)
    n = len(train.samples)
    chosen = range(n) if n <= max_images else [i * n // max_images for i in range(max_images)]
    key = files_identity(train, chosen)
    cache = Path.home() / ".cache" / "vggrepro" / f"stats-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json"
    for path in (root / "stats.json", cache):
        stored = _read_stats(path, key, max_images)
        if stored is not None:
            return stored
    if n <= min(max_images, EvalImages.CACHE_LIMIT):  # small: decode into the cache the loaders share
        decoded, _ = decode_all(train, progress)
        chosen = sorted(decoded)
        stats = pixel_stats(decoded[i] for i in chosen)
    else:
        stats = pixel_stats(_decoded_images(train, chosen, progress))
    record = dict(stats.as_dict(), key=key, max_images=max_images)
    try:
        atomic_write_json(root / "stats.json", record)
    except OSError:
        atomic_write_json(cache, record)
    # What a later run will read, exactly: a run that measured the statistics and one that read them
    # must start from the same numbers in the same memory layout.
    return Stats.from_dict(json.loads(json.dumps(record)))


def _decoded_images(train, chosen, progress):
    from tqdm import tqdm

    for i in tqdm(chosen, desc="mean RGB and colour PCA", unit="img", disable=not progress, leave=False):
        try:
            yield decode_image(train.samples[i].path)
        except CorruptImage:
            pass


def ensure_synthetic(profile, *, out: str | Path | None = None, seed: int | None = None,
                     verbose: bool = True) -> Path:
    """The profile's synthetic set: generated when missing, verified against its manifest otherwise.

    Prints one line saying which (unless ``verbose=False``).
    """
    from . import synth

    return synth.ensure(profile, out=out, seed=seed, progress=verbose, log=print if verbose else (lambda *_: None))


# -- the paper's training augmentation, per image ---------------------------------------------------


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

    def view(self, pos: int, h: int, w: int, scale: int | tuple[int, int], crop: int) -> View:
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


def finish_batch(crops: torch.Tensor, alphas: torch.Tensor, preprocess: Preprocess, stats: Stats | None,
                 device: str | torch.device) -> torch.Tensor:
    """uint8 crops (N, crop, crop, 3) -> float32 (N, 3, crop, crop), channels-last in memory, with the
    colour shift (when ``stats`` is given) and then ``preprocess`` (mean subtraction).

    Equal to ``preprocess(colour_shift_by(x, alphas, ...))`` (a test checks it), but done in one pass
    over channels-last memory, where adding a per-channel offset is several times faster.
    """
    x = crops.to(device, non_blocking=True).float()
    mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=x.device)
    offset = -mean.expand(len(x), 3)
    if stats is not None:  # AlexNet's shift: eigvec @ (alpha * eigval), in 0-255 units
        offset = offset + T.rgb_shift(alphas.to(x.device), stats.eigval, stats.eigvec)
    x += offset.reshape(len(x), 1, 1, 3)
    if tuple(preprocess.std) != (1.0, 1.0, 1.0):
        x /= torch.tensor(preprocess.std, dtype=torch.float32, device=x.device)
    x = x.permute(0, 3, 1, 2)
    return x.flip(1) if preprocess.order == "BGR" else x


class TrainLoader:
    """Training batches with the paper's augmentation (section 3.1).

    Each image is rescaled isotropically so that its smaller side is S (``scale`` an int: fixed S; a
    pair: S drawn per image, uniform in [Smin, Smax]), a random ``crop`` x ``crop`` window is cut
    out, flipped at random, colour-shifted (when ``stats`` is given) and mean-subtracted by
    ``preprocess``.

    ``backend="tensor"`` decodes every image once into memory and crops with torch (the synthetic
    sets); on CUDA with torchvision it keeps the JPEG bytes and decodes each batch on the GPU.
    ``backend="pil"`` decodes and crops with PIL in ``workers`` DataLoader processes (ImageNet).
    Both give the same batches within resampling tolerance.

    ``len(loader)`` is the number of batches per epoch; ``loader.batches(epoch, start_step)`` yields
    ``(x, y)``: x float32 (N, 3, crop, crop) (channels-last memory), y int64 (N,). A batch depends only
    on (seed, epoch, step). Under DDP pass ``rank``/``world_size``: each process gets its share of
    every global batch of ``batch_size`` images. Images that do not decode are skipped with one
    warning and listed in ``loader.skipped``; a batch that held one is one image shorter.
    """

    JPEG_CACHE_LIMIT = 200_000  # GPU path: files kept in memory up to this many, read per batch beyond

    def __init__(self, dataset: ILSVRC, *, crop: int, scale: int | tuple[int, int], batch_size: int,
                 preprocess: Preprocess, stats: Stats | None = None, seed: int = 0, device: str = "cpu",
                 backend: str = "tensor", workers: int = 0, drop_last: bool = True, rank: int = 0,
                 world_size: int = 1, colour_std: float = 0.1, progress: bool = True):
        if backend not in ("tensor", "pil"):
            raise ValueError(f"backend={backend!r}: use 'tensor' (in memory) or 'pil' (DataLoader workers)")
        smin = scale if isinstance(scale, int) else scale[0]
        if not isinstance(scale, int):
            scale = (int(scale[0]), int(scale[1]))
            if scale[0] > scale[1]:
                raise ValueError(f"scale={scale}: Smin > Smax")
        if smin < crop:
            raise ValueError(f"scale S={scale} is smaller than the crop {crop}: S must be >= crop")
        if batch_size < world_size or not 0 <= rank < world_size:
            raise ValueError(f"batch_size={batch_size}, rank={rank}, world_size={world_size}: need 0 <= rank < "
                             "world_size <= batch_size")
        self.dataset, self.crop, self.scale, self.batch_size = dataset, crop, scale, batch_size
        self.preprocess, self.stats, self.seed = preprocess, stats, seed
        self.device, self.backend, self.workers, self.drop_last = torch.device(device), backend, workers, drop_last
        self.rank, self.world_size, self.colour_std, self.progress = rank, world_size, colour_std, progress
        self.skipped: list[Path] = []
        self._warned = False
        self._images: dict[int, torch.Tensor] | None = None
        self._jpegs: dict[int, bytes] | None = None
        self._at_S: dict[int, torch.Tensor] = {}  # fixed S: the rescaled images, made once
        self.indices = list(range(len(dataset.samples)))  # the samples that take part
        if backend == "tensor":
            tv = _gpu_decoder() if self.device.type == "cuda" else None
            if tv is not None:  # keep the files' bytes in memory when the set is small enough
                small = len(dataset.samples) <= self.JPEG_CACHE_LIMIT
                self._jpegs = {i: s.path.read_bytes() for i, s in enumerate(dataset.samples)} if small else {}
            else:
                self._images, bad = decode_all(dataset, progress)
                self._skip(bad)
                self.indices = sorted(self._images)

    def _skip(self, paths) -> None:
        new = [Path(p) for p in paths if Path(p) not in set(self.skipped)]
        self.skipped += new
        self.dataset.corrupt.update(new)
        if new and not self._warned:
            self._warned = True
            _warn_skipped(new, str(self.dataset.split_dir))

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

    def batches(self, epoch: int, start_step: int = 0, stop: int | None = None
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
        crops = torch.empty(len(plan), self.crop, self.crop, 3, dtype=torch.uint8, device=self.device)
        for j, ((i, pos), img) in enumerate(zip(plan, images)):
            v = draws.view(pos, img.shape[1], img.shape[2], self.scale, self.crop)
            rescaled = self._rescaled(i, img, v)
            out = T.crop(rescaled, v.top, v.left, self.crop)
            crops[j] = (T.hflip(out) if v.flip else out).permute(1, 2, 0)
        alphas = draws.alphas[[pos for _, pos in plan]]
        y = torch.tensor([self.dataset.samples[i].label for i, _ in plan], dtype=torch.int64)
        return finish_batch(crops, alphas, self.preprocess, self.stats, self.device), y.to(self.device)

    def _rescaled(self, i: int, img: torch.Tensor, v: View) -> torch.Tensor:
        """The image rescaled to S; at a fixed S, kept after the first epoch (the same every time)."""
        if isinstance(self.scale, int) and self._images is not None:
            if i not in self._at_S:
                self._at_S[i] = T.resize(img, v.size)
            return self._at_S[i]
        return T.resize(img.to(self.device, non_blocking=True), v.size)

    def _decode_gpu(self, plan):
        """Decode a batch's JPEGs on the GPU (torchvision); files nvjpeg refuses go through PIL."""
        tv = _gpu_decoder()
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
            jobs, batch_size=None, sampler=list(steps), num_workers=self.workers,
            pin_memory=self.device.type == "cuda", worker_init_fn=_one_thread,
            persistent_workers=False, prefetch_factor=4 if self.workers else None,
        )
        for crops, alphas, y, bad in loader:
            self._skip(bad)
            yield finish_batch(crops, alphas, self.preprocess, self.stats, self.device), y.to(self.device)


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
                    im = im.convert("RGB")
                    v = draws.view(pos, im.height, im.width, self.scale, self.crop)
                    crops.append(crop_view_pil(im, v, self.crop))
            except Exception:
                bad.append(str(sample.path))
                continue
            positions.append(pos)
            labels.append(sample.label)
        crops_t = torch.from_numpy(np.stack(crops)) if crops else torch.empty(0, self.crop, self.crop, 3, dtype=torch.uint8)
        return crops_t, draws.alphas[positions], torch.tensor(labels, dtype=torch.int64), bad


def _gpu_decoder():
    """torchvision when it imports and can decode JPEG on the GPU, else None."""
    from .optional import torchvision_or_none

    tv = torchvision_or_none()
    return tv if tv is not None and torch.cuda.is_available() and hasattr(tv.io, "decode_jpeg") else None


# -- evaluation: whole images --------------------------------------------------------------------------


class EvalImages:
    """The images of a split, whole, for evaluation: iterating gives ``(index, uint8 (3, H, W), label)``.

    ``index`` is the position in ``dataset.samples`` (its boxes are there). With ``cache`` the images
    are decoded once and kept in memory (shared with a TrainLoader of the same split); sets of more
    than ``CACHE_LIMIT`` images (ImageNet's val) are read from disk each time. Images that do not
    decode are skipped with one warning and listed in ``.skipped``.
    """

    CACHE_LIMIT = 20_000

    def __init__(self, dataset: ILSVRC, *, cache: bool = True, progress: bool = False):
        self.dataset = dataset
        self.cache = cache and len(dataset.samples) <= self.CACHE_LIMIT
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
            _warn_skipped(new, str(self.dataset.split_dir))


# -- the command line: vggrepro data synth | check ---------------------------------------------------


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="make the synthetic data sets; check a data folder",
                              description="Make the synthetic sets, or check a folder in the ILSVRC-2012 layout.")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    s = sub.add_parser("synth", help="generate (or find and verify) a profile's synthetic set")
    s.add_argument("--profile", default="ci", choices=["ci", "gpu"])
    s.add_argument("--out", default=None, help="where to write it (default: the profile's data_root)")
    s.add_argument("--seed", type=int, default=None, help="generator seed (default: the profile's)")
    s.set_defaults(func=_cmd_synth)
    c = sub.add_parser("check", help="count images, classes and skipped files of a data folder "
                       "(exit status 1 when it finds problems)")
    c.add_argument("--root", required=True, help="the data root (ILSVRC-2012 layout)")
    c.add_argument("--decode", action="store_true", help="also decode every image and list those that fail")
    c.set_defaults(func=_cmd_check)


def _cmd_synth(args) -> int:
    ensure_synthetic(args.profile, out=args.out, seed=args.seed, verbose=True)
    return 0


def _cmd_check(args) -> int:
    root = Path(os.path.expanduser(args.root))
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} not found. {LAYOUTS}")
    problems = 0  # what training or evaluation would refuse or leave out; stray non-image files are not
    if (root / "manifest.json").is_file():
        from . import synth

        try:
            manifest = synth.verify(root)
            print(f"{root}: synthetic set, {len(manifest['files'])} files match manifest.json (digest "
                  f"{manifest['digest'][:12]})")
        except ValueError as e:
            print(e)
            problems += 1
    for split in ("train", "val"):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = ILSVRC(root, split)
        except (FileNotFoundError, ValueError) as e:
            print(f"{split}: {e}")
            problems += 1
            continue
        for w in caught:  # e.g. class folders without images
            print(f"{split}: {w.message}")
            problems += 1
        unused = [p for p in ds.skipped if p.suffix.lower() in IMAGE_SUFFIXES]
        if unused:
            print(f"{split}: {len(unused)} image(s) without a label or of an unknown class, e.g. {unused[0]}")
            problems += 1
        with_boxes = sum(1 for s in ds.samples if s.boxes)
        print(f"{split}: {len(ds.samples):,} images, {len(ds.classes)} classes, {with_boxes:,} with boxes, "
              f"{len(ds.skipped)} files skipped")
        names = [f"{w} ({ds.names[w]})" if w in ds.names else w for w in ds.classes[:3]]
        print(f"  classes: {', '.join(names)}{' ...' if len(ds.classes) > 3 else ''}")
        for path in ds.skipped[:5]:
            print(f"  skipped: {path}")
        if len(ds.classes) == IMAGENET_CLASSES:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ok = check_imagenet_counts(ds)
            print(f"  ILSVRC-2012 counts: {'as expected' if ok else caught[-1].message}")
        if args.decode:
            bad = []
            for s in ds.samples:
                try:
                    decode_image(s.path)
                except CorruptImage:
                    bad.append(s.path)
            print(f"  decoded: {len(ds.samples) - len(bad):,} ok, {len(bad)} corrupt")
            for path in bad[:20]:
                print(f"  corrupt: {path}")
            problems += bool(bad)
    if problems:
        print(f"vggrepro data check: {root}: found {problems} problem(s), listed above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m vggrepro.data ...
    parser = argparse.ArgumentParser(prog="vggrepro")
    register(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args()
    sys.exit(a.func(a))
