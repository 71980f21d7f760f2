"""The two test protocols of Appendix A, and the pixel-blind references a localiser must beat.

- **Protocol 1** (Table 8): rescale the image to Q, take one central crop, read the box of the
  ground-truth class and map it back to the image. Correct when its IoU with any ground-truth box
  is above 0.5.
- **Protocol 2** (Table 9): apply the nets of a :class:`System` densely over the whole rescaled
  image (one box per location of the output map, the grid of windows centred on the image), pool
  the boxes of every scale and every net, merge them greedily as in OverFeat, and keep for each of
  the classification system's top-5 classes its best merged box (merged boxes score the sum of
  their members' scores: the class posterior of the classification net applied densely at the same
  location, or 1 each without it). The image is correct if one of the 5 (class, box) pairs has the
  right class and an IoU above 0.5 with a ground-truth box. The result is the top-5 localisation
  error.

The paper leaves several details open; the choices made here are stated where they are made (search
for "Choice:"). Each protocol runs the nets on the device their weights are on.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from ..core.scales import centre_window
from ..data import transforms
from ..data.transforms import Preprocess
from ..models import VGG
from . import dense as dense
from .box_data import default_load_image, gt_boxes, rescale
from .boxes import MERGE_THRESHOLD, clip, correct, decode, greedy_merge
from .dense import check_align, device_of, eval_mode
from .finetune import _tqdm, box_of, kind_of


@dataclass(frozen=True)
class Pass:
    """How a protocol goes over the images; none of it changes a result.

    ``load_image`` reads a sample's image (default: decoded from its path); ``batch_size``: the
    central crops of protocol 1 per forward pass; ``chunk``: the images protocol 2 loads at a time
    (its nets then run on them batched by size); ``progress``: a bar.
    """

    load_image: Callable | None = None
    batch_size: int = 32
    chunk: int = 256
    progress: bool = True


def error_of(right) -> float:
    """The error (%) of per-image results: a sequence or (N,) bool tensor, True where right."""
    right = torch.as_tensor(right, dtype=torch.bool)
    return 100.0 * int((~right).sum()) / len(right)


# -- protocol 1: the central crop and the ground-truth class (Table 8) --------------------------


def centre_box(
    net: VGG, image: torch.Tensor, label: int, *, Q: int, preprocess: Preprocess, kind: str | None = None
) -> torch.Tensor:
    """The box (xyxy, image pixels, clipped to the image) that ``net`` predicts for class ``label``
    from the central ``crop x crop`` window of ``image`` rescaled to Q."""
    return centre_boxes(net, [image], [label], Q=Q, preprocess=preprocess, kind=kind)[0]


def centre_boxes(
    net: VGG,
    images: Sequence[torch.Tensor],
    labels: Sequence[int],
    *,
    Q: int,
    preprocess: Preprocess,
    kind: str | None = None,
) -> torch.Tensor:
    """:func:`centre_box` for a batch of images of any sizes: (N, 4).

    The central window starts at ``((W' - crop) // 2, (H' - crop) // 2)`` in the image rescaled to
    ``H' x W'``; its box is decoded in that window and divided by the rescale factors.
    """
    kind, crop = kind_of(net, kind), net.crop
    if Q < crop:
        raise ValueError(f"Q={Q} is smaller than the crop {crop}")
    crops, windows, factors, sizes = [], [], [], []
    for image in images:
        scaled, sx, sy = rescale(image, Q)
        h, w = scaled.shape[-2:]
        y0, x0 = centre_window(h, w, crop)
        crops.append(preprocess(scaled[:, y0 : y0 + crop, x0 : x0 + crop]))
        windows.append([x0, y0, x0 + crop, y0 + crop])
        factors.append([sx, sy, sx, sy])
        sizes.append(image.shape[-2:])
    eval_mode(net)
    with torch.no_grad():
        outputs = net(torch.stack(crops).to(device_of(net)))
        params = box_of(outputs, kind, torch.as_tensor(list(labels))).cpu()
    boxes = decode(params, torch.tensor(windows, dtype=torch.float64)) / torch.tensor(factors, dtype=torch.float64)
    return torch.stack([clip(b, int(s[1]), int(s[0])) for b, s in zip(boxes, sizes)])


def protocol1(
    net: VGG,
    samples: Sequence,
    *,
    Q: int,
    preprocess: Preprocess,
    kind: str | None = None,
    per_image: bool = False,
    how: Pass = Pass(),
):
    """Table 8's localisation error (%): the central crop at scale Q, the ground-truth class's box,
    correct when its IoU with any ground-truth box of the image is above 0.5. With ``per_image``,
    the (N,) bool tensor of which images were localised (for paired comparisons). ``how``: the
    images' loader, the crops per forward pass, a progress bar."""
    load_image = how.load_image or default_load_image
    samples = list(samples)
    if not samples:
        raise ValueError("protocol1 needs at least one sample")
    right = []
    starts = range(0, len(samples), how.batch_size)
    for i in _tqdm(starts, how.progress, desc=f"protocol 1, Q={Q}"):
        batch = samples[i : i + how.batch_size]
        gts = [gt_boxes(s) for s in batch]
        boxes = centre_boxes(
            net, [load_image(s) for s in batch], [int(s.label) for s in batch], Q=Q, preprocess=preprocess, kind=kind
        )
        right += [bool(correct(b, gt)) for b, gt in zip(boxes, gts)]
    return _as_error(right, per_image)


def _as_error(right: list[bool], per_image: bool):
    """Per-image results as the (N,) bool tensor, or as the error (%) they add up to."""
    return torch.tensor(right, dtype=torch.bool) if per_image else error_of(right)


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
    y0, x0 = centre_window(H, W, crop)
    window = torch.tensor([x0, y0, x0 + crop, y0 + crop], dtype=torch.float64)
    return clip(window / torch.tensor([W / w, H / h, W / w, H / h], dtype=torch.float64), w, h)


def guess_error(
    samples: Sequence,
    guess: str = "crop",
    *,
    Q: int,
    crop: int,
    posteriors=None,
    top: int = 5,
    load_image: Callable | None = None,
    per_image: bool = False,
):
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
            raise ValueError(
                f"posteriors must be (N, C) with N = {len(samples)} samples, got shape {tuple(posteriors.shape)}"
            )
    right = []
    for n, sample in enumerate(samples):
        ok = correct(guess_box(load_image(sample).shape[-2:], guess, Q=Q, crop=crop), gt_boxes(sample))
        if posteriors is not None:
            ok = ok and int(sample.label) in torch.sort(posteriors[n], descending=True, stable=True).indices[:top]
        right.append(bool(ok))
    return _as_error(right, per_image)


# -- protocol 2: dense boxes, greedy merging, top-5 classes (Table 9) ---------------------------


@dataclass(frozen=True, eq=False)
class System:
    """One localisation system of protocol 2 (a row of Table 9): its localisation nets, the test
    scales Q of each (profile pixels) and the preprocessing of each. Several nets are a fusion:
    their boxes are pooled before merging.

    ``scales`` is one list of Q for every net, or one list per net; ``preprocess`` one for all nets
    or one per net (both are stored per net). ``centre=True`` applies each net to the central crop
    only (one box per net and scale), to measure what dense application adds with everything else
    equal; ``align`` places the dense grid (see :func:`vggrepro.localise.dense.view`).
    """

    localisers: tuple
    scales: tuple
    preprocess: tuple
    centre: bool = False
    align: str = "centred"

    def __post_init__(self):
        nets = tuple(self.localisers)
        if not nets:
            raise ValueError("protocol 2 needs at least one localisation net")
        scales = list(self.scales)
        per_net = scales if scales and isinstance(scales[0], (list, tuple)) else [scales] * len(nets)
        if len(per_net) != len(nets):
            raise ValueError(f"{len(nets)} localisation nets but {len(per_net)} lists of scales")
        preps = list(self.preprocess) if isinstance(self.preprocess, (list, tuple)) else [self.preprocess] * len(nets)
        if len(preps) != len(nets):
            raise ValueError(f"{len(nets)} localisation nets but {len(preps)} preprocessings")
        check_align(self.align)
        object.__setattr__(self, "localisers", nets)
        object.__setattr__(self, "scales", tuple(tuple(int(q) for q in qs) for qs in per_net))
        object.__setattr__(self, "preprocess", tuple(preps))

    def applications(self) -> list[tuple[VGG, int, Preprocess]]:
        """(net, Q, preprocess) for every net and each of its scales, in order."""
        return [(net, Q, p) for net, qs, p in zip(self.localisers, self.scales, self.preprocess) for Q in qs]

    def maps_needed(self, classifier: VGG | None, classifier_preprocess: Preprocess | None) -> set[tuple]:
        """Every (net, Q, centre, align, preprocess) whose output map the system needs per image."""
        out = set()
        for net, Q, p in self.applications():
            out.add((net, Q, self.centre, self.align, p))
            if classifier is not None:
                out.add((classifier, Q, self.centre, self.align, classifier_preprocess or p))
        return out


def _map_key(net: VGG, Q: int, centre: bool, align: str, preprocess: Preprocess) -> tuple:
    return (id(net), int(Q), bool(centre), align, preprocess)


def pooled_boxes(
    system: System,
    image: torch.Tensor,
    classes: Sequence[int],
    classifier: VGG | None = None,
    classifier_preprocess: Preprocess | None = None,
    memo: dict | None = None,
):
    """The raw dense boxes of every localisation net of ``system`` at every scale, pooled, and their
    scores: boxes (len(classes), L, 4) and scores (len(classes), L), 1 each without a classifier.

    ``memo`` (one dict per image) keeps each net's output map per scale (see ``_map_key``), so
    that several systems sharing a net (a single net and a fusion) apply it once, and
    :func:`protocol2_table` can fill it with maps computed in batches."""
    centre, align = system.centre, system.align
    memo = {} if memo is None else memo

    def maps_of_net(net, Q, prep):
        key = _map_key(net, Q, centre, align, prep)
        if key not in memo:
            memo[key] = dense.maps_of(net, [image], Q=Q, preprocess=prep, centre=centre, align=align)[0]
        return memo[key]

    def boxes_of(net, Q, prep):
        key = ("boxes", _map_key(net, Q, centre, align, prep), tuple(classes))
        if key not in memo:
            memo[key] = dense.boxes_of_maps(
                *maps_of_net(net, Q, prep), net.crop, kind_of(net), classes, image.shape[-2:]
            )[0]
        return memo[key]

    def scores_of(Q, prep):
        key = ("scores", _map_key(classifier, Q, centre, align, prep), tuple(classes))
        if key not in memo:
            memo[key] = dense.scores_of_maps(maps_of_net(classifier, Q, prep)[0], classes)
        return memo[key]

    boxes, scores = [], []
    for net, Q, prep in system.applications():
        b = boxes_of(net, Q, prep)
        if classifier is None:
            s = torch.ones(b.shape[:2], dtype=torch.float64)
        else:
            s = scores_of(Q, classifier_preprocess or prep)
            if s.shape[1] != b.shape[1]:
                raise ValueError(
                    f"at Q={Q} the classification net gives {s.shape[1]} locations and the "
                    f"localisation net {b.shape[1]}: both need the same crop "
                    f"({classifier.crop} vs {net.crop})"
                )
        boxes.append(b)
        scores.append(s)
    return torch.cat(boxes, 1), torch.cat(scores, 1)


def top5_boxes(
    system: System,
    posteriors,
    image: torch.Tensor,
    *,
    classifier: VGG | None = None,
    classifier_preprocess: Preprocess | None = None,
    threshold: float = MERGE_THRESHOLD,
    top: int = 5,
    memo: dict | None = None,
) -> list[tuple[int, torch.Tensor, float]]:
    """Protocol 2 for one image: for each of the ``top`` classes of ``posteriors`` (C,), the best
    merged box of the system's pooled dense boxes, as ``(class, box_xyxy, class score)``, ranked by
    class score.

    The best merged box of a class is the one with the highest score, a merged box scoring the sum of
    its members' scores (OverFeat). Choice: with ``classifier`` (the classification net, same crop),
    a box scores the class's soft-max posterior at its location, the classification net being applied
    densely at the same Q -- the paper "rates them based on the class scores obtained from the
    classification ConvNet". Without it every box scores 1 and the best merged box is the one most
    locations voted for (ties go to the first location, top-left). ``memo`` shares the nets' outputs
    between calls on the same image.
    """
    posteriors = torch.as_tensor(posteriors, dtype=torch.float64).reshape(-1)
    ranked = torch.sort(posteriors, descending=True, stable=True).indices[:top].tolist()
    boxes, scores = pooled_boxes(system, image, ranked, classifier, classifier_preprocess, memo)
    return [
        (c, greedy_merge(boxes[n], scores[n], threshold=threshold).boxes[0], float(posteriors[c]))
        for n, c in enumerate(ranked)
    ]


def protocol2(
    system: System,
    classifier_posteriors,
    samples: Sequence,
    *,
    classifier: VGG | None = None,
    classifier_preprocess: Preprocess | None = None,
    threshold: float = MERGE_THRESHOLD,
    how: Pass = Pass(),
) -> float:
    """Table 9's top-5 localisation error (%) of one system.

    ``classifier_posteriors`` (N, C) are the classification system's class scores for the N
    samples; its top-5 classes are localised with :func:`top5_boxes` (see there for ``classifier``,
    which scores each dense box). An image is correct if one of the 5 (class, box) pairs has the
    ground-truth class and an IoU above 0.5 with any of its ground-truth boxes. ``how``: the
    images' loader, how many at a time, a progress bar.
    """
    return protocol2_table(
        {"": system},
        classifier_posteriors,
        samples,
        classifier=classifier,
        classifier_preprocess=classifier_preprocess,
        threshold=threshold,
        how=how,
    )[""]


def protocol2_table(
    systems: dict[Hashable, System],
    classifier_posteriors,
    samples: Sequence,
    *,
    classifier: VGG | None = None,
    classifier_preprocess: Preprocess | None = None,
    threshold: float = MERGE_THRESHOLD,
    per_image: bool = False,
    how: Pass = Pass(),
) -> dict:
    """:func:`protocol2` for several systems in one pass over the images: ``{name: error %}``, or
    with ``per_image`` ``{name: (N,) bool tensor}``, True where the image is localised correctly
    (to compare systems on subsets of the images without running them again).

    A net shared by several systems (a single net and a fusion that includes it) is applied once
    per image and scale, to ``how.chunk`` images at a time, batched by size.
    """
    load_image, chunk = how.load_image or default_load_image, how.chunk
    samples = list(samples)
    posteriors = torch.as_tensor(classifier_posteriors)
    if posteriors.ndim != 2 or len(posteriors) != len(samples):
        raise ValueError(
            f"classifier_posteriors must be (N, C) with N = {len(samples)} samples, got shape {tuple(posteriors.shape)}"
        )
    if not samples:
        raise ValueError("protocol2 needs at least one sample")
    for name, system in systems.items():
        if not isinstance(system, System):
            raise ValueError(
                f"system {name!r} is a {type(system).__name__}; make it a "
                "protocols.System(localisers, scales, preprocess, centre=..., align=...)"
            )
    needed = set().union(*(x.maps_needed(classifier, classifier_preprocess) for x in systems.values()))
    right = {name: torch.zeros(len(samples), dtype=torch.bool) for name in systems}
    for start in _tqdm(range(0, len(samples), chunk), how.progress, desc="protocol 2"):
        # the nets run on a chunk of images at a time, batched by view size; the memos keep their maps
        images = [load_image(s) for s in samples[start : start + chunk]]
        memos: list[dict] = [{} for _ in images]
        for net, Q, centre, align, prep in needed:
            for memo, m in zip(memos, dense.maps_of(net, images, Q=Q, preprocess=prep, centre=centre, align=align)):
                memo[_map_key(net, Q, centre, align, prep)] = m
        for n, image, memo in zip(range(start, start + len(images)), images, memos):
            gt, label = gt_boxes(samples[n]), int(samples[n].label)
            for name, system in systems.items():
                guesses = top5_boxes(
                    system,
                    posteriors[n],
                    image,
                    classifier=classifier,
                    classifier_preprocess=classifier_preprocess,
                    threshold=threshold,
                    memo=memo,
                )
                right[name][n] = any(c == label and correct(box, gt) for c, box, _ in guesses)
    if per_image:
        return right
    return {name: error_of(r) for name, r in right.items()}
