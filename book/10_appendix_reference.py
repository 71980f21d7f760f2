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
# made by `scripts/probe_cpu.py`: its current design (objects sized like ILSVRC-2012's, every net
# trained until the paper's stopping rule or 50 epochs) calibrated on the nets themselves.

# %% tags=["hide-input"]
# A profile calibrated on its own (`cpu`: scripts/probe_cpu.py) has its own record.
recorded = results.results_root() / f"{prof.name}_calibration.json"
if not recorded.exists():
    recorded = results.results_root() / "ci_calibration.json"
calibration = runs.read_recorded(recorded)
if "nets" in calibration:  # the nets of the design, each trained as the book trains it
    print(f"{recorded.name}: {calibration['what']}")
    table = pd.DataFrame(
        {
            name: {
                "top-1 error (%), own check": n["top1_err_at_own_check"],
                "epochs": n["epochs"],
                "lr cuts": n["lr_cuts"],
                "stopped": n["stopped"],
            }
            for name, n in calibration["nets"].items()
        }
    ).T
else:  # variants of net A's recipe, one change each
    print(f"{recorded.name}: {calibration['question']}")
    print("target:", calibration["target"])
    table = pd.DataFrame(
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
table

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
# ## The `gpu` book's time, counted from FLOPs and overheads
#
# Before any GPU run, the work of each chapter under the `gpu` profile can be counted from the
# architecture (`vggrepro.experiments.budget`: D is 15.47 GMAC per 224 crop, about 93 GFLOP per
# training image) and turned into minutes at a rate for D's training. Every net every chapter
# trains is counted, chapter 4's three chains of A and D among them, with every epoch the profile
# allows (so these are upper bounds), and so are the overheads a FLOP count leaves out: making the
# data set, each chapter's start and validation images, each net's start and checkpoints, and the
# new cuDNN plans of dense evaluation (stated assumptions in `budget.Overheads`, until a GPU
# window measures them). The table gives the minutes at three rates of D on one H100; when a GPU
# check has been recorded (`results/gpu_check.json`), the rate it measured gives a last column.

# %% tags=["hide-input"]
gpu_prof = get_profile("gpu")
minutes = {
    f"min at {r:,} img/s": [row["minutes"] for row in budget.gpu_book(gpu_prof, r)]
    for r in budget.RATES
}
rows = budget.gpu_book(gpu_prof, budget.RATES[1])
estimate = pd.DataFrame(
    {"nets": [row["nets_trained"] for row in rows], **minutes},
    index=pd.Index([row["notebook"] for row in rows], name="notebook"),
)
checks = results.recorded("gpu_check.json")
measured = budget.measured_rate(checks[0][1]) if checks else None
if measured:
    rate, device = measured
    estimate[f"min at {rate:,.0f} img/s (measured on {device})"] = [
        row["minutes"] for row in budget.gpu_book(gpu_prof, rate)
    ]
estimate.loc["total"] = estimate.sum().round(1)
before = budget.gpu_book_minutes(gpu_prof, cut=False)
print(
    "before issue 33's cuts (the set hashed per chapter, validation decoded per net, "
    "a 1 GB checkpoint every epoch): "
    + ", ".join(f"{m:.0f} min at {r:,} img/s" for r, m in before.items())
)
print("measured column from results/gpu_check.json" if measured else "no GPU check yet")
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
