"""scripts/chain_time.py: a chain's chapters split into training, evaluation and the rest, by hand."""

import datetime as dt
import importlib.util
import json

import pytest

from vggrepro.core.runs import REPO

spec = importlib.util.spec_from_file_location("chain_time", REPO / "scripts" / "chain_time.py")
chain_time = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chain_time)

BEGIN = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)


def run(folder, name, minutes_after, seconds):
    (folder / name).mkdir()
    date = (BEGIN + dt.timedelta(minutes=minutes_after)).isoformat()
    (folder / name / "result.json").write_text(json.dumps({"seconds": seconds, "provenance": {"date": date}}))


def test_each_run_is_its_chapters_by_when_it_ended_and_reused_runs_cost_nothing(tmp_path):
    run(tmp_path, "train-A-x", 5, 240.0)  # chapter 2: 0-10 min
    run(tmp_path, "eval-1", 9, 30.0)
    run(tmp_path, "train-D-x", 14, 200.0)  # chapter 4: 10-20 min
    run(tmp_path, "train-E-old", -60, 500.0)  # trained before the chain began
    seconds = {"02_training": 600.0, "04_single_scale": 600.0}
    found = chain_time.split(BEGIN, seconds, chain_time.runs_by_kind(tmp_path))
    two, four = found["chapters"]
    assert (two["training"], two["evaluation"], two["rest"]) == (240.0, 30.0, 330.0)
    assert (four["training"], four["evaluation"], four["rest"]) == (200.0, 0, 400.0)
    assert found["reused"] == {"runs": 1, "their_seconds": 500.0}
    assert found["total"]["seconds"] == 1200.0


def test_the_log_must_begin_with_the_date(tmp_path):
    log = tmp_path / "chain.log"
    log.write_text("2026-12-07T10:00:00Z\n[1/10] book/01_architecture.ipynb (profile='cpu') ... ok in 5.0 s -> x\n")
    assert chain_time.started(log) == BEGIN
    log.write_text("[1/10] book/01 ...\n")
    with pytest.raises(SystemExit, match="not the date the run began"):
        chain_time.started(log)
