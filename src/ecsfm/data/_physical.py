"""The table of physical parameters: each one's name, unit, scale and base-layout slot, and the
default prior box that fits of measured data use. One table for every route that names
parameters physically (the command line's ``--known``, joint fits, summaries)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PhysicalParameter", "PHYSICAL_PARAMETERS", "slot_of"]


@dataclass(frozen=True)
class PhysicalParameter:
    """``unit``: the physical unit; ``log``: a positive scale quantity, sampled and summarised on
    a log scale; ``slot``: its quantity in the base layout (``ParamSpace``; an ``ln_`` slot holds
    its natural log), None for a parameter only fits of measured data have; ``box``: the default
    prior box (physical units) of a fit of measured data, None where the data set it (E0 from the
    potential window, the offset from the current) or a stated value does (area, concentration)."""

    unit: str
    log: bool
    slot: str | None
    box: tuple[float, float] | None

    def box_in_fit_units(self) -> tuple[float, float] | None:
        """The box in the units a fit samples: ln of the physical values for ``log`` parameters."""
        if self.box is None:
            return None
        return (math.log(self.box[0]), math.log(self.box[1])) if self.log else self.box


#: Boxes: k0 1e-5..10 cm/s (irreversible to reversible at a macroelectrode), alpha 0.3..0.7,
#: D 1e-6..5e-5 cm^2/s (aqueous small molecules), Ru 0.1..2000 ohm, Cdl 0.1 uF..1 mF per cm^2
#: (smooth metals to porous carbon), kappa 1e-2..1e4 (smooth model error relative to the noise).
PHYSICAL_PARAMETERS = {
    "e0": PhysicalParameter("V", False, "e0", None),
    "k0": PhysicalParameter("cm/s", True, "ln_k0", (1e-5, 10.0)),
    "alpha": PhysicalParameter("1", False, "alpha", (0.3, 0.7)),
    "d_ox": PhysicalParameter("cm^2/s", True, "ln_d_ox", (1e-6, 5e-5)),
    "d_red": PhysicalParameter("cm^2/s", True, "ln_d_red", (1e-6, 5e-5)),
    "c_ox": PhysicalParameter("mM", True, "c_ox", None),
    "c_red": PhysicalParameter("mM", False, "c_red", None),
    "ru": PhysicalParameter("ohm", True, "ln_ru", (0.1, 2000.0)),
    "cdl": PhysicalParameter("F/cm^2", True, "ln_cdl", (1e-7, 1e-3)),
    "offset": PhysicalParameter("A", False, None, None),
    "kappa": PhysicalParameter("1", True, None, (1e-2, 1e4)),
    "area": PhysicalParameter("cm^2", True, None, None),
}


def slot_of(name: str) -> tuple[str, bool]:
    """(base-layout quantity, whether the slot holds the natural log) of a physical parameter.
    Raises ValueError for a name with no slot."""
    p = PHYSICAL_PARAMETERS.get(name)
    if p is None or p.slot is None:
        allowed = ", ".join(n for n, q in PHYSICAL_PARAMETERS.items() if q.slot is not None)
        raise ValueError(f"parameter: unknown {name!r}; allowed: {allowed}")
    return p.slot, p.slot.startswith("ln_")
