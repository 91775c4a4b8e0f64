"""Operators on a length scale of their own: a thin-layer cell (the solution between the electrode
and an inert wall) and a rotating disc (convective diffusion).

The planar propagator (``_grid``) works in diffusion lengths of the whole experiment,
``x / sqrt(D T)``, on a grid that ends in a Dirichlet node at bulk concentration. A thin layer ends
in a wall (no flux) at ``x = L``, and ``L / sqrt(D T)`` differs per species and batch member, so
that grid cannot serve. Here the grid is in units of the thickness, ``x / L`` in [0, 1], with a
no-flux node on the wall; the operator's eigen-decomposition is again done once per (config, time
grid) in float64 numpy. What differs per species and member is only the time scale: one solver
step ``h`` (relative time) is ``s h`` in the layer's own diffusion time, ``s = D T / L^2``. The
exact-in-time step tables (``exp(mu s h)`` and the flux weights) are therefore computed per
species and member in JAX, once per run before the time loop (``finite_tables``), so jit, vmap,
grad and native batching work over the thickness and D like over any other field.

The flux enters the modes as in ``_grid``: linear over a step, and linear in ``1/sqrt(time since
the jump)`` over the steps that follow a potential jump (``_grid.jump_weights``, here with a JAX
Dawson's integral, ``dawson``). In layer units the solver's flux ``q`` (scaled to ``sqrt(D T)``) is
``q / sqrt(s)``. The lowest mode has ``mu = 0``: the amount of material in the layer, which
exhaustive electrolysis uses up.

A rotating disc (``kind = "rde"``) is the same construction on another operator. Near the disc the
solution flows towards it at ``v_x = -C w^3/2 nu^-1/2 x^2`` (von Karman; Levich's first term,
``C = 0.51023``), and ``dc/dt = D d2c/dx2 - v_x dc/dx``. In units of
``L = (D nu^1/2 / (C w^3/2))^1/3`` and ``L^2 / D`` this is the universal
``dc/dtau = d2c/dxi2 + xi^2 dc/dxi = exp(-xi^3/3) d/dxi (exp(xi^3/3) dc/dxi)``: a fixed operator,
symmetric in the weight ``exp(xi^3/3)``, with the bulk (Dirichlet) at ``XI_MAX`` = 5 (the steady
profile is flat by xi ~ 3). Only ``L`` and ``s = D T / L^2`` differ per species and member. The
steady state is Levich's current ``n F A D C / (L int_0^inf exp(-xi^3/3) dxi)``
= ``0.62045 n F A D^2/3 w^1/2 nu^-1/6 C``; Newman's correction for the next terms of the velocity
profile (about 3 % lower at ``nu / D = 1000``) is not included.

The grid starts at ``H0`` of the length scale and grows by the config's ratio up to the wall. A layer
much thicker than the diffusion layer is planar diffusion; use ``Planar()`` for it (the grid here
resolves ``1e-4 L``, so a layer over ~30 diffusion lengths thick starts to lose accuracy at the first
steps).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ._grid import SolverConfig, jump_weights, since_jump
from ._waveforms import TimeGrid

__all__ = ["FiniteOperator", "finite_operator", "finite_tables", "dawson", "H0", "LEVICH_C", "XI_MAX"]

#: the first grid spacing as a fraction of the length scale
H0 = 1e-4
#: the rotating disc's far boundary (bulk), in units of its length scale L
XI_MAX = 5.0
#: the von Karman velocity coefficient: v_x = -LEVICH_C w^3/2 nu^-1/2 x^2
LEVICH_C = 0.51023


@dataclass(frozen=True, eq=False)
class FiniteOperator:
    """The thin layer's modes and step kinds for one (config, time grid), float64 numpy.

    Attributes:
        x: node positions (M+1,) in units of the thickness, node 0 on the electrode, node M on the wall.
        mu: eigenvalues (m,) of the layer's diffusion operator, <= 0 (mu = 0: the layer's content).
        v: the modes' surface weights (m,).
        to_nodes: modes -> node values (M+1, m).
        steps: the distinct step sizes (U,), relative time.
        since: per distinct step, the time from the last jump to its start (relative time), or -1
            where the flux is interpolated linearly (``_grid.since_jump``) (U,).
        step_index: for each time step n, its row in ``steps`` (N,).
    """

    x: np.ndarray
    mu: np.ndarray
    v: np.ndarray
    to_nodes: np.ndarray
    steps: np.ndarray
    since: np.ndarray
    step_index: np.ndarray


def _nodes(growth: float, end: float) -> np.ndarray:
    x = [0.0]
    h = H0
    while x[-1] + h < end:
        x.append(x[-1] + h)
        h *= growth
    if end - x[-1] < 0.5 * h / growth and len(x) > 2:  # a sliver before the end: merge it
        x.pop()
    x.append(end)
    return np.asarray(x)


@functools.lru_cache(maxsize=64)
def finite_operator(config: SolverConfig, grid: TimeGrid, kind: str = "thin-layer") -> FiniteOperator:
    """The modes of ``kind`` ("thin-layer": no flux at x = 1; "rde": the rotating disc's convective
    operator, bulk at ``XI_MAX``, whose last node is then not an unknown) and the time grid's step kinds."""
    x = _nodes(config.growth, 1.0 if kind == "thin-layer" else XI_MAX)
    h = np.diff(x)
    mid = 0.5 * (x[:-1] + x[1:])
    # the weight exp(xi^3/3) of the convective operator, relative to its value at each half point
    rho_mid, rho = (np.ones_like(mid), np.ones_like(x)) if kind == "thin-layer" else \
        (np.exp(mid**3 / 3.0), np.exp(x**3 / 3.0))
    w = np.empty(x.size)
    w[0], w[-1] = 0.5 * h[0], 0.5 * h[-1]
    w[1:-1] = 0.5 * (h[:-1] + h[1:])
    w = w * rho
    main = np.zeros(x.size)
    main[:-1] -= rho_mid / h
    main[1:] -= rho_mid / h
    off = rho_mid / h / np.sqrt(w[:-1] * w[1:])
    sym = np.diag(main / w) + np.diag(off, 1) + np.diag(off, -1)
    if kind != "thin-layer":  # the bulk node is not an unknown
        sym, w = sym[:-1, :-1], w[:-1]
    mu, q = np.linalg.eigh(sym)
    mu = np.minimum(mu, 0.0)
    if kind == "thin-layer":
        mu[np.argmax(mu)] = 0.0  # the conserved mode (round-off puts it at +-1e-12)
    to_nodes = q / np.sqrt(w)[:, None]
    if kind != "thin-layer":
        to_nodes = np.vstack([to_nodes, np.zeros((1, to_nodes.shape[1]))])  # the bulk node: no deviation
    rounded = np.asarray([float(f"{s:.12g}") for s in grid.steps])
    keys = np.stack([rounded, np.asarray([float(f"{s:.12g}") for s in since_jump(grid)])], axis=1)
    uniq, index = np.unique(keys, axis=0, return_inverse=True)
    return FiniteOperator(x=x, mu=mu, v=q[0, :] / np.sqrt(w[0]), to_nodes=to_nodes,
                          steps=uniq[:, 0], since=uniq[:, 1], step_index=index.reshape(-1).astype(np.int32))


def dawson(x):
    """Dawson's integral ``F(x) = exp(-x^2) int_0^x exp(t^2) dt`` for x >= 0, in JAX (relative error
    < 5e-7 against ``scipy.special.dawsn`` on 1e-6..1e5; JAX has no Dawson function).

    Rybicki's sum ``F(x) ~ pi^-1/2 sum_{n odd} exp(-(x - n h)^2) / n`` with ``h = 0.4`` (error
    ~exp(-(pi / 2h)^2) ~ 2e-7), centred on the even ``n0`` nearest ``x / h`` and kept to the 16
    odd terms within 6 of it; below 0.2 its Taylor series."""
    h = 0.4
    n0 = 2.0 * jnp.round(x / (2.0 * h))
    xi = x - n0 * h
    m = jnp.arange(-15, 16, 2, dtype=x.dtype)
    rybicki = jnp.sum(jnp.exp(-((xi[..., None] - m * h) ** 2)) / (n0[..., None] + m), axis=-1) / jnp.sqrt(jnp.pi)
    x2 = x * x
    series = x * (1.0 - 2.0 * x2 / 3.0 * (1.0 - 2.0 * x2 / 5.0 * (1.0 - 2.0 * x2 / 7.0)))
    return jnp.where(x < 0.2, series, rybicki)


def finite_tables(op: FiniteOperator, s, dtype) -> dict:
    """The step tables for layer time scales ``s = D T / L^2`` (2S, *tail) per species and member:
    ``decay`` (U, 2S, m, *tail), ``phi0_v`` and ``phi1_v`` (the flux weights times the surface
    weights, per unit of the solver's flux), ``w_next`` (``decay * v``), ``beta0`` and ``beta1``
    (U, 2S, *tail): the surface's response to the old and the new flux."""
    s = jnp.asarray(s, dtype)
    tail = (None,) * (s.ndim - 1)
    mu = jnp.asarray(op.mu, dtype)[(None, None, slice(None)) + tail]  # (1, 1, m, *1)
    h = jnp.asarray(op.steps, dtype)[(slice(None), None, None) + tail]  # (U, 1, 1, *1)
    tau = h * s[:, None][None]  # (U, 2S, 1, *tail): each step in the layer's diffusion time
    z = mu * tau
    small = jnp.abs(z) < 1e-3
    zs = jnp.where(small, -1.0, z)
    decay = jnp.exp(z)
    phi = tau * jnp.where(small, 1.0 + z / 2.0 + z**2 / 6.0, jnp.expm1(zs) / zs)
    phi1 = tau * jnp.where(small, 0.5 + z / 6.0 + z**2 / 24.0, (jnp.expm1(zs) - zs) / zs**2)
    shaped = op.since >= 0
    if np.any(shaped):  # after a jump: the flux's 1/sqrt(time) shape (``_grid.jump_weights``)
        since = jnp.asarray(np.where(shaped, op.since, 1.0), dtype)[(slice(None), None, None) + tail]
        p0, p1 = jump_weights(since * s[:, None][None], tau, -mu, phi, xp=jnp, dawsn=dawson)
        mask = jnp.asarray(shaped)[(slice(None), None, None) + tail]
        phi1 = jnp.where(mask, p1, phi1)
        phi = jnp.where(mask, p0 + p1, phi)
    phi0 = phi - phi1
    v = jnp.asarray(op.v, dtype)[(None, None, slice(None)) + tail]
    scale = 1.0 / jnp.sqrt(s)[:, None][None]  # the solver's flux in layer units
    return dict(decay=decay, phi0_v=phi0 * v * scale, phi1_v=phi1 * v * scale, w_next=decay * v,
                beta0=jnp.sum(phi0 * v**2, axis=2) * scale[:, :, 0], beta1=jnp.sum(phi1 * v**2, axis=2) * scale[:, :, 0])
