"""The embedded synthetic data set, written in the ILSVRC-2012 layout so one reader serves it and ImageNet.

Every image holds one labelled object on a cluttered background. A class is an object family, a
shape x texture pair ("striped triangle"); colours are random per instance, so colour alone says
nothing about the class. The object's box has a smaller side of 30-90% of the image's smaller side
(a profile may narrow it: the ci set's objects take 50-90%, see ``profiles``),
at a random position, and images vary in size and aspect ratio: scale matters, as it does in
ImageNet. Unlabelled fragments of other shapes and textured patches sit in the background.

The layout (``out`` is the data root)::

    train/<wnid>/<wnid>_<n>.JPEG       training images, n = 1, 2, ...
    Annotation/<wnid>/<wnid>_<n>.xml   PASCAL-VOC box of each training image
    val/synth_val_<nnnnnnnn>.JPEG      validation images, flat
    LOC_val_solution.csv               ImageId,PredictionString ("wnid xmin ymin xmax ymax")
    LOC_synset_mapping.txt             "wnid name" per line, in class order
    manifest.json                      the settings, and the SHA-256 of every file above

Boxes are in pixel-edge coordinates: xmin/ymin is the first covered column/row, xmax/ymax one past the
last. Everything is a function of the seed: each image draws from its own numpy Generator seeded with
(seed, split, class, index), JPEGs are written with fixed settings and no metadata, so the same seed
gives byte-identical files whatever the order of generation.

This module makes and checks whole sets; the classes are :mod:`vggrepro.data.synth_classes`, one image
is :mod:`vggrepro.data.synth_images` (their names are gathered here too: ``synth.render``, ...).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from tqdm import tqdm

from ..core.profiles import PROFILES, get_profile
from .identity import FORMAT, read_manifest, remember_verified, sha256, verify  # noqa: F401  (synth.verify, ...)
from .synth_classes import NOVEL_SHAPES, SHAPES, TEXTURES, SynthClass, class_list, novel_classes, rotated_extent  # noqa: F401
from .synth_images import (
    BACKGROUND_FADE,
    BOX_FRACTION,
    ROTATION,
    image_rng,
    jpeg_bytes,
    render,
    render_multi,
    voc_xml,
)

# -- the whole set ------------------------------------------------------------------------------


class SetExists(ValueError):
    """``generate`` was asked for a folder that already exists."""


#: a folder left by a generation on another machine is stale once untouched this long
STALE_SECONDS = 24 * 3600


def _tmp_prefix(out: Path) -> str:
    """The working folder's name names its owner (host, pid), so a later run can tell a dead one's."""
    return f".{out.name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_tmp(out: Path) -> list[Path]:
    """Delete the working folders that killed generations of ``out`` left behind (``.NAME.tmp-*``):
    those of a process of this host that no longer runs, and any untouched for a day (another host's,
    or an older version's without an owner). A live generation's folder is left alone."""
    removed = []
    host = socket.gethostname()
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        owner = tmp.name[len(f".{out.name}.tmp-") :].rsplit("-", 2)  # host, pid, mkdtemp's random part
        try:
            mine_and_dead = len(owner) == 3 and owner[0] == host and not _alive(int(owner[1]))
            old = time.time() - tmp.stat().st_mtime > STALE_SECONDS
        except (ValueError, OSError):
            continue
        if tmp.is_dir() and (mine_and_dead or old):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


@dataclass(frozen=True)
class SynthSpec:
    """Everything a generated set's bytes are a function of: its counts, seed, image style and classes."""

    num_classes: int
    train_per_class: int
    val_per_class: int
    min_side: tuple[int, int] = (80, 150)  # the images' smaller side, drawn in [lo, hi] pixels
    seed: int = 0
    # the three difficulty knobs a profile may set (synth_images explains them)
    box_fraction: tuple[float, float] = BOX_FRACTION
    rotation: float = ROTATION
    background_fade: float = BACKGROUND_FADE
    classes: list[SynthClass] | None = None  # None: class_list(num_classes)
    objects: tuple[int, int] = (1, 1)  # (at least, at most) objects per image


def generate(out: str | Path, spec: SynthSpec, *, progress: bool = True, workers: int | None = None) -> Path:
    """Write the synthetic set ``spec`` describes to ``out`` (which must not exist yet) and return ``out``.

    Its ``classes`` (default ``class_list(num_classes)``, and then ``num_classes`` must equal their
    number) sets the classes, e.g. :func:`novel_classes`; ``objects`` = (at least, at most) objects
    per image makes a multi-label set (:func:`render_multi`): each image of class folder ``k`` holds
    an object of class ``k`` and others, all in its annotation (and its row of the val CSV).

    ``workers`` processes render images in parallel (default: one per CPU core); the bytes do not
    depend on it, nor on ``progress`` (a bar), so neither is part of the spec.

    The files are written into a temporary folder beside ``out`` and moved into place at the end, so
    an interrupted run leaves no half-made set; folders that killed runs left are removed first
    (:func:`remove_stale_tmp`). When another process generated the same set meanwhile (two
    trainings starting on a fresh machine), its set is kept once it matches this one's manifest.
    """
    # the settings as plain names: the checks, the jobs and the manifest below read them
    num_classes, train_per_class, val_per_class = spec.num_classes, spec.train_per_class, spec.val_per_class
    seed, min_side, classes, objects = spec.seed, spec.min_side, spec.classes, spec.objects
    box_fraction, rotation, background_fade = spec.box_fraction, spec.rotation, spec.background_fade
    out = Path(out)
    if out.exists():
        raise SetExists(f"{out} already exists; delete it or choose another --out to generate a new set")
    if not (0 < min_side[0] <= min_side[1]):
        raise ValueError(f"min_side={min_side}: need 0 < lo <= hi")
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError("train_per_class and val_per_class must be >= 1")
    if classes is not None and len(classes) != num_classes:
        raise ValueError(f"num_classes={num_classes} but {len(classes)} classes were given")
    if not 1 <= objects[0] <= objects[1] <= num_classes:
        raise ValueError(f"objects={objects}: need 1 <= at least <= at most <= num_classes")
    custom = classes is not None or tuple(objects) != (1, 1)
    classes = class_list(num_classes) if classes is None else list(classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=_tmp_prefix(out)))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the set is an ordinary folder
    files: dict[str, str] = {}

    def write(rel: str, data: bytes) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()

    jobs = [("train", k, i) for k in range(num_classes) for i in range(train_per_class)]
    jobs += [("val", j % num_classes, j // num_classes) for j in range(num_classes * val_per_class)]
    if not 0 < box_fraction[0] <= box_fraction[1] <= 1:
        raise ValueError(f"box_fraction={box_fraction}: need 0 < lo <= hi <= 1 (of the image's smaller side)")
    if not 0 <= background_fade <= 1:
        raise ValueError(f"background_fade={background_fade}: need 0 <= fade <= 1")
    style = dict(box_fraction=tuple(box_fraction), rotation=float(rotation), background_fade=float(background_fade))
    who = tuple(classes) if custom else num_classes  # the default classes travel as their number
    jobs = [(split, k, i, who, tuple(min_side), seed, style, tuple(objects)) for split, k, i in jobs]
    workers = max(1, min(workers if workers is not None else (os.cpu_count() or 1), len(jobs) // 200 + 1))
    pool = None
    try:
        bar = _progress(len(jobs), "synthetic images", progress)
        val_rows = []
        if workers > 1:  # images are independent, and each is a function of its own seed
            pool = multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers)
            made = pool.imap(_make, jobs, chunksize=32)
        else:
            made = map(_make, jobs)
        for outputs, val_row in made:
            for rel, data in outputs:
                write(rel, data)
            if val_row:
                val_rows.append(val_row)
            bar.update(1)
        bar.close()
        write("LOC_val_solution.csv", ("ImageId,PredictionString\n" + "\n".join(val_rows) + "\n").encode())
        write("LOC_synset_mapping.txt", "".join(f"{c.wnid} {c.name}\n" for c in classes).encode())
        params = dict(
            num_classes=num_classes,
            train_per_class=train_per_class,
            val_per_class=val_per_class,
            min_side=list(min_side),
            seed=seed,
            box_fraction=list(style["box_fraction"]),
            rotation=style["rotation"],
            background_fade=style["background_fade"],
        )
        if custom:  # (absent from the default sets' manifests, which stay as they were)
            params.update(classes=[[c.wnid, c.shape, c.texture] for c in classes], objects=list(objects))
        manifest = dict(
            format=FORMAT, params=params, versions=_versions(), digest=_digest(files), files=dict(sorted(files.items()))
        )
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        try:
            os.replace(tmp, out)
        except OSError:
            if not out.exists():
                raise
            if not (out / "manifest.json").is_file():
                raise SetExists(
                    f"{out} appeared while generating and is not a generated set; delete it or choose another --out"
                ) from None
            _accept_winner(out, manifest)  # another process finished first: keep its set if it is this one
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.terminate()
    return out


def _accept_winner(out: Path, manifest: dict) -> None:
    """The set another process put at ``out`` while this one generated: the same (it is a function of
    the seed and settings) when its manifest lists the same files and they verify; else a ValueError."""
    theirs = verify(out)
    if theirs.get("digest") != manifest["digest"]:
        raise SetExists(
            f"{out} appeared while generating, holding another set (digest {theirs.get('digest', '')[:12]}, "
            f"this one {manifest['digest'][:12]}); delete it or choose another --out"
        )


def _make(job) -> tuple[list[tuple[str, bytes]], str]:
    """Render one image and its annotation: ([(relative path, bytes), ...], val label row or "")."""
    split, k, i, who, min_side, seed, style, objects = job
    classes = class_list(who) if isinstance(who, int) else list(who)
    cls = classes[k]
    rng = image_rng(seed, split, k, i)
    if objects == (1, 1):
        pixels, box = render(cls, min_side, rng, classes, **style)
        placed = [(cls, box)]
    else:
        pixels, placed = render_multi(cls, min_side, rng, classes, objects, **style)
    h, w = pixels.shape[:2]
    if split == "train":
        stem = f"{cls.wnid}_{i + 1}"
        xml = voc_xml(cls.wnid, stem, w, h, [(c.wnid, b) for c, b in placed]).encode()
        return [(f"train/{cls.wnid}/{stem}.JPEG", jpeg_bytes(pixels)), (f"Annotation/{cls.wnid}/{stem}.xml", xml)], ""
    stem = f"synth_val_{i * len(classes) + k + 1:08d}"
    row = "".join(f"{c.wnid} {b[0]} {b[1]} {b[2]} {b[3]} " for c, b in placed)
    return [(f"val/{stem}.JPEG", jpeg_bytes(pixels))], f"{stem},{row}"


def _digest(files: dict[str, str]) -> str:
    """One checksum for the whole set, to compare two machines at a glance."""
    return hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(files.items())).encode()).hexdigest()


def _versions() -> dict[str, str]:
    return {"numpy": np.__version__, "pillow": PIL.__version__}


def _progress(total: int, desc: str, enabled: bool):
    try:
        return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)
    except Exception:  # tqdm is a core dependency, but a bar is never worth a crash

        class _Null:
            def update(self, n):
                pass

            def close(self):
                pass

        return _Null()


def profile_params(profile) -> dict:
    """The generator's settings for a profile (its synth_* knobs and seed)."""
    return dict(
        num_classes=profile.num_classes,
        train_per_class=profile.synth_train_per_class,
        val_per_class=profile.synth_val_per_class,
        min_side=tuple(profile.synth_min_side),
        seed=profile.seed,
        box_fraction=tuple(profile.synth_box_fraction),
        rotation=float(profile.synth_rotation),
        background_fade=float(profile.synth_background_fade),
    )


def generate_for_profile(
    profile, out: str | Path | None = None, seed: int | None = None, progress: bool = True
) -> Path:
    """Generate the synthetic set of a profile (a name or a Profile) at ``out`` (default: its data_root)."""
    profile = get_profile(profile)
    if profile.data_kind != "synthetic":
        raise ValueError(f"profile {profile.name!r} uses {profile.data_kind} data, not a synthetic set")
    if seed is not None:  # another seed's set has a folder of its own (profiles.own_data_root)
        profile = profile.replace(seed=seed)
    params = profile_params(profile)
    return generate(Path(out) if out is not None else profile.data_path, SynthSpec(**params), progress=progress)


def ensure(profile, out: str | Path | None = None, seed: int | None = None, progress: bool = True, log=print) -> Path:
    """The profile's synthetic set: generated when missing, verified against its manifest otherwise.

    Says which in one line. ``seed`` makes another seed's set, in a folder of its own unless ``out``
    says where (:func:`vggrepro.core.profiles.own_data_root`). A folder made with other settings is a
    ValueError (pass another ``out``; a folder that is no profile's own may be deleted instead).
    """
    profile = get_profile(profile)
    if seed is not None:
        profile = profile.replace(seed=seed)
    root = Path(out) if out is not None else profile.data_path
    want = profile_params(profile)
    if not (root / "manifest.json").is_file():
        t = time.perf_counter()
        try:
            generate(root, SynthSpec(**want), progress=progress)
            remember_verified(root, read_manifest(root))  # its files are those just hashed
            n = want["num_classes"] * (want["train_per_class"] + want["val_per_class"])
            log(f"generated synthetic set {root}: {n} images in {time.perf_counter() - t:.1f} s (seed {want['seed']})")
            return root
        except SetExists:
            if not (root / "manifest.json").is_file():
                if root.is_dir() and not any(root.iterdir()):
                    root.rmdir()  # an empty folder: make the set in its place
                    return ensure(profile, out=out, seed=seed, progress=progress, log=log)
                raise ValueError(
                    f"{root} exists but holds no manifest.json, so it is not a generated set; "
                    "delete it or pass another --out"
                ) from None
            # another process made the set meanwhile: verify it as if it had been found
    t = time.perf_counter()
    manifest = verify(root, cached=True)
    have = {k: tuple(v) if isinstance(v, list) else v for k, v in manifest["params"].items()}
    if have != want:
        differ = ", ".join(
            f"{k}={want.get(k)!r} (the set's: {have.get(k)!r})"
            for k in sorted(set(have) | set(want))
            if have.get(k) != want.get(k)
        )
        owner = next((n for n, p in PROFILES.items() if p.data_kind == "synthetic" and p.data_path == root), None)
        fix = f"it is the {owner} profile's own set: keep it" if owner else "delete the folder"
        raise ValueError(
            f"{root} holds a synthetic set made with other settings than profile {profile.name!r} asks for: "
            f"{differ}; {fix}, or pass another --out (or data_root)"
        )
    log(
        f"found synthetic set {root}: {len(manifest['files'])} files verified against manifest.json "
        f"in {time.perf_counter() - t:.1f} s"
    )
    return root
