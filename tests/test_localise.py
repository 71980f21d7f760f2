"""Localisation (Appendix A) against hand-computed cases.

Nets here are tiny (config A, width 1/16, crop 32 or 64) and, where a protocol is tested, made
constant: fc8's weights are zero and its bias is an encoded box, so the net predicts that box in
every window and the expected result can be worked out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from vggrepro import localise as L
from vggrepro import models
from vggrepro.models import build
from vggrepro.transforms import Preprocess

IDENTITY = Preprocess(mean=(0.0, 0.0, 0.0))


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: the machine's cores are shared, and results must not depend on the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class FakeSample:
    path: str
    label: int
    boxes: list = field(default_factory=list)
    wnid: str = ""


def image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def loader_of(images):
    """A load_image that returns the in-memory image named by the sample's path."""
    return lambda s: images[s.path]


def tiny_classifier(crop=32, classes=3, seed=0):
    torch.manual_seed(seed)
    return build("A", width=1 / 16, num_classes=classes, crop=crop)


def constant_localiser(kind, boxes_params, crop=32, classes=3):
    """A localiser whose output is the same for every input: fc8 weight 0, bias = the encoded box
    (SCR: one box; PCR: one per class, given as a list)."""
    loc = L.localiser(tiny_classifier(crop, classes), kind)
    fc8 = loc.layer("fc8")
    with torch.no_grad():
        fc8.weight.zero_()
        fc8.bias.copy_(torch.tensor(boxes_params, dtype=torch.float32).reshape(-1))
    return loc.eval()


#: Pixels to about [-1, 1]: with fan-in weights, the nets below give boxes of order 1 that move with the pixels.
LIVELY = Preprocess(mean=(128.0, 128.0, 128.0), std=(128.0, 128.0, 128.0))


def lively_localiser(kind, crop=32, classes=3, seed=0):
    """A localiser whose boxes depend on the pixels (a fresh net's std-1e-2 fc8 predicts ~0 anywhere):
    fan-in weights throughout, fc8's bias the box (0.5, 0.5, 0.5, 0.5)."""
    torch.manual_seed(seed)
    loc = models.init_fan_in(L.localiser(tiny_classifier(crop, classes, seed), kind, seed=seed), last_std=0.05)
    with torch.no_grad():
        loc.layer("fc8").bias.fill_(0.5)
    return loc.eval()


# -- IoU ----------------------------------------------------------------------------------------


def test_iou_hand_computed_cases():
    assert L.iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0  # disjoint
    assert L.iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no area
    assert L.iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0  # identical
    assert L.iou([0, 0, 10, 10], [2, 2, 7, 7]) == pytest.approx(25 / 100)  # contained: 25 / 100
    # partial: intersection [5,10]x[5,10] = 25, union 100 + 100 - 25 = 175
    assert L.iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    # partial, unequal: [0,0,4,2] (area 8) and [1,1,5,4] (area 12): inter [1,4]x[1,2] = 3, union 17
    assert L.iou([0, 0, 4, 2], [1, 1, 5, 4]) == pytest.approx(3 / 17)
    assert L.iou([0, 0, 0, 10], [0, 0, 0, 10]) == 0.0  # no area: IoU 0, not NaN


def test_iou_pairwise_matches_single_pairs():
    a = [[0, 0, 10, 10], [5, 5, 15, 15]]
    b = [[0, 0, 10, 10], [2, 2, 7, 7], [20, 20, 30, 30]]
    m = L.iou(a, b)
    assert m.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert float(m[i, j]) == pytest.approx(L.iou(a[i], b[j]))
    # [5,5,15,15] vs [2,2,7,7]: inter [5,7]^2 = 4, union 100 + 25 - 4 = 121
    assert float(m[1, 1]) == pytest.approx(4 / 121)


# -- encoding -----------------------------------------------------------------------------------


def test_correct_agrees_with_iou():
    rng = np.random.default_rng(9)
    hits = 0
    for _ in range(300):
        corners = rng.uniform(0, 40, (3, 2, 2))
        boxes = np.concatenate([corners.min(1), corners.max(1)], 1)  # (3, 4): a guess and two ground truths
        k = int(rng.integers(1, 3))
        expected = bool((L.iou(boxes[:1], boxes[1:1 + k]) > 0.5).any())
        assert L.correct(boxes[0], boxes[1:1 + k]) == expected
        hits += expected
    assert L.correct([0, 0, 10, 10], [[0, 0, 10, 20]]) is False  # IoU exactly 0.5 is not above it
    assert L.correct([0, 0, 10, 10], [[50, 50, 60, 60], [1, 0, 10, 10]]) is True  # any ground-truth box
    assert hits > 5


def test_encode_hand_computed():
    assert L.encode([10, 20, 30, 60], [0, 0, 100, 100]).tolist() == pytest.approx([0.2, 0.4, 0.2, 0.4])
    # window at (32, 64), side 64: centre (48, 80) -> (16/64, 16/64); size 32x16 -> 0.5, 0.25
    assert L.encode([32, 72, 64, 88], [32, 64, 96, 128]).tolist() == pytest.approx([0.25, 0.25, 0.5, 0.25])
    # the whole window is (0.5, 0.5, 1, 1)
    assert L.encode([7, 9, 39, 41], [7, 9, 39, 41]).tolist() == pytest.approx([0.5, 0.5, 1, 1])
    # a non-square window scales x by its width, y by its height
    assert L.encode([0, 0, 50, 50], [0, 0, 100, 200]).tolist() == pytest.approx([0.25, 0.125, 0.5, 0.25])


def test_decode_hand_computed_and_round_trip():
    assert L.decode([0.5, 0.5, 1, 1], [32, 0, 96, 64]).tolist() == pytest.approx([32, 0, 96, 64])
    assert L.decode([0.25, 0.25, 0.5, 0.25], [32, 64, 96, 128]).tolist() == pytest.approx([32, 72, 64, 88])
    rng = np.random.default_rng(0)
    boxes = rng.uniform(-50, 300, (20, 4))
    windows = np.concatenate([rng.uniform(0, 100, (20, 2)), rng.uniform(150, 300, (20, 2))], 1)
    back = L.decode(L.encode(boxes, windows), windows)
    assert torch.allclose(back, torch.as_tensor(boxes), atol=1e-9)


def test_encode_rejects_empty_window():
    with pytest.raises(ValueError, match="no area"):
        L.encode([0, 0, 1, 1], [5, 5, 5, 10])


# -- crop and flip ------------------------------------------------------------------------------


def test_crop_target_encodes_the_whole_box():
    # box (10,20,50,40) in a crop of 32 at (16, 8): crop coords [-6,34]x[12,32], not clipped:
    # cx 14/32, cy 22/32, w 40/32, h 20/32
    t = L.crop_target([10, 20, 50, 40], 16, 8, 32, flip=False)
    assert t.tolist() == pytest.approx([14 / 32, 22 / 32, 40 / 32, 20 / 32])
    # flipped: crop coords [32-34, 32+6] = [-2, 38]: cx 18/32
    assert L.crop_target([10, 20, 50, 40], 16, 8, 32, flip=True)[0].item() == pytest.approx(18 / 32)


def test_crop_target_flip_mirrors_centre_x():
    # box (20,10,30,20), crop 32 at (16, 8): crop coords [4,14]x[2,12]: cx 9/32, cy 7/32, w = h = 10/32
    plain = L.crop_target([20, 10, 30, 20], 16, 8, 32, flip=False)
    assert plain.tolist() == pytest.approx([9 / 32, 7 / 32, 10 / 32, 10 / 32])
    # flipped, the box sits at crop x [32-14, 32-4] = [18, 28]: cx 23/32
    flipped = L.crop_target([20, 10, 30, 20], 16, 8, 32, flip=True)
    assert flipped.tolist() == pytest.approx([23 / 32, 7 / 32, 10 / 32, 10 / 32])


def test_flip_target_matches_flipped_pixels():
    """The flipped target marks the same pixels as the flipped crop: paint the box, flip, compare."""
    img = torch.zeros(1, 64, 64)
    img[:, 10:20, 20:30] = 1  # box (20, 10, 30, 20)
    crop = img[:, 8:40, 16:48].flip(-1)
    ys, xs = torch.nonzero(crop[0], as_tuple=True)
    painted = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    target = L.crop_target([20, 10, 30, 20], 16, 8, 32, flip=True)
    assert L.decode(target, [0, 0, 32, 32]).tolist() == pytest.approx(painted)


def test_crop_target_equals_encode_in_the_window():
    """crop_target computes in plain floats what encode() computes on tensors."""
    rng = np.random.default_rng(4)
    for _ in range(100):
        xs, ys = sorted(rng.uniform(-20, 90, 2)), sorted(rng.uniform(-20, 90, 2))
        box = [xs[0], ys[0], xs[1], ys[1]]
        x0, y0, flip = int(rng.integers(0, 40)), int(rng.integers(0, 40)), bool(rng.integers(0, 2))
        expected = L.encode(box, [x0, y0, x0 + 32, y0 + 32])
        if flip:
            expected[0] = 1 - expected[0]
        assert L.crop_target(box, x0, y0, 32, flip).tolist() == pytest.approx(expected.tolist(), abs=1e-12)


def test_choose_crop_keeps_enough_of_the_object():
    rng = np.random.default_rng(0)
    small = [[40, 40, 50, 50]]  # 10x10 in a 100x100 image, crop 32
    for _ in range(50):
        x0, y0, k = L.choose_crop(small, 100, 100, 32, rng)
        seen = float(L.intersection(small, [x0, y0, x0 + 32, y0 + 32])[0, 0])
        assert seen >= 50 and k == 0  # at least half of the 100 px box
    # a box larger than the crop: the crop must be at least half object
    big = [[0, 0, 90, 90]]
    for _ in range(50):
        x0, y0, _ = L.choose_crop(big, 100, 100, 32, rng)
        assert float(L.intersection(big, [x0, y0, x0 + 32, y0 + 32])[0, 0]) >= 32 * 32 / 2


def test_choose_crop_falls_back_to_centring_on_the_box():
    # tries=0 forces the fallback: crop centred on the box (45, 45), clamped: (29, 29)
    assert L.choose_crop([[40, 40, 50, 50]], 100, 100, 32, np.random.default_rng(0), tries=0) == (29, 29, 0)
    # near a corner the crop is clamped into the image
    assert L.choose_crop([[0, 0, 6, 6]], 100, 100, 32, np.random.default_rng(0), tries=0) == (0, 0, 0)


def test_choose_crop_picks_the_most_visible_box():
    # crop covers the whole 32x32 image: the larger fully visible box wins
    assert L.choose_crop([[0, 0, 4, 4], [10, 10, 30, 30]], 32, 32, 32, np.random.default_rng(0))[2] == 1


# -- heads and loss -----------------------------------------------------------------------------


def test_localiser_copies_all_but_fc8():
    net = tiny_classifier(classes=3)
    for kind, outputs in (("SCR", 4), ("PCR", 12)):
        loc = L.localiser(net, kind)
        assert loc.layer("fc8").out_features == outputs and loc.box_kind == kind and loc.box_classes == 3
        mine, theirs = loc.state_dict(), net.state_dict()
        for key in theirs:
            if not key.startswith("classifier.6."):
                assert torch.equal(mine[key], theirs[key]), key
    # the fresh layer depends on the seed only
    a, b = L.localiser(net, "PCR", seed=1), L.localiser(net, "PCR", seed=1)
    assert torch.equal(a.layer("fc8").weight, b.layer("fc8").weight)


def test_box_of_selects_the_class_box():
    out = torch.arange(2 * 12, dtype=torch.float32).reshape(2, 12)  # PCR, 3 classes
    assert L.box_of(out, "PCR", [2, 0]).tolist() == [[8, 9, 10, 11], [12, 13, 14, 15]]
    scr = torch.arange(8.0).reshape(2, 4)
    assert torch.equal(L.box_of(scr, "SCR", [2, 0]), scr)
    maps = torch.arange(12 * 2 * 3, dtype=torch.float32).reshape(1, 12, 2, 3)  # dense maps
    assert torch.equal(L.box_of(maps, "PCR", [1])[0], maps[0, 4:8])
    with pytest.raises(ValueError, match="outside"):
        L.box_of(out, "PCR", [3, 0])


def test_box_loss_is_half_mean_squared_euclidean():
    out = torch.zeros(2, 12, requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]])
    loss = L.box_loss(out, "PCR", targets, [1, 2])
    assert loss.item() == pytest.approx((1 + 4) / (2 * 2))
    loss.backward()
    grad = out.grad.reshape(2, 3, 4)
    assert grad[0, 1].tolist() == [-0.5, 0, 0, 0] and grad[1, 2].tolist() == [0, -1.0, 0, 0]
    assert float(grad[0, [0, 2]].abs().sum() + grad[1, :2].abs().sum()) == 0  # other classes untouched


# -- protocol 1 ---------------------------------------------------------------------------------


def test_centre_box_geometry_by_hand():
    # image 40x80 (HxW) at Q=32 -> 32x64 (factor 0.8); central crop at x0=16, y0=0.
    # bias (0.5,0.5,0.5,0.5) -> crop box (8,8,24,24) -> rescaled (24,8,40,24) -> image (30,10,50,30)
    loc = constant_localiser("SCR", [0.5, 0.5, 0.5, 0.5])
    box = L.centre_box(loc, image(40, 80), 0, Q=32, preprocess=IDENTITY)
    assert box.tolist() == pytest.approx([30, 10, 50, 30], abs=1e-4)


def test_protocol1_known_error_and_any_box_matches():
    # 64x128 images at Q=32 -> 32x64 (factor 0.5, exact); the central crop at (16, 0) gives the
    # box (24,8,40,24) in the rescaled image, (48,16,80,48) in the image (area 1024)
    loc = constant_localiser("SCR", [0.5, 0.5, 0.5, 0.5])
    images = {f"{i}": image(64, 128, i) for i in range(4)}
    samples = [
        FakeSample("0", 0, [[48, 16, 80, 48]]),  # exact: correct
        FakeSample("1", 1, [[0, 0, 10, 10], [52, 20, 80, 48]]),  # second box, IoU 784/1024: correct
        FakeSample("2", 2, [[58, 26, 90, 58]]),  # IoU 484/1564 = 0.31: wrong
        FakeSample("3", 0, [[0, 0, 20, 20]]),  # disjoint: wrong
    ]
    err = L.protocol1(loc, samples, Q=32, preprocess=IDENTITY, load_image=loader_of(images), batch_size=3,
                      progress=False)
    assert err == pytest.approx(50.0)
    right = L.protocol1(loc, samples, Q=32, preprocess=IDENTITY, load_image=loader_of(images), batch_size=3,
                        progress=False, per_image=True)
    assert right.tolist() == [True, True, False, False]  # per image, for paired comparisons


def test_protocol1_iou_of_exactly_half_is_wrong():
    loc = constant_localiser("SCR", [0.5, 0.5, 0.5, 0.5])  # (48,16,80,48) on a 64x128 image
    # a ground truth twice as wide that contains the prediction: IoU exactly 1024/2048, not above 0.5
    samples = [FakeSample("0", 0, [[48, 16, 112, 48]])]
    err = L.protocol1(loc, samples, Q=32, preprocess=IDENTITY, load_image=loader_of({"0": image(64, 128)}),
                      progress=False)
    assert err == 100.0


def test_protocol1_pcr_reads_the_ground_truth_class():
    # class 0 predicts the left half, class 1 the right half, class 2 the whole crop
    loc = constant_localiser("PCR", [[0.25, 0.5, 0.5, 1], [0.75, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]])
    images = {"a": image(32, 32)}
    left, right = [0, 0, 16, 32], [16, 0, 32, 32]
    samples = [FakeSample("a", 0, [left]), FakeSample("a", 1, [right]), FakeSample("a", 1, [left]),
               FakeSample("a", 2, [[0, 0, 32, 32]])]
    err = L.protocol1(loc, samples, Q=32, preprocess=IDENTITY, load_image=loader_of(images), progress=False)
    assert err == pytest.approx(25.0)  # only the third (class 1, but the box is on the left) is wrong


# -- protocol 2: dense boxes --------------------------------------------------------------------


def test_dense_windows_geometry():
    w = L.dense_windows(2, 3, 64)
    assert w.tolist() == [[0, 0, 64, 64], [32, 0, 96, 64], [64, 0, 128, 64],
                          [0, 32, 64, 96], [32, 32, 96, 96], [64, 32, 128, 96]]


def test_dense_boxes_tile_the_image():
    # crop 32: every location's window is its own 32x32 tile; a net predicting (0.5,0.5,1,1)
    # returns exactly the tiles. Image 64x96 at Q=64 (no rescale): 2x3 locations.
    loc = constant_localiser("SCR", [0.5, 0.5, 1, 1], crop=32)
    out = L.dense_boxes(loc, "SCR", image(64, 96), 64, [0, 2], preprocess=IDENTITY)
    assert set(out) == {0, 2}
    boxes = [b for b, _ in out[0]]
    locations = [l for _, l in out[0]]
    assert locations == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    expected = [[32 * j, 32 * i, 32 * j + 32, 32 * i + 32] for i in range(2) for j in range(3)]
    assert np.allclose(boxes, expected)
    assert sum(L.area(boxes).tolist()) == 64 * 96  # they tile the image exactly


def test_dense_boxes_overlapping_windows_and_rescale():
    # crop 64 (fc6 is a 2x2 conv): windows of 64 at stride 32. Image 48x72 at Q=96 -> 96x144
    # (factor 2), map (3-2+1) x (4-2+1) = 2x3. The box (0.5,0.5,0.5,0.5) is the window's middle
    # quarter: location (i, j) -> rescaled (32j+16, 32i+16, 32j+48, 32i+48) -> image / 2.
    loc = constant_localiser("PCR", [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 1, 1]], crop=64, classes=2)
    out = L.dense_boxes(loc, None, image(48, 72), 96, [0], preprocess=IDENTITY, align="top-left")[0]
    expected = [[16 * j + 8, 16 * i + 8, 16 * j + 24, 16 * i + 24] for i in range(2) for j in range(3)]
    assert np.allclose([b for b, _ in out], expected)
    # centred: 144 = 4 x 32 + 16, so the grid moves right by 8 rescaled pixels (4 image pixels);
    # 96 is a multiple of 32, so rows stay
    out = L.dense_boxes(loc, None, image(48, 72), 96, [0], preprocess=IDENTITY)[0]
    assert np.allclose([b for b, _ in out], [[x0 + 4, y0, x1 + 4, y1] for x0, y0, x1, y1 in expected])


def test_centred_grid_sees_the_middle_of_the_image():
    """On a 32 x 55 image (crop 32) the one dense window is the central crop when centred, and the
    left 32 columns with the plain net's grid."""
    loc = lively_localiser("SCR", seed=1)
    img = image(32, 55, 2)
    centre = L.centre_box(loc, img, 0, Q=32, preprocess=LIVELY)
    centred, _ = L.dense_box_array(loc, img, [0], Q=32, preprocess=LIVELY)
    assert centred.shape == (1, 1, 4) and np.allclose(centred[0, 0].tolist(), centre.tolist(), atol=1e-4)
    left, _ = L.dense_box_array(loc, img, [0], Q=32, preprocess=LIVELY, align="top-left")
    assert not np.allclose(left[0, 0].tolist(), centre.tolist(), atol=0.5)  # another window, another box
    whole = constant_localiser("SCR", [0.5, 0.5, 1, 1])  # the box is its window
    assert L.dense_box_array(whole, img, [0], Q=32, preprocess=IDENTITY)[0].tolist() == [[[11, 0, 43, 32]]]
    assert L.dense_box_array(whole, img, [0], Q=32, preprocess=IDENTITY, align="top-left")[0].tolist() == [
        [[0, 0, 32, 32]]]
    with pytest.raises(ValueError, match="align"):
        L.dense_box_array(loc, img, [0], Q=32, preprocess=LIVELY, align="middle")


def test_dense_boxes_match_the_crop_net_at_each_window():
    """On an image the size of the crop, the dense net's single location sees exactly the central
    crop: a net whose boxes depend on the pixels gives the same box both ways, so the fc-to-conv
    reading of fc6/fc7/fc8 and the decoding agree."""
    loc = lively_localiser("SCR", seed=3)
    img = image(32, 32, 5)
    dense = L.dense_boxes(loc, "SCR", img, 32, [1], preprocess=LIVELY)[1]
    centre = L.centre_box(loc, img, 1, Q=32, preprocess=LIVELY)
    assert len(dense) == 1 and np.allclose(dense[0][0], centre.tolist(), atol=1e-4)
    other = L.centre_box(loc, image(32, 32, 6), 1, Q=32, preprocess=LIVELY)
    assert not np.allclose(other.tolist(), centre.tolist(), atol=0.5)  # the box does depend on the pixels


# -- greedy merging -----------------------------------------------------------------------------


def test_centre_view_gives_protocol_1_box():
    # the 64x128 image of the protocol 1 tests: the central view at Q=32 is one box, (48,16,80,48),
    # while the dense view has 1x2 locations
    loc = constant_localiser("SCR", [0.5, 0.5, 0.5, 0.5])
    img = image(64, 128)
    boxes, locations = L.dense_box_array(loc, img, [0], Q=32, preprocess=IDENTITY, centre=True)
    assert boxes.tolist() == [[[48, 16, 80, 48]]] and locations.tolist() == [[0, 0]]
    assert L.dense_box_array(loc, img, [0], Q=32, preprocess=IDENTITY)[0].tolist() == [
        [[16, 16, 48, 48], [80, 16, 112, 48]]]
    samples = [FakeSample("a", 0, [[48, 16, 80, 48]])]
    run = dict(scales=[32], preprocess=IDENTITY, load_image=loader_of({"a": img}), progress=False)
    post = torch.tensor([[1.0, 0, 0]])
    assert L.protocol2([loc], post, samples, centre=True, **run) == 0.0
    assert L.protocol2([loc], post, samples, **run) == 100.0


def test_greedy_merge_two_close_one_far():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]  # IoU(a, b) = 81/119
    merged = L.greedy_merge(boxes, threshold=0.5)
    assert np.allclose(merged.boxes, [[0.5, 0.5, 10.5, 10.5], [50, 50, 60, 60]])
    assert merged.counts.tolist() == [2, 1] and merged.scores.tolist() == [2, 1]


def test_greedy_merge_weights_repeated_merges_by_count():
    # three near-identical boxes: the result is their plain mean, not ((a+b)/2 + c)/2
    boxes = [[0, 0, 10, 10], [0, 0, 10, 13], [0, 0, 10, 16]]
    merged = L.greedy_merge(boxes, threshold=0.5)
    assert np.allclose(merged.boxes, [[0, 0, 10, 13]]) and merged.counts.tolist() == [3]


def test_greedy_merge_threshold_boundary():
    # IoU([0,0,3,1], [1,0,4,1]) = 2/4: distance exactly 0.5, merged only under a larger threshold
    boxes = [[0, 0, 3, 1], [1, 0, 4, 1]]
    assert len(L.greedy_merge(boxes, threshold=0.5).boxes) == 2
    assert np.allclose(L.greedy_merge(boxes, threshold=0.5 + 1e-9).boxes, [[0.5, 0, 3.5, 1]])
    assert len(L.greedy_merge(boxes, threshold=0.0).boxes) == 2


def _naive_merge(boxes, scores, threshold):
    """Greedy merging written plainly, as a second implementation: clusters of raw boxes; merge the
    closest pair of clusters (first pair in (i, j) order on ties) while 1 - IoU < threshold."""
    clusters = [[k] for k in range(len(boxes))]
    mean = lambda c: [sum(boxes[k][d] for k in c) / len(c) for d in range(4)]
    while len(clusters) > 1:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                d = 1 - L.iou(mean(clusters[a]), mean(clusters[b]))
                if best is None or d < best[0]:
                    best = (d, a, b)
        if not best[0] < threshold:
            break
        _, a, b = best
        clusters[a] = clusters[a] + clusters.pop(b)
    merged = sorted(((sum(scores[k] for k in c), mean(c), len(c)) for c in clusters), key=lambda t: -t[0])
    return [m[1] for m in merged], [m[0] for m in merged], [m[2] for m in merged]


def test_greedy_merge_equals_a_naive_implementation():
    rng, merges = np.random.default_rng(7), 0
    for trial in range(30):
        n = int(rng.integers(1, 12))
        centres = rng.uniform(0, 40, (n, 2)) + rng.integers(0, 2, (n, 1)) * 60  # two groups, jittered
        sizes = rng.uniform(10, 30, (n, 2))
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).tolist()
        scores = rng.uniform(0, 1, n).tolist()
        threshold = float(rng.uniform(0.3, 0.9))
        merged = L.greedy_merge(boxes, scores, threshold=threshold)
        want_boxes, want_scores, want_counts = _naive_merge(boxes, scores, threshold)
        assert np.allclose(merged.boxes.numpy(), np.reshape(want_boxes, (-1, 4))), trial
        assert merged.scores.tolist() == pytest.approx(want_scores), trial
        assert merged.counts.tolist() == want_counts, trial
        merges += n - len(want_counts)
    assert merges > 20  # the cases do merge


def test_greedy_merge_ranks_by_score():
    boxes = [[0, 0, 10, 10], [50, 50, 60, 60], [51, 51, 61, 61]]
    merged = L.greedy_merge(boxes, scores=[0.9, 0.3, 0.4], threshold=0.5)
    assert merged.scores.tolist() == pytest.approx([0.9, 0.7])
    assert merged.boxes[0].tolist() == [0, 0, 10, 10]
    assert L.greedy_merge([], threshold=0.5).boxes.shape == (0, 4)


# -- protocol 2 ---------------------------------------------------------------------------------


def _posteriors(order, classes=7):
    """Posteriors whose classes rank as ``order`` (best first)."""
    p = torch.zeros(classes)
    for rank, c in enumerate(order):
        p[c] = 1.0 - 0.1 * rank
    return p


def test_protocol2_top5_and_any_box():
    loc = constant_localiser("SCR", [0.5, 0.5, 0.5, 0.5], classes=7)  # 32x32 image: box (8,8,24,24)
    images = {"a": image(32, 32)}
    samples = [
        FakeSample("a", 3, [[0, 0, 4, 4], [8, 8, 24, 24]]),  # label ranked 5th, second box matches
        FakeSample("a", 3, [[8, 8, 24, 24]]),  # label ranked 6th: wrong however good the box
        FakeSample("a", 0, [[0, 0, 8, 8]]),  # label first, box wrong
    ]
    post = torch.stack([_posteriors([0, 1, 2, 4, 3]), _posteriors([0, 1, 2, 4, 5, 3]), _posteriors([0])])
    err = L.protocol2([loc], post, samples, scales=[32], preprocess=IDENTITY, load_image=loader_of(images),
                      progress=False)
    assert err == pytest.approx(200 / 3)


def test_protocol2_pcr_uses_each_class_box():
    # class 1's box is right, class 0's is wrong; both in the top 5
    loc = constant_localiser("PCR", [[0.25, 0.5, 0.5, 1], [0.75, 0.5, 0.5, 1]], classes=2)
    samples = [FakeSample("a", 1, [[16, 0, 32, 32]]), FakeSample("a", 0, [[16, 0, 32, 32]])]
    post = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
    err = L.protocol2([loc], post, samples, scales=[32], preprocess=IDENTITY,
                      load_image=loader_of({"a": image(32, 32)}), progress=False)
    assert err == pytest.approx(50.0)


def test_fusion_pools_boxes_before_merging():
    # gt (8,8,24,24). Net A predicts it shifted 6 px left, net B 6 px right: IoU 160/352 each (wrong).
    # A and B overlap with IoU 64/448 (distance 0.857): with threshold 0.9 the pooled pair merges to
    # their average, the ground truth itself.
    a = constant_localiser("SCR", L.encode([2, 8, 18, 24], [0, 0, 32, 32]).tolist())
    b = constant_localiser("SCR", L.encode([14, 8, 30, 24], [0, 0, 32, 32]).tolist())
    samples = [FakeSample("a", 0, [[8, 8, 24, 24]])]
    post = torch.tensor([[1.0, 0, 0]])
    run = dict(preprocess=IDENTITY, load_image=loader_of({"a": image(32, 32)}), threshold=0.9, progress=False)
    assert L.protocol2([a], post, samples, scales=[32], **run) == 100.0
    assert L.protocol2([b], post, samples, scales=[32], **run) == 100.0
    assert L.protocol2([a, b], post, samples, scales=[32], **run) == 0.0
    # pooling is also across scales: Q=32 and Q=64 give 1 + 2x2 = 5 boxes per net
    pooled, scores = L._pooled([a, b], [[32, 64], [32]], image(32, 32), [0], IDENTITY)
    assert pooled.shape == (1, 5 + 1, 4) and scores.tolist() == [[1.0] * 6]


def test_protocol2_table_equals_one_call_per_system():
    """Several systems in one pass (nets shared through the memo) give each system's own error."""
    a, b = lively_localiser("PCR", classes=4, seed=5), lively_localiser("SCR", classes=4, seed=6)
    clf = models.init_fan_in(tiny_classifier(32, 4, seed=7)).eval()
    rng = np.random.default_rng(2)
    images, samples = {}, []
    for i in range(10):
        h, w = int(rng.integers(32, 80)), int(rng.integers(32, 80))
        images[str(i)] = image(h, w, i)
        samples.append(FakeSample(str(i), i % 4, [[w * 0.2, h * 0.1, w * 0.8, h * 0.9]]))
    post = torch.rand(10, 4, generator=torch.Generator().manual_seed(0))
    systems = {"a": dict(localisers=[a], scales=[40], preprocess=LIVELY),
               "a 2 scales": dict(localisers=[a], scales=[36, 40], preprocess=LIVELY),
               "fusion": dict(localisers=[a, b], scales=[[40], [36, 40]], preprocess=LIVELY),
               "a centre": dict(localisers=[a], scales=[40], preprocess=LIVELY, centre=True),
               "a top-left": dict(localisers=[a], scales=[40], preprocess=LIVELY, align="top-left")}
    run = dict(classifier=clf, classifier_preprocess=LIVELY, load_image=loader_of(images), threshold=0.7,
               progress=False)
    together = L.protocol2_table(systems, post, samples, **run)
    alone = {name: L.protocol2(x["localisers"], post, samples, scales=x["scales"], preprocess=x["preprocess"],
                               centre=x.get("centre", False), align=x.get("align", "centred"), **run)
             for name, x in systems.items()}
    assert together == alone
    assert len(set(together.values())) > 1  # the systems do differ
    each = L.protocol2_table(systems, post, samples, per_image=True, **run)
    assert {name: 100 * (~r).sum().item() / len(samples) for name, r in each.items()} == pytest.approx(together)
    with pytest.raises(ValueError, match="needs localisers"):
        L.protocol2_table({"x": dict(localisers=[a], scale=[40], preprocess=LIVELY)}, post, samples, **run)


def test_batched_maps_equal_one_image_at_a_time():
    """protocol2_table runs the nets on many images at once (batched by size); image by image,
    top5_boxes without a memo runs them one at a time: the same (class, box) guesses."""
    a, b = lively_localiser("PCR", classes=4, seed=5), lively_localiser("SCR", classes=4, seed=6)
    clf = models.init_fan_in(tiny_classifier(32, 4, seed=7)).eval()
    rng = np.random.default_rng(3)
    images, samples = {}, []
    for i in range(12):
        h, w = (40, 52) if i % 3 else (int(rng.integers(32, 80)), int(rng.integers(32, 80)))  # some of one size
        images[str(i)] = image(h, w, i)
        samples.append(FakeSample(str(i), i % 4, [[w * 0.2, h * 0.1, w * 0.8, h * 0.9]]))
    post = torch.rand(12, 4, generator=torch.Generator().manual_seed(1))
    system = dict(localisers=[a, b], scales=[[40], [36, 44]], preprocess=LIVELY)
    run = dict(classifier=clf, classifier_preprocess=LIVELY, threshold=0.7)
    batched = L.protocol2_table({"x": system}, post, samples, load_image=loader_of(images), chunk=5,
                                per_image=True, progress=False, **run)["x"]
    for n, s in enumerate(samples):
        guesses = L.top5_boxes(system["localisers"], post[n], images[s.path], scales=system["scales"],
                               preprocess=LIVELY, **run)
        assert bool(batched[n]) == any(c == s.label and L.correct(box, s.boxes) for c, box, _ in guesses)
        maps = L._maps(a, [images[s.path]], Q=40, preprocess=LIVELY, centre=False, align="centred")[0][0]
        together = L._maps(a, [images[t.path] for t in samples], Q=40, preprocess=LIVELY, centre=False,
                           align="centred")[n][0]
        assert torch.allclose(maps, together, atol=1e-5)
    assert 0 < int(batched.sum()) < len(samples)


def test_location_scores_are_the_classifier_at_each_window():
    # one location (a 32x32 image): the dense posterior equals the classifier's soft-max on the crop
    clf = tiny_classifier(32, 4, seed=2).eval()
    img = image(32, 32, 7)
    dense = L.location_scores(clf, img, [3, 1], Q=32, preprocess=IDENTITY)
    with torch.no_grad():
        crop = clf(img[None].float()).double().softmax(1)[0]
    assert torch.allclose(dense[:, 0], crop[[3, 1]], atol=1e-5)
    # 64x96 at Q=64: a 2x3 map, row-major
    assert L.location_scores(clf, image(64, 96), [0], Q=64, preprocess=IDENTITY).shape == (1, 6)


def test_classifier_scores_choose_among_disagreeing_boxes(monkeypatch):
    # a 32x64 image gives 2 locations; the constant net predicts each window's left half, so the
    # two boxes are disjoint: (0,0,16,32) and (32,0,48,32). Ground truth is the second.
    loc = constant_localiser("SCR", [0.25, 0.5, 0.5, 1])
    samples = [FakeSample("a", 0, [[32, 0, 48, 32]])]
    run = dict(scales=[32], preprocess=IDENTITY, load_image=loader_of({"a": image(32, 64)}), progress=False)
    post = torch.tensor([[1.0, 0, 0]])
    assert L.protocol2([loc], post, samples, **run) == 100.0  # a tie: the first (top-left) box wins
    clf = tiny_classifier(32, 3)
    two = lambda maps, classes: torch.tensor([[0.2, 0.7]] * len(classes), dtype=torch.float64)
    monkeypatch.setattr(L, "_scores_of_maps", two)  # the classifier's posteriors at the two locations
    assert L.protocol2([loc], post, samples, classifier=clf, **run) == 0.0  # the classifier prefers location 2
    three = lambda maps, classes: torch.ones(len(classes), 3, dtype=torch.float64)
    monkeypatch.setattr(L, "_scores_of_maps", three)
    with pytest.raises(ValueError, match="same crop"):
        L.protocol2([loc], post, samples, classifier=clf, **run)


# -- fine-tuning --------------------------------------------------------------------------------


def _train_set(n=8):
    images, samples = {}, []
    for i in range(n):
        h, w = 40 + 4 * i, 56 - 2 * i
        images[str(i)] = image(h, w, i)
        samples.append(FakeSample(str(i), i % 3, [[4 + i, 6, w - 8, h - 4 - i]]))
    samples.append(FakeSample("none", 0, []))  # no box: skipped
    return images, samples


def test_finetune_fc_trains_fc_layers_only_and_is_cached(tmp_path):
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    args = dict(S=36, epochs=2, preprocess=IDENTITY, batch_size=4, profile="test", runs_root=tmp_path,
                load_image=loader_of(images), progress=False)
    loc, result = L.finetune(net, "PCR", "fc", samples, **args)
    assert result["epochs"] == 2 and len(result["history"]) == 2 and result["settings"]["train_images"] == 8
    assert "provenance" in result and loc.box_kind == "PCR"
    assert torch.equal(loc.layer("conv1_1").weight, net.layer("conv1_1").weight)  # frozen
    assert not torch.equal(loc.layer("fc6").weight, net.layer("fc6").weight)  # trained

    again, result2 = L.finetune(net, "PCR", "fc", samples, **dict(args, load_image=lambda s: 1 / 0))
    assert result2 == result  # re-used: nothing loaded, nothing trained
    for key, value in loc.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
    ckpt_net, meta = L.load_localiser(result["checkpoint"])
    assert meta["kind"] == "PCR" and meta["layers"] == "fc" and meta["classes"] == 3


def test_fc_runs_sharing_frozen_outputs_equal_runs_alone(tmp_path):
    """SCR then PCR (fc only) with one ``shared`` dict: the PCR run re-uses the SCR run's pool5
    outputs without loading an image, and both nets equal those trained alone."""
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    args = dict(S=36, epochs=2, preprocess=IDENTITY, batch_size=4, profile="test", progress=False)
    alone = {kind: L.finetune(net, kind, "fc", samples, runs_root=tmp_path / "alone",
                              load_image=loader_of(images), **args)[0] for kind in ("SCR", "PCR")}
    shared = {}
    scr, _ = L.finetune(net, "SCR", "fc", samples, runs_root=tmp_path / "shared", load_image=loader_of(images),
                        shared=shared, **args)
    assert len(shared) == 2  # one entry per epoch
    pcr, _ = L.finetune(net, "PCR", "fc", samples, runs_root=tmp_path / "shared", load_image=lambda s: 1 / 0,
                        shared=shared, **args)
    for kind, loc in (("SCR", scr), ("PCR", pcr)):
        for key, value in alone[kind].state_dict().items():
            assert torch.equal(loc.state_dict()[key], value), (kind, key)


def test_finetune_all_is_deterministic_and_trains_convs(tmp_path):
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    args = dict(S=36, epochs=1, preprocess=IDENTITY, batch_size=4, profile="test",
                load_image=loader_of(images), progress=False)
    a, ra = L.finetune(net, "SCR", "all", samples, runs_root=tmp_path / "a", **args)
    b, rb = L.finetune(net, "SCR", "all", samples, runs_root=tmp_path / "b", **args)
    assert not torch.equal(a.layer("conv1_1").weight, net.layer("conv1_1").weight)
    assert ra["final_loss"] == rb["final_loss"]
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


def test_finetune_lowers_the_loss_on_a_constant_box(tmp_path):
    """Every image holds the same box: a few epochs of fc fine-tuning must fit it better than the
    fresh fc8 (whose outputs start near 0)."""
    net = tiny_classifier(32, 3)
    images = {str(i): image(32, 32, i) for i in range(16)}
    samples = [FakeSample(str(i), i % 3, [[4, 4, 28, 28]]) for i in range(16)]
    _, result = L.finetune(net, "SCR", "fc", samples, S=32, epochs=6, preprocess=IDENTITY, batch_size=8,
                           lr=1e-2, profile="test", runs_root=tmp_path, load_image=loader_of(images),
                           progress=False)
    losses = [h["loss"] for h in result["history"]]
    # the target is (0.5, 0.5, 0.75, 0.75) everywhere: the starting loss is about |t|^2 / 2 = 0.81
    assert losses[0] > 0.5 and losses[-1] < losses[0] / 2


def test_finetune_rejects_bad_arguments(tmp_path):
    net = tiny_classifier(32, 3)
    with pytest.raises(ValueError, match="SCR"):
        L.finetune(net, "XYZ", "fc", [], S=32, epochs=1, preprocess=IDENTITY)
    with pytest.raises(ValueError, match="'fc'"):
        L.finetune(net, "SCR", "conv", [], S=32, epochs=1, preprocess=IDENTITY)
    with pytest.raises(ValueError, match="no training sample"):
        L.finetune(net, "SCR", "fc", [FakeSample("x", 0, [])], S=32, epochs=1, preprocess=IDENTITY,
                   runs_root=tmp_path)


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
        img[:, y0:y0 + bh, x0:x0 + bw] = 255
        images[str(i)] = img
        samples.append(FakeSample(str(i), 0, [[x0, y0, x0 + bw, y0 + bh]]))
    data = L.BoxCrops(samples, 40, 32, IDENTITY, seed=0, load_image=loader_of(images))
    seen, beyond = {k: set() for k in range(len(data))}, 0
    for epoch in range(3):
        data.epoch = epoch
        for k in range(len(data)):
            x, target, _ = data[k]
            ys, xs = torch.nonzero(x[0] > 127, as_tuple=True)
            painted = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
            assert np.allclose(L.clip(L.decode(target, [0, 0, 32, 32]), 32, 32).tolist(), painted, atol=1.0), (epoch, k)
            seen[k].add(tuple(target.tolist()))
            whole = L.decode(target, [0, 0, 32, 32])
            beyond += bool((whole[:2] < -0.5).any() or (whole[2:] > 32.5).any())
    assert sum(len(v) > 1 for v in seen.values()) >= 6  # crops and flips change from epoch to epoch
    assert beyond >= 3  # some objects reach out of their crop, and their targets say so


def test_finetune_resumes_an_interrupted_run_exactly(tmp_path):
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    args = dict(S=36, epochs=2, preprocess=IDENTITY, batch_size=4, profile="test", progress=False)
    whole, _ = L.finetune(net, "PCR", "all", samples, runs_root=tmp_path / "a", load_image=loader_of(images), **args)

    calls = []

    def dies_in_epoch_2(sample):  # 8 images an epoch: fail on the 11th
        calls.append(sample)
        if len(calls) > 10:
            raise RuntimeError("interrupted")
        return images[sample.path]

    with pytest.raises(RuntimeError, match="interrupted"):
        L.finetune(net, "PCR", "all", samples, runs_root=tmp_path / "b", load_image=dies_in_epoch_2, **args)
    resumed, result = L.finetune(net, "PCR", "all", samples, runs_root=tmp_path / "b", load_image=loader_of(images),
                                 **args)
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


# -- pixel-blind guesses: the reference rows of Tables 8 and 9 ------------------------------------


def test_guess_box_by_hand():
    # 64x128 at Q=32 -> 32x64 (factor 0.5); the central crop (16,0,48,32) is (32,0,96,64) in the image
    assert L.guess_box((64, 128), "crop", Q=32, crop=32).tolist() == [32, 0, 96, 64]
    assert L.guess_box((64, 128), "image", Q=32, crop=32).tolist() == [0, 0, 128, 64]
    with pytest.raises(ValueError, match="guess"):
        L.guess_box((64, 128), "centre", Q=32, crop=32)


def test_guess_error_equals_a_localiser_that_predicts_the_whole_crop():
    """A second way to the same number: a net whose box is always (0.5, 0.5, 1, 1) under protocol 1."""
    loc = constant_localiser("SCR", [0.5, 0.5, 1, 1])
    rng = np.random.default_rng(0)
    images, samples = {}, []
    for i in range(12):
        h, w = int(rng.integers(32, 70)), int(rng.integers(32, 70))
        images[str(i)] = image(h, w, i)
        side = rng.uniform(0.4, 1.0) * min(h, w)  # around the centre, of varied size
        cx, cy = w / 2 + rng.uniform(-4, 4), h / 2 + rng.uniform(-4, 4)
        samples.append(FakeSample(str(i), 0, [[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]]))
    run = dict(Q=40, load_image=loader_of(images))
    by_net = L.protocol1(loc, samples, preprocess=IDENTITY, progress=False, **run)
    assert L.guess_error(samples, "crop", crop=32, **run) == pytest.approx(by_net)
    assert 0 < by_net < 100  # the case is not trivial


def test_guess_error_with_top5_needs_the_class_too():
    images = {"a": image(32, 32)}
    whole = [[0, 0, 32, 32]]
    samples = [FakeSample("a", 0, whole), FakeSample("a", 6, whole), FakeSample("a", 1, [[0, 0, 8, 8]])]
    post = torch.tensor([[0.9, 0.1, 0, 0, 0, 0, 0], [0.9, 0.1, 0.1, 0.1, 0.1, 0, 0.05],
                         [0, 1.0, 0, 0, 0, 0, 0]])
    run = dict(Q=32, crop=32, load_image=loader_of(images))
    assert L.guess_error(samples, "image", **run) == pytest.approx(100 / 3)  # the small box is missed
    # the second image's class 6 is 6th of 7: missed too
    assert L.guess_error(samples, "image", posteriors=post, **run) == pytest.approx(200 / 3)
    assert L.guess_error(samples, "image", posteriors=post, per_image=True, **run).tolist() == [True, False, False]
