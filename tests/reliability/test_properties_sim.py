"""Property tests (hypothesis) of the simulator that tests/sim/test_properties.py (one couple:
finite output, mass balance, no negative concentration) does not cover:

* two couples: permuting them permutes the per-couple outputs and leaves the total current and
  the cell's potential unchanged, and each couple's charge equals n F A times the change of its
  amount in the diffusion layer;
* scaling laws of linear diffusion with Butler-Volmer kinetics (exact, not asymptotic): without
  uncompensated resistance the current is linear in the bulk concentrations (both scaled by one
  factor) and in the electrode area; scaling the scan rate by s and k0 by sqrt(s) scales the current
  by sqrt(s) (the dimensionless problem is the same), which for a reversible couple is the
  Randles-Sevcik law i_p ~ sqrt(v).

Each property jit-compiles one program and reuses it for every example.
"""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsfm import sim

# float32 state: a relative error of ~1e-6 per step over ~600 steps; 1e-4 of the peak current
# bounds the round-off of two runs that should agree exactly in exact arithmetic.
RTOL_PEAK = 1e-4
SETTINGS = settings(max_examples=10, deadline=None)
_WF = dict(e_start=0.4, e_vertex=-0.4, step=4e-3)


def _couple(e0, log_k0, alpha, c_ox, c_red, log_d=-5.0, n=1.0):
    return sim.Couple(e0=e0, k0=10.0**log_k0, alpha=alpha, d_ox=10.0**log_d, d_red=10.0**log_d * 0.8,
                      c_ox=c_ox, c_red=c_red, n=n)


_WF01 = sim.cyclic_voltammetry(scan_rate=0.1, **_WF)


@jax.jit
def _two(a, b, ru, cdl):
    return sim.simulate(_WF01, [_couple(*a), _couple(*b)], sim.Cell(area=0.0707, ru=ru, cdl=cdl))


couples = st.tuples(st.floats(-0.2, 0.2), st.floats(-4, 0), st.floats(0.3, 0.7), st.floats(0.0, 3.0),
                    st.floats(0.0, 3.0), st.floats(-5.5, -4.5), st.sampled_from([1.0, 2.0]))


@SETTINGS
@given(a=couples, b=couples, ru=st.floats(0.0, 100.0), cdl=st.floats(0.0, 2e-5))
def test_permuting_two_couples_permutes_only_the_couple_outputs(a, b, ru, cdl):
    ab, ba = _two(a, b, ru, cdl), _two(b, a, ru, cdl)
    scale = float(np.abs(np.asarray(ab.current)).max()) + 1e-12
    np.testing.assert_allclose(np.asarray(ba.current), np.asarray(ab.current), rtol=0, atol=RTOL_PEAK * scale)
    np.testing.assert_allclose(np.asarray(ba.couple_current)[:, ::-1], np.asarray(ab.couple_current), rtol=0,
                               atol=RTOL_PEAK * scale)
    np.testing.assert_allclose(np.asarray(ba.surface_concentration)[:, ::-1], np.asarray(ab.surface_concentration),
                               rtol=0, atol=1e-4 * max(a[3], a[4], b[3], b[4], 1e-3))
    np.testing.assert_allclose(np.asarray(ba.final_concentration)[::-1], np.asarray(ab.final_concentration),
                               rtol=0, atol=1e-4 * max(a[3], a[4], b[3], b[4], 1e-3))
    # Each couple's charge is n F A x the moles of O it made (= the moles of R it used).
    t = np.asarray(ab.time, np.float64)
    x = np.asarray(ab.grid_x, np.float64)
    for s, (_, _, _, c_ox, c_red, _, n) in enumerate((a, b)):
        moles = np.trapezoid(np.asarray(ab.couple_current, np.float64)[:, s], t) / (n * sim.FARADAY * 0.0707) * 1e6
        ell = np.asarray(ab.diffusion_length, np.float64)[s]
        prof = np.asarray(ab.final_concentration, np.float64)[s]
        d_ox = np.trapezoid(prof[0] - c_ox, x) * ell[0]
        d_red = np.trapezoid(prof[1] - c_red, x) * ell[1]
        tol = max(c_ox, c_red, 1e-3) * ell.max() * 1e-3  # the test of tests/sim: 0.1 % of the layer's content
        assert abs(d_ox - moles) < tol and abs(d_red + moles) < tol, (s, d_ox, d_red, moles)
    assert float(np.min(np.asarray(ab.final_concentration))) > -1e-4 * max(a[3], a[4], b[3], b[4], 1e-3)


@jax.jit
def _run(wf, log_k0, c_ox, c_red, area, cdl, e0, alpha):
    return sim.simulate(wf, [_couple(e0, log_k0, alpha, c_ox, c_red)], sim.Cell(area=area, ru=0.0, cdl=cdl))


def _one(v, *args):
    """One couple, no uncompensated resistance; the waveform (built outside jit, the same number of
    points at every scan rate) is an argument, so every scan rate reuses one compiled program."""
    return _run(sim.cyclic_voltammetry(scan_rate=float(v), **_WF), *args)


@SETTINGS
@given(factor=st.floats(0.1, 10.0), log_k0=st.floats(-4, 0), c_ox=st.floats(0.1, 3.0), c_red=st.floats(0.0, 3.0),
       e0=st.floats(-0.15, 0.15), alpha=st.floats(0.3, 0.7))
def test_faradaic_current_is_linear_in_the_bulk_concentrations(factor, log_k0, c_ox, c_red, e0, alpha):
    base = np.asarray(_one(0.1, log_k0, c_ox, c_red, 0.0707, 0.0, e0, alpha).current, np.float64)
    scaled = np.asarray(_one(0.1, log_k0, factor * c_ox, factor * c_red, 0.0707, 0.0, e0, alpha).current, np.float64)
    np.testing.assert_allclose(scaled, factor * base, rtol=0, atol=RTOL_PEAK * factor * np.abs(base).max())


@SETTINGS
@given(factor=st.floats(0.1, 10.0), log_k0=st.floats(-4, 0), cdl=st.floats(0.0, 2e-5), e0=st.floats(-0.15, 0.15))
def test_current_is_linear_in_the_area(factor, log_k0, cdl, e0):
    base = np.asarray(_one(0.1, log_k0, 1.0, 0.0, 0.05, cdl, e0, 0.5).current, np.float64)
    scaled = np.asarray(_one(0.1, log_k0, 1.0, 0.0, 0.05 * factor, cdl, e0, 0.5).current, np.float64)
    np.testing.assert_allclose(scaled, factor * base, rtol=0, atol=RTOL_PEAK * factor * np.abs(base).max())


@SETTINGS
@given(s=st.floats(0.01, 100.0), log_k0=st.floats(-4, 0), e0=st.floats(-0.15, 0.15), alpha=st.floats(0.3, 0.7))
def test_scan_rate_and_k0_scaled_together_scale_the_current_by_sqrt(s, log_k0, e0, alpha):
    """i(v s, k0 sqrt(s)) = sqrt(s) i(v, k0): the same dimensionless problem (Lambda = k0 / sqrt(D F v / RT)
    unchanged) on the same potential grid."""
    base = np.asarray(_one(0.1, log_k0, 1.0, 0.0, 0.0707, 0.0, e0, alpha).current, np.float64)
    scaled = np.asarray(_one(0.1 * s, log_k0 + 0.5 * np.log10(s), 1.0, 0.0, 0.0707, 0.0, e0, alpha).current, np.float64)
    np.testing.assert_allclose(scaled, np.sqrt(s) * base, rtol=0, atol=RTOL_PEAK * np.sqrt(s) * np.abs(base).max())


@settings(max_examples=6, deadline=None)
@given(v=st.floats(0.01, 1.0))
def test_reversible_peak_current_follows_randles_sevcik_sqrt_v(v):
    """k0 = 10 cm/s keeps Lambda > 150 over 0.01-1 V/s (reversible): i_p / sqrt(v) is the same at
    every scan rate to 0.1 % (the residual kinetic effect at Lambda = 150 is ~0.05 %)."""
    ref = np.abs(np.asarray(_one(0.1, 1.0, 1.0, 0.0, 0.0707, 0.0, 0.0, 0.5).current)).max() / np.sqrt(0.1)
    ip = np.abs(np.asarray(_one(v, 1.0, 1.0, 0.0, 0.0707, 0.0, 0.0, 0.5).current)).max() / np.sqrt(v)
    assert abs(ip / ref - 1.0) < 1e-3, (v, ip / ref)
