"""The embedded synthetic data set, written in the ILSVRC-2012 layout so one reader serves it and ImageNet.

Every image holds one labelled object on a cluttered background. A class is an object family, a
shape x texture pair ("striped triangle"); colours are random per instance, so colour alone says
nothing about the class. The object's box has a smaller side of 30-90% of the image's smaller side
(a profile may narrow it: the ci set's objects take 50-90%, see ``profiles``),
at a random position, and images vary in size and aspect ratio: scale matters, as it does in
ImageNet. Unlabelled fragments of other shapes and textured patches sit in the background.

The layout (``out`` is the data root)::

    train/<wnid>/<wnid>_<n>.JPEG       training images, n = 1, 2, ...
    Annotation/<wnid>/<wnid>_<n>.xml   PASCAL-VOC box of each training image
    val/synth_val_<nnnnnnnn>.JPEG      validation images, flat
    LOC_val_solution.csv               ImageId,PredictionString ("wnid xmin ymin xmax ymax")
    LOC_synset_mapping.txt             "wnid name" per line, in class order
    manifest.json                      the settings, and the SHA-256 of every file above

Boxes are in pixel-edge coordinates: xmin/ymin is the first covered column/row, xmax/ymax one past the
last. Everything is a function of the seed: each image draws from its own numpy Generator seeded with
(seed, split, class, index), JPEGs are written with fixed settings and no metadata, so the same seed
gives byte-identical files whatever the order of generation.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

FORMAT = "vggrepro-synthetic/1"
JPEG_SETTINGS = dict(format="JPEG", quality=90, subsampling="4:2:0", optimize=False, progressive=False)
# The three difficulty knobs a profile may set (its synth_box_fraction, synth_rotation and
# synth_background_fade); these are the defaults.
BOX_FRACTION = (0.30, 0.90)  # the box's smaller side, as a fraction of the image's smaller side
ASPECT = (0.7, 1 / 0.7)  # image width / height: a bit beyond 3:4 .. 4:3
SPLITS = {"train": 1, "val": 2}
BACKGROUND_TEXTURE = 0.3  # the share of backgrounds that carry a faint texture
FRAGMENTS = (0, 1)  # unlabelled fragments per image: at least, at most
BLOBS = (1, 3)  # plain ellipses and rectangles in the background: at least, at most
LINES = (0, 4)  # straight lines in the background: at least, at most
BACKGROUND_FADE = 0.0  # blend the background this far toward flat grey: the object stands out more
ROTATION = 180.0  # the labelled object turns by up to this many degrees either way
STRIPES = (3.5, 6.0)  # texture periods per object: an object's smaller side holds this many

# -- shapes: unit polygons (a list of (polygon, fill) drawn in order; fill 0 cuts a hole) ----------


def _regular(n: int, r: float = 1.0, phase: float = 0.0) -> list[tuple[float, float]]:
    return [(r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    outer = _regular(2 * points, 1.0, -math.pi / 2)
    return [(x * (1 if i % 2 == 0 else inner), y * (1 if i % 2 == 0 else inner)) for i, (x, y) in enumerate(outer)]


def _heart() -> list[tuple[float, float]]:
    pts = []
    for i in range(40):
        t = 2 * math.pi * i / 40
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        pts.append((x / 16, y / 16))
    return pts


SHAPES: dict[str, list[tuple[list[tuple[float, float]], int]]] = {
    "circle": [(_regular(48), 255)],
    "triangle": [(_regular(3, 1.0, -math.pi / 2), 255)],
    "square": [(_regular(4, 1.0, math.pi / 4), 255)],
    "star": [(_star(), 255)],
    "cross": [([(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1),
                (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)], 255)],
    "ring": [(_regular(48), 255), (_regular(48, 0.55), 0)],
    "crescent": [(_regular(48), 255), ([(x + 0.55, y - 0.1) for x, y in _regular(48, 0.85)], 0)],
    "hexagon": [(_regular(6), 255)],
    "arrow": [([(-1, -0.25), (0.2, -0.25), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.25), (-1, 0.25)], 255)],
    "heart": [(_heart(), 255)],
}

#: Shapes no training class uses at any profile (:func:`class_list` draws from SHAPES alone): the
#: sets of new classes that test the nets' features on objects they never saw (Appendix B) use them.
NOVEL_SHAPES: dict[str, list[tuple[list[tuple[float, float]], int]]] = {
    "tee": [([(-1, -1), (1, -1), (1, -0.45), (0.28, -0.45), (0.28, 1), (-0.28, 1), (-0.28, -0.45),
              (-1, -0.45)], 255)],
    "chevron": [([(-1, -0.7), (0, 0.05), (1, -0.7), (1, 0.1), (0, 0.85), (-1, 0.1)], 255)],
    "half-disc": [([(math.cos(math.pi * i / 24), -math.sin(math.pi * i / 24)) for i in range(25)], 255)],
}
_ALL_SHAPES = {**SHAPES, **NOVEL_SHAPES}

#: Textures, in the order classes use them (the ci set's 20 classes use the first four).
TEXTURES = ("plain", "striped", "checked", "dotted", "grid", "ringed", "zigzag", "speckled", "blotched", "brick")


@dataclass(frozen=True)
class SynthClass:
    wnid: str
    shape: str
    texture: str

    @property
    def name(self) -> str:
        return f"{self.texture} {self.shape}"


def class_list(num_classes: int) -> list[SynthClass]:
    """The classes: ``ceil(sqrt(K))`` shapes crossed with enough textures (20 -> 5 x 4, 100 -> 10 x 10).

    wnids are n00000001, n00000002, ... so sorting them gives class order.
    """
    max_classes = len(SHAPES) * len(TEXTURES)
    if not 2 <= num_classes <= max_classes:
        raise ValueError(f"num_classes={num_classes}: the generator makes 2..{max_classes} classes")
    n_shapes = min(len(SHAPES), math.ceil(math.sqrt(num_classes)))
    shapes = list(SHAPES)[:n_shapes]
    return [
        SynthClass(f"n{k + 1:08d}", shapes[k % n_shapes], TEXTURES[k // n_shapes]) for k in range(num_classes)
    ]


def novel_classes(num_train_classes: int, n: int) -> list[SynthClass]:
    """``n`` classes that no class of ``class_list(num_train_classes)`` is: new shape x texture pairs.

    Pairs whose shape and texture the training classes both use (a new combination of known parts)
    come first, then pairs with one new part, then pairs with two (the NOVEL_SHAPES are new at any
    profile); within each group, by the sum of the shape's and the texture's positions, so that
    a few classes already span several shapes and textures. wnids are n90000001, n90000002, ...
    """
    train = class_list(num_train_classes)
    seen = {(c.shape, c.texture) for c in train}
    shapes, textures = {c.shape for c in train}, {c.texture for c in train}
    pool = [(si, ti, s, t) for si, s in enumerate(_ALL_SHAPES) for ti, t in enumerate(TEXTURES) if (s, t) not in seen]
    pool.sort(key=lambda x: ((x[2] not in shapes) + (x[3] not in textures), x[0] + x[1], x[0]))
    if not 2 <= n <= len(pool):
        raise ValueError(f"n={n}: there are 2..{len(pool)} new classes beside {num_train_classes} training classes")
    return [SynthClass(f"n{90_000_001 + k:08d}", s, t) for k, (_, _, s, t) in enumerate(pool[:n])]


# -- textures: an (h, w) 0/1 pattern over a region, later painted with two colours ----------------


def _pattern(kind: str, h: int, w: int, period: float, rng: np.random.Generator) -> np.ndarray:
    """A bool (h, w) array: which of the texture's two colours each pixel takes."""
    if kind == "plain":
        return np.zeros((h, w), bool)
    angle = rng.uniform(0, math.pi)
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    y = np.arange(h, dtype=np.float32)[:, None] - np.float32(h / 2)  # (h, 1) and (1, w): broadcast
    x = np.arange(w, dtype=np.float32)[None, :] - np.float32(w / 2)
    p = np.float32(period)
    U = (x * c + y * s) / p  # coordinates along and across the texture's direction, in periods
    V = (y * c - x * s) / p
    # (numpy's float % is slow: use floor, and the fractional part t - floor(t) instead)
    fu, fv = np.floor(U), np.floor(V)

    def odd(t):
        return (t.astype(np.int32) & 1).astype(bool)

    if kind == "striped":
        return odd(fu)
    if kind == "checked":
        return odd(fu + fv)
    if kind == "dotted":
        du, dv = U - fu - np.float32(0.5), V - fv - np.float32(0.5)
        return du * du + dv * dv < np.float32(0.09)
    if kind == "grid":
        line = np.float32(max(1.0, 0.22 * period) / period)
        return (U - fu < line) | (V - fv < line)
    if kind == "ringed":
        return odd(np.floor(np.sqrt(x * x + y * y) / (np.float32(0.8) * p)))
    if kind == "zigzag":
        half = V / 2
        tri = np.abs((half - np.floor(half)) * 2 - 1)  # a triangle wave across the stripes
        return odd(np.floor(U + tri))
    if kind in ("speckled", "blotched"):
        cell = max(1.0, period / 2.5) if kind == "speckled" else period * 1.5
        small = rng.integers(0, 256, (int(h / cell) + 2, int(w / cell) + 2), dtype=np.uint8)
        size = (max(w, int(small.shape[1] * cell)), max(h, int(small.shape[0] * cell)))
        big = Image.fromarray(small).resize(size, Image.NEAREST if kind == "speckled" else Image.BILINEAR)
        return np.asarray(big)[:h, :w] > (184 if kind == "speckled" else 128)
    if kind == "brick":
        line = np.float32(max(1.0, 0.2 * period) / period)
        shifted = (U + (fv.astype(np.int32) & 1) * np.float32(0.9)) / np.float32(1.8)
        return (V - fv < line) | (shifted - np.floor(shifted) < line / np.float32(1.8))
    raise ValueError(f"unknown texture {kind!r}; known: {TEXTURES}")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = rng.integers(0, 256, 3).tolist()
    return r, g, b


def _luma(c: tuple[int, int, int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _two_colours(rng: np.random.Generator, contrast: float = 70.0):
    """Two random colours whose brightness differs enough for a texture to show after JPEG."""
    a = _colour(rng)
    for _ in range(20):
        b = _colour(rng)
        if abs(_luma(a) - _luma(b)) >= contrast:
            break
    return a, b


def _texture(kind: str, h: int, w: int, period: float, rng: np.random.Generator) -> Image.Image:
    """An RGB (w x h) image of a texture in two random colours."""
    a, b = _two_colours(rng)
    pattern = Image.fromarray(_pattern(kind, h, w, period, rng).view(np.uint8) * np.uint8(255))
    return Image.composite(Image.new("RGB", (w, h), b), Image.new("RGB", (w, h), a), pattern)


# -- shape masks --------------------------------------------------------------------------------


def rotated_extent(shape: str, angle: float) -> tuple[float, float]:
    """Width and height of the unit shape's bounding box after rotation."""
    c, s = math.cos(angle), math.sin(angle)
    pts = [(x * c - y * s, x * s + y * c) for x, y in _ALL_SHAPES[shape][0][0]]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return max(xs) - min(xs), max(ys) - min(ys)


def _shape_mask(shape: str, size: tuple[int, int], box: tuple[float, float, float, float], angle: float,
                cut: tuple[float, float, float] | None = None) -> Image.Image:
    """An "L" mask (0/255) of ``shape`` rotated by ``angle`` and stretched into ``box`` = (x0, y0, bw, bh).

    ``cut`` = (a, b, c) keeps only the half-plane a*x + b*y >= c (in pixels): a fragment.
    """
    w, h = size
    x0, y0, bw, bh = box
    c, s = math.cos(angle), math.sin(angle)
    outer = [(x * c - y * s, x * s + y * c) for x, y in _ALL_SHAPES[shape][0][0]]
    minx, miny = min(p[0] for p in outer), min(p[1] for p in outer)
    ex, ey = rotated_extent(shape, angle)
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    for poly, fill in _ALL_SHAPES[shape]:
        pts = []
        for x, y in poly:
            rx, ry = x * c - y * s, x * s + y * c
            pts.append((x0 + (rx - minx) / ex * (bw - 1), y0 + (ry - miny) / ey * (bh - 1)))
        draw.polygon(pts, fill=fill)
    if cut is not None:  # blank the other side of the line a*x + b*y = c
        a, b, cc = cut
        far = 4 * (w + h)
        px, py = a * cc, b * cc  # the point of the line nearest the origin (a, b is a unit normal)
        dx, dy = -b * far, a * far  # along the line
        draw.polygon([(px + dx, py + dy), (px - dx, py - dy), (px - dx - a * far, py - dy - b * far),
                      (px + dx - a * far, py + dy - b * far)], fill=0)
    return mask


# -- one image ----------------------------------------------------------------------------------


def _paint_texture(canvas: Image.Image, mask: Image.Image, kind: str, period: float,
                   rng: np.random.Generator) -> None:
    """Paint a two-colour texture over ``canvas`` where ``mask`` is set, in place (only within its bbox)."""
    bbox = mask.getbbox()
    if bbox is None:
        return
    x0, y0, x1, y1 = bbox
    tex = _texture(kind, y1 - y0, x1 - x0, period, rng)
    canvas.paste(tex, (x0, y0), mask.crop(bbox))


def _background(w: int, h: int, rng: np.random.Generator, fade: float = BACKGROUND_FADE) -> Image.Image:
    """A cluttered background: a colour ramp, often a faint texture, blobs and lines."""
    a, b = _colour(rng), _colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    ramp = x * np.float32(math.cos(angle)) + y * np.float32(math.sin(angle))
    lo, hi = min(0.0, ramp[0, -1], ramp[-1, 0], ramp[-1, -1]), max(0.0, ramp[0, -1], ramp[-1, 0], ramp[-1, -1])
    ramp -= np.float32(lo)  # a linear ramp takes its extremes at the corners
    ramp *= np.float32(255 / max(1e-6, hi - lo))
    canvas = Image.composite(Image.new("RGB", (w, h), b), Image.new("RGB", (w, h), a),
                             Image.fromarray(ramp.astype(np.uint8)))
    if rng.random() < BACKGROUND_TEXTURE:  # a faint texture over the whole background: texture alone is not the class
        kind = TEXTURES[rng.integers(1, len(TEXTURES))]
        tex = _texture(kind, h, w, rng.uniform(3, 0.12 * min(h, w) + 3), rng)
        canvas = Image.blend(canvas, tex, float(rng.uniform(0.15, 0.45)))
    draw = ImageDraw.Draw(canvas)
    side = min(h, w)
    for _ in range(rng.integers(BLOBS[0], BLOBS[1] + 1)):  # plain blobs
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.03, 0.25) * side, rng.uniform(0.03, 0.25) * side
        fill = _colour(rng)
        if rng.random() < 0.5:
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
        else:
            draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
    for _ in range(rng.integers(LINES[0], LINES[1] + 1)):  # lines
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(2)]
        draw.line(pts, fill=_colour(rng), width=int(rng.integers(1, 4)))
    if fade:
        canvas = Image.blend(canvas, Image.new("RGB", (w, h), (128, 128, 128)), fade)
    return canvas


def _image_size(min_side: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """(width, height): smaller side uniform in ``min_side``, aspect log-uniform in ASPECT."""
    side = int(rng.integers(min_side[0], min_side[1] + 1))
    aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
    return (int(round(side * aspect)), side) if aspect >= 1 else (side, int(round(side / aspect)))


def _object_box(shape: str, angle: float, w: int, h: int, rng: np.random.Generator,
                box_fraction: tuple[float, float] = BOX_FRACTION):
    """(x0, y0, bw, bh) of the object: smaller side a ``box_fraction`` of the image's, the shape's own aspect."""
    ex, ey = rotated_extent(shape, angle)
    aspect = ex / ey * math.exp(rng.uniform(-0.2, 0.2))  # a little stretch
    small = rng.uniform(*box_fraction) * min(w, h)
    bw, bh = (small * aspect, small) if aspect >= 1 else (small, small / aspect)
    fit = min(1.0, w / bw, h / bh)  # a long object in a narrow image: shrink to fit
    bw, bh = min(float(w), max(4.0, bw * fit)), min(float(h), max(4.0, bh * fit))
    return rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh


def render(cls: SynthClass, min_side: tuple[int, int], rng: np.random.Generator, all_classes: list[SynthClass],
           box_fraction: tuple[float, float] = BOX_FRACTION, rotation: float = ROTATION,
           background_fade: float = BACKGROUND_FADE):
    """One image of class ``cls``: (RGB uint8 array (h, w, 3), box (xmin, ymin, xmax, ymax)).

    ``box_fraction``, ``rotation`` (degrees either way) and ``background_fade`` set the difficulty.
    """
    w, h = _image_size(min_side, rng)
    canvas = _background(w, h, rng, background_fade)
    _fragments(canvas, all_classes, rng)
    box = _place(canvas, cls, (0, 0, w, h), rng, box_fraction, rotation)
    return _lighting(canvas, rng), box


def render_multi(cls: SynthClass, min_side: tuple[int, int], rng: np.random.Generator, all_classes: list[SynthClass],
                 objects: tuple[int, int], box_fraction: tuple[float, float] = BOX_FRACTION,
                 rotation: float = ROTATION, background_fade: float = BACKGROUND_FADE):
    """An image of several objects (a VOC-like scene): ``cls`` and ``objects`` - 1 others of distinct
    classes, each in its own strip of the image's longer side, sized by ``box_fraction`` of its strip.
    Returns (pixels, [(class, box), ...]) in the order the objects stand from left (or top)."""
    w, h = _image_size(min_side, rng)
    canvas = _background(w, h, rng, background_fade)
    _fragments(canvas, all_classes, rng)
    k = int(rng.integers(objects[0], objects[1] + 1))
    others = [c for c in all_classes if c != cls]
    chosen = [cls] + [others[i] for i in rng.permutation(len(others))[: k - 1]]
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]  # the labelled class is not always first
    placed = []
    for j, c in enumerate(chosen):
        if w >= h:
            region = (j * w // k, 0, (j + 1) * w // k - j * w // k, h)
        else:
            region = (0, j * h // k, w, (j + 1) * h // k - j * h // k)
        placed.append((c, _place(canvas, c, region, rng, box_fraction, rotation)))
    return _lighting(canvas, rng), placed


def _fragments(canvas: Image.Image, all_classes: list[SynthClass], rng: np.random.Generator) -> None:
    """Unlabelled fragments, under the objects: part of a shape of any class, cut by a straight line."""
    w, h = canvas.size
    side = min(w, h)
    for _ in range(rng.integers(FRAGMENTS[0], FRAGMENTS[1] + 1)):
        other = all_classes[rng.integers(len(all_classes))]
        angle = rng.uniform(0, 2 * math.pi)
        size = rng.uniform(0.15, 0.5) * side
        fx, fy = rng.uniform(-size / 2, w - size / 2), rng.uniform(-size / 2, h - size / 2)
        theta = rng.uniform(0, 2 * math.pi)
        a, b = math.cos(theta), math.sin(theta)
        cut = (a, b, a * (fx + size / 2) + b * (fy + size / 2) + rng.uniform(-0.1, 0.25) * size)
        mask = _shape_mask(other.shape, (w, h), (fx, fy, size, size), angle, cut)
        _paint_texture(canvas, mask, other.texture, size / rng.uniform(*STRIPES), rng)


def _place(canvas: Image.Image, cls: SynthClass, region: tuple[int, int, int, int], rng: np.random.Generator,
           box_fraction: tuple[float, float], rotation: float):
    """Paint an object of ``cls`` inside ``region`` = (x, y, w, h) of the canvas; its exact box."""
    rx, ry, rw, rh = region
    angle = math.radians(rng.uniform(-rotation, rotation))
    x0, y0, bw, bh = _object_box(cls.shape, angle, rw, rh, rng, box_fraction)
    mask = _shape_mask(cls.shape, canvas.size, (rx + x0, ry + y0, bw, bh), angle)
    _paint_texture(canvas, mask, cls.texture, max(3.0, min(bw, bh) / rng.uniform(*STRIPES)), rng)
    return mask.getbbox()  # exact: the pixels the object covers


def _lighting(canvas: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Lighting and sensor noise over everything (integer arithmetic: the same bytes everywhere)."""
    w, h = canvas.size
    gain = int(rng.integers(192, 321))  # x/256: 0.75 .. 1.25
    spread = int(rng.integers(3, 13))  # noise uniform in [-spread, spread]
    levels = np.arange(256, dtype=np.int32)
    noise = np.frombuffer(rng.bytes(w * h), np.uint8).reshape(h, w, 1)
    pixels = (levels * gain // 256)[np.asarray(canvas)] + (levels % (2 * spread + 1) - spread)[noise]
    return pixels.clip(0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, **JPEG_SETTINGS)
    return buf.getvalue()


def _voc_xml(folder: str, stem: str, w: int, h: int, objects, box=None) -> str:
    """A PASCAL-VOC annotation of the image's objects, [(wnid, (xmin, ymin, xmax, ymax)), ...]
    (or of one object: ``wnid, box``)."""
    if box is not None:
        objects = [(objects, box)]
    return (
        "<annotation>\n"
        f"\t<folder>{folder}</folder>\n\t<filename>{stem}</filename>\n"
        "\t<source>\n\t\t<database>vggrepro synthetic</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        "\t<segmented>0</segmented>\n"
        + "".join(
            f"\t<object>\n\t\t<name>{wnid}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
            "\t\t<difficult>0</difficult>\n"
            f"\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
            f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>\n"
            for wnid, (xmin, ymin, xmax, ymax) in objects)
        + "</annotation>\n"
    )


def image_rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    """The Generator of one image: a function of (seed, split, class, index) alone."""
    return np.random.default_rng([seed, SPLITS[split], class_index, index])


# -- the whole set ------------------------------------------------------------------------------


class SetExists(ValueError):
    """``generate`` was asked for a folder that already exists."""


#: a folder left by a generation on another machine is stale once untouched this long
STALE_SECONDS = 24 * 3600


def _tmp_prefix(out: Path) -> str:
    """The working folder's name names its owner (host, pid), so a later run can tell a dead one's."""
    return f".{out.name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_tmp(out: Path) -> list[Path]:
    """Delete the working folders that killed generations of ``out`` left behind (``.NAME.tmp-*``):
    those of a process of this host that no longer runs, and any untouched for a day (another host's,
    or an older version's without an owner). A live generation's folder is left alone."""
    removed = []
    host = socket.gethostname()
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        owner = tmp.name[len(f".{out.name}.tmp-"):].rsplit("-", 2)  # host, pid, mkdtemp's random part
        try:
            mine_and_dead = len(owner) == 3 and owner[0] == host and not _alive(int(owner[1]))
            old = time.time() - tmp.stat().st_mtime > STALE_SECONDS
        except (ValueError, OSError):
            continue
        if tmp.is_dir() and (mine_and_dead or old):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def generate(out: str | Path, *, num_classes: int, train_per_class: int, val_per_class: int,
             min_side: tuple[int, int] = (80, 150), seed: int = 0, progress: bool = True,
             workers: int | None = None, box_fraction: tuple[float, float] = BOX_FRACTION,
             rotation: float = ROTATION, background_fade: float = BACKGROUND_FADE,
             classes: list[SynthClass] | None = None, objects: tuple[int, int] = (1, 1)) -> Path:
    """Write a synthetic set to ``out`` (which must not exist yet) and return ``out``.

    ``classes`` (default ``class_list(num_classes)``, and then ``num_classes`` must equal their
    number) sets the classes, e.g. :func:`novel_classes`; ``objects`` = (at least, at most) objects
    per image makes a multi-label set (:func:`render_multi`): each image of class folder ``k`` holds
    an object of class ``k`` and others, all in its annotation (and its row of the val CSV).

    ``workers`` processes render images in parallel (default: one per CPU core); the bytes do not
    depend on it.

    The files are written into a temporary folder beside ``out`` and moved into place at the end, so
    an interrupted run leaves no half-made set; folders that killed runs left are removed first
    (:func:`remove_stale_tmp`). When another process generated the same set meanwhile (two
    trainings starting on a fresh machine), its set is kept once it matches this one's manifest.
    """
    out = Path(out)
    if out.exists():
        raise SetExists(f"{out} already exists; delete it or choose another --out to generate a new set")
    if not (0 < min_side[0] <= min_side[1]):
        raise ValueError(f"min_side={min_side}: need 0 < lo <= hi")
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError("train_per_class and val_per_class must be >= 1")
    if classes is not None and len(classes) != num_classes:
        raise ValueError(f"num_classes={num_classes} but {len(classes)} classes were given")
    if not 1 <= objects[0] <= objects[1] <= num_classes:
        raise ValueError(f"objects={objects}: need 1 <= at least <= at most <= num_classes")
    custom = classes is not None or tuple(objects) != (1, 1)
    classes = class_list(num_classes) if classes is None else list(classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=_tmp_prefix(out)))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the set is an ordinary folder
    files: dict[str, str] = {}

    def write(rel: str, data: bytes) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()

    jobs = [("train", k, i) for k in range(num_classes) for i in range(train_per_class)]
    jobs += [("val", j % num_classes, j // num_classes) for j in range(num_classes * val_per_class)]
    if not 0 < box_fraction[0] <= box_fraction[1] <= 1:
        raise ValueError(f"box_fraction={box_fraction}: need 0 < lo <= hi <= 1 (of the image's smaller side)")
    if not 0 <= background_fade <= 1:
        raise ValueError(f"background_fade={background_fade}: need 0 <= fade <= 1")
    style = dict(box_fraction=tuple(box_fraction), rotation=float(rotation), background_fade=float(background_fade))
    who = tuple(classes) if custom else num_classes  # the default classes travel as their number
    jobs = [(split, k, i, who, tuple(min_side), seed, style, tuple(objects)) for split, k, i in jobs]
    workers = max(1, min(workers if workers is not None else (os.cpu_count() or 1), len(jobs) // 200 + 1))
    pool = None
    try:
        bar = _progress(len(jobs), "synthetic images", progress)
        val_rows = []
        if workers > 1:  # images are independent, and each is a function of its own seed
            pool = multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers)
            made = pool.imap(_make, jobs, chunksize=32)
        else:
            made = map(_make, jobs)
        for outputs, val_row in made:
            for rel, data in outputs:
                write(rel, data)
            if val_row:
                val_rows.append(val_row)
            bar.update(1)
        bar.close()
        write("LOC_val_solution.csv", ("ImageId,PredictionString\n" + "\n".join(val_rows) + "\n").encode())
        write("LOC_synset_mapping.txt", "".join(f"{c.wnid} {c.name}\n" for c in classes).encode())
        params = dict(num_classes=num_classes, train_per_class=train_per_class, val_per_class=val_per_class,
                      min_side=list(min_side), seed=seed, box_fraction=list(style["box_fraction"]),
                      rotation=style["rotation"], background_fade=style["background_fade"])
        if custom:  # (absent from the default sets' manifests, which stay as they were)
            params.update(classes=[[c.wnid, c.shape, c.texture] for c in classes], objects=list(objects))
        manifest = dict(format=FORMAT, params=params, versions=_versions(),
                        digest=_digest(files), files=dict(sorted(files.items())))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        try:
            os.replace(tmp, out)
        except OSError:
            if not out.exists():
                raise
            if not (out / "manifest.json").is_file():
                raise SetExists(f"{out} appeared while generating and is not a generated set; "
                                "delete it or choose another --out") from None
            _accept_winner(out, manifest)  # another process finished first: keep its set if it is this one
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
    return out


def _accept_winner(out: Path, manifest: dict) -> None:
    """The set another process put at ``out`` while this one generated: the same (it is a function of
    the seed and settings) when its manifest lists the same files and they verify; else a ValueError."""
    theirs = verify(out)
    if theirs.get("digest") != manifest["digest"]:
        raise SetExists(f"{out} appeared while generating, holding another set (digest {theirs.get('digest', '')[:12]}, "
                        f"this one {manifest['digest'][:12]}); delete it or choose another --out")


def _make(job) -> tuple[list[tuple[str, bytes]], str]:
    """Render one image and its annotation: ([(relative path, bytes), ...], val label row or "")."""
    split, k, i, who, min_side, seed, style, objects = job
    classes = class_list(who) if isinstance(who, int) else list(who)
    cls = classes[k]
    rng = image_rng(seed, split, k, i)
    if objects == (1, 1):
        pixels, box = render(cls, min_side, rng, classes, **style)
        placed = [(cls, box)]
    else:
        pixels, placed = render_multi(cls, min_side, rng, classes, objects, **style)
    h, w = pixels.shape[:2]
    if split == "train":
        stem = f"{cls.wnid}_{i + 1}"
        xml = _voc_xml(cls.wnid, stem, w, h, [(c.wnid, b) for c, b in placed]).encode()
        return [(f"train/{cls.wnid}/{stem}.JPEG", _jpeg(pixels)), (f"Annotation/{cls.wnid}/{stem}.xml", xml)], ""
    stem = f"synth_val_{i * len(classes) + k + 1:08d}"
    row = "".join(f"{c.wnid} {b[0]} {b[1]} {b[2]} {b[3]} " for c, b in placed)
    return [(f"val/{stem}.JPEG", _jpeg(pixels))], f"{stem},{row}"


def _digest(files: dict[str, str]) -> str:
    """One checksum for the whole set, to compare two machines at a glance."""
    return hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(files.items())).encode()).hexdigest()


def _versions() -> dict[str, str]:
    import PIL

    return {"numpy": np.__version__, "pillow": PIL.__version__}


def _progress(total: int, desc: str, enabled: bool):
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)
    except Exception:  # tqdm is a core dependency, but a bar is never worth a crash
        class _Null:
            def update(self, n):
                pass

            def close(self):
                pass

        return _Null()


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a generated synthetic set")
    return json.loads(path.read_text())


def verify(root: str | Path) -> dict:
    """Check every file of a generated set against its manifest; return the manifest.

    A missing or changed file is a ValueError naming it (and how many others) and the fix.
    """
    root = Path(root)
    manifest = read_manifest(root)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{root}/manifest.json has format {manifest.get('format')!r}, expected {FORMAT!r}")
    bad = []
    for rel, digest in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            bad.append(f"{rel} (missing)")
        elif sha256(path) != digest:
            bad.append(f"{rel} (changed)")
    if bad:
        raise ValueError(
            f"synthetic set {root} does not match its manifest: {bad[0]}"
            + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
            + "; delete the folder and generate it again (vggrepro data synth)"
        )
    return manifest


def profile_params(profile) -> dict:
    """The generator's settings for a profile (its synth_* knobs and seed)."""
    return dict(num_classes=profile.num_classes, train_per_class=profile.synth_train_per_class,
                val_per_class=profile.synth_val_per_class, min_side=tuple(profile.synth_min_side),
                seed=profile.seed, box_fraction=tuple(profile.synth_box_fraction),
                rotation=float(profile.synth_rotation), background_fade=float(profile.synth_background_fade))


def generate_for_profile(profile, out: str | Path | None = None, seed: int | None = None,
                         progress: bool = True) -> Path:
    """Generate the synthetic set of a profile (a name or a Profile) at ``out`` (default: its data_root)."""
    from .profiles import get_profile

    profile = get_profile(profile)
    if profile.data_kind != "synthetic":
        raise ValueError(f"profile {profile.name!r} uses {profile.data_kind} data, not a synthetic set")
    params = profile_params(profile)
    if seed is not None:
        params["seed"] = seed
    return generate(Path(out) if out is not None else profile.data_path, progress=progress, **params)


def ensure(profile, out: str | Path | None = None, seed: int | None = None, progress: bool = True,
           log=print) -> Path:
    """The profile's synthetic set: generated when missing, verified against its manifest otherwise.

    Says which in one line. A folder made with other settings is a ValueError (delete it, or pass
    another ``out``).
    """
    from .profiles import get_profile

    profile = get_profile(profile)
    root = Path(out) if out is not None else profile.data_path
    want = profile_params(profile)
    if seed is not None:
        want["seed"] = seed
    if not (root / "manifest.json").is_file():
        t = time.perf_counter()
        try:
            generate(root, progress=progress, **want)
            n = want["num_classes"] * (want["train_per_class"] + want["val_per_class"])
            log(f"generated synthetic set {root}: {n} images in {time.perf_counter() - t:.1f} s (seed {want['seed']})")
            return root
        except SetExists:
            if not (root / "manifest.json").is_file():
                if root.is_dir() and not any(root.iterdir()):
                    root.rmdir()  # an empty folder: make the set in its place
                    return ensure(profile, out=out, seed=seed, progress=progress, log=log)
                raise ValueError(f"{root} exists but holds no manifest.json, so it is not a generated set; "
                                 "delete it or pass another --out") from None
            # another process made the set meanwhile: verify it as if it had been found
    t = time.perf_counter()
    manifest = verify(root)
    have = {k: tuple(v) if isinstance(v, list) else v for k, v in manifest["params"].items()}
    if have != want:
        raise ValueError(f"{root} holds a synthetic set made with {have}, but profile {profile.name!r} "
                         f"asks for {want}; delete the folder or pass another --out")
    log(f"found synthetic set {root}: {len(manifest['files'])} files verified against manifest.json "
        f"in {time.perf_counter() - t:.1f} s")
    return root
