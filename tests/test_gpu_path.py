"""The `gpu` profile's code path, run on the CPU at toy size so that it never rots unseen (issue 17):
the profile's own knobs (dropout 0.5, patience 1, workers), driven as on CUDA (bf16 autocast, the
loss read every few steps, cudnn autotuning while training, each batch's crops made in one pass),
then its evaluation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vggrepro import data
from vggrepro.core.devices import Speed
from vggrepro.core.profiles import get_profile
from vggrepro.data import loader
from vggrepro.evaluate.cached import evaluate_cached
from vggrepro.evaluate.protocols import Protocol
from vggrepro.train import checkpoints, loop
from vggrepro.train.recipe import Settings, train

AS_ON_CUDA = Speed("cpu", bf16=True, sync_every=4, benchmark=True, batched_crops=True)


@pytest.fixture(scope="module")
def toy_gpu(tmp_path_factory):
    profile = dataclasses.replace(
        get_profile("gpu"),
        device="cpu",
        width=1 / 16,
        crop=32,
        num_classes=4,
        batch_size=8,
        epochs=2,
        checkpoint_every=100,
        threads=1,
        synth_train_per_class=16,
        synth_val_per_class=4,
        synth_min_side=(40, 56),
        data_root=str(tmp_path_factory.mktemp("data") / "synth-toy-gpu"),
    )
    data.ensure_synthetic(profile, verbose=False)
    return profile


def test_the_gpu_profile_trains_and_evaluates_at_toy_size_reading_the_loss_every_few_steps(
    toy_gpu, tmp_path, monkeypatch
):
    reads = []
    real = loop.Trainer.read_losses

    def counted(self):
        reads.append((self.epoch, len(self.losses)))
        real(self)

    monkeypatch.setattr(loop.Trainer, "read_losses", counted)
    batched = []
    real_crops = loader.crop_batch
    monkeypatch.setattr(loader, "crop_batch", lambda *a: batched.append(1) or real_crops(*a))
    result = train(
        toy_gpu, Settings(config="A", scale=toy_gpu.S(256)), tmp_path / "run", progress=False, speed=AS_ON_CUDA
    )
    assert result["steps"] == 16 and result["epochs"] == 2
    assert len(batched) == 16  # every training batch came from the one-pass device path
    syncs = [(epoch, n) for epoch, n in reads if n]  # reads that had losses to read: one host sync each
    assert [sum(1 for e, _ in syncs if e == epoch) for epoch in (0, 1)] == [2, 2]  # 8 steps / 4, per epoch
    assert not torch.backends.cudnn.benchmark  # autotuning was for the run only

    ev = evaluate_cached(
        tmp_path / "run" / "checkpoint.pt",
        toy_gpu,
        Protocol("both", [toy_gpu.S(256), toy_gpu.S(384)]),
        out=tmp_path / "eval",
    )
    assert ev["images"] == 16 and 0 <= ev["top1_err"] <= 100


def test_a_nan_between_host_reads_stops_training_with_no_checkpoint_after_it(toy_gpu, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = loop.loss_fn

    def poisoned(logits, labels):
        calls["n"] += 1
        return real(logits, labels) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr("vggrepro.train.recipe.loss_fn", poisoned)
    profile = dataclasses.replace(toy_gpu, checkpoint_every=2)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3 .*\(step 2\)"):
        train(profile, Settings(config="A", scale=profile.S(256)), tmp_path / "nan", progress=False, speed=AS_ON_CUDA)
    assert checkpoints.load(tmp_path / "nan" / "checkpoint.pt")["step"] == 2
