"""Chunk files: byte-reproducible ``.npz`` writing, checksums, reading.

``numpy.savez`` stamps each zip member with the wall-clock time, so two runs that compute
identical arrays write different bytes. ``write_npz`` writes the same zip container with a fixed
timestamp and member order, uncompressed (float noise does not compress, and ``np.load`` reads
stored members without inflating), so a chunk's sha256 depends only on its contents.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._atomic import atomic_path

__all__ = ["write_npz", "read_npz", "sha256_file", "dataset_file", "read_chunk", "read_json", "read_manifest",
           "MANIFEST_KEYS", "CHUNK_KEYS"]

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
#: Keys every dataset manifest written by ``generate`` has and its readers use.
MANIFEST_KEYS = ("augmentation_names", "chunks", "max_species", "nx", "params", "plan", "recipe", "simulator",
                 "stage_names", "target_len", "task_names", "units")
#: Arrays every dataset chunk holds.
CHUNK_KEYS = ("aug_id", "base_id", "e", "i", "ox", "p", "red", "split", "stage_id", "t", "task_id")


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
    """All arrays of an ``.npz`` (``allow_pickle=False``); a file that is not a plain npz (object
    arrays, a pickle, a truncated archive) raises a one-line ValueError naming it."""
    path = Path(path)
    try:
        return _npz_arrays(np.load(path, allow_pickle=False))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (ValueError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable npz of plain arrays ({_first_line(err)})") from None


def _npz_arrays(z) -> dict[str, np.ndarray]:
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError("a single .npy array, not an npz archive")
    with z:
        return {k: z[k] for k in z.files}


def _first_line(err: BaseException) -> str:
    msg = str(err).strip()
    if "pickle" in msg.lower():  # numpy's own wording ends with advice to load it unsafely
        return "it holds pickled (object) data, which ecsfm never loads"
    lines = msg.splitlines()
    return lines[0] if lines else type(err).__name__


def read_json(path: str | os.PathLike, what: str) -> dict:
    """The JSON object in ``path``; a missing file, a folder, unreadable bytes or text that is not
    a JSON object raise a one-line ValueError naming ``what`` and the path."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what}: {path} is a folder, not a JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{what}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{what}: {path} is not readable UTF-8 text ({_first_line(err)})") from None
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{what}: {path} is not valid JSON ({_first_line(err)})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: {path} must hold a JSON object, got {type(obj).__name__}")
    return obj


def read_manifest(folder: str | os.PathLike) -> dict:
    """The ``manifest.json`` of a dataset folder, checked to be a folder written by ``ecsfm generate``
    (every key of ``MANIFEST_KEYS``); anything else raises a one-line ValueError."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ValueError(f"data: {folder} {what}; expected a dataset folder (made by ecsfm generate)")
    if not (folder / "manifest.json").exists():
        raise ValueError(f"data: {folder} has no manifest.json; expected a dataset folder made by ecsfm generate "
                         "(an unfinished one: rerun its ecsfm generate)")
    manifest = read_json(folder / "manifest.json", "manifest")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"manifest: {folder / 'manifest.json'} lacks {missing} (not written by ecsfm generate)")
    if not isinstance(manifest["chunks"], list) or not all(isinstance(c, dict) for c in manifest["chunks"]):
        raise ValueError("manifest: 'chunks' must be a list of {file, sha256, rows} entries")
    return manifest


def _check_chunk_keys(path: Path, arrays: dict) -> dict:
    missing = [k for k in CHUNK_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path.name}: missing arrays {missing} (a dataset chunk has {', '.join(CHUNK_KEYS)})")
    return arrays


def dataset_file(folder: str | os.PathLike, name: str) -> Path:
    """The path of a file a dataset manifest names; a name that is not a plain file name inside
    ``folder`` (an absolute path, ``..``, a sub-folder, a link leading out) raises ValueError."""
    folder = Path(folder)
    if not (isinstance(name, str) and name and Path(name).name == name and name not in (".", "..")
            and "/" not in name and "\\" not in name):
        raise ValueError(f"manifest: chunk file {name!r} is not a plain file name inside the dataset folder {folder}")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"manifest: chunk file {name!r} leads outside the dataset folder {folder}")
    return path


def read_chunk(folder: str | os.PathLike, entry: Mapping) -> dict[str, np.ndarray]:
    """The arrays of the chunk a manifest entry (``file``, ``sha256``) names, after checking that
    it lies in ``folder`` and that its bytes match the recorded sha256."""
    path = dataset_file(folder, entry.get("file"))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path.name}: chunk file is missing from {folder}") from None
    if hashlib.sha256(raw).hexdigest() != entry.get("sha256"):
        raise ValueError(f"{path.name}: sha256 does not match the manifest (corrupt or modified chunk); "
                         "rerun the ecsfm generate that made it to rebuild it")
    try:
        arrays = _npz_arrays(np.load(io.BytesIO(raw), allow_pickle=False))
    except (ValueError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable npz of plain arrays ({_first_line(err)})") from None
    return _check_chunk_keys(path, arrays)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
