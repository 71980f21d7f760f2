"""Reading Caffe's ``.caffemodel`` files: a small reader of the protobuf wire format.

The authors released nets D and E as Caffe models (``VGG_ILSVRC_16_layers.caffemodel`` and
``VGG_ILSVRC_19_layers.caffemodel``). A caffemodel is one protobuf message, ``NetParameter``, whose
layers hold their weights as ``BlobProto`` messages. This module reads just that much of
``caffe.proto`` and skips everything else, without the ``protobuf`` package and without a compiled
``caffe_pb2``:

- ``NetParameter``: name = 1, layers = 2 (``V1LayerParameter``, the 2014 form), layer = 100
  (``LayerParameter``, the form since 2015);
- ``LayerParameter``: name = 1, type = 2 (a string such as "Convolution"), blobs = 7;
- ``V1LayerParameter``: name = 4, type = 5 (an enum), blobs = 6, and layer = 1 holding a
  ``V0LayerParameter`` (name = 1, type = 2, blobs = 50) in files from before 2014;
- ``BlobProto``: num = 1, channels = 2, height = 3, width = 4 (the old 4-D shape), data = 5 (packed
  float), shape = 7 (``BlobShape``: dim = 1, packed int64), double_data = 8.

The wire format itself, with its checks (every length against the bytes really there: a
truncated or garbled file is a ValueError naming the byte offset, never a hang, an IndexError or
an allocation larger than the file), is read by :mod:`vggrepro.evaluate.wire`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .wire import FIXED32, FIXED64, LENGTH, VARINT, WireReader, signed

MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes

#: V1LayerParameter.LayerType -> the type string of today's LayerParameter (Caffe's own upgrade table).
V1_TYPES = {
    0: "None",
    35: "AbsVal",
    1: "Accuracy",
    30: "ArgMax",
    2: "BNLL",
    3: "Concat",
    37: "ContrastiveLoss",
    4: "Convolution",
    5: "Data",
    39: "Deconvolution",
    6: "Dropout",
    32: "DummyData",
    7: "EuclideanLoss",
    25: "Eltwise",
    38: "Exp",
    8: "Flatten",
    9: "HDF5Data",
    10: "HDF5Output",
    28: "HingeLoss",
    11: "Im2col",
    12: "ImageData",
    13: "InfogainLoss",
    14: "InnerProduct",
    15: "LRN",
    29: "MemoryData",
    16: "MultinomialLogisticLoss",
    34: "MVN",
    17: "Pooling",
    26: "Power",
    18: "ReLU",
    19: "Sigmoid",
    27: "SigmoidCrossEntropyLoss",
    36: "Silence",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    33: "Slice",
    23: "TanH",
    24: "WindowData",
    31: "Threshold",
}

#: V0LayerParameter's type strings -> today's (only those a VGG net uses; others are kept as they are).
V0_TYPES = {
    "conv": "Convolution",
    "innerproduct": "InnerProduct",
    "relu": "ReLU",
    "pool": "Pooling",
    "lrn": "LRN",
    "dropout": "Dropout",
    "softmax": "Softmax",
    "data": "Data",
}


@dataclass
class CaffeLayer:
    """One layer of a Caffe net: its name, its type ("Convolution", "InnerProduct", "ReLU", ...)
    and its parameter blobs (for Convolution and InnerProduct: the weight, then the bias)."""

    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)


@dataclass
class CaffeNet:
    """A parsed caffemodel: the net's name, its layers in file order, and which form held them
    ("layer", "layers (V1)" or "layers (V0)")."""

    name: str
    layers: list[CaffeLayer]
    form: str


def read_caffemodel(path: str | Path) -> CaffeNet:
    """Read a ``.caffemodel`` file; a broken one is a ValueError that names the file and the byte."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Caffe model at {path}")
    try:
        return parse_net(path.read_bytes())
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def parse_net(data: bytes) -> CaffeNet:
    """Parse the bytes of a serialised ``NetParameter``."""
    return _Reader(data).net()


class _Reader(WireReader):
    """Caffe's messages: NetParameter, its layers and their blobs."""

    FORMAT = "Caffe model"

    def net(self) -> CaffeNet:
        end = len(self.data)
        name, v1_layers, layers = "", [], []
        pos = 0
        while pos < end:
            tag = pos
            number, wire, a, b, pos = self.next_field(pos, end, "NetParameter")
            if number == 1:
                self.expect(wire, LENGTH, tag, "NetParameter.name")
                name = self.string(a, b, tag, "NetParameter.name")
            elif number == 2:
                self.expect(wire, LENGTH, tag, "NetParameter.layers")
                v1_layers.append(self.v1_layer(a, b))
            elif number == 100:
                self.expect(wire, LENGTH, tag, "NetParameter.layer")
                layers.append(self.layer(a, b))
        if v1_layers and layers:
            self.fail(0, "the net has both 'layer' and 'layers' entries, which Caffe refuses too")
        if not (v1_layers or layers):
            self.fail(
                0,
                "no layers found: this is not a Caffe NetParameter (expected 'layer' or 'layers' "
                "entries holding the weights)",
            )
        if layers:
            return CaffeNet(name, layers, "layer")
        form = "layers (V0)" if any(v0 for _, v0 in v1_layers) else "layers (V1)"
        return CaffeNet(name, [layer for layer, _ in v1_layers], form)

    def layer(self, start: int, end: int) -> CaffeLayer:
        layer = CaffeLayer("", "")
        pos = start
        while pos < end:
            tag = pos
            number, wire, a, b, pos = self.next_field(pos, end, f"LayerParameter {layer.name!r}")
            if number == 1:
                self.expect(wire, LENGTH, tag, "LayerParameter.name")
                layer.name = self.string(a, b, tag, "LayerParameter.name")
            elif number == 2:
                self.expect(wire, LENGTH, tag, "LayerParameter.type")
                layer.type = self.string(a, b, tag, "LayerParameter.type")
            elif number == 7:
                self.expect(wire, LENGTH, tag, "LayerParameter.blobs")
                layer.blobs.append(self.blob(a, b, layer.name))
        return layer

    def v1_layer(self, start: int, end: int) -> tuple[CaffeLayer, bool]:
        """A V1 layer, and whether it wrapped a V0 layer (whose name, type and blobs then count)."""
        layer, v0 = CaffeLayer("", ""), None
        pos = start
        while pos < end:
            tag = pos
            number, wire, a, b, pos = self.next_field(pos, end, f"V1LayerParameter {layer.name!r}")
            if number == 4:
                self.expect(wire, LENGTH, tag, "V1LayerParameter.name")
                layer.name = self.string(a, b, tag, "V1LayerParameter.name")
            elif number == 5:
                self.expect(wire, VARINT, tag, "V1LayerParameter.type")
                layer.type = V1_TYPES.get(a, f"V1 type {a}")
            elif number == 6:
                self.expect(wire, LENGTH, tag, "V1LayerParameter.blobs")
                layer.blobs.append(self.blob(a, b, layer.name))
            elif number == 1:
                self.expect(wire, LENGTH, tag, "V1LayerParameter.layer (V0)")
                v0 = self.v0_layer(a, b)
        if v0 is None:
            return layer, False
        return CaffeLayer(layer.name or v0.name, layer.type or v0.type, layer.blobs + v0.blobs), True

    def v0_layer(self, start: int, end: int) -> CaffeLayer:
        layer = CaffeLayer("", "")
        pos = start
        while pos < end:
            tag = pos
            number, wire, a, b, pos = self.next_field(pos, end, f"V0LayerParameter {layer.name!r}")
            if number == 1:
                self.expect(wire, LENGTH, tag, "V0LayerParameter.name")
                layer.name = self.string(a, b, tag, "V0LayerParameter.name")
            elif number == 2:
                self.expect(wire, LENGTH, tag, "V0LayerParameter.type")
                kind = self.string(a, b, tag, "V0LayerParameter.type")
                layer.type = V0_TYPES.get(kind, kind)
            elif number == 50:
                self.expect(wire, LENGTH, tag, "V0LayerParameter.blobs")
                layer.blobs.append(self.blob(a, b, layer.name))
        return layer

    def blob(self, start: int, end: int, layer: str) -> np.ndarray:
        what = f"a blob of layer {layer!r}"
        legacy: dict[int, int] = {}  # num, channels, height, width
        shape: list[int] | None = None
        floats: list[np.ndarray] = []
        doubles: list[np.ndarray] = []
        pos = start
        while pos < end:
            tag = pos
            number, wire, a, b, pos = self.next_field(pos, end, what)
            if number in (1, 2, 3, 4):
                self.expect(wire, VARINT, tag, f"BlobProto field {number} (num/channels/height/width)")
                legacy[number] = signed(a)
            elif number == 5 and wire == LENGTH:  # packed floats: the usual form
                if (b - a) % 4:
                    self.fail(tag, f"the packed floats of {what} take {b - a} bytes, not a multiple of 4")
                floats.append(np.frombuffer(self.data[a:b], dtype="<f4"))
            elif number == 5 and wire == FIXED32:  # unpacked: a run of tag + 4 bytes
                values, pos = self.run(tag, end, tag_byte=0x2D, size=4, dtype="<f4")
                floats.append(values)
            elif number == 7:
                self.expect(wire, LENGTH, tag, f"the shape of {what}")
                shape = self.blob_shape(a, b, what)
            elif number == 8 and wire == LENGTH:
                if (b - a) % 8:
                    self.fail(tag, f"the packed doubles of {what} take {b - a} bytes, not a multiple of 8")
                doubles.append(np.frombuffer(self.data[a:b], dtype="<f8"))
            elif number == 8 and wire == FIXED64:
                values, pos = self.run(tag, end, tag_byte=0x41, size=8, dtype="<f8")
                doubles.append(values)
            elif number in (5, 8):
                self.fail(tag, f"field {number} of {what} should hold numbers, found wire type {wire}")
        if shape is None:
            # Caffe's rule: the deprecated 4-D fields win when any is present (missing ones are 0).
            shape = [legacy.get(i, 0) for i in (1, 2, 3, 4)] if legacy else []
        if any(d < 0 for d in shape):
            self.fail(start, f"{what} has a negative dimension in its shape {tuple(shape)}")
        if floats and doubles:
            self.fail(start, f"{what} holds both float and double data; Caffe writes one or the other")
        count = sum(chunk.size for chunk in floats or doubles)
        if count != math.prod(shape):
            self.fail(
                start,
                f"{what} holds {count} numbers but its shape {tuple(shape)} needs "
                f"{math.prod(shape)}: the file is truncated, garbled or wrongly shaped",
            )
        # One copy into native byte order, so that the arrays do not keep the file's bytes alive.
        dtype = np.float64 if doubles else np.float32
        return np.concatenate(floats or doubles or [np.zeros(0, dtype)]).astype(dtype, copy=False).reshape(shape)

    def blob_shape(self, start: int, end: int, what: str) -> list[int]:
        dims: list[int] = []
        pos = start
        while pos < end:
            tag = pos
            number, wire, a, b, pos = self.next_field(pos, end, f"the shape of {what}")
            if number != 1:
                continue
            if wire == VARINT:
                dims.append(signed(a))
            elif wire == LENGTH:  # packed int64 varints
                p = a
                while p < b and len(dims) <= MAX_BLOB_AXES:
                    value, p = self.varint(p, b, f"a dimension of the shape of {what}")
                    dims.append(signed(value))
            else:
                self.fail(tag, f"the dimensions of the shape of {what} should be varints, found wire type {wire}")
            if len(dims) > MAX_BLOB_AXES:
                self.fail(tag, f"the shape of {what} has more than {MAX_BLOB_AXES} axes, Caffe's limit")
        return dims
