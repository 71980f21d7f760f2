"""The scripts that take a claim decided against the paper apart: they measure trained nets, and
never train one."""

from __future__ import annotations

import importlib.util

import pytest

from vggrepro.core.runs import REPO
from vggrepro.experiments import ledger


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


centre_crop_mechanism = script("centre_crop_mechanism")
plateau_cuts = script("plateau_cuts")
voc_scales_mechanism = script("voc_scales_mechanism")


def test_the_centre_crop_mechanism_refuses_a_chain_whose_nets_are_not_trained(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    with pytest.raises(SystemExit, match=r"D/256 of chain 99 is not in runs/ci/; run the chain first"):
        centre_crop_mechanism.main(["--profile", "ci", "--chain", "99"])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("checkpoint*"))


def test_the_mechanism_names_the_claim_as_chapter_4_declares_it():
    chapter = (REPO / "book" / "04_single_scale.py").read_text()
    assert f'"{centre_crop_mechanism.CLAIM}"' in chapter


def test_the_voc_scales_mechanism_refuses_a_chain_whose_nets_are_not_trained(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    with pytest.raises(SystemExit, match=r"D/jit of chain 99 is not in runs/ci/; run the chain first"):
        voc_scales_mechanism.main(["--profile", "ci", "--chain", "99"])


def test_the_voc_scales_mechanism_names_the_claim_as_the_ledger_records_it():
    recorded = {row["claim"] for chain in ledger.load("cpu") for row in chain["claims"]["08_generalisation"]}
    assert voc_scales_mechanism.CLAIM in recorded


def test_the_plateau_replay_cuts_where_three_epochs_miss_the_best():
    # errors fall to 50 at epoch 4, then three epochs miss it: patience 2 cuts after epoch 7
    errs = [80, 70, 60, 50, 52, 51, 53, 40]
    points = [(e, err, 0.01 if e < 7 else 0.001) for e, err in enumerate(errs, 1)]
    assert plateau_cuts.first_cut(points, 0.01, patience=2, hold=0) == 7
    assert plateau_cuts.first_cut(points, 0.01, patience=2, hold=7) is None  # a stall in the hold is no plateau
    found = plateau_cuts.net_cuts(points, 0.01, patience=2, hold=0, window=4)
    assert found["first_cut_epoch"] == found["replayed_first_cut"] == 7
    assert (found["best_error_before"], found["error_at_cut"]) == (50, 53)
    # 50, 52, 51, 53 over epochs 4-7: the least-squares slope is 4 / 5 points an epoch
    assert found["trend_last_4_epochs"] == pytest.approx(0.8)
