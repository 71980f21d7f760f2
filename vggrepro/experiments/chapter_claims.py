"""A chapter's claims, declared the one way: what every claim of a chapter shares, said once.

Every claim a chapter declares carries the same things besides its two arms: the notebook it is
recorded under, the guard each arm of a trained system must pass (beat chance, or a pixel-blind
box), for a dense arm the guard of reaching the same net's centre crop, and the paper's numbers,
read from the paper's table when the chapter's rows are that table's. A :class:`Chapter` holds
them, and :meth:`Chapter.claim` builds each :class:`vggrepro.experiments.claims.Claim`, so that the
chapters hold the claims' words and arms only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..generalise import features
from . import claims, grid, paper
from .claims import Claim, Guard, reaches_centre_crop


@dataclass(frozen=True)
class Chapter:
    """What the claims of one chapter (or one part of it) share.

    ``baseline`` is the error (%) every arm must beat, named ``baseline_name`` (chance, the
    pixel-blind box, a chance scorer); ``unguarded`` names the arms held to no baseline, those
    that are baselines themselves (raw pixels, an untrained net, the pixel-blind box). An arm
    whose label ends with ``reach`` (e.g. ``" dense"``) must also reach the centre-crop error of
    its net, ``centre[net]``, where the net is the label's first word (``"D/256 dense"``: D/256),
    measured ``where``. ``paper_table`` names the paper's table whose rows (config and training
    S of an arm's grid entry) give a claim's paper numbers when the claim states none.
    ``prefix`` starts every claim's text (``"Caltech-like: "``).
    """

    notebook: str
    baseline: float
    baseline_name: str = "chance"
    unguarded: tuple[str, ...] = ()
    reach: str = ""
    centre: Mapping[str, float] = field(default_factory=dict)
    where: str = "at the same Q"
    paper_table: str = ""
    prefix: str = ""

    def guards(self, a: str, b: str) -> list[Guard]:
        """The guards of a claim on arms ``a`` and ``b``: each arm but the unguarded against the
        baseline, then each arm that must reach its net's centre crop against it."""
        guards = [Guard(arm, self.baseline, self.baseline_name) for arm in (a, b) if arm not in self.unguarded]
        guards += [
            reaches_centre_crop(arm, self.centre[net_of(arm)], self.where)
            for arm in (a, b)
            if self.reach and arm.endswith(self.reach)
        ]
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
    ) -> Claim:
        """The claim ``text`` that arm ``a`` beats (or equals, or is no better than: ``kind``)
        arm ``b``, with the chapter's notebook and guards; ``paper_numbers`` read from the
        chapter's paper table when not given."""
        return Claim(
            self.prefix + text,
            a,
            b,
            kind=kind,
            margin=margin,
            paper=paper_numbers or self.paper_numbers(a, b),
            notebook=self.notebook,
            guards=self.guards(a, b),
        )


def net_of(arm: str) -> str:
    """The net an arm's label measures: its first word (``"D/jit three Q"``: ``"D/jit"``)."""
    return arm.split()[0]


def name_the_pick(rows: list[dict], marker: str = "better of the two") -> list[dict]:
    """Rows whose claim sets an arm against ``marker`` ("the better of the two", picked on the
    very images the claim is decided on) say which arm was picked, beside the numbers. In place;
    the rows are returned."""
    for r in rows:
        if r["claim"].endswith(marker):
            r["ours"] += f" ({r['b']} is the better here)"
    return rows


def decide_map(claim, runs: dict[str, list[np.ndarray]], labels, seed_sd: float | None = None) -> dict:
    """A claim about mAP, decided as :meth:`vggrepro.Claim.decide` decides one about errors:
    the effect on 100 - mAP (negative: ``a`` has the higher mAP) with its paired interval, each
    guard's arm held to its baseline (100 - a chance scorer's mAP), and the same row."""
    labels = np.asarray(labels)
    effect = claims.paired_metric_effect(features.map_loss, runs[claim.a], runs[claim.b], labels, seed_sd=seed_sd)
    result, why = claims.verdict(claim.kind, effect, claim.margin), []
    for g in claim.guards:
        upper = claims.paired_metric_effect(
            features.map_loss, runs[g.arm], [labels.astype(float)], labels, seed_sd=seed_sd or 0.0
        ).high
        if not upper < g.baseline:
            result = claims.UNDECIDED
            why.append(f"{g.arm} does not beat {g.name} ({100 - g.baseline:.1f} mAP): a failed run")
    if not effect.seed_spread:
        why.append("one split and no measured seed spread: undecided whatever the gap")
    loss = [
        float(np.mean([features.map_loss(s, labels, np.ones(len(labels)))[0] for s in runs[x]]))
        for x in (claim.a, claim.b)
    ]
    return claim.row(f"mAP {100 - loss[0]:.1f} vs {100 - loss[1]:.1f}", (loss[0], loss[1]), effect, result, why)
