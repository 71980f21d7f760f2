"""The scripts that take a claim decided against the paper apart: they measure trained nets, and
never train one."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from loc_helpers import IDENTITY, image, one_thread, tiny_classifier  # noqa: F401 (one_thread: autouse)

from vggrepro.core.runs import REPO
from vggrepro.experiments import ledger
from vggrepro.localise import dense
from vggrepro.models import to_dense


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


centre_crop_mechanism = script("centre_crop_mechanism")
plateau_cuts = script("plateau_cuts")
voc_scales_mechanism = script("voc_scales_mechanism")
regressor_mechanism = script("regressor_mechanism")
dense_localisation_mechanism = script("dense_localisation_mechanism")


#: Each mechanism script, the first net it needs and the chapter whose claim it takes apart.
MECHANISMS = [
    (centre_crop_mechanism, "D/256", "04_single_scale"),
    (voc_scales_mechanism, "D/jit", "08_generalisation"),
    (regressor_mechanism, "D/384", "07_localisation"),
    (dense_localisation_mechanism, "D/384", "07_localisation"),
]


@pytest.mark.parametrize(("mechanism", "net", "chapter"), MECHANISMS)
def test_a_mechanism_refuses_a_chain_whose_nets_are_not_trained(mechanism, net, chapter, tmp_path, monkeypatch):
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    with pytest.raises(SystemExit, match=rf"{net} of chain 99 is not in runs/ci/; run the chain first"):
        mechanism.main(["--profile", "ci", "--chain", "99"])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("checkpoint*"))


@pytest.mark.parametrize(("mechanism", "net", "chapter"), MECHANISMS)
def test_a_mechanism_names_its_claim_as_the_ledger_records_it(mechanism, net, chapter):
    """The results page finds a mechanism by its claim's text: a renamed claim would lose it."""
    recorded = {row["claim"] for chain in ledger.load("cpu") for row in chain["claims"][chapter]}
    assert mechanism.CLAIM in recorded


def test_the_class_share_of_box_variance_by_hand():
    classes = np.array([0, 0, 1, 1])
    # class means 1 and 3 around 2: between 4 x 1 = 4; total 4 + 2 x 0.5^2 x 2 = 5
    assert regressor_mechanism.between_class_share(np.array([0.5, 1.5, 2.5, 3.5]), classes) == pytest.approx(4 / 5)
    assert regressor_mechanism.between_class_share(np.array([1.0, 3.0, 1.0, 3.0]), classes) == 0.0


def test_averaged_rows_give_every_class_the_mean_box():
    class Head(torch.nn.Module):  # a net's fc8 under its paper name, as VGG.layer gives it
        def __init__(self):
            super().__init__()
            self.fc8 = torch.nn.Linear(3, 8)  # two classes of 4 box outputs

        def layer(self, name):
            return getattr(self, name)

    net = Head()
    shared = regressor_mechanism.rows_averaged(net)
    x = torch.randn(5, 3)
    with torch.no_grad():
        want = net.fc8(x).reshape(5, 2, 4).mean(1)
        got = shared.fc8(x).reshape(5, 2, 4)
    torch.testing.assert_close(got[:, 0], want)
    torch.testing.assert_close(got[:, 1], want)


def test_the_plateau_replay_cuts_where_three_epochs_miss_the_best():
    # errors fall to 50 at epoch 4, then three epochs miss it: patience 2 cuts after epoch 7
    errs = [80, 70, 60, 50, 52, 51, 53, 40]
    points = [(e, err, 0.01 if e < 7 else 0.001) for e, err in enumerate(errs, 1)]
    assert plateau_cuts.first_cut(points, 0.01, patience=2, hold=0) == 7
    assert plateau_cuts.first_cut(points, 0.01, patience=2, hold=7) is None  # a stall in the hold is no plateau
    found = plateau_cuts.net_cuts(points, 0.01, patience=2, hold=0, window=4)
    assert found["first_cut_epoch"] == found["replayed_first_cut"] == 7
    assert (found["best_error_before"], found["error_at_cut"]) == (50, 53)
    # 50, 52, 51, 53 over epochs 4-7: the least-squares slope is 4 / 5 points an epoch
    assert found["trend_last_4_epochs"] == pytest.approx(0.8)


def test_the_share_of_an_object_a_window_holds_by_hand():
    box = np.array([0.0, 0.0, 10.0, 10.0])
    windows = np.array([[0.0, 0.0, 5.0, 10.0], [5.0, 5.0, 20.0, 20.0], [20.0, 20.0, 30.0, 30.0], [-5, -5, 15, 15]])
    held = dense_localisation_mechanism.held_share(box, windows)
    np.testing.assert_allclose(held, [0.5, 0.25, 0.0, 1.0])


def test_the_true_class_among_the_five_ranks_ties_as_protocol_2():
    posteriors = torch.tensor([[0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]])
    # row 0: classes 0..4 are the five (ties keep the lower index); row 1: 5, 6, then 0, 1, 2
    assert dense_localisation_mechanism.in_top5(posteriors, [5, 2]).tolist() == [False, True]
    assert dense_localisation_mechanism.in_top5(posteriors, [4, 3]).tolist() == [True, False]


def test_a_grid_shifted_by_32_is_the_plain_nets_top_left_grid():
    """One shift of 32 px is the plain net's grid (dense.view with align="top-left"): the same map
    and geometry; shifts of 16 add the grids between its windows."""
    net, picture = tiny_classifier(crop=32).eval(), image(75, 90)
    views = dense_localisation_mechanism.shifted_views(
        [to_dense(net, ceil_mode=False)], [IDENTITY], picture, 70, 32, dense_localisation_mechanism.every_shift(32)
    )
    ((want, geometry),) = dense.maps_of(net, [picture], Q=70, preprocess=IDENTITY, centre=False, align="top-left")
    (((got, got_geometry),),) = views
    torch.testing.assert_close(got, want[:, : got.shape[1], : got.shape[2]])
    assert got.shape == want.shape and got_geometry == geometry
    finer = dense_localisation_mechanism.shifted_views(
        [to_dense(net, ceil_mode=False)], [IDENTITY], picture, 70, 32, dense_localisation_mechanism.every_shift(16)
    )
    assert sorted((v[0][1].x0, v[0][1].y0) for v in finer) == [(0, 0), (0, 16), (16, 0), (16, 16)]


def test_the_grid_laid_through_the_central_crop_holds_it_as_a_window():
    picture = image(75, 90)  # at Q = 70: 70 x 84, the central 32 x 32 crop at left 26, top 19
    (shift,) = dense_localisation_mechanism.onto_the_crop(picture, 70, 32)
    assert shift == (26 % 32, 19 % 32)
    net = tiny_classifier(crop=32).eval()
    ((loc_map, geometry),) = dense_localisation_mechanism.shifted_views(
        [to_dense(net, ceil_mode=False)], [IDENTITY], picture, 70, 32, [shift]
    )[0][:1]
    windows = dense.dense_windows(*loc_map.shape[1:], 32) + torch.tensor([geometry.x0, geometry.y0] * 2)
    assert [26, 19, 58, 51] in windows.tolist()
