"""Posterior draws as an ArviZ ``InferenceData`` netCDF file, so ArviZ's summaries and plots work on them.

ArviZ is the Python community's container for posterior draws (``az.summary``, ``az.plot_pair``,
``az.plot_posterior``, ``az.ess`` ...), and netCDF is what it reads and writes. The file holds

- ``posterior``: every sampled parameter in physical units, one chain of equally weighted draws.
  Indexed parameters (``ru[0]``, ``ru[1]``, ...: per trace, or per couple) become one variable with
  a ``trace`` (or ``couple``) dimension.
  Each variable's ``units`` attribute names its unit.
- ``observed_data`` (when given): each trace's measured current (A), with its potential (V) as the
  coordinate.

Importance-weighted draws (the surrogate route's) are resampled to equal weights first, by
systematic resampling, since ArviZ treats every draw as equally weighted. The effective sample size of
the weights is kept in the attributes.

arviz (with xarray) is imported only when a file is written, so importing ecsfm stays fast.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from .._atomic import atomic_path

__all__ = ["INFERENCE_DATA_SCHEMA_VERSION", "write_inference_data", "equal_weight_draws"]

INFERENCE_DATA_SCHEMA_VERSION = 1
_INDEXED = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*)\[(?P<k>\d+)\]$")


def equal_weight_draws(n: int, weights: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` equally weighted draws from normalised-or-not ``weights`` (systematic resampling).

    Raises ValueError if the weights are not finite, non-negative and of positive sum."""
    w = np.asarray(weights, np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights: must be a 1-D array of finite, non-negative numbers with a positive sum")
    cw = np.cumsum(w / w.sum())
    u = (np.random.default_rng(seed).uniform() + np.arange(n)) / n
    return np.minimum(np.searchsorted(cw, u, side="right"), w.size - 1)


def _grouped(samples: dict[str, np.ndarray], units: dict[str, str]):
    """``{base: (draws (N,) or (N, K), unit)}``: indexed names stacked along a trace axis."""
    plain, indexed = {}, {}
    for name, v in samples.items():
        m = _INDEXED.match(name)
        if m:
            indexed.setdefault(m["base"], {})[int(m["k"])] = np.asarray(v, np.float64)
        else:
            plain[re.sub(r"[^A-Za-z0-9_]", "_", name)] = (np.asarray(v, np.float64), units.get(name, ""))
    for base, by_k in indexed.items():
        ks = sorted(by_k)
        unit = next((units[f"{base}[{k}]"] for k in ks if f"{base}[{k}]" in units), units.get(base, ""))
        plain[base] = (np.stack([by_k[k] for k in ks], axis=1), unit)
    return plain


def write_inference_data(path: str | os.PathLike, samples: dict[str, np.ndarray], *, units: dict[str, str] | None = None,
                         weights: np.ndarray | None = None, observed: list[dict] | None = None,
                         attrs: dict | None = None, index_dim: str = "trace", seed: int = 0) -> Path:
    """Write ``samples`` (name -> (N,) draws in physical units) as an ArviZ InferenceData netCDF file.

    ``units``: name -> unit string (stored as each variable's ``units`` attribute). ``weights``: (N,)
    importance weights, or None for equally weighted draws. ``observed``: per trace a dict with
    ``label``, ``potential`` (V) and ``observed`` (A) arrays. ``attrs``: extra file attributes (numbers
    and strings). ``index_dim`` names what an index ``[k]`` counts ("trace" or "couple"). Written atomically; returns the path. Raises ValueError on draws of unequal length
    or with non-finite values."""
    with warnings.catch_warnings():  # arviz 0.2x announces its 1.0 refactor on import: not the user's concern
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    import xarray as xr

    sizes = {np.asarray(v).shape[0] for v in samples.values()}
    if len(sizes) != 1:
        raise ValueError(f"samples: every parameter needs the same number of draws, got {sorted(sizes)}")
    n = sizes.pop()
    take = np.arange(n)
    extra = {}
    if weights is not None:
        w = np.asarray(weights, np.float64)
        take = equal_weight_draws(n, w, seed)
        extra = {"resampled_from_weighted_draws": 1, "weights_ess": float(w.sum() ** 2 / np.sum(w**2))}
    data_vars, coords = {}, {"chain": [0], "draw": np.arange(n)}
    for name, (v, unit) in _grouped(samples, units or {}).items():
        v = v[take]
        if not np.all(np.isfinite(v)):
            raise ValueError(f"samples: {name} has non-finite draws")
        dims = ("chain", "draw") if v.ndim == 1 else ("chain", "draw", index_dim)
        if v.ndim == 2:
            coords[index_dim] = np.arange(v.shape[1])
        data_vars[name] = xr.DataArray(v[None], dims=dims, attrs={"units": unit})
    file_attrs = {"schema_version": INFERENCE_DATA_SCHEMA_VERSION, "created_by": "ecsfm",
                  **extra, **{k: (v if isinstance(v, (int, float)) else str(v)) for k, v in (attrs or {}).items()}}
    groups = {"posterior": xr.Dataset(data_vars, coords=coords, attrs=file_attrs)}
    if observed:
        obs_vars = {}
        for k, tr in enumerate(observed):
            point = f"point_{k}"
            obs_vars[f"current_{k}"] = xr.DataArray(
                np.asarray(tr["observed"], np.float64), dims=(point,),
                coords={point: np.arange(len(tr["observed"])),
                        f"potential_{k}": (point, np.asarray(tr["potential"], np.float64))},
                attrs={"units": "A", "label": str(tr.get("label", k))})
        groups["observed_data"] = xr.Dataset(obs_vars, attrs=file_attrs)
    idata = az.InferenceData(**groups)
    path = Path(path)
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))
    return path
