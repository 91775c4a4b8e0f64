"""The iR drop inside a time step: the interface potential that the uncompensated resistance
leaves, ``E = E_app - Ru i(E)``, solved elementwise (``_solver``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["solve_ir"]


def solve_ir(total, e_app, e_guess, ru, max_iterations, tol):
    """Solve ``g(E) = E - e_app + ru * total(E) = 0`` for the interface potential (elementwise).

    ``g`` is strictly increasing (``total`` is non-decreasing in E), so the root lies between
    ``e_app`` and ``e_app - ru * total(e_app)``. Safeguarded Newton ("rtsafe", Press et al.,
    Numerical Recipes, 2nd ed., 9.4): a Newton step that leaves the bracket or fails to halve the
    previous step is replaced by bisection, so the bracket keeps shrinking; the loop runs
    until every member's Newton correction is below ``tol`` V (2-3 iterations on a smooth
    sweep; more on the plateaus of a mass-transport-limited current after a jump, where Newton
    alone overshoots by volts) or ``max_iterations``. Gradients come from the implicit function
    theorem (``lax.custom_root``), not from differentiating the iterations.
    Returns the root and its estimated error ``|g / g'|`` (V).
    """
    # Every operand at the batch's shape: no implicit broadcasting inside custom_root (JAX 0.11
    # lowers a (1,) - (B,) subtraction there without its broadcast and fails to compile).
    shape = jnp.broadcast_shapes(jnp.shape(e_app), jnp.shape(e_guess), jnp.shape(ru))
    e_app, e_guess, ru = (jnp.broadcast_to(v, shape) for v in (e_app, e_guess, ru))

    def g(e):
        return e - e_app + ru * total(e)

    def solve(g, e0):
        g_app = g(e_app)  # = ru * total(e_app)
        lo = jnp.minimum(e_app, e_app - g_app)
        hi = jnp.maximum(e_app, e_app - g_app)

        def cond(state):
            it, _, _, _, _, err = state
            return (it < max_iterations) & jnp.any(err > tol)

        def body(state):
            it, e, lo, hi, dx_old, _ = state
            ge, dg = jax.jvp(g, (e,), (jnp.ones_like(e),))
            lo = jnp.where(ge < 0, e, lo)
            hi = jnp.where(ge > 0, e, hi)
            dx = ge / dg
            newton = e - dx
            # rtsafe: Newton only if finite, inside the bracket and at least halving the step;
            # otherwise bisect. An overflowed derivative or a creeping step cannot stall it.
            # A step below the tolerance is always taken (in float32 the last steps stagnate at
            # round-off and would not halve).
            use = (jnp.isfinite(newton) & jnp.isfinite(dg) & (newton >= lo) & (newton <= hi)
                   & ((jnp.abs(2.0 * dx) <= dx_old) | (jnp.abs(dx) <= tol)))
            e_new = jnp.where(use, newton, 0.5 * (lo + hi))
            step = jnp.abs(e_new - e)
            err = jnp.where(use, step, hi - lo)
            return it + 1, e_new, lo, hi, jnp.maximum(step, 1e-30), err

        start = (0, jnp.clip(e0, lo, hi), lo, hi, 2.0 * (hi - lo) + 1.0, jnp.full_like(e0, jnp.inf))
        return jax.lax.while_loop(cond, body, start)[1]

    def tangent_solve(g_lin, y):  # elementwise: the Jacobian is diagonal
        return y / g_lin(jnp.ones_like(y))

    e = jax.lax.custom_root(g, e_guess, solve, tangent_solve)
    ge, dg = jax.jvp(g, (e,), (jnp.ones_like(e),))
    # The error of E itself: g alone overstates it by g' = 1 + Ru dI/dE, which is
    # ~Ru Cdl A / dt >> 1 right after a potential jump.
    return e, jax.lax.stop_gradient(ge / dg)
