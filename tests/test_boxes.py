"""Box geometry (vggrepro.localise.boxes) against hand-computed cases and a naive second implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggrepro.localise import boxes as B

# -- IoU ----------------------------------------------------------------------------------------


def test_iou_hand_computed_cases():
    assert B.iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0  # disjoint
    assert B.iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no area
    assert B.iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0  # identical
    assert B.iou([0, 0, 10, 10], [2, 2, 7, 7]) == pytest.approx(25 / 100)  # contained: 25 / 100
    # partial: intersection [5,10]x[5,10] = 25, union 100 + 100 - 25 = 175
    assert B.iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    # partial, unequal: [0,0,4,2] (area 8) and [1,1,5,4] (area 12): inter [1,4]x[1,2] = 3, union 17
    assert B.iou([0, 0, 4, 2], [1, 1, 5, 4]) == pytest.approx(3 / 17)
    assert B.iou([0, 0, 0, 10], [0, 0, 0, 10]) == 0.0  # no area: IoU 0, not NaN


def test_iou_pairwise_matches_single_pairs():
    a = [[0, 0, 10, 10], [5, 5, 15, 15]]
    b = [[0, 0, 10, 10], [2, 2, 7, 7], [20, 20, 30, 30]]
    m = B.iou(a, b)
    assert m.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert float(m[i, j]) == pytest.approx(B.iou(a[i], b[j]))
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
        expected = bool((B.iou(boxes[:1], boxes[1 : 1 + k]) > 0.5).any())
        assert B.correct(boxes[0], boxes[1 : 1 + k]) == expected
        hits += expected
    assert B.correct([0, 0, 10, 10], [[0, 0, 10, 20]]) is False  # IoU exactly 0.5 is not above it
    assert B.correct([0, 0, 10, 10], [[50, 50, 60, 60], [1, 0, 10, 10]]) is True  # any ground-truth box
    assert hits > 5


def test_encode_hand_computed():
    assert B.encode([10, 20, 30, 60], [0, 0, 100, 100]).tolist() == pytest.approx([0.2, 0.4, 0.2, 0.4])
    # window at (32, 64), side 64: centre (48, 80) -> (16/64, 16/64); size 32x16 -> 0.5, 0.25
    assert B.encode([32, 72, 64, 88], [32, 64, 96, 128]).tolist() == pytest.approx([0.25, 0.25, 0.5, 0.25])
    # the whole window is (0.5, 0.5, 1, 1)
    assert B.encode([7, 9, 39, 41], [7, 9, 39, 41]).tolist() == pytest.approx([0.5, 0.5, 1, 1])
    # a non-square window scales x by its width, y by its height
    assert B.encode([0, 0, 50, 50], [0, 0, 100, 200]).tolist() == pytest.approx([0.25, 0.125, 0.5, 0.25])


def test_decode_hand_computed_and_round_trip():
    assert B.decode([0.5, 0.5, 1, 1], [32, 0, 96, 64]).tolist() == pytest.approx([32, 0, 96, 64])
    assert B.decode([0.25, 0.25, 0.5, 0.25], [32, 64, 96, 128]).tolist() == pytest.approx([32, 72, 64, 88])
    rng = np.random.default_rng(0)
    boxes = rng.uniform(-50, 300, (20, 4))
    windows = np.concatenate([rng.uniform(0, 100, (20, 2)), rng.uniform(150, 300, (20, 2))], 1)
    back = B.decode(B.encode(boxes, windows), windows)
    assert torch.allclose(back, torch.as_tensor(boxes), atol=1e-9)


def test_encode_rejects_empty_window():
    with pytest.raises(ValueError, match="no area"):
        B.encode([0, 0, 1, 1], [5, 5, 5, 10])


# -- greedy merging -----------------------------------------------------------------------------


def test_greedy_merge_two_close_one_far():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]  # IoU(a, b) = 81/119
    merged = B.greedy_merge(boxes, threshold=0.5)
    assert np.allclose(merged.boxes, [[0.5, 0.5, 10.5, 10.5], [50, 50, 60, 60]])
    assert merged.counts.tolist() == [2, 1] and merged.scores.tolist() == [2, 1]


def test_greedy_merge_weights_repeated_merges_by_count():
    # three near-identical boxes: the result is their plain mean, not ((a+b)/2 + c)/2
    boxes = [[0, 0, 10, 10], [0, 0, 10, 13], [0, 0, 10, 16]]
    merged = B.greedy_merge(boxes, threshold=0.5)
    assert np.allclose(merged.boxes, [[0, 0, 10, 13]]) and merged.counts.tolist() == [3]


def test_greedy_merge_threshold_boundary():
    # IoU([0,0,3,1], [1,0,4,1]) = 2/4: distance exactly 0.5, merged only under a larger threshold
    boxes = [[0, 0, 3, 1], [1, 0, 4, 1]]
    assert len(B.greedy_merge(boxes, threshold=0.5).boxes) == 2
    assert np.allclose(B.greedy_merge(boxes, threshold=0.5 + 1e-9).boxes, [[0.5, 0, 3.5, 1]])
    assert len(B.greedy_merge(boxes, threshold=0.0).boxes) == 2


def _naive_merge(boxes, scores, threshold):
    """Greedy merging written plainly, as a second implementation: clusters of raw boxes; merge the
    closest pair of clusters (first pair in (i, j) order on ties) while 1 - IoU < threshold."""
    clusters = [[k] for k in range(len(boxes))]
    mean = lambda c: [sum(boxes[k][d] for k in c) / len(c) for d in range(4)]
    while len(clusters) > 1:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                d = 1 - B.iou(mean(clusters[a]), mean(clusters[b]))
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
        merged = B.greedy_merge(boxes, scores, threshold=threshold)
        want_boxes, want_scores, want_counts = _naive_merge(boxes, scores, threshold)
        assert np.allclose(merged.boxes.numpy(), np.reshape(want_boxes, (-1, 4))), trial
        assert merged.scores.tolist() == pytest.approx(want_scores), trial
        assert merged.counts.tolist() == want_counts, trial
        merges += n - len(want_counts)
    assert merges > 20  # the cases do merge


def test_greedy_merge_ranks_by_score():
    boxes = [[0, 0, 10, 10], [50, 50, 60, 60], [51, 51, 61, 61]]
    merged = B.greedy_merge(boxes, scores=[0.9, 0.3, 0.4], threshold=0.5)
    assert merged.scores.tolist() == pytest.approx([0.9, 0.7])
    assert merged.boxes[0].tolist() == [0, 0, 10, 10]
    assert B.greedy_merge([], threshold=0.5).boxes.shape == (0, 4)
