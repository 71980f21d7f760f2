"""How large the labelled objects are, as a fraction of their image's area: the synthetic sets'
sizes beside ILSVRC-2012's.

The paper's scale claims (training at S = 384 or jittered, testing at several Q) rest on objects
of every size: a small object needs a large Q to be seen, a whole-image one a small Q to fit the
crop. A synthetic set with only large objects makes those claims about its own design instead.
ILSVRC-2012's objects cover on average 0.358 of their image's area (PASCAL VOC 2012's: 0.241),
from a few percent to the whole image (Russakovsky et al., "ImageNet Large Scale Visual
Recognition Challenge", IJCV 2015, section 3.2.2): only those means are at hand offline, so the
`cpu` and `gpu` sets are calibrated to the mean and spread from small to whole-image objects; a
reader with ILSVRC-2012 measures its whole distribution with :func:`area_fractions`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..core.scales import centre_window
from .ilsvrc import ILSVRC
from .synth import profile_params
from .synth_classes import class_list
from .synth_images import image_rng, render
from .transforms import scaled_size

#: The mean fraction of an image's area its object's box covers (Russakovsky et al. 2015).
ILSVRC_MEAN_AREA = 0.358
VOC_MEAN_AREA = 0.241


def box_area_fraction(box, size: tuple[int, int]) -> float:
    """(xmin, ymin, xmax, ymax) in pixels of a (width, height) image -> the box's share of its area."""
    xmin, ymin, xmax, ymax = box
    return (xmax - xmin) * (ymax - ymin) / (size[0] * size[1])


def image_size(sample) -> tuple[int, int]:
    """A sample's (width, height): its annotation's, or, where that did not say, its image
    header's (no decoding)."""
    if sample.size is not None:
        return sample.size
    with Image.open(sample.path) as im:
        return im.size


def area_fractions(ds: ILSVRC) -> np.ndarray:
    """Per image of a data set on disk (ILSVRC-2012 or a generated one): its largest box's share of
    the image's area. Images without a box are left out."""
    out = []
    for s in ds.samples:
        if not s.boxes:
            continue
        size = image_size(s)
        out.append(max(box_area_fraction(b, size) for b in s.boxes))
    return np.asarray(out, dtype=np.float64)


def side_at(box, size: tuple[int, int], Q: int) -> float:
    """An object's side in pixels (the square root of its box's area) once its (width, height)
    image is rescaled so that its smaller side is Q: what a net tested at Q sees of it."""
    xmin, ymin, xmax, ymax = box
    return ((xmax - xmin) * (ymax - ymin)) ** 0.5 * Q / min(size)


def share_in_centre_crop(box, size: tuple[int, int], Q: int, crop: int) -> float:
    """The share of an object's box (xmin, ymin, xmax, ymax, in pixels of a (width, height) image)
    that the centre crop of section 3.2 keeps: the image rescaled so that its smaller side is Q,
    then its central ``crop`` x ``crop`` window. At a larger Q the window holds less of the image,
    so an object off the centre, or larger than the window, is cut."""
    height, width = scaled_size(size[1], size[0], Q)
    top, left = centre_window(height, width, crop)
    sx, sy = width / size[0], height / size[1]
    xmin, ymin, xmax, ymax = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
    inside_x = max(0.0, min(xmax, left + crop) - max(xmin, left))
    inside_y = max(0.0, min(ymax, top + crop) - max(ymin, top))
    return inside_x * inside_y / ((xmax - xmin) * (ymax - ymin))


def rendered_area_fractions(profile, per_class: int) -> np.ndarray:
    """The first ``per_class`` validation images of each class of ``profile``'s synthetic set,
    rendered in memory exactly as ``vggrepro data synth`` writes them: their objects' shares of the
    image area (the generated set's annotations give the same; a test checks)."""
    params = profile_params(profile)  # the generator's own reading of the profile
    classes = class_list(params["num_classes"])
    style = {k: params[k] for k in ("box_fraction", "rotation", "background_fade")}
    out = []
    for i in range(per_class):
        for k, cls in enumerate(classes):
            rng = image_rng(params["seed"], "val", k, i)
            pixels, box = render(cls, params["min_side"], rng, classes, **style)
            out.append(box_area_fraction(box, (pixels.shape[1], pixels.shape[0])))
    return np.asarray(out, dtype=np.float64)


def summary(fractions: np.ndarray) -> dict[str, float]:
    """Mean, deciles 1/5/9 and the share of small objects (under a tenth of the image)."""
    d1, d5, d9 = np.percentile(fractions, [10, 50, 90])
    return dict(
        mean=float(fractions.mean()),
        decile_1=float(d1),
        median=float(d5),
        decile_9=float(d9),
        small=float((fractions < 0.1).mean()),
    )
