"""Verdicts a careful reader can trust: two arms, paired on the same images, pooled over seeds.

A claim of the paper ("D has a lower error than A") is decided by the difference of the two arms'
error rates on the same validation images. Two error rates measured on the same 500 images are not
independent (most images are easy or hard for both nets), so the comparison is paired: a bootstrap
that resamples the images once for both arms. A net trained again with another seed lands
somewhere else (at `ci`, several points away), so each arm may hold several seeds, and the
bootstrap resamples the seeds of each arm as well: the interval then includes seed-to-seed
variation, not only image sampling. With one seed per arm it cannot, and the verdict says so.

Kinds of claim:

- ``lower``: arm ``a`` has a lower error than arm ``b``. Holds when the 95% interval of
  err(a) - err(b) lies below 0, does not hold when it lies above 0, else undecided.
- ``no-better``: arm ``a`` is no better than ``b`` (LRN does not help) within a stated ``margin``:
  holds when the interval rules out an improvement larger than the margin (lower end > -margin),
  does not hold when it shows one (upper end < -margin).
- ``equal``: the arms are about equal (D and E: saturation) within ``margin``: holds when the whole
  interval lies inside (-margin, +margin), does not hold when it lies wholly outside.

Guards: an arm that does not beat its baseline (chance, or a pixel-blind guess) with its own
interval is a failed run, and the claim is undecided whatever the numbers say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.runs import REPO, read_recorded

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided at this scale"
KINDS = ("lower", "no-better", "equal")
RESAMPLES = 4000  # enough that the interval's ends are stable to a tenth of a point
LEVEL = 0.95
Z95 = 1.959963984540054  # the standard normal's 97.5% point


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: its label and, per seed, each validation image's error (0 or 1)."""

    label: str
    errors: np.ndarray  # (seeds, images) of 0/1: 1 where the net got the image wrong

    def __post_init__(self):
        e = np.asarray(self.errors)
        if e.ndim == 1:
            e = e[None]
        if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
            raise ValueError(
                f"arm {self.label!r}: errors must be (seeds, images) with at least one of each, "
                f"got shape {np.shape(self.errors)}"
            )
        if not np.isin(e, (0, 1)).all():
            raise ValueError(f"arm {self.label!r}: errors must be 0 or 1 per image")
        object.__setattr__(self, "errors", e.astype(np.int64))

    @property
    def seeds(self) -> int:
        return self.errors.shape[0]

    @property
    def error(self) -> float:
        """The error rate in %, pooled over seeds."""
        return 100.0 * self.errors.sum() / self.errors.size


def errors_from_scores(scores, labels, k: int = 1) -> np.ndarray:
    """Per-image top-k error (0/1) from class scores (images, classes) and labels (images,)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if not np.isfinite(scores).all():
        raise ValueError("the class scores hold NaN or infinity: the net is broken, not merely wrong")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top != labels[:, None]).all(axis=1).astype(np.int64)


@dataclass(frozen=True)
class Effect:
    """err(a) - err(b) in points, with its 95% interval, and how it was measured."""

    difference: float
    low: float
    high: float
    images: int
    seeds: tuple[int, int]
    seed_spread: bool = True  # False: one seed somewhere, and no measured spread to stand in for it

    def __str__(self) -> str:
        return f"{self.difference:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def paired_effect(a: Arm, b: Arm, *, seed_sd: float | None = None, resamples: int = RESAMPLES, seed: int = 0) -> Effect:
    """The difference of the arms' error rates (a - b, points) with a 95% interval that holds both
    image sampling and seed-to-seed variation.

    Images: a bootstrap that draws the validation images with replacement, the same draw for both
    arms (paired), each arm's errors averaged over its seeds. Seeds: each arm's spread of error
    over its seeds (sample standard deviation, in points) adds ``sd^2 / seeds`` to the variance;
    an arm with one seed borrows ``seed_sd``, a spread measured apart (e.g. by
    ``scripts/seed_spread.py``), which is also the least any arm's spread is taken to be.
    """
    if a.errors.shape[1] != b.errors.shape[1]:
        raise ValueError(
            f"arms {a.label!r} and {b.label!r} were measured on {a.errors.shape[1]} and "
            f"{b.errors.shape[1]} images: a paired comparison needs the same images"
        )
    n = a.errors.shape[1]
    # per image, the number of seeds that got it wrong; integer sums, one division: the same bits anywhere
    wrong_a, wrong_b = a.errors.sum(0), b.errors.sum(0)
    rng = np.random.Generator(np.random.PCG64(seed))
    diffs = np.empty(resamples)
    for r in range(resamples):
        images = rng.integers(0, n, n)
        diffs[r] = 100.0 * (wrong_a[images].sum() / (a.seeds * n) - wrong_b[images].sum() / (b.seeds * n))
    diffs.sort()
    tail = (1 - LEVEL) / 2
    d = a.error - b.error
    low, high = diffs[int(math.floor(tail * resamples))], diffs[int(math.ceil((1 - tail) * resamples)) - 1]
    spread = [_seed_variance(arm, seed_sd) for arm in (a, b)]
    known = all(v is not None for v in spread)
    extra = Z95**2 * sum(v for v in spread if v is not None)
    low, high = d - math.sqrt((d - low) ** 2 + extra), d + math.sqrt((high - d) ** 2 + extra)
    return Effect(d, float(low), float(high), n, (a.seeds, b.seeds), known)


def _seed_variance(arm: Arm, seed_sd: float | None) -> float | None:
    """Variance (points^2) of the arm's pooled error due to its seeds; None when nothing measured it."""
    if arm.seeds >= 2:
        sd = max(sample_sd([100.0 * int(e.sum()) / e.size for e in arm.errors]), seed_sd or 0.0)
    elif seed_sd is not None:
        sd = seed_sd
    else:
        return None
    return sd**2 / arm.seeds


def sample_sd(values) -> float:
    """Sample standard deviation (n - 1), in Python floats with an exactly rounded sum: the same
    bits on any machine (a vectorised sum's order depends on the processor)."""
    values = [float(v) for v in values]
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """McNemar's exact two-sided p-value for two nets' 0/1 errors on the same images (one seed each)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2 * tail)


def verdict(kind: str, effect: Effect, margin: float | None = None) -> str:
    """HOLDS, FAILS or UNDECIDED for a claim of ``kind`` about err(a) - err(b)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of claim {kind!r}; use one of {KINDS}")
    if kind != "lower" and (margin is None or margin <= 0):
        raise ValueError(f"a {kind!r} claim needs a positive margin in points, stated beside the claim")
    lo, hi = effect.low, effect.high
    if not effect.seed_spread:  # an interval without seed-to-seed variation would overstate what we know
        return UNDECIDED
    if kind == "lower":
        return HOLDS if hi < 0 else FAILS if lo > 0 else UNDECIDED
    if kind == "no-better":
        return HOLDS if lo > -margin else FAILS if hi < -margin else UNDECIDED
    return HOLDS if -margin < lo and hi < margin else FAILS if lo >= margin or hi <= -margin else UNDECIDED


@dataclass(frozen=True)
class Guard:
    """A check an arm must pass for its claim to be decided, against ``baseline`` (an error in %).

    ``must="beat"``: the arm's whole interval lies below the baseline (chance, a pixel-blind box);
    otherwise it is a failed run. ``must="reach"``: the arm is not shown worse than the baseline (a
    protocol the paper finds about as good as another, e.g. dense against the centre crop of the
    same net); otherwise the protocol fails at this scale, and comparing it would show an artefact.
    """

    arm: str
    baseline: float
    name: str = "chance"
    must: str = "beat"

    def __post_init__(self):
        if self.must not in ("beat", "reach"):
            raise ValueError(f"guard on {self.arm!r}: must={self.must!r}; use 'beat' or 'reach'")


def reaches_centre_crop(arm: str, centre_err: float, where: str = "at the same Q") -> Guard:
    """The guard of a dense arm: the paper finds dense evaluation about as good as a crop
    (Table 5), so a dense arm shown worse than the same net's centre crop is this scale's
    artefact (window placement, context: chapter 5), not evidence for or against a claim."""
    return Guard(arm, centre_err, f"the same net's centre crop {where}", must="reach")


@dataclass
class Claim:
    """A claim of the paper, declared once: its two arms, kind, margin and guards.

    ``a`` and ``b`` name the arms (grid entry and protocol, e.g. ``"D/256 centre"``); the numbers
    come from :meth:`decide`, never from the declaration.
    """

    text: str
    a: str
    b: str
    kind: str = "lower"
    margin: float | None = None
    paper: str = ""  # the paper's numbers, read from paper_tables.json by the caller
    notebook: str = ""
    guards: list[Guard] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.text!r}: unknown kind {self.kind!r}; use one of {KINDS}")
        if self.kind != "lower" and not (self.margin and self.margin > 0):
            raise ValueError(f"claim {self.text!r}: a {self.kind!r} claim needs a positive margin (points)")

    def decide(self, arms: dict[str, Arm], seed_sd: float | None = None) -> dict:
        """The verdict row: effect, interval, seeds, and why, from the arms' per-image errors;
        ``seed_sd`` (points) stands in for the seed spread of an arm trained with one seed."""
        missing = [x for x in (self.a, self.b, *(g.arm for g in self.guards)) if x not in arms]
        if missing:
            raise ValueError(f"claim {self.text!r}: no measurements for arm(s) {missing}; have {sorted(arms)}")
        a, b = arms[self.a], arms[self.b]
        effect = paired_effect(a, b, seed_sd=seed_sd)
        result = verdict(self.kind, effect, self.margin)
        why = []
        for g in self.guards:
            arm = arms[g.arm]
            # err(arm) with its 95% interval over the images only: a guard asks about this run (did
            # it learn? does this protocol work here?), not about what another seed would give
            own = paired_effect(arm, Arm("none", np.zeros_like(arm.errors[:1])), seed_sd=0.0)
            if g.must == "beat" and not own.high < g.baseline:
                why.append(f"{g.arm} does not beat {g.name} ({g.baseline:.1f}%): a failed run")
            if g.must == "reach" and not own.low <= g.baseline:
                why.append(f"{g.arm} is worse than {g.name} ({g.baseline:.1f}%): the protocol fails at this scale")
        if why:
            result = UNDECIDED
        if not effect.seed_spread:
            why.append("one seed and no measured seed spread: undecided whatever the gap")
        elif min(effect.seeds) < 2:
            why.append(f"one seed: the interval borrows the measured seed spread ({seed_sd:.1f} points)")
        return self.row(f"{a.error:.1f} vs {b.error:.1f}", (a.error, b.error), effect, result, why)

    def row(self, measured: str, losses: tuple[float, float], effect: Effect, result: str, why: list[str]) -> dict:
        """The verdict row a chapter saves and the results page reads: ``measured`` says the arms'
        numbers as the chapter states them, ``losses`` are the arms' error (or loss) in points."""
        margin = f" (margin {self.margin:g})" if self.margin else ""
        return dict(
            claim=self.text,
            notebook=self.notebook,
            kind=self.kind,
            ours=f"{measured}: {effect}{margin}",
            margin=self.margin,
            paper=self.paper,
            a=self.a,
            b=self.b,
            err_a=round(losses[0], 2),
            err_b=round(losses[1], 2),
            effect=round(effect.difference, 2),
            low=round(effect.low, 2),
            high=round(effect.high, 2),
            images=effect.images,
            seeds=list(effect.seeds),
            verdict=result,
            why="; ".join(why),
        )


# -- arms from evaluations, the measured seed spread, saving -------------------------------------


def arm_of_evals(label: str, evals, k: int = 1) -> Arm:
    """An arm from :func:`vggrepro.evaluate.cached.evaluate_cached` results, one per seed, which must
    cover the same images in the same order."""
    rows, indices = [], None
    for r in evals:
        idx = [int(i) for i in r["indices"]]
        if indices is not None and idx != indices:
            raise ValueError(f"arm {label!r}: its seeds were evaluated on different images")
        indices = idx
        rows.append(errors_from_scores(r["posteriors"].double().numpy(), r["labels"].numpy(), k))
    if not rows:
        raise ValueError(f"arm {label!r}: no evaluation given")
    return Arm(label, np.stack(rows))


def chance_error(num_classes: int) -> float:
    """Top-1 error (%) of a guess that ignores the image: the least a trained net must beat."""
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes}: need at least one class")
    return 100.0 * (1 - 1 / num_classes)


def seed_spread_file(profile_name: str):
    return REPO / "results" / f"seed_spread_{profile_name}.json"


def measured_seed_sd(profile_name: str) -> float | None:
    """The seed-to-seed standard deviation of a net's top-1 error (points) measured for a profile
    by ``scripts/seed_spread.py`` and committed under ``results/``; None when not measured."""
    path = seed_spread_file(profile_name)
    if not path.is_file():
        return None
    try:
        return float(read_recorded(path)["seed_sd"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a seed-spread record ({e}): run scripts/seed_spread.py again") from None


def design_fact(text: str, paper: str, ours: str, exact: bool, notebook: str = "") -> dict:
    """A claim about the design (weights, receptive fields, MACs): checked exactly, counted apart."""
    return dict(
        claim=text,
        notebook=notebook,
        kind="design",
        paper=paper,
        ours=ours,
        verdict=HOLDS if exact else FAILS,
        why="checked exactly",
    )


def table(rows):
    """The rows a chapter shows: claim, paper, this run (errors and effect with its 95% interval),
    verdict, and why where something limits the verdict."""
    return pd.DataFrame(
        [
            {
                "claim": r["claim"],
                "paper": r["paper"],
                "this run": r["ours"],
                "verdict": r["verdict"],
                "why": r.get("why", ""),
            }
            for r in rows
        ]
    )


def arm_of_correct(label: str, *seeds) -> Arm:
    """An arm from per-image booleans (True: right), one sequence per seed, e.g. localisation."""
    return Arm(label, np.stack([1 - np.asarray(s, dtype=np.int64) for s in seeds]))


# -- a metric that is not a mean of per-image errors (mAP): the same paired bootstrap -----------


def paired_metric_effect(
    metric_fn,
    a_runs,
    b_runs,
    labels,
    *,
    seed_sd: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Effect:
    """loss(a) - loss(b) in points with its 95% interval, for a loss that is not a
    mean of per-image 0/1 errors, e.g. 100 - mAP: the bootstrap of
    :func:`paired_effect` (the same draws of images for both arms, the same
    seed-spread widening), applied to the metric itself.

    ``metric_fn(scores, labels, counts)`` returns one loss (lower is better, in
    points) per row of ``counts``, an (R, images) array of how many times each image
    is drawn (ones: the whole set). ``a_runs`` and ``b_runs`` are lists of score
    arrays (images first), one per seed: an arm's loss is the mean of its seeds'. An
    arm with one seed borrows ``seed_sd``, as in :func:`paired_effect`.
    """
    if not all(isinstance(runs, (list, tuple)) and runs for runs in (a_runs, b_runs)):
        want = "lists of score arrays, one per seed (a list even for one)"
        raise ValueError(f"a_runs and b_runs must be {want}")
    n = len(labels)
    if any(len(s) != n for s in (*a_runs, *b_runs)):
        why = "a paired comparison needs the same images"
        raise ValueError(f"every run must score the same {n} images: {why}")
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)]
    counts = np.stack(draws)
    ones = np.ones((1, n), np.int64)

    def loss(runs, counts):  # (R,): the arm's loss per draw, the mean over its seeds
        per_seed = [metric_fn(s, labels, counts) for s in runs]
        return np.mean(np.asarray(per_seed, dtype=np.float64), axis=0)

    diffs = np.sort(loss(a_runs, counts) - loss(b_runs, counts))
    if not np.isfinite(diffs).all():
        raise ValueError(
            "the metric is undefined on some bootstrap draws (e.g. no "
            "positive image at all): too few images to bootstrap it"
        )

    def whole(runs):  # each seed's loss on the whole set
        return [float(metric_fn(s, labels, ones)[0]) for s in runs]

    full = [whole(a_runs), whole(b_runs)]
    d = math.fsum(full[0]) / len(full[0]) - math.fsum(full[1]) / len(full[1])
    tail = (1 - LEVEL) / 2
    low = diffs[int(math.floor(tail * resamples))]
    high = diffs[int(math.ceil((1 - tail) * resamples)) - 1]
    spread = []
    for values in full:
        if len(values) >= 2:
            sd = max(sample_sd(values), seed_sd or 0.0)
        else:
            sd = seed_sd
        spread.append(None if sd is None else sd**2 / len(values))
    known = all(v is not None for v in spread)
    extra = Z95**2 * sum(v for v in spread if v is not None)
    low = d - math.sqrt((d - low) ** 2 + extra)
    high = d + math.sqrt((high - d) ** 2 + extra)
    return Effect(d, float(low), float(high), n, (len(a_runs), len(b_runs)), known)
