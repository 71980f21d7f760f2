"""scripts/chain_rates.py: a recorded net's achieved FLOP/s, against a count made here by hand."""

import importlib.util

from vggrepro import models
from vggrepro.core.profiles import get_profile
from vggrepro.core.runs import REPO

spec = importlib.util.spec_from_file_location("chain_rates", REPO / "scripts" / "chain_rates.py")
chain_rates = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chain_rates)


def test_a_nets_flops_are_its_images_times_six_macs_plus_validation_at_two(tmp_path):
    cpu = get_profile("cpu")
    net = models.build("A", width=cpu.width, num_classes=cpu.num_classes, crop=cpu.crop)
    macs = models.count_macs(net)
    train, val = cpu.synth_train_per_class * cpu.num_classes, 2400
    chain = {"nets": [{"run": "train-A-x", "config": "A", "epochs": 2, "seconds": 100.0, "val_images": val}]}
    (row,) = chain_rates.net_rates(chain, cpu, peak_gflops=156.5)
    expected = 2 * (train * 6 * macs + val * 2 * macs) / 100.0 / 1e9
    assert abs(row["achieved_gflop_per_s"] - expected) < 0.06
    assert abs(row["percent_of_peak"] - 100 * expected / 156.5) < 0.1
    assert row["train_img_per_s"] == 2 * train / 100.0


def test_the_clock_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu MHz\t\t: 2400.000\nprocessor\t: 1\ncpu MHz\t\t: 2500.000\n")
    assert chain_rates.clock_ghz(info) == 2.45
    assert chain_rates.clock_ghz(tmp_path / "none") is None
