"""A chapter's claims, declared through vggrepro.experiments.chapter_claims: the guards, the paper's
numbers and the rows, against cases written out by hand (the paper's Table 3, errors counted)."""

from __future__ import annotations

import numpy as np
import pytest

from vggrepro.experiments import chapter_claims as CC
from vggrepro.experiments import claims as C


def errors(n_wrong: int, n: int = 500) -> np.ndarray:
    """One seed's 0/1 errors: wrong on the first ``n_wrong`` of ``n`` images."""
    e = np.zeros(n, int)
    e[:n_wrong] = 1
    return e


def test_every_arm_beats_chance_and_a_dense_arm_reaches_its_centre_crop():
    table3 = CC.Chapter("04_single_scale", 90.0, centre_of={"D/256 dense": "D/256 centre"})
    assert table3.guards("D/256 dense", "A/256 centre") == [
        C.Guard("D/256 dense", 90.0, "chance"),
        C.Guard("A/256 centre", 90.0, "chance"),
        C.Guard("D/256 dense", name="the same net's centre crop at the same Q", against="D/256 centre"),
    ]
    # chapter 5: the arms at one and three Q are dense, the multi-crop arms are not
    table5 = CC.Chapter("05_multi_scale", 90.0, centre_of={"D/jit three Q": "D/jit centre"}, where="at one Q")
    assert table5.guards("D/jit multi-crop & dense", "D/jit three Q") == [
        C.Guard("D/jit multi-crop & dense", 90.0, "chance"),
        C.Guard("D/jit three Q", 90.0, "chance"),
        C.Guard("D/jit three Q", name="the same net's centre crop at one Q", against="D/jit centre"),
    ]


def test_baselines_by_design_carry_no_guard():
    p1 = CC.Chapter("07_localisation", 61.5, "the pixel-blind box", unguarded=("P1 pixel-blind (centre)",))
    assert p1.guards("P1 PCR, all", "P1 pixel-blind (centre)") == [C.Guard("P1 PCR, all", 61.5, "the pixel-blind box")]
    assert CC.Chapter("06_fusion", 90.0).guards("7 nets, dense", "D/jit dense") == [
        C.Guard("7 nets, dense", 90.0),
        C.Guard("D/jit dense", 90.0),
    ]


def test_the_papers_numbers_are_its_table_3_rows_of_the_arms_nets():
    # Table 3 of the paper, top-1 val. error: A (S=256) 29.6, D (256) 27.0, E (384) 26.9, E (jittered) 25.5
    table3 = CC.Chapter("04_single_scale", 90.0, paper_table="table3_single_scale")
    assert table3.paper_numbers("D/256 dense", "A/256 centre") == "top-1 27.0 vs 29.6"
    assert table3.paper_numbers("E/jit dense", "E/384 dense") == "top-1 25.5 vs 26.9"
    declared = table3.claim("Jittered S beats fixed S=384 (E)", "E/jit dense", "E/384 dense")
    assert declared.paper == "top-1 25.5 vs 26.9"
    given = table3.claim("5x5 filters", "B/256-scratch centre", "B-5x5/256 centre", "7% higher top-1")
    assert given.paper == "7% higher top-1"
    with pytest.raises(ValueError, match="no paper table"):
        CC.Chapter("06_fusion", 90.0).claim("x", "D/jit dense", "E/jit dense")


def test_a_claim_carries_the_chapters_notebook_prefix_kind_and_margin():
    voc = CC.Chapter("08_generalisation", 80.0, "a chance scorer", unguarded=("pixels",), prefix="VOC-like: ")
    c = voc.claim("five scales are about as good as three", "D", "D, 3 scales", "gain 0.3", kind="equal", margin=2.0)
    assert (c.text, c.a, c.b, c.kind, c.margin, c.paper, c.notebook) == (
        "VOC-like: five scales are about as good as three",
        "D",
        "D, 3 scales",
        "equal",
        2.0,
        "gain 0.3",
        "08_generalisation",
    )
    assert c.guards == [C.Guard("D", 80.0, "a chance scorer"), C.Guard("D, 3 scales", 80.0, "a chance scorer")]
    with pytest.raises(ValueError, match="positive margin"):
        voc.claim("about equal", "D", "E", "x", kind="equal")


def test_decided_rows_follow_the_guards():
    # D wrong on 100 of 500 images (20%), raw pixels on 450 (90%, chance at 10 classes), 3 chains
    arms = {"D": C.Arm("D", [errors(100), errors(95), errors(105)]), "pixels": C.Arm("pixels", [errors(450)] * 3)}
    fair = CC.Chapter("08_generalisation", 90.0, unguarded=("pixels",), prefix="Caltech-like: ")
    row = fair.claim("D beats pixels", "D", "pixels", "not measured").decide(arms)
    assert (row["claim"], row["verdict"], row["effect"], row["chains"]) == (
        "Caltech-like: D beats pixels",
        C.HOLDS,
        -70.0,
        3,
    )
    # held to chance, the pixels (90%) do not beat it: a failed run, whatever the gap
    strict = CC.Chapter("08_generalisation", 90.0)
    row = strict.claim("D beats pixels", "D", "pixels", "not measured").decide(arms)
    assert row["verdict"] == C.UNDECIDED
    assert row["why"].startswith("pixels does not beat chance (90.0%) in chain 0: a failed run")
    # a dense arm at 70% against its centre crop at 40%, in every chain: the protocol fails here
    arms = {
        "D/jit three Q": C.Arm("d", [errors(350), errors(340), errors(360)]),
        "D/jit centre": C.Arm("c", [errors(200), errors(210), errors(190)]),
        "D/jit multi-crop": C.Arm("m", [errors(200), errors(190), errors(210)]),
    }
    table5 = CC.Chapter("05_multi_scale", 90.0, centre_of={"D/jit three Q": "D/jit centre"}, where="at one Q")
    row = table5.claim("crops beat dense", "D/jit multi-crop", "D/jit three Q", "x").decide(arms)
    assert row["verdict"] == C.UNDECIDED
    assert "D/jit three Q is worse than the same net's centre crop at one Q" in row["why"]


def test_an_arms_net_is_its_first_word():
    assert CC.net_of("D/jit three Q") == "D/jit"
    assert CC.net_of("B/256-scratch centre") == "B/256-scratch"
