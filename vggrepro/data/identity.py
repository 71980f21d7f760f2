"""What names a data set in a run key: the one owner of that fact (:func:`data_identity`), and the
check of a generated set against its manifest that the name rests on (:func:`verify`).

A generated set is named by its manifest's digest, the same in any folder on any machine, once its
files are checked against that manifest (a set edited, added to or cut must not keep the name of the
set it was); any other folder by a fingerprint of its files' names, sizes and times.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..core.files import atomic_write_json
from .ilsvrc import data_fingerprint

#: The manifest format of a generated set (:mod:`vggrepro.data.synth` writes it).
FORMAT = "vggrepro-synthetic/1"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(root: str | Path) -> dict:
    """A generated set's ``manifest.json``; one that is not vggrepro's (another program's, a JSON list,
    torn) is a ValueError naming it and the fix."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a generated synthetic set")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        manifest, why = None, f"not readable JSON: {type(e).__name__}"
    else:
        why = _not_a_manifest(manifest)
    if why:
        raise ValueError(
            f"{path} is not the manifest of a vggrepro synthetic set ({why}); if {root} is a data set of "
            "your own, rename that file (the folder is then read as it is), else delete the folder and "
            "generate it again (vggrepro data synth)"
        )
    return manifest


def _not_a_manifest(manifest) -> str | None:
    """Why a parsed manifest.json is not one of ours (None: it is)."""
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    if manifest.get("format") != FORMAT:
        return f"format {manifest.get('format')!r}, expected {FORMAT!r}"
    files, params = manifest.get("files"), manifest.get("params")
    if not isinstance(manifest.get("digest"), str) or not isinstance(files, dict) or not isinstance(params, dict):
        return "no 'digest', 'files' and 'params'"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return "'files' is not a map of paths to SHA-256 digests"
    return None


def folder_listing(root: str | Path) -> tuple[dict[str, tuple[int, int]], set[str]]:
    """Every file under ``root`` but hidden ones, as its relative POSIX path -> (size, modification
    time), and every folder (relative paths): what a check of a set's names needs, read in one walk."""
    root = Path(root)
    files, folders = {}, set()
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_folder = Path(folder).relative_to(root)
        folders.update((rel_folder / d).as_posix() for d in dirs)
        for name in names:
            if not name.startswith("."):
                st = os.stat(os.path.join(folder, name))
                files[(rel_folder / name).as_posix()] = (st.st_size, st.st_mtime_ns)
    return files, folders


#: Sets whose every file this process has checked, keyed by their files' names, sizes and times:
#: a set is hashed again only when one of those changes.
_CHECKED: dict[tuple[str, str], dict] = {}


def verify(root: str | Path, *, cached: bool = False) -> dict:
    """Check a generated set against its manifest; return the manifest.

    Every file must be there with its SHA-256, and nothing else may be: a file or folder the manifest
    does not list (an image added to a class, a new class folder) would change what is trained and
    evaluated without changing the set's digest. Hidden files and top-level ``*.json`` (the training
    statistics) are the package's own. A missing, changed or extra file is a ValueError naming it (and
    how many others) and the fix. ``cached``: skip the hashing when this process has checked the set
    already and no file's name, size or modification time has changed since (the names are always
    checked).
    """
    root = Path(root)
    manifest = read_manifest(root)
    on_disk, folders = folder_listing(root)
    key = (str(root.resolve()), _stamp_of(on_disk))
    if cached and key in _CHECKED:
        return _CHECKED[key]
    if cached and _stamped(root, key[1], manifest):
        _CHECKED[key] = manifest
        return manifest
    listed = manifest["files"]
    parents = {p.as_posix() for rel in listed for p in Path(rel).parents if p != Path(".")}
    extra = [rel for rel in sorted(on_disk) if rel not in listed and ("/" in rel or not rel.endswith(".json"))]
    extra += [f"{d}/" for d in sorted(folders - parents)]
    bad = [f"{rel} (not in the manifest)" for rel in extra]
    for rel, digest in listed.items():
        path = root / rel
        if not path.is_file():
            bad.append(f"{rel} (missing)")
        elif sha256(path) != digest:
            bad.append(f"{rel} (changed)")
    if bad:
        fix = "remove what is not in it, or " if extra and len(extra) == len(bad) else ""
        raise ValueError(
            f"synthetic set {root} does not match its manifest: {_printable(bad[0])}"
            + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
            + f"; {fix}delete the folder and generate it again (vggrepro data synth)"
        )
    _CHECKED[key] = manifest
    remember_verified(root, manifest, key[1])
    return manifest


#: A hidden file in a verified set: the listing (names, sizes, times) and digest it was verified at,
#: so that a later process hashes the set again only when a file's name, size or time has changed.
VERIFIED = ".verified.json"


def listing_stamp(root: str | Path) -> str:
    """The digest of a folder's listing as :func:`verify` takes it."""
    return _stamp_of(folder_listing(root)[0])


def _stamp_of(on_disk: dict) -> str:
    # the package's own top-level JSON (stats.json, written after a set is made) is no part of it
    kept = sorted((k, v) for k, v in on_disk.items() if "/" in k or not k.endswith(".json") or k == "manifest.json")
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()


def remember_verified(root: str | Path, manifest: dict, stamp: str | None = None) -> None:
    """Record that ``root``'s files match ``manifest`` as they are now (a read-only folder: nothing)."""
    record = {"listing": stamp or listing_stamp(root), "digest": manifest["digest"]}
    try:
        atomic_write_json(Path(root) / VERIFIED, record)
    except OSError:
        pass


def _stamped(root: Path, stamp: str, manifest: dict) -> bool:
    try:
        record = json.loads((root / VERIFIED).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record == {"listing": stamp, "digest": manifest["digest"]}


def _printable(text: str) -> str:
    """A path that may hold a name that is not UTF-8, with such bytes written as escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def data_identity(root: str | Path) -> str:
    """What names a data set in a run key.

    A generated set (it has a ``manifest.json``): ``synthetic:<digest>``, its manifest's digest of
    every file, after :func:`verify` has found every file as listed and nothing
    else (hashed once per process while no file's name, size or time changes, so a cached result is
    never reused for files that changed). A manifest that is not vggrepro's, or files that do not
    match it, are a ValueError naming the folder and the fix. Any other folder (a user's ImageNet
    copy): ``files:<fingerprint>`` (:func:`vggrepro.data.ilsvrc.data_fingerprint`), which changes when
    the copy is edited in place. A folder that is not there: ``missing``.
    """
    root = Path(os.path.expanduser(str(root)))
    if (root / "manifest.json").is_file():
        return "synthetic:" + verify(root, cached=True)["digest"]
    return "files:" + data_fingerprint(root) if root.is_dir() else "missing"
