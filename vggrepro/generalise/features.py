"""Appendix B: the nets' features on data they never saw, classified by a linear SVM.

The paper takes the trained D and E, removes the last (class) layer and applies the rest densely at
each test scale Q; the penultimate map is global-average-pooled, averaged with the flipped image's,
combined over scales (averaged or stacked) and L2-normalised. D+E stacks the two descriptors. A
linear SVM, with C chosen on 20% of the training images held out, is trained on them; the ConvNet
is not fine-tuned. Caltech-101/256 are scored by mean class recall over random splits, VOC by mAP.

Here the data are new classes of the synthetic generator (:func:`vggrepro.data.synth.novel_classes`):
a Caltech-like set (one object per image) and a VOC-like set (several objects per image).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from sklearn.metrics import average_precision_score
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from .. import data, models
from ..data import synth
from ..data.images import decode_all
from ..data.transforms import Preprocess, hflip, rescale, resize

#: the SVM's C is chosen among these on the held-out 20% (features are L2-normalised)
CS = (0.1, 1.0, 10.0)
VALIDATION = 0.2  # the share of a split's training images held out to choose C, as the paper


@dataclass(frozen=True)
class Sizes:
    """How big the two sets are: ``classes`` new classes, per class a ``pool`` of training images
    from which each of ``splits`` random splits draws ``train``, and ``test`` fixed test images."""

    classes: int = 10
    pool: int = 15
    train: int = 10
    test: int = 10
    splits: int = 3
    voc_pool: int = 12  # per class: the multi-label set's images are filed under one of their classes
    voc_train: int = 10
    voc_test: int = 8
    objects: tuple[int, int] = (2, 3)


#: per profile; others (a user's own) take the paper's Caltech-101 sizes: 30 train, 50 test, 3 splits
SIZES = {"ci": Sizes(), "cpu": Sizes(classes=20, pool=45, train=30, test=30, voc_pool=40, voc_train=30, voc_test=30)}
PAPER_SIZES = Sizes(classes=30, pool=45, train=30, test=50, voc_pool=60, voc_train=45, voc_test=40)


def sizes_of(profile) -> Sizes:
    return SIZES.get(profile.name, PAPER_SIZES)


# -- the data: new classes, generated in the ILSVRC layout --------------------------------------


def ensure_sets(profile, root: str | Path | None = None, log=print) -> dict[str, Path]:
    """The Caltech-like and VOC-like sets of ``profile`` (generated when missing, verified otherwise):
    train/ holds each class's pool, val/ the fixed test images. Their seed is not the training set's."""
    if profile.data_kind != "synthetic":
        raise ValueError(
            f"profile {profile.name!r} trains on {profile.data_kind} data: its new classes must be "
            "generated beside a synthetic training set (see the chapter for real data sets)"
        )
    s = sizes_of(profile)
    base = Path(root) if root is not None else profile.data_path.parent
    classes = synth.novel_classes(profile.num_classes, s.classes)
    style = dict(
        min_side=tuple(profile.synth_min_side),
        box_fraction=tuple(profile.synth_box_fraction),
        rotation=float(profile.synth_rotation),
        background_fade=float(profile.synth_background_fade),
    )
    want = {
        "caltech": dict(train_per_class=s.pool, val_per_class=s.test, objects=(1, 1)),
        "voc": dict(train_per_class=s.voc_pool, val_per_class=s.voc_test, objects=s.objects),
    }
    out = {}
    for name, params in want.items():
        params = dict(num_classes=len(classes), classes=classes, seed=profile.seed + 1000 + len(out), **style, **params)
        out[name] = _ensure(base / f"{profile.data_path.name}-{name}", params, log)
    return out


def _ensure(root: Path, params: dict, log) -> Path:
    if not (root / "manifest.json").is_file():
        synth.generate(root, synth.SynthSpec(**params), progress=False)
        log(f"generated {root.name}")
        return root
    have = synth.verify(root)["params"]
    expect = dict(
        params,
        classes=[[c.wnid, c.shape, c.texture] for c in params["classes"]],
        objects=list(params["objects"]),
        min_side=list(params["min_side"]),
        box_fraction=list(params["box_fraction"]),
    )
    if have != expect:
        raise ValueError(f"{root} holds a set made with other settings; delete the folder to generate it again")
    log(f"found {root.name} (verified)")
    return root


def load_set(root: Path) -> dict:
    """A generated set's images (uint8 tensors) with labels: ``train``/``test`` lists of images,
    ``y_train``/``y_test`` (images, classes) 0/1 (every object's class), ``classes`` (wnids), and
    ``pool`` (the class folder each training image is filed under)."""
    train = data.ILSVRC(root, "train", boxes=False)
    with warnings.catch_warnings():  # the reader labels a val image by its first object only: the CSV has all
        warnings.filterwarnings("ignore", message=".*have no images.*")
        test = data.ILSVRC(root, "val", boxes=False)
    index = {w: i for i, w in enumerate(train.classes)}
    table = data.read_loc_csv(root / "LOC_val_solution.csv", boxes=False)

    def multi_hot(wnids):
        y = np.zeros(len(index), np.int64)
        y[[index[w] for w in wnids]] = 1
        return y

    y_train = [
        multi_hot(
            [w for w, _ in data.read_voc_xml(root / "Annotation" / s.wnid / f"{s.path.stem}.xml", boxes=False)[1]]
        )
        for s in train.samples
    ]
    y_test = [multi_hot([w for w, _ in table[s.path.stem]]) for s in test.samples]
    # the one decoded-image cache, read once per split (decode_all checks the files once, not per image)
    train_images, test_images = (
        [decoded[i] for i in range(len(split.samples))]
        for split, decoded in ((s, decode_all(s, progress=False)[0]) for s in (train, test))
    )
    return dict(
        train=train_images,
        test=test_images,
        y_train=np.stack(y_train),
        y_test=np.stack(y_test),
        classes=train.classes,
        pool=np.array([s.label for s in train.samples]),
        names=[train.names.get(w, w) for w in train.classes],
    )


# -- descriptors -------------------------------------------------------------------------------


def penultimate(net: models.VGG, x: torch.Tensor) -> torch.Tensor:
    """The dense net without its last layer: fc7's map after ReLU, averaged over space:
    (N, C)."""
    dense, seen = models.to_dense(net), {}
    relu7 = net.classifier[4]  # fc6, relu, dropout, fc7, relu (this one), dropout, fc8
    hook = relu7.register_forward_hook(lambda module, inputs, out: seen.update(map=out))
    try:
        dense(x)  # (fc8's scores are computed too, and dropped)
    finally:
        hook.remove()
    return seen["map"].mean(dim=(-2, -1))


@torch.no_grad()
def scale_descriptors(
    net: models.VGG,
    preprocess: Preprocess,
    images: list[torch.Tensor],
    scales,
    *,
    batch_pixels: int = 2_000_000,
) -> np.ndarray:
    """(images, scales, C): at each Q, the penultimate map's average, averaged with the
    flipped image's. Images of one rescaled size run together (no padding touches a
    feature)."""
    net = net.eval().to(memory_format=torch.channels_last)  # the faster layout on a CPU
    channels = net.classifier[3].out_features
    out = np.zeros((len(images), len(scales), channels), np.float64)
    for j, q in enumerate(scales):
        buckets: dict[tuple, list[int]] = {}
        rescaled = [rescale(im, q) for im in images]
        for i, im in enumerate(rescaled):
            buckets.setdefault(tuple(im.shape[-2:]), []).append(i)
        for (h, w), members in sorted(buckets.items()):
            step = max(1, batch_pixels // (2 * h * w))
            for k in range(0, len(members), step):
                chunk = members[k : k + step]
                x = preprocess(torch.stack([rescaled[i] for i in chunk]))
                x = x.contiguous(memory_format=torch.channels_last)
                f = penultimate(net, torch.cat([x, hflip(x)])).double()
                out[chunk, j] = ((f[: len(chunk)] + f[len(chunk) :]) / 2).numpy()
    return out


def l2(x: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (a zero row stays zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def combine(per_scale: np.ndarray, how: str, scales=None) -> np.ndarray:
    """Descriptors from :func:`scale_descriptors`' output: the chosen scales (indices;
    all by default) averaged (``"average"``) or stacked (``"stack"``), then
    L2-normalised."""
    x = per_scale if scales is None else per_scale[:, list(scales)]
    if how == "average":
        return l2(x.mean(axis=1))
    if how == "stack":
        return l2(x.reshape(len(x), -1))
    raise ValueError(f"how={how!r}: scales are combined by 'average' or 'stack'")


def stack(*descriptors: np.ndarray) -> np.ndarray:
    """Several nets' descriptors side by side (D+E), L2-normalised again."""
    return l2(np.concatenate(descriptors, axis=1))


def pixel_descriptors(images: list[torch.Tensor], preprocess: Preprocess, side: int) -> np.ndarray:
    """The raw-pixel baseline: each image resized to ``side`` x ``side``, mean-subtracted, L2-normalised."""
    return l2(np.stack([preprocess(resize(im, (side, side))).double().flatten().numpy() for im in images]))


def untrained(config: str, profile, seed: int) -> models.VGG:
    """A net of ``config`` as training would start it (fan-in Gaussian), never trained."""
    net = profile.build(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models.init_fan_in(net)
    return net.eval()


# -- the splits, the SVM and the scores ---------------------------------------------------------


def splits(pool: np.ndarray, per_class: int, n: int, seed: int) -> list[np.ndarray]:
    """``n`` random draws of ``per_class`` training images of each class (indices into the pool)."""
    rng = np.random.default_rng([seed, 11])
    return [
        np.sort(
            np.concatenate([rng.choice(np.flatnonzero(pool == k), per_class, replace=False) for k in np.unique(pool)])
        )
        for _ in range(n)
    ]


def _held_out(groups: np.ndarray, seed: int) -> np.ndarray:
    """True for the VALIDATION share of each group's images (at least one), drawn at random."""
    rng = np.random.default_rng([seed, 12])
    held = np.zeros(len(groups), bool)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        held[rng.choice(members, max(1, round(VALIDATION * len(members))), replace=False)] = True
    return held


def _fit(X, y, C: float, seed: int):
    """A LinearSVC trained on ``X``; returns its decision function (``y`` 2-D: one SVM per column)."""

    def svm(target):
        with warnings.catch_warnings():  # a C too large for liblinear to converge: it loses on validation
            warnings.filterwarnings("ignore", message=".*converge.*")
            return LinearSVC(C=C, random_state=seed, max_iter=10_000).fit(X, target)

    svms = [svm(y[:, c]) for c in range(y.shape[1])] if y.ndim == 2 else [svm(y)]
    return lambda X_test: (
        np.stack([m.decision_function(X_test) for m in svms], 1) if y.ndim == 2 else svms[0].decision_function(X_test)
    )


def span(X) -> np.ndarray:
    """An orthonormal basis (dimensions, rank) of the span of the rows of ``X``. An SVM's weights
    lie in the span of its training descriptors (they are a sum of them), so it scores the same
    on the coordinates ``X @ span(X)``; with fewer images than dimensions each of liblinear's
    passes then costs images x images instead of images x dimensions."""
    return np.linalg.svd(X, full_matrices=False)[2].T


def svm_scores(
    X_train,
    y_train,
    X_test,
    *,
    groups=None,
    seed: int = 0,
    Cs=CS,
) -> tuple[np.ndarray, float]:
    """Linear SVM scores (test images, classes) and the C chosen on the held-out 20% of
    the training images. ``y_train`` is (images,) class indices (multi-class,
    one-vs-rest; C by mean class recall) or (images, classes) 0/1 (multi-label, one SVM
    per class; C by mAP)."""
    y_train = np.asarray(y_train)
    multi_label = y_train.ndim == 2
    if groups is None:
        groups = y_train.argmax(1) if multi_label else y_train
    held = _held_out(groups, seed)
    # one BLAS thread: the same bits, and no fight with torch's
    with threadpool_limits(1, user_api="blas"):
        fit, check = X_train[~held], X_train[held]
        basis = span(fit)

        def quality(C):
            s = _fit(fit @ basis, y_train[~held], C, seed)(check @ basis)
            if multi_label:
                return mean_ap(s, y_train[held])
            return mean_class_recall(y_train[held], s.argmax(1))

        best = max(Cs, key=quality)  # the first of equals: the smaller C
        basis = span(X_train)
        return _fit(X_train @ basis, y_train, best, seed)(X_test @ basis), best


def mean_class_recall(labels, predicted) -> float:
    """The mean over classes of the share of each class's images classified right, in %."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    return 100.0 * float(np.mean([(predicted[labels == k] == k).mean() for k in np.unique(labels)]))


def mean_ap(scores, labels) -> float:
    """Mean over classes of scikit-learn's ``average_precision_score``, in % (VOC's mAP)."""
    return 100.0 * float(np.mean([average_precision_score(labels[:, c], scores[:, c]) for c in range(labels.shape[1])]))


def map_loss(scores, labels, counts) -> np.ndarray:
    """100 - mAP for each row of ``counts`` (how often each image is drawn): a bootstrap's mAPs in
    one pass, equal to :func:`mean_ap` with those sample weights (ties are one threshold, as
    scikit-learn's). Classes without a positive in a draw are left out of its mean.

    Recall moves only at a threshold whose tied images hold a positive, so each class needs the
    draws' weights summed between those thresholds alone: one sparse product for every class,
    exact (the weights are counts), instead of a cumulative sum over every image of every draw."""
    labels = np.asarray(labels)
    if len(scores) != len(labels) or np.shape(counts)[-1] != len(labels):
        raise ValueError(
            f"scores of {len(scores)} images, labels of {len(labels)}, counts of {np.shape(counts)[-1]}: "
            "a paired comparison needs the same images"
        )
    counts = np.atleast_2d(counts).astype(np.float64)
    n, classes = labels.shape
    rows, columns, positive, widths = [], [], [], []
    for c in range(classes):
        order = np.argsort(-scores[:, c], kind="stable")
        s, y = scores[order, c], labels[order, c] > 0
        tie = np.r_[0, np.cumsum(np.diff(s) != 0)]  # each sorted image's threshold
        moving = np.unique(tie[y])  # the thresholds where recall can move
        segment = np.searchsorted(moving, tie)  # the images up to and including each of them
        kept = segment < len(moving)
        rows.append(order[kept])
        columns.append(sum(widths) + segment[kept])
        positive.append(y[kept])
        widths.append(len(moving))
    rows, columns, positive = map(np.concatenate, (rows, columns, positive))
    shape = (n, sum(widths))
    drawn = counts @ sparse.csr_array((np.ones(len(rows)), (rows, columns)), shape)
    hits = counts @ sparse.csr_array((positive.astype(float), (rows, columns)), shape)
    aps = np.full((len(counts), classes), np.nan)
    for c, (start, width) in enumerate(zip(np.cumsum([0, *widths[:-1]]), widths)):
        if width == 0:
            continue
        tp = np.cumsum(hits[:, start : start + width], 1)
        seen = np.cumsum(drawn[:, start : start + width], 1)
        positives = tp[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(seen > 0, tp / seen, 0.0)
            recall = tp / positives
        ap = (np.diff(recall, axis=1, prepend=0.0) * precision).sum(1)
        aps[:, c] = np.where(positives[:, 0] > 0, ap, np.nan)
    with warnings.catch_warnings():  # a draw without any positive is NaN (the caller says so)
        warnings.simplefilter("ignore", RuntimeWarning)
        return 100.0 - 100.0 * np.nanmean(aps, axis=1)


def splits_map_loss(by_split, labels, counts) -> np.ndarray:
    """:func:`map_loss` averaged over the splits of one chain: ``by_split`` holds each split's
    scores (splits, images, classes). The splits are measured inside a chain, as its mean."""
    return np.mean([map_loss(scores, labels, counts) for scores in by_split], axis=0)
