"""What a net costs and sees: Table 2's parameter counts, multiply-adds, activation memory and
receptive fields (section 2.3's argument for stacks of 3x3 layers), computed and measured."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .vgg import VGG, pooled


def count_params(model: nn.Module) -> int:
    """Every weight and bias: Table 2 counts these (132,863,336 for A at width 1 and 1000 classes)."""
    return sum(p.numel() for p in model.parameters())


def layer_table(model: VGG, size: int | tuple[int, int] | None = None) -> list[dict]:
    """Per layer, for one image of ``size`` (default: the crop): output shape, parameters, MACs
    (multiply-accumulates) and the float32 bytes of its output, walked from the module list.

    Each row is a dict with ``layer`` (conv1_1 ... pool5, LRN, fc6 ... fc8), ``module`` (its path),
    ``kind`` (Conv2d, MaxPool2d, LocalResponseNorm, Linear), ``output`` (shape without the batch),
    ``params``, ``macs`` and ``activation_bytes``. ReLUs work in place and cost no memory here.

    Convs keep the size (padding k//2), pools halve it, ``avgpool`` brings it to the grid, and the
    FC layers see the flattened map: the same arithmetic a forward pass does, without running one.
    """
    h, w = (size, size) if isinstance(size, int) else (size or (model.crop, model.crop))
    names = {path: name for name, path in model.layer_names.items()}
    rows, c, pools = [], 3, 0

    def row(path, module, shape, macs):
        rows.append(
            dict(
                layer=names.get(path, type(module).__name__),
                module=path,
                kind=type(module).__name__,
                output=shape,
                params=sum(p.numel() for p in module.parameters()),
                macs=macs,
                activation_bytes=4 * math.prod(shape),
            )
        )

    for i, m in enumerate(model.features):
        if isinstance(m, nn.Conv2d):
            c = m.out_channels
            row(f"features.{i}", m, (c, h, w), c * h * w * m.in_channels * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.MaxPool2d):  # rounded up, as the dense form pools (see DenseVGG)
            h, w, pools = pooled(h, 1), pooled(w, 1), pools + 1
            names[f"features.{i}"] = f"pool{pools}"
            row(f"features.{i}", m, (c, h, w), 0)
        elif isinstance(m, nn.LocalResponseNorm):
            names[f"features.{i}"] = "LRN"
            row(f"features.{i}", m, (c, h, w), 0)
    for i, m in enumerate(model.classifier):
        if isinstance(m, nn.Linear):
            row(f"classifier.{i}", m, (m.out_features,), m.in_features * m.out_features)
    return rows


def count_macs(model: VGG, size: int | tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of one forward pass on one image (default: a crop). FLOPs = 2 x MACs."""
    return sum(r["macs"] for r in layer_table(model, size))


def activation_bytes(model: VGG, size: int | tuple[int, int] | None = None) -> int:
    """The float32 bytes of every layer's output for one image: what training must keep."""
    return sum(r["activation_bytes"] for r in layer_table(model, size))


def receptive_field(layers: list[int] | nn.Module) -> int:
    """The side of the input square one output unit sees.

    A list of kernel sizes is a stack of stride-1 convolutions: ``1 + sum(k - 1)``. A net (a VGG,
    or any module of convolutions and pools) is walked layer by layer up to its pool5: each layer
    adds ``(kernel - 1) x`` the stride accumulated before it, and each pool multiplies that stride."""
    if not isinstance(layers, nn.Module):
        return 1 + sum(k - 1 for k in layers)
    modules = layers.features if isinstance(layers, VGG) else layers.modules()
    rf, jump = 1, 1
    for m in modules:
        if isinstance(m, nn.Conv2d):
            rf += (m.kernel_size[0] - 1) * jump
        elif isinstance(m, nn.MaxPool2d):
            rf += (m.kernel_size - 1) * jump
            jump *= m.stride
    return rf


def input_gradient(module: nn.Module, in_channels: int, size: int = 15) -> torch.Tensor:
    """How much one output pixel (the centre one, channel 0) depends on each input pixel.

    Runs a copy of ``module`` whose conv weights are all equal and positive (biases 0) on an input
    of ones, so every ReLU passes and no two paths cancel; returns d output / d input summed over
    the input channels, a ``size x size`` map. Its non-zero part is the receptive field.
    """
    probe = copy.deepcopy(module).float()
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    x = torch.ones(1, in_channels, size, size, requires_grad=True)
    y = probe(x)
    y[0, 0, y.shape[-2] // 2, y.shape[-1] // 2].backward()
    return x.grad[0].sum(0)


def measured_receptive_field(module: nn.Module, in_channels: int, size: int = 15) -> int:
    """The receptive field of a stride-1 conv stack, measured: the width of the input patch on
    which one output pixel depends (see :func:`input_gradient`). ``size`` must exceed it."""
    cols = input_gradient(module, in_channels, size).sum(0).nonzero().flatten()
    extent = int(cols.max() - cols.min() + 1)
    if extent >= size:
        raise ValueError(f"receptive field reaches the input's border ({size} px); pass a larger size")
    return extent


def fc_params(model: VGG) -> int:
    """Parameters in fc6, fc7 and fc8 (about 124 M of the paper's 133-144 M)."""
    return sum(p.numel() for p in model.classifier.parameters())
