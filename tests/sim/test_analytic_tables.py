"""``ecsfm.sim.analytic`` against the literature and independent hand computations.

* ``nicholson_peak_separation(psi, n)`` (V): Nicholson's 1965 table of n dEp vs psi (25 C,
  alpha = 0.5), typed here from the paper, not read from the package; between the tabulated
  points, Lavagnini's independent fit of the same working curve.
* ``faradaic_impedance(omega, ...)`` (ohm, omega in rad/s): the Randles charge-transfer
  resistance in series with the Warburg element, computed by hand from the exchange current and
  the Warburg coefficient at equilibrium.
"""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from ecsfm.sim import analytic

# R. S. Nicholson, Anal. Chem. 37 (1965) 1351, Table I: psi -> n dEp (mV), 25 C, alpha = 0.5.
NICHOLSON_1965 = [(20.0, 61), (7.0, 63), (6.0, 64), (5.0, 65), (4.0, 66), (3.0, 68), (2.0, 72), (1.0, 84),
                  (0.75, 92), (0.5, 105), (0.35, 121), (0.25, 141), (0.1, 212)]


@pytest.mark.parametrize("psi, dep_mv", NICHOLSON_1965)
def test_nicholson_peak_separation_reproduces_the_1965_table(psi, dep_mv):
    # The table is printed to 1 mV, so its entries are exact to +-0.5 mV; n divides the separation.
    assert abs(analytic.nicholson_peak_separation(psi) * 1e3 - dep_mv) <= 0.5
    assert abs(analytic.nicholson_peak_separation(psi, n=2) * 1e3 - dep_mv / 2) <= 0.25


def _lavagnini_psi(dep_mv):
    """Lavagnini, Antiochia & Magno, Electroanalysis 16 (2004) 505: a fit of Nicholson's working
    curve, psi = (-0.6288 + 0.0021 X) / (1 - 0.017 X), X = n dEp in mV."""
    return (-0.6288 + 0.0021 * dep_mv) / (1 - 0.017 * dep_mv)


def test_nicholson_peak_separation_between_table_points_follows_the_working_curve():
    # Between the tabulated points (geometric midpoints, psi 0.35 .. 20, where the fit holds: it
    # reproduces every tabulated point there within 1.5 mV) the interpolated dEp agrees with the
    # fit inverted for dEp within 2 mV (1.5 mV of the fit + rounding of the table). This catches a
    # wrong or shifted table entry or a curve that departs from Nicholson's between the points; it
    # cannot tell log-psi from linear-psi interpolation, which differ by < 1.1 mV in this range.
    for lo, hi in zip([p for p, _ in NICHOLSON_1965][1:], [p for p, _ in NICHOLSON_1965]):
        if lo < 0.35:
            continue
        psi = math.sqrt(lo * hi)
        dep_fit = brentq(lambda x: _lavagnini_psi(x) - psi, 59.5, 400.0)
        assert abs(analytic.nicholson_peak_separation(psi) * 1e3 - dep_fit) < 2.0, (psi, dep_fit)
    # Monotone: slower kinetics, wider separation, over the whole table.
    psi = np.geomspace(0.1, 20.0, 200)
    assert np.all(np.diff(analytic.nicholson_peak_separation(psi)) < 0)
    with pytest.raises(ValueError, match="psi"):
        analytic.nicholson_peak_separation(0.05)  # outside the table: no extrapolation


# Independent constants (CODATA 2018, exact in the 2019 SI), not the package's.
F = 96485.33212  # C/mol
R = 8.314462618  # J/(mol K)


@pytest.mark.parametrize("n, alpha, temperature", [(1, 0.5, 298.15), (2, 0.3, 310.0)])
def test_faradaic_impedance_is_randles_charge_transfer_plus_warburg(n, alpha, temperature):
    # At equilibrium (E_dc the Nernst potential of C_O, C_R) the linearised faradaic impedance is
    # Z_F = R_ct + sigma (1 - j) / sqrt(omega) (Bard & Faulkner, 2nd ed., eqs. 3.4.11, 10.3.26-10.3.27):
    #   i0 = n F A k0 C_O^(1 - alpha) C_R^alpha,   R_ct = RT / (n F i0),
    #   sigma = RT / (n^2 F^2 A sqrt(2)) (1 / (C_O sqrt(D_O)) + 1 / (C_R sqrt(D_R))),  C in mol/cm^3.
    # Both sides are closed forms in float64: they must agree to rounding (1e-10 relative).
    e0, k0, d_o, d_r, c_o_mm, c_r_mm, area = 0.1, 3e-3, 7e-6, 1.2e-5, 2.0, 0.5, 0.2
    e_eq = e0 + R * temperature / (n * F) * math.log(c_o_mm / c_r_mm)
    c_o, c_r = c_o_mm * 1e-6, c_r_mm * 1e-6
    i0 = n * F * area * k0 * c_o ** (1 - alpha) * c_r**alpha
    r_ct = R * temperature / (n * F * i0)
    sigma = (R * temperature / (n**2 * F**2 * area * math.sqrt(2))
             * (1 / (c_o * math.sqrt(d_o)) + 1 / (c_r * math.sqrt(d_r))))
    omega = 2 * np.pi * np.array([1e-3, 0.1, 10.0, 1e3, 1e5])
    hand = r_ct + sigma * (1 - 1j) / np.sqrt(omega)
    z = analytic.faradaic_impedance(omega, e_eq, e0, k0, alpha, d_o, d_r, c_o_mm, c_r_mm, n=n, area=area,
                                    temperature=temperature)
    np.testing.assert_allclose(z, hand, rtol=1e-10)
    # The limits read off a Nyquist plot: at high frequency the real part is R_ct (the Warburg
    # term is ~2e-6 of it at 1e12 rad/s, hence 1e-5), at low frequency a 45 degree line.
    z_hf = analytic.faradaic_impedance(1e12, e_eq, e0, k0, alpha, d_o, d_r, c_o_mm, c_r_mm, n=n, area=area,
                                       temperature=temperature)
    assert abs(z_hf.real / r_ct - 1) < 1e-5 and abs(z_hf.imag) < 1e-5 * r_ct
    assert np.allclose(np.degrees(np.angle(z[0] - z[1])), -45.0, atol=1e-6)
