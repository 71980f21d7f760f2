"""The paper's pre-processing, each function against values worked out by hand."""

import pytest
import torch

from vggrepro.data import transforms as T


def _ramp(values, rows, dtype=torch.float32):
    """A (3, rows, len(values)) image whose every row is ``values``."""
    return torch.tensor(values, dtype=dtype).repeat(rows, 1).expand(3, rows, len(values)).contiguous()


# -- isotropic rescaling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "h, w, S, expected",
    [
        (100, 150, 50, (50, 75)),  # 150 * 50/100 = 75 exactly
        (150, 100, 73, (110, 73)),  # 150 * 73/100 = 109.5: half rounds up
        (3, 5, 2, (2, 3)),  # 5 * 2/3 = 3.33 -> 3
        (2, 3, 3, (3, 5)),  # 3 * 3/2 = 4.5 -> 5
        (64, 64, 73, (73, 73)),  # square stays square, upscaling too
        (375, 500, 256, (256, 341)),  # an ImageNet-sized image: 341.33 -> 341
    ],
)
def test_scaled_size_smaller_side_is_S(h, w, S, expected):
    assert T.scaled_size(h, w, S) == expected
    assert min(T.scaled_size(h, w, S)) == S


def test_scaled_size_rejects_nonpositive():
    with pytest.raises(ValueError):
        T.scaled_size(0, 5, 3)
    with pytest.raises(ValueError):
        T.scaled_size(4, 5, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_downscale_by_two_is_antialiased(dtype):
    # Shrinking by 2 widens the triangle filter to +-2 input pixels. Output pixel 0 sits at input
    # x = 1.0: inputs at 0.5 and 1.5 weigh 0.75, the one at 2.5 weighs 0.25 (the one at -0.5 is
    # outside); so (0.75*0 + 0.75*70 + 0.25*140) / 1.75 = 50, and symmetrically
    # (0.25*70 + 0.75*140 + 0.75*210) / 1.75 = 160. Without antialiasing it would be 35 and 175.
    out = T.rescale(_ramp([0, 70, 140, 210], 4, dtype), 2)
    assert out.dtype == dtype
    assert out.shape == (3, 2, 2)
    assert torch.equal(out.float(), _ramp([50, 160], 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_upscale_by_two_is_bilinear(dtype):
    # Output pixel centres map to input x = (i + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to
    # the edge: 0, 25, 75, 100.
    out = T.rescale(_ramp([0, 100], 2, dtype), 4)
    assert torch.equal(out.float(), _ramp([0, 25, 75, 100], 4))


def test_rescale_batch_and_constant_image():
    img = torch.full((2, 3, 30, 45), 77, dtype=torch.uint8)
    out = T.rescale(img, 20)
    assert out.shape == (2, 3, 20, 30)
    assert (out == 77).all()


# -- random choices -------------------------------------------------------------------------------


def test_draw_scale_fixed_and_jittered():
    g = torch.Generator().manual_seed(0)
    assert T.draw_scale(g, 73) == 73
    draws = [T.draw_scale(g, (73, 76)) for _ in range(400)]
    assert set(draws) == {73, 74, 75, 76}  # integers, both ends included
    for value in range(73, 77):  # roughly uniform: each ~100 of 400
        assert 60 < draws.count(value) < 140
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [T.draw_scale(g1, (73, 146)) for _ in range(20)] == [T.draw_scale(g2, (73, 146)) for _ in range(20)]
    with pytest.raises(ValueError):
        T.draw_scale(g, (80, 70))


def test_random_crop_box_covers_all_positions():
    g = torch.Generator().manual_seed(1)
    boxes = {T.random_crop_box(66, 65, 64, g) for _ in range(200)}
    assert boxes == {(t, l) for t in range(3) for l in range(2)}
    assert T.random_crop_box(64, 64, 64, g) == (0, 0)
    with pytest.raises(ValueError, match="does not fit"):
        T.random_crop_box(63, 100, 64, g)


def test_draw_flip_is_a_fair_coin():
    g = torch.Generator().manual_seed(2)
    flips = [T.draw_flip(g) for _ in range(400)]
    assert 150 < sum(flips) < 250


# -- crops and flips --------------------------------------------------------------------------------


def test_hflip():
    img = torch.tensor([[[1, 2, 3], [4, 5, 6]]])
    assert torch.equal(T.hflip(img), torch.tensor([[[3, 2, 1], [6, 5, 4]]]))


def test_centre_crop():
    img = torch.arange(30).reshape(1, 5, 6)  # rows 0..4, columns 0..5
    out = T.centre_crop(img, 3)
    # margins: (5-3)//2 = 1 row above, (6-3)//2 = 1 column left (the odd extra pixel goes right)
    assert torch.equal(out, torch.tensor([[[7, 8, 9], [13, 14, 15], [19, 20, 21]]]))
    with pytest.raises(ValueError):
        T.centre_crop(img, 6)


def test_crop():
    img = torch.arange(16).reshape(1, 4, 4)
    assert torch.equal(T.crop(img, 1, 2, 2), torch.tensor([[[6, 7], [10, 11]]]))


def test_crop_grid_positions():
    # extent 10 - 4 = 6 spread over 4 gaps: 0, 1.5, 3, 4.5, 6 -> 0, 2, 3, 5, 6 (halves round up)
    grid = T.crop_grid(10, 10, 4, n=5)
    assert len(grid) == 25
    assert [left for top, left in grid[:5]] == [0, 2, 3, 5, 6]
    assert [top for top, left in grid[::5]] == [0, 2, 3, 5, 6]
    # the four corners are among the crops
    assert {(0, 0), (0, 6), (6, 0), (6, 6)} <= set(grid)


def test_crop_grid_non_square_and_single():
    grid = T.crop_grid(64, 100, 64, n=3)
    # height 64 = the crop: every row of the grid is the same row; columns at 0, 18, 36 (= 100 - 64)
    assert grid == [(0, left) for _ in range(3) for left in (0, 18, 36)]
    assert T.crop_grid(70, 90, 64, n=1) == [(3, 13)]
    with pytest.raises(ValueError):
        T.crop_grid(60, 90, 64)


# -- AlexNet's colour shift -------------------------------------------------------------------------


def test_colour_shift_by_hand():
    img = torch.zeros(3, 2, 2)
    eigval = torch.tensor([0.2, 0.1, 0.0])
    # eigenvectors as columns: a rotation of R and G by 90 degrees, B stays
    eigvec = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    alpha = torch.tensor([0.5, 1.0, 7.0])
    # alpha * eigval = (0.1, 0.1, 0); eigvec @ that = (-0.1, 0.1, 0); times 255 = (-25.5, 25.5, 0)
    out = T.colour_shift_by(img, alpha, eigval, eigvec)
    assert torch.allclose(out[:, 0, 0], torch.tensor([-25.5, 25.5, 0.0]))
    assert torch.allclose(out, out[:, :1, :1].expand(3, 2, 2))  # the same offset for every pixel


def test_colour_shift_batch_draws_one_alpha_per_image():
    imgs = torch.full((4, 3, 2, 2), 100.0)
    eigval, eigvec = torch.tensor([0.1, 0.05, 0.01]), torch.eye(3)
    out = T.colour_shift(imgs, eigval, eigvec, torch.Generator().manual_seed(3), std=0.1)
    alpha = torch.randn(4, 3, generator=torch.Generator().manual_seed(3)) * 0.1
    expected = 100 + 255 * alpha * eigval  # eigvec = identity: channel c moves by alpha_c * eigval_c
    assert torch.allclose(out[:, :, 0, 0], expected, atol=1e-4)
    assert not torch.allclose(out[0], out[1])


def test_preprocess_subtracts_mean():
    pre = T.Preprocess(mean=(10.0, 20.0, 30.0))
    out = pre(torch.full((3, 1, 1), 50, dtype=torch.uint8))
    assert out.flatten().tolist() == [40.0, 30.0, 20.0]
