"""One command that measures what the `gpu` book asks of one GPU, in at most 5 minutes.

    vggrepro bench gpu              # on a machine with one GPU: $OUT/gpu_check.json, else results/
    vggrepro bench gpu --dry-run    # the same control flow on the CPU at toy size (CI runs it)
    bash scripts/gpu_check.sh       # the first, under a hard limit

Made for a short, metered window. The data and its statistics are prepared first, with CUDA's
start-up, before any cap runs. Then the steps run, most valuable first, each under its own cap and
all under the check's deadline: a large bf16 matmul (the practical peak), D at 224 px in bf16 +
channels-last (median of 3 windows), the real training loop (30 steady steps; validation and a
checkpoint save timed apart), JPEG decoding of the set's own files, dense evaluation on a mix of
sizes, resume, TF32, ``torch.compile`` and last fp32. After every step the JSON is written
atomically and the step's figures printed as one JSON line, so a run stopped by SIGINT/SIGTERM, its
deadline or a hard kill keeps every finished step. One-time costs (CUDA start, autotune, compile)
are recorded apart from every rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import torch

from .. import data
from ..core.files import atomic_write_json, check_writable
from ..core.profiles import get_profile
from ..core.runs import REPO, provenance
from . import gpu_steps as steps

BUDGET_S = 300  # the whole check on an H100: 5 minutes
MIN_LEFT_S = 5  # a step is not started with less than this left


@dataclasses.dataclass(frozen=True)
class Size:
    """The check's scale: :data:`REAL` on a GPU, :data:`TOY` for the dry run."""

    config: str
    width: float
    crop: int
    batch: int
    steps: int  # timed steps per window
    windows: int  # timed windows of the bf16 step (the median is its rate)
    warmup: int
    loop_steps: int  # steady steps of the training loop, timed
    classes: int  # of the small synthetic set the check reads
    per_class: int
    val_per_class: int
    min_side: tuple[int, int]
    scales: tuple[int, ...]  # dense evaluation's Q
    eval_images: int
    jpegs: int
    matmul_n: int
    matmul_repeat: int
    resume_width: float
    resume_batch: int
    compile: bool = True  # False: the compile step runs uncompiled (the dry run: compiling takes minutes on a CPU)


REAL = Size(
    "D", 1.0, 224, 256, steps=10, windows=3, warmup=3, loop_steps=30,
    classes=20, per_class=64, val_per_class=5, min_side=(280, 520), scales=(256, 384, 512),
    eval_images=48, jpegs=1024, matmul_n=8192, matmul_repeat=20, resume_width=0.25, resume_batch=64,
)  # fmt: skip
TOY = Size(
    "A", 1 / 16, 32, 8, steps=2, windows=3, warmup=1, loop_steps=3,
    classes=4, per_class=8, val_per_class=2, min_side=(40, 56), scales=(37, 55, 73),
    eval_images=6, jpegs=16, matmul_n=256, matmul_repeat=2, resume_width=1 / 16, resume_batch=8, compile=False,
)  # fmt: skip

#: The steps, most valuable first, and each one's cap in seconds (the deadline may cut it shorter).
PLAN = (
    ("matmul", steps.matmul, 20),
    ("bf16+cl", lambda s, f: steps.model_variant(s, f, "bf16+cl"), 60),
    ("train_loop", steps.train_loop, 60),
    ("jpeg_decode", steps.jpeg_decode, 30),
    ("dense_eval", steps.dense_eval, 60),
    ("resume", steps.resume, 45),
    ("tf32+cl", lambda s, f: steps.model_variant(s, f, "tf32+cl"), 45),
    ("bf16+cl+compile", lambda s, f: steps.model_variant(s, f, "bf16+cl+compile"), 120),
    ("fp32", lambda s, f: steps.model_variant(s, f, "fp32"), 40),
)


class StepTimeout(BaseException):
    """A step's cap ran out (a BaseException, so that no ``except Exception`` inside a step keeps it)."""


class Stop(BaseException):
    """SIGINT or SIGTERM: record what is finished and stop."""


@contextlib.contextmanager
def capped(seconds: float):
    """Raise StepTimeout in this (main) thread after ``seconds``."""

    def expire(*_):
        raise StepTimeout(f"over its cap of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM raise :class:`Stop` for the block (``timeout`` sends either)."""

    def stop(signum, _frame):
        raise Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT, SIGTERM and SIGALRM back while the record is written (delivered after)."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class Record:
    """The check's JSON: written atomically after every step; each step also printed as a JSON line."""

    def __init__(self, out: Path | None, head: dict):
        self.out, self.data = out, dict(head, status="running", one_time={}, steps={}, not_run={})

    def step(self, name: str, entry: dict) -> None:
        self.data["steps"][name] = entry
        print(json.dumps({"gpu_check_step": name, **entry}, sort_keys=True, default=str), flush=True)
        self.write()

    def write(self) -> None:
        if self.out is not None:
            with signals_held():
                atomic_write_json(self.out, self.data)


def run_step(name: str, fn, setup: steps.Setup, cap: float, record: Record) -> None:
    """Run one step under its cap and record it: its figures, or what stopped it and what it had
    measured by then. A :class:`Stop` is recorded, then raised again."""
    cuda = setup.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    found: dict = {}
    stopped = None
    t = time.perf_counter()
    try:
        with capped(cap):
            fn(setup, found)
        entry = dict(found, ok=True)
    except StepTimeout as e:
        entry = dict(found, ok=False, error=str(e))
    except Stop as e:
        entry, stopped = dict(found, ok=False, error=f"stopped by {e}"), e
    except Exception as e:  # recorded, not raised: the other steps still run
        entry = dict(found, ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
    entry.update(
        seconds=round(time.perf_counter() - t, 2),
        cap_s=round(cap, 1),
        peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    )
    record.step(name, entry)
    if stopped is not None:
        raise stopped


def prepare(size: Size, device: str, tmp: Path, record: Record) -> steps.Setup:
    """The check's small synthetic set and its statistics: before any cap, timed."""
    one = record.data["one_time"]
    profile = dataclasses.replace(
        get_profile("gpu"), device=device, width=size.width, crop=size.crop, batch_size=size.batch,
        num_classes=size.classes, synth_train_per_class=size.per_class, synth_val_per_class=size.val_per_class,
        synth_min_side=size.min_side, data_root=str(tmp / "data"), workers=0,
    )  # fmt: skip
    t = time.perf_counter()
    root = data.ensure_synthetic(profile, verbose=False)
    one["data_seconds"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    stats = data.dataset_stats(root, progress=False)
    one["stats_seconds"] = round(time.perf_counter() - t, 2)
    one["images"] = dict(train=size.classes * size.per_class, val=size.classes * size.val_per_class)
    record.write()
    return steps.Setup(size, device, profile, root, stats, tmp / "scratch")


def check(dry_run: bool, out: Path | None, device: str | None = None, budget_s: float | None = None) -> dict:
    """Run the check; the record (also at ``out``, rewritten after every step). Raises nothing on a
    signal: the record's ``status`` says what stopped it, and ``exit_code`` is 128 + the signal."""
    start = time.perf_counter()
    size = TOY if dry_run else REAL
    device = "cpu" if dry_run else (device or "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("no CUDA device here: run `vggrepro bench gpu --dry-run` for the CPU rehearsal")
    budget = BUDGET_S if budget_s is None else budget_s
    t = time.perf_counter()
    if device.startswith("cuda"):  # CUDA's start: a one-time cost, before anything else touches it
        torch.zeros(1, device=device).add_(1)
        torch.cuda.synchronize()
    cuda_init = round(time.perf_counter() - t, 2)
    head = dict(
        what="vggrepro bench gpu: what the gpu book asks of one GPU (see vggrepro/bench/gpu_check.py)",
        dry_run=dry_run,
        budget_s=budget,
        size=dataclasses.asdict(size),
        order=[name for name, _, _ in PLAN],
        provenance=provenance(device),
    )
    record = Record(out, head)
    record.data["one_time"]["cuda_init_seconds"] = cuda_init
    record.write()
    code = 0
    with stop_on_signals(), tempfile.TemporaryDirectory(prefix="vggrepro-gpu-check-") as tmp:
        try:
            setup = prepare(size, device, Path(tmp), record)
            for name, fn, cap in PLAN:
                left = budget - (time.perf_counter() - start)
                if left < MIN_LEFT_S:
                    record.data["not_run"][name] = f"the check's deadline ({budget:g} s) was reached"
                    continue
                run_step(name, fn, setup, min(cap, left), record)
            record.data["status"] = "finished"
        except Stop as e:
            done = set(record.data["steps"])
            for name, _, _ in PLAN:
                if name not in done:
                    record.data["not_run"][name] = f"stopped by {e}"
            record.data["status"] = f"stopped by {e}"
            code = 128 + signal.Signals[str(e)].value
        finally:
            with signals_held():
                record.data["seconds"] = round(time.perf_counter() - start, 1)
                record.write()
    if out is not None:
        print(f"wrote {out}", flush=True)
    return dict(record.data, exit_code=code)


def default_out(dry_run: bool) -> Path:
    """``$OUT/gpu_check.json`` where the caller names an output folder, else under results/."""
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    return REPO / "results" / ("gpu_check_cpu_dryrun.json" if dry_run else "gpu_check.json")


def run_from_args(args) -> int:
    out = Path(args.out) if args.out else default_out(args.dry_run)
    check_writable(out.parent, "pass --out a file in a writable folder")
    budget = getattr(args, "budget", None)
    if budget is not None and not budget > 0:
        raise ValueError(f"--budget {budget}: give the check's seconds, e.g. 300")
    record = check(args.dry_run, out, args.device, budget)
    if record["exit_code"]:
        return record["exit_code"]
    failed = [name for name, s in record["steps"].items() if not s["ok"]]
    return 1 if failed and args.dry_run else 0  # on a GPU a capped step is a figure too; the rehearsal must pass


# -- what the check should take --------------------------------------------------------------------

#: Assumed one-time costs on an H100 machine (seconds; not measured here: no GPU has run this yet):
#: imports and CUDA start, the check's set and statistics, cuDNN's autotune of D (per precision),
#: torch.compile of D, a dense pass's new cuDNN plans (per distinct shape), and the small steps.
ASSUMED = dict(start=15, data=10, autotune=20, compile=60, plan_per_shape=0.1, small=5)
#: D's training rate in other precisions, as a share of bf16's (from the data sheet's peaks, roughly)
SHARE = {"tf32": 0.45, "fp32": 0.08, "compile": 1.1}


def expected_seconds(rate: float, size: Size = REAL) -> dict:
    """The check's expected wall time per step on an H100 training D at ``rate`` img/s in bf16:
    images over rates plus the :data:`ASSUMED` one-time costs (every one of them a guess until a
    GPU check is recorded)."""
    a, img = ASSUMED, size.batch / rate  # seconds per bf16 step
    shapes = size.eval_images * len(size.scales)
    out = dict(
        start_and_data=a["start"] + a["data"],
        matmul=a["small"] / 2,
        bf16=a["autotune"] + (size.warmup + size.windows * size.steps) * img,
        train_loop=2 * a["small"] + (5 + size.loop_steps) * img,
        jpeg_decode=a["small"],
        dense_eval=a["small"] + a["plan_per_shape"] * shapes,
        resume=2 * a["small"],
        tf32=a["autotune"] + (size.warmup + size.steps) * img / SHARE["tf32"],
        compile=a["compile"] + (size.warmup + size.steps) * img / SHARE["compile"],
        fp32=a["autotune"] + (1 + 4) * img / SHARE["fp32"],
    )
    return {k: round(v, 1) for k, v in out.items()} | {"total": round(sum(out.values()), 1)}
