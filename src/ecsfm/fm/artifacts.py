"""A trained surrogate on disk: its files, their I/O, its geometry and its typed model card.

A model folder holds the checkpoint ``surrogate_model.eqx`` and beside it ``normalizers.npz``
(``x_mean, x_std, e_mean, e_std, p_mean, p_std``) and ``model_meta.json`` (geometry,
architecture, parameter names, units and roles, priors, vocabularies, simulator, calibrated
discrepancy, provenance). All are written atomically and carry a schema version.
``ModelCard`` parses ``model_meta.json`` once, with every fallback for metadata written by older
versions, into typed fields; ``load_surrogate`` returns everything inference needs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from .. import __version__
from .._atomic import atomic_path, write_text
from ..data import CoreLayout, ParamSpace, read_json, read_npz
from .config import TrainConfig
from .discrepancy import discrepancy_edges
from .model import build_model

__all__ = ["CHECKPOINT_FILENAME", "MODEL_META_FILENAME", "NORMALIZERS_FILENAME", "META_SCHEMA_VERSION",
           "NORMALIZER_KEYS", "save_normalizers", "load_saved_normalizers", "save_model_metadata",
           "load_model_metadata", "resolve_model_geometry", "load_surrogate", "ModelCard", "MODEL_KEYS",
           "discrepancy_of"]

CHECKPOINT_FILENAME = "surrogate_model.eqx"
MODEL_META_FILENAME = "model_meta.json"
NORMALIZERS_FILENAME = "normalizers.npz"
META_SCHEMA_VERSION = 1
NORMALIZER_KEYS = ("x_mean", "x_std", "e_mean", "e_std", "p_mean", "p_std")


def save_normalizers(path: str | os.PathLike, normalizers) -> None:
    """Write the six normaliser arrays (in ``NORMALIZER_KEYS`` order) atomically as float32.
    Raises ValueError for a wrong count or a non-finite or non-positive std."""
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
    """``(x_mean, x_std, e_mean, e_std, p_mean, p_std)`` as float32 arrays. Raises ValueError
    naming the file when it is unreadable or lacks one of them."""
    z = read_npz(path)  # allow_pickle=False; an unreadable file raises a ValueError naming it
    missing = [k for k in NORMALIZER_KEYS if k not in z]
    if missing:
        raise ValueError(f"{path}: missing normaliser arrays {missing}")
    return tuple(np.asarray(z[k], np.float32) for k in NORMALIZER_KEYS)


def save_model_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Write ``meta`` (JSON-serialisable) atomically, stamped with the schema and package version.
    Raises ValueError when it lacks ``hidden_size``, ``depth`` or ``cond_dim``."""
    for key in ("hidden_size", "depth", "cond_dim"):
        if key not in meta:
            raise ValueError(f"meta: missing {key!r}")
    out = {"schema_version": META_SCHEMA_VERSION, "package_version": __version__, **meta}
    write_text(path, json.dumps(out, indent=1, sort_keys=True))


def load_model_metadata(path: str | os.PathLike) -> dict:
    """The model metadata dict (has ``hidden_size``, ``depth``, ``cond_dim`` and the geometry).
    Raises ValueError for an unreadable file or a schema newer than this ecsfm reads."""
    meta = read_json(path, "model")
    if meta.get("schema_version", META_SCHEMA_VERSION) > META_SCHEMA_VERSION:
        raise ValueError(f"{path}: schema {meta['schema_version']} is newer than this ecsfm reads "
                         f"({META_SCHEMA_VERSION}); upgrade ecsfm")
    return meta


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
    phys_dim_base = int(meta.get("phys_dim_base", len(meta.get("params", [])) or ParamSpace(max_species).size))
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


def load_surrogate(model_dir: str | os.PathLike):
    """``(model, normalizers, meta, geometry)`` of a trained surrogate folder: the saved (EMA)
    model, the six normaliser arrays, the metadata dict and ``resolve_model_geometry``'s dict.
    Raises ValueError when the folder lacks one of the three files or they disagree."""
    model_dir = Path(model_dir)
    for name in (MODEL_META_FILENAME, NORMALIZERS_FILENAME, CHECKPOINT_FILENAME):
        if not (model_dir / name).is_file():
            raise ValueError(f"model: {model_dir} is not a model folder (no {name}; a model folder is made by "
                             "ecsfm train)")
    meta = load_model_metadata(model_dir / MODEL_META_FILENAME)
    normalizers = load_saved_normalizers(model_dir / NORMALIZERS_FILENAME)
    geometry = resolve_model_geometry(normalizers, meta)
    model = build_model(ModelCard.from_meta(meta).check_complete().train_config(), geometry, jax.random.PRNGKey(0))
    model = eqx.tree_deserialise_leaves(model_dir / CHECKPOINT_FILENAME, model)
    return model, normalizers, meta, geometry


# =================================================================================================
# The model card


def discrepancy_of(meta: Mapping | None, task: str | None) -> dict:
    """The calibrated discrepancy of ``task`` in a (possibly partial, possibly old) metadata dict:
    ``{a (mA), b, rho, nugget, gain, onset, end, edge_points}`` for the scale
    ``s^2 = a^2 + (b level)^2``, the correlation ``(1 - nugget) rho^|i-j| + nugget I`` with the ends'
    term, and the gain sd. Fallbacks by ``form_version``: before the correlated form (< 2)
    independent points (rho 0, nugget 1); before the gain term (< 3) gain 0; before the ends' term
    (< 4) onset = end = 0, edge_points 1. A task without a fitted model: its (or the overall)
    residual RMS as ``a``, independent points; none at all: ``a = 0``."""
    disc = (meta or {}).get("discrepancy") or {}
    per = disc.get("per_task", {}).get(task or "", {})
    model = per.get("model")
    if model is None:  # no fitted form: the residual RMS, independent points
        a = float(per.get("residual_rms_mA", disc.get("current_residual_rms_mA", 0.0)))
        model = {"a_mA": a, "b": 0.0, "rho": 0.0, "nugget": 1.0}
    onset, end, edge_points = discrepancy_edges(model)
    return {"a": float(model["a_mA"]), "b": float(model["b"]), "rho": float(model.get("rho", 0.0)),
            "nugget": float(model.get("nugget", 1.0)), "gain": float(model.get("gain", 0.0)),
            "onset": onset, "end": end, "edge_points": edge_points}


_REQUIRED = object()


def _int_field(meta: Mapping, key: str, default=_REQUIRED, lo: int = 1):
    """``meta[key]`` as an int >= ``lo``; ``default`` when absent (or null), ValueError when a
    required key is absent or a value is not such an integer."""
    v = meta.get(key)
    if v is None:
        if default is _REQUIRED:
            raise ValueError(f"{key}: the model metadata has no {key!r}")
        return default
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise ValueError(f"{key}: must be an integer >= {lo}, got {v!r}")
    return int(v)


#: The fields every model folder's metadata has (``ModelCard.check_complete``).
MODEL_KEYS = ("max_species", "nx", "hidden_size", "depth", "cond_dim")


@dataclass(frozen=True)
class ModelCard:
    """``model_meta.json`` parsed once into typed fields.

    ``max_species``, ``nx``, ``target_len`` (None in metadata that leaves it to the normalisers),
    ``signal_channels`` (1 when absent), ``hidden_size``, ``depth``, ``cond_dim``; ``task_names``,
    ``stage_names`` and their ``layout`` (the conditioning vector's ``CoreLayout``); ``priors``
    (``"task/stage"`` -> the recorded ``PriorSpec`` dict); ``simulator`` (the dataset's simulator
    settings, None before they were recorded); ``training_config`` (the ``TrainConfig`` dict, {}
    when absent); ``params`` (the base slots' name/unit/role records); ``schema_version``;
    ``discrepancy_block`` and ``parameter_error_block`` (the raw calibration blocks or None);
    ``raw``, the dict itself.

    ``from_meta`` also reads partial metadata (a hand-built dict holding only a discrepancy, say):
    a field of ``MODEL_KEYS`` it lacks is None, and so is ``layout`` without ``max_species``;
    ``read`` and ``check_complete`` refuse such a card.
    """

    raw: dict
    schema_version: int
    max_species: int | None
    nx: int | None
    target_len: int | None
    signal_channels: int
    hidden_size: int | None
    depth: int | None
    cond_dim: int | None
    task_names: tuple[str, ...]
    stage_names: tuple[str, ...]
    layout: CoreLayout | None
    priors: dict
    simulator: dict | None
    training_config: dict
    params: tuple
    discrepancy_block: dict | None
    parameter_error_block: dict | None

    @classmethod
    def from_meta(cls, meta: Mapping | None) -> ModelCard:
        """Parse a metadata dict (None reads as {}). Raises ValueError naming a field whose value
        is invalid, or when the schema is newer than this ecsfm reads."""
        meta = {} if meta is None else meta
        if not isinstance(meta, Mapping):
            raise ValueError(f"meta: must be a dict, got {type(meta).__name__}")
        version = _int_field(meta, "schema_version", META_SCHEMA_VERSION, lo=0)
        if version > META_SCHEMA_VERSION:
            raise ValueError(f"schema_version: {version} is newer than this ecsfm reads ({META_SCHEMA_VERSION}); "
                             "upgrade ecsfm")
        sizes = {key: _int_field(meta, key, None) for key in MODEL_KEYS}
        tasks, stages = tuple(meta.get("task_names", ())), tuple(meta.get("stage_names", ()))
        layout = None if sizes["max_species"] is None else CoreLayout(sizes["max_species"], tasks, stages)
        if layout is not None:
            tasks, stages = layout.task_names, layout.stage_names
        sections = {}
        for key in ("priors", "simulator", "training_config", "discrepancy", "parameter_error"):
            v = meta.get(key)
            if v is not None and not isinstance(v, Mapping):
                raise ValueError(f"{key}: must be a JSON object, got {type(v).__name__}")
            sections[key] = None if v is None else dict(v)
        return cls(raw=dict(meta), schema_version=version, **sizes,
                   target_len=_int_field(meta, "target_len", None),
                   signal_channels=_int_field(meta, "signal_channels", 1), task_names=tasks, stage_names=stages,
                   layout=layout, priors=sections["priors"] or {}, simulator=sections["simulator"],
                   training_config=sections["training_config"] or {}, params=tuple(meta.get("params", ())),
                   discrepancy_block=sections["discrepancy"], parameter_error_block=sections["parameter_error"])

    @classmethod
    def read(cls, model_dir: str | os.PathLike) -> ModelCard:
        """The card of a model folder's ``model_meta.json``. Raises ValueError when it is missing,
        unreadable, invalid or lacks a field of ``MODEL_KEYS``."""
        return cls.from_meta(load_model_metadata(Path(model_dir) / MODEL_META_FILENAME)).check_complete()

    def check_complete(self) -> ModelCard:
        """This card, when it has every field of ``MODEL_KEYS``; else ValueError naming the first
        missing one."""
        for key in MODEL_KEYS:
            if getattr(self, key) is None:
                raise ValueError(f"{key}: the model metadata has no {key!r}")
        return self

    def train_config(self) -> TrainConfig:
        """The ``TrainConfig`` the model was trained with (its architecture rebuilds the model).
        Raises ValueError when the metadata has none."""
        if not self.training_config:
            raise ValueError("training_config: the model metadata has no 'training_config' (written by ecsfm train)")
        return TrainConfig(**self.training_config)

    def prior(self, task: str, stage: str) -> dict:
        """The recorded prior dict of ``task/stage`` (``PriorSpec.from_dict`` reads it). Raises
        ValueError when the model has none for that pair."""
        key = f"{task}/{stage}"
        if key not in self.priors:
            raise ValueError(f"task/stage: {key!r} has no prior in the model metadata (known: {sorted(self.priors)})")
        return self.priors[key]

    def discrepancy(self, task: str | None) -> dict:
        """The calibrated discrepancy of ``task`` with every version fallback (``discrepancy_of``)."""
        return discrepancy_of(self.raw, task)

    def parameter_error(self, form_version: int, method: str) -> dict | None:
        """The ``parameter_error`` block when it was calibrated with this form version and sampler
        ``method``, else None (absent, older form or another method)."""
        block = self.parameter_error_block
        if not block or block.get("form_version") != form_version or block.get("method") != method:
            return None
        return block
