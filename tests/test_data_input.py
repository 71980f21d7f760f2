"""Bad input on the data, evaluation, bench and book side (issue 14): each is refused in one line
that names the thing, or recovered from, and nothing is lost or silently wrong."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import warnings

import pytest
import torch
from PIL import Image

from vggrepro import data
from vggrepro.bench import throughput
from vggrepro.book import runner as book
from vggrepro.cli import bench
from vggrepro.cli import main as cli
from vggrepro.core.profiles import get_profile
from vggrepro.data import synth
from vggrepro.data.transforms import Preprocess
from vggrepro.evaluate import cached as cached_evaluation
from vggrepro.evaluate import posteriors
from vggrepro.evaluate import protocols as ev
from vggrepro.evaluate.cached import ImageSet, evaluate_cached
from vggrepro.evaluate.protocols import Execution, Protocol
from vggrepro.models import build, init_glorot
from vggrepro.train import checkpoints

TINY = dict(num_classes=3, train_per_class=5, val_per_class=2, min_side=(40, 60))
MEAN = Preprocess(mean=(124.0, 116.0, 104.0), std=(58.0, 57.0, 57.0))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets; the machine's cores are shared
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return synth.generate(
        tmp_path_factory.mktemp("gen") / "set", synth.SynthSpec(seed=11, **TINY), progress=False, workers=1
    )


@pytest.fixture
def copy(generated, tmp_path):
    """A private copy of the generated set, free to break."""
    return shutil.copytree(generated, tmp_path / "set")


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def one_line(message: str) -> bool:
    return "\n" not in message.strip()


def error_line(err: str) -> str:
    """The command's one error line (progress bars share stderr); no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("vggrepro ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- bench ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--steps", "--batch"])
def test_bench_refuses_zero_counts_and_writes_nothing(flag, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "project_root", lambda: tmp_path)  # the default output: never the repository's results/
    monkeypatch.setattr(bench, "run_grid", lambda *a, **k: pytest.fail("measured with a zero count"))
    assert cli.main(["bench", "train", flag, "0"]) == 2
    err = capsys.readouterr().err
    assert f"{flag} 0" in err and one_line(err)
    out = tmp_path / "mine.json"
    assert cli.main(["bench", "eval", flag, "0", "--out", str(out)]) == 2
    assert not out.exists() and not (tmp_path / "results").exists()
    with pytest.raises(ValueError, match="steps=0"):
        throughput.bench_one(
            throughput.Case("train", "A", size=32, batch=2, width=1 / 16, crop=32, num_classes=4, steps=0)
        )


# -- evaluation -------------------------------------------------------------------------------------


def tiny_net(classes: int = 3):
    torch.manual_seed(0)
    return init_glorot(build("A", width=1 / 16, num_classes=classes, crop=32)).eval()


@pytest.fixture
def val_set(tmp_path):
    """A checkpoint of a 3-class net and a val/<wnid>/ folder of 2 images per class."""
    net = tiny_net()
    ckpt = tmp_path / "ckpt.pt"
    checkpoints.save({"model": net.state_dict(), "meta": checkpoints.model_meta(net, MEAN)}, ckpt)
    root = tmp_path / "data"
    g = torch.Generator().manual_seed(1)
    for c, wnid in enumerate(["n01", "n02", "n03"]):
        (root / "train" / wnid).mkdir(parents=True)
        (root / "val" / wnid).mkdir(parents=True)
        for j in range(2):
            pixels = torch.randint(0, 256, (36 + 4 * j, 40, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / "val" / wnid / f"v{c}{j}.JPEG", quality=95)
    return ckpt, root, net


def test_nan_weights_are_refused_naming_the_checkpoint(val_set, tmp_path, capsys):
    ckpt, root, net = val_set
    broken = net.state_dict()
    broken["features.0.weight"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "diverged.pt"
    checkpoints.save({"model": broken, "meta": checkpoints.model_meta(net, MEAN)}, bad)
    rc = cli.main(
        [
            "evaluate",
            "--checkpoint",
            str(bad),
            "--scales",
            "32",
            "--data",
            str(root),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err and "NaN" in err and one_line(err)
    assert not (tmp_path / "out" / "posteriors.pt").exists()
    # and the scores themselves, whatever made them non-finite
    nan_net = tiny_net()
    nan_net.load_state_dict(broken)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    with pytest.raises(FloatingPointError, match="non-finite dense scores on 1 of 1 images"):
        ev.evaluate(nan_net, MEAN, [(0, image, 0)], Protocol("dense", [32]))


def test_evaluate_refuses_batch_size_zero(val_set, tmp_path, monkeypatch, capsys):
    ckpt, root, _ = val_set
    monkeypatch.setattr(cached_evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated with batch size 0"))
    rc = cli.main(
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--scales",
            "32",
            "--data",
            str(root),
            "--device",
            "cpu",
            "--batch-size",
            "0",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 2 and "--batch-size 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch size -1"):
        evaluate_cached(
            ckpt,
            get_profile("ci"),
            Protocol("dense", [32]),
            images=ImageSet(data=root),
            how=Execution(device="cpu", batch_size=-1),
            out=tmp_path / "o",
        )


def test_corrupt_cached_posteriors_are_evaluated_again(val_set, tmp_path, monkeypatch, capsys):
    ckpt, root, _ = val_set
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    first = evaluate_cached(
        ckpt, get_profile("ci"), Protocol("dense", [32]), images=ImageSet(data=root), how=Execution(device="cpu")
    )
    cached = tmp_path / "runs" / "ci" / first["run_id"] / "posteriors.pt"
    cached.write_bytes(cached.read_bytes()[:100])  # torn
    with pytest.raises(ValueError, match="posteriors.pt is not a readable posteriors file"):
        posteriors.load_posteriors(cached)
    capsys.readouterr()
    again = evaluate_cached(
        ckpt, get_profile("ci"), Protocol("dense", [32]), images=ImageSet(data=root), how=Execution(device="cpu")
    )
    err = capsys.readouterr().err
    assert str(cached) in err and "evaluating again" in err and one_line(err)
    assert torch.equal(again["posteriors"], first["posteriors"])
    assert torch.equal(posteriors.load_posteriors(cached)["posteriors"], first["posteriors"])  # rewritten whole


def test_unwritable_output_is_refused_before_evaluating(val_set, tmp_path, monkeypatch, capsys):
    ckpt, root, _ = val_set
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    real = cached_evaluation.evaluate
    monkeypatch.setattr(
        cached_evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated before finding the output unwritable")
    )
    base = ["evaluate", "--checkpoint", str(ckpt), "--scales", "32", "--data", str(root), "--device", "cpu"]
    assert cli.main(base + ["--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to" in err and str(blocker / "out") in err and one_line(err)
    # a disk that fills up during the save: one line naming the folder, not a traceback
    monkeypatch.setattr(cached_evaluation, "evaluate", real)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cached_evaluation, "save_posteriors", full)
    assert cli.main(base + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in error_line(err) and str(tmp_path / "out") in error_line(err)


# -- annotations --------------------------------------------------------------------------------------


def voc(path, box, size=(40, 30), wnid="n00000001"):
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box) if v is not None)
    path.write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>"
        f"<object><name>{wnid}</name><bndbox>{fields}</bndbox></object></annotation>"
    )
    return path


@pytest.mark.parametrize(
    "box, message",
    [
        ((5, 5, 50, 20), "outside the 40x30 image"),  # beyond the width
        ((30, 5, 10, 20), "xmin <= xmax"),  # reversed
        ((-3, 5, 10, 20), "xmin <= xmax"),  # negative
        ((5, 5, "nan", 20), "xmin <= xmax"),
    ],
)
def test_voc_box_outside_the_image_or_reversed_is_refused(tmp_path, box, message):
    path = voc(tmp_path / "a.xml", box)
    with pytest.raises(ValueError, match=message) as caught:
        data.read_voc_xml(path)
    assert str(path) in str(caught.value) and one_line(str(caught.value))
    assert data.read_voc_xml(voc(tmp_path / "ok.xml", (0, 0, 40, 30)))[1] == [("n00000001", (0.0, 0.0, 40.0, 30.0))]


def test_csv_box_reversed_or_outside_the_image_is_refused(copy):
    csv_path = copy / "LOC_val_solution.csv"
    rows = csv_path.read_text().splitlines()
    stem, pred = rows[1].split(",")
    wnid, xmin, ymin, xmax, ymax = pred.split()
    csv_path.write_text("\n".join([rows[0], f"{stem},{wnid} {xmax} {ymin} {xmin} {ymax}", *rows[2:]]) + "\n")
    with pytest.raises(ValueError, match=f"row '{stem}'.*xmin <= xmax"):
        data.read_loc_csv(csv_path)
    assert len(data.read_loc_csv(csv_path, boxes=False)) == len(rows) - 1  # labels alone still read
    width = Image.open(copy / "val" / f"{stem}.JPEG").width
    csv_path.write_text("\n".join([rows[0], f"{stem},{wnid} {xmin} {ymin} {width + 5} {ymax}", *rows[2:]]) + "\n")
    with pytest.raises(ValueError, match=f"LOC_val_solution.csv, row '{stem}'.*outside the") as caught:
        quiet(data.ILSVRC, copy, "val")
    assert one_line(str(caught.value))
    assert len(quiet(data.ILSVRC, copy, "val", boxes=False).samples) == 6  # classification needs no boxes


@pytest.mark.parametrize("damage", ["truncated", "no xmax", "not a number"])
def test_malformed_xml_is_named_and_training_reads_without_boxes(copy, damage):
    xml = copy / "Annotation" / "n00000002" / "n00000002_3.xml"
    text = xml.read_text()
    xml.write_text(
        {
            "truncated": text[: len(text) // 2],
            "no xmax": text.replace("<xmax>", "<width_x>").replace("</xmax>", "</width_x>"),
            "not a number": text.replace("<ymin>", "<ymin>twelve"),
        }[damage]
    )
    other = copy / "Annotation" / "n00000003" / "n00000003_1.xml"
    other.write_text(other.read_text()[:40])
    with pytest.raises(ValueError) as caught:
        data.ILSVRC(copy, "train")
    message = str(caught.value)
    assert str(xml) in message and "and 1 more" in message and one_line(message)
    with pytest.raises(ValueError, match="n00000002_3.xml"):
        data.read_voc_xml(xml)
    assert len(data.ILSVRC(copy, "train", boxes=False).samples) == 15


def test_training_does_not_read_boxes(copy, tmp_path, monkeypatch):
    from vggrepro.core import profiles
    from vggrepro.train import recipe as train_mod

    bad = copy / "Annotation" / "n00000001" / "n00000001_1.xml"
    bad.write_text("<annotation><object><name>n0")  # truncated

    class Reached(Exception):
        pass

    def stop(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(data, "dataset_stats", stop)  # the step after reading the sets
    profile = profiles.get_profile(
        "ci", data_kind="imagenet", data_root=str(copy), num_classes=3, crop=32, width=1 / 16, batch_size=4, threads=1
    )
    with pytest.raises(Reached):
        train_mod.train(profile, train_mod.Settings(config="A", scale=37), tmp_path / "run", progress=False)


# -- data check -----------------------------------------------------------------------------------


def test_data_check_exits_non_zero_on_problems(copy, tmp_path, capsys):
    assert quiet(cli.main, ["data", "check", "--root", str(copy)]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    flat_train = tmp_path / "flat"
    shutil.copytree(copy / "val", flat_train / "train")  # images not in class folders
    shutil.copytree(copy / "val", flat_train / "val")
    no_labels = tmp_path / "nolabels"
    shutil.copytree(copy, no_labels)
    (no_labels / "LOC_val_solution.csv").unlink()
    edited = shutil.copytree(no_labels, tmp_path / "edited")  # and no longer matches its manifest
    (no_labels / "manifest.json").unlink()
    for root in (empty, flat_train, no_labels, edited):
        capsys.readouterr()
        assert quiet(cli.main, ["data", "check", "--root", str(root)]) == 1, root
        assert "problem" in capsys.readouterr().err


# -- the training statistics ----------------------------------------------------------------------


def test_stats_are_measured_again_when_images_change_in_place(copy):
    first = data.dataset_stats(copy, progress=False)
    image = copy / "train" / "n00000001" / "n00000001_1.JPEG"
    w, h = Image.open(image).size
    Image.new("RGB", (w, h), (255, 255, 255)).save(image, quality=90)  # same path, other pixels
    second = data.dataset_stats(copy, progress=False)
    assert second.mean_rgb != first.mean_rgb
    assert (
        second.mean_rgb
        == data.pixel_stats(data.decode_image(s.path) for s in data.ILSVRC(copy, "train").samples).mean_rgb
    )
    assert json.loads((copy / "stats.json").read_text())["mean_rgb"] == list(second.mean_rgb)


def test_torn_stats_json_is_measured_again(copy):
    first = data.dataset_stats(copy, progress=False)
    stored = copy / "stats.json"
    stored.write_text(stored.read_text()[:30])
    with pytest.warns(UserWarning, match="stats.json is unreadable"):
        again = data.dataset_stats(copy, progress=False)
    assert again.mean_rgb == first.mean_rgb and torch.equal(again.eigvec, first.eigvec)
    assert json.loads(stored.read_text())["mean_rgb"] == list(first.mean_rgb)  # rewritten whole


# -- synthetic generation -----------------------------------------------------------------------------


def test_a_generation_that_loses_the_race_keeps_the_identical_set(generated, tmp_path, monkeypatch):
    out = tmp_path / "race" / "set"
    winner = shutil.copytree(generated, tmp_path / "winner")  # what the other process made
    other = synth.generate(tmp_path / "other", synth.SynthSpec(seed=12, **TINY), progress=False, workers=1)
    real = os.replace

    def racing(src, dst):  # the other process renames its identical set into place first
        if str(dst) == str(out) and not out.exists():
            real(winner, out)
        return real(src, dst)

    monkeypatch.setattr(synth.os, "replace", racing)
    assert synth.generate(out, synth.SynthSpec(seed=11, **TINY), progress=False, workers=1) == out
    assert synth.verify(out)["digest"] == synth.read_manifest(generated)["digest"]
    assert [p.name for p in out.parent.iterdir()] == ["set"]  # the loser's folder is gone
    # a different set in its place is refused, and the loser's work is cleaned up
    shutil.rmtree(out)
    winner = other
    with pytest.raises(ValueError, match="another set"):
        synth.generate(out, synth.SynthSpec(seed=11, **TINY), progress=False, workers=1)
    assert [p.name for p in out.parent.iterdir()] == ["set"]


def test_stale_working_folders_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".set.tmp-{host}-{dead.pid}-abc123"
    live = tmp_path / f".set.tmp-{host}-{os.getpid()}-def456"
    old = tmp_path / ".set.tmp-xyz789"  # an older version's name, untouched for two days
    for folder in (stale, live, old):
        folder.mkdir()
        (folder / "x.JPEG").write_bytes(b"half")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    spec = synth.SynthSpec(seed=11, num_classes=2, train_per_class=1, val_per_class=1, min_side=(40, 40))
    synth.generate(tmp_path / "set", spec, progress=False, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["set", live.name])


# -- counts ------------------------------------------------------------------------------------------


def test_corrupt_images_are_not_counted(copy):
    (copy / "train" / "n00000001" / "n00000001_1.JPEG").write_bytes(b"\xff\xd8 not a JPEG")
    for cache in (True, False):
        ds = data.ILSVRC(copy, "train", boxes=False)
        images = data.EvalImages(ds, cache=cache)
        used = quiet(list, images)
        assert len(used) == len(images) == ds.usable == 14 and len(ds.samples) == 15


# -- the book -------------------------------------------------------------------------------------


@pytest.mark.parametrize("only", ["", " ", ",", "99"])
def test_book_run_refuses_an_empty_or_unknown_selection(only, tmp_path, monkeypatch, capsys):
    import papermill

    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("ran a notebook"))
    assert cli.main(["book", "run", "--only", only]) == 2
    line = error_line(capsys.readouterr().err)
    chapters = [nb.stem for nb in book.notebooks()]
    assert chapters and all(name in line for name in chapters)
    with pytest.raises(ValueError, match="the book has"):
        book.select(book.notebooks(), [])
    assert book.select(book.notebooks(), None) == book.notebooks()
