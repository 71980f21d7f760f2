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
    summary,
)


def test_box_area_fraction_by_hand():
    assert box_area_fraction((10, 20, 30, 60), (100, 80)) == pytest.approx(20 * 40 / 8000)
    assert box_area_fraction((0, 0, 64, 48), (64, 48)) == 1.0


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
