"""Loading released weights: torchvision state dicts and Caffe models, written here by independent
writers (``torch.save`` and the protobuf library) and checked against the writer's own outputs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vggrepro import models
from vggrepro.evaluate.caffe import parse_net
from vggrepro.evaluate.weights import (
    caffe_preprocess,
    fit_geometry,
    load_caffe,
    load_torchvision,
    load_weights,
    model_from_caffe,
    torchvision_preprocess,
)
from vggrepro.train import checkpoints

SMALL = dict(width=1 / 16, num_classes=10)


def _writer():
    pytest.importorskip("google.protobuf")
    import caffe_proto

    return caffe_proto


def _random_net(config: str, crop: int, seed: int = 0) -> models.VGG:
    """A small net with weights that keep activations of order 1, and non-zero biases."""
    torch.manual_seed(seed)
    model = models.init_glorot(models.build(config, crop=crop, **SMALL))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.bias.normal_(0, 0.1)
    return model.eval()


def _images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    """0-255 RGB images, as the evaluation hands them to Preprocess."""
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# -- pre-processing: hand-computed from the published constants ---------------------------------


def test_torchvision_preprocess_is_imagenet_mean_and_std_on_0_1_rgb():
    x = _images(2, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(torchvision_preprocess()(x), (x / 255 - mean) / std, rtol=1e-5, atol=1e-5)


def test_caffe_preprocess_gives_bgr_minus_the_mean_pixel():
    pixel = torch.tensor([200.0, 100.0, 50.0]).view(3, 1, 1)  # R, G, B
    out = caffe_preprocess()(pixel).view(3)
    # Caffe's input: channel 0 is blue minus 103.939, then green - 116.779, then red - 123.68.
    torch.testing.assert_close(out, torch.tensor([50 - 103.939, 100 - 116.779, 200 - 123.68]))


# -- torchvision -----------------------------------------------------------------------------------

#: torchvision's published VGG state dicts: the feature indices of the convs (ReLU and pool modules
#: take the indices in between) and the paper's channels. classifier.0/3/6 are (4096, 25088),
#: (4096, 4096), (1000, 4096) for all four.
TORCHVISION_CONVS = {
    "vgg11": ([0, 3, 6, 8, 11, 13, 16, 18], [64, 128, 256, 256, 512, 512, 512, 512]),
    "vgg13": ([0, 2, 5, 7, 10, 12, 15, 17, 20, 22], [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]),
    "vgg16": (
        [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
        [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
    ),
    "vgg19": (
        [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34],
        [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512],
    ),
}


def _published_shapes(name: str) -> dict[str, tuple[int, ...]]:
    indices, channels = TORCHVISION_CONVS[name]
    shapes, previous = {}, 3
    for i, c in zip(indices, channels):
        shapes[f"features.{i}.weight"], shapes[f"features.{i}.bias"] = (c, previous, 3, 3), (c,)
        previous = c
    for i, (out, inp) in zip((0, 3, 6), [(4096, 25088), (4096, 4096), (1000, 4096)]):
        shapes[f"classifier.{i}.weight"], shapes[f"classifier.{i}.bias"] = (out, inp), (out,)
    return shapes


@pytest.mark.parametrize("name", list(TORCHVISION_CONVS))
def test_published_torchvision_shapes_are_our_configs(name):
    shapes = _published_shapes(name)
    assert shapes["features.0.weight"] == (64, 3, 3, 3) and shapes["classifier.6.weight"] == (1000, 4096)
    config = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}[name]
    with torch.device("meta"):
        ours = models.expected_shapes(models.build(config))
    assert ours == shapes
    indices = TORCHVISION_CONVS[name][0]
    convs = [shapes[f"features.{i}.weight"] for i in indices]
    fcs = [shapes[f"classifier.{i}.weight"] for i in (0, 3, 6)]
    fits = fit_geometry(convs, fcs, ["A", "A-LRN", "B", "C", "D", "E"])
    assert fits[0] == dict(config=config, width=1.0, crop=224, num_classes=1000)


@pytest.mark.parametrize("name", list(TORCHVISION_CONVS))
def test_torchvision_builders_have_the_published_shapes(name):
    try:  # the guard of vggrepro.core.optional, inlined while that module may not exist yet
        from vggrepro.core.optional import torchvision_or_none

        tv = torchvision_or_none()
    except Exception:
        try:
            import torchvision as tv
        except Exception:
            tv = None
    if tv is None:
        pytest.skip("torchvision does not import here")
    with torch.device("meta"):
        theirs = {k: tuple(v.shape) for k, v in getattr(tv.models, name)(weights=None).state_dict().items()}
    assert theirs == _published_shapes(name)


@pytest.mark.parametrize("config", ["A", "A-LRN", "B", "C", "D", "E"])
def test_torchvision_state_dict_round_trip(tmp_path, config):
    written = _random_net(config, crop=32)
    path = tmp_path / f"{config}.pth"
    torch.save(written.state_dict(), path)
    model, preprocess = load_torchvision(path)
    assert (model.config, model.width, model.crop, model.num_classes) == (config, 1 / 16, 32, 10)
    assert not model.training and preprocess == torchvision_preprocess()
    x = preprocess(_images(3, 32))
    with torch.no_grad():
        assert torch.equal(model(x), written(x))
    # the same file through the dispatcher, which feeds a state dict of no released geometry only
    # the pre-processing it is told (issue 30: a vggrepro net's weights are not torchvision's)
    assert load_weights(path, preprocess="torchvision")[0].config == config


def test_torchvision_config_may_be_given_by_letter_or_name(tmp_path):
    path = tmp_path / "d.pth"
    torch.save(_random_net("D", crop=32).state_dict(), path)
    assert load_torchvision(path, config="vgg16")[0].config == "D"
    assert load_torchvision(path, config="D")[0].config == "D"
    with pytest.raises(ValueError, match="config E"):
        load_torchvision(path, config="E")
    with pytest.raises(ValueError, match="unknown config"):
        load_torchvision(path, config="vgg99")


def test_torchvision_wrong_files_give_clear_errors(tmp_path):
    state = _random_net("D", crop=32).state_dict()

    def write(obj, name):
        path = tmp_path / name
        torch.save(obj, path)
        return path

    bn = dict(state, **{"features.1.running_mean": torch.zeros(4), "features.1.running_var": torch.ones(4)})
    with pytest.raises(ValueError, match="batch norm"):
        load_torchvision(write(bn, "bn.pth"))
    with pytest.raises(ValueError, match="not a VGG state dict"):
        load_torchvision(write({"conv.weight": torch.zeros(2, 3, 3, 3), "fc.weight": torch.zeros(2, 2)}, "net.pth"))
    with pytest.raises(ValueError, match="not a state dict"):
        load_torchvision(write([torch.zeros(2)], "list.pth"))
    wrong = dict(state, **{"features.2.weight": torch.zeros(4, 4, 3, 3)})  # conv1_2 has 4 -> 4 channels...
    wrong["features.2.bias"] = torch.zeros(5)  # ...but a bias of 5
    with pytest.raises(ValueError, match="features.2.bias"):
        load_torchvision(write(wrong, "wrong.pth"))
    good = write(state, "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable torch file"):
        load_torchvision(truncated)
    with pytest.raises(ValueError, match="not a readable torch file"):
        load_weights(truncated)
    with pytest.raises(FileNotFoundError):
        load_torchvision(tmp_path / "missing.pth")


# -- Caffe -----------------------------------------------------------------------------------------


def caffe_reference(layers, x: np.ndarray) -> np.ndarray:
    """What Caffe computes on a deploy net's layer list, in float64 numpy: 3x3 convolutions with
    padding 1 (cross-correlation, as Caffe's im2col does), ReLU, 2x2/2 max-pooling, and InnerProduct
    on the blob flattened row-major from (N, C, H, W). Returns fc8's scores (before the soft-max)."""
    x = x.astype(np.float64)
    for _, kind, blobs in layers:
        if kind == "Convolution":
            w, b = (blob.astype(np.float64) for blob in blobs)
            k, (n, c, h, w_) = w.shape[-1], x.shape
            padded = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
            # im2col: every input pixel under each of the k*k kernel taps -> (N, C, k*k, H, W)
            columns = np.stack([padded[:, :, i : i + h, j : j + w_] for i in range(k) for j in range(k)], axis=2)
            x = np.tensordot(columns, w.reshape(len(w), c, k * k), axes=([1, 2], [1, 2]))  # N, H, W, out
            x = x.transpose(0, 3, 1, 2) + b[None, :, None, None]
        elif kind == "ReLU":
            x = np.maximum(x, 0)
        elif kind == "Pooling":
            n, c, h, w_ = x.shape
            x = x.reshape(n, c, h // 2, 2, w_ // 2, 2).max(axis=(3, 5))
        elif kind == "InnerProduct":
            w, b = (blob.astype(np.float64) for blob in blobs)
            x = x.reshape(len(x), -1) @ w.reshape(len(b), -1).T + b
        elif kind == "Softmax":
            break
    return x


def _caffe_input(images: torch.Tensor) -> np.ndarray:
    """The released models' input, computed by hand: BGR order, minus the mean pixel given in BGR."""
    bgr = images.numpy().astype(np.float64)[:, ::-1]
    return bgr - np.array([103.939, 116.779, 123.68]).reshape(1, 3, 1, 1)


CAFFE_STYLES = [
    dict(form="layers", shape_style="legacy"),  # how the 2014 release is stored
    dict(form="layer", shape_style="shape"),  # today's Caffe
    dict(form="v0", shape_style="legacy", packed=False),
    dict(form="layer", shape_style="shape", double=True),
]


@pytest.mark.parametrize(
    "config, crop, style",
    [("D", 64, style) for style in CAFFE_STYLES] + [("E", 64, CAFFE_STYLES[0]), ("D", 32, CAFFE_STYLES[1])],
    ids=lambda v: "-".join(map(str, v.values())) if isinstance(v, dict) else str(v),
)
def test_caffe_round_trip_matches_a_caffe_reference(tmp_path, config, crop, style):
    """Crop 64 gives fc6 a 2x2 grid, so fc6's (C, H, W) input order matters and is checked."""
    caffe_proto = _writer()
    layers = caffe_proto.vgg_layers(_random_net(config, crop))
    path = tmp_path / "net.caffemodel"
    path.write_bytes(caffe_proto.net_bytes(layers, **style))
    model, preprocess = load_caffe(path)
    assert (model.config, model.width, model.crop, model.num_classes) == (config, 1 / 16, crop, 10)
    assert preprocess == caffe_preprocess() and not model.training

    images = _images(2, crop)
    reference = caffe_reference(layers, _caffe_input(images))
    with torch.no_grad():
        ours = model(preprocess(images)).double().numpy()
        dense = models.to_dense(model)(preprocess(images)).double().numpy()
    tolerance = dict(rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    np.testing.assert_allclose(ours, reference, **tolerance)
    assert dense.shape == (2, 10, 1, 1)
    np.testing.assert_allclose(dense[:, :, 0, 0], reference, **tolerance)
    # The check can tell: RGB input (no channel flip) gives other scores.
    unflipped = caffe_reference(layers, _caffe_input(images.flip(1)))
    assert not np.allclose(unflipped, reference, **tolerance)


def test_caffe_fc6_order_matters_and_is_c_h_w(tmp_path):
    """With fc6 read as (H, W, C) instead of Caffe's (C, H, W), the scores would differ."""
    caffe_proto = _writer()
    layers = caffe_proto.vgg_layers(_random_net("D", 64))
    model, preprocess = model_from_caffe(parse_net(caffe_proto.net_bytes(layers)))
    images = _images(2, 64)
    fc6 = model.layer("fc6")
    with torch.no_grad():
        right = model(preprocess(images))
        c = fc6.in_features // 4
        fc6.weight.copy_(fc6.weight.view(-1, c, 2, 2).permute(0, 2, 3, 1).reshape(-1, 4 * c))
        permuted = model(preprocess(images))
    np.testing.assert_allclose(
        right.double().numpy(), caffe_reference(layers, _caffe_input(images)), rtol=1e-4, atol=1e-3
    )
    assert not torch.allclose(right, permuted, rtol=1e-3, atol=1e-3)


def test_bgr_preprocess_equals_flipping_conv1_1_and_feeding_rgb(tmp_path):
    """The road not taken: conv1_1's input channels reversed, with an RGB pre-processing, is the
    same function. We keep the weights as released and put BGR in Preprocess instead."""
    caffe_proto = _writer()
    model, preprocess = model_from_caffe(parse_net(caffe_proto.net_bytes(caffe_proto.vgg_layers(_random_net("D", 32)))))
    flipped = models.build("D", crop=32, **SMALL).eval()
    flipped.load_state_dict(model.state_dict())
    with torch.no_grad():
        flipped.layer("conv1_1").weight.copy_(model.layer("conv1_1").weight.flip(1))
    rgb = type(preprocess)(mean=preprocess.mean, std=preprocess.std, order="RGB")
    images = _images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(flipped(rgb(images)), model(preprocess(images)), rtol=1e-5, atol=1e-4)


def test_caffe_nets_of_every_config_are_recognised():
    caffe_proto = _writer()
    for config in ["A", "A-LRN", "B", "C", "D", "E"]:
        data = caffe_proto.net_bytes(caffe_proto.vgg_layers(models.build(config, crop=32, **SMALL)))
        assert model_from_caffe(parse_net(data))[0].config == config


def test_caffe_wrong_nets_give_clear_errors(tmp_path):
    caffe_proto = _writer()
    layers = caffe_proto.vgg_layers(_random_net("D", 64))

    def load(layer_list):
        return model_from_caffe(parse_net(caffe_proto.net_bytes(layer_list)))

    with pytest.raises(ValueError, match="three fully-connected"):
        load([layer for layer in layers if layer[0] != "fc7"])
    with pytest.raises(ValueError, match="two, the weight and the bias"):
        load([(n, t, b[:1]) if n == "conv3_1" else (n, t, b) for n, t, b in layers])
    with pytest.raises(ValueError, match="fit none of the configs"):
        load([layer for layer in layers if layer[0] != "conv5_3"])
    fc6 = next(b for n, _, b in layers if n == "fc6")
    with pytest.raises(ValueError, match="square grid"):
        load([(n, t, [fc6[0][:, :-1], fc6[1]] if n == "fc6" else b) for n, t, b in layers])
    bad_bias = [(n, t, [b[0], b[1][:-1]]) if n == "conv2_1" else (n, t, b) for n, t, b in layers]
    with pytest.raises(ValueError, match=r"features\.5\.bias"):
        load(bad_bias)

    path = tmp_path / "net.caffemodel"
    data = caffe_proto.net_bytes(layers)
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"net\.caffemodel.*at byte"):
        load_caffe(path)


# -- load_weights: dispatching on content --------------------------------------------------------


def test_load_weights_tells_the_kinds_apart(tmp_path):
    caffe_proto = _writer()
    written = _random_net("D", 32)
    caffemodel = tmp_path / "weights.bin"  # names do not matter, content does
    caffemodel.write_bytes(caffe_proto.net_bytes(caffe_proto.vgg_layers(written)))
    pth = tmp_path / "weights.caffemodel"
    torch.save(written.state_dict(), pth)
    assert load_weights(caffemodel)[1] == caffe_preprocess()
    assert load_weights(pth, preprocess="torchvision")[1] == torchvision_preprocess()  # a small net: said
    old_torch = tmp_path / "old.pth"  # torch's pre-1.6 format: a bare pickle stream
    torch.save(written.state_dict(), old_torch, _use_new_zipfile_serialization=False)
    assert load_weights(old_torch, preprocess="torchvision")[0].config == "D"

    ours = tmp_path / "checkpoint.pt"  # a vggrepro checkpoint loads too, with its own pre-processing
    mine = checkpoints.model_meta(written, caffe_preprocess())
    checkpoints.save({"model": written.state_dict(), "meta": mine}, ours)
    model, preprocess = load_weights(ours)
    assert preprocess == caffe_preprocess() and torch.equal(model.layer("fc8").weight, written.layer("fc8").weight)

    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path in (text, empty):
        with pytest.raises(ValueError, match="neither a torch file"):
            load_weights(path)
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.caffemodel")


def test_fuzz_mutated_caffemodels_load_or_give_value_errors():
    """Through the whole loader: a mutated small model either loads as a VGG net or is a ValueError."""
    caffe_proto = _writer()
    data = caffe_proto.net_bytes(
        caffe_proto.vgg_layers(models.build("A", crop=32, width=1 / 32, num_classes=3)),
        form="layers",
        shape_style="legacy",
    )
    rng = random.Random(10)
    loaded = 0
    for case in range(250):
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(b))
            b[i : i + rng.choice([1, 1, 1, 10])] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 1, 1, 10])))
        try:
            model, _ = model_from_caffe(parse_net(bytes(b)))
        except ValueError:
            continue
        except Exception as e:
            raise AssertionError(f"case {case}: {type(e).__name__}: {e}") from e
        assert isinstance(model, models.VGG)
        loaded += 1
    assert 0 < loaded < 250  # both outcomes were exercised
