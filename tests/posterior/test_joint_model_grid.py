"""Several traces of one cell on the model's protocol (``infer_joint_posterior``).

The joint likelihood is the product of the traces' likelihoods. Exact invariant: two identical
traces with noise sd s carry the likelihood of one trace with noise s / sqrt(2) (up to a
constant, which the normalised weights do not see), so with the same seed the two inferences
draw the same particles and must give the same weights and posterior. Traces at two time scales
(scan rates) of one simulated cell: the joint posterior holds the truth and its precision is the
sum of the traces' precisions (independent data, near-Gaussian posteriors); cores that differ outside the protocol slots are refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecsfm.data import ParamSpace
from ecsfm.data._tasks import TASKS
from ecsfm.fm import load_surrogate
from ecsfm.posterior import (CEMPosteriorConfig, PosteriorInferenceConfig, infer_joint_posterior,
                                infer_parameter_posterior)
from ecsfm.fm import default_assets


@pytest.fixture(scope="module")
def shipped():
    return load_surrogate(default_assets()[0].parent)


def _case(shipped, time_scale: float):
    """A one-couple cv core (E0 and ln k0 unknown, the rest known) and its simulated current."""
    _, _, meta, geometry = shipped
    space = ParamSpace(int(geometry["max_species"]))
    tasks, stages = meta["task_names"], meta["stage_names"]
    base = space.filler()
    for name, value in (("c_ox", 1.0), ("c_red", 0.0), ("e0", 0.03), ("ln_k0", math.log(0.01)), ("alpha", 0.5),
                        ("ln_d_ox", math.log(1e-5)), ("ln_d_red", math.log(1e-5))):
        base[space.index(name, 0)] = value
    base[space.index("ln_ru")] = math.log(1.0)
    base[space.index("ln_cdl")] = math.log(2e-6)
    base[space.index("ln_time_scale")] = math.log(time_scale)
    core = np.concatenate([base, np.eye(len(tasks))[tasks.index("cv")], np.eye(len(stages))[stages.index("intermediate")]])
    kmask = np.ones(core.size, bool)
    kmask[[space.index("e0", 0), space.index("ln_k0", 0)]] = False
    length = int(geometry["target_len"])
    template = TASKS["cv"].template(length)
    ro = TASKS["cv"].readout(length, template)
    e = np.interp(ro["tau"], np.asarray(template.grid.tau), np.asarray(template.potential))
    return core, kmask, e


def _simulated(shipped, core, noise: float, seed: int):
    """The simulator engine's current at the truth (the posterior's own forward) plus noise."""
    from ecsfm.posterior.engines import simulator_forward as _simulator_engine

    _, _, meta, geometry = shipped
    layout = ParamSpace(int(geometry["max_species"]))
    forward = _simulator_engine(meta, geometry, "cv", layout.active_couples(core[: layout.size]))
    clean = np.asarray(forward(np.asarray(core[None], np.float32))[0][0], np.float64)
    return clean + np.random.default_rng(seed).normal(0.0, noise, clean.size)


def _infer(shipped, obs, cores, kmask, e, noise, n_particles=256):
    model, normalizers, meta, geometry = shipped
    cfg = PosteriorInferenceConfig(obs_noise_std=noise, engine="simulator", method="cem",
                                   cem=CEMPosteriorConfig(n_particles=n_particles))
    return infer_joint_posterior(model=model, normalizers=normalizers, geometry=geometry, observed_currents=obs,
                                 applied_signals=[e] * len(obs), known_p_cores=cores, known_p_mask=kmask,
                                 config=cfg, seed=3, meta=meta)


def test_two_identical_traces_are_one_trace_with_half_the_noise_variance(shipped, stat_seed):
    core, kmask, e = _case(shipped, 10.0)
    obs = _simulated(shipped, core, 0.002, seed=stat_seed)
    joint = _infer(shipped, [obs, obs], [core, core], kmask, e, 0.002)
    model, normalizers, meta, geometry = shipped
    single = infer_parameter_posterior(
        model=model, normalizers=normalizers, geometry=geometry, observed_current=obs, applied_signal=e,
        known_p_core=core, known_p_mask=kmask, seed=3, meta=meta,
        config=PosteriorInferenceConfig(obs_noise_std=0.002 / math.sqrt(2), engine="simulator", method="cem",
                                        cem=CEMPosteriorConfig(n_particles=256)))
    np.testing.assert_allclose(joint["posterior_weights"], single["posterior_weights"], atol=2e-3)
    np.testing.assert_allclose(joint["posterior_mean_raw"], single["posterior_mean_raw"], rtol=1e-4, atol=1e-6)
    assert np.asarray(joint["predictive_mean_current"]).shape == (2, obs.size) and joint["n_traces"] == 2
    np.testing.assert_allclose(joint["predictive_mean_current"][1], single["predictive_mean_current"], atol=1e-5)


def test_a_scan_rate_series_adds_the_traces_precisions_and_holds_the_truth(shipped, stat_seed):
    noise = 0.002
    cores, obs, sds, e = [], [], [], None
    for k, time_scale in enumerate((40.0, 4.0)):  # 0.05 and 0.5 V/s
        core, kmask, e = _case(shipped, time_scale)
        cores.append(core)
        obs.append(_simulated(shipped, core, noise, seed=[stat_seed, 10 + k]))
        alone = _infer(shipped, [obs[-1]], [core], kmask, e, noise)
        sds.append(np.asarray(alone["posterior_std_raw"], np.float64))
    joint = _infer(shipped, obs, cores, kmask, e, noise)
    layout = ParamSpace(int(shipped[3]["max_species"]))
    for name, k in (("e0", 0), ("ln_k0", 0)):
        i = layout.index(name, k)
        mean, sd = float(joint["posterior_mean_raw"][i]), float(joint["posterior_std_raw"][i])
        assert abs(mean - cores[0][i]) < 4 * sd, (name, mean, sd, cores[0][i])
        # Independent traces of a well-identified (near-Gaussian) posterior add precisions:
        # 1 / sd^2 = 1 / sd_1^2 + 1 / sd_2^2 (each sd from ~200 effective draws: +-15 %).
        expected = 1.0 / math.sqrt(sum(1.0 / s[i] ** 2 for s in sds))
        assert abs(sd / expected - 1) < 0.15, (name, sd, expected, [s[i] for s in sds])
    assert joint["ess"] > 20


def test_traces_of_a_joint_fit_must_share_everything_but_the_protocol(shipped):
    core, kmask, e = _case(shipped, 10.0)
    other = core.copy()
    other[ParamSpace(int(shipped[3]["max_species"])).index("alpha", 0)] = 0.6
    obs = np.zeros(e.size)
    with pytest.raises(ValueError, match=r"known_p_cores\[1\].*outside the protocol"):
        _infer(shipped, [obs, obs], [core, other], kmask, e, 0.01)
    with pytest.raises(ValueError, match="one of each per trace"):
        _infer(shipped, [obs, obs], [core], kmask, e, 0.01)



def test_a_trace_outside_the_models_time_scales_is_named_in_a_warning(shipped):
    model, normalizers, meta, geometry = shipped
    inside, kmask, e = _case(shipped, 10.0)
    outside, _, _ = _case(shipped, 2000.0)  # the cv prior spans 2-200 s
    obs = np.zeros(e.size)
    cfg = PosteriorInferenceConfig(obs_noise_std=0.01, engine="surrogate", method="cem",
                                   cem=CEMPosteriorConfig(n_particles=4, n_iterations=1, n_newton=0))
    res = infer_joint_posterior(model=model, normalizers=normalizers, geometry=geometry, observed_currents=[obs, obs],
                                applied_signals=[e, e], known_p_cores=[inside, outside], known_p_mask=kmask,
                                config=cfg, meta=meta)
    named = [w for w in res["warnings"] if "outside the model's prior" in w]
    assert len(named) == 1 and named[0].startswith("trace 1: time scale 2e+03 s"), res["warnings"]
