"""The book's pictures drawn from data: what they draw matches the data they are drawn from."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vggrepro import models
from vggrepro.data import transforms
from vggrepro.evaluate import windows  # noqa: E402
from vggrepro.experiments import figures
from vggrepro.models import CONFIGS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def column(config: str) -> list[str]:
    """Table 1's column of a config, from input to soft-max."""
    out = ["input"]
    for block in CONFIGS[config]:
        out += block + ["maxpool"]
    return out + ["FC-4096", "FC-4096", "FC-1000", "soft-max"]


def test_architecture_has_one_block_per_layer_of_each_config(ax):
    drawn = figures.draw_architecture(ax)
    assert list(drawn) == list(CONFIGS)
    for c, labels in drawn.items():
        assert labels == column(c)
        convs = [x for x in labels if x.startswith("conv")] + ["FC"] * 3
        assert len(convs) == models.weight_layers(c)  # Table 1's header
    assert len(ax.patches) == sum(len(labels) for labels in drawn.values())


def test_architecture_rows_line_up_the_pools_and_the_head():
    slots = figures.table1_slots()
    assert len(slots) == 1 + sum(max(len(b[i]) for b in CONFIGS.values()) for i in range(5)) + 5 + 4
    full = [row for row in slots if len(row) == len(CONFIGS)]
    assert sum(set(row.values()) == {"maxpool"} for row in full) == 5
    assert [next(iter(row.values())) for row in slots[-4:]] == figures.HEAD


def test_added_layers_are_the_papers_bold_ones():
    added = figures.added_layers()
    assert added["A"] == set()
    assert added["A-LRN"] == {(0, 1)}  # the LRN after conv3-64
    assert added["C"] == {(2, 2), (3, 2), (4, 2)}  # the three 1x1 convolutions
    assert added["D"] == {(2, 2), (3, 2), (4, 2)}  # ... become 3x3 ones
    assert added["E"] == {(2, 3), (3, 3), (4, 3)}


def test_crop_grid_and_dense_windows_draw_one_square_per_position(ax):
    image = torch.zeros(3, 384, 512, dtype=torch.uint8)
    grid = transforms.crop_grid(384, 512, 224, 5)
    squares = figures.draw_windows(ax, image, grid, 224, highlight=[0, 24])
    assert len(squares) == len(ax.patches) == 25
    assert {(s.get_y(), s.get_x()) for s in squares} == set(grid)
    assert squares[0].get_linewidth() > squares[1].get_linewidth()

    with torch.device("meta"):
        d = models.build("D")
    dense = windows.dense_windows(d, 384, 512)
    assert len(dense) == 6 * 10 == models.score_map_size(d, 384, 512)[0] * 10
    assert windows.dense_windows(d, 384, 512, ceil_mode=False) == windows.inside_windows(d, 384, 512)
    # pools rounded up: a side past a multiple of 32 gets windows that reach past the image
    assert max(left for _, left in windows.dense_windows(d, 384, 520)) + 224 > 520


def test_panels_share_one_pixel_scale(ax):
    fig, axes = plt.subplots(1, 2)
    big, small = torch.zeros(3, 60, 80), torch.zeros(3, 30, 40)
    outlines = figures.draw_at_one_scale(axes, [("big", big, None), ("small", small, (2, 3, 20))])
    assert axes[0].get_xlim() == axes[1].get_xlim() == (0, 80)
    assert len(outlines) == 1 and (outlines[0].get_x(), outlines[0].get_y()) == (3, 2)
    plt.close(fig)


def printed_by_the_chapters() -> list:
    """Every package object a chapter prints with ``figures.source(...)``, read from book/*.py: the
    name before the first dot is the module the chapter imported under that name."""
    found = {}
    for chapter in sorted((ROOT / "book").glob("*.py")):
        text = chapter.read_text()
        imported = {}
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vggrepro"):
                for alias in node.names:
                    imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for dotted in re.findall(r"figures\.source\(([\w.]+)\)", text):
            module, *attrs = dotted.split(".")
            obj = importlib.import_module(imported[module])
            for attr in attrs:
                obj = getattr(obj, attr)
            found[dotted] = obj
    return list(found.values())


SHOWN = printed_by_the_chapters()


def test_the_chapters_print_package_code():
    assert len(SHOWN) >= 10  # 01, 02, 03, 06 and 08 each print some


@pytest.mark.parametrize("obj", SHOWN, ids=lambda o: o.__qualname__)
def test_shown_source_fits_the_column(obj):
    """The package code a chapter prints fits the page's column (no sideways scrolling)."""
    wide = [line for line in figures.source(obj).splitlines() if len(line) > figures.COLUMN]
    assert wide == []


def test_filter_tiles_place_each_filter_stretched_in_its_cell():
    w = torch.arange(5 * 3 * 3 * 3, dtype=torch.float32).reshape(5, 3, 3, 3)
    grid = figures.filter_tiles(w, columns=4)
    assert grid.shape == (2 * 4 - 1, 4 * 4 - 1, 3)  # 2 rows of 4 cells of 3 px, 1 px gaps
    first = grid[:3, :3]  # filter 0, channels last, stretched to 0..1 over its own 27 numbers
    want = (w[0] - w[0].min()).permute(1, 2, 0) / 26
    torch.testing.assert_close(torch.from_numpy(first), want)
    assert (grid[3, :] == 1).all() and (grid[4:, 4 * 1 + 3 :] == 1).all()  # gaps and empty cells stay white
    bgr = figures.filter_tiles(w, columns=4, order="BGR")
    torch.testing.assert_close(torch.from_numpy(bgr[..., 0]), torch.from_numpy(grid[..., 2]))
    with pytest.raises(ValueError, match="first layer"):
        figures.filter_tiles(torch.zeros(4, 5, 3, 3))
