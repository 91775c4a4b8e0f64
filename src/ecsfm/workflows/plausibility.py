"""Is a measured current possible for the stated cell? A guard against unit mistakes.

A diffusion-controlled voltammogram's peak current is fixed within narrow limits by the area,
the concentration and the scan rate (Randles-Sevcik, ``0.4463 n F A C sqrt(n F v D / RT)``):
over every diffusion coefficient a dissolved species can have in a liquid, 1e-7 to 1e-4 cm^2/s,
it spans a factor of 32. A current off by 10^3 or 10^6 (mA or uA read as A), a concentration off
by 10^3 (M or uM given as mM) or an area off by 10^2 (mm^2 given as cm^2) falls far outside, and
a fit would return confident nonsense. ``check_current`` stops such an input before the fit and
names the likely mistake with the flag that fixes it.

The accepted range is wide on purpose: the trace's current range (max - min) must lie within
``[0.3 i_p(D=1e-7) / 3, 3 x 2.5 i_p(D=1e-4) + 2 Cdl_max A v]``: an irreversible wave at alpha
0.3 is 0.6 of a reversible one; a CV's anodic and cathodic peaks together span up to ~2 i_p;
the factor 3 is a margin; double-layer charging adds ``Cdl A v`` on each sweep, with
``Cdl_max`` = 1e-4 F/cm^2, the top of smooth electrodes (a porous electrode charges more: fit it
with ``--force``). Where charging dominates (sub-uM concentrations) the check cannot tell a
concentration mistake from charging and lets the trace through. A factor of 10^3 is always
caught; an area off by 10^2 (mm^2 for cm^2) only when the species diffuses fast enough that the
slow end of the D range does not cover it. On a sphere or hemisphere of radius r0 the radial field
adds up to ``n F A C D / r0`` (the steady state) to the upper end, a rotating disc its Levich
current; a thin layer's exhaustive-electrolysis peak can lie below the floor and lowers it.
"""

from __future__ import annotations

import math

import numpy as np

from ..sim import DEFAULT_TEMPERATURE, FARADAY, GAS_CONSTANT
from ..sim.analytic import randles_sevcik_peak_current

__all__ = ["D_RANGE", "check_current", "expected_range"]

#: diffusion coefficients (cm^2/s) a dissolved species can have
D_RANGE = (1e-7, 1e-4)
_CDL_MAX = 1e-4  # F/cm^2
_MARGIN = 3.0
#: (factor by which the measured current would be too large, the mistake, the fix)
_MISTAKES = (
    (1e3, "the current recorded in mA but read as A", "--current-unit mA"),
    (1e6, "the current recorded in uA but read as A", "--current-unit uA"),
    (1e9, "the current recorded in nA but read as A", "--current-unit nA"),
    (1e3, "c_ox given in M (it is in mM: 1 M = 1000 mM)", "--known c_ox=<mM>"),
    (1e-3, "c_ox given in uM (it is in mM: 1 mM = 1000 uM)", "--known c_ox=<mM>"),
    (1e-3, "the current recorded in A but read as mA (a header unit that is wrong)", "--current-unit A"),
    (1e-2, "the area given in mm^2 (it is in cm^2)", "--area <cm^2>, or --radius with its unit, e.g. 1.5mm"),
    (math.sqrt(1e3), "the scan rate in mV/s read as V/s (or the reverse)", "--scan-rate <V/s>"),
    (1 / math.sqrt(1e3), "the scan rate in V/s where the file meant mV/s", "--scan-rate <V/s>"),
)


def expected_range(*, area: float, c_ox: float, scan_rate: float, temperature: float = DEFAULT_TEMPERATURE,
                   radius: float | None = None, thickness: float | None = None, omega: float | None = None,
                   viscosity: float = 0.00893):
    """(low, high) A: the current range (max - min) a one-electron CV of this cell can have,
    margins included. ``radius`` (cm) of a sphere or hemisphere adds its steady-state current,
    a rotating disc's ``omega`` (rad/s) its Levich current; a thin layer's ``thickness`` (cm)
    lowers the floor to its exhaustive-electrolysis peak ``F^2 v A L C / 4RT``."""
    lo = 0.3 * float(randles_sevcik_peak_current(1, area, c_ox, D_RANGE[0], scan_rate, temperature))
    hi = 2.5 * float(randles_sevcik_peak_current(1, area, c_ox, D_RANGE[1], scan_rate, temperature))
    flux = FARADAY * area * c_ox * 1e-6  # A per (cm/s) of mass-transfer coefficient
    if radius is not None:
        hi += 2.0 * flux * D_RANGE[1] / radius
    if omega is not None:
        hi += 2.0 * flux * 0.62045 * D_RANGE[1] ** (2 / 3) * omega**0.5 * viscosity ** (-1 / 6)
    if thickness is not None:
        lo = min(lo, 0.3 * FARADAY * flux * scan_rate * thickness / (4.0 * GAS_CONSTANT * temperature))
    return lo / _MARGIN, hi * _MARGIN + 2.0 * _CDL_MAX * area * scan_rate


def check_current(traces, *, area: float, c_ox: float, temperature: float = DEFAULT_TEMPERATURE,
                  radius: float | None = None, **electrode) -> None:
    """Raise ValueError when a trace's current range is impossible for the stated ``area``
    (cm^2), ``c_ox`` (mM) and its scan rate: the message gives the measured and possible ranges,
    the likely mistakes and their flags, and ``--force`` to fit anyway. ``traces``:
    ``ecsfm.posterior.Trace`` (current in A, scan rate V/s); ``radius`` (cm) of a sphere or
    hemisphere; ``electrode``: a thin layer's ``thickness`` or a rotating disc's ``omega`` and
    ``viscosity`` (``expected_range``)."""
    for t in traces:
        span = float(np.max(t.current) - np.min(t.current))
        lo, hi = expected_range(area=area, c_ox=c_ox, scan_rate=t.scan_rate, temperature=temperature, radius=radius,
                                **electrode)
        if lo <= span <= hi:
            continue
        ratio = span / math.sqrt(lo * hi)
        likely = [f"{what} ({flag})" for factor, what, flag in _MISTAKES
                  if lo <= span / factor <= hi and (factor > 1) == (ratio > 1)]
        side = "larger" if ratio > 1 else "smaller"
        raise ValueError(
            f"current: {t.label}'s current spans {span:.3g} A, {ratio if ratio > 1 else 1 / ratio:.3g} x {side} than a "
            f"one-electron voltammogram can give for area {area:.4g} cm^2, c_ox {c_ox:.4g} mM at {t.scan_rate:.4g} V/s "
            f"(possible: {lo:.2g} to {hi:.2g} A for D in {D_RANGE[0]:g} to {D_RANGE[1]:g} cm^2/s). Likely: "
            + ("; or ".join(likely) if likely else "a unit of the current, the concentration or the area")
            + ". Fit anyway with --force.")
