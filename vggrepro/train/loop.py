"""The one training loop: SGD steps, the schedule, checkpoints and resuming.

    SGD, momentum 0.9, weight decay 5e-4; the lr is divided by 10 when validation accuracy stops
    improving, at most 3 times, and then training stops.

Checkpoints are written atomically every N steps and at each epoch's end, with the optimiser, the
schedule, the RNG states and the position in the data, so that a resumed run continues exactly.
The loss is read back on the host every ``speed.sync_every`` steps (every step on a CPU, where it
costs nothing): a non-finite loss stops training there, and no checkpoint is written after one.

Section 3.1's classification nets and Appendix A's box regressors (:mod:`vggrepro.localise.finetune`)
both train here. What differs is what the :class:`Plan` hands the loop: its batch source (a batch is
an input and the loss's targets), its loss, and whether epochs are validated (the plateau schedule)
or simply counted (:class:`ConstantSchedule`, each epoch recorded by its mean training loss).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core import devices
from ..core.files import append_line, atomic_write_bytes
from ..core.runs import Run, read_metrics
from . import checkpoints
from .validation import validate

MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
MAX_LR_CUTS = 3
LOG_EVERY = 10  # steps between logged losses


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Soft-max cross-entropy (the paper's multinomial logistic regression)."""
    return F.cross_entropy(logits.float(), labels)


class PlateauSchedule:
    """lr / 10 whenever validation accuracy has not improved for ``patience`` epochs;
    after ``max_cuts`` cuts, the next plateau stops training (the paper cut 3 times,
    then stopped). During the first ``hold`` epochs a stall is not a plateau: a deep
    net started from A stalls at first while its new layers find their scale (the
    instability section 3.1 starts B-E from A to soften), and a cut then would leave
    it at a tenth of the lr."""

    def __init__(
        self,
        lr: float,
        patience: int,
        max_cuts: int = MAX_LR_CUTS,
        hold: int = 0,
    ):
        self.lr, self.patience, self.max_cuts, self.hold = lr, patience, max_cuts, hold
        self.best, self.bad_epochs, self.cuts, self.stop = -math.inf, 0, 0, False
        self.epochs = 0

    def step(self, val_accuracy: float) -> None:
        self.epochs += 1
        if val_accuracy > self.best:
            self.best, self.bad_epochs = val_accuracy, 0
            return
        if self.epochs <= self.hold:
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.bad_epochs = 0
            if self.cuts == self.max_cuts:
                self.stop = True
            else:
                self.cuts += 1
                self.lr /= 10

    def state_dict(self) -> dict:
        return dict(
            lr=self.lr,
            best=self.best,
            bad_epochs=self.bad_epochs,
            cuts=self.cuts,
            stop=self.stop,
            epochs=self.epochs,
        )

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class ConstantSchedule:
    """A constant lr for the plan's epochs, with nothing validated: box regression's fine-tuning
    (the paper gives it no schedule). It never cuts the lr and never stops training early."""

    cuts, stop = 0, False

    def __init__(self, lr: float):
        self.lr = lr

    def state_dict(self) -> dict:
        return dict(lr=self.lr)

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"]


@dataclass
class Plan:
    """What the loop runs: its data, its length, where it writes, and how the device is driven.

    A batch of ``loader`` is ``(x, *targets)``: the loss is ``loss(step_fn(x), *targets)``. With no
    ``val_crops`` nothing is validated: the schedule is a :class:`ConstantSchedule`, training runs
    ``epochs`` epochs, and each epoch is recorded by its mean training loss."""

    run: Run
    loader: object  # batches(epoch, start_step) and len(): data.TrainLoader, localise.finetune.BoxBatches
    val_crops: object | None  # validation.CentreCrops; None: fixed epochs, nothing validated
    epochs: int
    max_steps: int | None
    checkpoint_every: int | None  # steps; None: at each epoch's end only
    speed: devices.Speed
    meta: dict  # the checkpoint's meta (checkpoints.model_meta)
    rank: int = 0
    world_size: int = 1
    show: bool = False  # a progress bar
    label: str = ""  # the bar's name for the net
    loss: Callable = loss_fn
    saved: dict = field(default_factory=lambda: {"step": None})  # the step on disk, for messages
    memory_format: torch.memory_format = torch.channels_last  # of each batch's input


class Trainer:
    """One net's optimisation, from its first step or from its checkpoint to the stop."""

    def __init__(
        self, net: nn.Module, model: nn.Module, optimizer, schedule: PlateauSchedule | ConstantSchedule, plan: Plan
    ):
        self.net, self.model, self.optimizer, self.schedule, self.plan = net, model, optimizer, schedule, plan
        self.epoch = self.step_in_epoch = self.step = 0
        self.losses: list[tuple[int, torch.Tensor, int]] = []  # (step, loss, images) not yet read on the host
        self.epoch_loss = [0.0, 0]  # this epoch's losses as read: the sum of loss x images, and the images
        self.history: list[dict] = []  # a record per finished epoch, as logged
        self.wall_s = 0.0  # seconds of training before this process (a resumed run's earlier ones)
        self.started = time.perf_counter()  # when this process began training (reset by fit)
        self.saved_at = self.started  # when this process last wrote a checkpoint (or began)
        self.bar = None

    # -- checkpoints
    def restore(self) -> None:
        """Continue from the run's checkpoint (which must be this run's)."""
        run = self.plan.run
        ckpt = checkpoints.load_training(run.checkpoint, self.plan.speed.device)
        check_resumable(run, ckpt["meta"], self.plan.meta)
        self.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if "schedule" in ckpt:  # (a box regressor's checkpoint of before the one loop has none: constant lr)
            self.schedule.load_state_dict(ckpt["schedule"])
        checkpoints.restore_rng(ckpt["rng"])
        self.epoch, self.step_in_epoch, self.step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]
        self.history, self.wall_s = ckpt.get("history", []), ckpt.get("wall_s", 0.0)
        self.plan.saved["step"] = self.step

    def _due(self) -> bool:
        """A periodic checkpoint is due: at least ``speed.checkpoint_seconds`` since the last save."""
        return time.perf_counter() - self.saved_at >= self.plan.speed.checkpoint_seconds

    def save(self) -> None:
        self.saved_at = time.perf_counter()
        self.read_losses()  # never write a checkpoint past a non-finite loss
        if self.plan.rank == 0:
            checkpoints.save(
                dict(
                    model=self.net.state_dict(),
                    optimizer=self.optimizer.state_dict(),
                    schedule=self.schedule.state_dict(),
                    rng=checkpoints.rng_state(),
                    epoch=self.epoch,
                    step_in_epoch=self.step_in_epoch,
                    step=self.step,
                    meta=self.plan.meta,
                    history=self.history,
                    wall_s=self.wall_s + time.perf_counter() - self.started,
                ),
                self.plan.run.checkpoint,
            )
        self.plan.saved["step"] = self.step

    # -- the loss, read on the host now and then
    def read_losses(self) -> None:
        """Read the losses queued since the last read (one host sync), stop on a non-finite one, and
        log every LOG_EVERY-th."""
        if not self.losses:
            return
        values = torch.stack([loss for _, loss, _ in self.losses]).tolist()
        steps = [(s, n) for s, _, n in self.losses]
        self.losses = []
        for (step, n), value in zip(steps, values):
            if not math.isfinite(value):
                saved, path = self.plan.saved["step"], self.plan.run.checkpoint
                kept = (
                    f"The last good checkpoint is kept at {path} (step {saved})"
                    if saved is not None
                    else "No checkpoint was written before it"
                )
                raise FloatingPointError(
                    f"loss is {value} at step {step} (epoch {self.epoch + 1}): training "
                    f"stopped. {kept}. Lower the lr (--lr) or check the data."
                )
            self.epoch_loss = [self.epoch_loss[0] + value * n, self.epoch_loss[1] + n]
            if self.plan.rank == 0 and step % LOG_EVERY == 0:
                log(
                    self.plan.run.metrics_path,
                    dict(step=step, epoch=self.epoch, loss=round(value, 6), lr=self.schedule.lr),
                )
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{values[-1]:.3f}", lr=f"{self.schedule.lr:.1e}")

    # -- the loop
    def train_step(self, step_fn, x: torch.Tensor, *targets: torch.Tensor) -> None:
        plan = self.plan
        with plan.speed.autocast():  # the forward pass; backward runs outside autocast
            loss = plan.loss(step_fn(x), *targets)
        self.losses.append((self.step + 1, loss.detach(), len(x)))
        if (self.step + 1) % plan.speed.sync_every == 0:
            # before the update: a non-finite loss never reaches the weights here
            self.read_losses()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step, self.step_in_epoch = self.step + 1, self.step_in_epoch + 1

    def fit(self, step_fn) -> dict:
        """Train until the epochs, ``max_steps`` or the schedule's stop; the outcome as a
        dict."""
        plan, schedule = self.plan, self.schedule
        t_start, seen, stopped, last = time.perf_counter(), 0, "epochs", None
        self.started = t_start
        while self.epoch < plan.epochs and not schedule.stop:
            for group in self.optimizer.param_groups:
                group["lr"] = schedule.lr
            self.bar = tqdm(
                total=len(plan.loader),
                initial=self.step_in_epoch,
                disable=not plan.show,
                leave=False,
                desc=f"{plan.label} epoch {self.epoch + 1}/{plan.epochs}",
            )
            t_epoch, seen_epoch, self.epoch_loss = time.perf_counter(), 0, [0.0, 0]
            batches = plan.loader.batches(self.epoch, start_step=self.step_in_epoch)
            for x, *targets in devices.prefetch(batches, plan.speed.device):
                if plan.max_steps is not None and self.step >= plan.max_steps:
                    break
                # Under DDP the loader gives each process its share of the global batch.
                x = x.to(plan.speed.device, non_blocking=True)
                x = x.contiguous(memory_format=plan.memory_format)
                targets = [t.to(plan.speed.device, non_blocking=True) for t in targets]
                self.train_step(step_fn, x, *targets)
                seen_epoch += len(x) * plan.world_size
                self.bar.update(1)
                every = plan.checkpoint_every
                if every and self.step % every == 0 and self._due():
                    self.save()
            self.read_losses()
            self.bar.close()
            seen += seen_epoch
            if plan.max_steps is not None and self.step >= plan.max_steps:
                stopped = "max_steps"
                self.save()
                break
            # nothing validated: the epoch's record is its mean training loss
            if plan.val_crops is None:
                record = dict(
                    epoch=self.epoch + 1,
                    loss=self.epoch_loss[0] / self.epoch_loss[1],
                    images=self.epoch_loss[1],
                )
            else:
                top1, top5 = last = validate(self.net, plan.val_crops, plan.speed)
                schedule.step(100.0 - top1)
                rate = seen_epoch / max(time.perf_counter() - t_epoch, 1e-9)
                record = dict(
                    epoch=self.epoch + 1,
                    top1_err=top1,
                    top5_err=top5,
                    lr=schedule.lr,
                    img_per_s=round(rate, 1),
                )
            self.history.append(record)
            if plan.rank == 0:
                log(plan.run.metrics_path, dict(step=self.step, **record))
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            # the last one always
            if self.epoch >= plan.epochs or schedule.stop or self._due():
                self.save()
        if schedule.stop:
            stopped = f"lr cut {MAX_LR_CUTS} times, then plateau"
        if plan.val_crops is None:
            top1 = top5 = None
        elif stopped == "max_steps" or last is None:
            top1, top5 = validate(self.net, plan.val_crops, plan.speed)
        else:
            top1, top5 = last
        seconds = time.perf_counter() - t_start
        return dict(
            epochs=self.epoch,
            steps=self.step,
            stopped=stopped,
            top1_err=top1,
            top5_err=top5,
            lr_cuts=schedule.cuts,
            seconds=round(seconds, 1),
            img_per_s=round(seen / max(seconds, 1e-9), 1),
            history=self.history,
            wall_s=self.wall_s + seconds,
        )


def check_resumable(run: Run, old: dict, new: dict) -> None:
    """The checkpoint in a run folder must be this run's: another net's would not load, and another
    run's would continue the wrong training."""
    checkpoints.check_meta(old, run.checkpoint)
    arch = ("config", "width", "crop", "num_classes")
    if any(old[k] != new[k] for k in arch) or old.get("run_id", new["run_id"]) != new["run_id"]:
        have = ", ".join(f"{k}={old.get(k)}" for k in (*arch, "run_id"))
        raise ValueError(
            f"{run.checkpoint} is the checkpoint of another run ({have}), not of run {new['run_id']}; "
            "start from it with --init checkpoint:PATH, or pass another --out"
        )


def log(path: Path, record: dict) -> None:
    try:  # never through a link (append_line refuses one)
        append_line(path, json.dumps(record, sort_keys=True))
    except OSError as e:  # a full disk names no file: name it (a torn last line is dropped on resume)
        text = e.strerror or str(e)
        raise OSError(e.errno, text if str(path) in text else f"cannot write {path}: {text}") from None


def trim_metrics(path: Path, last_step: int, epochs_done: int | None = None) -> None:
    """After a crash, drop what was logged past the checkpoint we resume from (step 0 when there is
    none: all of it); it will be redone. A line torn by the kill goes too, and so does an epoch's
    validation line logged at the checkpoint's own step when the checkpoint predates it (killed
    between the line and the epoch's last save): the resumed run validates that epoch again."""
    if path.exists():

        def kept(r: dict) -> bool:
            redone = epochs_done is not None and "top1_err" in r and r.get("epoch", 0) > epochs_done
            return r["step"] <= last_step and not redone

        keep = [json.dumps(r, sort_keys=True) for r in read_metrics(path) if kept(r)]
        atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())
