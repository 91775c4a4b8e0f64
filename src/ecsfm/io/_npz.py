"""A Measurement as an ``.npz`` file: ``save_npz`` / ``load_npz`` (never pickled).

Keys: ``schema_version`` (int, 1), ``time`` (N,) s, ``potential`` (N,) V, ``current_A`` (N,) A
(IUPAC), ``scan_rate`` () V/s (NaN when None), ``cycle`` (N,) int, ``metadata`` (1,) str: JSON.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ._measurement import Measurement

__all__ = ["NPZ_SCHEMA_VERSION", "load_npz", "save_npz"]

NPZ_SCHEMA_VERSION = 1
_KEYS = ("schema_version", "time", "potential", "current_A", "scan_rate", "cycle", "metadata")


def save_npz(measurement: Measurement, path) -> Path:
    """Write ``measurement`` to ``path`` atomically (a reader sees the old file or the whole new one)."""
    if not isinstance(measurement, Measurement):
        raise ValueError(f"measurement: expected a Measurement, got {type(measurement).__name__}")
    path = Path(path)
    m = measurement
    arrays = {
        "schema_version": np.asarray(NPZ_SCHEMA_VERSION, np.int64),
        "time": m.time, "potential": m.potential, "current_A": m.current,
        "scan_rate": np.asarray(np.nan if m.scan_rate is None else m.scan_rate, np.float64),
        "cycle": m.cycle,
        "metadata": np.asarray([json.dumps(dict(m.metadata), sort_keys=True, allow_nan=False)]),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_npz(path) -> Measurement:
    """Read a file written by :func:`save_npz`; a wrong schema, missing key or bad value raises a
    one-line ValueError naming the file."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not an npz archive (a single .npy array)")
        with z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: not an ecsfm measurement: missing key(s) {', '.join(missing)}")
            version = z["schema_version"]
            if version.shape != () or not np.issubdtype(version.dtype, np.integer) \
                    or int(version) != NPZ_SCHEMA_VERSION:
                raise ValueError(f"{path}: schema_version {version.tolist()!r} is not {NPZ_SCHEMA_VERSION}, "
                                 "the version this ecsfm reads")
            data = {k: z[k] for k in _KEYS}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable npz file ({type(err).__name__})") from None
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: {msg.splitlines()[0]}") from None
    meta_arr = data["metadata"]
    if meta_arr.shape != (1,) or meta_arr.dtype.kind != "U":
        raise ValueError(f"{path}: metadata must be one JSON string, got {meta_arr.dtype} {meta_arr.shape}")
    try:
        meta = json.loads(str(meta_arr[0]))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: metadata is not JSON ({err.msg})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: metadata must be a JSON object")
    rate = data["scan_rate"]
    if rate.shape != ():
        raise ValueError(f"{path}: scan_rate must be a scalar, got shape {rate.shape}")
    rate = float(rate)
    try:
        return Measurement(time=data["time"], potential=data["potential"], current=data["current_A"],
                           scan_rate=None if math.isnan(rate) else rate, cycle=data["cycle"], metadata=meta)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
