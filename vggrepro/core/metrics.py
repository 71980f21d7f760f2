"""The measures every chapter reports, each computed in one place and spelled one way.

Spelling: ``top1_err``, ``top5_err`` (classification, percent) and ``top5_loc_err`` (localisation,
percent). The split a figure was measured on is recorded beside it, not in its name. The paper's
own tables (``paper_tables.json``) keep the paper's columns (``top1_val_err``, ``top5_test_err``, ...)
because the paper reports validation and test figures side by side, and that file is its data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

TOP1, TOP5 = "top1_err", "top5_err"
LOC_TOP5 = "top5_loc_err"


def top_errors(posteriors, labels, k: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k error in percent for each k: the share of images whose label is not among the k classes
    of highest posterior, as ``{"top1_err": ..., "top5_err": ...}``. With fewer than k classes every
    label is among them (error 0).

    Counted in float64, so the figure is ``100 * (1 - hits / n)`` exactly as a count would give it,
    whatever the number of images (the same bits as counting batch by batch).
    """
    posteriors, labels = torch.as_tensor(posteriors), torch.as_tensor(labels)
    if posteriors.ndim != 2 or labels.shape != posteriors.shape[:1]:
        raise ValueError(
            f"posteriors must be (N, C) and labels (N,); got {tuple(posteriors.shape)} and {tuple(labels.shape)}"
        )
    if len(labels) == 0:
        raise ValueError("no images to score: the evaluation saw an empty data set")
    out = {}
    for kk in k:
        top = posteriors.topk(min(kk, posteriors.shape[1]), dim=1).indices
        hit = (top == labels.view(-1, 1)).any(dim=1)
        out[f"top{kk}_err"] = 100.0 * (1.0 - hit.double().mean().item())
    return out
