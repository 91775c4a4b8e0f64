"""The parameter layout: the one place that knows which slot of ``p`` holds what.

Base vector ``p`` (DESIGN.md): one block of ``max_species`` slots per per-couple quantity,

    [ln D_ox | ln D_red | C_ox | C_red | E0 | ln k0 | alpha]   (each S slots)

then the global slots

    [ln time_scale | ln Ru | ln Cdl]

so ``p[4*S + k]`` is E0 of couple k and ``p[5*S + k]`` is ln k0. Every slot has a name, a unit and
a role: ``unknown`` (what inference is for), ``nuisance`` (cell properties inference must
marginalise) or ``protocol`` (set by the experiment, known). Nothing else in ecsfm does index
arithmetic on ``p``: it asks this object.

Inactive couples (slots beyond a sample's active count) hold zero concentration and the fixed
filler ``INACTIVE_FILLER`` in their other slots, so that the vector is a deterministic function of
the physics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParamSpace", "SPECIES_QUANTITIES", "GLOBAL_QUANTITIES", "INACTIVE_FILLER", "ROLES"]

#: Per-couple quantities in block order: (name, unit, role).
SPECIES_QUANTITIES = (
    ("ln_d_ox", "ln(cm^2/s)", "unknown"),
    ("ln_d_red", "ln(cm^2/s)", "unknown"),
    ("c_ox", "mM", "unknown"),
    ("c_red", "mM", "unknown"),
    ("e0", "V", "unknown"),
    ("ln_k0", "ln(cm/s)", "unknown"),
    ("alpha", "1", "unknown"),
)
#: Global quantities in slot order: (name, unit, role).
GLOBAL_QUANTITIES = (
    ("ln_time_scale", "ln(s)", "protocol"),
    ("ln_ru", "ln(ohm)", "nuisance"),
    ("ln_cdl", "ln(F/cm^2)", "nuisance"),
)
ROLES = ("unknown", "nuisance", "protocol")
#: Values of an inactive couple's slots (concentrations are 0): D = 1e-5 cm^2/s, E0 = 0 V,
#: k0 = 1e-2 cm/s, alpha = 0.5 -- mid-prior values, so normalisation statistics stay sane.
INACTIVE_FILLER = {
    "ln_d_ox": float(np.log(1e-5)),
    "ln_d_red": float(np.log(1e-5)),
    "c_ox": 0.0,
    "c_red": 0.0,
    "e0": 0.0,
    "ln_k0": float(np.log(1e-2)),
    "alpha": 0.5,
}


@dataclass(frozen=True)
class ParamSpace:
    """Layout of the base parameter vector for ``max_species`` couple slots."""

    max_species: int

    def __post_init__(self):
        if not (isinstance(self.max_species, int) and 1 <= self.max_species <= 16):
            raise ValueError(f"max_species: must be an integer in [1, 16], got {self.max_species}")

    @property
    def size(self) -> int:
        return len(SPECIES_QUANTITIES) * self.max_species + len(GLOBAL_QUANTITIES)

    def index(self, quantity: str, couple: int | None = None) -> int:
        """Slot of ``quantity`` (of couple ``couple`` for per-couple quantities)."""
        for b, (name, _, _) in enumerate(SPECIES_QUANTITIES):
            if name == quantity:
                if couple is None or not 0 <= couple < self.max_species:
                    raise ValueError(f"couple: must be in [0, {self.max_species}) for {quantity}, got {couple}")
                return b * self.max_species + couple
        for g, (name, _, _) in enumerate(GLOBAL_QUANTITIES):
            if name == quantity:
                if couple is not None:
                    raise ValueError(f"couple: {quantity} is a global slot, got couple={couple}")
                return len(SPECIES_QUANTITIES) * self.max_species + g
        raise ValueError(f"quantity: unknown {quantity!r}")

    def block(self, quantity: str) -> slice:
        """Slice of the S slots of a per-couple quantity."""
        i = self.index(quantity, 0)
        return slice(i, i + self.max_species)

    @property
    def names(self) -> tuple[str, ...]:
        out = [f"{name}[{k}]" for name, _, _ in SPECIES_QUANTITIES for k in range(self.max_species)]
        return tuple(out + [name for name, _, _ in GLOBAL_QUANTITIES])

    @property
    def units(self) -> tuple[str, ...]:
        out = [unit for _, unit, _ in SPECIES_QUANTITIES for _ in range(self.max_species)]
        return tuple(out + [unit for _, unit, _ in GLOBAL_QUANTITIES])

    @property
    def roles(self) -> tuple[str, ...]:
        out = [role for _, _, role in SPECIES_QUANTITIES for _ in range(self.max_species)]
        return tuple(out + [role for _, _, role in GLOBAL_QUANTITIES])

    def describe(self) -> list[dict]:
        """Names, units and roles of every slot, for manifests and model metadata."""
        return [dict(index=i, name=n, unit=u, role=r) for i, (n, u, r) in enumerate(zip(self.names, self.units, self.roles))]

    def filler(self) -> np.ndarray:
        """A vector with every couple inactive and zero globals (P,)."""
        p = np.zeros(self.size)
        for name, value in INACTIVE_FILLER.items():
            p[self.block(name)] = value
        return p

    def to_physical(self, p: np.ndarray) -> dict:
        """Physical values (arrays over leading dims): per-couple (..., S), globals (...)."""
        p = np.asarray(p)
        out = {}
        for name, _, _ in SPECIES_QUANTITIES:
            v = p[..., self.block(name)]
            out[name[3:] if name.startswith("ln_") else name] = np.exp(v) if name.startswith("ln_") else v
        for name, _, _ in GLOBAL_QUANTITIES:
            out[name[3:]] = np.exp(p[..., self.index(name)])
        return out

    def active_couples(self, p: np.ndarray) -> np.ndarray:
        """Boolean (..., S): couples with any bulk concentration."""
        p = np.asarray(p)
        return (p[..., self.block("c_ox")] + p[..., self.block("c_red")]) > 0
