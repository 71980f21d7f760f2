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
# # Results: the paper's claims, tested
#
# Every chapter of this book ends with a table of the paper's claims that it can test. This page
# lines them up in one matrix: a row per claim, a column per scale at which the book has run
# (`ci`: a laptop CPU in minutes; `cpu`: two hours, several seeds; `gpu`: one GPU at 224 pixels;
# `imagenet`: the paper's own protocol). How a verdict is reached is explained below the matrix;
# the paper's numbers and each run's errors are in the details at the end.

# %% tags=["parameters", "remove-input"]
profile = "ci"

# %% tags=["hide-input"]
import math

import pandas as pd
from IPython.display import HTML, Markdown, display

from vggrepro.book import runner as book
from vggrepro.core import runs
from vggrepro.core.profiles import get_profile
from vggrepro.experiments import claims, results

prof = get_profile(profile)
pd.set_option("display.max_colwidth", None)

# The chapters of the book that test claims (from _toc.yml): this page and the appendix left out.
chapters = results.claiming(book.notebooks())
not_run = results.missing(chapters, prof.name)
message = results.runs_note(chapters, prof.name)
if not_run:
    message += (
        f" Not run yet under the `{prof.name}` profile: {', '.join(not_run)}; run them with "
        f"`{results.run_command(not_run, prof.name)}`, then run this page again."
    )
display(Markdown(message))

# %% [markdown]
# ## The claims, scale by scale
#
# One row per claim, numbered by chapter (4.3 is chapter 4's third claim; its whole text is in the
# details below). Each cell is that run's verdict, then the effect with its 95% interval: the first
# arm's error minus the second's, in points (for most claims the first arm is the one the paper
# favours, so a negative effect goes its way). "exact" marks a design fact, checked exactly.

# %% tags=["remove-input"]
matrix = results.matrix(prof.name)
display(
    HTML(results.matrix_html(matrix))
    if matrix
    else Markdown("No chapter has saved its claims yet.")
)

# %% [markdown]
# ## How a verdict is reached
#
# The scales, from the smallest:
#
# - **ci**: a laptop CPU in minutes: narrow nets, small crops, a few synthetic classes;
# - **cpu**: the evidence scale, two unattended hours on a laptop CPU with several seeds (a column
#   once its run is recorded under `results/claims_cpu/`);
# - **gpu**: one GPU, the paper's nets at full width and 224 pixels on a larger synthetic set
#   (recorded under `results/claims_gpu/` when a GPU run has been made);
# - **imagenet**: the paper's own protocol on ILSVRC-2012 (shown when a reader has run it).
#
# Nothing here is typed by hand: the rows are read from the claims each chapter saved when it ran
# (`runs/<profile>/claims/`, or `results/claims_<profile>/` for a run recorded on another machine),
# and the paper's numbers in them come from the paper's tables as data (`vggrepro/paper_tables.json`).
#
# A measured claim compares two arms (two nets, or one net under two protocols) on the same
# validation images: its number is the two top-1 errors and the effect, the difference, with its
# 95% interval (`vggrepro.experiments.claims`: a bootstrap over the images, paired, widened by the seed-to-seed
# spread of a net's error). A claim **holds** when the interval lies on the paper's side of zero
# (for "about equal" and "no better" claims: within the margin stated beside the claim), **does not
# hold** when it lies wholly on the other side, and is **undecided at this scale** otherwise, or
# when an arm fails to beat chance (a failed run). Claims about design (counting weights,
# receptive fields, MACs) are checked exactly and counted apart.

# %% [markdown]
# ## How many claims hold
#
# Measured claims by verdict; design facts apart (they hold at any scale or not at all).


# %% tags=["hide-input"]
def chapter_title(stem: str) -> str:
    number, _, name = stem.partition("_")
    return f"{number} {name.replace('_', ' ')}"


counts = pd.DataFrame(results.summary(results.gather(prof.name), prof.name))
counts["notebook"] = counts["notebook"].map(
    lambda s: s if s == "all" else chapter_title(s)
)
counts.set_index("notebook")

# %% [markdown]
# ## Details: the paper's number and each run's
#
# Each claim in full, the paper's number as its chapter states it, and each run's two errors and
# effect (a dash: that run has not been made or committed).

# %% tags=["remove-input"]
pd.DataFrame(results.details(prof.name)).set_index("#")

# %% [markdown]
# ## What the `ci` scale can and cannot decide
#
# The `ci` run is small on purpose: the whole book runs on two CPU cores in minutes, so anyone can
# re-run every number on this page. That buys exactness where the paper's claim is about design:
# the number of weights of each net, the receptive field of stacked 3 x 3 filters, the conversion
# of the fully-connected layers into convolutions and the cost of each protocol are the same at
# any width and are checked exactly.
#
# It cannot buy statistical power:

# %% tags=["hide-input"]
ci = get_profile("ci")
n_val = ci.synth_val_per_class * ci.num_classes
print(
    f"ci profile: nets of width {ci.width:g}, {ci.crop}-pixel crops, {ci.num_classes} synthetic classes, "
    f"{ci.synth_train_per_class * ci.num_classes} training and {n_val} validation images, "
    f"at most {ci.epochs} epochs per net"
)
seed_sd = claims.measured_seed_sd(ci.name)
if seed_sd is None:
    print(
        "the seed-to-seed spread of a net's error is not measured for ci: every measured claim is undecided"
    )
else:
    half = claims.Z95 * math.sqrt(2 * seed_sd**2)
    print(
        f"one net trained again with another seed moves its top-1 error by {seed_sd:.1f} points (standard "
        f"deviation, results/seed_spread_ci.json): two single runs differ by up to about {half:.0f} points "
        f"(95%) from that alone, before the images' own noise"
    )

# %% [markdown]
# The paper's accuracy claims are about gaps of a point or two on the 50,000 images of ILSVRC-2012
# (deeper is better, scale jittering helps, dense and multi-crop evaluation complement each other,
# fusion helps). Nets this small, trained for a few epochs on a few thousand small synthetic
# images, land several points apart from one seed to the next, so at this scale only large effects
# can be decided and most claims come out **undecided**: a fact about the scale, not evidence
# against the paper. A verdict that holds here is a check that the code does what the paper
# describes and that the effect is strong enough to show up on a toy problem; the decisive test is
# a run with more seeds, images and pixels (the `gpu` or `imagenet` run of the same chapters, which
# fills the other columns of this page).

# %% [markdown]
# ## What the `cpu` scale decides that `ci` cannot
#
# The `cpu` profile is the book's evidence scale: the same chapters at 64 pixels, 20 classes,
# 2,400 validation images (an image term of about +/-2 points on a paired difference), 30 epochs
# with the paper's plateau schedule, and three seeds of A and D, in about two hours on two cores.
# Its run was made once on such a machine and recorded under `results/claims_cpu/` (the claims),
# `results/runs_cpu/nets.json` (every net's error, by seed) and `results/runs_cpu/book/` (the
# executed chapters), each with its provenance: `python scripts/record_run.py --profile cpu`.
# The groups below compare it with the `ci` run, claim by claim, as recorded.

# %% tags=["hide-input"]
GROUPS = {
    "decided_here_only": "decided at `cpu`, undecided at `ci`",
    "agree": "decided at both scales, the same way",
    "disagree": "decided at both scales, differently",
    "lost_here": "decided at `ci`, undecided at `cpu`",
    "undecided_at_both": "undecided at both scales",
}
if results.profile_claims("cpu"):
    by_group = results.what_scale_decides("cpu", "ci")
    for key, title in GROUPS.items():
        display(Markdown(f"**{len(by_group[key])} {title}**"))
        if by_group[key]:
            display(pd.DataFrame(by_group[key]).set_index("#"))
else:
    display(Markdown("The `cpu` run is not recorded here yet (`results/claims_cpu/`)."))

# %% [markdown]
# What still limits the `cpu` scale is visible in its own record. A claim between two nets
# trained once borrows the measured seed spread for each arm, so its interval is several points
# wide; only the depth claim trains three seeds per arm. And the nets that start from another
# (S = 384 from S = 256, the scale-jittered nets from S = 384) are fine-tuned for
# `finetune_epochs` only; the table shows where each ended, on its own validation crops (centre
# crops at its own scale, which at the larger S hold only the middle of a larger object), beside
# the net it started from. Where a fine-tuned net ends far worse than the net it
# started from, a claim that compares it says more about the short fine-tuning than about scale
# jittering; such claims need the `gpu` profile's longer schedule (or more `cpu` epochs) to be
# decided.

# %% tags=["hide-input"]
record = results.results_root() / "runs_cpu" / "nets.json"
if record.exists():
    nets = runs.read_recorded(record)["nets"]
    by_run = {n["run"]: n for n in nets}
    rows = [
        {
            "net": n["config"],
            "S (pixels)": str(n["scale"]),
            "epochs": n["epochs"],
            "top-1 error (%)": round(n["top1_err"], 1),
            "started from S": str(by_run[n["started_from"]]["scale"]),
            "its error (%)": round(by_run[n["started_from"]]["top1_err"], 1),
        }
        for n in nets
        if n["init"] == "checkpoint" and n["started_from"] in by_run
    ]
    display(
        pd.DataFrame(rows).set_index("net")
        if rows
        else Markdown("No fine-tuned net in the record.")
    )
