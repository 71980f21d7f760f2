"""Section 4.4: fusing several nets by averaging their soft-max class posteriors.

Each net's per-image posteriors are saved once by the evaluator; fusion re-uses them, so a
combination of nets costs no forward pass. :func:`fuse_saved` (and ``vggrepro fuse``) fuses saved
evaluations, e.g. of the released VGG-16 and VGG-19 weights::

    vggrepro fuse runs/imagenet/released-D runs/imagenet/released-E --protocol both
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..core.metrics import TOP1, TOP5, top_errors
from .posteriors import POSTERIORS_FILE, load_posteriors


def fuse(posteriors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The mean of several nets' posteriors over the same images, in the same order."""
    if not posteriors:
        raise ValueError("fusion needs at least one net's posteriors")
    shapes = {tuple(p.shape) for p in posteriors}
    if len(shapes) != 1:
        fix = "evaluate the nets on the same images"
        raise ValueError(f"posteriors of different shapes {sorted(shapes)}: {fix}")
    return torch.stack([p.float() for p in posteriors]).mean(0)


def subset_errors(
    nets: Mapping[str, torch.Tensor], labels: torch.Tensor, subsets: Sequence[Sequence[str]]
) -> list[dict]:
    """Top-1/top-5 error of each named subset of nets (e.g. the paper's 7-net and 2-net ensembles)."""
    rows = []
    for subset in subsets:
        missing = [n for n in subset if n not in nets]
        if missing:
            raise ValueError(f"no posteriors for {missing}; have {sorted(nets)}")
        rows.append(
            dict(models=list(subset), n_models=len(subset), **top_errors(fuse([nets[n] for n in subset]), labels))
        )
    return rows


def greedy_subset(nets: Mapping[str, torch.Tensor], labels: torch.Tensor, metric: str = TOP5) -> list[dict]:
    """Forward selection: start from the best single net, add the net that lowers the error most,
    until no addition helps (``metric``: ``metrics.TOP1`` or ``TOP5``). Returns each step's subset and
    errors (ties broken by the other metric, then name).

    Chosen on the same images it is scored on, so its error is optimistic: a reader should treat it
    as a search, not as a held-out result.
    """
    if metric not in (TOP1, TOP5):
        raise ValueError(f"greedy_subset: metric {metric!r}; choose {TOP1!r} or {TOP5!r}")
    first, second = (metric, TOP1 if metric == TOP5 else TOP5)
    chosen: list[str] = []
    best: tuple | None = None
    steps = []
    while True:
        candidates = []
        for name in sorted(set(nets) - set(chosen)):
            errs = top_errors(fuse([nets[n] for n in chosen + [name]]), labels)
            candidates.append((errs[first], errs[second], name, errs))
        if not candidates:
            break
        score, tie, name, errs = min(candidates)
        if best is not None and (score, tie) >= best:
            break
        best = (score, tie)
        chosen.append(name)
        steps.append(dict(models=list(chosen), n_models=len(chosen), **errs))
    return steps


def disagreement(nets: Mapping[str, torch.Tensor]) -> tuple[list[str], torch.Tensor]:
    """How often two nets' top-1 classes differ: (names, matrix of fractions)."""
    names = sorted(nets)
    preds = {n: nets[n].argmax(1) for n in names}
    m = torch.zeros(len(names), len(names))
    for (i, a), (j, b) in itertools.product(enumerate(names), repeat=2):
        m[i, j] = (preds[a] != preds[b]).float().mean()
    return names, m


# -- saved evaluations: fusing nets from the command line -----------------------------------------


def posterior_of(saved: dict, protocol: str) -> torch.Tensor:
    """One protocol's posteriors from a saved evaluation (a "both" run holds dense and multicrop too)."""
    if saved["meta"]["protocol"] == protocol:
        return saved["posteriors"]
    if protocol in saved.get("parts", {}):
        return saved["parts"][protocol]
    raise ValueError(
        f"an evaluation with protocol {saved['meta']['protocol']!r} has no {protocol!r} posteriors; "
        "evaluate with --protocol both to have dense, multicrop and both"
    )


def _posteriors_file(path: str | Path) -> Path:
    """A ``posteriors.pt``, or the evaluation folder (``vggrepro evaluate --out``) that holds one."""
    path = Path(path)
    return path / POSTERIORS_FILE if path.is_dir() else path


def same_images(saved: dict, first: dict, path, first_path) -> None:
    """Two saved evaluations must hold the same images in the same order, with the same labels: the
    fusion is scored against the first's labels, so an evaluation on a set whose classes are numbered
    otherwise would fuse unlike classes (and its error would depend on the order of the arguments)."""
    if not torch.equal(saved["indices"], first["indices"]):
        raise ValueError(f"{path} and {first_path} saw different images: evaluate every net on the same set")
    if not torch.equal(saved["labels"], first["labels"]):
        n = int((saved["labels"] != first["labels"]).sum())
        raise ValueError(
            f"{path} and {first_path} label {n} of the same {len(first['labels'])} images differently (another "
            "data set, or its classes in another order): evaluate every net on the same data set"
        )


def fuse_saved(paths: Sequence[str | Path], protocol: str = "both") -> dict[str, float]:
    """Top-1/top-5 error (``{"top1_err": ..., "top5_err": ...}``) of the average of
    several saved evaluations (``vggrepro evaluate --out``: a folder, or its
    ``posteriors.pt``), under ``protocol``. The evaluations must have seen the same
    images in the same order, with the same labels."""
    if not paths:
        raise ValueError("fusion needs at least one saved evaluation")
    saved = [load_posteriors(_posteriors_file(p)) for p in paths]
    for path, s in zip(paths[1:], saved[1:]):
        same_images(s, saved[0], path, paths[0])
    fused = fuse([posterior_of(s, protocol) for s in saved])
    return top_errors(fused, saved[0]["labels"])
