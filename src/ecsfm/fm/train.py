"""Surrogate artifacts on disk (the training loop builds on these).

Beside the checkpoint ``surrogate_model.eqx`` live ``normalizers.npz`` (``x_mean, x_std, e_mean,
e_std, p_mean, p_std``) and ``model_meta.json`` (geometry, architecture, parameter names, units
and roles, priors, vocabularies, provenance). All are written atomically and carry a schema
version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import __version__
from .._atomic import atomic_path, write_text

__all__ = [
    "CHECKPOINT_FILENAME",
    "MODEL_META_FILENAME",
    "NORMALIZERS_FILENAME",
    "META_SCHEMA_VERSION",
    "NORMALIZER_KEYS",
    "load_model_metadata",
    "load_saved_normalizers",
    "save_model_metadata",
    "save_normalizers",
]

CHECKPOINT_FILENAME = "surrogate_model.eqx"
MODEL_META_FILENAME = "model_meta.json"
NORMALIZERS_FILENAME = "normalizers.npz"
META_SCHEMA_VERSION = 1
NORMALIZER_KEYS = ("x_mean", "x_std", "e_mean", "e_std", "p_mean", "p_std")


def save_normalizers(path: str | os.PathLike, normalizers) -> None:
    """Write the six normaliser arrays (in ``NORMALIZER_KEYS`` order) atomically."""
    if len(normalizers) != len(NORMALIZER_KEYS):
        raise ValueError(f"normalizers: need {len(NORMALIZER_KEYS)} arrays {NORMALIZER_KEYS}, got {len(normalizers)}")
    arrays = {k: np.asarray(v, np.float32) for k, v in zip(NORMALIZER_KEYS, normalizers)}
    for k in ("x_std", "e_std", "p_std"):
        if np.any(~np.isfinite(arrays[k])) or np.any(arrays[k] <= 0):
            raise ValueError(f"{k}: must be finite and > 0")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, schema_version=np.asarray(META_SCHEMA_VERSION), **arrays)


def load_saved_normalizers(path: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """``(x_mean, x_std, e_mean, e_std, p_mean, p_std)`` as float32 arrays."""
    with np.load(Path(path), allow_pickle=False) as z:
        missing = [k for k in NORMALIZER_KEYS if k not in z.files]
        if missing:
            raise ValueError(f"{path}: missing normaliser arrays {missing}")
        return tuple(np.asarray(z[k], np.float32) for k in NORMALIZER_KEYS)


def save_model_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Write ``meta`` (JSON-serialisable) atomically, stamped with the schema and package version."""
    for key in ("hidden_size", "depth", "cond_dim"):
        if key not in meta:
            raise ValueError(f"meta: missing {key!r}")
    out = {"schema_version": META_SCHEMA_VERSION, "package_version": __version__, **meta}
    write_text(path, json.dumps(out, indent=1, sort_keys=True))


def load_model_metadata(path: str | os.PathLike) -> dict:
    """The model metadata dict (has ``hidden_size``, ``depth``, ``cond_dim`` and the geometry)."""
    meta = json.loads(Path(path).read_text())
    if meta.get("schema_version", META_SCHEMA_VERSION) > META_SCHEMA_VERSION:
        raise ValueError(f"{path}: schema {meta['schema_version']} is newer than this ecsfm reads "
                         f"({META_SCHEMA_VERSION}); upgrade ecsfm")
    return meta
