"""Chunk files: byte-reproducible ``.npz`` writing, checksums, reading.

``numpy.savez`` stamps each zip member with the wall-clock time, so two runs that compute
identical arrays write different bytes. ``write_npz`` writes the same zip container with a fixed
timestamp and member order, uncompressed (float noise does not compress, and ``np.load`` reads
stored members without inflating), so a chunk's sha256 depends only on its contents.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from .._atomic import atomic_path

__all__ = ["write_npz", "read_npz", "sha256_file"]

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` atomically as an ``.npz``; returns the file's sha256 (hex)."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in sorted(arrays):
                arr = np.asarray(arrays[name])
                if arr.dtype == object:
                    raise ValueError(f"{name}: object arrays cannot be stored (allow_pickle=False)")
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME)
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())
        digest = sha256_file(tmp)
    return digest


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (``allow_pickle=False``)."""
    with np.load(Path(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
