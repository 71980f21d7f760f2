"""Appendix A's experiment at a profile's scale: the localisation nets of the grid
(:data:`vggrepro.experiments.grid.LOC_GRID`) fine-tuned, tested by both protocols, and Tables 8 and 9 assembled
beside the paper's numbers. Chapter 07 calls these and keeps the prose, tables and plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..core.metrics import top_errors
from ..core.profiles import Profile
from ..core.runs import Run
from ..data import transforms
from ..data.transforms import Preprocess
from ..evaluate.cached import evaluate_cached
from ..evaluate.protocols import Protocol
from ..localise.finetune import FinetuneSettings, Runtime, Source, finetune, run_key
from ..localise.protocols import GUESSES, Pass, System, error_of, guess_error, protocol1, protocol2_table
from ..models import VGG, score_map_size
from ..train import checkpoints
from . import grid, paper

#: How the paper names the fine-tuned layers in Table 8.
LAYERS_IN_PAPER = {"fc": "1st and 2nd FC", "all": "all"}
#: The pixel-blind reference rows (see :func:`vggrepro.localise.protocols.guess_box`).
GUESS_ROWS = {"crop": "whole crop (no net)", "image": "whole image (no net)"}


@dataclass
class LocNets:
    """The fine-tuned localisation nets of the grid, by name, with their runs' results and the
    preprocessing of the classification net each started from."""

    nets: dict[str, VGG]
    results: dict[str, dict]
    preprocess: dict[str, Preprocess]


def loc_settings(
    profile: Profile, name: str, *, epochs: int | None = None, lr: float | None = None, seed: int | None = None
) -> FinetuneSettings:
    """The fine-tuning settings of the grid's localisation net ``name``: its kind, layers and
    training S from :data:`grid.LOC_GRID`, the rest as :meth:`FinetuneSettings.of_profile` says."""
    x = grid.loc_entry(name)
    return FinetuneSettings.of_profile(
        profile, x.kind, x.layers, grid.scale_of(profile, x.train_S), epochs=epochs, lr=lr, seed=seed
    )


def finetune_grid(
    profile: Profile,
    samples: Sequence,
    *,
    names: Sequence[str] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    device: str | None = None,
    load_image: Callable | None = None,
    seed: int | None = None,
) -> LocNets:
    """Fine-tune (or re-use) every localisation net of the grid from its classification entry
    (trained when missing), on ``samples``, with the profile's batch, seed and dropout; ``seed``:
    chain ``seed``'s nets, each started from that chain's classification net.

    The fc-only runs from one classification net see the same crops through the same frozen convs:
    their pool5 outputs are computed once and shared (the same numbers either way)."""
    device = device or profile.resolved_device()
    names = list(grid.LOC_GRID) if names is None else list(names)
    sources: dict[str, Source] = {}
    out = LocNets({}, {}, {})
    runtime = Runtime(device=device, cache=True, load_image=load_image, shared={}, progress=False)
    for name in names:
        x = grid.loc_entry(name)
        if x.source not in sources:
            net, meta = checkpoints.model_from_checkpoint(grid.checkpoint(profile, x.source, seed))
            sources[x.source] = Source(net.to(device), checkpoints.preprocess_of(meta), x.source)
        settings = loc_settings(profile, name, epochs=epochs, lr=lr, seed=seed)
        out.nets[name], out.results[name] = finetune(
            sources[x.source], settings, samples, profile_name=profile.name, runtime=runtime
        )
        out.preprocess[name] = sources[x.source].preprocess
    return out


class NotTrained(LookupError):
    """A net a chain should hold is not in ``runs/``: the scripts that explain a chain's result
    measure its nets and never train one."""


def trained_localisers(
    profile: Profile, names: Sequence[str], samples: Sequence, seed: int, *, epochs: int, lr: float | None = None
) -> LocNets:
    """Chain ``seed``'s localisation nets ``names`` as chapter 7 fine-tuned them (``epochs`` on
    ``samples``), re-used from ``runs/``; a net not there, or the classification net it starts
    from, is :class:`NotTrained`, named with the command that makes it."""
    missing = f"run the chain first (vggrepro book run --profile {profile.name} -p first_chain={seed})"
    train = [s for s in samples if getattr(s, "boxes", None)]
    sources: dict[str, Source] = {}
    out = LocNets({}, {}, {})
    for name in names:
        x = grid.loc_entry(name)
        if x.source not in sources:
            path = grid.run_of(profile, x.source, seed).checkpoint  # never grid.checkpoint: that trains
            if not path.is_file():
                raise NotTrained(f"{x.source} of chain {seed} is not in runs/{profile.name}/; {missing}")
            net, meta = checkpoints.model_from_checkpoint(path)
            sources[x.source] = Source(net, checkpoints.preprocess_of(meta), x.source)
        settings = loc_settings(profile, name, epochs=epochs, lr=lr, seed=seed)
        if not Run(profile.name, run_key(sources[x.source], settings, train)).checkpoint.is_file():
            raise NotTrained(f"{name} of chain {seed} is not in runs/{profile.name}/; {missing}")
        out.nets[name], out.results[name] = finetune(sources[x.source], settings, samples, profile_name=profile.name)
        out.preprocess[name] = sources[x.source].preprocess
    return out


# -- Table 8: protocol 1 ------------------------------------------------------------------------


def table8_Q(profile: Profile) -> int:
    """Protocol 1's Q: the train S of Table 8's nets (the paper's 384), in the profile's pixels."""
    scales = {grid.loc_entry(name).train_S for name in grid.TABLE8_NETS}
    assert len(scales) == 1, scales
    return grid.scale_of(profile, scales.pop())


def protocol1_runs(
    profile: Profile, nets: LocNets, samples: Sequence, *, load_image: Callable | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per image, whether Table 8's nets localise it under protocol 1, and whether the pixel-blind
    boxes do: ``({net name: (N,) bool}, {guess: (N,) bool})``."""
    Q = table8_Q(profile)
    right = {
        name: protocol1(
            nets.nets[name],
            samples,
            Q=Q,
            preprocess=nets.preprocess[name],
            per_image=True,
            how=Pass(load_image=load_image, progress=False),
        )
        for name in grid.TABLE8_NETS
    }
    guesses = {
        g: guess_error(samples, g, Q=Q, crop=profile.crop, load_image=load_image, per_image=True) for g in GUESSES
    }
    return right, guesses


def table8_rows(errors: dict[str, float], guess_errors: dict[str, float]) -> list[dict]:
    """Table 8 beside the paper's (``fine_tuned_layers``, ``regression_type``, ``paper/ours
    gt_class_loc_err``) from the errors (%) of the nets by grid name, then the pixel-blind rows."""
    ours = []
    for row in paper.table("table8_localisation_modifications"):
        layers = next(k for k, v in LAYERS_IN_PAPER.items() if v == row["fine_tuned_layers"])
        name = next(
            n
            for n in grid.TABLE8_NETS
            if (grid.loc_entry(n).kind, grid.loc_entry(n).layers) == (row["regression_type"], layers)
        )
        ours.append(
            dict(
                fine_tuned_layers=row["fine_tuned_layers"],
                regression_type=row["regression_type"],
                gt_class_loc_err=errors[name],
            )
        )
    rows = paper.beside(
        "table8_localisation_modifications",
        ours,
        on=("fine_tuned_layers", "regression_type"),
        metrics=("gt_class_loc_err",),
    )
    return rows + [
        {
            "fine_tuned_layers": text,
            "regression_type": "-",
            "paper gt_class_loc_err": None,
            "ours gt_class_loc_err": guess_errors[g],
        }
        for g, text in GUESS_ROWS.items()
    ]


# -- Table 9: protocol 2 ------------------------------------------------------------------------


@dataclass
class Classifier:
    """Protocol 2's classification system: its posteriors on the validation images (in the
    samples' order), its net (which also scores each window), that net's preprocessing, and its
    top-5 classification error (a floor for every localisation error)."""

    posteriors: torch.Tensor
    net: VGG
    preprocess: Preprocess
    top5_err: float


def classification_system(
    profile: Profile, samples: Sequence, *, device: str | None = None, seed: int | None = None
) -> Classifier:
    """:data:`vggrepro.experiments.grid.LOC_CLASSIFIER` (of chain ``seed``) evaluated densely at its
    multi-scale Q (cached), its posteriors put back in the order of ``samples``."""
    device = device or profile.resolved_device()
    path = grid.checkpoint(profile, grid.LOC_CLASSIFIER, seed)
    scales = grid.test_scales_of(profile, grid.entry(grid.LOC_CLASSIFIER).train_S, True)
    result = evaluate_cached(path, profile, Protocol("dense", scales))
    posteriors = torch.zeros_like(result["posteriors"])
    posteriors[result["indices"].tolist()] = result["posteriors"]
    labels = torch.tensor([int(s.label) for s in samples])
    if not torch.equal(labels, result["labels"][torch.argsort(result["indices"])]):
        raise ValueError(f"the evaluation of {grid.LOC_CLASSIFIER} holds other images than the samples given")
    net, meta = checkpoints.model_from_checkpoint(path)
    return Classifier(
        posteriors, net.to(device), checkpoints.preprocess_of(meta), top_errors(posteriors, labels)["top5_err"]
    )


def fusion_key() -> str:
    """The paper's words for Table 9's fusion row (its train_S field)."""
    return next(r["train_S"] for r in paper.table("table9_localisation_error") if r["test_Q"] is None)


def table9_systems(profile: Profile, nets: LocNets) -> dict[tuple, System]:
    """Table 9's rows as systems, keyed by the paper's ``(train_S, test_Q)``, Q in the profile's pixels."""
    out = {}
    for row in grid.TABLE9_SYSTEMS:
        names = [name for name, _ in row.nets]
        system = System(
            [nets.nets[n] for n in names],
            [[profile.S(q) for q in qs] for _, qs in row.nets],
            [nets.preprocess[n] for n in names],
        )
        out[(fusion_key() if row.test_Q is None else row.train_S, row.test_Q)] = system
    return out


def our_Q(profile: Profile, key: tuple) -> str:
    """A Table 9 row's test scales in the profile's pixels: "55", "51,55", "37 and 51,55"."""
    row = next(r for r in grid.TABLE9_SYSTEMS if r.test_Q == key[1] and (r.test_Q is None or r.train_S == key[0]))
    return " and ".join(",".join(str(profile.S(q)) for q in qs) for _, qs in row.nets)


def protocol2_runs(
    systems: dict[tuple, System],
    classifier: Classifier,
    samples: Sequence,
    *,
    load_image: Callable | None = None,
    top_left: tuple | None = None,
) -> dict[tuple, torch.Tensor]:
    """Per image, whether each system localises it under protocol 2, applied densely
    (``("dense", *key)``) and to the central crop only (``("centre", *key)``); with ``top_left``
    (a key) that system also with the plain net's top-left grid (``("top-left", *key)``). All in
    one pass over the images, each net applied once per image and scale."""
    runs = {}
    for key, s in systems.items():
        runs[("dense",) + key] = s
        runs[("centre",) + key] = System(s.localisers, s.scales, s.preprocess, centre=True)
    if top_left is not None:
        s = systems[top_left]
        runs[("top-left",) + top_left] = System(s.localisers, s.scales, s.preprocess, align="top-left")
    return protocol2_table(
        runs,
        classifier.posteriors,
        samples,
        classifier=classifier.net,
        classifier_preprocess=classifier.preprocess,
        per_image=True,
        how=Pass(load_image=load_image, progress=False),
    )


def _table9_ours(profile: Profile, right: dict[tuple, torch.Tensor]) -> list[dict]:
    keys = [k[1:] for k in right if k[0] == "dense"]
    return [
        {
            "train_S": train_S,
            "test_Q": list(test_Q) if test_Q else None,
            "top5_loc_err_val": error_of(right[("dense", train_S, test_Q)]),
            "our Q": our_Q(profile, (train_S, test_Q)),
            "ours, central crop only": error_of(right[("centre", train_S, test_Q)]),
        }
        for train_S, test_Q in keys
    ]


def table9_rows(profile: Profile, right: dict[tuple, torch.Tensor]) -> list[dict]:
    """Table 9 beside the paper's: for each row (``test_Q`` a list, None for the fusion), the dense
    top-5 localisation error (%), our Q, and the error with the central crop in place of dense
    application, from :func:`protocol2_runs`' results."""
    return paper.beside(
        "table9_localisation_error",
        _table9_ours(profile, right),
        on=("train_S", "test_Q"),
        metrics=("top5_loc_err_val",),
    )


def table9_whole(profile: Profile, right: dict[tuple, torch.Tensor]) -> list[dict]:
    """The rows of :func:`table9_rows` as the chapter shows them: the paper's Table 9 whole (its
    test-set column marked, :data:`vggrepro.experiments.paper.TEST_SET`), numbers as text, "-" where none."""
    rows = paper.whole(
        "table9_localisation_error",
        _table9_ours(profile, right),
        on=("train_S", "test_Q"),
        metrics=("top5_loc_err_val",),
    )
    return [{k: paper.fmt(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def windows_per_image(net: VGG, sizes: Sequence[tuple[int, int]], Q: int) -> torch.Tensor:
    """How many dense windows each image of ``(height, width)`` holds at scale Q (the plain net's
    grid: the pixels past the last multiple of 32 give no window)."""
    maps = [score_map_size(net, *transforms.scaled_size(h, w, Q), ceil_mode=False) for h, w in sizes]
    return torch.tensor([rows * cols for rows, cols in maps])


def share_of_one_window(net: VGG, sizes: Sequence[tuple[int, int]], Q: int) -> float:
    """% of the images of ``(height, width)`` that hold a single dense window at scale Q."""
    return 100.0 * int((windows_per_image(net, sizes, Q) == 1).sum()) / len(sizes)
