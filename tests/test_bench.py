"""The benchmark's arithmetic (issue 17): an fp32 row is fp32 (TF32 off, divided by the fp32 peak),
cuDNN autotunes during the run and not after it, and the backward pass runs outside autocast; and
the `gpu` book's time per notebook, estimated from FLOPs."""

from __future__ import annotations

import pytest
import torch

from vggrepro import models
from vggrepro.bench import throughput as bench
from vggrepro.cli import bench as bench_cli
from vggrepro.core.profiles import get_profile
from vggrepro.experiments import budget, grid

TINY = dict(size=32, batch=2, width=1 / 16, crop=32, num_classes=4, steps=1)


@pytest.fixture(autouse=True)
def no_cpu_peak(monkeypatch):
    # a CPU's peak is a large matmul measured on the spot: slow in bf16, and not what is tested here
    monkeypatch.setattr(bench, "measured_matmul_tflops", lambda device, dtype: 1.0)


def test_each_precision_is_divided_by_its_own_peak(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    assert bench.peak_tflops("cuda", "fp32")[0] == 67.0
    assert bench.peak_tflops("cuda", "tf32")[0] == 494.0
    assert bench.peak_tflops("cuda", "bf16")[0] == 989.0
    with pytest.raises(ValueError, match="precision"):
        bench.peak_tflops("cuda", "fp16")


def test_rows_record_tf32_and_autotuning_is_on_for_the_run_only(monkeypatch):
    seen = []
    real = models.build

    def build(*a, **k):
        net = real(*a, **k)
        net.register_forward_pre_hook(
            lambda m, x: seen.append((torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32))
        )
        return net

    monkeypatch.setattr(models, "build", build)
    torch.backends.cudnn.benchmark = False
    fp32 = bench.bench_one(bench.Case("train", "A", **TINY), warmup=0)
    tf32 = bench.bench_one(bench.Case("train", "A", tf32=True, **TINY), warmup=0)
    assert (fp32["precision"], fp32["tf32"], tf32["precision"]) == ("fp32", False, "tf32")
    assert seen == [(True, False), (True, True)]  # autotuning on, TF32 as asked ...
    assert not torch.backends.cudnn.benchmark  # ... and put back after
    assert bench_cli._variants("fp32,cl+tf32,cl+bf16+compile") == [
        (False, False, False, False),
        (True, False, False, True),
        (True, True, True, False),
    ]


def test_backward_runs_outside_autocast(monkeypatch):
    during_backward = []
    real = models.build

    def build(*a, **k):
        net = real(*a, **k)
        net.features[0].weight.register_hook(lambda grad: during_backward.append(torch.is_autocast_enabled("cpu")))
        return net

    monkeypatch.setattr(models, "build", build)
    bench.bench_one(bench.Case("train", "A", bf16=True, **TINY), warmup=0)
    assert during_backward == [False]


def test_the_gpu_book_estimate_from_flops():
    gpu = get_profile("gpu")
    assert budget.train_flops("D", gpu) == pytest.approx(3 * 2 * 15.47e9, rel=1e-3)  # ~93 GFLOP per image
    assert budget.train_flops("D", gpu, "fc") < budget.train_flops("D", gpu) / 2
    for chapter in budget.BOOK:
        for name in chapter.trains + tuple(n for n, _, _ in chapter.evaluations):
            grid.entry(name)  # every net the plan names is a grid entry
    first = [n for ch in budget.BOOK for n in ch.trains]
    assert sorted(first) == sorted(grid.GRID)  # each grid net is first trained in one notebook
    at_40 = {r["notebook"]: r["minutes"] for r in budget.table(gpu, 0.4)}
    at_20 = {r["notebook"]: r["minutes"] for r in budget.table(gpu, 0.2)}
    assert at_20["02_training"] == pytest.approx(2 * at_40["02_training"], rel=0.02)
    with pytest.raises(ValueError, match="utilisation"):
        budget.estimate(gpu, utilisation=0)
    # chapter 4's depth claims train two more chains of A, D and A for A's and D's epochs
    three, one = ({e.notebook: e for e in budget.estimate(gpu, depth_chains=k)} for k in (budget.DEPTH_CHAINS, 1))
    n_train, n_val = (gpu.num_classes * k for k in (gpu.synth_train_per_class, gpu.synth_val_per_class))
    extra = 2 * sum(  # each epoch's images, and its validation
        gpu.epochs
        * b
        * (n_train * budget.train_flops(c, gpu) + n_val * budget.test_flops(c, gpu, "centre", [gpu.crop]))
        for c, b in (("A", 1), ("D", 1), ("A", 2))
    )
    assert three["04_single_scale"].train_pflop - one["04_single_scale"].train_pflop == pytest.approx(
        extra / 1e15, rel=1e-6
    )
    assert three["04_single_scale"].nets.count("D/256") == 2 and three["02_training"].nets == one["02_training"].nets


def test_the_gpu_book_at_three_rates_counts_its_overheads():
    gpu = get_profile("gpu")
    at = budget.gpu_book_minutes(gpu)
    assert list(at) == list(budget.RATES) and at[1500] > at[2500] > at[4000]
    rows = {r["notebook"]: r for r in budget.gpu_book(gpu, 2500)}
    assert rows["02_training"]["overhead_minutes"] > 0 and rows["data (once)"]["minutes"] > 0
    # compute scales with 1/rate; the overheads do not
    slow = {r["notebook"]: r for r in budget.gpu_book(gpu, 1250)}
    assert slow["02_training"]["compute_minutes"] == pytest.approx(2 * rows["02_training"]["compute_minutes"], abs=0.2)
    assert slow["02_training"]["overhead_minutes"] == pytest.approx(rows["02_training"]["overhead_minutes"], abs=0.5)
    before = budget.gpu_book_minutes(gpu, cut=False)
    assert all(before[r] > at[r] for r in budget.RATES)  # the cuts save minutes at every rate
    with pytest.raises(ValueError, match="rate"):
        budget.gpu_book(gpu, 0)


def test_a_recorded_gpu_check_gives_the_measured_utilisation():
    gpu = get_profile("gpu")
    record = dict(
        dry_run=False,
        provenance=dict(device="NVIDIA H200 (CUDA 12.8)"),
        steps=dict(train_loop=dict(ok=True, config="D", img_per_s_by_epoch=[3000.0, 4000.0])),
    )
    share, device = budget.measured_utilisation(record, gpu)
    assert share == pytest.approx(4000 * 92.8e9 / 989e12, rel=1e-3) and "H200" in device
    assert budget.measured_utilisation(dict(record, dry_run=True), gpu) is None
    # the check of issue 33 records the steady window's rate
    record["steps"]["train_loop"] = dict(ok=True, config="D", img_per_s=2500.0)
    assert budget.measured_rate(record) == (2500.0, "NVIDIA H200 (CUDA 12.8)")


def test_measured_estimate_counts_the_cpu_books_work():
    """The cpu book's minutes from measured rates: the extra chains of chapter 4's depth claim, the
    fc-only runs' cheaper steps, and evaluation at the measured forward rates."""
    cpu = get_profile("cpu")
    rates = budget.Rates(
        {c: 100.0 for c in {e.config for e in grid.GRID.values()}}, crop_gflop_s=10.0, dense_gflop_s=10.0
    )
    one, three = ({r["notebook"]: r for r in budget.measured_estimate(cpu, rates, depth_chains=k)} for k in (1, 3))
    # two more chains of A, of D and of the budget control (A for twice the epochs)
    extra = (
        2 * sum(budget.training_seconds(c, cpu, rates, cpu.epochs * b) for c, b in (("A", 1), ("D", 1), ("A", 2))) / 60
    )
    assert three["04_single_scale"]["train_minutes"] == pytest.approx(
        one["04_single_scale"]["train_minutes"] + extra, abs=0.1
    )
    assert three["04_single_scale"]["nets_trained"] == one["04_single_scale"]["nets_trained"] + 6
    assert three["02_training"] == one["02_training"]
    n_train = cpu.num_classes * cpu.synth_train_per_class
    assert budget.training_seconds("A", cpu, rates, 1, validate=False) == pytest.approx(n_train / 100.0)
    assert budget.training_seconds("D", cpu, rates, 1, "fc", validate=False) < n_train / 100.0 / 2
    assert one["01_architecture"]["minutes"] == 0 and one["05_multi_scale"]["train_minutes"] == 0
    assert one["05_multi_scale"]["eval_minutes"] > 0
    # two chains: every net trained and evaluated twice; chapter 4's depth chains are among them
    two = {r["notebook"]: r for r in budget.measured_estimate(cpu.replace(chains=2), rates, depth_chains=3)}
    assert two["02_training"]["train_minutes"] == pytest.approx(
        2 * one["02_training"]["train_minutes"], abs=0.15
    )  # each rounded to 0.1
    assert two["05_multi_scale"]["eval_minutes"] == pytest.approx(2 * one["05_multi_scale"]["eval_minutes"], abs=0.15)
    assert two["04_single_scale"]["nets_trained"] == 2 * one["04_single_scale"]["nets_trained"] + 3
