"""`vggrepro evaluate --weights FILE` end to end, on weights files written here by independent writers
(``torch.save`` of a torchvision-layout state dict, and the protobuf library for a ``.caffemodel``)
and a tiny synthetic val set: the command exits 0, prints top-1/top-5 error, and its posteriors are
those of the writer's own net fed by pre-processing written out by hand from the published constants."""

from __future__ import annotations

import json
import re

import pytest
import torch

from vggrepro import data, models
from vggrepro.cli import main as cli
from vggrepro.core.profiles import get_profile
from vggrepro.evaluate import posteriors
from vggrepro.evaluate import protocols as ev
from vggrepro.evaluate.protocols import Protocol


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # nets this small run no faster on two threads, and the test machine's cores are shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_val(tmp_path_factory):
    """The ci profile's synthetic set, shrunk to 4 train and 2 val images per class."""
    root = tmp_path_factory.mktemp("synth") / "set"
    prof = get_profile("ci", data_root=str(root), synth_train_per_class=4, synth_val_per_class=2)
    data.ensure_synthetic(prof, verbose=False)
    return prof, root


@pytest.fixture(scope="module")
def writer_net(tiny_val):
    """A random D at width 1/16 with the ci profile's crop and classes; Glorot weights scaled up a
    little (ReLU halves the energy) so that the posteriors are far from uniform."""
    prof, _ = tiny_val
    torch.manual_seed(0)
    net = models.init_glorot(models.build("D", width=1 / 16, num_classes=prof.num_classes, crop=prof.crop))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.mul_(1.5)
                m.bias.normal_(0, 0.1)
    return net.eval()


def torchvision_by_hand(x: torch.Tensor) -> torch.Tensor:
    """torchvision's published transform: RGB in [0, 1], minus ImageNet mean, over ImageNet std."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (x.float() / 255 - mean) / std


def caffe_by_hand(x: torch.Tensor) -> torch.Tensor:
    """The authors' Caffe input: channels in B, G, R order, minus the mean pixel (103.939, 116.779,
    123.68) given in that order; 0-255, no scaling."""
    bgr = x.float()[..., [2, 1, 0], :, :]
    return bgr - torch.tensor([103.939, 116.779, 123.68]).view(3, 1, 1)


def write_pth(net, path):
    torch.save(net.state_dict(), path)  # the layout of torchvision's vgg16 state dict


def write_caffemodel(net, path):
    caffe_proto = pytest.importorskip("caffe_proto")
    pytest.importorskip("google.protobuf")
    path.write_bytes(caffe_proto.net_bytes(caffe_proto.vgg_layers(net), form="layers", shape_style="legacy"))


@pytest.mark.parametrize("kind", ["pth", "caffemodel"])
def test_evaluate_weights_runs_the_dense_protocol_on_a_weights_file(
    kind, tiny_val, writer_net, tmp_path, capsys, monkeypatch
):
    _, root = tiny_val
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))  # the cached run goes here, not into runs/
    weights = tmp_path / f"VGG_test.{kind}"
    (write_pth if kind == "pth" else write_caffemodel)(writer_net, weights)
    by_hand = torchvision_by_hand if kind == "pth" else caffe_by_hand

    rc = cli.main(
        [
            "evaluate",
            "--weights",
            str(weights),
            # a state dict of no released geometry (width 1, crop 224) is fed what it is said to expect
            *(["--preprocess", "torchvision"] if kind == "pth" else []),
            "--profile",
            "ci",
            "--protocol",
            "dense",
            "--scales",
            "37",
            "--limit",
            "20",
            "--data",
            str(root),
            "--device",
            "cpu",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    line = re.search(r"D dense Q=37: top-1 error ([\d.]+)%, top-5 error ([\d.]+)% on 20 images", printed)
    assert line, printed
    expected = "torchvision's: ImageNet mean and std, RGB" if kind == "pth" else "the authors' Caffe models'"
    assert f"pre-processing: {expected}" in printed  # it says which it fed the net

    # The run's posteriors against the writer's net, fed by the hand-written pre-processing, on the
    # very images the run picked (decoded again here).
    folder = next((tmp_path / "runs" / "ci").glob("eval-*"))
    saved = posteriors.load_posteriors(folder / posteriors.POSTERIORS_FILE)
    val = data.ILSVRC(root, "val", boxes=False)
    images = [(i, data.decode_image(val.samples[i].path), val.samples[i].label) for i in saved["indices"].tolist()]
    expect = ev.evaluate(writer_net, by_hand, images, Protocol("dense", [37]))
    # guard: the other kind's pre-processing must give other posteriors, or the check below is empty
    other = caffe_by_hand if kind == "pth" else torchvision_by_hand
    wrong = ev.evaluate(writer_net, other, images, Protocol("dense", [37]))
    assert (wrong.posteriors - expect.posteriors).abs().max() > 1e-2
    torch.testing.assert_close(saved["posteriors"], expect.posteriors, atol=1e-5, rtol=1e-4)
    assert saved["labels"].tolist() == [label for _, _, label in images]
    assert float(line.group(1)) == pytest.approx(expect.top1_err, abs=0.005)
    assert float(line.group(2)) == pytest.approx(expect.top5_err, abs=0.005)
    result = json.loads((folder / "result.json").read_text())
    assert result["settings"]["source"] == "weights" and result["images"] == 20


def test_evaluate_weights_names_a_missing_file(tiny_val, tmp_path, capsys):
    _, root = tiny_val
    rc = cli.main(
        [
            "evaluate",
            "--weights",
            str(tmp_path / "VGG_ILSVRC_16_layers.caffemodel"),
            "--profile",
            "ci",
            "--scales",
            "37",
            "--data",
            str(root),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 2 and "no weights file" in capsys.readouterr().err
