"""An independent writer of small ONNX files, for the tests of ``vggrepro.evaluate.onnx_weights``.

It uses the ``protobuf`` library (not our reader's code) with a message description built at run
time from onnx.proto's field numbers, typed here from onnx.proto itself (proto2 syntax, so that
repeated numbers can be written packed or not, as writers have done):

    message TensorProto { repeated int64 dims = 1; optional int32 data_type = 2;
                          repeated float float_data = 4 [packed = true]; optional string name = 8;
                          optional bytes raw_data = 9; optional int32 data_location = 14; }
    message NodeProto   { repeated string input = 1; repeated string output = 2;
                          optional string name = 3; optional string op_type = 4; }
    message GraphProto  { repeated NodeProto node = 1; optional string name = 2;
                          repeated TensorProto initializer = 5; }
    message ModelProto  { optional int64 ir_version = 1; optional string producer_name = 2;
                          optional GraphProto graph = 7; }
"""

from __future__ import annotations

import functools

import numpy as np
from caffe_proto import F, _field  # the one helper that declares a message field
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


@functools.cache
def messages(packed: bool = True) -> dict[str, type]:
    package = "onnx_small" if packed else "onnx_small_unpacked"
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    rep = F.LABEL_REPEATED
    tensor = fdp.message_type.add(name="TensorProto")
    _field(tensor, "dims", 1, F.TYPE_INT64, rep, packed=packed)
    _field(tensor, "data_type", 2, F.TYPE_INT32)
    _field(tensor, "float_data", 4, F.TYPE_FLOAT, rep, packed=packed)
    _field(tensor, "name", 8, F.TYPE_STRING)
    _field(tensor, "raw_data", 9, F.TYPE_BYTES)
    _field(tensor, "data_location", 14, F.TYPE_INT32)
    node = fdp.message_type.add(name="NodeProto")
    _field(node, "input", 1, F.TYPE_STRING, rep)
    _field(node, "output", 2, F.TYPE_STRING, rep)
    _field(node, "name", 3, F.TYPE_STRING)
    _field(node, "op_type", 4, F.TYPE_STRING)
    graph = fdp.message_type.add(name="GraphProto")
    _field(graph, "node", 1, F.TYPE_MESSAGE, rep, type_name=f".{package}.NodeProto")
    _field(graph, "name", 2, F.TYPE_STRING)
    _field(graph, "initializer", 5, F.TYPE_MESSAGE, rep, type_name=f".{package}.TensorProto")
    model = fdp.message_type.add(name="ModelProto")
    _field(model, "ir_version", 1, F.TYPE_INT64)
    _field(model, "producer_name", 2, F.TYPE_STRING)
    _field(model, "graph", 7, F.TYPE_MESSAGE, type_name=f".{package}.GraphProto")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    names = ["TensorProto", "NodeProto", "GraphProto", "ModelProto"]
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{n}")) for n in names}


def model_bytes(
    nodes: list[tuple[str, str, list[str], list[str]]],
    tensors: dict[str, np.ndarray],
    *,
    raw: bool = True,
    packed: bool = True,
    data_type: int = 1,
    external: tuple[str, ...] = (),
) -> bytes:
    """A serialised ModelProto: ``nodes`` as (op_type, name, inputs, outputs), ``tensors`` as
    initialisers, their numbers in ``raw_data`` (little-endian) or in ``float_data``;
    ``external`` names tensors marked as kept in another file."""
    m = messages(packed)
    model = m["ModelProto"](ir_version=7, producer_name="tests")
    for op_type, name, inputs, outputs in nodes:
        model.graph.node.add(op_type=op_type, name=name, input=inputs, output=outputs)
    for name, array in tensors.items():
        t = model.graph.initializer.add(name=name, data_type=data_type)
        t.dims.extend(int(d) for d in array.shape)
        if raw:
            t.raw_data = np.asarray(array, "<f4").tobytes()
        else:
            t.float_data.extend(np.asarray(array, np.float32).ravel().tolist())
        if name in external:
            t.data_location = 1
    return model.SerializeToString()
