"""The scripts that take a claim decided against the paper apart: they measure trained nets, and
never train one."""

from __future__ import annotations

import importlib.util

import pytest

from vggrepro.core.runs import REPO

spec = importlib.util.spec_from_file_location("centre_crop_mechanism", REPO / "scripts" / "centre_crop_mechanism.py")
centre_crop_mechanism = importlib.util.module_from_spec(spec)
spec.loader.exec_module(centre_crop_mechanism)


def test_the_centre_crop_mechanism_refuses_a_chain_whose_nets_are_not_trained(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    with pytest.raises(SystemExit, match=r"D/256 of chain 99 is not in runs/ci/; run the chain first"):
        centre_crop_mechanism.main(["--profile", "ci", "--chain", "99"])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("checkpoint*"))


def test_the_mechanism_names_the_claim_as_chapter_4_declares_it():
    chapter = (REPO / "book" / "04_single_scale.py").read_text()
    assert f'"{centre_crop_mechanism.CLAIM}"' in chapter
