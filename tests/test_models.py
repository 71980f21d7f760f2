"""vggrepro.models against things that do not come from it: the paper's Table 1 and Table 2,
torchvision's layer lists (re-typed here from torchvision's source, and torchvision itself where it
imports), forward hooks on a real forward pass, hand formulas, and AlexNet's LRN written out.

The paper's nets have 133-144 M parameters. Counting them and reading their state-dict shapes
needs no weights, so those nets are built on PyTorch's "meta" device (shapes without storage).
The width-1 dense test needs real weights: the FC head (fc6-fc8, 124 M weights) is the same in
every config, so it is made once and shared.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vggrepro import models
from vggrepro.experiments import paper
from vggrepro.models import CONFIGS, build, count_params, to_dense

ALL = ["A", "A-LRN", "B", "C", "D", "E"]

#: The issue's exact counts (weights + biases, 224 crop, 1000 classes).
EXACT_PARAMS = {
    "A": 132_863_336,
    "A-LRN": 132_863_336,
    "B": 133_047_848,
    "C": 133_638_952,
    "D": 138_357_544,
    "E": 143_667_240,
}

#: torchvision/models/vgg.py ``cfgs``: channel counts, "M" = max-pool. vgg11=A, vgg13=B, vgg16=D, vgg19=E.
TORCHVISION_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def torchvision_shapes(cfg: list) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes torchvision's make_layers + VGG head produce for ``cfg``."""
    shapes, index, channels = {}, 0, 3
    for v in cfg:
        if v == "M":
            index += 1  # MaxPool2d
        else:
            shapes[f"features.{index}.weight"] = (v, channels, 3, 3)
            shapes[f"features.{index}.bias"] = (v,)
            index += 2  # Conv2d, ReLU
            channels = v
    for i, (n_in, n_out) in zip((0, 3, 6), [(512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)]):
        shapes[f"classifier.{i}.weight"] = (n_out, n_in)
        shapes[f"classifier.{i}.bias"] = (n_out,)
    return shapes


def shapes_of(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def paper_nets() -> dict[str, models.VGG]:
    """The paper's six nets (width 1, 224 crop, 1000 classes), shapes only."""
    with torch.device("meta"):
        return {c: build(c) for c in ALL}


# -- Table 1 and Table 2 ----------------------------------------------------------------------


def test_configs_are_table_1():
    rows = {r["config"]: r for r in paper.table("table1_configs")}
    assert sorted(rows) == sorted(CONFIGS)
    for config, blocks in CONFIGS.items():
        assert blocks == rows[config]["conv_blocks_between_maxpools"], config
        assert models.weight_layers(config) == rows[config]["weight_layers"], config


@pytest.mark.parametrize("config", ALL)
def test_parameter_count_exact(paper_nets, config):
    assert count_params(paper_nets[config]) == EXACT_PARAMS[config]


@pytest.mark.parametrize("config", ALL)
def test_parameter_count_rounds_to_table_2(paper_nets, config):
    (row,) = [r for r in paper.table("table2_params_millions") if config in r["configs"]]
    assert round(count_params(paper_nets[config]) / 1e6) == row["params_millions"]


def test_fc_layers_hold_most_weights(paper_nets):
    # fc6-fc8: 25088*4096 + 4096*4096 + 4096*1000 weights plus biases, the same in every config.
    fc = 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    for net in paper_nets.values():
        assert models.fc_params(net) == fc


def test_conv_parameters_by_hand():
    # A: conv weights 9*Cin*Cout + Cout biases, summed over its eight layers.
    pairs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    conv = sum(9 * a * b + b for a, b in pairs)
    with torch.device("meta"):
        net = build("A")
    assert count_params(net.features) == conv


# -- torchvision compatibility ----------------------------------------------------------------


@pytest.mark.parametrize("config", sorted(TORCHVISION_CFGS))
def test_state_dict_matches_torchvision_layout(paper_nets, config):
    assert shapes_of(paper_nets[config]) == torchvision_shapes(TORCHVISION_CFGS[config])
    assert list(paper_nets[config].state_dict()) == list(torchvision_shapes(TORCHVISION_CFGS[config]))


@pytest.mark.parametrize("config", sorted(TORCHVISION_CFGS))
def test_state_dict_matches_torchvision_itself(paper_nets, config):
    try:
        from vggrepro.core.optional import torchvision_or_none
    except ImportError:
        torchvision_or_none = lambda: None  # noqa: E731
    tv = torchvision_or_none()
    if tv is None:
        pytest.skip("torchvision does not import here")
    with torch.device("meta"):
        theirs = getattr(tv.models, models.TORCHVISION_NAMES[config])(weights=None)
    assert shapes_of(paper_nets[config]) == shapes_of(theirs)


def test_layer_names_point_at_the_right_modules(paper_nets):
    net = paper_nets["E"]
    assert list(net.layer_names)[:3] == ["conv1_1", "conv1_2", "conv2_1"]
    assert net.layer("conv5_4") is net.features[34]
    assert net.layer("fc6") is net.classifier[0] and net.layer("fc8") is net.classifier[6]
    assert isinstance(paper_nets["C"].layer("conv3_3"), nn.Conv2d)
    assert paper_nets["C"].layer("conv3_3").kernel_size == (1, 1)


def test_dropout_on_fc6_and_fc7_only(paper_nets):
    drops = [(i, m.p) for i, m in enumerate(paper_nets["D"].classifier) if isinstance(m, nn.Dropout)]
    assert drops == [(2, 0.5), (5, 0.5)]
    assert not any(isinstance(m, nn.Dropout) for m in paper_nets["D"].features)


def test_build_takes_the_dropout():
    with torch.device("meta"):
        net = build("A", width=1 / 8, num_classes=10, crop=32, dropout=0.0)
    assert [m.p for m in net.classifier if isinstance(m, nn.Dropout)] == [0.0, 0.0] and net.dropout == 0.0
    assert build("A", width=1 / 16, num_classes=3, crop=32).dropout == 0.5  # the paper's, by default
    with pytest.raises(ValueError, match="dropout"):
        build("A", width=1 / 16, dropout=1.0)


def test_forward_is_features_then_head():
    torch.manual_seed(0)
    net = models.init_fan_in(build("A", width=1 / 16, num_classes=5, crop=64)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = net.forward_features(x)
        assert features.shape == (2, net.layer("conv5_2").out_channels, 2, 2)
        assert torch.equal(net.forward_head(features), net(x))
        # at the crop size the dense head has one location, the classifier's scores
        torch.testing.assert_close(net.forward_head(features, dense=True)[:, :, 0, 0], net(x), rtol=1e-5, atol=1e-5)


def test_lrn_is_alexnets():
    # b = a / (k + alpha * sum of a^2 over n=5 neighbouring channels)^beta, written out by hand.
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    net = build("A-LRN", width=1 / 8, crop=32)
    assert isinstance(net.features[2], nn.LocalResponseNorm)  # conv1_1, ReLU, LRN, pool
    torch.manual_seed(0)
    a = torch.randn(1, 8, 3, 3, dtype=torch.float64) * 30
    squares = torch.nn.functional.pad(a**2, (0, 0, 0, 0, n // 2, n // 2))
    window = sum(squares[:, i : i + a.shape[1]] for i in range(n))
    expected = a / (k + alpha * window) ** beta
    torch.testing.assert_close(net.features[2](a), expected)


@pytest.mark.parametrize("size", [3, 4, 5])
def test_lrn_equals_pytorchs_for_any_window_and_memory_format(size):
    from vggrepro.models import LRN, LRN_SETTINGS

    settings = dict(LRN_SETTINGS, size=size)
    torch.manual_seed(size)
    x = torch.randn(2, 12, 5, 6, dtype=torch.float64) * 20
    expected = nn.LocalResponseNorm(**settings)(x)
    torch.testing.assert_close(LRN(**settings)(x), expected)
    torch.testing.assert_close(LRN(**settings)(x.contiguous(memory_format=torch.channels_last)), expected)


# -- dense evaluation -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_head() -> nn.Sequential:
    """fc6, fc7 and fc8 of the paper's nets (124 M weights), Glorot-initialised, made once."""
    with torch.device("meta"):
        head = build("A").classifier
    head.to_empty(device="cpu")
    torch.manual_seed(1)
    return models.init_glorot(head).eval()


def assert_same_scores(net: models.VGG, x: torch.Tensor):
    with torch.no_grad():
        logits = net(x)
        scores = to_dense(net)(x)
    assert scores.shape == (x.shape[0], net.num_classes, 1, 1)
    scale = logits.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(scores.flatten(1), logits, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.slow  # six forward passes of the paper's nets at 224 px, twice each: ~15 s of CPU
@pytest.mark.parametrize("config", ALL)
def test_dense_equals_classifier_at_width_1(paper_head, config):
    with torch.device("meta"):
        net = build(config)
    net.classifier = paper_head  # the same head in every config
    net.features.to_empty(device="cpu")
    torch.manual_seed(2)
    models.init_glorot(net.features)
    net.eval()
    assert_same_scores(net, torch.randn(1, 3, 224, 224))


@pytest.mark.parametrize("config", ALL)
@pytest.mark.parametrize("crop", [64, 224])
def test_dense_equals_classifier_at_width_1_8(config, crop):
    torch.manual_seed(3)
    net = models.init_glorot(build(config, width=1 / 8, num_classes=20, crop=crop)).eval()
    assert_same_scores(net, torch.randn(2, 3, crop, crop))


def test_dense_score_map_size():
    torch.manual_seed(4)
    net = build("D", width=1 / 8, crop=224).eval()
    with torch.no_grad():
        scores = to_dense(net)(torch.randn(1, 3, 384, 384))
    assert scores.shape == (1, 1000, 6, 6)  # 384/32 = 12 cells; a 7x7 window fits at 6 places
    assert models.score_map_size(net, 384, 384) == (6, 6)
    small = build("A", width=1 / 8, num_classes=20, crop=64).eval()
    with torch.no_grad():
        scores = to_dense(small)(torch.randn(1, 3, 100, 130))
    # Pools round up as in Caffe: ceil(100/32) = 4 and ceil(130/32) = 5 cells; a 2x2 window fits at
    # 3 x 4 places (the plain net's floor pools: 3 and 4 cells, 2 x 3 places).
    assert scores.shape == (1, 20, 3, 4) and models.score_map_size(small, 100, 130) == (3, 4)
    assert models.score_map_size(small, 100, 130, ceil_mode=False) == (2, 3)
    with torch.no_grad():
        assert to_dense(small, ceil_mode=False)(torch.randn(1, 3, 100, 130)).shape == (1, 20, 2, 3)
    # The paper's D on a 341 x 256 image: Caffe gives 5 x 2 windows (floor pooling gives 4 x 2).
    assert models.score_map_size(net, 341, 256) == (5, 2)


def _reference_scores(net, x):
    """An independent dense pass: each 2x2 pool on a map padded to even size with -inf (Caffe's
    rounding up, written out), then the classifier's own Linear layers applied to every
    grid x grid patch of the last map, one location at a time."""
    for m in net.features:
        if isinstance(m, nn.MaxPool2d):
            h, w = x.shape[-2:]
            x = F.pad(x, (0, w % 2, 0, h % 2), value=-math.inf)
            x = F.max_pool2d(x, 2, 2)
        else:
            x = m(x)
    g = net.grid
    rows = []
    for i in range(x.shape[-2] - g + 1):
        cols = []
        for j in range(x.shape[-1] - g + 1):
            cols.append(net.classifier(x[:, :, i : i + g, j : j + g].flatten(1)))
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


@pytest.mark.parametrize("size", [(100, 130), (55, 73), (341 // 4, 256 // 4), (97, 64)])
def test_dense_equals_an_independent_ceil_pooled_sliding_classifier(size):
    torch.manual_seed(6)
    net = models.init_glorot(build("B", width=1 / 8, num_classes=7, crop=32)).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours, ref = to_dense(net)(x), _reference_scores(net, x)
    assert ours.shape == ref.shape and ours.shape[-2:] == models.score_map_size(net, *size)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_dense_shares_the_weights():
    torch.manual_seed(5)
    net = build("A", width=1 / 8, num_classes=20, crop=64).eval()
    dense = to_dense(net)
    ours = {p.data_ptr() for p in net.parameters()}
    assert [p.data_ptr() for p in dense.parameters()] == [p.data_ptr() for p in net.parameters()]
    assert len(ours) == len(list(net.parameters()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = dense(x).clone()
        net.layer("fc8").bias[3] += 1.0
        after = dense(x)
    assert torch.allclose(after[:, 3] - before[:, 3], torch.ones(1))
    assert torch.equal(after[:, :3], before[:, :3])


# -- cost -------------------------------------------------------------------------------------


def hooked_cost(net: nn.Module, size: int) -> tuple[int, int, list[tuple[int, ...]]]:
    """MACs, output bytes and output shapes counted by forward hooks on a real forward pass."""
    macs, nbytes, shapes = [], [], []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs.append(output.numel() * module.in_channels * kh * kw)
        elif isinstance(module, nn.Linear):
            macs.append(inputs[0].numel() * module.out_features)
        nbytes.append(output.numel() * output.element_size())
        shapes.append(tuple(output.shape[1:]))

    kinds = (nn.Conv2d, nn.MaxPool2d, nn.LocalResponseNorm, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return sum(macs), sum(nbytes), shapes


@pytest.mark.parametrize("config", ALL + ["B-5x5"])
def test_macs_and_memory_match_a_forward_pass(config):
    net = build(config, width=1 / 8, num_classes=20, crop=64)
    for size in (64, 96):
        macs, nbytes, shapes = hooked_cost(net, size)
        rows = models.layer_table(net, size)
        assert models.count_macs(net, size) == macs
        assert models.activation_bytes(net, size) == nbytes
        assert [r["output"] for r in rows] == shapes


def test_macs_of_a_by_hand():
    # A at 224: (spatial side, Cin, Cout) of its eight 3x3 convs, then the three FC layers.
    convs = [
        (224, 3, 64),
        (112, 64, 128),
        (56, 128, 256),
        (56, 256, 256),
        (28, 256, 512),
        (28, 512, 512),
        (14, 512, 512),
        (14, 512, 512),
    ]
    expected = sum(s * s * 9 * a * b for s, a, b in convs) + 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    with torch.device("meta"):
        net = build("A")
    assert models.count_macs(net) == expected  # about 7.6 G
    rows = models.layer_table(net)
    assert [r["layer"] for r in rows][:4] == ["conv1_1", "pool1", "conv2_1", "pool2"]
    assert sum(r["params"] for r in rows) == EXACT_PARAMS["A"]


def test_receptive_fields_measured():
    c = 4
    stack = nn.Sequential(*[m for _ in range(3) for m in (nn.Conv2d(c, c, 3, padding=1), nn.ReLU())])
    assert models.measured_receptive_field(stack, c) == 7 == models.receptive_field([3, 3, 3])
    assert models.measured_receptive_field(nn.Conv2d(c, c, 7, padding=3), c) == 7
    assert models.measured_receptive_field(nn.Conv2d(c, c, 1), c) == 1
    assert models.measured_receptive_field(nn.Sequential(nn.Conv2d(c, c, 5), nn.Conv2d(c, c, 1)), c) == 5
    # Three stacked 3x3 box filters make the 1D profile [1,1,1]*[1,1,1]*[1,1,1] = [1,3,6,7,6,3,1]:
    # the stack weighs the centre of its 7x7 field more than its rim.
    grad = models.input_gradient(stack, c)
    profile = torch.tensor([1.0, 3, 6, 7, 6, 3, 1])
    expected = torch.zeros(15, 15)
    expected[4:11, 4:11] = torch.outer(profile, profile)
    torch.testing.assert_close(grad / grad.max() * 49, expected)
    with pytest.raises(ValueError, match="larger size"):
        models.measured_receptive_field(nn.Conv2d(c, c, 7, padding=3), c, size=7)


def test_receptive_field_of_a_net_by_hand():
    # VGG-16 (D) at pool5: each conv adds 2 x the stride so far, each pool 1 x it and doubles it:
    # 1 + 2(2+2) + 4... = 212 (the figure published for VGG-16's pool5)
    with torch.device("meta"):
        assert models.receptive_field(build("D")) == 212
        # A: conv1 3, pool 4, conv2 +4 = 8, pool 10, conv3 2x +8 = 26, pool 30, 2x +16 = 62, pool 70,
        # 2x +32 = 134, pool 150
        assert models.receptive_field(build("A", width=1 / 8, crop=32)) == 150
    stack = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))
    assert models.receptive_field(stack) == models.receptive_field([3, 3, 3]) == 7


# -- initialisation ---------------------------------------------------------------------------


def test_init_gaussian_std():
    torch.manual_seed(6)
    net = models.init_gaussian(build("A", width=1 / 8, crop=64), std=0.05)
    w = net.layer("fc6").weight  # 512 x 1024 samples
    assert abs(w.mean().item()) < 1e-3
    assert w.std().item() == pytest.approx(0.05, rel=0.01)
    assert all(m.bias.abs().max() == 0 for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_init_glorot_bounds():
    torch.manual_seed(7)
    net = models.init_glorot(build("D", width=1 / 8, crop=64))
    for name in net.layer_names:
        m = net.layer(name)
        receptive = m.weight[0, 0].numel()  # k*k for a conv, 1 for a linear layer
        fan_in, fan_out = m.weight.shape[1] * receptive, m.weight.shape[0] * receptive
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert m.weight.abs().max().item() <= bound, name
        assert m.weight.abs().max().item() > 0.9 * bound, name  # uniform: the extremes are reached
        assert m.bias.abs().max() == 0


def test_init_from_a_copies_the_paper_layers_only():
    torch.manual_seed(8)
    net_a = build("A", width=1 / 8, num_classes=20, crop=64)
    for config in ("B", "C", "D", "E"):
        deep = build(config, width=1 / 8, num_classes=20, crop=64)
        before = {k: v.clone() for k, v in deep.state_dict().items()}
        assert not torch.equal(deep.layer("conv3_2").weight, net_a.layer("conv3_2").weight)
        copied = models.init_from(deep, net_a)
        assert copied == ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8"]
        name_of = {path: name for name, path in deep.layer_names.items()}
        for key, value in deep.state_dict().items():
            path, kind = key.rsplit(".", 1)  # e.g. "features.7", "weight"
            name = name_of[path]
            expected = getattr(net_a.layer(name), kind) if name in copied else before[key]
            assert torch.equal(value, expected), key
    with pytest.raises(ValueError, match="conv1_1"):
        models.init_from(build("D", width=1 / 4, crop=64), net_a)


# -- bad input --------------------------------------------------------------------------------


def test_unknown_config():
    with pytest.raises(ValueError, match=r"unknown config 'F'.*'A', 'A-LRN', 'B', 'C', 'D', 'E'"):
        build("F")


@pytest.mark.parametrize("width", [0, -0.5, float("nan"), "1/8"])
def test_bad_width(width):
    with pytest.raises(ValueError, match="width.*positive number"):
        build("A", width=width, crop=32)


@pytest.mark.parametrize("crop", [100, 0, 48, 224.0])
def test_bad_crop(crop):
    with pytest.raises(ValueError, match="multiple of 32.*32, 64, 96"):
        build("A", width=1 / 8, crop=crop)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes.*positive integer"):
        build("A", width=1 / 8, crop=32, num_classes=0)


def test_wrong_state_dict():
    net = build("A", width=1 / 8, num_classes=20, crop=64)
    state = net.state_dict()
    models.load_state_dict(build("A", width=1 / 8, num_classes=20, crop=64), state)  # the right one loads
    with pytest.raises(ValueError, match=r"wrong shapes \['classifier.6.weight: \(10, 512\) \(expected \(20, 512\)\)"):
        models.check_state_dict(net, build("A", width=1 / 8, num_classes=10, crop=64).state_dict())
    with pytest.raises(ValueError, match=r"missing keys \['classifier.6.bias'\]"):
        models.load_state_dict(net, {k: v for k, v in state.items() if k != "classifier.6.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys \['features.10.bias'"):
        models.check_state_dict(net, build("B", width=1 / 8, num_classes=20, crop=64).state_dict())
    with pytest.raises(ValueError, match="vgg11=A"):
        models.check_state_dict(net, {})
    with pytest.raises(ValueError, match="mapping"):
        models.check_state_dict(net, [1, 2])


def test_other_misuse():
    net = build("A", width=1 / 8, num_classes=20, crop=64)
    with pytest.raises(ValueError, match="no layer 'conv9_9'"):
        net.layer("conv9_9")
    with pytest.raises(ValueError, match="smaller than the crop 64"):
        to_dense(net)(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="vggrepro VGG"):
        to_dense(nn.Linear(2, 2))
