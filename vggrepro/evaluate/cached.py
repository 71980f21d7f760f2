"""An evaluation on a data set, as a cached run: the net from its file (a checkpoint or released
weights), the images of a split, the protocol of section 3.2 (:mod:`~vggrepro.evaluate.protocols`),
and the result with its posteriors kept in ``runs/<profile>/eval-<hash>/`` for fusion and reuse."""

from __future__ import annotations

import hashlib
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..core import kernels
from ..core.devices import check_device
from ..core.files import atomic_write_json, check_writable
from ..core.profiles import Profile
from ..core.runs import Run, provenance, refuse_other_record
from ..data import ILSVRC, CorruptImage, EvalImages, ensure_synthetic
from ..data.identity import data_identity
from ..data.images import decode_image
from ..data.transforms import Preprocess
from ..models import VGG
from ..train import checkpoints
from .posteriors import POSTERIORS_FILE, load_posteriors, save_posteriors
from .protocols import Execution, Protocol, evaluate
from .weights import describe, load_weights


def file_hash(path: str | Path) -> str:
    """The first 16 hex digits of a file's SHA-256: what names a net in a cached evaluation."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_net(
    checkpoint: str | Path | None = None, weights: str | Path | None = None, preprocess: str | None = None
) -> tuple[VGG, Preprocess]:
    """The net and its pre-processing from a vggrepro checkpoint or from released weights (whose
    pre-processing ``preprocess`` may name: :func:`vggrepro.evaluate.weights.load_weights`)."""
    if (checkpoint is None) == (weights is None):
        raise ValueError("give exactly one of a checkpoint (vggrepro train) or released weights (--weights)")
    if checkpoint is not None:
        if preprocess is not None:
            raise ValueError(f"--preprocess is for --weights: the checkpoint {checkpoint} records its own")
        model, meta = checkpoints.model_from_checkpoint(checkpoint)
        net = (model, checkpoints.preprocess_of(meta))
    else:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"no weights file at {weights}")
        net = load_weights(weights, preprocess)
    bad = [name for name, t in net[0].state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # a diverged run's checkpoint: its scores would be NaN, and NaN ranks as class 0
        raise FloatingPointError(
            f"{checkpoint or weights} holds NaN/inf in {len(bad)} tensor(s) (e.g. {bad[0]}); "
            "evaluate a checkpoint from before training diverged"
        )
    return net


def _images(dataset: ILSVRC, num_classes: int, limit: int | None, progress: bool = False):
    """The split's images as ``(index, uint8 image, label)`` and how many; with ``limit``, that many
    spread evenly over the split (every n/limit-th image), so that every class has its share."""
    root = dataset.root
    if len(dataset.classes) != num_classes:
        raise ValueError(
            f"the net has {num_classes} classes but the data set at {root} has "
            f"{len(dataset.classes)}; evaluate it on the data set it was trained on"
        )
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


@dataclass(frozen=True)
class ImageSet:
    """Which images: a split of a data folder (default: the profile's), all of them or ``limit``
    spread evenly over the split (every n/limit-th image, so that every class has its share)."""

    split: str = "val"
    limit: int | None = None
    data: str | Path | None = None


def evaluate_cached(
    checkpoint_path: str | Path | None,
    profile: Profile,
    protocol: Protocol,
    *,
    weights: str | Path | None = None,
    images: ImageSet = ImageSet(),
    how: Execution = Execution(),
    out: str | Path | None = None,
    preprocess: str | None = None,
) -> dict:
    """Evaluate a checkpoint (or released ``weights``) on a profile's data set, once.

    The result lives in ``runs/<profile>/eval-<hash>/`` keyed by the net file's hash, the protocol
    (its crops, scales and flips), the images (split, limit, data folder): ``posteriors.pt`` (see
    :func:`~vggrepro.evaluate.posteriors.save_posteriors`) and ``result.json`` (errors, cost,
    provenance). A finished folder is re-used without running the net; a missing one is made under
    the run's lock (:meth:`~vggrepro.core.runs.Run.reuse_or_make`). ``out`` names another folder
    (not cached: an evaluation there is overwritten; a folder holding another kind of record, such
    as a training run, is refused). ``preprocess`` names what released ``weights`` expect when their
    file does not say (:func:`~vggrepro.evaluate.weights.load_weights`); the result says what was
    used (``preprocess``). Validation images without a label are counted (``unlabelled_images``).
    ``how``'s defaults are the profile's device and
    :data:`EVAL_BATCH` crops per forward pass, or the profile's batch when larger.

    Returns ``result.json``'s contents plus ``posteriors``, ``labels``, ``indices`` and ``parts``
    (tensors, loaded from ``posteriors.pt``) and ``posteriors_file``.
    """
    if how.batch_size is not None and how.batch_size <= 0:
        raise ValueError(f"batch size {how.batch_size}: give a positive number of crops per forward pass")
    device = check_device(how.device) if how.device else profile.resolved_device()
    source = Path(weights if weights is not None else checkpoint_path)
    if not source.is_file():
        raise FileNotFoundError(f"no {'weights' if weights is not None else 'checkpoint'} file at {source}")
    if out is not None:  # never an evaluation's files over a training run's (or into a data set)
        refuse_other_record(out, "eval", "--out")
    model, expects = load_net(None if weights is not None else source, weights, preprocess)
    protocol.check(model.crop)  # before any data is read or generated
    root = _data_root(profile, images.data, verbose=how.progress)
    settings = dict(
        kind="eval",
        net=file_hash(source),
        source="weights" if weights is not None else "checkpoint",
        protocol=protocol.name,
        scales=list(protocol.scales),
        split=images.split,
        flip=protocol.flip,
        limit=images.limit,
        data=data_identity(root),
        **({"preprocess": preprocess} if preprocess else {}),  # (absent as before when not given)
    )
    run = Run(profile.name, settings)
    folder = Path(out) if out is not None else run.dir
    post_path = folder / POSTERIORS_FILE

    def loaded(result: dict) -> dict:
        return dict(result, posteriors_file=str(post_path), **_tensors(load_posteriors(post_path)))

    def make() -> dict:
        check_writable(folder, "pass a writable --out")  # before the work, not after it
        dataset = ILSVRC(root, images.split, boxes=False)
        todo, total = _images(dataset, model.num_classes, images.limit, how.progress)
        kernels.check(profile.name)
        torch.set_num_threads(profile.threads)  # the profile's thread count: the same sums on every machine
        if out is None:
            run.start()
        batch = how.batch_size or max(profile.batch_size, EVAL_BATCH)
        try:
            result = evaluate(
                model, expects, todo, protocol, how=replace(how, device=device, batch_size=batch, total=total)
            )
        except FloatingPointError as e:  # name the file, not only the config
            raise FloatingPointError(f"{source}: {e}") from None
        info = dict(
            source_path=str(source),
            trained_run=_trained_run(source),
            config=model.config,
            width=model.width,
            profile=profile.name,
            **({"preprocess": describe(expects)} if weights is not None else {}),
            **({"unlabelled_images": len(dataset.unlabelled)} if dataset.unlabelled else {}),
        )
        body = dict(result.summary(), **info, posteriors_file=POSTERIORS_FILE)
        try:
            save_posteriors(post_path, result, **info)
            if out is None:
                return run.finish(body, device)
            full = dict(body, settings=settings, provenance=provenance(device))
            atomic_write_json(folder / "result.json", full)
            return full
        except OSError as e:  # disk full, or the folder turned read-only meanwhile
            raise ValueError(
                f"cannot write the evaluation to {folder} ({e.strerror or e}); free space there or pass another --out"
            ) from None

    if out is not None:
        return loaded(make())
    if run.finished() and post_path.is_file():
        try:
            return loaded(run.result())
        except ValueError as e:  # a torn cache is no result: make it again
            print(f"vggrepro evaluate: {e}; evaluating again", file=sys.stderr)
    if run.finished():  # its posteriors are missing or torn: the run is made again, under its lock
        run.result_path.unlink()
    return loaded(run.reuse_or_make(make))


def _tensors(saved: dict) -> dict:
    return {k: saved[k] for k in ("posteriors", "labels", "indices", "parts")}


def _trained_run(source: Path) -> str | None:
    """The training run a checkpoint came from, when it sits in a run folder."""
    return source.parent.name if (source.parent / "settings.json").is_file() else None
