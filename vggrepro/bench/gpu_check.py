"""One command that measures what the `gpu` book asks of one GPU, in at most 8 minutes.

    vggrepro bench gpu              # on a machine with one GPU: results/gpu_check.json
    vggrepro bench gpu --dry-run    # the same steps on the CPU at toy size (CI runs it)
    bash scripts/gpu_check.sh       # the first, with a hard limit of 8 minutes

Steps, each under its own time cap (a step that overruns or fails is recorded as such, and the
others still run): net D at 224 px, batch 256, training in fp32 (TF32 off), TF32 and
bf16 + channels_last; the real training loop with its data loading (img/s of the second, steady
epoch, and the GPU's utilisation); dense evaluation img/s at Q = 256, 384, 512; JPEG decoding
img/s (on the GPU when torchvision is installed); a resume round trip (interrupted, resumed, and
compared with an uninterrupted run); and last, bf16 + channels_last compiled. Peak GPU memory is
recorded per step. Everything goes to one small JSON file with its provenance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch
from PIL import Image

from .. import models
from ..core.files import atomic_write_json
from ..core.optional import torchvision_or_none
from ..core.profiles import get_profile
from ..core.runs import REPO, provenance
from ..data.transforms import Preprocess
from ..evaluate import protocols as evaluate
from ..evaluate.protocols import Execution, Protocol
from ..train import checkpoints
from ..train import recipe as train_mod
from ..train.recipe import Settings, train
from . import throughput as bench

BUDGET_S = 480  # the whole check: 8 minutes


@dataclasses.dataclass(frozen=True)
class Size:
    """The check's scale: :data:`REAL` on a GPU, :data:`TOY` for the dry run."""

    config: str
    width: float
    crop: int
    batch: int
    steps: int  # timed steps per model variant
    classes: int  # of the small synthetic set the training loop reads
    per_class: int
    val_per_class: int
    min_side: tuple[int, int]
    scales: tuple[int, ...]  # dense evaluation's Q
    eval_images: int
    jpegs: int
    compile: bool


REAL = Size(
    "D",
    1.0,
    224,
    256,
    10,
    classes=20,
    per_class=130,
    val_per_class=5,
    min_side=(280, 520),
    scales=(256, 384, 512),
    eval_images=96,
    jpegs=512,
    compile=True,
)
TOY = Size(
    "A",
    1 / 16,
    32,
    8,
    2,
    classes=4,
    per_class=16,
    val_per_class=4,
    min_side=(40, 56),
    scales=(37, 55, 73),
    eval_images=8,
    jpegs=16,
    compile=False,
)
#: Seconds per step: 465 in all, inside the 8 minutes with room for starting up.
CAPS = {
    "fp32": 45,
    "tf32+cl": 30,
    "bf16+cl": 30,
    "train_loop": 100,
    "dense_eval": 60,
    "jpeg_decode": 20,
    "resume": 60,
    "bf16+cl+compile": 120,
}
VARIANTS = {
    "fp32": dict(channels_last=False),
    "tf32+cl": dict(tf32=True),
    "bf16+cl": dict(bf16=True),
    "bf16+cl+compile": dict(bf16=True, compile=True),
}


class StepTimeout(Exception):
    pass


@contextlib.contextmanager
def capped(seconds: int):
    """Raise StepTimeout in this (main) thread after ``seconds``."""

    def expire(*_):
        raise StepTimeout(f"over its cap of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_step(name: str, fn, device: str, cap: int) -> dict:
    """``fn()``'s figures with the step's wall time and peak GPU memory, or what stopped it."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    try:
        with capped(cap):
            out = dict(fn(), ok=True)
    except Exception as e:  # recorded, not raised: the other steps still run
        out = dict(ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
    out.update(
        seconds=round(time.perf_counter() - t, 1),
        cap_s=cap,
        peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    )
    print(f"gpu check: {name}: {'ok' if out['ok'] else out['error']} ({out['seconds']} s)", flush=True)
    return out


# -- the steps ------------------------------------------------------------------------------------


def model_variant(size: Size, device: str, variant: str) -> dict:
    case = bench.Case(
        "train",
        size.config,
        size=size.crop,
        batch=size.batch,
        width=size.width,
        crop=size.crop,
        num_classes=1000,
        device=device,
        steps=size.steps,
        **VARIANTS[variant],
    )
    return bench.bench_one(case, peak=device.startswith("cuda"))


def toy_profile(size: Size, device: str, root: Path):
    """The `gpu` profile at this check's size, on a small synthetic set under ``root``."""
    return dataclasses.replace(
        get_profile("gpu"),
        device=device,
        width=size.width,
        crop=size.crop,
        batch_size=size.batch,
        num_classes=size.classes,
        epochs=2,
        checkpoint_every=10_000,
        lr_patience=5,
        synth_train_per_class=size.per_class,
        synth_val_per_class=size.val_per_class,
        synth_min_side=size.min_side,
        data_root=str(root / "data"),
    )


def train_loop(size: Size, device: str, root: Path) -> dict:
    """The real trainer, data loading included: the second epoch's img/s and the GPU's utilisation."""
    profile = toy_profile(size, device, root)
    with UtilisationSampler(device) as sampler:
        result = train(profile, Settings(config=size.config, scale=profile.S(256)), root / "loop", progress=False)
    epochs = [
        r for r in map(json.loads, (root / "loop" / "metrics.jsonl").read_text().splitlines()) if "img_per_s" in r
    ]
    return dict(
        config=size.config,
        crop=size.crop,
        batch=size.batch,
        images=result["steps"] * size.batch,
        img_per_s_by_epoch=[r["img_per_s"] for r in epochs],
        img_per_s_whole_run=result["img_per_s"],
        gpu_utilisation_percent=sampler.mean(),
    )


class UtilisationSampler:
    """The GPU's utilisation (NVML's figure: torch.cuda.utilization, else nvidia-smi) sampled every 0.2 s."""

    def __init__(self, device: str):
        self.device, self.samples, self.stop = device, [], threading.Event()

    def __enter__(self):
        if self.device.startswith("cuda"):
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.2):
            try:
                self.samples.append(torch.cuda.utilization())
            except Exception:  # no pynvml in this environment: ask nvidia-smi
                try:
                    out = subprocess.run(
                        [
                            "nvidia-smi",
                            "--query-gpu=utilization.gpu",
                            "--format=csv,noheader,nounits",
                            "-i",
                            str(torch.cuda.current_device()),
                        ],
                        capture_output=True,
                        text=True,
                        timeout=5,
                    )
                    self.samples.append(float(out.stdout.split()[0]))
                except Exception:  # no figure at all
                    return

    def __exit__(self, *exc):
        self.stop.set()

    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def dense_eval(size: Size, device: str) -> dict:
    """evaluate()'s dense protocol (with flips) on images of varied shapes, at each Q."""
    net = models.build(size.config, width=size.width, num_classes=1000, crop=size.crop)
    g = torch.Generator().manual_seed(0)
    lo, hi = size.min_side

    def images(n):
        for i in range(n):
            h = int(torch.randint(lo, hi + 1, (1,), generator=g))
            w = int(h * (1 + torch.rand(1, generator=g).item() / 3))  # 1:1 to 4:3, as the synthetic set
            yield i, torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g), 0

    mean = Preprocess(mean=(124.0, 116.0, 104.0))
    how = Execution(device=device, batch_size=size.batch)
    evaluate.evaluate(net, mean, images(2), Protocol("dense", [size.scales[0]]), how=how)  # warm-up
    rows = {}
    for q in size.scales:
        r = evaluate.evaluate(net, mean, images(size.eval_images), Protocol("dense", [q]), how=how)
        rows[str(q)] = dict(
            img_per_s=round(r.images / r.seconds, 1),
            images=r.images,
            forward_passes=r.forward_passes,
            gmac_per_image=round(r.macs_per_image["dense"] / 1e9, 2),
        )
    return dict(config=size.config, flip=True, bf16=device.startswith("cuda"), by_Q=rows)


def jpeg_decode(size: Size, device: str) -> dict:
    """JPEG decoding img/s: torchvision's GPU decoder when it is installed, else PIL on the CPU."""
    g = torch.Generator().manual_seed(1)
    lo, hi = size.min_side
    blobs = []
    for _ in range(size.jpegs):
        h = int(torch.randint(lo, hi + 1, (1,), generator=g))
        pixels = torch.randint(0, 256, (h, h * 4 // 3, 3), dtype=torch.uint8, generator=g).numpy()
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    tv = torchvision_or_none()
    if tv is not None and device.startswith("cuda"):
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        tv.io.decode_jpeg(data[:8], device=device)  # warm-up: nvjpeg's handles
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, len(data), 64):
            tv.io.decode_jpeg(data[i : i + 64], device=device)
        torch.cuda.synchronize()
        decoder = f"torchvision {tv.__version__} nvjpeg, batches of 64"
    else:
        t = time.perf_counter()
        for b in blobs:
            Image.open(io.BytesIO(b)).convert("RGB").load()
        decoder = "PIL, one CPU thread" + ("" if tv is not None else " (torchvision is not installed)")
    seconds = time.perf_counter() - t
    return dict(
        decoder=decoder,
        images=len(blobs),
        img_per_s=round(len(blobs) / seconds, 1),
        mean_bytes=round(sum(map(len, blobs)) / len(blobs)),
    )


def resume_round_trip(size: Size, device: str, root: Path) -> dict:
    """Train 4 steps straight; train them again with a Ctrl-C at step 3 and resume from the step-2
    checkpoint; compare the weights (on a GPU, equal up to cuDNN's non-determinism)."""
    profile = dataclasses.replace(toy_profile(size, device, root), checkpoint_every=2)
    settings = train_mod.Settings(config="A", scale=profile.S(256), max_steps=4, dropout=0.0)
    train_mod.train(profile, settings, root / "straight", progress=False)
    real, calls = train_mod.loss_fn, {"n": 0}

    def interrupt_at_3(logits, labels):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(logits, labels)

    train_mod.loss_fn = interrupt_at_3
    try:
        train_mod.train(profile, settings, root / "resumed", progress=False)
    except train_mod.Interrupted:
        pass
    finally:
        train_mod.loss_fn = real
    step_saved = checkpoints.load(root / "resumed" / "checkpoint.pt")["step"]
    train_mod.train(profile, settings, root / "resumed", progress=False, resume=True)
    a, b = (checkpoints.load(root / d / "checkpoint.pt")["model"] for d in ("straight", "resumed"))
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    return dict(interrupted_after_step=step_saved, steps=4, max_abs_weight_difference=diff, bit_equal=diff == 0)


# -- the command ------------------------------------------------------------------------------------


def check(dry_run: bool, out: Path | None, device: str | None = None) -> dict:
    size = TOY if dry_run else REAL
    device = "cpu" if dry_run else (device or "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("no CUDA device here: run `vggrepro bench gpu --dry-run` for the CPU rehearsal")
    start, steps = time.perf_counter(), {}
    with tempfile.TemporaryDirectory(prefix="vggrepro-gpu-check-") as tmp:
        root = Path(tmp)
        plan = [(v, lambda v=v: model_variant(size, device, v)) for v in ("fp32", "tf32+cl", "bf16+cl")]
        plan += [
            ("train_loop", lambda: train_loop(size, device, root)),
            ("dense_eval", lambda: dense_eval(size, device)),
            ("jpeg_decode", lambda: jpeg_decode(size, device)),
            ("resume", lambda: resume_round_trip(size, device, root)),
        ]
        if size.compile:
            plan.append(("bf16+cl+compile", lambda: model_variant(size, device, "bf16+cl+compile")))
        for name, fn in plan:
            left = BUDGET_S - (time.perf_counter() - start)
            if left < 5:
                steps[name] = dict(ok=False, error="skipped: the check's 8 minutes were spent")
                continue
            steps[name] = run_step(name, fn, device, int(min(CAPS[name], left)))
    record = dict(
        what="vggrepro bench gpu: what the gpu book asks of one GPU (see vggrepro/bench/gpu_check.py)",
        dry_run=dry_run,
        size=dataclasses.asdict(size),
        steps=steps,
        seconds=round(time.perf_counter() - start, 1),
        provenance=provenance(device),
    )
    if out is not None:
        atomic_write_json(out, record)
        print(f"wrote {out}")
    return record


def run_from_args(args) -> int:
    default = REPO / "results" / ("gpu_check_cpu_dryrun.json" if args.dry_run else "gpu_check.json")
    record = check(args.dry_run, Path(args.out) if args.out else default, args.device)
    failed = [name for name, s in record["steps"].items() if not s["ok"]]
    return 1 if failed and args.dry_run else 0  # on a GPU a capped step is a figure too; the rehearsal must pass
