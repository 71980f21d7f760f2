"""Verdicts a careful reader can trust: two arms, paired on the same images and the same chains.

A claim of the paper ("D has a lower error than A") is decided by the difference of the two arms'
error rates on the same validation images, in the same chains (a chain: every net of the grid
trained from one seed; :mod:`vggrepro.experiments.chains`). The effect is the mean over chains of
the within-chain paired difference; its interval holds the images' sampling and the chains' own
spread, measured on the claim's own chains, never borrowed from other nets. A claim with fewer than
three chains has no measured seed term and stays undecided, and says so.

Kinds of claim (``kind``):

- ``lower``: arm ``a`` has a lower error than arm ``b``. Holds when the 95% interval of
  err(a) - err(b) lies below 0, does not hold when it lies above 0, else undecided.
- ``no-worse``: arm ``a`` is no worse than ``b`` (Glorot's init needs no pre-training; A without
  LRN is no worse than A-LRN) within a stated ``margin``: holds when the interval rules out a loss
  larger than the margin (upper end < +margin), does not hold when it shows one (lower end >
  +margin). A ``no-better`` claim (``a`` is no better than ``b``: LRN does not help) is declared
  as the paper words it and kept as the ``no-worse`` claim with its arms swapped, so that on every
  row a negative effect goes the paper's way (:func:`paper_way` says how far, per kind).
- ``equal``: the arms are about equal (D and E: saturation) within ``margin``: holds when the whole
  interval lies inside (-margin, +margin), does not hold when it lies wholly outside. A margin
  smaller than the images alone can resolve reads "not testable at this scale", with the number
  of chains that would do where some number would.

Roles (``role``): the paper's claims, counted and controlled for multiplicity together on the
results page; sanity checks ("this scale's nets learn"), decided on the images of these very nets
and counted apart; design facts (:func:`design_fact`), checked exactly.

Every verdict also carries its p-value (the test at the boundary the verdict crosses: 0, or the
margin), so that the results page can hold the paper's claims of a scale to Holm's 5%.

Guards: an arm that does not beat its baseline (chance, a pixel-blind guess) in any chain is a
failed run; a dense arm shown worse than the same net's centre crop, paired on the same chains,
is this scale's artefact. Either leaves the claim undecided, with the reason in its row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from . import evidence
from .chains import LEVEL, MIN_CHAINS, MOST_CHAINS, ChainEffect, chain_effect, images_only

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided at this scale"
KINDS = ("lower", "no-worse", "no-better", "equal")
ROLES = ("paper", "sanity")  # and "design", for design_fact's rows
ALPHA = 1 - LEVEL


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: its label and, per chain, each validation image's error: 0 or 1,
    or the mean of several such within one chain (a linear SVM trained on several splits of one
    chain's features: the splits are measured inside the chain, never counted as chains).

    ``chains`` names the chains (their training seeds) in row order, so that two arms are paired
    chain by chain; by default the rows are chains 0, 1, ...
    """

    label: str
    errors: np.ndarray  # (chains, images) in [0, 1]: 1 where the net got the image wrong
    chains: tuple[int, ...] = ()

    def __post_init__(self):
        e = np.asarray(self.errors)
        if e.ndim == 1:
            e = e[None]
        if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
            raise ValueError(
                f"arm {self.label!r}: errors must be (chains, images) with at least one of each, "
                f"got shape {np.shape(self.errors)}"
            )
        if not (np.isfinite(e).all() and ((e >= 0) & (e <= 1)).all()):
            raise ValueError(f"arm {self.label!r}: errors must be between 0 and 1 per image")
        chains = tuple(int(c) for c in self.chains) or tuple(range(e.shape[0]))
        if len(chains) != e.shape[0] or len(set(chains)) != len(chains):
            raise ValueError(f"arm {self.label!r}: {e.shape[0]} rows of errors but chains {chains}")
        object.__setattr__(self, "errors", e.astype(np.float64))
        object.__setattr__(self, "chains", chains)

    @property
    def error(self) -> float:
        """The error rate in %, pooled over chains."""
        return 100.0 * self.errors.sum() / self.errors.size

    def of(self, chains) -> Arm:
        """The arm cut to ``chains`` (in that order)."""
        rows = [self.chains.index(c) for c in chains]
        return Arm(self.label, self.errors[rows], tuple(chains))


def shared_chains(*arms: Arm) -> tuple[int, ...]:
    """The chains every arm was measured in, in the first arm's order."""
    return tuple(c for c in arms[0].chains if all(c in a.chains for a in arms[1:]))


def paired(a: Arm, b: Arm) -> np.ndarray:
    """Arm a's errors minus arm b's, in points, image by image in each chain both have."""
    if a.errors.shape[1] != b.errors.shape[1]:
        raise ValueError(
            f"arms {a.label!r} and {b.label!r} were measured on {a.errors.shape[1]} and "
            f"{b.errors.shape[1]} images: a paired comparison needs the same images"
        )
    both = shared_chains(a, b)
    if not both:
        raise ValueError(f"arms {a.label!r} and {b.label!r} share no chain: chains {a.chains} and {b.chains}")
    return 100.0 * (a.of(both).errors - b.of(both).errors)


def errors_from_scores(scores, labels, k: int = 1) -> np.ndarray:
    """Per-image top-k error (0/1) from class scores (images, classes) and labels (images,)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if not np.isfinite(scores).all():
        raise ValueError("the class scores hold NaN or infinity: the net is broken, not merely wrong")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top != labels[:, None]).all(axis=1).astype(np.int64)


def decision(kind: str, effect: ChainEffect, margin: float | None = None) -> tuple[str, float | None]:
    """(verdict, p-value) for a claim of ``kind`` about err(a) - err(b): the verdict at 95% alone,
    and the p-value of the test at the boundary it is decided against (None: no interval). A
    p-value below ``ALPHA`` is exactly a verdict other than UNDECIDED."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of claim {kind!r}; use one of {KINDS}")
    if kind != "lower" and (margin is None or margin <= 0):
        raise ValueError(f"a {kind!r} claim needs a positive margin in points, stated beside the claim")
    if not effect.decidable:
        return UNDECIDED, None
    d = effect.difference
    if kind == "lower":
        p, good = effect.p_value(0.0), d < 0
    elif kind == "no-worse":
        p, good = effect.p_value(margin), d < margin
    elif kind == "no-better":  # a no better than b: b no worse than a (Claim keeps it so)
        p, good = effect.p_value(-margin), d > -margin
    elif -margin < d < margin:  # equal, and inside: both ends must be shown inside
        p, good = max(effect.p_value(-margin), effect.p_value(margin)), True
    else:
        p, good = effect.p_value(margin if d >= margin else -margin), False
    return (HOLDS if good else FAILS) if p < ALPHA else UNDECIDED, p


def verdict(kind: str, effect: ChainEffect, margin: float | None = None) -> str:
    """HOLDS, FAILS or UNDECIDED for a claim of ``kind`` about err(a) - err(b), at 95% alone."""
    return decision(kind, effect, margin)[0]


@dataclass(frozen=True)
class Guard:
    """A check an arm must pass for its claim to be decided.

    With a ``baseline`` (an error in %: chance, a pixel-blind box) the arm must beat it on the
    images of every chain; otherwise that chain's run failed. With ``against`` (another arm's label:
    the same net's centre crop) the arm must not be shown worse than that arm, paired on the same
    chains (on the images alone where there are too few chains to measure a seed term); otherwise
    the protocol fails at this scale and comparing it would show an artefact.
    """

    arm: str
    baseline: float | None = None
    name: str = "chance"
    against: str | None = None

    def __post_init__(self):
        if (self.baseline is None) == (self.against is None):
            raise ValueError(f"guard on {self.arm!r}: give a baseline error or an arm to reach, one of them")

    def failure(self, arms: Mapping[str, Arm]) -> str | None:
        """Why the guard fails on these arms (None: it passes)."""
        arm = arms[self.arm]
        if self.baseline is not None:
            for chain, row in zip(arm.chains, arm.errors):
                if not images_only(100.0 * row[None] - self.baseline).high < 0:
                    return f"{self.arm} does not beat {self.name} ({self.baseline:.1f}%) in chain {chain}: a failed run"
            return None
        x = paired(arm, arms[self.against])
        gap = chain_effect(x) if x.shape[0] >= MIN_CHAINS else images_only(x)
        if gap.low > 0:
            return f"{self.arm} is worse than {self.name} ({gap}): the protocol fails at this scale"
        return None


def reaches_centre_crop(arm: str, centre_arm: str, where: str = "at the same Q") -> Guard:
    """The guard of a dense arm: the paper finds dense evaluation about as good as a crop
    (Table 5), so a dense arm shown worse than the same net's centre crop is this scale's
    artefact (window placement, context: chapter 5), not evidence for or against a claim."""
    return Guard(arm, name=f"the same net's centre crop {where}", against=centre_arm)


#: The reason an undecided verdict gives when a dense arm is shown worse than its centre crop.
DENSE_WORSE = "dense worse than centre crop"


def short_reason(why: list[str], effect: ChainEffect, result: str) -> str:
    """The few words a matrix cell shows beside an undecided verdict: what stopped it."""
    if any("failed run" in w for w in why):
        return "failed run"
    if any("protocol fails" in w for w in why):
        return DENSE_WORSE
    if any("not testable" in w for w in why):
        return "margin not testable"
    if not effect.decidable:
        return f"{effect.chains} chain{'s' * (effect.chains != 1)}"
    return "" if result != UNDECIDED else "interval spans the boundary"


@dataclass
class Claim:
    """A claim of the paper, declared once: its two arms, kind, margin, role and guards.

    ``a`` and ``b`` name the arms (grid entry and protocol, e.g. ``"D/256 centre"``), ordered so
    that a negative effect goes the paper's way; the numbers come from :meth:`decide`, never from
    the declaration. A ``no-better`` claim ("A-LRN is no better than A") is kept as the
    ``no-worse`` claim with its arms swapped ("A is no worse than A-LRN"), so that its effect too
    is negative where the paper is right.
    """

    text: str
    a: str
    b: str
    kind: str = "lower"
    margin: float | None = None
    paper: str = ""  # the paper's numbers, read from paper_tables.json by the caller
    notebook: str = ""
    guards: list[Guard] = field(default_factory=list)
    role: str = "paper"
    # False where the arms' rows are not the trained chains (released weights: the rows are an
    # SVM's training subsets): the ledger then shows the row as measured, never pooled
    over_chains: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.text!r}: unknown kind {self.kind!r}; use one of {KINDS}")
        if self.kind != "lower" and not (self.margin and self.margin > 0):
            raise ValueError(f"claim {self.text!r}: a {self.kind!r} claim needs a positive margin (points)")
        if self.role not in ROLES:
            raise ValueError(f"claim {self.text!r}: role {self.role!r}; use one of {ROLES}")
        if self.kind == "no-better":
            self.a, self.b, self.kind = self.b, self.a, "no-worse"

    def decide(self, arms: Mapping[str, Arm]) -> dict:
        """The verdict row: effect, interval, chains, p-value, and why, from the arms' per-image
        errors in the chains both arms have. The row keeps its ``evidence`` (the claim as
        declared and the arms it read), so that the ledger can pool it with later chains."""
        used = dict.fromkeys([self.a, self.b, *(x for g in self.guards for x in (g.arm, g.against) if x)])
        missing = [x for x in used if x not in arms]
        if missing:
            raise ValueError(f"claim {self.text!r}: no measurements for arm(s) {missing}; have {sorted(arms)}")
        x = paired(arms[self.a], arms[self.b])
        both = shared_chains(arms[self.a], arms[self.b])
        a, b = arms[self.a].of(both), arms[self.b].of(both)
        effect = images_only(x) if self.role == "sanity" else chain_effect(x)
        why = [w for w in (g.failure(arms) for g in self.guards) if w]
        row = self.judge(effect, f"{a.error:.1f} vs {b.error:.1f}", (a.error, b.error), why)
        row["evidence"] = {
            "claim": self.declared(),
            "arms": evidence.arms_record({label: arms[label] for label in used}),
        }
        return row

    def declared(self) -> dict:
        """The claim as JSON, as :class:`Claim` takes it back (``Claim.of``)."""
        return dict(asdict(self), guards=[asdict(g) for g in self.guards])

    @classmethod
    def of(cls, declared: Mapping) -> Claim:
        """The claim :meth:`declared` wrote."""
        return cls(**dict(declared, guards=[Guard(**g) for g in declared.get("guards", [])]))

    def judge(self, effect: ChainEffect, measured: str, losses: tuple[float, float], why: list[str]) -> dict:
        """The row of a claim whose effect is measured: its verdict (undecided where a guard
        failed: ``why`` holds the guards' reasons) and what stopped a verdict, in words."""
        result, p = decision(self.kind, effect, self.margin)
        why = list(why)
        if why:
            result = UNDECIDED
        if self.role == "sanity":
            why.append("a sanity check: the interval is over these nets' images only")
        elif not effect.decidable:
            why.append(f"rests on {effect.chains} chain(s): at least {MIN_CHAINS} are needed to measure the seed term")
        if self.margin and self.role == "paper":
            why += self._testable(effect)
        return self.row(measured, losses, effect, (result, p), why)

    def _testable(self, effect: ChainEffect) -> list[str]:
        """Whether the recorded chains, or any number, could meet the margin (the plan, from the
        variance components measured)."""
        z_half = effect.image_half_width
        if z_half >= self.margin:
            return [f"not testable at this scale: the images alone leave +/-{z_half:.1f} points, more than the margin"]
        half = effect.half_width_at(effect.chains) if effect.decidable else None
        if half is not None and half >= self.margin:
            need = effect.chains_needed(self.margin)
            more = f"about {need} chains" if need else f"more than {MOST_CHAINS} chains"
            return [f"not testable with {effect.chains} chains (+/-{half:.1f} > margin): needs {more}"]
        return []

    def row(self, measured: str, losses: tuple[float, float], effect: ChainEffect, decided, why: list[str]) -> dict:
        """The verdict row a chapter saves and the results page reads: ``measured`` says the arms'
        numbers as the chapter states them, ``losses`` are the arms' error (or loss) in points,
        ``decided`` the (verdict, p-value) pair."""
        result, p = decided
        margin = f" (margin {self.margin:g})" if self.margin else ""
        return dict(
            claim=self.text,
            notebook=self.notebook,
            kind=self.kind,
            role=self.role,
            ours=f"{measured}: {effect}{margin}",
            margin=self.margin,
            paper=self.paper,
            a=self.a,
            b=self.b,
            err_a=round(losses[0], 2),
            err_b=round(losses[1], 2),
            effect=round(effect.difference, 2),
            low=None if effect.low is None else round(effect.low, 2),
            high=None if effect.high is None else round(effect.high, 2),
            images=effect.images,
            chains=effect.chains,
            chain_sd=None if effect.chain_sd is None else round(effect.chain_sd, 2),
            image_se=round(effect.image_se, 4),
            p=None if p is None else float(f"{p:.4g}"),
            verdict=result,
            reason=short_reason(why, effect, result),
            why="; ".join(why),
        )


def paper_way(row: Mapping) -> str:
    """Which effect goes the paper's way, for a claim's row: ``"< 0"`` (a beats b), ``"< +1"`` (a
    no worse than b, margin 1), ``"within +/-1"`` (about equal); ``""`` for a design fact. On
    every row a negative effect goes the paper's way; "no worse" and "about equal" claims also
    allow a small positive one, up to the margin."""
    kind, m = row.get("kind"), row.get("margin")
    if kind == "lower":
        return "< 0"
    if kind == "no-worse":
        return f"< +{m:g}"
    if kind == "no-better":  # saved before no-better claims were kept as no-worse: read turned round
        return f"< +{m:g}"
    if kind == "equal":
        return f"within +/-{m:g}"
    return ""


def effect_of(row: Mapping) -> str:
    """What a claim's effect measures, arm by arm: ``"err(D/256-glorot) - err(D/256)"``; ``""``
    for a design fact."""
    if row.get("kind") == "design" or not row.get("a"):
        return ""
    a, b = (row["b"], row["a"]) if row.get("kind") == "no-better" else (row["a"], row["b"])
    return f"err({a}) - err({b})"


def claim_ids(notebooks: Sequence[str]) -> list[str]:
    """Short ids of claims in order, ``"4.3"`` for the third claim of ``04_...``: a chapter's claims
    table, the results page's matrix and the details below it name a claim by the same id."""
    ids, seen = [], {}
    for nb in notebooks:
        seen[nb] = seen.get(nb, 0) + 1
        ids.append(f"{int(nb[:2]) if nb[:2].isdigit() else nb}.{seen[nb]}")
    return ids


def anchor(claim_id: str) -> str:
    """The HTML id of a claim's row in its chapter's table (``"claim-4-3"``); the site's
    ``_static/claims.js`` sets it on the row, and the results page's matrix links to it."""
    return "claim-" + claim_id.replace(".", "-")


# -- arms from evaluations, design facts, the chapter's table ------------------------------------


def arm_of_evals(label: str, evals: Mapping[int, dict], k: int = 1) -> Arm:
    """An arm from :func:`vggrepro.evaluate.cached.evaluate_cached` results by chain (training
    seed -> evaluation), which must cover the same images in the same order."""
    rows, indices = [], None
    for r in evals.values():
        idx = [int(i) for i in r["indices"]]
        if indices is not None and idx != indices:
            raise ValueError(f"arm {label!r}: its chains were evaluated on different images")
        indices = idx
        rows.append(errors_from_scores(r["posteriors"].double().numpy(), r["labels"].numpy(), k))
    if not rows:
        raise ValueError(f"arm {label!r}: no evaluation given")
    return Arm(label, np.stack(rows), tuple(evals))


def arm_of_correct(label: str, by_chain: Mapping[int, np.ndarray]) -> Arm:
    """An arm from per-image booleans (True: right) by chain, e.g. localisation."""
    return Arm(label, np.stack([1 - np.asarray(s, dtype=np.int64) for s in by_chain.values()]), tuple(by_chain))


def chance_error(num_classes: int) -> float:
    """Top-1 error (%) of a guess that ignores the image: the least a trained net must beat."""
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes}: need at least one class")
    return 100.0 * (1 - 1 / num_classes)


def design_fact(text: str, paper: str, ours: str, exact: bool, notebook: str = "") -> dict:
    """A claim about the design (weights, receptive fields, MACs): checked exactly, counted apart."""
    return dict(
        claim=text,
        notebook=notebook,
        kind="design",
        role="design",
        paper=paper,
        ours=ours,
        verdict=HOLDS if exact else FAILS,
        reason="exact",
        why="checked exactly",
    )


def table(rows, notebook: str | None = None):
    """The rows a chapter shows, numbered as the results page numbers them (4.1, 4.2, ...: by
    :func:`claim_ids`, from each row's notebook or ``notebook``): claim, paper, this run (errors
    and effect with its 95% interval), the paper's way (which effect would bear the claim out, and
    which arm is which), chains, verdict, and why where something limits the verdict. Show it
    with pandas' ``display.max_colwidth`` at None: a cut claim or reason reads as another."""
    notebooks = [notebook or r.get("notebook") or "" for r in rows]
    if rows and not all(notebooks):
        raise ValueError("claims.table: a row names no notebook; pass notebook='04_single_scale'")
    out = pd.DataFrame(
        [
            {
                "claim": r["claim"],
                "paper": r["paper"],
                "this run": r["ours"],
                "paper's way": " ".join(x for x in (effect_of(r), paper_way(r)) if x) or "-",
                "chains": r.get("chains", "-"),
                "verdict": r["verdict"],
                "why": r.get("why", ""),
            }
            for r in rows
        ],
        index=claim_ids(notebooks),  # unnamed: one header row, as the tests read it
    )
    return out
