"""Invariants over random physical parameters (hypothesis), one compiled program for all draws."""

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsfm import sim

WF = sim.cyclic_voltammetry(e_start=0.5, e_vertex=-0.5, scan_rate=0.1, step=2e-3)
AREA = 0.0707


@jax.jit
def run(e0, log_k0, alpha, log_d_ox, log_d_red, c_ox, c_red, ru, cdl):
    couple = sim.Couple(e0=e0, k0=10.0**log_k0, alpha=alpha, d_ox=10.0**log_d_ox,
                        d_red=10.0**log_d_red, c_ox=c_ox, c_red=c_red)
    return sim.simulate(WF, couple, sim.Cell(area=AREA, ru=ru, cdl=cdl))


params = st.tuples(
    st.floats(-0.2, 0.2), st.floats(-6, 1), st.floats(0.2, 0.8), st.floats(-6, -4.3),
    st.floats(-6, -4.3), st.floats(0.0, 5.0), st.floats(0.0, 5.0), st.floats(0.0, 200.0),
    st.floats(0.0, 5e-5),
)


@settings(max_examples=25, deadline=None)
@given(params)
def test_random_cells_are_finite_and_conserve_mass(p):
    e0, log_k0, alpha, log_d_ox, log_d_red, c_ox, c_red, ru, cdl = p
    res = run(*p)
    assert res.problems() == [], (p, res.problems())
    # Moles of O made = charge passed through the faradaic reaction / nFA = moles of R lost.
    t = np.asarray(res.time, np.float64)
    charge = np.trapezoid(np.asarray(res.faradaic_current, np.float64), t)
    moles = charge / (sim.FARADAY * AREA) * 1e6
    x = np.asarray(res.grid_x, np.float64)
    ell = np.asarray(res.diffusion_length, np.float64)[0]
    prof = np.asarray(res.final_concentration, np.float64)[0]
    ox = np.trapezoid(prof[0] - c_ox, x) * ell[0]
    red = np.trapezoid(prof[1] - c_red, x) * ell[1]
    scale = max(c_ox, c_red) * ell.max() * 1e-3 + 1e-12
    assert abs(ox - moles) < scale and abs(red + moles) < scale, (ox, red, moles)
    # Concentrations stay physical without any clipping in the scheme (float32 round-off only).
    assert float(np.min(res.surface_concentration)) > -1e-4 * max(c_ox, c_red, 1e-3)
