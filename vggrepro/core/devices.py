"""How a device is driven: precision, backend flags, host syncs and prefetching.

Everything here is a no-op for the bits of a CPU run: the CPU path computes in float32 and reads
the loss every step, as it always did. On CUDA a forward pass runs under bf16 autocast, the loss
is read back every ``sync_every`` steps (each read makes the CPU wait for the GPU), and the next
batch is prepared on a side stream while the current one computes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

#: Steps between host reads of the loss on a GPU: one read per this many steps keeps the queue full.
SYNC_EVERY = 50
#: On a GPU, a periodic checkpoint at most this often: a crash loses at most these minutes of work.
CHECKPOINT_SECONDS = 600.0


def check_device(device: str, flag: str = "--device") -> str:
    """``device`` ("cpu", "cuda", "cuda:N"; "auto": CUDA when there is one) as torch names it, if it
    can run here; else a one-line ValueError naming it and the fix (a misspelt device, or CUDA asked
    of a torch without it, would otherwise be a traceback at the first tensor moved)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"{flag} {device!r} is not a device vggrepro runs on; use cpu, cuda (cuda:N) or auto")
    if kind == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU found"
        raise ValueError(
            f"{flag} {device}: CUDA is not available here (torch {torch.__version__}, {build}); use {flag} cpu"
        )
    index = torch.device(device).index
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise ValueError(f"{flag} {device}: this machine has {torch.cuda.device_count()} GPU(s); use cuda:0 or cuda")
    return device


@dataclass(frozen=True)
class Speed:
    """The device-dependent choices of a training or evaluation run (none changes a CPU result)."""

    device: str
    bf16: bool = False  # forward passes under bf16 autocast (the loss is computed in float32)
    sync_every: int = 1  # steps between host reads of the loss (and the NaN check)
    benchmark: bool = False  # cudnn autotuning: worth it for training's fixed-shape batches
    batched_crops: bool = False  # a training batch's crops in one pass on the device (device_batch)
    # the least seconds between periodic checkpoints (every N steps, each epoch's end); the last is
    # always written. 0: every one (the CPU). On a GPU a D checkpoint is 1 GB written every ~12 s.
    checkpoint_seconds: float = 0.0

    @classmethod
    def of(cls, device: str | torch.device) -> Speed:
        cuda = torch.device(device).type == "cuda"
        return cls(
            str(device),
            bf16=cuda,
            sync_every=SYNC_EVERY if cuda else 1,
            benchmark=cuda,
            batched_crops=cuda,
            checkpoint_seconds=CHECKPOINT_SECONDS if cuda else 0.0,
        )

    @property
    def kind(self) -> str:
        return torch.device(self.device).type

    def autocast(self):
        """bf16 autocast for the forward pass when asked; the backward pass runs outside it."""
        return torch.autocast(self.kind, dtype=torch.bfloat16, enabled=self.bf16)


@contextlib.contextmanager
def backend_flags(*, benchmark: bool, tf32: bool | None = None):
    """Set cuDNN autotuning (and TF32, unless None) for a block and put the previous values back
    after it, so that training's autotuning does not follow into dense evaluation (one autotune
    per image size). These flags are read by cuDNN and cuBLAS alone: they change nothing on a CPU."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    tf32 = (cudnn.allow_tf32, matmul.allow_tf32) if tf32 is None else (tf32, tf32)
    cudnn.benchmark, (cudnn.allow_tf32, matmul.allow_tf32) = benchmark, tf32
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before


def prefetch(batches, device: str | torch.device):
    """Yield ``batches`` one ahead: the next batch is made while the current one computes.

    On CUDA the next batch is made on a side stream (its copies and resizes then never wait for
    the training step's kernels), and the compute stream waits for it before use."""
    device = torch.device(device)
    side = torch.cuda.Stream(device) if device.type == "cuda" else None
    it = iter(batches)

    def make():
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            return next(it, None)

    ahead = make()
    while ahead is not None:
        batch = ahead
        if side is not None:
            current = torch.cuda.current_stream(device)
            current.wait_stream(side)
            for t in batch:  # the caching allocator must not reuse these while the step reads them
                t.record_stream(current)
        ahead = make()
        yield batch


def synchronize(device: str | torch.device) -> None:
    """Wait for queued GPU work (for honest wall times); nothing on a CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
