"""Space discretisation and the exact-in-time diffusion propagator.

Every species diffuses on its *own* dimensionless axis ``x' = x / sqrt(D * T)`` with ``T`` the
duration of the experiment and the time ``t' = t / T``; in these units Fick's law is
``du/dt' = d2u/dx'2`` for every species, whatever its D. One fixed grid and one operator then
serve all species and all batch members; D only scales the boundary flux (see ``_solver``).

The grid is vertex-centred and expands geometrically away from the electrode: node 0 sits on the
electrode (the surface concentration is a grid value, not an extrapolation), spacings grow as
``h0 * growth**j`` and the last node, a Dirichlet node at bulk concentration, lies at
``x' >= x_max``. ``x_max = 6`` puts it at 6 diffusion lengths of the whole experiment, where the
perturbation of a semi-infinite profile is erfc(3) ~ 2e-5 of its surface value.

The finite-volume operator ``L = W^-1 K`` (``W`` the control-volume widths, ``K`` symmetric) is
symmetrisable, ``W^1/2 L W^-1/2 = Q diag(mu) Q^T``, so the semi-discrete system

    d u~/dt' = mu * u~ + v q,      u(0) = v . u~,      v = Q[0, :] / sqrt(w_0)

(``u~ = Q^T W^1/2 u``, ``q`` the dimensionless flux into the solution at the electrode) is
diagonal, and a time step of size ``h`` integrates the diffusion exactly (an exponential
integrator); only the boundary flux ``q(t)`` over the step is approximated. Within a ramp it is
taken linear between its start and end values (second order, trapezoid-like):

    u~_new = exp(mu h) u~ + (phi0 q_old + phi1 q_new) v,
    phi1 = int_0^h exp(mu (h - s)) s / h ds,   phi0 + phi1 = phi = (exp(mu h) - 1) / mu,

After a potential jump the flux is singular, ``q ~ tau^-1/2`` in the time ``tau`` since the jump
(Cottrell), and linear interpolation of it over the geometrically growing steps that follow a jump
(``_waveforms``) rings: +48 %, -22 %, +14 % against Cottrell over the first three output points.
There the flux is instead taken linear in ``tau^-1/2`` between its start and end values (on the
first step, ``q_end sqrt(h / tau)``), which integrates a diffusion-limited transient exactly; the
weights have a closed form in Dawson's integral (``jump_weights``). Once a step starts more than
``JUMP_SHAPE_STEPS`` step sizes after the jump the two shapes differ by < 0.2 % and the linear one
is used. The new flux enters implicitly either way. With ``h0 = 1e-3`` (a first step of
``1e-5`` of the duration is still resolved in space) every output point of a potential step is
within 0.7 % of Cottrell and the transient is monotone (``tests/sim/test_transients_and_cell.py``).

Each step costs a few element-wise operations on the modes, with no tridiagonal solve; the
eigen-decomposition is done once per (grid, time grid) in float64 with numpy. Modes that decay
below ``mode_tolerance`` within the smallest step carry no memory from one step to the next; they
are dropped from the state and kept in the instantaneous surface response ``beta``, exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.special

from ._waveforms import TimeGrid

__all__ = ["SolverConfig", "Propagator", "propagator"]


@dataclass(frozen=True)
class SolverConfig:
    """Discretisation settings (static: a new value compiles a new program).

    Attributes:
        x_max: far boundary in diffusion lengths ``sqrt(D * duration)`` of the whole experiment.
        h0: first grid spacing in the same unit.
        growth: ratio of neighbouring spacings (>= 1).
        newton_iterations: most safeguarded Newton iterations per step for the iR drop (used
            only when ``Cell.ru`` may be non-zero; the loop stops as soon as all converge).
        mode_tolerance: a mode with ``exp(mu h_min)`` below this carries no memory between steps.
        batch_chunk: batch members advanced together in one pass (sized so that the state,
            ``S * 2 * modes * batch_chunk`` numbers, stays in the CPU cache).
    """

    x_max: float = 6.0
    h0: float = 1e-3
    growth: float = 1.25
    newton_iterations: int = 60
    mode_tolerance: float = 1e-7
    batch_chunk: int = 256

    def __post_init__(self):
        if not 2.0 <= self.x_max <= 50.0:
            raise ValueError(f"x_max: must be in [2, 50] diffusion lengths, got {self.x_max}")
        if not 0.0 < self.h0 <= 0.2:
            raise ValueError(f"h0: must be in (0, 0.2], got {self.h0}")
        if not 1.0 <= self.growth <= 2.0:
            raise ValueError(f"growth: must be in [1, 2], got {self.growth}")
        if not (isinstance(self.newton_iterations, int) and 1 <= self.newton_iterations <= 100):
            raise ValueError(f"newton_iterations: must be an integer in [1, 100], got {self.newton_iterations}")
        if not (isinstance(self.batch_chunk, int) and self.batch_chunk >= 1):
            raise ValueError(f"batch_chunk: must be an integer >= 1, got {self.batch_chunk}")
        if not 0.0 < self.mode_tolerance < 1e-3:
            raise ValueError(f"mode_tolerance: must be in (0, 1e-3), got {self.mode_tolerance}")

    def nodes(self) -> np.ndarray:
        """Dimensionless node positions (M+1,), node 0 on the electrode, node M the Dirichlet node."""
        x = [0.0]
        h = self.h0
        while x[-1] < self.x_max:
            x.append(x[-1] + h)
            h *= self.growth
        return np.asarray(x)


@dataclass(frozen=True, eq=False)
class Propagator:
    """Precomputed step tables for one (config, time grid), float64 numpy.

    Attributes:
        x: node positions (M+1,), dimensionless.
        step_index: for each time step n, the row of the tables below, (N,) int.
        decay: ``exp(mu h)`` of the kept modes, (U, m).
        phi0_v, phi1_v: ``phi0 * v`` and ``phi1 * v`` of the kept modes, (U, m).
        beta0: surface response to the old flux ``sum_i v_i^2 phi0_i`` over all modes, (U,).
        beta1: instantaneous surface response ``sum_i v_i^2 phi1_i`` over all modes, (U,).
        v: surface weights of the kept modes, (m,).
        to_nodes: kept modes -> node values, (M, m).
        fast_to_nodes: ``(phi0 q_old + phi1 q_new) v`` of the dropped modes mapped to nodes for
            the last step, as two columns (M, 2) (so the final profile includes them).
    """

    x: np.ndarray
    step_index: np.ndarray
    decay: np.ndarray
    phi0_v: np.ndarray
    phi1_v: np.ndarray
    beta0: np.ndarray
    beta1: np.ndarray
    v: np.ndarray
    to_nodes: np.ndarray
    fast_to_nodes: np.ndarray


def _operator(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetrised FV Laplacian on nodes 0..M-1 (Dirichlet at node M): (mu, Q) and widths w."""
    h = np.diff(x)  # (M,)
    m = h.size
    w = np.empty(m)
    w[0] = 0.5 * h[0]
    w[1:] = 0.5 * (h[:-1] + h[1:])
    main = -1.0 / h.copy()
    main[1:] -= 1.0 / h[:-1]
    off = 1.0 / h[:-1]
    s_main = main / w
    s_off = off / np.sqrt(w[:-1] * w[1:])
    sym = np.diag(s_main) + np.diag(s_off, 1) + np.diag(s_off, -1)
    mu, q = np.linalg.eigh(sym)
    return mu, q, w


#: after a jump, the flux is interpolated in 1/sqrt(time since the jump) until the step start lies
#: this many step sizes after it (then the shape is nearly linear over a step, and linear is used)
JUMP_SHAPE_STEPS = 30.0


def since_jump(grid: TimeGrid) -> np.ndarray:
    """(N,) time from the last potential jump to the start of each step (relative units), or -1
    where no jump came before or the jump lies more than ``JUMP_SHAPE_STEPS`` steps back."""
    out = np.full(grid.steps.size, -1.0)
    t_jump = None
    for n, (t0, h) in enumerate(zip(grid.tau[:-1], grid.steps)):
        if grid.jump[n]:
            t_jump = t0
        if t_jump is not None and t0 - t_jump <= JUMP_SHAPE_STEPS * h:
            out[n] = t0 - t_jump
    return out


def jump_weights(tau_a, h, lam, phi, xp=np, dawsn=scipy.special.dawsn):
    """(phi0, phi1) of steps after a jump, (K, M): the flux over the step taken linear in
    ``1/sqrt(tau)`` (tau the time since the jump, from ``tau_a`` to ``tau_a + h``) through its start
    and end values, so that a diffusion-limited transient, ``q ~ tau^-1/2`` (Cottrell), is
    integrated exactly; on the first step (``tau_a = 0``) the flux is ``q_end sqrt(h / tau)``.

    Uses ``I = int_0^h exp(-lam (h - s)) (tau_a + s)^-1/2 ds
    = 2 [F(sqrt(lam tau_b)) - exp(-lam h) F(sqrt(lam tau_a))] / sqrt(lam)`` with ``F`` Dawson's
    integral, stable for every mode. ``xp``/``dawsn``: numpy and ``scipy.special.dawsn`` here, jax.numpy
    and ``_finite.dawson`` for the thin layer's per-member tables."""
    a, b = xp.sqrt(tau_a), xp.sqrt(tau_a + h)
    root = xp.sqrt(lam)
    tiny = root * b < 1e-6
    rs = xp.where(tiny, 1.0, root)
    integral = xp.where(tiny, 2.0 * (b - a), 2.0 * (dawsn(rs * b) - xp.exp(-lam * h) * dawsn(rs * a)) / rs)
    first = tau_a == 0.0
    ia = xp.where(first, 0.0, 1.0 / xp.where(first, 1.0, a))
    ib = 1.0 / b
    phi1 = xp.where(first, b * integral, (integral - ia * phi) / xp.where(first, 1.0, ib - ia))
    phi0 = xp.where(first, 0.0, phi - phi1)
    return phi0, phi1


@functools.lru_cache(maxsize=64)
def propagator(config: SolverConfig, grid: TimeGrid) -> Propagator:
    x = config.nodes()
    mu, q, w = _operator(x)
    v_all = q[0, :] / np.sqrt(w[0])
    # Distinct step kinds: (step size, time since the last jump where the flux still has the
    # shape of one, else -1). Rounded to 12 significant digits to merge floating-point twins.
    since = since_jump(grid)
    rounded = np.asarray([float(f"{s:.12g}") for s in grid.steps])
    keys = np.stack([rounded, np.asarray([float(f"{s:.12g}") for s in since])], axis=1)
    uniq, index = np.unique(keys, axis=0, return_inverse=True)
    index = index.reshape(-1)
    h = uniq[:, :1]
    mh = h * mu[None, :]  # (U, M), mu < 0 strictly (Dirichlet far end)
    decay_all = np.exp(mh)
    phi = np.expm1(mh) / mu
    # phi1 / h = (exp(z) - 1 - z) / z^2 with z = mu h (series 1/2 + z/6 + z^2/24 near 0, where
    # the closed form cancels catastrophically).
    z = mh
    small = np.abs(z) < 1e-3
    zs = np.where(small, 1.0, z)
    phi1 = h * np.where(small, 0.5 + z / 6.0 + z**2 / 24.0, (np.expm1(zs) - zs) / zs**2)
    shaped = uniq[:, 1] >= 0
    if np.any(shaped):
        p0, p1 = jump_weights(uniq[shaped, 1:], h[shaped], -mu[None, :], phi[shaped])
        phi1[shaped] = p1
        phi[shaped] = p0 + p1
    phi0 = phi - phi1
    keep = decay_all.max(axis=0) > config.mode_tolerance
    to_nodes_all = q / np.sqrt(w)[:, None]
    last = index[-1]
    fast = ~keep
    fast_to_nodes = np.stack(
        [
            to_nodes_all[:, fast] @ (phi0[last, fast] * v_all[fast]),
            to_nodes_all[:, fast] @ (phi1[last, fast] * v_all[fast]),
        ],
        axis=1,
    )
    return Propagator(
        x=x,
        step_index=index.astype(np.int32),
        decay=decay_all[:, keep],
        phi0_v=phi0[:, keep] * v_all[keep],
        phi1_v=phi1[:, keep] * v_all[keep],
        beta0=(phi0 * v_all**2).sum(axis=1),
        beta1=(phi1 * v_all**2).sum(axis=1),
        v=v_all[keep],
        to_nodes=to_nodes_all[:, keep],
        fast_to_nodes=fast_to_nodes,
    )
