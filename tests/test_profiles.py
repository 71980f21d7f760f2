"""vggrepro.profiles: the paper's geometry scaled by crop / 224, and bad knobs rejected clearly."""

from __future__ import annotations

import pytest

from vggrepro import profiles
from vggrepro.profiles import get_profile


def test_ci_scales_the_paper_by_32_over_224():
    p = get_profile("ci")
    assert (p.crop, p.width, p.num_classes) == (32, 1 / 8, 10)
    # 256 * 32/224 = 36.6, 384 * 32/224 = 54.9, 512 * 32/224 = 73.1
    assert (p.S(256), p.S(384), p.S(512)) == (37, 55, 73)
    assert p.jitter == (37, 73)
    assert p.factor == pytest.approx(32 / 224)


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
    with pytest.raises(ValueError, match=r"unknown profile 'laptop'.*\['ci', 'gpu', 'imagenet'\]"):
        get_profile("laptop")


def test_unknown_knob():
    with pytest.raises(ValueError, match=r"unknown profile knob\(s\) \['widht'\]; known knobs: .*'width'"):
        get_profile("ci", widht=0.5)


@pytest.mark.parametrize("knob", [dict(width=0), dict(width=-1), dict(batch_size=0), dict(device="tpu"),
                                  dict(data_kind="coco")])
def test_other_bad_knobs(knob):
    with pytest.raises(ValueError, match=list(knob)[0]):
        get_profile("ci", **knob)
