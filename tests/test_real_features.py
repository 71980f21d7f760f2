"""Appendix B on real images, without the real files: the IDX reader on files written here, the
conv-tap descriptors against the definition, and the experiment's draws, SVMs and verdicts on a
small net and made-up images."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from vggrepro import models
from vggrepro.data import fashion_mnist
from vggrepro.data.transforms import Preprocess, rescale
from vggrepro.experiments import real_features
from vggrepro.experiments.claims import FAILS, HOLDS
from vggrepro.generalise import conv_features

PRE = Preprocess((120.0, 110.0, 100.0), order="BGR")


def _idx(path, array: np.ndarray) -> None:
    """IDX as its documentation describes it: 0, 0, type 0x08, axes; big-endian lengths; the bytes."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_set(tmp_path, monkeypatch):
    """A Fashion-MNIST folder of 60 training and 20 test images (classes 0..9, balanced)."""
    monkeypatch.setattr(fashion_mnist, "SIZES", {"train": 60, "test": 20})
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 20)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28))
        images[:, :, :14] = labels[:, None, None] * 25  # the left half says the class
        _idx(tmp_path / fashion_mnist.FILES[split][0], images)
        _idx(tmp_path / fashion_mnist.FILES[split][1], labels)
    return tmp_path


def test_idx_files_read_as_written(tiny_set):
    images, labels = fashion_mnist.load("train", tiny_set)
    assert images.shape == (60, 28, 28) and images.dtype == np.uint8 and labels.tolist() == list(np.arange(60) % 10)
    rgb = fashion_mnist.as_rgb(images[:3])
    assert rgb.shape == (3, 3, 28, 28) and torch.equal(rgb[:, 0], rgb[:, 2])  # grey repeated
    assert fashion_mnist.available(tiny_set)


def test_a_missing_or_broken_file_names_the_fix(tiny_set, tmp_path):
    with pytest.raises(FileNotFoundError, match="install.sh --real"):
        fashion_mnist.load("test", tmp_path / "nowhere")
    path = tiny_set / fashion_mnist.FILES["test"][0]
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(ValueError, match="values, its shape .* needs .*install.sh --real"):
        fashion_mnist.load("test", tiny_set)
    path.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="not a readable gzip"):
        fashion_mnist.load("test", tiny_set)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return models.init_fan_in(models.build("D", width=1 / 16, num_classes=5, crop=32)).eval()


def test_tap_descriptors_are_each_maps_average_after_its_relu(net):
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 3, 28, 28), dtype=np.uint8))
    got = conv_features.tap_descriptors(net, PRE, images, [32, 40], batch=2)
    checked = 0
    for j, q in enumerate([32, 40]):
        x = PRE(rescale(images, q))
        with torch.no_grad():  # by hand: the plain net, one module at a time
            for i, m in enumerate(net.features):
                x = m(x)
                for tap, path in net.layer_names.items():
                    if path == f"features.{i - 1}" and tap in conv_features.TAPS:
                        want = x.mean(dim=(-2, -1)).double().numpy()
                        np.testing.assert_allclose(got[tap][:, j], want, rtol=1e-4, atol=1e-5)
                        checked += 1
    assert checked == 2 * len(conv_features.TAPS)
    assert got["conv5_3"].shape == (3, 2, net.layer("conv5_3").out_channels)
    flipped = conv_features.tap_descriptors(net, PRE, images.flip(-1), [32], flip=True)
    both = conv_features.tap_descriptors(net, PRE, images, [32], flip=True)
    np.testing.assert_allclose(flipped["conv4_3"], both["conv4_3"], rtol=1e-4, atol=1e-5)  # mirror-invariant


def test_draws_are_balanced_disjoint_and_fixed():
    train, test = np.arange(1000) % 10, np.arange(300) % 10
    plan = real_features.Plan(per_class=4, subsets=3, test_per_class=5)
    subsets, chosen = real_features.draw(train, test, plan)
    assert [len(s) for s in subsets] == [40] * 3 and len(chosen) == 50
    assert len(set(np.concatenate(subsets))) == 120  # disjoint
    assert all((np.bincount(train[s]) == 4).all() for s in subsets) and (np.bincount(test[chosen]) == 5).all()
    again = real_features.draw(train, test, plan)
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again[0]))


def test_a_run_end_to_end_gives_arms_and_verdicts(tiny_set, monkeypatch, net):
    """The whole plumbing on a small net: the images tell their class by their left half, so every
    representation learns, and the record decodes into arms paired by subset and image."""
    monkeypatch.setattr(real_features.onnx_weights, "load_vgg16_convs", lambda wheel=None: (net, PRE))
    monkeypatch.setattr(real_features, "random_net", lambda seed: net)
    plan = real_features.Plan(scales=(32, 40, 48), one_scale=40, per_class=2, subsets=3, test_per_class=2)
    record = real_features.run(plan, root=tiny_set, log=lambda *_: None)
    reps = record["representations"]
    assert set(reps) >= {real_features.BEST, real_features.PIXELS} and len(reps) == 7
    assert all(len(r["errors"]) == 3 and all(len(e) == 20 for e in r["errors"]) for r in reps.values())
    arms = real_features.arms(record)
    assert arms[real_features.BEST].errors.shape == (3, 20) and arms[real_features.BEST].chains == (0, 1, 2)
    rows = [c.decide(arms) for c in real_features.declared(record, "stacking")]
    assert len(rows) == 5 and all(r["chains"] == 3 and r["images"] == 20 for r in rows)
    # the ImageNet arm and the random arm are the same net here: an effect of exactly 0
    same = next(r for r in rows if "random weights" in r["claim"])
    assert same["effect"] == 0 and same["verdict"] not in (HOLDS, FAILS)
