"""Issue 30: a hostile but realistic user, third round. Each test is one of the issue's cases (its
number in the test's comment) and failed before the fix: code run from a -p value, a file lost, a
silent wrong answer, or a raw traceback where one line naming the problem and the fix belongs."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook
from PIL import Image

from vggrepro import data, models
from vggrepro.book import runner as book
from vggrepro.cli import main as cli
from vggrepro.core import profiles, runs
from vggrepro.core.profiles import get_profile
from vggrepro.data.transforms import Preprocess
from vggrepro.evaluate import posteriors
from vggrepro.evaluate.posteriors import Evaluation
from vggrepro.train import checkpoints
from vggrepro.train.loop import log

ROOT = book.ROOT
TINY = dict(synth_train_per_class=4, synth_val_per_class=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # nets this small run no faster on two threads; the cores are shared
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def own_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGREPRO_RUNS", str(tmp_path / "runs"))  # never the checkout's runs/


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """The ci profile's synthetic set with 4 training and 2 val images per class."""
    root = tmp_path_factory.mktemp("synth") / "set"
    data.ensure_synthetic(get_profile("ci", data_root=str(root), **TINY), verbose=False)
    return root


@pytest.fixture
def set_copy(tiny_set, tmp_path):
    return Path(shutil.copytree(tiny_set, tmp_path / "set"))


@pytest.fixture
def plain_copy(set_copy):
    """A user's folder in the ILSVRC layout (the generated set without its manifest)."""
    (set_copy / "manifest.json").unlink()
    return set_copy


def net_of(config="A", width=1 / 8, seed=0):
    torch.manual_seed(seed)
    return models.init_fan_in(models.build(config, width=width, num_classes=10, crop=32)).eval()


def write_checkpoint(path: Path, config="A", width=1 / 8) -> Path:
    net = net_of(config, width)
    meta = checkpoints.model_meta(net, Preprocess(mean=(120.0, 115.0, 100.0), std=(60.0, 60.0, 60.0)))
    checkpoints.save({"model": net.state_dict(), "meta": meta}, path)
    return path


def evaluate_args(checkpoint, root, *more):
    return ["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--scales", "37", *more]


def train_args(root, *more):
    knobs = [f"data_root={root}", *(f"{k}={v}" for k, v in TINY.items())]
    return ["train", *(a for k in knobs for a in ("--set", k)), "--max-steps", "1", "--batch-size", "8", *more]


# -- 1, 14, and -p width=1e400: a parameter is a value, checked before anything runs -------------------


@pytest.fixture
def fake_kernel(monkeypatch, tmp_path):
    """papermill's execute_notebook, played by running only the cell papermill injects (as a kernel
    would, in a folder of its own): what a -p value becomes in the notebook, without a kernel."""
    import papermill
    from papermill.parameterize import parameterize_notebook

    ran, where = [], tmp_path / "kernel"
    where.mkdir()

    def execute(source, path, parameters, **kwargs):
        nb = copy.deepcopy(source)
        nb.metadata.setdefault("papermill", {})  # as papermill's loader leaves the notebook
        for cell in nb.cells:
            cell.metadata.setdefault("tags", [])
        nb = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
        cell = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
        namespace = {}
        with monkeypatch.context() as m:
            m.chdir(where)
            exec(cell.source, namespace)  # noqa: S102  (what the kernel would run)
        ran.append({k: v for k, v in namespace.items() if not k.startswith("__")})
        return nb

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    return ran, where


def test_a_parameter_value_never_runs_code(fake_kernel, tmp_path, capsys):  # case 1
    ran, where = fake_kernel
    attack = 'width=(\'x"; import pathlib; pathlib.Path("PWNED").touch(); "\',)'
    out = ["--output", str(tmp_path / "out"), "--no-progress"]
    assert cli.main(["book", "run", "--only", "01", "-p", attack, *out]) == 2
    assert "width" in capsys.readouterr().err
    assert not (where / "PWNED").exists() and ran == []
    # a harmless tuple is an error too, never the string "(1, 2)"
    assert cli.main(["book", "run", "--only", "02", "-p", "seed=(1,2)", *out]) == 2
    assert "one value" in capsys.readouterr().err and ran == []
    # a plain value still reaches the chapter as itself
    assert cli.main(["book", "run", "--only", "01", "-p", "width=0.25", *out]) == 0
    assert ran[-1]["width"] == 0.25


def test_a_text_parameter_is_written_as_that_text(tmp_path):
    """A real kernel: a string that tries to close its quotes reads back as the very same string."""
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/01_echo\n")
    nb = new_notebook(
        cells=[
            new_code_cell('profile = "ci"\nname = "x"', metadata={"tags": ["parameters"]}),
            new_code_cell("print(repr(name))"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "book" / "01_echo.ipynb")
    value = 'x"; import pathlib; pathlib.Path("PWNED").touch(); "\\'
    [out] = book.run_book(only="01", parameters={"name": value}, root=tmp_path, echo=lambda *a, **k: None)
    assert nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"].strip() == repr(value)
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize(
    "chapter, parameter, said",
    [
        ("03", "image_index=-1", ">= 0"),  # case 14: an index is not negative
        ("03", "timing_images=-5", ">= 1"),  # a count is positive
        ("03", "timing_images=2.5", "whole number"),
        ("01", "width=1e400", "finite"),  # 01 declares width itself ...
        ("02", "width=1e400", "finite"),  # ... 02 takes it as a profile knob
        ("07", "seed=True", "whole number"),
    ],
)
def test_chapter_parameters_are_checked_before_anything_runs(fake_kernel, tmp_path, capsys, chapter, parameter, said):
    ran, _ = fake_kernel
    args = ["book", "run", "--only", chapter, "-p", parameter, "--output", str(tmp_path / "out"), "--no-progress"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert said in err and parameter.split("=")[0] in err and len(err.strip().splitlines()) == 1
    assert ran == []


def test_every_chapter_parameter_is_declared_with_a_default_that_passes():
    from vggrepro.book.parameters import DECLARED, checked

    for nb in book.notebooks(ROOT):
        for name, default in book.declared_parameters(book.load_source(nb)).items():
            if name != "profile":
                assert name in DECLARED, f"{nb.name} declares {name}, which vggrepro.book.parameters does not know"
                assert checked(name, default, default) == default


# -- 2: locks and logs never through a link ---------------------------------------------------------


def test_a_planted_lock_link_is_refused_and_its_target_kept(tmp_path):
    run = runs.Run("ci", {"kind": "train", "config": "A"}, root=tmp_path / "runs")
    run.dir.mkdir(parents=True)
    precious = tmp_path / "somefile"
    precious.write_text("a user's file\n")
    (run.dir / ".lock").symlink_to(precious)
    with pytest.raises(OSError, match="symbolic link"):
        with run.lock():
            pass
    assert precious.read_text() == "a user's file\n"
    # a dangling link where the metrics log goes: refused, its target never made
    (run.dir / "metrics.jsonl").symlink_to(tmp_path / "made-through-the-link")
    with pytest.raises(OSError, match="symbolic link"):
        log(run.dir / "metrics.jsonl", {"step": 1})
    assert not (tmp_path / "made-through-the-link").exists()


# -- 3, 4, 5: never into a folder that holds another kind of record -----------------------------------


def test_evaluate_out_refuses_a_training_run_folder(tiny_set, tmp_path, capsys):  # case 3
    trained = tmp_path / "runs" / "ci" / "A-37-gaussian-0123456789"
    trained.mkdir(parents=True)
    ckpt = write_checkpoint(trained / "checkpoint.pt")
    (trained / "settings.json").write_text(json.dumps({"kind": "train", "config": "A"}))
    result = json.dumps({"config": "A", "scale": 37, "top1_err": 50.0})
    (trained / "result.json").write_text(result)
    assert cli.main(evaluate_args(ckpt, tiny_set, "--out", str(trained))) == 2
    err = capsys.readouterr().err
    assert str(trained) in err and "a training run" in err and "--out" in err
    assert (trained / "result.json").read_text() == result and not (trained / "posteriors.pt").exists()
    # an empty folder, or an earlier evaluation's, is fine
    assert cli.main(evaluate_args(ckpt, tiny_set, "--out", str(tmp_path / "eval"))) == 0
    assert cli.main(evaluate_args(ckpt, tiny_set, "--out", str(tmp_path / "eval"))) == 0


def test_a_users_own_stats_json_is_never_overwritten(plain_copy, tmp_path, monkeypatch, capsys):  # case 4
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    mine = plain_copy / "stats.json"
    mine.write_text('{"photographer": "me", "lenses": 3}\n')
    stats = data.dataset_stats(plain_copy, progress=False)
    assert mine.read_text() == '{"photographer": "me", "lenses": 3}\n'
    assert "not vggrepro's" in capsys.readouterr().err
    assert data.dataset_stats(plain_copy, progress=False).mean_rgb == stats.mean_rgb  # kept elsewhere, reused


def test_book_run_output_into_book_is_refused(fake_kernel, tmp_path, capsys):  # case 5
    ran, _ = fake_kernel
    stored = ROOT / "book" / "01_architecture.ipynb"
    before = stored.read_bytes()
    args = ["book", "run", "--only", "01", "-p", "width=0.25", "--output", str(ROOT / "book"), "--no-progress"]
    assert cli.main(args) == 2
    assert "--inplace" in capsys.readouterr().err and ran == [] and stored.read_bytes() == before


# -- 6, 20: fuse ----------------------------------------------------------------------------------------


def saved_evaluation(path: Path, labels, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    post = torch.softmax(torch.randn(n, 10, generator=g), 1)
    ev = Evaluation("dense", [37], 32, True, post, torch.tensor(labels), torch.arange(n), 1.0, {"dense": 1.0})
    return posteriors.save_posteriors(path, ev)


def test_fuse_refuses_evaluations_that_label_the_images_differently(tmp_path, capsys):  # case 6
    labels = [i % 10 for i in range(40)]
    a = saved_evaluation(tmp_path / "a" / "posteriors.pt", labels, 0)
    b = saved_evaluation(tmp_path / "b" / "posteriors.pt", [(y + 1) % 10 for y in labels], 1)
    assert cli.main(["fuse", str(a), str(b), "--protocol", "dense"]) == 2
    assert "label" in capsys.readouterr().err
    same = saved_evaluation(tmp_path / "c" / "posteriors.pt", labels, 2)
    assert cli.main(["fuse", str(a), str(same), "--protocol", "dense"]) == 0


def test_fuse_names_a_posteriors_file_without_meta(tmp_path, capsys):  # case 20
    good = saved_evaluation(tmp_path / "a" / "posteriors.pt", [i % 10 for i in range(8)], 0)
    torn = tmp_path / "b.pt"
    saved = torch.load(good, weights_only=True)
    del saved["meta"]
    torch.save(saved, torn)
    assert cli.main(["fuse", str(good), str(torn), "--protocol", "dense"]) == 2
    err = capsys.readouterr().err
    assert str(torn) in err and "meta" in err and len(err.strip().splitlines()) == 1


# -- 7, 8, 18, 19: a data set's identity covers its files ---------------------------------------------


def test_a_cached_evaluation_is_not_reused_after_the_data_changed(set_copy, tmp_path, capsys):  # case 7
    ckpt = write_checkpoint(tmp_path / "a.pt")
    assert cli.main(evaluate_args(ckpt, set_copy)) == 0
    capsys.readouterr()
    for jpeg in (set_copy / "val").glob("*.JPEG"):  # every val image overwritten in place
        Image.new("RGB", (48, 48), (200, 30, 30)).save(jpeg, quality=90)
    assert cli.main(evaluate_args(ckpt, set_copy)) == 2
    assert "does not match its manifest" in capsys.readouterr().err


def test_images_added_to_a_generated_set_are_noticed(set_copy, tmp_path, capsys):  # case 8
    before = data.data_identity(set_copy)
    folder = next((set_copy / "train").iterdir())
    for i, jpeg in enumerate(sorted(folder.glob("*.JPEG"))):
        shutil.copy(jpeg, folder / f"extra_{i}.JPEG")
    assert cli.main(["data", "check", "--root", str(set_copy)]) == 1
    assert "not in the manifest" in capsys.readouterr().out
    with pytest.raises(ValueError, match="extra_0.JPEG"):
        data.data_identity(set_copy)
    assert cli.main(train_args(set_copy, "--config", "A", "--out", str(tmp_path / "run"))) == 2
    assert "not in the manifest" in capsys.readouterr().err and not (tmp_path / "run" / "checkpoint.pt").exists()
    for extra in folder.glob("extra_*"):
        extra.unlink()
    assert data.data_identity(set_copy) == before


@pytest.mark.parametrize("manifest", [{"name": "my photos", "version": 2}, ["a.JPEG", "b.JPEG"]])
def test_a_foreign_or_list_manifest_is_one_line(set_copy, tmp_path, capsys, manifest):  # cases 18, 19
    (set_copy / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["data", "check", "--root", str(set_copy)]) == 1
    assert "is not the manifest of a vggrepro synthetic set" in capsys.readouterr().out
    assert cli.main(evaluate_args(write_checkpoint(tmp_path / "a.pt"), set_copy)) == 2
    err = capsys.readouterr().err
    assert "manifest.json is not the manifest" in err and "rename" in err and len(err.strip().splitlines()) == 1


# -- 9, 10: what the reader drops or misreads -------------------------------------------------------------


def test_unlabelled_val_images_are_counted_and_reported(plain_copy, tmp_path, capsys):  # case 9
    table = plain_copy / "LOC_val_solution.csv"
    header, *rows = table.read_text().splitlines()
    typo = [r.replace(",n0", ",x0", 1) for r in rows[:3]]  # a wnid no class has
    table.write_text("\n".join([header, *typo, *rows[5:]]) + "\n")  # and two rows gone
    assert len(data.ILSVRC(plain_copy, "val").unlabelled) == 5
    ckpt = write_checkpoint(tmp_path / "a.pt")
    assert cli.main(evaluate_args(ckpt, plain_copy, "--out", str(tmp_path / "eval"))) == 0
    captured = capsys.readouterr()
    assert "on 15 images" in captured.out and "5 val image(s)" in captured.err
    assert json.loads((tmp_path / "eval" / "result.json").read_text())["unlabelled_images"] == 5


def test_16_bit_greyscale_decodes_to_8_bits(tmp_path):  # case 10
    levels = np.array([[0, 8321, 16643, 33287, 65535]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I;16")
    image = data.decode_image(path)
    assert image.shape == (3, 1, 5)
    assert image[0, 0].tolist() == [0, 32, 65, 130, 255] and torch.equal(image[0], image[2])


# -- 11, 17: the net a training starts from -------------------------------------------------------------


def test_init_from_a_refuses_a_net_that_is_not_a(tiny_set, tmp_path, capsys):  # case 11
    b = write_checkpoint(tmp_path / "b.pt", config="B")
    assert cli.main(train_args(tiny_set, "--config", "C", "--init", f"from-a:{b}", "--out", str(tmp_path / "c"))) == 2
    assert "holds net B, not A" in capsys.readouterr().err and not (tmp_path / "c" / "result.json").exists()


def test_init_checkpoint_of_another_width_is_one_line(tiny_set, tmp_path, capsys):  # case 17
    narrow = write_checkpoint(tmp_path / "narrow.pt", width=1 / 16)
    args = train_args(tiny_set, "--config", "A", "--init", f"checkpoint:{narrow}", "--out", str(tmp_path / "a"))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "width=0.0625" in err and "width=0.125" in err and len(err.strip().splitlines()) == 1


# -- 12: released weights and their pre-processing --------------------------------------------------------


def test_a_vggrepro_state_dict_as_weights_is_refused_unless_told(tiny_set, tmp_path, capsys):  # case 12
    weights = tmp_path / "mine.pth"
    torch.save(net_of().state_dict(), weights)
    args = ["evaluate", "--weights", str(weights), "--data", str(tiny_set), "--scales", "37"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "--preprocess" in err
    assert cli.main([*args, "--preprocess", "torchvision"]) == 0
    assert "pre-processing: torchvision's" in capsys.readouterr().out


# -- 13: relative folders in VGGREPRO_* ------------------------------------------------------------------


def test_a_relative_runs_folder_is_the_one_under_where_the_command_ran(tmp_path, monkeypatch):  # case 13
    toy = tmp_path / "toy"
    (toy / "book").mkdir(parents=True)
    (toy / "_toc.yml").write_text("format: jb-book\nroot: book/01_where\n")
    nb = new_notebook(
        cells=[
            new_code_cell('profile = "ci"', metadata={"tags": ["parameters"]}),
            new_code_cell("from vggrepro.core import runs\nprint(runs.runs_root().resolve())"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, toy / "book" / "01_where.ipynb")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv("VGGREPRO_RUNS", "relruns")
    [out] = book.run_book(only="01", root=toy, echo=lambda *a, **k: None)
    printed = nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"].strip()
    assert printed == str((here / "relruns").resolve())  # not toy/book/relruns, where the kernel ran


# -- 15, 16: devices ---------------------------------------------------------------------------------------


def test_an_unknown_device_is_one_line(tiny_set, tmp_path, capsys):  # case 15
    ckpt = write_checkpoint(tmp_path / "a.pt")
    assert cli.main(evaluate_args(ckpt, tiny_set, "--device", "gpu")) == 2
    assert "--device 'gpu'" in capsys.readouterr().err
    bench = ["bench", "train", "--device", "gpu", "--steps", "1", "--batch", "2", "--crop", "32", "--width", "0.0625"]
    assert cli.main([*bench, "--out", str(tmp_path / "b.json")]) == 2
    assert "--device 'gpu'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA runs --device cuda")
def test_cuda_on_a_cpu_only_torch_is_one_line(tiny_set, tmp_path, capsys):  # case 16
    assert cli.main(evaluate_args(write_checkpoint(tmp_path / "a.pt"), tiny_set, "--device", "cuda")) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "--device cpu" in err


# -- 21: a file name that is not UTF-8 ----------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_named(plain_copy, tmp_path, capsys):  # case 21
    val = plain_copy / "val"
    shutil.copy(next(val.glob("*.JPEG")), os.fsencode(val) + b"/bad\xff.JPEG")
    assert cli.main(["data", "check", "--root", str(plain_copy)]) == 1
    assert "bad\\xff.JPEG" in capsys.readouterr().out
    ckpt = write_checkpoint(tmp_path / "a.pt")
    assert cli.main(evaluate_args(ckpt, plain_copy)) == 2
    err = capsys.readouterr().err
    assert "bad\\xff.JPEG" in err and "rename" in err


# -- also broken: the replication, the README, read-only folders ----------------------------------------------


def test_another_seed_gets_a_data_folder_of_its_own(tmp_path, monkeypatch):
    """-p seed=1 (the documented replication) makes its set beside the profile's, never asking for
    the profile's own set to be deleted."""
    ci = profiles.PROFILES["ci"]
    monkeypatch.setitem(profiles.PROFILES, "ci", ci.replace(data_root=str(tmp_path / "synth-ci"), **TINY))
    own = data.ensure_synthetic(get_profile("ci"), verbose=False)
    replication = get_profile("ci", seed=1)
    assert Path(replication.data_root) == tmp_path / "synth-ci-seed1"
    made = data.ensure_synthetic(replication, verbose=False)
    assert made == tmp_path / "synth-ci-seed1" and made != own
    assert synth_seed(made) == 1 and synth_seed(own) == 0
    assert data.ensure_synthetic(get_profile("ci", seed=1), verbose=False) == made  # found, verified
    # pointed at the profile's own set by hand, another seed is refused without asking to delete it
    with pytest.raises(ValueError, match="keep it") as refused:
        data.ensure_synthetic(get_profile("ci", seed=2, data_root=str(own)), verbose=False)
    assert "delete" not in str(refused.value) and synth_seed(own) == 0


def synth_seed(root: Path) -> int:
    return json.loads((root / "manifest.json").read_text())["params"]["seed"]


def test_the_readme_names_each_chapters_own_parameters():
    """The README's list of the chapters' own parameters says which chapter declares each (it said
    05 for what is 07's): every parameter a chapter declares, and no other, at its chapter."""
    text = " ".join((ROOT / "README.md").read_text().split())
    said = text.split("The chapters' own parameters:", 1)[1].split("- **A chapter that does not", 1)[0]
    readme = set()
    for names, first, last in re.findall(r"((?:`\w+`(?:, | and )?)+) \((\d\d)(?:-(\d\d))?", said):
        for name in re.findall(r"`(\w+)`", names):
            readme |= {(name, n) for n in range(int(first), int(last or first) + 1)}
    declared = {
        (name, int(nb.stem[:2]))
        for nb in book.notebooks(ROOT)
        for name in book.declared_parameters(book.load_source(nb))
        if name != "profile"
    }
    assert readme == declared


def read_only(folder: Path):
    """Make ``folder`` unwritable even to root (the immutable flag), or skip."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("no way to make a folder read-only for root here (chattr)")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_inplace_in_a_read_only_checkout_stops_before_running(fake_kernel, tmp_path):
    ran, _ = fake_kernel
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/01_x\n")
    nb = new_notebook(cells=[new_code_cell('profile = "ci"', metadata={"tags": ["parameters"]})])
    nbformat.write(nb, tmp_path / "book" / "01_x.ipynb")
    undo = read_only(tmp_path / "book")
    try:
        with pytest.raises(ValueError, match="cannot write to"):
            book.run_book(only="01", inplace=True, root=tmp_path, echo=lambda *a, **k: None)
    finally:
        undo()
    assert ran == []


def test_bench_in_a_read_only_folder_stops_before_measuring(tmp_path, monkeypatch, capsys):
    from vggrepro.cli import bench

    monkeypatch.setattr(bench, "run_grid", lambda *a, **k: pytest.fail("measured before finding it cannot write"))
    (tmp_path / "results").mkdir()
    undo = read_only(tmp_path / "results")
    try:
        args = [
            "bench",
            "train",
            "--steps",
            "1",
            "--batch",
            "2",
            "--crop",
            "32",
            "--width",
            "0.0625",
            "--device",
            "cpu",
        ]
        assert cli.main([*args, "--out", str(tmp_path / "results" / "b.json")]) == 2
    finally:
        undo()
    assert "cannot write to" in capsys.readouterr().err
