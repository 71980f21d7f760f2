"""Object sizes: the rendered boxes are the generated set's, the box area is hand-checked, and the
`cpu` and `gpu` sets are calibrated to ILSVRC-2012's mean object area with small objects present."""

import numpy as np
import pytest

from vggrepro.core.profiles import get_profile
from vggrepro.data import ILSVRC, synth
from vggrepro.data.object_sizes import (
    ILSVRC_MEAN_AREA,
    area_fractions,
    box_area_fraction,
    rendered_area_fractions,
    share_in_centre_crop,
    side_at,
    summary,
)


def test_box_area_fraction_by_hand():
    assert box_area_fraction((10, 20, 30, 60), (100, 80)) == pytest.approx(20 * 40 / 8000)
    assert box_area_fraction((0, 0, 64, 48), (64, 48)) == 1.0


def test_an_objects_side_at_a_scale_by_hand():
    # a 30 x 40 box (area 1200, side 34.64) in a 200 x 100 image: Q = 50 halves it
    assert side_at((10, 20, 40, 60), (200, 100), 50) == pytest.approx(1200**0.5 / 2)
    assert side_at((0, 0, 64, 48), (64, 48), 96) == pytest.approx((64 * 48) ** 0.5 * 2)


def test_rendered_fractions_are_the_generated_sets(tmp_path):
    profile = get_profile("cpu", num_classes=3, synth_train_per_class=1, synth_val_per_class=4, seed=5)
    root = synth.generate(tmp_path / "set", synth.SynthSpec(**synth.profile_params(profile)), progress=False)
    on_disk = area_fractions(ILSVRC(root, "val"))
    np.testing.assert_allclose(rendered_area_fractions(profile, per_class=4), on_disk, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_objects_sized_like_ilsvrc(name):
    """Mean area within 0.03 of ILSVRC-2012's (400 objects: the mean's sampling sd is about 0.013),
    small objects (under a tenth of the image) and near whole-image ones both present."""
    s = summary(rendered_area_fractions(get_profile(name), per_class=400 // get_profile(name).num_classes))
    assert abs(s["mean"] - ILSVRC_MEAN_AREA) < 0.03
    assert s["small"] > 0.1 and s["decile_9"] > 0.6


def test_the_quick_profile_keeps_large_objects():
    """ci's 32 px crops cannot show a small object: its set keeps large ones (none under a tenth)."""
    assert summary(rendered_area_fractions(get_profile("ci"), per_class=10))["small"] == 0.0


def test_the_centre_crop_keeps_less_of_an_object_at_a_larger_Q():
    # a 100 x 50 image at Q = 50 stays as it is; its central 40 x 40 window is x 30-70, y 5-45
    assert share_in_centre_crop((0, 0, 100, 50), (100, 50), 50, 40) == 1600 / 5000
    assert share_in_centre_crop((40, 10, 60, 40), (100, 50), 50, 40) == 1.0
    # at Q = 100 the image is 200 x 100, the window x 80-120, y 30-70; the box becomes 80-120 x 20-80
    assert share_in_centre_crop((40, 10, 60, 40), (100, 50), 100, 40) == pytest.approx(2 / 3)
    assert share_in_centre_crop((0, 0, 10, 10), (100, 50), 100, 40) == 0.0
