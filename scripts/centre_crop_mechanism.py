"""Why does the jittered D's centre crop lose to D/256's? Claim 4.10 taken apart: the training, or the Q.

    python scripts/centre_crop_mechanism.py --profile cpu --chain 2   # results/cpu_centre_crop_mechanism-2.json

Claim 4.10 ("jittered S beats fixed S=256 at one test scale, D, centre crop: ours") sets each net at
its own single test scale, as Table 3 does: D/256 at Q = 256, the jittered D at Q = 384 (the paper's
pixels), each seen through one centre crop. Two things differ between its arms, the training and the
Q. This script separates them on one chain whose nets are in ``runs/<profile>/`` (it never trains: a
missing net is an error), paired on the same validation images:

- both nets' top-1 error at both Q, by centre crop and densely;
- the claim's effect split in two: err(jit, Q384) - err(256, Q256) = [err(jit, Q384) - err(jit, Q256)]
  (the Q, one net) + [err(jit, Q256) - err(256, Q256)] (the training, one Q), each with the 95%
  half-width of its images (one chain: no seed term, so a mechanism and not a verdict);
- the share of each validation object that the centre crop keeps at each Q
  (:func:`vggrepro.data.object_sizes.share_in_centre_crop`), and each arm's error on the images
  whose object the larger Q's crop cuts to less than half.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vggrepro.core.profiles import get_profile
from vggrepro.data import ILSVRC, synth
from vggrepro.data.object_sizes import image_size, share_in_centre_crop
from vggrepro.experiments import claims, grid
from vggrepro.experiments.chains import paired_points
from vggrepro.experiments.results import save_figures

#: The claim this script explains, as chapter 4 declares it (the results page matches it by text).
CLAIM = "Jittered S beats fixed S=256 at one test scale (D, centre crop: ours)"
NETS = {"fixed": "D/256", "jittered": "D/jit"}


def errors(profile, name: str, protocol: str, Q: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Per-image top-1 errors (0/1) of a trained net at one Q, and the images' indices."""
    result = grid.evaluation(profile, name, protocol, Q=Q, seed=seed)
    arm = claims.arm_of_evals(name, {seed: result})
    return arm.errors[0].astype(float), [int(i) for i in result["indices"]]


def kept(sample, Q: int, crop: int) -> float:
    """The share of an image's largest object that its centre crop at Q keeps."""
    largest = max(sample.boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    return share_in_centre_crop(largest, image_size(sample), Q, crop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=("ci", "cpu", "gpu"))
    p.add_argument("--chain", type=int, required=True, help="the chain's training seed; its nets must be in runs/")
    p.add_argument(
        "--out", type=Path, default=None, help="default: results/<profile>_centre_crop_mechanism-<chain>.json"
    )
    args = p.parse_args(argv)
    prof = get_profile(args.profile)
    for name in NETS.values():
        if not grid.run_of(prof, name, args.chain).checkpoint.is_file():
            raise SystemExit(
                f"centre_crop_mechanism: {name} of chain {args.chain} is not in runs/{prof.name}/; "
                f"run the chain first (vggrepro book run --profile {prof.name} -p first_chain={args.chain})"
            )
    Qs = {k: grid.test_scales_of(prof, grid.entry(n).train_S, multi=False)[0] for k, n in NETS.items()}
    err, indices = {}, None
    for protocol in ("centre", "dense"):
        for kind, name in NETS.items():
            for q_of, Q in Qs.items():
                err[protocol, kind, q_of], idx = errors(prof, name, protocol, Q, args.chain)
                if indices is not None and idx != indices:
                    raise SystemExit("centre_crop_mechanism: the evaluations saw different images")
                indices = idx
    samples = ILSVRC(synth.ensure(prof, progress=False, log=lambda *_: None), "val").samples
    share = {q_of: np.array([kept(samples[i], Q, prof.crop) for i in indices]) for q_of, Q in Qs.items()}
    cut = share["jittered"] < 0.5
    c = {k: err["centre", *k] for k in [(n, q) for n in NETS for q in Qs]}
    figures = {
        "claim": CLAIM,
        "chain": args.chain,
        "images": len(indices),
        "Q": Qs,
        "crop": prof.crop,
        "top1_err": {
            f"{protocol}, {NETS[kind]} at Q={Qs[q_of]}": round(100 * float(e.mean()), 2)
            for (protocol, kind, q_of), e in err.items()
        },
        "claim_effect": paired_points(c["jittered", "jittered"], c["fixed", "fixed"]),
        "of_the_Q": paired_points(c["jittered", "jittered"], c["jittered", "fixed"]),
        "of_the_training": paired_points(c["jittered", "fixed"], c["fixed", "fixed"]),
        "dense_same_split": {
            "of_the_Q": paired_points(err["dense", "jittered", "jittered"], err["dense", "jittered", "fixed"]),
            "of_the_training": paired_points(err["dense", "jittered", "fixed"], err["dense", "fixed", "fixed"]),
        },
        "object_share_in_crop": {
            f"Q={Qs[q_of]}": {"mean": round(float(s.mean()), 3), "under_half": round(float((s < 0.5).mean()), 3)}
            for q_of, s in share.items()
        },
        "on_cut_objects": {
            "images": int(cut.sum()),
            **{f"{NETS[n]} at Q={Qs[q]}": round(100 * float(c[n, q][cut].mean()), 2) for n, q in c},
        },
    }
    q_small, q_large = Qs["fixed"], Qs["jittered"]
    figures["summary"] = (
        f"Chain {args.chain}, {len(indices)} images: the claim's {figures['claim_effect']['effect']:+.1f} points "
        f"split into {figures['of_the_Q']['effect']:+.1f} +/- {figures['of_the_Q']['half_width']:.1f} from the Q "
        f"(the jittered D's centre crop at Q={q_large} against its own at Q={q_small}) and "
        f"{figures['of_the_training']['effect']:+.1f} +/- {figures['of_the_training']['half_width']:.1f} from the "
        f"training (both nets at Q={q_small}; the +/- are the images' 95% half-widths, one chain, no seed term). "
        f"At Q={q_large} the {prof.crop}-pixel centre crop keeps on average "
        f"{figures['object_share_in_crop'][f'Q={q_large}']['mean']:.0%} of an object, at Q={q_small} "
        f"{figures['object_share_in_crop'][f'Q={q_small}']['mean']:.0%}; it cuts "
        f"{figures['object_share_in_crop'][f'Q={q_large}']['under_half']:.0%} of the objects to less than half "
        f"at Q={q_large}. Densely, which sees the whole image, the Q gives "
        f"{figures['dense_same_split']['of_the_Q']['effect']:+.1f} and the training "
        f"{figures['dense_same_split']['of_the_training']['effect']:+.1f}."
    )
    out = args.out or Path("results") / f"{prof.name}_centre_crop_mechanism-{args.chain}.json"
    question = "Claim 4.10 taken apart: how much of its effect is the Q of the centre crop, how much the training?"
    print(save_figures(prof.name, out.stem, question, figures, out=out))
    print(figures["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
