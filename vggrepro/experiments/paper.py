"""The paper's tables as data, and the "paper beside this run" tables every notebook ends with.

The numbers come from the packaged copy of ``paper_tables.json`` (sources and confidence levels are
in it); nothing here retypes a number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd


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
    return pd.DataFrame(rows)


def fmt(x: float | None, digits: int = 1) -> str:
    """A percentage as the paper prints it; '-' where there is none."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


# -- a paper's table whole, beside this run's rows ------------------------------------------------

#: How a column the paper measured on a held-out test set is marked: ILSVRC-2012's test labels (and
#: VOC-2012's) are kept by an evaluation server, so no run of this book can reproduce such a number.
#: Short, for a narrow header: "paper top5_test_err: test set, server only".
TEST_SET = "test set, server only"
#: The columns measured on a test set that only a server scores, per table (the tables' notes say
#: which: "top-5 test", "VOC-2012 via evaluation server"). VOC-2007's test labels are public.
SERVER_TEST_COLUMNS = {
    "table6_fusion": ("top5_test_err",),
    "table7_sota_classification": ("top5_test_err", "top5_val_or_test_err"),
    "table9_localisation_error": ("top5_loc_err_test",),
    "table10_sota_localisation": ("top5_loc_test_err",),
    "table11_transfer_classification": ("voc2012_mAP", "voc2012_mAP_extended_pretraining"),
    "table12_voc2012_action": ("voc2012_action_mAP",),
}
#: Bookkeeping fields of the data file, not columns of the paper's tables.
NOT_COLUMNS = ("ours", "bold_in_paper", "note", "exact_params_computed")
#: A measured number's column (an error, an mAP, a mean class recall or its spread), not a row's label.
_MEASURED = ("err", "mAP", "mcr", "std")


def is_measured(field: str) -> bool:
    """Whether a field of the paper's data is a measured number (shown with one decimal)."""
    return any(m in field for m in _MEASURED)


def column_name(key: str, field: str) -> str:
    """The header of the paper's ``field`` of table ``key``: ``"paper top5_test_err"``, marked with
    :data:`TEST_SET` where only a test server could score it."""
    return f"paper {field}: {TEST_SET}" if field in SERVER_TEST_COLUMNS.get(key, ()) else f"paper {field}"


def _cell(value) -> str | None:
    if isinstance(value, (list, tuple)):  # a Q set "256,384"; a list of names "D/256/224,256,288; C/..."
        return ("; " if any(isinstance(v, str) for v in value) else ",").join(map(str, value))
    return value


def whole(key: str, ours: Iterable[dict] = (), on: Sequence[str] = (), metrics: Sequence[str] = ()) -> list[dict]:
    """Every row and column of the paper's table ``key``, with this run's ``metrics`` beside each row
    that agrees on ``on``; a row of ours that the paper lacks comes last.

    Each row has the paper's label fields (``on`` first, as text), then ``paper <field>`` for each
    measured column (:func:`column_name`: test-set columns marked), each followed at once by
    ``ours <field>`` where ``field`` is one of ``metrics`` (a reader, or a phone's width, meets this
    run's number right beside the paper's), then any other metric, then ours' extra fields in their
    order, and last the paper's columns that only a test server could score. Numbers are text with
    one decimal, "-" where there is none (never NaN).
    """
    paper_rows, ours = table(key), [dict(r) for r in ours]
    fields = [f for f in dict.fromkeys(k for r in paper_rows for k in r) if f not in NOT_COLUMNS]
    labels = [*on, *[f for f in fields if f not in on and not is_measured(f)]]
    measured = [f for f in fields if is_measured(f)]
    server = SERVER_TEST_COLUMNS.get(key, ())  # no run can fill them: they come last
    known = {*labels, *metrics, *measured}
    extra = list(dict.fromkeys(k for r in ours for k in r if k not in known))
    used, out = set(), []

    def row(p: dict, o: dict | None) -> dict:
        merged = {f: _cell(p.get(f, o.get(f) if o else None)) for f in labels}
        for f in [f for f in measured if f not in server]:
            merged[column_name(key, f)] = fmt(p.get(f))
            if f in metrics:
                merged[f"ours {f}"] = fmt(o.get(f)) if o else "-"
        merged.update({f"ours {m}": fmt(o.get(m)) if o else "-" for m in metrics if m not in measured})
        merged.update({k: (_cell(o.get(k)) if o else None) for k in extra})
        merged.update({column_name(key, f): fmt(p.get(f)) for f in measured if f in server})
        return {k: "-" if v is None else v for k, v in merged.items()}

    for p in paper_rows:
        i = next((i for i, o in enumerate(ours) if i not in used and all(_same(p.get(k), o.get(k)) for k in on)), None)
        used.add(i)
        out.append(row(p, ours[i] if i is not None else None))
    out += [row({}, o) for i, o in enumerate(ours) if i not in used]
    return out
