"""Appendix B's two protocols, run over the random splits: every net's descriptors at its scales,
and every representation classified by a linear SVM on each split.

Caltech (one object per image): each split trains a one-vs-rest SVM on its share of the pool and
scores the fixed test images; each image's 0/1 error is the claims' unit, and the mean class
recall is the paper's score. VOC (several objects per image): one binary SVM per class on each
split, scored by mAP. A representation that is another's very array (``"D"`` is ``"D, stacked"``
where the scales are stacked) is classified once and shares its results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from .features import mean_ap, mean_class_recall, scale_descriptors, svm_scores


def descriptors(
    nets: Mapping[str, tuple], images: Mapping[str, list], scales: Mapping[tuple[str, str], Sequence[int]]
) -> dict[tuple[str, str], np.ndarray]:
    """(net, set) -> (images, scales, channels): :func:`scale_descriptors` of the net (its
    ``nets[net]``, a net and its preprocessing) on the set's ``images[set]`` at the test scales
    ``scales[net, set]``, for every pair ``scales`` names, in its order."""
    return {(net, where): scale_descriptors(*nets[net], images[where], list(q)) for (net, where), q in scales.items()}


def once_each(reps: Mapping[str, np.ndarray], classify: Callable[[np.ndarray], object]) -> dict[str, object]:
    """``classify(X)`` for each representation, computed once for representations that are the
    same array under two names."""
    out, done = {}, {}
    for name, X in reps.items():
        if id(X) not in done:
            done[id(X)] = name
            out[name] = classify(X)
        else:
            out[name] = out[done[id(X)]]
    return out


class Caltech(NamedTuple):
    """The Caltech protocol's results, per representation."""

    errors: dict[str, np.ndarray]  # (splits, test images) 0/1: 1 where the split's SVM got it wrong
    recall: dict[str, list[float]]  # the mean class recall (%) of each split
    C: dict[str, list[float]]  # the C chosen on each split's held-out images


def caltech_split(X: np.ndarray, s: Mapping, train: np.ndarray, seed: int) -> tuple[np.ndarray, float, float]:
    """One split of the Caltech protocol: the SVM trained on the pool's images ``train`` (rows of
    ``X``: the pool first, then the test images) with their class folders as labels; the test
    images' 0/1 errors, the mean class recall (%), and the C chosen."""
    truth = np.asarray(s["y_test"]).argmax(1)
    scores, C = svm_scores(X[train], s["pool"][train], X[len(s["train"]) :], seed=seed)
    predicted = scores.argmax(1)
    return (predicted != truth).astype(int), mean_class_recall(truth, predicted), C


def caltech_protocol(reps: Mapping[str, np.ndarray], s: Mapping, splits: Sequence[np.ndarray], seed: int) -> Caltech:
    """Every representation of the Caltech-like set ``s`` (:func:`vggrepro.generalise.features.load_set`)
    classified on every split; split ``i`` seeds its SVM with ``seed + i``."""

    def classify(X):
        return [caltech_split(X, s, train, seed + i) for i, train in enumerate(splits)]

    done = once_each(reps, classify)
    return Caltech(
        errors={name: np.stack([e for e, _, _ in r]) for name, r in done.items()},
        recall={name: [m for _, m, _ in r] for name, r in done.items()},
        C={name: [c for _, _, c in r] for name, r in done.items()},
    )


class Voc(NamedTuple):
    """The VOC protocol's results, per representation."""

    scores: dict[str, list[np.ndarray]]  # per split, the SVMs' scores (test images, classes)
    mAP: dict[str, list[float]]  # per split, the mean average precision (%)


def voc_protocol(reps: Mapping[str, np.ndarray], s: Mapping, splits: Sequence[np.ndarray], seed: int) -> Voc:
    """Every representation of the VOC-like set ``s`` classified on every split: one binary SVM
    per class, trained on the split's images (their held-out share drawn per class folder), the
    test images scored; split ``i`` seeds its SVMs with ``seed + i``."""
    n_pool = len(s["train"])

    def classify(X):
        scores = [
            svm_scores(X[train], s["y_train"][train], X[n_pool:], groups=s["pool"][train], seed=seed + i)[0]
            for i, train in enumerate(splits)
        ]
        return scores, [mean_ap(x, s["y_test"]) for x in scores]

    done = once_each(reps, classify)
    return Voc(scores={name: r[0] for name, r in done.items()}, mAP={name: r[1] for name, r in done.items()})
