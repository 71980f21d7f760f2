"""The paper's pre-processing (sections 2.1, 3.1, 3.2), each a small function on image tensors.

Images are uint8 or float tensors in RGB, values 0-255, shaped (3, H, W) or (N, 3, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.scales import centre_window


@dataclass(frozen=True)
class Preprocess:
    """What a net expects of its input, applied to 0-255 RGB pixels.

    The paper subtracts the training set's mean RGB and nothing else (``std`` = 1). torchvision's
    weights expect ImageNet mean/std on 0-1 pixels (here in 0-255 units), and the authors' Caffe
    models expect BGR order with the mean pixel (103.939, 116.779, 123.68) in BGR.
    """

    mean: tuple[float, float, float]  # in 0-255 units, in RGB order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # in 0-255 units
    order: str = "RGB"  # channel order the net was trained on

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        shape = (3, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        x = (x - mean) / std
        if self.order == "BGR":
            x = x.flip(-3)
        return x

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "order": self.order}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        if d.get("order", "RGB") not in ("RGB", "BGR"):
            raise ValueError(f"pre-processing order {d.get('order')!r}: expected 'RGB' or 'BGR'")
        return cls(tuple(map(float, d["mean"])), tuple(map(float, d.get("std", (1, 1, 1)))), d.get("order", "RGB"))


# -- rescaling (section 3.1: "isotropically-rescaled training image, whose smallest side is S") --


def scaled_size(h: int, w: int, S: int) -> tuple[int, int]:
    """The (height, width) of an image of size (h, w) rescaled isotropically so that its smaller side is S.

    The smaller side becomes exactly S; the other is ``other * S / smaller`` rounded half up (in exact
    integer arithmetic, so no float rounding can change it). A square image becomes S x S.

    >>> scaled_size(100, 150, 50), scaled_size(150, 100, 73), scaled_size(3, 5, 2)
    ((50, 75), (110, 73), (2, 3))
    """
    if min(h, w) <= 0 or S <= 0:
        raise ValueError(f"scaled_size({h}, {w}, S={S}): sizes and S must be positive")
    if h <= w:
        return S, (2 * w * S + h) // (2 * h)
    return (2 * h * S + w) // (2 * w), S


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (3, H, W) or (N, 3, H, W) to ``size`` = (h, w), anti-aliased when shrinking.

    With antialias on, torch's bilinear kernel widens on downscale like PIL's ``Image.BILINEAR``, so
    both data paths give the same pixels within a level or two. uint8 stays uint8 (rounded); on the
    CPU a uint8 image goes through torch's fast uint8 kernel, elsewhere through float32.
    """
    batched = img.dim() == 4
    x = img if batched else img.unsqueeze(0)
    if tuple(x.shape[-2:]) == tuple(size):
        return img
    if x.dtype == torch.uint8 and x.device.type == "cpu":
        # the uint8 kernel is several times faster, and fastest on channels-last memory
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    else:
        y = torch.nn.functional.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        if img.dtype == torch.uint8:
            y = y.round_().clamp_(0, 255).to(torch.uint8)
    return y if batched else y[0]


def rescale(img: torch.Tensor, S: int) -> torch.Tensor:
    """Rescale isotropically so that the smaller side is S (training scale S or test scale Q)."""
    h, w = img.shape[-2:]
    return resize(img, scaled_size(h, w, S))


# -- random choices; each takes a torch.Generator so a run can be replayed exactly -----------------


def scale_from_uniform(u: float, S: int | tuple[int, int]) -> int:
    """The S that a uniform draw ``u`` in [0, 1) picks: S itself when fixed, else one of Smin..Smax."""
    if isinstance(S, int):
        return S
    lo, hi = S
    if lo > hi:
        raise ValueError(f"scale range {S}: Smin > Smax")
    return lo + min(int(u * (hi - lo + 1)), hi - lo)


def crop_from_uniform(u_top: float, u_left: float, h: int, w: int, crop: int) -> tuple[int, int]:
    """The (top, left) of a crop x crop window that two uniform draws in [0, 1) pick in an h x w image."""
    if h < crop or w < crop:
        raise ValueError(f"a {crop}x{crop} crop does not fit in a {h}x{w} image; rescale to S >= crop first")
    return min(int(u_top * (h - crop + 1)), h - crop), min(int(u_left * (w - crop + 1)), w - crop)


def _uniform(generator: torch.Generator, n: int = 1) -> list[float]:
    return torch.rand(n, generator=generator, dtype=torch.float64).tolist()


def draw_scale(generator: torch.Generator, S: int | tuple[int, int]) -> int:
    """The training scale of one image: S itself when fixed, else an integer uniform in [Smin, Smax].

    Scale jittering (section 3.1) draws S per image; the paper does not say how, uniform is assumed.
    """
    return S if isinstance(S, int) else scale_from_uniform(_uniform(generator)[0], S)


def random_crop_box(h: int, w: int, crop: int, generator: torch.Generator) -> tuple[int, int]:
    """(top, left) of a crop x crop window drawn uniformly inside an h x w image."""
    if h < crop or w < crop:
        raise ValueError(f"a {crop}x{crop} crop does not fit in a {h}x{w} image; rescale to S >= crop first")
    return crop_from_uniform(*_uniform(generator, 2), h, w, crop)


def draw_flip(generator: torch.Generator) -> bool:
    """A fair coin for the random horizontal flip."""
    return _uniform(generator)[0] < 0.5


def hflip(img: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (the last axis is the width)."""
    return img.flip(-1)


def crop(img: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The size x size window at (top, left) of a (..., H, W) image."""
    return img[..., top : top + size, left : left + size]


def centre_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window; when the margin is odd the extra pixel is left at the bottom/right."""
    h, w = img.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"a {size}x{size} centre crop does not fit in a {h}x{w} image")
    return crop(img, *centre_window(h, w, size), size)


def crop_grid(h: int, w: int, size: int, n: int = 5) -> list[tuple[int, int]]:
    """(top, left) of an n x n grid of size x size crops spanning an h x w image, row by
    row.

    The paper uses a 5 x 5 grid (section 3.2) without saying where the crops lie. Here
    the first and last crops touch the image's edges (the corners are included) and the
    others are evenly spaced between them, positions rounded half up; n=1 gives the
    centre crop.
    """
    if h < size or w < size:
        fits = f"a {size}x{size} crop grid does not fit in a {h}x{w} image"
        raise ValueError(f"{fits}; rescale to Q >= crop")
    if n < 1:
        raise ValueError(f"crop_grid n={n}: need at least one crop per side")
    if n == 1:
        return [((h - size) // 2, (w - size) // 2)]

    def spread(extent: int) -> list[int]:  # i * extent / (n-1), rounded half up
        return [(2 * i * extent + (n - 1)) // (2 * (n - 1)) for i in range(n)]

    return [(top, left) for top in spread(h - size) for left in spread(w - size)]


# -- AlexNet's colour shift (Krizhevsky et al. 2012, section 4.1), used in section 3.1 ------------


def draw_alpha(generator: torch.Generator, n: int = 1, std: float = 0.1) -> torch.Tensor:
    """(n, 3) draws of alpha ~ N(0, std^2), one triple per image."""
    return torch.randn(n, 3, generator=generator) * std


def colour_shift_by(
    img: torch.Tensor, alpha: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor, pixel_scale: float = 255.0
) -> torch.Tensor:
    """Add ``eigvec @ (alpha * eigval)`` to every pixel of each image (alpha: (3,) or (N, 3)).

    ``eigval``/``eigvec`` are the PCA of the training pixels measured on 0-1 values (see
    ``data.dataset_stats``); the formula is not scale-free, so the shift is computed in those units
    and multiplied by ``pixel_scale`` (255 for 0-255 images). ``eigvec``'s columns are eigenvectors.
    """
    shift = rgb_shift(alpha.to(img.device), eigval.to(img.device), eigvec.to(img.device), pixel_scale)
    return img.float() + shift.reshape(*shift.shape, 1, 1)


def rgb_shift(
    alpha: torch.Tensor,
    eigval: torch.Tensor,
    eigvec: torch.Tensor,
    pixel_scale: float = 255.0,
) -> torch.Tensor:
    """The RGB offsets ``eigvec @ (alpha * eigval) * pixel_scale`` of AlexNet's shift,
    (3,) or (N, 3).

    Three products summed in a fixed order, not a matrix product: a BLAS would choose
    the order of the sum by the processor, and a training run turns that last bit into
    points of error.
    """
    w = alpha.float() * eigval.to(alpha.device, torch.float32)  # (..., 3)
    v = eigvec.to(alpha.device, torch.float32)
    shift = w[..., 0:1] * v[:, 0] + w[..., 1:2] * v[:, 1] + w[..., 2:3] * v[:, 2]
    return shift * pixel_scale


def colour_shift(
    img_float: torch.Tensor,
    eigval: torch.Tensor,
    eigvec: torch.Tensor,
    generator: torch.Generator,
    std: float = 0.1,
    pixel_scale: float = 255.0,
) -> torch.Tensor:
    """AlexNet's RGB colour shift with a fresh alpha ~ N(0, std^2) per image; (3,H,W) or (N,3,H,W)."""
    n = img_float.shape[0] if img_float.dim() == 4 else 1
    alpha = draw_alpha(generator, n, std)
    return colour_shift_by(img_float, alpha if img_float.dim() == 4 else alpha[0], eigval, eigvec, pixel_scale)
