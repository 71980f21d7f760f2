"""Released weights from local files: torchvision's ``.pth`` state dicts and the authors' Caffe models.

Nothing is downloaded: a reader who has the files passes their path. Each loader returns the net
(in eval mode) and the :class:`~vggrepro.data.transforms.Preprocess` its weights expect, so that one
evaluation serves every kind of weights:

- torchvision's vgg11/13/16/19 (configs A, B, D, E) were trained on RGB pixels scaled to 0-1 and
  normalised by ImageNet's mean and std: ``Preprocess(mean=255*(0.485, 0.456, 0.406),
  std=255*(0.229, 0.224, 0.225), order="RGB")``.
- The authors' Caffe models of D and E (``VGG_ILSVRC_16_layers.caffemodel``,
  ``VGG_ILSVRC_19_layers.caffemodel``) were trained on 0-255 pixels in **BGR** order minus the mean
  pixel (103.939, 116.779, 123.68), given in BGR: ``Preprocess(mean=(123.68, 116.779, 103.939)``
  (the same pixel, in RGB order as Preprocess stores it), ``std=1, order="BGR")``. Preprocess
  subtracts the mean from the RGB image and then reverses the channels, which gives exactly
  Caffe's ``BGR - mean_BGR``.

Why keep BGR in the pre-processing rather than flip conv1_1's input channels? Both give the same
outputs (a test checks it), but keeping it leaves every weight bit-for-bit as released, so the
loaded net's features can be compared with Caffe's own, and the convention is recorded with the
net (``Preprocess.order``) instead of hidden in a weight tensor.

The net's width, crop and number of classes are read off the weights' shapes (the released nets:
width 1, crop 224, 1000 classes), so small nets written by the tests load the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .. import models
from ..data.transforms import Preprocess
from ..models import VGG
from ..models.vgg import _scaled
from ..train.checkpoints import model_from_checkpoint, preprocess_of
from .caffe import CaffeNet, read_caffemodel

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's, on 0-1 RGB pixels
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # the authors' mean pixel, 0-255, in BGR order

#: Configs to try when reading a net's shapes, in Table 1's order. torchvision has A, B, D, E.
_CANDIDATES = ["A", "A-LRN", "B", "C", "D", "E", *models.VARIANTS]
_TORCH_NAMES = {name: config for config, name in models.TORCHVISION_NAMES.items()}  # "vgg16" -> "D"


def torchvision_preprocess() -> Preprocess:
    """What torchvision's VGG weights expect: ImageNet mean and std (in 0-255 units), RGB."""
    # rounded so that 255 * 0.224 prints as 57.12, not 57.120000000000005
    return Preprocess(
        mean=tuple(round(255 * m, 9) for m in IMAGENET_MEAN),
        std=tuple(round(255 * s, 9) for s in IMAGENET_STD),
        order="RGB",
    )


def caffe_preprocess() -> Preprocess:
    """What the authors' Caffe models expect: 0-255 BGR minus the mean pixel, no std scaling."""
    return Preprocess(mean=tuple(reversed(CAFFE_MEAN_BGR)), std=(1.0, 1.0, 1.0), order="BGR")


# -- reading a net's geometry off its weights -----------------------------------------------------


def _conv_specs(config: str) -> list[tuple[int, int]]:
    """Table 1's convs of a config as (kernel size, paper's channels): "conv3-64" -> (3, 64)."""
    return [
        tuple(map(int, spec[4:].split("-")))
        for block in models.config_layers(config)
        for spec in block
        if spec != "LRN"
    ]


def fit_geometry(
    conv_shapes: list[tuple[int, ...]], fc_shapes: list[tuple[int, ...]], configs: list[str]
) -> list[dict]:
    """The (config, width, crop, num_classes) settings that the given weight shapes could come from.

    ``conv_shapes`` are the conv weights (out, in, k, k) in order, ``fc_shapes`` the fc6, fc7, fc8
    weights (out, in). The config must have as many convs with the same kernel sizes; the width is
    a conv's (or fc7's) channels over the paper's; fc6's inputs are the last conv's channels times
    a square ``crop/32`` grid; the classes are fc8's outputs. Returns every candidate (best first).

    The weights must also chain (each layer takes what the one before gives), so a net built from
    a candidate has exactly the file's weight shapes: a garbled file can never make us allocate a
    net larger than the file itself.
    """
    if len(fc_shapes) != 3 or any(len(s) != 2 for s in fc_shapes):
        raise ValueError(
            f"a VGG net has three fully-connected layers (fc6, fc7, fc8) with 2-D weights; "
            f"found {len(fc_shapes)} with shapes {fc_shapes}"
        )
    if not conv_shapes or any(len(s) != 4 or s[2] != s[3] for s in conv_shapes):
        raise ValueError(f"a VGG net's convolutions have square 4-D weights (out, in, k, k); found {conv_shapes}")
    unchained = [
        (i + 1, s[1], prev)
        for i, (s, prev) in enumerate(zip(conv_shapes, [3] + [s[0] for s in conv_shapes[:-1]]))
        if s[1] != prev
    ]
    if unchained:
        i, got, want = unchained[0]
        raise ValueError(
            f"convolution {i} takes {got} input channels but its input has {want} (conv shapes {conv_shapes})"
        )
    (out6, in6), (out7, in7), (out8, in8) = fc_shapes
    if not (in7 == out6 == out7 == in8):
        raise ValueError(
            f"fc6, fc7 and fc8 do not chain: their weights are {fc_shapes}; expected (w, C*g*g), (w, w), (classes, w)"
        )
    last = conv_shapes[-1][0]
    grid2, rest = divmod(in6, max(last, 1))
    grid = math.isqrt(grid2)
    if rest or grid < 1 or grid * grid != grid2:
        raise ValueError(
            f"fc6 takes {in6} inputs, which is not the last conv's {last} channels times a "
            "square grid (512 x 7 x 7 = 25088 for the paper's nets)"
        )
    kernels = [s[2] for s in conv_shapes]
    fits = []
    for config in configs:
        specs = _conv_specs(config)
        if [k for k, _ in specs] != kernels:
            continue
        paper = [c for _, c in specs] + [models.FC_WIDTH]
        actual = [s[0] for s in conv_shapes] + [out7]
        for width in dict.fromkeys(a / p for a, p in zip(actual, paper)):  # unique, in order
            if width > 0 and [_scaled(p, width) for p in paper] == actual:
                fits.append(dict(config=config, width=width, crop=32 * grid, num_classes=out8))
                break
    return fits


# -- torchvision -----------------------------------------------------------------------------------


def _torch_file(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage, a pickle of arbitrary objects ...
        first = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(
            f"{path} is not a readable torch file ({type(e).__name__}: {first}); it may be "
            "truncated or from another program"
        ) from None


def _vgg_from_state_dict(state, config: str | None, source: str) -> VGG:
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{source} is not a state dict (a mapping of names to tensors); expected "
            "torchvision's vgg11/13/16/19 weights"
        )
    if any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in state):
        raise ValueError(
            f"{source} holds a batch-normalised VGG (torchvision's vgg*_bn): the paper's nets "
            "have no batch norm. Use the plain vgg11/13/16/19 weights"
        )
    convs = sorted(
        (
            (int(k.split(".")[1]), tuple(v.shape))
            for k, v in state.items()
            if k.startswith("features.") and k.endswith(".weight") and k.split(".")[1].isdigit() and v.dim() == 4
        )
    )
    fcs = [tuple(state[f"classifier.{i}.weight"].shape) for i in (0, 3, 6) if f"classifier.{i}.weight" in state]
    if not convs or len(fcs) != 3:
        raise ValueError(
            f"{source} is not a VGG state dict: expected keys features.<i>.weight and "
            f"classifier.0/3/6.weight (torchvision's vgg11/13/16/19); found {sorted(state)[:6]}"
        )
    if config is not None:
        config = _TORCH_NAMES.get(config, config)
        models.config_layers(config)  # an unknown name is a ValueError listing the known ones
    fits = fit_geometry([s for _, s in convs], fcs, [config] if config else _CANDIDATES)
    problems = []
    for fit in fits:  # A and A-LRN have the same convs but not the same keys: try each
        model = models.build(**fit)
        try:
            models.load_state_dict(model, {k: v.float() for k, v in state.items()})
        except ValueError as e:
            problems.append(str(e))
            continue
        return model.eval()
    if problems:
        raise ValueError(f"{source}: {problems[0]}")
    wanted = f"config {config}" if config else "any of the configs " + ", ".join(_CANDIDATES)
    raise ValueError(
        f"{source}: its {len(convs)} convolutions with kernels {[s[2] for _, s in convs]} do "
        f"not fit {wanted} (torchvision: vgg11=A, vgg13=B, vgg16=D, vgg19=E)"
    )


def load_torchvision(path: str | Path, config: str | None = None) -> tuple[VGG, Preprocess]:
    """torchvision's VGG weights (a vgg11/13/16/19 state dict ``.pth``) as a net and its pre-processing.

    ``config`` ("A", "B", "D", "E", or "vgg16" etc.) is read off the keys and shapes when not given.
    The file is read with ``weights_only=True``: no code in it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    return _vgg_from_state_dict(_torch_file(path), config, str(path)), torchvision_preprocess()


# -- Caffe -------------------------------------------------------------------------------------------


def _as_matrix(blob: np.ndarray, layer: str, what: str, ndim: int) -> np.ndarray:
    """A Caffe blob with its leading axes of size 1 dropped (old files store every blob as 4-D:
    a bias as (1, 1, 1, out), an fc weight as (1, 1, out, in))."""
    shape = blob.shape
    while len(shape) > ndim and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != ndim:
        raise ValueError(f"layer {layer!r}: its {what} has shape {blob.shape}, expected {ndim} axes")
    return blob.reshape(shape)


def model_from_caffe(net: CaffeNet, source: str = "the Caffe model") -> tuple[VGG, Preprocess]:
    """The VGG net of a parsed Caffe model, and the pre-processing its weights expect.

    Convolution layers map to the net's convs in order, InnerProduct layers to fc6, fc7 and fc8.
    Caffe's weights have torch's layouts: a conv weight is (out, in, kh, kw) and an InnerProduct
    weight (out, in) whose inputs are the (C, H, W) blob flattened row-major, which is also what
    ``torch.flatten`` and the dense form's ``fc6.weight.view(out, C, g, g)`` assume. So nothing is
    permuted; only the old 4-D blob shapes are squeezed.
    """
    convs = [layer for layer in net.layers if layer.type == "Convolution"]
    fcs = [layer for layer in net.layers if layer.type == "InnerProduct"]
    for layer in convs + fcs:
        if len(layer.blobs) != 2:
            raise ValueError(
                f"{source}: layer {layer.name!r} has {len(layer.blobs)} blobs; a VGG layer has "
                "two, the weight and the bias"
            )
    conv_w = [_as_matrix(layer.blobs[0], layer.name, "weight", 4) for layer in convs]
    fc_w = [_as_matrix(layer.blobs[0], layer.name, "weight", 2) for layer in fcs]
    biases = [_as_matrix(layer.blobs[1], layer.name, "bias", 1) for layer in convs + fcs]
    has_lrn = any(layer.type == "LRN" for layer in net.layers)
    candidates = [c for c in _CANDIDATES if ("LRN" in c) == has_lrn]
    fits = fit_geometry([w.shape for w in conv_w], [w.shape for w in fc_w], candidates)
    if not fits:
        raise ValueError(
            f"{source}: its {len(convs)} convolutions with kernels {[w.shape[2] for w in conv_w]} "
            f"fit none of the configs {candidates} (the released models are D: 13 convs, E: 16)"
        )
    model = models.build(**fits[0])
    paths = list(model.layer_names.values())  # conv1_1 ... in order, then fc6, fc7, fc8
    state = {}
    for path, weight, bias in zip(paths, conv_w + fc_w, biases):
        state[f"{path}.weight"] = torch.from_numpy(weight.astype(np.float32, copy=False))
        state[f"{path}.bias"] = torch.from_numpy(bias.astype(np.float32, copy=False))
    try:
        models.load_state_dict(model, state)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return model.eval(), caffe_preprocess()


def load_caffe(path: str | Path) -> tuple[VGG, Preprocess]:
    """The authors' Caffe model (``VGG_ILSVRC_16_layers.caffemodel`` -> D, ``..._19_layers`` -> E) as a
    net and its pre-processing (BGR, mean pixel subtracted). The config, width, crop and classes are
    read off the blobs' shapes."""
    path = Path(path)
    return model_from_caffe(read_caffemodel(path), str(path))


# -- any of them ---------------------------------------------------------------------------------


#: What a weights file may be said to expect when it does not record it (``evaluate --preprocess``).
PREPROCESSINGS = {"torchvision": torchvision_preprocess, "caffe": caffe_preprocess}
#: The geometry of every released VGG (torchvision's and the authors'): width 1 at a 224 crop.
RELEASED = dict(width=1.0, crop=224)


def describe(preprocess: Preprocess) -> str:
    """A pre-processing in words, naming the released conventions by name."""
    for name, words in (
        ("torchvision", "torchvision's: ImageNet mean and std, RGB"),
        ("caffe", "the authors' Caffe models': BGR minus the mean pixel, no std"),
    ):
        if preprocess == PREPROCESSINGS[name]():
            return words
    mean, std = ", ".join(f"{m:.2f}" for m in preprocess.mean), ", ".join(f"{v:.2f}" for v in preprocess.std)
    return f"mean ({mean}), std ({std}), {preprocess.order}"


def load_weights(path: str | Path, preprocess: str | None = None) -> tuple[VGG, Preprocess]:
    """Released weights of any supported kind, told apart by content rather than by name:
    a torch file (a zip archive, or a pickle from old torch) is torchvision's state dict or a
    vggrepro checkpoint; anything else is read as a Caffe model.

    A file says what input its net expects only when it is a vggrepro checkpoint; a Caffe model's is
    the authors', and a state dict's torchvision's, both for the released geometry (width 1, crop
    224). A state dict of any other geometry is no released net (a vggrepro net's weights, saved
    without their checkpoint, are the likely case): it is refused unless ``preprocess``
    (:data:`PREPROCESSINGS`) says what it expects, rather than fed ImageNet's mean and std in silence.
    """
    path = Path(path)
    if preprocess is not None and preprocess not in PREPROCESSINGS:
        raise ValueError(f"--preprocess {preprocess!r}: choose one of {', '.join(PREPROCESSINGS)}")
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; pass a torchvision .pth or a Caffe .caffemodel")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # zip (torch >= 1.6) or pickle
        obj = _torch_file(path)
        if isinstance(obj, Mapping) and "model" in obj and "meta" in obj:  # one of our own checkpoints
            if preprocess is not None:
                raise ValueError(
                    f"{path} is a vggrepro checkpoint, which records its pre-processing; drop --preprocess"
                )
            model, meta = model_from_checkpoint(path)
            return model, preprocess_of(meta)
        model = _vgg_from_state_dict(obj, None, str(path))
        if preprocess is None and (model.width, model.crop) != (RELEASED["width"], RELEASED["crop"]):
            raise ValueError(
                f"{path} is a state dict of {model.config} at width {model.width:g} and crop {model.crop}, which no "
                "released VGG has (width 1, crop 224): likely a vggrepro net's weights, whose pre-processing the "
                "file does not record. Pass the checkpoint.pt it came from with --checkpoint, or say what it "
                f"expects with --preprocess {'|'.join(PREPROCESSINGS)}"
            )
        return model, PREPROCESSINGS[preprocess or "torchvision"]()
    try:
        net = read_caffemodel(path)
    except ValueError as e:
        raise ValueError(
            f"{path} is neither a torch file (.pth) nor a Caffe model (.caffemodel): read as "
            f"Caffe, {str(e).removeprefix(f'{path}: ')}"
        ) from None
    model, caffe = model_from_caffe(net, str(path))
    return model, PREPROCESSINGS[preprocess]() if preprocess else caffe
