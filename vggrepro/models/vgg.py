"""Section 2 of the paper: Table 1 as data, the VGG module, its dense form, and what it costs.

Table 1 is written in the paper's own notation: ``convK-N`` is a KxK convolution with N output
channels, ``LRN`` is AlexNet's local response normalisation, and each inner list is one block,
ended by a 2x2/stride-2 max-pool. The module's state-dict keys are torchvision's
(``features.<i>``, ``classifier.0/3/6``), so configs A, B, D and E load torchvision's
vgg11/13/16/19 weights without renaming.
"""

from __future__ import annotations

import math
import re

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

    def __init__(
        self,
        config: str,
        *,
        width: float = 1.0,
        num_classes: int = 1000,
        crop: int = 224,
        dropout: float = DROPOUT,
    ):
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


def build(
    config: str, *, width: float = 1.0, num_classes: int = 1000, crop: int = 224, dropout: float = DROPOUT
) -> VGG:
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


def describe(config: str) -> str:
    """One line of Table 1: the config's layers in the paper's notation."""
    return " | ".join(" ".join(block) for block in config_layers(config))


def weighted_layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def init_gaussian(model: nn.Module, std: float = 1e-2) -> nn.Module:
    """Weights from N(0, std^2), biases 0: how the paper trains net A from scratch.

    The paper says "variance 1e-2", which is std 0.1, but many reimplementations read it as std
    1e-2, which is the default here: the paper is ambiguous, so ``std`` is a parameter. A 3x3
    conv with 512 inputs multiplies the activations' variance by about 4608 * std^2 / 2 (the 2 for
    the ReLU): 23x per layer at std 0.1, 0.23x at std 1e-2.
    """
    for m in weighted_layers(model):
        if m.weight.is_meta:  # built on the meta device to count it: no values to draw (and
            continue  # normal_ on meta tensors costs seconds of lazy imports)
        nn.init.normal_(m.weight, 0.0, std)
        nn.init.zeros_(m.bias)
    return model
