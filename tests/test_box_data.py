"""Training crops of box regression (vggrepro.localise.box_data): crop choice, targets, flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loc_helpers import IDENTITY, FakeSample, loader_of, one_thread  # noqa: F401 (one_thread: autouse)

from vggrepro.localise import box_data as D
from vggrepro.localise.boxes import clip, decode, encode, intersection

# -- crop and flip ------------------------------------------------------------------------------


def test_crop_target_encodes_the_whole_box():
    # box (10,20,50,40) in a crop of 32 at (16, 8): crop coords [-6,34]x[12,32], not clipped:
    # cx 14/32, cy 22/32, w 40/32, h 20/32
    t = D.crop_target([10, 20, 50, 40], 16, 8, 32, flip=False)
    assert t.tolist() == pytest.approx([14 / 32, 22 / 32, 40 / 32, 20 / 32])
    # flipped: crop coords [32-34, 32+6] = [-2, 38]: cx 18/32
    assert D.crop_target([10, 20, 50, 40], 16, 8, 32, flip=True)[0].item() == pytest.approx(18 / 32)


def test_crop_target_flip_mirrors_centre_x():
    # box (20,10,30,20), crop 32 at (16, 8): crop coords [4,14]x[2,12]: cx 9/32, cy 7/32, w = h = 10/32
    plain = D.crop_target([20, 10, 30, 20], 16, 8, 32, flip=False)
    assert plain.tolist() == pytest.approx([9 / 32, 7 / 32, 10 / 32, 10 / 32])
    # flipped, the box sits at crop x [32-14, 32-4] = [18, 28]: cx 23/32
    flipped = D.crop_target([20, 10, 30, 20], 16, 8, 32, flip=True)
    assert flipped.tolist() == pytest.approx([23 / 32, 7 / 32, 10 / 32, 10 / 32])


def test_flip_target_matches_flipped_pixels():
    """The flipped target marks the same pixels as the flipped crop: paint the box, flip, compare."""
    img = torch.zeros(1, 64, 64)
    img[:, 10:20, 20:30] = 1  # box (20, 10, 30, 20)
    crop = img[:, 8:40, 16:48].flip(-1)
    ys, xs = torch.nonzero(crop[0], as_tuple=True)
    painted = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    target = D.crop_target([20, 10, 30, 20], 16, 8, 32, flip=True)
    assert decode(target, [0, 0, 32, 32]).tolist() == pytest.approx(painted)


def test_crop_target_equals_encode_in_the_window():
    """crop_target computes in plain floats what encode() computes on tensors."""
    rng = np.random.default_rng(4)
    for _ in range(100):
        xs, ys = sorted(rng.uniform(-20, 90, 2)), sorted(rng.uniform(-20, 90, 2))
        box = [xs[0], ys[0], xs[1], ys[1]]
        x0, y0, flip = int(rng.integers(0, 40)), int(rng.integers(0, 40)), bool(rng.integers(0, 2))
        expected = encode(box, [x0, y0, x0 + 32, y0 + 32])
        if flip:
            expected[0] = 1 - expected[0]
        assert D.crop_target(box, x0, y0, 32, flip).tolist() == pytest.approx(expected.tolist(), abs=1e-12)


def test_choose_crop_keeps_enough_of_the_object():
    rng = np.random.default_rng(0)
    small = [[40, 40, 50, 50]]  # 10x10 in a 100x100 image, crop 32
    for _ in range(50):
        x0, y0, k = D.choose_crop(small, 100, 100, 32, rng)
        seen = float(intersection(small, [x0, y0, x0 + 32, y0 + 32])[0, 0])
        assert seen >= 50 and k == 0  # at least half of the 100 px box
    # a box larger than the crop: the crop must be at least half object
    big = [[0, 0, 90, 90]]
    for _ in range(50):
        x0, y0, _ = D.choose_crop(big, 100, 100, 32, rng)
        assert float(intersection(big, [x0, y0, x0 + 32, y0 + 32])[0, 0]) >= 32 * 32 / 2


def test_choose_crop_falls_back_to_centring_on_the_box():
    # tries=0 forces the fallback: crop centred on the box (45, 45), clamped: (29, 29)
    assert D.choose_crop([[40, 40, 50, 50]], 100, 100, 32, np.random.default_rng(0), tries=0) == (29, 29, 0)
    # near a corner the crop is clamped into the image
    assert D.choose_crop([[0, 0, 6, 6]], 100, 100, 32, np.random.default_rng(0), tries=0) == (0, 0, 0)


def test_choose_crop_picks_the_most_visible_box():
    # crop covers the whole 32x32 image: the larger fully visible box wins
    assert D.choose_crop([[0, 0, 4, 4], [10, 10, 30, 30]], 32, 32, 32, np.random.default_rng(0))[2] == 1


def test_box_crops_targets_mark_the_painted_object():
    """Rescale, random crop, flip and target together: on images holding one painted rectangle, the
    decoded target of every training crop, clipped to the crop, bounds the bright pixels of that
    crop (to the pixel the bilinear rescale blurs)."""
    rng = np.random.default_rng(1)
    images, samples = {}, []
    for i in range(12):
        h, w = (int(v) for v in rng.integers(40, 90, 2))
        bw, bh = int(rng.integers(10, w - 4)), int(rng.integers(10, h - 4))
        x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        img = torch.zeros(3, h, w, dtype=torch.uint8)
        img[:, y0 : y0 + bh, x0 : x0 + bw] = 255
        images[str(i)] = img
        samples.append(FakeSample(str(i), 0, [[x0, y0, x0 + bw, y0 + bh]]))
    data = D.BoxCrops(samples, 40, 32, IDENTITY, seed=0, load_image=loader_of(images))
    seen, beyond = {k: set() for k in range(len(data))}, 0
    for epoch in range(3):
        data.epoch = epoch
        for k in range(len(data)):
            x, target, _ = data[k]
            ys, xs = torch.nonzero(x[0] > 127, as_tuple=True)
            painted = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
            assert np.allclose(clip(decode(target, [0, 0, 32, 32]), 32, 32).tolist(), painted, atol=1.0), (epoch, k)
            seen[k].add(tuple(target.tolist()))
            whole = decode(target, [0, 0, 32, 32])
            beyond += bool((whole[:2] < -0.5).any() or (whole[2:] > 32.5).any())
    assert sum(len(v) > 1 for v in seen.values()) >= 6  # crops and flips change from epoch to epoch
    assert beyond >= 3  # some objects reach out of their crop, and their targets say so
