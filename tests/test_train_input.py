"""The trainer refuses bad input with one clear line and never loses or silently corrupts a run
(issue 14): each case here failed before its fix. The last test kills tiny training runs with
SIGKILL at random points and checks that nothing is torn, orphaned, duplicated or changed."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from test_train import KNOBS, cli, metrics, tiny, weights  # noqa: F401  (tiny: the fixture)

from vggrepro.core import files, runs
from vggrepro.core.profiles import get_profile
from vggrepro.train import checkpoints
from vggrepro.train import recipe as train_mod
from vggrepro.train.recipe import Settings, train

A = dict(config="A", scale=37)


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess, rc: int = 2) -> str:
    """The CLI failed with ``rc`` and said why in one line, without a traceback."""
    assert done.returncode == rc, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("vggrepro train")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def interrupt_at(monkeypatch, call: int, error=KeyboardInterrupt, nan: bool = False) -> None:
    """Make the ``call``-th loss raise ``error`` (a Ctrl-C) or be NaN."""
    calls = {"n": 0}
    real = train_mod.loss_fn

    def loss(logits, labels):
        calls["n"] += 1
        if calls["n"] == call:
            if nan:
                return real(logits, labels) * float("nan")
            raise error()
        return real(logits, labels)

    monkeypatch.setattr(train_mod, "loss_fn", loss)


# -- case 1: --data means "train on this folder" ---------------------------------------------------


def test_data_flag_trains_on_that_folder_or_fails_naming_the_layout(tiny, tmp_path):
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    base = [a for a in cli(tiny, tmp_path / "run") if not a.startswith("--set=data_root=")]
    line = one_line_error(run_cli(*base, "--data", str(missing)))
    assert str(missing) in line and "not found" in line and "train/" in line
    assert not missing.exists()  # not filled with a generated set
    line = one_line_error(run_cli(*base, "--data", str(empty)))
    assert "no train/ folder" in line and not any(empty.iterdir())

    # an ILSVRC-layout folder is read as it is, and named in the run key
    done = run_cli(*base, "--out", str(tmp_path / "real"), "--data", str(tiny.data_path), "--max-steps", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    settings = json.loads((tmp_path / "real" / "settings.json").read_text())
    assert settings["profile"]["data_kind"] == "imagenet"
    assert settings["profile"]["data_root"] == str(tiny.data_path) and settings["data"]


# -- case 2: --out holding another run -----------------------------------------------------------


def test_out_holding_a_finished_run_with_other_settings_is_an_error(tiny, tmp_path):
    out = tmp_path / "x"
    train(tiny, Settings(**A, max_steps=2), out, progress=False)
    assert train(tiny, Settings(**A, max_steps=2), out, progress=False)["steps"] == 2  # the same: re-used
    with pytest.raises(
        ValueError,
        match=r"other settings: asked config=\"E\" \(the folder's: \"A\"\), "
        r"lr=0.5 \(the folder's: null\).*another --out",
    ):
        train(tiny, Settings(config="E", scale=37, lr=0.5, max_steps=2), out, progress=False)


# -- case 3: fewer images than one batch ------------------------------------------------------------


def test_training_set_smaller_than_one_batch_is_an_error(tiny, tmp_path):
    out = tmp_path / "big-batch"
    with pytest.raises(ValueError, match="64 usable images, fewer than one batch of 128.*--batch-size"):
        train(tiny.replace(batch_size=128), Settings(**A), out, progress=False)
    assert not (out / "result.json").exists() and not (out / "checkpoint.pt").exists()


# -- case 4: counts and rates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(epochs=0), "epochs=0"),
        (dict(lr=0.0), "lr=0.0"),
        (dict(max_steps=-5), "max_steps=-5"),
        (dict(lr=float("nan")), "lr=nan"),
        (dict(dropout=1.5), "dropout=1.5"),
        (dict(seed=-1), "seed=-1"),
        (dict(init_std=0.0), "init_std=0.0"),
    ],
)
def test_counts_and_rates_are_checked(tiny, tmp_path, bad, words):
    with pytest.raises(ValueError, match=words):
        train(tiny, Settings(**A, **bad), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_the_values_used_are_recorded(tiny, tmp_path):
    out = tmp_path / "used"
    result = train(tiny, Settings(**A, max_steps=2), out, progress=False)
    used = dict(lr=tiny.lr, epochs=2, max_steps=2, dropout=0.0, seed=0, init_std="fan-in", threads=1, workers=0)
    assert result["used"] == used
    assert json.loads((out / "settings.json").read_text())["used"] == used


# -- case 6: a kill before the first checkpoint --------------------------------------------------


def test_interrupt_before_the_first_checkpoint_does_not_duplicate_metrics(tiny, tmp_path, monkeypatch):
    profile = tiny.replace(batch_size=4, checkpoint_every=100)  # 16 steps an epoch; logged at step 10
    out = tmp_path / "early"
    interrupt_at(monkeypatch, 12)
    with pytest.raises(KeyboardInterrupt, match="before the first checkpoint"):
        train(profile, Settings(**A), out, progress=False)
    assert not (out / "checkpoint.pt").exists() and [r["step"] for r in metrics(out)] == [10]
    monkeypatch.undo()
    train(profile, Settings(**A), out, progress=False)
    steps = [(r["step"], "top1_err" in r) for r in metrics(out)]
    assert steps == [(10, False), (16, True), (20, False), (30, False), (32, True)]


# -- case 7: data edited in place ------------------------------------------------------------------


def test_data_edited_in_place_gets_a_new_run_key(tiny, tmp_path):
    root = tmp_path / "mine"
    shutil.copytree(tiny.data_path, root)
    profile = tiny.replace(data_kind="imagenet", data_root=str(root))
    s = Settings(**A)
    key = s.key(profile)
    (root / "stats.json").write_text("{}")  # what the package writes there is not the data
    assert s.key(profile) == key
    image = next((root / "train").rglob("*.JPEG"))
    image.write_bytes(image.read_bytes() + b"\0")
    assert s.key(profile) != key


# -- the NaN message ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "every, said",
    [(100, "No checkpoint was written before it"), (3, r"last good checkpoint is kept at .*checkpoint.pt \(step 3\)")],
)
def test_nan_message_names_the_real_checkpoint(tiny, tmp_path, monkeypatch, every, said):
    interrupt_at(monkeypatch, 5, nan=True)
    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError, match=f"step 5.*{said}"):
        train(tiny.replace(checkpoint_every=every), Settings(**A), out, progress=False)
    if every == 3:
        assert checkpoints.load(out / "checkpoint.pt")["step"] == 3


# -- broken checkpoints ----------------------------------------------------------------------------


class Unsafe:  # an object a weights-only load refuses
    pass


def test_empty_unsafe_and_meta_less_checkpoints_are_refused_clearly(tiny, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.*0 bytes"):
        checkpoints.load(empty)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": {}, "meta": Unsafe()}, unsafe)
    with pytest.raises(ValueError, match="not a readable checkpoint.*weights_only=True") as e:
        checkpoints.load(unsafe)
    assert "weights_only` set to `False" not in str(e.value) and "=False" not in str(e.value)
    no_meta = tmp_path / "no-meta.pt"
    torch.save({"model": {}, "meta": {}}, no_meta)
    with pytest.raises(ValueError, match="no config, width, crop, num_classes in its meta"):
        checkpoints.model_from_checkpoint(no_meta)

    # the same through the trainer: --init checkpoint:, and a resume from an empty checkpoint
    line = one_line_error(run_cli(*cli(tiny, tmp_path / "i"), "--init", f"checkpoint:{empty}"))
    assert "empty (0 bytes)" in line
    line = one_line_error(run_cli(*cli(tiny, tmp_path / "j"), "--init", f"checkpoint:{no_meta}"))
    assert "meta" in line
    out = tmp_path / "resume"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    line = one_line_error(run_cli(*cli(tiny, out), "--resume"))
    assert "checkpoint.pt is empty" in line


def test_resuming_another_runs_checkpoint_is_an_error(tiny, tmp_path):
    done = train(tiny, Settings(**A, max_steps=2), tmp_path / "a", progress=False)
    for other in (tmp_path / "e", tmp_path / "a2"):
        other.mkdir()
        shutil.copy(Path(done["run_dir"]) / "checkpoint.pt", other / "checkpoint.pt")
    with pytest.raises(ValueError, match="checkpoint of another run.*config=A.*--init checkpoint:PATH"):
        train(tiny, Settings(config="E", scale=37), tmp_path / "e", progress=False)
    with pytest.raises(ValueError, match="checkpoint of another run"):  # the same net, another run's training
        train(tiny, Settings(**A, lr=0.5), tmp_path / "a2", progress=False)
    meta_less = tmp_path / "m"
    meta_less.mkdir()
    torch.save({"model": {}, "meta": {}}, meta_less / "checkpoint.pt")
    with pytest.raises(ValueError, match="in its meta"):
        train(tiny, Settings(**A), meta_less, progress=False)


# -- torn run files ------------------------------------------------------------------------------


def test_torn_run_files_are_named_and_a_torn_metrics_line_is_dropped(tiny, tmp_path, monkeypatch):
    out = tmp_path / "torn"
    train(tiny, Settings(**A, max_steps=2), out, progress=False)
    good = (out / "result.json").read_text()
    (out / "result.json").write_text(good[:40])
    with pytest.raises(ValueError, match=r"result.json is not valid JSON.*delete it and rerun"):
        train(tiny, Settings(**A, max_steps=2), out, progress=False)
    (out / "result.json").unlink()  # the fix the message gives: the result is made again
    assert train(tiny, Settings(**A, max_steps=2), out, progress=False, resume=True)["steps"] == 2
    settings = (out / "settings.json").read_text()
    (out / "settings.json").write_text(settings[:30])
    with pytest.raises(ValueError, match="settings.json is not valid JSON"):
        train(tiny, Settings(**A, max_steps=2), out, progress=False)

    # a kill while a metrics line was being appended: the torn line goes on resume
    out = tmp_path / "metrics"
    interrupt_at(monkeypatch, 12)
    with pytest.raises(KeyboardInterrupt, match=r"last checkpoint is .*checkpoint.pt \(step 11\).*--resume"):
        train(tiny, Settings(**A), out, progress=False)
    monkeypatch.undo()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 1, "lo')
    train(tiny, Settings(**A), out, progress=False)
    assert [r["step"] for r in metrics(out)] == [8, 10, 16]  # every line parses, none twice


# -- data with more classes than the net ---------------------------------------------------------


def test_more_classes_than_the_net_is_an_error_before_training(tiny, tmp_path):
    with pytest.raises(ValueError, match="holds 4 classes but the net has num_classes=3: pass --set num_classes=4"):
        train(tiny.replace(num_classes=3, data_kind="imagenet"), Settings(**A), tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "checkpoint.pt").exists()


# -- one-line errors of the command line ------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--checkpoint-every", "0", "--set=checkpoint_every=0"], "checkpoint_every=0 must be >= 1"),
        (["--set=crop=abc"], "crop='abc' is not of type int"),
        (["--set=num_classes=1.5"], "num_classes=1.5 is not of type int"),
        (["--epochs", "0"], "epochs=0"),
        (["--lr", "0"], "lr=0.0"),
    ],
)
def test_bad_flags_are_one_line_errors(tiny, tmp_path, args, words):
    line = one_line_error(run_cli(*cli(tiny, tmp_path / "r"), *args))
    assert words in line


def test_the_vggrepro_command_gives_the_same_one_line_errors(tiny, tmp_path):
    args = cli(tiny, tmp_path / "r", "--lr", "0")  # python -m vggrepro train ...
    done = run_cli(str(Path(sys.executable).parent / "vggrepro"), *args[3:])  # the installed command
    assert "lr=0.0" in one_line_error(done)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error(tiny, tmp_path):
    line = one_line_error(run_cli(*cli(tiny, tmp_path / "r"), "--device", "cuda"))
    assert "CUDA is not available" in line and "--device cpu" in line


# -- Ctrl-C, full disks, permissions, temporaries, locks, threads -------------------------------


def test_ctrl_c_exits_130_saying_where_the_checkpoint_is(tiny, tmp_path):
    out = tmp_path / "int"
    # A shell that starts the test suite in the background (`cmd &`) hands its children SIGINT
    # ignored, and Python then installs no Ctrl-C handler: give the run the default back.
    proc = subprocess.Popen(
        cli(tiny, out, "--set=epochs=6"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            if checkpoints.load(out / "checkpoint.pt")["step"] >= 3:
                break
        except (ValueError, FileNotFoundError):
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert f"last checkpoint is {out / 'checkpoint.pt'} (step " in err and "--resume" in err


def test_unwritable_out_is_a_one_line_error_naming_the_path(tiny, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_line_error(run_cli(*cli(tiny, blocker / "run")))
    assert str(blocker) in line and "Traceback" not in line

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*settings.json: No space left on device"):
        train(tiny, Settings(**A), tmp_path / "full", progress=False)
    assert not list((tmp_path / "full").glob(".*.tmp"))


def test_run_files_have_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        files.atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_stale_temporaries_of_a_killed_write_are_removed(tiny, tmp_path, monkeypatch):
    out = tmp_path / "tmp"
    interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(tiny, Settings(**A), out, progress=False)
    monkeypatch.undo()
    (out / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half")
    (out / ".metrics.jsonl.x.tmp").write_bytes(b"half")
    train(tiny, Settings(**A), out, progress=False)
    assert not list(out.glob(".*.tmp"))


def test_a_run_waiting_for_anothers_lock_says_so(tmp_path, capsys):
    run = runs.Run("ci", {"kind": "test"}, root=tmp_path)
    held, release = threading.Event(), threading.Event()

    def holder():
        with run.lock():
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    threading.Timer(0.3, release.set).start()
    with run.lock():
        pass
    t.join()
    assert f"waiting for run {run.dir}" in capsys.readouterr().err


def test_threads_and_workers_are_capped_at_the_cpus(monkeypatch, capsys):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(train_mod, "_SAID", set())
    profile = get_profile("imagenet")
    assert train_mod._cpu_budget(profile) == (2, 2)
    assert train_mod._cpu_budget(profile) == (2, 2)
    err = capsys.readouterr().err
    assert err.count("asks for 16 threads and 16 workers; this machine has 2 CPUs") == 1
    assert train_mod._cpu_budget(get_profile("ci")) == (2, 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert train_mod._cpu_budget(get_profile("ci")) == (2, 0)  # its stored outputs are 2 threads' bits
    assert train_mod._cpu_budget(get_profile("gpu")) == (2, 1)


# -- fault injection ---------------------------------------------------------------------------


def check_intact(out: Path) -> None:
    """Nothing torn: the checkpoint loads, every JSON file parses, every line of metrics.jsonl but a
    last one cut by the kill parses."""
    if (out / "checkpoint.pt").exists():
        checkpoints.load(out / "checkpoint.pt")
    for name in ("settings.json", "result.json"):
        if (out / name).exists():
            json.loads((out / name).read_text())
    if (out / "metrics.jsonl").exists():
        for line in (out / "metrics.jsonl").read_text().splitlines()[:-1]:
            json.loads(line)


def test_random_sigkills_never_tear_duplicate_or_change_a_run(tiny, tmp_path):
    # 32 steps (batch 4), a checkpoint every other step: many kills land in a write.
    extra = ("--set=batch_size=4", "--set=checkpoint_every=2")
    whole, out = tmp_path / "whole", tmp_path / "killed"
    t = time.perf_counter()
    subprocess.run(cli(tiny, whole, *extra), check=True, capture_output=True, timeout=300)
    duration = time.perf_counter() - t
    rng = random.Random(14)
    for attempt in range(4):
        proc = subprocess.Popen(
            cli(tiny, out, *extra, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if attempt % 2 == 0:  # anywhere: start-up, data, training, the result
            time.sleep(rng.uniform(0.2, duration))
        else:  # inside a checkpoint write (its temporary file exists), after a random step
            target, deadline = rng.randint(2, 30), time.time() + 120
            while proc.poll() is None and time.time() < deadline:
                try:
                    if checkpoints.load(out / "checkpoint.pt")["step"] >= target:
                        break
                except (ValueError, FileNotFoundError):
                    pass
                time.sleep(0.005)
            while proc.poll() is None and time.time() < deadline and not list(out.glob(".checkpoint.pt.*.tmp")):
                time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_intact(out)
    subprocess.run(cli(tiny, out, *extra, "--resume"), check=True, capture_output=True, timeout=300)
    check_intact(out)
    assert not list(out.glob(".*.tmp"))
    steps = [(r["step"], r["epoch"]) for r in metrics(out)]
    assert len(steps) == len(set(steps))
    assert metrics(out) == metrics(whole)
    a, b = weights(whole), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
