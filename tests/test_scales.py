"""vggrepro.core.scales: the paper's S notation, its test scales Q, and the one paper-to-profile rounding."""

import pytest

from vggrepro.core.profiles import get_profile
from vggrepro.core.scales import JITTER, TrainScale, to_pixels
from vggrepro.experiments import grid


def test_the_paper_notation_round_trips():
    for text in ("256", "384", "[256;512]"):
        assert str(TrainScale.parse(text)) == text
    assert TrainScale.parse("jitter") == JITTER == TrainScale.parse("[256; 512]") == TrainScale.parse((256, 512))
    assert TrainScale.parse(256) == TrainScale.parse("256") == TrainScale(256, 256)
    assert (TrainScale.parse("256").tag, JITTER.tag) == ("256", "jit")
    assert not TrainScale.parse("384").jittered and JITTER.jittered


def test_the_command_line_form_is_the_same_scale():
    # `vggrepro train --scale 73,146` and the paper's "[73;146]" are one S, parsed by one parser
    assert (
        TrainScale.parse("73,146")
        == TrainScale.parse("[73;146]")
        == TrainScale.parse("[73,146]")
        == TrainScale(73, 146)
    )
    assert TrainScale.parse(" 73 ") == TrainScale(73, 73)


def test_a_scale_moves_to_a_profiles_pixels_whole():
    ci = get_profile("ci")
    assert JITTER.for_profile(ci) == TrainScale(*ci.jitter) == TrainScale(37, 73)
    assert TrainScale.parse("384").for_profile(ci).S() == TrainScale.parse("384").S(ci) == 55


@pytest.mark.parametrize("bad", ["abc", "[512;256]", "512,256", "", "-3", "1,2,3"])
def test_anything_else_is_an_error_that_shows_the_notation(bad):
    with pytest.raises(ValueError, match=r"'\[256;512\]'|Smin <= Smax"):
        TrainScale.parse(bad)


def test_Q_follows_sections_4_1_and_4_2():
    assert TrainScale.parse("256").Q(multi=False) == [256]
    assert TrainScale.parse("384").Q(multi=True) == [352, 384, 416]
    assert JITTER.Q(multi=False) == [384]
    assert JITTER.Q(multi=True) == [256, 384, 512]


def test_a_profile_sees_the_same_scales_in_its_pixels():
    ci = get_profile("ci")
    assert JITTER.S(ci) == ci.jitter == (37, 73) and TrainScale.parse("384").S(ci) == 55
    assert JITTER.Q(True, ci) == [37, 55, 73] == JITTER.Q(True, crop=ci.crop)
    # grid's conversions and the profile's rule are this type's
    for text in ("256", "384", "[256;512]"):
        assert grid.scale_of(ci, text) == TrainScale.parse(text).S(ci)
        for multi in (False, True):
            assert grid.test_scales_of(ci, text, multi) == [ci.S(q) for q in ci.test_scales(text, multi)]
    # a scale in a profile's own pixels (what the trainer holds) gives the trainer's validation Q
    assert TrainScale.parse(ci.jitter).Q(multi=False) == [(37 + 73) // 2] == [ci.S(384)]


def test_one_rounding_from_paper_pixels():
    assert [to_pixels(q, 32) for q in (256, 384, 512)] == [37, 55, 73]
    assert to_pixels(384, 224) == 384
    for crop in range(32, 2048, 32):
        assert to_pixels(384, crop) == int(round(384 * crop / 224))  # what evaluate.py wrote out by hand
