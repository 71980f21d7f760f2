"""Box geometry for localisation (Appendix A): encoding, decoding, IoU, greedy merging.

Boxes in images are ``(xmin, ymin, xmax, ymax)`` in continuous pixel coordinates (a box from
pixel 10 to pixel 20 has width 10; the PASCAL "+1" is not used), and every function here takes and
returns that layout. A net predicts a box as ``(cx, cy, w, h)``: its centre and size in units of
the window it sees (the crop), so ``(0.5, 0.5, 1, 1)`` is the whole window.

There is one IoU (:func:`iou`, computed by ``_iou_matrix``): the benchmark's rule
(:func:`correct`) and greedy merging's distance both read it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

#: A prediction is correct when its IoU with a ground-truth box is strictly above this (both tables).
IOU_CORRECT = 0.5
#: Choice: greedy merging stops when the closest pair is 1 - IoU >= this apart, i.e. only boxes that
#: overlap with IoU > 0.5 are merged. The paper and OverFeat give no number.
MERGE_THRESHOLD = 0.5


def as_boxes(x) -> torch.Tensor:
    """Any array-like of boxes (..., 4) as a float64 tensor."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64)) if not torch.is_tensor(x) else x.double()
    if t.numel() == 0:
        return t.reshape(0, 4)
    if t.shape[-1:] != (4,):
        raise ValueError(f"boxes must have 4 numbers in their last dimension, got shape {tuple(t.shape)}")
    return t


def _rows(x) -> np.ndarray:
    """Boxes as a float64 numpy array (N, 4): the per-image work below is on a handful of boxes,
    where numpy's per-call cost is a fraction of torch's."""
    return as_boxes(x).reshape(-1, 4).cpu().numpy()


def encode(box_xyxy, window) -> torch.Tensor:
    """A box ``(xmin, ymin, xmax, ymax)`` as ``(cx, cy, w, h)`` in units of ``window`` (xyxy).

    The window's own width scales x and its height scales y; for a square crop both are its side.
    Works on one box (4,) or many (..., 4), with one window or one per box.

        >>> encode((10, 20, 30, 60), (0, 0, 100, 100)).tolist()
        [0.2, 0.4, 0.2, 0.4]
    """
    b, w = as_boxes(box_xyxy), as_boxes(window)
    ww, wh = w[..., 2] - w[..., 0], w[..., 3] - w[..., 1]
    if bool((ww <= 0).any() or (wh <= 0).any()):
        raise ValueError(f"window {w.tolist()} has no area; a window is (x0, y0, x1, y1) with x1 > x0, y1 > y0")
    cx = ((b[..., 0] + b[..., 2]) / 2 - w[..., 0]) / ww
    cy = ((b[..., 1] + b[..., 3]) / 2 - w[..., 1]) / wh
    return torch.stack([cx, cy, (b[..., 2] - b[..., 0]) / ww, (b[..., 3] - b[..., 1]) / wh], -1)


def decode(params, window) -> torch.Tensor:
    """The inverse of :func:`encode`: ``(cx, cy, w, h)`` in units of ``window`` back to xyxy pixels."""
    p, w = as_boxes(params), as_boxes(window)
    ww, wh = w[..., 2] - w[..., 0], w[..., 3] - w[..., 1]
    cx, cy = w[..., 0] + p[..., 0] * ww, w[..., 1] + p[..., 1] * wh
    half_w, half_h = p[..., 2] * ww / 2, p[..., 3] * wh / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1)


def _area(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0)
    h = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0)
    return w * h


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes a (N, 4) and b (M, 4): (N, M), 0 where the union is empty."""
    inter = _intersection(a, b)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def area(boxes) -> torch.Tensor:
    """Areas of xyxy boxes; an inverted box (xmax < xmin) has area 0."""
    b = as_boxes(boxes)
    return torch.from_numpy(np.asarray(_area(b.cpu().numpy()), dtype=np.float64))


def intersection(a, b) -> torch.Tensor:
    """Pairwise intersection areas of boxes a (N, 4) and b (M, 4): (N, M)."""
    return torch.from_numpy(_intersection(_rows(a), _rows(b)))


def iou(a, b):
    """Intersection over union of xyxy boxes.

    Two single boxes (4,) give a float; otherwise every pair of ``a`` (N, 4) and ``b`` (M, 4) gives
    an (N, M) tensor. Boxes with no area have IoU 0 with everything.
    """
    out = _iou_matrix(_rows(a), _rows(b))
    return float(out[0, 0]) if np.ndim(a) == 1 and np.ndim(b) == 1 else torch.from_numpy(out)


def correct(box, gt_boxes) -> bool:
    """A predicted box is correct when its IoU with ANY ground-truth box is above 0.5."""
    return bool((_iou_matrix(_rows(box), _rows(gt_boxes)) > IOU_CORRECT).any())


def clip(boxes, width: float, height: float) -> torch.Tensor:
    """Boxes clipped to the image ``[0, width] x [0, height]``."""
    b = as_boxes(boxes).clone()
    b[..., 0::2] = b[..., 0::2].clamp(0, width)
    b[..., 1::2] = b[..., 1::2].clamp(0, height)
    return b


def scale(boxes, sx: float, sy: float) -> torch.Tensor:
    """Boxes of an image resized by ``sx`` across and ``sy`` down (new size / old size)."""
    return as_boxes(boxes) * torch.tensor([sx, sy, sx, sy], dtype=torch.float64)


class Merged(NamedTuple):
    """Greedy merging's result, best first: boxes (M, 4), scores (M,) and counts (M,) (how many
    raw boxes each merged box averages)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    counts: torch.Tensor


def greedy_merge(boxes, scores=None, threshold: float = MERGE_THRESHOLD) -> Merged:
    """OverFeat's greedy merging (Sermanet et al. 2014, sect. 4.3), with 1 - IoU as the distance.

    Repeatedly take the closest pair of boxes; while their distance ``1 - IoU`` is strictly under
    ``threshold``, replace the pair by the average of their coordinates, weighted by how many raw
    boxes each already averages (so a merged box is the plain mean of its members), with the sum of
    their scores. Then rank by score (ties keep input order). Ties in distance merge the pair with
    the lowest indices first.

    Choice: OverFeat's own "match score" adds the distance between the centres to the area of the
    intersection, two quantities in different units, and gives no threshold; 1 - IoU is
    scale-free, lies in [0, 1], and is the measure the benchmark itself uses. Default scores are 1
    per box, so a merged box's score is the number of locations that voted for it.

    Cost: up to n merges, each finding the closest of n^2 pairs: O(n^3) in the worst case, a few
    milliseconds for the few hundred boxes of one class in the paper's setting (about 6 x 10
    windows per scale and net).
    """
    b = _rows(boxes).copy()
    n = len(b)
    s = np.ones(n) if scores is None else torch.as_tensor(scores, dtype=torch.float64).numpy().astype(np.float64)
    if s.shape != (n,):
        raise ValueError(f"greedy_merge: {n} boxes but scores of shape {tuple(s.shape)}")
    counts = np.ones(n)
    if n > 1:
        alive = np.ones(n, dtype=bool)
        dist = 1 - _iou_matrix(b, b)
        np.fill_diagonal(dist, np.inf)
        while True:
            i, j = divmod(int(dist.argmin()), n)
            if not dist[i, j] < threshold:
                break
            i, j = min(i, j), max(i, j)
            b[i] = (counts[i] * b[i] + counts[j] * b[j]) / (counts[i] + counts[j])
            counts[i] += counts[j]
            s[i] += s[j]
            alive[j] = False
            dist[j, :] = dist[:, j] = np.inf
            d = 1 - _iou_matrix(b[i : i + 1], b)[0]
            d[~alive] = np.inf
            d[i] = np.inf
            dist[i, :] = dist[:, i] = d
        keep = np.flatnonzero(alive)
        keep = keep[np.argsort(-s[keep], kind="stable")]
        b, s, counts = b[keep], s[keep], counts[keep]
    return Merged(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(counts))
