"""vggrepro.core.profiles: the paper's geometry scaled by crop / 224, and bad knobs rejected clearly."""

from __future__ import annotations

import pytest
import torch

from vggrepro.core import profiles
from vggrepro.core.profiles import get_profile


def test_ci_scales_the_paper_by_32_over_224():
    p = get_profile("ci")
    assert (p.crop, p.width, p.num_classes) == (32, 1 / 8, 10)
    # 256 * 32/224 = 36.6, 384 * 32/224 = 54.9, 512 * 32/224 = 73.1
    assert (p.S(256), p.S(384), p.S(512)) == (37, 55, 73)
    assert p.jitter == (37, 73)
    assert p.factor == pytest.approx(32 / 224)


def test_cpu_scales_the_paper_by_64_over_224():
    """The evidence scale: fc6 a real 2x2 convolution, dense evaluation with several windows per image."""
    p = get_profile("cpu")
    assert (p.crop, p.width, p.num_classes, p.device, p.threads) == (64, 1 / 8, 20, "cpu", 2)
    # 256 * 64/224 = 73.1, 384 * 64/224 = 109.7, 512 * 64/224 = 146.3
    assert (p.S(256), p.S(384), p.S(512)) == (73, 110, 146)
    assert p.jitter == (73, 146)
    assert p.crop // 32 == 2  # fc6 as a convolution: 2x2
    # Q of section 4.2 for the jittered net: the paper's 256, 384, 512 at 64 px
    assert [p.S(q) for q in p.test_scales("[256;512]", multi=True)] == [73, 110, 146]
    assert p.num_classes * p.synth_val_per_class >= 2000  # a paired interval of about +/-2 points
    assert p.synth_min_side[0] >= p.S(256) * 0.9  # images about as large as the smallest S: no blurry upscaling
    assert p.epochs > p.lr_patience + 1  # the plateau schedule has room to cut the lr


def test_ci_run_keys_are_untouched_by_the_cpu_profile():
    """ci's nets keep their run ids (its cached runs and stored outputs) whatever other profiles
    and knobs are added: ids computed before the cpu profile existed."""
    from vggrepro.experiments import grid

    ci = get_profile("ci")
    assert grid.run_of(ci, "A/256").id == "train-A-37-gaussian-f6c20cfe75"
    assert grid.run_of(ci, "D/jit").id == "train-D-37_73-checkpoint-0449882a4d"


def test_paper_profiles_keep_the_paper_geometry():
    for name in ("gpu", "imagenet"):
        p = get_profile(name)
        assert p.crop == 224 and p.width == 1.0
        assert (p.S(256), p.S(384), p.jitter) == (256, 384, (256, 512))
    assert get_profile("imagenet").num_classes == 1000


def test_test_scales_follow_section_3_2():
    p = get_profile("ci")
    assert p.test_scales("256", multi=False) == [256]
    assert p.test_scales(256, multi=True) == [224, 256, 288]
    assert p.test_scales("jitter", multi=False) == [384]
    assert p.test_scales("[256;512]", multi=True) == [256, 384, 512]
    assert [p.S(q) for q in p.test_scales("[256;512]", multi=True)] == [37, 55, 73]


def test_lr_scales_with_the_batch():
    assert get_profile("imagenet").lr == pytest.approx(1e-2)  # the paper's batch 256
    ci = get_profile("ci")
    assert ci.lr == pytest.approx(1e-2 * 64 / 256 * ci.lr_scale)  # the ci profile's extra factor
    assert get_profile("ci", lr_scale=1.0).lr == pytest.approx(1e-2 * 64 / 256)


def test_overrides():
    p = get_profile("ci", width=0.0625, crop=32)
    assert (p.name, p.width, p.crop, p.S(256)) == ("ci", 0.0625, 32, 37)  # 256 * 32/224 = 36.6
    assert get_profile(p) is p
    assert get_profile(p, seed=3).seed == 3


@pytest.mark.parametrize("crop", [48, 100, 0])
def test_crop_not_a_multiple_of_32(crop):
    with pytest.raises(ValueError, match=f"crop={crop} is not a positive multiple of 32"):
        get_profile("ci", crop=crop)


def test_jitter_smin_above_smax(monkeypatch):
    # No knob sets the range directly (it is the paper's [256, 512] scaled), so reverse the paper's.
    monkeypatch.setattr(profiles, "PAPER_S_JITTER", (512, 256))
    with pytest.raises(ValueError, match="Smin=73 > Smax=37"):
        get_profile("ci", seed=1)


def test_unknown_profile():
    with pytest.raises(ValueError, match=r"unknown profile 'laptop'.*\['ci', 'cpu', 'gpu', 'imagenet'\]"):
        get_profile("laptop")


def test_unknown_knob():
    with pytest.raises(ValueError, match=r"unknown profile knob\(s\) \['widht'\]; known knobs: .*'width'"):
        get_profile("ci", widht=0.5)


@pytest.mark.parametrize(
    "knob", [dict(width=0), dict(width=-1), dict(batch_size=0), dict(device="tpu"), dict(data_kind="coco")]
)
def test_other_bad_knobs(knob):
    with pytest.raises(ValueError, match=list(knob)[0]):
        get_profile("ci", **knob)


def test_a_profile_builds_its_own_net():
    """Profile.build: Table 1's net at the profile's width, crop and classes, the same weights as
    models.build given those knobs by hand (the same draws from the same seed)."""
    from vggrepro import models

    ci = get_profile("ci")
    torch.manual_seed(0)
    ours = ci.build("D")
    torch.manual_seed(0)
    by_hand = models.build("D", width=ci.width, num_classes=ci.num_classes, crop=ci.crop)
    assert (ours.config, ours.width, ours.crop, ours.num_classes) == ("D", ci.width, ci.crop, ci.num_classes)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), by_hand.state_dict().values()))
