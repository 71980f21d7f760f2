"""Initialisation (section 3.1: N(0, 1e-2), or the first four conv layers and the fc layers of net A)
and checked loading of state dicts."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .vgg import VGG, weighted_layers

# -- initialisation ---------------------------------------------------------------------------


def init_fan_in(model: VGG, last_std: float = 1e-2) -> VGG:
    """The Gaussian whose std follows each layer's fan-in, N(0, 2 / fan_in) (He et al., 2015), and the
    paper's N(0, 1e-2^2) for the last layer.

    A fixed std cannot serve every width: a width/8 net's 3x3 convs see 64 times fewer inputs than
    the paper's, so std 1e-2 shrinks the signal by about 0.03x per layer and an 11-layer net starts
    dead. Scaling the std with the fan-in keeps the variance of the activations from layer to layer
    at any width; the reduced profiles use it for the paper's "random initialisation" of net A.
    """
    for m in weighted_layers(model):
        if m.weight.is_meta:
            continue
        fan_in = m.weight[0].numel()
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
        nn.init.zeros_(m.bias)
    last = model.classifier[-1]
    if not last.weight.is_meta:
        nn.init.normal_(last.weight, 0.0, last_std)
    return model


def init_glorot(model: nn.Module) -> nn.Module:
    """Glorot & Bengio (2010) uniform init, biases 0: the post-submission route that needs no net A."""
    for m in weighted_layers(model):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
    return model


#: The layers the paper copies from a trained net A into B-E: "the first four convolutional layers
#: and the last three fully-connected layers". Matched by name, A's conv1_1, conv2_1, conv3_1 and
#: conv3_2 land on the deeper net's layers of the same name, whose shapes are the same.
INIT_FROM_A_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")


def init_from(model: VGG, net_a: VGG, layers: tuple[str, ...] = INIT_FROM_A_LAYERS) -> list[str]:
    """Copy ``layers`` of a trained net A into ``model``; the rest stay as they are (fresh).

    Returns the names copied. A layer whose shape differs is a ValueError naming it.
    """
    copied = []
    with torch.no_grad():
        for name in layers:
            src, dst = net_a.layer(name), model.layer(name)
            if src.weight.shape != dst.weight.shape:
                raise ValueError(
                    f"cannot copy {name} from {net_a.config}: shape {tuple(src.weight.shape)} != "
                    f"{tuple(dst.weight.shape)} in {model.config}; build both at the same width, crop "
                    "and num_classes"
                )
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
            copied.append(name)
    return copied


# -- state dicts ------------------------------------------------------------------------------


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``model`` with its tensor's shape."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise a ValueError that names every missing, unexpected or mis-shaped key."""
    want = expected_shapes(model)
    if not isinstance(state, Mapping):
        raise ValueError(f"a state dict must be a mapping of names to tensors, got {type(state).__name__}")
    got = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    wrong = [f"{k}: {got[k]} (expected {want[k]})" for k in want if k in got and got[k] != want[k]]
    if missing or unexpected or wrong:
        name = getattr(model, "config", type(model).__name__)
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:6]}{' ...' if len(wrong) > 6 else ''}")
        raise ValueError(
            f"state dict does not fit config {name}: " + "; ".join(parts) + ". Build the net with the "
            "config, width, crop and num_classes the weights were made for (torchvision: vgg11=A, "
            "vgg13=B, vgg16=D, vgg19=E at width 1, crop 224, 1000 classes)."
        )


def load_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load weights after :func:`check_state_dict`, so a wrong file fails with a clear message."""
    check_state_dict(model, state)
    model.load_state_dict(state)
    return model
