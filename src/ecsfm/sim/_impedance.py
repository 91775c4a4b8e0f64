"""Small-signal impedance of a cell (EIS) by linearisation.

``Z(w) = Ru + 1 / (j w Cdl A + sum_k 1 / Z_F,k(w))`` with each couple's faradaic impedance
``Z_F`` from ``analytic.faradaic_impedance`` (charge transfer + Warburg diffusion), linearised
about uniform bulk concentrations. On a sphere or hemisphere of radius r0 the diffusion term
``1/sqrt(j w D)`` becomes ``1/(sqrt(j w D) + D/r0)`` (the radial field's extra flux; finite at
w -> 0, the steady state); on a disc of radius r it is ``1/(sqrt(j w D) + (D/r) g(r sqrt(j w / D)))``
with the disc's edge admittance ``g`` (``_disc``; uniform surface value). That state is the true DC state when ``e_dc`` is the couples'
equilibrium potential (or where a couple's DC current is negligible); the time-domain simulator
agrees with it there (see the tests, which lock in on a simulated small sinusoid).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

from ._disc import edge_admittance
from ._physics import Cell, Couple, Disc, stack_couples
from ._units import FARADAY, GAS_CONSTANT, MOL_PER_CM3_PER_MM

__all__ = ["impedance"]


def impedance(
    couples: Couple | Sequence[Couple],
    cell: Cell,
    e_dc: float | Float[Array, ""],
    frequency: Float[Array, " k"],
) -> Complex[Array, " k"]:
    """Impedance (ohm, complex) of ``cell`` with ``couples`` at DC potential ``e_dc`` (V),
    at ``frequency`` (Hz, not rad/s), shape (k,)."""
    cp = stack_couples(couples)
    omega = 2.0 * jnp.pi * jnp.asarray(frequency)[:, None]  # (k, 1)
    f = cp.n * FARADAY / (GAS_CONSTANT * cell.temperature)
    eta = f * (e_dc - cp.e0)
    ka = cp.k0 * jnp.exp((1.0 - cp.alpha) * eta)
    kc = cp.k0 * jnp.exp(-cp.alpha * eta)
    jw = 1j * omega
    kappa = jnp.asarray(cell.geometry.curvature())[..., None]  # 1/r0 (0: planar)

    def diffusion(d):  # the mean flux per unit surface deviation, cm/s (the Warburg term's inverse)
        if isinstance(cell.geometry, Disc):
            return jnp.sqrt(jw * d) + d * kappa * edge_admittance(jnp.sqrt(jw / d) / kappa)
        return jnp.sqrt(jw * d) + d * kappa

    num = 1.0 + ka / diffusion(cp.d_red) + kc / diffusion(cp.d_ox)
    den = cp.n * FARADAY * cell.area * f * MOL_PER_CM3_PER_MM * (
        (1.0 - cp.alpha) * ka * cp.c_red + cp.alpha * kc * cp.c_ox
    )
    admittance = jnp.sum(den / num, axis=-1) + jw[:, 0] * cell.cdl * cell.area
    return cell.ru + 1.0 / admittance
