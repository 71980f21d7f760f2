"""vggrepro.evaluate.windows: the four views that separate window placement from context, checked against
hand-counted windows and against the plain net where the views must agree."""

from __future__ import annotations

import torch

from vggrepro.data.transforms import Preprocess
from vggrepro.evaluate import windows
from vggrepro.models import build


def _net(crop=32):
    torch.manual_seed(0)
    return build("A", width=0.0625, num_classes=5, crop=crop).eval()


def _identity():
    return Preprocess(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))


def test_inside_windows_are_the_floor_pooled_positions_counted_by_hand():
    net = _net()
    assert windows.inside_windows(net, 37, 55) == [(0, 0)]  # 37 // 32 = 1, 55 // 32 = 1
    assert windows.inside_windows(net, 64, 100) == [(0, 0), (0, 32), (0, 64), (32, 0), (32, 32), (32, 64)]
    # a 64-px crop: fc6 is 2x2, so a 100 x 130 image holds (3 - 1) x (4 - 1) windows of 64 px
    assert windows.inside_windows(_net(64), 100, 130) == [(0, 0), (0, 32), (0, 64), (32, 0), (32, 32), (32, 64)]
    for top, left in windows.inside_windows(net, 64, 100):
        assert top + 32 <= 64 and left + 32 <= 100


def test_one_crop_sized_image_scores_the_same_in_every_view():
    net = _net()
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    scores = windows.view_scores(net, _identity(), image, 32)
    plain = net(_identity()(image.unsqueeze(0)))[0]
    for view in windows.VIEWS:
        torch.testing.assert_close(scores[view], plain, atol=1e-5, rtol=1e-5)


def test_crops_inside_average_the_plain_net_over_the_tiles():
    net = _net()
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    x = _identity()(image.unsqueeze(0))
    tiles = [net(x[..., t : t + 32, l : l + 32])[0] for t in (0, 32) for l in (0, 32, 64)]
    scores = windows.view_scores(net, _identity(), image, 64)
    torch.testing.assert_close(scores["crops inside"], torch.stack(tiles).mean(0), atol=1e-5, rtol=1e-5)
    # at multiples of 32 both poolings give the same windows, so the two dense views agree
    torch.testing.assert_close(scores["dense"], scores["dense inside"], atol=1e-5, rtol=1e-5)


def test_view_errors_count_windows_and_errors_per_image():
    net = _net()
    images = [(i, torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8), i % 5) for i in range(4)]
    errors = windows.view_errors(net, _identity(), images, 37)
    assert set(errors) == set(windows.VIEWS) | {"windows", "inside"}
    # 40 x 60 at Q = 37 -> 37 x 56 (rounded): pools rounded up give 2 x 2 windows, down 1 x 1
    assert errors["windows"].tolist() == [4] * 4 and errors["inside"].tolist() == [1] * 4
    for view in windows.VIEWS:
        assert errors[view].shape == (4,) and set(errors[view].tolist()) <= {0, 1}
