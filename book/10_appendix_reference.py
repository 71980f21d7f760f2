# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-jupytext.text_representation.format_version
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Appendix: calibration, benchmarks and cost
#
# Reference material, kept out of the chapters' argument: how hard the synthetic data was made and
# why, how fast the nets train on the machines measured so far, and how long the `gpu` book should
# take. Every table reads a record committed under `results/` with its provenance (device,
# versions, commit, date); nothing here is typed by hand, and a table that has no record yet says
# so in one line. This page tests no claim of the paper.

# %% tags=["parameters", "remove-input"]
profile = "ci"

# %% tags=["hide-input"]
import pandas as pd

from vggrepro.core import runs
from vggrepro.core.profiles import get_profile
from vggrepro.experiments import budget, results

prof = get_profile(profile)

# %% [markdown]
# ## How hard the synthetic set is, and why it is set so
#
# The comparisons need room: net A must land well above chance and well below 100% top-1. Before
# calibration, with objects 30-90% of the image at any rotation and the paper's dropout, a width/8
# A reached about 21% top-1 accuracy in ten epochs, and the levers one would try first barely moved
# it. `scripts/calibrate_ci.py` trains A once per variant, each a change to that starting point;
# the table reads its record. What moved A was the object's size in pixels (at 32 px an object of a
# third of the image is ten pixels wide) and dropping dropout; the `ci` row is the profile as it is.
# Under the `cpu` profile the table is that profile's own record, `results/cpu_calibration.json`,
# made the same way by `scripts/calibrate_cpu.py`.

# %% tags=["hide-input"]
# A profile calibrated on its own (`cpu`: scripts/calibrate_cpu.py) has its own record.
recorded = results.results_root() / f"{prof.name}_calibration.json"
if not recorded.exists():
    recorded = results.results_root() / "ci_calibration.json"
calibration = runs.read_recorded(recorded)
print(f"{recorded.name}: {calibration['question']}")
print("target:", calibration["target"])
pd.DataFrame(
    [
        {
            "variant": r["variant"],
            "change": r["change"],
            "epochs": r["epochs"],
            "top-1 error (%)": r["top1_err"],
            "top-1 accuracy (%)": r["top1_accuracy"],
        }
        for r in calibration["results"]
    ]
).set_index("variant")

# %% [markdown]
# ## Training throughput
#
# Recorded by `vggrepro bench train` (img/s, and MFU: achieved FLOP/s over the device's peak, with
# FLOPs counted from the architecture as 3 x 2 x MACs per training image; the peak of a CPU is a
# measured matrix product). GPU rows appear once a run on a GPU has been recorded under `results/`.

# %% tags=["hide-input"]
records = [
    dict(
        device=record["provenance"]["device"],
        date=record["provenance"]["date"][:10],
        **row,
    )
    for _, record in results.recorded("bench_train_*.json")
    for row in record["rows"]
]
cols = [
    "device",
    "date",
    "config",
    "width",
    "size",
    "batch",
    "channels_last",
    "bf16",
    "compile",
    "img_per_s",
    "mfu",
]
bench = pd.DataFrame(records, columns=cols)
bench["width"] = bench["width"].map(
    lambda w: "1" if w == 1 else f"1/{round(1 / w)}"
)  # 0.125 is 1/8, not 0.1
bench["mfu"] = bench["mfu"].map(lambda m: f"{m:.1%}")
bench = bench.rename(
    columns={"channels_last": "channels last", "img_per_s": "img/s", "mfu": "MFU"}
)
bench if records else "no benchmark recorded under results/ yet"

# %% [markdown]
# ## The `gpu` book's time, estimated from FLOPs
#
# Before any GPU run, the work of each chapter under the `gpu` profile can be counted from the
# architecture (`vggrepro.experiments.budget`: D is 15.47 GMAC per 224 crop, about 93 GFLOP per training
# image) and turned into minutes at an assumed share of an H100's 989 bf16 TFLOP/s. Training counts
# every epoch the profile allows, so these are upper bounds. When a GPU check has been recorded
# (`results/gpu_check.json`), the share it measured gives a second column.

# %% tags=["hide-input"]
gpu_prof = get_profile("gpu")
estimate = pd.DataFrame(budget.table(gpu_prof)).set_index("notebook")
checks = results.recorded("gpu_check.json")
measured = budget.measured_utilisation(checks[0][1], gpu_prof) if checks else None
if measured:
    share, device = measured
    estimate[f"minutes at {share:.0%} (measured on {device})"] = [
        r["minutes"] for r in budget.table(gpu_prof, share)
    ]
print(
    f"assumed utilisation {budget.ASSUMED_UTILISATION:.0%}; "
    + (
        "no GPU check recorded under results/ yet"
        if not measured
        else "measured column from results/gpu_check.json"
    )
)
estimate

# %% [markdown]
# ## Released weights evaluated on ImageNet
#
# Evaluations of the authors' released weights, made on a machine with ImageNet, are committed as
# `results/released/<name>.json` (the `result.json` that `vggrepro evaluate --out` writes; the
# posteriors stay behind, they are large). Chapters 5 and 6 set the paper's numbers beside them.

# %% tags=["hide-input"]
released = results.released_evaluations()
pd.DataFrame(released).set_index(
    "run"
) if released else "no evaluation of released weights recorded under results/ yet"
