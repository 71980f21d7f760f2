"""The synthetic set's classes and what they are drawn from: unit shapes, two-colour textures, masks.

A class is an object family, a shape x texture pair ("striped triangle"). The shapes of
:data:`NOVEL_SHAPES` belong to no training class: Appendix B's sets of new classes use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

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
    "cross": [
        (
            [
                (-0.3, -1),
                (0.3, -1),
                (0.3, -0.3),
                (1, -0.3),
                (1, 0.3),
                (0.3, 0.3),
                (0.3, 1),
                (-0.3, 1),
                (-0.3, 0.3),
                (-1, 0.3),
                (-1, -0.3),
                (-0.3, -0.3),
            ],
            255,
        )
    ],
    "ring": [(_regular(48), 255), (_regular(48, 0.55), 0)],
    "crescent": [(_regular(48), 255), ([(x + 0.55, y - 0.1) for x, y in _regular(48, 0.85)], 0)],
    "hexagon": [(_regular(6), 255)],
    "arrow": [([(-1, -0.25), (0.2, -0.25), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.25), (-1, 0.25)], 255)],
    "heart": [(_heart(), 255)],
}

#: Shapes no training class uses at any profile (:func:`class_list` draws from SHAPES alone): the
#: sets of new classes that test the nets' features on objects they never saw (Appendix B) use them.
NOVEL_SHAPES: dict[str, list[tuple[list[tuple[float, float]], int]]] = {
    "tee": [([(-1, -1), (1, -1), (1, -0.45), (0.28, -0.45), (0.28, 1), (-0.28, 1), (-0.28, -0.45), (-1, -0.45)], 255)],
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
    return [SynthClass(f"n{k + 1:08d}", shapes[k % n_shapes], TEXTURES[k // n_shapes]) for k in range(num_classes)]


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


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = rng.integers(0, 256, 3).tolist()
    return r, g, b


def _luma(c: tuple[int, int, int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _two_colours(rng: np.random.Generator, contrast: float = 70.0):
    """Two random colours whose brightness differs enough for a texture to show after JPEG."""
    a = random_colour(rng)
    for _ in range(20):
        b = random_colour(rng)
        if abs(_luma(a) - _luma(b)) >= contrast:
            break
    return a, b


def texture(kind: str, h: int, w: int, period: float, rng: np.random.Generator) -> Image.Image:
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


def shape_mask(
    shape: str,
    size: tuple[int, int],
    box: tuple[float, float, float, float],
    angle: float,
    cut: tuple[float, float, float] | None = None,
) -> Image.Image:
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
        draw.polygon(
            [
                (px + dx, py + dy),
                (px - dx, py - dy),
                (px - dx - a * far, py - dy - b * far),
                (px + dx - a * far, py + dy - b * far),
            ],
            fill=0,
        )
    return mask
