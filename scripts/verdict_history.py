"""How does each claim's verdict change as a scale's chains accrue? A table from the ledger alone.

    python scripts/verdict_history.py --profile cpu --after 2 4 6     # markdown, to stdout
    python scripts/verdict_history.py --profile cpu --after 2 4 6 --json results/cpu_verdict_history.json

For every measured claim recorded in ``results/ledger/<profile>/`` (sanity checks included, design
facts left out): its verdict and effect in each chain alone, and pooled over the first k chains by
seed for each k of ``--after``, held to Holm's control as the results page holds them
(:func:`vggrepro.experiments.verdict_counts.history`). Nothing is trained or evaluated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vggrepro.core.files import atomic_write_json
from vggrepro.core.profiles import NAMES
from vggrepro.core.runs import provenance
from vggrepro.experiments import ledger
from vggrepro.experiments.verdict_counts import history


def markdown(rows: list[dict]) -> str:
    """The rows as one markdown table (a cell's "|" would split it: none is written by cell())."""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=NAMES)
    p.add_argument("--after", type=int, nargs="+", default=[2, 4, 6], help="pool the first k chains, for each k")
    p.add_argument("--json", type=Path, default=None, help="also write the rows, with provenance, to this file")
    args = p.parse_args(argv)
    if any(k < 1 for k in args.after):
        raise SystemExit(f"verdict_history: --after {args.after}: each pool needs at least one chain")
    rows = history(args.profile, sorted(set(args.after)))
    if not rows:
        raise SystemExit(f"verdict_history: the {args.profile} ledger ({ledger.folder(args.profile)}) holds no chain")
    print(markdown(rows))
    if args.json:
        seeds = [c["seed"] for c in ledger.load(args.profile)]
        atomic_write_json(
            args.json, {"profile": args.profile, "chains": seeds, "rows": rows, "provenance": provenance()}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
