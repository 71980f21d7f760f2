"""scripts/record_run.py: how a chain's wall times and nets are read (the ledger itself: test_ledger.py)."""

import importlib.util
import json

from vggrepro.book import runner
from vggrepro.core.runs import REPO

spec = importlib.util.spec_from_file_location("record_run", REPO / "scripts" / "record_run.py")
record_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record_run)


def test_wall_times_are_read_from_the_book_run_output(tmp_path):
    log = tmp_path / "book.log"
    log.write_text(
        "[1/8] book/01_architecture.ipynb (profile='cpu') ... 3/20 cells [00:01]\r"
        "[1/8] book/01_architecture.ipynb (profile='cpu') ... ok in 5.2 s -> runs/cpu/book/01.ipynb\n"
        "    train-A-73-gaussian, seed 0: epoch 1 of at most 30\n"
        "[2/8] book/02_training.ipynb (profile='cpu') ... ok in 3012.0 s -> runs/cpu/book/02.ipynb\n"
        "[3/8] book/04_single_scale.ipynb (profile='cpu') ... FAILED after 10.0 s\n"
    )
    assert runner.notebook_seconds(log) == {"01_architecture": 5.2, "02_training": 3012.0}
    assert runner.notebook_seconds(None) == {}


def test_every_finished_training_and_box_regressor_is_a_row_with_its_seed_and_error(tmp_path):
    train = tmp_path / "train-D-73-from-a-0123456789"
    train.mkdir()
    (train / "result.json").write_text(
        json.dumps(
            {
                "config": "D",
                "scale": 73,
                "init": "from-a:/x/runs/cpu/train-A-73-gaussian-0123456789/checkpoint.pt",
                "epochs": 30,
                "lr_cuts": 1,
                "stopped": "epochs",
                "top1_err": 12.300000000000001,
                "top5_err": 2.0,
                "val_images": 2400,
                "seconds": 300.0,
                "used": {"seed": 2},
                "settings": {"config": "D", "scale": 73, "seed": None, "init": "from-a"},
                "provenance": {"commit": "abc", "date": "2026-11-30T22:00:00+00:00"},
            }
        )
    )
    box = tmp_path / "loc-PCR-fc-D-73-abcdef0123"
    box.mkdir()
    (box / "result.json").write_text(
        json.dumps(
            {"kind": "loc-PCR-fc", "epochs": 4, "final_loss": 0.1234567, "wall_s": 9.0, "provenance": {"commit": "abc"}}
        )
    )
    (box / "settings.json").write_text(json.dumps({"config": "D", "scale": 73, "seed": 0, "source": "D/384"}))
    (tmp_path / "eval-0123456789").mkdir()  # an evaluation is not a net
    (tmp_path / "eval-0123456789" / "result.json").write_text("{}")
    rows = {r["run"]: r for r in record_run.trained_nets(tmp_path)}
    assert set(rows) == {train.name, box.name}
    assert (rows[train.name]["config"], rows[train.name]["seed"], rows[train.name]["top1_err"]) == ("D", 2, 12.3)
    assert (rows[box.name]["config"], rows[box.name]["seed"], rows[box.name]["final_loss"]) == ("D", 0, 0.1235)
    assert rows[box.name]["init"] == "D/384" and rows[box.name]["top1_err"] is None
    assert (rows[train.name]["init"], rows[train.name]["started_from"]) == ("from-a", "train-A-73-gaussian-0123456789")


def test_an_earlier_designs_nets_in_the_same_folder_are_left_out(tmp_path):
    for name, epochs in (("train-A-73-gaussian-new0000000", 50), ("train-A-73-gaussian-old0000000", 30)):
        (tmp_path / name).mkdir()
        settings = {"config": "A", "scale": 73, "seed": None, "profile": {"epochs": epochs}}
        (tmp_path / name / "result.json").write_text(json.dumps({"epochs": epochs, "settings": settings}))
    rows = record_run.trained_nets(tmp_path, {"epochs": 50})
    assert [r["run"] for r in rows] == ["train-A-73-gaussian-new0000000"]
