"""Section 2 of the paper: Table 1 as data, the VGG module, its dense form, and what it costs.

Table 1 is written in the paper's own notation: ``convK-N`` is a KxK convolution with N output
channels, ``LRN`` is AlexNet's local response normalisation, and each inner list is one block,
ended by a 2x2/stride-2 max-pool. The module's state-dict keys are torchvision's
(``features.<i>``, ``classifier.0/3/6``), so configs A, B, D and E load torchvision's
vgg11/13/16/19 weights without renaming.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

#: Table 1, column by column. Widths are the paper's; ``build(width=...)`` scales them.
CONFIGS: dict[str, list[list[str]]] = {
    "A": [["conv3-64"], ["conv3-128"], ["conv3-256"] * 2, ["conv3-512"] * 2, ["conv3-512"] * 2],
    "A-LRN": [["conv3-64", "LRN"], ["conv3-128"], ["conv3-256"] * 2, ["conv3-512"] * 2, ["conv3-512"] * 2],
    "B": [["conv3-64"] * 2, ["conv3-128"] * 2, ["conv3-256"] * 2, ["conv3-512"] * 2, ["conv3-512"] * 2],
    "C": [
        ["conv3-64"] * 2,
        ["conv3-128"] * 2,
        ["conv3-256"] * 2 + ["conv1-256"],
        ["conv3-512"] * 2 + ["conv1-512"],
        ["conv3-512"] * 2 + ["conv1-512"],
    ],
    "D": [["conv3-64"] * 2, ["conv3-128"] * 2, ["conv3-256"] * 3, ["conv3-512"] * 3, ["conv3-512"] * 3],
    "E": [["conv3-64"] * 2, ["conv3-128"] * 2, ["conv3-256"] * 4, ["conv3-512"] * 4, ["conv3-512"] * 4],
}

#: Nets the paper discusses but does not tabulate. "B-5x5": B with each pair of 3x3 layers
#: replaced by one 5x5 layer (section 4.1: its top-1 error was 7% higher than B's).
VARIANTS: dict[str, list[list[str]]] = {
    "B-5x5": [["conv5-64"], ["conv5-128"], ["conv5-256"], ["conv5-512"], ["conv5-512"]],
}

#: torchvision's builders that equal the paper's configs (it has no A-LRN and no C).
TORCHVISION_NAMES = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}

FC_WIDTH = 4096
#: Dropout on fc6 and fc7 (section 3.1); a profile may set another (``ci`` trains without).
DROPOUT = 0.5
#: AlexNet's LRN (Krizhevsky et al. 2012): k=2, n=5, alpha=1e-4, beta=0.75. PyTorch's
#: LocalResponseNorm divides alpha by n, as Caffe does, so AlexNet's alpha is passed as alpha * n.
LRN_SETTINGS = dict(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)

_LAYER = re.compile(r"^conv(\d+)-(\d+)$")


class LRN(nn.LocalResponseNorm):
    """AlexNet's LRN, computed as a 1x1 convolution of x^2 with a band of ones across channels.

    The same numbers as ``nn.LocalResponseNorm`` (a test checks it), whose pooling over a padded
    5-D view is several times slower on CPUs than the rest of a small net; a 1x1 convolution keeps
    channels-last memory and runs as one small matrix product.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        i = torch.arange(c, device=x.device)
        offset = i[None, :] - i[:, None]  # input channel - output channel
        # output channel o sums x^2 over channels o - size//2 .. o + (size-1)//2, as PyTorch pads
        band = ((offset >= -(self.size // 2)) & (offset <= (self.size - 1) // 2)).to(x.dtype)
        window_sum = F.conv2d(x * x, band.view(c, c, 1, 1))
        return x / (self.k + self.alpha / self.size * window_sum).pow(self.beta)


def config_layers(config: str) -> list[list[str]]:
    """The blocks of a config or variant; an unknown name is a ValueError listing the known ones."""
    if config in CONFIGS:
        return CONFIGS[config]
    if config in VARIANTS:
        return VARIANTS[config]
    raise ValueError(f"unknown config {config!r}; accepted: {sorted(CONFIGS) + sorted(VARIANTS)}")


def weight_layers(config: str) -> int:
    """Table 1's header: the number of weight layers (convs + 3 FC)."""
    return sum(1 for block in config_layers(config) for layer in block if layer != "LRN") + 3


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _check_args(width, crop, num_classes, dropout) -> None:
    """VGG's arguments, each with an error that says what is accepted."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r} must be in [0, 1) (the paper's is 0.5)")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < math.inf:
        raise ValueError(f"width={width!r} must be a positive number (1.0 is the paper's net, 0.125 is 1/8)")
    if not isinstance(crop, int) or crop <= 0 or crop % 32:
        raise ValueError(
            f"crop={crop!r} is not a positive multiple of 32: five 2x2 pools must leave a whole "
            f"crop/32 map for fc6 (224 -> 7x7). Accepted: 32, 64, 96, ..., 224, ..."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer (the paper's is 1000)")


class VGG(nn.Module):
    """A VGG net: ``features`` (convs, ReLUs, pools), ``avgpool`` and ``classifier`` (fc6, fc7, fc8).

    ``layer_names`` maps the paper's names (conv1_1, ..., fc6, fc7, fc8) to module paths.
    """

    def __init__(self, config: str, *, width: float = 1.0, num_classes: int = 1000,
                 crop: int = 224, dropout: float = DROPOUT):
        super().__init__()
        _check_args(width, crop, num_classes, dropout)
        blocks = config_layers(config)
        self.config, self.width, self.crop = config, float(width), crop
        self.num_classes = num_classes
        self.layer_names: dict[str, str] = {}  # the paper's names (conv1_1, fc6) -> modules

        layers: list[nn.Module] = []
        channels = 3
        for b, block in enumerate(blocks, start=1):
            i = 0
            for spec in block:
                if spec == "LRN":
                    layers.append(LRN(**LRN_SETTINGS))
                    continue
                k, n = map(int, _LAYER.match(spec).groups())  # "conv3-64": k=3, n=64
                out = _scaled(n, width)
                i += 1
                self.layer_names[f"conv{b}_{i}"] = f"features.{len(layers)}"
                conv = nn.Conv2d(channels, out, k, padding=k // 2)
                layers += [conv, nn.ReLU(inplace=True)]
                channels = out
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.grid = crop // 32  # fc6 sees a grid x grid map: 7x7 at 224
        # identity at the crop size, as in torchvision
        self.avgpool = nn.AdaptiveAvgPool2d(self.grid)
        fc = _scaled(FC_WIDTH, width)
        self.classifier = nn.Sequential(
            nn.Linear(channels * self.grid * self.grid, fc),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc, fc),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc, num_classes),  # fc8
        )
        self.layer_names.update(fc6="classifier.0", fc7="classifier.3", fc8="classifier.6")
        init_gaussian(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor, ceil_mode: bool = False) -> torch.Tensor:
        """The convolutional part: the pool5 map (N, C, h, w). ``ceil_mode=True`` rounds pooled sizes
        up, as the authors' Caffe does (see :class:`DenseVGG`); at multiples of 32 both agree."""
        if not ceil_mode:
            return self.features(x)
        for m in self.features:
            pool = isinstance(m, nn.MaxPool2d)
            x = F.max_pool2d(x, m.kernel_size, m.stride, ceil_mode=True) if pool else m(x)
        return x

    def forward_head(self, x: torch.Tensor, dense: bool = False) -> torch.Tensor:
        """fc6-fc8 on a pool5 map: class scores (N, classes), or with ``dense`` the score
        map (N, classes, h, w), fc6 acting as a ``grid x grid`` convolution and fc7, fc8 as
        1x1 ones with the very same weight tensors (reshaped at each call, never copied)."""
        if not dense:
            return self.classifier(torch.flatten(self.avgpool(x), 1))
        g = self.grid
        if x.shape[-1] < g or x.shape[-2] < g:
            raise ValueError(
                f"the input is smaller than the crop {self.crop}: its feature map "
                f"{tuple(x.shape)} is under {g}x{g}, the least the dense net needs"
            )
        fc6, relu6, drop6, fc7, relu7, drop7, fc8 = self.classifier
        # Linear weights are (out, C*g*g) in C, y, x order: a conv kernel's order.
        x = F.conv2d(x, fc6.weight.view(fc6.out_features, -1, g, g), fc6.bias)
        x = drop6(relu6(x))
        x = F.conv2d(x, fc7.weight.view(fc7.out_features, -1, 1, 1), fc7.bias)
        x = drop7(relu7(x))
        return F.conv2d(x, fc8.weight.view(fc8.out_features, -1, 1, 1), fc8.bias)

    @property
    def dropout(self) -> float:
        """The dropout probability of fc6 and fc7."""
        return next(m.p for m in self.classifier if isinstance(m, nn.Dropout))

    def layer(self, name: str) -> nn.Module:
        """The module of a paper layer name, e.g. ``layer("conv3_2")`` or ``layer("fc6")``."""
        if name not in self.layer_names:
            raise ValueError(f"{self.config} has no layer {name!r}; it has {list(self.layer_names)}")
        return self.get_submodule(self.layer_names[name])

    def extra_repr(self) -> str:
        return f"config={self.config}, width={self.width:g}, crop={self.crop}"


def build(config: str, *, width: float = 1.0, num_classes: int = 1000, crop: int = 224,
          dropout: float = DROPOUT) -> VGG:
    """The VGG net of a Table 1 config (or a variant), Gaussian-initialised with std 1e-2, with
    dropout ``dropout`` on fc6 and fc7 (a profile's, to train; it does nothing in eval mode)."""
    return VGG(config, width=width, num_classes=num_classes, crop=crop, dropout=dropout)


# -- dense evaluation --------------------------------------------------------------------------


class DenseVGG(nn.Module):
    """The fully-convolutional form of a VGG net (section 3.2), sharing its parameters.

    fc6 acts as a ``grid x grid`` convolution and fc7, fc8 as 1x1 convolutions, with the very same
    weight tensors reshaped at each call (a conversion, not a copy): training the VGG net changes
    its dense form too. Returns the class-score map ``(N, classes, h, w)``.
    """

    def __init__(self, net: VGG, ceil_mode: bool = True):
        super().__init__()
        self.net, self.ceil_mode = net, ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The authors' Caffe rounds pooled sizes up, so a side that is not a multiple
        # of 32 keeps its last band of windows (341 x 256 gives 5 x 2 windows, not 4 x 2);
        # at multiples of 32, and so on every training crop, both roundings agree.
        pool5 = self.net.forward_features(x, self.ceil_mode)
        return self.net.forward_head(pool5, dense=True)


def to_dense(model: VGG, ceil_mode: bool = True) -> DenseVGG:
    """The dense (fully-convolutional) form of ``model``; see :class:`DenseVGG`. ``ceil_mode=False``
    gives the plain net's pools, which drop the pixels past the last multiple of 32."""
    if not isinstance(model, VGG):
        raise ValueError(f"to_dense needs a vggrepro VGG net, got {type(model).__name__}")
    return DenseVGG(model, ceil_mode)


def pooled(side: int, pools: int = 5, ceil_mode: bool = True) -> int:
    """A side's length after ``pools`` 2x2 pools: rounded up as Caffe does, or down as the plain net."""
    for _ in range(pools):
        side = -(-side // 2) if ceil_mode else side // 2
    return side


def score_map_size(model: VGG, height: int, width: int, ceil_mode: bool = True) -> tuple[int, int]:
    """The dense score map's size for an input of ``height x width``: one location per crop-sized
    window at stride 32, ``(ceil(H/32) - grid + 1, ceil(W/32) - grid + 1)``."""
    return (pooled(height, ceil_mode=ceil_mode) - model.grid + 1, pooled(width, ceil_mode=ceil_mode) - model.grid + 1)


# -- counting ---------------------------------------------------------------------------------


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
        rows.append(dict(layer=names.get(path, type(module).__name__), module=path, kind=type(module).__name__,
                         output=shape, params=sum(p.numel() for p in module.parameters()), macs=macs,
                         activation_bytes=4 * math.prod(shape)))

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


# -- initialisation ---------------------------------------------------------------------------


def _weighted(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def init_gaussian(model: nn.Module, std: float = 1e-2) -> nn.Module:
    """Weights from N(0, std^2), biases 0: how the paper trains net A from scratch.

    The paper says "variance 1e-2", which is std 0.1, but many reimplementations read it as std
    1e-2, which is the default here: the paper is ambiguous, so ``std`` is a parameter. A 3x3
    conv with 512 inputs multiplies the activations' variance by about 4608 * std^2 / 2 (the 2 for
    the ReLU): 23x per layer at std 0.1, 0.23x at std 1e-2.
    """
    for m in _weighted(model):
        if m.weight.is_meta:  # built on the meta device to count it: no values to draw (and
            continue  # normal_ on meta tensors costs seconds of lazy imports)
        nn.init.normal_(m.weight, 0.0, std)
        nn.init.zeros_(m.bias)
    return model


def init_fan_in(model: VGG, last_std: float = 1e-2) -> VGG:
    """The Gaussian whose std follows each layer's fan-in, N(0, 2 / fan_in) (He et al., 2015), and the
    paper's N(0, 1e-2^2) for the last layer.

    A fixed std cannot serve every width: a width/8 net's 3x3 convs see 64 times fewer inputs than
    the paper's, so std 1e-2 shrinks the signal by about 0.03x per layer and an 11-layer net starts
    dead. Scaling the std with the fan-in keeps the variance of the activations from layer to layer
    at any width; the reduced profiles use it for the paper's "random initialisation" of net A.
    """
    for m in _weighted(model):
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
    for m in _weighted(model):
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


def fc_params(model: VGG) -> int:
    """Parameters in fc6, fc7 and fc8 (about 124 M of the paper's 133-144 M)."""
    return sum(p.numel() for p in model.classifier.parameters())


def describe(config: str) -> str:
    """One line of Table 1: the config's layers in the paper's notation."""
    return " | ".join(" ".join(block) for block in config_layers(config))

