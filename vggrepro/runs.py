"""Run folders: ``runs/<profile>/<run-id>/`` keyed by a run's settings, with provenance.

A run folder holds ``settings.json`` (what was asked), ``checkpoint.pt`` (the latest state),
``metrics.jsonl`` (one line per logged step or epoch) and, once finished, ``result.json`` (the
outcome with its provenance). A notebook asks for a run by its settings: a finished run is re-used,
an unfinished one resumes, a missing one trains. That is how notebooks 02-06 share trained nets.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .checkpoints import atomic_write_json

REPO = Path(__file__).resolve().parent.parent


def runs_root() -> Path:
    """Where runs live: ``$VGGREPRO_RUNS`` or the project's ``runs/`` (git-ignored)."""
    return Path(os.environ.get("VGGREPRO_RUNS") or REPO / "runs")


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

    def __init__(self, profile: str, settings: dict, root: Path | None = None):
        self.profile = profile
        self.settings = settings
        self.id = run_id(settings)
        self.dir = (root or runs_root()) / profile / self.id

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def result_path(self) -> Path:
        return self.dir / "result.json"

    def finished(self) -> bool:
        return self.result_path.is_file()

    def result(self) -> dict:
        return json.loads(self.result_path.read_text())

    def start(self) -> None:
        """Create the folder and record the settings (checked against an existing folder)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "settings.json"
        if path.exists():
            old = json.loads(path.read_text())
            if canonical(old) != canonical(json.loads(canonical(self.settings))):
                raise ValueError(f"{self.dir} holds a run with other settings; remove the folder or change --out")
        else:
            atomic_write_json(path, self.settings)

    def finish(self, result: dict, device: str = "cpu") -> dict:
        """Write ``result.json`` atomically, with provenance; the run is then re-used as it is."""
        full = dict(result, settings=self.settings, run_id=self.id, provenance=provenance(device))
        atomic_write_json(self.result_path, full)
        return full

    @contextlib.contextmanager
    def lock(self):
        """An exclusive lock on the run folder (held while training it; released if the process dies)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except Exception:
        return "unknown"


def provenance(device: str = "cpu") -> dict[str, Any]:
    """Versions, device, commit and date: what a reader needs to trust or re-make a figure."""
    import numpy
    import torch

    from . import __version__, kernels

    dev = device
    if str(device).startswith("cuda") and torch.cuda.is_available():
        dev = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    else:
        dev = f"CPU {platform.machine()} x{os.cpu_count()} ({torch.get_num_threads()} threads)"
    return {
        "device": dev,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu_kernels": kernels.state(),  # the vector paths the CPU libraries were pinned to
        "vggrepro": __version__,
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        # Other work on the machine slows a CPU measurement: say how busy it was.
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# -- claims tables, gathered by the results page ------------------------------------------------


def save_claims(profile: str, notebook: str, claims: list) -> Path:
    """Record a notebook's claims table (rows of :meth:`vggrepro.claims.Claim.decide` and
    :func:`vggrepro.claims.design_fact`) for the results page."""
    from dataclasses import asdict, is_dataclass

    rows = [asdict(c) if is_dataclass(c) else dict(c) for c in claims]
    path = runs_root() / profile / "claims" / f"{notebook}.json"
    atomic_write_json(path, {"notebook": notebook, "profile": profile, "claims": rows})
    return path


def load_claims(profile: str, root: Path | None = None) -> dict[str, list[dict]]:
    """Every saved claims table of a profile, by notebook, in notebook order."""
    folder = (root or runs_root()) / profile / "claims"
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text())["claims"] for p in sorted(folder.glob("*.json"))}
