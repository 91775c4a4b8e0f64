"""Priors as data: per-slot distributions that sample, evaluate a log density and serialise.

A prior is declared in physical units (``{"dist": "loguniform", "low": 1e-6, "high": 5e-5}``
for D) and acts on the base vector ``p`` of a :class:`ParamSpace`, where ``ln_`` slots hold
logarithms (a log-uniform D is a uniform ``ln D``). The log density is with respect to
Lebesgue measure on the ``p`` coordinates of the active couples and the global slots; the
slots of inactive couples are fixed (``INACTIVE_FILLER``) and contribute nothing, and the
number of active couples has the uniform prior of its range.

Distributions:

* ``uniform`` on [low, high] and ``loguniform`` on [low, high] (a uniform log value);
* ``fraction``: uniform on [low * x, high * x] with x the value of slot ``of`` of the same couple
  (``C_red = u * C_ox``, so ``C_red <= C_ox`` whenever high <= 1);
* ``fixed``: always ``value`` (a point mass; a degenerate uniform).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ._space import GLOBAL_QUANTITIES, INACTIVE_FILLER, SPECIES_QUANTITIES, ParamSpace

__all__ = ["Dist", "PriorSpec"]

_SPECIES = tuple(q[0] for q in SPECIES_QUANTITIES)
_GLOBALS = tuple(q[0] for q in GLOBAL_QUANTITIES)


def _physical_name(slot: str) -> str:
    return slot[3:] if slot.startswith("ln_") else slot


@dataclass(frozen=True)
class Dist:
    """One slot's distribution, in physical units (see module docstring)."""

    dist: str
    low: float = 0.0
    high: float = 0.0
    of: str | None = None
    value: float | None = None

    def __post_init__(self):
        if self.dist not in ("uniform", "loguniform", "fraction", "fixed"):
            raise ValueError(f"dist: must be uniform, loguniform, fraction or fixed, got {self.dist!r}")
        if self.dist == "fixed":
            if self.value is None or not math.isfinite(self.value):
                raise ValueError("value: a fixed distribution needs a finite value")
            return
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"low, high: need finite low < high, got [{self.low}, {self.high}]")
        if self.dist == "loguniform" and self.low <= 0:
            raise ValueError(f"low: a log-uniform range must be positive, got {self.low}")
        if self.dist == "fraction" and (self.of is None or self.low < 0):
            raise ValueError("fraction: needs 'of' (another slot of the same couple) and low >= 0")

    def bounds_p(self, log: bool) -> tuple[float, float]:
        """Support in ``p`` coordinates (log of the physical value for ``ln_`` slots)."""
        if self.dist == "fixed":
            v = math.log(self.value) if log else self.value
            return v, v
        if log != (self.dist == "loguniform"):
            raise ValueError(f"{self.dist} prior on a {'log' if log else 'linear'} slot: use "
                             f"{'loguniform' if log else 'uniform'}")
        return (math.log(self.low), math.log(self.high)) if log else (self.low, self.high)


@dataclass(frozen=True)
class PriorSpec:
    """A prior over base vectors: one ``Dist`` per per-couple quantity (shared by all active
    couples) and per global quantity, and the range of the number of active couples."""

    species: dict = field(default_factory=dict)
    globals: dict = field(default_factory=dict)
    n_active: tuple[int, int] = (1, 1)

    def __post_init__(self):
        for name in _SPECIES:
            if name not in self.species:
                raise ValueError(f"species: missing a distribution for {name}")
        for name in _GLOBALS:
            if name not in self.globals:
                raise ValueError(f"globals: missing a distribution for {name}")
        lo, hi = self.n_active
        if not 1 <= lo <= hi:
            raise ValueError(f"n_active: need 1 <= low <= high, got {self.n_active}")
        for name in _SPECIES + _GLOBALS:
            d = (self.species | self.globals)[name]
            if d.dist == "fraction":
                if d.of not in _SPECIES or _SPECIES.index(d.of) >= _SPECIES.index(name):
                    raise ValueError(f"{name}: 'of' must name an earlier per-couple slot, got {d.of!r}")
            else:
                d.bounds_p(name.startswith("ln_"))

    def replace(self, **changes) -> PriorSpec:
        """A copy with some distributions replaced (``ln_k0=Dist(...)``, ``n_active=(1, 2)``)."""
        species = dict(self.species)
        globs = dict(self.globals)
        n_active = changes.pop("n_active", self.n_active)
        for k, v in changes.items():
            if k in species:
                species[k] = v
            elif k in globs:
                globs[k] = v
            else:
                raise ValueError(f"{k}: not a slot quantity")
        return PriorSpec(species=species, globals=globs, n_active=tuple(n_active))

    # -- sampling and density ------------------------------------------------------------------

    def sample(self, rng: np.random.Generator, n: int, space: ParamSpace,
               n_active: np.ndarray | None = None) -> np.ndarray:
        """``n`` base vectors (n, P) in float64; active couples occupy the first slots."""
        s = space.max_species
        lo, hi = self.n_active[0], min(self.n_active[1], s)
        if lo > s:
            raise ValueError(f"n_active: this prior needs >= {lo} couples, max_species is {s}")
        if n_active is None:
            n_active = rng.integers(lo, hi + 1, size=n)
        active = np.arange(s)[None, :] < n_active[:, None]  # (n, S)
        p = np.tile(space.filler(), (n, 1))
        values = {}
        for name in _SPECIES:
            d = self.species[name]
            u = rng.random((n, s))
            if d.dist == "fraction":
                x = values[d.of]
                x = np.exp(x) if d.of.startswith("ln_") else x
                v = (d.low + (d.high - d.low) * u) * x
                v = np.log(v) if name.startswith("ln_") else v
            else:
                a, b = d.bounds_p(name.startswith("ln_"))
                v = a + (b - a) * u
            values[name] = v
            p[:, space.block(name)] = np.where(active, v, INACTIVE_FILLER[name])
        for name in _GLOBALS:
            a, b = self.globals[name].bounds_p(name.startswith("ln_"))
            p[:, space.index(name)] = a + (b - a) * rng.random(n)
        return p

    def log_prob(self, p: np.ndarray, space: ParamSpace) -> np.ndarray:
        """Log density of base vectors ``p`` (..., P); ``-inf`` outside the support."""
        p = np.asarray(p, dtype=np.float64)
        active = space.active_couples(p)
        n_act = active.sum(-1)
        lo, hi = self.n_active[0], min(self.n_active[1], space.max_species)
        out = np.where((n_act >= lo) & (n_act <= hi), -np.log(hi - lo + 1.0), -np.inf)
        for name in _SPECIES:
            d = self.species[name]
            v = p[..., space.block(name)]
            if d.dist == "fixed":
                a, b = d.bounds_p(name.startswith("ln_"))
                ok = np.isclose(v, a)
                lp = np.where(ok, 0.0, -np.inf)
            else:
                if d.dist == "fraction":
                    x = p[..., space.block(d.of)]
                    x = np.exp(x) if d.of.startswith("ln_") else x
                    a, b = d.low * x, d.high * x
                else:
                    a, b = d.bounds_p(name.startswith("ln_"))
                width = np.broadcast_to(b - a, v.shape)
                inside = (v >= a) & (v <= b) & (width > 0)
                lp = np.where(inside, -np.log(np.where(width > 0, width, 1.0)), -np.inf)
            out = out + np.sum(np.where(active, lp, 0.0), axis=-1)
        for name in _GLOBALS:
            d = self.globals[name]
            a, b = d.bounds_p(name.startswith("ln_"))
            v = p[..., space.index(name)]
            if d.dist == "fixed":
                out = out + np.where(np.isclose(v, a), 0.0, -np.inf)
            else:
                out = out + np.where((v >= a) & (v <= b), -np.log(b - a), -np.inf)
        return out

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        clean = lambda d: {k: v for k, v in asdict(d).items() if v is not None}  # noqa: E731
        return {
            "species": {k: clean(v) for k, v in self.species.items()},
            "globals": {k: clean(v) for k, v in self.globals.items()},
            "n_active": list(self.n_active),
            "units": {k: _unit(k) for k in _SPECIES + _GLOBALS},
        }

    @classmethod
    def from_dict(cls, d: dict) -> PriorSpec:
        return cls(
            species={k: Dist(**v) for k, v in d["species"].items()},
            globals={k: Dist(**v) for k, v in d["globals"].items()},
            n_active=tuple(d["n_active"]),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)


def _unit(slot: str) -> str:
    """Unit of the physical value a slot's distribution is written in."""
    for name, unit, _ in SPECIES_QUANTITIES + GLOBAL_QUANTITIES:
        if name == slot:
            return unit[3:-1] if unit.startswith("ln(") else unit
    raise ValueError(slot)
