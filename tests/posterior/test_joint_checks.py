"""The joint fit says when it is wrong: its model check and its prior-bound warnings, on data
simulated at a finer potential step than the fit uses (no inverse crime)."""

from __future__ import annotations

import numpy as np
import pytest

from ecsfm import io, sim
from ecsfm.posterior import JointConfig, fit_joint, trace_from_measurement

AREA = 0.0707
CFG = dict(n_particles=256, points_per_trace=120)


def _trace(*, alpha=0.5, k0=5e-3, background=0.0, seed=0, v=0.1):
    rng = np.random.default_rng(seed)
    couple = sim.Couple(e0=0.0, k0=k0, alpha=alpha, d_ox=7e-6, d_red=7e-6, c_ox=1.0, c_red=0.0)
    r = sim.simulate(sim.cyclic_voltammetry(0.4, -0.4, v, step=5e-4), [couple], sim.Cell(area=AREA, ru=5.0, cdl=2e-5))
    e, i = np.asarray(r.potential, np.float64), np.asarray(r.current, np.float64)
    peak = np.abs(i).max()
    i = i + background * peak * e / 0.4 + rng.normal(0.0, 0.005 * peak, i.size)
    return trace_from_measurement(io.Measurement(time=np.asarray(r.time, np.float64), potential=e, current=i,
                                                 scan_rate=v, cycle=np.zeros(i.size, int), metadata={}))


def test_the_check_passes_a_fit_of_the_model_class_and_flags_a_sloping_background(stat_seed):
    good = fit_joint([_trace(seed=stat_seed)], area=AREA, c_ox=1.0, config=JointConfig(**CFG), seed=stat_seed)
    assert good["model_check"]["adequate"], good["model_check"]
    # a linear background of 10 % of the peak at the window's ends: no parameter of the cell makes it
    bad = fit_joint([_trace(background=0.1, seed=stat_seed)], area=AREA, c_ox=1.0, config=JointConfig(**CFG),
                    seed=stat_seed)
    mc = bad["model_check"]
    assert not mc["adequate"] and mc["p_value"] < 0.01 and mc["statistic"] > 3, mc


def test_a_bound_that_sets_alpha_is_named_with_the_flag_that_widens_it(stat_seed):
    # alpha = 0.22 lies below the default prior [0.3, 0.7]: the posterior piles against 0.3
    trace = _trace(alpha=0.22, k0=1e-3, seed=stat_seed)
    narrow = fit_joint([trace], area=AREA, c_ox=1.0, config=JointConfig(**CFG), seed=stat_seed)
    hits = [w for w in narrow["warnings"] if w.startswith("alpha:")]
    assert hits and "--prior alpha=LOW:HIGH" in hits[0] and "lower bound 0.3" in hits[0], narrow["warnings"]
    wide = fit_joint([trace], area=AREA, c_ox=1.0, config=JointConfig(**CFG, bounds={"alpha": (0.1, 0.9)}),
                     seed=stat_seed)
    a = wide["parameters"]["alpha"]
    assert a["q025"] <= 0.22 <= a["q975"]
    assert not [w for w in wide["warnings"] if w.startswith("alpha:")]


def test_an_uninformed_alpha_of_a_reversible_couple_draws_no_bound_warning(stat_seed):
    # k0 = 1 cm/s at 0.1 V/s is reversible: alpha does not shape the wave and fills its box
    res = fit_joint([_trace(k0=1.0, seed=stat_seed)], area=AREA, c_ox=1.0, config=JointConfig(**CFG), seed=stat_seed)
    assert not [w for w in res["warnings"] if w.startswith("alpha:")], res["warnings"]


@pytest.mark.parametrize("bounds, word", [({"k0": (0.0, 1.0)}, "> 0"), ({"alpha": (0.7, 0.3)}, "low < high"),
                                          ({"area": (0.1, 1.0)}, "area")])
def test_bad_bounds_are_refused(bounds, word):
    with pytest.raises(ValueError, match=word):
        JointConfig(bounds=bounds)


def test_leaving_one_rate_out_names_the_rate_the_others_do_not_predict(stat_seed):
    from ecsfm.posterior import leave_one_out

    # three rates of one cell, but the fastest recorded with D 40 % higher (a different solution)
    rng_seeds = (stat_seed, stat_seed + 1, stat_seed + 2)
    traces = []
    for v, s, d in zip((0.05, 0.1, 0.2), rng_seeds, (7e-6, 7e-6, 9.8e-6)):
        t = _trace(seed=s, v=v)
        if d != 7e-6:  # rebuild the odd one with its own D
            couple = sim.Couple(e0=0.0, k0=5e-3, alpha=0.5, d_ox=d, d_red=d, c_ox=1.0, c_red=0.0)
            r = sim.simulate(sim.cyclic_voltammetry(0.4, -0.4, v, step=5e-4), [couple],
                             sim.Cell(area=AREA, ru=5.0, cdl=2e-5))
            i = np.asarray(r.current, np.float64)
            i = i + np.random.default_rng(s).normal(0.0, 0.005 * np.abs(i).max(), i.size)
            t = trace_from_measurement(io.Measurement(time=np.asarray(r.time, np.float64),
                                                      potential=np.asarray(r.potential, np.float64), current=i,
                                                      scan_rate=v, cycle=np.zeros(i.size, int), metadata={}))
        traces.append(t)
    loo = leave_one_out(traces, area=AREA, c_ox=1.0, config=JointConfig(n_particles=128, points_per_trace=80),
                        seed=stat_seed)
    assert not loo["adequate"]
    assert max(loo["traces"], key=lambda t: t["statistic"])["scan_rate"] == 0.2
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out(traces[:2], area=AREA, c_ox=1.0)
