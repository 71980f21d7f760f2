"""An independent writer of small ``.caffemodel`` files, for the tests of ``vggrepro.evaluate.caffe``.

It uses the ``protobuf`` library (not our reader's code) with a message description built at run
time from caffe.proto's field numbers, typed here from caffe.proto itself:

    message BlobShape        { repeated int64 dim = 1 [packed = true]; }
    message BlobProto        { optional int32 num = 1; channels = 2; height = 3; width = 4;
                               repeated float data = 5 [packed = true]; diff = 6 [packed = true];
                               optional BlobShape shape = 7; repeated double double_data = 8 [packed = true]; }
    message V0LayerParameter { optional string name = 1; optional string type = 2; repeated BlobProto blobs = 50; }
    message V1LayerParameter { optional V0LayerParameter layer = 1; repeated string bottom = 2; top = 3;
                               optional string name = 4; optional LayerType type = 5; repeated BlobProto blobs = 6; }
    message LayerParameter   { optional string name = 1; optional string type = 2; repeated string bottom = 3;
                               repeated string top = 4; repeated BlobProto blobs = 7; }
    message NetParameter     { optional string name = 1; repeated V1LayerParameter layers = 2;
                               repeated LayerParameter layer = 100; }

``packed=False`` builds the same messages with unpacked repeated numbers (tag + value per number),
which old writers produced and which a reader must accept too.
"""

from __future__ import annotations

import functools

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto

#: V1LayerParameter.LayerType, the values a VGG net uses (from caffe.proto).
V1_ENUM = {
    "Convolution": 4,
    "Data": 5,
    "Dropout": 6,
    "InnerProduct": 14,
    "LRN": 15,
    "Pooling": 17,
    "ReLU": 18,
    "Softmax": 20,
}
#: V0LayerParameter.type strings (from Caffe's V0 upgrade code).
V0_NAMES = {
    "Convolution": "conv",
    "Dropout": "dropout",
    "InnerProduct": "innerproduct",
    "LRN": "lrn",
    "Pooling": "pool",
    "ReLU": "relu",
    "Softmax": "softmax",
    "Data": "data",
}


def _field(message, name, number, kind, label=F.LABEL_OPTIONAL, type_name=None, packed=None):
    f = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        f.type_name = type_name
    if packed is not None:
        f.options.packed = packed
    return f


@functools.cache
def messages(packed: bool = True) -> dict[str, type]:
    """The message classes, in a pool of their own (packed and unpacked kinds cannot share names)."""
    package = "caffe" if packed else "caffe_unpacked"
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    rep = F.LABEL_REPEATED

    shape = fdp.message_type.add(name="BlobShape")
    _field(shape, "dim", 1, F.TYPE_INT64, rep, packed=packed)

    blob = fdp.message_type.add(name="BlobProto")
    for number, name in enumerate(["num", "channels", "height", "width"], start=1):
        _field(blob, name, number, F.TYPE_INT32)
    _field(blob, "data", 5, F.TYPE_FLOAT, rep, packed=packed)
    _field(blob, "diff", 6, F.TYPE_FLOAT, rep, packed=packed)
    _field(blob, "shape", 7, F.TYPE_MESSAGE, type_name=f".{package}.BlobShape")
    _field(blob, "double_data", 8, F.TYPE_DOUBLE, rep, packed=packed)

    v0 = fdp.message_type.add(name="V0LayerParameter")
    _field(v0, "name", 1, F.TYPE_STRING)
    _field(v0, "type", 2, F.TYPE_STRING)
    _field(v0, "blobs", 50, F.TYPE_MESSAGE, rep, type_name=f".{package}.BlobProto")

    v1 = fdp.message_type.add(name="V1LayerParameter")
    enum = v1.enum_type.add(name="LayerType")
    enum.value.add(name="NONE", number=0)
    for name, number in V1_ENUM.items():
        enum.value.add(name=name.upper(), number=number)
    _field(v1, "layer", 1, F.TYPE_MESSAGE, type_name=f".{package}.V0LayerParameter")
    _field(v1, "bottom", 2, F.TYPE_STRING, rep)
    _field(v1, "top", 3, F.TYPE_STRING, rep)
    _field(v1, "name", 4, F.TYPE_STRING)
    _field(v1, "type", 5, F.TYPE_ENUM, type_name=f".{package}.V1LayerParameter.LayerType")
    _field(v1, "blobs", 6, F.TYPE_MESSAGE, rep, type_name=f".{package}.BlobProto")

    layer = fdp.message_type.add(name="LayerParameter")
    _field(layer, "name", 1, F.TYPE_STRING)
    _field(layer, "type", 2, F.TYPE_STRING)
    _field(layer, "bottom", 3, F.TYPE_STRING, rep)
    _field(layer, "top", 4, F.TYPE_STRING, rep)
    _field(layer, "blobs", 7, F.TYPE_MESSAGE, rep, type_name=f".{package}.BlobProto")

    net = fdp.message_type.add(name="NetParameter")
    _field(net, "name", 1, F.TYPE_STRING)
    _field(net, "layers", 2, F.TYPE_MESSAGE, rep, type_name=f".{package}.V1LayerParameter")
    _field(net, "layer", 100, F.TYPE_MESSAGE, rep, type_name=f".{package}.LayerParameter")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    names = ["BlobShape", "BlobProto", "V0LayerParameter", "V1LayerParameter", "LayerParameter", "NetParameter"]
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{n}")) for n in names}


def _fill_blob(blob, array: np.ndarray, shape_style: str, double: bool) -> None:
    array = np.asarray(array)
    if shape_style == "shape":
        blob.shape.dim.extend(int(d) for d in array.shape)
    elif shape_style == "legacy":  # Caffe's old 4-D blobs: leading axes of size 1
        dims = (1,) * (4 - array.ndim) + tuple(array.shape)
        blob.num, blob.channels, blob.height, blob.width = (int(d) for d in dims)
    else:
        raise ValueError(shape_style)
    values = array.ravel().tolist()  # C order: Caffe's blobs are row-major
    (blob.double_data if double else blob.data).extend(values)


def net_bytes(
    layers,
    *,
    form: str = "layer",
    shape_style: str = "shape",
    packed: bool = True,
    double: bool = False,
    name: str = "test-net",
) -> bytes:
    """Serialise ``layers`` — a list of (name, type, [numpy blobs]) — as a NetParameter.

    ``form``: "layer" (LayerParameter, field 100), "layers" (V1LayerParameter, field 2) or "v0"
    (V1LayerParameter wrapping a V0LayerParameter). ``shape_style``: "shape" (BlobShape) or
    "legacy" (num/channels/height/width).
    """
    m = messages(packed)
    net = m["NetParameter"](name=name)
    for layer_name, kind, blobs in layers:
        if form == "layer":
            msg = net.layer.add(name=layer_name, type=kind)
            blob_list = msg.blobs
        elif form == "layers":
            msg = net.layers.add(name=layer_name, type=V1_ENUM[kind])
            blob_list = msg.blobs
        elif form == "v0":
            msg = net.layers.add()
            msg.layer.name, msg.layer.type = layer_name, V0_NAMES[kind]
            blob_list = msg.layer.blobs
        else:
            raise ValueError(form)
        for array in blobs:
            _fill_blob(blob_list.add(), array, shape_style, double)
    return net.SerializeToString()


def vgg_layers(model) -> list[tuple[str, str, list[np.ndarray]]]:
    """A vggrepro VGG net as the layer list of a Caffe deploy net: conv1_1, relu1_1, ..., pool5,
    fc6, relu6, drop6, fc7, relu7, drop7, fc8, prob. Caffe's InnerProduct weight is (out, in) and
    its Convolution weight (out, in, kh, kw), the layouts of torch's Linear and Conv2d."""
    from torch import nn

    layers, block, index = [], 1, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            index += 1
            blobs = [m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()]
            layers.append((f"conv{block}_{index}", "Convolution", blobs))
        elif isinstance(m, nn.ReLU):
            layers.append((f"relu{block}_{index}", "ReLU", []))
        elif isinstance(m, nn.LocalResponseNorm):
            layers.append((f"norm{block}", "LRN", []))
        elif isinstance(m, nn.MaxPool2d):
            layers.append((f"pool{block}", "Pooling", []))
            block, index = block + 1, 0
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for i, fc in enumerate(fcs, start=6):
        layers.append((f"fc{i}", "InnerProduct", [fc.weight.detach().numpy().copy(), fc.bias.detach().numpy().copy()]))
        if i < 8:
            layers += [(f"relu{i}", "ReLU", []), (f"drop{i}", "Dropout", [])]
    layers.append(("prob", "Softmax", []))
    return layers
