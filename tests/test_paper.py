"""vggrepro.paper: looking rows up, putting ours beside the paper's, and the verdicts, each against
hand-computed cases."""

from __future__ import annotations

import math

import pytest

from vggrepro import paper
from vggrepro.paper import FAILS, HOLDS, UNDECIDED, Claim


def test_tables_are_the_packaged_json():
    t = paper.tables()
    assert "table3_single_scale" in t and "table1_configs" in t
    rows = paper.table("table3_single_scale")
    rows[0]["top1_val_err"] = -1.0  # a copy: changing it leaves the data alone
    assert paper.table("table3_single_scale")[0]["top1_val_err"] != -1.0


def test_unknown_table_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"no 'table99'.*'table1_configs'"):
        paper.table("table99")


def test_find():
    row = paper.find("table3_single_scale", config="A-LRN")
    assert (row["top1_val_err"], row["top5_val_err"]) == (29.7, 10.5)  # Table 3, A-LRN
    assert paper.find("table3_single_scale", config="A", test_Q=[256])["top1_val_err"] == 29.6
    # A list field also matches one item: Table 2 has one row for A and A-LRN.
    assert paper.find("table2_params_millions", configs="A-LRN")["params_millions"] == 133
    assert paper.find("table2_params_millions", configs="E")["params_millions"] == 144
    assert paper.find("table2_params_millions", configs=["A", "A-LRN"])["params_millions"] == 133
    with pytest.raises(ValueError, match="0 rows match"):
        paper.find("table3_single_scale", config="Z")
    with pytest.raises(ValueError, match=r"table3_single_scale: \d+ rows match \{'config': 'D'\}"):
        paper.find("table3_single_scale", config="D")  # D was trained at several S


def test_beside():
    ours = [
        {"config": "A", "train_S": "256", "top1_val_err": 40.0, "top5_val_err": 20.0, "protocol": "dense"},
        {"config": "X", "train_S": "256", "top1_val_err": 50.0, "top5_val_err": 30.0},
    ]
    rows = paper.beside("table3_single_scale", ours, on=["config", "train_S"])
    assert rows[0] == {
        "config": "A",
        "train_S": "256",
        "paper top1_val_err": 29.6,
        "ours top1_val_err": 40.0,
        "paper top5_val_err": 10.4,
        "ours top5_val_err": 20.0,
        "protocol": "dense",
    }
    assert rows[1]["paper top1_val_err"] is None and rows[1]["ours top1_val_err"] == 50.0
    # A list field (test_Q) matches an equal list or tuple, not a single item.
    q = paper.beside("table4_multi_scale", [{"config": "B", "test_Q": (224, 256, 288), "top1_val_err": 1.0}],
                     on=["config", "test_Q"], metrics=["top1_val_err"])
    assert q[0]["paper top1_val_err"] == 28.2
    q = paper.beside("table4_multi_scale", [{"config": "B", "test_Q": 256, "top1_val_err": 1.0}],
                     on=["config", "test_Q"], metrics=["top1_val_err"])
    assert q[0]["paper top1_val_err"] is None


def test_error_se_by_hand():
    assert paper.error_se(50.0, 100) == pytest.approx(5.0)  # 100 * sqrt(0.25 / 100)
    assert paper.error_se(10.0, 400) == pytest.approx(1.5)  # 100 * sqrt(0.09 / 400)
    # 0 % is clamped to half an error in n, so that a perfect score still has an uncertainty.
    assert paper.error_se(0.0, 100) == pytest.approx(100 * math.sqrt(0.005 * 0.995 / 100))


def test_verdict_lower_by_hand():
    # n = 100 at 40 % and 60 %: each se = 100 * sqrt(0.24 / 100) = 4.899, of the gap 6.928; 2 se = 13.86.
    assert paper.verdict_lower(40.0, 60.0, 100) == HOLDS  # gap 20 > 13.86
    assert paper.verdict_lower(60.0, 40.0, 100) == FAILS
    assert paper.verdict_lower(48.0, 52.0, 100) == UNDECIDED  # gap 4 < 2 * 7.07
    # The same 4-point gap is decisive on 10,000 images: se of the gap 0.707, 2 se = 1.41.
    assert paper.verdict_lower(48.0, 52.0, 10_000) == HOLDS
    assert paper.verdict_lower(48.0, 52.0, 100, z=0.5) == HOLDS  # 4 > 0.5 * 7.07


def test_verdict_not_better_by_hand():
    assert paper.verdict_not_better(40.0, 60.0, 100) == FAILS  # the candidate is clearly better
    assert paper.verdict_not_better(55.0, 50.0, 100) == HOLDS
    assert paper.verdict_not_better(48.0, 52.0, 100) == HOLDS  # not clearly better


def test_claims_table_and_frame():
    claims = [Claim("depth helps", "7.5", "9.1", HOLDS), Claim("LRN does not help", "10.4 vs 10.5", "x", FAILS, "03")]
    rows = paper.claims_table(claims)
    assert rows[0] == {"claim": "depth helps", "paper": "7.5", "this run": "9.1", "verdict": HOLDS}
    assert rows[1]["notebook"] == "03"
    assert paper.claims_json(claims)[1] == {
        "claim": "LRN does not help", "paper": "10.4 vs 10.5", "ours": "x", "verdict": FAILS, "notebook": "03"}
    frame = paper.as_frame(rows[:1])
    assert list(frame.columns) == ["claim", "paper", "this run", "verdict"]


def test_fmt():
    assert paper.fmt(7.349) == "7.3"
    assert paper.fmt(7.35, 2) == "7.35"
    assert paper.fmt(None) == "-" and paper.fmt(float("nan")) == "-"
