"""The evidence ledger: each chain of a scale recorded on its own, all of them pooled into one verdict.

A chain is one replication of the grid: every net trained from one seed, on the scale's one data
set (:func:`vggrepro.experiments.grid.chain_seeds`). The `cpu` scale's chain takes about two hours
on two cores, so the chains a verdict needs are made at different times, on different machines of
the same kind. Each finished chain is one file, ``results/ledger/<profile>/chain-<seed>.json``:

- ``design``: every setting that makes the nets and the data (the profile's knobs, the data set's
  digest, the book's parameters); a chain of another design is refused, with the difference named;
- ``claims``: each chapter's claims table as that chain decided it, every measured row with its
  ``evidence`` (the claim as declared and its arms' per-image errors: :mod:`evidence`);
- ``provenance``: machine, processor, versions, kernels, commit, and the wall time per chapter.

A chain is never overwritten: recording a seed the ledger holds is refused. :func:`pool` decides
each claim again over the arms of every chain, stacked chain by chain, so that its seed term comes
from all the chains recorded (:mod:`vggrepro.experiments.chains`). A claim that is not about the
trained chains (released weights, whose "chains" are training subsets of an SVM) and a design fact
are shown as the newest chain has them. An mAP claim keeps its SVM scores and is decided again
over the chains as :func:`vggrepro.experiments.chapter_claims.decide_map` decides it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..core.files import atomic_write_json
from ..core.profiles import Profile, get_profile
from ..core.runs import REPO, read_recorded
from . import evidence, grid
from .chapter_claims import decide_map
from .claims import Arm, Claim

#: Knobs that change no net and no image: which chains a book runs, where things live, what it says.
NOT_DESIGN = ("name", "notes", "device", "workers", "chains", "first_chain", "data_root")
#: Book parameters that name the chain rather than the design.
CHAIN_PARAMETERS = ("first_chain",)


def folder(profile_name: str, root: Path | None = None) -> Path:
    """Where a profile's chains are recorded: ``results/ledger/<profile>/``."""
    return (root or REPO / "results") / "ledger" / profile_name


def chain_file(profile_name: str, seed: int, root: Path | None = None) -> Path:
    return folder(profile_name, root) / f"chain-{int(seed)}.json"


def design(profile: Profile, data_digest: str, parameters: Mapping[str, str]) -> dict:
    """What makes a chain's nets and data, and so must be equal for chains to pool."""
    knobs = {k: v for k, v in profile.as_dict().items() if k not in NOT_DESIGN}
    book = {k: str(v) for k, v in sorted(parameters.items()) if k not in CHAIN_PARAMETERS and k not in knobs}
    return {
        "profile": profile.name,
        "knobs": knobs,
        "data_digest": data_digest,
        "book_parameters": book,
        "grid": grid_digest(),
    }


def grid_digest() -> str:
    """A digest of the experiment grid as data (every net, its start and budget; the localisation
    nets): chains of another grid measure other nets, and never pool."""
    entries = [repr(e) for e in grid.GRID.values()] + [repr(e) for e in grid.LOC_GRID.values()]
    entries.append(f"finetune lr x{grid.FINETUNE_LR}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def difference(mine: Mapping, theirs: Mapping, path: str = "") -> str | None:
    """The first setting where two designs differ, in words (None: equal)."""
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key, "(unset)"), theirs.get(key, "(unset)")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found = difference(a, b, f"{path}{key}.")
            if found:
                return found
        elif a != b:
            return f"{path}{key} is {json.dumps(a)} here and {json.dumps(b)} in the ledger"
    return None


def load(profile_name: str, root: Path | None = None) -> list[dict]:
    """The recorded chains of a profile, by seed."""
    where = folder(profile_name, root)
    if not where.is_dir():
        return []
    chains = [read_recorded(p) for p in where.glob("chain-*.json")]
    return sorted(chains, key=lambda c: c["seed"])


def recorded_evidence(profile_name: str, chapter: str, claim: str, seed: int, root: Path | None = None) -> dict | None:
    """The evidence the ledger holds for ``claim`` of ``chapter`` in chain ``seed`` (its arms' errors
    or scores), or None where that chain or claim is not recorded: what a script that re-measures a
    chain's nets must reproduce."""
    for record in load(profile_name, root):
        if record.get("seed") == seed:
            for row in record["claims"].get(chapter, []):
                if row["claim"] == claim:
                    return row["evidence"]
    return None


def recorded_errors(profile_name: str, chapter: str, claim: str, seed: int, root: Path | None = None):
    """The error (%) of each arm of ``claim`` in chain ``seed`` as the ledger recorded it, rounded to
    two decimals (None where not recorded): the figure a script re-measuring the nets must match."""
    ev = recorded_evidence(profile_name, chapter, claim, seed, root)
    if ev is None:
        return None
    return {arm: round(100 * float(evidence.unpack(x["errors"][0]).mean()), 2) for arm, x in ev["arms"].items()}


def chain_seed(tables: Mapping[str, list[dict]]) -> int | None:
    """The one chain a book run's tables measured (None: no row carries evidence); a run of
    several chains is refused: the ledger records one chain a file."""
    seeds = set()
    for rows in tables.values():
        for row in rows:
            if _about_chains(row):
                seeds |= evidence.chains_of(row["evidence"]["arms"])
    if len(seeds) > 1:
        raise ValueError(
            f"the claims measured chains {sorted(seeds)}; record one chain a run "
            "(vggrepro book run -p chains=1 -p first_chain=N)"
        )
    return seeds.pop() if seeds else None


def _about_chains(row: Mapping) -> bool:
    """A measured row whose arms' rows are the trained chains (not, as for released weights, an
    SVM's training subsets: ``Claim.over_chains``)."""
    ev = row.get("evidence")
    return bool(ev) and ev["claim"].get("over_chains", True)


def append(record: dict, root: Path | None = None) -> Path:
    """Record one chain; refused when its seed is recorded already or its design differs from the
    ledger's (a ValueError, one line, naming the difference)."""
    profile_name, seed = record["profile"], int(record["seed"])
    where = folder(profile_name, root)
    strangers = [p.name for p in where.glob("*") if not (p.name.startswith("chain-") and p.suffix == ".json")]
    if strangers:
        raise ValueError(f"{where} holds {strangers[0]}, which is not a chain: the ledger holds chains only")
    path = chain_file(profile_name, seed, root)
    if path.exists() or path.is_symlink():
        raise ValueError(
            f"chain {seed} is in the ledger already ({path}); a chain is never overwritten: "
            f"run the next one with -p first_chain={max(c['seed'] for c in load(profile_name, root)) + 1}"
        )
    for other in load(profile_name, root):
        found = difference(record["design"], other["design"])
        if found:
            raise ValueError(f"chain {seed} is of another design than chain {other['seed']}: {found}")
    atomic_write_json(path, record)
    return path


def _stacked(chains: Sequence[tuple[int, Mapping]]) -> dict[str, Arm]:
    """Arms by label, each chain's rows stacked in chain order."""
    rows: dict[str, list] = {}
    for seed, arms in chains:
        for label, arm in arms.items():
            rows.setdefault(label, []).append((seed, [evidence.unpack(e) for e in arm["errors"]]))
    return {
        label: Arm(label, np.vstack([r for _, rs in by for r in rs]), tuple(s for s, _ in by))
        for label, by in rows.items()
    }


def _decided(chains: Sequence[Mapping]) -> dict:
    """A claim decided over the evidence of each chain that measured it (oldest first)."""
    claim = Claim.of(chains[-1]["claim"])
    seeds = [evidence.chains_of(ev["arms"]).pop() for ev in chains]
    if chains[-1].get("metric"):  # an mAP claim: the SVM scores, chain by chain
        labels = evidence.unpack_array(chains[-1]["labels"])
        if any(not np.array_equal(evidence.unpack_array(ev["labels"]), labels) for ev in chains):
            raise ValueError(f"claim {claim.text!r}: its chains were scored on different images")
        runs: dict[str, list] = {}
        for ev in chains:
            for label, arm in ev["arms"].items():
                runs.setdefault(label, []).extend(evidence.unpack_array(s) for s in arm["scores"])
        row = decide_map(claim, runs, labels, seeds)
    else:
        row = claim.decide(_stacked(list(zip(seeds, (ev["arms"] for ev in chains)))))
    row["ledger_chains"] = sorted(seeds)
    return row


def pool(chains: Sequence[Mapping[str, list[dict]]]) -> dict[str, list[dict]]:
    """Claims tables by notebook, each claim about the trained chains decided once over the arms of
    every chain that measured it; the other rows as the newest chain has them. Each pooled row
    names its chains in ``ledger_chains``."""
    order: dict[str, dict[str, list]] = {}  # notebook -> claim text -> [(chain's row), ...]
    for tables in chains:
        for notebook, rows in tables.items():
            for row in rows:
                order.setdefault(notebook, {}).setdefault(row["claim"], []).append(row)
    out = {}
    for notebook, claims in order.items():
        out[notebook] = []
        for rows in claims.values():
            newest = rows[-1]
            if not all(_about_chains(r) for r in rows):
                out[notebook].append(newest)
                continue
            out[notebook].append(_decided([r["evidence"] for r in rows]))
    return dict(sorted(out.items()))


def pooled(profile_name: str, local: Mapping[str, list[dict]] | None = None, root: Path | None = None) -> dict:
    """A profile's claims pooled over its ledger and, when it measured a chain the ledger lacks, this
    machine's own run (``local``: :func:`vggrepro.core.runs.load_claims`); {} without a ledger."""
    recorded = load(profile_name, root)
    if not recorded:
        return {}
    tables = [c["claims"] for c in recorded]
    if local and chain_seed(local) not in (None, *(c["seed"] for c in recorded)):
        return pool([*tables, dict(local)])
    where = folder(profile_name, root)
    signature = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(where.glob("chain-*.json")))
    return copy.deepcopy(_pooled_recorded(str(where), signature))


@functools.lru_cache(maxsize=4)
def _pooled_recorded(where: str, signature: tuple) -> dict:
    """The recorded chains of a ledger folder pooled once per process (``signature``: the files'
    names, times and sizes, so that a chain recorded since is seen): the page asks many times."""
    chains = sorted((read_recorded(Path(where) / name) for name, *_ in signature), key=lambda c: c["seed"])
    return pool([c["claims"] for c in chains])


def pooled_with(profile_name: str, notebook: str, rows: list[dict], root: Path | None = None) -> list[dict]:
    """A chapter's claims as its table shows them: this run's ``rows`` pooled with every chain the
    profile's ledger holds (each row then says how many chains it rests on); ``rows`` themselves
    where the profile has no ledger."""
    return pooled(profile_name, {notebook: rows}, root).get(notebook, rows)


def chains_table(profile_name: str, root: Path | None = None) -> list[dict]:
    """One row per recorded chain: its seed, where and when it ran, from which commit, how long
    its book took and how many nets it trained."""
    rows = []
    for chain in load(profile_name, root):
        made = chain.get("provenance", {})
        seconds = chain.get("book_seconds")
        rows.append(
            {
                "chain": chain["seed"],
                "processor": made.get("processor", "-"),
                "threads": made.get("device", "-"),
                "torch": made.get("torch", "-"),
                "recorded at commit": (made.get("commit") or "-")[:9],
                "recorded": (made.get("date") or "-")[:10],
                "book minutes": "-" if seconds is None else round(seconds / 60, 1),
                "nets trained": len(chain.get("nets", [])),
            }
        )
    return rows


def nets_table(profile_name: str, root: Path | None = None) -> list[dict]:
    """One row per classification net of the grid, one column per recorded chain: the net's top-1
    error at its own check (centre crop, Q = its S) and how its run ended, ``"27.0 (1 cut, 50 ep)"``
    (a dash where the chain did not record it), and last the ``spread``: the largest error less the
    smallest, in points (None under two chains). A net whose error moves from chain to chain moves
    every claim that uses it: the seed term of those claims, with its cause beside it."""
    profile = get_profile(profile_name)
    chains = load(profile_name, root)
    rows = []
    for name in grid.GRID:
        row, errors = {"net": name}, []
        for chain in chains:
            nets = {n["run"]: n for n in chain.get("nets", [])}
            net = nets.get(grid.run_of(profile, name, chain["seed"]).id)
            row[f"chain {chain['seed']}"] = _net_cell(net)
            if net and net.get("top1_err") is not None:
                errors.append(net["top1_err"])
        row["spread"] = round(max(errors) - min(errors), 1) if len(errors) > 1 else None
        rows.append(row)
    return rows


def _net_cell(net: Mapping | None) -> str:
    if not net or net.get("top1_err") is None:
        return "-"
    k = net.get("lr_cuts")
    cuts = "" if k is None else f"{k} cut{'s' * (k != 1)}, "
    return f"{net['top1_err']:.1f} ({cuts}{net['epochs']} ep)"
