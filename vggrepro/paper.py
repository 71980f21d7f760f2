"""The paper's tables as data, and the "paper beside this run" tables every notebook ends with.

The numbers come from the packaged copy of ``paper_tables.json`` (sources and confidence levels are
in it); nothing here retypes a number.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Sequence


@lru_cache(maxsize=1)
def tables() -> dict[str, Any]:
    """The whole JSON: every table of the paper (v6 numbering), its notes, sources and confidence."""
    with resources.files("vggrepro").joinpath("paper_tables.json").open() as f:
        return json.load(f)


def table(key: str) -> list[dict] | dict:
    """One entry, e.g. ``table("table3_single_scale")``; an unknown key lists the known ones."""
    t = tables()
    if key not in t:
        raise ValueError(f"the paper's data has no {key!r}; it has {sorted(t)}")
    value = t[key]
    return [dict(row) for row in value] if isinstance(value, list) else value


def find(key: str, **match) -> dict:
    """The one row of a table whose fields equal ``match``, e.g. ``find("table3_single_scale",
    config="D", train_S="256")``. A list field also matches one of its items, so
    ``find("table2_params_millions", configs="A")`` is the row of A and A-LRN. Zero or several
    matches is an error naming the table."""
    rows = [r for r in table(key) if all(_same(r.get(k), v, item=True) for k, v in match.items())]
    if len(rows) != 1:
        raise ValueError(f"{key}: {len(rows)} rows match {match}; expected exactly one")
    return rows[0]


def _same(a, b, item: bool = False) -> bool:
    """Does the paper's field ``a`` match the value ``b``? A list matches an equal list or tuple
    and, with ``item``, any single value among its items."""
    if isinstance(a, list):
        return list(a) == list(b) if isinstance(b, (list, tuple)) else item and b in a
    return a == b


#: the error metrics of the paper's classification tables
METRICS = ("top1_val_err", "top5_val_err")
#: Top-5 error asks for the right class among five guesses. That is evidence when five is a small
#: part of the classes (ImageNet: 5 of 1,000; the `gpu` profile: 5 of 100) and none at 10 classes,
#: where a net passes by ranking the right class in the better half.
TOP5_MIN_CLASSES = 100


def shows_top5(num_classes: int) -> bool:
    """Whether top-5 error means something with ``num_classes`` classes (see TOP5_MIN_CLASSES)."""
    return num_classes >= TOP5_MIN_CLASSES


def metrics_for(num_classes: int) -> tuple[str, ...]:
    """The metrics a table of a run with ``num_classes`` classes shows: top-1, and top-5 where it means something."""
    return METRICS if shows_top5(num_classes) else METRICS[:1]


def beside(
    key: str,
    ours: Iterable[dict],
    on: Sequence[str],
    metrics: Sequence[str] = METRICS,
) -> list[dict]:
    """This run's rows beside the paper's: for each of our rows, the paper row that agrees on ``on``.

    Each output row has the ``on`` fields, then ``paper <metric>`` and ``ours <metric>`` for each
    metric (``None`` where the paper has no such row). Extra fields of ours (e.g. ``protocol``) are
    kept at the end; metrics of :data:`METRICS` left out of ``metrics`` are dropped.
    """
    paper_rows = table(key)
    out = []
    for row in ours:
        match = [p for p in paper_rows if all(_same(p.get(k), row.get(k)) for k in on)]
        paper = match[0] if match else {}
        merged = {k: row.get(k) for k in on}
        for m in metrics:
            merged[f"paper {m}"] = paper.get(m)
            merged[f"ours {m}"] = row.get(m)
        merged.update({k: v for k, v in row.items() if k not in on and k not in metrics and k not in METRICS})
        out.append(merged)
    return out


def as_frame(rows: list[dict]):
    """A pandas DataFrame of rows (pandas comes with the book's extras)."""
    import pandas as pd

    return pd.DataFrame(rows)


def fmt(x: float | None, digits: int = 1) -> str:
    """A percentage as the paper prints it; '-' where there is none."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"
