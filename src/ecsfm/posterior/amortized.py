"""An amortised posterior q(theta | trace) corrected by the exact likelihood.

A conditional normalising flow (rational-quadratic spline coupling layers, ``flowjax``) over the
sampler's unconstrained coordinates ``y`` (``ParameterSpace``: the logit of each free slot's
position in its prior box), conditioned on an embedding of the observed trace with its
observation mask, the noise level, the task and stage, the protocol's time scale and the slots a
user states. One model covers every task of its dataset and the dense, sparse and noisy regimes.

The flow has one dimension per slot of the base parameter vector. Slots that are not free in a
case (fixed by the prior, protocol, absent couple, stated by the user) carry independent standard
normal noise in training and are drawn and ignored at inference. Importance sampling then targets
the posterior extended by those standard normals: the weights ``prior(y) lik(y) N(eps) / q(y, eps)``
use the flow's exact joint density and are exact for the posterior's marginal, with no need to
marginalise the flow. The flow's density is exact at any point (a coupling flow inverts in one
pass), which also lets the fallback run tempered SMC from q to the posterior.

Why a normalising flow and not a flow-matching model here: q's density must be exact for the
weights, and at any point for the fallback; a flow-matching posterior gets it only through a
probability-flow ODE with its divergence, per draw. ``docs/posterior.md`` records the choice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import paramax
from flowjax.bijections import RationalQuadraticSpline
from flowjax.distributions import Normal
from flowjax.flows import coupling_flow

from .._atomic import atomic_path, write_text
from ..data import CoreLayout

__all__ = ["AmortizedPosterior", "AmortizedConfig", "context_vector", "save_amortized", "load_amortized",
           "AMORTIZED_SCHEMA_VERSION", "AMORTIZED_FILENAME", "AMORTIZED_META_FILENAME", "Y_SCALE", "check_compatible"]

AMORTIZED_SCHEMA_VERSION = 1
AMORTIZED_FILENAME = "amortized_posterior.eqx"
AMORTIZED_META_FILENAME = "amortized_meta.json"
#: the flow works on y / Y_SCALE: a logistic prior in y has sd 1.8, the spline's interval is +-5
Y_SCALE = 3.0
#: the noise sd (dataset units) the context's log-noise feature is centred on
_NOISE_REF = 0.02


class AmortizedConfig(eqx.Module):
    """The estimator's sizes: ``embed_width`` / ``embed_dim`` of the trace embedding (an MLP of
    depth 2), ``flow_layers`` coupling layers of ``nn_width`` x ``nn_depth`` conditioners with
    ``knots``-knot splines on [-5, 5] (identity outside)."""

    embed_width: int = 256
    embed_dim: int = 128
    flow_layers: int = 8
    nn_width: int = 128
    nn_depth: int = 2
    knots: int = 8

    def to_dict(self) -> dict:
        return {k: int(getattr(self, k)) for k in ("embed_width", "embed_dim", "flow_layers", "nn_width",
                                                   "nn_depth", "knots")}


def context_size(target_len: int, n_tasks: int, n_stages: int, base: int) -> int:
    """Length of the raw context vector (``context_vector``)."""
    return 2 * target_len + 2 + n_tasks + n_stages + 3 * base


def context_vector(obs_n, mask, noise_std, onehots, time_scale_n, free, given, given_y):
    """The raw context of one case (or a batch, leading axes broadcast): the normalised observed
    current times the mask, the mask, ln(noise / 0.02) / 2, the task and stage one-hots, the
    normalised ln time scale, and per base slot whether it is free, whether a user stated it and
    its stated value in ``y / Y_SCALE`` (0 elsewhere)."""
    noise = jnp.log(jnp.asarray(noise_std, jnp.float32) / _NOISE_REF)[..., None] / 2.0
    return jnp.concatenate([obs_n * mask, mask, noise, jnp.asarray(time_scale_n, jnp.float32)[..., None], onehots,
                            free, given, given_y * given / Y_SCALE], axis=-1).astype(jnp.float32)


class AmortizedPosterior(eqx.Module):
    """q(y | context): ``embed`` maps the raw context to the flow's condition; ``flow`` is over
    the base slots in ``y / Y_SCALE`` (the free slots' y, standard normals elsewhere)."""

    embed: eqx.nn.MLP
    flow: eqx.Module
    dim: int = eqx.field(static=True)

    def __init__(self, context_dim: int, dim: int, config: AmortizedConfig, *, key):
        k1, k2 = jax.random.split(key)
        self.dim = int(dim)
        self.embed = eqx.nn.MLP(context_dim, config.embed_dim, width_size=config.embed_width, depth=2,
                                activation=jax.nn.gelu, key=k1)
        self.flow = coupling_flow(k2, base_dist=Normal(jnp.zeros(self.dim)),
                                  transformer=RationalQuadraticSpline(knots=config.knots, interval=5.0),
                                  cond_dim=config.embed_dim, flow_layers=config.flow_layers,
                                  nn_width=config.nn_width, nn_depth=config.nn_depth)

    def log_prob(self, v, context):
        """ln q of ``v`` (n, dim) in flow units given one raw context (C,) or one per row (n, C)."""
        model = paramax.unwrap(self)
        cond = jax.vmap(model.embed)(context) if context.ndim == 2 else model.embed(context)
        return model.flow.log_prob(v, cond)

    def sample_and_log_prob(self, key, n: int, context):
        """(v (n, dim), ln q (n,)) for one raw context (C,)."""
        model = paramax.unwrap(self)
        return model.flow.sample_and_log_prob(key, (n,), condition=model.embed(context))


@eqx.filter_jit
def draw(model: AmortizedPosterior, key, context, n: int):
    """``n`` draws of q and their log density (flow units), one compiled call."""
    return model.sample_and_log_prob(key, n, context)


@eqx.filter_jit
def log_density(model: AmortizedPosterior, v, context):
    """ln q of ``v`` (n, dim) in flow units."""
    return model.log_prob(v, context)


def save_amortized(out_dir, model: AmortizedPosterior, meta: dict) -> None:
    """The model's leaves and its metadata (schema version, sizes, the prior it learned, the
    current's normalisers, training record), each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / AMORTIZED_FILENAME) as tmp:
        eqx.tree_serialise_leaves(tmp, model)
    write_text(out / AMORTIZED_META_FILENAME, json.dumps({"schema_version": AMORTIZED_SCHEMA_VERSION, **meta},
                                                         indent=1))


def load_amortized(model_dir) -> tuple[AmortizedPosterior, dict]:
    """(model, meta) from a folder ``save_amortized`` wrote. Raises ValueError naming the problem."""
    folder = Path(model_dir)
    meta_path, leaves = folder / AMORTIZED_META_FILENAME, folder / AMORTIZED_FILENAME
    if not (meta_path.exists() and leaves.exists()):
        raise ValueError(f"amortized_model: {folder} has no {AMORTIZED_META_FILENAME} and {AMORTIZED_FILENAME} "
                         "(train one with ecsfm train-posterior)")
    meta = json.loads(meta_path.read_text())
    if meta.get("schema_version") != AMORTIZED_SCHEMA_VERSION:
        raise ValueError(f"amortized_model: {folder} has schema version {meta.get('schema_version')}, this ecsfm "
                         f"reads {AMORTIZED_SCHEMA_VERSION}")
    skeleton = AmortizedPosterior(int(meta["context_dim"]), int(meta["dim"]), AmortizedConfig(**meta["config"]),
                                  key=jax.random.key(0))
    return eqx.tree_deserialise_leaves(leaves, skeleton), meta


def check_compatible(amortized_meta: dict, model_meta: dict, target_len: int) -> None:
    """ValueError in one line when an amortised model was trained for other tasks, another prior
    or another trace length than the data it is asked about."""
    for what, mine, theirs in (("tasks", amortized_meta["task_names"], list(model_meta.get("task_names", []))),
                               ("stages", amortized_meta["stage_names"], list(model_meta.get("stage_names", []))),
                               ("trace length", amortized_meta["target_len"], int(target_len))):
        if mine != theirs:
            raise ValueError(f"amortized_model: its {what} {mine} differ from the data's {theirs}; train one on "
                             "this model's dataset (ecsfm train-posterior)")
    if amortized_meta["priors"] != model_meta.get("priors"):
        differ = sorted(k for k in set(amortized_meta["priors"]) | set(model_meta.get("priors", {}))
                        if amortized_meta["priors"].get(k) != model_meta.get("priors", {}).get(k))
        raise ValueError(f"amortized_model: it learned another prior than the model's (differs at {differ[:3]}); "
                         "train one on this model's dataset (ecsfm train-posterior)")


def y_of_raw(space, p_core: np.ndarray, slots=None) -> np.ndarray:
    """The sampler's coordinates y (n, len(slots)) of raw ``p_core`` rows (n, core) in ``space``
    (the inverse of ``ParameterSpace.to_raw``; positions clipped to 1e-6 inside the box), at the
    free slots by default or at any ``slots`` that have a prior box."""
    p = np.atleast_2d(np.asarray(p_core, np.float64))
    slots = space.free if slots is None else np.asarray(slots, int)
    fr = space.frac_of[slots]
    lo, hi = space.lows[slots], space.highs[slots]
    val = p[:, slots]
    scale = np.where(fr >= 0, p[:, np.maximum(fr, 0)], 1.0)
    u = np.clip((val / np.where(scale > 0, scale, 1.0) - lo) / np.where(hi > lo, hi - lo, 1.0), 1e-6, 1 - 1e-6)
    return np.log(u) - np.log1p(-u)


def case_context(space, meta: dict, observed, mask, noise_std: float, given: np.ndarray | None = None) -> np.ndarray:
    """The raw context (C,) of one case: ``space`` its ``ParameterSpace``, ``meta`` the amortised
    model's metadata (the current's normalisers), ``observed`` (L,) dataset units, ``mask`` (L,)
    bool, ``noise_std`` in the same units, ``given`` (base,) bool: slots a user stated (known and
    free-able under the prior)."""
    layout = CoreLayout(int(meta["max_species"]), tuple(meta["task_names"]), tuple(meta["stage_names"]))
    base = layout.base.size
    cur_mean, cur_std = np.asarray(meta["current_mean"]), np.asarray(meta["current_std"])
    obs_n = (np.asarray(observed, np.float64) - cur_mean) / cur_std
    free = np.zeros(base)
    free[space.free] = 1.0
    given = np.zeros(base, bool) if given is None else np.asarray(given, bool)
    given_y = np.zeros(base)
    if given.any():
        given_y[given] = y_of_raw(space, space.known[None], np.flatnonzero(given))[0]
    slot = layout.base.index("ln_time_scale")
    ts = (space.known[slot] - meta["time_scale_mean"]) / meta["time_scale_std"]
    onehots = space.known[base:]
    return np.asarray(context_vector(jnp.asarray(obs_n, jnp.float32), jnp.asarray(mask, jnp.float32),
                                     float(noise_std), jnp.asarray(onehots, jnp.float32), float(ts),
                                     jnp.asarray(free, jnp.float32), jnp.asarray(given, jnp.float32),
                                     jnp.asarray(given_y, jnp.float32)))


def standard_normal_logpdf(v: np.ndarray) -> np.ndarray:
    """Sum over the last axis of ln N(v; 0, 1)."""
    return -0.5 * np.sum(v**2, axis=-1) - 0.5 * v.shape[-1] * math.log(2 * math.pi)
