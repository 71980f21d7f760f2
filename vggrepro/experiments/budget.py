"""The `gpu` book's time per notebook, estimated from FLOPs before anything is run.

Each notebook's work is counted from the architecture (``models.layer_table``): a training image
costs 3 x 2 x MACs (forward, and a backward pass of two products; with the convolutions frozen
only fc6-fc8 go backward), a test image what its protocol runs (dense: the net over the rescaled
image and its flip at each Q; multi-crop: 50 crops per Q). Training counts every epoch the profile
allows (the plateau schedule may stop sooner), so the estimate is an upper bound. Time is FLOPs
over a stated share (``utilisation``) of the device's peak. D is 15.47 GMAC per 224 crop: about
93 GFLOP per training image.

Notebooks run in order and share the run cache, so each net is trained (and each evaluation run)
in the first notebook that asks for it: :data:`BOOK` lists that notebook's new work alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import torch

from .. import models
from ..bench.throughput import GPU_PEAK_TFLOPS
from ..core.profiles import Profile
from ..evaluate.protocols import dense_macs
from . import grid

#: Peak bf16 dense TFLOP/s of the reference GPU (H100 SXM data sheet; the H200 has the same cores).
H100_BF16_TFLOPS = 989.0
#: A share of peak that a well-fed VGG training loop reaches in bf16 (an assumption until measured).
ASSUMED_UTILISATION = 0.40
#: Images' longer side over their smaller one, on average (the synthetic set draws 4:3 to 1:1).
ASPECT = 1.25


@dataclass(frozen=True)
class Chapter:
    """The new work of one notebook: grid nets it trains first, evaluations it runs first."""

    notebook: str
    trains: tuple[str, ...] = ()
    evaluations: tuple[tuple[str, str, bool], ...] = ()  # (grid net, protocol, multi-scale)
    localisation: tuple[str, ...] = ()  # fine-tuned localisation nets: "fc" or "all" layers each
    note: str = ""


_T4, _ROWS = grid.TABLE4, grid.TABLE3
BOOK: tuple[Chapter, ...] = (
    Chapter("01_architecture", note="counts only"),
    Chapter(
        "02_training",
        trains=("A/256", "A-LRN/256", "B/256", "C/256", "D/256", "E/256", "D/256-glorot"),
        evaluations=tuple(
            (n, "centre", False) for n in ("A/256", "A-LRN/256", "B/256", "C/256", "D/256", "E/256", "D/256-glorot")
        ),
    ),
    # chapter 3 explains dense evaluation on D/jit: it trains the D chain to jittered S, and its
    # "both" evaluation, which chapter 5 reuses for Table 5
    Chapter("03_testing", trains=("D/384", "D/jit"), evaluations=(("D/jit", "both", True),)),
    Chapter(
        "04_single_scale",
        trains=("C/384", "C/jit", "E/384", "E/jit", "B/256-scratch", "B-5x5/256", "A/256-budget"),
        evaluations=tuple((n, "dense", False) for n in _ROWS)
        + tuple(
            (n, "centre", False) for n in _ROWS if n not in ("A/256", "A-LRN/256", "B/256", "C/256", "D/256", "E/256")
        )
        + (("B/256-scratch", "centre", False), ("B-5x5/256", "centre", False)),
    ),
    Chapter(
        "05_multi_scale",
        evaluations=tuple((n, "dense", True) for n in _T4 if n not in ("D/jit", "E/jit")) + (("E/jit", "both", True),),
    ),
    Chapter("06_fusion", trains=("D/jit-fc",), evaluations=(("D/jit-fc", "dense", True),)),
    Chapter("07_localisation", localisation=("fc", "fc", "all", "all"), note="4 epochs each, D at S=384 / 256"),
    Chapter("08_generalisation", note="features of two nets on small sets: seconds"),
)
LOCALISATION_EPOCHS = 4  # chapter 7's fine-tuning epochs


@cache
def _macs(
    config: str, crop: int, num_classes: int, size: tuple[int, int] | None = None, width: float = 1.0
) -> tuple[int, int]:
    """(all MACs, fc6-fc8 MACs) of one image: a crop, or the dense net on ``size``."""
    with torch.device("meta"):  # counting needs the shapes, not the weights
        net = models.build(config, width=width, num_classes=num_classes, crop=crop)
    rows = models.layer_table(net, size)
    fc = sum(r["macs"] for r in rows if r["kind"] == "Linear")
    return (sum(r["macs"] for r in rows) if size is None else dense_macs(net, *size)), fc


def train_flops(config: str, profile: Profile, trainable: str = "all") -> float:
    """FLOPs of one training image: forward 2 x MACs, backward twice that (only fc6-fc8 when frozen)."""
    macs, fc = _macs(config, profile.crop, profile.num_classes, None, profile.width)
    return 2 * macs + 4 * (macs if trainable == "all" else fc)


def test_flops(config: str, profile: Profile, protocol: str, scales: list[int]) -> float:
    """FLOPs of one test image under a protocol at the scales Q (the profile's pixels)."""
    crop = 2 * _macs(config, profile.crop, profile.num_classes, None, profile.width)[0]
    dense = sum(
        2 * 2 * _macs(config, profile.crop, profile.num_classes, (q, round(q * ASPECT)), profile.width)[0]
        for q in scales
    )
    per = {"centre": crop * len(scales), "dense": dense, "multicrop": 50 * crop * len(scales)}
    return per["dense"] + per["multicrop"] if protocol == "both" else per[protocol]


@dataclass
class Estimate:
    notebook: str
    train_pflop: float
    eval_pflop: float
    seconds: float
    nets: list[str] = field(default_factory=list)

    @property
    def minutes(self) -> float:
        return self.seconds / 60


def estimate(
    profile: Profile, utilisation: float = ASSUMED_UTILISATION, peak_tflops: float = H100_BF16_TFLOPS
) -> list[Estimate]:
    """Each notebook's FLOPs and time at ``utilisation`` of ``peak_tflops`` (an upper bound: every
    epoch the profile allows)."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation={utilisation}: give a share of the peak in (0, 1]")
    n_train = profile.num_classes * profile.synth_train_per_class
    n_val = profile.num_classes * profile.synth_val_per_class
    rate = utilisation * peak_tflops * 1e12
    out = []
    for ch in BOOK:
        train = evaluation = 0.0
        for name in ch.trains:
            e = grid.entry(name)
            epochs = (profile.finetune_epochs if e.finetune else profile.epochs) * e.budget
            train += epochs * n_train * train_flops(e.config, profile, e.trainable)
            train += epochs * n_val * test_flops(e.config, profile, "centre", [profile.crop])  # validation
        for layers in ch.localisation:
            train += LOCALISATION_EPOCHS * n_train * train_flops("D", profile, layers)
        for name, protocol, multi in ch.evaluations:
            e = grid.entry(name)
            evaluation += n_val * test_flops(
                e.config, profile, protocol, grid.test_scales_of(profile, e.train_S, multi)
            )
        out.append(Estimate(ch.notebook, train / 1e15, evaluation / 1e15, (train + evaluation) / rate, list(ch.trains)))
    return out


def measured_utilisation(record: dict, profile: Profile) -> tuple[float, str] | None:
    """The share of its device's bf16 peak that the real training loop reached in a
    ``vggrepro bench gpu`` record (its last, steady epoch), and the device; None when the record
    has no such figure (a dry run, a failed step, a GPU without a known peak)."""
    loop, device = record.get("steps", {}).get("train_loop", {}), record.get("provenance", {}).get("device", "")
    peak = next((p["bf16"] for key, p in GPU_PEAK_TFLOPS.items() if key in device), None)
    if record.get("dry_run") or not loop.get("ok") or peak is None or not loop.get("img_per_s_by_epoch"):
        return None
    flops = loop["img_per_s_by_epoch"][-1] * train_flops(loop["config"], profile)
    return flops / (peak * 1e12), device


def table(
    profile: Profile, utilisation: float = ASSUMED_UTILISATION, peak_tflops: float = H100_BF16_TFLOPS
) -> list[dict]:
    """:func:`estimate` as rows for a notebook's table."""
    return [
        dict(
            notebook=e.notebook,
            nets_trained=len(e.nets),
            train_PFLOP=round(e.train_pflop, 1),
            eval_PFLOP=round(e.eval_pflop, 2),
            minutes=round(e.minutes, 1),
        )
        for e in estimate(profile, utilisation, peak_tflops)
    ]


# -- a CPU book's time from measured rates (the `cpu` profile) -----------------------------------
#
# On a CPU a width/8 net is far from any peak and its efficiency differs from net to net (per-call
# overhead weighs more on the shallow ones), so FLOPs over one utilisation would mislead. Instead:
# each config's training img/s measured end to end, and the evaluation's forward GFLOP/s measured
# on crops and on whole images (``scripts/cpu_budget.py`` measures them and records the result).


@dataclass(frozen=True)
class Rates:
    """Measured on the target machine, at the profile's crop, width, batch and threads."""

    train_img_s: dict  # config -> training images per second (data, steps; not validation)
    crop_gflop_s: float  # forward passes on crops: validation each epoch, centre, multi-crop
    dense_gflop_s: float  # the dense net on whole rescaled images


def _forward_seconds(config: str, profile: Profile, rates: Rates, protocol: str, scales: list[int]) -> float:
    """Seconds of one test image under ``protocol`` at the scales Q (the profile's pixels)."""
    parts = ("dense", "multicrop") if protocol == "both" else (protocol,)
    return sum(
        test_flops(config, profile, part, scales)
        / (1e9 * (rates.dense_gflop_s if part == "dense" else rates.crop_gflop_s))
        for part in parts
    )


def training_seconds(
    config: str, profile: Profile, rates: Rates, epochs: int, trainable: str = "all", validate: bool = True
) -> float:
    """One training run: ``epochs`` passes over the training set (only fc6-fc8 learning when
    ``trainable`` is "fc": the FLOPs' share of a full step), and a centre-crop validation after each."""
    n_train = profile.num_classes * profile.synth_train_per_class
    n_val = profile.num_classes * profile.synth_val_per_class
    share = train_flops(config, profile, trainable) / train_flops(config, profile)
    seconds = epochs * n_train * share / rates.train_img_s[config]
    if validate:
        seconds += epochs * n_val * _forward_seconds(config, profile, rates, "centre", [profile.crop])
    return seconds


def measured_estimate(
    profile: Profile, rates: Rates, *, depth_chains: int = 1, localisation_epochs: int = LOCALISATION_EPOCHS
) -> list[dict]:
    """Each notebook's training and evaluation minutes on the machine that measured ``rates``:
    every epoch the profile allows (an upper bound), for each of the profile's ``chains``, the
    extra chains of chapter 4's depth claim (``depth_chains`` of A and D in all), and the
    localisation nets' epochs. Data generation, chapter 8's features and plots are not counted."""
    n_val = profile.num_classes * profile.synth_val_per_class
    k = profile.chains
    extra = max(depth_chains, k) - k
    rows = []
    for ch in BOOK:
        trains = [(name, k) for name in ch.trains]
        if ch.notebook == "04_single_scale":
            trains += [(name, extra) for name in ("A/256", "D/256")]
        train = 0.0
        for name, copies in trains:
            e = grid.entry(name)
            epochs = (profile.finetune_epochs if e.finetune else profile.epochs) * e.budget
            train += copies * training_seconds(e.config, profile, rates, epochs, e.trainable)
        for layers in ch.localisation:  # box regressors fine-tuned from D, no validation per epoch
            train += k * training_seconds("D", profile, rates, localisation_epochs, layers, validate=False)
        evaluation = k * sum(
            n_val
            * _forward_seconds(
                grid.entry(name).config,
                profile,
                rates,
                protocol,
                grid.test_scales_of(profile, grid.entry(name).train_S, multi),
            )
            for name, protocol, multi in ch.evaluations
        )
        nets = k * len(ch.trains) + (2 * extra if ch.notebook == "04_single_scale" else 0)
        rows.append(
            dict(
                notebook=ch.notebook,
                nets_trained=nets,
                train_minutes=round(train / 60, 1),
                eval_minutes=round(evaluation / 60, 1),
                minutes=round((train + evaluation) / 60, 1),
            )
        )
    return rows
