"""A claim's evidence, kept so that chains run at different times can be pooled into one verdict.

A verdict row (:meth:`vggrepro.experiments.claims.Claim.decide`) says what one run found. The ledger
(:mod:`vggrepro.experiments.ledger`) needs more: the claim as declared and each arm's per-image
errors in the run's chains, so that a later chain's arms can be stacked under them and the claim
decided again over all of them. This module turns both into JSON and back, compactly: an image's
error of 0 or 1 is one bit (2,400 images: 400 characters); a mean over several SVM splits within a
chain is kept as a number.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping

import numpy as np


def pack(errors: np.ndarray) -> dict:
    """One chain's per-image errors as JSON: ``{"bits": base64, "images": n}`` where every error
    is 0 or 1, else ``{"values": [...]}`` (means over splits, to 9 decimals)."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    if np.isin(e, (0.0, 1.0)).all():
        return {"images": int(e.size), "bits": base64.b64encode(np.packbits(e.astype(np.uint8))).decode("ascii")}
    return {"images": int(e.size), "values": [round(float(x), 9) for x in e]}


def unpack(packed: Mapping) -> np.ndarray:
    """The per-image errors :func:`pack` wrote."""
    n = int(packed["images"])
    if "bits" in packed:
        bits = np.unpackbits(np.frombuffer(base64.b64decode(packed["bits"]), dtype=np.uint8))
        if bits.size < n:
            raise ValueError(f"packed errors hold {bits.size} bits for {n} images: the record is torn")
        return bits[:n].astype(np.float64)
    values = np.asarray(packed["values"], dtype=np.float64)
    if values.size != n:
        raise ValueError(f"packed errors hold {values.size} values for {n} images: the record is torn")
    return values


def arms_record(arms: Mapping) -> dict:
    """Arms (:class:`vggrepro.experiments.claims.Arm`, by label) as JSON: per arm its chains and,
    per chain, the packed errors."""
    return {
        label: {"chains": list(arm.chains), "errors": [pack(row) for row in arm.errors]} for label, arm in arms.items()
    }


def chains_of(record: Mapping) -> set[int]:
    """Every chain an :func:`arms_record` names."""
    return {int(c) for arm in record.values() for c in arm["chains"]}


def pack_array(a: np.ndarray) -> dict:
    """Any array as JSON, exactly: its shape and its float64 bytes, compressed."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "zlib": base64.b64encode(zlib.compress(a.tobytes(), 9)).decode("ascii")}


def unpack_array(packed: Mapping) -> np.ndarray:
    """The array :func:`pack_array` wrote."""
    raw = zlib.decompress(base64.b64decode(packed["zlib"]))
    return np.frombuffer(raw, dtype=np.float64).reshape(packed["shape"]).copy()


def scores_record(runs: Mapping, labels: np.ndarray, chains) -> dict:
    """An mAP claim's arms as JSON: per arm its chains and, per chain, the SVM splits' scores
    (splits, images, classes); and the images' labels (images, classes)."""
    arms = {
        label: {"chains": [int(c) for c in chains], "scores": [pack_array(s) for s in by_chain]}
        for label, by_chain in runs.items()
    }
    return {"labels": pack_array(labels), "arms": arms}
