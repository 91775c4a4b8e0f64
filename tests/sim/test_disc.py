"""A disc in an insulating plane, edge diffusion included, against the literature:

- the edge admittance's Galerkin computation against its exact limits (Saito's ``4/pi`` and the
  long-time expansion ``1 + 0.71835 tau^-1/2`` of Shoup and Szabo, J. Electroanal. Chem. 140
  (1982) 237), and the shipped pole fit against the Galerkin values;
- Saito's steady state ``4 n F D C r``, and Shoup and Szabo's chronoamperometric current over
  tau = 4 D t / r^2 from 3e-6 to 4e3 (their formula's own accuracy is 0.6 %: tolerance 1 %);
- reversible CV peak currents against Aoki, Akimoto, Tokuda, Matsuda and Osteryoung (J.
  Electroanal. Chem. 171 (1984) 219), ``i_p = 4 n F D C r (0.34 e^-0.66p + 0.66 - 0.13 e^-11/p +
  0.351 p)``, p = r sqrt(n F v / (R T D)), over p = 0.2 ... 20 (tolerance 2 %);
- the planar limit of a macrodisc at a fast scan, the time-step convergence order, and bad input
  (the impedance's low-frequency limit, batching and gradients over radii: ``test_geometry.py``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from ecsfm import sim
from ecsfm.sim._disc import EDGE_WEIGHTS, edge_admittance, galerkin_edge_admittance

D, C = 1e-5, 1.0
F = sim.FARADAY
REVERSIBLE = sim.Couple(e0=0.0, k0=100.0, alpha=0.5, d_ox=D, d_red=D, c_ox=C)


def _saito(r):
    return 4 * F * D * C * 1e-6 * r


def test_edge_admittance_limits_and_the_shipped_fit():
    # p = 0: Saito's 4/pi, exactly (Galerkin: one basis function is the exact steady flux)
    assert galerkin_edge_admittance(np.array([0.0]))[0] == pytest.approx(4 / np.pi, rel=1e-9)
    assert float(np.sum(EDGE_WEIGHTS)) == pytest.approx(4 / np.pi - 1, abs=1e-12)
    # small p: the long-time current 4nFDCr (1 + 0.71835 tau^-1/2) is, in Laplace terms,
    # p + g = 4/pi + (4/pi) 0.359175 sqrt(pi) p, so g = 4/pi - 0.18943 p (+ O(p^2))
    p = np.array([0.01, 1.0, 20.0])
    g = galerkin_edge_admittance(p, basis=16)
    assert g[0] == pytest.approx(4 / np.pi - 0.18943 * 0.01, abs=2e-5)
    # large p: the edge term tends to Aoki and Osteryoung's short-time n F D C pi r (g -> 1), from above
    assert 1.0 < g[2] < 1.02
    # the shipped poles reproduce the admittance p + g to 1e-4
    np.testing.assert_allclose(edge_admittance(p) + p, g + p, rtol=1e-4)


@pytest.mark.parametrize("radius, duration", [(1e-3, 100.0), (1e-3, 0.01), (0.15, 100.0)])
def test_chronoamperometry_follows_shoup_szabo_from_the_first_point(radius, duration):
    res = sim.simulate(sim.potential_step(0.4, -0.5, duration), REVERSIBLE, sim.Cell(geometry=sim.Disc(radius=radius)))
    t, i = np.asarray(res.time)[1:], -np.asarray(res.current)[1:]
    tau = 4 * D * t / radius**2
    shoup_szabo = 0.7854 + 0.8862 / np.sqrt(tau) + 0.2146 * np.exp(-0.7823 / np.sqrt(tau))
    err = i / (_saito(radius) * shoup_szabo) - 1
    assert np.max(np.abs(err)) < 0.01, (np.abs(err).max(), tau[np.argmax(np.abs(err))])
    assert np.all(np.diff(i) < 0) and res.problems() == []


def test_a_microdisc_reaches_saitos_steady_state():
    # r = 1 um stepped for 100 s: tau = 4e5, where the current is 0.114 % above 4nFDCr (1 + 0.71835 tau^-1/2)
    r = 1e-4
    res = sim.simulate(sim.potential_step(0.4, -0.5, 100.0), REVERSIBLE, sim.Cell(geometry=sim.Disc(radius=r)))
    assert -float(res.current[-1]) / _saito(r) == pytest.approx(1.0, abs=0.01)


def test_cv_peaks_follow_aokis_disc_voltammograms():
    r = 1e-3
    rates = np.array([0.01, 0.3, 100.0])
    p = r * np.sqrt(F * rates / (sim.GAS_CONSTANT * sim.DEFAULT_TEMPERATURE * D))
    aoki = 0.34 * np.exp(-0.66 * p) + 0.66 - 0.13 * np.exp(-11 / p) + 0.351 * p
    for v, expected in zip(rates, aoki):
        res = sim.simulate(sim.cyclic_voltammetry(0.4, -0.4, float(v)), REVERSIBLE, sim.Cell(geometry=sim.Disc(radius=r)))
        i = -np.asarray(res.current)
        assert i[: i.size // 2].max() / _saito(r) == pytest.approx(expected, rel=0.02), (v, expected)


def test_a_macrodisc_at_a_fast_scan_is_planar_and_the_edge_adds_current():
    r, v = 0.15, 1.0  # p ~ 300: the edge adds ~ (D / r) / (0.4463 sqrt(F v D / RT)) ~ 0.5 % at the peak
    wf = sim.cyclic_voltammetry(0.4, -0.4, v)
    disc = -float(jnp.min(sim.simulate(wf, REVERSIBLE, sim.Cell(geometry=sim.Disc(radius=r))).current))
    planar = -float(jnp.min(sim.simulate(wf, REVERSIBLE, sim.Cell(area=np.pi * r**2)).current))
    randles_sevcik = 0.4463 * F * np.pi * r**2 * C * 1e-6 * np.sqrt(F * v * D / (sim.GAS_CONSTANT * 298.15))
    assert planar / randles_sevcik == pytest.approx(1.0, abs=0.005)
    assert 1.002 < disc / planar < 1.01


def test_time_step_convergence_is_second_order():
    # values at fixed potentials on the forward sweep of a p ~ 2 microdisc CV, against a 0.125 mV
    # reference: halving the step from 4 to 1 mV cuts the error by >= 2^3 (order >= 1.5; measured ~2)
    cell = sim.Cell(geometry=sim.Disc(radius=1e-3))

    def at(step):
        res = sim.simulate(sim.cyclic_voltammetry(0.4, -0.4, 1.0, step=step), REVERSIBLE, cell)
        e, i = np.asarray(res.potential), np.asarray(res.current)
        n = e.size // 2
        return np.interp([-0.1, -0.03, 0.0, 0.03], e[:n][::-1], i[:n][::-1])

    ref = at(1.25e-4)
    err = [np.max(np.abs(at(s) - ref)) / np.max(np.abs(ref)) for s in (4e-3, 1e-3)]
    assert err[1] < 1e-4 and err[0] / err[1] > 8, err


def test_the_disc_area_and_bad_input():
    assert float(sim.Cell(geometry=sim.Disc(radius=0.15)).area) == pytest.approx(np.pi * 0.0225)
    with pytest.raises(ValueError, match="contradicts the disc's"):
        sim.Cell(area=1.0, geometry=sim.Disc(radius=0.15))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"radius \(cm\)"):
            sim.Disc(radius=bad)
