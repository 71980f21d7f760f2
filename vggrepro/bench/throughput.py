"""Throughput and MFU: how fast a VGG net trains or evaluates on this device.

FLOPs are counted from the architecture, not guessed: a forward pass costs 2 x MACs (one multiply,
one add), and a training step about 3 x that (forward, plus the backward pass's two products: the
gradients with respect to the activations and to the weights). MFU is the achieved FLOP/s over
the device's peak: the vendor's dense peak for the dtype on a known GPU, and on a CPU the rate of a
large matrix product measured on the spot (so a CPU's MFU is relative to what torch reaches here).

A benchmark prints and records figures (JSON with provenance); it is never a test.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import models
from ..core.devices import backend_flags, synchronize
from ..evaluate.protocols import dense_macs

#: Dense peak TFLOP/s by GPU name fragment and dtype (vendor data sheets, SXM parts, no sparsity).
GPU_PEAK_TFLOPS = {
    "H100": {"bf16": 989.0, "fp32": 67.0, "tf32": 494.0},
    "H200": {"bf16": 989.0, "fp32": 67.0, "tf32": 494.0},
    "A100": {"bf16": 312.0, "fp32": 19.5, "tf32": 156.0},
}
PRECISIONS = ("fp32", "tf32", "bf16")


def measured_matmul_tflops(device: str, dtype: torch.dtype, n: int = 2048, repeat: int = 5) -> float:
    """The rate of an n x n matrix product on this device: a practical peak where no data sheet
    applies (a GPU needs n = 8192 or more to be saturated; the GPU check passes that)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeat / (time.perf_counter() - t) / 1e12


def peak_tflops(device: str, precision: str) -> tuple[float, str]:
    """The peak to divide by for ``precision`` ("fp32", "tf32" or "bf16"), and where it came from.

    A GPU's fp32 convolutions run in TF32 unless TF32 is switched off, which :func:`bench_one` does
    explicitly for its "fp32" rows: so an fp32 row is divided by the fp32 peak, a tf32 row by TF32's."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key, peaks in GPU_PEAK_TFLOPS.items():
            if key in name:
                return peaks[precision], f"{key} data sheet, dense {precision}"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return measured_matmul_tflops(device, dtype), f"measured {2048}x{2048} matmul on this device"


@dataclass(frozen=True)
class Case:
    """One benchmark setting: the mode, the net and its input, the speed-ups, the device, the steps timed."""

    mode: str  # "train": SGD steps at the crop; "eval": dense forward passes on size x size images
    config: str
    size: int
    batch: int
    width: float = 1.0
    crop: int = 224
    num_classes: int = 1000
    channels_last: bool = True
    bf16: bool = False
    tf32: bool = False  # off by default, so that an fp32 row is fp32
    compile: bool = False
    device: str = "cpu"
    steps: int = 10


def bench_one(case: Case, *, warmup: int = 3, peak: bool = True) -> dict:
    """img/s and achieved TFLOP/s of ``case.mode`` ("train": SGD steps at the crop; "eval": dense
    forward passes on size x size images) for one setting, after ``warmup`` untimed steps.

    TF32 is set explicitly (``case.tf32``; off by default, so that an fp32 row is fp32) and cuDNN
    autotuning is on for the run (one shape throughout); both are put back afterwards. Under
    ``bf16`` only the forward pass and the loss run in autocast, the backward pass outside it.
    ``peak=False`` leaves out the peak and MFU (on a CPU the peak is a matmul measured on the spot:
    slow in bf16)."""
    with backend_flags(benchmark=True, tf32=case.tf32):
        row = _bench(case, warmup)
    precision = "bf16" if case.bf16 else ("tf32" if case.tf32 else "fp32")
    row = dict(row, tf32=case.tf32, precision=precision)
    if not peak:
        return row
    tflops, source = peak_tflops(case.device, precision)
    return dict(row, peak_tflops=round(tflops, 2), peak_source=source, mfu=round(row["tflops"] / tflops, 4))


def _bench(case: Case, warmup: int) -> dict:
    row = next(windows(case, 1, warmup))
    row.pop("first_steps_seconds")
    return row


def windows(case: Case, count: int, warmup: int = 3):
    """One row per timed window of ``case.steps`` steps, ``count`` windows after ``warmup`` untimed
    steps; the first row also holds ``first_steps_seconds``, the warm-up's wall time (where cuDNN's
    autotune and a compile land: a one-time cost, apart from the rate). TF32 and autotuning are the
    caller's to set (:func:`bench_one` sets them)."""
    # plain names, as the measurement reads them
    mode, config, size, batch, width, crop = case.mode, case.config, case.size, case.batch, case.width, case.crop
    num_classes, channels_last, bf16, compile = case.num_classes, case.channels_last, case.bf16, case.compile
    device, steps = case.device, case.steps
    if steps < 1 or batch < 1 or warmup < 0 or count < 1:
        raise ValueError(
            f"steps={steps}, batch={batch}, warmup={warmup}, count={count}: need steps, batch, count >= 1, warmup >= 0"
        )
    net = models.build(config, width=width, num_classes=num_classes, crop=crop).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    if mode == "train":
        size = crop
        fn = net
        net.train()
        macs = models.count_macs(net, size)
        flops_per_image = 3 * 2 * macs
    elif mode == "eval":
        fn = models.to_dense(net).eval()
        h = w = size
        macs = dense_macs(net, h, w)
        flops_per_image = 2 * macs
    else:
        raise ValueError(f"mode {mode!r}: use 'train' or 'eval'")
    if compile:
        fn = torch.compile(fn)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)

    def step():
        if mode == "train":
            with autocast:
                loss = F.cross_entropy(fn(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # outside autocast, as in training
            opt.step()
        else:
            with torch.inference_mode(), autocast:
                fn(x)

    t = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    first = {"first_steps_seconds": round(time.perf_counter() - t, 3)}
    for _ in range(count):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        seconds = time.perf_counter() - t
        img_s = batch * steps / seconds
        achieved = img_s * flops_per_image / 1e12
        peak_memory = torch.cuda.max_memory_allocated(device) if device.startswith("cuda") else None
        yield dict(
            first,
            mode=mode,
            config=config,
            width=width,
            size=size,
            batch=batch,
            channels_last=channels_last,
            bf16=bf16,
            compile=compile,
            img_per_s=round(img_s, 1),
            gflops_per_image=round(flops_per_image / 1e9, 3),
            tflops=round(achieved, 3),
            peak_memory_bytes=peak_memory,
        )
        first = {}


@dataclass(frozen=True)
class Grid:
    """A benchmark grid: every config x size x variant of one mode, the rest of the case fixed."""

    mode: str
    configs: list[str]
    sizes: list[int]
    batch: int
    width: float
    crop: int
    device: str
    variants: list[tuple[bool, bool, bool, bool]]  # (channels_last, bf16, compile, tf32)
    steps: int
    num_classes: int

    def cases(self):
        """The grid's cases, configs outermost, variants innermost."""
        for config, size, (cl, bf16, comp, tf32) in itertools.product(self.configs, self.sizes, self.variants):
            yield Case(
                self.mode,
                config,
                size=size,
                batch=self.batch,
                width=self.width,
                crop=self.crop,
                num_classes=self.num_classes,
                channels_last=cl,
                bf16=bf16,
                tf32=tf32,
                compile=comp,
                device=self.device,
                steps=self.steps,
            )


def run_grid(grid: Grid) -> list[dict]:
    rows = []
    for case in grid.cases():
        row = bench_one(case)
        print(
            f"{case.mode} {case.config} {row['size']}px width={case.width:g} batch={case.batch} "
            f"channels_last={case.channels_last} {row['precision']} compile={case.compile}: "
            f"{row['img_per_s']:,.1f} img/s, {row['tflops']:.2f} TFLOP/s, MFU {row['mfu']:.1%}"
        )
        rows.append(row)
    return rows
