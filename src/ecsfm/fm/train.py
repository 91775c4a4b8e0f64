"""Training the surrogate: conditional flow matching on a dataset folder, resumable, into a model
folder (the files ``ecsfm.fm.artifacts`` names and reads).

``train`` fits the normalisers on the train split, optimises ``cfm_loss`` with AdamW (warm-up,
cosine decay, clipping) and an EMA of the weights, evaluates on a fixed validation subset every
``eval_every`` steps, saves the whole training state atomically at each evaluation, and at the end
writes the EMA model, normalisers, calibrated discrepancy and ``model_meta.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from .._atomic import atomic_path, remove_stale_temporaries, write_text
from ._data import CURRENT_SCALE_MA, SurrogateData, fit_normalizers, legacy_manifest_hash, load_rows, manifest_hash
from .artifacts import (CHECKPOINT_FILENAME, META_SCHEMA_VERSION, MODEL_META_FILENAME, NORMALIZER_KEYS,
                        NORMALIZERS_FILENAME, load_model_metadata, load_saved_normalizers, save_model_metadata,
                        save_normalizers)
from .config import TrainConfig
from .discrepancy import calibrate_discrepancy
from .model import build_model
from .objective import cfm_loss, sample_current

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

TRAIN_STATE_FILENAME = "train_state.eqx"  # name used before the state file carried its step
TRAIN_STATE_META_FILENAME = "train_state.json"
HISTORY_FILENAME = "training_history.json"
#: Validation rows the trained model's discrepancy is calibrated on.
DISCREPANCY_VAL_ROWS = 384


def _schedule(config: TrainConfig):
    """Learning rate against optimiser step: linear warm-up, then cosine decay."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.lr, warmup_steps=min(config.warmup_steps, config.steps - 1),
        decay_steps=config.steps, end_value=config.lr * config.final_lr_fraction)


def _optimizer(config: TrainConfig):
    return optax.chain(optax.clip_by_global_norm(config.clip_norm),
                       optax.adamw(_schedule(config), weight_decay=config.weight_decay))


@dataclass
class _TrainState:
    """Everything a resumed run needs: weights, EMA, optimiser state, steps done, best validation
    loss, history, the wall time of earlier runs (s), and the step each run started from."""

    params: object
    ema: object
    opt_state: object
    step: int
    best_val: float
    history: dict
    elapsed0: float = 0.0
    run_starts: tuple = ()


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
    EMA model so far and ``model_meta.json`` says it is unfinished. Returns the training history
    (``step, train_loss, val_loss, lr, elapsed_s`` lists, one entry per evaluation).
    Raises ValueError for a bad setting, a dataset without train or val rows, or an ``out_dir``
    that is a file or holds a run with another config or dataset.
    """
    out = Path(out_dir)
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise ValueError(f"max_minutes: must be > 0 (or None: no limit), got {max_minutes}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; the model needs a folder")
    data = load_rows(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # a kill mid-write leaves one; the resume rewrites that file
    train_rows = np.flatnonzero(data.split == 0)
    val_rows = np.flatnonzero(data.split == 1)
    if train_rows.size == 0 or val_rows.size == 0:
        raise ValueError(f"data: need train and val rows, got {train_rows.size} and {val_rows.size}")
    val_rows = val_rows[: config.n_val_rows]
    normalizers = fit_normalizers(data, train_rows)
    arrays = _normalised_arrays(data, normalizers, train_rows)
    batch_sharding = _batch_sharding(config)

    k_model, k_data, k_noise, k_val = jax.random.split(jax.random.PRNGKey(config.seed), 4)
    model = build_model(config, data.geometry, k_model)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = _optimizer(config)
    state = _TrainState(params=params, ema=params, opt_state=opt.init(params), step=0, best_val=float("inf"),
                        history={"step": [], "train_loss": [], "val_loss": [], "lr": [], "elapsed_s": []})
    data_hash = manifest_hash(data_dir)
    if resume and (out / TRAIN_STATE_META_FILENAME).exists():
        state = _resumed(out, state, config, (data_hash, legacy_manifest_hash(data_dir)))
    state.run_starts = (*state.run_starts, state.step)  # 0 for a fresh run; a resumed run's checkpoint step
    run_block, val_loss = _compiled_steps(config, static, opt, batch_sharding, (k_data, k_noise, k_val),
                                          jnp.asarray(val_rows))
    state = _optimise(state, config, run_block, val_loss, arrays, out, data_hash, progress=progress,
                      max_minutes=max_minutes, stop_at_step=stop_at_step)
    _write_artifacts(out, eqx.combine(state.ema, static), normalizers, data.geometry, data, config, state.history,
                     data_hash, val_rows=val_rows, finished=state.step >= config.steps, run_starts=state.run_starts)
    return state.history


def _normalised_arrays(data: SurrogateData, normalizers, train_rows: np.ndarray) -> tuple:
    """``(X (N, state), E (N, 1, L), P (N, phys), train_idx)`` normalised, as device arrays.

    The data travel to the compiled steps as arguments, not closure constants: a constant would
    be baked into (and folded by) every compiled program."""
    xm, xs, em, es, pm, ps = (jnp.asarray(a) for a in normalizers)
    X = (jnp.asarray(data.x) - xm) / xs
    Ee = (jnp.asarray(data.e) - em.reshape(1, 1, -1)) / es.reshape(1, 1, -1)
    Pp = (jnp.asarray(data.p) - pm) / ps
    return X, Ee, Pp, jnp.asarray(train_rows)


def _batch_sharding(config: TrainConfig):
    """The batch's sharding over the local devices (None on one device). Raises ValueError when
    the batch does not divide evenly."""
    n_dev = jax.local_device_count()
    if config.batch_size % n_dev:
        raise ValueError(f"batch_size: must be a multiple of the {n_dev} local devices")
    return NamedSharding(Mesh(np.asarray(jax.local_devices()), ("data",)), P("data")) if n_dev > 1 else None


def _resumed(out: Path, fresh: _TrainState, config: TrainConfig, data_hashes: tuple[str, str]) -> _TrainState:
    """The training state saved in ``out`` (``fresh`` gives the structure to load into). Raises
    ValueError when it was saved by a run with another config or dataset (neither hash matches)."""
    smeta = json.loads((out / TRAIN_STATE_META_FILENAME).read_text())
    same_data = smeta["dataset_manifest_sha256"] in data_hashes
    if smeta["config"] != asdict(config) or not same_data:
        raise ValueError(f"out: {out} holds a run with another config or dataset; use a new --out")
    state_file = smeta.get("state_file", TRAIN_STATE_FILENAME)
    params, ema, opt_state = eqx.tree_deserialise_leaves(out / state_file, (fresh.params, fresh.ema, fresh.opt_state))
    history = smeta["history"]
    return _TrainState(params=params, ema=ema, opt_state=opt_state, step=smeta["step"], best_val=smeta["best_val"],
                       history=history, elapsed0=history["elapsed_s"][-1] if history["elapsed_s"] else 0.0,
                       run_starts=tuple(smeta.get("run_starts", ())))


def _compiled_steps(config: TrainConfig, static, opt, batch_sharding, keys, val_idx):
    """``run_block(params, ema, opt_state, steps, arrays) -> (params, ema, opt_state, mean loss)``
    (one ``lax.scan`` over the optimiser steps ``steps``; batch and noise are functions of the
    step number) and ``val_loss(ema, arrays)`` (fixed rows, fixed noise), both jitted."""
    k_data, k_noise, k_val = keys

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

    @jax.jit
    def val_loss(ema, arrays):
        return loss_fn(ema, arrays, val_idx, k_val)

    return run_block, val_loss


def _optimise(state: _TrainState, config: TrainConfig, run_block, val_loss, arrays, out: Path, data_hash: str, *,
              progress: bool, max_minutes: float | None, stop_at_step: int | None) -> _TrainState:
    """Blocks of ``eval_every`` steps until ``config.steps`` (or the time or step limit, checked
    before each block), each followed by a validation loss and a saved training state."""
    schedule_lr = _schedule(config)
    bar = tqdm(total=config.steps, initial=state.step, unit="step", desc="train", disable=not progress)
    t_start = time.perf_counter()
    while state.step < config.steps:
        if max_minutes is not None and state.elapsed0 + time.perf_counter() - t_start > 60 * max_minutes:
            break
        if stop_at_step is not None and state.step >= stop_at_step:
            break
        block_end = min(state.step + config.eval_every, config.steps)
        losses = []
        while state.step < block_end:
            k = min(config.steps_per_call, block_end - state.step)
            steps = jnp.arange(state.step, state.step + k)
            state.params, state.ema, state.opt_state, loss = run_block(state.params, state.ema, state.opt_state,
                                                                       steps, arrays)
            losses.append(float(loss))
            state.step += k
            bar.update(k)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", best_val=f"{state.best_val:.4f}")
        v = float(val_loss(state.ema, arrays))
        state.best_val = min(state.best_val, v)
        history = state.history
        history["step"].append(state.step)
        history["train_loss"].append(float(np.mean(losses)))
        history["val_loss"].append(v)
        history["lr"].append(float(schedule_lr(state.step)))
        history["elapsed_s"].append(state.elapsed0 + time.perf_counter() - t_start)
        _save_state(out, state, config, data_hash)
    bar.close()
    return state


def _save_state(out: Path, state: _TrainState, config: TrainConfig, data_hash: str) -> None:
    """Save the training state so that a kill at any point leaves a resumable folder.

    The state goes to a new file named by its step, then the metadata naming it replaces the old
    metadata, then the previous state file goes: a kill at any point leaves a metadata file and the
    state file it describes (overwriting one state file in place would leave a window where the
    state is a block ahead of its metadata, and a resume would replay it)."""
    state_file = f"train_state_{state.step}.eqx"
    with atomic_path(out / state_file) as tmp:
        eqx.tree_serialise_leaves(tmp, (state.params, state.ema, state.opt_state))
    write_text(out / TRAIN_STATE_META_FILENAME,
               json.dumps({"step": state.step, "best_val": state.best_val, "history": state.history,
                           "config": asdict(config), "dataset_manifest_sha256": data_hash,
                           "state_file": state_file, "run_starts": list(state.run_starts)}))
    for old in [out / TRAIN_STATE_FILENAME, *out.glob("train_state_*.eqx")]:
        if old.name != state_file:
            old.unlink(missing_ok=True)


def _write_artifacts(out: Path, model, normalizers, geometry: dict, data: SurrogateData, config: TrainConfig,
                     history: dict, data_hash: str, *, val_rows: np.ndarray, finished: bool,
                     run_starts: tuple = (0,)) -> None:
    """The model folder: normalisers, checkpoint, ``model_meta.json`` (with the discrepancy
    calibrated on the first validation rows; ``training.run_start_steps``: the step each run of an
    interrupted and resumed training started from), history and loss curve."""
    discrepancy = calibrate_discrepancy(model, normalizers, data, val_rows[:DISCREPANCY_VAL_ROWS], n_mc=2,
                                        seed=config.seed + 17)
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
                     "elapsed_s": history["elapsed_s"][-1] if history["elapsed_s"] else 0.0,
                     "run_start_steps": [int(s) for s in run_starts]},
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
    """Training and validation loss against optimiser step, as a PNG."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(history["step"], history["train_loss"], label="train (block mean)")
    ax.plot(history["step"], history["val_loss"], label="val (EMA weights)")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("flow-matching loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
