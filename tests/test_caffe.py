"""The Caffe reader against hand-written bytes, an independent protobuf writer, and a fuzzer."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from vggrepro.evaluate.caffe import parse_net, read_caffemodel

# -- hand-written bytes: each tag worked out from ``field_number << 3 | wire_type`` ---------------

NAME_FC = b"\x0a\x02fc"  # field 1 (name), wire 2, 2 bytes
TYPE_IP = b"\x12\x0cInnerProduct"  # field 2 (type), wire 2, 12 bytes


def _layer(body: bytes) -> bytes:
    """NetParameter.layer: field 100, wire 2 -> tag 802 = 0b110_0100010 -> varint bytes A2 06."""
    assert len(body) < 128
    return b"\xa2\x06" + bytes([len(body)]) + body


def _blob(body: bytes) -> bytes:
    """LayerParameter.blobs: field 7, wire 2 -> tag 0x3A."""
    assert len(body) < 128
    return b"\x3a" + bytes([len(body)]) + body


def test_hand_written_layer_with_shape_and_packed_floats():
    shape = b"\x3a\x04" + b"\x0a\x02\x02\x03"  # BlobShape {dim: [2, 3]}, dims packed (field 1, wire 2)
    data = b"\x2a\x18" + struct.pack("<6f", 1, -2, 0.5, 3, 4, 5)  # data: field 5, wire 2, 24 bytes
    net = parse_net(_layer(NAME_FC + TYPE_IP + _blob(shape + data)))
    (layer,) = net.layers
    assert (layer.name, layer.type, net.form) == ("fc", "InnerProduct", "layer")
    np.testing.assert_array_equal(layer.blobs[0], [[1, -2, 0.5], [3, 4, 5]])
    assert layer.blobs[0].dtype == np.float32


def test_hand_written_v1_layer_with_legacy_dims_and_unpacked_floats():
    # V1LayerParameter: name = 4 (tag 0x22), type = 5 as enum INNER_PRODUCT = 14 (tag 0x28), blobs = 6 (0x32)
    dims = b"\x08\x01\x10\x01\x18\x01\x20\x02"  # num=1, channels=1, height=1, width=2 (fields 1-4, wire 0)
    floats = b"\x2d" + struct.pack("<f", 7.0) + b"\x2d" + struct.pack("<f", -1.5)  # field 5, wire 5, unpacked
    blob = dims + floats
    v1 = b"\x22\x02fc" + b"\x28\x0e" + b"\x32" + bytes([len(blob)]) + blob
    net = parse_net(b"\x0a\x01n" + b"\x12" + bytes([len(v1)]) + v1)  # NetParameter name, layers (field 2)
    (layer,) = net.layers
    assert (net.name, layer.name, layer.type, net.form) == ("n", "fc", "InnerProduct", "layers (V1)")
    np.testing.assert_array_equal(layer.blobs[0].reshape(-1), [7.0, -1.5])
    assert layer.blobs[0].shape == (1, 1, 1, 2)


def test_hand_written_unusual_encodings_are_read():
    # An unpacked float whose tag is written in two bytes (0xAD 0x00 = 45 = field 5, wire 5), a
    # multi-byte varint (150 = 0x96 0x01, the protobuf docs' example) as a dim, and unknown fields.
    shape = b"\x3a\x03" + b"\x08\x96\x01"  # BlobShape {dim: 150} unpacked (field 1, wire 0)
    data = b"".join(b"\xad\x00" + struct.pack("<f", i) for i in range(150))
    unknown = b"\x98\x01\x05" + b"\x61" + bytes(8)  # field 19 varint 5; field 12 fixed64
    blob = shape + unknown + data
    body = NAME_FC + TYPE_IP + b"\x3a" + bytes([len(blob) & 0x7F | 0x80, len(blob) >> 7]) + blob
    net = parse_net(b"\xa2\x06" + bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) + body)
    np.testing.assert_array_equal(net.layers[0].blobs[0], np.arange(150))


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "no layers"),
        (b"\x0a\x03abc", "no layers"),  # a NetParameter with a name and nothing else
        (_layer(NAME_FC + _blob(b"\x3a\x02\x0a\x00" + b"\x2a\x04" + bytes(4)))[:-2], "truncated"),
        (_layer(NAME_FC + _blob(b"\x3a\x03\x0a\x01\x02" + b"\x2a\x04" + bytes(4))), "needs 2"),  # shape (2,), 1 float
        (_layer(NAME_FC + _blob(b"\x2a\x03" + bytes(3))), "multiple of 4"),
        (_layer(NAME_FC + _blob(b"\x08" + b"\xff" * 9 + b"\x01" + b"\x2a\x00")), "negative"),  # num = -1
        (_layer(NAME_FC + _blob(b"\x3a\x23\x0a\x21" + b"\x01" * 33)), "more than 32 axes"),
        (_layer(NAME_FC + b"\x0b"), "wire type 3"),  # a group: not in Caffe
        (_layer(b"\x0a" + b"\x80" * 11), "over 10 bytes"),
        (_layer(b"\x0a\x02\xff\xfe"), "UTF-8"),
        (_layer(NAME_FC) + b"\x12\x00", "both"),  # 'layer' and 'layers' in one net
        (_layer(NAME_FC + b"\x12\x05fc"), "claims 5 bytes"),
    ],
)
def test_broken_bytes_name_the_problem_and_the_byte(data, expected):
    with pytest.raises(ValueError, match=expected) as info:
        parse_net(data)
    assert "at byte" in str(info.value)


def test_read_caffemodel_names_the_file(tmp_path):
    path = tmp_path / "broken.caffemodel"
    path.write_bytes(_layer(NAME_FC)[:-1])
    with pytest.raises(ValueError, match="broken.caffemodel"):
        read_caffemodel(path)
    with pytest.raises(FileNotFoundError):
        read_caffemodel(tmp_path / "missing.caffemodel")


# -- against the independent protobuf writer -------------------------------------------------------


def _writer():
    pytest.importorskip("google.protobuf")
    import caffe_proto

    return caffe_proto


def _small_layers(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [
        (
            "conv1_1",
            "Convolution",
            [rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)],
        ),
        ("relu1_1", "ReLU", []),
        ("pool1", "Pooling", []),
        ("fc6", "InnerProduct", [rng.normal(size=(5, 16)).astype(np.float32), rng.normal(size=5).astype(np.float32)]),
        ("drop6", "Dropout", []),
        ("fc8", "InnerProduct", [rng.normal(size=(1, 5)).astype(np.float32), np.float32([0.25])]),
        ("prob", "Softmax", []),
    ]


STYLES = [
    dict(form=form, shape_style=shape_style, packed=packed, double=double)
    for form in ("layer", "layers", "v0")
    for shape_style in ("shape", "legacy")
    for packed in (True, False)
    for double in (False, True)
]


@pytest.mark.parametrize("style", STYLES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_reads_what_protobuf_writes(style):
    caffe_proto = _writer()
    layers = _small_layers()
    net = parse_net(caffe_proto.net_bytes(layers, name="small", **style))
    assert net.name == "small"
    assert net.form == {"layer": "layer", "layers": "layers (V1)", "v0": "layers (V0)"}[style["form"]]
    assert [(l.name, l.type) for l in net.layers] == [(name, kind) for name, kind, _ in layers]
    for (_, _, blobs), layer in zip(layers, net.layers):
        assert len(layer.blobs) == len(blobs)
        for written, read in zip(blobs, layer.blobs):
            assert read.dtype == (np.float64 if style["double"] else np.float32)
            if style["shape_style"] == "shape":
                assert read.shape == written.shape
            else:  # Caffe's old 4-D blobs
                assert read.shape == (1,) * (4 - written.ndim) + written.shape
            np.testing.assert_array_equal(read.reshape(written.shape), written)


# -- fuzzing -----------------------------------------------------------------------------------------


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(6)
    i = rng.randrange(len(b))
    if kind == 0:  # flip a bit
        b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # any byte
        b[i] = rng.randrange(256)
    elif kind == 2:  # a huge varint: lengths and dims that claim the world
        b[i : i + 10] = b"\xff" * rng.randrange(1, 12) + b"\x7f"
    elif kind == 3:  # drop a range
        del b[i : i + rng.randrange(1, 16)]
    elif kind == 4:  # insert random bytes
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    else:  # several changes at once
        for _ in range(rng.randrange(2, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def _parse_or_value_error(data: bytes, case: str) -> None:
    try:
        net = parse_net(data)
    except ValueError:
        return
    except Exception as e:  # anything but ValueError is a bug in the reader
        raise AssertionError(f"{case}: {type(e).__name__}: {e}") from e
    for layer in net.layers:  # what parses is well formed
        assert all(isinstance(blob, np.ndarray) for blob in layer.blobs)


@pytest.mark.parametrize(
    "style", [STYLES[0], STYLES[5], STYLES[10], STYLES[19]], ids=lambda s: "-".join(str(v) for v in s.values())
)
def test_fuzz_truncated_and_mutated_bytes_give_only_value_errors(style):
    caffe_proto = _writer()
    data = caffe_proto.net_bytes(_small_layers(), **style)
    names = [name for name, _, _ in _small_layers()]
    for cut in range(len(data)):  # every truncation
        try:
            net = parse_net(data[:cut])
        except ValueError:  # a cut inside a layer misses bytes that a length or a shape promised
            continue
        # a cut between two layers is a shorter, valid net: its layers are the first few
        assert [layer.name for layer in net.layers] == names[: len(net.layers)] and len(net.layers) < len(names)
    rng = random.Random(f"fuzz-{sorted(style.items())}")
    for case in range(750):
        _parse_or_value_error(_mutate(data, rng), f"mutation {case} of {style}")
