"""Section 4.4: fusing several nets by averaging their soft-max class posteriors.

Each net's per-image posteriors are saved once by the evaluator; fusion re-uses them, so a
combination of nets costs no forward pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch


def top_errors(posteriors: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 and top-5 error, in percent."""
    k = min(5, posteriors.shape[1])
    top = posteriors.topk(k, dim=1).indices
    y = labels.view(-1, 1)
    top1 = (top[:, :1] == y).any(1).float().mean().item()
    top5 = (top == y).any(1).float().mean().item()
    return 100.0 * (1 - top1), 100.0 * (1 - top5)


def fuse(posteriors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The mean of several nets' posteriors over the same images, in the same order."""
    if not posteriors:
        raise ValueError("fusion needs at least one net's posteriors")
    shapes = {tuple(p.shape) for p in posteriors}
    if len(shapes) != 1:
        raise ValueError(f"posteriors of different shapes {sorted(shapes)}: evaluate the nets on the same images")
    return torch.stack([p.float() for p in posteriors]).mean(0)


def subset_errors(nets: Mapping[str, torch.Tensor], labels: torch.Tensor, subsets: Sequence[Sequence[str]]) -> list[dict]:
    """Top-1/top-5 error of each named subset of nets (e.g. the paper's 7-net and 2-net ensembles)."""
    rows = []
    for subset in subsets:
        missing = [n for n in subset if n not in nets]
        if missing:
            raise ValueError(f"no posteriors for {missing}; have {sorted(nets)}")
        top1, top5 = top_errors(fuse([nets[n] for n in subset]), labels)
        rows.append(dict(models=list(subset), n_models=len(subset), top1_err=top1, top5_err=top5))
    return rows


def greedy_subset(nets: Mapping[str, torch.Tensor], labels: torch.Tensor, metric: str = "top5") -> list[dict]:
    """Forward selection: start from the best single net, add the net that lowers the error most,
    until no addition helps. Returns each step's subset and errors (ties broken by top-1, then name).

    Chosen on the same images it is scored on, so its error is optimistic: a reader should treat it
    as a search, not as a held-out result.
    """
    index = 1 if metric == "top5" else 0
    chosen: list[str] = []
    best: tuple | None = None
    steps = []
    while True:
        candidates = []
        for name in sorted(set(nets) - set(chosen)):
            errs = top_errors(fuse([nets[n] for n in chosen + [name]]), labels)
            candidates.append((errs[index], errs[1 - index], name, errs))
        if not candidates:
            break
        score, tie, name, errs = min(candidates)
        if best is not None and (score, tie) >= best:
            break
        best = (score, tie)
        chosen.append(name)
        steps.append(dict(models=list(chosen), n_models=len(chosen), top1_err=errs[0], top5_err=errs[1]))
    return steps


def disagreement(nets: Mapping[str, torch.Tensor]) -> tuple[list[str], torch.Tensor]:
    """How often two nets' top-1 classes differ: (names, matrix of fractions)."""
    names = sorted(nets)
    preds = {n: nets[n].argmax(1) for n in names}
    m = torch.zeros(len(names), len(names))
    for (i, a), (j, b) in itertools.product(enumerate(names), repeat=2):
        m[i, j] = (preds[a] != preds[b]).float().mean()
    return names, m
