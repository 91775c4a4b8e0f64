"""Parameter layout, priors as data, and the task vocabulary."""

import json

import numpy as np
import pytest

from ecsfm import data


def test_layout_matches_design():
    # DESIGN.md: [ln D_ox, ln D_red, C_ox, C_red, E0, ln k0, alpha] x S, then globals.
    for s in (1, 2, 3):
        space = data.ParamSpace(s)
        assert space.size == 7 * s + 3
        for k in range(s):
            assert space.index("e0", k) == 4 * s + k
            assert space.index("ln_k0", k) == 5 * s + k
            assert space.names[space.index("alpha", k)] == f"alpha[{k}]"
        assert space.names[7 * s] == "ln_time_scale"
        assert len(space.units) == len(space.roles) == space.size
        assert set(space.roles) == set(data.ROLES)
    with pytest.raises(ValueError, match="max_species"):
        data.ParamSpace(0)


def test_prior_samples_lie_in_support_with_the_stated_density(stat_seed):
    space = data.ParamSpace(3)
    prior = data.RECIPES["curriculum_multitask"].prior("cv_multispecies", "intermediate")
    rng = np.random.default_rng([0, stat_seed])
    p = prior.sample(rng, 4000, space)
    lp = prior.log_prob(p, space)
    assert np.all(np.isfinite(lp))
    phys = space.to_physical(p)
    act = space.active_couples(p)
    assert np.all(act.sum(1) >= 2)
    assert np.all(phys["c_red"][act] <= phys["c_ox"][act])  # C_red <= C_ox in this recipe
    assert np.all((phys["d_ox"][act] >= 1e-6) & (phys["d_ox"][act] <= 5e-5))
    # Inactive slots hold the documented filler.
    np.testing.assert_allclose(phys["e0"][~act], data.INACTIVE_FILLER["e0"])
    assert np.all(phys["c_ox"][~act] == 0)
    # Log-uniform D: ln D uniform -> its mean is the midpoint of [ln 1e-6, ln 5e-5] (4000 draws,
    # standard error 0.6% of the width: 4 sigma).
    ln_d = p[:, space.block("ln_d_ox")][act]
    mid = 0.5 * (np.log(1e-6) + np.log(5e-5))
    assert abs(ln_d.mean() - mid) < 4 * (np.log(50) / np.sqrt(12)) / np.sqrt(ln_d.size)
    # The density: the log prior of one row is -sum(log widths) - log(#n_active choices) - ...
    one = p[:1].copy()
    one[0, space.index("e0", 0)] = 0.3  # outside +-0.25 V
    assert prior.log_prob(one, space)[0] == -np.inf


def test_log_prob_integrates_to_one_over_its_support(stat_seed):
    # The density of one couple's base vector, integrated numerically over every slot at once (no
    # factor of it assumed): Monte Carlo with points uniform on a box 10 % wider than the support on
    # each side, integral = box volume x mean density. The box comes from the prior's own table
    # (physical bounds; ln slots in ln units; C_red up to its fraction of the largest C_ox).
    # A wrong normalising constant of any slot, or density outside the support, moves the integral.
    space = data.ParamSpace(1)
    prior = data.RECIPES["curriculum_multitask"].prior("cv", "foundation")
    table = prior.to_dict()
    lo, hi = np.empty(space.size), np.empty(space.size)
    for name, d in {**table["species"], **table["globals"]}.items():
        j = space.index(name, 0) if name in table["species"] else space.index(name)
        if d["dist"] == "fraction":
            of = table["species"][d["of"]]
            lo[j], hi[j] = d["low"] * of["low"], d["high"] * of["high"]
        elif name.startswith("ln_"):
            lo[j], hi[j] = np.log(d["low"]), np.log(d["high"])
        else:
            lo[j], hi[j] = d["low"], d["high"]
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    rng = np.random.default_rng([1, stat_seed])
    n = 400_000
    p = lo + (hi - lo) * rng.random((n, space.size))
    f = np.prod(hi - lo) * np.exp(prior.log_prob(p, space))
    integral, se = f.mean(), f.std() / np.sqrt(n)
    assert se < 0.01  # ~0.005: the estimate resolves a wrong constant of 4 % or more
    assert abs(integral - 1.0) < 4 * se, (integral, se)


def test_prior_round_trips_through_json():
    prior = data.RECIPES["stress_mixture"].prior("swv", "stress")
    again = data.PriorSpec.from_dict(json.loads(prior.to_json()))
    assert again == prior
    with pytest.raises(ValueError, match="low, high"):
        data.Dist("uniform", 1.0, 0.0)
    with pytest.raises(ValueError, match="log-uniform"):
        data.Dist("loguniform", -1.0, 1.0)


@pytest.mark.parametrize("target_len", [20, 64, 256, 1000])
def test_periodic_tasks_are_not_aliased(target_len):
    # The sinusoid keeps >= 20 samples per period after resampling to target_len, across the
    # whole frequency range (counted from the resampled potential's zero crossings).
    spec = data.TASKS["eis"]
    template = spec.template(target_len)
    ro = spec.readout(target_len, template)
    e = np.asarray(template.potential)
    e_read = e[ro["i0"]] * (1 - ro["w1"]) + e[ro["i1"]] * ro["w1"]
    crossings = np.sum(np.signbit(e_read[1:]) != np.signbit(e_read[:-1]))
    assert target_len / (crossings / 2) >= data.MIN_SAMPLES_PER_PERIOD - 1  # +-1 crossing at the ends
    assert target_len / spec.n_periods(target_len) >= data.MIN_SAMPLES_PER_PERIOD
    lo, hi = spec.frequency_range(target_len)
    assert np.isclose(hi / lo, spec.time_scale[1] / spec.time_scale[0])
    # Square wave and differential pulse read one sample per period: L periods over the window.
    for name in ("swv", "dpv"):
        ro = data.TASKS[name].readout(target_len, data.TASKS[name].template(target_len))
        assert ro["e"].size == target_len
    with pytest.raises(ValueError, match="target_len"):
        spec.template(19)


def test_pulse_substeps_resolve_the_sampled_currents():
    # The swv/dpv tasks take PULSE_SUBSTEPS graded sub-steps per pulse; their difference current
    # stays within 0.5 % (of its peak) of a 32-sub-step reference, with Ru and Cdl on.
    from ecsfm import sim
    from ecsfm.data._tasks import PULSE_GROWTH, PULSE_SUBSTEPS

    couple = sim.Couple(e0=0.0, k0=1e-2, alpha=0.5, d_ox=1e-5, d_red=1e-5, c_ox=1.0)
    cell = sim.Cell(area=1.0, ru=20.0, cdl=2e-5)
    out = []
    for n, g in ((32, 1.3), (PULSE_SUBSTEPS, PULSE_GROWTH)):
        wf = sim.square_wave_voltammetry(0.5, -0.5, step=1 / 128, amplitude=0.025, frequency=25, n_substeps=n, growth=g)
        out.append(np.asarray(sim.sampled_currents(wf, sim.simulate(wf, couple, cell).current)["difference"]))
    assert np.max(np.abs(out[1] - out[0])) < 5e-3 * np.max(np.abs(out[0]))
