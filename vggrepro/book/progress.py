"""What the book is training right now: a line per finished epoch of the run in progress.

A chapter trains its nets inside a Jupyter kernel, whose output nobody sees until the chapter has
ended, which under the `cpu` profile can be most of an hour. `book run` watches the profile's runs
folder instead: every training or fine-tuning run appends a record per epoch to its
``metrics.jsonl`` (`vggrepro.train.loop`, `vggrepro.localise`), so the newest such file names the net, its
epoch, and how fast the epochs go, from which the time left follows.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import TextIO

from tqdm import tqdm


def run_label(run_dir: Path, settings: dict) -> str:
    """``train-D-73-from-a-3f2c...`` -> ``train-D-73-from-a, seed 0``: the folder without its hash."""
    name = re.sub(r"-[0-9a-f]{10}$", "", run_dir.name)
    seed = settings.get("used", {}).get("seed", settings.get("seed"))
    return name if seed is None else f"{name}, seed {seed}"


def planned_epochs(settings: dict) -> int | None:
    """The epochs a run may take: what it recorded it used, else its profile's."""
    used = settings.get("used", {}).get("epochs") or settings.get("epochs")
    return used or settings.get("profile", {}).get("epochs")


def last_epoch(metrics: Path) -> tuple[int, float | None] | None:
    """The last finished epoch and its top-1 error (None for a box regressor), or None before one."""
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if "top1_err" in record or "images" in record:  # an epoch's end (classifier or box regressor)
            return int(record["epoch"]), record.get("top1_err")
    return None


class EpochWatcher:
    """Polls ``runs_dir`` every ``every`` seconds from a daemon thread and writes a line to
    ``stream`` whenever a run started after the watcher finishes an epoch. Use as a context manager."""

    def __init__(self, runs_dir: Path, stream: TextIO, every: float = 5.0):
        self.runs_dir, self.stream, self.every = Path(runs_dir), stream, every
        self.started = time.time()
        self.seen: dict[Path, tuple[int, float, int, float]] = {}  # run -> first epoch/time seen, last epoch/time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                line = self.poll()
            except OSError:  # a folder removed under us: try again next time
                continue
            if line:  # above papermill's bar of cells, which tqdm redraws below it
                tqdm.write(line, file=self.stream)

    def poll(self, now: float | None = None) -> str | None:
        """The line for the newest run's newest epoch, once; None when nothing new finished."""
        now = time.time() if now is None else now
        candidates = [p for p in self.runs_dir.glob("*/metrics.jsonl") if p.stat().st_mtime >= self.started]
        if not candidates:
            return None
        metrics = max(candidates, key=lambda p: p.stat().st_mtime)
        found = last_epoch(metrics)
        if found is None:
            return None
        epoch, top1 = found
        first = self.seen.get(metrics)
        if first is not None and first[2] == epoch:
            return None
        self.seen[metrics] = (first[0], first[1], epoch, now) if first else (epoch, now, epoch, now)
        try:
            settings = json.loads((metrics.parent / "settings.json").read_text())
        except (OSError, json.JSONDecodeError):
            settings = {}
        planned = planned_epochs(settings)
        line = f"    {run_label(metrics.parent, settings)}: epoch {epoch}"
        if planned:
            line += f" of at most {planned}"
        if top1 is not None:
            line += f", top-1 error {top1:.1f}%"
        first_epoch, first_time = self.seen[metrics][:2]
        if epoch > first_epoch:
            per_epoch = (now - first_time) / (epoch - first_epoch)
            line += f", {per_epoch:.0f} s/epoch"
            if planned and planned > epoch:
                line += f", at most {(planned - epoch) * per_epoch / 60:.1f} min left in this net"
        return line
