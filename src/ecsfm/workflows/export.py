"""Export a trained surrogate with a held-out chunk: the assets the main job ships with.

``export_assets(model_dir, data_dir, out_dir)`` writes, atomically, into ``out_dir``:

* ``surrogate_model.eqx``, ``normalizers.npz`` -- copied from the training folder;
* ``model_meta.json`` -- the training metadata, with the discrepancy re-calibrated on fresh
  prior draws simulated at export time (so old training folders gain the current discrepancy
  model; see ``calibrate_discrepancy_fresh``), then how often the surrogate's inference misses
  (the prior weight in its posteriors), calibrated on other fresh draws at the seed's inference
  settings (it depends on the discrepancy; see ``ecsfm.posterior.prior_weight``), the simulator settings
  and a ``provenance`` block (dataset manifest hash, recipe, plan, which split the chunk came
  from, the commands that rebuild it);
* ``parameter_error_cases.npz`` -- the per-case residuals and variance parts the predictive's band
  scales were fitted on (``ecsfm.posterior.pack_band_cases``), so they can be refitted and checked;
* ``chunk_0.npz`` -- up to ``n_rows`` rows of the dataset's **test** split (never trained on),
  with the dataset's keys, stratified over tasks.

``recalibrate_discrepancy(model_dir)`` (``ecsfm recalibrate``) refits the discrepancy and then
the parameter error of an existing model folder in place (or either alone).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..data import read_chunk, read_manifest
from ..fm import (CHECKPOINT_FILENAME, HELD_OUT_CHUNK_FILENAME, MODEL_META_FILENAME, NORMALIZERS_FILENAME, calibrate_discrepancy_fresh,
                  load_rows, load_surrogate, save_model_metadata)
from ..posterior import calibrate_parameter_error

__all__ = ["export_assets", "recalibrate_discrepancy", "REBUILD_COMMANDS", "DISCREPANCY_ROWS_PER_TASK",
           "PARAMETER_ERROR_CASES_PER_TASK", "BAND_CASES_FILENAME"]

#: The band-scale cases a model's parameter error was calibrated on (beside its model_meta.json).
BAND_CASES_FILENAME = "parameter_error_cases.npz"

#: Fresh simulated rows per task the exported discrepancy is fitted on (half fit, half check).
DISCREPANCY_ROWS_PER_TASK = 128

#: Fresh simulated cases per task the parameter error is calibrated on (one inference each).
PARAMETER_ERROR_CASES_PER_TASK = 32

#: How the shipped default assets are rebuilt (also recorded in their model_meta.json).
REBUILD_COMMANDS = (
    "ecsfm generate --recipe curriculum_multitask --n-samples 65536 --chunk-size 8192 --max-species 2 "
    "--target-len 256 --nx 16 --seed 0 --out DATA",
    "ecsfm train --data DATA --out MODEL --hidden-size 16 --depth 3 --cond-dim 32 --batch-size 512 --steps 200000",
    "ecsfm export --model MODEL --data DATA --out src/ecsfm/assets/default",
)


def export_assets(model_dir, data_dir, out_dir, *, n_rows: int = 384, seed: int = 0,
                  parameter_error_cases: int = PARAMETER_ERROR_CASES_PER_TASK, parameter_error_config=None,
                  progress: bool = False) -> dict:
    """Copy a trained model and a held-out test chunk into ``out_dir``; returns the new metadata.
    ``parameter_error_cases`` per task calibrate the parameter error (0: none; ~6 s per case on a
    2-core CPU) with the inference ``parameter_error_config`` (a ``PosteriorInferenceConfig``;
    default: the seed's settings, which the main job uses; the block records the one used)."""
    model_dir, data_dir, out = Path(model_dir), Path(data_dir), Path(out_dir)
    _check_cases(parameter_error_cases)
    if not n_rows >= 8:
        raise ValueError(f"n_rows: must be >= 8, got {n_rows}")
    model, normalizers, meta, geometry = load_surrogate(model_dir)
    manifest = read_manifest(data_dir)
    load_rows(data_dir)  # every chunk checked against the manifest (sha256, finite values) before export
    meta = dict(meta)
    meta["simulator"] = manifest["simulator"]
    meta["discrepancy"] = calibrate_discrepancy_fresh(model, normalizers, meta, geometry,
                                                      n_per_task=DISCREPANCY_ROWS_PER_TASK, seed=seed + 17,
                                                      progress=progress)
    meta.pop("parameter_error", None)  # calibrated under the previous discrepancy
    cases = None
    if parameter_error_cases:
        # The metadata is passed to each inference explicitly: the new discrepancy is the one used.
        meta["parameter_error"], cases = calibrate_parameter_error(
            model, normalizers, meta, geometry, n_per_task=parameter_error_cases, seed=seed,
            config=parameter_error_config, progress=progress, with_cases=True)
    meta["provenance"] = {
        "dataset_manifest_sha256": meta.get("dataset_manifest_sha256"),
        "recipe": manifest["recipe"]["name"],
        "plan": manifest["plan"],
        "held_out_chunk": {"split": "test", "n_rows": None, "seed": seed},
        "rebuild": list(REBUILD_COMMANDS),
    }
    # The held-out chunk: test rows, evenly over tasks, with every key of the dataset's chunks.
    rows_by_chunk = []
    for c in manifest["chunks"]:
        z = read_chunk(data_dir, c)
        keep = np.flatnonzero(z["split"] == 2)
        rows_by_chunk.append({k: v[keep] for k, v in z.items() if v.ndim >= 1 and v.shape[0] == z["split"].shape[0]})
        vocab = {k: v for k, v in z.items() if not (v.ndim >= 1 and v.shape[0] == z["split"].shape[0])}
    test = {k: np.concatenate([r[k] for r in rows_by_chunk]) for k in rows_by_chunk[0]}
    rng = np.random.default_rng(seed)
    tasks = np.unique(test["task_id"])
    per = -(-n_rows // tasks.size)
    pick = np.concatenate([rng.permutation(np.flatnonzero(test["task_id"] == t))[:per] for t in tasks])
    pick = np.sort(rng.permutation(pick)[:n_rows])
    chunk = {k: v[pick] for k, v in test.items()} | vocab
    meta["provenance"]["held_out_chunk"]["n_rows"] = int(pick.size)

    out.mkdir(parents=True, exist_ok=True)
    for name in (CHECKPOINT_FILENAME, NORMALIZERS_FILENAME):
        with atomic_path(out / name) as tmp:
            shutil.copyfile(model_dir / name, tmp)
    with atomic_path(out / HELD_OUT_CHUNK_FILENAME) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **chunk)
    _save_band_cases(out, cases)
    save_model_metadata(out / MODEL_META_FILENAME, {k: v for k, v in meta.items()
                                                   if k not in ("schema_version", "package_version")})
    os.utime(out)
    return meta


def recalibrate_discrepancy(model_dir, *, n_per_task: int = DISCREPANCY_ROWS_PER_TASK, seed: int = 17,
                            parameter_error_cases: int = PARAMETER_ERROR_CASES_PER_TASK, parameter_error_seed: int = 0,
                            discrepancy: bool = True, progress: bool = True) -> dict:
    """Refit the calibrated discrepancy of a model folder on fresh simulated rows (unless
    ``discrepancy=False``), then its parameter error on ``parameter_error_cases`` fresh cases per
    task (0: none, and a parameter error calibrated under a replaced discrepancy is dropped), and
    rewrite its ``model_meta.json`` atomically (the model and normalisers are untouched); returns
    the new metadata."""
    _check_cases(parameter_error_cases)
    model, normalizers, meta, geometry = load_surrogate(model_dir)
    if "simulator" not in meta:
        raise ValueError(f"model: {model_dir} has no 'simulator' section in its metadata (re-export it)")
    meta = {k: v for k, v in meta.items() if k not in ("schema_version", "package_version")}
    if discrepancy:
        meta["discrepancy"] = calibrate_discrepancy_fresh(model, normalizers, meta, geometry, n_per_task=n_per_task,
                                                          seed=seed, progress=progress)
        meta.pop("parameter_error", None)
        _save_band_cases(model_dir, None)
    if parameter_error_cases:
        meta["parameter_error"], cases = calibrate_parameter_error(
            model, normalizers, meta, geometry, n_per_task=parameter_error_cases, seed=parameter_error_seed,
            progress=progress, with_cases=True)
        _save_band_cases(model_dir, cases)
    save_model_metadata(Path(model_dir) / MODEL_META_FILENAME, meta)
    return meta


def _check_cases(parameter_error_cases) -> None:
    """Refuse a case count the calibration would refuse, before any expensive refit: 0 (none) or
    at least 4 per task (``calibrate_parameter_error``)."""
    if not (isinstance(parameter_error_cases, int) and (parameter_error_cases == 0 or parameter_error_cases >= 4)):
        raise ValueError(f"parameter-error-cases: must be 0 (none) or an integer >= 4, got {parameter_error_cases!r}")


def _save_band_cases(folder, cases) -> None:
    """Write the packed band cases beside the metadata (atomically), or remove a stale file when
    there are none (a parameter error calibrated under a replaced discrepancy is dropped)."""
    path = Path(folder) / BAND_CASES_FILENAME
    if cases is None:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **cases)
