"""Mechanisms (sim.EC, ECcat, CE, ECE, Surface with Langmuir or Frumkin isotherms) against the literature's limits and invariants."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecsfm import sim

F, R, T = 96485.33212, 8.314462618, 298.15
FRT = F / (R * T)
D = 1e-5


def _couple(**kw):
    return sim.Couple(**{"e0": 0.0, "k0": 1.0, "alpha": 0.5, "d_ox": D, "d_red": D, "c_ox": 1.0, "c_red": 0.0} | kw)


@pytest.fixture(scope="module")
def cv():
    return sim.cyclic_voltammetry(0.3, -0.3, scan_rate=0.1, step=1e-3)


def test_without_chemistry_every_mechanism_is_the_plain_couple(cv):
    # k = 0 leaves the couple alone: the channel solver must give the plain solver's current.
    ref = np.asarray(sim.simulate(cv, [_couple()]).current)
    for mech in (sim.EC(_couple(), k_f=0.0), sim.ECcat(_couple(), k_cat=0.0)):
        got = np.asarray(sim.simulate(cv, [mech]).current)
        np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max(), err_msg=type(mech).__name__)


def test_ec_peak_shifts_30_mv_per_decade_in_the_pure_kinetic_zone_and_is_reversible_when_slow(cv):
    # Nicholson-Shain: for an irreversible follow-up reaction with lambda = k RT / (F v) >> 1 the
    # cathodic peak moves by (RT / 2F) ln 10 = 29.6 mV per decade of k, positive; at lambda << 1
    # the reversible couple's peak, E0 - 28.5 mV, and the anodic return peak survive.
    peaks = {}
    for k in (100.0, 1000.0, 0.01):
        res = sim.simulate(cv, [sim.EC(_couple(), k_f=k)])
        i, e = np.asarray(res.current), np.asarray(res.potential)
        half = i.size // 2
        j = int(np.argmin(i[:half]))
        # the peak to 0.1 mV: a parabola through the three samples around it
        y0, y1, y2 = i[j - 1 : j + 2]
        peaks[k] = e[j] + (e[j + 1] - e[j]) * 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
        if k == 0.01:
            assert i[half:].max() > 0.5 * abs(i[:half].min())  # the return peak is there
    shift = peaks[1000.0] - peaks[100.0]
    assert abs(shift - math.log(10) / (2 * FRT)) < 1.5e-3, shift
    assert abs(peaks[0.01] - (-0.0285)) < 1.5e-3, peaks[0.01]


def test_catalytic_plateau_is_nfac_sqrt_dk(cv):
    # EC' with k_cat T >> 1: an S-shaped steady current i = n F A C sqrt(D k_cat) (within 2 %).
    for k in (10.0, 100.0):
        res = sim.simulate(cv, [sim.ECcat(_couple(), k_cat=k)])
        plateau = -float(res.current[np.argmin(np.asarray(res.potential))])
        want = F * 1.0 * 1e-6 * math.sqrt(D * k)
        assert abs(plateau / want - 1) < 0.02, (k, plateau / want)


def test_ece_apparent_electrons_go_from_one_to_two_with_k():
    # A step to a potential where both transfers are diffusion-limited: Cottrell's current with
    # n_app electrons. Slow follow-up: n_app -> 1; fast: -> 2; in between, in between and growing.
    wf = sim.potential_step(0.6, -0.5, duration=1.0, n_steps=200, growth=1.04)
    first, second = _couple(), _couple(e0=0.3, c_ox=0.0)
    t = np.asarray(wf.time)
    late = t > 0.5
    cottrell = F * 1e-6 * np.sqrt(D / (math.pi * t[late]))
    n_app = []
    for k in (1e-3, 3.0, 1e3):
        i = -np.asarray(sim.simulate(wf, [sim.ECE(first, second, k_f=k)]).current)[late]
        n_app.append(float(np.median(i / cottrell)))
    assert abs(n_app[0] - 1) < 0.01 and abs(n_app[2] - 2) < 0.02 and 1.05 < n_app[1] < 1.95, n_app
    assert n_app[0] < n_app[1] < n_app[2]


def test_ece_conserves_matter_and_its_charge_counts_both_electrons(cv):
    """O1 -> R1 -> O2 -> R2 destroys nothing: the amount O1 + R1 + O2 + R2 in the solution stays the
    bulk's, and the charge passed is F A (R1 + O2 + 2 R2) (one electron for each O1 that reacted,
    a second for each R2), both from the final profiles."""
    res = sim.simulate(cv, [sim.ECE(_couple(), _couple(e0=0.2, c_ox=0.0), k_f=3.0)])
    x = np.asarray(res.grid_x, float) * float(res.diffusion_length[0, 0])
    w = np.concatenate([[x[1] / 2], (x[2:] - x[:-2]) / 2, [0.0]])  # control widths; the bulk node has none
    prof = np.asarray(res.final_concentration, float)  # (2 transfers, [ox, red], nodes)
    o1, r1, o2, r2 = prof[0, 0], prof[0, 1], prof[1, 0], prof[1, 1]
    assert float(np.sum(w * r2)) > 1e-4  # the second transfer really ran
    assert float(np.sum(w * (o1 + r1 + o2 + r2))) == pytest.approx(float(np.sum(w)), rel=1e-3)
    t, i = np.asarray(res.time, float), np.asarray(res.current, float)
    charge = -float(np.trapezoid(i, t))
    assert charge / F * 1e6 == pytest.approx(float(np.sum(w * (r1 + o2 + 2 * r2))), rel=5e-3)


def test_ce_current_at_a_limiting_step_is_kouteckys_kinetic_current():
    # CE with K = k_f / k_b << 1 and a fast equilibrium, stepped to where O is diffusion-limited:
    # the current is limited by Y -> O in a reaction layer, i = n F A C K sqrt(D k) exp(g^2) erfc(g)
    # with k = k_f + k_b and g = K sqrt(k t) (Koutecky), not Cottrell's for the total C.
    from scipy.special import erfcx

    wf = sim.potential_step(0.4, -0.6, duration=1.0, n_steps=200, growth=1.04)
    k_f, k_b = 10.0, 1e4
    res = sim.simulate(wf, [sim.CE(_couple(), k_f=k_f, k_b=k_b)])
    t = np.asarray(wf.time)
    late = t > 0.02
    k_eq, k = k_f / k_b, k_f + k_b
    want = F * 1e-6 * k_eq * math.sqrt(D * k) * erfcx(k_eq * np.sqrt(k * t[late]))
    got = -np.asarray(res.current)[late]
    assert np.max(np.abs(got / want - 1)) < 0.02, np.max(np.abs(got / want - 1))
    assert not res.problems()


def test_convection_levels_off_at_the_nernst_layers_current_and_starts_as_cottrell():
    # Renewal from the bulk at D / delta^2: steady current n F A D C / delta (within 1 % at t = 10
    # delta^2 / D); at t << delta^2 / D the planar Cottrell current (within 1 %).
    delta = 0.01  # cm: delta^2 / D = 10 s
    wf = sim.potential_step(0.4, -0.6, duration=100.0, n_steps=300, growth=1.03)
    i = -np.asarray(sim.simulate(wf, [sim.Convection(_couple(), delta=delta)]).current)
    t = np.asarray(wf.time)
    assert abs(i[-1] / (F * 1e-6 * D / delta) - 1) < 0.01
    early = (t > 1e-3) & (t < 2e-2)
    np.testing.assert_allclose(i[early], F * 1e-6 * np.sqrt(D / (math.pi * t[early])), rtol=0.01)


def test_surface_wave_peak_charge_and_laviron_irreversible_limit():
    # Reversible surface couple: ip = n^2 F^2 v A G / 4RT (within 1 %), both peaks at E0 (dEp = 0 to
    # the step), the charge under the cathodic sweep n F A G. Slow (Laviron's irreversible limit):
    # Epc = E0 - (RT / a n F) ln(a n F v / (RT k_s)), within 2 mV.
    v, gamma = 0.1, 1e-10
    wf = sim.cyclic_voltammetry(0.5, -0.5, scan_rate=v, step=5e-4)
    e = np.asarray(wf.potential)
    half = e.size // 2
    res = sim.simulate(wf, [sim.Surface(e0=0.0, k0=1e6, alpha=0.5, gamma=gamma)])
    i = np.asarray(res.current)
    ip = F * F * v * gamma / (4 * R * T)
    assert abs(-i[:half].min() / ip - 1) < 0.01 and abs(i[half:].max() / ip - 1) < 0.01
    assert abs(e[np.argmin(i[:half])]) <= 5e-4 and abs(e[half + np.argmax(i[half:])]) <= 5e-4
    charge = -np.trapezoid(i[:half], np.asarray(res.time)[:half])
    assert abs(charge / (F * gamma) - 1) < 1e-3
    for k_s in (0.01, 0.1):
        i = np.asarray(sim.simulate(wf, [sim.Surface(e0=0.0, k0=k_s, alpha=0.5, gamma=gamma)]).current)
        want = -math.log(0.5 * FRT * v / k_s) / (0.5 * FRT)
        assert abs(e[np.argmin(i[:half])] - want) < 2e-3, (k_s, e[np.argmin(i[:half])], want)


def test_frumkin_isotherm_peak_width_and_charge_and_its_kinetics_at_g_to_zero():
    """Reversible Frumkin wave, from the isotherm nf(E - E0) = ln((1-x)/x) + G(2x - 1) (x reduced):
    ip = n^2 F^2 v A Gamma / RT(4 - 2G) (1 %), the width at half height where x(1-x) = 1/(8 - 2G)
    (to the 0.5 mV step), the charge n F A Gamma (1e-3). With G -> 0 the nonlinear (bisection and
    Newton, backward Euler) step is the exact Langmuir relaxation to within 1 % of the peak."""
    v, gamma, g = 0.1, 1e-10, np.asarray([-1.0, 1.0, 1.5])
    wf = sim.cyclic_voltammetry(0.4, -0.4, scan_rate=v, step=5e-4)
    e = np.asarray(wf.potential)
    half = e.size // 2
    res = sim.simulate(wf, [sim.Surface(e0=0.0, k0=1e6, alpha=0.5, gamma=gamma, interaction=g)])
    for j, gj in enumerate(g):
        i = -np.asarray(res.current[j, :half], float)
        assert abs(i.max() / (F * F * v * gamma / (R * T * (4 - 2 * gj))) - 1) < 0.01, gj
        x = np.sort(np.roots([1.0, -1.0, 1.0 / (8 - 2 * gj)]).real)
        width = abs(np.diff((np.log((1 - x) / x) + gj * (2 * x - 1)) / FRT))[0]
        above = e[:half][i >= i.max() / 2]
        assert abs(above.max() - above.min() - width) <= 1e-3, (gj, above.max() - above.min(), width)
        assert abs(np.sum(i[1:] * np.diff(np.asarray(res.time[j, :half]))) / (F * gamma) - 1) < 1e-3
    slow = [sim.simulate(wf, [sim.Surface(e0=0.0, k0=0.05, alpha=0.5, gamma=gamma, interaction=x)]).current
            for x in (0.0, 1e-6)]
    assert float(jnp.max(jnp.abs(slow[1] - slow[0]))) < 0.01 * float(jnp.max(jnp.abs(slow[0])))


def test_stiff_chemistry_stays_finite_and_non_negative_and_says_the_layer_is_unresolved(cv):
    res = sim.simulate(cv, [sim.EC(_couple(), k_f=1e8), sim.ECcat(_couple(e0=-0.1), k_cat=1e8)])
    assert bool(jnp.all(jnp.isfinite(res.current)))
    assert float(jnp.min(res.surface_concentration)) > -1e-6
    assert any("reaction layer" in p for p in res.problems())


def test_mechanisms_batch_natively_match_vmap_differentiate_and_take_ru_and_cdl(cv):
    ks = jnp.asarray([1.0, 10.0, 100.0])
    cell = sim.Cell(ru=50.0, cdl=2e-5)
    native = sim.simulate(cv, [sim.EC(_couple(), k_f=ks)], cell).current
    mapped = jax.vmap(lambda k: sim.simulate(cv, [sim.EC(_couple(), k_f=k)], cell).current)(ks)
    np.testing.assert_allclose(np.asarray(native), np.asarray(mapped), rtol=1e-4, atol=1e-9)
    j = 300  # on the rise of the cathodic wave (E = 0 V)
    current = lambda k: -sim.simulate(cv, [sim.EC(_couple(), k_f=k)], cell).current[j]  # noqa: E731
    g = float(jax.grad(current)(10.0))
    fd = (float(current(10.5)) - float(current(9.5))) / 1.0
    assert g > 0 and abs(g / fd - 1) < 0.01, (g, fd)


@pytest.mark.parametrize("build, message", [
    (lambda: sim.EC(_couple(c_red=0.5), k_f=1.0), "c_red must be 0"),
    (lambda: sim.EC(_couple(), k_f=-1.0), "k_f"),
    (lambda: sim.ECcat(_couple(d_red=2e-5), k_cat=1.0), "d_ox"),
    (lambda: sim.ECE(_couple(), _couple(d_ox=3e-5), k_f=1.0), "first.d_red"),
    (lambda: sim.Surface(e0=0.0, k0=1.0, alpha=0.5, gamma=0.0), "gamma"),
    (lambda: sim.Surface(e0=0.0, k0=1.0, alpha=0.5, gamma=1e-10, interaction=2.5), "Frumkin"),
    (lambda: sim.EC("O", k_f=1.0), "must be a Couple"),
])
def test_bad_mechanisms_say_what_is_wrong_in_one_line(build, message):
    with pytest.raises(ValueError, match=message) as info:
        build()
    assert "\n" not in str(info.value)


def test_marcus_hush_chidsey_rates_are_chidseys_integral_and_obey_detailed_balance():
    # ln(k_red / k0) from the solver's quadrature against scipy's adaptive quadrature of
    # int exp(-(x - L - eta)^2 / 4L) / (1 + e^x) dx, normalised at eta = 0; k_ox / k_red = e^eta.
    from scipy.integrate import quad

    from ecsfm.sim._network import _log_rates, _mhc_log_k

    def chidsey(big_l, eta):
        f = lambda x: math.exp(-((x - big_l - eta) ** 2) / (4 * big_l)) / (1 + math.exp(x))  # noqa: E731
        return quad(f, -60 - 20 * math.sqrt(big_l) - abs(eta), 60, points=[0.0, big_l + eta], limit=400)[0]

    eta = jnp.asarray([-12.0, -4.0, 0.0, 3.0, 9.0])
    for lam_ev in (0.3, 1.0):
        big_l = jnp.full_like(eta, lam_ev * FRT)
        log_ox, log_red = _log_rates(eta, 0.5, big_l, _mhc_log_k(big_l, big_l))
        want = [math.log(chidsey(lam_ev * FRT, float(x)) / chidsey(lam_ev * FRT, 0.0)) for x in eta]
        np.testing.assert_allclose(np.asarray(log_red), want, atol=2e-3)
        np.testing.assert_allclose(np.asarray(log_ox - log_red), np.asarray(eta), atol=2e-3)


def test_marcus_hush_chidsey_reduces_to_butler_volmer_at_large_lambda_and_keeps_nernst_when_fast():
    cv = sim.cyclic_voltammetry(0.5, -0.5, scan_rate=0.1, step=1e-3)

    def wave(**kw):
        return np.asarray(sim.simulate(cv, [_couple(**kw)]).current)

    slow_bv, slow_mhc = wave(k0=1e-3), wave(k0=1e-3, reorganization=20.0)
    np.testing.assert_allclose(slow_mhc, slow_bv, atol=5e-3 * np.abs(slow_bv).max())
    fast_bv, fast_mhc = wave(k0=10.0), wave(k0=10.0, reorganization=0.3)
    np.testing.assert_allclose(fast_mhc, fast_bv, atol=5e-3 * np.abs(fast_bv).max())
    # a small lambda bends the Tafel line: the slow wave is lower and broader than Butler-Volmer's
    assert wave(k0=1e-3, reorganization=0.2)[: cv.potential.size // 2].min() > 0.95 * slow_bv.min()
