"""Evaluation of the surrogate against the simulator (geometry resolution lives here too)."""

from __future__ import annotations

import numpy as np

__all__ = ["resolve_model_geometry", "_resolve_model_geometry"]


def resolve_model_geometry(normalizers, meta: dict) -> dict:
    """Sizes of the surrogate's inputs, from its normalisers and metadata.

    Returns ``state_dim`` (2 S nx + L), ``phys_dim`` (length of the conditioning vector the model
    takes), ``signal_channels``, ``phys_dim_base`` (base parameters), ``phys_dim_core`` (base +
    task and stage one-hots), ``n_tasks``, ``n_stages``, ``max_species``, ``nx``, ``target_len``.
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
                    n_stages=n_stages, max_species=max_species, nx=nx, target_len=target_len)
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
