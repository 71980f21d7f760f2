"""Record one chain of the book, run on this machine, in the evidence ledger under ``results/``.

    vggrepro book run --profile cpu -p depth_chains=1 -p first_chain=K > chain-K.log 2>&1
    python scripts/record_run.py --profile cpu -p depth_chains=1 -p first_chain=K --log chain-K.log

``runs/`` is not kept between machines, and a `cpu` chain takes about two hours; what a verdict needs
from it is committed instead, as ``results/ledger/<profile>/chain-<seed>.json``
(:mod:`vggrepro.experiments.ledger`): the design it was run with, every chapter's claims table with
each measured claim's per-image evidence, every net the chain trained (its epochs, lr cuts, error
and time), and the provenance (machine, processor, versions, kernels, commits, wall time per
chapter). A chain of a seed the ledger holds, or of another design, is refused with a one-line
error. Give ``-p`` exactly as the book run had it: the parameters name the claims' folder and the
design. ``depth_chains=1`` makes chapter 4 train its depth arms in this chain only: the ledger's
chains are the replications.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vggrepro.book.runner import notebook_seconds, variant_name
from vggrepro.cli.train import parse_knobs
from vggrepro.core.profiles import NAMES, get_profile, knobs
from vggrepro.core.runs import claims_folder, provenance, read_recorded, runs_root
from vggrepro.experiments import ledger
from vggrepro.experiments.results import read_claims, results_root
from vggrepro.train.recipe import profile_knobs


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _run_of(init: str | None) -> str | None:
    """``checkpoint:/.../runs/cpu/train-D-73-.../checkpoint.pt`` -> ``train-D-73-...``: the run a net started from."""
    if not init or ":" not in init:
        return None
    return Path(init.split(":", 1)[1]).parent.name


def trained_nets(profile_runs: Path, knobs: dict | None = None) -> list[dict]:
    """One row per finished training or fine-tuning run: what it trained and where it ended; with
    ``knobs`` (:func:`vggrepro.train.recipe.profile_knobs`), only the nets trained with them (the
    folder may hold an earlier design's)."""
    rows = []
    for path in sorted(profile_runs.glob("*/result.json")):
        r = read_recorded(path)
        if not path.parent.name.startswith(("train-", "loc-")):
            continue
        used = r.get("used", {})
        settings = r.get("settings") or read_recorded(path.parent / "settings.json")  # a box regressor's
        if knobs is not None and "profile" in settings and settings["profile"] != knobs:
            continue
        rows.append(
            {
                "run": path.parent.name,
                "config": settings.get("config"),
                "scale": settings.get("scale"),
                "trainable": settings.get("trainable", "all"),
                "init": settings.get("init", settings.get("source")),
                "started_from": _run_of(r.get("init")),
                "seed": used.get("seed", settings.get("seed")),
                "epochs": r.get("epochs"),
                "lr_cuts": r.get("lr_cuts"),
                "stopped": r.get("stopped"),
                "top1_err": _rounded(r.get("top1_err")),
                "top5_err": _rounded(r.get("top5_err")),
                "final_loss": _rounded(r.get("final_loss")),
                "val_images": r.get("val_images"),
                "seconds": r.get("seconds", r.get("wall_s")),
                "commit": r.get("provenance", {}).get("commit"),
                "date": r.get("provenance", {}).get("date"),
            }
        )
    return rows


def data_digest(profile) -> str:
    """The digest the data set's manifest records of every file (a chain of other data is another design)."""
    manifest = Path(profile.data_root) / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(f"record_run: {manifest} is missing; the chain's data set is not on this machine")
    return read_recorded(manifest)["digest"]


def chain_record(profile_name: str, parameters: dict, log: Path | None, note: str | None, command: str) -> dict:
    """The ledger's record of the chain this machine's runs/ holds (see the module's notes)."""
    overrides = {k: v for k, v in parameters.items() if k in knobs()}
    profile = get_profile(profile_name, **overrides)
    folder = claims_folder(profile_name, variant=variant_name(parameters))
    tables = read_claims(folder)
    if not tables:
        raise SystemExit(f"record_run: {folder} holds no claims; run the book with these -p first")
    seed = ledger.chain_seed(tables)
    expected = profile.seed + profile.first_chain
    if seed != expected:
        raise SystemExit(f"record_run: the claims in {folder} measured chain {seed}, not chain {expected}")
    book_parameters = {k: v for k, v in parameters.items() if k not in overrides}
    made = trained_nets(runs_root() / profile_name, profile_knobs(profile))
    nets = [n for n in made if (n["seed"] or profile.seed) == seed]
    seconds = notebook_seconds(log)
    dates = sorted(n["date"] for n in nets if n["date"])
    return {
        "profile": profile_name,
        "seed": seed,
        "design": ledger.design(profile, data_digest(profile), book_parameters),
        "claims": tables,
        "nets": nets,
        "commits_of_the_nets": sorted({n["commit"] for n in nets if n["commit"]}),
        "first_net_finished": dates[0] if dates else None,
        "last_net_finished": dates[-1] if dates else None,
        "notebook_seconds": seconds,
        "book_seconds": round(sum(seconds.values()), 1) if seconds else None,
        "provenance": provenance(profile_name),
        "note": note,
        "command": command,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True, choices=NAMES)
    p.add_argument(
        "-p",
        dest="parameters",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of the book run, as it was given (e.g. -p first_chain=1)",
    )
    p.add_argument("--log", type=Path, default=None, help="the output of `vggrepro book run` (for wall times)")
    p.add_argument("--note", default=None, help="what a reader should know about how the run went")
    args = p.parse_args(argv)
    try:
        parameters = parse_knobs(args.parameters)
    except ValueError as e:
        raise SystemExit(f"record_run: {e}") from None
    command = "python scripts/record_run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    record = chain_record(args.profile, parameters, args.log, args.note, command)
    try:
        path = ledger.append(record, root=results_root())
    except ValueError as e:
        raise SystemExit(f"record_run: {e}") from None
    rows = sum(len(t) for t in record["claims"].values())
    print(
        f"chain {record['seed']}: {rows} claims from {len(record['claims'])} chapters, "
        f"{len(record['nets'])} nets -> {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
