"""The training batch made in one pass on the device (vggrepro.data.device_batch), run here on the CPU:
the same crops as the per-image path (region, flip, pixels within uint8 rounding), one resampling
call per batch instead of one per image, and pinned memory only for a GPU."""

import numpy as np
import pytest
import torch
from PIL import Image

from vggrepro import data
from vggrepro.data import device_batch, synth
from vggrepro.data import transforms as T


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Images whose smaller side (30-90 px) lies either side of S: both shrinking and enlarging."""
    spec = synth.SynthSpec(seed=5, num_classes=3, train_per_class=6, val_per_class=1, min_side=(30, 90))
    return synth.generate(tmp_path_factory.mktemp("dev") / "set", spec, progress=False)


def _loader(ds, scale=(36, 72), batch_size=6, **engine):
    stats = data.Stats((120.0, 110.0, 100.0), torch.tensor([0.05, 0.02, 0.01]), torch.eye(3))
    return data.TrainLoader(
        ds,
        data.Augmentation(32, scale, T.Preprocess((120.0, 110.0, 100.0)), stats),
        data.Batching(batch_size, seed=1),
        data.Engine(progress=False, **engine),
    )


def test_the_batched_path_is_the_default_off_the_cpu_only(mixed):
    ds = data.ILSVRC(mixed, "train")
    assert not _loader(ds).batched_crops  # the CPU keeps the per-image path, whose bits CI checks
    assert _loader(ds, device="meta").batched_crops  # any other device (CUDA) batches
    assert _loader(ds, batched_crops=True).batched_crops


def test_batched_crops_are_the_per_image_crops(mixed):
    # measured on this set (S fixed 40 and jittered 36-72, 3 epochs x 3 batches of 6 images): the two
    # paths differ by exactly 1 level in 1.2% of the values (max 1, mean 0.012), where the CPU
    # kernel's fixed-point uint8 weights and float32 here round differently; nothing else differs
    ds = data.ILSVRC(mixed, "train")
    diffs = []
    for scale in (40, (36, 72)):
        per_image, batched = _loader(ds, scale=scale), _loader(ds, scale=scale, batched_crops=True)
        for epoch in range(3):
            for (xa, ya), (xb, yb) in zip(per_image.batches(epoch), batched.batches(epoch)):
                assert torch.equal(ya, yb)
                assert xb.is_contiguous(memory_format=torch.channels_last)
                diffs.append((xa - xb).abs())
    diff = torch.cat([d.flatten() for d in diffs])
    assert len(diffs) == 18
    assert diff.max() <= 1 + 1e-4 and diff.mean() < 0.03  # 1e-4: the float32 offsets added after


def _write(root, name, array):
    path = root / "train" / "n00000001" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)  # PNG: lossless


def _gradients(root, sizes):
    """Images whose red value is 5 x the column and green 5 x the row (mod 256), blue a marker."""
    for k, (h, w) in enumerate(sizes):
        a = np.zeros((h, w, 3), np.uint8)
        a[..., 0] = (5 * np.arange(w)) % 256
        a[..., 1] = ((5 * np.arange(h)) % 256)[:, None]
        a[h // 3 : h // 3 + 4, w // 4 : w // 4 + 4, 2] = 255  # a 4 x 4 marker off the centre
        _write(root, f"g_{k}.png", a)
    return data.ILSVRC(root, "train")


def test_the_crop_region_and_flip_match_on_gradients_of_mixed_sizes(tmp_path):
    # sizes that force padding within a batch, shrinking (S < side) and enlarging (S > side)
    ds = _gradients(tmp_path, [(48, 70), (90, 60), (40, 40), (120, 75), (57, 101), (64, 64), (44, 99), (80, 52)])
    pre = T.Preprocess((0.0, 0.0, 0.0))
    for scale in (48, (40, 96)):
        args = (data.Augmentation(32, scale, pre), data.Batching(8, seed=2))
        a = data.TrainLoader(ds, *args, data.Engine(progress=False))
        b = data.TrainLoader(ds, *args, data.Engine(progress=False, batched_crops=True))
        for epoch in range(4):
            xa, _ = a.batch(epoch, 0)
            xb, _ = b.batch(epoch, 0)
            # a crop one pixel off, or flipped the wrong way, moves a gradient by > 2 levels (its
            # slope is 5 levels a pixel, at most 2.4 times enlarged)
            assert (xa - xb).abs().max() <= 1
            for img_a, img_b in zip(xa, xb):  # the marker lands on the same pixels
                assert torch.equal(img_a[2] > 127, img_b[2] > 127)


def test_without_resampling_the_batched_crops_are_exact(tmp_path):
    # S equal to the images' smaller side: the resize is the identity, so crop and flip alone remain
    ds = _gradients(tmp_path, [(64, 96)] * 4 + [(96, 64)] * 4)
    pre = T.Preprocess((0.0, 0.0, 0.0))
    for epoch in range(3):
        args = (data.Augmentation(64, 64, pre), data.Batching(8, seed=epoch))
        xa, _ = data.TrainLoader(ds, *args, data.Engine(progress=False)).batch(epoch, 0)
        xb, _ = data.TrainLoader(ds, *args, data.Engine(progress=False, batched_crops=True)).batch(epoch, 0)
        assert torch.equal(xa, xb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_crops_are_the_cpus(tmp_path):
    # PNGs: the GPU decoder refuses them, so the images are decoded on the host as on the CPU, and
    # go to the GPU through pinned memory; the crops are made there in one pass
    ds = _gradients(tmp_path, [(48, 70), (90, 60), (40, 40), (120, 75), (57, 101), (64, 64), (44, 99), (80, 52)])
    args = (data.Augmentation(32, (40, 96), T.Preprocess((0.0, 0.0, 0.0))), data.Batching(8, seed=2))
    cpu = data.TrainLoader(ds, *args, data.Engine(progress=False))
    cuda = data.TrainLoader(ds, *args, data.Engine("cuda", progress=False))
    assert cuda.batched_crops
    for epoch in range(3):
        (xa, ya), (xb, yb) = cpu.batch(epoch, 0), cuda.batch(epoch, 0)
        assert xb.is_cuda and yb.is_cuda and torch.equal(ya, yb.cpu())
        assert (xa - xb.cpu()).abs().max() <= 1


def _count(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("batch_size", [4, 9])
def test_one_resampling_pass_per_batch_not_one_per_image(mixed, monkeypatch, batch_size):
    ds = data.ILSVRC(mixed, "train")
    per_image = _loader(ds, batch_size=batch_size)
    batched = _loader(ds, batch_size=batch_size, batched_crops=True)
    interpolate = _count(monkeypatch, torch.nn.functional, "interpolate")
    products = _count(monkeypatch, torch, "bmm")
    per_image.batch(0, 0)  # jittered S: every image is resized on its own
    assert len(interpolate) == batch_size
    interpolate.clear()
    products.clear()
    batched.batch(0, 0)
    assert interpolate == [] and products == ["bmm", "bmm"]  # columns, then rows, for the whole batch


def test_the_cpu_never_pins_memory(mixed, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("pin_memory called for a CPU batch")

    monkeypatch.setattr(torch.Tensor, "pin_memory", refuse)
    x, y = _loader(data.ILSVRC(mixed, "train"), batched_crops=True).batch(0, 0)
    assert x.device.type == "cpu" and y.device.type == "cpu"


def test_host_tensors_go_to_a_gpu_pinned_and_non_blocking(monkeypatch):
    moves = []

    def pin(self):
        moves.append("pin")
        return self

    def to(self, device, non_blocking=False):
        moves.append((str(device), non_blocking))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "to", to)
    device_batch.to_device(torch.zeros(3), "cuda")
    assert moves == ["pin", ("cuda", True)]
    moves.clear()
    device_batch.to_device(torch.zeros(3), "cpu")
    assert moves == [("cpu", False)]


def test_resize_weights_are_torchs_antialiased_bilinear():
    g = torch.Generator().manual_seed(0)
    for H, W, h, w in [(60, 80, 40, 53), (40, 50, 72, 90), (520, 700, 256, 345), (33, 47, 33, 47)]:
        img = torch.randint(0, 256, (3, H, W), generator=g).double()
        ref = torch.nn.functional.interpolate(
            img[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False
        )[0]
        zero = torch.tensor([0])
        rows = device_batch.resize_weights(torch.tensor([H]), torch.tensor([h]), torch.arange(h)[None], zero, H + 5)[0]
        cols = device_batch.resize_weights(torch.tensor([W]), torch.tensor([w]), torch.arange(w)[None], zero, W + 3)[0]
        assert (rows[:, H:] == 0).all() and (cols[:, W:] == 0).all()  # the padding has no weight
        assert torch.allclose(rows[:, :H] @ img @ cols[:, :W].T, ref, atol=1e-9)
        # the window that a crop's rows read holds every pixel they weight, and the weights within it
        # are the same (to rounding: the normalising sum adds its terms in another order)
        for start, count in ((0, min(h, 16)), (h // 3, min(h - h // 3, 20)), (h - 8, 8)):
            first, stop = device_batch.source_window(H, h, start, count)
            used = rows[start : start + count].nonzero()[:, 1]
            assert first <= int(used.min()) and int(used.max()) < stop
            part = device_batch.resize_weights(
                torch.tensor([H]),
                torch.tensor([h]),
                torch.arange(start, start + count)[None],
                torch.tensor([first]),
                stop - first,
            )[0]
            assert torch.allclose(part, rows[start : start + count, first:stop], rtol=0, atol=1e-12)
