"""Helpers of the localisation tests: fake samples and images, and tiny nets whose boxes are known.

Nets here are tiny (config A, width 1/16, crop 32 or 64) and, where a protocol is tested, made
constant: fc8's weights are zero and its bias is an encoded box, so the net predicts that box in
every window and the expected result can be worked out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from vggrepro import models
from vggrepro.data.transforms import Preprocess
from vggrepro.localise.finetune import localiser
from vggrepro.models import build

IDENTITY = Preprocess(mean=(0.0, 0.0, 0.0))


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: the machine's cores are shared, and results must not depend on the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class FakeSample:
    path: str
    label: int
    boxes: list = field(default_factory=list)
    wnid: str = ""


def image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def loader_of(images):
    """A load_image that returns the in-memory image named by the sample's path."""
    return lambda s: images[s.path]


def tiny_classifier(crop=32, classes=3, seed=0):
    torch.manual_seed(seed)
    return build("A", width=1 / 16, num_classes=classes, crop=crop)


def constant_localiser(kind, boxes_params, crop=32, classes=3):
    """A localiser whose output is the same for every input: fc8 weight 0, bias = the encoded box
    (SCR: one box; PCR: one per class, given as a list)."""
    loc = localiser(tiny_classifier(crop, classes), kind)
    fc8 = loc.layer("fc8")
    with torch.no_grad():
        fc8.weight.zero_()
        fc8.bias.copy_(torch.tensor(boxes_params, dtype=torch.float32).reshape(-1))
    return loc.eval()


#: Pixels to about [-1, 1]: with fan-in weights, the nets below give boxes of order 1 that move with the pixels.
LIVELY = Preprocess(mean=(128.0, 128.0, 128.0), std=(128.0, 128.0, 128.0))


def lively_localiser(kind, crop=32, classes=3, seed=0):
    """A localiser whose boxes depend on the pixels (a fresh net's std-1e-2 fc8 predicts ~0 anywhere):
    fan-in weights throughout, fc8's bias the box (0.5, 0.5, 0.5, 0.5)."""
    torch.manual_seed(seed)
    loc = models.init_fan_in(localiser(tiny_classifier(crop, classes, seed), kind, seed=seed), last_std=0.05)
    with torch.no_grad():
        loc.layer("fc8").bias.fill_(0.5)
    return loc.eval()
