"""vggrepro.core.runs: the one run lifecycle that training, fine-tuning and evaluation share."""

from __future__ import annotations

import fcntl

import pytest

from vggrepro.core.runs import Run, processor, provenance


def locked(run: Run) -> bool:
    """Whether another holder has the run's lock now (tried without waiting)."""
    with open(run.dir / ".lock") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_a_missing_run_is_made_once_under_its_lock_then_reused(tmp_path):
    run = Run("test", {"kind": "x", "n": 1}, root=tmp_path)
    made = []

    def make():
        made.append(locked(run))  # the maker works under the run's lock
        run.start()
        return run.finish({"value": 42})

    first = run.reuse_or_make(make)
    again = Run("test", {"kind": "x", "n": 1}, root=tmp_path).reuse_or_make(lambda: pytest.fail("made twice"))
    assert made == [True] and first["value"] == again["value"] == 42
    assert again["run_id"] == run.id and "provenance" in again and not locked(run)


def test_a_run_made_while_waiting_for_the_lock_is_reused(tmp_path):
    """Two processes asking for one run: the second finds it finished once it has the lock."""
    run = Run("test", {"kind": "x"}, root=tmp_path)
    twin = Run("test", {"kind": "x"}, root=tmp_path)
    original_lock = run.lock

    def lock_after_the_twin_finished():
        twin.start()
        twin.finish({"value": 7})  # the other process finished meanwhile
        return original_lock()

    run.lock = lock_after_the_twin_finished
    assert run.reuse_or_make(lambda: pytest.fail("made again"))["value"] == 7


def test_a_folder_holding_another_run_is_an_error_never_its_result(tmp_path):
    run = Run("test", {"kind": "x", "n": 1}, root=tmp_path)
    run.reuse_or_make(lambda: (run.start(), run.finish({"value": 1}))[1])
    other = Run("test", {"kind": "x", "n": 2}, root=tmp_path)
    other.dir = run.dir  # an --out pointing at the first run's folder
    with pytest.raises(ValueError, match=r"holds a run with other settings: asked n=2 \(the folder's: 1\)"):
        other.reuse_or_make(lambda: pytest.fail("made over another run"))


def test_without_the_lock_the_maker_runs_unlocked(tmp_path):
    """A torchrun rank but the first holds no lock (rank 0 does, for the whole run)."""
    run = Run("test", {"kind": "x"}, root=tmp_path)
    run.dir.mkdir(parents=True)
    (run.dir / ".lock").touch()
    seen = []
    run.reuse_or_make(lambda: seen.append(locked(run)) or run.finish({"value": 0}), lock=False)
    assert seen == [False]


def test_provenance_names_the_processor():
    assert provenance()["processor"] == processor() and processor()
