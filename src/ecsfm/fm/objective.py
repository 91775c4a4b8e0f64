"""Conditional flow matching: the training objective and the sampler.

Linear (rectified) path from noise to data: ``x_t = (1 - t) x0 + t x1`` with ``x0 ~ N(0, I)``,
``t ~ U(0, 1)``, whose velocity is ``u = x1 - x0``; the model is fitted by weighted least squares
``|| v(t, x_t | E, p) - u ||^2``. Sampling integrates ``dx/dt = v`` from t = 0 to 1
(``integrate_flow``, one normalised sample; ``sample_current``, draws of the current in mA from raw
inputs and the normalisers).

Loss weights: inference reads only the current, so the current block carries ``current_weight``
(default 0.8) of the loss and the concentration profiles the rest, each block a mean over its
entries (so the split does not depend on L, S or nx).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._data import state_to_current

__all__ = ["cfm_loss", "integrate_flow", "sample_current"]


def cfm_loss(model, x1: Float[Array, "b n"], E: Float[Array, "b c l"], p: Float[Array, "b q"],
             key: PRNGKeyArray, *, current_weight: float = 0.8) -> Float[Array, ""]:
    """Mean weighted flow-matching loss over a batch (all inputs normalised)."""
    if not 0.0 < current_weight <= 1.0:
        raise ValueError(f"current_weight: must be in (0, 1], got {current_weight}")
    b, n = x1.shape
    length = E.shape[-1]
    kt, kx = jax.random.split(key)
    t = jax.random.uniform(kt, (b,))
    x0 = jax.random.normal(kx, x1.shape, x1.dtype)
    xt = (1.0 - t[:, None]) * x0 + t[:, None] * x1
    v = jax.vmap(model)(t, xt, E, p)
    err = (v - (x1 - x0)) ** 2
    cur = jnp.mean(err[:, n - length:])
    if n == length:
        return cur
    prof = jnp.mean(err[:, : n - length])
    return current_weight * cur + (1.0 - current_weight) * prof


def integrate_flow(model, x0: Float[Array, " n"], E, p, n_steps: int, method: str = "euler") -> Float[Array, " n"]:
    """Integrate the flow from ``x0`` at t = 0 to t = 1 in ``n_steps`` equal steps (one sample;
    ``jax.vmap`` for a batch). ``method``: ``"euler"`` (first order) or ``"midpoint"`` (second
    order, two model calls per step)."""
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps: must be an integer >= 1, got {n_steps}")
    if method not in ("euler", "midpoint"):
        raise ValueError(f"method: must be 'euler' or 'midpoint', got {method!r}")
    h = 1.0 / n_steps

    def step(x, i):
        t = i * h
        if method == "euler":
            return x + h * model(t, x, E, p), None
        xm = x + 0.5 * h * model(t, x, E, p)
        return x + h * model(t + 0.5 * h, xm, E, p), None

    x1, _ = jax.lax.scan(step, x0, jnp.arange(n_steps, dtype=x0.dtype))
    return x1


def sample_current(model, normalizers, x0_key: PRNGKeyArray, e, p, *, n_draws: int = 8, n_steps: int = 60):
    """Surrogate draws of the current (mA), shape (n_draws, rows, L), from raw ``e`` (rows, L) and
    raw ``p`` (rows, phys_dim), by ``n_steps`` Euler steps of the flow from noise drawn with
    ``x0_key``. ``normalizers``: ``(x_mean, x_std, e_mean, e_std, p_mean, p_std)``. One compiled
    program for all draws and rows."""
    xm, xs, em, es, pm, ps = (jnp.asarray(a) for a in normalizers)
    en = ((jnp.asarray(e) - em) / es)[:, None, :]
    pn = (jnp.asarray(p) - pm) / ps
    rows, length = en.shape[0], en.shape[-1]
    x0 = jax.random.normal(x0_key, (n_draws, rows, xm.size))
    x1 = _flow_draws(model, x0, en, pn, n_steps) * xs + xm
    return state_to_current(x1[..., -length:])


@eqx.filter_jit
def _flow_draws(model, x0, en, pn, n_steps: int):
    """``integrate_flow`` over draws (leading axis of ``x0``) and rows: one compiled program per
    model structure and shapes, cached across calls (the model is an argument, not a constant)."""
    per_row = jax.vmap(lambda x, e_, p_: integrate_flow(model, x, e_, p_, n_steps), (0, 0, 0))
    return jax.vmap(per_row, (0, None, None))(x0, en, pn)
