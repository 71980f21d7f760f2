"""The ILSVRC-layout reader, decoding, the training-set statistics and the two data paths."""

import csv
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vggrepro import data
from vggrepro.cli import main as cli
from vggrepro.data import synth, training_stats
from vggrepro.data import transforms as T

TINY = dict(num_classes=3, train_per_class=5, val_per_class=2, min_side=(40, 60))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return synth.generate(tmp_path_factory.mktemp("gen") / "set", synth.SynthSpec(seed=11, **TINY), progress=False)


@pytest.fixture(scope="module")
def flat(generated, tmp_path_factory):
    """The generated set (flat val + CSV) with a corrupt JPEG, an empty class folder and a stray file."""
    root = tmp_path_factory.mktemp("flat") / "set"
    shutil.copytree(generated, root)
    (root / "train" / "n00000001" / "n00000001_99.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    (root / "train" / "n00000004").mkdir()
    (root / "train" / "n00000002" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def folders(generated, tmp_path_factory):
    """The same set with val/<wnid>/ class folders and VOC XML boxes instead of the CSV."""
    root = tmp_path_factory.mktemp("folders") / "set"
    shutil.copytree(generated, root)
    table = data.read_loc_csv(root / "LOC_val_solution.csv")
    for stem, objects in table.items():
        wnid, box = objects[0]
        (root / "val" / wnid).mkdir(exist_ok=True)
        shutil.move(root / "val" / f"{stem}.JPEG", root / "val" / wnid / f"{stem}.JPEG")
        w, h = Image.open(root / "val" / wnid / f"{stem}.JPEG").size
        xml = synth.voc_xml(wnid, stem, w, h, wnid, tuple(int(v) for v in box))
        (root / "Annotation" / wnid / f"{stem}.xml").write_text(xml)
    (root / "LOC_val_solution.csv").unlink()
    return root


@pytest.fixture(scope="module")
def kaggle(generated, tmp_path_factory):
    """The Kaggle copy's nesting: ILSVRC/Data/CLS-LOC/{train,val} and LOC_*_solution.csv, no XML."""
    root = tmp_path_factory.mktemp("kaggle") / "set"
    images = root / "ILSVRC" / "Data" / "CLS-LOC"
    images.mkdir(parents=True)
    shutil.copytree(generated / "train", images / "train")
    shutil.copytree(generated / "val", images / "val")
    shutil.copy(generated / "LOC_val_solution.csv", root)
    rows = []
    for xml in sorted((generated / "Annotation").rglob("*.xml")):
        _, objects = data.read_voc_xml(xml)
        rows.append([xml.stem, " ".join(f"{w} {' '.join(str(int(v)) for v in b)}" for w, b in objects)])
    with open(root / "LOC_train_solution.csv", "w", newline="") as f:
        csv.writer(f).writerows([["ImageId", "PredictionString"], *rows])
    return root


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# -- the reader ---------------------------------------------------------------------------------


def test_missing_root_names_the_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="Accepted layouts"):
        data.ILSVRC(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="no val/ folder"):
        data.ILSVRC(tmp_path, "val")


def test_empty_split_names_the_layouts(tmp_path):
    (tmp_path / "train" / "n00000001").mkdir(parents=True)
    with pytest.raises(ValueError, match="Accepted layouts"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.ILSVRC(tmp_path, "train")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "x.JPEG").write_bytes(b"")
    with pytest.raises(ValueError, match="LOC_val_solution.csv"):
        data.ILSVRC(tmp_path, "val")


def test_train_reader(flat):
    with pytest.warns(UserWarning, match="have no images"):
        ds = data.ILSVRC(flat, "train")
    assert ds.classes == ["n00000001", "n00000002", "n00000003", "n00000004"]  # the empty folder is a class
    assert len(ds.samples) == 3 * 5 + 1  # the reader lists the corrupt file; the loaders skip it
    assert [p.name for p in ds.skipped] == ["notes.txt"]
    assert ds.names["n00000002"] == "plain triangle"
    s = next(s for s in ds.samples if s.path.name == "n00000003_2.JPEG")
    assert (s.label, s.wnid) == (2, "n00000003")
    size, objects = data.read_voc_xml(flat / "Annotation" / "n00000003" / "n00000003_2.xml")
    assert s.boxes == [objects[0][1]] and s.size == size == Image.open(s.path).size


def test_flat_val_uses_train_classes_and_csv_boxes(flat):
    ds = _quiet(data.ILSVRC, flat, "val")
    assert ds.classes == ["n00000001", "n00000002", "n00000003", "n00000004"]
    assert len(ds.samples) == 6
    table = data.read_loc_csv(flat / "LOC_val_solution.csv")
    for s in ds.samples:
        wnid, box = table[s.path.stem][0]
        assert s.wnid == wnid and s.label == ds.classes.index(wnid) and s.boxes == [box]


def test_class_folder_val_matches_flat_val(flat, folders):
    a = {s.path.stem: (s.label, s.boxes) for s in _quiet(data.ILSVRC, flat, "val").samples}
    b = {s.path.stem: (s.label, s.boxes) for s in data.ILSVRC(folders, "val").samples}
    assert a == b


def test_kaggle_layout_and_train_csv(generated, kaggle):
    xml = data.ILSVRC(generated, "train")
    csv_ = data.ILSVRC(kaggle, "train")
    assert csv_.split_dir == kaggle / "ILSVRC" / "Data" / "CLS-LOC" / "train"
    assert [(s.path.name, s.label, s.boxes) for s in xml.samples] == [
        (s.path.name, s.label, s.boxes) for s in csv_.samples
    ]
    assert len(data.ILSVRC(kaggle, "val").samples) == 6


def test_imagenet_counts_are_checked(generated):
    with pytest.warns(UserWarning, match="1,281,167"):
        assert not data.check_imagenet_counts(data.ILSVRC(generated, "train"))


# -- decoding -------------------------------------------------------------------------------------


def test_decode_converts_modes(tmp_path):
    Image.new("L", (5, 4), 90).save(tmp_path / "gray.JPEG")
    Image.new("CMYK", (5, 4), (0, 0, 0, 0)).save(tmp_path / "cmyk.JPEG")
    Image.new("RGBA", (5, 4), (10, 20, 30, 40)).save(tmp_path / "rgba.png")
    for name, expected in [("gray.JPEG", (90, 90, 90)), ("cmyk.JPEG", (255, 255, 255)), ("rgba.png", (10, 20, 30))]:
        img = data.decode_image(tmp_path / name)
        assert img.dtype == torch.uint8 and img.shape == (3, 4, 5)
        assert (img[:, 2, 2].int() - torch.tensor(expected)).abs().max() <= 1


def test_corrupt_image_is_a_specific_error(flat):
    path = flat / "train" / "n00000001" / "n00000001_99.JPEG"
    with pytest.raises(data.CorruptImage) as caught:
        data.decode_image(path)
    assert caught.value.path == path


# -- statistics -------------------------------------------------------------------------------------


def test_dataset_stats_match_numpy_and_are_stored(generated, tmp_path, monkeypatch):
    root = tmp_path / "set"
    shutil.copytree(generated, root)
    stats = data.dataset_stats(root, progress=False)
    pixels = np.concatenate(
        [np.asarray(Image.open(p).convert("RGB")).reshape(-1, 3) for p in sorted((root / "train").rglob("*.JPEG"))]
    ).astype(np.float64)
    assert np.allclose(stats.mean_rgb, pixels.mean(0))
    cov = np.cov(pixels.T / 255.0, bias=True)
    rebuilt = stats.eigvec.numpy() @ np.diag(stats.eigval.numpy()) @ stats.eigvec.numpy().T
    assert np.allclose(rebuilt, cov, atol=1e-9)
    assert list(stats.eigval) == sorted(stats.eigval, reverse=True)
    assert (root / "stats.json").is_file()
    # the pixel std (one number: the root of the mean channel variance) that preprocess divides by
    assert np.isclose(stats.pixel_std, np.sqrt(pixels.var(0).mean()))
    assert stats.preprocess() == T.Preprocess(mean=stats.mean_rgb, std=(stats.pixel_std,) * 3)
    monkeypatch.setattr(training_stats, "pixel_stats", lambda *_: pytest.fail("stats.json was not reused"))
    again = data.dataset_stats(root, progress=False)
    assert again.mean_rgb == stats.mean_rgb and torch.equal(again.eigvec, stats.eigvec)


# -- the training loader -------------------------------------------------------------------------------


def _stats():
    return data.Stats((120.0, 110.0, 100.0), torch.tensor([0.05, 0.02, 0.01]), torch.eye(3))


def _loader(ds, scale=(36, 48), seed=3, drop_last=True, rank=0, world_size=1, **engine):
    return data.TrainLoader(
        ds,
        data.Augmentation(32, scale, T.Preprocess((120.0, 110.0, 100.0)), _stats()),
        data.Batching(4, seed, drop_last, rank, world_size),
        data.Engine(progress=False, **engine),
    )


def test_loader_skips_a_corrupt_image_with_one_warning(flat):
    ds = _quiet(data.ILSVRC, flat, "train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = _loader(ds)
        for epoch in range(2):
            for _ in loader.batches(epoch):
                pass
    assert len([w for w in caught if "do not decode" in str(w.message)]) == 1
    assert [p.name for p in loader.skipped] == ["n00000001_99.JPEG"]
    assert len(loader) == 15 // 4 and len(_quiet(_loader, ds, drop_last=False)) == 4


def test_loader_batches(generated):
    loader = _loader(data.ILSVRC(generated, "train"))
    x, y = loader.batch(0, 0)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    epoch = list(loader.batches(0))
    labels = torch.cat([b[1] for b in epoch])
    assert len(labels) == 12 and set(labels.tolist()) <= {0, 1, 2}


def test_batch_depends_only_on_seed_epoch_step(generated):
    ds = data.ILSVRC(generated, "train")
    full = list(_loader(ds).batches(1))
    resumed = list(_loader(ds).batches(1, start_step=2))  # a fresh process resuming at step 2
    assert len(resumed) == 1
    assert torch.equal(full[2][0], resumed[0][0]) and torch.equal(full[2][1], resumed[0][1])
    assert torch.equal(_loader(ds).batch(1, 1)[0], full[1][0])
    assert not torch.equal(_loader(ds).batch(0, 2)[0], full[2][0])  # another epoch: other crops
    assert not torch.equal(_loader(ds, seed=4).batch(1, 2)[0], full[2][0])
    # at a fixed S the loader keeps the rescaled images after the first use: same batches either way
    fixed = _loader(ds, scale=40)
    list(fixed.batches(0))
    assert torch.equal(fixed.batch(1, 2)[0], _loader(ds, scale=40).batch(1, 2)[0])


def test_pil_path_matches_tensor_path(generated):
    ds = data.ILSVRC(generated, "train")
    for scale in (40, (36, 72)):
        for step in range(3):
            xt, yt = _loader(ds, scale=scale).batch(2, step)
            xp, yp = _loader(ds, scale=scale, backend="pil").batch(2, step)
            assert torch.equal(yt, yp)
            diff = (xt - xp).abs()
            assert diff.max() <= 2 and diff.mean() < 0.1  # resampling tolerance, in 0-255 levels


def test_pil_path_with_workers_is_the_same(generated):
    ds = data.ILSVRC(generated, "train")
    inline = list(_loader(ds, backend="pil").batches(0))
    pooled = list(_loader(ds, backend="pil", workers=2).batches(0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(inline, pooled))


def _write(root, name, array):
    path = root / "train" / "n00000001" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)  # PNG: lossless, so the pixels are known exactly


def test_crop_flip_and_jitter_on_a_ramp(tmp_path):
    # a 64 x 96 image whose red channel is twice the column index. At S = 64 there is no resampling:
    # each row of a 64 crop is 2*(left .. left+63), rising, or falling when flipped.
    ramp = np.zeros((64, 96, 3), np.uint8)
    ramp[..., 0] = 2 * np.arange(96)
    for i in range(8):
        _write(tmp_path, f"r_{i}.png", ramp)
    ds = data.ILSVRC(tmp_path, "train")
    pre = T.Preprocess((0.0, 0.0, 0.0))
    loader = data.TrainLoader(ds, data.Augmentation(64, 64, pre), data.Batching(8, seed=0), data.Engine(progress=False))
    lefts, flips = set(), set()
    for step in range(1):
        for epoch in range(4):
            x, _ = loader.batch(epoch, step)
            for red in x[:, 0]:
                row = red[0]
                assert torch.equal(red, row.expand(64, 64))
                flipped = bool(row[0] > row[-1])
                row = row.flip(0) if flipped else row
                left = int(row[0]) // 2
                assert torch.equal(row, 2 * torch.arange(left, left + 64, dtype=torch.float32))
                lefts.add(left)
                flips.add(flipped)
    assert flips == {True, False} and len(lefts) > 5 and max(lefts) <= 32
    # jittered S in [64, 128]: the image grows by S/64, so the ramp's slope per pixel, 2*64/S, lies in
    # [1, 2] and varies from image to image
    loader = data.TrainLoader(
        ds, data.Augmentation(64, (64, 128), pre), data.Batching(8, seed=0), data.Engine(progress=False)
    )
    slopes = []
    for epoch in range(3):
        x, _ = loader.batch(epoch, 0)
        for red in x[:, 0]:
            inner = red[32, 8:56]
            slopes.append(float((inner[-1] - inner[0]).abs() / 47))
    assert min(slopes) >= 1 - 0.05 and max(slopes) <= 2 + 0.05
    assert max(slopes) - min(slopes) > 0.3


def test_colour_shift_moves_each_image_along_the_eigenvectors(tmp_path):
    for i in range(12):
        _write(tmp_path, f"c_{i}.png", np.full((40, 40, 3), (100, 150, 200), np.uint8))
    ds = data.ILSVRC(tmp_path, "train")
    stats = data.Stats((100.0, 150.0, 200.0), torch.tensor([1.0, 0.0, 0.0]), torch.eye(3))
    loader = data.TrainLoader(
        ds,
        data.Augmentation(32, 40, T.Preprocess(stats.mean_rgb), stats),
        data.Batching(12, seed=0),
        data.Engine(progress=False),
    )
    x, _ = loader.batch(0, 0)
    # only the first eigenvector (red) has an eigenvalue: green and blue are exactly the mean
    assert (x[:, 1:] == 0).all()
    shifts = x[:, 0, 0, 0]
    assert torch.equal(x[:, 0], shifts.view(-1, 1, 1).expand(12, 32, 32))  # one shift per image
    assert 5 < float(shifts.std()) < 60  # 255 * eigval * N(0, 0.1): std 25.5 levels
    assert len(set(shifts.tolist())) == 12


def test_finish_batch_equals_preprocess_of_colour_shift():
    crops = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    alphas = torch.randn(3, 3) * 0.1
    stats = data.Stats(
        (1.0, 2.0, 3.0),
        torch.tensor([0.3, 0.2, 0.1]),
        torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))[0],
    )
    for pre in (T.Preprocess((120.0, 110.0, 100.0)), T.Preprocess((1.0, 2.0, 3.0), (50.0, 60.0, 70.0), "BGR")):
        fast = data.finish_batch(crops, alphas, pre, stats, "cpu")
        slow = pre(T.colour_shift_by(crops.permute(0, 3, 1, 2).float(), alphas, stats.eigval, stats.eigvec))
        assert torch.allclose(fast, slow, atol=1e-4)


def test_ddp_shards_split_the_global_batch(generated):
    ds = data.ILSVRC(generated, "train")
    whole, _ = _loader(ds).batch(0, 1)
    part0, _ = _loader(ds, rank=0, world_size=2).batch(0, 1)
    part1, _ = _loader(ds, rank=1, world_size=2).batch(0, 1)
    assert torch.equal(whole[0::2], part0) and torch.equal(whole[1::2], part1)


def test_loader_rejects_bad_settings(generated):
    ds = data.ILSVRC(generated, "train")
    with pytest.raises(ValueError, match="smaller than the crop"):
        _loader(ds, scale=30)
    with pytest.raises(ValueError, match="Smin <= Smax"):
        _loader(ds, scale=(50, 40))
    with pytest.raises(ValueError, match="backend"):
        _loader(ds, backend="dali")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_path_matches_cpu_path(generated):
    ds = data.ILSVRC(generated, "train")
    xc, yc = _loader(ds).batch(0, 0)
    xg, yg = _loader(ds, device="cuda").batch(0, 0)
    assert torch.equal(yc, yg.cpu())
    diff = (xc - xg.cpu()).abs()
    assert diff.mean() < 1.5  # nvjpeg and libjpeg decode slightly differently; resampling agrees
    assert diff.max() <= 40


# -- evaluation images -------------------------------------------------------------------------


def test_eval_images(flat):
    ds = _quiet(data.ILSVRC, flat, "train")
    with pytest.warns(UserWarning, match="do not decode"):
        items = list(data.EvalImages(ds))
    assert len(items) == 15
    corrupt = next(i for i, s in enumerate(ds.samples) if s.path.name == "n00000001_99.JPEG")
    assert corrupt not in [i for i, _, _ in items]
    for i, img, label in items:
        assert label == ds.samples[i].label
        assert torch.equal(img, data.decode_image(ds.samples[i].path))
    uncached = data.EvalImages(ds, cache=False)
    with pytest.warns(UserWarning):
        assert [i for i, _, _ in uncached] == [i for i, _, _ in items]
    assert [p.name for p in uncached.skipped] == ["n00000001_99.JPEG"]


# -- the command line -------------------------------------------------------------------------------


def test_cli_check(flat, capsys):
    # the corrupt image and the empty class folder are problems: exit status 1
    assert _quiet(cli.main, ["data", "check", "--root", str(flat), "--decode"]) == 1
    out = capsys.readouterr().out
    # a generated set with files added to it no longer matches its manifest (issue 30, case 8)
    assert "does not match its manifest" in out and "(not in the manifest)" in out
    assert "train: 16 images, 4 classes, 15 with boxes, 1 files skipped" in out
    assert "val: 6 images, 4 classes, 6 with boxes" in out
    assert "1 corrupt" in out and "n00000001_99.JPEG" in out


def test_cli_check_missing_root(tmp_path, capsys):
    assert cli.main(["data", "check", "--root", str(tmp_path / "nowhere")]) == 2
    assert "Accepted layouts" in capsys.readouterr().err


def test_cli_synth_calls_ensure(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(data, "ensure_synthetic", lambda profile, **kw: calls.append((profile, kw)))
    assert cli.main(["data", "synth", "--profile", "gpu", "--out", str(tmp_path), "--seed", "5"]) == 0
    assert calls == [("gpu", dict(out=str(tmp_path), seed=5, verbose=True))]


def test_one_decoded_image_cache(flat):
    # every reader of a small split gets the one decoded copy: the loaders, evaluation and image_at
    with pytest.warns(UserWarning, match="no images"):
        val = data.ILSVRC(flat, "train", boxes=False)  # (the split with a corrupt JPEG)
    cached, bad = data.decode_all(val, progress=False)
    with pytest.warns(UserWarning, match="do not decode"):
        evaluated = {i: img for i, img, _ in data.EvalImages(val)}
    assert evaluated.keys() == cached.keys() and all(evaluated[i] is cached[i] for i in cached)
    assert all(data.image_at(val, i) is cached[i] for i in cached)
    corrupt = next(i for i, s in enumerate(val.samples) if s.path in bad)
    with pytest.raises(data.CorruptImage, match="did not decode"):
        data.image_at(val, corrupt)
    assert set(bad) <= val.corrupt


def test_the_data_sets_identity(generated, tmp_path):
    digest = synth.read_manifest(generated)["digest"]
    copy = tmp_path / "copy"
    shutil.copytree(generated, copy)
    assert data.data_identity(generated) == data.data_identity(copy) == f"synthetic:{digest}"  # anywhere
    (copy / "manifest.json").unlink()  # a user's folder: named by its files, so an edit renames it
    before = data.data_identity(copy)
    assert before.startswith("files:") and data.data_identity(copy) == before
    next((copy / "train").rglob("*.JPEG")).write_bytes(b"edited in place")
    assert data.data_identity(copy) != before
    assert data.data_identity(tmp_path / "nowhere") == "missing"
