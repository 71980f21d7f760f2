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
from ..core.devices import CHECKPOINT_SECONDS
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
#: chapter 4's depth claims train this many chains of these nets (its parameter `depth_chains`):
#: A, D from that A, and A given A's epochs and D's (the budget control)
DEPTH_CHAINS = 3
DEPTH_NETS = ("A/256", "D/256", "A/256-budget")


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


def _trainings(ch: Chapter, profile: Profile, depth_chains: int) -> list[tuple[str, int]]:
    """(grid net, copies) a chapter trains: each net once per chain, and in chapter 4 the extra
    chains of :data:`DEPTH_NETS` its depth claims ask for (``depth_chains`` in all)."""
    k = profile.chains
    out = [(name, k) for name in ch.trains]
    extra = max(depth_chains, k) - k
    if ch.notebook == "04_single_scale" and extra:
        out += [(name, extra) for name in DEPTH_NETS]
    return out


def _evaluations(ch: Chapter, profile: Profile, depth_chains: int) -> list[tuple[str, str, bool, int]]:
    """(grid net, protocol, multi-scale, copies) a chapter evaluates; chapter 4's extra depth chains
    are evaluated with the centre crop."""
    k = profile.chains
    out = [(n, p, m, k) for n, p, m in ch.evaluations]
    extra = max(depth_chains, k) - k
    if ch.notebook == "04_single_scale" and extra:
        out += [(name, "centre", False, extra) for name in DEPTH_NETS]
    return out


def estimate(
    profile: Profile,
    utilisation: float = ASSUMED_UTILISATION,
    peak_tflops: float = H100_BF16_TFLOPS,
    depth_chains: int = DEPTH_CHAINS,
) -> list[Estimate]:
    """Each notebook's FLOPs and time at ``utilisation`` of ``peak_tflops`` (an upper bound: every
    epoch the profile allows), every net it trains counted: each of the profile's chains, and
    chapter 4's ``depth_chains`` of A and D. Overheads besides the FLOPs: :func:`gpu_book`."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation={utilisation}: give a share of the peak in (0, 1]")
    n_train = profile.num_classes * profile.synth_train_per_class
    n_val = profile.num_classes * profile.synth_val_per_class
    rate = utilisation * peak_tflops * 1e12
    out = []
    for ch in BOOK:
        train = evaluation = 0.0
        nets = []
        for name, copies in _trainings(ch, profile, depth_chains):
            e = grid.entry(name)
            epochs = (profile.finetune_epochs if e.finetune else profile.epochs) * e.budget
            train += copies * epochs * n_train * train_flops(e.config, profile, e.trainable)
            train += copies * epochs * n_val * test_flops(e.config, profile, "centre", [profile.crop])  # validation
            nets += [name] * copies
        for layers in ch.localisation:
            train += profile.chains * LOCALISATION_EPOCHS * n_train * train_flops("D", profile, layers)
        for name, protocol, multi, copies in _evaluations(ch, profile, depth_chains):
            e = grid.entry(name)
            scales = grid.test_scales_of(profile, e.train_S, multi)
            evaluation += copies * n_val * test_flops(e.config, profile, protocol, scales)
        out.append(Estimate(ch.notebook, train / 1e15, evaluation / 1e15, (train + evaluation) / rate, nets))
    return out


# -- the gpu book in minutes at a measured rate, overheads counted ---------------------------------

#: D's training rates (img/s, bf16 on one H100) at which chapter 10 prints the gpu book's time
RATES = (1500, 2500, 4000)


@dataclass(frozen=True)
class Overheads:
    """Seconds the gpu book spends besides its FLOPs, on a 16-core H100 machine: assumptions until a
    GPU window measures them (the GPU check records the autotune, a checkpoint save, a validation
    decode and a dense pass's new cuDNN plans)."""

    data_once: float = 90.0  # the 33,000-image set generated on 16 cores (~55 s) and its statistics (~35 s)
    per_chapter: float = 10.0  # a kernel's start and imports
    hash_set: float = 5.0  # the set's 33,000 files hashed against its manifest (1.5 GB)
    decode_val: float = 12.0  # the 3,000 validation images decoded with PIL on one thread
    per_training: float = 25.0  # a net's start: built, 30,000 JPEGs read, cuDNN's autotune
    checkpoint: float = 3.0  # one training checkpoint written and fsync'd (~1.07 GB: weights + momentum)
    dense_plans: float = 10.0  # a dense evaluation's new cuDNN plans at one Q (~100 shapes at ~0.1 s)


def gpu_book(
    profile: Profile, rate: float, *, depth_chains: int = DEPTH_CHAINS, cut: bool = True, over: Overheads = Overheads()
) -> list[dict]:
    """Each chapter's minutes when D trains at ``rate`` img/s (every net at the same FLOP/s), plus
    the overheads. ``cut``: as the package runs now (the set hashed once, the validation images
    decoded once per chapter, a checkpoint at most every ``devices.CHECKPOINT_SECONDS`` and at the
    end); ``cut=False``: as before issue 33 (each training re-hashed and re-decoded, a checkpoint
    every ``checkpoint_every`` steps and at every epoch's end)."""
    if not rate > 0:
        raise ValueError(f"rate={rate}: give D's training images per second, e.g. 2500")
    flop_s = rate * train_flops("D", profile)
    n_train = profile.num_classes * profile.synth_train_per_class
    per_epoch = n_train // profile.batch_size
    rows = []
    for ch, e in zip(BOOK, estimate(profile, 1.0, flop_s / 1e12, depth_chains)):
        compute = e.seconds
        trainings = _trainings(ch, profile, depth_chains)
        over_s = over.per_chapter if ch.notebook != "01_architecture" else 0.0
        if trainings or ch.evaluations or ch.localisation:  # the set checked, its val images decoded
            over_s += over.decode_val + (0.0 if cut else over.hash_set)
        for name, copies in trainings:
            g = grid.entry(name)
            epochs = (profile.finetune_epochs if g.finetune else profile.epochs) * g.budget
            seconds = epochs * n_train * train_flops(g.config, profile, g.trainable) / flop_s
            saves = (1 + int(seconds // CHECKPOINT_SECONDS)) if cut else epochs + epochs * per_epoch // 500
            start = over.per_training + (0.0 if cut else over.decode_val)  # validation decoded per run
            over_s += copies * (start + saves * over.checkpoint)
        over_s += len(ch.localisation) * profile.chains * (over.per_training + LOCALISATION_EPOCHS * over.checkpoint)
        dense = sum(
            copies * len(grid.test_scales_of(profile, grid.entry(n).train_S, m))
            for n, p, m, copies in _evaluations(ch, profile, depth_chains)
            if p in ("dense", "both")
        )
        over_s += dense * over.dense_plans
        rows.append(
            dict(
                notebook=ch.notebook,
                nets_trained=len(e.nets) + len(ch.localisation) * profile.chains,
                compute_minutes=round(compute / 60, 1),
                overhead_minutes=round(over_s / 60, 1),
                minutes=round((compute + over_s) / 60, 1),
            )
        )
    once = round(over.data_once / 60, 1)
    rows.append(dict(notebook="data (once)", nets_trained=0, compute_minutes=0.0, overhead_minutes=once, minutes=once))
    return rows


def gpu_book_minutes(profile: Profile, rates=RATES, **kw) -> dict[int, float]:
    """The whole gpu book's minutes at each of ``rates`` (:func:`gpu_book`)."""
    return {r: round(sum(row["minutes"] for row in gpu_book(profile, r, **kw)), 1) for r in rates}


def measured_rate(record: dict) -> tuple[float, str] | None:
    """D's training img/s that the real training loop reached in a ``vggrepro bench gpu`` record
    (its steady window; an older record's last epoch), and the device; None when the record has
    no such figure (a dry run, a failed step)."""
    loop, device = record.get("steps", {}).get("train_loop", {}), record.get("provenance", {}).get("device", "")
    rate = loop.get("img_per_s") or (loop.get("img_per_s_by_epoch") or [None])[-1]
    if record.get("dry_run") or not loop.get("ok") or not rate or loop.get("config") != "D":
        return None
    return float(rate), device


def measured_utilisation(record: dict, profile: Profile) -> tuple[float, str] | None:
    """The share of its device's bf16 peak that the real training loop reached in a
    ``vggrepro bench gpu`` record, and the device; None when the record has no such figure (see
    :func:`measured_rate`) or the GPU has no known peak."""
    found = measured_rate(record)
    if found is None:
        return None
    rate, device = found
    peak = next((p["bf16"] for key, p in GPU_PEAK_TFLOPS.items() if key in device), None)
    if peak is None:
        return None
    return rate * train_flops("D", profile) / (peak * 1e12), device


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
    extra chains of chapter 4's depth claims (``depth_chains`` of :data:`DEPTH_NETS` in all), and the
    localisation nets' epochs. Data generation, chapter 8's features and plots are not counted."""
    n_val = profile.num_classes * profile.synth_val_per_class
    k = profile.chains
    rows = []
    for ch in BOOK:
        train = 0.0
        for name, copies in _trainings(ch, profile, depth_chains):
            e = grid.entry(name)
            epochs = (profile.finetune_epochs if e.finetune else profile.epochs) * e.budget
            train += copies * training_seconds(e.config, profile, rates, epochs, e.trainable)
        for layers in ch.localisation:  # box regressors fine-tuned from D, no validation per epoch
            train += k * training_seconds("D", profile, rates, localisation_epochs, layers, validate=False)
        evaluation = sum(
            copies
            * n_val
            * _forward_seconds(
                grid.entry(name).config,
                profile,
                rates,
                protocol,
                grid.test_scales_of(profile, grid.entry(name).train_S, multi),
            )
            for name, protocol, multi, copies in _evaluations(ch, profile, depth_chains)
        )
        nets = sum(copies for _, copies in _trainings(ch, profile, depth_chains))
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
