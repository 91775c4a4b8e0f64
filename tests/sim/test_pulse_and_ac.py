"""Pulse techniques, the sinusoid and impedance."""

import jax.numpy as jnp
import numpy as np
import pytest

from ecsfm import sim

AREA = 0.0707
D = 1e-5
REV = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)


def _pulse_unit(tp):
    """n F A C sqrt(D / (pi tp)), A: the current scale of a pulse of width tp (1 mM)."""
    return sim.FARADAY * AREA * 1e-6 * np.sqrt(D / (np.pi * tp))


def _swv_peak(frequency):
    wf = sim.square_wave_voltammetry(0.3, -0.3, step=10e-3, amplitude=25e-3, frequency=frequency)
    res = sim.simulate(wf, REV, sim.Cell(area=AREA))
    diff = np.asarray(sim.sampled_currents(wf, res.current)["difference"])
    base = np.asarray(wf.params["base_potential"])
    k = int(np.argmax(np.abs(diff)))
    return base, diff, k


def test_square_wave_reversible_peak():
    # Reversible SWV: the difference peak sits at E1/2 (to the 10 mV staircase step) and its
    # dimensionless height dpsi = di / (nFAC sqrt(D / pi tp)) does not depend on frequency.
    base, diff, k = _swv_peak(25.0)
    assert abs(base[k]) <= 5e-3
    assert diff[k] < 0  # a reduction scan
    psi = []
    for f in (10.0, 100.0):
        base, diff, k = _swv_peak(f)
        psi.append(-diff[k] / _pulse_unit(0.5 / f))
    assert abs(psi[0] / psi[1] - 1) < 0.01, psi


def test_differential_pulse_reversible_peak():
    # Parry & Osteryoung (Bard & Faulkner 7.3.16): peak at E1/2 - dE/2 with height
    # nFAC sqrt(D/(pi tp)) (1 - s)/(1 + s), s = exp(nF dE / 2RT). The formula neglects depletion
    # by earlier pulses; with tp / period = 0.1 that lowers the peak by a few per cent (4 % allowed).
    d_e = -0.05
    wf = sim.differential_pulse_voltammetry(0.3, -0.3, step=5e-3, pulse_amplitude=abs(d_e), pulse_width=0.05, period=0.5)
    res = sim.simulate(wf, REV, sim.Cell(area=AREA))
    diff = np.asarray(sim.sampled_currents(wf, res.current)["difference"])
    base = np.asarray(wf.params["base_potential"])
    k = int(np.argmax(np.abs(diff)))
    assert abs(base[k] - (0.0 - d_e / 2)) <= 2.5e-3 + 1e-9
    s = np.exp(d_e / (2 * sim.thermal_voltage()))
    expected = _pulse_unit(0.05) * (1 - s) / (1 + s)
    assert abs(-diff[k] / expected - 1) < 0.04


@pytest.mark.parametrize("frequency", [1.0, 100.0])
def test_sinusoid_response_matches_linearised_impedance(frequency):
    # A 5 mV sinusoid about the equilibrium potential: lock-in on the last 10 of 20 periods
    # gives Z = E/I, compared with the linearised Randles impedance (charge transfer + Warburg,
    # Ru, Cdl). The double layer is integrated by backward Euler (first order), 64 points per
    # period: agreement within 2 % in magnitude and 1 degree in phase.
    couple = sim.Couple(e0=0.0, k0=1e-2, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0, c_red=1.0)
    cell = sim.Cell(area=AREA, ru=10.0, cdl=2e-5)
    wf = sim.sinusoid(0.0, 5e-3, frequency, n_periods=20, points_per_period=64)
    res = sim.simulate(wf, couple, cell)
    t = np.asarray(res.time, np.float64)
    m = t >= 10 / frequency
    lock = np.exp(-2j * np.pi * frequency * t[m])
    z_sim = np.sum(np.asarray(res.potential)[m] * lock) / np.sum(np.asarray(res.current)[m] * lock)
    z_lin = complex(np.asarray(sim.impedance(couple, cell, 0.0, jnp.asarray([frequency])))[0])
    assert abs(abs(z_sim) / abs(z_lin) - 1) < 0.02
    assert abs(np.degrees(np.angle(z_sim) - np.angle(z_lin))) < 1.0


def test_impedance_limits():
    # High frequency -> Ru; charge-transfer resistance RT / (n^2 F^2 A k0 C) for alpha = 0.5,
    # C_O = C_R = C at E0 (Bard & Faulkner 3.4.11 with i0 = F A k0 C).
    couple = sim.Couple(e0=0.0, k0=1e-3, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0, c_red=1.0)
    cell = sim.Cell(area=AREA, ru=25.0, cdl=0.0)
    z = np.asarray(sim.impedance(couple, cell, 0.0, jnp.asarray([1e12, 1e-12, 1e9])))
    rct = sim.thermal_voltage() / (sim.FARADAY * AREA * 1e-3 * 1e-6)
    assert abs(z[2].real - (25.0 + rct)) / rct < 1e-3  # Warburg negligible at 1 GHz, no Cdl
    cell_c = sim.Cell(area=AREA, ru=25.0, cdl=2e-5)
    z_hf = complex(np.asarray(sim.impedance(couple, cell_c, 0.0, jnp.asarray([1e9])))[0])
    assert abs(z_hf - 25.0) < 0.01
    # Warburg: -Z'' grows as w^-1/2 at low frequency with slope 45 degrees.
    zl = np.asarray(sim.impedance(couple, cell, 0.0, jnp.asarray([1e-4, 4e-4])))
    assert abs(np.degrees(np.angle(zl[0] - zl[1])) + 45) < 1.0


def test_sampling_of_periodic_waveforms_is_never_aliased():
    with pytest.raises(ValueError):
        sim.sinusoid(0.0, 0.01, 50.0, points_per_period=19)
    wf = sim.sinusoid(0.0, 0.01, 50.0, n_periods=3, points_per_period=20)
    assert wf.n_points == 61
    np.testing.assert_allclose(np.diff(np.asarray(wf.time, np.float64)), 1 / (50 * 20), rtol=1e-5)  # float32 time
