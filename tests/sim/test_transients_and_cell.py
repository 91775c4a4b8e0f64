"""Potential steps (Cottrell), conservation, and the cell: Ru and Cdl."""

import numpy as np

from ecsfm import sim
from ecsfm.sim import analytic

AREA = 0.0707
D = 1e-5
FAST = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)


def test_cottrell_within_one_percent_and_from_the_first_point_within_two():
    # Step 500 mV past E0 (surface O driven to ~0): i = -nFAC sqrt(D/(pi t)); within 1 % from 1 %
    # to 100 % of the step duration, and within 2 % and monotone from the first output point on
    # (1.6e-5 of the duration: the flux's t^-1/2 shape is integrated exactly after a jump, so the
    # transient does not zig-zag).
    wf = sim.potential_step(e_initial=0.5, e_step=-0.5, duration=2.0)
    res = sim.simulate(wf, FAST, sim.Cell(area=AREA))
    t, i = np.asarray(res.time), np.asarray(res.current)
    m = (t >= 0.02) & (t <= 2.0)
    ref = -analytic.cottrell_current(t[m], 1, AREA, 1.0, D)
    assert m.sum() > 50
    assert np.max(np.abs(i[m] / ref - 1)) < 0.01
    early = t > 0
    assert np.max(np.abs(i[early] / -analytic.cottrell_current(t[early], 1, AREA, 1.0, D) - 1)) < 0.02
    assert np.all(np.diff(np.abs(i[early])) < 0)


def test_double_step_reverse_transient():
    # After stepping back at tau to full re-oxidation (Bard & Faulkner 5.7.3):
    # i(t) = nFAC sqrt(D/pi) (1/sqrt(t - tau) - 1/sqrt(t)), within 2 % from the first point after
    # the second jump on (8e-6 tau after it).
    tau = 1.0
    wf = sim.double_potential_step(0.5, -0.5, 0.5, step_duration=tau)
    res = sim.simulate(wf, FAST, sim.Cell(area=AREA))
    t = np.asarray(res.time)
    m = t > tau
    ref = analytic.cottrell_current(t[m] - tau, 1, AREA, 1.0, D) - analytic.cottrell_current(t[m], 1, AREA, 1.0, D)
    assert np.max(np.abs(np.asarray(res.current)[m] / ref - 1)) < 0.02


def test_charge_and_mass_conservation():
    # Unequal D: the moles of O made equal the charge passed / nFA and the moles of R lost.
    couple = sim.Couple(e0=0.0, k0=1e-3, alpha=0.4, d_ox=D, d_red=3 * D, c_ox=1.0, c_red=0.3)
    wf = sim.cyclic_voltammetry(e_start=0.4, e_vertex=-0.4, scan_rate=0.1)
    res = sim.simulate(wf, couple, sim.Cell(area=AREA))
    charge = np.trapezoid(np.asarray(res.current, np.float64), np.asarray(res.time, np.float64))  # C
    moles = charge / (sim.FARADAY * AREA) * 1e6  # mM cm (oxidation makes O)
    x = np.asarray(res.grid_x, np.float64)
    ell = np.asarray(res.diffusion_length, np.float64)[0]
    prof = np.asarray(res.final_concentration, np.float64)[0]
    excess_ox = np.trapezoid(prof[0] - 1.0, x) * ell[0]
    excess_red = np.trapezoid(prof[1] - 0.3, x) * ell[1]
    assert abs(charge) > 0  # a net reduction remains after one cycle
    np.testing.assert_allclose(excess_ox, moles, rtol=2e-3)
    np.testing.assert_allclose(excess_red, -moles, rtol=2e-3)


def test_final_profile_matches_erfc_after_a_step():
    # Diffusion-limited step: C_O(x, t) = C erf(x / (2 sqrt(D t))).
    from scipy.special import erf

    wf = sim.potential_step(0.5, -0.5, duration=1.0)
    res = sim.simulate(wf, FAST, sim.Cell(area=AREA))
    x = np.linspace(0, 6 * np.sqrt(D), 40)
    prof = np.asarray(res.profile(x))[0]
    np.testing.assert_allclose(prof[0], erf(x / (2 * np.sqrt(D))), atol=5e-3)
    np.testing.assert_allclose(prof[1], 1 - erf(x / (2 * np.sqrt(D))), atol=5e-3)


def test_ru_widens_peak_separation(peak):
    wf = sim.cyclic_voltammetry(e_start=0.4, e_vertex=-0.4, scan_rate=0.5)
    seps = []
    for ru in (0.0, 100.0, 300.0, 1000.0):
        res = sim.simulate(wf, FAST, sim.Cell(area=AREA, ru=ru))
        assert res.problems() == []
        e, i = np.asarray(res.potential), np.asarray(res.current)
        n = int(np.argmin(e)) + 1
        seps.append(peak(e[n:], i[n:], 1)[0] - peak(e[:n], i[:n], -1)[0])
        # The kinetics see E - i Ru.
        np.testing.assert_allclose(res.interface_potential, e - i * ru, atol=2e-5)
    assert np.all(np.diff(seps) > 5e-3), seps


def test_cdl_adds_charging_current():
    # Far from E0 the extra current with Cdl is Cdl * v * A (sign of the sweep), within 5 %.
    wf = sim.cyclic_voltammetry(e_start=0.6, e_vertex=-0.6, scan_rate=0.2)
    cdl = 20e-6
    base = sim.simulate(wf, FAST, sim.Cell(area=AREA))
    with_c = sim.simulate(wf, FAST, sim.Cell(area=AREA, cdl=cdl))
    e = np.asarray(wf.potential)
    diff = np.asarray(with_c.current - base.current)
    fwd = np.arange(e.size) <= np.argmin(e)  # the vertex point ends a forward step
    expected = cdl * 0.2 * AREA
    sel = (np.abs(e) > 0.35) & (np.arange(e.size) > 0)
    assert np.allclose(diff[sel & fwd], -expected, rtol=0.05)
    assert np.allclose(diff[sel & ~fwd], expected, rtol=0.05)


def test_rc_charging_transient():
    # No faradaic process: a potential step through Ru and Cdl decays as (dE/Ru) exp(-t/RC).
    ru, cdl = 100.0, 20e-6
    rc = ru * cdl * AREA
    inert = sim.Couple(e0=0.0, k0=1e-2, alpha=0.5, d_ox=D, d_red=D, c_ox=0.0)
    wf = sim.potential_step(0.0, -0.1, duration=8 * rc, n_steps=600, growth=1.005)
    res = sim.simulate(wf, inert, sim.Cell(area=AREA, ru=ru, cdl=cdl))
    t = np.asarray(res.time)
    m = (t > 0.2 * rc) & (t < 4 * rc)
    ref = -0.1 / ru * np.exp(-t[m] / rc)
    # The capacitor is integrated by backward Euler (first order): error ~ t h / (2 RC^2).
    assert np.max(np.abs(np.asarray(res.current)[m] / ref - 1)) < 0.03
