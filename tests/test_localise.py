"""The localisation net (vggrepro.localise): heads, loss and fine-tuning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from loc_helpers import IDENTITY, FakeSample, image, loader_of, one_thread, tiny_classifier  # noqa: F401
from torch import nn

from vggrepro.core import runs
from vggrepro.core.profiles import get_profile
from vggrepro.core.runs import Run
from vggrepro.localise import finetune as L
from vggrepro.train import checkpoints, loop

# -- heads and loss -----------------------------------------------------------------------------


def test_localiser_copies_all_but_fc8():
    net = tiny_classifier(classes=3)
    for kind, outputs in (("SCR", 4), ("PCR", 12)):
        loc = L.localiser(net, kind)
        assert loc.layer("fc8").out_features == outputs and loc.box_kind == kind and loc.box_classes == 3
        mine, theirs = loc.state_dict(), net.state_dict()
        for key in theirs:
            if not key.startswith("classifier.6."):
                assert torch.equal(mine[key], theirs[key]), key
    # the fresh layer depends on the seed only
    a, b = L.localiser(net, "PCR", seed=1), L.localiser(net, "PCR", seed=1)
    assert torch.equal(a.layer("fc8").weight, b.layer("fc8").weight)


def test_box_of_selects_the_class_box():
    out = torch.arange(2 * 12, dtype=torch.float32).reshape(2, 12)  # PCR, 3 classes
    assert L.box_of(out, "PCR", [2, 0]).tolist() == [[8, 9, 10, 11], [12, 13, 14, 15]]
    scr = torch.arange(8.0).reshape(2, 4)
    assert torch.equal(L.box_of(scr, "SCR", [2, 0]), scr)
    maps = torch.arange(12 * 2 * 3, dtype=torch.float32).reshape(1, 12, 2, 3)  # dense maps
    assert torch.equal(L.box_of(maps, "PCR", [1])[0], maps[0, 4:8])
    with pytest.raises(ValueError, match="outside"):
        L.box_of(out, "PCR", [3, 0])


def test_box_loss_is_half_mean_squared_euclidean():
    out = torch.zeros(2, 12, requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]])
    loss = L.box_loss(out, "PCR", targets, [1, 2])
    assert loss.item() == pytest.approx((1 + 4) / (2 * 2))
    loss.backward()
    grad = out.grad.reshape(2, 3, 4)
    assert grad[0, 1].tolist() == [-0.5, 0, 0, 0] and grad[1, 2].tolist() == [0, -1.0, 0, 0]
    assert float(grad[0, [0, 2]].abs().sum() + grad[1, :2].abs().sum()) == 0  # other classes untouched


# -- fine-tuning --------------------------------------------------------------------------------


def fs(kind, layers, *, S=36, epochs=2, batch_size=4, lr=1e-3):
    """Fine-tuning settings, small by default."""
    return L.FinetuneSettings(kind, layers, S, epochs, batch_size=batch_size, lr=lr)


def tune(net, settings, samples, runs_root=None, **runtime):
    """:func:`L.finetune` from ``net`` (no preprocessing) under the profile name "test", with its
    runtime spelled out as keywords."""
    return L.finetune(
        L.Source(net, IDENTITY),
        settings,
        samples,
        profile_name="test",
        runs_root=runs_root,
        runtime=L.Runtime(**runtime),
    )


def _train_set(n=8):
    images, samples = {}, []
    for i in range(n):
        h, w = 40 + 4 * i, 56 - 2 * i
        images[str(i)] = image(h, w, i)
        samples.append(FakeSample(str(i), i % 3, [[4 + i, 6, w - 8, h - 4 - i]]))
    samples.append(FakeSample("none", 0, []))  # no box: skipped
    return images, samples


def test_finetune_fc_trains_fc_layers_only_and_is_cached(tmp_path):
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    args = dict(runs_root=tmp_path, load_image=loader_of(images), progress=False)
    loc, result = tune(net, fs("PCR", "fc"), samples, **args)
    assert result["epochs"] == 2 and len(result["history"]) == 2 and result["settings"]["train_images"] == 8
    assert "provenance" in result and loc.box_kind == "PCR"
    assert torch.equal(loc.layer("conv1_1").weight, net.layer("conv1_1").weight)  # frozen
    assert not torch.equal(loc.layer("fc6").weight, net.layer("fc6").weight)  # trained

    again, result2 = tune(net, fs("PCR", "fc"), samples, **dict(args, load_image=lambda s: 1 / 0))
    assert result2 == result  # re-used: nothing loaded, nothing trained
    for key, value in loc.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
    ckpt_net, meta = L.load_localiser(result["checkpoint"])
    assert meta["kind"] == "PCR" and meta["layers"] == "fc" and meta["classes"] == 3


def test_fc_runs_sharing_frozen_outputs_equal_runs_alone(tmp_path):
    """SCR then PCR (fc only) with one ``shared`` dict: the PCR run re-uses the SCR run's pool5
    outputs without loading an image, and both nets equal those trained alone."""
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    alone = {
        kind: tune(net, fs(kind, "fc"), samples, tmp_path / "alone", load_image=loader_of(images), progress=False)[0]
        for kind in ("SCR", "PCR")
    }
    shared = {}
    scr, _ = tune(
        net, fs("SCR", "fc"), samples, tmp_path / "shared", load_image=loader_of(images), shared=shared, progress=False
    )
    assert len(shared) == 2  # one entry per epoch
    pcr, _ = tune(
        net, fs("PCR", "fc"), samples, tmp_path / "shared", load_image=lambda s: 1 / 0, shared=shared, progress=False
    )
    for kind, loc in (("SCR", scr), ("PCR", pcr)):
        for key, value in alone[kind].state_dict().items():
            assert torch.equal(loc.state_dict()[key], value), (kind, key)


def test_finetune_runs_through_the_training_loop(tmp_path, monkeypatch):
    """One loop for classification and box regression: every step of a fine-tuning run is a step of
    :class:`vggrepro.train.loop.Trainer`, with a constant lr and no validation."""
    steps, validated = [], []
    real = loop.Trainer.train_step

    def counted(self, step_fn, x, *targets):
        steps.append((self.epoch, self.optimizer.param_groups[0]["lr"], len(targets)))
        return real(self, step_fn, x, *targets)

    monkeypatch.setattr(loop.Trainer, "train_step", counted)
    monkeypatch.setattr(loop, "validate", lambda *a, **k: validated.append(1))
    images, samples = _train_set()
    _, result = tune(
        tiny_classifier(32, 3),
        fs("SCR", "all", lr=2e-3),
        samples,
        tmp_path,
        load_image=loader_of(images),
        progress=False,
    )
    assert steps == [(0, 2e-3, 2)] * 2 + [(1, 2e-3, 2)] * 2 and not validated  # 8 images, batches of 4, 2 epochs
    assert [(h["epoch"], h["images"]) for h in result["history"]] == [(1, 8), (2, 8)]


def test_finetune_all_is_deterministic_and_trains_convs(tmp_path):
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    args = dict(load_image=loader_of(images), progress=False)
    a, ra = tune(net, fs("SCR", "all", epochs=1), samples, tmp_path / "a", **args)
    b, rb = tune(net, fs("SCR", "all", epochs=1), samples, tmp_path / "b", **args)
    assert not torch.equal(a.layer("conv1_1").weight, net.layer("conv1_1").weight)
    assert ra["final_loss"] == rb["final_loss"]
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


def test_finetune_lowers_the_loss_on_a_constant_box(tmp_path):
    """Every image holds the same box: a few epochs of fc fine-tuning must fit it better than the
    fresh fc8 (whose outputs start near 0)."""
    net = tiny_classifier(32, 3)
    images = {str(i): image(32, 32, i) for i in range(16)}
    samples = [FakeSample(str(i), i % 3, [[4, 4, 28, 28]]) for i in range(16)]
    _, result = tune(
        net,
        fs("SCR", "fc", S=32, epochs=6, batch_size=8, lr=1e-2),
        samples,
        tmp_path,
        load_image=loader_of(images),
        progress=False,
    )
    losses = [h["loss"] for h in result["history"]]
    # the target is (0.5, 0.5, 0.75, 0.75) everywhere: the starting loss is about |t|^2 / 2 = 0.81
    assert losses[0] > 0.5 and losses[-1] < losses[0] / 2


def test_finetune_rejects_bad_arguments(tmp_path):
    net = tiny_classifier(32, 3)
    with pytest.raises(ValueError, match="SCR"):
        tune(net, fs("XYZ", "fc", S=32, epochs=1), [])
    with pytest.raises(ValueError, match="'fc'"):
        tune(net, fs("SCR", "conv", S=32, epochs=1), [])
    with pytest.raises(ValueError, match="no training sample"):
        tune(net, fs("SCR", "fc", S=32, epochs=1), [FakeSample("x", 0, [])], tmp_path)


def test_finetune_resumes_an_interrupted_run_exactly(tmp_path):
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    whole, _ = tune(net, fs("PCR", "all"), samples, tmp_path / "a", load_image=loader_of(images), progress=False)

    calls = []

    def dies_in_epoch_2(sample):  # 8 images an epoch: fail on the 11th
        calls.append(sample)
        if len(calls) > 10:
            raise RuntimeError("interrupted")
        return images[sample.path]

    with pytest.raises(RuntimeError, match="interrupted"):
        tune(net, fs("PCR", "all"), samples, tmp_path / "b", load_image=dies_in_epoch_2, progress=False)
    resumed, result = tune(net, fs("PCR", "all"), samples, tmp_path / "b", load_image=loader_of(images), progress=False)
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    # the trainer's checkpoint layout and metrics log: one row per epoch, none left from the killed epoch
    ckpt = checkpoints.load(result["checkpoint"])
    assert {"model", "meta", "optimizer", "rng", "epoch", "step", "step_in_epoch"} <= set(ckpt)
    assert [r["epoch"] for r in runs.read_metrics(Path(result["run_dir"]) / "metrics.jsonl")] == [1, 2]


def test_finetune_under_ci_uses_the_profiles_dropout(tmp_path, monkeypatch):
    """The localisation net trains with the profile's dropout (ci: none), not the paper's 0.5 that
    ``build`` gives, and the run key records it, so another dropout is another run."""
    ci = get_profile("ci")
    assert ci.dropout == 0.0
    net = tiny_classifier(32, 3)
    assert net.dropout == 0.5
    images, samples = _train_set()
    settings = L.FinetuneSettings.of_profile(ci, "PCR", "all", 36, epochs=1)
    assert (settings.dropout, settings.batch_size, settings.lr, settings.seed) == (0.0, ci.batch_size, ci.lr, ci.seed)
    trained = []
    real = L.localiser
    monkeypatch.setattr(L, "localiser", lambda *a, **k: trained.append(real(*a, **k)) or trained[-1])
    loc, result = L.finetune(
        L.Source(net, IDENTITY),
        settings,
        samples,
        profile_name="ci",
        runs_root=tmp_path,
        runtime=L.Runtime(load_image=loader_of(images), progress=False),
    )
    drops = lambda m: [d.p for d in m.modules() if isinstance(d, nn.Dropout)]
    assert len(trained) == 1 and drops(trained[0]) == [0.0, 0.0]  # the net that was trained
    assert drops(loc) == [0.0, 0.0] and result["settings"]["dropout"] == 0.0
    assert L.load_localiser(result["checkpoint"])[1]["dropout"] == 0.0
    other = L.run_key(L.Source(net, IDENTITY), dataclasses.replace(settings, dropout=0.5), samples[:-1])
    assert Run("ci", other).id != Path(result["run_dir"]).name


def test_finetune_runs_on_the_given_device(tmp_path, monkeypatch):
    """The device reaches the net and the returned net; a resume loads the checkpoint to the CPU
    whatever the device (a CUDA-mapped RNG state would not restore). On CPU: spies record the
    devices asked for, with "cpu:0" standing for another device."""
    net = tiny_classifier(32, 3)
    images, samples = _train_set()
    calls = []

    def dies_in_epoch_2(sample):
        calls.append(sample)
        if len(calls) > 10:
            raise RuntimeError("interrupted")
        return images[sample.path]

    with pytest.raises(RuntimeError, match="interrupted"):
        tune(net, fs("SCR", "all"), samples, tmp_path, load_image=dies_in_epoch_2, progress=False)
    asked, loaded = [], []
    real_to, real_load = torch.nn.Module.to, checkpoints.load

    def spy(module, *a, **kw):
        asked.append(str(a[0]) if a else str(kw.get("device")))
        return real_to(module, *a, **kw)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    monkeypatch.setattr(
        checkpoints,
        "load",
        lambda path, map_location="cpu": loaded.append(str(map_location)) or real_load(path, map_location),
    )
    loc, result = tune(
        net, fs("SCR", "all"), samples, tmp_path, load_image=loader_of(images), device="cpu:0", progress=False
    )
    assert [h["epoch"] for h in result["history"]] == [1, 2]  # resumed
    assert asked.count("cpu:0") >= 2 and loc.layer("fc8").weight.device == torch.device("cpu")
    assert loaded and set(loaded) == {"cpu"}
