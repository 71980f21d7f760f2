"""Why is dense application worse than the central crop here? Claim 7.4 taken apart, window by window.

    python scripts/dense_localisation_mechanism.py --profile cpu --chain 3
    # writes results/cpu_dense_localisation_mechanism-3.json

Claim 7.4 ("Dense application beats the central crop (384/384, top-5 predicted classes)") applies
one localisation net (PCR, all layers, from D/384) at Q = S(384) under protocol 2, in two ways:
densely (every window's box for each of the classification system's top-5 classes, scored by the
classification net's posterior at that window, greedily merged, the best merged box kept) and to
the central crop only (one box). Both localise the same five classes, so on each image they differ
in the true class's box alone. This script follows that box, on one chain whose nets are in
``runs/<profile>/`` (it never trains them: a missing net is an error), on chapter 7's validation
images:

- the chapter's two arms, which must reproduce the ledger's record of the chain;
- the true class's box of each dense window alone: how often it is right, by how far the window
  sits from the centre crop (in strides of 32 px) and by how much of the object it holds;
- along the way from windows to the chapter's dense box, the error of: the best window (an oracle:
  any window's box right), the window nearest the centre crop, the window the classification net
  scores highest, all windows merged with one vote each, and merged with the class scores (the
  chapter's dense arm, recomputed here box by box);
- how many windows an image holds at this Q, and how far the nearest lies from the centre crop;
- each paired effect against the central crop with the 95% half-width of the images (one chain: no
  seed term). Every arm counts an image right only where the true class is among the five.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from vggrepro import data
from vggrepro.core.profiles import get_profile
from vggrepro.core.scales import PAPER_CROP, centre_window
from vggrepro.data import synth
from vggrepro.data.transforms import scaled_size
from vggrepro.experiments import grid, ledger, loc_tables
from vggrepro.experiments.chains import paired_points
from vggrepro.experiments.results import save_figures
from vggrepro.localise import dense
from vggrepro.localise.box_data import default_load_image, gt_boxes, rescale
from vggrepro.localise.boxes import correct, greedy_merge
from vggrepro.localise.finetune import kind_of
from vggrepro.localise.protocols import System
from vggrepro.models import to_dense

#: The claim this script explains, as chapter 7 declares it (the results page matches it by text).
CLAIM = "Dense application beats the central crop (384/384, top-5 predicted classes)"
#: Its system: Table 9's row with train S 384 tested at Q 384 alone.
ROW = ("384", (384,))
EPOCHS = 4  # chapter 7's fine-tuning epochs (its parameter's default, as the chains ran it)
CHUNK = 128  # images whose output maps are computed at a time
#: The stages from the dense windows to the chapter's dense box, in order.
STAGES = ("best window (oracle)", "window nearest the centre", "top-scored window", "merged, one vote each", "dense")


def held_share(box: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The share of ``box``'s area (xyxy) inside each window (L, 4)."""
    w = np.clip(np.minimum(box[2], windows[:, 2]) - np.maximum(box[0], windows[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], windows[:, 3]) - np.maximum(box[1], windows[:, 1]), 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    return w * h / area if area > 0 else np.zeros(len(windows))


def follow_the_box(sample, image: torch.Tensor, crop: int, kind: str, views) -> dict:
    """One image's true-class box from each dense window to the merged box: which boxes are right,
    how far each window sits from the centre crop (in crop widths) and how much of the object it and
    the centre crop hold. ``views``: the localisation and the classification net's output maps with
    their geometry, for one grid of windows or several shifted ones (their windows pooled)."""
    label, gt = int(sample.label), gt_boxes(sample)
    boxes, scores, windows = [], [], []
    for (loc_map, geometry), (cls_map, _) in views:
        boxes.append(dense.boxes_of_maps(loc_map, geometry, crop, kind, [label], image.shape[-2:])[0][0])
        scores.append(dense.scores_of_maps(cls_map, [label])[0])
        x0, y0 = geometry.x0, geometry.y0
        windows.append((dense.dense_windows(*loc_map.shape[1:], crop) + torch.tensor([x0, y0, x0, y0])).numpy())
    boxes, scores, windows = torch.cat(boxes), torch.cat(scores), np.concatenate(windows)
    sx, sy = views[0][0][1].sx, views[0][0][1].sy
    top, left = centre_window(round(image.shape[-2] * sy), round(image.shape[-1] * sx), crop)
    middle = (windows[:, :2] + windows[:, 2:]) / 2
    offset = np.hypot(middle[:, 0] - left - crop / 2, middle[:, 1] - top - crop / 2) / crop
    to_image = np.array([sx, sy, sx, sy])
    largest = np.asarray(max(sample.boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])), dtype=np.float64)
    right = np.array([correct(b, gt) for b in boxes])
    return {
        "right": right,
        "offset": offset,
        "held": held_share(largest, windows / to_image),
        "centre_held": float(held_share(largest, np.array([[left, top, left + crop, top + crop]]) / to_image)[0]),
        "stages": {
            "best window (oracle)": bool(right.any()),
            "window nearest the centre": bool(right[int(np.argmin(offset))]),
            "top-scored window": bool(right[int(torch.argmax(scores))]),
            "merged, one vote each": correct(greedy_merge(boxes).boxes[0], gt),
            "dense": correct(greedy_merge(boxes, scores).boxes[0], gt),
        },
    }


def shifted_views(nets, preprocesses, image: torch.Tensor, Q: int, crop: int, shifts) -> list:
    """The output maps of ``nets`` (dense forms) on the image rescaled to Q, on one grid of windows
    per shift ``(dx, dy)`` (px): the grid starts there, and the view is trimmed to the windows."""
    scaled, sx, sy = rescale(image, Q)
    h, w = scaled.shape[-2:]
    views = []
    for dx, dy in shifts:
        rows, cols = (h - dy) // dense.STRIDE * dense.STRIDE, (w - dx) // dense.STRIDE * dense.STRIDE
        if min(rows, cols) < crop:
            continue
        view, geometry = scaled[:, dy : dy + rows, dx : dx + cols], dense.Geometry(sx, sy, dx, dy)
        with torch.no_grad():
            maps = [net(p(view)[None])[0] for net, p in zip(nets, preprocesses)]
        views.append(tuple((m, geometry) for m in maps))
    return views


def every_shift(step: int) -> list[tuple[int, int]]:
    """Grids every ``step`` px in x and y: their windows pooled, a stride of ``step`` instead of 32
    (OverFeat's finer stride, by shifting the input)."""
    return [(dx, dy) for dy, dx in itertools.product(range(0, dense.STRIDE, step), repeat=2)]


def onto_the_crop(image: torch.Tensor, Q: int, crop: int) -> list[tuple[int, int]]:
    """The one shift whose grid holds the central crop itself as a window: that window seen
    densely differs from the crop in what lies around it alone (the receptive field's context)."""
    top, left = centre_window(*scaled_size(*image.shape[-2:], Q), crop)
    return [(left % dense.STRIDE, top % dense.STRIDE)]


def in_top5(posteriors: torch.Tensor, labels: list[int]) -> np.ndarray:
    """Whether each image's true class is among its five best, ranked as protocol 2 ranks them."""
    ranked = torch.sort(posteriors.double(), dim=1, descending=True, stable=True).indices[:, :5]
    return np.array([label in row for label, row in zip(labels, ranked.tolist())])


def share_right(right: np.ndarray, groups: np.ndarray) -> list[dict]:
    """The share of right boxes (%) in each group of windows, with the group's size."""
    return [
        {
            "group": float(g),
            "windows": int((groups == g).sum()),
            "right_%": round(100 * float(right[groups == g].mean()), 1),
        }
        for g in np.unique(groups)
    ]


def stages(followed: list[dict], top5: np.ndarray, centre: np.ndarray) -> dict:
    """One grid's figures over the images: each stage's error (an image right only where the true
    class is among the five), paired against the central crop's per-image errors ``centre``, the
    windows, where they sit and what they hold, and how often a window's box is right by either."""
    err = {k: 1.0 - (top5 & np.array([f["stages"][k] for f in followed])).astype(float) for k in STAGES}
    right = np.concatenate([f["right"] for f in followed])
    offset = np.concatenate([f["offset"] for f in followed])
    held = np.concatenate([f["held"] for f in followed])
    nearest = np.array([f["held"][int(np.argmin(f["offset"]))] for f in followed])
    windows = np.array([len(f["right"]) for f in followed])
    offsets = np.array([f["offset"].min() for f in followed])
    return {
        "error": {k: round(100 * float(v.mean()), 2) for k, v in err.items()},
        "against_the_central_crop": {k: paired_points(v, centre) for k, v in err.items()},
        "error_per_image": err["dense"],
        "windows_per_image": {
            "median": float(np.median(windows)),
            "min": int(windows.min()),
            "max": int(windows.max()),
        },
        "nearest_window_offset_crops": {
            "median": round(float(np.median(offsets)), 3),
            "max": round(float(offsets.max()), 3),
        },
        "object_held_%": {
            "central crop": round(100 * float(np.mean([f["centre_held"] for f in followed])), 1),
            "window nearest the centre": round(100 * float(nearest.mean()), 1),
            "every window": round(100 * float(held.mean()), 1),
        },
        "window_right_by_offset_crops": share_right(right, np.round(offset * 8) / 8),
        "window_right_by_object_held": share_right(right, np.minimum(np.floor(held * 4) / 4, 0.75)),
    }


def against(grid_figures: dict, stage: str) -> str:
    """A stage's paired effect against the central crop, as text: "+7.4 +/- 3.0"."""
    effect = grid_figures["against_the_central_crop"][stage]
    return f"{effect['effect']:+.1f} +/- {effect['half_width']:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=("ci", "cpu", "gpu"))
    p.add_argument("--chain", type=int, required=True, help="the chain's training seed; its nets must be in runs/")
    p.add_argument(
        "--fine-stride", type=int, default=8, help="px between the shifted grids (a divisor of 32; default 8)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="default: results/<profile>_dense_localisation_mechanism-<chain>.json"
    )
    args = p.parse_args(argv)
    if args.fine_stride <= 0 or dense.STRIDE % args.fine_stride:
        p.error(f"--fine-stride {args.fine_stride}: give a divisor of {dense.STRIDE} (1, 2, 4, 8, 16 or 32)")
    prof = get_profile(args.profile)
    torch.set_num_threads(prof.threads)
    root = synth.ensure(prof, progress=False, log=lambda *_: None)
    train_set, val_set = data.ILSVRC(root, "train"), data.ILSVRC(root, "val")
    row = next(r for r in grid.TABLE9_SYSTEMS if (r.train_S, r.test_Q) == ROW)
    ((name, (paper_Q,)),) = row.nets
    Q = prof.S(paper_Q)
    try:
        made = loc_tables.trained_localisers(prof, [name], train_set.samples, args.chain, epochs=EPOCHS, lr=prof.lr)
    except loc_tables.NotTrained as e:
        raise SystemExit(f"dense_localisation_mechanism: {e}") from None
    if not grid.run_of(prof, grid.LOC_CLASSIFIER, args.chain).checkpoint.is_file():  # classification_system trains
        raise SystemExit(
            f"dense_localisation_mechanism: {grid.LOC_CLASSIFIER} of chain {args.chain} is not in runs/{prof.name}/; "
            "run the chain first"
        )
    net, preprocess = made.nets[name], made.preprocess[name]
    samples = val_set.samples
    classifier = loc_tables.classification_system(prof, samples, seed=args.chain)
    chapter = loc_tables.protocol2_runs({ROW: System([net], [[Q]], [preprocess])}, classifier, samples)
    arm = {k[0]: v.numpy() for k, v in chapter.items()}  # "dense" and "centre", as chapter 7 runs them
    top5 = in_top5(classifier.posteriors, [int(s.label) for s in samples])
    step = args.fine_stride
    view_nets = [to_dense(n, ceil_mode=False) for n in (net, classifier.net)]
    followed, fine, aligned = [], [], []
    for start in range(0, len(samples), CHUNK):
        chunk = samples[start : start + CHUNK]
        images = [default_load_image(s) for s in chunk]
        maps = zip(
            dense.maps_of(net, images, Q=Q, preprocess=preprocess, centre=False, align="centred"),
            dense.maps_of(classifier.net, images, Q=Q, preprocess=classifier.preprocess, centre=False, align="centred"),
        )
        followed += [follow_the_box(s, im, net.crop, kind_of(net), [m]) for s, im, m in zip(chunk, images, maps)]
        for s, im in zip(chunk, images):
            for out, shifts in ((fine, every_shift(step)), (aligned, onto_the_crop(im, Q, net.crop))):
                views = shifted_views(view_nets, (preprocess, classifier.preprocess), im, Q, net.crop, shifts)
                out.append(follow_the_box(s, im, net.crop, kind_of(net), views))
    centre = 1.0 - arm["centre"].astype(float)
    grids = {
        "stride 32 (the chapter's grid)": stages(followed, top5, centre),
        f"stride {step} (shifted grids)": stages(fine, top5, centre),
        "stride 32, shifted onto the central crop": stages(aligned, top5, centre),
    }
    chapters, finer, onto = grids.values()
    figures = {
        "claim": CLAIM,
        "chain": args.chain,
        "Q": Q,
        "images": len(samples),
        "true_class_in_top5_%": round(100 * float(top5.mean()), 2),
        "central_crop_error": round(100 * float(centre.mean()), 2),
        "stride_in_crop_widths": {
            "paper": round(dense.STRIDE / PAPER_CROP, 3),
            "here": round(dense.STRIDE / net.crop, 3),
            "shifted grids": round(step / net.crop, 3),
        },
        "grids": grids,
        "central_crop_window_with_context_%": round(100 * float(np.mean([len(f["right"]) > 1 for f in aligned])), 1),
        "recomputed_dense_agrees_with_the_chapter": int(((chapters["error_per_image"]) == 1.0 - arm["dense"]).sum()),
        "ledger_error": ledger.recorded_errors(prof.name, "07_localisation", CLAIM, args.chain),
    }
    for g in grids.values():
        del g["error_per_image"]
    context = figures["central_crop_window_with_context_%"]
    near, best, widths = "window nearest the centre", "best window (oracle)", figures["stride_in_crop_widths"]
    figures["summary"] = (
        f"Chain {args.chain}, {len(samples)} images, protocol 2 at Q={Q} ({figures['true_class_in_top5_%']:.1f}% with "
        f"the true class among the five; the central crop errs {figures['central_crop_error']:.1f}%). Placement: on "
        f"the chapter's grid (a window every {widths['here']:g} crop widths, the paper's every {widths['paper']:g}) "
        f"the nearest window sits {chapters['nearest_window_offset_crops']['median']:.2f} crop widths from the "
        f"central crop and holds {chapters['object_held_%'][near]:.0f}% of the object against the crop's "
        f"{chapters['object_held_%']['central crop']:.0f}%; its box errs {chapters['error'][near]:.1f}% "
        f"({against(chapters, near)} against the crop), the best of the windows (an oracle) "
        f"{chapters['error'][best]:.1f}%, and the chapter's merged dense box {chapters['error']['dense']:.1f}% "
        f"({against(chapters, 'dense')}). Context: the central crop's own window on a grid laid through it, seen "
        f"densely with what of the image the trimmed view keeps around it (more than the crop itself on {context:.0f}% "
        f"of the images), errs {onto['error'][near]:.1f}% ({against(onto, near)}). Density: on grids "
        f"shifted every {step} px (a window every {widths['shifted grids']:g} crop widths) the merged dense box errs "
        f"{finer['error']['dense']:.1f}% ({against(finer, 'dense')}), its best window {finer['error'][best]:.1f}%. "
        "(The +/- are the images' 95% half-widths, one chain, no seed term.)"
    )
    out = args.out or Path("results") / f"{prof.name}_dense_localisation_mechanism-{args.chain}.json"
    question = "Claim 7.4 taken apart: where, between the dense windows and the merged box, is the loss?"
    print(save_figures(prof.name, out.stem, question, figures, out=out))
    print(figures["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
