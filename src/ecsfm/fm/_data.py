"""Dataset rows as surrogate inputs: state, signal and conditioning vectors, and their transforms.

State of a row: ``[ox (S*nx), red (S*nx), g(i) (L)]`` with the current transformed by
``g(i) = asinh(i / CURRENT_SCALE_MA)``: linear for |i| below ~10 uA/cm^2 and logarithmic above,
so traces from nA to hundreds of mA share one scale. Conditioning ``p_core = [p (base),
one-hot task, one-hot stage]`` (the seed's layout, owned by ``ecsfm.data.CoreLayout``).
Normalisation is per dimension, ``(v - mean) / std`` with ``std`` floored: a column that is
constant on the training split (a one-hot of an absent task) gets std 1, any other at least
``STD_FLOOR``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ..data import CoreLayout, read_chunk, read_manifest

__all__ = ["CURRENT_SCALE_MA", "STD_FLOOR", "SurrogateData", "load_rows", "current_to_state",
           "state_to_current", "fit_normalizers", "manifest_hash"]

CURRENT_SCALE_MA = 1e-2
STD_FLOOR = 1e-3


def _index_layout(geometry: dict) -> CoreLayout:
    """A layout of the geometry's sizes whose names are indices (only index lookups are needed)."""
    layout = CoreLayout(int(geometry["max_species"]), tuple(f"task{k}" for k in range(int(geometry["n_tasks"]))),
                        tuple(f"stage{k}" for k in range(int(geometry["n_stages"]))))
    if int(geometry["phys_dim_base"]) != layout.n_base:
        raise ValueError(f"geometry: phys_dim_base {geometry['phys_dim_base']} != {layout.n_base}, the base size "
                         f"for max_species {layout.max_species}")
    return layout


def current_to_state(i):
    """mA -> transformed current (numpy or JAX arrays)."""
    xp = np if isinstance(i, np.ndarray) else jnp
    return xp.arcsinh(i / CURRENT_SCALE_MA)


def state_to_current(g):
    """Transformed current -> mA (numpy or JAX arrays)."""
    xp = np if isinstance(g, np.ndarray) else jnp
    return CURRENT_SCALE_MA * xp.sinh(g)


@dataclass
class SurrogateData:
    """All rows of a dataset as arrays (float32): ``x`` (N, state), ``e`` (N, 1, L), ``p`` (N, phys),
    plus ``split``, ``task_id`` (N,) and the manifest."""

    x: np.ndarray
    e: np.ndarray
    p: np.ndarray
    split: np.ndarray
    task_id: np.ndarray
    manifest: dict

    @property
    def layout(self) -> CoreLayout:
        """The conditioning vector's layout the manifest records."""
        return CoreLayout.from_manifest(self.manifest)

    @property
    def geometry(self) -> dict:
        """Sizes of the surrogate's inputs (the keys of ``resolve_model_geometry`` but ``meta``)."""
        m, layout = self.manifest, self.layout
        return dict(state_dim=self.x.shape[1], phys_dim=self.p.shape[1], signal_channels=1,
                    phys_dim_base=layout.n_base, phys_dim_core=layout.size, n_tasks=layout.n_tasks,
                    n_stages=layout.n_stages, max_species=layout.max_species, nx=int(m["nx"]),
                    target_len=int(m["target_len"]))


#: manifest sections that describe one run of the generator, not the dataset it made
_RUN_ONLY_KEYS = ("generation",)


def manifest_hash(folder: str | os.PathLike) -> str:
    """The dataset's identity: sha256 of its manifest as canonical JSON (sorted keys, no
    whitespace) without the sections that describe a run rather than the data (``generation``:
    this run's timings). Two generations of one plan -- same chunks, same checksums -- hash alike;
    any change to the plan, the recipe or a chunk's bytes (its sha256) changes it."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    content = {k: v for k, v in manifest.items() if k not in _RUN_ONLY_KEYS}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def legacy_manifest_hash(folder: str | os.PathLike) -> str:
    """sha256 of the manifest file's bytes (timings included): what training states written
    before ``manifest_hash`` recorded, still accepted when one is resumed."""
    return hashlib.sha256((Path(folder) / "manifest.json").read_bytes()).hexdigest()


def load_rows(folder: str | os.PathLike) -> SurrogateData:
    """Read every chunk of a dataset folder into surrogate arrays (each checked against the
    manifest's sha256; a chunk path leading outside the folder is refused). Raises ValueError
    naming the chunk for a checksum mismatch, NaN or Inf values, or a ``p`` of the wrong width."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    layout = CoreLayout.from_manifest(manifest)
    xs, es, ps, splits, tasks = [], [], [], [], []
    for c in manifest["chunks"]:
        z = read_chunk(folder, c)
        for key in ("i", "e", "p", "ox", "red"):
            if not np.all(np.isfinite(z[key])):
                raise ValueError(f"{c['file']}: array {key!r} contains NaN or Inf (ecsfm data inspect lists such rows)")
        xs.append(np.concatenate([z["ox"], z["red"], current_to_state(z["i"].astype(np.float64))], 1))
        es.append(z["e"][:, None, :])
        if z["p"].ndim != 2 or z["p"].shape[1] != layout.n_base:
            raise ValueError(f"{c['file']}: array 'p' has shape {z['p'].shape}, expected (rows, {layout.n_base})")
        ps.append(layout.cores(z["p"], z["task_id"], z["stage_id"]))
        splits.append(z["split"])
        tasks.append(z["task_id"])
    return SurrogateData(
        x=np.concatenate(xs).astype(np.float32), e=np.concatenate(es).astype(np.float32),
        p=np.concatenate(ps).astype(np.float32), split=np.concatenate(splits),
        task_id=np.concatenate(tasks), manifest=manifest,
    )


def _mean_std(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = v.mean(0)
    std = v.std(0)
    std = np.where(std < 1e-8, 1.0, np.maximum(std, STD_FLOOR))
    return mean.astype(np.float32), std.astype(np.float32)


def fit_normalizers(data: SurrogateData, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(x_mean, x_std, e_mean, e_std, p_mean, p_std)`` from the given (training) rows."""
    xm, xs = _mean_std(data.x[rows])
    em, es = _mean_std(data.e[rows].reshape(rows.size, -1))
    pm, ps = _mean_std(data.p[rows])
    return xm, xs, em, es, pm, ps
