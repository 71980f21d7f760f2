"""vggrepro.experiments.paper: looking rows up, putting ours beside the paper's, and the verdicts, each against
hand-computed cases."""

from __future__ import annotations

import pytest

from vggrepro.experiments import paper


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
    q = paper.beside(
        "table4_multi_scale",
        [{"config": "B", "test_Q": (224, 256, 288), "top1_val_err": 1.0}],
        on=["config", "test_Q"],
        metrics=["top1_val_err"],
    )
    assert q[0]["paper top1_val_err"] == 28.2
    q = paper.beside(
        "table4_multi_scale",
        [{"config": "B", "test_Q": 256, "top1_val_err": 1.0}],
        on=["config", "test_Q"],
        metrics=["top1_val_err"],
    )
    assert q[0]["paper top1_val_err"] is None


def test_top5_is_shown_only_where_five_guesses_are_a_small_part_of_the_classes():
    assert paper.metrics_for(1000) == ("top1_val_err", "top5_val_err")
    assert paper.metrics_for(100) == ("top1_val_err", "top5_val_err")
    assert paper.metrics_for(10) == ("top1_val_err",)
    ours = [{"config": "A", "train_S": "256", "top1_val_err": 40.0, "top5_val_err": 20.0}]
    rows = paper.beside("table3_single_scale", ours, on=["config", "train_S"], metrics=paper.metrics_for(10))
    assert rows[0] == {"config": "A", "train_S": "256", "paper top1_val_err": 29.6, "ours top1_val_err": 40.0}


def test_as_frame():
    frame = paper.as_frame([{"claim": "depth helps", "paper": "7.5"}])
    assert list(frame.columns) == ["claim", "paper"]


def test_fmt():
    assert paper.fmt(7.349) == "7.3"
    assert paper.fmt(7.35, 2) == "7.35"
    assert paper.fmt(None) == "-" and paper.fmt(float("nan")) == "-"


def test_whole_shows_every_row_and_column_of_the_paper_beside_ours():
    ours = [
        {"config": "A", "train_S": "256", "top1_val_err": 40.04, "our Q": 37},
        {"config": "X", "train_S": "256", "top1_val_err": 50.0, "our Q": 37},
    ]
    rows = paper.whole("table3_single_scale", ours, on=("config", "train_S"), metrics=("top1_val_err",))
    assert len(rows) == len(paper.table("table3_single_scale")) + 1  # every paper row, then ours the paper lacks
    assert rows[0] == {
        "config": "A",
        "train_S": "256",
        "test_Q": "256",
        "paper top1_val_err": "29.6",
        "paper top5_val_err": "10.4",
        "ours top1_val_err": "40.0",
        "our Q": 37,
    }
    assert rows[2]["config"] == "B" and rows[2]["ours top1_val_err"] == "-" and rows[2]["our Q"] == "-"
    # ours right after the paper's column of the same metric, then ours' other columns
    wide = paper.whole(
        "table3_single_scale",
        [dict(ours[0], top5_val_err=20.0, **{"ours top1, centre crop": 35.0})],
        on=("config", "train_S"),
        metrics=("top1_val_err", "top5_val_err"),
    )
    assert list(wide[0]) == [
        "config",
        "train_S",
        "test_Q",
        "paper top1_val_err",
        "ours top1_val_err",
        "paper top5_val_err",
        "ours top5_val_err",
        "our Q",
        "ours top1, centre crop",
    ]
    assert rows[-1] == {
        "config": "X",
        "train_S": "256",
        "test_Q": "-",
        "paper top1_val_err": "-",
        "paper top5_val_err": "-",
        "ours top1_val_err": "50.0",
        "our Q": 37,
    }


def test_whole_marks_the_columns_only_a_test_server_can_score():
    rows = paper.whole("table9_localisation_error")
    test = f"paper top5_loc_err_test: {paper.TEST_SET}"
    assert list(rows[0]) == ["train_S", "test_Q", "paper top5_loc_err_val", test]
    assert [r[test] for r in rows] == ["-", "26.7", "-", "25.3"]  # never NaN
    assert rows[3]["test_Q"] == "-"
    # with ours: this run's column beside the paper's validation column, the test server's last
    ours = [{"train_S": "384", "test_Q": "384", "top5_loc_err_val": 60.0, "ours, central crop only": 70.0}]
    shown = paper.whole("table9_localisation_error", ours, on=("train_S", "test_Q"), metrics=("top5_loc_err_val",))
    assert list(shown[0]) == [
        "train_S",
        "test_Q",
        "paper top5_loc_err_val",
        "ours top5_loc_err_val",
        "ours, central crop only",
        test,
    ]
    t11 = paper.whole("table11_transfer_classification")[0]
    assert f"paper voc2012_mAP: {paper.TEST_SET}" in t11 and "paper voc2007_mAP" in t11  # VOC-2007's labels are public
    assert "ours" not in t11 and "note" not in t11


def test_whole_table6_lists_the_members_and_keeps_the_rows_apart():
    ours = [{"group": "post-submission", "eval_method": "dense", "top1_val_err": 71.2}]
    rows = paper.whole("table6_fusion", ours, on=("group", "eval_method"), metrics=("top1_val_err",))
    assert [r["ours top1_val_err"] for r in rows] == ["-", "71.2", "-", "-"]
    assert rows[1]["models"] == "D/[256;512]/256,384,512; E/[256;512]/256,384,512"
    assert rows[2][f"paper top5_test_err: {paper.TEST_SET}"] == "-" and rows[3]["n_models"] == 2
