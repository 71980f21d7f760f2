"""A claim's effect over chains: the unit of replication is a chain, not a seed spread borrowed.

A *chain* is every net of the grid trained from one seed k (its init, batch order and
augmentation draws), on the same data and evaluated on the same N validation images. A claim
compares two arms, a and b, on those images within each chain: ``x[k, i]`` is arm a's loss on
image i in chain k minus arm b's (for top-1 error, a 0/1 difference in points times 100).

The estimand is the difference a reader cares about: the mean over the population of images and
over the population of training seeds. Read ``x`` as a two-way layout,

    x[k, i] = delta + c[k] + u[i] + e[k, i],

with a chain term c (what one seed's nets do differently: for a comparison within one net under
two protocols it holds only how the seed changes the protocols' gap, never the net's error level),
an image term u (which images happen to be in the validation set) and their interaction e. The
effect is the grand mean; its variance is

    var = s_chain^2 / K + (s_image^2 - s_e^2 / K) / N,

where ``s_chain^2`` is the variance over chains of the chain means (it holds c and e/N),
``s_image^2`` that over images of the image means (u and e/K) and ``s_e^2`` the residual of the
two-way fit; the subtraction takes the interaction out of the image term once, since the chain
term holds it already. The interval is a t interval whose degrees of freedom come from the two
terms (Welch-Satterthwaite): about K - 1 when the seeds dominate, about N - 1 when the images do.
We chose this over a two-level bootstrap because with the 3-6 chains a CPU can afford, resampling
chains gives intervals too short (a bootstrap of 3 values knows only 10 distinct means), while the
t quantile pays for the few degrees of freedom honestly.

Nothing is borrowed from other nets: with fewer than :data:`MIN_CHAINS` chains there is no chain
term to measure, and :func:`chain_effect` says so instead of an interval (its image term is still
measured, for planning: :meth:`ChainEffect.chains_needed`). A loss that is not a mean over images
(100 - mAP) gets the same layout from :func:`metric_effect`, its image term from a paired bootstrap.

``tests/test_chains.py`` simulates arms with a known effect and checks that the 95% interval
covers it 93-97% of the time, for two-net and one-net claims; ``scripts/coverage.py`` records the
coverage beside that of the method it replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
#: the fewest chains whose spread can be measured at all (two give one degree of freedom)
MIN_CHAINS = 3
#: the most chains a plan is allowed to ask for before it says "no number of chains"
MOST_CHAINS = 1000


@dataclass(frozen=True)
class ChainEffect:
    """Arm a's loss minus arm b's, in the loss's units, with its interval over chains and images,
    and the two variance components it was built from (for planning how many chains a claim needs)."""

    difference: float
    low: float | None  # None: fewer than MIN_CHAINS chains, no interval
    high: float | None
    chains: int
    images: int
    chain_sd: float | None  # the spread of the chains' paired differences (the measured seed term)
    image_se: float  # the standard error the images alone give the mean (the image term's root)
    dof: float | None

    @property
    def decidable(self) -> bool:
        return self.low is not None

    @property
    def se(self) -> float | None:
        """The standard error of the difference (None: no interval); the images' alone where the
        chains are held fixed (:func:`images_only`)."""
        if not self.decidable:
            return None
        chain_term = 0.0 if self.chain_sd is None else self.chain_sd**2 / self.chains
        return math.sqrt(chain_term + self.image_se**2)

    def __str__(self) -> str:
        if not self.decidable:
            return f"{self.difference:+.1f} [no interval: {self.chains} chain{'s' * (self.chains != 1)}]"
        return f"{self.difference:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"

    def p_value(self, boundary: float = 0.0) -> float | None:
        """The two-sided p-value of "the true difference is ``boundary``" (None: no interval)."""
        if not self.decidable:
            return None
        if self.se == 0.0:
            return 1.0 if self.difference == boundary else 0.0
        return float(2 * stats.t.sf(abs(self.difference - boundary) / self.se, self.dof))

    def half_width_at(self, chains: int, level: float = LEVEL) -> float | None:
        """The interval's expected half-width with ``chains`` chains of these variance components
        (None: the chain term is not measured)."""
        if self.chain_sd is None:
            return None
        return _half_width(self.chain_sd**2 / chains, self.image_se**2, chains, self.images, level)

    @property
    def image_half_width(self) -> float:
        """The half-width the images alone leave, with any number of chains (normal quantile)."""
        return float(stats.norm.ppf(0.5 + LEVEL / 2)) * self.image_se

    def chains_needed(self, half_width: float) -> int | None:
        """The fewest chains (at least :data:`MIN_CHAINS`) whose expected half-width is below
        ``half_width``; None where the images alone leave more (no number of chains will do), or
        where the chain term is not measured yet."""
        if self.image_half_width >= half_width or self.chain_sd is None:
            return None
        for k in range(MIN_CHAINS, MOST_CHAINS + 1):
            if self.half_width_at(k) < half_width:
                return k
        return None


def _half_width(chain_term: float, image_term: float, k: int, n: int, level: float) -> float:
    var = chain_term + image_term
    if var == 0.0:
        return 0.0
    dof = var**2 / (chain_term**2 / (k - 1) + image_term**2 / (n - 1))
    return float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(var)


def _combine(mean: float, chain_means: np.ndarray, image_term: float, n: int, level: float) -> ChainEffect:
    """The effect from its chains' means and its image term (the variance the images give the mean)."""
    k = len(chain_means)
    image_se = math.sqrt(max(image_term, 0.0))
    if k < MIN_CHAINS:
        return ChainEffect(mean, None, None, k, n, None, image_se, None)
    chain_sd = float(np.std(chain_means, ddof=1))
    chain_term, image_term = chain_sd**2 / k, image_se**2
    var = chain_term + image_term
    if var == 0.0:  # every chain and image agree: nothing varies, the difference is exact
        return ChainEffect(mean, mean, mean, k, n, 0.0, 0.0, float(k - 1))
    dof = var**2 / (chain_term**2 / (k - 1) + image_term**2 / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(var)
    return ChainEffect(mean, mean - half, mean + half, k, n, chain_sd, image_se, dof)


def chain_effect(x, level: float = LEVEL) -> ChainEffect:
    """The effect and interval of a claim from its paired differences ``x`` (chains,
    images): row k is chain k's arm a minus arm b, image by image, on the same images
    in every chain."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        want = "give (chains, images) with at least 2 images"
        raise ValueError(f"paired differences of shape {x.shape}: {want}")
    if not np.isfinite(x).all():
        raise ValueError("paired differences hold NaN or inf: an image was not scored")
    k, n = x.shape
    mean = float(x.mean())
    chain_means, image_means = x.mean(axis=1), x.mean(axis=0)
    s_e2 = 0.0
    if k >= 2:  # the interaction, measured; with one chain it stays in the image term
        residual = x - chain_means[:, None] - image_means[None, :] + mean
        s_e2 = float((residual**2).sum()) / ((k - 1) * (n - 1))
    image_term = max(float(image_means.var(ddof=1)) - s_e2 / k, 0.0) / n
    return _combine(mean, chain_means, image_term, n, level)


def images_only(x, level: float = LEVEL) -> ChainEffect:
    """The effect of ``x`` (chains, images) with an interval over the images alone, the chains held
    fixed: for a question about these very nets (did they learn? does this protocol work for them?),
    never for a claim about a net trained again."""
    x = np.asarray(x, dtype=np.float64)
    row = x.mean(axis=0)
    n = row.size
    se = float(row.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    mean = float(row.mean())
    return ChainEffect(mean, mean - half, mean + half, x.shape[0], n, None, se, float(n - 1))


def paired_points(a, b) -> dict:
    """Mean of ``a - b`` in points over one chain's paired 0/1 errors, with the 95% half-width of
    :func:`images_only` (these very nets), rounded for a record: the mechanism scripts' unit."""
    effect = images_only(100.0 * (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))[None, :])
    return {"effect": round(effect.difference, 2), "half_width": round(effect.high - effect.difference, 2)}


def metric_effect(
    metric_fn,
    a_runs,
    b_runs,
    labels,
    *,
    fixed: bool = False,
    resamples: int = 2000,
) -> ChainEffect:
    """:func:`chain_effect` for a loss that is not a mean over images, e.g. 100 - mAP.

    ``a_runs`` and ``b_runs`` hold one score array per chain, in the same chain order.
    ``metric_fn(scores, labels, counts)`` returns one loss per row of ``counts``, an
    (R, images) array of how many times each image is drawn (ones: the whole set).
    The chain term is the spread of the chains' differences on the whole set; the image
    term the variance of the chain-averaged difference over a paired bootstrap of the
    images (the same draws for both arms and every chain), which keeps the interaction
    in both terms: a little wide, never short. ``fixed``: the chains held fixed, an
    interval over the images alone (as :func:`images_only`).
    """
    pairs = list(zip(a_runs, b_runs)) if isinstance(a_runs, (list, tuple)) else []
    if not (pairs and isinstance(b_runs, (list, tuple))):
        raise ValueError("a_runs and b_runs must be lists of scores, one per chain")
    if len(a_runs) != len(b_runs):
        k = f"{len(a_runs)} and {len(b_runs)} chains"
        raise ValueError(f"the arms hold {k}: pair them chain by chain")
    n = len(labels)  # the metric refuses scores of other images
    rng = np.random.Generator(np.random.PCG64(0))  # the same draws for every claim
    draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)]
    counts, ones = np.stack(draws), np.ones((1, n), np.int64)

    def gap(a, b, weights):  # arm a's loss minus arm b's, per row of weights
        return metric_fn(a, labels, weights) - metric_fn(b, labels, weights)

    whole = np.array([float(gap(a, b, ones)[0]) for a, b in pairs])
    drawn = np.mean([gap(a, b, counts) for a, b in pairs], axis=0)
    if not np.isfinite(drawn).all():
        why = "e.g. no positive image: too few images"
        raise ValueError(f"the metric is undefined on some bootstrap draws ({why})")
    mean, image_var = float(whole.mean()), float(np.var(drawn, ddof=1))
    if not fixed:
        return _combine(mean, whole, image_var, n, LEVEL)
    se = math.sqrt(image_var)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * se
    return ChainEffect(mean, mean - half, mean + half, len(whole), n, None, se, n - 1.0)


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: a claim is decided at 5% over the
    whole family when its adjusted p-value is below 0.05. Holm over Bonferroni: as safe, for any
    dependence between the claims (several share an arm), and never less powerful."""
    p = [float(v) for v in p_values]
    m, adjusted, running = len(p), [0.0] * len(p), 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted
