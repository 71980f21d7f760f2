"""The one command for a short GPU window (``bash scripts/gpu_window.sh``), in at most 9 minutes.

1. The GPU check (:mod:`vggrepro.bench.gpu_check`), at most 5 minutes, in its own process.
2. The `gpu` profile's data set and training statistics, made here (timed).
3. As much of the `gpu` book's chapter 2 as fits: net D at S = 256 (224 px crops) trained through
   ``vggrepro train`` for as many steps as the time left allows at the rate the check measured,
   with its loss curve, epochs and rate.

Everything it measures goes into the output folder (``$OUT`` or ``--out``; 6 files, each small):
``gpu_window.json`` (the phases, the training's loss curve and rate, provenance; rewritten after
every phase), ``gpu_check.json`` and ``gpu_check.log``, ``train.log``, ``train_metrics.jsonl`` and
``train_result.json``. SIGINT/SIGTERM stop the phase in flight, and what is finished stays.
``--dry-run`` runs the same control flow on the CPU with tiny shapes in well under a minute.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import data
from ..core.files import atomic_write_json, check_writable
from ..core.profiles import get_profile
from ..core.runs import COMMIT_STAMP, REPO, git_commit, provenance, read_metrics
from .gpu_check import Stop, capped, signals_held, stop_on_signals


@dataclasses.dataclass(frozen=True)
class Window:
    """The window's times (seconds) and the chapter-2 training's size."""

    total_s: float  # the plan ends by then (the shell's hard limit is a little above)
    check_s: float  # the GPU check's own budget
    data_s: float  # cap of the data phase
    train_overhead_s: float  # what a training process spends besides its steps (start, data, saves)
    fallback_rate: float  # D's img/s when the check measured none
    most_steps: int | None  # None: the whole run the profile allows
    knobs: tuple[str, ...] = ()  # `vggrepro train --set` overrides
    config: str = "D"
    device: str = "auto"


REAL = Window(525, 300, 150, 75, fallback_rate=1500.0, most_steps=None)
TOY = Window(
    60, 30, 20, 5, fallback_rate=50.0, most_steps=10, device="cpu",
    knobs=("width=0.0625", "crop=32", "batch_size=8", "num_classes=4", "synth_train_per_class=8",
           "synth_val_per_class=2", "synth_min_side=(40, 56)", "epochs=3"),
)  # fmt: skip
MIN_STEPS = 10  # fewer would measure nothing worth the start (the dry run's cap is lower)
GRACE_S = 20  # a stopped child's time to write what it has before it is killed


def _profile(window: Window, work: Path):
    """The `gpu` profile as the training command will see it (the dry run's knobs, on a set of its own)."""
    knobs = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in window.knobs)}
    if window.knobs:
        knobs["data_root"] = str(work / "data")
    return get_profile("gpu", **knobs)


def _run(cmd: list[str], log: Path, seconds: float) -> dict:
    """Run ``cmd`` with its output in ``log`` (and on our stdout); SIGINT at ``seconds``, kill after a grace."""
    t = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        try:
            with capped(seconds):
                for line in child.stdout:
                    f.write(line)
                    f.flush()
                    print(line, end="", flush=True)
                code = child.wait()
            outcome = "finished"
        except BaseException as e:  # its limit, or a signal to us: let the child write what it has
            child.send_signal(signal.SIGINT)
            try:
                code = child.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            if isinstance(e, Stop):
                raise
            outcome = f"stopped at its limit of {seconds:.0f} s"
    return dict(outcome=outcome, exit_code=code, seconds=round(time.perf_counter() - t, 1))


def _rate(check: Path, fallback: float) -> tuple[float, str]:
    """D's training img/s for planning: the check's training loop, else its bf16 figure, else ``fallback``."""
    try:
        steps = json.loads(check.read_text())["steps"]
    except (OSError, ValueError, KeyError):
        return fallback, "assumed (no GPU check record)"
    for name in ("train_loop", "bf16+cl"):
        if steps.get(name, {}).get("img_per_s"):
            return float(steps[name]["img_per_s"]), f"the check's {name}"
    return fallback, "assumed (the check measured no training rate)"


def _device(check: Path) -> str:
    try:
        return json.loads(check.read_text())["provenance"]["device"]
    except (OSError, ValueError, KeyError):
        return "unknown (no GPU check record)"


def window_run(dry_run: bool, out: Path, work: Path | None = None) -> dict:
    """Run the window's phases into ``out``; the summary (also ``out/gpu_window.json``)."""
    start = time.perf_counter()
    window = TOY if dry_run else REAL
    out.mkdir(parents=True, exist_ok=True)
    own_work = work is None  # a scratch folder of our own (the run's checkpoint: 1 GB) goes at the end
    work = Path(work or tempfile.mkdtemp(prefix="vggrepro-window-"))
    summary = dict(
        what="vggrepro bench window (scripts/gpu_window.sh)", dry_run=dry_run, window=dataclasses.asdict(window)
    )
    # the orchestrator never touches CUDA (the check and the training hold the GPU): the device is
    # the check's, copied in after it ran
    summary.update(status="running", phases={}, provenance=provenance("cpu"))
    if summary["provenance"]["commit"] == "unknown":
        print("note: the commit is unknown here; run `bash scripts/gpu_window.sh --stamp` before copying the tree")

    def save():
        with signals_held():
            atomic_write_json(out / "gpu_window.json", summary)

    def left():
        return window.total_s - (time.perf_counter() - start)

    py = [sys.executable, "-m", "vggrepro"]
    try:
        with stop_on_signals():
            save()
            check = py + ["bench", "gpu", "--out", str(out / "gpu_check.json"), "--budget", str(window.check_s)]
            check += ["--dry-run"] if dry_run else []
            summary["phases"]["check"] = _run(check, out / "gpu_check.log", window.check_s + GRACE_S)
            summary["provenance"]["device"] = _device(out / "gpu_check.json")
            save()
            summary["phases"]["data"] = _data_phase(window, work, min(window.data_s, max(left() - 30, 1)))
            save()
            summary["phases"]["train"] = _train_phase(window, work, out, left, py)
            summary["status"] = "finished"
    except Stop as e:
        summary["status"] = f"stopped by {e}"
    finally:
        summary["seconds"] = round(time.perf_counter() - start, 1)
        save()
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}/gpu_window.json ({summary['status']}, {summary['seconds']} s)", flush=True)
    return summary


def _data_phase(window: Window, work: Path, cap: float) -> dict:
    """The `gpu` set (generated, or verified) and its training statistics, timed, before training."""
    profile = _profile(window, work)
    found = dict(root=str(profile.data_path), images=profile.num_classes * profile.synth_train_per_class)
    t = time.perf_counter()
    try:
        with capped(cap):
            root = data.ensure_synthetic(profile, verbose=True)
            found["set_seconds"] = round(time.perf_counter() - t, 1)
            data.dataset_stats(root, progress=False)
        found.update(ok=True, seconds=round(time.perf_counter() - t, 1))
    except Stop:
        raise
    except BaseException as e:  # over its cap, or a failure: the training phase makes what is missing
        found.update(ok=False, error=f"{type(e).__name__}: {str(e)[:200]}", seconds=round(time.perf_counter() - t, 1))
    return found


def _train_phase(window: Window, work: Path, out: Path, left, py: list[str]) -> dict:
    """D trained through the CLI for as many steps as fit at the measured rate; its curve and rate."""
    profile = _profile(window, work)
    rate, source = _rate(out / "gpu_check.json", window.fallback_rate)
    per_epoch = profile.num_classes * profile.synth_train_per_class // profile.batch_size
    whole = profile.epochs * per_epoch
    fits = int((left() - window.train_overhead_s - GRACE_S) * rate / profile.batch_size)
    steps = min(whole, fits, window.most_steps or whole)
    found = dict(rate_for_planning=rate, rate_source=source, steps_whole_run=whole, steps_asked=steps)
    if steps < min(MIN_STEPS, window.most_steps or MIN_STEPS):
        return dict(found, ok=False, error=f"only {fits} steps fit in the {left():.0f} s left")
    run_dir = work / f"run-{window.config}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = py + ["train", "--profile", "gpu", "--config", window.config, "--scale", str(profile.S(256))]
    cmd += ["--max-steps", str(steps), "--out", str(run_dir), "--no-progress", "--device", window.device]
    for kv in window.knobs + ((f"data_root={profile.data_root}",) if window.knobs else ()):
        cmd += ["--set", kv]
    found["command"] = " ".join(cmd[1:])
    found.update(_run(cmd, out / "train.log", max(left() - GRACE_S, 1)))
    for name, target in (("metrics.jsonl", "train_metrics.jsonl"), ("result.json", "train_result.json")):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, out / target)
    records = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    found["loss_curve"] = [[r["step"], r["loss"]] for r in records if "loss" in r]
    found["epochs"] = [r for r in records if "top1_err" in r]
    found["steps_done"] = max((r["step"] for r in records), default=0)
    if (run_dir / "result.json").is_file():
        result = json.loads((run_dir / "result.json").read_text())
        found.update({k: result.get(k) for k in ("steps", "epochs", "stopped", "top1_err", "top5_err", "img_per_s")})
        found["img_per_s_note"] = "the trainer's own figure: its steps, epoch validations and the last save"
        found["steps_done"] = result.get("steps")
    found["ok"] = found["exit_code"] == 0
    return found


def run_from_args(args) -> int:
    out = Path(args.out) if args.out else Path(os.environ.get("OUT") or REPO / "results" / "gpu_window")
    check_writable(out, "pass --out a writable folder (or set OUT)")
    summary = window_run(args.dry_run, out)
    if summary["status"].startswith("stopped by"):
        return 128 + signal.Signals[summary["status"].split()[-1]].value
    return 0 if all(p.get("ok", p.get("exit_code") == 0) for p in summary["phases"].values()) else 1


def stamp(path: Path | None = None) -> Path:
    """Write the commit beside the checkout (``.vggrepro-commit``), so that it travels with a copy."""
    path = path or REPO / COMMIT_STAMP
    path.write_text(git_commit() + "\n")
    return path
