"""The paper's scales: a training scale S in the paper's notation, and the test scales Q it implies.

The paper writes a fixed S as "256" or "384" and a jittered one as "[256;512]" (S drawn per image
from [Smin, Smax], section 3.1). Its test scales Q follow from S: Q = S, or {S-32, S, S+32}, for a
fixed S; Q = 384, or {256, 384, 512}, for a jittered S (sections 4.1 and 4.2). A profile runs the
same geometry at ``crop / 224`` of the size: :func:`to_pixels` is that one conversion, and
:class:`TrainScale` gives S and Q in either unit. :func:`centre_window` places the centre crop.

    >>> s = TrainScale.parse("[256;512]")
    >>> s.jittered, str(s), s.tag, s.S(), s.Q(multi=True)
    (True, '[256;512]', 'jit', (256, 512), [256, 384, 512])
    >>> TrainScale.parse("256").Q(multi=True, crop=32)  # in a 32 px profile's pixels
    [32, 37, 41]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PAPER_CROP = 224
#: The paper's training scales, in its pixels: the fixed S, and the jittered range [Smin, Smax].
PAPER_S_FIXED = (256, 384)
PAPER_S_JITTER = (256, 512)
#: Section 4.2: a net trained at a fixed S is tested at S and this far either side of it.
Q_STEP = 32


def to_pixels(paper_px: int, crop: int) -> int:
    """A length in the paper's pixels (S, Q) in the pixels of a net whose crop is ``crop`` (the
    paper's is 224): scaled by ``crop / 224`` and rounded. The one place this rounding happens."""
    return int(round(paper_px * (crop / PAPER_CROP)))


def centre_window(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of the central ``size`` x ``size`` window of a ``height`` x ``width`` image: the
    centre crop of section 3.2. When the margin is odd the extra pixel is left at the bottom/right."""
    return (height - size) // 2, (width - size) // 2


@dataclass(frozen=True)
class TrainScale:
    """A training scale: S in [``lo``, ``hi``], fixed when they are equal. In the paper's pixels
    when made from its notation (:meth:`parse`); ``S`` and ``Q`` convert to a net's pixels."""

    lo: int
    hi: int

    def __post_init__(self):
        if not 0 < self.lo <= self.hi:
            raise ValueError(f"training scale [{self.lo};{self.hi}]: need 0 < Smin <= Smax")

    @classmethod
    def parse(cls, value) -> TrainScale:
        """The one parser of S: the paper's notation ("256", "[256;512]", or "jitter" for its
        [256;512]), the command line's ("256,512"), a number (a fixed S), a pair (Smin, Smax), or a
        TrainScale."""
        if isinstance(value, TrainScale):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value, value)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(int(value[0]), int(value[1]))
        text = str(value).replace(" ", "")
        if text == "jitter":
            return cls(*PAPER_S_JITTER)
        if text.isdigit():
            return cls(int(text), int(text))
        m = re.fullmatch(r"\[(\d+);(\d+)\]|\[?(\d+),(\d+)\]?", text)
        if m:
            lo, hi = (m[1], m[2]) if m[1] else (m[3], m[4])
            return cls(int(lo), int(hi))
        raise ValueError(
            f"training scale {value!r}: write a fixed S as '256' and a jittered one as "
            "'[256;512]' (the paper's notation) or '256,512'"
        )

    @property
    def jittered(self) -> bool:
        return self.lo != self.hi

    def __str__(self) -> str:
        """The paper's notation: "256" or "[256;512]"."""
        return f"[{self.lo};{self.hi}]" if self.jittered else str(self.lo)

    @property
    def tag(self) -> str:
        """How grid names spell it (``D/256``, ``D/jit``)."""
        return "jit" if self.jittered else str(self.lo)

    def for_profile(self, profile) -> TrainScale:
        """This scale (in the paper's pixels) in a profile's pixels."""
        return TrainScale(profile.S(self.lo), profile.S(self.hi))

    def S(self, profile=None, *, crop: int | None = None) -> int | tuple[int, int]:
        """S for the trainer: an int, or (Smin, Smax) when jittered; in a profile's pixels (or those
        of a net with this ``crop``) when one is given, else in these units."""
        lo, hi = (self._px(v, profile, crop) for v in (self.lo, self.hi))
        return (lo, hi) if self.jittered else lo

    def Q(self, multi: bool, profile=None, *, crop: int | None = None) -> list[int]:
        """The test scales of sections 4.1 (one scale) and 4.2 (``multi``), converted as :meth:`S`."""
        if self.jittered:
            middle = (self.lo + self.hi) // 2
            qs = [self.lo, middle, self.hi] if multi else [middle]
        else:
            qs = [self.lo - Q_STEP, self.lo, self.lo + Q_STEP] if multi else [self.lo]
        return [self._px(q, profile, crop) for q in qs]

    @staticmethod
    def _px(paper_px: int, profile, crop: int | None) -> int:
        if profile is not None:
            return profile.S(paper_px)
        return paper_px if crop is None else to_pixels(paper_px, crop)


#: Scale jittering as the paper trains it, S in [256, 512].
JITTER = TrainScale(*PAPER_S_JITTER)
