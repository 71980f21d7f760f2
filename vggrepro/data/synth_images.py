"""One synthetic image: a cluttered background, unlabelled fragments, the labelled object(s) with
their exact boxes, lighting and sensor noise; and the bytes it is written as (JPEG, PASCAL-VOC).

Every image draws from its own numpy Generator (:func:`image_rng`), seeded with (seed, split,
class, index), and uses integer or float32 arithmetic that numpy and PIL do alike everywhere, so
the same seed gives the same bytes on any machine, whatever the order of generation.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from .synth_classes import TEXTURES, SynthClass, random_colour, rotated_extent, shape_mask, texture

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

# -- one image ----------------------------------------------------------------------------------


def _paint_texture(canvas: Image.Image, mask: Image.Image, kind: str, period: float, rng: np.random.Generator) -> None:
    """Paint a two-colour texture over ``canvas`` where ``mask`` is set, in place (only within its bbox)."""
    bbox = mask.getbbox()
    if bbox is None:
        return
    x0, y0, x1, y1 = bbox
    tex = texture(kind, y1 - y0, x1 - x0, period, rng)
    canvas.paste(tex, (x0, y0), mask.crop(bbox))


def _background(w: int, h: int, rng: np.random.Generator, fade: float = BACKGROUND_FADE) -> Image.Image:
    """A cluttered background: a colour ramp, often a faint texture, blobs and lines."""
    a, b = random_colour(rng), random_colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    ramp = x * np.float32(math.cos(angle)) + y * np.float32(math.sin(angle))
    lo, hi = min(0.0, ramp[0, -1], ramp[-1, 0], ramp[-1, -1]), max(0.0, ramp[0, -1], ramp[-1, 0], ramp[-1, -1])
    ramp -= np.float32(lo)  # a linear ramp takes its extremes at the corners
    ramp *= np.float32(255 / max(1e-6, hi - lo))
    canvas = Image.composite(
        Image.new("RGB", (w, h), b), Image.new("RGB", (w, h), a), Image.fromarray(ramp.astype(np.uint8))
    )
    if rng.random() < BACKGROUND_TEXTURE:  # a faint texture over the whole background: texture alone is not the class
        kind = TEXTURES[rng.integers(1, len(TEXTURES))]
        tex = texture(kind, h, w, rng.uniform(3, 0.12 * min(h, w) + 3), rng)
        canvas = Image.blend(canvas, tex, float(rng.uniform(0.15, 0.45)))
    draw = ImageDraw.Draw(canvas)
    side = min(h, w)
    for _ in range(rng.integers(BLOBS[0], BLOBS[1] + 1)):  # plain blobs
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.03, 0.25) * side, rng.uniform(0.03, 0.25) * side
        fill = random_colour(rng)
        if rng.random() < 0.5:
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
        else:
            draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
    for _ in range(rng.integers(LINES[0], LINES[1] + 1)):  # lines
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(2)]
        draw.line(pts, fill=random_colour(rng), width=int(rng.integers(1, 4)))
    if fade:
        canvas = Image.blend(canvas, Image.new("RGB", (w, h), (128, 128, 128)), fade)
    return canvas


def _image_size(min_side: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """(width, height): smaller side uniform in ``min_side``, aspect log-uniform in ASPECT."""
    side = int(rng.integers(min_side[0], min_side[1] + 1))
    aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
    return (int(round(side * aspect)), side) if aspect >= 1 else (side, int(round(side / aspect)))


def _object_box(
    shape: str, angle: float, w: int, h: int, rng: np.random.Generator, box_fraction: tuple[float, float] = BOX_FRACTION
):
    """(x0, y0, bw, bh) of the object: smaller side a ``box_fraction`` of the image's, the shape's own aspect."""
    ex, ey = rotated_extent(shape, angle)
    aspect = ex / ey * math.exp(rng.uniform(-0.2, 0.2))  # a little stretch
    small = rng.uniform(*box_fraction) * min(w, h)
    bw, bh = (small * aspect, small) if aspect >= 1 else (small, small / aspect)
    fit = min(1.0, w / bw, h / bh)  # a long object in a narrow image: shrink to fit
    bw, bh = min(float(w), max(4.0, bw * fit)), min(float(h), max(4.0, bh * fit))
    return rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh


def render(
    cls: SynthClass,
    min_side: tuple[int, int],
    rng: np.random.Generator,
    all_classes: list[SynthClass],
    box_fraction: tuple[float, float] = BOX_FRACTION,
    rotation: float = ROTATION,
    background_fade: float = BACKGROUND_FADE,
):
    """One image of class ``cls``: (RGB uint8 array (h, w, 3), box (xmin, ymin, xmax, ymax)).

    ``box_fraction``, ``rotation`` (degrees either way) and ``background_fade`` set the difficulty.
    """
    w, h = _image_size(min_side, rng)
    canvas = _background(w, h, rng, background_fade)
    _fragments(canvas, all_classes, rng)
    box = _place(canvas, cls, (0, 0, w, h), rng, box_fraction, rotation)
    return _lighting(canvas, rng), box


def render_multi(
    cls: SynthClass,
    min_side: tuple[int, int],
    rng: np.random.Generator,
    all_classes: list[SynthClass],
    objects: tuple[int, int],
    box_fraction: tuple[float, float] = BOX_FRACTION,
    rotation: float = ROTATION,
    background_fade: float = BACKGROUND_FADE,
):
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
        mask = shape_mask(other.shape, (w, h), (fx, fy, size, size), angle, cut)
        _paint_texture(canvas, mask, other.texture, size / rng.uniform(*STRIPES), rng)


def _place(
    canvas: Image.Image,
    cls: SynthClass,
    region: tuple[int, int, int, int],
    rng: np.random.Generator,
    box_fraction: tuple[float, float],
    rotation: float,
):
    """Paint an object of ``cls`` inside ``region`` = (x, y, w, h) of the canvas; its exact box."""
    rx, ry, rw, rh = region
    angle = math.radians(rng.uniform(-rotation, rotation))
    x0, y0, bw, bh = _object_box(cls.shape, angle, rw, rh, rng, box_fraction)
    mask = shape_mask(cls.shape, canvas.size, (rx + x0, ry + y0, bw, bh), angle)
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


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, **JPEG_SETTINGS)
    return buf.getvalue()


def voc_xml(folder: str, stem: str, w: int, h: int, objects, box=None) -> str:
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
            for wnid, (xmin, ymin, xmax, ymax) in objects
        )
        + "</annotation>\n"
    )


def image_rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    """The Generator of one image: a function of (seed, split, class, index) alone."""
    return np.random.default_rng([seed, SPLITS[split], class_index, index])
