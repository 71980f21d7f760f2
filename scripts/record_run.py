"""Record a whole book run made on this machine under ``results/``, so that it outlives ``runs/``.

    vggrepro book run --profile cpu > cpu_book.log 2>&1
    python scripts/record_run.py --profile cpu --log cpu_book.log

``runs/`` is not kept between machines, and the `cpu` book takes two hours; what a reader needs
from it is committed instead, each file with the provenance of the run (machine, versions, the
commit the run was made from, dates, the book's wall time per notebook):

- ``results/claims_<profile>/<notebook>.json``: each chapter's claims table, as the chapter saved
  it (the results page reads these beside ``ci``'s);
- ``results/runs_<profile>/nets.json``: every trained net's final validation error, by net and
  seed (the training's own centre-crop validation), with its epochs, lr cuts and time;
- ``results/runs_<profile>/book/<notebook>.ipynb``: the executed notebooks, tables and plots.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from vggrepro.core.files import atomic_write_json
from vggrepro.core.profiles import NAMES
from vggrepro.core.runs import load_claims, provenance, read_recorded, runs_root
from vggrepro.experiments.results import results_root

#: A notebook's line of `vggrepro book run`: "[2/8] book/02_training.ipynb (...) ... ok in 123.4 s"
NOTEBOOK_DONE = re.compile(r"\[\d+/\d+\] book/(\S+)\.ipynb .*?ok in ([0-9.]+) s")


def notebook_seconds(log: Path | None) -> dict[str, float]:
    """Each notebook's wall time, as `book run` printed it."""
    if log is None:
        return {}
    return {m.group(1): float(m.group(2)) for m in NOTEBOOK_DONE.finditer(log.read_text(errors="replace"))}


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _run_of(init: str | None) -> str | None:
    """``checkpoint:/.../runs/cpu/train-D-73-.../checkpoint.pt`` -> ``train-D-73-...``: the run a net started from."""
    if not init or ":" not in init:
        return None
    return Path(init.split(":", 1)[1]).parent.name


def trained_nets(profile_runs: Path) -> list[dict]:
    """One row per finished training or fine-tuning run: what it trained and where it ended."""
    rows = []
    for path in sorted(profile_runs.glob("*/result.json")):
        r = read_recorded(path)
        if not path.parent.name.startswith(("train-", "loc-")):
            continue
        used = r.get("used", {})
        settings = r.get("settings") or read_recorded(path.parent / "settings.json")  # a box regressor's
        rows.append(
            {
                "run": path.parent.name,
                "config": settings.get("config"),
                "scale": settings.get("scale"),
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True, choices=NAMES)
    p.add_argument("--log", type=Path, default=None, help="the output of `vggrepro book run` (for wall times)")
    p.add_argument("--note", default=None, help="what a reader should know about how the run went")
    args = p.parse_args(argv)
    runs = runs_root() / args.profile
    tables = load_claims(args.profile)
    if not tables:
        raise SystemExit(
            f"record_run: {runs / 'claims'} holds no claims; run `vggrepro book run --profile {args.profile}` first"
        )
    nets = trained_nets(runs)
    seconds = notebook_seconds(args.log)
    commits = sorted({n["commit"] for n in nets if n["commit"]})
    dates = sorted(n["date"] for n in nets if n["date"])
    run = {
        "profile": args.profile,
        "commits_of_the_nets": commits,
        "first_net_finished": dates[0] if dates else None,
        "last_net_finished": dates[-1] if dates else None,
        "notebook_seconds": seconds,
        "book_seconds": round(sum(seconds.values()), 1) if seconds else None,
        "recorded": provenance("cpu"),
        "note": args.note,
        "command": f"vggrepro book run --profile {args.profile}; python scripts/record_run.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    claims_dir = results_root() / f"claims_{args.profile}"
    for notebook, claims in tables.items():
        atomic_write_json(
            claims_dir / f"{notebook}.json",
            {"notebook": notebook, "profile": args.profile, "claims": claims, "run": run},
        )
    out = results_root() / f"runs_{args.profile}"
    atomic_write_json(out / "nets.json", {"profile": args.profile, "nets": nets, "run": run})
    executed = sorted((runs / "book").glob("*.ipynb"))
    (out / "book").mkdir(parents=True, exist_ok=True)
    for nb in executed:
        shutil.copyfile(nb, out / "book" / nb.name)
    print(
        f"{len(tables)} claims tables -> {claims_dir}; {len(nets)} nets -> {out / 'nets.json'}; "
        f"{len(executed)} executed notebooks -> {out / 'book'}"
    )
    print(json.dumps({k: run[k] for k in ("commits_of_the_nets", "book_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
