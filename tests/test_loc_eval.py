"""The two test protocols of Appendix A (vggrepro.localise.protocols, vggrepro.localise.dense) against
hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loc_helpers import (
    IDENTITY,
    LIVELY,
    FakeSample,
    constant_localiser,
    image,
    lively_localiser,
    loader_of,
    one_thread,  # noqa: F401 (one_thread: autouse)
    tiny_classifier,
)

from vggrepro import models
from vggrepro.localise import dense as loc_dense
from vggrepro.localise import protocols as E
from vggrepro.localise.boxes import area, correct, encode
from vggrepro.localise.protocols import Pass, System

# -- protocol 1 ---------------------------------------------------------------------------------


def test_centre_box_geometry_by_hand():
    # image 40x80 (HxW) at Q=32 -> 32x64 (factor 0.8); central crop at x0=16, y0=0.
    # bias (0.5,0.5,0.5,0.5) -> crop box (8,8,24,24) -> rescaled (24,8,40,24) -> image (30,10,50,30)
    loc = constant_localiser("SCR", [0.5, 0.5, 0.5, 0.5])
    box = E.centre_box(loc, image(40, 80), 0, Q=32, preprocess=IDENTITY)
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
    how = Pass(load_image=loader_of(images), batch_size=3, progress=False)
    err = E.protocol1(loc, samples, Q=32, preprocess=IDENTITY, how=how)
    assert err == pytest.approx(50.0)
    right = E.protocol1(loc, samples, Q=32, preprocess=IDENTITY, per_image=True, how=how)
    assert right.tolist() == [True, True, False, False]  # per image, for paired comparisons


def test_protocol1_iou_of_exactly_half_is_wrong():
    loc = constant_localiser("SCR", [0.5, 0.5, 0.5, 0.5])  # (48,16,80,48) on a 64x128 image
    # a ground truth twice as wide that contains the prediction: IoU exactly 1024/2048, not above 0.5
    samples = [FakeSample("0", 0, [[48, 16, 112, 48]])]
    err = E.protocol1(
        loc, samples, Q=32, preprocess=IDENTITY, how=Pass(load_image=loader_of({"0": image(64, 128)}), progress=False)
    )
    assert err == 100.0


def test_protocol1_pcr_reads_the_ground_truth_class():
    # class 0 predicts the left half, class 1 the right half, class 2 the whole crop
    loc = constant_localiser("PCR", [[0.25, 0.5, 0.5, 1], [0.75, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]])
    images = {"a": image(32, 32)}
    left, right = [0, 0, 16, 32], [16, 0, 32, 32]
    samples = [
        FakeSample("a", 0, [left]),
        FakeSample("a", 1, [right]),
        FakeSample("a", 1, [left]),
        FakeSample("a", 2, [[0, 0, 32, 32]]),
    ]
    err = E.protocol1(loc, samples, Q=32, preprocess=IDENTITY, how=Pass(load_image=loader_of(images), progress=False))
    assert err == pytest.approx(25.0)  # only the third (class 1, but the box is on the left) is wrong


# -- protocol 2: dense boxes --------------------------------------------------------------------


def test_dense_windows_geometry():
    w = loc_dense.dense_windows(2, 3, 64)
    assert w.tolist() == [
        [0, 0, 64, 64],
        [32, 0, 96, 64],
        [64, 0, 128, 64],
        [0, 32, 64, 96],
        [32, 32, 96, 96],
        [64, 32, 128, 96],
    ]


def test_dense_boxes_tile_the_image():
    # crop 32: every location's window is its own 32x32 tile; a net predicting (0.5,0.5,1,1)
    # returns exactly the tiles. Image 64x96 at Q=64 (no rescale): 2x3 locations.
    loc = constant_localiser("SCR", [0.5, 0.5, 1, 1], crop=32)
    out = loc_dense.dense_boxes(loc, "SCR", image(64, 96), 64, [0, 2], preprocess=IDENTITY)
    assert set(out) == {0, 2}
    boxes = [b for b, _ in out[0]]
    locations = [where for _, where in out[0]]
    assert locations == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    expected = [[32 * j, 32 * i, 32 * j + 32, 32 * i + 32] for i in range(2) for j in range(3)]
    assert np.allclose(boxes, expected)
    assert sum(area(boxes).tolist()) == 64 * 96  # they tile the image exactly


def test_dense_boxes_overlapping_windows_and_rescale():
    # crop 64 (fc6 is a 2x2 conv): windows of 64 at stride 32. Image 48x72 at Q=96 -> 96x144
    # (factor 2), map (3-2+1) x (4-2+1) = 2x3. The box (0.5,0.5,0.5,0.5) is the window's middle
    # quarter: location (i, j) -> rescaled (32j+16, 32i+16, 32j+48, 32i+48) -> image / 2.
    loc = constant_localiser("PCR", [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 1, 1]], crop=64, classes=2)
    out = loc_dense.dense_boxes(loc, None, image(48, 72), 96, [0], preprocess=IDENTITY, align="top-left")[0]
    expected = [[16 * j + 8, 16 * i + 8, 16 * j + 24, 16 * i + 24] for i in range(2) for j in range(3)]
    assert np.allclose([b for b, _ in out], expected)
    # centred: 144 = 4 x 32 + 16, so the grid moves right by 8 rescaled pixels (4 image pixels);
    # 96 is a multiple of 32, so rows stay
    out = loc_dense.dense_boxes(loc, None, image(48, 72), 96, [0], preprocess=IDENTITY)[0]
    assert np.allclose([b for b, _ in out], [[x0 + 4, y0, x1 + 4, y1] for x0, y0, x1, y1 in expected])


def test_centred_grid_sees_the_middle_of_the_image():
    """On a 32 x 55 image (crop 32) the one dense window is the central crop when centred, and the
    left 32 columns with the plain net's grid."""
    loc = lively_localiser("SCR", seed=1)
    img = image(32, 55, 2)
    centre = E.centre_box(loc, img, 0, Q=32, preprocess=LIVELY)
    centred, _ = loc_dense.dense_box_array(loc, img, [0], Q=32, preprocess=LIVELY)
    assert centred.shape == (1, 1, 4) and np.allclose(centred[0, 0].tolist(), centre.tolist(), atol=1e-4)
    left, _ = loc_dense.dense_box_array(loc, img, [0], Q=32, preprocess=LIVELY, align="top-left")
    assert not np.allclose(left[0, 0].tolist(), centre.tolist(), atol=0.5)  # another window, another box
    whole = constant_localiser("SCR", [0.5, 0.5, 1, 1])  # the box is its window
    assert loc_dense.dense_box_array(whole, img, [0], Q=32, preprocess=IDENTITY)[0].tolist() == [[[11, 0, 43, 32]]]
    assert loc_dense.dense_box_array(whole, img, [0], Q=32, preprocess=IDENTITY, align="top-left")[0].tolist() == [
        [[0, 0, 32, 32]]
    ]
    with pytest.raises(ValueError, match="align"):
        loc_dense.dense_box_array(loc, img, [0], Q=32, preprocess=LIVELY, align="middle")


def test_dense_boxes_match_the_crop_net_at_each_window():
    """On an image the size of the crop, the dense net's single location sees exactly the central
    crop: a net whose boxes depend on the pixels gives the same box both ways, so the fc-to-conv
    reading of fc6/fc7/fc8 and the decoding agree."""
    loc = lively_localiser("SCR", seed=3)
    img = image(32, 32, 5)
    dense = loc_dense.dense_boxes(loc, "SCR", img, 32, [1], preprocess=LIVELY)[1]
    centre = E.centre_box(loc, img, 1, Q=32, preprocess=LIVELY)
    assert len(dense) == 1 and np.allclose(dense[0][0], centre.tolist(), atol=1e-4)
    other = E.centre_box(loc, image(32, 32, 6), 1, Q=32, preprocess=LIVELY)
    assert not np.allclose(other.tolist(), centre.tolist(), atol=0.5)  # the box does depend on the pixels


def test_centre_view_gives_protocol_1_box():
    # the 64x128 image of the protocol 1 tests: the central view at Q=32 is one box, (48,16,80,48),
    # while the dense view has 1x2 locations
    loc = constant_localiser("SCR", [0.5, 0.5, 0.5, 0.5])
    img = image(64, 128)
    boxes, locations = loc_dense.dense_box_array(loc, img, [0], Q=32, preprocess=IDENTITY, centre=True)
    assert boxes.tolist() == [[[48, 16, 80, 48]]] and locations.tolist() == [[0, 0]]
    assert loc_dense.dense_box_array(loc, img, [0], Q=32, preprocess=IDENTITY)[0].tolist() == [
        [[16, 16, 48, 48], [80, 16, 112, 48]]
    ]
    samples = [FakeSample("a", 0, [[48, 16, 80, 48]])]
    run = dict(how=Pass(load_image=loader_of({"a": img}), progress=False))
    post = torch.tensor([[1.0, 0, 0]])
    assert E.protocol2(System([loc], [32], IDENTITY, centre=True), post, samples, **run) == 0.0
    assert E.protocol2(System([loc], [32], IDENTITY), post, samples, **run) == 100.0


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
    err = E.protocol2(
        System([loc], [32], IDENTITY), post, samples, how=Pass(load_image=loader_of(images), progress=False)
    )
    assert err == pytest.approx(200 / 3)


def test_protocol2_pcr_uses_each_class_box():
    # class 1's box is right, class 0's is wrong; both in the top 5
    loc = constant_localiser("PCR", [[0.25, 0.5, 0.5, 1], [0.75, 0.5, 0.5, 1]], classes=2)
    samples = [FakeSample("a", 1, [[16, 0, 32, 32]]), FakeSample("a", 0, [[16, 0, 32, 32]])]
    post = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
    err = E.protocol2(
        System([loc], [32], IDENTITY),
        post,
        samples,
        how=Pass(load_image=loader_of({"a": image(32, 32)}), progress=False),
    )
    assert err == pytest.approx(50.0)


def test_fusion_pools_boxes_before_merging():
    # gt (8,8,24,24). Net A predicts it shifted 6 px left, net B 6 px right: IoU 160/352 each (wrong).
    # A and B overlap with IoU 64/448 (distance 0.857): with threshold 0.9 the pooled pair merges to
    # their average, the ground truth itself.
    a = constant_localiser("SCR", encode([2, 8, 18, 24], [0, 0, 32, 32]).tolist())
    b = constant_localiser("SCR", encode([14, 8, 30, 24], [0, 0, 32, 32]).tolist())
    samples = [FakeSample("a", 0, [[8, 8, 24, 24]])]
    post = torch.tensor([[1.0, 0, 0]])
    run = dict(threshold=0.9, how=Pass(load_image=loader_of({"a": image(32, 32)}), progress=False))
    assert E.protocol2(System([a], [32], IDENTITY), post, samples, **run) == 100.0
    assert E.protocol2(System([b], [32], IDENTITY), post, samples, **run) == 100.0
    assert E.protocol2(System([a, b], [32], IDENTITY), post, samples, **run) == 0.0
    # pooling is also across scales: Q=32 and Q=64 give 1 + 2x2 = 5 boxes per net
    pooled, scores = E.pooled_boxes(System([a, b], [[32, 64], [32]], IDENTITY), image(32, 32), [0])
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
    systems = {
        "a": System([a], [40], LIVELY),
        "a 2 scales": System([a], [36, 40], LIVELY),
        "fusion": System([a, b], [[40], [36, 40]], LIVELY),
        "a centre": System([a], [40], LIVELY, centre=True),
        "a top-left": System([a], [40], LIVELY, align="top-left"),
    }
    run = dict(
        classifier=clf,
        classifier_preprocess=LIVELY,
        threshold=0.7,
        how=Pass(load_image=loader_of(images), progress=False),
    )
    together = E.protocol2_table(systems, post, samples, **run)
    alone = {name: E.protocol2(x, post, samples, **run) for name, x in systems.items()}
    assert together == alone
    assert len(set(together.values())) > 1  # the systems do differ
    each = E.protocol2_table(systems, post, samples, per_image=True, **run)
    assert {name: 100 * (~r).sum().item() / len(samples) for name, r in each.items()} == pytest.approx(together)
    with pytest.raises(TypeError, match="scale"):  # a misspelt field of a system
        System(localisers=[a], scale=[40], preprocess=LIVELY)
    with pytest.raises(ValueError, match="System"):  # the dict of old
        E.protocol2_table({"x": dict(localisers=[a], scales=[40], preprocess=LIVELY)}, post, samples, **run)
    with pytest.raises(ValueError, match="2 localisation nets but 3 lists"):
        System([a, b], [[40], [36], [40]], LIVELY)
    with pytest.raises(ValueError, match="align"):
        System([a], [40], LIVELY, align="middle")


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
    system = System([a, b], [[40], [36, 44]], LIVELY)
    run = dict(classifier=clf, classifier_preprocess=LIVELY, threshold=0.7)
    batched = E.protocol2_table(
        {"x": system},
        post,
        samples,
        per_image=True,
        how=Pass(load_image=loader_of(images), chunk=5, progress=False),
        **run,
    )["x"]
    for n, s in enumerate(samples):
        guesses = E.top5_boxes(system, post[n], images[s.path], **run)
        assert bool(batched[n]) == any(c == s.label and correct(box, s.boxes) for c, box, _ in guesses)
        maps = loc_dense.maps_of(a, [images[s.path]], Q=40, preprocess=LIVELY, centre=False, align="centred")[0][0]
        together = loc_dense.maps_of(
            a, [images[t.path] for t in samples], Q=40, preprocess=LIVELY, centre=False, align="centred"
        )[n][0]
        assert torch.allclose(maps, together, atol=1e-5)
    assert 0 < int(batched.sum()) < len(samples)


def test_location_scores_are_the_classifier_at_each_window():
    # one location (a 32x32 image): the dense posterior equals the classifier's soft-max on the crop
    clf = tiny_classifier(32, 4, seed=2).eval()
    img = image(32, 32, 7)
    dense = loc_dense.location_scores(clf, img, [3, 1], Q=32, preprocess=IDENTITY)
    with torch.no_grad():
        crop = clf(img[None].float()).double().softmax(1)[0]
    assert torch.allclose(dense[:, 0], crop[[3, 1]], atol=1e-5)
    # 64x96 at Q=64: a 2x3 map, row-major
    assert loc_dense.location_scores(clf, image(64, 96), [0], Q=64, preprocess=IDENTITY).shape == (1, 6)


def test_classifier_scores_choose_among_disagreeing_boxes(monkeypatch):
    # a 32x64 image gives 2 locations; the constant net predicts each window's left half, so the
    # two boxes are disjoint: (0,0,16,32) and (32,0,48,32). Ground truth is the second.
    loc = constant_localiser("SCR", [0.25, 0.5, 0.5, 1])
    samples = [FakeSample("a", 0, [[32, 0, 48, 32]])]
    one = System([loc], [32], IDENTITY)
    run = dict(how=Pass(load_image=loader_of({"a": image(32, 64)}), progress=False))
    post = torch.tensor([[1.0, 0, 0]])
    assert E.protocol2(one, post, samples, **run) == 100.0  # a tie: the first (top-left) box wins
    clf = tiny_classifier(32, 3)
    two = lambda maps, classes: torch.tensor([[0.2, 0.7]] * len(classes), dtype=torch.float64)
    monkeypatch.setattr(loc_dense, "scores_of_maps", two)  # the classifier's posteriors at the two locations
    assert E.protocol2(one, post, samples, classifier=clf, **run) == 0.0  # the classifier prefers location 2
    three = lambda maps, classes: torch.ones(len(classes), 3, dtype=torch.float64)
    monkeypatch.setattr(loc_dense, "scores_of_maps", three)
    with pytest.raises(ValueError, match="same crop"):
        E.protocol2(one, post, samples, classifier=clf, **run)


# -- pixel-blind guesses: the reference rows of Tables 8 and 9 ------------------------------------


def test_guess_box_by_hand():
    # 64x128 at Q=32 -> 32x64 (factor 0.5); the central crop (16,0,48,32) is (32,0,96,64) in the image
    assert E.guess_box((64, 128), "crop", Q=32, crop=32).tolist() == [32, 0, 96, 64]
    assert E.guess_box((64, 128), "image", Q=32, crop=32).tolist() == [0, 0, 128, 64]
    with pytest.raises(ValueError, match="guess"):
        E.guess_box((64, 128), "centre", Q=32, crop=32)


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
    by_net = E.protocol1(
        loc, samples, Q=40, preprocess=IDENTITY, how=Pass(load_image=loader_of(images), progress=False)
    )
    assert E.guess_error(samples, "crop", Q=40, crop=32, load_image=loader_of(images)) == pytest.approx(by_net)
    assert 0 < by_net < 100  # the case is not trivial


def test_guess_error_with_top5_needs_the_class_too():
    images = {"a": image(32, 32)}
    whole = [[0, 0, 32, 32]]
    samples = [FakeSample("a", 0, whole), FakeSample("a", 6, whole), FakeSample("a", 1, [[0, 0, 8, 8]])]
    post = torch.tensor([[0.9, 0.1, 0, 0, 0, 0, 0], [0.9, 0.1, 0.1, 0.1, 0.1, 0, 0.05], [0, 1.0, 0, 0, 0, 0, 0]])
    run = dict(Q=32, crop=32, load_image=loader_of(images))
    assert E.guess_error(samples, "image", **run) == pytest.approx(100 / 3)  # the small box is missed
    # the second image's class 6 is 6th of 7: missed too
    assert E.guess_error(samples, "image", posteriors=post, **run) == pytest.approx(200 / 3)
    assert E.guess_error(samples, "image", posteriors=post, per_image=True, **run).tolist() == [True, False, False]
