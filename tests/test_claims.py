"""Claims and their verdicts against cases whose answer is known by construction or by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from vggrepro.experiments import claims as C
from vggrepro.experiments.chains import ChainEffect, chain_effect, holm


def arm(label, errors, chains=()):
    return C.Arm(label, np.asarray(errors), chains)


def shifted(n, wrong, chains):
    """(chains, n) errors: chain k wrong on its first wrong[k] images."""
    e = np.zeros((len(chains), n), int)
    for k, w in enumerate(wrong):
        e[k, :w] = 1
    return e


def effect(low, high, chains=3):
    """An effect whose t interval on 2 dof is exactly [low, high]."""
    se = (high - low) / 2 / stats.t.ppf(0.975, 2)
    return ChainEffect((low + high) / 2, low, high, chains, 100, se * math.sqrt(chains), 0.0, 2.0)


def test_identical_arms_have_a_zero_effect_and_a_zero_width_interval():
    e = np.random.default_rng(0).integers(0, 2, (3, 300))
    row = C.Claim("x", "a", "b").decide({"a": arm("a", e), "b": arm("b", e)})
    assert (row["effect"], row["low"], row["high"], row["chains"]) == (0.0, 0.0, 0.0, 3)


def test_verdicts_by_kind_and_margin():
    assert C.verdict("lower", effect(-3, -1)) == C.HOLDS
    assert C.verdict("lower", effect(1, 3)) == C.FAILS
    assert C.verdict("lower", effect(-1, 1)) == C.UNDECIDED
    # "LRN does not help", margin 1 point: an improvement of at most 1 point is allowed.
    assert C.verdict("no-better", effect(-0.5, 2), margin=1) == C.HOLDS
    assert C.verdict("no-better", effect(-3, -1.5), margin=1) == C.FAILS
    assert C.verdict("no-better", effect(-2, 1), margin=1) == C.UNDECIDED  # absence of evidence is not evidence
    # "D and E are about equal", margin 1: the whole interval inside (-1, 1).
    assert C.verdict("equal", effect(-0.5, 0.8), margin=1) == C.HOLDS
    assert C.verdict("equal", effect(1.2, 3), margin=1) == C.FAILS
    assert C.verdict("equal", effect(-0.5, 1.5), margin=1) == C.UNDECIDED
    with pytest.raises(ValueError, match="margin"):
        C.verdict("equal", effect(0, 1))


def test_the_p_value_agrees_with_the_interval_at_its_ends():
    # an interval whose upper end sits exactly at 0 has p = 0.05 against 0
    e = effect(-4.0, 0.0)
    assert e.p_value(0.0) == pytest.approx(0.05)
    # the equal claim's p is the larger of the two one-sided tests at the margins
    inside = effect(-0.5, 0.8)
    _, p = C.decision("equal", inside, 1.0)
    assert p == pytest.approx(max(inside.p_value(-1.0), inside.p_value(1.0))) and p < C.ALPHA


def test_fewer_than_three_chains_decide_nothing_and_say_so():
    e = np.zeros((2, 400), int)
    wrong = e.copy()
    wrong[:, :300] = 1  # a 75-point gap, in both chains
    row = C.Claim("x", "a", "b").decide({"a": arm("a", e), "b": arm("b", wrong)})
    assert row["verdict"] == C.UNDECIDED and row["p"] is None and row["low"] is None
    assert row["chains"] == 2 and "at least 3" in row["why"] and row["reason"] == "2 chains"
    assert "no interval: 2 chains" in row["ours"]


def test_arms_are_paired_by_chain_and_only_shared_chains_count():
    # a: 20% error in chains 0-2; b: 30, 40, 50 in chains 1, 2, 3 (its chain 3 has no partner)
    a = arm("a", shifted(100, [20, 20, 20], [0, 1, 2]), (0, 1, 2))
    b = arm("b", shifted(100, [30, 40, 50], [1, 2, 3]), (1, 2, 3))
    assert C.shared_chains(a, b) == (1, 2)
    assert C.paired(a, b).mean() == pytest.approx(-15.0)  # (-10 - 20) / 2 over chains 1 and 2
    with pytest.raises(ValueError, match="share no chain"):
        C.paired(a.of([0]), b.of([3]))


def test_a_seed_that_moves_both_arms_alike_cancels_in_a_one_net_claim():
    # one net under two protocols: chain k's level moves both arms by the same 10k points, the
    # protocols' gap stays 5 points on the same images, so the chain term is zero
    rng = np.random.default_rng(4)
    base = rng.permutation(600) / 600  # each image's difficulty, evenly spread
    rows_a, rows_b = [], []
    for k in range(4):
        level = 0.2 + 0.1 * k
        rows_a.append((base < level).astype(int))
        rows_b.append((base < level + 0.05).astype(int))
    row = C.Claim("x", "a", "b").decide({"a": arm("a", rows_a), "b": arm("b", rows_b)})
    assert row["effect"] == pytest.approx(-5.0) and row["chain_sd"] == 0.0
    assert row["verdict"] == C.HOLDS


def test_a_failed_arm_makes_the_claim_undecided():
    n = 500
    good = shifted(n, [100, 110, 90], range(3))  # about 20% error
    chance = shifted(n, [450, 450, 450], range(3))  # 90% error: what 10 classes give by chance
    claim = C.Claim("good beats chance-level net", "good", "bad", guards=[C.Guard("bad", 90.0 - 5)])
    row = claim.decide({"good": arm("good", good), "bad": arm("bad", chance)})
    assert row["verdict"] == C.UNDECIDED and "failed run" in row["why"] and row["reason"] == "failed run"
    assert row["effect"] == pytest.approx(-70.0)
    claim.guards = []
    assert claim.decide({"good": arm("good", good), "bad": arm("bad", chance)})["verdict"] == C.HOLDS


def test_a_dense_arm_worse_than_its_centre_crop_on_the_same_chains_stops_the_claim():
    n = 500
    dense = shifted(n, [350, 340, 360], range(3))  # about 70% error
    centre = shifted(n, [200, 210, 190], range(3))  # about 40%
    crops = shifted(n, [100, 100, 100], range(3))
    arms = {"dense": arm("dense", dense), "centre": arm("centre", centre), "crops": arm("crops", crops)}
    reach = C.reaches_centre_crop("dense", "centre")
    claim = C.Claim("multi-crop beats dense", "crops", "dense", guards=[reach])
    row = claim.decide(arms)
    assert row["verdict"] == C.UNDECIDED and "protocol fails at this scale" in row["why"]
    assert row["reason"] == "dense worse than centre crop"
    arms["centre"] = arm("centre", dense)  # dense as good as its centre crop: the guard passes
    assert claim.decide(arms)["verdict"] == C.HOLDS
    with pytest.raises(ValueError, match="one of them"):
        C.Guard("dense", 40.0, against="centre")


def test_a_margin_the_images_alone_cannot_meet_is_not_testable():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 2, (3, 200)), rng.integers(0, 2, (3, 200))
    row = C.Claim("about equal", "a", "b", kind="equal", margin=1.0).decide({"a": arm("a", a), "b": arm("b", b)})
    assert row["verdict"] == C.UNDECIDED and row["reason"] == "margin not testable"
    assert "not testable at this scale: the images alone leave" in row["why"]


def test_chains_needed_for_a_margin_follows_the_variance_components():
    # chain sd 4 points, image se 0.2: a half-width under 2 points needs about (t * 4 / 2)^2 chains
    e = ChainEffect(0.0, -5.0, 5.0, 3, 10_000, 4.0, 0.2, 2.0)
    k = e.chains_needed(2.0)
    assert e.half_width_at(k) < 2.0 <= e.half_width_at(k - 1)
    assert 17 <= k <= 20
    assert ChainEffect(0.0, -5.0, 5.0, 3, 100, 4.0, 2.0, 2.0).chains_needed(2.0) is None  # images: +/-3.9


def test_a_sanity_check_is_decided_on_these_nets_images():
    good = shifted(400, [80], [0])
    blind = shifted(400, [300], [0])
    claim = C.Claim("the nets learn", "good", "blind", role="sanity")
    row = claim.decide({"good": arm("good", good), "blind": arm("blind", blind)})
    assert row["verdict"] == C.HOLDS and row["role"] == "sanity" and row["chains"] == 1
    with pytest.raises(ValueError, match="role"):
        C.Claim("x", "a", "b", role="aside")


def test_holm_by_hand():
    # p = 0.01, 0.04, 0.03 (m = 3): sorted 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def test_bad_declarations_and_measurements_are_refused():
    with pytest.raises(ValueError, match="needs a positive margin"):
        C.Claim("D and E about equal", "D", "E", kind="equal")
    with pytest.raises(ValueError, match="unknown kind"):
        C.Claim("x", "a", "b", kind="better")
    with pytest.raises(ValueError, match="same images"):
        C.paired(arm("a", np.zeros(10, int)), arm("b", np.zeros(11, int)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        arm("a", np.full(5, 2))
    with pytest.raises(ValueError, match="chains"):
        arm("a", np.zeros((2, 5), int), (0,))
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
    x = 100.0 * (rng.integers(0, 2, (4, 500)) - rng.integers(0, 2, (4, 500)))
    assert chain_effect(x) == chain_effect(x)


def test_a_negative_effect_always_goes_the_papers_way():
    """A "no better" claim is kept as the "no worse" claim with its arms swapped: 2.1 (Glorot's D
    no worse than the D started from A), declared as the paper's remark words it, reads negative
    where Glorot's D is the better one."""
    rng = np.random.default_rng(0)
    good, bad = (C.Arm(n, (rng.random((3, 400)) < p).astype(float)) for n, p in (("good", 0.2), ("bad", 0.5)))
    arms = {"pretrained": bad, "glorot": good}
    claim = C.Claim("Glorot's D is no worse than the pretrained D", "pretrained", "glorot", "no-better", margin=1)
    assert (claim.a, claim.b, claim.kind) == ("glorot", "pretrained", "no-worse")
    row = claim.decide(arms)
    assert row["effect"] < 0 and row["verdict"] == C.HOLDS
    assert C.paper_way(row) == "< +1" and C.effect_of(row) == "err(glorot) - err(pretrained)"
    # the other way round: the pretrained net far better, a positive effect, does not hold
    worse = C.Claim("x", "pretrained", "glorot", "no-better", margin=1).decide({"pretrained": good, "glorot": bad})
    assert worse["effect"] > 0 and worse["verdict"] == C.FAILS
    # "lower" claims: negative is the paper's way; "equal": within the margin
    lower = C.Claim("good beats bad", "good", "bad").decide({"good": good, "bad": bad})
    assert lower["effect"] < 0 and lower["verdict"] == C.HOLDS and C.paper_way(lower) == "< 0"
    assert C.paper_way(dict(kind="equal", margin=2.0)) == "within +/-2"


def test_no_worse_decisions():
    assert C.verdict("no-worse", effect(-2, 0.5), margin=1) == C.HOLDS
    assert C.verdict("no-worse", effect(1.5, 3), margin=1) == C.FAILS
    assert C.verdict("no-worse", effect(-1, 2), margin=1) == C.UNDECIDED


def test_the_chapters_table_is_numbered_as_the_results_page_numbers_it():
    rows = [
        C.design_fact("weights", "138 M", "138.4 M", True),
        C.design_fact("fc layers", "most", "90%", True),
    ]
    t = C.table(rows, "04_single_scale")
    assert list(t.index) == ["4.1", "4.2"]
    assert list(t.columns) == ["claim", "paper", "this run", "paper's way", "chains", "verdict", "why"]
    with pytest.raises(ValueError, match="names no notebook"):
        C.table(rows)
