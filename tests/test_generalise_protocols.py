"""Appendix B's protocols over splits (vggrepro.generalise.protocols), on sets small enough that
every error, recall and mAP is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vggrepro.generalise import features
from vggrepro.generalise import protocols as P

E0, E1 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def test_caltech_errors_and_recall_by_hand(monkeypatch):
    # three classes (E0, E1, E2), four pool images each; splits draw three of each
    E2 = np.array([0.0, 0.0, 1.0])
    pool = np.repeat([0, 1, 2], 4)
    splits = [np.array([0, 1, 2, 4, 5, 6, 8, 9, 10]), np.array([1, 2, 3, 5, 6, 7, 9, 10, 11])]
    # test images: two of class 0, but the second looks like class 1; one of class 1, one of 2
    X = np.stack([E0] * 4 + [E1] * 4 + [E2] * 4 + [E0, E1, E1, E2])
    s = dict(train=[None] * 12, pool=pool, y_test=np.eye(3, dtype=int)[[0, 0, 1, 2]])
    calls = []
    real = P.svm_scores
    monkeypatch.setattr(P, "svm_scores", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    out = P.caltech_protocol({"D": X, "D, stacked": X}, s, splits, seed=7)
    assert calls == [7, 8]  # one SVM per split, seeded seed + i, and the twin is not classified again
    for name in ("D", "D, stacked"):
        np.testing.assert_array_equal(out.errors[name], [[0, 1, 0, 0], [0, 1, 0, 0]])
        # class 0: 1 of 2 right (50%), classes 1 and 2: all right: mean class recall 250 / 3 %
        assert out.recall[name] == pytest.approx([250 / 3] * 2)
        assert len(out.C[name]) == 2 and set(out.C[name]) <= set(features.CS)


def test_voc_map_by_hand():
    # test images: {0} that looks like class 0, {1} like class 1, and {0} that looks like class 1
    # two classes, four pool images each (E0: class 0 alone, E1: class 1); splits of three each
    X = np.stack([E0] * 4 + [E1] * 4 + [E0, E1, E1])
    y_train = np.stack([[1, 0]] * 4 + [[0, 1]] * 4)
    pool = np.repeat([0, 1], 4)
    splits = [np.array([0, 1, 2, 4, 5, 6]), np.array([1, 2, 3, 5, 6, 7])]
    s = dict(train=[None] * 8, pool=pool, y_train=y_train, y_test=np.array([[1, 0], [0, 1], [1, 0]]))
    out = P.voc_protocol({"D": X}, s, splits, seed=0)
    # class 0 ranks image 0 first, then images 1 and 2 tied: precision 1 at recall 1/2, 2/3 at
    # recall 1: AP 5/6. Class 1 ranks images 1 and 2 tied first: precision 1/2 at recall 1: AP 1/2.
    assert out.mAP["D"] == pytest.approx([100 * (5 / 6 + 1 / 2) / 2] * 2)
    assert [scores.shape for scores in out.scores["D"]] == [(3, 2), (3, 2)]


def test_twins_are_classified_once():
    X, Y = np.zeros((2, 3)), np.zeros((2, 3))
    seen = []
    out = P.once_each({"D": X, "D, stacked": X, "E": Y}, lambda x: seen.append(x) or len(seen))
    assert out == {"D": 1, "D, stacked": 1, "E": 2} and len(seen) == 2


def test_descriptors_take_each_nets_scales_on_each_set(monkeypatch):
    seen = []

    def fake(net, preprocess, images, scales):
        seen.append((net, preprocess, len(images), scales))
        return np.full((len(images), len(scales), 1), float(len(seen)))

    monkeypatch.setattr(P, "scale_descriptors", fake)
    nets = {"D": ("net D", "pre D"), "A": ("net A", "pre A")}
    images = {"caltech": [0] * 5, "voc": [0] * 4}
    scales = {
        ("D", "caltech"): [32, 48],
        ("D", "voc"): [32, 40, 48],
        ("A", "caltech"): [32, 48],
        ("A", "voc"): (32, 48),
    }
    out = P.descriptors(nets, images, scales)
    assert seen == [
        ("net D", "pre D", 5, [32, 48]),
        ("net D", "pre D", 4, [32, 40, 48]),
        ("net A", "pre A", 5, [32, 48]),
        ("net A", "pre A", 4, [32, 48]),
    ]
    assert list(out) == list(scales) and out["D", "voc"].shape == (4, 3, 1) and out["A", "voc"][0, 0, 0] == 4.0
