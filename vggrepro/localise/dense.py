"""A localisation net applied densely (protocol 2 of Appendix A): the grid of windows behind its
output map, where that grid sits on the image, and the boxes and class scores read off the map.

After five 2x2 pools neighbouring locations of a dense map are 32 px apart, and the location (i, j)
sees the crop-sized window ``[32 j, 32 j + crop) x [32 i, 32 i + crop)`` of the image rescaled to Q.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..core.scales import centre_window
from ..data.transforms import Preprocess
from ..models import VGG, to_dense
from .box_data import rescale
from .boxes import clip, decode
from .finetune import box_of, kind_of

#: The total stride of the five 2x2 pools: neighbouring locations of a dense map are 32 px apart.
STRIDE = 32
#: Where the dense grid of windows sits on an image that is not a multiple of 32 (see ``view``).
ALIGNS = ("centred", "top-left")


def eval_mode(net: nn.Module) -> None:
    """Eval mode (no dropout); a no-op when already there, which the per-image protocols rely on
    (walking the modules costs more than a small net's forward pass)."""
    if net.training:
        net.eval()


def device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def dense_windows(map_h: int, map_w: int, crop: int) -> torch.Tensor:
    """The window (xyxy, rescaled-image pixels) behind each location of a dense output map,
    row-major: location (i, j) sees ``[32 j, 32 j + crop) x [32 i, 32 i + crop)``.

    After five 2x2 pools, feature cell k covers pixels ``[32 k, 32 k + 32)``, and fc6 (a
    ``crop/32``-wide convolution) at (i, j) reads cells ``i .. i + crop/32 - 1``: exactly the crop
    the classification net would see there (with the image's real pixels, not zero padding, around
    its border). Pixels past the last multiple of 32 are dropped by the pools; :func:`view` trims
    them from both sides so that the grid is centred, and shifts these windows by its offset.
    """
    i, j = torch.meshgrid(torch.arange(map_h), torch.arange(map_w), indexing="ij")
    x0, y0 = (STRIDE * j).reshape(-1).double(), (STRIDE * i).reshape(-1).double()
    return torch.stack([x0, y0, x0 + crop, y0 + crop], -1)


def check_align(align: str) -> str:
    if align not in ALIGNS:
        raise ValueError(
            f"align={align!r}: use 'centred' (the dense grid in the middle of the image) or "
            "'top-left' (the plain net: its pools drop the pixels past the last multiple of 32)"
        )
    return align


def view(
    image: torch.Tensor, Q: int, crop: int, centre: bool, align: str = "centred"
) -> tuple[torch.Tensor, float, float, int, int]:
    """What the net is applied to, with the rescale factors and the view's offset (x0, y0) in the
    image rescaled to Q: the central crop (``centre=True``), or the image, trimmed for dense
    application to the pixels its windows cover.

    Choice (``align="centred"``): the pixels past the last multiple of 32, which the five pools
    would drop at the right and bottom, are trimmed equally from both sides, so that the dense
    windows sit symmetrically on the image. At the paper's Q (256, 352, 384: multiples of 32) the
    smaller side loses nothing either way; at ``ci`` (Q = 55, crop 32) the plain net
    (``align="top-left"``) would only ever see the top 32 of 55 rows.
    """
    if Q < crop:
        raise ValueError(f"Q={Q} is smaller than the crop {crop}")
    check_align(align)
    scaled, sx, sy = rescale(image, Q)
    h, w = scaled.shape[-2:]
    if centre:
        y0, x0 = centre_window(h, w, crop)
        return scaled[:, y0 : y0 + crop, x0 : x0 + crop], sx, sy, x0, y0
    if align == "top-left":
        return scaled, sx, sy, 0, 0
    x0, y0 = (w % STRIDE) // 2, (h % STRIDE) // 2
    return scaled[:, y0 : y0 + h - h % STRIDE, x0 : x0 + w - w % STRIDE], sx, sy, x0, y0


def dense_box_array(
    net: VGG,
    image: torch.Tensor,
    classes: Sequence[int],
    *,
    Q: int,
    preprocess: Preprocess,
    kind: str | None = None,
    centre: bool = False,
    align: str = "centred",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every dense location's box for each class: boxes (len(classes), L, 4) in image pixels,
    clipped to the image, and the locations (L, 2) as (i, j), row-major.

    ``centre=True`` applies the net to the central crop only (one location): protocol 1's view,
    used to compare dense application against the centre crop with the same classes and merging.
    ``align`` places the grid of windows (see :func:`view`).
    """
    kind = kind_of(net, kind)
    maps, geometry = maps_of(net, [image], Q=Q, preprocess=preprocess, centre=centre, align=align)[0]
    return boxes_of_maps(maps, geometry, net.crop, kind, classes, image.shape[-2:])


class Geometry(NamedTuple):
    """Where a view sits: the rescale factors (new / old size per axis) and its offset (x0, y0) in
    the rescaled image."""

    sx: float
    sy: float
    x0: int
    y0: int


def maps_of(
    net: VGG,
    images: Sequence[torch.Tensor],
    *,
    Q: int,
    preprocess: Preprocess,
    centre: bool,
    align: str,
    batch_pixels: int | None = None,
) -> list[tuple[torch.Tensor, Geometry]]:
    """The dense net's output map (outputs, h, w) of each image's view (:func:`view`), with the
    view's geometry. Views of the same size run as one batch, of at most ``batch_pixels`` pixels
    (default: 64 crops' worth), so that nothing is padded and small nets are not run one image at a
    time."""
    views = [view(image, Q, net.crop, centre, align) for image in images]
    batch_pixels = batch_pixels or 64 * net.crop * net.crop
    by_size: dict[tuple[int, int], list[int]] = {}
    for n, v in enumerate(views):
        by_size.setdefault(tuple(v[0].shape[-2:]), []).append(n)
    out: list = [None] * len(views)
    eval_mode(net)
    dense = to_dense(net, ceil_mode=False)  # views are trimmed to multiples of 32 ("top-left": the plain net)
    for (h, w), members in by_size.items():
        step = max(1, batch_pixels // (h * w))
        for i in range(0, len(members), step):
            chunk = members[i : i + step]
            with torch.no_grad():
                maps = dense(torch.stack([preprocess(views[n][0]) for n in chunk]).to(device_of(net))).cpu()
            for n, m in zip(chunk, maps):
                out[n] = (m, Geometry(*views[n][1:]))
    return out


def boxes_of_maps(
    maps: torch.Tensor, geometry: Geometry, crop: int, kind: str, classes: Sequence[int], image_hw
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dense_box_array`'s boxes and locations, from a localisation net's output map."""
    k, h, w = maps.shape
    classes = [int(c) for c in classes]
    repeated = maps[None].expand(len(classes), k, h, w)
    params = box_of(repeated, kind, classes).double()  # (n, 4, h, w)
    params = params.permute(0, 2, 3, 1).reshape(len(classes), h * w, 4)
    sx, sy, x0, y0 = geometry
    windows = dense_windows(h, w, crop) + torch.tensor([x0, y0, x0, y0], dtype=torch.float64)
    boxes = decode(params, windows) / torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return clip(boxes, image_hw[-1], image_hw[-2]), torch.stack([i.reshape(-1), j.reshape(-1)], -1)


def scores_of_maps(maps: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """:func:`location_scores` from a classification net's output map."""
    return maps.double().softmax(0)[[int(c) for c in classes]].reshape(len(classes), -1)


def dense_boxes(
    net: VGG,
    kind: str | None,
    image: torch.Tensor,
    Q: int,
    classes: Sequence[int],
    *,
    preprocess: Preprocess,
    align: str = "centred",
) -> dict[int, list[tuple[tuple[float, ...], tuple[int, int]]]]:
    """Protocol 2's raw boxes: the localisation net applied densely over ``image`` rescaled to Q.
    For each class, one ``(box_xyxy, (i, j))`` per location of the output map; each box is decoded
    in its location's window (:func:`dense_windows`, shifted by the grid's offset, see
    :func:`view`) and mapped back to the original image."""
    boxes, locations = dense_box_array(net, image, classes, Q=Q, preprocess=preprocess, kind=kind, align=align)
    loc = [tuple(map(int, l)) for l in locations.tolist()]
    return {int(c): [(tuple(b), l) for b, l in zip(boxes[n].tolist(), loc)] for n, c in enumerate(classes)}


def location_scores(
    classifier: VGG,
    image: torch.Tensor,
    classes: Sequence[int],
    *,
    Q: int,
    preprocess: Preprocess,
    centre: bool = False,
    align: str = "centred",
) -> torch.Tensor:
    """The classification net applied densely at scale Q (or to the central crop): the soft-max
    posterior of each class at each location, (len(classes), L), in :func:`dense_box_array`'s order."""
    maps = maps_of(classifier, [image], Q=Q, preprocess=preprocess, centre=centre, align=align)[0][0]
    return scores_of_maps(maps, classes)
