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
# Every chapter of this book ends with a table of the paper's claims that it can test: the claim,
# the paper's number, this run's number and a verdict. This page gathers those tables into one
# view, chapter by chapter, for each size at which the book has been run:
#
# - **ci**: a laptop CPU in minutes: narrow nets, small crops, a few synthetic classes;
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
# 95% interval (`vggrepro.claims`: a bootstrap over the images, paired, widened by the seed-to-seed
# spread of a net's error). A claim **holds** when the interval lies on the paper's side of zero
# (for "about equal" and "no better" claims: within the margin stated beside the claim), **does not
# hold** when it lies wholly on the other side, and is **undecided at this scale** otherwise, or
# when an arm fails to beat chance (a failed run). Claims about design (counting weights,
# receptive fields, MACs) are checked exactly and counted apart.

# %% tags=["parameters"]
profile = "ci"

# %% tags=["hide-input"]
import math

import pandas as pd
from IPython.display import Markdown, display

from vggrepro import book, claims, results
from vggrepro.profiles import get_profile

prof = get_profile(profile)
pd.set_option("display.max_colwidth", None)

# The chapters of the book (from _toc.yml), this page left out.
chapters = [nb.stem for nb in book.notebooks() if not nb.stem.endswith("_results")]
rows = results.gather(prof.name)
not_run = results.missing(chapters, prof.name)
if not_run:
    message = (f"**Not run yet under the `{prof.name}` profile:** {', '.join(not_run)}. "
               f"Run them with `{results.run_command(not_run, prof.name)}` (or the whole book with "
               f"`vggrepro book run{'' if prof.name == 'ci' else ' --profile ' + prof.name}`), "
               "then run this page again.")
else:
    message = f"Every chapter ({len(chapters)}) has saved its claims under the `{prof.name}` profile."
display(Markdown(message))

# %% [markdown]
# ## Every claim, chapter by chapter
#
# The columns `ci`, `gpu` and `imagenet` hold each run's number as its chapter states it; "not
# recorded" means that run has not been made (or committed) for that chapter. The verdict columns
# are those of the runs that exist.

# %% tags=["hide-input"]
def chapter_title(stem: str) -> str:
    number, _, name = stem.partition("_")
    return f"{number} {name.replace('_', ' ')}"


table = pd.DataFrame(rows, columns=["notebook", "claim", "paper", *results.PROFILES,
                                    *[k for k in (rows[0] if rows else {}) if k.startswith("verdict")], "kind"])
table["notebook"] = table["notebook"].map(chapter_title)
table.set_index(["notebook", "claim"]) if rows else "no chapter has saved its claims yet"

# %% [markdown]
# ## How many claims hold
#
# Measured claims by verdict; design facts apart (they hold at any scale or not at all).

# %% tags=["hide-input"]
counts = pd.DataFrame(results.summary(rows, prof.name))
counts["notebook"] = counts["notebook"].map(lambda s: s if s == "all" else chapter_title(s))
counts.set_index("notebook")

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
print(f"ci profile: nets of width {ci.width:g}, {ci.crop}-pixel crops, {ci.num_classes} synthetic classes, "
      f"{ci.synth_train_per_class * ci.num_classes} training and {n_val} validation images, "
      f"at most {ci.epochs} epochs per net")
seed_sd = claims.measured_seed_sd(ci.name)
if seed_sd is None:
    print("the seed-to-seed spread of a net's error is not measured for ci: every measured claim is undecided")
else:
    half = claims.Z95 * math.sqrt(2 * seed_sd**2)
    print(f"one net trained again with another seed moves its top-1 error by {seed_sd:.1f} points (standard "
          f"deviation, results/seed_spread_ci.json): two single runs differ by up to about {half:.0f} points "
          f"(95%) from that alone, before the images' own noise")

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
