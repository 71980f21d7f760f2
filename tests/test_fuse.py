"""Fusion against hand-computed cases, and fusing saved evaluations (``vggrepro fuse``)."""

import json

import pytest
import torch

from vggrepro.cli import main as cli
from vggrepro.core import metrics
from vggrepro.evaluate.fuse import disagreement, fuse, fuse_saved, greedy_subset, subset_errors
from vggrepro.train import checkpoints


def test_top_errors_by_hand():
    p = torch.tensor([[0.1, 0.7, 0.2, 0, 0, 0], [0.5, 0.1, 0.4, 0, 0, 0], [0.0, 0.05, 0.1, 0.2, 0.3, 0.35]])
    labels = torch.tensor([1, 2, 0])
    # image 0 right at top-1; image 1 second (top-5 right); image 2: class 0 ranks 6th of 6.
    errors = metrics.top_errors(p, labels)
    assert errors["top1_err"] == pytest.approx(100 * 2 / 3)
    assert errors["top5_err"] == pytest.approx(100 * 1 / 3)


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
    steps = greedy_subset({"good": good, "helper": helper, "bad": bad}, labels, metric="top1_err")
    assert steps[0]["models"] == ["good"] and steps[0]["top1_err"] == pytest.approx(100 / 3)
    assert steps[-1]["models"] == ["good", "helper"] and steps[-1]["top1_err"] == 0.0


def test_disagreement_matrix():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    names, m = disagreement({"b": b, "a": a})
    assert names == ["a", "b"]
    assert torch.equal(m, torch.tensor([[0.0, 0.5], [0.5, 0.0]]))


def saved_evaluation(folder, dense, multicrop, labels, indices=None):
    """What ``vggrepro evaluate --protocol both --out folder`` leaves: posteriors.pt with the parts."""
    both = (dense + multicrop) / 2
    folder.mkdir(parents=True)
    checkpoints.save(
        dict(
            posteriors=both,
            labels=labels,
            indices=torch.arange(len(labels)) if indices is None else indices,
            parts=dict(dense=dense, multicrop=multicrop),
            meta=dict(protocol="both"),
        ),
        folder / "posteriors.pt",
    )
    return folder


def test_fuse_saved_and_the_fuse_command(tmp_path, capsys):
    labels = torch.tensor([0, 1, 1, 0])
    d = torch.tensor([[0.4, 0.6], [0.2, 0.8], [0.7, 0.3], [0.9, 0.1]])  # wrong on images 0 and 2
    e = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.1, 0.9], [0.8, 0.2]])  # wrong on image 1
    a = saved_evaluation(tmp_path / "D", d, d, labels)
    b = saved_evaluation(tmp_path / "E", e, torch.tensor([[0.0, 1.0]] * 4), labels)
    assert fuse_saved([a, b], "dense") == metrics.top_errors(fuse([d, e]), labels) == dict(top1_err=0.0, top5_err=0.0)
    assert fuse_saved([a / "posteriors.pt"], "dense")["top1_err"] == 50.0  # a folder or its file
    assert fuse_saved([a, b], "multicrop") == metrics.top_errors(fuse([d, torch.tensor([[0.0, 1.0]] * 4)]), labels)
    assert cli.main(["fuse", str(a), str(b), "--protocol", "dense", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fused"] == dict(top1_err=0.0, top5_err=0.0) and out["nets"][str(a)]["top1_err"] == 50.0
    assert cli.main(["fuse", str(a), str(b), "--protocol", "dense"]) == 0
    assert "fused (2 nets): top-1 0.0%, top-5 0.0% (dense)" in capsys.readouterr().out
    # evaluations of other images are refused, by name
    c = saved_evaluation(tmp_path / "other", d, d, labels, indices=torch.tensor([0, 1, 2, 5]))
    with pytest.raises(ValueError, match="saw different images"):
        fuse_saved([a, c])
    assert cli.main(["fuse", str(a), str(tmp_path / "missing")]) == 2
    assert "no posteriors at" in capsys.readouterr().err
