"""The paper's experiment grid as data: which nets are trained, at which S, from which start.

Section 3.1 trains net A from random weights and starts the deeper nets from it; S = 384 starts
from the S = 256 net at lr 1e-3; scale-jittered nets fine-tune all layers of the S = 384 net.
Every entry is a run in the run cache (``runs/<profile>/``), so chapters 02-08 share the trained
nets instead of training them twice, and any notebook can run alone: asking for an entry trains
what it needs first.

Names are ``<config>/<train S>`` in the paper's pixels, with ``jit`` for S in [256, 512].
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.profiles import Profile
from ..core.runs import Run
from ..core.scales import TrainScale
from ..evaluate.cached import evaluate_cached
from ..evaluate.protocols import Protocol
from ..train.recipe import Settings, train
from . import paper

#: lr of a fine-tuning run relative to the profile's initial lr (the paper: 1e-3 against 1e-2).
FINETUNE_LR = 0.1


@dataclass(frozen=True)
class Entry:
    name: str
    config: str
    train_S: str  # the paper's notation: "256", "384" or "[256;512]"
    init: str  # gaussian | glorot | from-a | checkpoint
    source: str | None = None  # the entry whose checkpoint it starts from
    trainable: str = "all"  # "all", or "fc" (fc6-fc8 only, as the submission's jittered D)
    note: str = ""
    budget: int = 1  # epochs in units of the profile's: a net compared with a chain gets the chain's total

    @property
    def finetune(self) -> bool:
        return self.init == "checkpoint"


def _entries() -> dict[str, Entry]:
    e: list[Entry] = [
        Entry("A/256", "A", "256", "gaussian", note="trained from random weights (section 3.1)"),
        Entry("A-LRN/256", "A-LRN", "256", "gaussian", note="A with AlexNet's LRN after conv1_1"),
        Entry("B-5x5/256", "B-5x5", "256", "gaussian", note="B with each pair of 3x3 convs as one 5x5"),
        Entry("B/256-scratch", "B", "256", "gaussian", note="B from random weights: B-5x5's matched arm"),
        # B-E train on from A, so a deeper net has had A's epochs and its own: this A may take as
        # many, and the depth claims say whether depth or budget made the difference
        Entry("A/256-budget", "A", "256", "gaussian", budget=2, note="A given A's epochs and D's: the budget control"),
    ]
    for c in "BCDE":
        e.append(Entry(f"{c}/256", c, "256", "from-a", "A/256", note="first 4 convs and 3 FC from A"))
    e.append(
        Entry(
            "D/256-glorot",
            "D",
            "256",
            "glorot",
            budget=2,
            note="Glorot init, no pre-training (post-submission); A's epochs and D's, in one run",
        )
    )
    for c in "CDE":
        e.append(Entry(f"{c}/384", c, "384", "checkpoint", f"{c}/256", note="from S=256 at lr / 10"))
        e.append(Entry(f"{c}/jit", c, "[256;512]", "checkpoint", f"{c}/384", note="all layers from S=384"))
    e.append(
        Entry(
            "D/jit-fc",
            "D",
            "[256;512]",
            "checkpoint",
            "D/384",
            trainable="fc",
            note="FC layers only from S=384 (the submission's multi-scale D)",
        )
    )
    return {x.name: x for x in e}


GRID: dict[str, Entry] = _entries()


def rows_of(table_key: str) -> tuple[str, ...]:
    """The grid nets of one of the paper's tables, in the paper's row order: each row's
    (config, train S) is a grid entry ("table3_single_scale" -> "A/256", ..., "E/jit")."""
    by_row = {
        (e.config, e.train_S): e.name
        for e in GRID.values()
        if e.trainable == "all" and e.init != "glorot" and e.budget == 1 and not e.name.endswith("-scratch")
    }
    names = []
    for row in paper.table(table_key):
        name = by_row[(row["config"], row["train_S"])]
        if name not in names:
            names.append(name)
    return tuple(names)


#: The nets of Table 3 (single test scale) and of Table 4 (several), as the paper lists them.
TABLE3 = rows_of("table3_single_scale")
TABLE4 = rows_of("table4_multi_scale")


def entry(name: str) -> Entry:
    if name not in GRID:
        raise ValueError(f"no grid entry {name!r}; the grid has {list(GRID)}")
    return GRID[name]


def scale_of(profile: Profile, train_S) -> int | tuple[int, int]:
    """The training scale (the paper's notation, or a :class:`~vggrepro.core.scales.TrainScale`) in the
    profile's pixels: S, or (Smin, Smax) for jittering."""
    return TrainScale.parse(train_S).S(profile)


def test_scales_of(profile: Profile, train_S, multi: bool) -> list[int]:
    """Sections 4.1 and 4.2's Q for a train S, in the profile's pixels."""
    return TrainScale.parse(train_S).Q(multi, profile)


def chain_seeds(profile: Profile, n: int | None = None) -> list[int]:
    """The training seeds of ``n`` chains (default: the profile's ``chains``): the profile's own seed
    plus ``first_chain``, then the next ones. Every chain trains on the same data (the profile's
    seed makes the data); chain k's nets all start from chain k's A."""
    n = profile.chains if n is None else n
    if n < 1:
        raise ValueError(f"chains: n={n}; a claim needs at least one chain")
    return [profile.chain_seed + k for k in range(n)]


def settings_of(profile: Profile, name: str, seed: int | None = None):
    """The trainer's Settings for an entry (its source's checkpoint must exist: see :func:`get`).

    ``seed`` (default: the run's first chain's, ``profile.chain_seed``) trains another instance of
    the entry; it starts from the instance of its source with the same seed, so that each seed is a
    whole chain A -> D -> ...
    """
    x = entry(name)
    init = x.init
    if x.source:
        init = f"{x.init}:{run_of(profile, x.source, seed).checkpoint}"
    lr = profile.lr * FINETUNE_LR if x.finetune else None
    seed = profile.chain_seed if seed is None else int(seed)
    seed = None if seed == profile.seed else seed  # the profile's seed keeps its run key
    epochs = None if x.budget == 1 else x.budget * profile.epochs
    return Settings(
        config=x.config,
        scale=TrainScale.parse(x.train_S).for_profile(profile),
        init=init,
        lr=lr,
        trainable=x.trainable,
        seed=seed,
        epochs=epochs,
    )


def run_of(profile: Profile, name: str, seed: int | None = None):
    return Run(profile.name, settings_of(profile, name, seed).key(profile))


def get(profile: Profile, name: str, *, seed: int | None = None, progress: bool | None = None) -> dict:
    """The result of a grid entry, training it (and what it starts from) when not yet in the cache."""
    x = entry(name)
    if x.source:
        get(profile, x.source, seed=seed, progress=progress)
    result = train(profile, settings_of(profile, name, seed), progress=progress)
    return dict(result, name=name, train_S=x.train_S, note=x.note)


def checkpoint(profile: Profile, name: str, seed: int | None = None):
    """The checkpoint file of a grid entry, trained when missing."""
    get(profile, name, seed=seed)
    return run_of(profile, name, seed).checkpoint


def evaluation(
    profile: Profile, name: str, protocol: str, *, multi: bool = False, Q: int | None = None, seed: int | None = None
) -> dict:
    """A grid entry evaluated on the validation set under ``protocol`` ("centre", "dense", "multicrop"
    or "both"), at the paper's test scales for its training S (section 4.1's one Q, or section 4.2's
    three with ``multi``) or at one given ``Q`` (profile pixels); trained first and re-used from the
    run cache when it was evaluated before (:func:`vggrepro.evaluate.cached.evaluate_cached`)."""
    scales = [Q] if Q is not None else test_scales_of(profile, entry(name).train_S, multi)
    return evaluate_cached(checkpoint(profile, name, seed), profile, Protocol(protocol, scales))


# -- localisation (Appendix A) -------------------------------------------------------------------
#
# The localisation nets are fine-tuned from classification entries of the grid above, at their
# training S (no jittering), and tested by Table 8's protocol 1 and Table 9's protocol 2
# (:mod:`vggrepro.localise.protocols`; the chapter's runs: :mod:`vggrepro.experiments.loc_tables`).


@dataclass(frozen=True)
class LocEntry:
    """A localisation net: a box regressor (SCR or PCR) fine-tuned from a classification entry."""

    name: str
    source: str  # the classification entry it starts from; its train S is this net's
    kind: str  # "SCR" (one box) or "PCR" (one box per class)
    layers: str  # "fc" (fc6-fc8, convs frozen: OverFeat's recipe) or "all"

    @property
    def train_S(self) -> str:
        return entry(self.source).train_S


LOC_GRID: dict[str, LocEntry] = {
    x.name: x
    for x in (
        LocEntry("SCR, fc", "D/384", "SCR", "fc"),
        LocEntry("PCR, fc", "D/384", "PCR", "fc"),
        LocEntry("PCR, all", "D/384", "PCR", "all"),
        LocEntry("PCR, all, S=256", "D/256", "PCR", "all"),
    )
}

#: Table 8's rows: each net under protocol 1, at Q = its train S (the paper's 384).
TABLE8_NETS = ("SCR, fc", "PCR, fc", "PCR, all")


@dataclass(frozen=True)
class LocSystem:
    """A row of Table 9: the localisation nets whose boxes are pooled, each with its test Q (the
    paper's pixels). ``test_Q`` None is the fusion row."""

    train_S: str  # the paper's row: "256", "384", or "fusion" (the fusion of both nets)
    test_Q: tuple[int, ...] | None
    nets: tuple[tuple[str, tuple[int, ...]], ...]  # (LOC_GRID name, its Q in the paper's pixels)


TABLE9_SYSTEMS: tuple[LocSystem, ...] = (
    LocSystem("256", (256,), (("PCR, all, S=256", (256,)),)),
    LocSystem("384", (384,), (("PCR, all", (384,)),)),
    LocSystem("384", (352, 384), (("PCR, all", (352, 384)),)),
    LocSystem("fusion", None, (("PCR, all, S=256", (256,)), ("PCR, all", (352, 384)))),
)

#: The classification system of protocol 2 (names the top-5 classes, scores the windows): the
#: scale-jittered D, evaluated densely at the multi-scale Q of jittered training, with flips.
LOC_CLASSIFIER = "D/jit"


def loc_entry(name: str) -> LocEntry:
    if name not in LOC_GRID:
        raise ValueError(f"no localisation entry {name!r}; the grid has {list(LOC_GRID)}")
    return LOC_GRID[name]
