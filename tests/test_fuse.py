"""Fusion against hand-computed cases."""

import pytest
import torch

from vggrepro.fuse import disagreement, fuse, greedy_subset, subset_errors, top_errors


def test_top_errors_by_hand():
    p = torch.tensor([[0.1, 0.7, 0.2, 0, 0, 0], [0.5, 0.1, 0.4, 0, 0, 0], [0.0, 0.05, 0.1, 0.2, 0.3, 0.35]])
    labels = torch.tensor([1, 2, 0])
    # image 0 right at top-1; image 1 second (top-5 right); image 2: class 0 ranks 6th of 6.
    top1, top5 = top_errors(p, labels)
    assert top1 == pytest.approx(100 * 2 / 3)
    assert top5 == pytest.approx(100 * 1 / 3)


def test_fusion_averages_posteriors_and_can_fix_both_nets_mistakes():
    labels = torch.tensor([0, 1])
    a = torch.tensor([[0.45, 0.55], [0.9, 0.1]])  # wrong on image 0 (narrowly), wrong on image 1
    b = torch.tensor([[0.9, 0.1], [0.45, 0.55]])  # right on both
    c = torch.tensor([[0.8, 0.2], [0.0, 1.0]])
    assert torch.allclose(fuse([a, b]), torch.tensor([[0.675, 0.325], [0.675, 0.325]]))
    rows = subset_errors({"a": a, "b": b, "c": c}, labels, [["a"], ["a", "c"]])
    assert [r["top1_err"] for r in rows] == [100.0, 0.0]
    with pytest.raises(ValueError, match="no posteriors for"):
        subset_errors({"a": a}, labels, [["a", "z"]])
    with pytest.raises(ValueError, match="different shapes"):
        fuse([a, torch.zeros(3, 2)])


def test_greedy_subset_stops_when_adding_does_not_help():
    labels = torch.tensor([0, 1, 0])
    good = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])  # 1 error
    helper = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.9, 0.1]])  # 1 error, fixes good's
    bad = torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])  # all wrong
    steps = greedy_subset({"good": good, "helper": helper, "bad": bad}, labels, metric="top1")
    assert steps[0]["models"] == ["good"] and steps[0]["top1_err"] == pytest.approx(100 / 3)
    assert steps[-1]["models"] == ["good", "helper"] and steps[-1]["top1_err"] == 0.0


def test_disagreement_matrix():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    names, m = disagreement({"b": b, "a": a})
    assert names == ["a", "b"]
    assert torch.equal(m, torch.tensor([[0.0, 0.5], [0.5, 0.0]]))
