"""Engines: what maps parameter vectors to a predicted current.

An engine's forward takes raw conditioning vectors ``p_core`` (n, core) and returns the mean and
model variance of the current, each (n, L), in dataset units (mA for the dataset's area). Both
forwards are equinox modules, so one compiled program serves every inference with the same shapes
(the model and the inputs are arguments, not constants baked into a closure).

* ``SurrogateForward``: the flow-matching surrogate, ``n_mc`` flow draws per vector (fixed x0:
  common random numbers, so the likelihood is a smooth deterministic function), mean and spread.
* ``SimulatorForward``: ``ecsfm.sim`` through the dataset's task runner, on the active couples
  only (an absent couple carries no current); zero model variance.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import sim
from ..data import GLOBAL_QUANTITIES, SPECIES_QUANTITIES, ParamSpace, electrode_key, task_runner
from ..fm import ModelCard, integrate_flow, state_to_current
from .config import Engine

__all__ = ["SurrogateForward", "SimulatorForward", "surrogate_forward", "simulator_forward", "build_forward",
           "forward_batch", "log_likelihood_batch", "forward_jacobian", "to_f32"]


class SurrogateForward(eqx.Module):
    """The surrogate at fixed flow draws ``x0`` (n_mc, state) and normalised signal ``en``."""

    model: eqx.Module
    en: jax.Array
    x0: jax.Array
    xm: jax.Array
    xs: jax.Array
    pm: jax.Array
    ps: jax.Array
    n_steps: int = eqx.field(static=True)
    phys_dim: int = eqx.field(static=True)

    def __call__(self, p):
        p = p.astype(jnp.float32)
        if p.shape[1] < self.phys_dim:
            p = jnp.pad(p, ((0, 0), (0, self.phys_dim - p.shape[1])))
        pn = (p - self.pm) / self.ps
        length = self.en.shape[-1]
        x1 = jax.vmap(lambda q: jax.vmap(lambda x: integrate_flow(self.model, x, self.en, q, self.n_steps))(self.x0))(pn)
        cur = state_to_current(x1[..., -length:] * self.xs[-length:] + self.xm[-length:])
        return cur.mean(1), cur.var(1)


class SimulatorForward(eqx.Module):
    """The simulator on the active couples only (a one-couple case costs half a two-couple one)."""

    run: object = eqx.field(static=True)
    take: tuple = eqx.field(static=True)

    def __call__(self, p):
        i = self.run(p[:, jnp.asarray(self.take)].astype(jnp.float32))[0]
        return i, jnp.zeros_like(i)


def surrogate_forward(model, normalizers, geometry: dict, applied_signal, n_mc: int, n_steps: int,
                      seed: int) -> SurrogateForward:
    """The surrogate's forward for one trace's applied signal ((channels, L) or flat, V)."""
    xm, xs, em, es, pm, ps = (jnp.asarray(a, jnp.float32) for a in normalizers)
    length = int(geometry["target_len"])
    channels = int(geometry["signal_channels"])
    e = jnp.asarray(applied_signal, jnp.float32).reshape(channels * length)
    en = ((e - em) / es).reshape(channels, length)
    x0 = jax.random.normal(jax.random.PRNGKey(np.uint32(seed % (2**32))), (n_mc, int(geometry["state_dim"])))
    return SurrogateForward(model, en, x0, xm, xs, pm, ps, int(n_steps), int(geometry["phys_dim"]))


def simulator_forward(meta: dict, geometry: dict, task: str, active: np.ndarray) -> SimulatorForward:
    """The simulator's forward for ``task`` on the couples ``active`` (bool, max_species).
    Raises ValueError when the metadata has no ``simulator`` section."""
    simulator = ModelCard.from_meta(meta).simulator
    if simulator is None:
        raise ValueError("engine='simulator': the model metadata has no 'simulator' section (area, temperature, "
                         "solver); re-export the model with this ecsfm version")
    config = sim.SolverConfig(**simulator["solver_config"])
    layout = ParamSpace(int(geometry["max_species"]))
    couples = [int(k) for k in np.flatnonzero(active)]
    take = tuple([layout.index(name, k) for name, _, _ in SPECIES_QUANTITIES for k in couples]
                 + [layout.index(name) for name, _, _ in GLOBAL_QUANTITIES])
    run = task_runner(task, int(geometry["target_len"]), int(geometry["nx"]), len(couples),
                      float(simulator["area_cm2"]), float(simulator["temperature_K"]), config, electrode_key(simulator))
    return SimulatorForward(run, take)


def build_forward(engine: Engine, *, model, normalizers, meta: dict, geometry: dict, applied_signal, task: str,
                  active: np.ndarray, n_mc: int, n_steps: int, seed: int):
    """The forward of ``engine`` for one trace."""
    if engine is Engine.SURROGATE:
        return surrogate_forward(model, normalizers, geometry, applied_signal, n_mc, n_steps, seed)
    return simulator_forward(meta, geometry, task, active)


def to_f32(y) -> jax.Array:
    """float32 on the device, cast by numpy (a float64 -> float32 cast by jax dispatches an op)."""
    return jnp.asarray(np.asarray(y, np.float32))


@eqx.filter_jit
def forward_batch(forward, space, y):
    """Mean and model variance (K, L) at K unconstrained points y (K, dim) of ``space``
    (a ``SpaceArrays``)."""
    return forward(space.to_raw(y))


@eqx.filter_jit
def log_likelihood_batch(forward, space, y, obs, white, const):
    """Gaussian log-likelihood (K,) of the observed points at K points y, and the forward mean and
    spread (K, L): one compiled call per batch. ``white`` (L, L) whitens the residual (zero rows
    and columns at unobserved points); ``const`` = -1/2 (log det + n log 2 pi) of the covariance."""
    mean, var = forward(space.to_raw(y))
    w = (obs[None, :] - mean) @ white.T
    return -0.5 * jnp.sum(w**2, axis=1) + const, mean, var


@eqx.filter_jit
def forward_jacobian(forward, space, y):
    """Mean, model variance (K, L) and d mean / d y (K, L, dim) at K points y (K, dim)."""

    def mean_of(v):  # the mean, and (as aux) the primal pass's values: no second forward pass
        m, s = forward(space.to_raw(v[None]))
        return m[0], (m[0], s[0])

    jac, (mean, var) = jax.vmap(jax.jacfwd(mean_of, has_aux=True))(y)
    return mean, var, jac
