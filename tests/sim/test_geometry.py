"""Radial diffusion to a sphere and a hemisphere against the literature (Bard & Faulkner 5.2.2,
5.3): the chronoamperometric current ``n F A C D (1/sqrt(pi D t) + 1/r0)``, its steady state
``4 pi n F D C r0``, the microsphere's sigmoidal CV, the impedance's finite low-frequency limit;
and the cell's geometry contract (derived area, contradictions refused, batching over radii)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecsfm import sim

D, C = 1e-5, 1.0
FAST = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=C)
F = sim.FARADAY


def _sphere_ca(t, r0, area):
    return -F * area * C * 1e-6 * D * (1.0 / np.sqrt(np.pi * D * t) + 1.0 / r0)


def test_sphere_chronoamperometry_and_steady_state():
    # Tolerances: 0.5 % (the planar grid's own bias is 0.3 %), 1 % at the first output points
    # (1.6e-5 of the duration after the jump). A 1 um sphere stepped for 100 s is at steady state
    # within 0.2 % (r0 / sqrt(pi D t)), which the simulation must give within 0.5 %.
    for r0, duration in ((1e-3, 1.0), (1e-4, 100.0)):
        res = sim.simulate(sim.potential_step(0.5, -0.5, duration), FAST, sim.Cell(geometry=sim.Sphere(radius=r0)))
        t, i = np.asarray(res.time)[1:], np.asarray(res.current)[1:]
        err = i / _sphere_ca(t, r0, 4 * np.pi * r0**2) - 1
        assert np.max(np.abs(err[t > 0.01 * duration])) < 5e-3, (r0, np.abs(err).max())
        assert np.max(np.abs(err)) < 1e-2
        assert np.all(np.diff(np.abs(i)) < 0)
    steady = -4 * np.pi * F * D * C * 1e-6 * r0
    assert abs(i[-1] / steady - 1 - r0 / np.sqrt(np.pi * D * t[-1])) < 5e-3
    assert abs(i[-1] / steady - 1) < 5e-3


def test_hemisphere_is_half_a_sphere_and_a_microsphere_cv_is_a_steady_sigmoid():
    wf = sim.cyclic_voltammetry(0.3, -0.3, 0.005, step=2e-3)
    r0 = 2e-4  # 2 um: r0^2 / D = 4 ms, against a 60 s sweep
    sphere = sim.simulate(wf, FAST, sim.Cell(geometry=sim.Sphere(radius=r0)))
    hemi = sim.simulate(wf, FAST, sim.Cell(geometry=sim.Hemisphere(radius=r0)))
    np.testing.assert_allclose(np.asarray(hemi.current), 0.5 * np.asarray(sphere.current), rtol=1e-5, atol=1e-15)
    e, i = np.asarray(sphere.potential), np.asarray(sphere.current)
    plateau = -4 * np.pi * F * D * C * 1e-6 * r0
    at_vertex = np.argmin(e)
    # the transient term at the vertex is r0 / sqrt(pi D t_eff) < 1.5 % (t_eff ~ the time past E0)
    assert abs(i[at_vertex] / plateau - 1) < 0.015
    # steady state: the forward and reverse sweeps retrace each other (no peak, no hysteresis)
    n = e.size
    fwd, rev = i[: n // 2 + 1], i[n // 2 :][::-1]
    assert np.max(np.abs(fwd - rev)) < 0.03 * abs(plateau)
    # the half-wave potential of a reversible sigmoid is E0 (equal D): current half the plateau there
    half = np.interp(0.0, e[: n // 2][::-1], fwd[: n // 2][::-1])
    assert abs(half / plateau - 0.5) < 0.02


@pytest.mark.parametrize("shape, transfer", [(sim.Sphere, 1.0), (sim.Disc, 4 / np.pi)], ids=["sphere", "disc"])
def test_radial_impedance_has_a_finite_low_frequency_limit(shape, transfer):
    # Planar Warburg diverges as w -> 0; a sphere's or disc's diffusion resistance tends to the
    # steady state's: RT / (n^2 F^2 A c m) per species, with the mass-transfer coefficient m = D / r0
    # (sphere) or Saito's 4 D / (pi r) (disc) (fast kinetics, c_red = c_ox at E0).
    r0 = 1e-4
    couple = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=C, c_red=C)
    cell = sim.Cell(geometry=shape(radius=r0))
    z = np.asarray(sim.impedance(couple, cell, 0.0, jnp.asarray([1e-7])))[0]
    rt_f = sim.thermal_voltage(sim.DEFAULT_TEMPERATURE)
    expected = 2 * rt_f / (F * cell.area * C * 1e-6 * transfer * D / r0)
    charge_transfer = rt_f / (F * cell.area * 10.0 * C * 1e-6)
    assert abs(z.real / (expected + charge_transfer) - 1) < 1e-3 and abs(z.imag) < 1e-3 * z.real
    planar = np.asarray(sim.impedance(couple, sim.Cell(area=cell.area), 0.0, jnp.asarray([1e-6])))[0]
    assert planar.real > 100 * z.real


def test_the_area_follows_the_geometry_and_a_contradiction_is_refused():
    assert float(sim.Cell(geometry=sim.Sphere(radius=0.1)).area) == pytest.approx(4 * np.pi * 0.01)
    assert float(sim.Cell(geometry=sim.Hemisphere(radius=0.1)).area) == pytest.approx(2 * np.pi * 0.01)
    assert float(sim.Cell().area) == 1.0
    with pytest.raises(ValueError, match="area: 1 cm\\^2 contradicts the sphere's 0.1257 cm\\^2"):
        sim.Cell(area=1.0, geometry=sim.Sphere(radius=0.1))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"radius \(cm\)"):
            sim.Sphere(radius=bad)
    with pytest.raises(ValueError, match="geometry"):
        sim.Cell(geometry="sphere")


@pytest.mark.parametrize("batched, single", [(sim.Sphere, sim.Hemisphere), (sim.Disc, sim.Disc)],
                         ids=["sphere", "disc"])
def test_radii_batch_natively_under_vmap_and_grad(batched, single):
    wf = sim.cyclic_voltammetry(0.3, -0.3, 0.1, step=1e-2)
    radii = jnp.asarray([1e-4, 1e-3, 1e-2])
    native = sim.simulate(wf, FAST, sim.Cell(geometry=batched(radius=radii))).current
    mapped = jax.vmap(lambda r: sim.simulate(wf, FAST, sim.Cell(geometry=batched(radius=r))).current)(radii)
    np.testing.assert_allclose(np.asarray(native), np.asarray(mapped), rtol=2e-4, atol=1e-12)
    # d(cathodic peak per area)/d(r0) by grad against a central difference: a smaller sphere (or
    # disc) has more radial (edge) flux, a larger (more negative) peak per area, so the derivative is > 0

    def cathodic_peak(r):
        cell = sim.Cell(geometry=single(radius=r))
        return jnp.min(sim.simulate(wf, FAST, cell).current) / cell.area

    g = float(jax.grad(cathodic_peak)(1e-3))
    fd = (float(cathodic_peak(1.01e-3)) - float(cathodic_peak(0.99e-3))) / 2e-5
    assert g == pytest.approx(fd, rel=0.05) and g > 0


def test_thin_layer_cv_is_the_exhaustive_electrolysis_limit():
    # Bard & Faulkner 11.7: a reversible couple in a layer thin against its diffusion length gives a
    # symmetric peak i_p = n^2 F^2 v V C / (4 R T) with dEp = 0, and passes the charge n F V C.
    # Tolerance 1 % (measured: 0.01 %); a 10 um layer at 1 mV/s (D T / L^2 = 12,000).
    area, thickness, v = 0.1, 1e-3, 1e-3
    wf = sim.cyclic_voltammetry(0.3, -0.3, v, step=1e-3)
    res = sim.simulate(wf, FAST, sim.Cell(area=area, geometry=sim.ThinLayer(thickness=thickness)))
    e, i, t = np.asarray(res.potential), np.asarray(res.current), np.asarray(res.time)
    rt = sim.GAS_CONSTANT * sim.DEFAULT_TEMPERATURE
    peak = F**2 * v * area * thickness * C * 1e-6 / (4 * rt)
    assert abs(-i.min() / peak - 1) < 0.01 and abs(i.max() / peak - 1) < 0.01
    assert abs(e[np.argmax(i)] - e[np.argmin(i)]) <= 2e-3  # one potential step
    half = i.size // 2
    charge = -np.sum(0.5 * (i[1:half] + i[: half - 1]) * np.diff(t[:half]))
    assert abs(charge / (F * area * thickness * C * 1e-6) - 1) < 0.01
    assert np.asarray(res.final_concentration).shape[-1] == np.asarray(res.grid_x).size


def test_a_thick_layer_is_planar_and_thickness_batches_with_grad():
    wf = sim.cyclic_voltammetry(0.3, -0.3, 0.1, step=4e-3)
    cp = sim.Couple(e0=0.0, k0=1e-2, alpha=0.5, d_ox=D, d_red=D, c_ox=C)
    planar = np.asarray(sim.simulate(wf, cp, sim.Cell(area=0.1)).current)
    # 2 mm is 10 diffusion lengths of the 12 s experiment: the wall is not felt (< 0.1 %)
    thick = np.asarray(sim.simulate(wf, cp, sim.Cell(area=0.1, geometry=sim.ThinLayer(thickness=0.2))).current)
    assert np.max(np.abs(thick - planar)) < 1e-3 * np.max(np.abs(planar))
    widths = jnp.asarray([2e-3, 5e-3, 0.2])
    native = sim.simulate(wf, cp, sim.Cell(area=0.1, geometry=sim.ThinLayer(thickness=widths))).current
    mapped = jax.vmap(lambda w: sim.simulate(wf, cp, sim.Cell(area=0.1, geometry=sim.ThinLayer(thickness=w))).current)(
        widths)
    np.testing.assert_allclose(np.asarray(native), np.asarray(mapped), rtol=2e-4, atol=1e-12)

    def cathodic_peak(w):  # a thinner layer holds less material: a smaller peak
        return -jnp.min(sim.simulate(wf, cp, sim.Cell(area=0.1, geometry=sim.ThinLayer(thickness=w))).current)

    g = float(jax.grad(cathodic_peak)(3e-3))
    fd = (float(cathodic_peak(3.03e-3)) - float(cathodic_peak(2.97e-3))) / 6e-5
    assert g == pytest.approx(fd, rel=0.05) and g > 0
    with pytest.raises(ValueError, match=r"thickness \(cm\)"):
        sim.ThinLayer(thickness=0.0)


def test_thin_layer_chronoamperometry_from_the_first_point():
    # A step to full depletion in a layer of thickness L (Bard & Faulkner 11.7; the series of the
    # finite-diffusion transient): i = 2 n F A C D / L sum_k exp(-(2k+1)^2 pi^2 D t / (4 L^2)),
    # within 1 % and monotone from the first output point on (measured 0.5 %).
    area, thickness = 0.1, 5e-3
    res = sim.simulate(sim.potential_step(0.5, -0.5, 2.0), FAST,
                       sim.Cell(area=area, geometry=sim.ThinLayer(thickness=thickness)))
    t, i = np.asarray(res.time)[1:], np.asarray(res.current)[1:]
    k = np.arange(4000)[:, None]
    series = np.sum(np.exp(-((2 * k + 1) ** 2) * np.pi**2 * D * t / (4 * thickness**2)), axis=0)
    expected = -2 * F * area * C * 1e-6 * D / thickness * series
    assert np.max(np.abs(i / expected - 1)) < 0.01
    assert np.all(np.diff(np.abs(i)) < 0)


def _levich(area, omega, nu):
    """Levich's limiting current, A (Bard & Faulkner 9.3.22): 0.62045 n F A D^2/3 w^1/2 nu^-1/6 C,
    the constant being C^1/3 / (3^-2/3 Gamma(1/3)) with von Karman's C = 0.51023."""
    from scipy.special import gamma

    constant = 0.51023 ** (1 / 3) / (3 ** (-2 / 3) * gamma(1 / 3))
    return constant * F * area * D ** (2 / 3) * omega**0.5 * nu ** (-1 / 6) * C * 1e-6


def test_rotating_disc_levich_and_koutecky_levich():
    # Tolerance 1 % (measured 0.4 %: the default grid's ratio 1.25; 0.02 % at 1.05).
    r0, nu = 0.15, 0.01
    wf = sim.linear_sweep(0.3, -0.3, 0.005, step=2e-3)
    omegas = jnp.asarray([100.0, 400.0])  # batched natively: the plateau goes as sqrt(omega)
    res = sim.simulate(wf, FAST, sim.Cell(geometry=sim.RotatingDisc(radius=r0, omega=omegas, viscosity=nu)))
    area = np.pi * r0**2
    for k, omega in enumerate(np.asarray(omegas)):
        assert abs(-float(res.current[k, -1]) / _levich(area, omega, nu) - 1) < 0.01
    # slow kinetics, a slow sweep at fast rotation (quasi-steady): the steady current of
    # Butler-Volmer kinetics in series with Levich's mass transfer m = i_L / (n F A C),
    # i = n F A C k_f / (1 + k_f / m + k_b / m) (Koutecky-Levich), within 1 % wherever it is > 5 % of its plateau
    omega, k0, alpha = 1000.0, 1e-3, 0.5
    slow = sim.Couple(e0=0.0, k0=k0, alpha=alpha, d_ox=D, d_red=D, c_ox=C)
    res = sim.simulate(sim.linear_sweep(0.3, -0.5, 2e-4, step=2e-3), slow,
                       sim.Cell(geometry=sim.RotatingDisc(radius=r0, omega=omega, viscosity=nu)))
    e, i = np.asarray(res.potential), np.asarray(res.current)
    f = F / (sim.GAS_CONSTANT * sim.DEFAULT_TEMPERATURE)
    m = _levich(area, omega, nu) / (F * area * C * 1e-6)
    kf, kb = k0 * np.exp(-alpha * f * e), k0 * np.exp((1 - alpha) * f * e)
    steady = -F * area * C * 1e-6 * kf / (1 + kf / m + kb / m)
    seen = np.abs(steady) > 0.05 * np.abs(steady).max()
    assert np.max(np.abs(i[seen] / steady[seen] - 1)) < 0.01
    for bad, field in ((dict(radius=0.1, omega=0.0), "omega"), (dict(radius=0.1, omega=10.0, viscosity=-1.0), "viscosity")):
        with pytest.raises(ValueError, match=field):
            sim.RotatingDisc(**bad)


@pytest.mark.parametrize("geometry", [sim.Disc(radius=1e-3), sim.Sphere(radius=1e-3), sim.ThinLayer(thickness=2e-3),
                                      sim.RotatingDisc(radius=0.1, omega=100.0)], ids=lambda g: type(g).__name__)
def test_every_geometry_takes_several_couples_ru_cdl_and_pulses(geometry):
    # two couples with Ru and Cdl inside the loop under a square-wave program (a jump every half
    # period): the iR solve converges, nothing is flagged, and the charge passed on the first
    # forward sweep is cathodic (both couples start oxidised)
    wf = sim.square_wave_voltammetry(0.3, -0.3, step=0.04, n_substeps=6)
    a = sim.Couple(e0=0.1, k0=1e-2, alpha=0.5, d_ox=D, d_red=D, c_ox=C)
    b = sim.Couple(e0=-0.15, k0=1e-3, alpha=0.4, d_ox=2 * D, d_red=D, c_ox=0.5, c_red=0.2)
    cell = sim.Cell(geometry=geometry, area=None if geometry.area() is not None else 0.05, ru=100.0, cdl=2e-5)
    res = sim.simulate(wf, [a, b], cell)
    i = np.asarray(res.faradaic_current)
    assert res.problems() == [] and np.all(np.isfinite(i))
    assert np.sum(i) < 0 and np.all(np.asarray(res.surface_concentration) > -1e-4)
