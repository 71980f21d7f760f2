"""Data in the ILSVRC-2012 layout (the loader serves the synthetic set and real ImageNet alike), one
idea per module; this package gathers their names (``data.ILSVRC``, ``data.TrainLoader``, ...):

- :mod:`~vggrepro.data.ilsvrc`: the reader of a split (images, labels, boxes) and its files' fingerprint;
- :mod:`~vggrepro.data.identity`: what names a data set in a run key, checked against its files;
- :mod:`~vggrepro.data.images`: decoding, and the one cache of decoded images (loaders and evaluation
  share it);
- :mod:`~vggrepro.data.training_stats`: the training set's mean RGB and colour PCA;
- :mod:`~vggrepro.data.transforms`: rescaling, crops, flips and colour shifts (sections 3.1 and 3.2);
- :mod:`~vggrepro.data.loader` and :mod:`~vggrepro.data.device_batch`: training batches with the
  paper's augmentation (section 3.1), on the CPU or the GPU;
- :mod:`~vggrepro.data.synth` (with ``synth_classes``, ``synth_images``): the synthetic set the book
  trains on, generated deterministically from a seed;
- :mod:`~vggrepro.data.fashion_mnist`: real photographs for Appendix B's features, Debian's
  Fashion-MNIST (``bash install.sh --real``), not in the ILSVRC layout.
"""

from __future__ import annotations

from pathlib import Path

from . import synth
from .identity import data_identity
from .ilsvrc import (
    ILSVRC,
    IMAGE_SUFFIXES,
    IMAGENET_CLASSES,
    IMAGENET_COUNTS,
    LAYOUTS,
    Sample,
    check_box,
    check_imagenet_counts,
    read_loc_csv,
    read_synset_mapping,
    read_voc_xml,
)
from .images import CACHE_LIMIT, CorruptImage, EvalImages, decode_all, decode_image, files_identity, image_at
from .loader import (
    Augmentation,
    BatchDraws,
    Batching,
    Engine,
    TrainLoader,
    View,
    crop_view_pil,
    derive_seed,
    finish_batch,
    generator,
)
from .training_stats import Stats, dataset_stats, pixel_stats, symmetric_eigen

__all__ = [
    "CACHE_LIMIT",
    "ILSVRC",
    "IMAGENET_CLASSES",
    "IMAGENET_COUNTS",
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "Augmentation",
    "BatchDraws",
    "Batching",
    "CorruptImage",
    "Engine",
    "EvalImages",
    "Sample",
    "Stats",
    "TrainLoader",
    "View",
    "check_box",
    "check_imagenet_counts",
    "crop_view_pil",
    "data_identity",
    "dataset_stats",
    "decode_all",
    "decode_image",
    "derive_seed",
    "check_synthetic",
    "ensure_synthetic",
    "files_identity",
    "finish_batch",
    "generator",
    "image_at",
    "pixel_stats",
    "read_loc_csv",
    "read_synset_mapping",
    "read_voc_xml",
    "symmetric_eigen",
]


def ensure_synthetic(profile, *, out: str | Path | None = None, seed: int | None = None, verbose: bool = True) -> Path:
    """The profile's synthetic set: generated when missing, verified against its manifest otherwise.

    Prints one line saying which (unless ``verbose=False``).
    """
    return synth.ensure(profile, out=out, seed=seed, progress=verbose, log=print if verbose else (lambda *_: None))


def check_synthetic(profile) -> None:
    """The profile's synthetic set, when there is one, checked as :func:`ensure_synthetic` checks it
    (every file against its manifest and nothing added; its settings against the profile's); a set
    that is missing is not made here (a finished run needs none)."""
    if profile.data_kind == "synthetic" and (profile.data_path / "manifest.json").is_file():
        ensure_synthetic(profile, verbose=False)
