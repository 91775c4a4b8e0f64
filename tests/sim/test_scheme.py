"""Mechanisms as data (``sim.Scheme``) and their implicit solver, against physics: the plain couple
and the channel solver where they apply, the EC2 pure-kinetic-zone shift (RT ln10 / 3F per decade),
DISP1's apparent n, conservation of matter and charge, gradients, and one line per bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecsfm import sim

F_RT = sim.FARADAY / (sim.GAS_CONSTANT * sim.DEFAULT_TEMPERATURE)
FINE = sim.SolverConfig(h0=2e-4)


def _couple(**kw):
    return sim.Couple(**({"e0": 0.0, "k0": 10.0, "alpha": 0.5, "d_ox": 1e-5, "d_red": 1e-5, "c_ox": 1.0,
                          "c_red": 0.0} | kw))


def _peak_potential(e, i):
    """The reduction peak's potential, a parabola through the lowest point and its neighbours."""
    j = int(np.argmin(i))
    a, b, c = i[j - 1], i[j], i[j + 1]
    return e[j] + 0.5 * (a - c) / (a - 2 * b + c) * (e[j + 1] - e[j])


def test_a_scheme_of_one_couple_is_the_couple_with_ru_cdl_and_unequal_d():
    wf = sim.cyclic_voltammetry(0.35, -0.35, 0.1, step=1e-3)
    cell = sim.Cell(area=0.07, ru=200.0, cdl=2e-5)
    couple = _couple(k0=0.01, alpha=0.4, d_red=5e-6, c_red=0.2)
    ref = sim.simulate(wf, [couple], cell).current
    scheme = sim.Scheme([sim.Species("O", 1e-5, 1.0), sim.Species("R", 5e-6, 0.2)],
                        [sim.Transfer("O", "R", 0.0, 0.01, 0.4)])
    res = sim.simulate(wf, [scheme], cell)
    assert res.ok, res.problems()
    scale = float(jnp.max(jnp.abs(ref)))
    # The bulk's R is oxidised from t = 0 on (a Cottrell-like start): backward Euler smears its
    # first steps (25 % off at the first), so the comparison starts 10 steps (10 mV) in.
    assert float(jnp.max(jnp.abs(res.current - ref)[10:])) < 5e-3 * scale


def test_named_mechanisms_as_schemes_agree_and_unequal_d_meets_the_catalytic_plateau():
    """CE written as a scheme (``sim.as_scheme``) against the channel solver; EC' with D_red =
    D_ox / 4, which only the scheme solves, against its steady catalytic current: with O(0) = 0 the
    reaction layer gives i = n F A C D_ox sqrt(k / D_red) (D_ox sqrt(k / D_red) = sqrt(D k) when equal)."""
    wf = sim.cyclic_voltammetry(0.3, -0.3, 0.1, step=2e-3)
    ce = sim.CE(_couple(k0=0.05), k_f=jnp.asarray([1.0, 30.0]), k_b=jnp.asarray([10.0, 30.0]))
    ref = sim.simulate(wf, [ce], config=FINE).current
    got = sim.simulate(wf, [sim.as_scheme(ce)], config=FINE).current
    assert float(jnp.max(jnp.abs(got - ref) / jnp.max(jnp.abs(ref), axis=-1, keepdims=True))) < 0.01
    with pytest.raises(ValueError, match="as_scheme"):
        sim.ECcat(_couple(d_red=2.5e-6), k_cat=100.0)
    scheme = sim.Scheme([sim.Species("O", 1e-5, 1.0), sim.Species("R", 2.5e-6)], [sim.Transfer("O", "R", 0.0, 10.0)],
                        [sim.Reaction("R", "O", k_f=100.0)])
    # With unequal D, O + R is not locally conserved and the layer settles slowly (8 % short at 2 s,
    # 1.6 % at 20 s): the steady value is the long-time limit, 0.3 % short at 200 s.
    res = sim.simulate(sim.potential_step(0.3, -0.4, 200.0, n_steps=120, growth=1.08), [scheme],
                       config=sim.SolverConfig(h0=2e-5))
    ratio = -np.asarray(res.current[1:], float) / (sim.FARADAY * 1e-6 * 1e-5 * math.sqrt(100.0 / 2.5e-6))
    assert ratio[-1] == pytest.approx(1.0, abs=0.01)
    assert np.all(np.diff(ratio[20:]) > 0)  # approaching from below


def test_marcus_hush_chidsey_transfer_in_a_scheme_is_the_couples():
    wf = sim.cyclic_voltammetry(0.4, -0.4, 0.1, step=4e-3)
    couple = _couple(k0=1e-3, reorganization=0.5)
    ref = sim.simulate(wf, [couple]).current
    got = sim.simulate(wf, [sim.as_scheme(couple)]).current
    assert float(jnp.max(jnp.abs(got - ref))) < 0.01 * float(jnp.max(jnp.abs(ref)))
    with pytest.raises(ValueError, match="reorganization"):
        sim.Transfer("O", "R", 0.0, 1e-3, reorganization=-1.0)


def test_ec2_peak_moves_rt_ln10_over_3f_per_decade_in_the_pure_kinetic_zone():
    """Dimerisation 2R -> R2 after a reversible transfer: in the pure kinetic zone the reduction
    peak shifts by RT ln10 / 3F = 19.72 mV per decade of lambda = k c RT / F v (Nicholson-Shain /
    Nadjo-Saveant); with the chemistry slow it is the reversible couple's, E0 - 1.109 RT/F. At
    k = 7.8e9 /(M s) (a reaction layer thinner than the grid) it stays finite and non-negative and
    says so."""
    v = 0.1
    lam = np.asarray([1e-3, 1e3, 1e4, 2e6])  # the last: k = 7.8e9 /(M s), a stiffness check
    k = lam / (1e-3 * 1.0 / (F_RT * v))  # c = 1 mM = 1e-3 M
    wf = sim.linear_sweep(0.3, -0.3, v, step=1e-3)
    res = sim.simulate(wf, [sim.EC2(_couple(), k_dim=jnp.asarray(k))], sim.Cell(area=1.0), config=FINE)
    assert bool(jnp.all(jnp.isfinite(res.current))) and float(jnp.min(res.surface_concentration)) >= 0.0
    assert float(jnp.max(res.reaction_layer[:3])) < 0.3 < float(res.reaction_layer[3])  # flagged, not hidden
    e, i = np.asarray(res.potential, float), np.asarray(res.current, float)
    ep = [_peak_potential(e[j], i[j]) for j in range(3)]
    assert ep[0] == pytest.approx(-1.109 / F_RT, abs=1.0e-3)
    assert (ep[2] - ep[1]) * 1e3 == pytest.approx(1e3 * math.log(10) / (3 * F_RT), abs=0.3)


def test_disp1_apparent_n_goes_from_one_to_two():
    """After a potential step, i / Cottrell(n = 1) at the end of the hold: 1 with the rate-limiting
    R -> I slow against the hold, 2 when fast (each O takes 1 + 1/2 + 1/4 ... electrons)."""
    wf = sim.potential_step(0.3, -0.4, 1.0, n_steps=120, growth=1.06)
    kf = jnp.asarray([1e-3, 3.0, 1e2])
    res = sim.simulate(wf, [sim.DISP1(_couple(), k_f=kf, k_d=1e9)], sim.Cell(area=1.0), config=FINE)
    t_end = float(res.time[0, -1])
    cottrell = -sim.FARADAY * 1e-6 * math.sqrt(1e-5 / (math.pi * t_end))
    n_app = np.asarray(res.current[:, -1], float) / cottrell
    assert n_app[0] == pytest.approx(1.0, abs=0.02)
    assert 1.1 < n_app[1] < 1.95
    assert n_app[2] == pytest.approx(2.0, abs=0.03)


def test_matter_and_charge_are_conserved_with_second_order_chemistry():
    """2R -> D tracked (D exposed through a spectator transfer that never runs): the amount
    O + R + 2D in the solution stays what it was, and the charge passed is F A (R + 2D)."""
    wf = sim.cyclic_voltammetry(0.3, -0.3, 0.1, step=2e-3)
    scheme = sim.Scheme([sim.Species(n, 1e-5, 1.0 if n == "O" else 0.0) for n in ("O", "R", "D", "X")],
                        [sim.Transfer("O", "R", 0.0, 0.1, 0.5), sim.Transfer("D", "X", -5.0, 1e-12, 0.5)],
                        [sim.Reaction({"R": 2}, {"D": 1}, k_f=1e5)])
    res = sim.simulate(wf, [scheme], sim.Cell(area=1.0))
    x = np.asarray(res.grid_x, float) * float(res.diffusion_length[0, 0])
    w = np.concatenate([[x[1] / 2], (x[2:] - x[:-2]) / 2, [0.0]])  # control widths; the bulk node has none
    prof = np.asarray(res.final_concentration, float)  # (J, 2, M+1): [O, R], [D, X]
    o, r, d = prof[0, 0], prof[0, 1], prof[1, 0]
    reduced = float(np.sum(w * (r + 2 * d)))
    assert reduced > 1e-4  # mM cm: chemistry and transfer really ran
    assert float(np.sum(w * (o + r + 2 * d))) == pytest.approx(float(np.sum(w)) * 1.0, rel=1e-4)
    t, i = np.asarray(res.time, float), np.asarray(res.current, float)
    charge = -float(np.sum(i[1:] * np.diff(t)))  # backward Euler: each step's current over its step
    assert charge / (sim.FARADAY * 1.0) * 1e6 == pytest.approx(reduced, rel=1e-3)


def test_gradient_through_second_order_chemistry_matches_a_finite_difference():
    wf = sim.potential_step(0.3, -0.1, 1.0, n_steps=40, growth=1.1)

    def peak(ln_k):  # the mean current over the step, uA
        res = sim.simulate(wf, [sim.EC2(_couple(), k_dim=jnp.exp(ln_k))], sim.Cell(area=1.0))
        return jnp.mean(res.current[1:]) * 1e6

    g = float(jax.grad(peak)(jnp.float32(math.log(1e4))))
    fd = (float(peak(jnp.float32(math.log(1e4) + 0.05))) - float(peak(jnp.float32(math.log(1e4) - 0.05)))) / 0.1
    assert g == pytest.approx(fd, rel=0.05) and abs(g) > 1e-3


@pytest.mark.parametrize("build, message", [
    (lambda: sim.Scheme([sim.Species("O", 1e-5, 1.0)], [sim.Transfer("O", "R", 0.0, 1.0)]), "unknown species 'R'"),
    (lambda: sim.Reaction({"R": 3}, "Z", k_f=1.0), "order must be 1 or 2"),
    (lambda: sim.Reaction("R", "Z", k_f=-1.0), "k_f"),
    (lambda: sim.Reaction("R", "R", k_f=1.0), "on both sides"),
    (lambda: sim.Scheme([sim.Species("O", 1e-5, 1.0, charge=1), sim.Species("R", 1e-5, charge=1)],
                        [sim.Transfer("O", "R", 0.0, 1.0)]), "charge not balanced"),
    (lambda: sim.Scheme([sim.Species("O", 1e-5, 1.0), sim.Species("R", 1e-5, 0.5)], [sim.Transfer("O", "R", 0.0, 1.0)],
                        [sim.Reaction("R", (), k_f=1.0)]), "bulk is not at rest"),
    (lambda: sim.Scheme([sim.Species("O", 1e-5, 1.0), sim.Species("O", 1e-5)], [sim.Transfer("O", "R", 0.0, 1.0)]),
     "unique"),
    (lambda: sim.Species("O", -1e-5), "Species O d"),
])
def test_bad_schemes_get_one_line_naming_the_problem(build, message):
    with pytest.raises(ValueError, match=message) as err:
        build()
    assert "\n" not in str(err.value)


def test_radial_scheme_meets_the_microsphere_currents_with_and_without_catalysis():
    """A 5 um sphere after a step to the limiting current: n F A C D (1/r0 + 1/sqrt(pi D t))
    without chemistry (exact for a sphere); with catalysis R -> O at k (k t >> 1) the reaction layer
    replaces the transient, n F A C D (1/r0 + sqrt(k / D))."""
    r0, k, t = 5e-4, jnp.asarray([0.0, 100.0]), 1.0
    scheme = sim.Scheme([sim.Species("O", 1e-5, 1.0), sim.Species("R", 1e-5)], [sim.Transfer("O", "R", 0.0, 10.0)],
                        [sim.Reaction("R", "O", k_f=k)])
    cell = sim.Cell(geometry=sim.Sphere(radius=r0))
    res = sim.simulate(sim.potential_step(0.3, -0.4, t, n_steps=120, growth=1.06), [scheme], cell)
    scale = sim.FARADAY * float(cell.area) * 1e-6 * 1e-5
    want = scale * np.asarray([1 / r0 + 1 / math.sqrt(math.pi * 1e-5 * t), 1 / r0 + math.sqrt(100.0 / 1e-5)])
    np.testing.assert_allclose(-np.asarray(res.current[:, -1], float), want, rtol=0.01)
    # a named first-order mechanism on a sphere goes to the same solver on its own
    cat = sim.simulate(sim.potential_step(0.3, -0.4, t, n_steps=120, growth=1.06),
                       [sim.ECcat(_couple(), k_cat=100.0)], cell)
    assert -float(cat.current[-1]) == pytest.approx(want[1], rel=0.01)


def test_thin_layer_scheme_is_exhaustive_electrolysis():
    """A 10 um layer at 1 mV/s (D T / L^2 = 12,000): i_p = n^2 F^2 v V C / 4RT and the charge n F V C."""
    area, thickness, v = 0.1, 1e-3, 1e-3
    res = sim.simulate(sim.linear_sweep(0.3, -0.3, v, step=1e-3), [sim.as_scheme(_couple(k0=1.0))],
                       sim.Cell(area=area, geometry=sim.ThinLayer(thickness=thickness)))
    amount = area * thickness * 1e-6  # mol in the layer
    peak = sim.FARADAY**2 * v * amount / (4 * sim.GAS_CONSTANT * sim.DEFAULT_TEMPERATURE)
    assert -float(res.current.min()) == pytest.approx(peak, rel=0.01)
    t, i = np.asarray(res.time, float), np.asarray(res.current, float)
    assert -float(np.sum(i[1:] * np.diff(t))) == pytest.approx(sim.FARADAY * amount, rel=1e-3)


def test_rotating_disc_scheme_reaches_levichs_current():
    """1600 rpm, swept slowly past the wave: the plateau is Levich's 0.62045 n F A D^2/3 w^1/2 nu^-1/6 C
    (the plain rotating-disc solver gives 1.004 of it; the scheme's exponentially fitted fluxes 1.007)."""
    omega = 1600 * 2 * math.pi / 60
    cell = sim.Cell(geometry=sim.RotatingDisc(radius=0.25, omega=omega))
    res = sim.simulate(sim.linear_sweep(0.3, -0.3, 0.02, step=4e-3), [sim.as_scheme(_couple())], cell)
    assert res.ok, res.problems()
    levich = 0.62045 * sim.FARADAY * float(cell.area) * 1e-6 * 1e-5 ** (2 / 3) * omega**0.5 * 0.00893 ** (-1 / 6)
    assert -float(res.current[-1]) == pytest.approx(levich, rel=0.01)


def test_a_scheme_is_simulated_alone_and_planar_or_radial():
    wf = sim.linear_sweep(0.3, -0.3, 0.1, step=1e-2)
    scheme = sim.EC2(_couple(), k_dim=1e3)
    with pytest.raises(ValueError, match="on its own"):
        sim.simulate(wf, [scheme, _couple(e0=0.2)])
    with pytest.raises(ValueError, match="planar, radial"):  # a disc's edge makes it two-dimensional
        sim.simulate(wf, [scheme], sim.Cell(geometry=sim.Disc(radius=0.15)))
