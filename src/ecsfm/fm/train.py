"""Training the surrogate, and its artifacts on disk.

Beside the checkpoint ``surrogate_model.eqx`` live ``normalizers.npz`` (``x_mean, x_std, e_mean,
e_std, p_mean, p_std``) and ``model_meta.json`` (geometry, architecture, parameter names, units
and roles, priors, vocabularies, provenance). All are written atomically and carry a schema
version.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .._atomic import atomic_path, remove_stale_temporaries, write_text

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
    "TrainConfig",
    "build_model",
    "sample_current",
    "train",
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
    from ..data import read_npz

    z = read_npz(path)  # allow_pickle=False; an unreadable file raises a ValueError naming it
    missing = [k for k in NORMALIZER_KEYS if k not in z]
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
    from ..data import read_json

    meta = read_json(path, "model")
    if meta.get("schema_version", META_SCHEMA_VERSION) > META_SCHEMA_VERSION:
        raise ValueError(f"{path}: schema {meta['schema_version']} is newer than this ecsfm reads "
                         f"({META_SCHEMA_VERSION}); upgrade ecsfm")
    return meta


# =================================================================================================
# Training


TRAIN_STATE_FILENAME = "train_state.eqx"  # name used before the state file carried its step
TRAIN_STATE_META_FILENAME = "train_state.json"
HISTORY_FILENAME = "training_history.json"


#: Upper bounds of the integer settings: refused up front rather than met as an out-of-memory
#: crash. A batch of 2^16 rows of the largest dataset geometry is already ~2 GB of activations
#: per layer; 2^12 channels and 64 layers are far beyond what the surrogate needs.
_CONFIG_MAX = {"hidden_size": 4096, "depth": 64, "cond_dim": 4096, "batch_size": 65536, "steps": 10**9,
               "eval_every": 10**9, "steps_per_call": 10**4, "n_val_rows": 10**6}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (all recorded in model_meta.json).

    Optimiser: AdamW with linear warm-up then cosine decay to ``lr * final_lr_fraction``
    (counted in optimiser steps), global-norm gradient clipping, an exponential moving average of
    the weights (the saved model is the EMA). ``steps_per_call`` optimiser steps run inside one
    compiled ``lax.scan`` (no host round trip per step).
    """

    arch: str = "conv"
    hidden_size: int = 32
    depth: int = 4
    cond_dim: int = 64
    batch_size: int = 128
    steps: int = 20000
    lr: float = 2e-3
    warmup_steps: int = 500
    final_lr_fraction: float = 0.05
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    ema_decay: float = 0.999
    current_weight: float = 0.8
    eval_every: int = 500
    steps_per_call: int = 50
    n_val_rows: int = 1024
    seed: int = 0

    def __post_init__(self):
        if self.arch not in ("conv", "mlp"):
            raise ValueError(f"arch: must be 'conv' or 'mlp', got {self.arch!r}")
        for name, hi in _CONFIG_MAX.items():
            v = getattr(self, name)
            if not (isinstance(v, int) and 1 <= v <= hi):
                raise ValueError(f"{name}: must be an integer in [1, {hi}], got {v!r}")
        if self.eval_every % self.steps_per_call:
            raise ValueError(f"eval_every: must be a multiple of steps_per_call ({self.steps_per_call})")
        if not 0.0 < self.lr < 1.0:
            raise ValueError(f"lr: must be in (0, 1), got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: must be in [0, 1), got {self.ema_decay}")


def build_model(config: TrainConfig, geometry: dict, key):
    from .model import MLPVectorField, VectorFieldNet

    if config.arch == "conv":
        return VectorFieldNet(state_dim=geometry["state_dim"], hidden_size=config.hidden_size, depth=config.depth,
                              cond_dim=config.cond_dim, phys_dim=geometry["phys_dim"],
                              signal_channels=geometry["signal_channels"], key=key)
    return MLPVectorField(state_dim=geometry["state_dim"], hidden_size=config.hidden_size, depth=config.depth,
                          cond_dim=config.cond_dim, phys_dim=geometry["phys_dim"],
                          signal_len=geometry["target_len"], signal_channels=geometry["signal_channels"], key=key)


def _schedule(config: TrainConfig):
    """Learning rate against optimiser step: linear warm-up, then cosine decay."""
    import optax

    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.lr, warmup_steps=min(config.warmup_steps, config.steps - 1),
        decay_steps=config.steps, end_value=config.lr * config.final_lr_fraction)


def _optimizer(config: TrainConfig):
    import optax

    return optax.chain(optax.clip_by_global_norm(config.clip_norm),
                       optax.adamw(_schedule(config), weight_decay=config.weight_decay))


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(), *,
          resume: bool = True, progress: bool = True, max_minutes: float | None = None,
          stop_at_step: int | None = None) -> dict:
    """Train a surrogate on the dataset in ``data_dir``; write artifacts to ``out_dir``.

    Batches are drawn from the train split (by base sample), the validation loss on a fixed
    subset of the val split with fixed noise. Every ``eval_every`` steps the full training state
    (weights, EMA, optimiser state, step, best val loss, history) is saved atomically; a rerun
    with ``resume`` continues from it and reproduces the uninterrupted run exactly (batches and
    noise are functions of the step number). ``max_minutes`` (wall time, counted across resumed
    runs) and ``stop_at_step`` end a run early at the next evaluation; the artifacts then hold the
    EMA model so far and ``model_meta.json`` says it is unfinished. Returns the training history.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P
    from tqdm.auto import tqdm

    from ._data import fit_normalizers, legacy_manifest_hash, load_rows, manifest_hash
    from .objective import cfm_loss

    out = Path(out_dir)
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise ValueError(f"max_minutes: must be > 0 (or None: no limit), got {max_minutes}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; the model needs a folder")
    data = load_rows(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # a kill mid-write leaves one; the resume rewrites that file
    geometry = data.geometry
    train_rows = np.flatnonzero(data.split == 0)
    val_rows = np.flatnonzero(data.split == 1)
    if train_rows.size == 0 or val_rows.size == 0:
        raise ValueError(f"data: need train and val rows, got {train_rows.size} and {val_rows.size}")
    val_rows = val_rows[: config.n_val_rows]
    normalizers = fit_normalizers(data, train_rows)
    xm, xs, em, es, pm, ps = (jnp.asarray(a) for a in normalizers)
    X = (jnp.asarray(data.x) - xm) / xs
    Ee = (jnp.asarray(data.e) - em.reshape(1, 1, -1)) / es.reshape(1, 1, -1)
    Pp = (jnp.asarray(data.p) - pm) / ps
    train_idx = jnp.asarray(train_rows)
    n_dev = jax.local_device_count()
    if config.batch_size % n_dev:
        raise ValueError(f"batch_size: must be a multiple of the {n_dev} local devices")
    batch_sharding = NamedSharding(Mesh(np.asarray(jax.local_devices()), ("data",)), P("data")) if n_dev > 1 else None

    key = jax.random.PRNGKey(config.seed)
    k_model, k_data, k_noise, k_val = jax.random.split(key, 4)
    model = build_model(config, geometry, k_model)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = _optimizer(config)
    opt_state = opt.init(params)
    ema = params
    step, best_val, history = 0, float("inf"), {"step": [], "train_loss": [], "val_loss": [], "lr": [], "elapsed_s": []}
    elapsed0 = 0.0
    data_hash = manifest_hash(data_dir)
    state_meta_path = out / TRAIN_STATE_META_FILENAME
    if resume and state_meta_path.exists():
        smeta = json.loads(state_meta_path.read_text())
        same_data = smeta["dataset_manifest_sha256"] in (data_hash, legacy_manifest_hash(data_dir))
        if smeta["config"] != asdict(config) or not same_data:
            raise ValueError(f"out: {out} holds a run with another config or dataset; use a new --out")
        state_file = smeta.get("state_file", TRAIN_STATE_FILENAME)
        params, ema, opt_state = eqx.tree_deserialise_leaves(out / state_file, (params, ema, opt_state))
        step, best_val, history = smeta["step"], smeta["best_val"], smeta["history"]
        elapsed0 = history["elapsed_s"][-1] if history["elapsed_s"] else 0.0

    # The data travel as arguments, not closure constants: a constant would be baked into (and
    # folded by) every compiled program.
    arrays = (X, Ee, Pp, train_idx)

    def loss_fn(p_, arrays, idx, k):
        X, Ee, Pp, _ = arrays
        xb, eb, pb = X[idx], Ee[idx], Pp[idx]
        if batch_sharding is not None:
            xb, eb, pb = (jax.lax.with_sharding_constraint(a, batch_sharding) for a in (xb, eb, pb))
        return cfm_loss(eqx.combine(p_, static), xb, eb, pb, k, current_weight=config.current_weight)

    @jax.jit
    def run_block(params, ema, opt_state, steps, arrays):
        train_idx = arrays[3]

        def body(carry, s):
            params, ema, opt_state = carry
            kd = jax.random.fold_in(k_data, s)
            idx = train_idx[jax.random.randint(kd, (config.batch_size,), 0, train_idx.size)]
            loss, grads = jax.value_and_grad(loss_fn)(params, arrays, idx, jax.random.fold_in(k_noise, s))
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            ema = jax.tree_util.tree_map(lambda e, p: config.ema_decay * e + (1 - config.ema_decay) * p, ema, params)
            return (params, ema, opt_state), loss
        (params, ema, opt_state), losses = jax.lax.scan(body, (params, ema, opt_state), steps)
        return params, ema, opt_state, jnp.mean(losses)

    val_idx = jnp.asarray(val_rows)

    @jax.jit
    def val_loss(ema, arrays):
        return loss_fn(ema, arrays, val_idx, k_val)

    schedule_lr = _schedule(config)
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="train", disable=not progress)
    t_start = time.perf_counter()
    while step < config.steps:
        if max_minutes is not None and elapsed0 + time.perf_counter() - t_start > 60 * max_minutes:
            break
        if stop_at_step is not None and step >= stop_at_step:
            break
        block_end = min(step + config.eval_every, config.steps)
        losses = []
        while step < block_end:
            k = min(config.steps_per_call, block_end - step)
            steps = jnp.arange(step, step + k)
            params, ema, opt_state, loss = run_block(params, ema, opt_state, steps, arrays)
            losses.append(float(loss))
            step += k
            bar.update(k)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", best_val=f"{best_val:.4f}")
        v = float(val_loss(ema, arrays))
        best_val = min(best_val, v)
        history["step"].append(step)
        history["train_loss"].append(float(np.mean(losses)))
        history["val_loss"].append(v)
        history["lr"].append(float(schedule_lr(step)))
        history["elapsed_s"].append(elapsed0 + time.perf_counter() - t_start)
        # The state goes to a new file named by its step, then the metadata naming it replaces the
        # old metadata, then the previous state file goes: a kill at any point leaves a metadata
        # file and the state file it describes (overwriting one state file in place would leave a
        # window where the state is a block ahead of its metadata, and a resume would replay it).
        state_file = f"train_state_{step}.eqx"
        with atomic_path(out / state_file) as tmp:
            eqx.tree_serialise_leaves(tmp, (params, ema, opt_state))
        write_text(state_meta_path, json.dumps({"step": step, "best_val": best_val, "history": history,
                                                "config": asdict(config), "dataset_manifest_sha256": data_hash,
                                                "state_file": state_file}))
        for old in [out / TRAIN_STATE_FILENAME, *out.glob("train_state_*.eqx")]:
            if old.name != state_file:
                old.unlink(missing_ok=True)
    bar.close()

    ema_model = eqx.combine(ema, static)
    _write_artifacts(out, ema_model, normalizers, geometry, data, config, history, data_hash,
                     val_rows=val_rows, finished=step >= config.steps)
    return history


def sample_current(model, normalizers, x0_key, e, p, *, n_draws: int = 8, n_steps: int = 60):
    """Surrogate draws of the current (mA), shape (n_draws, rows, L), from raw ``e`` (rows, L) and
    raw ``p`` (rows, phys). One compiled program for all draws and rows."""
    import jax
    import jax.numpy as jnp

    from ._data import state_to_current
    from .objective import integrate_flow

    xm, xs, em, es, pm, ps = (jnp.asarray(a) for a in normalizers)
    en = ((jnp.asarray(e) - em) / es)[:, None, :]
    pn = (jnp.asarray(p) - pm) / ps
    rows, length = en.shape[0], en.shape[-1]
    x0 = jax.random.normal(x0_key, (n_draws, rows, xm.size))
    flow = jax.vmap(jax.vmap(lambda x, e_, p_: integrate_flow(model, x, e_, p_, n_steps), (0, 0, 0)), (0, None, None))
    x1 = jax.jit(flow)(x0, en, pn) * xs + xm
    return state_to_current(x1[..., -length:])


def _write_artifacts(out: Path, model, normalizers, geometry, data, config: TrainConfig, history, data_hash,
                     *, val_rows, finished: bool) -> None:
    import equinox as eqx

    from ._data import CURRENT_SCALE_MA
    from .eval_classical import calibrate_discrepancy

    # Calibrated discrepancy (what inference adds to the likelihood variance), on validation rows.
    discrepancy = calibrate_discrepancy(model, normalizers, data, val_rows[:384], n_mc=2, seed=config.seed + 17)
    meta = {
        **{k: getattr(config, k) for k in ("hidden_size", "depth", "cond_dim")},
        **geometry,
        "architecture": {"class": "VectorFieldNet" if config.arch == "conv" else "MLPVectorField",
                         "description": "dilated 1-D conv residual stack with FiLM (t, p) + state MLP head"
                         if config.arch == "conv" else "MLP on concatenated inputs"},
        "state_layout": ["ox (S*nx, mM)", "red (S*nx, mM)", f"asinh(i / {CURRENT_SCALE_MA} mA) (L)"],
        "current_transform": {"kind": "asinh", "scale_mA": CURRENT_SCALE_MA},
        "params": data.manifest["params"],
        "priors": data.manifest["recipe"]["priors"],
        "task_names": data.manifest["task_names"],
        "stage_names": data.manifest["stage_names"],
        "training_config": asdict(config),
        "training": {"finished": finished, "steps_done": history["step"][-1] if history["step"] else 0,
                     "best_val_loss": min(history["val_loss"]) if history["val_loss"] else None,
                     "elapsed_s": history["elapsed_s"][-1] if history["elapsed_s"] else 0.0},
        "dataset_manifest_sha256": data_hash,
        "dataset_units": data.manifest["units"],
        "simulator": data.manifest["simulator"],
        "discrepancy": discrepancy,
    }
    save_normalizers(out / NORMALIZERS_FILENAME, normalizers)
    eqx.tree_serialise_leaves(out / (CHECKPOINT_FILENAME + ".tmp"), model)
    os.replace(out / (CHECKPOINT_FILENAME + ".tmp"), out / CHECKPOINT_FILENAME)
    save_model_metadata(out / MODEL_META_FILENAME, meta)
    write_text(out / HISTORY_FILENAME, json.dumps(history, indent=1))
    _plot_history(out / "loss_curve.png", history)


def _plot_history(path: Path, history: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["step"], history["train_loss"], label="train (block mean)")
    ax.plot(history["step"], history["val_loss"], label="val (EMA weights)")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("flow-matching loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
