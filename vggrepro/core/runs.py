"""The run lifecycle: ``runs/<profile>/<run-id>/`` keyed by a run's settings, with provenance.

A run folder holds ``settings.json`` (what was asked), ``checkpoint.pt`` (the latest state),
``metrics.jsonl`` (one line per logged step or epoch) and, once finished, ``result.json`` (the
outcome with its provenance). A notebook asks for a run by its settings: a finished run is re-used,
an unfinished one resumes, a missing one trains. That is how chapters 02-08 share trained nets.

Training, fine-tuning and evaluation all go through one lifecycle, :meth:`Run.reuse_or_make`:
check the folder's settings, re-use a finished result, else take the lock, look again (another
process may have finished it meanwhile), and make it; the maker calls :meth:`Run.start` and
:meth:`Run.finish`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy
import torch

from .. import __version__
from . import kernels
from .files import atomic_write_json, exclusive_lock, remove_stale_temporaries
from .project import env_path, find_root, project_root


def __getattr__(name: str):
    # ``runs.REPO``, the project's folder, is looked up when asked for, not at import: an installed
    # copy finds its checkout through $VGGREPRO_HOME or the current folder (vggrepro.core.project).
    if name == "REPO":
        return project_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def runs_root() -> Path:
    """Where runs live: ``$VGGREPRO_RUNS`` or the project's ``runs/`` (git-ignored)."""
    return env_path("VGGREPRO_RUNS") or project_root() / "runs"


def canonical(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)


def run_id(settings: dict) -> str:
    """A readable prefix (config, scale, init) and a hash of every setting: equal settings, equal id."""
    digest = hashlib.sha256(canonical(settings).encode()).hexdigest()[:10]
    parts = [str(settings[k]) for k in ("kind", "config", "scale", "init") if settings.get(k) not in (None, "")]
    prefix = "-".join(parts).replace("/", "_").replace(" ", "").replace("[", "").replace("]", "").replace(",", "_")
    return f"{prefix}-{digest}" if prefix else digest


class Run:
    """One run folder."""

    def __init__(self, profile_name: str, settings: dict, root: Path | None = None):
        self.profile = profile_name
        self.settings = settings
        self.id = run_id(settings)
        self.dir = (root or runs_root()) / profile_name / self.id

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def result_path(self) -> Path:
        return self.dir / "result.json"

    @property
    def settings_path(self) -> Path:
        return self.dir / "settings.json"

    def finished(self) -> bool:
        return self.result_path.is_file()

    def result(self) -> dict:
        return read_json(self.result_path, "delete it and rerun (a training run: with --resume) to make it again")

    def check_settings(self) -> None:
        """A folder that holds another run's settings is an error naming what differs (an ``--out``
        pointing at another run must not hand back that run's result). A folder with no checkpoint
        and no result has nothing to lose: it is simply re-used."""
        if not self._holds_work():
            return
        if self.settings_path.is_file():
            old = read_json(self.settings_path, "restore it, or remove the run folder to start again")
        elif self.result_path.is_file():
            old = read_json(self.result_path, "delete it and rerun with --resume").get("settings", {})
        else:
            return
        old = {k: v for k, v in old.items() if k != "used"}  # the resolved values, not the identity
        new = json.loads(canonical(self.settings))
        if canonical(old) != canonical(new):
            diff = ", ".join(f"{k}={_short(b)} (the folder's: {_short(a)})" for k, a, b in _differing(old, new))
            raise ValueError(
                f"{self.dir} holds a run with other settings: asked {diff}; "
                "pass another --out, or remove the folder to retrain it"
            )

    def _holds_work(self) -> bool:
        return self.checkpoint.exists() or self.finished()

    def start(self, used: dict | None = None) -> None:
        """Create the folder and record the settings (checked against an existing folder), with
        ``used``: the values the run resolved (defaults filled in). Removes the temporary files of
        a write that a kill interrupted (call it under :meth:`lock`)."""
        self.check_settings()
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.dir)
        if not self._holds_work() or not self.settings_path.exists():
            atomic_write_json(self.settings_path, dict(self.settings, **({"used": used} if used else {})))

    def finish(self, result: dict, device: str = "cpu") -> dict:
        """Write ``result.json`` atomically, with provenance; the run is then re-used as it is."""
        full = dict(result, settings=self.settings, run_id=self.id, provenance=provenance(device))
        atomic_write_json(self.result_path, full)
        return full

    def reuse_or_make(self, make: Callable[[], dict], *, lock: bool = True) -> dict:
        """The run's result: a finished run's as it is, else what ``make()`` returns, made under the
        run's lock (``lock=False``: a caller that holds no lock, as a torchrun rank but the first).
        A folder holding another run's settings is an error, never that run's result."""
        self.check_settings()
        if self.finished():
            return self.result()
        with self.lock() if lock else contextlib.nullcontext():
            self.check_settings()
            if self.finished():  # another process made it while this one waited for the lock
                return self.result()
            return make()

    def lock(self):
        """An exclusive lock on the run folder (held while training it; released if the process dies).
        The lock file is never opened through a symbolic link (a planted ``.lock`` link is refused)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(self.dir / ".lock", f"waiting for run {self.dir}: another process holds its lock")

    def metrics(self) -> list[dict]:
        return read_metrics(self.metrics_path)


#: What a folder's files say it holds (the first that matches): a command refuses to write its own
#: record into a folder that holds another kind (an evaluation's result over a training run's).
RECORD_FILES = (
    ("a data set", ("manifest.json", "train", "val", "stats.json")),
    ("a source checkout", ("_toc.yml", "pyproject.toml")),
    ("a training run", ("checkpoint.pt", "metrics.jsonl")),
    ("an evaluation", ("posteriors.pt",)),
)
KINDS = {"train": "a training run", "eval": "an evaluation"}


def record_in(folder: str | Path) -> tuple[str, list[str]] | None:
    """(what ``folder`` holds, the files that say so), or None for a missing or empty folder or
    one holding nothing of these. A run's own ``settings.json`` or ``result.json`` names its kind."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for what, names in RECORD_FILES:
        found = [n for n in names if (folder / n).exists()]
        if found:
            return what, found
    for name in ("settings.json", "result.json"):
        if (folder / name).is_file():
            try:
                record = json.loads((folder / name).read_text())
                kind = (record.get("settings", record) if name == "result.json" else record).get("kind")
            except (ValueError, OSError, AttributeError):
                kind = None
            return KINDS.get(kind, "another program's record"), [name]
    return None


def refuse_other_record(folder: str | Path, kind: str, flag: str) -> None:
    """A one-line ValueError when ``folder`` holds a record other than a ``kind`` run ("train",
    "eval"), which writing this one there would overwrite or mix with; the fix is another ``flag``."""
    held = record_in(folder)
    if held is not None and held[0] != KINDS[kind]:
        what, files = held
        raise ValueError(
            f"{flag} {folder} holds {what} ({', '.join(files)}), which {KINDS[kind]} written there would "
            f"overwrite or mix with; pass {flag} an empty folder or one of {KINDS[kind]}"
        )


def read_json(path: Path, fix: str) -> dict:
    """A run file's JSON; a torn or edited one is a ValueError naming the file and ``fix``."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); {fix}") from None


def read_metrics(path: Path) -> list[dict]:
    """The rows of ``metrics.jsonl``. A kill can tear only the last line (rows are appended one at
    a time): that line is dropped; a bad line before it is an error naming the file."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not JSON; remove that line or the run folder") from None
    return rows


def _differing(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) where they differ; nested keys read ``profile.crop``."""
    found = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "-"), new.get(k, "-")
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differing(a, b, f"{prefix}{k}.")
        elif canonical(a) != canonical(b):
            found.append((f"{prefix}{k}", a, b))
    return found


def _short(value) -> str:
    text = canonical(value)
    return text if len(text) <= 60 else text[:57] + "..."


#: Where the commit travels when ``.git`` does not (a working tree copied to a GPU machine): this
#: environment variable, else this file at the checkout's root (``scripts/gpu_window.sh --stamp``).
COMMIT_ENV = "VGGREPRO_COMMIT"
COMMIT_STAMP = ".vggrepro-commit"


def git_commit() -> str:
    """HEAD's commit (``+dirty`` with uncommitted changes to tracked files); in a checkout without
    ``.git``, the commit that travelled with it (:data:`COMMIT_ENV`, then :data:`COMMIT_STAMP`);
    "unknown" only when none of these says."""
    try:
        repo = find_root()
        if repo is None:  # an installed copy run outside any checkout has no commit to name
            return "unknown"
        if (repo / ".git").exists():
            return _from_git(repo)
        stamp = repo / COMMIT_STAMP
        travelled = os.environ.get(COMMIT_ENV) or (stamp.read_text().strip() if stamp.is_file() else "")
        return travelled.split()[0] if travelled else "unknown"
    except Exception:
        return "unknown"


def _from_git(repo: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
    commit = out.stdout.strip() or "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def processor() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: str = "cpu") -> dict[str, Any]:
    """Versions, device, processor, commit and date: what a reader needs to trust or re-make a figure."""
    dev = device
    if str(device).startswith("cuda") and torch.cuda.is_available():
        dev = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    else:
        dev = f"CPU {platform.machine()} x{os.cpu_count()} ({torch.get_num_threads()} threads)"
    return {
        "device": dev,
        # The CPU's make: the pinned kernel paths still block their sums by its caches, so two
        # x86-64 processors can differ in the last bits (seen between two of this project's machines)
        "processor": processor(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu_kernels": kernels.state(),  # the vector paths the CPU libraries were pinned to
        "vggrepro": __version__,
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        # Other work on the machine slows a CPU measurement: say how busy it was.
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# -- claims tables, gathered by the results page ------------------------------------------------


#: Set by ``vggrepro book run`` while a chapter runs with changed parameters (e.g. ``epochs=1``):
#: its claims are then saved apart, in ``claims-<variant>/``, so that they never stand in for the
#: profile's own claims on the results page.
VARIANT_ENV = "VGGREPRO_BOOK_VARIANT"


def claims_folder(profile_name: str, *, variant: str | None = None, root: Path | None = None) -> Path:
    """Where a profile's claims tables are saved: ``runs/<profile>/claims/``, or for a run with
    changed parameters ``runs/<profile>/claims-<variant>/`` (which the results page does not read)."""
    base = (root or runs_root()) / profile_name
    if not variant:
        return base / "claims"
    return base / ("claims-" + "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in variant))


def save_claims(profile_name: str, notebook: str, claims: list) -> Path:
    """Record a notebook's claims table (rows of :meth:`vggrepro.experiments.claims.Claim.decide` and
    :func:`vggrepro.experiments.claims.design_fact`) for the results page; under changed parameters
    (:data:`VARIANT_ENV`), apart from the profile's own."""
    rows = [asdict(c) if is_dataclass(c) else dict(c) for c in claims]
    variant = os.environ.get(VARIANT_ENV) or None
    path = claims_folder(profile_name, variant=variant) / f"{notebook}.json"
    record = {"notebook": notebook, "profile": profile_name, "claims": rows}
    atomic_write_json(path, dict(record, variant=variant) if variant else record)
    return path


def load_claims(profile_name: str, root: Path | None = None) -> dict[str, list[dict]]:
    """Every saved claims table of a profile, by notebook, in notebook order."""
    folder = claims_folder(profile_name, root=root)
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text())["claims"] for p in sorted(folder.glob("*.json"))}


# -- the one reader of recorded figures (results/*.json) ------------------------------------------


def read_recorded(path: str | Path) -> dict:
    """One recorded file of ``results/``: its JSON object, or a ValueError naming the file (a torn or
    hand-edited record is never skipped in silence: the page would then show less than was measured)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable record ({type(e).__name__}: {e}); restore it from git") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds a JSON {type(record).__name__}, not a record (an object); restore it from git")
    return record
