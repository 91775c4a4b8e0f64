"""Closed-form results of voltammetry theory, for validation and quick estimates.

Units as in ``ecsfm.sim`` (V, s, cm, mM, A). Each function cites its source. Concentrations
in mM are converted to mol/cm^3 (x 1e-6) before use.
"""

from __future__ import annotations

import numpy as np

from ._units import DEFAULT_TEMPERATURE, FARADAY, GAS_CONSTANT, MOL_PER_CM3_PER_MM

__all__ = [
    "randles_sevcik_peak_current",
    "irreversible_peak_current",
    "irreversible_peak_potential",
    "reversible_half_wave_potential",
    "REVERSIBLE_PEAK_OFFSET",
    "cottrell_current",
    "nicholson_psi",
    "nicholson_peak_separation",
    "NICHOLSON_TABLE",
    "faradaic_impedance",
    "nernst_potential",
]

#: (Ep - E1/2) * nF/RT for a reversible reduction peak: -1.109 (Nicholson & Shain,
#: Anal. Chem. 36 (1964) 706; Bard & Faulkner, 2nd ed., eq. 6.2.19). -28.5 mV/n at 25 C.
REVERSIBLE_PEAK_OFFSET = -1.109


def _f(n: float, temperature: float) -> float:
    return n * FARADAY / (GAS_CONSTANT * temperature)


def randles_sevcik_peak_current(
    n, area, conc, d, scan_rate, temperature=DEFAULT_TEMPERATURE
):
    """Reversible linear-sweep peak current, A: ``0.4463 n F A C sqrt(n F v D / RT)``.

    Bard & Faulkner, 2nd ed., eq. 6.2.18 (0.4463 = pi^1/2 chi_max, Nicholson & Shain 1964).
    """
    c = conc * MOL_PER_CM3_PER_MM
    return 0.4463 * n * FARADAY * area * c * np.sqrt(_f(n, temperature) * scan_rate * d)


def irreversible_peak_current(n, alpha, area, conc, d, scan_rate, temperature=DEFAULT_TEMPERATURE):
    """Totally irreversible peak current, A: ``0.4958 n F A C sqrt(alpha n F v D / RT)``.

    Bard & Faulkner, 2nd ed., eq. 6.3.8 (one-step, n_alpha = n).
    """
    c = conc * MOL_PER_CM3_PER_MM
    return 0.4958 * n * FARADAY * area * c * np.sqrt(alpha * _f(n, temperature) * scan_rate * d)


def irreversible_peak_potential(e0, n, alpha, k0, d, scan_rate, temperature=DEFAULT_TEMPERATURE):
    """Totally irreversible reduction peak potential, V.

    ``Ep = E0 - (RT / alpha n F) [0.780 + ln(D^1/2 / k0) + ln((alpha n F v / RT)^1/2)]``
    (Bard & Faulkner, 2nd ed., eq. 6.3.9).
    """
    b = alpha * _f(n, temperature)
    return e0 - (0.780 + np.log(np.sqrt(d) / k0) + 0.5 * np.log(b * scan_rate)) / b


def reversible_half_wave_potential(e0, n, d_ox, d_red, temperature=DEFAULT_TEMPERATURE):
    """``E1/2 = E0 + (RT/nF) ln sqrt(D_R / D_O)``, V (Bard & Faulkner, 2nd ed., eq. 5.4.22)."""
    return e0 + 0.5 * np.log(d_red / d_ox) / _f(n, temperature)


def cottrell_current(t, n, area, conc, d):
    """Diffusion-limited current after a potential step, A: ``n F A C sqrt(D / (pi t))``.

    Positive number; a reduction current is its negative in the IUPAC convention.
    (Bard & Faulkner, 2nd ed., eq. 5.2.11.)
    """
    c = conc * MOL_PER_CM3_PER_MM
    return n * FARADAY * area * c * np.sqrt(d / (np.pi * np.asarray(t)))


def nicholson_psi(k0, n, alpha, d_ox, d_red, scan_rate, temperature=DEFAULT_TEMPERATURE):
    """Nicholson's kinetic parameter ``psi = (D_O/D_R)^(alpha/2) k0 / sqrt(pi D_O f v)``, f = nF/RT.

    R. S. Nicholson, Anal. Chem. 37 (1965) 1351, eq. 8.
    """
    return (d_ox / d_red) ** (alpha / 2) * k0 / np.sqrt(np.pi * d_ox * _f(n, temperature) * scan_rate)


#: Nicholson (1965) Table I: psi -> n * dEp (mV) at 25 C, alpha = 0.5 (switching potential
#: 112.5/n mV past the cathodic peak).
NICHOLSON_TABLE = (
    (20.0, 61.0),
    (7.0, 63.0),
    (6.0, 64.0),
    (5.0, 65.0),
    (4.0, 66.0),
    (3.0, 68.0),
    (2.0, 72.0),
    (1.0, 84.0),
    (0.75, 92.0),
    (0.50, 105.0),
    (0.35, 121.0),
    (0.25, 141.0),
    (0.10, 212.0),
)


def nicholson_peak_separation(psi, n: float = 1.0):
    """Peak separation (V) for kinetic parameter ``psi``, interpolated in log(psi) from Nicholson's table."""
    table = np.asarray(NICHOLSON_TABLE)[::-1]
    psi = np.asarray(psi, dtype=float)
    if np.any((psi < table[0, 0]) | (psi > table[-1, 0])):
        raise ValueError(f"psi: must be in [{table[0, 0]}, {table[-1, 0]}], got {psi}")
    return np.interp(np.log(psi), np.log(table[:, 0]), table[:, 1]) * 1e-3 / n


def faradaic_impedance(omega, e_dc, e0, k0, alpha, d_ox, d_red, c_ox, c_red, n=1.0, area=1.0,
                       temperature=DEFAULT_TEMPERATURE):
    """Small-signal faradaic impedance (ohm, complex) of one couple about a state of uniform
    concentrations (equilibrium at ``e_dc``, or negligible DC current) on a planar electrode.

    Linearising ``r = k_a c_R(0) - k_c c_O(0)`` with semi-infinite diffusion,
    ``dc_O(0) = dr / sqrt(j w D_O)``, ``dc_R(0) = -dr / sqrt(j w D_R)``:

        Z_F = (1 + k_a / sqrt(j w D_R) + k_c / sqrt(j w D_O)) / (n F A f [(1-alpha) k_a C_R + alpha k_c C_O])

    i.e. the charge-transfer resistance in series with the Warburg element (Bard & Faulkner,
    2nd ed., section 10.3). ``omega`` in rad/s.
    """
    f = _f(n, temperature)
    w = np.asarray(omega, dtype=complex)
    eta = e_dc - e0
    ka = k0 * np.exp((1 - alpha) * f * eta)
    kc = k0 * np.exp(-alpha * f * eta)
    cr = c_red * MOL_PER_CM3_PER_MM
    co = c_ox * MOL_PER_CM3_PER_MM
    num = 1.0 + ka / np.sqrt(1j * w * d_red) + kc / np.sqrt(1j * w * d_ox)
    den = n * FARADAY * area * f * ((1 - alpha) * ka * cr + alpha * kc * co)
    return num / den


def nernst_potential(e0, n, c_ox, c_red, temperature=DEFAULT_TEMPERATURE):
    """Equilibrium potential ``E0 + (RT/nF) ln(C_O / C_R)``, V (both concentrations > 0)."""
    return e0 + np.log(c_ox / c_red) / _f(n, temperature)
