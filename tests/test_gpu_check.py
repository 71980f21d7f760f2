"""The GPU check and the GPU window on the CPU at toy size (issues 17 and 33): the whole control
flow, a SIGINT in the middle of a step, a step over its cap, the deadline; the JSON holds every
finished step and is valid after each. CI runs these so that the scripts work the day a GPU is there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vggrepro.bench import gpu_check, gpu_steps
from vggrepro.cli import main as cli
from vggrepro.core import runs

ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_runs_every_step_and_records_it(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert cli.main(["bench", "gpu", "--dry-run", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    steps = record["steps"]
    assert set(steps) == set(record["order"]) and record["order"] == [name for name, _, _ in gpu_check.PLAN]
    assert all(s["ok"] for s in steps.values()), {k: s.get("error") for k, s in steps.items()}
    assert record["status"] == "finished" and not record["not_run"]
    assert len(steps["bf16+cl"]["img_per_s_windows"]) == 3 and "first_steps_seconds" in steps["bf16+cl"]
    assert steps["train_loop"]["steps_timed"] == gpu_check.TOY.loop_steps and steps["train_loop"]["img_per_s"] > 0
    assert {"validation_seconds", "checkpoint_save_seconds"} <= set(steps["train_loop"])
    assert sorted(steps["dense_eval"]["by_Q"], key=int) == ["37", "55", "73"]
    assert steps["jpeg_decode"]["same_decoder_for_training_and_evaluation"]  # PIL both ways on a CPU
    assert steps["resume"]["interrupted_after_step"] == 2 and steps["resume"]["passed"]
    assert steps["resume"]["bit_equal"]  # deterministic on a CPU
    assert {"cuda_init_seconds", "data_seconds", "stats_seconds"} <= set(record["one_time"])
    assert record["dry_run"] and record["provenance"]["commit"] and record["seconds"] < 60
    # each step's figures printed as one JSON line, as they come
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [x["gpu_check_step"] for x in lines] == record["order"]


def quick_plan(monkeypatch, middle):
    """A short plan: a real step, ``middle``, then a real step."""
    plan = (("matmul", gpu_steps.matmul, 20), ("middle", middle, 1.0), ("dense_eval", gpu_steps.dense_eval, 20))
    monkeypatch.setattr(gpu_check, "PLAN", plan)


def test_a_sigint_in_the_middle_of_a_step_keeps_every_finished_step(tmp_path, monkeypatch):
    def interrupted(setup, found):
        found["half"] = "measured before the signal"
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the signal lands here

    quick_plan(monkeypatch, interrupted)
    out = tmp_path / "gpu_check.json"
    record = gpu_check.check(True, out)
    on_disk = json.loads(out.read_text())  # valid JSON, the same as returned
    assert record["exit_code"] == 130 and on_disk["status"] == "stopped by SIGINT"
    assert on_disk["steps"]["matmul"]["ok"]
    middle = on_disk["steps"]["middle"]
    assert not middle["ok"] and middle["error"] == "stopped by SIGINT" and middle["half"]
    assert middle["seconds"] < 2 and on_disk["not_run"] == {"dense_eval": "stopped by SIGINT"}


def test_a_step_over_its_cap_is_recorded_and_the_next_still_runs(tmp_path, monkeypatch):
    def slow(setup, found):
        found["windows"] = [1.0]
        time.sleep(5)

    quick_plan(monkeypatch, slow)
    out = tmp_path / "gpu_check.json"
    record = gpu_check.check(True, out)
    steps = json.loads(out.read_text())["steps"]
    assert record["exit_code"] == 0 and record["status"] == "finished"
    assert not steps["middle"]["ok"] and "over its cap of 1 s" in steps["middle"]["error"]
    assert steps["middle"]["windows"] == [1.0] and steps["middle"]["seconds"] < 2
    assert steps["dense_eval"]["ok"]


def test_the_deadline_leaves_later_steps_out_and_says_so(tmp_path, monkeypatch):
    quick_plan(monkeypatch, lambda setup, found: None)
    prepare = gpu_check.prepare  # a setup that takes 0.2 s, so the deadline is reached before any step

    def slow_prepare(*args):
        time.sleep(0.2)
        return prepare(*args)

    monkeypatch.setattr(gpu_check, "prepare", slow_prepare)
    record = gpu_check.check(True, tmp_path / "c.json", budget_s=gpu_check.MIN_LEFT_S + 0.1)
    assert record["status"] == "finished" and not record["steps"]
    assert set(record["not_run"]) == {"matmul", "middle", "dense_eval"}
    assert all("deadline" in why for why in record["not_run"].values())


def test_the_output_goes_to_OUT_when_it_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpu_check.default_out(False) == tmp_path / "gpu_check.json"
    monkeypatch.delenv("OUT")
    assert gpu_check.default_out(False).parent.name == "results"


def test_the_check_is_planned_to_fit_five_minutes_on_an_H100():
    for rate in (1500, 2500, 4000):
        assert gpu_check.expected_seconds(rate)["total"] <= gpu_check.BUDGET_S


def test_the_commit_travels_without_git(tmp_path, monkeypatch):
    copy = tmp_path / "copy"  # a working tree copied without .git
    copy.mkdir()
    monkeypatch.setattr(runs, "find_root", lambda: copy)
    monkeypatch.delenv(runs.COMMIT_ENV, raising=False)
    assert runs.git_commit() == "unknown"
    (copy / runs.COMMIT_STAMP).write_text("abc123+dirty\n")
    assert runs.git_commit() == "abc123+dirty"
    monkeypatch.setenv(runs.COMMIT_ENV, "def456")
    assert runs.git_commit() == "def456"


def test_gpu_window_dry_run_runs_on_the_cpu_in_under_a_minute(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_window.sh"), "--dry-run"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert time.perf_counter() - t < 60
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) <= 8 and {"gpu_window.json", "gpu_check.json", "train_metrics.jsonl"} <= set(files)
    summary = json.loads((tmp_path / "gpu_window.json").read_text())
    assert summary["status"] == "finished" and summary["phases"]["check"]["exit_code"] == 0
    train = summary["phases"]["train"]
    assert train["ok"] and train["steps_done"] == train["steps_asked"] > 0 and train["loss_curve"]
    assert json.loads((tmp_path / "gpu_check.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("stop", [signal.SIGTERM])
def test_gpu_check_killed_from_outside_keeps_its_finished_steps(tmp_path, stop):
    """The check in its own process, stopped by ``timeout``'s signal once a step is on disk."""
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, "-m", "vggrepro", "bench", "gpu", "--dry-run", "--out", str(out)]
    child = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
    for line in child.stdout:  # the first step's line: it is on disk
        if line.startswith('{"'):
            break
    child.send_signal(stop)
    child.communicate(timeout=60)
    record = json.loads(out.read_text())
    assert child.returncode == 128 + stop and record["status"] == f"stopped by {stop.name}"
    assert record["steps"]["matmul"]["ok"] and record["not_run"]
