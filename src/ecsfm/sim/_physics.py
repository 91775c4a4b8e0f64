"""The electrochemical system: redox couples, the electrode's geometry and the cell they sit in.

Both are ``eqx.Module`` s whose every field is an array, so ``jax.vmap`` can batch over any of
them. Values are checked when a module is built from concrete numbers (a clear ``ValueError``
naming the field and its allowed range); traced values (inside ``jit``/``vmap``) are not checked
here, the solver reports non-finite results in its diagnostics instead.

Geometry. A sphere of radius ``r0`` in a semi-infinite solution has radial diffusion
``dc/dt = D (d2c/dr2 + (2/r) dc/dr)``. With ``w = (r / r0) (c - c_bulk)`` this is exactly the planar
equation ``dw/dt = D d2w/dx2`` in ``x = r - r0``, with ``w = c - c_bulk`` on the surface and

    -dw/dx|0 = -dc/dr|r0 - (c(r0) - c_bulk) / r0.

So the planar solver's exact-in-time propagator serves the sphere unchanged: only the boundary
coupling gains the term ``epsilon (c(r0) - c_bulk)``, ``epsilon = sqrt(D T) / r0`` in the solver's
units, per species and batch member (``_solver``). This is exact, not a correction: the steady
state ``4 pi n F D C r0`` and the transient ``n F A C D (1/sqrt(pi D t) + 1/r0)`` follow
(``tests/sim/test_geometry.py``). A hemisphere on an insulating plane has the same field and
half the area.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._units import DEFAULT_TEMPERATURE

__all__ = ["Couple", "Cell", "Geometry", "Planar", "Disc", "Sphere", "Hemisphere", "ThinLayer", "RotatingDisc", "GEOMETRIES",
           "stack_couples"]

#: largest electrode radius accepted, cm (a 1 m electrode)
MAX_RADIUS_CM = 100.0


def _as_array(x) -> Array | np.ndarray:
    """Python and numpy numbers stay numpy (concrete even inside ``jit``, so the solver can
    see that e.g. ``ru == 0`` before tracing); JAX arrays and tracers become float arrays."""
    if isinstance(x, (int, float, np.number, np.ndarray, list, tuple)):
        return np.asarray(x, dtype=np.float64)
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _concrete(x) -> np.ndarray | None:
    """``x`` as a numpy array if it is a concrete value, ``None`` if it is traced."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, jax.errors.TracerArrayConversionError):
        return None


def _check(name: str, x, lo: float, hi: float, *, lo_open: bool, hi_open: bool = True) -> None:
    v = _concrete(x)
    if v is None:
        return
    lo_s = ("(" if lo_open else "[") + f"{lo:g}"
    hi_s = f"{hi:g}" + (")" if hi_open else "]")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: must be finite, in {lo_s}, {hi_s}; got {v}")
    bad_lo = v <= lo if lo_open else v < lo
    bad_hi = v >= hi if hi_open else v > hi
    if np.any(bad_lo | bad_hi):
        raise ValueError(f"{name}: must be in {lo_s}, {hi_s}; got {v}")


class Couple(eqx.Module):
    """One redox couple ``O + n e- <=> R`` with Butler-Volmer kinetics.

    Attributes:
        e0: formal potential, V.
        k0: standard heterogeneous rate constant, cm/s.
        alpha: cathodic transfer coefficient, in (0, 1).
        d_ox, d_red: diffusion coefficients of O and R, cm^2/s.
        c_ox, c_red: bulk concentrations of O and R, mM (0 is allowed: an inactive couple).
        n: number of electrons transferred.
        reorganization: Marcus reorganisation energy lambda, eV; ``inf`` (the default) is
            Butler-Volmer. A finite value gives Marcus-Hush-Chidsey kinetics (Zeng, Smith, Bai and
            Bazant's closed form, J. Electroanal. Chem. 2014): with ``L = lambda F / RT`` and
            ``eta = f (E - e0)``, ``k_ox/red = k0 erfc(x(eta)) / erfc(x(0)) * 2 / (1 + exp(-/+eta))``,
            ``x(eta) = (L - sqrt(1 + sqrt(L) + eta^2)) / (2 sqrt(L))``; alpha is then not used.
            Such couples are solved by the mechanisms' solver (planar diffusion).

    Net oxidation rate (IUPAC sign, mol cm^-2 s^-1 per mM):
    ``r = k0 [exp((1-alpha) f (E-e0)) c_R(0) - exp(-alpha f (E-e0)) c_O(0)]``, ``f = nF/RT``.
    """

    e0: Float[Array, "..."] = eqx.field(converter=_as_array)
    k0: Float[Array, "..."] = eqx.field(converter=_as_array)
    alpha: Float[Array, "..."] = eqx.field(converter=_as_array)
    d_ox: Float[Array, "..."] = eqx.field(converter=_as_array)
    d_red: Float[Array, "..."] = eqx.field(converter=_as_array)
    c_ox: Float[Array, "..."] = eqx.field(converter=_as_array)
    c_red: Float[Array, "..."] = eqx.field(converter=_as_array, default=0.0)
    n: Float[Array, "..."] = eqx.field(converter=_as_array, default=1.0)
    reorganization: Float[Array, "..."] = eqx.field(converter=_as_array, default=np.inf)

    def __check_init__(self):
        lam = _concrete(self.reorganization)
        if lam is not None and (np.any(np.isnan(lam)) or np.any(lam <= 0.0)):
            raise ValueError(f"reorganization (eV): must be > 0 (inf: Butler-Volmer); got {lam}")
        _check("e0", self.e0, -10.0, 10.0, lo_open=False, hi_open=False)
        _check("k0", self.k0, 0.0, 1e6, lo_open=True, hi_open=False)
        _check("alpha", self.alpha, 0.0, 1.0, lo_open=True)
        _check("d_ox", self.d_ox, 0.0, 1.0, lo_open=True)
        _check("d_red", self.d_red, 0.0, 1.0, lo_open=True)
        _check("c_ox", self.c_ox, 0.0, 1e5, lo_open=False, hi_open=False)
        _check("c_red", self.c_red, 0.0, 1e5, lo_open=False, hi_open=False)
        _check("n", self.n, 0.0, 10.0, lo_open=True, hi_open=False)


class Geometry(eqx.Module):
    """An electrode's shape. ``area()``: the area it implies, cm^2, or None (planar: any area);
    ``curvature()``: 1/r0, 1/cm (0 for planar); ``solver``: how the solver treats it (None: planar
    diffusion; "sphere", "disc", "thin-layer", "rde")."""

    solver: ClassVar[str | None] = None

    def area(self):
        return None

    def curvature(self):
        return 0.0


class Planar(Geometry):
    """Planar semi-infinite diffusion (the default): an electrode much larger than its diffusion
    layer. The area is the cell's (1 cm^2 unless given)."""


class Sphere(Geometry):
    """A sphere of ``radius`` cm in a semi-infinite solution: exact 1-D radial diffusion; area
    ``4 pi r^2``."""

    solver: ClassVar[str | None] = "sphere"
    radius: Float[Array, "..."] = eqx.field(converter=_as_array)

    def __check_init__(self):
        _check("radius (cm)", self.radius, 0.0, MAX_RADIUS_CM, lo_open=True, hi_open=False)

    def area(self):
        return 4.0 * np.pi * self.radius**2

    def curvature(self):
        return 1.0 / self.radius


class Hemisphere(Sphere):
    """A hemisphere of ``radius`` cm on an insulating plane (a mercury drop, a deposited
    particle): the sphere's radial field, area ``2 pi r^2``."""

    def area(self):
        return 2.0 * np.pi * self.radius**2


class Disc(Geometry):
    """A disc of ``radius`` cm in an insulating plane, edge diffusion included: planar diffusion
    at short times (a macrodisc at fast scans), Saito's steady state ``4 n F D C r`` at long ones
    (a microdisc), and the whole range between, from the disc's exact admittance (``_disc``).
    The surface value is uniform over the disc (exact for reversible couples and at the diffusion
    limit; the uniformly accessible approximation for slow kinetics). Area ``pi r^2``."""

    solver: ClassVar[str | None] = "disc"
    radius: Float[Array, "..."] = eqx.field(converter=_as_array)

    def __check_init__(self):
        _check("radius (cm)", self.radius, 0.0, MAX_RADIUS_CM, lo_open=True, hi_open=False)

    def area(self):
        return np.pi * self.radius**2

    def curvature(self):
        return 1.0 / self.radius


class ThinLayer(Geometry):
    """A thin-layer cell: the solution between the electrode and an inert wall ``thickness`` cm
    away (finite diffusion, no flux through the wall; ``_finite``). The area is the cell's."""

    solver: ClassVar[str | None] = "thin-layer"
    thickness: Float[Array, "..."] = eqx.field(converter=_as_array)

    def __check_init__(self):
        _check("thickness (cm)", self.thickness, 0.0, MAX_RADIUS_CM, lo_open=True, hi_open=False)


class RotatingDisc(Geometry):
    """A rotating disc electrode: convective diffusion to a disc of ``radius`` cm spinning at
    ``omega`` rad/s (rpm x 2 pi / 60) in a solution of kinematic ``viscosity`` cm^2/s (water at
    25 C: 0.00893). Levich's uniformly accessible disc (``_finite``); area ``pi r^2``."""

    solver: ClassVar[str | None] = "rde"
    radius: Float[Array, "..."] = eqx.field(converter=_as_array)
    omega: Float[Array, "..."] = eqx.field(converter=_as_array)
    viscosity: Float[Array, "..."] = eqx.field(converter=_as_array, default=0.00893)

    def __check_init__(self):
        _check("radius (cm)", self.radius, 0.0, MAX_RADIUS_CM, lo_open=True, hi_open=False)
        _check("omega (rad/s)", self.omega, 0.0, 1e5, lo_open=True, hi_open=False)
        _check("viscosity (cm^2/s)", self.viscosity, 0.0, 10.0, lo_open=True, hi_open=False)

    def area(self):
        return np.pi * self.radius**2


#: geometry names (the CLI's, the recipes') -> constructor
GEOMETRIES = {"planar": Planar, "disc": Disc, "microdisc": Disc, "sphere": Sphere, "hemisphere": Hemisphere,
              "thin-layer": ThinLayer,
              "rotating-disc": RotatingDisc}
#: a stated area may differ from the one a geometry implies by this much (relative) before it is refused
AREA_TOLERANCE = 1e-3


class Cell(eqx.Module):
    """The electrode and cell around the couples.

    Attributes:
        area: electrode area, cm^2. Default: the area ``geometry`` implies (4 pi r^2 for a
            sphere), or 1 cm^2 for a planar electrode.
        temperature: K.
        ru: uncompensated resistance, ohm. The kinetics see ``E_applied - i * ru``.
        cdl: double-layer capacitance, F/cm^2; charging current ``cdl * area * dE_interface/dt``.
        geometry: ``Planar()`` (default), ``Disc(radius=)``, ``Sphere(radius=)``, ``Hemisphere(radius=)``,
            ``ThinLayer(thickness=)`` or ``RotatingDisc(radius=, omega=, viscosity=)``.

    Raises ValueError on a value out of range, a geometry that is not a ``Geometry``, or an area
    that contradicts the geometry's (by more than 0.1 %).
    """

    area: Float[Array, "..."]
    temperature: Float[Array, "..."]
    ru: Float[Array, "..."]
    cdl: Float[Array, "..."]
    geometry: Geometry

    def __init__(self, area=None, temperature=DEFAULT_TEMPERATURE, ru=0.0, cdl=0.0, geometry=None):
        geometry = Planar() if geometry is None else geometry
        if not isinstance(geometry, Geometry):
            raise ValueError("geometry: expected Planar(), Disc(radius=), Sphere(radius=), Hemisphere(radius=), ThinLayer(thickness=) or "
                             f"RotatingDisc(radius=, omega=), got "
                             f"{type(geometry).__name__}")
        implied = geometry.area()
        if area is None:
            area = 1.0 if implied is None else implied
        elif implied is not None:
            a, b = _concrete(area), _concrete(implied)
            if a is not None and b is not None and np.any(np.abs(a / b - 1.0) > AREA_TOLERANCE):
                raise ValueError(f"area: {np.ravel(a)[0]:.4g} cm^2 contradicts the {type(geometry).__name__.lower()}'s "
                                 f"{np.ravel(b)[0]:.4g} cm^2 (leave the area out: it follows from the radius)")
        self.area = _as_array(area)
        self.temperature = _as_array(temperature)
        self.ru = _as_array(ru)
        self.cdl = _as_array(cdl)
        self.geometry = geometry

    def __check_init__(self):
        _check("area", self.area, 0.0, 1e6, lo_open=True, hi_open=False)
        _check("temperature", self.temperature, 0.0, 1000.0, lo_open=True, hi_open=False)
        _check("ru", self.ru, 0.0, 1e9, lo_open=False, hi_open=False)
        _check("cdl", self.cdl, 0.0, 1.0, lo_open=False, hi_open=False)


def stack_couples(couples: Couple | Sequence[Couple]) -> Couple:
    """One ``Couple`` whose fields have a trailing species axis (..., S)."""
    if isinstance(couples, Couple):
        couples = [couples]
    couples = list(couples)
    if not couples:
        raise ValueError("couples: need at least one Couple")
    for c in couples:
        if not isinstance(c, Couple):
            raise ValueError(f"couples: expected Couple objects, got {type(c).__name__}")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(jnp.broadcast_arrays(*xs), axis=-1), *couples)
