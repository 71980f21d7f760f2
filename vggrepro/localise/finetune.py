"""Appendix A of the paper: the localisation net and its fine-tuning.

The localisation net is the classification net with its last layer (fc8) replaced by a box
regressor, fine-tuned with a Euclidean loss. Two kinds of regressor:

- **SCR** (single-class regression): 4 outputs, one box shared by all classes;
- **PCR** (per-class regression): 4 x classes outputs, one box per class (the box of class c is
  outputs ``4c .. 4c+3``).

Boxes and their encoding are in :mod:`vggrepro.localise.boxes`, the training crops in
:mod:`vggrepro.localise.box_data`, the two test protocols in :mod:`vggrepro.localise.protocols`. Fine-tuning is a
run of the run cache like the trainer's (:mod:`vggrepro.core.runs`), with the trainer's checkpoint
layout, RNG state and metrics log, so that resuming and re-use work the same way.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core.profiles import Profile
from ..core.runs import Run
from ..data.transforms import Preprocess
from ..models import DROPOUT, VGG, build
from ..train import checkpoints
from ..train.loop import MOMENTUM, WEIGHT_DECAY, check_resumable, log, trim_metrics
from .box_data import BoxCrops

KINDS = ("SCR", "PCR")
LAYERS = ("fc", "all")


# -- the SCR and PCR heads ----------------------------------------------------------------------


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use 'SCR' (one box for all classes) or 'PCR' (one box per class)")
    return kind


def check_layers(layers: str) -> str:
    if layers not in LAYERS:
        raise ValueError(f"layers={layers!r}: use 'fc' (fc6, fc7 and the new fc8) or 'all' (every layer)")
    return layers


def outputs_of(kind: str, num_classes: int) -> int:
    """fc8's width: 4 for SCR, 4 x classes for PCR."""
    return 4 if check_kind(kind) == "SCR" else 4 * num_classes


def localiser(net: VGG, kind: str = "PCR", num_classes: int | None = None, seed: int = 0,
              dropout: float | None = None) -> VGG:
    """The localisation net of a classification net: the same config, fc8 replaced by a fresh box
    regressor (4 outputs for SCR, 4 x classes for PCR), every other weight copied.

    The fresh fc8 is Gaussian-initialised (std 1e-2, bias 0) from ``seed``. ``dropout`` (fc6, fc7)
    defaults to the classification net's. The result carries ``box_kind`` and ``box_classes`` so
    that the protocols know how to read its outputs.
    """
    if not isinstance(net, VGG):
        raise ValueError(f"localiser needs a vggrepro VGG classification net, got {type(net).__name__}")
    classes = net.num_classes if num_classes is None else num_classes
    dropout = net.dropout if dropout is None else dropout
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loc = build(net.config, width=net.width, num_classes=outputs_of(kind, classes), crop=net.crop,
                    dropout=dropout)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("classifier.6.")}
    missing, unexpected = loc.load_state_dict(state, strict=False)
    assert not unexpected and sorted(missing) == ["classifier.6.bias", "classifier.6.weight"], (missing, unexpected)
    loc.box_kind, loc.box_classes = kind, classes
    return loc.to(next(net.parameters()).device)


def kind_of(net: VGG, kind: str | None = None) -> str:
    """The regressor kind of a localisation net (or ``kind`` when given)."""
    kind = kind or getattr(net, "box_kind", None)
    if kind is None:
        raise ValueError("pass kind='SCR' or 'PCR' (this net was not made by localiser() or load_localiser())")
    return check_kind(kind)


def box_of(outputs: torch.Tensor, kind: str, classes) -> torch.Tensor:
    """The box parameters of the given classes: outputs (N, 4 or 4C[, h, w]) -> (N, 4[, h, w]).

    SCR has one box and ignores ``classes``; PCR picks outputs ``4c .. 4c+3`` of each row's class.
    """
    if check_kind(kind) == "SCR":
        if outputs.shape[1] != 4:
            raise ValueError(f"an SCR net has 4 outputs, these have {outputs.shape[1]}")
        return outputs
    if outputs.shape[1] % 4:
        raise ValueError(f"a PCR net has 4 x classes outputs, these have {outputs.shape[1]}")
    n, c = outputs.shape[0], outputs.shape[1] // 4
    per_class = outputs.reshape(n, c, 4, *outputs.shape[2:])
    classes = torch.as_tensor(classes, dtype=torch.long, device=outputs.device).reshape(-1)
    if classes.numel() != n:
        raise ValueError(f"box_of needs one class per output row: {n} rows, {classes.numel()} classes")
    if bool((classes < 0).any() or (classes >= c).any()):
        raise ValueError(f"classes {classes.tolist()} outside 0..{c - 1}")
    return per_class[torch.arange(n, device=outputs.device), classes]


def box_loss(outputs: torch.Tensor, kind: str, targets: torch.Tensor, classes) -> torch.Tensor:
    """The Euclidean loss on the ground-truth class's box, as Caffe's EuclideanLoss computes it:
    ``sum ||box - target||^2 / (2 N)``. For PCR only the ground-truth class's 4 outputs get a gradient."""
    boxes = box_of(outputs, kind, classes)
    return (boxes - targets.to(boxes.dtype)).pow(2).sum() / (2 * boxes.shape[0])


def load_localiser(path: str | Path, device: str = "cpu") -> tuple[VGG, dict]:
    """A fine-tuned localisation net (eval mode, with ``box_kind``/``box_classes``, the dropout it
    was trained with) and its meta."""
    loc, meta = checkpoints.model_from_checkpoint(path)
    if meta.get("kind") not in KINDS:
        raise ValueError(f"{path} is not a localisation checkpoint (its meta has no kind SCR/PCR)")
    for m in loc.classifier:
        if isinstance(m, nn.Dropout):
            m.p = meta.get("dropout", DROPOUT)
    loc.box_kind, loc.box_classes = meta["kind"], meta["classes"]
    return loc.to(device), meta


# -- fine-tuning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneSettings:
    """What a fine-tuning run trains and how: every field is part of its run key.

    ``layers="fc"`` trains fc6, fc7 and the fresh fc8 with the convolutional layers frozen (the
    OverFeat recipe); ``"all"`` trains every layer. Crops are taken at the fixed scale ``S`` in the
    profile's pixels (the paper does not jitter here); SGD with momentum and weight decay at a
    constant ``lr`` (choice: the paper gives no schedule); ``dropout`` on fc6 and fc7.
    """
    kind: str
    layers: str
    S: int
    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    momentum: float = MOMENTUM
    weight_decay: float = WEIGHT_DECAY
    seed: int = 0
    dropout: float = DROPOUT

    def __post_init__(self):
        check_kind(self.kind), check_layers(self.layers)
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} must be at least 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    @classmethod
    def of_profile(cls, profile: Profile, kind: str, layers: str, S: int, *, epochs: int | None = None,
                   lr: float | None = None, seed: int | None = None) -> FinetuneSettings:
        """The profile's batch, lr, seed, dropout and fine-tuning epochs, unless given."""
        return cls(kind, layers, int(S), profile.finetune_epochs if epochs is None else int(epochs),
                   batch_size=profile.batch_size, lr=profile.lr if lr is None else float(lr),
                   seed=profile.seed if seed is None else int(seed), dropout=profile.dropout)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_digest(net: nn.Module) -> str:
    """A short hash of a net's weights: a fine-tuning run is keyed by the net it starts from."""
    h = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_key(net: VGG, settings: FinetuneSettings, train: Sequence, preprocess: Preprocess, source: str = "") -> dict:
    """The run key of fine-tuning ``net`` on the samples ``train`` (those with boxes)."""
    s = asdict(settings)
    return dict(
        kind=f"loc-{settings.kind}-{settings.layers}", box=settings.kind, layers=settings.layers, config=net.config,
        width=net.width, crop=net.crop, classes=net.num_classes, scale=s.pop("S"),
        **{k: v for k, v in s.items() if k not in ("kind", "layers")},
        preprocess=preprocess.as_dict(), source=source, source_weights=weights_digest(net), train_images=len(train),
        # images by folder and name, not absolute path: a checkout copied elsewhere re-uses the run
        train_digest=_digest([(f"{Path(s.path).parent.name}/{Path(s.path).name}", int(s.label),
                               [list(map(float, b)) for b in s.boxes]) for s in train]),
    )


def finetune(net: VGG, settings: FinetuneSettings, samples: Sequence, *, preprocess: Preprocess,
             profile: str = "ci", source: str = "", runs_root: str | Path | None = None, device: str = "cpu",
             workers: int = 0, cache: bool = False, load_image: Callable | None = None, shared: dict | None = None,
             progress: bool = True) -> tuple[VGG, dict]:
    """Fine-tune a localisation net from the classification net ``net`` (Appendix A), as
    ``settings`` say, on the ``samples`` that have boxes (:class:`vggrepro.localise.box_data.BoxCrops`).

    The run lives in ``runs/<profile>/<run-id>/``, keyed by every setting, the weights of ``net``
    and the training set: a finished run is loaded, not retrained; an interrupted one resumes from
    its last epoch. Returns the localisation net (eval mode, on ``device``) and the run's result.

    ``shared``: a dict passed to several ``layers="fc"`` runs from the same net (SCR and PCR, say).
    Their frozen layers see the very same crops, so the first run keeps each epoch's pool5 outputs
    in it and the others train on those instead of recomputing them; the results are the same
    either way. It holds a float per fc6 input per training image and epoch: for small sets only.
    ``cache`` keeps the rescaled training images in memory for the run.
    """
    train = [s for s in samples if getattr(s, "boxes", None)]
    if not train:
        raise ValueError("no training sample has a ground-truth box; box regression needs boxes")
    key = run_key(net, settings, train, preprocess, source)
    run = Run(profile, key, Path(runs_root) if runs_root else None)
    if not run.finished():
        with run.lock():  # a second process asking for the same run waits, then re-uses it
            if not run.finished():
                run.start()
                frozen = _digest([key[k] for k in ("source_weights", "scale", "crop", "seed", "preprocess",
                                                   "batch_size", "train_digest")])
                _finetune(run, net, settings, train, preprocess, device=device, workers=workers, cache=cache,
                          load_image=load_image, progress=progress, shared=shared, frozen_key=frozen)
    loc, _ = load_localiser(run.checkpoint, device)
    return loc, dict(run.result(), run_dir=str(run.dir), checkpoint=str(run.checkpoint))


def _trainable(loc: VGG, layers: str) -> list[nn.Parameter]:
    """``fc``: fc6, fc7 and the fresh fc8 (the OverFeat recipe); ``all``: every layer."""
    loc.features.requires_grad_(check_layers(layers) == "all")
    return [p for p in loc.parameters() if p.requires_grad]


def _finetune(run: Run, net: VGG, s: FinetuneSettings, train: list, preprocess: Preprocess, *, device, workers,
              cache, load_image, progress, shared=None, frozen_key="") -> None:
    """The loop of :func:`finetune`: one checkpoint per epoch (the trainer's layout), resumed where it stopped."""
    loc = localiser(net, s.kind, seed=s.seed, dropout=s.dropout).to(device)
    optimizer = torch.optim.SGD(_trainable(loc, s.layers), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    meta = checkpoints.model_meta(loc, preprocess, kind=s.kind, classes=net.num_classes, layers=s.layers, S=s.S,
                                  dropout=s.dropout, run_id=run.id)
    history, first, step, wall = [], 0, 0, 0.0
    if run.checkpoint.is_file():  # resume an interrupted run at its last finished epoch
        # to the CPU: the RNG state must stay a CPU tensor; load_state_dict copies the rest to the net's device
        ckpt = checkpoints.load(run.checkpoint, map_location="cpu")
        check_resumable(run, ckpt["meta"], meta)
        loc.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        checkpoints.restore_rng(ckpt["rng"])
        history, first, step, wall = ckpt["history"], ckpt["epoch"], ckpt["step"], ckpt["wall_s"]
    else:
        torch.manual_seed(s.seed)  # dropout's masks
    trim_metrics(run.metrics_path, step)

    data = BoxCrops(train, s.S, net.crop, preprocess, seed=s.seed, load_image=load_image, cache=cache)
    for epoch in range(first, s.epochs):
        start = time.perf_counter()
        data.epoch = epoch
        order = torch.Generator().manual_seed(s.seed * 100_003 + epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=s.batch_size, shuffle=True, generator=order,
                                             num_workers=workers)
        loc.train()
        total, seen = 0.0, 0
        batches, record, head = loader, None, loc
        if s.layers == "fc":  # frozen convs: the head trains on their outputs, maybe already shared
            stored = None if shared is None else shared.get((frozen_key, epoch))
            batches = stored if stored is not None else _frozen_outputs(loc, loader, device)
            record = [] if shared is not None and stored is None else None
            head = loc.forward_head
        bar = _tqdm(batches, progress, desc=f"{s.kind}/{s.layers} epoch {epoch + 1}/{s.epochs}")
        for x, target, label in bar:
            if record is not None:
                record.append((x, target, label))
            x, target, label = x.to(device), target.to(device), label.to(device)
            loss = box_loss(head(x), s.kind, target, label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen, step = total + loss.item() * len(x), seen + len(x), step + 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / seen:.4f}")
        if record is not None:  # a whole epoch: the other fc runs may use it
            shared[(frozen_key, epoch)] = record
        if not np.isfinite(total):
            raise FloatingPointError(f"box loss became {total} in epoch {epoch + 1}; lower lr (now {s.lr}). "
                                     f"The last good checkpoint is kept at {run.checkpoint}.")
        wall += time.perf_counter() - start
        history.append(dict(epoch=epoch + 1, loss=total / seen, images=seen))
        checkpoints.save(dict(model=loc.state_dict(), meta=meta, optimizer=optimizer.state_dict(), rng=checkpoints.rng_state(),
                              epoch=epoch + 1, step_in_epoch=0, step=step, history=history, wall_s=wall),
                         run.checkpoint)
        log(run.metrics_path, dict(step=step, **history[-1]))
    run.finish(dict(kind=s.kind, layers=s.layers, S=s.S, epochs=s.epochs, dropout=s.dropout,
                    final_loss=history[-1]["loss"], history=history, wall_s=wall), device=device)


def _frozen_outputs(loc: VGG, loader, device):
    """The training batches as the head sees them when the convs are frozen: (pool5 map, target,
    label), computed batch by batch without a graph."""
    for x, target, label in loader:
        with torch.no_grad():
            features = loc.forward_features(x.to(device))
        yield features, target, label  # outside no_grad: the caller's head needs its graph


def _tqdm(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable

    return tqdm(iterable, leave=False, **kw)
