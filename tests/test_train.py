"""The trainer against independent facts: a resumed run equals an uninterrupted one, two
data-parallel processes equal one, a NaN stops the run and keeps the last good checkpoint, and a
broken checkpoint is refused clearly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vggrepro.core import devices
from vggrepro.core.profiles import get_profile
from vggrepro.core.scales import TrainScale
from vggrepro.train import checkpoints
from vggrepro.train import recipe as train_mod
from vggrepro.train.recipe import PlateauSchedule, Settings, train

# A tiny profile: 4 classes, 32 px crops, width 1/16; 8 steps an epoch.
KNOBS = dict(
    num_classes=4,
    crop=32,
    width=1 / 16,
    batch_size=8,
    epochs=2,
    checkpoint_every=1,
    threads=1,
    synth_train_per_class=16,
    synth_val_per_class=4,
    synth_min_side=(40, 56),
    lr_patience=5,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synth-tiny"
    profile = get_profile("ci", data_root=str(root), **KNOBS)
    from vggrepro import data

    data.ensure_synthetic(profile, verbose=False)
    return profile


def cli(profile, out: Path, *extra: str) -> list[str]:
    knobs = [f"--set={k}={v!r}" for k, v in KNOBS.items()] + [f"--set=data_root={profile.data_root!r}"]
    return [
        sys.executable,
        "-m",
        "vggrepro",
        "train",
        "--profile",
        "ci",
        "--config",
        "A",
        "--scale",
        "37",
        "--out",
        str(out),
        "--no-progress",
        *knobs,
        *extra,
    ]


def weights(run_dir: Path) -> dict:
    return checkpoints.load(run_dir / "checkpoint.pt")["model"]


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in rows]  # timing is not a result


def test_plateau_schedule_cuts_three_times_then_stops():
    s = PlateauSchedule(1e-2, patience=0)
    lrs = []
    for acc in [10, 20, 20, 25, 25, 25, 25, 25]:
        s.step(acc)
        lrs.append((s.lr, s.stop))
    # 20 repeats: cut 1; 25 improves; then each plateau epoch cuts, until the 4th plateau stops.
    assert [round(lr, 8) for lr, _ in lrs] == [1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-5, 1e-5, 1e-5]
    assert [stop for _, stop in lrs] == [False] * 6 + [True, True]


def test_a_stall_inside_the_hold_is_not_a_plateau():
    """D's recorded start at cpu (validation accuracy flat over epochs 3-5, then rising): patience
    2 cut the lr after epoch 5; holding the first 10 epochs keeps it, and a later stall still cuts."""
    accs = [9.5, 14.2, 17.6, 17.4, 17.5, 17.3, 22.0, 24.0, 26.0, 27.0, 27.0, 27.0, 27.0]
    held, plain = PlateauSchedule(1e-2, patience=2, hold=10), PlateauSchedule(1e-2, patience=2)
    for acc in accs:
        held.step(acc)
        plain.step(acc)
    assert plain.cuts == 2  # one cut inside the stall (epoch 6), one at the end
    assert held.cuts == 1 and round(held.lr, 8) == 1e-3  # only the late plateau (epochs 11-13)
    resumed = PlateauSchedule(1e-2, patience=2, hold=10)
    resumed.load_state_dict(held.state_dict())
    assert resumed.state_dict() == held.state_dict()


def test_resume_after_sigkill_equals_uninterrupted_run(tiny, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(cli(tiny, whole), check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(cli(tiny, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpt = killed / "checkpoint.pt"
        if ckpt.exists():
            try:
                if checkpoints.load(ckpt)["step"] >= 5:
                    break
            except ValueError:
                pass  # caught between os.replace calls: cannot happen, but never mind
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists()
    step_killed = checkpoints.load(killed / "checkpoint.pt")["step"]
    assert 5 <= step_killed < 16

    subprocess.run(cli(tiny, killed, "--resume"), check=True, capture_output=True, timeout=300)
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert metrics(whole) == metrics(killed)
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (whole, killed))
    assert (ra["top1_err"], ra["steps"]) == (rb["top1_err"], rb["steps"])


def one_and_two_processes(tiny, tmp_path, *extra):
    """The same run in one process and under torchrun with 2 gloo processes: their weights."""
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(cli(tiny, one, *extra), check=True, capture_output=True, timeout=300)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(launch + cli(tiny, two, *extra)[1:], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return weights(one), weights(two)


def test_two_gloo_processes_equal_one_with_the_same_global_batch(tiny, tmp_path):
    # Dropout draws its masks per process, so 1 and 2 processes agree only in distribution;
    # without it the two computations are the same sums split differently.
    a, b = one_and_two_processes(tiny, tmp_path, "--dropout", "0", "--max-steps", "6")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_mod.loss_fn

    def poisoned(logits, labels):
        calls["n"] += 1
        loss = real(logits, labels)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(train_mod, "loss_fn", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError, match="step 4.*last good checkpoint"):
        train(tiny, Settings(config="A", scale=37), out, progress=False)
    ckpt = checkpoints.load(out / "checkpoint.pt")
    assert ckpt["step"] == 3
    model, meta = checkpoints.model_from_checkpoint(out / "checkpoint.pt")
    assert meta["config"] == "A" and not (out / "result.json").exists()


def test_truncated_checkpoint_is_refused_clearly(tmp_path):
    from vggrepro import models
    from vggrepro.data.transforms import Preprocess

    net = models.build("A", width=1 / 16, num_classes=4, crop=32)
    path = tmp_path / "c.pt"
    checkpoints.save({"model": net.state_dict(), "meta": checkpoints.model_meta(net, Preprocess((1, 2, 3)))}, path)
    checkpoints.model_from_checkpoint(path)  # the whole file loads
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint.*truncated"):
        checkpoints.model_from_checkpoint(path)
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoints.load(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.load(tmp_path / "missing.pt")


def test_unknown_config_and_init_are_clear_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown config 'F'"):
        train(tiny, Settings(config="F", scale=37), tmp_path / "f", progress=False)
    with pytest.raises(ValueError, match="unknown init"):
        train(tiny, Settings(config="A", scale=37, init="orthogonal"), tmp_path / "g", progress=False)


def test_run_key_of_a_synthetic_set_does_not_depend_on_its_folder(tiny, tmp_path):
    # The synthetic set is a function of the synth_* knobs and the seed: a checkout in another
    # folder must find the same runs; a user's ImageNet copy is named by its folder.
    moved = tiny.replace(data_root=str(tmp_path / "elsewhere"))
    s = Settings(config="A", scale=37)
    assert s.key(moved) == s.key(tiny)
    assert s.key(moved.replace(synth_train_per_class=17)) != s.key(tiny)
    imagenet = get_profile("imagenet")
    assert s.key(imagenet) != s.key(imagenet.replace(data_root=str(tmp_path / "other-imagenet")))


def test_settings_parse_S_once_and_key_it_as_before(tiny):
    """However S is given (a number, a pair, the paper's or the command line's text, a TrainScale),
    the settings hold one TrainScale, and the run's key keeps its old form (so old runs are found)."""
    fixed = [Settings(config="A", scale=s) for s in (37, "37", TrainScale(37, 37))]
    jittered = [Settings(config="A", scale=s) for s in ((37, 73), [37, 73], "37,73", "[37;73]", TrainScale(37, 73))]
    assert {s.scale for s in fixed} == {TrainScale(37, 37)} and {s.scale for s in jittered} == {TrainScale(37, 73)}
    assert {s.key(tiny)["scale"] == 37 for s in fixed} == {True}
    assert {str(s.key(tiny)["scale"]) for s in jittered} == {"[37, 73]"}
    with pytest.raises(ValueError, match="Smin <= Smax"):
        Settings(config="A", scale="73,37")


def test_a_resume_forgets_an_epochs_validation_the_checkpoint_predates(tmp_path):
    """Killed between an epoch's validation line and the epoch's last save, the run resumes from the
    checkpoint of the epoch's last step (same step, epoch not done) and validates again: the first
    line must go, or the log holds it twice (seen once in CI, in the SIGKILL test)."""
    from vggrepro.train.loop import read_metrics, trim_metrics

    path = tmp_path / "metrics.jsonl"
    lines = [
        dict(step=5, epoch=0, loss=1.2, lr=0.01),
        dict(step=8, epoch=1, top1_err=75.0, top5_err=0.0, lr=0.01),
        dict(step=10, epoch=1, loss=1.1, lr=0.01),
    ]
    for epochs_done, expected in ((0, lines[:1]), (1, lines[:2])):
        path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 11, "ep')  # a torn last line
        trim_metrics(path, last_step=8, epochs_done=epochs_done)
        assert read_metrics(path) == expected


def test_a_gpu_speed_writes_the_last_checkpoint_but_not_one_per_epoch(tiny, tmp_path, monkeypatch):
    """Checkpoints at most every ``speed.checkpoint_seconds`` (a D checkpoint is 1 GB), and always
    the last one, which later chapters read; a CPU speed (0 s) writes one every time, as before."""
    profile = tiny.replace(epochs=3, checkpoint_every=1000)
    saved = []
    real = checkpoints.save
    monkeypatch.setattr(checkpoints, "save", lambda obj, path: (saved.append(obj["step"]), real(obj, path)))
    rare = devices.Speed("cpu", checkpoint_seconds=1e9)
    train(profile, Settings(config="A", scale=profile.S(256)), tmp_path / "rare", progress=False, speed=rare)
    assert saved == [3 * 8]  # three epochs of 8 steps, one checkpoint at the end
    saved.clear()
    train(profile, Settings(config="A", scale=profile.S(256)), tmp_path / "every", progress=False)
    assert saved == [8, 16, 24]  # the CPU: each epoch's end


def test_validation_images_are_decoded_once_per_set(tiny, monkeypatch):
    """Each training run's validation crops come from the one decoded copy of a small split (a
    chapter training seven nets decodes its validation images once), with the same pixels."""
    from vggrepro import data
    from vggrepro.data import images
    from vggrepro.data.transforms import Preprocess
    from vggrepro.train.validation import CentreCrops, CentreView

    val = data.ILSVRC(tiny.data_path, "val", boxes=False)
    view = CentreView(tiny.crop, tiny.S(256), Preprocess(mean=(120.0, 110.0, 100.0)))
    first = CentreCrops(val, view, "cpu", torch.channels_last)
    decoded = []
    real = images.decode_image
    monkeypatch.setattr(images, "decode_image", lambda p: (decoded.append(p), real(p))[1])
    again = CentreCrops(data.ILSVRC(tiny.data_path, "val", boxes=False), view, "cpu", torch.channels_last)
    assert decoded == []
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
