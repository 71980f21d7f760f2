"""The same command gives the same bits: whether the data's statistics were measured or read, and
whatever vector width the processor offers (the CPU kernels are pinned, see vggrepro.core.kernels).

These are the properties the stored `ci` outputs rest on; without them a fresh clone prints other
numbers than the notebooks hold (a 3e-8 difference after 16 steps grew into 7-point swings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vggrepro import data
from vggrepro.core import kernels
from vggrepro.train import checkpoints

# A tiny run: 4 classes, 32 px crops, width 1/16, 2 epochs of 8 steps.
KNOBS = dict(
    num_classes=4,
    crop=32,
    width=1 / 16,
    batch_size=8,
    epochs=2,
    checkpoint_every=100,
    threads=2,
    synth_train_per_class=16,
    synth_val_per_class=4,
    synth_min_side=(40, 56),
    lr_patience=5,
)


def train_cli(root: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    knobs = [f"--set={k}={v!r}" for k, v in KNOBS.items()] + [f"--set=data_root={str(root)!r}"]
    cmd = [
        sys.executable,
        "-m",
        "vggrepro",
        "train",
        "--profile",
        "ci",
        "--config",
        "A",
        "--scale",
        "37",
        "--out",
        str(out),
        "--no-progress",
        *knobs,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def weights(run_dir: Path) -> dict:
    return checkpoints.load(run_dir / "checkpoint.pt")["model"]


def assert_bit_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: max difference {(a[k] - b[k]).abs().max().item():.3g}"


def test_first_run_on_a_fresh_data_folder_equals_a_later_run(tmp_path):
    # The first run generates the set and measures stats.json; the second reads both.
    root = tmp_path / "fresh-set"
    train_cli(root, tmp_path / "first")
    assert (root / "stats.json").is_file()
    train_cli(root, tmp_path / "second")
    assert_bit_equal(weights(tmp_path / "first"), weights(tmp_path / "second"))


def test_measured_statistics_equal_the_stored_ones_in_value_and_layout(tmp_path):
    root = tmp_path / "set"
    from vggrepro.core.profiles import get_profile

    data.ensure_synthetic(get_profile("ci", data_root=str(root), **KNOBS), verbose=False)
    measured = data.dataset_stats(root, progress=False)
    read = data.dataset_stats(root, progress=False)
    assert measured.mean_rgb == read.mean_rgb
    for a, b in ((measured.eigval, read.eigval), (measured.eigvec, read.eigvec)):
        assert torch.equal(a, b) and a.stride() == b.stride() and a.is_contiguous()


def test_pixel_statistics_are_exact_sums_and_a_true_eigendecomposition():
    # Two 1x2 images by hand: pixels (0,0,0), (255,255,255), (255,0,0), (0,0,0).
    imgs = [
        torch.tensor([[[0, 255]], [[0, 255]], [[0, 255]]], dtype=torch.uint8),
        torch.tensor([[[255, 0]], [[0, 0]], [[0, 0]]], dtype=torch.uint8),
    ]
    s = data.pixel_stats(imgs)
    assert s.mean_rgb == (127.5, 63.75, 63.75) and (s.images, s.pixels) == (2, 4)
    # covariance in 0-1 units: E[xy] - E[x]E[y]
    cov = torch.tensor([[0.25, 0.125, 0.125], [0.125, 0.1875, 0.1875], [0.125, 0.1875, 0.1875]], dtype=torch.float64)
    rebuilt = s.eigvec @ torch.diag(s.eigval) @ s.eigvec.T
    torch.testing.assert_close(rebuilt, cov, rtol=0, atol=1e-15)
    torch.testing.assert_close(s.eigvec.T @ s.eigvec, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-15)
    assert list(s.eigval) == sorted(s.eigval, reverse=True)


def test_the_ci_profile_refuses_unpinned_kernels(monkeypatch):
    kernels.check("ci")  # this process is pinned (conftest imports vggrepro first)
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    with pytest.raises(ValueError, match="ci profile needs the pinned CPU kernels.*MKL_CBWR"):
        kernels.check("ci")
    kernels.check("gpu")  # other profiles make no such promise
    monkeypatch.setenv("MKL_CBWR", kernels.PINNED["MKL_CBWR"])
    monkeypatch.setenv(kernels.OPT_OUT, "1")
    with pytest.raises(ValueError, match="VGGREPRO_NATIVE_KERNELS"):
        kernels.check("ci")


def _cpu_has(flag: str) -> bool:
    try:
        return f" {flag} " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


@pytest.mark.skipif(not _cpu_has("avx2"), reason="the pin needs an x86-64 processor with AVX2")
def test_a_run_records_the_kernels_it_used(tmp_path):
    root = tmp_path / "set"
    train_cli(root, tmp_path / "run")
    used = json.loads((tmp_path / "run" / "result.json").read_text())["provenance"]["cpu_kernels"]
    assert used["aten"] == "AVX2" and used["MKL_CBWR"] == kernels.PINNED["MKL_CBWR"]


@pytest.mark.skipif(not _cpu_has("avx512f"), reason="this processor has no AVX-512 to compare with")
def test_avx512_and_avx2_kernels_give_the_same_weights(tmp_path):
    # A machine whose libraries would choose AVX-512 against one limited to AVX2: the ci pin holds both.
    wide = dict(
        ATEN_CPU_CAPABILITY="avx512",
        ONEDNN_MAX_CPU_ISA="AVX512_CORE",
        MKL_ENABLE_INSTRUCTIONS="AVX512",
        MKL_CBWR="AVX512",
    )
    root = tmp_path / "set"
    train_cli(root, tmp_path / "avx2", env=dict(os.environ, **kernels.PINNED))
    train_cli(root, tmp_path / "avx512", env=dict(os.environ, **wide))
    assert_bit_equal(weights(tmp_path / "avx2"), weights(tmp_path / "avx512"))
