"""Images with boxes, for localisation (Appendix A): loading, rescaling with their boxes, and the
random training crops of box regression with their targets.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..data import decode_image, transforms
from ..data.transforms import Preprocess
from .boxes import as_boxes, scale

# -- images -------------------------------------------------------------------------------------


def default_load_image(sample) -> torch.Tensor:
    """A sample's image as a uint8 (3, H, W) RGB tensor, decoded by ``vggrepro.data``."""
    return decode_image(sample.path)


def rescale(image: torch.Tensor, S: int) -> tuple[torch.Tensor, float, float]:
    """:func:`vggrepro.data.transforms.rescale` (smaller side S), with the factors ``(sx, sy)`` (new size
    / old size per axis, after rounding) that map boxes into the rescaled image."""
    out = transforms.rescale(image, S)
    return out, out.shape[-1] / image.shape[-1], out.shape[-2] / image.shape[-2]


def gt_boxes(sample) -> torch.Tensor:
    boxes = getattr(sample, "boxes", None)
    if not boxes:
        raise ValueError(
            f"sample {getattr(sample, 'path', sample)!r} has no ground-truth box; localisation needs images "
            "with boxes (ILSVRC: the val set, or the train images listed in the LOC files)"
        )
    return as_boxes(boxes).reshape(-1, 4)


# -- training crops -----------------------------------------------------------------------------


def choose_crop(
    boxes, height: int, width: int, crop: int, rng: np.random.Generator, min_visible: float = 0.5, tries: int = 10
) -> tuple[int, int, int]:
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
        seen = [
            max(min(b[2], x0 + crop) - max(b[0], x0), 0.0) * max(min(b[3], y0 + crop) - max(b[1], y0), 0.0)
            for b in boxes
        ]
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
    return torch.tensor(
        [cx, ((b[1] + b[3]) / 2 - y0) / crop, (b[2] - b[0]) / crop, (b[3] - b[1]) / crop], dtype=torch.float64
    )


class BoxCrops(torch.utils.data.Dataset):
    """Training crops for box regression at a fixed S (the paper trains without jittering): rescale
    to S, random crop (see :func:`choose_crop`), random horizontal flip, the box moved with them
    (see :func:`crop_target`).

    Item k of epoch e draws its crop and flip from ``(seed, e, k)``, so an epoch is the same with
    any number of loader workers and after a resume.
    """

    def __init__(
        self,
        samples,
        S: int,
        crop: int,
        preprocess: Preprocess,
        seed: int = 0,
        load_image: Callable | None = None,
        cache: bool = False,
    ):
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
        item = (image, scale(gt_boxes(sample), sx, sy).numpy())
        if self.cache is not None:
            self.cache[k] = item
        return item

    def __getitem__(self, k: int):
        image, boxes = self._rescaled(k)
        rng = np.random.default_rng([self.seed, self.epoch, k])
        h, w = image.shape[-2:]
        x0, y0, b = choose_crop(boxes, h, w, self.crop, rng)
        flip = bool(rng.integers(0, 2))
        x = image[:, y0 : y0 + self.crop, x0 : x0 + self.crop]
        if flip:
            x = x.flip(-1)
        target = crop_target(boxes[b], x0, y0, self.crop, flip).float()
        return self.preprocess(x), target, int(self.samples[k].label)
