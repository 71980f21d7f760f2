"""Section 3.2 of the paper: testing a net at one or several scales Q, densely or on crops.

Every protocol turns one image into one soft-max posterior over the classes:

- ``centre``: rescale the image so that its smaller side is Q and classify one centre crop. This is
  torchvision's single-crop protocol, for reference; the paper never uses it for Tables 3-7.
- ``dense``: the fully-convolutional net (:func:`vggrepro.models.to_dense`) runs on the whole
  rescaled image and gives a class-score map. The map is **averaged over space first, then
  soft-maxed** (the paper says the map is "spatially averaged (sum-pooled)" and leaves the order of
  soft-max and pooling open: PAPER_NOTES pitfall 5). The same is done for the horizontally flipped
  image and the two posteriors are averaged.
- ``multicrop``: a 5x5 grid of crops, each also flipped: 50 crops per scale. Each crop is
  soft-maxed and the 50 posteriors are averaged. The paper does not say where the crops lie; here
  they are spaced evenly from corner to corner of the rescaled image
  (:func:`vggrepro.data.transforms.crop_grid`): the first row of crops touches the top edge, the last
  row the bottom edge, and likewise for columns. Where a side equals the crop, every crop along it
  starts at 0, so a ``crop x crop`` image gives 25 identical crops.
- ``both``: the average of the dense and the multi-crop posteriors ("multi-crop & dense").

With several scales, the posteriors of the scales are averaged (section 4.2). Test scales Q are in
the net's own pixels; a profile's ``S()`` turns the paper's 256/384/512 into them.
"""

from __future__ import annotations

import hashlib
import math
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from ..core.files import atomic_write_json
from tqdm import tqdm

from ..core import kernels
from ..core.devices import Speed, synchronize
from ..core.metrics import top_errors
from ..core.profiles import get_profile
from ..core.runs import Run, provenance
from ..data import ILSVRC, CorruptImage, EvalImages, ensure_synthetic
from ..data import transforms as T
from ..data.ilsvrc import data_identity
from ..data.images import decode_image
from ..data.transforms import Preprocess
from ..models import VGG, layer_table, score_map_size, to_dense
from ..train import checkpoints
from .batching import Accumulator, CropRunner, DenseRunner
from .posteriors import POSTERIORS_FILE, Evaluation, load_posteriors, save_posteriors
from .weights import load_weights

__all__ = ["POSTERIORS_FILE", "Evaluation", "evaluate", "evaluate_cached", "load_posteriors", "save_posteriors",
           "top_errors"]
PROTOCOLS = ("centre", "dense", "multicrop", "both")
#: The paper's multi-crop grid: 5 x 5 positions per scale (and each crop flipped).
GRID = 5

# -- geometry --------------------------------------------------------------------------------


def dense_macs(model: VGG, height: int, width: int) -> int:
    """Multiply-accumulates of the dense net on one ``height x width`` image.

    The convolutional part costs what :func:`vggrepro.models.count_macs` says for that size; the
    fully-connected layers, now convolutions, run once per position of the class-score map.
    """
    rows = layer_table(model, (height, width))
    conv = sum(r["macs"] for r in rows if r["kind"] != "Linear")
    fc = sum(r["macs"] for r in rows if r["kind"] == "Linear")
    return conv + fc * math.prod(score_map_size(model, height, width))


def crop_macs(model: VGG) -> int:
    """Multiply-accumulates of one crop through the net."""
    return sum(r["macs"] for r in layer_table(model))


def ready(model: VGG, device) -> VGG:
    """The model in eval mode on ``device``, in channels-last memory (faster for convolutions on
    CPUs and GPUs alike)."""
    return model.eval().to(device).to(memory_format=torch.channels_last)


def _check(protocol: str, scales: Sequence[int], crop: int) -> list[int]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    scales = [int(q) for q in scales]
    if not scales:
        raise ValueError("no test scales: give at least one Q, e.g. scales=[crop]")
    small = [q for q in scales if q < crop]
    if small:
        raise ValueError(f"test scale(s) {small} are below the crop {crop}: every Q must be >= the crop, "
                         "since the smaller side of the rescaled image must hold one crop")
    return scales


def evaluate(
    model: VGG,
    preprocess: Preprocess,
    images: Iterable[tuple[int, torch.Tensor, int]],
    *,
    protocol: str = "dense",
    scales: Sequence[int] = (),
    crop: int | None = None,
    flip: bool = True,
    device: str = "cpu",
    bf16: bool | None = None,
    batch_size: int = 32,
    max_pending: int | None = None,
    progress: bool = False,
    total: int | None = None,
) -> Evaluation:
    """Evaluate ``model`` on ``images``, an iterable of ``(index, uint8 RGB image (3, H, W), label)``.

    ``protocol`` is one of :data:`PROTOCOLS` (see the module's docstring) and ``scales`` the test
    scales Q (each image is rescaled so that its smaller side is Q; posteriors are averaged over
    the scales). ``crop`` defaults to the net's crop. ``flip=False`` drops the horizontal flips of
    dense and multi-crop evaluation (25 crops per scale); ``centre`` is always one crop.
    ``batch_size`` counts crops per forward pass; a dense batch holds images of one size with as
    many pixels as that many crops (so memory does not grow with Q). At most ``max_pending``
    (default 4 x batch_size) rescaled images wait for a batch of their size. ``seconds`` is the
    wall time of the whole loop, decoding and rescaling included; ``progress`` shows a bar (of
    ``total`` images when given).

    The model is put in eval mode and moved to ``device`` in channels-last memory; gradients are
    off. ``bf16`` runs the forward passes under bf16 autocast (default: on CUDA, never on a CPU,
    whose float32 sums the stored outputs hold).
    """
    crop = crop or model.crop
    scales = _check(protocol, scales, crop)
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size} must be positive")
    methods = ["dense", "multicrop"] if protocol == "both" else [protocol]
    was_training = model.training
    model = ready(model, device)
    speed = Speed.of(device)
    if bf16 is not None:
        speed = replace(speed, bf16=bf16)
    accs = {m: Accumulator() for m in methods}
    runners = {}
    if "dense" in methods:
        runners["dense"] = DenseRunner(to_dense(model), preprocess, speed, batch_size, crop, flip, accs["dense"],
                                       max_pending or 4 * batch_size)
    for m in ("centre", "multicrop"):
        if m in methods:
            runners[m] = CropRunner(model, preprocess, speed, batch_size, accs[m])
    one_crop = crop_macs(model)
    macs = defaultdict(float)
    labels: dict[int, int] = {}

    if progress:

        images = tqdm(images, desc=f"{protocol} Q={scales}", unit="img", total=total)
    start = time.perf_counter()
    with torch.inference_mode():
        for index, image, label in images:
            index = int(index)
            if index in labels:
                raise ValueError(f"image index {index} came twice: indices must be unique")
            labels[index] = int(label)
            for q in scales:
                img = T.rescale(image, q)
                h, w = img.shape[-2:]
                if "dense" in runners:
                    runners["dense"].add(index, img)
                    macs["dense"] += (2 if flip else 1) * dense_macs(model, h, w)
                if "centre" in runners:
                    runners["centre"].add(index, [T.centre_crop(img, crop)])
                    macs["centre"] += one_crop
                if "multicrop" in runners:
                    crops = [T.crop(img, t, l, crop) for t, l in T.crop_grid(h, w, crop, GRID)]
                    if flip:
                        crops += [c.flip(-1) for c in crops]
                    runners["multicrop"].add(index, crops)
                    macs["multicrop"] += len(crops) * one_crop
        for runner in runners.values():
            runner.finish()
    synchronize(device)  # the wall time includes the GPU's queued work
    seconds = time.perf_counter() - start
    model.train(was_training)

    if not labels:
        raise ValueError("no images to evaluate: the image iterable was empty")
    order = sorted(labels)
    parts = {m: accs[m].result(order, len(scales)) for m in methods}
    for m, p in parts.items():  # NaN scores would rank as class 0 and pass for an answer
        bad = (~torch.isfinite(p).all(dim=1)).nonzero().flatten()
        if len(bad):
            raise FloatingPointError(
                f"net {model.config} gives non-finite {m} scores on {len(bad)} of {len(order)} images (e.g. index "
                f"{order[int(bad[0])]}): its weights or inputs hold NaN/inf; use a checkpoint from before training diverged")
    posteriors = parts[methods[0]] if len(methods) == 1 else sum(parts.values()) / len(parts)
    return Evaluation(
        protocol=protocol, scales=scales, crop=crop, flip=flip,
        posteriors=posteriors.float(),
        labels=torch.tensor([labels[i] for i in order], dtype=torch.int64),
        indices=torch.tensor(order, dtype=torch.int64),
        seconds=seconds,
        macs_per_image={m: macs[m] / len(order) for m in methods},
        forward_passes=sum(r.forward_passes for r in runners.values()),
        parts=parts if len(methods) > 1 else {},
    )


# -- nets and data from files -----------------------------------------------------------------


def file_hash(path: str | Path) -> str:
    """The first 16 hex digits of a file's SHA-256: what names a net in a cached evaluation."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_net(checkpoint: str | Path | None = None, weights: str | Path | None = None) -> tuple[VGG, Preprocess]:
    """The net and its pre-processing from a vggrepro checkpoint or from released weights."""
    if (checkpoint is None) == (weights is None):
        raise ValueError("give exactly one of a checkpoint (vggrepro train) or released weights (--weights)")
    if checkpoint is not None:
        model, meta = checkpoints.model_from_checkpoint(checkpoint)
        net = (model, checkpoints.preprocess_of(meta))
    else:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"no weights file at {weights}")

        net = load_weights(weights)
    bad = [name for name, t in net[0].state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # a diverged run's checkpoint: its scores would be NaN, and NaN ranks as class 0
        raise FloatingPointError(f"{checkpoint or weights} holds NaN/inf in {len(bad)} tensor(s) (e.g. {bad[0]}); "
                                 "evaluate a checkpoint from before training diverged")
    return net


def _images(root: Path, split: str, num_classes: int, limit: int | None, progress: bool = False):
    """The split's images as ``(index, uint8 image, label)`` and how many; with ``limit``, that many
    spread evenly over the split (every n/limit-th image), so that every class has its share."""

    dataset = ILSVRC(root, split, boxes=False)
    if len(dataset.classes) != num_classes:
        raise ValueError(f"the net has {num_classes} classes but the data set at {root} has "
                         f"{len(dataset.classes)}; evaluate it on the data set it was trained on")
    n = len(dataset.samples)
    if limit is None or limit >= n:
        return EvalImages(dataset, progress=progress), n
    picks = sorted({k * n // limit for k in range(limit)})

    def spread():  # a few images of the split: decoded as asked, not the whole split into the cache
        for i in picks:
            try:
                image = decode_image(dataset.samples[i].path)
            except CorruptImage as e:
                warnings.warn(f"skipped {e}", stacklevel=2)
                continue
            yield i, image, dataset.samples[i].label

    return spread(), len(picks)


def _data_root(profile, data: str | Path | None, verbose: bool = False) -> Path:
    if data is not None:
        return Path(data)
    if profile.data_kind == "synthetic":

        # quiet unless asked: a notebook's output must not depend on whether the set was just made
        return Path(ensure_synthetic(profile, verbose=verbose))
    return profile.data_path


#: Crops per forward pass at test time (a dense batch holds as many pixels): more than a CPU
#: training batch, since nothing is kept for a backward pass (measured: 1.3x the img/s of 64 at ci).
EVAL_BATCH = 256


def evaluate_cached(
    checkpoint_path: str | Path | None,
    profile="ci",
    protocol: str = "dense",
    scales: Sequence[int] = (),
    split: str = "val",
    *,
    weights: str | Path | None = None,
    flip: bool = True,
    limit: int | None = None,
    data: str | Path | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """Evaluate a checkpoint (or released ``weights``) on a profile's data set, once.

    The result lives in ``runs/<profile>/eval-<hash>/`` keyed by the net file's hash, the protocol,
    the scales, the split, ``flip``, ``limit`` (that many images spread evenly over the split) and the
    data folder: ``posteriors.pt`` (see
    :func:`save_posteriors`) and ``result.json`` (errors, cost, provenance). A finished folder is
    re-used without running the net. ``out`` names another folder (not cached: it is overwritten).

    Returns ``result.json``'s contents plus ``posteriors``, ``labels``, ``indices`` and ``parts``
    (tensors, loaded from ``posteriors.pt``) and ``posteriors_file``.
    """

    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"batch size {batch_size}: give a positive number of crops per forward pass")
    prof = get_profile(profile)
    source = Path(weights if weights is not None else checkpoint_path)
    if not source.is_file():
        raise FileNotFoundError(f"no {'weights' if weights is not None else 'checkpoint'} file at {source}")
    model, preprocess = load_net(None if weights is not None else source, weights)
    _check(protocol, scales, model.crop)  # before any data is read or generated
    root = _data_root(prof, data, verbose=progress)
    settings = dict(kind="eval", net=file_hash(source), source="weights" if weights is not None else "checkpoint",
                    protocol=protocol, scales=[int(q) for q in scales], split=split, flip=flip, limit=limit,
                    data=data_identity(root))
    run = Run(prof.name, settings)
    folder = Path(out) if out is not None else run.dir
    post_path = folder / POSTERIORS_FILE
    if out is None and run.finished() and post_path.is_file():
        try:
            return dict(run.result(), posteriors_file=str(post_path), **_tensors(load_posteriors(post_path)))
        except ValueError as e:  # a torn cache is no result: make it again
            print(f"vggrepro evaluate: {e}; evaluating again", file=sys.stderr)
    _check_writable(folder)  # before the work, not after it

    images, total = _images(root, split, model.num_classes, limit, progress)
    device = device or prof.resolved_device()
    kernels.check(prof.name)
    torch.set_num_threads(prof.threads)  # the profile's thread count: the same sums on every machine
    if out is None:
        run.start()
    try:
        result = evaluate(model, preprocess, images, protocol=protocol, scales=scales, flip=flip, device=device,
                          batch_size=batch_size or max(prof.batch_size, EVAL_BATCH), progress=progress, total=total)
    except FloatingPointError as e:  # name the file, not only the config
        raise FloatingPointError(f"{source}: {e}") from None
    info = dict(source_path=str(source), trained_run=_trained_run(source), config=model.config,
                width=model.width, profile=prof.name)
    body = dict(result.summary(), **info, posteriors_file=POSTERIORS_FILE)
    try:
        save_posteriors(post_path, result, **info)
        if out is None:
            full = run.finish(body, device)
        else:

            full = dict(body, settings=settings, provenance=provenance(device))
            atomic_write_json(folder / "result.json", full)
    except OSError as e:  # disk full, or the folder turned read-only meanwhile
        raise ValueError(f"cannot write the evaluation to {folder} ({e.strerror or e}); free space there or "
                         "pass another --out") from None
    return dict(full, posteriors_file=str(post_path), **_tensors(load_posteriors(post_path)))


def _check_writable(folder: Path) -> None:
    """A one-line error now if ``folder`` cannot take the results, rather than after the evaluation."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # made at the save, not now
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"cannot write to {folder} ({existing}: {e.strerror or e}); pass a writable --out") from None


def _tensors(saved: dict) -> dict:
    return {k: saved[k] for k in ("posteriors", "labels", "indices", "parts")}


def _trained_run(source: Path) -> str | None:
    """The training run a checkpoint came from, when it sits in a run folder."""
    return source.parent.name if (source.parent / "settings.json").is_file() else None
