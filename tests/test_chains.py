"""vggrepro.experiments.chains: a claim's interval from its own chains, checked by hand and by its
coverage of a known effect in simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vggrepro.experiments.chains import MIN_CHAINS, chain_effect, paired_points


def test_a_small_layout_worked_by_hand():
    # chains' means 0.5, 0, 1 (variance 1/4 over 2 dof: chain term 1/12); images' means 2/3, 1/3
    # (variance 1/18); residuals +-1/3, -+1/6, -+1/6 (sum of squares 1/3 over 2 x 1 dof: 1/6), so the
    # image term is (1/18 - 1/6 / 3) / 2 = 0 and the variance 1/12 on 2 dof: t(0.975, 2) = 4.302653
    e = chain_effect([[1, 0], [0, 0], [1, 1]])
    half = 4.302652729749464 * math.sqrt(1 / 12)
    assert e.difference == pytest.approx(0.5)
    assert (e.low, e.high) == pytest.approx((0.5 - half, 0.5 + half))
    assert e.dof == pytest.approx(2.0) and e.chain_sd == pytest.approx(0.5)


def test_paired_points_on_one_chain_worked_by_hand():
    # differences in points 100, 0, 0, -100, 100: mean 20, deviations 80, -20, -20, -120, 80 (sum
    # of squares 28000), sd sqrt(28000 / 4) = 83.666; t(0.975, 4) = 2.776445, so the half-width is
    # 2.776445 * 83.666 / sqrt(5) = 103.89
    a, b = np.array([1, 0, 1, 0, 1]), np.array([0, 0, 1, 1, 0])
    assert paired_points(a, b) == {"effect": 20.0, "half_width": 103.89}


def test_fewer_chains_than_can_be_measured_give_no_interval():
    e = chain_effect(np.ones((MIN_CHAINS - 1, 10)))
    assert not e.decidable and e.low is None and e.difference == 1.0 and e.chains == 2


def test_bad_layouts_are_named():
    with pytest.raises(ValueError, match=r"\(chains, images\)"):
        chain_effect([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        chain_effect([[0.0, np.nan]] * 3)


def simulate(rng, *, chains, images, delta, chain_sd, shared):
    """0/1 errors of two arms on the same images in every chain, as paired differences. Each
    image has a difficulty q drawn for the population (the truth is E[p_a - p_b] = delta exactly);
    each chain shifts each arm's error rate (one shift for both when ``shared``: one net under two
    protocols, where the seed moves both arms alike)."""
    q = rng.uniform(0.2, 0.7, images)
    shift_a = rng.normal(0, chain_sd, chains)
    shift_b = shift_a if shared else rng.normal(0, chain_sd, chains)
    p_a = np.clip(q[None, :] + delta + shift_a[:, None], 0, 1)
    p_b = np.clip(q[None, :] + shift_b[:, None], 0, 1)
    return 100.0 * ((rng.random(p_a.shape) < p_a).astype(float) - (rng.random(p_b.shape) < p_b))


@pytest.mark.parametrize(
    "shared, chain_sd, images",
    [(False, 0.03, 300), (True, 0.03, 300), (False, 0.0, 300), (False, 0.0194, 2400), (True, 0.0194, 2400)],
    ids=["two nets", "one net, two protocols", "no seed spread", "cpu sizes, two nets", "cpu sizes, one net"],
)
def test_the_interval_covers_a_known_effect_95_percent_of_the_time(shared, chain_sd, images):
    """Over 1,000 simulated claims of 6 chains, with chain and image noise of the sizes the book's
    scales show (a seed spread of 3 points on 300 images, as at ci; 1.94 points on the evidence
    scale's 2,400 images), the 95% interval covers the true effect 93-97% of the time."""
    rng = np.random.default_rng(2026)
    delta = 0.05
    hits = [
        (e.low <= 100 * delta <= e.high)
        for e in (
            chain_effect(simulate(rng, chains=6, images=images, delta=delta, chain_sd=chain_sd, shared=shared))
            for _ in range(1000)
        )
    ]
    assert 0.93 <= np.mean(hits) <= 0.97


def test_the_p_value_and_the_plan_follow_the_interval():
    e = chain_effect([[1, 0], [0, 0], [1, 1]])  # the hand case above: se sqrt(1/12) on 2 dof
    assert e.p_value(e.high) == pytest.approx(0.05) and e.p_value(e.low) == pytest.approx(0.05)
    assert e.half_width_at(3) == pytest.approx(e.high - e.difference)
    assert chain_effect(np.ones((2, 10))).p_value() is None
