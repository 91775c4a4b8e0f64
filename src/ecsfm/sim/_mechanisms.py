"""Mechanisms beyond one electron transfer: coupled first-order chemistry and surface-confined couples.

Each named mechanism is an ``eqx.Module`` whose every number is an array (jit, vmap, grad and
native batching work over the rate constants like over any couple field), checked when built
from concrete numbers. ``sim.simulate`` accepts them wherever it accepts couples, mixed freely.

How they are solved (``_network``). With first-order (or pseudo-first-order) homogeneous
reactions among species of equal diffusion coefficient, ``dc/dt = D d2c/dx2 + K c`` separates
into combinations of the species that each diffuse and decay at one rate (the eigenvectors of
``K``): a *channel*, ``dw/dt = D d2w/dx2 - kappa w``. The planar propagator's modes serve a
channel with ``mu -> mu - kappa T`` (exact in time: ``exp(-kappa t)`` times the diffusion kernel),
so each mechanism is only a list of channels (rate ``kappa``, ``D``), which channels each electron
transfer's flux enters, and how each transfer's oxidised and reduced surface concentrations are
made of channels. Butler-Volmer stays linear in the surface concentrations, so the implicit
kinetic boundary is again a small linear solve per step (1x1 or 2x2). Channels here:

* ``EC`` (R <=> Z, ``k_f``, ``k_b``): ``s = R + Z`` (free) and ``rho = (k_f R - k_b Z) / (k_f + k_b)``
  (decays at ``k_f + k_b``); ``R = rho + theta s``, ``theta = k_b / (k_f + k_b)``.
* ``ECcat`` (R -> O at ``k_cat``; needs ``d_ox == d_red``): ``O + R`` never departs from the bulk,
  so ``O(0) = c_bulk - R(0)`` and R decays at ``k_cat``.
* ``CE`` (Y <=> O, ``k_f``, ``k_b``): as ``EC`` on the oxidised side; ``couple.c_ox`` is the
  *total* Y + O, of which the fraction ``k_f / (k_f + k_b)`` is O at equilibrium.
* ``ECE`` (R1 -> O2 at ``k_f``; needs ``first.d_red == second.d_ox``): R1 decays at ``k_f``;
  ``R1 + O2`` is free.
* ``Convection`` (not chemistry: transport): every species relaxes to its bulk value at
  ``D / delta^2``, a diffusion layer renewed by convection (the Nernst layer's steady flux ``DC/delta``).
* ``Surface``: a couple confined to the electrode (coverage ``gamma``, mol/cm^2, Langmuir: no
  interactions), with Laviron's kinetics ``dG_R/dt = -k_s (exp((1-a) f eta) G_R - exp(-a f eta) G_O)``;
  over a step at one interface potential this relaxes exponentially, solved exactly.

Second-order chemistry (EC2, DISP1) does not separate this way and is not offered.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._physics import Couple, _as_array, _check, _concrete

__all__ = ["EC", "ECcat", "CE", "ECE", "Surface", "Convection", "CHANNEL_MECHANISMS", "Mechanism"]

#: largest homogeneous rate constant accepted, 1/s
MAX_RATE = 1e10


def _rate(name: str, x) -> None:
    _check(name, x, 0.0, MAX_RATE, lo_open=False, hi_open=False)


def _require_couple(owner: str, field: str, c) -> None:
    if not isinstance(c, Couple):
        raise ValueError(f"{owner}: {field} must be a Couple, got {type(c).__name__}")


def _same(owner: str, a_name: str, a, b_name: str, b) -> None:
    """Refuse unequal concrete values (diffusion coefficients a channel needs equal)."""
    va, vb = _concrete(a), _concrete(b)
    if va is not None and vb is not None and np.any(np.abs(va - vb) > 1e-9 * np.maximum(np.abs(va), np.abs(vb))):
        raise ValueError(f"{owner}: {a_name} ({np.ravel(va)[0]:.4g}) must equal {b_name} ({np.ravel(vb)[0]:.4g}): the "
                         "species the chemistry links are solved as one diffusing combination; sim.as_scheme(...) "
                         "solves it with each species' own D")


def _zero(owner: str, name: str, x, why: str) -> None:
    v = _concrete(x)
    if v is not None and np.any(v != 0):
        raise ValueError(f"{owner}: {name} must be 0 ({why}); got {np.ravel(v)[0]:.4g}")


class Mechanism(eqx.Module):
    """Base of the named mechanisms (``sim.EC`` ...)."""


class EC(Mechanism):
    """``O + n e- <=> R``, then ``R <=> Z`` in solution (first order, 1/s): ``k_f`` forward,
    ``k_b`` back. Z diffuses like R (``couple.d_red``) and is not electroactive. With ``k_b = 0``
    the bulk cannot hold R (``couple.c_red`` must be 0); with ``k_b > 0`` the bulk holds Z at
    equilibrium, ``c_Z = (k_f / k_b) c_red``."""

    couple: Couple
    k_f: Float[Array, "..."] = eqx.field(converter=_as_array)
    k_b: Float[Array, "..."] = eqx.field(converter=_as_array, default=0.0)

    def __check_init__(self):
        _require_couple("EC", "couple", self.couple)
        _rate("EC k_f (1/s)", self.k_f)
        _rate("EC k_b (1/s)", self.k_b)
        kb = _concrete(self.k_b)
        if kb is not None and np.all(kb == 0):
            _zero("EC", "couple.c_red", self.couple.c_red, "with k_b = 0, R in the bulk would react away")


class ECcat(Mechanism):
    """Catalysis (EC'): ``O + n e- <=> R``, then ``R + Z -> O`` with Z in excess, pseudo-first order
    ``k_cat`` (1/s). Needs ``couple.d_ox == couple.d_red`` and ``couple.c_red == 0``."""

    couple: Couple
    k_cat: Float[Array, "..."] = eqx.field(converter=_as_array)

    def __check_init__(self):
        _require_couple("ECcat", "couple", self.couple)
        _rate("ECcat k_cat (1/s)", self.k_cat)
        _same("ECcat", "couple.d_ox", self.couple.d_ox, "couple.d_red", self.couple.d_red)
        _zero("ECcat", "couple.c_red", self.couple.c_red, "R in the bulk would be turned back into O")


class CE(Mechanism):
    """A preceding equilibrium ``Y <=> O`` (``k_f``: Y -> O, ``k_b``: O -> Y, 1/s), then
    ``O + n e- <=> R``. Y diffuses like O (``couple.d_ox``). ``couple.c_ox`` is the total Y + O in
    the bulk; O is ``K / (1 + K)`` of it, ``K = k_f / k_b``."""

    couple: Couple
    k_f: Float[Array, "..."] = eqx.field(converter=_as_array)
    k_b: Float[Array, "..."] = eqx.field(converter=_as_array)

    def __check_init__(self):
        _require_couple("CE", "couple", self.couple)
        _check("CE k_f (1/s)", self.k_f, 0.0, MAX_RATE, lo_open=True, hi_open=False)
        _rate("CE k_b (1/s)", self.k_b)


class ECE(Mechanism):
    """Two transfers joined by a follow-up reaction: ``O1 + e- <=> R1``, ``R1 -> O2`` (``k_f``,
    1/s), ``O2 + e- <=> R2``. Needs ``first.d_red == second.d_ox`` and ``first.c_red == 0``. With
    ``second.e0`` above ``first.e0`` O2 is reduced as it forms: the wave tends from one electron
    (``k_f`` slow) to two (fast)."""

    first: Couple
    second: Couple
    k_f: Float[Array, "..."] = eqx.field(converter=_as_array)

    def __check_init__(self):
        _require_couple("ECE", "first", self.first)
        _require_couple("ECE", "second", self.second)
        _rate("ECE k_f (1/s)", self.k_f)
        _same("ECE", "first.d_red", self.first.d_red, "second.d_ox", self.second.d_ox)
        _zero("ECE", "first.c_red", self.first.c_red, "R1 in the bulk would react away")


class Convection(Mechanism):
    """A couple in a cell stirred by (natural) convection: the solution near the electrode is
    renewed from the bulk, modelled as every species relaxing to its bulk concentration at
    ``D / delta^2`` (1/s), ``delta`` the diffusion layer's thickness (cm). Early in a sweep the
    current is planar diffusion's; at long times it levels off at the Nernst layer's ``n F A D C /
    delta`` (the steady flux of ``dc/dt = D d2c/dx2 - (D / delta^2)(c - c_bulk)`` is ``D C / delta``)."""

    couple: Couple
    delta: Float[Array, "..."] = eqx.field(converter=_as_array)

    def __check_init__(self):
        _require_couple("Convection", "couple", self.couple)
        _check("Convection delta (cm)", self.delta, 0.0, 10.0, lo_open=True, hi_open=False)


class Surface(Mechanism):
    """A surface-confined couple ``O(ads) + n e- <=> R(ads)``: a Langmuir isotherm, or Frumkin's
    with ``interaction`` G != 0.

    Attributes:
        e0: formal potential, V.
        k0: Laviron's standard rate constant k_s, 1/s.
        alpha: cathodic transfer coefficient, in (0, 1).
        gamma: total coverage, mol/cm^2 (a monolayer is ~1e-10).
        theta_ox: the fraction of it oxidised at the start, in [0, 1].
        n: electrons transferred.
        interaction: Frumkin's G (dimensionless, < 2): at equilibrium
            ``nf(E - e0) = ln(theta_ox / theta_red) + G (theta_red - theta_ox)``; G > 0 (attraction)
            sharpens the wave, G < 0 (repulsion) broadens it; the reversible peak is
            ``n^2 F^2 v A gamma / (RT (4 - 2G))``. At G >= 2 the isotherm splits into two phases
            (not modelled). 0: Langmuir.
    """

    e0: Float[Array, "..."] = eqx.field(converter=_as_array)
    k0: Float[Array, "..."] = eqx.field(converter=_as_array)
    alpha: Float[Array, "..."] = eqx.field(converter=_as_array)
    gamma: Float[Array, "..."] = eqx.field(converter=_as_array)
    theta_ox: Float[Array, "..."] = eqx.field(converter=_as_array, default=1.0)
    n: Float[Array, "..."] = eqx.field(converter=_as_array, default=1.0)
    interaction: Float[Array, "..."] = eqx.field(converter=_as_array, default=0.0)

    def __check_init__(self):
        _check("Surface interaction (Frumkin G)", self.interaction, -20.0, 2.0, lo_open=False)
        _check("Surface e0", self.e0, -10.0, 10.0, lo_open=False, hi_open=False)
        _check("Surface k0 (1/s)", self.k0, 0.0, 1e12, lo_open=True, hi_open=False)
        _check("Surface alpha", self.alpha, 0.0, 1.0, lo_open=True)
        _check("Surface gamma (mol/cm^2)", self.gamma, 0.0, 1e-6, lo_open=True, hi_open=False)
        _check("Surface theta_ox", self.theta_ox, 0.0, 1.0, lo_open=False, hi_open=False)
        _check("Surface n", self.n, 0.0, 10.0, lo_open=True, hi_open=False)


#: the named mechanisms solved by channels, by the name the CLI uses (``sim.MECHANISMS`` adds the
#: schemes, ``EC2`` and ``DISP1``)
CHANNEL_MECHANISMS = {"E": Couple, "EC": EC, "ECcat": ECcat, "CE": CE, "ECE": ECE, "surface": Surface,
              "convection": Convection}


# -------------------------------------------------------------------------------------------------
# Reduction to channels (used by ``_network``)


def channels(item) -> dict:
    """One diffusing item (a ``Couple`` or a mechanism other than ``Surface``) as channels and
    transfers: lists ``kappa`` (1/s), ``d`` (cm^2/s) per channel; ``couples`` (the transfers'
    couples, for e0, k0, alpha, n); ``flux[c][j]``: what transfer j's net oxidation rate puts into
    channel c; ``red[j][c]``, ``ox[j][c]``: channel c's part of transfer j's reduced and oxidised
    surface concentration; ``red0[j]``, ``ox0[j]``: their bulk values (mM). Coefficients are
    numbers or arrays."""
    if isinstance(item, Couple):
        c = item
        return dict(kappa=[0.0, 0.0], d=[c.d_ox, c.d_red], couples=[c], flux=[[1.0], [-1.0]],
                    red=[[0.0, 1.0]], ox=[[1.0, 0.0]], red0=[c.c_red], ox0=[c.c_ox])
    if isinstance(item, EC):
        c, total = item.couple, item.k_f + item.k_b
        kb = _concrete(item.k_b)
        if kb is not None and np.all(kb == 0):  # irreversible: R alone decays at k_f (Z never returns)
            return dict(kappa=[0.0, item.k_f], d=[c.d_ox, c.d_red], couples=[c], flux=[[1.0], [-1.0]],
                        red=[[0.0, 1.0]], ox=[[1.0, 0.0]], red0=[c.c_red], ox0=[c.c_ox])
        theta = jnp.where(total > 0, item.k_b / jnp.where(total > 0, total, 1.0), 0.0)
        # channels: O, s = R + Z, rho = R - theta s
        return dict(kappa=[0.0, 0.0, total], d=[c.d_ox, c.d_red, c.d_red], couples=[c],
                    flux=[[1.0], [-1.0], [-(1.0 - theta)]], red=[[0.0, theta, 1.0]], ox=[[1.0, 0.0, 0.0]],
                    red0=[c.c_red], ox0=[c.c_ox])
    if isinstance(item, ECcat):
        c = item.couple
        return dict(kappa=[item.k_cat], d=[c.d_red], couples=[c], flux=[[-1.0]], red=[[1.0]], ox=[[-1.0]],
                    red0=[c.c_red], ox0=[c.c_ox])
    if isinstance(item, CE):
        c, total = item.couple, item.k_f + item.k_b
        theta = item.k_f / total  # the equilibrium fraction of O (k_f > 0)
        # channels: s = O + Y, rho = O - theta s, R
        return dict(kappa=[0.0, total, 0.0], d=[c.d_ox, c.d_ox, c.d_red], couples=[c],
                    flux=[[1.0], [1.0 - theta], [-1.0]], red=[[0.0, 0.0, 1.0]], ox=[[theta, 1.0, 0.0]],
                    red0=[c.c_red], ox0=[theta * c.c_ox])
    if isinstance(item, Convection):
        c = item.couple
        return dict(kappa=[c.d_ox / item.delta**2, c.d_red / item.delta**2], d=[c.d_ox, c.d_red], couples=[c],
                    flux=[[1.0], [-1.0]], red=[[0.0, 1.0]], ox=[[1.0, 0.0]], red0=[c.c_red], ox0=[c.c_ox])
    if isinstance(item, ECE):
        a, b = item.first, item.second
        # channels: O1, R1 (decays at k_f), sigma = R1 + O2 (free), R2
        return dict(kappa=[0.0, item.k_f, 0.0, 0.0], d=[a.d_ox, a.d_red, a.d_red, b.d_red], couples=[a, b],
                    flux=[[1.0, 0.0], [-1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]],
                    red=[[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], ox=[[1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 1.0, 0.0]],
                    red0=[a.c_red, b.c_red], ox0=[a.c_ox, b.c_ox])
    raise ValueError(f"couples: expected Couple or a mechanism (sim.EC, ECcat, CE, ECE, Surface), got "
                     f"{type(item).__name__}")
