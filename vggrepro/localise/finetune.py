"""Appendix A of the paper: the localisation net and its fine-tuning.

The localisation net is the classification net with its last layer (fc8) replaced by a box
regressor, fine-tuned with a Euclidean loss. Two kinds of regressor:

- **SCR** (single-class regression): 4 outputs, one box shared by all classes;
- **PCR** (per-class regression): 4 x classes outputs, one box per class (the box of class c is
  outputs ``4c .. 4c+3``).

Boxes and their encoding are in :mod:`vggrepro.localise.boxes`, the training crops in
:mod:`vggrepro.localise.box_data`, the two test protocols in :mod:`vggrepro.localise.protocols`. Fine-tuning is a
run like training's: the same lifecycle (:meth:`vggrepro.core.runs.Run.reuse_or_make`) and the same
loop (:class:`vggrepro.train.loop.Trainer`), given a batch source of box crops (:class:`BoxBatches`),
the box loss and a constant lr for a fixed number of epochs; so checkpoints, resuming and re-use
work the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..core import devices
from ..core.profiles import Profile
from ..core.runs import Run
from ..data.transforms import Preprocess
from ..models import DROPOUT, VGG, build
from ..train import checkpoints
from ..train.loop import MOMENTUM, WEIGHT_DECAY, ConstantSchedule, Plan, Trainer, trim_metrics
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


def localiser(
    net: VGG, kind: str = "PCR", num_classes: int | None = None, seed: int = 0, dropout: float | None = None
) -> VGG:
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
        loc = build(net.config, width=net.width, num_classes=outputs_of(kind, classes), crop=net.crop, dropout=dropout)
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
    def of_profile(
        cls,
        profile: Profile,
        kind: str,
        layers: str,
        S: int,
        *,
        epochs: int | None = None,
        lr: float | None = None,
        seed: int | None = None,
    ) -> FinetuneSettings:
        """The profile's batch, lr, dropout and fine-tuning epochs and its first chain's seed, unless given."""
        return cls(
            kind,
            layers,
            int(S),
            profile.finetune_epochs if epochs is None else int(epochs),
            batch_size=profile.batch_size,
            lr=profile.lr if lr is None else float(lr),
            seed=profile.chain_seed if seed is None else int(seed),
            dropout=profile.dropout,
        )


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_digest(net: nn.Module) -> str:
    """A short hash of a net's weights: a fine-tuning run is keyed by the net it starts from."""
    h = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Source:
    """The classification net a localisation net starts from: its weights, the preprocessing it was
    trained with (the localisation net's too), and its name in the grid (part of the run key)."""

    net: VGG
    preprocess: Preprocess
    name: str = ""


@dataclass(frozen=True, eq=False)
class Runtime:
    """How a fine-tuning run is carried out; none of these changes its result.

    ``device`` trains the net and holds the returned one; ``workers`` decode the training images;
    ``cache`` keeps them rescaled in memory for the run; ``load_image`` reads a sample's image
    (default: decoded from its path). ``shared``: a dict passed to several ``layers="fc"`` runs
    from the same net (SCR and PCR, say). Their frozen layers see the very same crops, so the first
    run keeps each epoch's pool5 outputs in it and the others train on those instead of recomputing
    them; the results are the same either way. It holds a float per fc6 input per training image
    and epoch: for small sets only. ``progress``: a bar per epoch.
    """

    device: str = "cpu"
    workers: int = 0
    cache: bool = False
    load_image: Callable | None = None
    shared: dict | None = None
    progress: bool = True


def run_key(source: Source, settings: FinetuneSettings, train: Sequence) -> dict:
    """The run key of fine-tuning ``source`` on the samples ``train`` (those with boxes)."""
    s, net = asdict(settings), source.net
    return dict(
        kind=f"loc-{settings.kind}-{settings.layers}",
        box=settings.kind,
        layers=settings.layers,
        config=net.config,
        width=net.width,
        crop=net.crop,
        classes=net.num_classes,
        scale=s.pop("S"),
        **{k: v for k, v in s.items() if k not in ("kind", "layers")},
        preprocess=source.preprocess.as_dict(),
        source=source.name,
        source_weights=weights_digest(net),
        train_images=len(train),
        # images by folder and name, not absolute path: a checkout copied elsewhere re-uses the run
        train_digest=_digest(
            [
                (
                    f"{Path(s.path).parent.name}/{Path(s.path).name}",
                    int(s.label),
                    [list(map(float, b)) for b in s.boxes],
                )
                for s in train
            ]
        ),
    )


def finetune(
    source: Source,
    settings: FinetuneSettings,
    samples: Sequence,
    *,
    profile_name: str = "ci",
    runs_root: str | Path | None = None,
    runtime: Runtime = Runtime(),
) -> tuple[VGG, dict]:
    """Fine-tune a localisation net from the classification net ``source`` (Appendix A), as
    ``settings`` say, on the ``samples`` that have boxes (:class:`vggrepro.localise.box_data.BoxCrops`),
    carried out as ``runtime`` says.

    The run lives in ``runs/<profile>/<run-id>/``, keyed by every setting, the weights of the
    source net and the training set, and goes through the run lifecycle of training
    (:meth:`vggrepro.core.runs.Run.reuse_or_make`) and its loop (:class:`vggrepro.train.loop.Trainer`):
    a finished run is loaded, not retrained; an interrupted one resumes from its last finished
    epoch. Returns the localisation net (eval mode, on ``runtime.device``) and the run's result.
    """
    train = [s for s in samples if getattr(s, "boxes", None)]
    if not train:
        raise ValueError("no training sample has a ground-truth box; box regression needs boxes")
    key = run_key(source, settings, train)
    run = Run(profile_name, key, Path(runs_root) if runs_root else None)
    # what makes two fc runs' pool5 outputs equal, epoch by epoch (Runtime.shared)
    frozen = _digest(
        [key[k] for k in ("source_weights", "scale", "crop", "seed", "preprocess", "batch_size", "train_digest")]
    )
    # a second process asking for the same run waits, then re-uses it
    run.reuse_or_make(lambda: _finetune(run, source, settings, train, runtime, frozen))
    loc, _ = load_localiser(run.checkpoint, runtime.device)
    # the result as stored: the same whether the run was made now or re-used
    return loc, dict(run.result(), run_dir=str(run.dir), checkpoint=str(run.checkpoint))


def _trainable(loc: VGG, layers: str) -> list[nn.Parameter]:
    """``fc``: fc6, fc7 and the fresh fc8 (the OverFeat recipe); ``all``: every layer."""
    loc.features.requires_grad_(check_layers(layers) == "all")
    return [p for p in loc.parameters() if p.requires_grad]


def _finetune(run: Run, source: Source, s: FinetuneSettings, train: list, runtime: Runtime, frozen_key: str) -> dict:
    """The run of :func:`finetune`, through the training loop: a constant lr for ``s.epochs``
    epochs, nothing validated, a checkpoint at each epoch's end (resumed from the last one)."""
    run.start()
    loc = localiser(source.net, s.kind, seed=s.seed, dropout=s.dropout).to(runtime.device)
    optimizer = torch.optim.SGD(_trainable(loc, s.layers), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    meta = checkpoints.model_meta(
        loc,
        source.preprocess,
        kind=s.kind,
        classes=source.net.num_classes,
        layers=s.layers,
        S=s.S,
        dropout=s.dropout,
        run_id=run.id,
    )
    crops = BoxCrops(
        train, s.S, source.net.crop, source.preprocess, seed=s.seed, load_image=runtime.load_image, cache=runtime.cache
    )
    fc = s.layers == "fc"  # frozen convs: the head trains on their outputs, maybe already shared
    batches = BoxBatches(crops, s, runtime, (loc, frozen_key) if fc else None)
    # fp32 and the loss read every step, on any device: the box regressors' numbers as they always were
    plan = Plan(
        run=run,
        loader=batches,
        val_crops=None,
        epochs=s.epochs,
        max_steps=None,
        checkpoint_every=None,
        speed=devices.Speed(str(runtime.device)),
        meta=meta,
        show=runtime.progress,
        label=f"{s.kind}/{s.layers}",
        loss=lambda out, target, label: box_loss(out, s.kind, target, label),
        memory_format=torch.contiguous_format,
    )
    trainer = Trainer(loc, loc, optimizer, ConstantSchedule(s.lr), plan)
    if run.checkpoint.is_file():  # resume an interrupted run at its last finished epoch
        trainer.restore()
    else:
        torch.manual_seed(s.seed)  # dropout's masks
    trim_metrics(run.metrics_path, trainer.step, trainer.epoch)
    loc.train()
    outcome = trainer.fit(loc.forward_head if fc else loc)
    history = outcome["history"]
    return run.finish(
        dict(
            kind=s.kind,
            layers=s.layers,
            S=s.S,
            epochs=s.epochs,
            dropout=s.dropout,
            final_loss=history[-1]["loss"],
            history=history,
            wall_s=outcome["wall_s"],
        ),
        device=str(runtime.device),
    )


class BoxBatches:
    """The training loop's batch source for fine-tuning (:class:`vggrepro.train.loop.Plan`): epoch e's
    training crops as batches ``(x, target, label)``, shuffled by a generator seeded from
    ``(seed, e)``, so that an epoch is the same after a resume.

    With frozen convs (``frozen``: the localisation net and the key of its pool5 outputs), x is the
    crops' pool5 map, computed batch by batch without a graph, or taken from ``runtime.shared``
    where another fc run from the same net left that epoch's.
    """

    def __init__(
        self, crops: BoxCrops, settings: FinetuneSettings, runtime: Runtime, frozen: tuple[VGG, str] | None = None
    ):
        self.crops, self.settings, self.runtime, self.frozen = crops, settings, runtime, frozen

    def __len__(self) -> int:
        return math.ceil(len(self.crops) / self.settings.batch_size)

    def batches(self, epoch: int, start_step: int = 0):
        whole = self._crops(epoch) if self.frozen is None else self._pool5(epoch)
        return itertools.islice(whole, start_step, None)

    def _crops(self, epoch: int):
        s = self.settings
        self.crops.epoch = epoch
        order = torch.Generator().manual_seed(s.seed * 100_003 + epoch)
        return iter(
            torch.utils.data.DataLoader(
                self.crops, batch_size=s.batch_size, shuffle=True, generator=order, num_workers=self.runtime.workers
            )
        )

    def _pool5(self, epoch: int):
        net, key = self.frozen
        shared = self.runtime.shared
        stored = None if shared is None else shared.get((key, epoch))
        if stored is not None:
            yield from stored
            return
        record = []
        for x, target, label in self._crops(epoch):
            with torch.no_grad():
                features = net.forward_features(x.to(self.runtime.device))
            if shared is not None:
                record.append((features, target, label))
            yield features, target, label  # outside no_grad: the head needs its graph
        if shared is not None:  # a whole epoch: the other fc runs may use it
            shared[(key, epoch)] = record


def _tqdm(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable

    return tqdm(iterable, leave=False, **kw)
