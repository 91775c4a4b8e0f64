"""Training the amortised posterior (``ecsfm.posterior.amortized``) on an ecsfm dataset.

Each row of the dataset's train split is a known truth and its noise-free current. Every batch
draws its own observation: a noise sd log-uniform on [0.005, 0.15] (dataset units; the seed's
regimes use 0.02 and 0.08), every point kept (a third of the rows) or each kept with a
probability uniform on [0.1, 1], and each free slot stated by the user with probability 0.1 (the
model then learns the others given it). The loss is the negative log density of the truth's
coordinates under q. Training keeps an exponential moving average of the weights (the saved
model), is checkpointed atomically every ``save_every`` steps and resumes from the last
checkpoint when rerun with the same settings and data.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .._atomic import atomic_path, write_text
from ..data import CoreLayout, read_chunk, read_manifest
from .amortized import (Y_SCALE, AmortizedConfig, AmortizedPosterior, context_size, context_vector, save_amortized,
                        y_of_raw)
from .space import ParameterSpace

__all__ = ["train_amortized", "prepare_rows", "NOISE_RANGE", "KEEP_RANGE"]

#: noise sd range (dataset units, log-uniform) and kept-fraction range of the training observations
NOISE_RANGE = (0.005, 0.15)
KEEP_RANGE = (0.1, 1.0)
_DENSE_FRACTION = 1.0 / 3.0
_GIVEN_PROB = 0.1
_STATE = "train_state.eqx"
_STATE_META = "train_state.json"


def _meta_of(manifest: dict) -> dict:
    return {"task_names": list(manifest["task_names"]), "stage_names": list(manifest["stage_names"]),
            "priors": manifest["recipe"]["priors"], "max_species": int(manifest["max_species"]),
            "target_len": int(manifest["target_len"])}


def prepare_rows(data_dir, splits=(0,)) -> tuple[dict, dict]:
    """(arrays, meta) of a dataset's rows in ``splits`` (0 train, 1 val, 2 test): ``y`` (n, base)
    the truth's sampler coordinates at its free slots (0 elsewhere), ``free`` (n, base) bool,
    ``current`` (n, L), ``onehots`` (n, tasks + stages), ``ln_ts`` (n,), ``core`` (n, core) in
    the canonical labelling. Raises ValueError for a folder that is not an ecsfm dataset."""
    manifest = read_manifest(data_dir)
    meta = _meta_of(manifest)
    layout = CoreLayout.from_manifest(manifest)
    base = layout.n_base
    geometry = {"max_species": meta["max_species"], "phys_dim_core": layout.size, "target_len": meta["target_len"]}
    parts = [read_chunk(data_dir, entry) for entry in manifest["chunks"]]
    keep = [np.isin(c["split"], splits) for c in parts]
    p = np.concatenate([c["p"][k] for c, k in zip(parts, keep)]).astype(np.float64)
    current = np.concatenate([c["i"][k] for c, k in zip(parts, keep)]).astype(np.float32)
    task = np.concatenate([c["task_id"][k] for c, k in zip(parts, keep)])
    stage = np.concatenate([c["stage_id"][k] for c, k in zip(parts, keep)])
    if p.shape[0] == 0:
        raise ValueError(f"data: {data_dir} has no rows in splits {splits}")
    cores = layout.cores(p, task, stage).astype(np.float64)
    active = layout.base.active_couples(cores[:, :base])
    y = np.zeros((p.shape[0], base))
    free = np.zeros((p.shape[0], base), bool)
    mask = layout.known_mask()
    groups: dict = {}
    for r in range(p.shape[0]):
        groups.setdefault((int(task[r]), int(stage[r]), tuple(active[r])), []).append(r)
    for rows in groups.values():
        rows = np.asarray(rows)
        space = ParameterSpace(meta, cores[rows[0]], mask, geometry)
        if space.ordered_e0:
            cores[rows] = np.stack([space.canonical_order(c) for c in cores[rows]])
        y[np.ix_(rows, space.free)] = y_of_raw(space, cores[rows])
        free[np.ix_(rows, space.free)] = True
    slot = layout.base.index("ln_time_scale")
    arrays = {"y": y.astype(np.float32), "free": free, "current": current, "onehots": cores[:, base:].astype(np.float32),
              "ln_ts": cores[:, slot].astype(np.float32), "core": cores}
    return arrays, meta


def _loss(params, static, batch, key, norms):
    model = eqx.combine(params, static)
    cur, y, free, onehots, ts = batch
    n, length = cur.shape
    k = jax.random.split(key, 6)
    noise = jnp.exp(jax.random.uniform(k[0], (n,), minval=np.log(NOISE_RANGE[0]), maxval=np.log(NOISE_RANGE[1])))
    keep = jnp.where(jax.random.uniform(k[1], (n,)) < _DENSE_FRACTION, 1.0,
                     jax.random.uniform(k[2], (n,), minval=KEEP_RANGE[0], maxval=KEEP_RANGE[1]))
    mask = (jax.random.uniform(k[3], (n, length)) < keep[:, None]).astype(jnp.float32)
    obs_n = (cur + noise[:, None] * jax.random.normal(k[4], cur.shape) - norms[0]) / norms[1]
    given = free & (jax.random.uniform(k[5], free.shape) < _GIVEN_PROB)
    unknown = free & ~given
    eps = jax.random.normal(jax.random.fold_in(key, 7), y.shape)
    v = jnp.where(unknown, y / Y_SCALE, eps)
    ctx = context_vector(obs_n, mask, noise, onehots, (ts - norms[2]) / norms[3], unknown.astype(jnp.float32),
                         given.astype(jnp.float32), y)
    return -jnp.mean(model.log_prob(v, ctx))


def _data_record(data_dir) -> dict:
    """What the model was trained on, without the folder's path: the recipe, seed and chunks."""
    manifest = read_manifest(data_dir)
    return {"recipe": manifest["recipe"].get("name"), "seed": manifest.get("seed"), "n_rows": manifest.get("n_rows"),
            "chunks_sha256": [c["sha256"] for c in manifest["chunks"]]}


def _fingerprint(config: dict, data_dir) -> str:
    manifest = read_manifest(data_dir)
    text = json.dumps({"config": config, "chunks": [c["sha256"] for c in manifest["chunks"]]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_amortized(data_dir, out_dir, *, steps: int = 20_000, batch_size: int = 512, learning_rate: float = 1e-3,
                    config: AmortizedConfig = AmortizedConfig(), ema_decay: float = 0.999, seed: int = 0,
                    save_every: int = 1000, progress: bool = True, rebuild: list | None = None) -> dict:
    """Train q on the train split of ``data_dir`` (an ecsfm dataset) and save it into ``out_dir``
    (``save_amortized``: the EMA weights). Adam with a cosine decay from ``learning_rate`` and
    gradient clipping at norm 1. Resumes a run of the same settings and data from its last
    checkpoint; refuses a folder holding another run. Returns the training record (also in the
    metadata). Raises ValueError naming the argument on bad input."""
    for name, value, lo in (("steps", steps, 1), ("batch_size", batch_size, 8), ("save_every", save_every, 1)):
        if not (isinstance(value, int) and value >= lo):
            raise ValueError(f"{name}: must be an integer >= {lo}, got {value!r}")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay: must be in [0, 1), got {ema_decay}")
    arrays, meta = prepare_rows(data_dir, (0,))
    val, _ = prepare_rows(data_dir, (1,))
    settings = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "config": config.to_dict(),
                "ema_decay": ema_decay, "seed": seed}
    print_hash = _fingerprint(settings, data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cur_mean, cur_std = arrays["current"].mean(0), arrays["current"].std(0) + 1e-6
    ts_mean, ts_std = float(arrays["ln_ts"].mean()), float(arrays["ln_ts"].std() + 1e-6)
    norms = (jnp.asarray(cur_mean), jnp.asarray(cur_std), jnp.float32(ts_mean), jnp.float32(ts_std))
    length, base = arrays["current"].shape[1], arrays["y"].shape[1]
    n_tasks, n_stages = len(meta["task_names"]), len(meta["stage_names"])
    ctx_dim = context_size(length, n_tasks, n_stages, base)
    model = AmortizedPosterior(ctx_dim, base, config, key=jax.random.key(seed))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    state = {"params": params, "ema": params, "opt": opt.init(params), "step": jnp.int32(0)}
    state_meta = out / _STATE_META
    if state_meta.exists():
        saved = json.loads(state_meta.read_text())
        if saved.get("fingerprint") != print_hash:
            raise ValueError(f"out: {out} holds a training run of other settings or data; use a new --out")
        state = eqx.tree_deserialise_leaves(out / _STATE, state)

    @eqx.filter_jit
    def step_fn(state, batch, key):
        loss, grads = eqx.filter_value_and_grad(_loss)(state["params"], static, batch, key, norms)
        updates, opt_state = opt.update(grads, state["opt"], state["params"])
        params = eqx.apply_updates(state["params"], updates)
        ema = jax.tree_util.tree_map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, state["ema"], params)
        return {"params": params, "ema": ema, "opt": opt_state, "step": state["step"] + 1}, loss

    val_loss = eqx.filter_jit(lambda p, batch, key: _loss(p, static, batch, key, norms))
    cols = ("current", "y", "free", "onehots", "ln_ts")
    data = [jnp.asarray(arrays[c]) for c in cols]
    n_val = min(2048, val["current"].shape[0]) if val["current"].shape[0] else 0
    val_batch = [jnp.asarray(val[c][:n_val]) for c in cols] if n_val else None
    start, t0 = int(state["step"]), time.perf_counter()
    losses = []
    bar = tqdm(total=steps, initial=start, desc="train-posterior", unit="step", disable=not progress)
    rng = np.random.default_rng([seed, start])
    for k in range(start, steps):
        idx = jnp.asarray(rng.integers(0, data[0].shape[0], batch_size))
        state, loss = step_fn(state, [d[idx] for d in data], jax.random.fold_in(jax.random.key(seed), k))
        if (k + 1) % 50 == 0:  # a host sync every 50 steps, not every step
            losses.append(float(loss))
        bar.update()
        if (k + 1) % save_every == 0 or k + 1 == steps:
            with atomic_path(out / _STATE) as tmp:
                eqx.tree_serialise_leaves(tmp, state)
            write_text(state_meta, json.dumps({"fingerprint": print_hash, "step": k + 1}))
            if losses:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    ema_model = eqx.combine(state["ema"], static)
    record = {"steps": steps, "resumed_from_step": start, "seconds_this_run": time.perf_counter() - t0,
              "train_loss_last": float(np.mean(losses[-20:])) if losses else None,
              "val_loss": float(val_loss(state["ema"], val_batch, jax.random.key(seed + 1))) if val_batch else None,
              "n_train_rows": int(data[0].shape[0]), "settings": settings, "fingerprint": print_hash}
    save_amortized(out, ema_model, {**meta, "dim": base, "context_dim": ctx_dim, "config": config.to_dict(),
                                    "current_mean": cur_mean.tolist(), "current_std": cur_std.tolist(),
                                    "time_scale_mean": ts_mean, "time_scale_std": ts_std, "training": record,
                                    "data": _data_record(data_dir), "rebuild": list(rebuild or [])})
    return record
