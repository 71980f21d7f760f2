"""Files written atomically: a reader sees the old file or the new one, never half of it; and
files opened for writing in place (a lock, an appended log) never through a symbolic link."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    The file gets the permissions of an ordinary new file (0666 less the umask), not mkstemp's 0600:
    a runs folder may be shared. A full disk or a read-only folder is an OSError naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):  # the same errno (so the same subclass), with the file's name
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed atomic write left in ``folder`` (``.<name>.*.tmp``).
    Call it only while no other process writes there (a run folder, under the run's lock)."""
    stale = sorted(Path(folder).glob(".*.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n").encode())


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


# -- files written in place: never through a link -------------------------------------------------


def open_no_follow(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` of ``path`` that refuses a symbolic link there (a planted ``.lock -> somefile``
    would otherwise be truncated or appended to): an OSError naming the link and the fix."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise OSError(
                errno.ELOOP, f"{path} is a symbolic link, which vggrepro does not write through; remove the link"
            ) from None
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from None


def append_line(path: str | Path, line: str) -> None:
    """Append one line to a log (created when missing), never through a link."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line + "\n")


@contextlib.contextmanager
def exclusive_lock(path: str | Path, waiting: str):
    """Hold an exclusive ``flock`` on ``path`` (created when missing, never through a link; released if
    the process dies). When another process holds it, print ``waiting`` on stderr, then wait."""
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_writable(folder: str | Path, fix: str) -> None:
    """A one-line ValueError now if ``folder`` (or the nearest folder above it that exists, where it
    will be made) cannot take new files, rather than after the work: it names the folder and ``fix``."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"cannot write to {folder} ({existing}: {e.strerror or e}); {fix}") from None
