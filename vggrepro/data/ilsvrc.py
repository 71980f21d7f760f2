"""The ILSVRC-2012 layout: the reader of a split (images, labels, boxes) and its annotation files.

One reader serves a real ILSVRC-2012 copy and the embedded synthetic set (``vggrepro.data.synth``), which
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

The cheap fingerprint of a folder's files is here too (:func:`data_fingerprint`); a data set's identity
in a run key is :mod:`vggrepro.data.identity`'s.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

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


def read_voc_xml(
    path: str | Path, boxes: bool = True
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
            raise ValueError(
                f"{path}: <bndbox> needs numbers xmin, ymin, xmax, ymax, got {found}; fix or delete it"
            ) from None
        objects.append((name, check_box(coords, size, str(path))))
    return size, objects


def read_loc_csv(
    path: str | Path, boxes: bool = True
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
                    raise ValueError(
                        f"{path}: row {row[0]!r} has a box that is not numbers: "
                        f"{' '.join(parts[i : i + 5])!r}; fix or delete the row"
                    ) from None
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


def utf8_name(path: str) -> str:
    """The last part of ``path`` if the file's name is UTF-8; else a ValueError naming the file (with
    its bytes escaped, so that the message itself can be printed) and the fix. Such a name would be
    an encoding error, naming nothing, wherever the path is written: a run key, a log, a message."""
    name = os.path.basename(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ValueError(
            f"{shown}: the file's name is not UTF-8; rename it (e.g. with convmv) or move it out"
        ) from None
    return name


# -- the reader -----------------------------------------------------------------------------------


class ILSVRC:
    """One split of a data set in the ILSVRC-2012 layout (see the module docstring).

    Attributes: ``samples`` (list of :class:`Sample`), ``classes`` (sorted wnids; the label is the
    index), ``names`` (wnid -> name, from LOC_synset_mapping.txt when present), ``skipped`` (files
    passed over: not images, or val images without a label or with an unknown class), ``unlabelled``
    (those images alone: counted and reported by training and evaluation, never dropped in silence), ``corrupt``
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
        self.unlabelled: list[Path] = []
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
            warnings.warn(
                f"{len(empty)} class(es) of {self.split_dir} have no images: {empty[:5]}"
                + (" ..." if len(empty) > 5 else ""),
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.samples)

    def unlabelled_note(self) -> str | None:
        """One line on the images left out for want of a label (None when there are none)."""
        if not self.unlabelled:
            return None
        return (
            f"{len(self.unlabelled)} image(s) of {self.split_dir} have no label or one of no class of the set "
            f"(e.g. {self.unlabelled[0].name}) and are left out; label them (LOC_{self.split}_solution.csv "
            "or a class folder) to count them"
        )

    @property
    def usable(self) -> int:
        """The images that take part: all samples but those found not to decode (so far)."""
        return len(self.samples) - len(self.corrupt)

    def __repr__(self) -> str:
        return f"ILSVRC({str(self.root)!r}, {self.split!r}: {len(self.samples)} images, {len(self.classes)} classes)"

    # -- where the boxes are
    def _annotation_dirs(self, split: str) -> list[Path]:
        r = self.root
        return [
            r / "Annotation",
            r / "Annotations" / "CLS-LOC" / split,
            r / "ILSVRC" / "Annotations" / "CLS-LOC" / split,
        ]

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
                self._listings[folder] = {
                    e.name[:-4]: Path(e.path) for e in os.scandir(folder) if e.name.endswith(".xml")
                }
            except OSError:  # no such folder
                self._listings[folder] = {}
        return self._listings[folder]

    def _images_in(self, folder: Path) -> list[Path]:
        images = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_file():
                continue
            utf8_name(entry.path)
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
        return sorted(utf8_name(e.path) for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))

    def _read_folders(self, folder: Path, boxes: bool, table: dict | None, split: str) -> None:
        index = {w: i for i, w in enumerate(self.classes)}
        for wnid in self._class_folders(folder):
            images = self._images_in(folder / wnid)
            if wnid not in index:
                self.skipped += images
                self.unlabelled += images
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
                raise ValueError(
                    f"{self.split_dir} is flat but no LOC_val_solution.csv (or per-image XML) labels it. " + LAYOUTS
                )
        if not self.classes:
            self.classes = sorted({objs[0][0] for objs in table.values() if objs})
        index = {w: i for i, w in enumerate(self.classes)}
        for path in images:
            objects = table.get(path.stem)
            if not objects or objects[0][0] not in index:
                self.skipped.append(path)
                self.unlabelled.append(path)
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


# -- the data set's files ---------------------------------------------------------------------------


def data_fingerprint(root: str | Path) -> str:
    """A cheap identity of a data folder's contents: a digest of every file's path, size and
    modification time (no file is read), so a set edited in place gets a new run key. Files the
    package itself writes there (top-level ``*.json`` such as stats.json, hidden files) are left out."""
    root = Path(os.path.expanduser(str(root)))
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        top = Path(folder) == root
        for name in sorted(files):
            if name.startswith(".") or (top and name.endswith(".json")):
                continue
            st = os.stat(os.path.join(folder, name))
            rel = os.path.relpath(os.path.join(folder, name), root)
            # os.fsencode: a name that is not UTF-8 is hashed as its bytes (the same bytes for one that is)
            digest.update(os.fsencode(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n"))
    return digest.hexdigest()[:16]
