"""Appendix B's descriptor taken from a convolutional layer: for a net that has no fully-connected
layers to read (the authors' VGG-16 convolutions, :mod:`vggrepro.evaluate.onnx_weights`), or to ask
which depth transfers best.

The paper reads fc7's map, applied densely, and averages it over all positions; here the map is a
block's last convolution after its ReLU (``conv5_3``, ``conv4_3``, ``conv3_3``), averaged over all
positions the same way: a global average over the map, one vector of the layer's channels per image
and scale. One forward pass gives every tap. Scales are then stacked or averaged and L2-normalised
with :func:`vggrepro.generalise.features.combine`, as for fc7's descriptors.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from .. import models
from ..data.transforms import Preprocess, hflip, resize, scaled_size

#: each of the last three blocks' last convolution
TAPS = ("conv3_3", "conv4_3", "conv5_3")


def _stops(net: models.VGG, taps) -> dict[int, str]:
    """The index in ``net.features`` of the ReLU after each tap's convolution."""
    stops = {}
    for tap in taps:
        index = int(net.layer_names[tap].split(".")[1])
        if not isinstance(net.features[index + 1], torch.nn.ReLU):
            raise ValueError(f"{tap} is not followed by a ReLU in {net.config}")
        stops[index + 1] = tap
    return stops


@torch.no_grad()
def tap_descriptors(
    net: models.VGG,
    preprocess: Preprocess,
    images: torch.Tensor,
    scales,
    *,
    taps=TAPS,
    flip: bool = False,
    batch: int = 64,
) -> dict[str, np.ndarray]:
    """tap -> (images, scales, channels): each tap's map after its ReLU,
    averaged over space, with ``images`` (N, 3, h, w) uint8 of one size rescaled
    so that their smaller side is Q at each of ``scales``. ``flip``: averaged
    with the mirrored image's, as the paper does (twice the cost). The passes
    stop at the deepest tap."""
    stops = _stops(net, taps)  # the index of the ReLU after each tap
    layers = list(net.eval().features)[: max(stops) + 1]
    for m in layers:
        m.to(memory_format=torch.channels_last)  # the faster layout on a CPU
    h, w = images.shape[-2:]
    n, width = len(images), {tap: net.layer(tap).out_channels for tap in taps}
    out = {tap: np.zeros((n, len(scales), width[tap])) for tap in taps}
    steps = [(j, k) for j in range(len(scales)) for k in range(0, n, batch)]
    for j, k in tqdm(steps, desc="descriptors", unit="batch", leave=False):
        x = preprocess(resize(images[k : k + batch], scaled_size(h, w, scales[j])))
        x = x.contiguous(memory_format=torch.channels_last)
        views = [x, hflip(x)] if flip else [x]
        for view in views:
            for i, m in enumerate(layers):
                view = m(view)
                if i in stops:
                    mean = view.mean(dim=(-2, -1)).double().numpy()
                    out[stops[i]][k : k + batch, j] += mean / len(views)
    return out
