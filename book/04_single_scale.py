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
# # Single-scale evaluation: depth, filters and scale jittering (section 4.1, Table 3)
#
# Objects in ImageNet appear at every size. The paper trains either at one scale S (the image's
# smaller side is rescaled to S = 256 or 384 before a 224 crop is cut) or with **scale jittering**:
# every image gets its own S, drawn from [256, 512], so that the net sees each object at many sizes.
# Table 3 then tests every net at a single scale Q (Q = S for fixed S, Q = 384 for jittered S) with
# dense evaluation (chapter 3), and reads off three lessons: error falls with depth, the 1x1
# convolutions of C help less than the 3x3 ones of D, and jittering beats fixed S even at one test
# scale.
#
# This notebook rebuilds Table 3 at the scale of the chosen profile. The nets come from the shared
# experiment grid (`vggrepro.experiments.grid`): A from random weights; B-E from A; S = 384 from S = 256 at a
# tenth of the lr; jittered S from S = 384.

# %% tags=["parameters"]
profile = "ci"
# another seed for the data and every net: a replication (None: the profile's)
seed = None
# chains (trainings of A and of D, D of chain k started from A of chain k) behind the
# central depth claim; the other claims rest on the profile's chains
depth_chains = 3

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vggrepro import data, models
from vggrepro.core import runs
from vggrepro.core.profiles import get_profile
from vggrepro.data import object_sizes
from vggrepro.experiments import (
    chains,
    chapter_claims,
    claims,
    figures,
    grid,
    ledger,
    paper,
    results,
)

prof = get_profile(profile) if seed is None else get_profile(profile, seed=seed)
pd.set_option("display.precision", 1)
pd.set_option("display.max_colwidth", None)  # claims and reasons whole
fixed_small, fixed_large, jitter = prof.S(256), prof.S(384), prof.jitter
print(
    f"S = 256 -> {fixed_small} px, S = 384 -> {fixed_large} px, S in [256, 512] -> "
    f"{list(jitter)} px; crop {prof.crop} px"
)

# %% [markdown]
# ## What jittering does to the objects a net sees
#
# The synthetic set records every object's box, so we can compute, for each training image, how
# large its object is inside a training crop: the box's smaller side, rescaled by S / (the image's
# smaller side), as a fraction of the crop. Fixed S gives each object one size; jittering spreads it
# over a factor of two.

# %% mystnb={"figure": {"caption": "How large each training image's object is inside a training crop (its box's smaller side over the crop's side), for the two fixed S and for jittered S, at this profile's scale.", "name": "fig-03-object-scale"}}
train_set = data.ILSVRC(data.ensure_synthetic(prof, verbose=False), "train")
sides = np.array([min(s.size) for s in train_set.samples], dtype=float)
objects = np.array(
    [min(b[2] - b[0], b[3] - b[1]) for s in train_set.samples for b in s.boxes[:1]]
)
rng = np.random.default_rng(0)
drawn = rng.integers(jitter[0], jitter[1] + 1, size=len(sides))
sizes = {
    f"S = {fixed_small} (paper 256)": objects * fixed_small / sides / prof.crop,
    f"S = {fixed_large} (paper 384)": objects * fixed_large / sides / prof.crop,
    f"S in [{jitter[0]}, {jitter[1]}] (jittered)": objects * drawn / sides / prof.crop,
}
fig, ax = plt.subplots(figsize=(8, 3.5))
bins = np.linspace(0, 2.5, 51)
for label, values in sizes.items():
    ax.hist(values, bins=bins, histtype="step", lw=2, label=label)
ax.axvline(1.0, color="grey", ls=":", lw=1)
ax.set(
    xlabel="object's smaller side / crop side",
    ylabel="training images",
    title="object scale in training crops",
)
ax.legend()
plt.tight_layout()

# %%
pd.DataFrame(
    {k: np.percentile(v, [10, 50, 90]) for k, v in sizes.items()},
    index=["10th pct", "median", "90th pct"],
).T

# %% [markdown]
# ## How large the objects are: the synthetic sets against ILSVRC-2012
#
# What scale jittering and the test scale Q can do depends on how object sizes spread. In
# ILSVRC-2012 an object's box covers on average 0.36 of its image's area, from a few percent to the
# whole image; PASCAL VOC's objects are smaller (0.24). The `cpu` and `gpu` sets draw each
# object's side from 15% to 100% of the image's, which gives ILSVRC's mean with small and
# whole-image objects both present; an earlier `cpu` design drew only large objects (50-90% of
# the side), and its scale claims measured that design rather than the paper's question. `ci`
# keeps large objects: at 32 px a small object is a few pixels wide. The boxes below are those of
# each set's first validation images, rendered exactly as the generator writes them; the means of
# ILSVRC and VOC are the organisers' (only the means are at hand offline: a reader with ILSVRC-2012
# draws its whole distribution with `object_sizes.area_fractions(data.ILSVRC(root, "val"))`).

# %% mystnb={"figure": {"caption": "The share of its image's area each validation object's box covers, in three synthetic designs, with the mean of ILSVRC-2012 and of PASCAL VOC.", "name": "fig-04-object-area"}}
designs = {
    "ci": get_profile("ci"),
    "cpu": get_profile("cpu"),
    "cpu, earlier design": get_profile("cpu", synth_box_fraction=(0.5, 0.9)),
}
areas = {
    k: object_sizes.rendered_area_fractions(p, per_class=10) for k, p in designs.items()
}
fig, ax = plt.subplots(figsize=(8, 3.5))
for label, values in areas.items():
    ax.hist(values, bins=np.linspace(0, 1, 26), histtype="step", lw=2, label=label)
for mean, name, ls in (
    (object_sizes.ILSVRC_MEAN_AREA, "ILSVRC-2012 mean", "--"),
    (object_sizes.VOC_MEAN_AREA, "PASCAL VOC mean", ":"),
):
    ax.axvline(mean, color="black", ls=ls, lw=1.5, label=name)
ax.set(
    xlabel="object box area / image area",
    ylabel="validation images",
    title="how large the objects are",
)
ax.legend()
plt.tight_layout()

# %%
# as percentages of the image's area ("small": the share of objects under 10%)
pd.DataFrame({k: object_sizes.summary(v) for k, v in areas.items()}).T * 100

# %% [markdown]
# ## Table 3, at this scale
#
# Every row is the dense evaluation of one net at one test scale Q, with the horizontal flip (the
# paper's protocol behind all of its tables; chapter 3 explains it). The paper's rows are beside
# ours; our errors are on the profile's validation set, which is far smaller and easier in some ways
# and harder in others, so only the *order* of the rows can be compared. The paper's table is shown
# whole, its test scale Q and top-5 column included; this run's top-5 error is left out where five
# guesses are half the classes (chapter 2).
#
# A last column adds the centre crop at the same Q. At 224 px the two protocols differ by tenths of
# a point (Table 5). At this profile's 32-pixel crops they need not, for two reasons that do not
# exist at 224 px. Window placement: the paper's Q (256, 384, 512) are multiples of 32, the scaled
# ones (37, 55, 73) are not, so the dense net, which rounds pooled sizes up as the authors' Caffe
# does, adds a last band of windows that see mostly padding (at Q = 37, 5 of their 32 rows are
# image). Context: in training conv5 sees a 2x2 map whose every position touches the zero padding,
# while a dense pass shows it larger maps with context the net never saw. Where the dense column is
# far worse than the centre crop, the gap is this scale's artefact, not the nets' training, and the
# claims below that rest on a dense arm are left undecided. Chapter 5 measures the two causes apart
# (`vggrepro.evaluate.windows`): at Q = S placement costs most, at the larger Q of the jittered nets context.

# %%
ROWS = grid.TABLE3  # the paper's rows, as grid nets: A/256 ... E/jit


def single_scale(name, protocol="dense", Q=None):
    """A grid net at its single test scale (the paper's rule), or at a given Q."""
    return grid.evaluation(prof, name, protocol, Q=Q)


table3 = {name: single_scale(name) for name in ROWS}
centre = {name: single_scale(name, "centre") for name in ROWS}
n_val = len(table3["A/256"]["labels"])
ours = [
    dict(
        config=grid.entry(name).config,
        train_S=grid.entry(name).train_S,
        top1_val_err=r["top1_err"],
        top5_val_err=r["top5_err"],
        **{  # this run's own columns: the centre crop first, beside the dense error
            "ours top1, centre crop": centre[name]["top1_err"],
            "our S": str(grid.scale_of(prof, grid.entry(name).train_S)),
            "our Q": r["scales"][0],
        },
    )
    for name, r in table3.items()
]
pd.DataFrame(
    paper.whole(
        "table3_single_scale",
        ours,
        on=("config", "train_S"),
        metrics=paper.metrics_for(prof.num_classes),
    )
).set_index(["config", "train_S"])

# %% [markdown]
# ## Error against the test scale
#
# A net trained at one S is tuned to objects of one size. Testing each D net over a range of Q
# shows where it is best; in the paper the jittered net stays good over a wider range. The dashed
# line is chance, a guess that ignores the image. At this profile's scale the curves need not
# have the paper's shape: they are dense evaluations, with the window-placement and context
# artefacts described above, so an error that climbs towards chance at some Q is this scale's
# protocol, not a net that forgot its classes (the table below the figure has the numbers, and
# chapter 5 measures the two causes).

# %% mystnb={"figure": {"caption": "Top-1 error of the three D nets (S = 256, S = 384, jittered S) against the test scale Q, dense evaluation with flips; the dashed line is chance.", "name": "fig-03-error-vs-q"}}
paper_Q = [224, 256, 384, 512]
curves = {}
for name in ["D/256", "D/384", "D/jit"]:
    curves[name] = [single_scale(name, Q=prof.S(q))["top1_err"] for q in paper_Q]
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, errs in curves.items():
    ax.plot([prof.S(q) for q in paper_Q], errs, marker="o", label=name)
ax.axhline(claims.chance_error(prof.num_classes), color="grey", ls="--", label="chance")
ax.set(
    xlabel="test scale Q (px)",
    ylabel="top-1 error (%), dense",
    title="D nets against the test scale",
)
ax.legend()
plt.tight_layout()

# %%
pd.DataFrame(
    curves, index=pd.Index([f"{prof.S(q)} (paper {q})" for q in paper_Q], name="Q")
).T

# %% [markdown]
# ## Why small filters: B against the same net with 5x5 filters
#
# Section 4.1 replaces each pair of 3x3 layers of B by one 5x5 layer, which sees the same 5x5
# window with fewer non-linearities and more weights, and reports a top-1 error 7% higher with a
# centre crop. We do the same with the centre crop at Q = S. The grid's B starts from a trained A;
# a fair comparison starts both nets alike, so the B here is trained from random weights, as B-5x5
# is, for the same epochs.

# %%
b3 = single_scale("B/256-scratch", "centre")
b5 = single_scale("B-5x5/256", "centre")
five = pd.DataFrame(
    [
        dict(
            net="B (pairs of 3x3)",
            weight_layers=models.weight_layers("B"),
            params=models.count_params(
                models.build(
                    "B", width=prof.width, num_classes=prof.num_classes, crop=prof.crop
                )
            ),
            top1=b3["top1_err"],
        ),
        dict(
            net="B-5x5 (single 5x5)",
            weight_layers=models.weight_layers("B-5x5"),
            params=models.count_params(
                models.build(
                    "B-5x5",
                    width=prof.width,
                    num_classes=prof.num_classes,
                    crop=prof.crop,
                )
            ),
            top1=b5["top1_err"],
        ),
    ]
).set_index("net")
five

# %% [markdown]
# ## Chains: the paper's central claim, trained several times
#
# One training of a net is one draw: trained again with another seed (another initialisation,
# another order of images), the same net lands several points away at this scale. The paper's
# central claim, that error falls with depth, is therefore tested here over `depth_chains`
# chains: in chain k, A is trained from seed k and D starts from that A, as in the paper, and both
# are evaluated with the centre crop at Q = S (the protocol this scale does not distort, see
# above). Chains are the expensive part of a CPU book, so the other claims rest on the profile's
# `chains` (one at `ci`: those claims stay undecided, and say so).
#
# Every net trains until the paper's stopping rule ends it (the lr divided by 10 whenever the
# validation error stalls, training stopped at the plateau after the third cut) or the profile's
# most epochs. The depth claims compare what the paper compares: B-E start from A, so a deeper
# net has had A's epochs and then its own. A third arm asks whether that budget, rather than
# depth, makes the difference: A trained from the same seed for twice the epochs A may take,
# A's and D's allowance together (`A/256-budget`; the last claim below).

# %%
DEPTH_CHAINS = grid.chain_seeds(prof, max(depth_chains, prof.chains))
by_chain = {
    name: {s: grid.evaluation(prof, name, "centre", seed=s) for s in DEPTH_CHAINS}
    for name in ("A/256", "D/256", "A/256-budget")
}
pd.DataFrame(
    {name: [r["top1_err"] for r in evals.values()] for name, evals in by_chain.items()},
    index=pd.Index(DEPTH_CHAINS, name="chain (training seed)"),
).T.assign(mean=lambda t: t.mean(axis=1))

# %% [markdown]
# E, the deepest net, once "failed" at the `cpu` scale. The mechanism was its schedule: a
# one-epoch spike of its validation error made the plateau rule cut its lr, and at a tenth of
# the lr it never caught D. Holding the rule's first epochs (`lr_hold_epochs`) fixed it. The
# recorded `cpu` runs, E against D, before and after (`results/cpu_probe.json`,
# `results/cpu_calibration.json`):

# %%
for label, record in (
    ("first design", "cpu_probe.json"),
    ("now", "cpu_calibration.json"),
):
    nets = runs.read_recorded(results.results_root() / record)["nets"]
    cut = {
        k: next(
            (
                c["epoch"]
                for c in nets[k]["curve"]
                if c["lr"] < nets[k]["curve"][0]["lr"]
            ),
            None,
        )
        for k in ("D/256", "E/256")
    }
    print(
        f"{label}: E {nets['E/256']['top1_err_at_own_check']:.1f}% vs "
        f"D {nets['D/256']['top1_err_at_own_check']:.1f}% top-1 after "
        f"{nets['E/256']['epochs']} epochs; first lr cut at epoch E {cut['E/256']}, "
        f"D {cut['D/256']}"
    )

# %% [markdown]
# ## The paper's claims, at this scale
#
# Each claim compares two arms, measured on the same validation images in the same chains: the
# effect is the mean over chains of the difference of their top-1 errors (negative: the first arm
# is better; the arms are ordered so that negative is the paper's way, and "A-LRN is no better
# than A" is tested as "A is no worse than A-LRN": the table's "paper's way" column names the
# arms), with a 95% interval whose seed term is the spread of that difference over the
# claim's own chains (`vggrepro.experiments.chains`: a t interval over chains with the images'
# term added). A claim resting on fewer than three chains has no measured seed term and stays
# undecided. "About equal" and "no better" claims hold only when the interval stays within the
# stated margin; where the images alone leave more than the margin, the claim is not testable at
# this scale. An arm that does not beat chance is a failed run and leaves its claim undecided; so
# does a dense arm shown worse than the same net's centre crop at the same Q, paired on the same
# chains (the paper finds the two within tenths of a point, Table 5), since that gap is this
# scale's artefact (see above and chapter 5). Each verdict here is the claim's alone; the results
# page holds all the paper's claims of a scale together to Holm's 5%. The interval, as the
# package computes it (the two terms are combined into a t interval whose degrees of freedom
# come from both):

# %%
print(figures.source(chains.chain_effect))

# %%
# points of top-1 error: "about equal" / "no better" means within this much
MARGIN = 1.0
chance = claims.chance_error(prof.num_classes)
CHAINS = grid.chain_seeds(prof)
print(
    f"chains at this profile: {len(CHAINS)}; behind the depth claim: "
    f"{len(DEPTH_CHAINS)}"
)


def arm(name, protocol):
    """A grid net at its single test scale under ``protocol``, in every chain."""
    by_chain = {s: grid.evaluation(prof, name, protocol, seed=s) for s in CHAINS}
    return claims.arm_of_evals(name, by_chain)


arms = {f"{name} dense": arm(name, "dense") for name in ROWS}
arms |= {f"{name} centre": arm(name, "centre") for name in ROWS}
arms |= {
    f"{name} centre, depth chains": claims.arm_of_evals(name, evals)
    for name, evals in by_chain.items()
}
arms |= {
    f"{name} centre": arm(name, "centre") for name in ("B/256-scratch", "B-5x5/256")
}
# every arm must beat chance; a dense arm must also reach its net's centre crop; the
# paper's numbers are Table 3's rows of the arms' nets
claim = chapter_claims.Chapter(
    "04_single_scale",
    chance,
    centre_of={f"{name} dense": f"{name} centre" for name in ROWS},
    paper_table="table3_single_scale",
).claim

declared = [
    claim(
        "Error falls with depth: B (13 layers) beats A (11)",
        "B/256 dense",
        "A/256 dense",
    ),
    claim(
        "Error falls with depth: C (16 layers, three of them 1x1) beats B (13)",
        "C/256 dense",
        "B/256 dense",
    ),
    claim(
        "Spatial context matters: D (3x3) beats C (1x1) at the same depth",
        "D/256 dense",
        "C/256 dense",
    ),
    claim(
        "Error falls with depth: D (16 layers) beats A (11), over the depth chains, "
        "centre crop (ours)",
        "D/256 centre, depth chains",
        "A/256 centre, depth chains",
    ),
    claim(
        "Error falls with depth: E (19 layers) beats A (11)",
        "E/256 dense",
        "A/256 dense",
    ),
    claim(
        "Error saturates at 19 layers: E and D are about equal",
        "E/256 dense",
        "D/256 dense",
        kind="equal",
        margin=MARGIN,
    ),
    claim(
        "LRN does not help: A-LRN is no better than A",
        "A-LRN/256 dense",
        "A/256 dense",
        kind="no-better",
        margin=MARGIN,
    ),
    claim(
        "Jittered S beats fixed S=256 at one test scale (D)",
        "D/jit dense",
        "D/256 dense",
    ),
    claim(
        "Jittered S beats fixed S=384 at one test scale (E)",
        "E/jit dense",
        "E/384 dense",
    ),
    claim(
        "Jittered S beats fixed S=256 at one test scale (D, centre crop: ours)",
        "D/jit centre",
        "D/256 centre",
    ),
    claim(
        "Small filters: B beats the same net with 5x5 filters (both from random "
        "weights, centre crop)",
        "B/256-scratch centre",
        "B-5x5/256 centre",
        paper.table("other_numbers_in_text")["shallow_5x5_net_vs_B"],
    ),
    claim(
        "Depth, not budget: D beats A trained for A's epochs and D's together "
        "(over the depth chains, centre crop: ours)",
        "D/256 centre, depth chains",
        "A/256-budget centre, depth chains",
    ),
]
lrn_bytes, a_bytes = (models.activation_bytes(prof.build(c)) for c in ("A-LRN", "A"))
rows = [c.decide(arms) for c in declared] + [
    claims.design_fact(
        "LRN costs memory: A-LRN keeps more activations per image than A",
        "more memory and computation (section 4.1)",
        f"{lrn_bytes / 1e3:.1f} vs {a_bytes / 1e3:.1f} kB per image",
        lrn_bytes > a_bytes,
        "04_single_scale",
    ),
]
runs.save_claims(prof.name, "04_single_scale", rows)
claims.table(ledger.pooled_with(prof.name, "04_single_scale", rows), "04_single_scale")

# %% [markdown]
# ## Exercises
#
# Each runs on a laptop at the `ci` profile, in about the minutes the chapter takes:
# change a value in the cell tagged `parameters` (in JupyterLab) or pass it on the
# command line, `vggrepro book run --only 04 -p seed=1`, whose notebook lands in
# `runs/ci/book/`.
#
# **Exercise 1.** Run the chapter with `-p seed=1`: a replication of every net. Does
# claim 4.3 (D beats C) change its verdict? Its effect?
#
# *Hint:* Read its cell in the results page's matrix: the brackets say what stopped it.
#
# ```{admonition} Answer
# :class: dropdown
#
# It stays undecided: it rests on one chain (no measured seed term), and in the stored
# run its dense arms were also worse than the same nets' centre crops (the guard,
# chapter 5). Its effect moves by a few points: the spread a single chain cannot show.
# ```
#
# **Exercise 2.** Why is 4.2 (C beats B) undecided at `ci` when its effect is far from
# zero?
#
# *Hint:* Every claim of the chapter lists its guards; look at the claim's "why".
#
# ```{admonition} Answer
# :class: dropdown
#
# One chain gives no interval at all (no seed term), and a dense arm shown worse than
# the same net's centre crop is this scale's artefact, so the claim is not decided on
# it, whatever the number.
# ```
#
# **Exercise 3.** Train the depth claim's chains five times instead of three (`-p
# depth_chains=5`). How much narrower should 4.4's interval get?
#
# *Hint:* The interval is a t interval over chains: its half-width goes as the t
# quantile times the chains' spread over the square root of their number.
#
# ```{admonition} Answer
# :class: dropdown
#
# About half as wide, if the spread stays the same: the 97.5% t quantile falls from 4.30
# (2 degrees of freedom) to 2.78 (4), and 1/sqrt(5) against 1/sqrt(3) gives another
# 0.77: 0.65 x 0.77 = 0.50. Whether it then excludes zero depends on the run.
# ```
