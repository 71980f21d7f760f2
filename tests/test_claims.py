"""Claims and their verdicts against cases whose answer is known by construction or by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vggrepro.experiments import claims as C


def arm(label, errors):
    return C.Arm(label, np.asarray(errors))


def test_identical_arms_have_a_zero_effect_and_a_zero_width_interval():
    e = np.random.default_rng(0).integers(0, 2, (1, 300))
    eff = C.paired_effect(arm("a", e), arm("b", e))
    assert (eff.difference, eff.low, eff.high) == (0.0, 0.0, 0.0)


def test_pairing_narrows_the_interval_when_both_arms_find_the_same_images_hard():
    # b errs on the same images as a, plus 20 more of 400: unpaired, the two 50% rates would give
    # an interval ~ +/-7 points wide; paired, only the 20 discordant images vary.
    n = 400
    a = np.zeros(n, int)
    a[:200] = 1
    b = a.copy()
    b[200:220] = 1
    eff = C.paired_effect(arm("a", a), arm("b", b), seed_sd=0.0)
    assert eff.difference == pytest.approx(-5.0)
    assert eff.high < 0 and eff.high - eff.low < 5.0
    assert C.verdict("lower", eff) == C.HOLDS


def test_the_bootstrap_interval_matches_the_normal_approximation_for_one_seed():
    rng = np.random.default_rng(1)
    n = 2000
    a, b = (rng.random(n) < 0.3).astype(int), (rng.random(n) < 0.35).astype(int)
    eff = C.paired_effect(arm("a", a), arm("b", b), seed_sd=0.0)
    d = (a - b).astype(float)
    se = 100 * d.std() / math.sqrt(n)
    assert eff.low == pytest.approx(eff.difference - 1.96 * se, abs=0.35)
    assert eff.high == pytest.approx(eff.difference + 1.96 * se, abs=0.35)


def test_seeds_widen_the_interval():
    # Two seeds of b, one at 30% and one at 40% error on the same images: the seed spread must show.
    n = 1000
    a = np.zeros((2, n), int)
    a[:, :350] = 1
    b = np.zeros((2, n), int)
    b[0, :300] = 1
    b[1, :400] = 1
    one_seed = C.paired_effect(arm("a", a[:1]), arm("b", b[:1]))
    two_seeds = C.paired_effect(arm("a", a), arm("b", b))
    assert two_seeds.difference == pytest.approx(0.0)
    assert (two_seeds.high - two_seeds.low) > 2 * (one_seed.high - one_seed.low)


def test_verdicts_by_kind_and_margin():
    eff = lambda lo, hi: C.Effect((lo + hi) / 2, lo, hi, 100, (3, 3))  # noqa: E731
    assert C.verdict("lower", eff(-3, -1)) == C.HOLDS
    assert C.verdict("lower", eff(1, 3)) == C.FAILS
    assert C.verdict("lower", eff(-1, 1)) == C.UNDECIDED
    # "LRN does not help", margin 1 point: an improvement of at most 1 point is allowed.
    assert C.verdict("no-better", eff(-0.5, 2), margin=1) == C.HOLDS
    assert C.verdict("no-better", eff(-3, -1.5), margin=1) == C.FAILS
    assert C.verdict("no-better", eff(-2, 1), margin=1) == C.UNDECIDED  # absence of evidence is not evidence
    # "D and E are about equal", margin 1: the whole interval inside (-1, 1).
    assert C.verdict("equal", eff(-0.5, 0.8), margin=1) == C.HOLDS
    assert C.verdict("equal", eff(1.2, 3), margin=1) == C.FAILS
    assert C.verdict("equal", eff(-0.5, 1.5), margin=1) == C.UNDECIDED
    with pytest.raises(ValueError, match="margin"):
        C.verdict("equal", eff(0, 1))


def test_mcnemar_exact_p_by_hand():
    # 2 discordant pairs against 8: p = 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * 56 / 1024.
    a = np.array([1] * 8 + [0] * 2 + [1] * 5)
    b = np.array([0] * 8 + [1] * 2 + [1] * 5)
    assert C.mcnemar_p(a, b) == pytest.approx(2 * 56 / 1024)
    assert C.mcnemar_p(a, a) == 1.0


def test_a_failed_arm_makes_the_claim_undecided():
    n = 500
    good = np.zeros(n, int)
    good[:100] = 1  # 20% error
    chance = np.zeros(n, int)
    chance[:450] = 1  # 90% error: what 10 classes give by chance
    claim = C.Claim("good beats chance-level net", "good", "bad", guards=[C.Guard("bad", 90.0 - 5)])
    row = claim.decide({"good": arm("good", good), "bad": arm("bad", chance)})
    assert row["verdict"] == C.UNDECIDED and "failed run" in row["why"]
    assert row["effect"] == pytest.approx(-70.0)
    claim.guards = []
    assert claim.decide({"good": arm("good", good), "bad": arm("bad", chance)}, seed_sd=2.0)["verdict"] == C.HOLDS


def test_one_seed_without_a_measured_spread_decides_nothing_and_with_one_widens_the_interval():
    e = np.random.default_rng(3).integers(0, 2, (1, 400))
    same = C.paired_effect(arm("a", e), arm("b", e))
    assert not same.seed_spread and C.verdict("lower", C.Effect(-50, -60, -40, 400, (1, 1), False)) == C.UNDECIDED
    # identical arms, one seed each, a spread of 3 points: +/- 1.96 * sqrt(3^2 + 3^2)
    wide = C.paired_effect(arm("a", e), arm("b", e), seed_sd=3.0)
    assert wide.high == pytest.approx(C.Z95 * math.sqrt(18)) and wide.low == pytest.approx(-wide.high)
    row = C.Claim("x", "a", "b").decide({"a": arm("a", e), "b": arm("b", 1 - e)})
    assert row["verdict"] == C.UNDECIDED and "no measured seed spread" in row["why"]


def test_sample_sd_by_hand():
    assert C.sample_sd([1, 3]) == pytest.approx(math.sqrt(2))
    assert C.sample_sd([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(math.sqrt(32 / 7))


def test_bad_declarations_and_measurements_are_refused():
    with pytest.raises(ValueError, match="needs a positive margin"):
        C.Claim("D and E about equal", "D", "E", kind="equal")
    with pytest.raises(ValueError, match="unknown kind"):
        C.Claim("x", "a", "b", kind="better")
    with pytest.raises(ValueError, match="same images"):
        C.paired_effect(arm("a", np.zeros(10, int)), arm("b", np.zeros(11, int)))
    with pytest.raises(ValueError, match="0 or 1"):
        arm("a", np.full(5, 2))
    with pytest.raises(ValueError, match="no measurements for arm"):
        C.Claim("x", "a", "b").decide({"a": arm("a", np.zeros(5, int))})


def test_errors_from_scores_refuse_nan_and_rank_ties_stably():
    scores = np.array([[0.1, 0.9, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    labels = np.array([1, 1, 0])
    assert C.errors_from_scores(scores, labels).tolist() == [0, 1, 1]
    assert C.errors_from_scores(scores, labels, k=2).tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="NaN"):
        C.errors_from_scores(np.full((2, 3), np.nan), np.array([0, 1]))


def test_the_interval_is_the_same_bits_every_time():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 2, (3, 500)), rng.integers(0, 2, (2, 500))
    assert C.paired_effect(arm("a", a), arm("b", b)) == C.paired_effect(arm("a", a), arm("b", b))


def test_a_protocol_worse_than_its_reference_makes_the_claim_undecided():
    n = 500
    dense, crops = np.zeros(n, int), np.zeros(n, int)
    dense[:350] = 1  # 70% error: far worse than the centre crop of the same net (40%)
    crops[:200] = 1
    reach = C.reaches_centre_crop("dense", 40.0)  # the guard chapters 04 and 05 put on a dense arm
    assert (reach.must, reach.name) == ("reach", "the same net's centre crop at the same Q")
    claim = C.Claim("multi-crop beats dense", "crops", "dense", guards=[reach])
    row = claim.decide({"crops": arm("crops", crops), "dense": arm("dense", dense)}, seed_sd=2.0)
    assert row["verdict"] == C.UNDECIDED and "protocol fails at this scale" in row["why"]
    assert "the same net's centre crop at the same Q" in row["why"]
    ok = C.Guard("dense", 69.0, "the centre crop", must="reach")  # within its interval: passes
    claim.guards = [ok]
    assert claim.decide({"crops": arm("crops", crops), "dense": arm("dense", dense)}, seed_sd=2.0)["verdict"] == C.HOLDS
    with pytest.raises(ValueError, match="must="):
        C.Guard("dense", 40.0, must="exceed")
