"""Evaluation of the surrogate against the simulator's data, and geometry resolution.

Available now: held-out NRMSE of the current per task (``current_nrmse``). The full scorecard
(peak errors, canonical re-simulated scenarios, baselines, plots) builds on it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resolve_model_geometry", "_resolve_model_geometry", "load_surrogate", "current_nrmse"]


def resolve_model_geometry(normalizers, meta: dict) -> dict:
    """Sizes of the surrogate's inputs, from its normalisers and metadata.

    Returns ``state_dim`` (2 S nx + L), ``phys_dim`` (length of the conditioning vector the model
    takes), ``signal_channels``, ``phys_dim_base`` (base parameters), ``phys_dim_core`` (base +
    task and stage one-hots), ``n_tasks``, ``n_stages``, ``max_species``, ``nx``, ``target_len``,
    and ``meta`` itself (so that posterior inference, given only the geometry, finds the prior,
    the vocabularies and the calibrated discrepancy).
    Raises ValueError when the files disagree with each other.
    """
    x_mean, _, e_mean, _, p_mean, _ = normalizers
    state_dim = int(np.asarray(x_mean).size)
    phys_dim = int(np.asarray(p_mean).size)
    signal_channels = int(meta.get("signal_channels", 1))
    target_len = int(meta.get("target_len", np.asarray(e_mean).size // signal_channels))
    max_species = int(meta["max_species"])
    nx = int(meta["nx"])
    n_tasks = len(meta.get("task_names", [])) if "n_tasks" not in meta else int(meta["n_tasks"])
    n_stages = len(meta.get("stage_names", [])) if "n_stages" not in meta else int(meta["n_stages"])
    phys_dim_base = int(meta.get("phys_dim_base", len(meta.get("params", [])) or 7 * max_species + 3))
    phys_dim_core = phys_dim_base + n_tasks + n_stages
    geometry = dict(state_dim=state_dim, phys_dim=phys_dim, signal_channels=signal_channels,
                    phys_dim_base=phys_dim_base, phys_dim_core=phys_dim_core, n_tasks=n_tasks,
                    n_stages=n_stages, max_species=max_species, nx=nx, target_len=target_len, meta=meta)
    if state_dim != 2 * max_species * nx + target_len:
        raise ValueError(f"geometry: state_dim {state_dim} != 2 * max_species * nx + target_len = "
                         f"{2 * max_species * nx + target_len}")
    if np.asarray(e_mean).size != signal_channels * target_len:
        raise ValueError(f"geometry: e_mean has {np.asarray(e_mean).size} entries, expected "
                         f"signal_channels * target_len = {signal_channels * target_len}")
    if phys_dim < phys_dim_core:
        raise ValueError(f"geometry: phys_dim {phys_dim} < phys_dim_core {phys_dim_core}")
    return geometry


#: The name the seed notebook imports.
_resolve_model_geometry = resolve_model_geometry


def load_surrogate(model_dir):
    """``(model, normalizers, meta, geometry)`` of a trained surrogate folder."""
    from pathlib import Path

    import equinox as eqx
    import jax

    from .train import (CHECKPOINT_FILENAME, MODEL_META_FILENAME, NORMALIZERS_FILENAME, TrainConfig, build_model,
                        load_model_metadata, load_saved_normalizers)

    model_dir = Path(model_dir)
    meta = load_model_metadata(model_dir / MODEL_META_FILENAME)
    normalizers = load_saved_normalizers(model_dir / NORMALIZERS_FILENAME)
    geometry = resolve_model_geometry(normalizers, meta)
    config = TrainConfig(**meta["training_config"])
    model = build_model(config, geometry, jax.random.PRNGKey(0))
    model = eqx.tree_deserialise_leaves(model_dir / CHECKPOINT_FILENAME, model)
    return model, normalizers, meta, geometry


def current_nrmse(model, normalizers, data_dir, *, split: int = 2, n_rows: int = 256, n_draws: int = 8,
                  n_steps: int = 60, seed: int = 0) -> dict:
    """Range-normalised RMS error of the surrogate's mean current (``n_draws`` draws, ``n_steps``
    Euler steps) on up to ``n_rows`` rows of a split (2 = test), overall and per task:
    ``rmse(mean draw - truth) / (max(truth) - min(truth))`` per row, then median and 90th
    percentile; plus how the spread of the draws compares with the actual error."""
    import jax

    from ._data import load_rows, state_to_current
    from .train import sample_current

    data = load_rows(data_dir)
    rows = np.flatnonzero(data.split == split)
    rows = np.random.default_rng(seed).permutation(rows)[:n_rows]
    length = data.e.shape[-1]
    draws = np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(seed), data.e[rows, 0], data.p[rows],
                                      n_draws=n_draws, n_steps=n_steps), np.float64)
    truth = state_to_current(data.x[rows, -length:].astype(np.float64))
    pred = draws.mean(0)
    span = np.maximum(truth.max(1) - truth.min(1), 1e-12)
    nrmse = np.sqrt(np.mean((pred - truth) ** 2, axis=1)) / span
    spread = np.sqrt(np.mean(draws.std(0) ** 2, axis=1)) / span

    def summary(sel):
        return {"n": int(sel.sum()), "median": float(np.median(nrmse[sel])), "p90": float(np.quantile(nrmse[sel], 0.9)),
                "median_draw_spread": float(np.median(spread[sel]))}

    names = data.manifest["task_names"]
    return {"overall": summary(np.ones(rows.size, bool)),
            "per_task": {names[t]: summary(data.task_id[rows] == t) for t in np.unique(data.task_id[rows])},
            "n_draws": n_draws, "n_steps": n_steps, "split": split}
