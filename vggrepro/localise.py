"""Appendix A of the paper: single-object localisation by box regression.

The localisation net is the classification net with its last layer (fc8) replaced by a box
regressor, fine-tuned with a Euclidean loss. Two kinds of regressor:

- **SCR** (single-class regression): 4 outputs, one box shared by all classes;
- **PCR** (per-class regression): 4 x classes outputs, one box per class (the box of class c is
  outputs ``4c .. 4c+3``).

A box is predicted as ``(cx, cy, w, h)``: its centre and size in units of the window the net sees
(the crop), so ``(0.5, 0.5, 1, 1)`` is the whole window. Boxes in images are ``(xmin, ymin, xmax,
ymax)`` in continuous pixel coordinates (a box from pixel 10 to pixel 20 has width 10; the
PASCAL "+1" is not used), and every box function takes and returns that layout.

Two test protocols:

- **Protocol 1** (Table 8): rescale the image to Q, take one central crop, read the box of the
  ground-truth class and map it back to the image. Correct when its IoU with any ground-truth box
  is above 0.5.
- **Protocol 2** (Table 9): apply the net densely over the whole rescaled image (one box per
  location of its output map, the grid of windows centred on the image), pool the boxes of every scale and every localisation net, merge them
  greedily as in OverFeat, and keep for each of the classification system's top-5 classes its best
  merged box (merged boxes score the sum of their members' scores: the class posterior of the
  classification net applied densely at the same location, or 1 each without it). The image is
  correct if one of the 5 (class, box) pairs has the right class and an IoU above 0.5 with a
  ground-truth box. The result is the top-5 localisation error.

The paper leaves several details open; the choices made here are stated where they are made (search
for "Choice:").
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from . import checkpoints, transforms
from .models import VGG, build, to_dense
from .runs import Run
from .transforms import Preprocess

KINDS = ("SCR", "PCR")
LAYERS = ("fc", "all")
#: The total stride of the five 2x2 pools: neighbouring locations of a dense map are 32 px apart.
STRIDE = 32
#: Where the dense grid of windows sits on an image that is not a multiple of 32 (see ``_view``).
ALIGNS = ("centred", "top-left")
#: A prediction is correct when its IoU with a ground-truth box is strictly above this (both tables).
IOU_CORRECT = 0.5
#: Choice: greedy merging stops when the closest pair is 1 - IoU >= this apart, i.e. only boxes that
#: overlap with IoU > 0.5 are merged. The paper and OverFeat give no number.
MERGE_THRESHOLD = 0.5


# -- boxes --------------------------------------------------------------------------------------


def _as_boxes(x) -> torch.Tensor:
    """Any array-like of boxes (..., 4) as a float64 tensor."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64)) if not torch.is_tensor(x) else x.double()
    if t.numel() == 0:
        return t.reshape(0, 4)
    if t.shape[-1:] != (4,):
        raise ValueError(f"boxes must have 4 numbers in their last dimension, got shape {tuple(t.shape)}")
    return t


def encode(box_xyxy, window) -> torch.Tensor:
    """A box ``(xmin, ymin, xmax, ymax)`` as ``(cx, cy, w, h)`` in units of ``window`` (xyxy).

    The window's own width scales x and its height scales y; for a square crop both are its side.
    Works on one box (4,) or many (..., 4), with one window or one per box.

        >>> encode((10, 20, 30, 60), (0, 0, 100, 100)).tolist()
        [0.2, 0.4, 0.2, 0.4]
    """
    b, w = _as_boxes(box_xyxy), _as_boxes(window)
    ww, wh = w[..., 2] - w[..., 0], w[..., 3] - w[..., 1]
    if bool((ww <= 0).any() or (wh <= 0).any()):
        raise ValueError(f"window {w.tolist()} has no area; a window is (x0, y0, x1, y1) with x1 > x0, y1 > y0")
    cx = ((b[..., 0] + b[..., 2]) / 2 - w[..., 0]) / ww
    cy = ((b[..., 1] + b[..., 3]) / 2 - w[..., 1]) / wh
    return torch.stack([cx, cy, (b[..., 2] - b[..., 0]) / ww, (b[..., 3] - b[..., 1]) / wh], -1)


def decode(params, window) -> torch.Tensor:
    """The inverse of :func:`encode`: ``(cx, cy, w, h)`` in units of ``window`` back to xyxy pixels."""
    p, w = _as_boxes(params), _as_boxes(window)
    ww, wh = w[..., 2] - w[..., 0], w[..., 3] - w[..., 1]
    cx, cy = w[..., 0] + p[..., 0] * ww, w[..., 1] + p[..., 1] * wh
    half_w, half_h = p[..., 2] * ww / 2, p[..., 3] * wh / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1)


def area(boxes) -> torch.Tensor:
    """Areas of xyxy boxes; an inverted box (xmax < xmin) has area 0."""
    b = _as_boxes(boxes)
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def intersection(a, b) -> torch.Tensor:
    """Pairwise intersection areas of boxes a (N, 4) and b (M, 4): (N, M)."""
    a, b = _as_boxes(a).reshape(-1, 4), _as_boxes(b).reshape(-1, 4)
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    return (hi - lo).clamp(min=0).prod(-1)


def iou(a, b):
    """Intersection over union of xyxy boxes.

    Two single boxes (4,) give a float; otherwise every pair of ``a`` (N, 4) and ``b`` (M, 4) gives
    an (N, M) tensor. Boxes with no area have IoU 0 with everything.
    """
    single = np.ndim(a) == 1 and np.ndim(b) == 1
    inter = intersection(a, b)
    union = area(_as_boxes(a).reshape(-1, 4))[:, None] + area(_as_boxes(b).reshape(-1, 4))[None, :] - inter
    out = torch.where(union > 0, inter / union.clamp(min=1e-300), torch.zeros_like(inter))
    return float(out[0, 0]) if single else out


def clip(boxes, width: float, height: float) -> torch.Tensor:
    """Boxes clipped to the image ``[0, width] x [0, height]``."""
    b = _as_boxes(boxes).clone()
    b[..., 0::2] = b[..., 0::2].clamp(0, width)
    b[..., 1::2] = b[..., 1::2].clamp(0, height)
    return b


# -- the SCR and PCR heads ----------------------------------------------------------------------


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use 'SCR' (one box for all classes) or 'PCR' (one box per class)")
    return kind


def outputs_of(kind: str, num_classes: int) -> int:
    """fc8's width: 4 for SCR, 4 x classes for PCR."""
    return 4 if _check_kind(kind) == "SCR" else 4 * num_classes


def localiser(net: VGG, kind: str = "PCR", num_classes: int | None = None, seed: int = 0) -> VGG:
    """The localisation net of a classification net: the same config, fc8 replaced by a fresh box
    regressor (4 outputs for SCR, 4 x classes for PCR), every other weight copied.

    The fresh fc8 is Gaussian-initialised (std 1e-2, bias 0) from ``seed``. The result carries
    ``box_kind`` and ``box_classes`` so that the protocols know how to read its outputs.
    """
    if not isinstance(net, VGG):
        raise ValueError(f"localiser needs a vggrepro VGG classification net, got {type(net).__name__}")
    classes = net.num_classes if num_classes is None else num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loc = build(net.config, width=net.width, num_classes=outputs_of(kind, classes), crop=net.crop)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("classifier.6.")}
    missing, unexpected = loc.load_state_dict(state, strict=False)
    assert not unexpected and sorted(missing) == ["classifier.6.bias", "classifier.6.weight"], (missing, unexpected)
    loc.box_kind, loc.box_classes = kind, classes
    return loc.to(next(net.parameters()).device)


def box_of(outputs: torch.Tensor, kind: str, classes) -> torch.Tensor:
    """The box parameters of the given classes: outputs (N, 4 or 4C[, h, w]) -> (N, 4[, h, w]).

    SCR has one box and ignores ``classes``; PCR picks outputs ``4c .. 4c+3`` of each row's class.
    """
    if _check_kind(kind) == "SCR":
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


# -- images -------------------------------------------------------------------------------------


def default_load_image(sample) -> torch.Tensor:
    """A sample's image as a uint8 (3, H, W) RGB tensor, decoded by ``vggrepro.data``."""
    from .data import decode_image

    return decode_image(sample.path)


def rescale(image: torch.Tensor, S: int) -> tuple[torch.Tensor, float, float]:
    """:func:`vggrepro.transforms.rescale` (smaller side S), with the factors ``(sx, sy)`` (new size
    / old size per axis, after rounding) that map boxes into the rescaled image."""
    out = transforms.rescale(image, S)
    return out, out.shape[-1] / image.shape[-1], out.shape[-2] / image.shape[-2]


def _scale_boxes(boxes, sx: float, sy: float) -> torch.Tensor:
    return _as_boxes(boxes) * torch.tensor([sx, sy, sx, sy], dtype=torch.float64)


def _gt_boxes(sample) -> torch.Tensor:
    boxes = getattr(sample, "boxes", None)
    if not boxes:
        raise ValueError(
            f"sample {getattr(sample, 'path', sample)!r} has no ground-truth box; localisation needs images "
            "with boxes (ILSVRC: the val set, or the train images listed in the LOC files)"
        )
    return _as_boxes(boxes).reshape(-1, 4)


# -- training crops -----------------------------------------------------------------------------


def choose_crop(boxes, height: int, width: int, crop: int, rng: np.random.Generator,
                min_visible: float = 0.5, tries: int = 10) -> tuple[int, int, int]:
    """A random ``crop x crop`` window in an image of ``height x width`` and the box it is trained on.

    Choice: a crop is used only if some ground-truth box shows enough of itself in it: at least
    ``min_visible`` of the box's area, or of the crop's area for a box larger than the crop (a big
    object can never show half of itself). Among such boxes the most visible one is the target. Up
    to ``tries`` uniform crops are drawn; if none qualifies, the crop is centred on the largest box
    (clamped to the image), which always qualifies. OverFeat likewise skipped boxes with under 50%
    overlap with the field of view. Returns ``(x0, y0, box_index)``.
    """
    if height < crop or width < crop:
        raise ValueError(f"image {height}x{width} is smaller than the crop {crop}; rescale it to S >= crop first")
    # Plain Python floats: this runs once per training crop, where array overheads would dominate.
    boxes = [tuple(map(float, b)) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]
    areas = [max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0) for b in boxes]
    need = [min_visible * min(a, float(crop * crop)) for a in areas]
    for _ in range(tries):
        x0, y0 = int(rng.integers(0, width - crop + 1)), int(rng.integers(0, height - crop + 1))
        seen = [max(min(b[2], x0 + crop) - max(b[0], x0), 0.0) * max(min(b[3], y0 + crop) - max(b[1], y0), 0.0)
                for b in boxes]
        ok = [v >= n and v > 0 for v, n in zip(seen, need)]
        if any(ok):
            return x0, y0, max((k for k in range(len(boxes)) if ok[k]), key=lambda k: seen[k])
    k = int(np.argmax(areas))
    cx, cy = (boxes[k][0] + boxes[k][2]) / 2, (boxes[k][1] + boxes[k][3]) / 2
    x0 = min(max(int(round(cx - crop / 2)), 0), width - crop)
    y0 = min(max(int(round(cy - crop / 2)), 0), height - crop)
    return x0, y0, k


def crop_target(box, x0: int, y0: int, crop: int, flip: bool) -> torch.Tensor:
    """The regression target of ``box`` (xyxy, in the rescaled image) for the crop at (x0, y0):
    the whole box encoded in the crop's units, mirrored (cx -> 1 - cx) if flipped. That is
    ``encode(box, window)``, in plain floats: it runs once per training crop.

    Choice: the box is not clipped to the crop, so the net learns to predict the whole object
    from the part it sees (OverFeat's regressor likewise predicts the object's box from any window
    that holds at least half of it). A clipped target would cap what the central crop of
    protocol 1 can get right: at S = 384 the crop covers 224/384 of the image's smaller side, and
    most objects reach beyond it.
    """
    b = np.asarray(box, dtype=np.float64).reshape(4)
    cx = ((b[0] + b[2]) / 2 - x0) / crop
    if flip:
        cx = 1 - cx
    return torch.tensor([cx, ((b[1] + b[3]) / 2 - y0) / crop, (b[2] - b[0]) / crop, (b[3] - b[1]) / crop],
                        dtype=torch.float64)


class BoxCrops(torch.utils.data.Dataset):
    """Training crops for box regression at a fixed S (the paper trains without jittering): rescale
    to S, random crop (see :func:`choose_crop`), random horizontal flip, the box moved with them
    (see :func:`crop_target`).

    Item k of epoch e draws its crop and flip from ``(seed, e, k)``, so an epoch is the same with
    any number of loader workers and after a resume.
    """

    def __init__(self, samples, S: int, crop: int, preprocess: Preprocess, seed: int = 0,
                 load_image: Callable | None = None, cache: bool = False):
        if S < crop:
            raise ValueError(f"S={S} is smaller than the crop {crop}; the paper trains at S >= crop")
        self.samples, self.S, self.crop, self.preprocess, self.seed = list(samples), S, crop, preprocess, seed
        self.load_image = load_image or default_load_image
        self.cache: dict[int, tuple] | None = {} if cache else None
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def _rescaled(self, k: int):
        if self.cache is not None and k in self.cache:
            return self.cache[k]
        sample = self.samples[k]
        image, sx, sy = rescale(self.load_image(sample), self.S)
        item = (image, _scale_boxes(_gt_boxes(sample), sx, sy).numpy())
        if self.cache is not None:
            self.cache[k] = item
        return item

    def __getitem__(self, k: int):
        image, boxes = self._rescaled(k)
        rng = np.random.default_rng([self.seed, self.epoch, k])
        h, w = image.shape[-2:]
        x0, y0, b = choose_crop(boxes, h, w, self.crop, rng)
        flip = bool(rng.integers(0, 2))
        x = image[:, y0:y0 + self.crop, x0:x0 + self.crop]
        if flip:
            x = x.flip(-1)
        target = crop_target(boxes[b], x0, y0, self.crop, flip).float()
        return self.preprocess(x), target, int(self.samples[k].label)


# -- fine-tuning --------------------------------------------------------------------------------


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_digest(net: nn.Module) -> str:
    """A short hash of a net's weights: a fine-tuning run is keyed by the net it starts from."""
    h = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_layers(layers: str) -> str:
    if layers not in LAYERS:
        raise ValueError(f"layers={layers!r}: use 'fc' (fc6, fc7 and the new fc8) or 'all' (every layer)")
    return layers


def _trainable(loc: VGG, layers: str) -> list[nn.Parameter]:
    """``fc``: fc6, fc7 and the fresh fc8 (the OverFeat recipe); ``all``: every layer."""
    _check_layers(layers)
    for p in loc.features.parameters():
        p.requires_grad_(layers == "all")
    return [p for p in loc.parameters() if p.requires_grad]


def finetune(net: VGG, kind: str, layers: str, samples: Sequence, *, S: int, epochs: int,
             preprocess: Preprocess, batch_size: int = 64, lr: float = 1e-3, momentum: float = 0.9,
             weight_decay: float = 5e-4, seed: int = 0, profile: str = "ci", source: str = "",
             runs_root: str | Path | None = None, device: str = "cpu", workers: int = 0, cache: bool = False,
             load_image: Callable | None = None, shared: dict | None = None, progress: bool = True
             ) -> tuple[VGG, dict]:
    """Fine-tune a localisation net from the classification net ``net`` (Appendix A).

    ``layers="fc"`` trains fc6, fc7 and the fresh fc8 with the convolutional layers frozen;
    ``layers="all"`` trains every layer. Crops are taken at the fixed scale ``S`` (no jittering)
    with a random position and flip (:class:`BoxCrops`); the loss is :func:`box_loss`; SGD with
    momentum and weight decay at a constant ``lr`` for ``epochs`` epochs (choice: the paper gives
    no schedule). Samples without boxes are skipped.

    The run lives in ``runs/<profile>/<run-id>/``, keyed by every setting, the weights of ``net``
    and the training set: a finished run is loaded, not retrained; an interrupted one resumes from
    its last epoch. Returns the localisation net (eval mode) and the run's result.

    ``shared``: a dict passed to several ``layers="fc"`` runs from the same net (SCR and PCR, say).
    Their frozen layers see the very same crops, so the first run keeps each epoch's pool5 outputs
    in it and the others train on those instead of recomputing them; the results are the same
    either way. It holds a float per fc6 input per training image and epoch: for small sets only.
    ``cache`` keeps the rescaled training images in memory for the run.
    """
    _check_kind(kind), _check_layers(layers)
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be at least 1")
    train = [s for s in samples if getattr(s, "boxes", None)]
    if not train:
        raise ValueError("no training sample has a ground-truth box; box regression needs boxes")
    settings = dict(
        kind=f"loc-{kind}-{layers}", box=kind, layers=layers, config=net.config, width=net.width,
        crop=net.crop, classes=net.num_classes, scale=S, epochs=epochs, batch_size=batch_size, lr=lr,
        momentum=momentum, weight_decay=weight_decay, seed=seed, preprocess=preprocess.as_dict(),
        source=source, source_weights=weights_digest(net), train_images=len(train),
        # images by folder and name, not absolute path: a checkout copied elsewhere re-uses the run
        train_digest=_digest([(f"{Path(s.path).parent.name}/{Path(s.path).name}", int(s.label),
                               [list(map(float, b)) for b in s.boxes]) for s in train]),
    )
    run = Run(profile, settings, Path(runs_root) if runs_root else None)
    if not run.finished():
        with run.lock():  # a second process asking for the same run waits, then re-uses it
            if not run.finished():
                run.start()
                frozen = _digest([settings[k] for k in ("source_weights", "scale", "crop", "seed", "preprocess",
                                                        "batch_size", "train_digest")])
                _train(run, net, kind, layers, train, S=S, epochs=epochs, preprocess=preprocess,
                       batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, seed=seed,
                       device=device, workers=workers, cache=cache, load_image=load_image, progress=progress,
                       shared=shared, frozen_key=frozen)
    loc, _ = load_localiser(run.checkpoint, device)
    return loc, dict(run.result(), run_dir=str(run.dir), checkpoint=str(run.checkpoint))


def _train(run: Run, net: VGG, kind: str, layers: str, train: list, *, S, epochs, preprocess, batch_size, lr,
           momentum, weight_decay, seed, device, workers, cache, load_image, progress, shared=None,
           frozen_key="") -> None:
    """The fine-tuning loop of :func:`finetune`: one checkpoint per epoch, resumed where it stopped."""
    loc = localiser(net, kind, seed=seed).to(device)
    params = _trainable(loc, layers)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    meta = checkpoints.model_meta(loc, preprocess, kind=kind, classes=net.num_classes, layers=layers, S=S,
                                  run_id=run.id)
    history, first, wall = [], 0, 0.0
    if run.checkpoint.is_file():  # resume an interrupted run at its last finished epoch
        ckpt = checkpoints.load(run.checkpoint, device)
        loc.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        history, first, wall = ckpt["history"], ckpt["epoch"], ckpt["wall_s"]
    else:
        torch.manual_seed(seed)  # dropout's masks

    data = BoxCrops(train, S, net.crop, preprocess, seed=seed, load_image=load_image, cache=cache)
    for epoch in range(first, epochs):
        start = time.perf_counter()
        data.epoch = epoch
        order = torch.Generator().manual_seed(seed * 100_003 + epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, generator=order,
                                             num_workers=workers)
        loc.train()
        total, seen = 0.0, 0
        batches, record = loader, None
        if layers == "fc":  # frozen convs: the classifier trains on their outputs, maybe already shared
            stored = None if shared is None else shared.get((frozen_key, epoch))
            batches = stored if stored is not None else _frozen_outputs(loc, loader, device)
            record = [] if shared is not None and stored is None else None
        bar = _tqdm(batches, progress, desc=f"{kind}/{layers} epoch {epoch + 1}/{epochs}")
        for x, target, label in bar:
            if record is not None:
                record.append((x, target, label))
            x, target, label = x.to(device), target.to(device), label.to(device)
            outputs = loc.classifier(x) if layers == "fc" else loc(x)
            loss = box_loss(outputs, kind, target, label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(x), seen + len(x)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / seen:.4f}")
        if record is not None:  # a whole epoch: the other fc runs may use it
            shared[(frozen_key, epoch)] = record
        if not np.isfinite(total):
            raise FloatingPointError(f"box loss became {total} in epoch {epoch + 1}; lower lr (now {lr}). "
                                     f"The last good checkpoint is kept at {run.checkpoint}.")
        wall += time.perf_counter() - start
        history.append(dict(epoch=epoch + 1, loss=total / seen, images=seen))
        checkpoints.save(dict(model=loc.state_dict(), meta=meta, optimizer=optimizer.state_dict(),
                              rng=torch.get_rng_state(), history=history, epoch=epoch + 1, wall_s=wall),
                         run.checkpoint)
        checkpoints.atomic_write_bytes(run.metrics_path, "".join(json.dumps(h) + "\n" for h in history).encode())
    run.finish(dict(kind=kind, layers=layers, S=S, epochs=epochs, final_loss=history[-1]["loss"],
                    history=history, wall_s=wall), device=device)


def _frozen_outputs(loc: VGG, loader, device):
    """The training batches as the classifier sees them when the convs are frozen: (pool5 outputs
    flattened, target, label), computed batch by batch without a graph."""
    for x, target, label in loader:
        with torch.no_grad():
            pooled = torch.flatten(loc.avgpool(loc.features(x.to(device))), 1)
        yield pooled, target, label  # outside no_grad: the caller's classifier needs its graph


def load_localiser(path: str | Path, device: str = "cpu") -> tuple[VGG, dict]:
    """A fine-tuned localisation net (eval mode, with ``box_kind``/``box_classes``) and its meta."""
    loc, meta = checkpoints.model_from_checkpoint(path, device)
    if meta.get("kind") not in KINDS:
        raise ValueError(f"{path} is not a localisation checkpoint (its meta has no kind SCR/PCR)")
    loc.box_kind, loc.box_classes = meta["kind"], meta["classes"]
    return loc.to(device), meta


def _tqdm(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, leave=False, **kw)


def _kind_of(net: VGG, kind: str | None) -> str:
    kind = kind or getattr(net, "box_kind", None)
    if kind is None:
        raise ValueError("pass kind='SCR' or 'PCR' (this net was not made by localiser() or load_localiser())")
    return _check_kind(kind)


def _eval(net: nn.Module) -> None:
    """Eval mode (no dropout); a no-op when already there, which the per-image protocols rely on
    (walking the modules costs more than a small net's forward pass)."""
    if net.training:
        net.eval()


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


# -- protocol 1: the central crop and the ground-truth class (Table 8) --------------------------


def centre_box(net: VGG, image: torch.Tensor, label: int, *, Q: int, preprocess: Preprocess,
               kind: str | None = None) -> torch.Tensor:
    """The box (xyxy, image pixels, clipped to the image) that ``net`` predicts for class ``label``
    from the central ``crop x crop`` window of ``image`` rescaled to Q."""
    return centre_boxes(net, [image], [label], Q=Q, preprocess=preprocess, kind=kind)[0]


def centre_boxes(net: VGG, images: Sequence[torch.Tensor], labels: Sequence[int], *, Q: int,
                 preprocess: Preprocess, kind: str | None = None) -> torch.Tensor:
    """:func:`centre_box` for a batch of images of any sizes: (N, 4).

    The central window starts at ``((W' - crop) // 2, (H' - crop) // 2)`` in the image rescaled to
    ``H' x W'``; its box is decoded in that window and divided by the rescale factors.
    """
    kind, crop = _kind_of(net, kind), net.crop
    if Q < crop:
        raise ValueError(f"Q={Q} is smaller than the crop {crop}")
    crops, windows, factors, sizes = [], [], [], []
    for image in images:
        scaled, sx, sy = rescale(image, Q)
        h, w = scaled.shape[-2:]
        x0, y0 = (w - crop) // 2, (h - crop) // 2
        crops.append(preprocess(scaled[:, y0:y0 + crop, x0:x0 + crop]))
        windows.append([x0, y0, x0 + crop, y0 + crop])
        factors.append([sx, sy, sx, sy])
        sizes.append(image.shape[-2:])
    _eval(net)
    with torch.no_grad():
        outputs = net(torch.stack(crops).to(_device(net)))
        params = box_of(outputs, kind, torch.as_tensor(list(labels))).cpu()
    boxes = decode(params, torch.tensor(windows, dtype=torch.float64)) / torch.tensor(factors, dtype=torch.float64)
    return torch.stack([clip(b, int(s[1]), int(s[0])) for b, s in zip(boxes, sizes)])


def correct(box, gt_boxes) -> bool:
    """A predicted box is correct when its IoU with ANY ground-truth box is above 0.5."""
    # plain floats: this runs for every guess of every image, on one box against one or two
    x0, y0, x1, y1 = _as_boxes(box).reshape(4).tolist()
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    for g0, h0, g1, h1 in _as_boxes(gt_boxes).reshape(-1, 4).tolist():
        inter = max(min(x1, g1) - max(x0, g0), 0.0) * max(min(y1, h1) - max(y0, h0), 0.0)
        union = area + max(g1 - g0, 0.0) * max(h1 - h0, 0.0) - inter
        if union > 0 and inter / union > IOU_CORRECT:
            return True
    return False


def protocol1(net: VGG, samples: Sequence, *, Q: int, preprocess: Preprocess, kind: str | None = None,
              batch_size: int = 32, load_image: Callable | None = None, progress: bool = True,
              per_image: bool = False):
    """Table 8's localisation error (%): the central crop at scale Q, the ground-truth class's box,
    correct when its IoU with any ground-truth box of the image is above 0.5. With ``per_image``,
    the (N,) bool tensor of which images were localised (for paired comparisons)."""
    load_image = load_image or default_load_image
    samples = list(samples)
    if not samples:
        raise ValueError("protocol1 needs at least one sample")
    right = []
    starts = range(0, len(samples), batch_size)
    for i in _tqdm(starts, progress, desc=f"protocol 1, Q={Q}"):
        batch = samples[i:i + batch_size]
        gts = [_gt_boxes(s) for s in batch]
        boxes = centre_boxes(net, [load_image(s) for s in batch], [int(s.label) for s in batch], Q=Q,
                             preprocess=preprocess, kind=kind)
        right += [bool(correct(b, gt)) for b, gt in zip(boxes, gts)]
    return _as_error(right, per_image)


def _as_error(right: list[bool], per_image: bool):
    """Per-image results as the (N,) bool tensor, or as the error (%) they add up to."""
    if per_image:
        return torch.tensor(right, dtype=torch.bool)
    return 100.0 * sum(not r for r in right) / len(right)


GUESSES = ("crop", "image")


def guess_box(image_hw: tuple[int, int], guess: str, *, Q: int, crop: int) -> torch.Tensor:
    """A box that looks at no pixel, for an image of ``(height, width)``: ``"crop"`` is the central
    crop at scale Q itself (the box ``(0.5, 0.5, 1, 1)`` that a localiser knowing nothing would
    predict), ``"image"`` the whole image. In image pixels, xyxy."""
    h, w = int(image_hw[0]), int(image_hw[1])
    if guess not in GUESSES:
        raise ValueError(f"guess={guess!r}: use 'crop' (the central crop at Q) or 'image' (the whole image)")
    if guess == "image":
        return torch.tensor([0.0, 0.0, w, h], dtype=torch.float64)
    if Q < crop:
        raise ValueError(f"Q={Q} is smaller than the crop {crop}")
    H, W = transforms.scaled_size(h, w, Q)
    x0, y0 = (W - crop) // 2, (H - crop) // 2  # as centre_boxes
    window = torch.tensor([x0, y0, x0 + crop, y0 + crop], dtype=torch.float64)
    return clip(window / torch.tensor([W / w, H / h, W / w, H / h], dtype=torch.float64), w, h)


def guess_error(samples: Sequence, guess: str = "crop", *, Q: int, crop: int, posteriors=None,
                top: int = 5, load_image: Callable | None = None, per_image: bool = False):
    """The localisation error (%) of :func:`guess_box`: the reference a localiser must beat.

    Without ``posteriors``, protocol 1's rule (the box must match a ground-truth box). With the
    classification system's ``posteriors`` (N, C), protocol 2's: the image is correct only if its
    class is also among the ``top`` classes (the guessed box is the same for all five).
    """
    load_image = load_image or default_load_image
    samples = list(samples)
    if not samples:
        raise ValueError("guess_error needs at least one sample")
    if posteriors is not None:
        posteriors = torch.as_tensor(posteriors)
        if posteriors.ndim != 2 or len(posteriors) != len(samples):
            raise ValueError(f"posteriors must be (N, C) with N = {len(samples)} samples, "
                             f"got shape {tuple(posteriors.shape)}")
    right = []
    for n, sample in enumerate(samples):
        ok = correct(guess_box(load_image(sample).shape[-2:], guess, Q=Q, crop=crop), _gt_boxes(sample))
        if posteriors is not None:
            ok = ok and int(sample.label) in torch.sort(posteriors[n], descending=True, stable=True).indices[:top]
        right.append(bool(ok))
    return _as_error(right, per_image)


# -- protocol 2: dense boxes, greedy merging, top-5 classes (Table 9) ---------------------------


def dense_windows(map_h: int, map_w: int, crop: int) -> torch.Tensor:
    """The window (xyxy, rescaled-image pixels) behind each location of a dense output map,
    row-major: location (i, j) sees ``[32 j, 32 j + crop) x [32 i, 32 i + crop)``.

    After five 2x2 pools, feature cell k covers pixels ``[32 k, 32 k + 32)``, and fc6 (a
    ``crop/32``-wide convolution) at (i, j) reads cells ``i .. i + crop/32 - 1``: exactly the crop
    the classification net would see there (with the image's real pixels, not zero padding, around
    its border). Pixels past the last multiple of 32 are dropped by the pools; :func:`_view` trims
    them from both sides so that the grid is centred, and shifts these windows by its offset.
    """
    i, j = torch.meshgrid(torch.arange(map_h), torch.arange(map_w), indexing="ij")
    x0, y0 = (STRIDE * j).reshape(-1).double(), (STRIDE * i).reshape(-1).double()
    return torch.stack([x0, y0, x0 + crop, y0 + crop], -1)


def _check_align(align: str) -> str:
    if align not in ALIGNS:
        raise ValueError(f"align={align!r}: use 'centred' (the dense grid in the middle of the image) or "
                         "'top-left' (the plain net: its pools drop the pixels past the last multiple of 32)")
    return align


def _view(image: torch.Tensor, Q: int, crop: int, centre: bool, align: str = "centred"
          ) -> tuple[torch.Tensor, float, float, int, int]:
    """What the net is applied to, with the rescale factors and the view's offset (x0, y0) in the
    image rescaled to Q: the central crop (``centre=True``), or the image, trimmed for dense
    application to the pixels its windows cover.

    Choice (``align="centred"``): the pixels past the last multiple of 32, which the five pools
    would drop at the right and bottom, are trimmed equally from both sides, so that the dense
    windows sit symmetrically on the image. At the paper's Q (256, 352, 384: multiples of 32) the
    smaller side loses nothing either way; at ``ci`` (Q = 55, crop 32) the plain net
    (``align="top-left"``) would only ever see the top 32 of 55 rows.
    """
    if Q < crop:
        raise ValueError(f"Q={Q} is smaller than the crop {crop}")
    _check_align(align)
    scaled, sx, sy = rescale(image, Q)
    h, w = scaled.shape[-2:]
    if centre:
        x0, y0 = (w - crop) // 2, (h - crop) // 2  # as transforms.centre_crop
        return scaled[:, y0:y0 + crop, x0:x0 + crop], sx, sy, x0, y0
    if align == "top-left":
        return scaled, sx, sy, 0, 0
    x0, y0 = (w % STRIDE) // 2, (h % STRIDE) // 2
    return scaled[:, y0:y0 + h - h % STRIDE, x0:x0 + w - w % STRIDE], sx, sy, x0, y0


def dense_box_array(net: VGG, image: torch.Tensor, classes: Sequence[int], *, Q: int, preprocess: Preprocess,
                    kind: str | None = None, centre: bool = False, align: str = "centred"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every dense location's box for each class: boxes (len(classes), L, 4) in image pixels,
    clipped to the image, and the locations (L, 2) as (i, j), row-major.

    ``centre=True`` applies the net to the central crop only (one location): protocol 1's view,
    used to compare dense application against the centre crop with the same classes and merging.
    ``align`` places the grid of windows (see :func:`_view`).
    """
    kind = _kind_of(net, kind)
    maps, geometry = _maps(net, [image], Q=Q, preprocess=preprocess, centre=centre, align=align)[0]
    return _boxes_of_maps(maps, geometry, net.crop, kind, classes, image.shape[-2:])


class _Geometry(NamedTuple):
    """Where a view sits: the rescale factors (new / old size per axis) and its offset (x0, y0) in
    the rescaled image."""

    sx: float
    sy: float
    x0: int
    y0: int


def _maps(net: VGG, images: Sequence[torch.Tensor], *, Q: int, preprocess: Preprocess, centre: bool, align: str,
          batch_pixels: int | None = None) -> list[tuple[torch.Tensor, _Geometry]]:
    """The dense net's output map (outputs, h, w) of each image's view (:func:`_view`), with the
    view's geometry. Views of the same size run as one batch, of at most ``batch_pixels`` pixels
    (default: 64 crops' worth), so that nothing is padded and small nets are not run one image at a
    time."""
    views = [_view(image, Q, net.crop, centre, align) for image in images]
    batch_pixels = batch_pixels or 64 * net.crop * net.crop
    by_size: dict[tuple[int, int], list[int]] = {}
    for n, v in enumerate(views):
        by_size.setdefault(tuple(v[0].shape[-2:]), []).append(n)
    out: list = [None] * len(views)
    _eval(net)
    dense = to_dense(net, ceil_mode=False)  # views are trimmed to multiples of 32 ("top-left": the plain net)
    for (h, w), members in by_size.items():
        step = max(1, batch_pixels // (h * w))
        for i in range(0, len(members), step):
            chunk = members[i:i + step]
            with torch.no_grad():
                maps = dense(torch.stack([preprocess(views[n][0]) for n in chunk]).to(_device(net))).cpu()
            for n, m in zip(chunk, maps):
                out[n] = (m, _Geometry(*views[n][1:]))
    return out


def _boxes_of_maps(maps: torch.Tensor, geometry: _Geometry, crop: int, kind: str, classes: Sequence[int],
                   image_hw) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dense_box_array`'s boxes and locations, from a localisation net's output map."""
    k, h, w = maps.shape
    classes = [int(c) for c in classes]
    repeated = maps[None].expand(len(classes), k, h, w)
    params = box_of(repeated, kind, classes).double()  # (n, 4, h, w)
    params = params.permute(0, 2, 3, 1).reshape(len(classes), h * w, 4)
    sx, sy, x0, y0 = geometry
    windows = dense_windows(h, w, crop) + torch.tensor([x0, y0, x0, y0], dtype=torch.float64)
    boxes = decode(params, windows) / torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return clip(boxes, image_hw[-1], image_hw[-2]), torch.stack([i.reshape(-1), j.reshape(-1)], -1)


def _scores_of_maps(maps: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """:func:`location_scores` from a classification net's output map."""
    return maps.double().softmax(0)[[int(c) for c in classes]].reshape(len(classes), -1)


def dense_boxes(net: VGG, kind: str | None, image: torch.Tensor, Q: int, classes: Sequence[int], *,
                preprocess: Preprocess, align: str = "centred"
                ) -> dict[int, list[tuple[tuple[float, ...], tuple[int, int]]]]:
    """Protocol 2's raw boxes: the localisation net applied densely over ``image`` rescaled to Q.
    For each class, one ``(box_xyxy, (i, j))`` per location of the output map; each box is decoded
    in its location's window (:func:`dense_windows`, shifted by the grid's offset, see
    :func:`_view`) and mapped back to the original image."""
    boxes, locations = dense_box_array(net, image, classes, Q=Q, preprocess=preprocess, kind=kind, align=align)
    loc = [tuple(map(int, l)) for l in locations.tolist()]
    return {int(c): [(tuple(b), l) for b, l in zip(boxes[n].tolist(), loc)] for n, c in enumerate(classes)}


class Merged(NamedTuple):
    """Greedy merging's result, best first: boxes (M, 4), scores (M,) and counts (M,) (how many
    raw boxes each merged box averages)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    counts: torch.Tensor


def greedy_merge(boxes, scores=None, threshold: float = MERGE_THRESHOLD) -> Merged:
    """OverFeat's greedy merging (Sermanet et al. 2014, sect. 4.3), with 1 - IoU as the distance.

    Repeatedly take the closest pair of boxes; while their distance ``1 - IoU`` is strictly under
    ``threshold``, replace the pair by the average of their coordinates, weighted by how many raw
    boxes each already averages (so a merged box is the plain mean of its members), with the sum of
    their scores. Then rank by score (ties keep input order). Ties in distance merge the pair with
    the lowest indices first.

    Choice: OverFeat's own "match score" adds the distance between the centres to the area of the
    intersection, two quantities in different units, and gives no threshold; 1 - IoU is
    scale-free, lies in [0, 1], and is the measure the benchmark itself uses. Default scores are 1
    per box, so a merged box's score is the number of locations that voted for it.

    Cost: up to n merges, each finding the closest of n^2 pairs: O(n^3) in the worst case, a few
    milliseconds for the few hundred boxes of one class in the paper's setting (about 6 x 10
    windows per scale and net).
    """
    # numpy, not torch: this runs per class and image, on a handful of boxes, where torch's per-op
    # overhead would cost more than the arithmetic
    b = np.array(_as_boxes(boxes).reshape(-1, 4).numpy(), dtype=np.float64)
    n = len(b)
    s = np.ones(n) if scores is None else np.array(torch.as_tensor(scores, dtype=torch.float64).numpy(), dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"greedy_merge: {n} boxes but scores of shape {tuple(s.shape)}")
    counts = np.ones(n)
    if n > 1:
        alive = np.ones(n, dtype=bool)
        dist = 1 - _iou_np(b, b)
        np.fill_diagonal(dist, np.inf)
        while True:
            i, j = divmod(int(dist.argmin()), n)
            if not dist[i, j] < threshold:
                break
            i, j = min(i, j), max(i, j)
            b[i] = (counts[i] * b[i] + counts[j] * b[j]) / (counts[i] + counts[j])
            counts[i] += counts[j]
            s[i] += s[j]
            alive[j] = False
            dist[j, :] = dist[:, j] = np.inf
            d = 1 - _iou_np(b[i:i + 1], b)[0]
            d[~alive] = np.inf
            d[i] = np.inf
            dist[i, :] = dist[:, i] = d
        keep = np.flatnonzero(alive)
        keep = keep[np.argsort(-s[keep], kind="stable")]
        b, s, counts = b[keep], s[keep], counts[keep]
    return Merged(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(counts))


def _iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`iou` of boxes a (N, 4) and b (M, 4) in numpy: (N, M), 0 where the union is empty."""
    w = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0)
    h = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0)
    inter = w * h
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def location_scores(classifier: VGG, image: torch.Tensor, classes: Sequence[int], *, Q: int,
                    preprocess: Preprocess, centre: bool = False, align: str = "centred") -> torch.Tensor:
    """The classification net applied densely at scale Q (or to the central crop): the soft-max
    posterior of each class at each location, (len(classes), L), in :func:`dense_box_array`'s order."""
    maps = _maps(classifier, [image], Q=Q, preprocess=preprocess, centre=centre, align=align)[0][0]
    return _scores_of_maps(maps, classes)


def _pooled(localisers: Sequence[VGG], scales, image: torch.Tensor, classes: Sequence[int], preprocess,
            classifier: VGG | None = None, classifier_preprocess: Preprocess | None = None, centre: bool = False,
            align: str = "centred", memo: dict | None = None):
    """The raw dense boxes of every localisation net at every scale, pooled, and their scores:
    boxes (len(classes), L, 4) and scores (len(classes), L), 1 each without a classifier.

    ``memo`` (one dict per image) keeps each net's output map per scale (see :func:`_map_key`), so
    that several systems sharing a net (a single net and a fusion) apply it once, and
    :func:`protocol2_table` can fill it with maps computed in batches."""
    per_net = scales if scales and isinstance(scales[0], (list, tuple)) else [scales] * len(localisers)
    if len(per_net) != len(localisers):
        raise ValueError(f"{len(localisers)} localisation nets but {len(per_net)} lists of scales")
    preps = preprocess if isinstance(preprocess, (list, tuple)) else [preprocess] * len(localisers)
    memo = {} if memo is None else memo

    def maps_of(net, Q, prep):
        key = _map_key(net, Q, centre, align, prep)
        if key not in memo:
            memo[key] = _maps(net, [image], Q=Q, preprocess=prep, centre=centre, align=align)[0]
        return memo[key]

    def boxes_of(net, Q, prep):
        key = ("boxes", _map_key(net, Q, centre, align, prep), tuple(classes))
        if key not in memo:
            memo[key] = _boxes_of_maps(*maps_of(net, Q, prep), net.crop, _kind_of(net, None), classes,
                                       image.shape[-2:])[0]
        return memo[key]

    def scores_of(Q, prep):
        key = ("scores", _map_key(classifier, Q, centre, align, prep), tuple(classes))
        if key not in memo:
            memo[key] = _scores_of_maps(maps_of(classifier, Q, prep)[0], classes)
        return memo[key]

    boxes, scores = [], []
    for net, qs, prep in zip(localisers, per_net, preps):
        for Q in map(int, qs):
            b = boxes_of(net, Q, prep)
            if classifier is None:
                s = torch.ones(b.shape[:2], dtype=torch.float64)
            else:
                s = scores_of(Q, classifier_preprocess or prep)
                if s.shape[1] != b.shape[1]:
                    raise ValueError(f"at Q={Q} the classification net gives {s.shape[1]} locations and the "
                                     f"localisation net {b.shape[1]}: both need the same crop "
                                     f"({classifier.crop} vs {net.crop})")
            boxes.append(b)
            scores.append(s)
    return torch.cat(boxes, 1), torch.cat(scores, 1)


def _map_key(net: VGG, Q: int, centre: bool, align: str, preprocess: Preprocess) -> tuple:
    return (id(net), int(Q), bool(centre), align, preprocess)


def _runs_of(system: dict, classifier: VGG | None, classifier_preprocess: Preprocess | None) -> set[tuple]:
    """Every (net, Q, centre, align, preprocess) whose output map a system needs per image."""
    nets, scales, prep = system["localisers"], system["scales"], system["preprocess"]
    per_net = scales if scales and isinstance(scales[0], (list, tuple)) else [scales] * len(nets)
    preps = prep if isinstance(prep, (list, tuple)) else [prep] * len(nets)
    centre, align = system.get("centre", False), system.get("align", "centred")
    out = set()
    for net, qs, p in zip(nets, per_net, preps):
        for Q in map(int, qs):
            out.add((net, Q, centre, align, p))
            if classifier is not None:
                out.add((classifier, Q, centre, align, classifier_preprocess or p))
    return out


def top5_boxes(localisers: Sequence[VGG], posteriors, image: torch.Tensor, *, scales, preprocess,
               classifier: VGG | None = None, classifier_preprocess: Preprocess | None = None,
               threshold: float = MERGE_THRESHOLD, top: int = 5, centre: bool = False, align: str = "centred",
               memo: dict | None = None) -> list[tuple[int, torch.Tensor, float]]:
    """Protocol 2 for one image: for each of the ``top`` classes of ``posteriors`` (C,), the best
    merged box of the pooled dense boxes, as ``(class, box_xyxy, class score)``, ranked by class score.

    ``scales`` is one list of Q for every net, or one list per net; ``preprocess`` one for all nets
    or one per net. Fusion = several nets: their boxes are pooled before merging.

    The best merged box of a class is the one with the highest score, a merged box scoring the sum of
    its members' scores (OverFeat). Choice: with ``classifier`` (the classification net, same crop),
    a box scores the class's soft-max posterior at its location, the classification net being applied
    densely at the same Q -- the paper "rates them based on the class scores obtained from the
    classification ConvNet". Without it every box scores 1 and the best merged box is the one most
    locations voted for (ties go to the first location, top-left).

    ``centre=True`` replaces dense application by the central crop (one box per net and scale), to
    measure what dense application adds with everything else equal. ``align`` places the dense grid
    (see :func:`_view`); ``memo`` shares the nets' outputs between calls on the same image.
    """
    if not localisers:
        raise ValueError("protocol 2 needs at least one localisation net")
    posteriors = torch.as_tensor(posteriors, dtype=torch.float64).reshape(-1)
    ranked = torch.sort(posteriors, descending=True, stable=True).indices[:top].tolist()
    boxes, scores = _pooled(localisers, scales, image, ranked, preprocess, classifier, classifier_preprocess, centre,
                            align, memo)
    return [(c, greedy_merge(boxes[n], scores[n], threshold=threshold).boxes[0], float(posteriors[c]))
            for n, c in enumerate(ranked)]


def protocol2(localisers: Sequence[VGG], classifier_posteriors, samples: Sequence, *, scales,
              preprocess, classifier: VGG | None = None, classifier_preprocess: Preprocess | None = None,
              threshold: float = MERGE_THRESHOLD, centre: bool = False, align: str = "centred",
              load_image: Callable | None = None, progress: bool = True) -> float:
    """Table 9's top-5 localisation error (%).

    ``classifier_posteriors`` (N, C) are the classification system's class scores for the N
    samples; its top-5 classes are localised with :func:`top5_boxes` (see there for ``classifier``,
    which scores each dense box, ``centre``, the central crop instead of dense application, and
    ``align``). An image is correct if one of the 5 (class, box) pairs has the ground-truth class and
    an IoU above 0.5 with any of its ground-truth boxes.
    """
    system = dict(localisers=localisers, scales=scales, preprocess=preprocess, centre=centre, align=align)
    return protocol2_table({"": system}, classifier_posteriors, samples, classifier=classifier,
                           classifier_preprocess=classifier_preprocess, threshold=threshold,
                           load_image=load_image, progress=progress)[""]


def protocol2_table(systems: dict[str, dict], classifier_posteriors, samples: Sequence, *,
                    classifier: VGG | None = None, classifier_preprocess: Preprocess | None = None,
                    threshold: float = MERGE_THRESHOLD, load_image: Callable | None = None,
                    per_image: bool = False, chunk: int = 256, progress: bool = True) -> dict:
    """:func:`protocol2` for several systems in one pass over the images: ``{name: error %}``, or
    with ``per_image`` ``{name: (N,) bool tensor}``, True where the image is localised correctly
    (to compare systems on subsets of the images without running them again).

    Each system is a dict with ``localisers``, ``scales`` and ``preprocess``, and optionally
    ``centre`` and ``align`` (as in :func:`top5_boxes`). A net shared by several systems (a single
    net and a fusion that includes it) is applied once per image and scale, to ``chunk`` images at
    a time, batched by size.
    """
    load_image = load_image or default_load_image
    samples = list(samples)
    posteriors = torch.as_tensor(classifier_posteriors)
    if posteriors.ndim != 2 or len(posteriors) != len(samples):
        raise ValueError(f"classifier_posteriors must be (N, C) with N = {len(samples)} samples, "
                         f"got shape {tuple(posteriors.shape)}")
    if not samples:
        raise ValueError("protocol2 needs at least one sample")
    known = {"localisers", "scales", "preprocess", "centre", "align"}
    for name, system in systems.items():
        if not {"localisers", "scales", "preprocess"} <= set(system) or set(system) - known:
            raise ValueError(f"system {name!r} has keys {sorted(system)}; it needs localisers, scales and "
                             "preprocess, and may have centre and align")
        _check_align(system.get("align", "centred"))
    needed = set().union(*(_runs_of(x, classifier, classifier_preprocess) for x in systems.values()))
    right = {name: torch.zeros(len(samples), dtype=torch.bool) for name in systems}
    for start in _tqdm(range(0, len(samples), chunk), progress, desc="protocol 2"):
        # the nets run on a chunk of images at a time, batched by view size; the memos keep their maps
        images = [load_image(s) for s in samples[start:start + chunk]]
        memos: list[dict] = [{} for _ in images]
        for net, Q, centre, align, prep in needed:
            for memo, m in zip(memos, _maps(net, images, Q=Q, preprocess=prep, centre=centre, align=align)):
                memo[_map_key(net, Q, centre, align, prep)] = m
        for n, image, memo in zip(range(start, start + len(images)), images, memos):
            _one_image(systems, n, samples[n], posteriors[n], image, memo, right, classifier, classifier_preprocess,
                       threshold)
    if per_image:
        return right
    return {name: 100.0 * int((~r).sum()) / len(samples) for name, r in right.items()}


def _one_image(systems, n, sample, p, image, memo, right, classifier, classifier_preprocess, threshold) -> None:
    """Protocol 2 on image n for every system: right[name][n] is set when one of its 5 guesses is right."""
    gt = _gt_boxes(sample)
    for name, system in systems.items():
        predictions = top5_boxes(system["localisers"], p, image, scales=system["scales"],
                                 preprocess=system["preprocess"], classifier=classifier,
                                 classifier_preprocess=classifier_preprocess, threshold=threshold,
                                 centre=system.get("centre", False), align=system.get("align", "centred"),
                                 memo=memo)
        right[name][n] = any(c == int(sample.label) and correct(box, gt) for c, box, _ in predictions)
