"""Mechanisms as data: species, electron transfers and homogeneous reactions (``sim.Scheme``).

A ``Scheme`` names its species (each with a diffusion coefficient and a bulk concentration), its
electron transfers (``ox + n e- <=> red``, Butler-Volmer) and its homogeneous reactions (mass
action, first or second order in each direction). It is checked when built from concrete numbers:

* every name a transfer or reaction uses is a species of the scheme, and names are unique;
* a reaction's order (the sum of its reactants' stoichiometric coefficients) is 1 or 2, and so is
  its reverse order when it can run backwards (``k_b`` not known to be 0); no species is on both
  sides; rate constants are finite and >= 0 (first order in 1/s, second order in 1/(M s));
* when every species states its charge, transfers (``z_ox - n = z_red``) and reactions conserve it
  (the balance a scheme can check without chemical formulas);
* the bulk is at rest: every reaction's net rate at the bulk concentrations is zero (an
  irreversible reaction needs one of its reactants absent from the bulk; a reversible one its
  equilibrium), else the solution would react before the experiment starts.

Each problem is one line naming it. The named second-order mechanisms (``EC2``, ``DISP1``) are
schemes. A scheme is solved by ``_implicit`` (a general implicit reaction-diffusion solver); the
first-order named mechanisms (``sim.EC`` ...) keep their faster exact channel solver (``_network``),
and the two agree where both apply (``tests/sim/test_scheme.py``).
"""

from __future__ import annotations

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float

from ._mechanisms import CE, EC, ECE, MAX_RATE, ECcat, Mechanism
from ._physics import Couple, _as_array, _check, _concrete

__all__ = ["Species", "Transfer", "Reaction", "Scheme", "EC2", "DISP1", "as_scheme", "order", "mass_action"]

#: the bulk counts as at rest when each reaction's net rate there is below this fraction of its
#: forward rate (or below ``BULK_RATE_FLOOR`` mM/s)
BULK_REST_RTOL = 1e-6
BULK_RATE_FLOOR = 1e-12
#: mM per M: a second-order rate constant in 1/(M s) is ``1e-3`` 1/(mM s)
PER_MM = 1e-3


def _species_list(owner: str, names, known: set) -> None:
    for name in names:
        if name not in known:
            raise ValueError(f"{owner}: unknown species {name!r} (the scheme has {', '.join(sorted(known))})")


class Species(eqx.Module):
    """One dissolved species: ``name``; ``d`` its diffusion coefficient, cm^2/s; ``c`` its bulk
    concentration, mM (default 0); ``charge`` (optional, integer) for the scheme's charge balance."""

    name: str = eqx.field(static=True)
    d: Float[Array, "..."] = eqx.field(converter=_as_array)
    c: Float[Array, "..."] = eqx.field(converter=_as_array, default=0.0)
    charge: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not (isinstance(self.name, str) and self.name):
            raise ValueError(f"Species: name must be a non-empty string, got {self.name!r}")
        _check(f"Species {self.name} d (cm^2/s)", self.d, 0.0, 1.0, lo_open=True)
        _check(f"Species {self.name} c (mM)", self.c, 0.0, 1e5, lo_open=False)


class Transfer(eqx.Module):
    """An electron transfer ``ox + n e- <=> red`` at the electrode: ``e0`` V, ``k0`` cm/s, ``alpha``
    the cathodic transfer coefficient in (0, 1) (Butler-Volmer), ``n`` electrons; or, with a finite
    ``reorganization`` energy lambda (eV), Marcus-Hush-Chidsey kinetics (as ``sim.Couple``'s)."""

    ox: str = eqx.field(static=True)
    red: str = eqx.field(static=True)
    e0: Float[Array, "..."] = eqx.field(converter=_as_array)
    k0: Float[Array, "..."] = eqx.field(converter=_as_array)
    alpha: Float[Array, "..."] = eqx.field(converter=_as_array, default=0.5)
    n: int = eqx.field(static=True, default=1)
    reorganization: Float[Array, "..."] = eqx.field(converter=_as_array, default=float("inf"))

    def __check_init__(self):
        name = f"Transfer {self.ox}/{self.red}"
        if self.ox == self.red:
            raise ValueError(f"{name}: ox and red must be different species")
        if not (isinstance(self.n, int) and 1 <= self.n <= 10):
            raise ValueError(f"{name}: n must be an integer in [1, 10], got {self.n!r}")
        _check(f"{name} e0 (V)", self.e0, -10.0, 10.0, lo_open=False, hi_open=False)
        _check(f"{name} k0 (cm/s)", self.k0, 0.0, 1e6, lo_open=True, hi_open=False)
        _check(f"{name} alpha", self.alpha, 0.0, 1.0, lo_open=True)
        lam = _concrete(self.reorganization)
        if lam is not None and np.any(np.isnan(lam) | (lam <= 0)):
            raise ValueError(f"{name} reorganization (eV): must be > 0 (inf: Butler-Volmer), got {lam}")


def _side(owner: str, side) -> tuple[tuple[str, int], ...]:
    """``{"R": 2}``, ``("R", "I")`` or ``"R"`` as sorted ``((name, coefficient), ...)``."""
    if isinstance(side, str):
        side = (side,)
    if isinstance(side, dict):
        items = list(side.items())
    else:
        items = []
        for name in side:
            items.append((name, 1))
    out: dict[str, int] = {}
    for name, nu in items:
        if not (isinstance(name, str) and isinstance(nu, (int, np.integer)) and nu >= 1):
            raise ValueError(f"{owner}: each species needs a name and a positive integer coefficient, got {name!r}: {nu!r}")
        out[name] = out.get(name, 0) + int(nu)
    return tuple(sorted(out.items()))


class Reaction(eqx.Module):
    """A homogeneous reaction ``reactants <=> products`` by mass action. ``reactants`` and
    ``products``: a name, a sequence of names (repeats count) or ``{name: coefficient}``;
    ``products`` may be empty (what forms is inert and not followed). ``k_f`` forward, ``k_b``
    backward (default 0): 1/s for a first-order direction, 1/(M s) for a second-order one."""

    reactants: tuple = eqx.field(static=True, converter=lambda s: _side("Reaction reactants", s))
    products: tuple = eqx.field(static=True, converter=lambda s: _side("Reaction products", s))
    k_f: Float[Array, "..."] = eqx.field(converter=_as_array)
    k_b: Float[Array, "..."] = eqx.field(converter=_as_array, default=0.0)

    def __check_init__(self):
        text = self.describe()
        if order(self.reactants) not in (1, 2):
            raise ValueError(f"Reaction {text}: forward order must be 1 or 2, got {order(self.reactants)}")
        both = {n for n, _ in self.reactants} & {n for n, _ in self.products}
        if both:
            raise ValueError(f"Reaction {text}: {', '.join(sorted(both))} on both sides")
        _check(f"Reaction {text} k_f", self.k_f, 0.0, MAX_RATE, lo_open=False, hi_open=False)
        _check(f"Reaction {text} k_b", self.k_b, 0.0, MAX_RATE, lo_open=False, hi_open=False)
        kb = _concrete(self.k_b)
        if not (kb is not None and np.all(kb == 0)) and order(self.products) not in (1, 2):
            raise ValueError(f"Reaction {text}: a reverse reaction must be of order 1 or 2, got {order(self.products)}")

    def describe(self) -> str:
        fmt = lambda side: " + ".join((f"{nu} " if nu > 1 else "") + n for n, nu in side) or "(inert)"  # noqa: E731
        return f"{fmt(self.reactants)} -> {fmt(self.products)}"


class Scheme(Mechanism):
    """A mechanism as data: ``species``, electron ``transfers`` and homogeneous ``reactions``
    (sequences of ``Species``, ``Transfer``, ``Reaction``), checked as the module docstring says.
    ``sim.simulate(wf, [scheme], cell)`` solves it (planar diffusion; a scheme is simulated on
    its own, not beside other couples). Its "couples" in the result are its transfers, in order."""

    species: tuple
    transfers: tuple
    reactions: tuple = ()

    def __init__(self, species, transfers, reactions=()):
        self.species, self.transfers, self.reactions = tuple(species), tuple(transfers), tuple(reactions)

    def __check_init__(self):
        for kind, items, cls in (("species", self.species, Species), ("transfers", self.transfers, Transfer),
                                 ("reactions", self.reactions, Reaction)):
            for x in items:
                if not isinstance(x, cls):
                    raise ValueError(f"Scheme: {kind} must be {cls.__name__}s, got {type(x).__name__}")
        names = [s.name for s in self.species]
        if len(set(names)) != len(names):
            raise ValueError(f"Scheme: species names must be unique, got {names}")
        if not self.transfers:
            raise ValueError("Scheme: needs at least one electron transfer")
        known = set(names)
        for t in self.transfers:
            _species_list(f"Transfer {t.ox}/{t.red}", (t.ox, t.red), known)
        for r in self.reactions:
            _species_list(f"Reaction {r.describe()}", [n for n, _ in r.reactants + r.products], known)
        self._check_charge()
        self._check_bulk_at_rest()

    def index(self, name: str) -> int:
        return [s.name for s in self.species].index(name)

    def _check_charge(self) -> None:
        z = {s.name: s.charge for s in self.species}
        if any(v is None for v in z.values()):
            return
        for t in self.transfers:
            if z[t.ox] - t.n != z[t.red]:
                raise ValueError(f"Transfer {t.ox}/{t.red}: charge not balanced ({t.ox} {z[t.ox]:+d} + {t.n} e- "
                                 f"-> {t.red} {z[t.red]:+d})")
        for r in self.reactions:
            left, right = (sum(nu * z[n] for n, nu in side) for side in (r.reactants, r.products))
            if r.products and left != right:
                raise ValueError(f"Reaction {r.describe()}: charge not balanced ({left:+d} -> {right:+d})")

    def _check_bulk_at_rest(self) -> None:
        c = {s.name: _concrete(s.c) for s in self.species}
        for r in self.reactions:
            kf, kb = _concrete(r.k_f), _concrete(r.k_b)
            if kf is None or kb is None or any(c[n] is None for n, _ in r.reactants + r.products):
                continue
            fwd = kf * mass_action(r.reactants, c)
            back = kb * mass_action(r.products, c) if r.products else np.zeros_like(fwd)
            if np.any(np.abs(fwd - back) > BULK_REST_RTOL * np.maximum(fwd, back) + BULK_RATE_FLOOR):
                raise ValueError(f"Reaction {r.describe()}: the bulk is not at rest (net rate "
                                 f"{np.max(np.abs(fwd - back)):.3g} mM/s at the stated bulk concentrations); "
                                 "give the bulk at equilibrium")


def order(side) -> int:
    """A reaction side's order: the sum of its stoichiometric coefficients."""
    return sum(nu for _, nu in side)


def mass_action(side, c: dict):
    """``prod c^nu`` over a side (mM^order) times mM per M to the order - 1: with a rate constant
    in 1/s or 1/(M s) this is a rate in mM/s."""
    out = 1.0
    for name, nu in side:
        out = out * c[name] ** nu
    return out * PER_MM ** (order(side) - 1)


def _couple_species(couple: Couple, ox: str, red: str) -> tuple[Species, Species, Transfer]:
    if not isinstance(couple, Couple):
        raise ValueError(f"couple: must be a Couple, got {type(couple).__name__}")
    n = _concrete(couple.n)
    if n is None or n.size != 1 or float(n) != int(n):
        raise ValueError(f"couple: n must be a concrete integer for a scheme, got {couple.n}")
    return (Species(ox, couple.d_ox, couple.c_ox), Species(red, couple.d_red, couple.c_red),
            Transfer(ox, red, couple.e0, couple.k0, couple.alpha, n=int(n), reorganization=couple.reorganization))


def EC2(couple: Couple, k_dim) -> Scheme:
    """``O + n e- <=> R``, then dimerisation ``2 R -> R2`` (``k_dim``, 1/(M s); the rate of R's
    loss is ``2 k_dim [R]^2``). Needs ``couple.c_red == 0``. In the pure kinetic zone the
    reduction peak moves by ``RT ln(10) / 3F`` (19.7 mV at 25 C) per decade of ``k_dim c``."""
    o, r, t = _couple_species(couple, "O", "R")
    return Scheme([o, r], [t], [Reaction({"R": 2}, (), k_f=k_dim)])


def DISP1(couple: Couple, k_f, k_d) -> Scheme:
    """Disproportionation: ``O + e- <=> R``, ``R -> I`` (``k_f``, 1/s, rate-limiting), then
    ``R + I -> O + P`` (``k_d``, 1/(M s), fast): each O that reacts takes two electrons in the end,
    so the apparent n goes from 1 (``k_f`` slow against the sweep) to 2 (fast). I diffuses like R."""
    o, r, t = _couple_species(couple, "O", "R")
    return Scheme([o, r, Species("I", couple.d_red)], [t],
                  [Reaction("R", "I", k_f=k_f), Reaction(("R", "I"), "O", k_f=k_d)])


def as_scheme(item) -> Scheme:
    """A couple or a named first-order mechanism (``EC``, ``ECcat``, ``CE``, ``ECE``) written as a
    ``Scheme``: the same physics for the general solver, where each species may have its own D (the
    channel solver needs the linked species' D equal). Raises ValueError for anything else."""
    if isinstance(item, Couple):
        o, r, t = _couple_species(item, "O", "R")
        return Scheme([o, r], [t])
    if isinstance(item, EC):
        o, r, t = _couple_species(item.couple, "O", "R")
        kb = _concrete(item.k_b)
        c_z = 0.0 if kb is not None and np.all(kb == 0) else item.k_f / item.k_b * item.couple.c_red
        return Scheme([o, r, Species("Z", item.couple.d_red, c_z)], [t], [Reaction("R", "Z", k_f=item.k_f, k_b=item.k_b)])
    if isinstance(item, ECcat):
        o, r, t = _couple_species(item.couple, "O", "R")
        return Scheme([o, r], [t], [Reaction("R", "O", k_f=item.k_cat)])
    if isinstance(item, CE):
        c = item.couple
        o, r, t = _couple_species(c, "O", "R")
        theta = item.k_f / (item.k_f + item.k_b)  # the equilibrium fraction of O in Y + O
        return Scheme([Species("Y", c.d_ox, (1.0 - theta) * c.c_ox), Species("O", c.d_ox, theta * c.c_ox), r], [t],
                      [Reaction("Y", "O", k_f=item.k_f, k_b=item.k_b)])
    if isinstance(item, ECE):
        o1, r1, t1 = _couple_species(item.first, "O1", "R1")
        o2, r2, t2 = _couple_species(item.second, "O2", "R2")
        return Scheme([o1, r1, o2, r2], [t1, t2], [Reaction("R1", "O2", k_f=item.k_f)])
    raise ValueError(f"as_scheme: expected a Couple, EC, ECcat, CE or ECE, got {type(item).__name__}")
