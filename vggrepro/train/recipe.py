"""Section 3.1: training a VGG net with the paper's recipe.

    SGD, momentum 0.9, weight decay 5e-4, dropout 0.5 on fc6 and fc7, batch 256 at lr 1e-2
    (a smaller batch scales the lr linearly); the lr is divided by 10 when validation accuracy
    stops improving, at most 3 times, and then training stops.

One CPU, one GPU (:mod:`vggrepro.core.devices`) or many (:mod:`vggrepro.train.distributed`): this module
says *what* is trained (a run's key, the net, its init, the data); :mod:`vggrepro.train.loop` the loop.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import data, models
from ..core import devices, kernels
from ..core.profiles import PROFILES, Profile
from ..core.runs import Run, refuse_other_record
from ..core.scales import TrainScale
from ..data import LAYOUTS
from ..data.identity import FORMAT
from ..data.ilsvrc import data_fingerprint
from . import checkpoints, distributed
from .loop import MAX_LR_CUTS, MOMENTUM, WEIGHT_DECAY, Plan, PlateauSchedule, Trainer, loss_fn, trim_metrics
from .validation import CentreCrops, CentreView

__all__ = ["MAX_LR_CUTS", "MOMENTUM", "WEIGHT_DECAY", "PlateauSchedule", "Settings", "loss_fn", "train"]
INITS = ("gaussian", "glorot", "from-a", "checkpoint")


def profile_knobs(profile: Profile) -> dict:
    """The profile's knobs that change a trained net (which chains a book trains does not)."""
    ignored = {"workers", "notes", "device", "name", "chains", "first_chain"}
    if not profile.lr_hold_epochs:  # no hold: the key of every run made before the knob existed
        ignored.add("lr_hold_epochs")
    knobs = {k: v for k, v in profile.as_dict().items() if k not in ignored}
    if profile.data_kind == "synthetic":  # the set is a function of the synth_* knobs and the seed
        knobs["data_root"] = FORMAT
    return knobs


@dataclass
class Settings:
    """Everything that decides a training run's result; a run folder is keyed by these."""

    config: str
    scale: TrainScale  # S in the profile's pixels (given as a TrainScale, a number, a pair or a text)
    init: str = "gaussian"  # gaussian | glorot | from-a:<checkpoint> | checkpoint:<checkpoint>
    lr: float | None = None  # None: the profile's (1e-2 scaled to its batch)
    epochs: int | None = None  # None: the profile's (finetune_epochs for checkpoint: inits)
    max_steps: int | None = None
    dropout: float | None = None  # None: the profile's (0.5, the paper's, except at ci)
    seed: int | None = None
    init_std: float | str | None = None  # None: the profile's
    trainable: str = "all"  # "all", or "fc": only fc6-fc8 learn (the submission's jitter-tuned D)

    def __post_init__(self):
        self.scale = TrainScale.parse(self.scale)  # S is parsed here, once, whatever form it came in

    def key(self, profile: Profile) -> dict:
        """The run's identity: these settings plus every profile knob that changes the result."""
        scale = list(self.scale.S()) if self.scale.jittered else self.scale.S()
        knobs = profile_knobs(profile)
        key = dict(
            kind="train",
            config=self.config,
            scale=scale,
            init=_init_label(self.init),
            init_source=_init_source(self.init),
            lr=self.lr,
            epochs=self.epochs,
            max_steps=self.max_steps,
            dropout=self.dropout,
            seed=self.seed,
            init_std=self.init_std,
            trainable=self.trainable,
            profile=knobs,
        )
        if profile.data_kind != "synthetic":  # a user's folder may change in place and is never checked
            path = profile.data_path  # against a manifest: name its files (ilsvrc.data_fingerprint)
            key["data"] = data_fingerprint(path) if path.is_dir() else "missing"
        return key

    def resolve(self, profile: Profile) -> dict:
        """The values the run uses (these settings, or the profile's defaults), checked."""
        finetune = _init_label(self.init) == "checkpoint"  # S=384 from 256, jittered from 384
        used = dict(
            lr=profile.lr if self.lr is None else self.lr,
            epochs=(profile.finetune_epochs if finetune else profile.epochs) if self.epochs is None else self.epochs,
            max_steps=self.max_steps,
            dropout=profile.dropout if self.dropout is None else self.dropout,
            seed=profile.seed if self.seed is None else self.seed,
            init_std=profile.init_std if self.init_std is None else self.init_std,
        )
        number = (int, float)
        checks = [
            (
                "lr",
                isinstance(used["lr"], number) and math.isfinite(used["lr"]) and used["lr"] > 0,
                "a positive learning rate",
            ),
            ("epochs", _is_int(used["epochs"]) and used["epochs"] >= 1, "a whole number of epochs >= 1"),
            (
                "max_steps",
                used["max_steps"] is None or (_is_int(used["max_steps"]) and used["max_steps"] >= 1),
                "a whole number of steps >= 1",
            ),
            ("dropout", isinstance(used["dropout"], number) and 0 <= used["dropout"] < 1, "a probability in [0, 1)"),
            ("seed", _is_int(used["seed"]) and used["seed"] >= 0, "a whole number >= 0"),
            (
                "init_std",
                used["init_std"] == "fan-in"
                or (
                    isinstance(used["init_std"], number)
                    and not isinstance(used["init_std"], bool)
                    and used["init_std"] > 0
                ),
                "a positive std or 'fan-in'",
            ),
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


# -- the run -----------------------------------------------------------------------------------


def build_for(profile: Profile, settings: Settings) -> tuple[models.VGG, list[str]]:
    """The net, initialised as the settings say; returns it and a note on what was initialised."""
    net = profile.build(settings.config)
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
        net_a, _ = checkpoints.model_from_checkpoint(settings.init.split(":", 1)[1])  # train() ran check_start
        models.init_fan_in(net) if std == "fan-in" else models.init_gaussian(net, std)
        note = ["from net A: " + ", ".join(models.init_from(net, net_a)) + "; the rest Gaussian"]
    elif kind == "checkpoint":
        source, meta = checkpoints.model_from_checkpoint(settings.init.split(":", 1)[1])  # train() ran check_start
        models.load_state_dict(net, source.state_dict())
        note = [f"all layers from a {meta['config']} checkpoint"]
    else:
        raise ValueError(f"unknown init {settings.init!r}; use gaussian, glorot, from-a:PATH or checkpoint:PATH")
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = profile.dropout if settings.dropout is None else settings.dropout
    return net, note


def check_start(profile: Profile, settings: Settings) -> None:
    """The net a run starts from (``from-a:``, ``checkpoint:``) must be one this run's net can start
    from, or a one-line ValueError says what it is
    and what to pass: ``from-a:`` net A (the paper copies A's layers into the deeper nets), and both
    at this profile's width, crop and classes (another's layers do not fit)."""
    kind = _init_label(settings.init)
    if kind not in ("from-a", "checkpoint"):
        return
    path = settings.init.split(":", 1)[1]
    meta = checkpoints.check_meta(checkpoints.load(path)["meta"], path)
    flag = f"--init {kind}:{path}"
    if kind == "from-a" and meta["config"] != "A":
        raise ValueError(
            f"{flag} holds net {meta['config']}, not A: the deeper nets start from a trained net A; "
            "pass the checkpoint of a `vggrepro train --config A` run"
        )
    if kind == "checkpoint" and meta["config"] != settings.config:
        raise ValueError(
            f"{flag} holds config {meta['config']}, not {settings.config}; pass a {settings.config} checkpoint"
        )
    want = dict(width=profile.width, crop=profile.crop, num_classes=profile.num_classes)
    have = {k: meta[k] for k in want}
    if have != want:
        shown = [
            ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()) for d in (have, want)
        ]
        raise ValueError(
            f"{flag} is a net of {shown[0]}, but this run builds one of {shown[1]}: start from a checkpoint "
            "trained with the same profile (or pass the knobs it was trained with, e.g. --width)"
        )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with a message saying where the last checkpoint is."""


def _interrupted(run: Run, step: int | None) -> Interrupted:
    if step is None and not run.checkpoint.exists():
        return Interrupted(
            f"interrupted before the first checkpoint of {run.dir}; rerun the same command to start again"
        )
    at = f" (step {step})" if step is not None else ""
    return Interrupted(
        f"interrupted; the last checkpoint is {run.checkpoint}{at}: rerun the same command with "
        "--resume to continue from it"
    )


_SAID: set = set()  # notes already printed by this process


def _cpu_budget(profile: Profile) -> tuple[int, int]:
    """The profile's threads and workers, at most the CPUs this process may use (said once).

    Workers only decode, so capping them changes no result. Threads are capped no lower than the
    ci profile's pinned count: its stored outputs are those bits, and 2 threads on 1 core cost
    little (16 on 2 cores cost a lot)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = min(profile.threads, max(cpus, PROFILES["ci"].threads))
    workers = min(profile.workers, cpus)
    note = (
        f"note: profile {profile.name!r} asks for {profile.threads} threads and {profile.workers} workers; "
        f"this machine has {cpus} CPUs, so it uses {threads} and {workers}"
    )
    if (threads, workers) != (profile.threads, profile.workers) and note not in _SAID:
        _SAID.add(note)
        print(note, file=sys.stderr)
    return threads, workers


@dataclass
class Job:
    """One training run as :func:`train` resolved it: what :func:`_train` needs, in one place."""

    profile: Profile
    settings: Settings
    run: Run
    used: dict  # the values the run uses (Settings.resolve), with threads and workers
    speed: devices.Speed
    rank: int = 0
    world_size: int = 1
    resume: bool = True
    compile: bool = False
    show: bool = False  # progress bars
    saved: dict = field(default_factory=lambda: {"step": None})  # the checkpoint's step, for messages


def train(
    profile: Profile,
    settings: Settings,
    out: str | Path | None = None,
    *,
    resume: bool = True,
    compile: bool = False,
    progress: bool | None = None,
    speed: devices.Speed | None = None,
) -> dict:
    """Train one net and return its result (also in ``<run>/result.json``).

    ``out`` defaults to the run folder keyed by the settings (``runs/<profile>/<run-id>``). A
    finished run is returned as it is; an unfinished one resumes from its checkpoint when
    ``resume`` is true. ``progress`` (tqdm bar) defaults to on when stderr is a terminal.
    ``speed`` (default: :meth:`vggrepro.core.devices.Speed.of` the profile's device) says how the
    device is driven: bf16, host syncs, cudnn autotuning.
    """
    models.config_layers(settings.config)  # an unknown config fails before any data is touched
    if _init_label(settings.init) not in INITS:
        raise ValueError(f"unknown init {settings.init!r}; use gaussian, glorot, from-a:PATH or checkpoint:PATH")
    if settings.trainable not in ("all", "fc"):
        raise ValueError(f"trainable={settings.trainable!r}: use 'all' or 'fc'")
    used = settings.resolve(profile)
    check_start(profile, settings)  # a net to start from that does not fit: now, not after the data
    device = profile.resolved_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
            "use --device cpu or --device auto"
        )
    if profile.data_kind != "synthetic" and not profile.data_path.is_dir():
        raise FileNotFoundError(f"data folder {profile.data_path} not found; pass --data PATH. {LAYOUTS}")
    distributed.init(device)
    rank, world_size = distributed.world()
    if profile.batch_size % world_size:
        raise ValueError(f"batch {profile.batch_size} does not split over {world_size} processes")
    kernels.check(profile.name)
    threads, workers = _cpu_budget(profile)
    used.update(threads=threads, workers=workers)
    torch.set_num_threads(threads)

    if out:  # never a training run's files over an evaluation's (or into a data set)
        refuse_other_record(out, "train", "--out")
    run = Run(profile.name, settings.key(profile), root=Path(out).parent if out else None)
    if out:
        run.dir = Path(out)
    job = Job(
        profile,
        settings,
        run,
        used,
        speed or devices.Speed.of(device),
        rank,
        world_size,
        resume,
        compile,
        show=(sys.stderr.isatty() if progress is None else progress) and rank == 0,
    )

    def make() -> dict:
        # autotuning and TF32 while training only: dense evaluation meets a new shape per image size
        with devices.backend_flags(benchmark=job.speed.benchmark, tf32=job.speed.kind == "cuda"):
            return _train(job)

    # Two notebooks asking for one run: the second waits, then re-uses it. (Under torchrun the
    # ranks of one run train together; rank 0 holds the lock.)
    try:
        return dict(run.reuse_or_make(make, lock=rank == 0), run_dir=str(run.dir))
    except KeyboardInterrupt:  # Ctrl-C: say where the last checkpoint is and how to go on
        raise _interrupted(run, job.saved["step"]) from None


def _train(job: Job) -> dict:
    profile, settings, run, used, device = job.profile, job.settings, job.run, job.used, job.speed.device
    rank, world_size = job.rank, job.world_size
    if rank == 0:
        run.start(used)
    if run.checkpoint.exists() and not job.resume:
        raise ValueError(
            f"{run.dir} has a checkpoint of an unfinished run: pass --resume to continue it, "
            "or remove the folder to start again"
        )

    # Data: the ILSVRC-layout reader serves the synthetic set and ImageNet alike.
    root = profile.data_path
    if profile.data_kind == "synthetic":
        # One process generates the set; the others wait for it and then only verify it.
        if rank == 0:
            root = data.ensure_synthetic(profile, verbose=job.show)
        distributed.barrier()
        if rank != 0:
            root = data.ensure_synthetic(profile, verbose=False)
    train_set, val_set = data.ILSVRC(root, "train", boxes=False), data.ILSVRC(root, "val", boxes=False)
    if len(train_set.classes) > profile.num_classes:
        raise ValueError(
            f"{train_set.split_dir} holds {len(train_set.classes)} classes but the net has "
            f"num_classes={profile.num_classes}: pass --set num_classes={len(train_set.classes)}"
        )
    stats = data.dataset_stats(root, progress=job.show)
    preprocess = stats.preprocess()
    loader = data.TrainLoader(
        train_set,
        data.Augmentation(profile.crop, settings.scale, preprocess, stats),
        data.Batching(profile.batch_size, used["seed"], rank=rank, world_size=world_size),
        data.Engine(
            device,
            backend="tensor" if profile.data_kind == "synthetic" else "pil",
            workers=used["workers"],
            progress=job.show,
            batched_crops=job.speed.batched_crops,
        ),
    )
    if len(loader) == 0:  # nothing would be trained, and the untrained net cached as finished
        raise ValueError(
            f"{train_set.split_dir} has {len(loader.indices)} usable images, fewer than one batch of "
            f"{profile.batch_size}: lower --batch-size or add images"
        )
    memory_format = torch.channels_last
    val_crops = CentreCrops(
        val_set,
        CentreView(profile.crop, settings.scale.Q(multi=False)[0], preprocess),
        device,
        memory_format,
        rank=rank,
        world_size=world_size,
    )

    # Seeded here, after the data: generating or measuring a data set must not move the init.
    torch.manual_seed(used["seed"])
    net, init_note = build_for(profile, settings)
    net = net.to(device, memory_format=memory_format)
    model, learning = distributed.freeze_and_wrap(net, settings.trainable)
    step_fn = torch.compile(model) if job.compile else model
    optimizer = torch.optim.SGD(learning, lr=used["lr"], momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    schedule = PlateauSchedule(used["lr"], profile.lr_patience, hold=profile.lr_hold_epochs)
    meta = checkpoints.model_meta(
        net, preprocess, profile=profile.name, run_id=run.id, scale=settings.scale.S(), init=settings.init
    )
    plan = Plan(
        run=run,
        loader=loader,
        val_crops=val_crops,
        epochs=used["epochs"],
        max_steps=settings.max_steps,
        checkpoint_every=profile.checkpoint_every,
        speed=job.speed,
        meta=meta,
        rank=rank,
        world_size=world_size,
        show=job.show,
        label=settings.config,
        loss=loss_fn,
        saved=job.saved,
    )
    trainer = Trainer(net, model, optimizer, schedule, plan)
    if run.checkpoint.exists():
        trainer.restore()
    if rank == 0:
        trim_metrics(run.metrics_path, trainer.step, trainer.epoch)

    outcome = trainer.fit(step_fn)
    result = dict(
        config=settings.config,
        scale=settings.scale.S(),
        init=settings.init,
        init_note=init_note,
        **{k: outcome[k] for k in ("epochs", "steps", "stopped", "top1_err", "top5_err")},
        val_images=val_set.usable,
        **({"unlabelled_val_images": len(val_set.unlabelled)} if val_set.unlabelled else {}),
        lr_cuts=outcome["lr_cuts"],
        checkpoint=str(run.checkpoint.relative_to(run.dir)),
        seconds=outcome["seconds"],
        img_per_s=outcome["img_per_s"],
        skipped_images=[str(p) for p in getattr(loader, "skipped", [])],
        used=used,
    )
    if rank == 0:
        result = run.finish(result, device)
    distributed.barrier()
    return dict(result, run_dir=str(run.dir))
