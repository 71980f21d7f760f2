"""Why do five scales beat three on the VOC-like set? Claim 8.10 taken apart: how many scales, or which.

    python scripts/voc_scales_mechanism.py --profile cpu --chain 3   # results/cpu_voc_scales_mechanism-3.json

Claim 8.10 ("VOC-like: five scales are about as good as three") sets the jittered D's descriptor
averaged over Q in {256, 384, 512, 640, 768} (the paper's pixels, scaled) against the same net's
averaged over {256, 384, 512}. Its arms differ in two ways at once: how many scales are averaged,
and which (the five add the two largest). This script separates them on one chain whose D is in
``runs/<profile>/`` (it never trains: a missing net is an error), on chapter 8's own splits, SVMs
and test images:

- the mAP of D's descriptor at each single scale, and averaged over the claim's three and five, the
  three largest {512, 640, 768} (as many scales as the claim's three, other ones) and the two largest;
- the claim's effect split in two, on 100 - mAP: [five - three largest] (more scales, the large ones
  held) + [three largest - three smallest] (which scales, their number held), each with the 95%
  half-width of a paired bootstrap of the test images (one chain: no seed term, a mechanism and not
  a verdict);
- each test object's side in pixels at every Q (:func:`vggrepro.data.object_sizes.side_at`),
  beside the side the training set's objects had at the jittered training scales;
- the ledger's record of the same chain, where it holds one: its two arms' mAP, which these
  descriptors must reproduce (the same net, splits and seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from vggrepro.core.profiles import get_profile
from vggrepro.data import ILSVRC, synth
from vggrepro.data.object_sizes import image_size, side_at
from vggrepro.experiments import chains, evidence, grid, ledger, paper
from vggrepro.experiments.results import save_figures
from vggrepro.generalise import features, protocols
from vggrepro.train import checkpoints

#: The claim this script explains, as chapter 8 declares it (the results page matches it by text).
CLAIM = "VOC-like: five scales are about as good as three"
NET = "D/jit"


def loss(scores_by_split: list[np.ndarray], labels: np.ndarray) -> float:
    """100 - mAP of one representation on one chain: the mean over its SVM splits."""
    return float(features.splits_map_loss(np.stack(scores_by_split), labels, np.ones((1, len(labels))))[0])


def paired(a: list[np.ndarray], b: list[np.ndarray], labels: np.ndarray) -> dict:
    """The effect on 100 - mAP of ``a`` against ``b`` (negative: ``a`` has the higher mAP), with the
    95% half-width of the test images' paired bootstrap, the chain held fixed."""
    e = chains.metric_effect(features.splits_map_loss, [np.stack(a)], [np.stack(b)], labels, fixed=True)
    return {"effect": round(e.difference, 2), "half_width": round(e.high - e.difference, 2)}


def recorded_arms(profile_name: str, chain: int) -> dict[str, float] | None:
    """The mAP of the claim's two arms as the ledger recorded them for ``chain`` (None: not recorded)."""
    ev = ledger.recorded_evidence(profile_name, "08_generalisation", CLAIM, chain)
    if ev is None:
        return None
    labels = evidence.unpack_array(ev["labels"])
    return {
        arm: round(100 - loss(list(evidence.unpack_array(ev["arms"][arm]["scores"][0])), labels), 2)
        for arm in ("D", "D, 3 scales")
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=("ci", "cpu", "gpu"))
    p.add_argument("--chain", type=int, required=True, help="the chain's training seed; its nets must be in runs/")
    p.add_argument(
        "--out", type=Path, default=None, help="default: results/<profile>_voc_scales_mechanism-<chain>.json"
    )
    args = p.parse_args(argv)
    prof = get_profile(args.profile)
    path = grid.run_of(prof, NET, args.chain).checkpoint  # never grid.checkpoint: that trains
    if not path.is_file():
        raise SystemExit(
            f"voc_scales_mechanism: {NET} of chain {args.chain} is not in runs/{prof.name}/; "
            f"run the chain first (vggrepro book run --profile {prof.name} -p first_chain={args.chain})"
        )
    torch.set_num_threads(prof.threads)
    Q = [prof.S(q) for q in paper.table("transfer_features_appendix_B")["voc"]["scales"]]
    net, meta = checkpoints.model_from_checkpoint(path)
    roots = features.ensure_sets(prof, log=lambda *_: None)
    voc = features.load_set(roots["voc"])
    sizes = features.sizes_of(prof)
    per_scale = features.scale_descriptors(net, checkpoints.preprocess_of(meta), voc["train"] + voc["test"], Q)
    # the chapter's averages: the claim's three are {256, 384, 512}, its five all of them
    subsets = {f"Q={q}": [j] for j, q in enumerate(Q)}
    subsets |= {"three smallest (the claim's three)": [0, 1, 2], "five (the claim's)": [0, 1, 2, 3, 4]}
    subsets |= {"three largest": [2, 3, 4], "two largest": [3, 4]}
    reps = {name: features.combine(per_scale, "average", js) for name, js in subsets.items()}
    splits = features.splits(voc["pool"], sizes.voc_train, sizes.splits, seed=prof.seed)
    scores = protocols.voc_protocol(reps, voc, splits, prof.seed).scores
    labels = voc["y_test"]
    mAP = {name: round(100 - loss(s, labels), 2) for name, s in scores.items()}
    five, three, large = (
        scores[k] for k in ("five (the claim's)", "three smallest (the claim's three)", "three largest")
    )

    test_objects = [(b, image_size(s)) for s in ILSVRC(roots["voc"], "val").samples for b in s.boxes]
    trained_on = ILSVRC(synth.ensure(prof, progress=False, log=lambda *_: None), "val").samples
    trained_sides = {
        f"S={S}": round(float(np.median([side_at(b, image_size(s), S) for s in trained_on for b in s.boxes])), 1)
        for S in prof.jitter
    }
    sides = {f"Q={q}": round(float(np.median([side_at(b, size, q) for b, size in test_objects])), 1) for q in Q}
    figures = {
        "claim": CLAIM,
        "chain": args.chain,
        "net": NET,
        "test_images": len(labels),
        "Q": Q,
        "crop": prof.crop,
        "mAP": mAP,
        "claim_effect": paired(five, three, labels),
        "of_more_scales": paired(five, large, labels),
        "of_which_scales": paired(large, three, labels),
        "median_object_side_px": {"test objects at Q": sides, "training objects at the jitter's ends": trained_sides},
        "ledger_mAP": recorded_arms(prof.name, args.chain),
    }
    best = max((k for k in mAP if k.startswith("Q=")), key=mAP.get)
    lo, hi = prof.jitter
    figures["summary"] = (
        f"Chain {args.chain}, {len(labels)} test images: five scales against the claim's three, "
        f"{figures['claim_effect']['effect']:+.1f} on 100 - mAP, split into "
        f"{figures['of_which_scales']['effect']:+.1f} +/- {figures['of_which_scales']['half_width']:.1f} from which "
        f"scales (the three largest against the three smallest) and {figures['of_more_scales']['effect']:+.1f} +/- "
        f"{figures['of_more_scales']['half_width']:.1f} from more of them (five against the three largest; the +/- "
        f"are the images' 95% half-widths, one chain, no seed term). One scale alone: "
        + ", ".join(f"{k} {v:.1f}" for k, v in mAP.items() if k.startswith("Q="))
        + f" mAP, the best {best}. A test object's median side is "
        + ", ".join(f"{v:.0f} px at {k}" for k, v in sides.items())
        + f"; the training objects' was {trained_sides[f'S={lo}']:.0f}-{trained_sides[f'S={hi}']:.0f} px over "
        f"the jitter S in [{lo}, {hi}]."
    )
    out = args.out or Path("results") / f"{prof.name}_voc_scales_mechanism-{args.chain}.json"
    question = "Claim 8.10 taken apart: do five scales beat three because they are more, or because they are larger?"
    print(save_figures(prof.name, out.stem, question, figures, out=out))
    print(figures["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
