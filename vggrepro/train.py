"""Section 3.1: training a VGG net with the paper's recipe, in one readable function.

    SGD, momentum 0.9, weight decay 5e-4, dropout 0.5 on fc6 and fc7, batch 256 at lr 1e-2
    (a smaller batch scales the lr linearly); the lr is divided by 10 when validation accuracy
    stops improving, at most 3 times, and then training stops.

The same code runs on a laptop CPU, one GPU (bf16 autocast, channels_last, cudnn.benchmark,
optional torch.compile) and many GPUs under ``torchrun`` (DistributedDataParallel: each process
takes its slice of the global batch and the gradients are averaged, which is the paper's
synchronous multi-GPU scheme and equals one process with the same global batch).

Checkpoints are written atomically every N steps and at each epoch's end, with the optimiser,
the schedule, the RNG states and the position in the data, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import checkpoints, kernels, models
from .cli import error_message
from .profiles import Profile, get_profile
from .runs import Run, data_fingerprint, read_metrics

MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
MAX_LR_CUTS = 3
INITS = ("gaussian", "glorot", "from-a", "checkpoint")


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Soft-max cross-entropy (the paper's multinomial logistic regression)."""
    return F.cross_entropy(logits.float(), labels)


class PlateauSchedule:
    """lr / 10 whenever validation accuracy has not improved for ``patience`` epochs; after
    ``max_cuts`` cuts, the next plateau stops training (the paper cut 3 times, then stopped)."""

    def __init__(self, lr: float, patience: int, max_cuts: int = MAX_LR_CUTS):
        self.lr, self.patience, self.max_cuts = lr, patience, max_cuts
        self.best, self.bad_epochs, self.cuts, self.stop = -math.inf, 0, 0, False

    def step(self, val_accuracy: float) -> None:
        if val_accuracy > self.best:
            self.best, self.bad_epochs = val_accuracy, 0
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
        return dict(lr=self.lr, best=self.best, bad_epochs=self.bad_epochs, cuts=self.cuts, stop=self.stop)

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


@dataclass
class Settings:
    """Everything that decides a training run's result; a run folder is keyed by these."""

    config: str
    scale: int | tuple[int, int]  # S in the profile's pixels; (Smin, Smax) for jittering
    init: str = "gaussian"  # gaussian | glorot | from-a:<checkpoint> | checkpoint:<checkpoint>
    lr: float | None = None  # None: the profile's (1e-2 scaled to its batch)
    epochs: int | None = None  # None: the profile's (finetune_epochs for checkpoint: inits)
    max_steps: int | None = None
    dropout: float | None = None  # None: the profile's (0.5, the paper's, except at ci)
    seed: int | None = None
    init_std: float | str | None = None  # None: the profile's
    trainable: str = "all"  # "all", or "fc": only fc6-fc8 learn (the submission's jitter-tuned D)

    def key(self, profile: Profile) -> dict:
        """The run's identity: these settings plus every profile knob that changes the result."""
        scale = list(self.scale) if isinstance(self.scale, (tuple, list)) else int(self.scale)
        knobs = {k: v for k, v in profile.as_dict().items() if k not in ("workers", "notes", "device", "name")}
        if profile.data_kind == "synthetic":  # the set is a function of the synth_* knobs and the seed,
            from .synth import FORMAT  # so where it lies does not matter: a copied runs/ is re-used

            knobs["data_root"] = FORMAT
        key = dict(kind="train", config=self.config, scale=scale, init=_init_label(self.init),
                   init_source=_init_source(self.init), lr=self.lr, epochs=self.epochs,
                   max_steps=self.max_steps, dropout=self.dropout, seed=self.seed, init_std=self.init_std,
                   trainable=self.trainable, profile=knobs)
        if profile.data_kind != "synthetic":  # a user's folder may change in place: name its contents too
            path = profile.data_path
            key["data"] = data_fingerprint(path) if path.is_dir() else "missing"
        return key

    def resolve(self, profile: Profile) -> dict:
        """The values the run uses (these settings, or the profile's defaults), checked."""
        finetune = _init_label(self.init) == "checkpoint"  # S=384 from 256, jittered from 384
        used = dict(lr=profile.lr if self.lr is None else self.lr,
                    epochs=(profile.finetune_epochs if finetune else profile.epochs) if self.epochs is None
                    else self.epochs,
                    max_steps=self.max_steps,
                    dropout=profile.dropout if self.dropout is None else self.dropout,
                    seed=profile.seed if self.seed is None else self.seed,
                    init_std=profile.init_std if self.init_std is None else self.init_std)
        number = (int, float)
        checks = [
            ("lr", isinstance(used["lr"], number) and math.isfinite(used["lr"]) and used["lr"] > 0,
             "a positive learning rate"),
            ("epochs", _is_int(used["epochs"]) and used["epochs"] >= 1, "a whole number of epochs >= 1"),
            ("max_steps", used["max_steps"] is None or (_is_int(used["max_steps"]) and used["max_steps"] >= 1),
             "a whole number of steps >= 1"),
            ("dropout", isinstance(used["dropout"], number) and 0 <= used["dropout"] < 1, "a probability in [0, 1)"),
            ("seed", _is_int(used["seed"]) and used["seed"] >= 0, "a whole number >= 0"),
            ("init_std", used["init_std"] == "fan-in" or (isinstance(used["init_std"], number)
                                                         and not isinstance(used["init_std"], bool)
                                                         and used["init_std"] > 0), "a positive std or 'fan-in'"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"{name}={used[name]!r} (--{name.replace('_', '-')}): give {want}")
        return used


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _init_label(init: str) -> str:
    return init.split(":", 1)[0]


def _init_source(init: str) -> str | None:
    """For inits from a checkpoint: the source run's folder name (stable across machines)."""
    if ":" not in init:
        return None
    path = Path(init.split(":", 1)[1])
    return path.parent.name if path.name == "checkpoint.pt" else str(path)


def parse_scale(text: str | int | tuple) -> int | tuple[int, int]:
    """``"73"`` -> 73 (fixed S); ``"73,146"`` -> (73, 146) (jittered S in [Smin, Smax])."""
    if isinstance(text, (int, tuple, list)):
        return tuple(text) if isinstance(text, list) else text
    parts = [int(p) for p in str(text).replace("[", "").replace("]", "").split(",")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 2 or parts[0] > parts[1]:
        raise ValueError(f"--scale {text!r}: give S or Smin,Smax with Smin <= Smax")
    return (parts[0], parts[1])


def test_scale(scale: int | tuple[int, int]) -> int:
    """The single test scale Q for validation: Q = S, or the middle of [Smin, Smax] (section 4.1)."""
    return scale if isinstance(scale, int) else (scale[0] + scale[1]) // 2


# -- distributed --------------------------------------------------------------------------------


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless launched by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> None:
    """Join the process group torchrun set up (nccl on GPUs, gloo on CPUs); no-op otherwise."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


# -- the run -----------------------------------------------------------------------------------


def build_for(profile: Profile, settings: Settings) -> tuple[models.VGG, list[str]]:
    """The net, initialised as the settings say; returns it and a note on what was initialised."""
    net = models.build(settings.config, width=profile.width, num_classes=profile.num_classes, crop=profile.crop)
    kind = _init_label(settings.init)
    std = profile.init_std if settings.init_std is None else settings.init_std
    if kind == "gaussian" and std == "fan-in":
        models.init_fan_in(net)
        note = ["Gaussian N(0, 2/fan-in), fc8 N(0, 0.01^2)"]
    elif kind == "gaussian":
        models.init_gaussian(net, std)
        note = [f"Gaussian N(0, {std:g}^2)"]
    elif kind == "glorot":
        models.init_glorot(net)
        note = ["Glorot uniform"]
    elif kind == "from-a":
        net_a, _ = checkpoints.model_from_checkpoint(settings.init.split(":", 1)[1])
        models.init_fan_in(net) if std == "fan-in" else models.init_gaussian(net, std)
        note = ["from net A: " + ", ".join(models.init_from(net, net_a)) + "; the rest Gaussian"]
    elif kind == "checkpoint":
        source, meta = checkpoints.model_from_checkpoint(settings.init.split(":", 1)[1])
        if meta["config"] != settings.config:
            raise ValueError(f"--init checkpoint holds config {meta['config']}, not {settings.config}")
        net.load_state_dict(source.state_dict())
        note = [f"all layers from a {meta['config']} checkpoint"]
    else:
        raise ValueError(f"unknown init {settings.init!r}; use gaussian, glorot, from-a:PATH or checkpoint:PATH")
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = profile.dropout if settings.dropout is None else settings.dropout
    return net, note


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _log(path: Path, record: dict) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as e:  # a full disk names no file: name it (a torn last line is dropped on resume)
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from None


def _trim_metrics(path: Path, last_step: int) -> None:
    """After a crash, drop what was logged past the checkpoint we resume from (step 0 when there is
    none: all of it); it will be redone. A line torn by the kill goes too."""
    if path.exists():
        keep = [json.dumps(r, sort_keys=True) for r in read_metrics(path) if r["step"] <= last_step]
        checkpoints.atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with a message saying where the last checkpoint is."""


def _interrupted(run: Run, step: int | None) -> Interrupted:
    if step is None and not run.checkpoint.exists():
        return Interrupted(f"interrupted before the first checkpoint of {run.dir}; rerun the same command to start again")
    at = f" (step {step})" if step is not None else ""
    return Interrupted(f"interrupted; the last checkpoint is {run.checkpoint}{at}: rerun the same command with "
                       "--resume to continue from it")


_SAID: set = set()  # notes already printed by this process


def _cpu_budget(profile: Profile) -> tuple[int, int]:
    """The profile's threads and workers, at most the CPUs this process may use (said once).

    Workers only decode, so capping them changes no result. Threads are capped no lower than the
    ci profile's pinned count: its stored outputs are those bits, and 2 threads on 1 core cost
    little (16 on 2 cores cost a lot)."""
    from .profiles import PROFILES

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = min(profile.threads, max(cpus, PROFILES["ci"].threads))
    workers = min(profile.workers, cpus)
    note = (f"note: profile {profile.name!r} asks for {profile.threads} threads and {profile.workers} workers; "
            f"this machine has {cpus} CPUs, so it uses {threads} and {workers}")
    if (threads, workers) != (profile.threads, profile.workers) and note not in _SAID:
        _SAID.add(note)
        print(note, file=sys.stderr)
    return threads, workers


@torch.inference_mode()
def validate(net: nn.Module, batches) -> tuple[float, float]:
    """Top-1 and top-5 error (%) of single centre crops: the quick check that drives the schedule."""
    was = net.training
    net.eval()
    top1 = top5 = n = 0
    for x, y in batches:
        logits = net(x)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += (top[:, :1] == y[:, None]).any(1).sum().item()
        top5 += (top == y[:, None]).any(1).sum().item()
        n += len(y)
    net.train(was)
    return 100.0 * (1 - top1 / n), 100.0 * (1 - top5 / n)


class CentreCrops:
    """The validation images as centre crops at one scale Q, in batches; kept in memory when small."""

    IN_MEMORY = 20_000

    def __init__(self, val, crop: int, Q: int, preprocess, device, memory_format, batch: int = 256):
        self.val, self.crop, self.Q, self.preprocess = val, crop, Q, preprocess
        self.device, self.memory_format, self.batch = device, memory_format, batch
        self.cached = list(self._make()) if len(val.samples) <= self.IN_MEMORY else None

    def _make(self):
        from . import data, transforms

        xs, ys = [], []
        for _, image, label in data.EvalImages(self.val, cache=False):
            xs.append(self.preprocess(transforms.centre_crop(transforms.rescale(image, self.Q), self.crop)))
            ys.append(label)
            if len(xs) == self.batch:
                yield self._pack(xs, ys)
                xs, ys = [], []
        if xs:
            yield self._pack(xs, ys)

    def _pack(self, xs, ys):
        x = torch.stack(xs).to(self.device).contiguous(memory_format=self.memory_format)
        return x, torch.tensor(ys, device=self.device)

    def __iter__(self):
        return iter(self.cached) if self.cached is not None else self._make()


def train(
    profile: Profile | str,
    settings: Settings,
    out: str | Path | None = None,
    *,
    resume: bool = True,
    compile: bool = False,
    progress: bool | None = None,
) -> dict:
    """Train one net and return its result (also in ``<run>/result.json``).

    ``out`` defaults to the run folder keyed by the settings (``runs/<profile>/<run-id>``). A
    finished run is returned as it is; an unfinished one resumes from its checkpoint when
    ``resume`` is true. ``progress`` (tqdm bar) defaults to on when stderr is a terminal.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    models.config_layers(settings.config)  # an unknown config fails before any data is touched
    if _init_label(settings.init) not in INITS:
        raise ValueError(f"unknown init {settings.init!r}; use gaussian, glorot, from-a:PATH or checkpoint:PATH")
    used = settings.resolve(profile)
    device = profile.resolved_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
                         "use --device cpu or --device auto")
    if profile.data_kind != "synthetic" and not profile.data_path.is_dir():
        from .data import LAYOUTS

        raise FileNotFoundError(f"data folder {profile.data_path} not found; pass --data PATH. {LAYOUTS}")
    init_distributed(device)
    rank, world_size = world()
    if profile.batch_size % world_size:
        raise ValueError(f"batch {profile.batch_size} does not split over {world_size} processes")
    kernels.check(profile.name)
    threads, workers = _cpu_budget(profile)
    used.update(threads=threads, workers=workers)
    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    run = Run(profile.name, settings.key(profile), root=Path(out).parent if out else None)
    if out:
        run.dir = Path(out)
    run.check_settings()  # an --out holding another run is an error, not that run's result
    if run.finished():
        return dict(run.result(), run_dir=str(run.dir))
    saved = {"step": None}  # the step of the checkpoint on disk, once known (for the messages)
    # Two notebooks asking for one run: the second waits, then re-uses it. (Under torchrun the
    # ranks of one run train together; rank 0 holds the lock.)
    try:
        with run.lock() if rank == 0 else contextlib.nullcontext():
            run.check_settings()
            if run.finished():
                return dict(run.result(), run_dir=str(run.dir))
            return _train(profile, settings, run, used, device, rank, world_size, cuda, saved,
                          resume=resume, compile=compile, progress=progress)
    except KeyboardInterrupt:  # Ctrl-C: say where the last checkpoint is and how to go on
        raise _interrupted(run, saved["step"]) from None


def _train(profile, settings, run, used, device, rank, world_size, cuda, saved, *, resume, compile, progress):
    from tqdm import tqdm

    from . import data

    show = (sys.stderr.isatty() if progress is None else progress) and rank == 0
    seed, epochs, lr0 = used["seed"], used["epochs"], used["lr"]
    if rank == 0:
        run.start(used)
    if run.checkpoint.exists() and not resume:
        raise ValueError(f"{run.dir} has a checkpoint of an unfinished run: pass --resume to continue it, "
                         "or remove the folder to start again")

    # Data: the ILSVRC-layout reader serves the synthetic set and ImageNet alike.
    root = profile.data_path
    if profile.data_kind == "synthetic":
        # One process generates the set; the others wait for it and then only verify it.
        if rank == 0:
            root = data.ensure_synthetic(profile, verbose=show)
        if world_size > 1:
            dist.barrier()
        if rank != 0:
            root = data.ensure_synthetic(profile, verbose=False)
    train_set, val_set = data.ILSVRC(root, "train", boxes=False), data.ILSVRC(root, "val", boxes=False)
    if len(train_set.classes) > profile.num_classes:
        raise ValueError(f"{train_set.split_dir} holds {len(train_set.classes)} classes but the net has "
                         f"num_classes={profile.num_classes}: pass --set num_classes={len(train_set.classes)}")
    stats = data.dataset_stats(root, progress=show)
    preprocess = stats.preprocess()
    loader = data.TrainLoader(train_set, crop=profile.crop, scale=settings.scale, batch_size=profile.batch_size,
                              preprocess=preprocess, stats=stats, seed=seed, device=device,
                              backend="tensor" if profile.data_kind == "synthetic" else "pil",
                              workers=used["workers"], rank=rank, world_size=world_size, progress=show)
    if len(loader) == 0:  # nothing would be trained, and the untrained net cached as finished
        raise ValueError(f"{train_set.split_dir} has {len(loader.indices)} usable images, fewer than one batch of "
                         f"{profile.batch_size}: lower --batch-size or add images")
    memory_format = torch.channels_last
    val_crops = CentreCrops(val_set, profile.crop, test_scale(settings.scale), preprocess, device, memory_format)

    # Seeded here, after the data: generating or measuring a data set must not move the init.
    torch.manual_seed(seed)
    net, init_note = build_for(profile, settings)
    net = net.to(device, memory_format=memory_format)
    model = nn.parallel.DistributedDataParallel(net) if world_size > 1 else net
    step_fn = torch.compile(model) if compile else model
    if settings.trainable not in ("all", "fc"):
        raise ValueError(f"trainable={settings.trainable!r}: use 'all' or 'fc'")
    learning = net.parameters() if settings.trainable == "all" else net.classifier.parameters()
    if settings.trainable == "fc":
        net.features.requires_grad_(False)
    optimizer = torch.optim.SGD(learning, lr=lr0, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    schedule = PlateauSchedule(lr0, profile.lr_patience)
    epoch, step_in_epoch, step = 0, 0, 0
    meta = checkpoints.model_meta(net, preprocess, profile=profile.name, run_id=run.id, scale=settings.scale,
                                  init=settings.init)

    if run.checkpoint.exists():
        ckpt = checkpoints.load(run.checkpoint, map_location=device)
        _check_resumable(run, ckpt["meta"], meta)
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        _set_rng_state(ckpt["rng"])
        epoch, step_in_epoch, step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]
        saved["step"] = step
    if rank == 0:
        _trim_metrics(run.metrics_path, step)

    def save_checkpoint() -> None:
        if rank == 0:
            checkpoints.save(dict(model=net.state_dict(), optimizer=optimizer.state_dict(),
                                  schedule=schedule.state_dict(), rng=_rng_state(), epoch=epoch,
                                  step_in_epoch=step_in_epoch, step=step, meta=meta), run.checkpoint)
        saved["step"] = step

    t_start, seen = time.perf_counter(), 0
    max_steps = settings.max_steps
    stopped, last = "epochs", None
    while epoch < epochs and not schedule.stop:
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr
        bar = tqdm(total=len(loader), initial=step_in_epoch, desc=f"{settings.config} epoch {epoch + 1}/{epochs}",
                   disable=not show, leave=False)
        t_epoch, seen_epoch = time.perf_counter(), 0
        for x, y in loader.batches(epoch, start_step=step_in_epoch):
            if max_steps is not None and step >= max_steps:
                break
            # Under DDP the loader gives each process its share of the global batch.
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = loss_fn(step_fn(x), y)
            if not torch.isfinite(loss):
                kept = (f"The last good checkpoint is kept at {run.checkpoint} (step {saved['step']})"
                        if saved["step"] is not None else "No checkpoint was written before it")
                raise FloatingPointError(f"loss is {loss.item()} at step {step + 1} (epoch {epoch + 1}): training "
                                         f"stopped. {kept}. Lower the lr (--lr) or check the data.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step, step_in_epoch = step + 1, step_in_epoch + 1
            seen += len(x) * world_size
            seen_epoch += len(x) * world_size
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{schedule.lr:.1e}")
            if rank == 0 and step % 10 == 0:
                _log(run.metrics_path, dict(step=step, epoch=epoch, loss=round(loss.item(), 6), lr=schedule.lr))
            if step % profile.checkpoint_every == 0:
                save_checkpoint()
        bar.close()
        if max_steps is not None and step >= max_steps:
            stopped = "max_steps"
            save_checkpoint()
            break
        top1, top5 = last = validate(net, val_crops)
        schedule.step(100.0 - top1)
        rate = seen_epoch / max(time.perf_counter() - t_epoch, 1e-9)
        if rank == 0:
            _log(run.metrics_path, dict(step=step, epoch=epoch + 1, val_top1_err=top1, val_top5_err=top5,
                                        lr=schedule.lr, img_per_s=round(rate, 1)))
        epoch, step_in_epoch = epoch + 1, 0
        save_checkpoint()
    if schedule.stop:
        stopped = f"lr cut {MAX_LR_CUTS} times, then plateau"

    top1, top5 = validate(net, val_crops) if stopped == "max_steps" or last is None else last
    seconds = time.perf_counter() - t_start
    result = dict(config=settings.config, scale=settings.scale, init=settings.init, init_note=init_note,
                  epochs=epoch, steps=step, stopped=stopped, val_top1_err=top1, val_top5_err=top5,
                  val_images=val_set.usable, lr_cuts=schedule.cuts, checkpoint=str(run.checkpoint.relative_to(run.dir)),
                  seconds=round(seconds, 1), img_per_s=round(seen / max(seconds, 1e-9), 1),
                  skipped_images=[str(p) for p in getattr(loader, "skipped", [])], used=used)
    if rank == 0:
        result = run.finish(result, device)
    if world_size > 1:
        dist.barrier()
    return dict(result, run_dir=str(run.dir))


def _check_resumable(run: Run, old: dict, new: dict) -> None:
    """The checkpoint in a run folder must be this run's: another net's would not load, and another
    run's would continue the wrong training."""
    checkpoints.check_meta(old, run.checkpoint)
    arch = ("config", "width", "crop", "num_classes")
    if any(old[k] != new[k] for k in arch) or old.get("run_id", new["run_id"]) != new["run_id"]:
        have = ", ".join(f"{k}={old.get(k)}" for k in (*arch, "run_id"))
        raise ValueError(f"{run.checkpoint} is the checkpoint of another run ({have}), not of run {new['run_id']}; "
                         "start from it with --init checkpoint:PATH, or pass another --out")


def train_run(profile: Profile | str, config: str, scale, init: str = "gaussian", **kwargs) -> tuple[dict, Run]:
    """Notebook helper: the run for these settings, trained only when it is not finished yet."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    settings = Settings(config=config, scale=parse_scale(scale), init=init, **kwargs)
    result = train(profile, settings)
    return result, Run(profile.name, settings.key(profile))


# -- command line ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="ci", help="ci, gpu or imagenet (default ci)")
    p.add_argument("--config", required=True, help="A, A-LRN, B, C, D, E or B-5x5")
    p.add_argument("--scale", default=None, help="S (e.g. 73) or Smin,Smax for jittering; default: the paper's S=256, scaled")
    p.add_argument("--init", default="gaussian", help="gaussian | glorot | from-a:CKPT | checkpoint:CKPT")
    p.add_argument("--lr", type=float, default=None, help="initial lr (default: 1e-2 scaled to the batch)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--data", default=None, help="train on this folder, in the ILSVRC-2012 layout, read as it is "
                   "(data_kind=imagenet); default: the profile's data (ci, gpu: a generated synthetic set)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None, help="dropout on fc6/fc7 (default: the profile's)")
    p.add_argument("--out", default=None, help="run folder (default runs/<profile>/<run-id>)")
    p.add_argument("--resume", action="store_true", help="continue the run in the folder from its checkpoint")
    p.add_argument("--compile", action="store_true", help="torch.compile the net (faster on GPUs)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="override any profile knob, e.g. --set num_classes=10 --set crop=32")


def parse_knobs(items: list[str]) -> dict:
    """``["num_classes=10", "synth_min_side=(40, 60)"]`` -> a dict of Python values."""
    import ast

    knobs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KNOB=VALUE")
        try:
            knobs[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            knobs[key.strip()] = value
    return knobs


def run_from_args(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in dict(batch_size=args.batch_size, width=args.width, data_root=args.data,
                                        device=args.device, checkpoint_every=args.checkpoint_every).items()
                 if v is not None}
    knobs = parse_knobs(args.set)
    if args.data is not None and knobs.get("data_root", args.data) != args.data:
        raise ValueError(f"--data {args.data} and --set data_root={knobs['data_root']}: give one of them")
    if args.data is not None and "data_kind" not in knobs:
        # --data names the set to train on: never fill it with a generated set or ignore it
        overrides["data_kind"] = "imagenet"
    overrides.update(knobs)
    profile = get_profile(args.profile, **overrides)
    scale = parse_scale(args.scale) if args.scale else profile.S(256)
    settings = Settings(config=args.config, scale=scale, init=args.init, lr=args.lr, epochs=args.epochs,
                        max_steps=args.max_steps, dropout=args.dropout, seed=args.seed)
    models.config_layers(args.config)  # an unknown config fails before any data is touched
    result = train(profile, settings, args.out, resume=args.resume, compile=args.compile,
                   progress=not args.no_progress)
    if world()[0] == 0:
        print(f"{result['config']} S={result['scale']} init={result['init']}: val top-1 error "
              f"{result['val_top1_err']:.1f}%, top-5 error {result['val_top5_err']:.1f}% (centre crop, "
              f"{result['val_images']} images) after {result['epochs']} epochs / {result['steps']} steps "
              f"({result['stopped']}); run folder {result['run_dir']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a net with the paper's recipe (section 3.1)")
    add_arguments(p)
    p.set_defaults(func=run_from_args)


def main(argv: list[str] | None = None) -> int:
    """``python -m vggrepro.train ...`` and ``torchrun ... -m vggrepro.train ...``: the same flags."""
    parser = argparse.ArgumentParser(prog="python -m vggrepro.train", description=register.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"vggrepro train: error: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"vggrepro train: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
