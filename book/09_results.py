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
# lines them up in one matrix: a row per claim, a column per scale at which the book has run.
# What the scales and verdicts mean is said just above the matrix; how a verdict is reached, below
# it; the paper's numbers, each run's errors and which arm is which are in the details at the end.

# %% tags=["parameters", "remove-input"]
profile = "ci"

# %% tags=["hide-input"]
import math

import pandas as pd
from IPython.display import HTML, Markdown, display

from vggrepro.book import runner as book
from vggrepro.core import runs
from vggrepro.core.profiles import get_profile
from vggrepro.experiments import ledger, results, verdict_counts

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
gone = results.withdrawn("cpu")
if gone:
    message += (
        f" The `cpu` run recorded under `results/claims_cpu/` ({len(gone)} chapters) was "
        "decided before verdicts rested on chains (one seed per arm, a seed spread borrowed "
        "from other nets): its verdicts are withdrawn until its chains are recorded again."
    )
display(Markdown(message))

# %% [markdown]
# ## The claims, scale by scale
#
# **The columns**, one per scale at which the book has run, from the smallest:
#
# - **ci**, *quick*: a laptop CPU in minutes, narrow nets on small synthetic images. It shows that
#   everything runs, and it decides the design facts exactly; its measured claims mostly stay
#   undecided, by design.
# - **cpu**, *the evidence*: about two unattended hours on a laptop CPU per chain, each chain
#   recorded on its own in the ledger (`results/ledger/cpu/`) and all of them pooled. Read this
#   column for the measured claims until a larger one exists.
# - **gpu**, *one GPU*: the paper's nets at full width and 224 pixels, on a larger synthetic set.
# - **imagenet**, *the paper's*: the paper's protocol on ILSVRC-2012, the only column that can
#   check the paper's numbers themselves.
#
# A design fact reads the same in every column; for a measured claim, trust the largest scale that
# has a verdict. **The verdicts**:
#
# - **holds**: the 95% interval lies wholly on the paper's side (for "no worse" and "about equal"
#   claims: within the margin stated beside the claim), and the claim survives Holm's control.
# - **does not hold**: the interval lies wholly on the other side.
# - **undecided**: neither, or a guard stopped it; the reason is in brackets and explained under
#   the matrix.
#
# The number after a verdict is the effect with its 95% interval, in points of error: the first
# arm's error minus the second's, the arms ordered so that **a negative effect always goes the
# paper's way** (the details at the end name the arms). Each id links to the claim's row in its
# chapter (4.3 is chapter 4's third claim). The paper's claims per scale:

# %% tags=["remove-input"]
by_scale = pd.DataFrame(verdict_counts.counts_by_scale(prof.name))
by_scale.set_index("scale")

# %% tags=["remove-input"]
matrix = results.matrix(prof.name)
display(
    HTML(results.matrix_html(matrix, chapters=chapters))
    if matrix
    else Markdown("No chapter has saved its claims yet.")
)
notes = results.reasons_note(matrix)
if notes:
    display(Markdown("In brackets:\n\n" + "\n".join(f"- {n}" for n in notes)))

# %% [markdown]
# ## How a verdict is reached
#
# The `cpu` column appears once a chain is recorded in its ledger (`results/ledger/cpu/`, one
# file a chain: below); `gpu` fills from `results/claims_gpu/` when a GPU run has been made,
# `imagenet` when a reader has run it.
# Nothing here is typed by hand: the rows are read from the claims each chapter saved when it ran
# (`runs/<profile>/claims/`, or `results/claims_<profile>/` for a run recorded on another machine),
# and the paper's numbers in them come from the paper's tables as data (`vggrepro/paper_tables.json`).
#
# A measured claim compares two arms (two nets, or one net under two protocols) on the same
# validation images, in the same chains. A **chain** is every net of the grid trained from one
# seed (its initialisation, batch order and augmentation), on the same data: the claim's effect
# is the mean over its chains of the difference of the two arms' errors, and its 95% interval
# holds the images' sampling and the spread of that difference over the claim's own chains
# (`vggrepro.experiments.chains`: a t interval over chains with the images' term added, whose
# coverage of a known effect is tested by simulation). Nothing is borrowed from other nets: a
# claim resting on fewer than three chains has no measured seed term and reads **undecided**.
#
# A claim **holds** when the interval lies on the paper's side of zero (for "about equal" and "no
# worse" claims: within the margin stated beside the claim) and the claim survives Holm's control
# (below), **does not hold** when it lies wholly on the other side, and is **undecided at this
# scale** otherwise, and whenever a guard stops it, whatever its interval:
#
# - it rests on fewer than three chains (no measured seed term);
# - an arm fails to beat chance in a chain (a failed run);
# - a dense arm is shown worse than the same net's centre crop on the same chains (this scale's
#   artefact, chapter 5): so 4.1 can read "undecided" with an interval wholly below zero;
# - its margin is smaller than the images alone can resolve ("not testable at this scale"; where
#   more chains would do, the chapter's row says about how many);
# - it does not survive Holm's control over the scale's claims.
#
# The arms of every claim are ordered so that a negative effect goes the paper's way: "A-LRN is no
# better than A" is tested as "A is no worse than A-LRN", its effect err(A) - err(A-LRN).
#
# Every chapter decides its claims one at a time. This page holds the paper's claims of a scale
# together: of all those with an interval (the family, counted below), a verdict stands only if
# it survives Holm's step-down control at 5%, which holds for any dependence between the claims
# (many share an arm); one that does not reads "undecided (Holm)". Sanity checks and design facts
# are counted apart and are not in the family.

# %% [markdown]
# ## How many claims hold
#
# The paper's claims by verdict at this scale, after Holm, with the chains they rest on; sanity
# checks and design facts apart (design facts hold at any scale or not at all).


# %% tags=["hide-input"]
def chapter_title(stem: str) -> str:
    number, _, name = stem.partition("_")
    return f"{number} {name.replace('_', ' ')}"


counts = pd.DataFrame(verdict_counts.summary(results.gather(prof.name), prof.name))
counts["notebook"] = counts["notebook"].map(
    lambda s: s if s == "all" else chapter_title(s)
)
print(
    f"Holm's family at {prof.name}: {verdict_counts.family_size(prof.name)} of the paper's "
    "claims had an interval"
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
# It cannot buy statistical power. Its nets are trained once per chain, and the `ci` book trains
# one chain of the whole grid (three of A and D, for the depth claim of chapter 4): a claim with
# one chain has no measured seed term and stays undecided, however large its gap. What a run of
# this size could resolve, from the images alone:

# %% tags=["hide-input"]
ci = get_profile("ci")
n_val = ci.synth_val_per_class * ci.num_classes
display(
    Markdown(
        f"The `ci` profile: nets of width {ci.width:g}, {ci.crop}-pixel crops, "
        f"{ci.num_classes} synthetic classes, "
        f"{ci.synth_train_per_class * ci.num_classes} training and {n_val} validation "
        f"images, at most {ci.epochs} epochs per net, {ci.chains} chain(s)."
    )
)
# two nets that disagree on a quarter of the images: the image term of their paired difference
half = 1.96 * math.sqrt(0.25 / n_val) * 100
display(
    Markdown(
        f"Two nets that disagree on a quarter of the {n_val} images: **+/-{half:.1f} points** "
        "from the images alone, before the seed term; a margin of 1-2 points is not testable "
        "at this scale."
    )
)

# %% [markdown]
# The paper's accuracy claims are about gaps of a point or two on the 50,000 images of
# ILSVRC-2012 (deeper is better, scale jittering helps, dense and multi-crop evaluation complement
# each other, fusion helps). At this scale most claims come out **undecided**: a fact about the
# scale, not evidence against the paper. Running the book with more chains (`vggrepro book run
# -p chains=3`, about three times as long) gives every claim a measured seed term; the decisive
# test is the evidence scale's recorded chains and a run with more images and pixels (the `gpu`
# or `imagenet` run of the same chapters, which fills the other columns of this page).
#
# ## The `cpu` scale: the evidence, redone on chains
#
# The `cpu` profile is the book's evidence scale: the same chapters at 64 pixels, 20 classes and
# 2,400 validation images. Its first run (`results/claims_cpu/`, `results/runs_cpu/`) decided its
# claims with one seed per arm and a seed spread borrowed from A and D; those verdicts are
# withdrawn above, and the scale is being redone as recorded chains, each a whole replication of
# the grid, of a design whose confounds that run exposed are removed. What was measured, and
# changed (`python scripts/probe_cpu.py`):
#
# - **The fine-tuned nets did not collapse.** The first record set each net's error on its own
#   validation crops side by side: a centre crop at Q = S, which at the larger S holds only the
#   middle of a larger object. Set on the same Q (`results/cpu_probe.json`, the first table
#   below), the D fine-tuned at S = 384 beats the D it started from at the larger Q and nearly
#   matches it at the smaller.
# - **Objects sized like ILSVRC-2012's.** The first design drew every object large (50-90% of
#   the image's side), so its scale claims measured that design; the `cpu` set now draws sides
#   from 15% to 100%, ILSVRC's mean area with small objects present (chapter 4 draws the two).
# - **No net had converged, and a stall cut the lr.** After 30 epochs A and D were still
#   improving, their lr never cut, while E's lr was cut at epoch 17 after a one-epoch spike, so
#   E's "failure" was its schedule's, not its depth's. On the new set the same rule cut D's lr
#   after a three-epoch stall at its start (`results/cpu_premature_cut.json`), the stall that
#   section 3.1 starts B-E from A to soften. The schedule now holds its first 10 epochs (a stall
#   there is not a plateau) and every net may train 50 epochs; the depth claims gain a control, A
#   trained for twice A's allowance (chapter 4). The new design's nets, as the book trains them,
#   are the second table below (`results/cpu_calibration.json`).
#
# **The ledger.** Each chain of the new design is run and recorded on its own (`vggrepro book run
# --profile cpu -p depth_chains=1 -p first_chain=K`, then `python scripts/record_run.py` with the
# same `-p`): its design, every claim's per-image evidence, its nets and its provenance, in
# `results/ledger/cpu/chain-K.json`, never overwritten. Every `cpu` verdict on this page and in
# the chapters is decided again over all the chains recorded, so it says how many it rests on,
# and a claim stays undecided until at least three are in. The chains recorded so far:

# %% tags=["remove-input"]
recorded_chains = ledger.chains_table("cpu")
display(
    pd.DataFrame(recorded_chains).set_index("chain")
    if recorded_chains
    else Markdown("No chain of the new design is recorded yet.")
)

# %% [markdown]
# **Each chain's nets.** A claim's seed term is the spread of its two arms' difference over the
# chains, so it is large where a net's error moves from chain to chain. Each net's top-1 error at
# its own check (centre crop at Q = its S, after its last epoch) in every chain, with how often the
# plateau rule cut its lr and after how many epochs it stopped, and its spread (the largest error
# less the smallest, in points), widest first: a net whose lr was cut while its error was still
# falling ends worse, and every claim that uses it moves with it.

# %% tags=["remove-input"]
chain_nets = pd.DataFrame(ledger.nets_table("cpu")).set_index("net")
if chain_nets["spread"].notna().any():
    display(chain_nets.sort_values("spread", ascending=False))
else:
    display(Markdown("Fewer than two chains are recorded: no spread yet."))

# %% [markdown]
# **What the `cpu` scale can decide.** For each of the paper's measured claims, what it would take
# to decide it if its effect stayed where the recorded chains put it: a number of chains (from the
# claim's own variance components: the seed term measured on its chains, the images' term), none
# (the images alone leave more than the effect's distance from the boundary its verdict must
# clear: no number of chains of this size decides it), or unknown until three chains measure the
# seed term.

# %% tags=["remove-input"]
cpu_plan = verdict_counts.plan("cpu")
display(
    pd.DataFrame(cpu_plan).set_index("#")
    if cpu_plan
    else Markdown("No `cpu` chain is recorded yet.")
)

# %% [markdown]
# **Decided against the paper.** Each of the paper's claims that the recorded `cpu` chains decide
# the other way (after Holm), and each left undecided because a dense arm is worse than its own
# centre crop (against Table 5, where dense and crops are about equal), with the mechanism measured
# behind it. A script takes such a claim apart on a chain's nets and records what it finds under
# `results/` (`cpu_*mechanism*.json`, e.g. `python scripts/centre_crop_mechanism.py --chain 2`); a
# verdict no record explains says so, rather than carry a guess.

# %% tags=["remove-input"]
against = verdict_counts.against_the_paper("cpu")
display(
    pd.DataFrame(against).set_index("#")
    if against
    else Markdown("No `cpu` claim is decided against the paper.")
)

# %% [markdown]
# The groups below compare the two scales claim by claim.

# %% tags=["hide-input"]
GROUPS = {
    "decided_here_only": "decided at `cpu`, undecided at `ci`",
    "agree": "decided at both scales, the same way",
    "disagree": "decided at both scales, differently",
    "lost_here": "decided at `ci`, undecided at `cpu`",
    "undecided_at_both": "undecided at both scales",
}
if results.profile_claims("cpu"):
    by_group = verdict_counts.what_scale_decides("cpu", "ci")
    for key, title in GROUPS.items():
        display(Markdown(f"**{len(by_group[key])} {title}**"))
        if by_group[key]:
            display(pd.DataFrame(by_group[key]).set_index("#"))
else:
    display(Markdown("No `cpu` chain is recorded under the new statistics yet."))

# %% tags=["hide-input"]
probe = results.results_root() / "cpu_probe.json"
if probe.exists():
    nets = runs.read_recorded(probe)["nets"]
    table = pd.DataFrame(
        {
            name: {"trained at S": n["train_S"], **n["at_Q"], "epochs": n["epochs"]}
            for name, n in nets.items()
        }
    ).T
    display(Markdown("Top-1 error (%) of each `cpu` net under the same protocols:"))
    display(table)
    curves = pd.DataFrame(
        {
            name: {c["epoch"]: c["top1_err"] for c in n["curve"]}
            for name, n in nets.items()
        }
    )
    cut = {
        name: next(
            (c["epoch"] for c in n["curve"] if c["lr"] < n["curve"][0]["lr"]), None
        )
        for name, n in nets.items()
    }
    display(Markdown(f"The first epoch at a lower lr, by net (None: never cut): {cut}"))
    display(curves.loc[[10, 15, 20, 25, 30], ["A/256", "D/256", "E/256"]])
else:
    display(
        Markdown("The `cpu` probe is not recorded here (`results/cpu_probe.json`).")
    )

# %% tags=["hide-input"]
calibration = results.results_root() / "cpu_calibration.json"
if calibration.exists() and "nets" in runs.read_recorded(calibration):
    nets = runs.read_recorded(calibration)["nets"]
    display(Markdown("The new design's nets (top-1 error, %, and how each run ended):"))
    display(
        pd.DataFrame(
            {
                name: {
                    "trained at S": n["train_S"],
                    **n["at_Q"],
                    "epochs": n["epochs"],
                    "lr cuts": n["lr_cuts"],
                    "stopped": n["stopped"],
                }
                for name, n in nets.items()
            }
        ).T
    )
else:
    display(Markdown("The new design's calibration is not recorded here."))
