"""Proofs for section 3.2's test protocols: dense = centre crop at Q = crop, multi-crop at Q = crop =
a flipped pair, bucketing changes nothing, and the error arithmetic, on tiny nets and made-up images."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from vggrepro.cli import evaluate as evaluate_cli
from vggrepro.core.metrics import top_errors
from vggrepro.core.profiles import get_profile
from vggrepro.data.transforms import Preprocess, crop_grid, rescale
from vggrepro.evaluate import cached as cached_evaluation
from vggrepro.evaluate import posteriors
from vggrepro.evaluate import protocols as ev
from vggrepro.evaluate.cached import ImageSet, evaluate_cached
from vggrepro.evaluate.protocols import Execution, Protocol
from vggrepro.models import build, count_macs, init_glorot
from vggrepro.train import checkpoints

CROP = 32
MEAN = Preprocess(mean=(124.0, 116.0, 104.0), std=(58.0, 57.0, 57.0))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # nets this small run no faster on two threads, and the test machine's cores are shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    # Glorot init with a gain of 1.6 per layer (ReLU halves the energy), so that the posteriors are
    # far from uniform and the comparisons below mean something
    net = init_glorot(build("A", width=1 / 16, num_classes=10, crop=CROP)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.6)
    return net


def image(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images: a coarse random field upsampled, so rescaling behaves like on photos
    coarse = torch.randint(0, 256, (1, 3, max(2, h // 8), max(2, w // 8)), generator=g).float()
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0].round().to(torch.uint8)


def posterior(net, x):
    """The soft-max of the net on one preprocessed image: the independent reference."""
    with torch.no_grad():
        return F.softmax(net(MEAN(x).unsqueeze(0)), dim=1)[0]


def assert_not_uniform(p):
    # guard: a near-uniform posterior would make every equality below trivially true
    assert p.max().item() > 2.0 / p.shape[-1]


def test_dense_at_crop_without_flip_equals_centre_crop(net):
    images = [(0, image(CROP, CROP, 0), 3), (1, image(57, 57, 1), 5)]  # square: rescales to crop x crop
    dense = ev.evaluate(net, MEAN, images, Protocol("dense", [CROP], flip=False))
    centre = ev.evaluate(net, MEAN, images, Protocol("centre", [CROP]))
    expect = torch.stack([posterior(net, rescale(im, CROP)) for _, im, _ in images])
    assert_not_uniform(expect[0])
    torch.testing.assert_close(dense.posteriors, expect, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(centre.posteriors, expect, atol=1e-5, rtol=1e-4)
    assert dense.labels.tolist() == [3, 5] and dense.indices.tolist() == [0, 1]


def test_multicrop_at_crop_is_one_crop_and_its_flip(net):
    im = image(CROP, CROP, 2)
    assert crop_grid(CROP, CROP, CROP) == [(0, 0)] * 25  # 25 identical crops
    expect = (posterior(net, im) + posterior(net, im.flip(-1))) / 2
    assert_not_uniform(expect)
    # the flip matters for this net, so the test would see a missing or doubled flip
    assert (posterior(net, im) - posterior(net, im.flip(-1))).abs().max() > 1e-3
    multi = ev.evaluate(net, MEAN, [(0, im, 0)], Protocol("multicrop", [CROP]), how=Execution(batch_size=7))
    dense = ev.evaluate(net, MEAN, [(0, im, 0)], Protocol("dense", [CROP]))
    torch.testing.assert_close(multi.posteriors[0], expect, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dense.posteriors[0], expect, atol=1e-5, rtol=1e-4)
    assert multi.macs_per_image["multicrop"] == 50 * count_macs(net)


def test_dense_averages_the_score_map_then_softmaxes(net):
    """A second implementation of dense evaluation: slide the FC layers over every crop/32 window
    of the last feature map, average the scores over the windows, then soft-max."""
    im = image(3 * CROP, 2 * CROP + 16, 3)  # 96 x 80: pools rounding up (Caffe's) leave 3 x 3 cells
    with torch.no_grad():
        feats = MEAN(im).unsqueeze(0)
        for m in net.features:  # a 2x2 pool of an odd side pads it with -inf: rounding up, written out
            pad = (0, feats.shape[-1] % 2, 0, feats.shape[-2] % 2) if isinstance(m, torch.nn.MaxPool2d) else None
            feats = m(F.pad(feats, pad, value=-float("inf")) if pad else feats)
        feats = feats[0]
        g = net.grid
        scores = [
            net.classifier(feats[:, i : i + g, j : j + g].reshape(1, -1))[0]
            for i in range(feats.shape[1] - g + 1)
            for j in range(feats.shape[2] - g + 1)
        ]
    assert len(scores) == (3 - g + 1) ** 2
    expect = F.softmax(torch.stack(scores).mean(0), dim=0)
    got = ev.evaluate(net, MEAN, [(0, im, 0)], Protocol("dense", [2 * CROP + 16], flip=False))
    torch.testing.assert_close(got.posteriors[0], expect, atol=1e-5, rtol=1e-4)
    # ... and not soft-max first: that gives another answer here
    other = torch.stack([F.softmax(s, 0) for s in scores]).mean(0)
    assert (other - expect).abs().max() > 1e-4


def test_bucketing_leaves_dense_results_unchanged(net):
    sizes = [(40, 60), (50, 50), (60, 40), (40, 60), (45, 70), (50, 50), (40, 60), (60, 40), (33, 90)]
    images = [(10 * k + 7, image(h, w, k), k % 10) for k, (h, w) in enumerate(sizes)]
    # batches of up to 16 crops' pixels (5 images of 32 x 48 with their flips); 6 waiting images force a run
    batched = ev.evaluate(net, MEAN, images, Protocol("dense", [CROP, 40]), how=Execution(batch_size=16, max_pending=6))
    alone = [
        ev.evaluate(net, MEAN, [item], Protocol("dense", [CROP, 40]), how=Execution(batch_size=1)) for item in images
    ]
    torch.testing.assert_close(batched.posteriors, torch.cat([a.posteriors for a in alone]), atol=1e-5, rtol=1e-4)
    assert sum(a.forward_passes for a in alone) == 18 and batched.forward_passes < 14  # it did batch
    assert batched.indices.tolist() == [i for i, _, _ in images]
    assert batched.labels.tolist() == [lab for _, _, lab in images]


def test_multiscale_is_the_mean_of_single_scales_and_both_the_mean_of_dense_and_multicrop(net):
    images = [(k, image(40 + 3 * k, 50 - 2 * k, k), k) for k in range(3)]
    scales = [CROP, 40, 48]
    for protocol in ("dense", "multicrop", "centre"):
        multi = ev.evaluate(net, MEAN, images, Protocol(protocol, scales), how=Execution(batch_size=16))
        single = [
            ev.evaluate(net, MEAN, images, Protocol(protocol, [q]), how=Execution(batch_size=16)).posteriors
            for q in scales
        ]
        torch.testing.assert_close(multi.posteriors, torch.stack(single).mean(0), atol=1e-6, rtol=1e-5)
    both = ev.evaluate(net, MEAN, images, Protocol("both", scales[:2]))
    dense = ev.evaluate(net, MEAN, images, Protocol("dense", scales[:2])).posteriors
    multicrop = ev.evaluate(net, MEAN, images, Protocol("multicrop", scales[:2])).posteriors
    torch.testing.assert_close(both.posteriors, (dense + multicrop) / 2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(both.parts["dense"], dense, atol=1e-6, rtol=1e-5)
    assert torch.allclose(both.posteriors.sum(1), torch.ones(3), atol=1e-5)


def test_top_errors_by_hand():
    p = torch.tensor(
        [
            [0.50, 0.20, 0.10, 0.08, 0.07, 0.05],  # label 0: top-1 hit
            [0.05, 0.10, 0.30, 0.20, 0.15, 0.20],  # label 4: 4th largest -> top-5 hit, top-1 miss
            [0.40, 0.30, 0.12, 0.08, 0.06, 0.04],  # label 5: smallest -> top-5 miss
            [0.10, 0.60, 0.10, 0.05, 0.05, 0.10],  # label 1: top-1 hit
        ]
    )
    errs = top_errors(p, torch.tensor([0, 4, 5, 1]))
    assert errs == {"top1_err": pytest.approx(50.0), "top5_err": pytest.approx(25.0)}
    assert top_errors(p[:, :3], torch.tensor([0, 2, 1, 1]), k=(1, 5)) == {"top1_err": 25.0, "top5_err": 0.0}
    with pytest.raises(ValueError, match="empty"):
        top_errors(torch.zeros(0, 6), torch.zeros(0, dtype=torch.long))


def test_dense_macs_at_the_crop_equal_one_forward(net):
    assert ev.dense_macs(net, CROP, CROP) == count_macs(net)
    # a 64 x 96 image: convs cost what count_macs says, the FC layers run on a 2 x 3 score map
    fc = sum(m.in_features * m.out_features for m in net.classifier if isinstance(m, torch.nn.Linear))
    assert ev.dense_macs(net, 64, 96) - count_macs(net, (64, 96)) == 5 * fc


def test_bad_input_is_named(net):
    im = [(0, image(CROP, CROP, 0), 0)]
    with pytest.raises(ValueError, match="below the crop"):
        ev.evaluate(net, MEAN, im, Protocol("dense", [CROP - 1]))
    with pytest.raises(ValueError, match="unknown protocol"):
        ev.evaluate(net, MEAN, im, Protocol("10-crop", [CROP]))
    with pytest.raises(ValueError, match="empty"):
        ev.evaluate(net, MEAN, [], Protocol("dense", [CROP]))
    with pytest.raises(ValueError, match="whole numbers"):
        evaluate_cli.parse_scales("256,big")


def test_posteriors_round_trip(net, tmp_path):
    images = [(k, image(40, 48, k), k) for k in range(2)]
    result = ev.evaluate(net, MEAN, images, Protocol("both", [CROP]))
    path = posteriors.save_posteriors(tmp_path / "p" / "posteriors.pt", result, note="x")
    back = posteriors.load_posteriors(path)
    assert torch.equal(back["posteriors"], result.posteriors) and back["posteriors"].dtype == torch.float32
    assert torch.equal(back["labels"], result.labels) and torch.equal(
        back["parts"]["multicrop"], result.parts["multicrop"]
    )
    assert back["meta"]["protocol"] == "both" and back["meta"]["note"] == "x"
    assert os.listdir(path.parent) == ["posteriors.pt"]  # no temporary file left behind
    with pytest.raises(FileNotFoundError):
        posteriors.load_posteriors(tmp_path / "missing.pt")


# -- the command line, on a tiny checkpoint and a tiny val folder written here --------------------

WNIDS = ["n00000001", "n00000002", "n00000003"]


@pytest.fixture
def tiny_set(tmp_path, net):
    """A 3-class copy of `net` saved as a checkpoint, and val/<wnid>/*.JPEG (2 per class) beside
    empty train/<wnid>/ folders, which give the class order."""
    pytest.importorskip("vggrepro.data")
    from PIL import Image

    small = init_glorot(build("A", width=1 / 16, num_classes=3, crop=CROP))
    with torch.no_grad():
        for p in small.parameters():
            p.mul_(1.6)
    ckpt = tmp_path / "ckpt.pt"
    checkpoints.save({"model": small.state_dict(), "meta": checkpoints.model_meta(small, MEAN)}, ckpt)
    root = tmp_path / "data"
    sizes = [(40, 56), (48, 48), (36, 60), (64, 40), (33, 33), (50, 70)]
    for c, wnid in enumerate(WNIDS):
        (root / "train" / wnid).mkdir(parents=True)
        (root / "val" / wnid).mkdir(parents=True)
        for j in range(2):
            h, w = sizes[2 * c + j]
            pixels = image(h, w, 100 + 2 * c + j).permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(root / "val" / wnid / f"ILSVRC2012_val_{2 * c + j:08d}.JPEG", quality=95)
    return ckpt, root, small


def test_cli_evaluates_a_checkpoint_on_a_val_folder(tiny_set, tmp_path, capsys):
    from vggrepro.cli import main as cli
    from vggrepro.data import decode_image

    ckpt, root, small = tiny_set
    out = tmp_path / "eval"
    rc = cli.main(
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--protocol",
            "both",
            "--scales",
            "32,40",
            "--data",
            str(root),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0 and "top-1 error" in printed and str(out / "posteriors.pt") in printed
    saved = posteriors.load_posteriors(out / "posteriors.pt")
    assert saved["labels"].tolist() == [0, 0, 1, 1, 2, 2]  # classes in sorted-wnid order
    # the same numbers as evaluating the decoded files directly
    files = sorted((root / "val").glob("*/*.JPEG"))
    direct = ev.evaluate(
        small, MEAN, [(i, decode_image(f), i // 2) for i, f in enumerate(files)], Protocol("both", [32, 40])
    )
    torch.testing.assert_close(saved["posteriors"], direct.posteriors, atol=1e-5, rtol=1e-4)
    result = __import__("json").loads((out / "result.json").read_text())
    assert result["top1_err"] == pytest.approx(direct.top1_err) and "provenance" in result


def test_cached_evaluation_is_reused(tiny_set, tmp_path, monkeypatch):
    ckpt, root, _ = tiny_set
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    first = evaluate_cached(
        ckpt,
        get_profile("ci"),
        Protocol("dense", [CROP]),
        images=ImageSet(limit=4, data=root),
        how=Execution(device="cpu"),
    )
    assert first["images"] == 4 and first["labels"].tolist() == [0, 0, 1, 2]  # spread over the classes
    assert (tmp_path / "runs" / "ci").is_dir() and first["settings"]["kind"] == "eval"

    def no_run(*args, **kwargs):
        raise AssertionError("a finished evaluation ran again")

    monkeypatch.setattr(cached_evaluation, "evaluate", no_run)
    again = evaluate_cached(
        ckpt,
        get_profile("ci"),
        Protocol("dense", [CROP]),
        images=ImageSet(limit=4, data=root),
        how=Execution(device="cpu"),
    )
    assert torch.equal(again["posteriors"], first["posteriors"]) and again["run_id"] == first["run_id"]


def test_cli_names_bad_input(tiny_set, tmp_path, capsys):
    from vggrepro.cli import main as cli

    ckpt, root, _ = tiny_set
    base = ["evaluate", "--data", str(root), "--device", "cpu", "--out", str(tmp_path / "x")]
    cases = [
        (["--checkpoint", str(tmp_path / "nope.pt"), "--scales", "32"], "no checkpoint"),
        (["--checkpoint", str(ckpt), "--scales", "16,32"], "below the crop"),
        (["--checkpoint", str(ckpt), "--scales", "32", "--protocol", "10crop"], "unknown protocol"),
    ]
    for args, message in cases:
        assert cli.main(base + args) == 2
        assert message in capsys.readouterr().err


def test_data_identity_names_a_generated_set_by_its_manifest(tmp_path):
    import shutil

    from vggrepro import data
    from vggrepro.core.profiles import get_profile

    profile = get_profile(
        "ci",
        data_root=str(tmp_path / "a"),
        num_classes=2,
        synth_train_per_class=2,
        synth_val_per_class=1,
        synth_min_side=(40, 44),
    )
    first = data.ensure_synthetic(profile, verbose=False)
    copy = shutil.copytree(first, tmp_path / "b")
    assert data.data_identity(first) == data.data_identity(copy)
    assert data.data_identity(first).startswith("synthetic:")
    plain = tmp_path / "imagenet"
    plain.mkdir()
    empty = data.data_identity(plain)  # a user's copy: named by its files, so an edit in place is noticed
    assert empty.startswith("files:")
    (plain / "n01440764").mkdir()
    (plain / "n01440764" / "a.JPEG").write_bytes(b"x")
    assert data.data_identity(plain) != empty
    assert data.data_identity(tmp_path / "nowhere") == "missing"
