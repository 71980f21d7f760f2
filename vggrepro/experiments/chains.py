"""A claim's effect over chains: the unit of replication is a chain, not a seed spread borrowed.

A *chain* is every net of the grid trained from one seed k (its init, batch order and
augmentation draws), on the same data and evaluated on the same N validation images. A claim
compares two arms, a and b, on those images within each chain: ``x[k, i]`` is arm a's loss on
image i in chain k minus arm b's (for top-1 error, a 0/1 difference in points times 100).

The estimand is the difference a reader cares about: the mean over the population of images and
over the population of training seeds. Read ``x`` as a two-way layout,

    x[k, i] = delta + c[k] + u[i] + e[k, i],

with a chain term c (what one seed's nets do differently: zero for a comparison within one net
under two protocols, only where the seeds' nets differ), an image term u (which images happen to
be in the validation set) and their interaction e. The effect is the grand mean; its variance is

    var = s_chain^2 / K + (s_image^2 - s_e^2 / K) / N,

where ``s_chain^2`` is the variance over chains of the chain means (it holds c and e/N),
``s_image^2`` that over images of the image means (u and e/K) and ``s_e^2`` the residual of the
two-way fit; the subtraction takes the interaction out of the image term once, since the chain
term holds it already. The interval is a t interval whose degrees of freedom come from the two
terms (Welch-Satterthwaite): about K - 1 when the seeds dominate, about N - 1 when the images do.
Nothing is borrowed from other nets: with fewer than :data:`MIN_CHAINS` chains there is no chain
term to measure, and :func:`chain_effect` says so instead of an interval.

``tests/test_chains.py`` simulates arms with a known effect and checks that the 95% interval
covers it 93-97% of the time, for two-net and one-net claims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
#: the fewest chains whose spread can be measured at all (two give one degree of freedom)
MIN_CHAINS = 3


@dataclass(frozen=True)
class ChainEffect:
    """Arm a's loss minus arm b's, in the loss's units, with its interval over chains and images."""

    difference: float
    low: float | None  # None: fewer than MIN_CHAINS chains, no interval
    high: float | None
    chains: int
    images: int
    chain_sd: float | None  # the spread of the chains' paired differences (the measured seed term)
    dof: float | None

    @property
    def decidable(self) -> bool:
        return self.low is not None


def chain_effect(x, level: float = LEVEL) -> ChainEffect:
    """The effect and interval of a claim from its paired differences ``x`` (chains, images): row k
    is chain k's arm a minus arm b, image by image, on the same images in every chain."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"paired differences of shape {x.shape}: give (chains, images) with at least 2 images")
    if not np.isfinite(x).all():
        raise ValueError("paired differences hold NaN or inf: a run scored an image it did not see")
    k, n = x.shape
    mean = float(x.mean())
    if k < MIN_CHAINS:
        return ChainEffect(mean, None, None, k, n, None, None)
    chain_means, image_means = x.mean(axis=1), x.mean(axis=0)
    residual = x - chain_means[:, None] - image_means[None, :] + mean
    s_e2 = float((residual**2).sum()) / ((k - 1) * (n - 1))
    chain_term = float(chain_means.var(ddof=1)) / k
    image_term = max(float(image_means.var(ddof=1)) - s_e2 / k, 0.0) / n
    var = chain_term + image_term
    if var == 0.0:  # every chain and image agree: nothing varies, the difference is exact
        return ChainEffect(mean, mean, mean, k, n, 0.0, float(k - 1))
    dof = var**2 / (chain_term**2 / (k - 1) + image_term**2 / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(var)
    return ChainEffect(mean, mean - half, mean + half, k, n, math.sqrt(float(chain_means.var(ddof=1))), dof)
