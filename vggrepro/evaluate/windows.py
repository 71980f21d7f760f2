"""Why dense evaluation can lose to a crop at small scale: window placement against context.

A dense pass (section 3.2) differs from classifying crops in two ways, and at the `ci` scale
(32-px crops, test scales Q = 37, 55, 73 that are not multiples of 32) either could make it worse:

- **placement**: the authors' Caffe rounds pooled sizes up, so a side that is not a multiple of
  32 gets a last band of windows that reach past the image (at Q = 37, 5 of their 32 rows are
  image). The same pass with the plain net's floor pooling keeps only the windows that lie inside.
- **context**: a window's score draws on the pixels around it through the convolutions, where a
  crop sees the zero border it was trained with.

So four ways to score one rescaled image, each on the same images, separate the two:

- ``dense``: the authors' dense pass (pools rounded up, every window);
- ``dense inside``: the dense pass with floor pooling (only the windows inside the image);
- ``crops inside``: the same inside windows cut out as crops, each with its own zero border;
- ``centre``: the centre crop alone.

``dense - dense inside`` is what placement costs, ``dense inside - crops inside`` what context
costs, and ``crops inside - centre`` what averaging the windows gives. Scores of windows are
averaged before the soft-max, as the dense pass averages its score map. No flips: one view each.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..data import transforms as T
from ..data.transforms import Preprocess
from ..models import VGG, score_map_size, to_dense

#: the ways of scoring an image, in the order of the module's docstring
VIEWS = ("dense", "dense inside", "crops inside", "centre")
STRIDE = 32  # five 2x2 pools: a dense window every 32 input pixels


def dense_windows(model: VGG, height: int, width: int, ceil_mode: bool = True) -> list[tuple[int, int]]:
    """(top, left) of the ``crop x crop`` window behind each position of the dense score
    map of a ``height x width`` image, row by row; pools rounded up (as the authors'
    Caffe does) or down."""
    rows, cols = score_map_size(model, height, width, ceil_mode=ceil_mode)
    return [(STRIDE * r, STRIDE * c) for r in range(rows) for c in range(cols)]


def inside_windows(model: VGG, height: int, width: int) -> list[tuple[int, int]]:
    """(top, left) of the dense windows that lie wholly inside a ``height x width`` image, row by
    row: the positions of the floor-pooled score map."""
    return dense_windows(model, height, width, ceil_mode=False)


def view_scores(model: VGG, preprocess: Preprocess, image: torch.Tensor, Q: int) -> dict[str, torch.Tensor]:
    """Each view's class scores (logits, averaged over its windows) for one uint8 image at scale Q."""
    img = T.rescale(image, Q)
    x = preprocess(img.unsqueeze(0))
    h, w = img.shape[-2:]
    crops = torch.cat([T.crop(x, top, left, model.crop) for top, left in inside_windows(model, h, w)])
    return {
        "dense": to_dense(model)(x).mean(dim=(-2, -1))[0],
        "dense inside": to_dense(model, ceil_mode=False)(x).mean(dim=(-2, -1))[0],
        "crops inside": model(crops).mean(0),
        "centre": model(T.centre_crop(x, model.crop))[0],
    }


def view_errors(
    model: VGG, preprocess: Preprocess, images: Iterable[tuple[int, torch.Tensor, int]], Q: int
) -> dict[str, np.ndarray]:
    """Per view, each image's top-1 error (0/1, in the order given) at scale Q; also ``windows``,
    the number of dense windows per image (pools rounded up), and ``inside``, those inside."""
    errors = {v: [] for v in VIEWS} | {"windows": [], "inside": []}
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for _, image, label in images:
            for view, scores in view_scores(model, preprocess, image, Q).items():
                errors[view].append(int(scores.argmax()) != int(label))
            h, w = T.scaled_size(*image.shape[-2:], Q)
            rows, cols = score_map_size(model, h, w)
            errors["windows"].append(rows * cols)
            errors["inside"].append(len(inside_windows(model, h, w)))
    model.train(was_training)
    return {k: np.array(v, dtype=np.int64) for k, v in errors.items()}
