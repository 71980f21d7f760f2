"""The GPU check's steps (:mod:`vggrepro.bench.gpu_check` runs them, each under its own cap).

Each step takes the check's :class:`Setup` and a dict ``found`` that it fills as it goes, so that a
step stopped by its cap or by a signal still leaves what it had measured. One-time costs (the
first step with its cuDNN autotune, a compile) are recorded apart from every rate.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import threading
import time
import warnings
from pathlib import Path

import torch

from .. import data, models
from ..core import devices
from ..core.optional import torchvision_or_none
from ..core.profiles import Profile
from ..core.runs import Run
from ..data import transforms
from ..evaluate import protocols as evaluate
from ..evaluate.protocols import Execution, Protocol
from ..train import checkpoints, recipe
from ..train.loop import MOMENTUM, WEIGHT_DECAY, Plan, PlateauSchedule, Trainer
from ..train.validation import CentreCrops, CentreView, validate
from . import throughput as bench


@dataclasses.dataclass
class Setup:
    """What every step reads, made before any cap starts: the device, the check's small synthetic
    set and its statistics, the measured matmul peak, and a scratch folder."""

    size: object  # gpu_check.Size
    device: str
    profile: Profile  # the `gpu` profile at the check's size, on the check's set
    root: Path  # the set's folder
    stats: data.Stats
    scratch: Path
    matmul_tflops: float | None = None  # bf16, measured by the first step


def _mfu(tflops: float, setup: Setup) -> dict:
    """Achieved TFLOP/s over the data-sheet peak and over the measured large bf16 matmul."""
    out = {}
    if setup.device.startswith("cuda"):
        sheet, source = bench.peak_tflops(setup.device, "bf16")
        if "data sheet" in source:
            out["mfu_vs_datasheet_bf16"] = round(tflops / sheet, 4)
    if setup.matmul_tflops:
        out["mfu_vs_measured_matmul"] = round(tflops / setup.matmul_tflops, 4)
    return out


def matmul(setup: Setup, found: dict) -> dict:
    """A large bf16 matrix product's TFLOP/s: the practical peak the MFU is also divided by."""
    n = setup.size.matmul_n
    t = time.perf_counter()
    tflops = bench.measured_matmul_tflops(setup.device, torch.bfloat16, n=n, repeat=setup.size.matmul_repeat)
    setup.matmul_tflops = tflops
    found.update(n=n, dtype="bf16", tflops=round(tflops, 3), seconds_incl_warmup=round(time.perf_counter() - t, 2))
    if setup.device.startswith("cuda"):
        sheet, source = bench.peak_tflops(setup.device, "bf16")
        found.update(datasheet_tflops=sheet, datasheet_source=source, share_of_datasheet=round(tflops / sheet, 3))
    return found


def model_variant(setup: Setup, found: dict, variant: str) -> dict:
    """Net D at the check's crop and batch, training steps in one variant: the first step (with
    its autotune, or compile) timed apart, then the median of ``size.windows`` timed windows."""
    size = setup.size
    flags = dict(VARIANTS[variant])
    windows, warmup = flags.pop("windows", size.windows), flags.pop("warmup", size.warmup)
    steps = max(1, min(flags.pop("steps", size.steps), size.steps))
    if flags.get("compile") and not size.compile:
        flags["compile"] = False
        found["compile_skipped"] = "this size does not compile (the dry run)"
    case = bench.Case(
        "train", size.config, size=size.crop, batch=size.batch, width=size.width, crop=size.crop,
        device=setup.device, steps=steps, **flags,
    )  # fmt: skip
    precision = "bf16" if case.bf16 else ("tf32" if case.tf32 else "fp32")
    found.update(precision=precision, tf32=case.tf32, steps_per_window=case.steps)
    rows = []
    with devices.backend_flags(benchmark=True, tf32=case.tf32):
        timed = bench.windows(case, windows, warmup=warmup)
        try:
            for i, row in enumerate(timed):
                if i == 0:  # the autotune (and a compile) land here: one-time, apart from the rate
                    found.update(first_steps_seconds=row.pop("first_steps_seconds"), warmup_steps=warmup)
                rows.append(row)
                found["img_per_s_windows"] = [r["img_per_s"] for r in rows]
        finally:
            timed.close()
    best = dict(rows[-1])
    best["img_per_s"] = statistics.median(found["img_per_s_windows"])
    best["tflops"] = round(best["img_per_s"] * best["gflops_per_image"] / 1e3, 2)
    found.update({k: v for k, v in best.items() if k != "peak_memory_bytes"}, windows=len(rows))
    found.update(_mfu(best["tflops"], setup))
    return found


#: the variants timed: TF32 on in the bf16 ones as in training (cuDNN keys its plans by the flag,
#: so the training loop reuses these plans); fp32 with TF32 off, few steps (it is slow)
VARIANTS = {
    "bf16+cl": dict(bf16=True, tf32=True),
    "tf32+cl": dict(tf32=True, windows=1),
    "bf16+cl+compile": dict(bf16=True, tf32=True, compile=True, windows=1),
    "fp32": dict(channels_last=False, windows=1, warmup=1, steps=4),
}


def _trainer(setup: Setup, config: str, out: Path, speed: devices.Speed) -> tuple[Trainer, data.TrainLoader]:
    """The training loop's own parts (loader, net, optimiser, Trainer) as recipe.train builds them."""
    p = setup.profile
    train_set = data.ILSVRC(setup.root, "train", boxes=False)
    loader = data.TrainLoader(
        train_set,
        data.Augmentation(p.crop, p.S(256), setup.stats.preprocess(), setup.stats),
        data.Batching(p.batch_size, p.seed),
        data.Engine(setup.device, workers=0, progress=False, batched_crops=speed.batched_crops),
    )
    torch.manual_seed(p.seed)
    net = p.build(config).to(setup.device, memory_format=torch.channels_last)
    models.init_fan_in(net)
    opt = torch.optim.SGD(net.parameters(), lr=p.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    run = Run(p.name, {"kind": "gpu-check"}, root=out.parent)
    run.dir = out
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan(run, loader, None, 1, None, None, speed, meta={})
    return Trainer(net, net, opt, PlateauSchedule(p.lr, p.lr_patience), plan), loader


def train_loop(setup: Setup, found: dict) -> dict:
    """The real training loop's steps (Trainer.train_step over TrainLoader batches through
    devices.prefetch, as Trainer.fit runs them) on the check's set: warm-up steps, then at least
    ``size.loop_steps`` steady steps timed, with the GPU's utilisation sampled inside that window
    alone; one validation pass and one checkpoint save are timed apart, after the window."""
    size, device = setup.size, setup.device
    speed = devices.Speed.of(device)
    t = time.perf_counter()
    trainer, loader = _trainer(setup, size.config, setup.scratch / "loop", speed)
    found.update(setup_seconds=round(time.perf_counter() - t, 2), batches_per_epoch=len(loader))
    epochs = itertools.chain.from_iterable(loader.batches(e) for e in itertools.count())
    batches = devices.prefetch(epochs, device)
    with devices.backend_flags(benchmark=speed.benchmark, tf32=speed.kind == "cuda"):
        t = time.perf_counter()
        for _ in range(size.warmup):
            _one_step(trainer, next(batches), device)
        trainer.read_losses()
        devices.synchronize(device)
        found["warmup_seconds"] = round(time.perf_counter() - t, 2)
        with UtilisationSampler(device) as sampler:
            t = time.perf_counter()
            for _ in range(size.loop_steps):
                _one_step(trainer, next(batches), device)
            trainer.read_losses()
            devices.synchronize(device)
            seconds = time.perf_counter() - t
    rate = size.loop_steps * size.batch / seconds
    flops = rate * 6 * models.count_macs(trainer.net, size.crop) / 1e12
    found.update(
        config=size.config, crop=size.crop, batch=size.batch, steps_timed=size.loop_steps,
        img_per_s=round(rate, 1), tflops=round(flops, 2), gpu_utilisation_percent=sampler.mean(),
        utilisation_samples=len(sampler.samples), **_mfu(flops, setup),
    )  # fmt: skip
    fallbacks = getattr(loader, "pil_fallbacks", 0)
    found["nvjpeg_pil_fallbacks"] = fallbacks
    # outside the window: what each epoch adds (validation) and each save costs (a training checkpoint)
    val = data.ILSVRC(setup.root, "val", boxes=False)
    view = CentreView(size.crop, setup.profile.S(256), setup.stats.preprocess())
    t = time.perf_counter()
    crops = CentreCrops(val, view, device, torch.channels_last)
    found["validation_decode_seconds"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    validate(trainer.net, crops, speed)
    found.update(validation_seconds=round(time.perf_counter() - t, 2), validation_images=val.usable)
    t = time.perf_counter()
    trainer.save()
    found.update(
        checkpoint_save_seconds=round(time.perf_counter() - t, 2),
        checkpoint_bytes=trainer.plan.run.checkpoint.stat().st_size,
    )
    return found


def _one_step(trainer: Trainer, batch, device: str) -> None:
    x, *targets = batch
    x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    trainer.train_step(trainer.model, x, *[t.to(device, non_blocking=True) for t in targets])


class UtilisationSampler:
    """The GPU's utilisation (NVML, through torch.cuda.utilization) sampled every 0.1 s while the
    block runs; nothing on a CPU or where NVML is missing."""

    def __init__(self, device: str):
        self.device, self.samples = device, []
        self._stop = None

    def __enter__(self):
        if self.device.startswith("cuda"):
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.1):
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception:  # no NVML here: no figure rather than a wrong one
                return

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
            self._thread.join(timeout=1)

    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def jpeg_decode(setup: Setup, found: dict) -> dict:
    """Decoding the check's own synthetic JPEGs as training does on this device (nvjpeg in batches
    when torchvision is there, with how many fell back to PIL), PIL's rate on one CPU thread, and
    how far the two decoders' pixels differ (training decodes with nvjpeg, evaluation with PIL)."""
    files = [s.path for s in data.ILSVRC(setup.root, "train", boxes=False).samples][: setup.size.jpegs]
    blobs = [p.read_bytes() for p in files]
    found.update(images=len(blobs), mean_bytes=round(sum(map(len, blobs)) / len(blobs)))
    t = time.perf_counter()
    pil = [data.decode_image(p) for p in files]
    found["pil_img_per_s_one_thread"] = round(len(files) / (time.perf_counter() - t), 1)
    tv = torchvision_or_none()
    if tv is None or not setup.device.startswith("cuda"):
        found.update(decoder="PIL (no GPU decoder here)", same_decoder_for_training_and_evaluation=True)
        return found
    raw = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    decode = dict(mode=tv.io.ImageReadMode.RGB, device=setup.device)
    t = time.perf_counter()
    tv.io.decode_jpeg(raw[:8], **decode)  # nvjpeg's handles and buffers
    torch.cuda.synchronize()
    found["first_batch_seconds"] = round(time.perf_counter() - t, 3)
    out, fallbacks = [], 0
    t = time.perf_counter()
    for i in range(0, len(raw), 64):
        try:
            out += tv.io.decode_jpeg(raw[i : i + 64], **decode)
        except Exception:  # one file fails the batch: one by one, PIL for what nvjpeg refuses
            for j, r in enumerate(raw[i : i + 64]):
                try:
                    out.append(tv.io.decode_jpeg(r, **decode))
                except Exception:
                    fallbacks += 1
                    out.append(pil[i + j].to(setup.device))
    torch.cuda.synchronize()
    found.update(
        decoder=f"torchvision {tv.__version__} decode_jpeg on {setup.device}, batches of 64",
        img_per_s=round(len(raw) / (time.perf_counter() - t), 1),
        pil_fallbacks=fallbacks,
    )
    if fallbacks:
        warnings.warn(f"nvjpeg refused {fallbacks} of {len(raw)} JPEGs; PIL decoded them", stacklevel=2)
    diffs = [(a.cpu().int() - b.int()).abs() for a, b in zip(out, pil) if a.shape == b.shape]
    found.update(
        same_decoder_for_training_and_evaluation=False,
        nvjpeg_vs_pil_mean_abs=round(float(torch.cat([d.flatten().float() for d in diffs]).mean()), 3),
        nvjpeg_vs_pil_max_abs=int(max(int(d.max()) for d in diffs)),
        nvjpeg_vs_pil_shape_mismatches=len(out) - len(diffs),
    )
    return found


def dense_eval(setup: Setup, found: dict) -> dict:
    """evaluate()'s dense protocol (flips, bf16 on CUDA) over the check's own validation images, a
    realistic mix of sizes, at each Q: a first pass builds the cuDNN plans of every new shape (timed
    apart), the second pass runs on the cached plans (the rate)."""
    size = setup.size
    net = models.build(size.config, width=size.width, num_classes=1000, crop=size.crop)
    images = list(itertools.islice(data.EvalImages(data.ILSVRC(setup.root, "val", boxes=False)), size.eval_images))
    how = Execution(device=setup.device, batch_size=size.batch)
    mean = setup.stats.preprocess()
    found.update(config=size.config, flip=True, bf16=setup.device.startswith("cuda"), images=len(images))
    shapes = set()
    for q in size.scales:
        for _, img, _ in images:
            shapes.add(transforms.scaled_size(img.shape[-2], img.shape[-1], q))
    found["distinct_shapes"] = len(shapes)
    rows = found.setdefault("by_Q", {})
    for q in size.scales:
        first = evaluate.evaluate(net, mean, images, Protocol("dense", [q]), how=how)
        again = evaluate.evaluate(net, mean, images, Protocol("dense", [q]), how=how)
        rows[str(q)] = dict(
            first_pass_seconds=round(first.seconds, 2),
            cached_img_per_s=round(again.images / again.seconds, 1),
            forward_passes=again.forward_passes,
            gmac_per_image=round(again.macs_per_image["dense"] / 1e9, 2),
        )
    return found


def resume(setup: Setup, found: dict) -> dict:
    """Resume under deterministic settings (cuDNN deterministic, no autotune): train ``steps``
    straight, twice (the floor: what two uninterrupted runs differ by), and once with a Ctrl-C
    after a checkpoint and a resume; passed when the resumed weights differ from the straight ones
    by at most twice the floor (zero when the settings are deterministic, as on a CPU)."""
    size = setup.size
    profile = dataclasses.replace(setup.profile, width=size.resume_width, batch_size=size.resume_batch)
    profile = dataclasses.replace(profile, checkpoint_every=2, epochs=1)
    settings = recipe.Settings(config="A", scale=profile.S(256), max_steps=4, dropout=0.0)
    speed = dataclasses.replace(devices.Speed.of(setup.device), benchmark=False, sync_every=1)
    cudnn = torch.backends.cudnn
    before = cudnn.deterministic
    cudnn.deterministic = True
    try:
        for name in ("straight", "again"):
            recipe.train(profile, settings, setup.scratch / name, progress=False, speed=speed)
        real, calls = recipe.loss_fn, {"n": 0}

        def interrupt_at_3(logits, labels):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real(logits, labels)

        recipe.loss_fn = interrupt_at_3
        try:
            recipe.train(profile, settings, setup.scratch / "resumed", progress=False, speed=speed)
        except recipe.Interrupted:
            pass
        finally:
            recipe.loss_fn = real
        found["interrupted_after_step"] = checkpoints.load(setup.scratch / "resumed" / "checkpoint.pt")["step"]
        recipe.train(profile, settings, setup.scratch / "resumed", progress=False, resume=True, speed=speed)
    finally:
        cudnn.deterministic = before
    a, b, c = (checkpoints.load(setup.scratch / d / "checkpoint.pt")["model"] for d in ("straight", "again", "resumed"))
    floor = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    diff = max((a[k].float() - c[k].float()).abs().max().item() for k in a)
    found.update(
        net=f"A at width {size.resume_width:g}, crop {size.crop}, batch {size.resume_batch}",
        steps=4, settings="cudnn.deterministic, autotune off, TF32 as in training",
        floor_max_abs=floor, max_abs_weight_difference=diff, tolerance=2 * floor,
        bit_equal=diff == 0, passed=diff <= 2 * floor,
    )  # fmt: skip
    return found
