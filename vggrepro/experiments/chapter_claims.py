"""A chapter's claims, declared the one way: what every claim of a chapter shares, said once.

Every claim a chapter declares carries the same things besides its two arms: the notebook it is
recorded under, the guard each arm of a trained system must pass (beat chance, or a pixel-blind
box), for a dense arm the guard of reaching the same net's centre crop (paired on the same chains),
its role (the paper's claims, or sanity checks that this scale's nets learn), and the paper's numbers,
read from the paper's table when the chapter's rows are that table's. A :class:`Chapter` holds
them, and :meth:`Chapter.claim` builds each :class:`vggrepro.experiments.claims.Claim`, so that the
chapters hold the claims' words and arms only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..generalise import features
from . import chains, evidence, grid, paper
from .claims import Claim, Guard, reaches_centre_crop


@dataclass(frozen=True)
class Chapter:
    """What the claims of one chapter (or one part of it) share.

    ``baseline`` is the error (%) every arm must beat, named ``baseline_name`` (chance, the
    pixel-blind box, a chance scorer); ``unguarded`` names the arms held to no baseline, those
    that are baselines themselves (raw pixels, an untrained net, the pixel-blind box). A dense
    arm, a key of ``centre_of``, must also reach the centre crop of the same net, the arm it maps
    to (``"D/256 dense"`` -> ``"D/256 centre"``), measured ``where``: one rule for every claim
    with a dense arm, decided on the claim's chains. ``paper_table`` names the paper's table
    whose rows (config and training S of an arm's grid entry) give a claim's paper numbers when
    the claim states none.
    ``prefix`` starts every claim's text (``"Caltech-like: "``).
    """

    notebook: str
    baseline: float
    baseline_name: str = "chance"
    unguarded: tuple[str, ...] = ()
    centre_of: Mapping[str, str] = field(default_factory=dict)
    where: str = "at the same Q"
    paper_table: str = ""
    prefix: str = ""

    def guards(self, a: str, b: str) -> list[Guard]:
        """The guards of a claim on arms ``a`` and ``b``: each arm but the unguarded against the
        baseline, then each dense arm against the same net's centre crop."""
        guards = [Guard(arm, self.baseline, self.baseline_name) for arm in (a, b) if arm not in self.unguarded]
        guards += [reaches_centre_crop(arm, self.centre_of[arm], self.where) for arm in (a, b) if arm in self.centre_of]
        return guards

    def paper_numbers(self, a: str, b: str) -> str:
        """The paper's top-1 errors of the rows of ``paper_table`` that the arms' grid entries
        stand for: ``"top-1 27.0 vs 29.6"``."""
        if not self.paper_table:
            raise ValueError(
                f"{self.notebook}: a claim on {a!r} and {b!r} states no paper numbers, "
                "and the chapter names no paper table to read them from"
            )
        errors = []
        for arm in (a, b):
            entry = grid.entry(net_of(arm))
            row = paper.find(self.paper_table, config=entry.config, train_S=entry.train_S)
            errors.append(row["top1_val_err"])
        return f"top-1 {errors[0]} vs {errors[1]}"

    def claim(
        self,
        text: str,
        a: str,
        b: str,
        paper_numbers: str | None = None,
        kind: str = "lower",
        margin: float | None = None,
        role: str = "paper",
    ) -> Claim:
        """The claim ``text`` that arm ``a`` beats (or equals, or is no better than: ``kind``)
        arm ``b``, with the chapter's notebook and guards; ``paper_numbers`` read from the
        chapter's paper table when not given; ``role="sanity"`` for a check that this scale's
        nets learn rather than a claim of the paper."""
        return Claim(
            self.prefix + text,
            a,
            b,
            kind=kind,
            margin=margin,
            paper=paper_numbers or self.paper_numbers(a, b),
            notebook=self.notebook,
            guards=self.guards(a, b),
            role=role,
        )


def net_of(arm: str) -> str:
    """The net an arm's label measures: its first word (``"D/jit three Q"``: ``"D/jit"``)."""
    return arm.split()[0]


def decide_map(claim, runs: Mapping[str, list[np.ndarray]], labels, seeds: Sequence[int] = ()) -> dict:
    """A claim about mAP, decided as :meth:`vggrepro.experiments.claims.Claim.decide` decides one
    about errors: the effect on 100 - mAP (negative: ``a`` has the higher mAP) over the chains
    (``runs[arm]`` holds per chain, in the same chain order for every arm, the scores of each SVM
    split, (splits, images, classes): a chain's loss is the mean over its splits), each
    guard's arm held to its baseline (100 - a chance scorer's mAP) in every chain, and the same row,
    with its ``evidence`` for the ledger (``seeds`` names the chains, by default 0, 1, ...)."""
    labels = np.asarray(labels)
    fixed = claim.role == "sanity"
    loss_of = features.splits_map_loss
    effect = chains.metric_effect(loss_of, runs[claim.a], runs[claim.b], labels, fixed=fixed)
    perfect = [labels.astype(float)[None]]  # a scorer that ranks every positive first: loss 0
    why = []
    for g in claim.guards:
        for k, scores in enumerate(runs[g.arm]):
            mine = chains.metric_effect(loss_of, [scores], perfect, labels, fixed=True)
            if not mine.high < g.baseline:
                why.append(f"{g.arm} does not beat {g.name} ({100 - g.baseline:.1f} mAP) in chain {k}: a failed run")
                break
    loss = [
        float(np.mean([loss_of(s, labels, np.ones((1, len(labels))))[0] for s in runs[x]])) for x in (claim.a, claim.b)
    ]
    row = claim.judge(effect, f"mAP {100 - loss[0]:.1f} vs {100 - loss[1]:.1f}", (loss[0], loss[1]), why)
    used = dict.fromkeys([claim.a, claim.b, *(g.arm for g in claim.guards)])
    seeds = tuple(seeds) or tuple(range(len(runs[claim.a])))
    record = evidence.scores_record({x: runs[x] for x in used}, labels, seeds)
    row["evidence"] = {"claim": claim.declared(), "metric": "splits_map_loss", **record}
    return row
