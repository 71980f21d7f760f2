"""The synthetic generator: deterministic bytes, the ILSVRC layout, exact boxes, the manifest."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from vggrepro.core import profiles
from vggrepro.data import read_voc_xml, synth, synth_images

TINY = dict(num_classes=3, train_per_class=4, val_per_class=2, min_side=(40, 60))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synth.generate(tmp_path_factory.mktemp("synth") / "set", synth.SynthSpec(seed=7, **TINY), progress=False)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_order(tiny, tmp_path):
    # a second run, with two processes rendering in a different interleaving, gives the same bytes
    again = synth.generate(tmp_path / "again", synth.SynthSpec(seed=7, **TINY), progress=False, workers=2)
    assert _files(again) == _files(tiny)


def test_other_seed_other_images(tiny, tmp_path):
    other = synth.generate(tmp_path / "other", synth.SynthSpec(seed=8, **TINY), progress=False)
    a, b = _files(tiny), _files(other)
    assert a.keys() == b.keys()
    assert a["train/n00000001/n00000001_1.JPEG"] != b["train/n00000001/n00000001_1.JPEG"]


def test_image_depends_only_on_its_own_seed():
    classes = synth.class_list(3)
    one = synth.render(classes[1], (40, 60), synth.image_rng(7, "train", 1, 2), classes)
    synth.render(classes[0], (40, 60), synth.image_rng(7, "train", 0, 0), classes)  # something else in between
    two = synth.render(classes[1], (40, 60), synth.image_rng(7, "train", 1, 2), classes)
    assert np.array_equal(one[0], two[0]) and one[1] == two[1]


def test_layout(tiny):
    names = {p.relative_to(tiny).as_posix() for p in tiny.rglob("*") if p.is_file()}
    assert "train/n00000001/n00000001_1.JPEG" in names
    assert "Annotation/n00000003/n00000003_4.xml" in names
    assert "val/synth_val_00000001.JPEG" in names
    assert {"LOC_val_solution.csv", "LOC_synset_mapping.txt", "manifest.json"} <= names
    assert sum(n.startswith("train/") for n in names) == 3 * 4
    assert sum(n.startswith("val/") for n in names) == 3 * 2
    mapping = (tiny / "LOC_synset_mapping.txt").read_text().splitlines()
    assert mapping == ["n00000001 plain circle", "n00000002 plain triangle", "n00000003 striped circle"]


def test_val_csv_is_kaggle_format(tiny):
    with open(tiny / "LOC_val_solution.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ImageId", "PredictionString"]
    assert len(rows) == 1 + 6
    image_id, prediction = rows[1]
    wnid, *coords = prediction.split()
    assert image_id == "synth_val_00000001" and wnid == "n00000001" and len(coords) == 4
    xmin, ymin, xmax, ymax = map(int, coords)
    w, h = Image.open(tiny / "val" / f"{image_id}.JPEG").size
    assert 0 <= xmin < xmax <= w and 0 <= ymin < ymax <= h


def test_boxes_inside_images_and_sized_as_promised(tmp_path):
    spec = synth.SynthSpec(num_classes=4, train_per_class=15, val_per_class=1, min_side=(60, 90), seed=3)
    root = synth.generate(tmp_path / "boxes", spec, progress=False)
    fractions = []
    for xml in sorted((root / "Annotation").rglob("*.xml")):
        size, objects = read_voc_xml(xml)
        ((wnid, (xmin, ymin, xmax, ymax)),) = objects
        w, h = size
        assert Image.open(root / "train" / wnid / f"{xml.stem}.JPEG").size == (w, h)
        assert 60 <= min(w, h) <= 90 and 0.6 < w / h < 1.6
        assert 0 <= xmin < xmax <= w and 0 <= ymin < ymax <= h
        fractions.append(min(xmax - xmin, ymax - ymin) / min(w, h))
    # the box's smaller side: about 15% .. 90% of the image's smaller side, and spread over that range
    assert min(fractions) >= 0.10 and max(fractions) <= 0.95
    assert min(fractions) < 0.35 and max(fractions) > 0.65


def test_difficulty_knobs_size_turn_and_fade(tmp_path):
    # a profile's synth_box_fraction bounds the box; rotation 0 keeps a square's box square-ish
    # (a turned square's box is up to 1.41x wider); the knobs are recorded in the manifest
    spec = synth.SynthSpec(
        num_classes=4,
        train_per_class=12,
        val_per_class=1,
        min_side=(60, 90),
        seed=3,
        box_fraction=(0.5, 0.9),
        rotation=0.0,
        background_fade=0.5,
    )
    root = synth.generate(tmp_path / "easy", spec, progress=False)
    fractions = []
    for xml in sorted((root / "Annotation").rglob("*.xml")):
        size, ((wnid, (xmin, ymin, xmax, ymax)),) = read_voc_xml(xml)
        fractions.append(min(xmax - xmin, ymax - ymin) / min(size))
    assert min(fractions) >= 0.45 and max(fractions) <= 0.95
    params = json.loads((root / "manifest.json").read_text())["params"]
    assert params["box_fraction"] == [0.5, 0.9] and params["rotation"] == 0.0 and params["background_fade"] == 0.5
    classes = synth.class_list(4)
    plain, _ = synth.render(classes[0], (60, 60), synth.image_rng(0, "train", 0, 0), classes)
    faded, _ = synth.render(classes[0], (60, 60), synth.image_rng(0, "train", 0, 0), classes, background_fade=0.9)
    assert np.abs(faded.astype(int) - 128).mean() < np.abs(plain.astype(int) - 128).mean()
    bad = synth.SynthSpec(num_classes=2, train_per_class=1, val_per_class=1, box_fraction=(0.9, 0.5))
    with pytest.raises(ValueError, match="box_fraction"):
        synth.generate(tmp_path / "bad", bad)


def test_box_is_where_the_object_is(monkeypatch):
    # watch the canvas while the labelled object (the last thing painted) goes on: every pixel it
    # changes lies inside the box written for it, and it changes most of the box
    painted = []
    paint = synth_images._paint_texture

    def watching(canvas, mask, *args, **kwargs):
        before = np.asarray(canvas).copy()
        paint(canvas, mask, *args, **kwargs)
        painted.append((np.asarray(canvas) != before).any(2))

    monkeypatch.setattr(synth_images, "_paint_texture", watching)
    classes = synth.class_list(4)
    for index in range(5):
        painted.clear()
        _, (xmin, ymin, xmax, ymax) = synth.render(classes[2], (80, 80), synth.image_rng(1, "train", 2, index), classes)
        rows, cols = np.nonzero(painted[-1])
        assert rows.min() >= ymin and rows.max() < ymax and cols.min() >= xmin and cols.max() < xmax
        assert len(rows) > 0.3 * (xmax - xmin) * (ymax - ymin)


def test_classes_are_shape_times_texture():
    classes = synth.class_list(20)
    assert len({c.name for c in classes}) == 20
    assert len({c.shape for c in classes}) == 5 and len({c.texture for c in classes}) == 4
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    assert len({c.name for c in synth.class_list(100)}) == 100
    with pytest.raises(ValueError):
        synth.class_list(101)


def test_manifest_lists_every_file(tiny):
    manifest = json.loads((tiny / "manifest.json").read_text())
    on_disk = {p.relative_to(tiny).as_posix() for p in tiny.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert manifest["params"]["seed"] == 7
    assert synth.verify(tiny)["digest"] == manifest["digest"]


def test_verify_names_a_changed_file(tiny, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    victim = copy / "train" / "n00000002" / "n00000002_3.JPEG"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(ValueError, match="n00000002_3.JPEG"):
        synth.verify(copy)


def test_generate_refuses_existing_folder(tiny):
    with pytest.raises(ValueError, match="already exists"):
        synth.generate(tiny, synth.SynthSpec(seed=7, **TINY), progress=False)


def test_ensure_generates_then_verifies(tmp_path):
    profile = profiles.get_profile(
        "ci",
        num_classes=2,
        synth_train_per_class=2,
        synth_val_per_class=1,
        synth_min_side=(40, 50),
        data_root=str(tmp_path / "set"),
    )
    lines = []
    root = synth.ensure(profile, progress=False, log=lines.append)
    assert root == tmp_path / "set" and lines[-1].startswith("generated synthetic set")
    synth.ensure(profile, progress=False, log=lines.append)
    assert lines[-1].startswith("found synthetic set") and "verified" in lines[-1]
    other = profile.replace(seed=1)
    with pytest.raises(ValueError, match="delete the folder"):
        synth.ensure(other, progress=False, log=lines.append)


def test_ensure_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "mine.txt").write_text("not a synthetic set")
    profile = profiles.get_profile("ci", data_root=str(tmp_path / "set"))
    with pytest.raises(ValueError, match="no manifest.json"):
        synth.ensure(profile, progress=False, log=lambda *_: None)


def test_a_verified_set_is_hashed_again_only_when_a_file_changes(tmp_path, monkeypatch):
    """A later process (here: the in-process memo cleared) trusts the set's hidden verification
    record while no file's name, size or time has changed, and hashes it again when one has."""
    from vggrepro.data import identity

    root = synth.generate(tmp_path / "set", synth.SynthSpec(seed=7, **TINY), progress=False)
    identity.verify(root)
    (root / "stats.json").write_text("{}")  # the package's own file, written after the set is made
    hashed = []
    real = identity.sha256
    monkeypatch.setattr(identity, "sha256", lambda p: (hashed.append(p), real(p))[1])
    monkeypatch.setattr(identity, "_CHECKED", {})
    identity.verify(root, cached=True)
    assert hashed == []
    image = next((root / "train").rglob("*.JPEG"))
    image.write_bytes(image.read_bytes()[:-10])  # cut: another size
    monkeypatch.setattr(identity, "_CHECKED", {})
    with pytest.raises(ValueError, match="changed"):
        identity.verify(root, cached=True)
    assert hashed
