"""Cyclic voltammetry against textbook theory, at the simulator's default settings."""

import numpy as np
import pytest

from ecsfm import sim
from ecsfm.sim import analytic

AREA = 0.0707
D = 1e-5
V = 0.1


def cv(e_start, e_vertex, couple, cell=None, **kw):
    wf = sim.cyclic_voltammetry(e_start=e_start, e_vertex=e_vertex, scan_rate=V, **kw)
    res = sim.simulate(wf, [couple], cell or sim.Cell(area=AREA))
    assert res.problems() == []
    e = np.asarray(res.potential)
    i = np.asarray(res.current)
    n = int(np.argmin(e)) + 1
    return e, i, n


def test_randles_sevcik_peak_current(peak):
    # Reversible (k0 = 10 cm/s -> psi ~ 90): the 0.4463 law within 1 %.
    couple = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    e, i, n = cv(0.3, -0.3, couple)
    _, ipc = peak(e[:n], i[:n], -1)
    expected = analytic.randles_sevcik_peak_current(1, AREA, 1.0, D, V)
    assert abs(-ipc / expected - 1) < 0.01


def test_reversible_peak_positions(peak):
    # Switching 300 mV past E0 (>= 200 mV required); Nicholson & Shain: dEp -> 57.0 mV for a
    # distant switch, 57.8 mV at 271 mV; Ep - E1/2 = -1.109 RT/F = -28.5 mV.
    couple = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    e, i, n = cv(0.3, -0.3, couple)
    epc, _ = peak(e[:n], i[:n], -1)
    epa, _ = peak(e[n:], i[n:], +1)
    assert 0.057 <= epa - epc <= 0.060
    e_half = analytic.reversible_half_wave_potential(0.0, 1, D, D)
    expected = analytic.REVERSIBLE_PEAK_OFFSET * sim.thermal_voltage()
    assert abs((epc - e_half) - expected) < 1.5e-3


def test_unequal_diffusion_shifts_half_wave_potential(peak):
    # E1/2 = E0 + (RT/F) ln sqrt(D_R/D_O): with D_R = 4 D_O, +17.8 mV; ip follows D_O only.
    couple = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=4 * D, c_ox=1.0)
    e, i, n = cv(0.3, -0.3, couple)
    epc, ipc = peak(e[:n], i[:n], -1)
    e_half = analytic.reversible_half_wave_potential(0.0, 1, D, 4 * D)
    assert abs((epc - e_half) - analytic.REVERSIBLE_PEAK_OFFSET * sim.thermal_voltage()) < 1.5e-3
    assert abs(-ipc / analytic.randles_sevcik_peak_current(1, AREA, 1.0, D, V) - 1) < 0.01


def test_two_electron_reversible_couple(peak):
    # n = 2: ip scales as n^3/2, Ep - E1/2 = -28.5/2 mV.
    couple = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0, n=2)
    e, i, n = cv(0.3, -0.3, couple)
    epc, ipc = peak(e[:n], i[:n], -1)
    assert abs(-ipc / analytic.randles_sevcik_peak_current(2, AREA, 1.0, D, V) - 1) < 0.01
    assert abs(epc - analytic.REVERSIBLE_PEAK_OFFSET * sim.thermal_voltage() / 2) < 1.5e-3


@pytest.mark.parametrize("k0", [1e-5, 1e-6])
def test_totally_irreversible_peak(peak, k0):
    # Bard & Faulkner 6.3.8 / 6.3.9: ip within 2 %, Ep within 3 mV.
    couple = sim.Couple(e0=0.0, k0=k0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    e, i, n = cv(0.3, -1.0, couple)
    epc, ipc = peak(e[:n], i[:n], -1)
    ip_ref = analytic.irreversible_peak_current(1, 0.5, AREA, 1.0, D, V)
    ep_ref = analytic.irreversible_peak_potential(0.0, 1, 0.5, k0, D, V)
    assert abs(-ipc / ip_ref - 1) < 0.02
    assert abs(epc - ep_ref) < 3e-3


@pytest.mark.parametrize("psi, dep_mv", analytic.NICHOLSON_TABLE)
def test_nicholson_peak_separation(peak, psi, dep_mv):
    # Nicholson (1965), alpha = 0.5, switching 112.5 mV past the cathodic peak: within 3 mV or 3 %.
    f = 1.0 / sim.thermal_voltage()
    k0 = psi * np.sqrt(np.pi * D * f * V)
    assert np.isclose(analytic.nicholson_psi(k0, 1, 0.5, D, D, V), psi)
    couple = sim.Couple(e0=0.0, k0=k0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    e_switch = -dep_mv / 2e3 - 0.1125
    e, i, n = cv(0.4, e_switch, couple)
    epc, _ = peak(e[:n], i[:n], -1)
    epa, _ = peak(e[n:], i[n:], +1)
    err = abs((epa - epc) * 1e3 - dep_mv)
    assert err < max(3.0, 0.03 * dep_mv)


def test_independent_couples_superpose(peak):
    # Two couples on one electrode (no Ru): currents add exactly; each wave sits at its own E0.
    c1 = sim.Couple(e0=0.2, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    c2 = sim.Couple(e0=-0.3, k0=1e-3, alpha=0.4, d_ox=2 * D, d_red=D, c_ox=0.5, c_red=0.2)
    wf = sim.cyclic_voltammetry(e_start=0.6, e_vertex=-0.7, scan_rate=V)
    cell = sim.Cell(area=AREA)
    both = sim.simulate(wf, [c1, c2], cell)
    one = sim.simulate(wf, [c1], cell).current
    two = sim.simulate(wf, [c2], cell).current
    scale = float(np.max(np.abs(both.current)))
    np.testing.assert_allclose(both.current, one + two, atol=1e-5 * scale)
    np.testing.assert_allclose(both.couple_current[:, 0], one, atol=1e-5 * scale)


@pytest.mark.parametrize("fraction", [0.25, 0.3])
def test_staircase_sampled_early_matches_linear_sweep(fraction):
    # Staircase CV sampled at ~1/4-1/3 of each 1 mV stair reproduces the linear-sweep peak
    # (Bilewski et al., J. Phys. Chem. 86 (1982) 3704): Randles-Sevcik within 2 %; sampling at the
    # end of coarse 5 mV stairs underestimates it (by > 10 %).
    couple = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    rs = analytic.randles_sevcik_peak_current(1, AREA, 1.0, D, V)
    wf = sim.staircase_voltammetry(0.3, -0.3, V, step=1e-3, sample_fraction=fraction, n_substeps=16, growth=1.3)
    res = sim.simulate(wf, couple, sim.Cell(area=AREA))
    sampled = np.asarray(sim.sampled_currents(wf, res.current)["sampled"])
    assert abs(-sampled.min() / rs - 1) < 0.02
    wf = sim.staircase_voltammetry(0.3, -0.3, V, step=5e-3, sample_fraction=1.0)
    res = sim.simulate(wf, couple, sim.Cell(area=AREA))
    assert -np.asarray(sim.sampled_currents(wf, res.current)["sampled"]).min() / rs < 0.9


def test_repeated_cycles_approach_a_periodic_state():
    # Depletion carries over between cycles: each cathodic peak is smaller than the last, and the
    # change shrinks cycle by cycle.
    couple = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    wf = sim.cyclic_voltammetry(0.3, -0.3, V, n_cycles=3)
    i = np.asarray(sim.simulate(wf, couple, sim.Cell(area=AREA)).current)
    n = (wf.n_points - 1) // 3
    peaks = [-i[k * n : k * n + n // 2 + 1].min() for k in range(3)]
    assert peaks[0] > peaks[1] > peaks[2]
    assert peaks[1] - peaks[2] < 0.5 * (peaks[0] - peaks[1])
