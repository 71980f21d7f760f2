"""The book's pictures that are drawn from the package's data, not typed by hand: Table 1 as
columns of layer blocks, crops and dense windows over an image, one image as the training
pipeline transforms it; and the source of a package function as the book prints it.

Each drawing function takes matplotlib axes and returns what it drew, so that a test can
check the picture against the data (one block per layer, one box per crop position).
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Mapping, Sequence

import torch
from matplotlib.patches import FancyBboxPatch, Rectangle

from ..models import CONFIGS, weight_layers

#: The widest line of code that the page's column shows whole at 1280 px (code at 12 px,
#: _static/custom.css): the book's shown code and the package code it prints fit in it.
COLUMN = 88

#: Block colours by layer kind, in the paper's order from input to output.
COLOURS = {
    "input": "#dddddd",
    "conv3": "#9ecae1",
    "conv1": "#c6a5e0",
    "LRN": "#fdd49e",
    "maxpool": "#f4a582",
    "FC": "#a1d99b",
    "soft-max": "#fb6a4a",
}
HEAD = ["FC-4096", "FC-4096", "FC-1000", "soft-max"]


def source(obj) -> str:
    """The source of a package function, class or method, dedented: what a chapter prints."""
    return textwrap.dedent(inspect.getsource(obj)).rstrip("\n")


def kind(label: str) -> str:
    """The kind of a Table 1 entry ("conv3-64" -> "conv3", "FC-4096" -> "FC")."""
    if label.startswith("conv"):
        return label.split("-")[0]
    if label.startswith("FC"):
        return "FC"
    return label if label in COLOURS else "input"


def table1_slots(configs: Mapping[str, list[list[str]]] = CONFIGS) -> list[dict[str, str]]:
    """Table 1's rows, top to bottom: per row, the entry of each config that has one there.

    A block's layers share rows across the configs, as in the paper, so a net with fewer
    layers in a block leaves the rows below them empty; max-pools and the head line up.
    """
    rows = [{c: "input" for c in configs}]
    for b in range(5):
        depth = max(len(blocks[b]) for blocks in configs.values())
        for i in range(depth):
            rows.append({c: blocks[b][i] for c, blocks in configs.items() if i < len(blocks[b])})
        rows.append({c: "maxpool" for c in configs})
    rows += [{c: layer for c in configs} for layer in HEAD]
    return rows


def added_layers(configs: Mapping[str, list[list[str]]] = CONFIGS) -> dict[str, set[tuple]]:
    """Per config, the (block, index) of each layer that its left neighbour lacks or has
    otherwise: the paper prints these in bold."""
    names = list(configs)
    added = {names[0]: set()}
    for left, right in zip(names, names[1:]):
        added[right] = {
            (b, i)
            for b, block in enumerate(configs[right])
            for i, spec in enumerate(block)
            if i >= len(configs[left][b]) or configs[left][b][i] != spec
        }
    return added


def draw_architecture(ax, configs: Mapping[str, list[list[str]]] = CONFIGS, crop: int = 224) -> dict[str, list[str]]:
    """Table 1 as a picture: one column of blocks per config, input at the top. Layers that
    a config adds to its left neighbour are in bold. Returns each column's labels, top down."""
    slots = table1_slots(configs)
    added = added_layers(configs)
    drawn: dict[str, list[str]] = {c: [] for c in configs}
    for x, c in enumerate(configs):
        ax.text(x, -1.3, c, ha="center", va="bottom", fontsize=10, fontweight="bold")
        ax.text(x, -0.55, f"{weight_layers(c)} weight layers", ha="center", va="bottom", fontsize=7.5)
        b, i = 0, 0  # the block and layer index of the next conv/LRN entry of column c
        for y, row in enumerate(slots):
            if c not in row:
                continue
            label = row[c]
            bold = False
            if label == "maxpool":
                b, i = b + 1, 0
            elif label.startswith("conv") or label == "LRN":
                bold = (b, i) in added[c]
                i += 1
            ax.add_patch(_block(x, y, COLOURS.get(kind(label), COLOURS["input"])))
            text = f"{crop} x {crop} RGB" if label == "input" else label
            ax.text(x, y, text, ha="center", va="center", fontsize=8, fontweight="bold" if bold else "normal")
            drawn[c].append(label)
    ax.set_xlim(-0.55, len(configs) - 0.45)
    ax.set_ylim(len(slots) - 0.5, -2.2)
    ax.axis("off")
    return drawn


def _block(x: float, y: float, colour: str):
    return FancyBboxPatch(
        (x - 0.42, y - 0.38), 0.84, 0.76, boxstyle="round,pad=0,rounding_size=0.12", fc=colour, ec="#555555", lw=0.6
    )


def as_picture(image: torch.Tensor):
    """A (3, H, W) image with values 0-255 as an (H, W, 3) uint8 array for ``imshow``."""
    return image.float().clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def draw_windows(
    ax,
    image: torch.Tensor,
    positions: Sequence[tuple[int, int]],
    size: int,
    *,
    colour: str = "yellow",
    highlight: Sequence[int] = (),
    lw: float = 0.8,
    title: str | None = None,
) -> list:
    """``image`` with a ``size x size`` square at each (top, left) of ``positions``; the
    squares numbered in ``highlight`` are drawn thick. Returns the squares in order."""
    h, w = image.shape[-2:]
    ax.imshow(as_picture(image), extent=(0, w, h, 0), interpolation="nearest")
    squares = []
    for n, (top, left) in enumerate(positions):
        thick = n in highlight
        squares.append(
            ax.add_patch(
                Rectangle(
                    (left, top),
                    size,
                    size,
                    fill=False,
                    ec=colour,
                    lw=2.5 * lw if thick else lw,
                    alpha=1.0 if thick else 0.7,
                )
            )
        )
    # windows may reach past the image (pools rounded up): show all of them
    right = max([w] + [left + size for _, left in positions])
    bottom = max([h] + [top + size for top, _ in positions])
    ax.set_xlim(-2, right + 2)
    ax.set_ylim(bottom + 2, -2)
    if title:
        ax.set_title(title, fontsize=9)
    return squares


def draw_at_one_scale(axes, panels: Sequence[tuple[str, torch.Tensor, tuple | None]]) -> list:
    """Each (title, image, box) on its own axes, all at one pixel scale (the largest image
    fills its panel), so that a rescaled image looks as much smaller as it is. ``box`` is a
    (top, left, size) square to outline, or None. Returns the outlines drawn."""
    side = max(max(image.shape[-2:]) for _, image, _ in panels)
    outlines = []
    for ax, (title, image, box) in zip(axes, panels):
        h, w = image.shape[-2:]
        ax.imshow(as_picture(image), extent=(0, w, h, 0), interpolation="nearest")
        if box is not None:
            top, left, size = box
            outlines.append(ax.add_patch(Rectangle((left, top), size, size, fill=False, ec="yellow", lw=1.5)))
        ax.set_xlim(0, side)
        ax.set_ylim(side, 0)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    return outlines


def filter_tiles(weight, columns: int = 8, order: str = "RGB"):
    """A first layer's filters (out, 3, k, k) as one RGB picture: a grid of ``columns`` filters a
    row, one pixel of gap. Each filter is stretched to 0..1 on its own (its shape is what shows, not
    its scale); ``order="BGR"`` for weights whose input channels are BGR (the Caffe convention)."""
    w = torch.as_tensor(weight, dtype=torch.float64)
    if w.dim() != 4 or w.shape[1] != 3:
        raise ValueError(f"filters of shape {tuple(w.shape)}: expected (out, 3, k, k), a first layer's")
    if order == "BGR":
        w = w.flip(1)
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    span = (w.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)
    w = (w - low) / span
    n, _, k, _ = w.shape
    rows = -(-n // columns)
    grid = torch.ones(3, rows * (k + 1) - 1, columns * (k + 1) - 1)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[:, r * (k + 1) : r * (k + 1) + k, c * (k + 1) : c * (k + 1) + k] = w[i]
    return grid.permute(1, 2, 0).numpy()
