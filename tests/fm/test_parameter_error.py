"""The surrogate's embedded parameter error: its estimator, its sampler, and where it applies."""

import math

import numpy as np
from scipy import stats

from ecsfm.data._recipes import STAGE_NAMES
from ecsfm.data._tasks import TASK_NAMES
from ecsfm.fm.parameter_error import (FORM_VERSION, embed_parameter_error, fit_parameter_error,
                                      parameter_error_sd)
from ecsfm.fm.posterior import ParameterSpace

from .test_posterior import _fake_model_context


def _cv_space():
    layout, meta, geometry, _ = _fake_model_context()
    base = layout.filler()
    base[layout.index("c_ox", 0)] = 1.25
    base[layout.index("ln_time_scale")] = math.log(20.0)
    core = np.concatenate([base, np.eye(len(TASK_NAMES))[TASK_NAMES.index("cv")],
                           np.eye(len(STAGE_NAMES))[STAGE_NAMES.index("intermediate")]])
    known = np.zeros(core.size, bool)
    known[layout.size:] = True
    space = ParameterSpace(meta, core, known, geometry)
    centre = space.to_raw(np.zeros((1, space.dim)))[0]  # every box's midpoint (C_red: half its fraction box)
    width = space.highs[space.free] - space.lows[space.free]
    frac = space.frac_of[space.free] >= 0
    width[frac] *= centre[space.frac_of[space.free][frac]]
    return space, centre, width


def test_fit_recovers_a_known_error_sd_from_errors_and_posterior_sds():
    # For a calibrated posterior the mean's squared error averages its variance; an extra error of
    # sd s adds s^2. Rows with known s per (task, parameter) -- couple indices pooled -- must give s
    # back, and 0 where there is none (dropping the posterior variance would give ~0.4 there).
    rng = np.random.default_rng(0)
    truth = {("cv", "e0"): 0.0, ("cv", "ln_k0"): 0.3, ("swv", "e0"): 0.8}
    rows = []
    for (task, kind), s in truth.items():
        for k in range(3000):
            sd = rng.uniform(0.1, 0.6)
            rows.append({"task": task, "kind": kind, "err": float(rng.normal(0.0, math.hypot(sd, s))), "sd": sd})
    fit = fit_parameter_error(rows)
    for (task, kind), s in truth.items():
        assert abs(fit[task][kind] - s) < (0.06 if s else 0.1), (task, kind, fit[task][kind], s)


def test_lookup_applies_only_to_the_calibrated_task_method_and_form():
    meta = {"parameter_error": {"form_version": FORM_VERSION, "method": "cem",
                                "per_task": {"cv": {"e0": 0.5, "ln_k0": 0.25}}}}
    names = ["e0[0]", "e0[1]", "ln_k0[1]", "alpha[0]"]
    assert np.allclose(parameter_error_sd(meta, "cv", "cem", names), [0.5, 0.5, 0.25, 0.0])
    assert parameter_error_sd(meta, "cv", "smc", names) is None
    assert parameter_error_sd(meta, "swv", "cem", names) is None
    assert parameter_error_sd({}, "cv", "cem", names) is None
    old = {"parameter_error": dict(meta["parameter_error"], form_version=FORM_VERSION - 1)}
    assert parameter_error_sd(old, "cv", "cem", names) is None


def test_embedding_adds_the_error_variance_inside_the_prior_box():
    # Sampler particles N(centre, s^2) per free slot, far from every edge; the embedded posterior of
    # p = q + eps, eps ~ N(0, e^2), is N(centre, s^2 + e^2) (the prior is flat there; C_red's
    # density, 1 / (C_ox x fraction width), tilts it by a negligible amount).
    space, centre, width = _cv_space()
    rng = np.random.default_rng(1)
    n = 4000
    s, e = 0.03 * width, 0.04 * width
    q = np.tile(centre, (n, 1))
    q[:, space.free] += rng.standard_normal((n, space.dim)) * s
    draws, w, parent = embed_parameter_error(space, q, np.full(n, 1.0 / n), e, rng)
    assert draws.shape[0] >= 4096 and np.all(np.bincount(parent) == draws.shape[0] // n)
    known = np.setdiff1d(np.arange(centre.size), space.free)
    assert np.array_equal(draws[:, known], q[parent][:, known])  # known slots never move
    m = w @ draws[:, space.free]
    var = w @ (draws[:, space.free] - m) ** 2
    sd = np.sqrt(s**2 + e**2)
    assert np.all(np.abs(m - centre[space.free]) < 5 * sd / math.sqrt(n)), (m, centre[space.free])
    assert np.all(np.abs(var / sd**2 - 1.0) < 0.08), var / sd**2


def test_embedding_at_a_prior_edge_keeps_the_effective_parameter_in_the_box():
    # One particle at the lower edge of ln k0's box plus half an error sd. The surrogate's effective
    # parameter q is kept in its training box: q | p ~ N(p, e^2) restricted to the box, so the
    # embedded posterior of p is proportional to N(q0; p, e^2) / Z(p) on the box, Z(p) the
    # Gaussian's mass in it. Its mean and sd by quadrature; draws outside the box carry no weight.
    from scipy import integrate

    space, centre, width = _cv_space()
    j = list(space.free).index(space.layout.index("ln_k0", 0))
    lo, hi = space.lows[space.free][j], space.highs[space.free][j]
    e = np.zeros(space.dim)
    e[j] = 0.05 * width[j]
    q = centre.copy()
    q0 = q[space.free[j]] = lo + 0.5 * e[j]
    draws, w, _ = embed_parameter_error(space, q[None], np.ones(1), e, np.random.default_rng(2), min_draws=20000)
    x = draws[:, space.free[j]]
    assert np.all(x[w > 0] >= lo) and abs(np.mean(w == 0) - stats.norm.cdf(-0.5)) < 0.02

    def density(p):
        return stats.norm.pdf(q0, p, e[j]) / (stats.norm.cdf(hi, p, e[j]) - stats.norm.cdf(lo, p, e[j]))

    top = q0 + 8 * e[j]
    z = integrate.quad(density, lo, top)[0]
    mean = integrate.quad(lambda p: p * density(p), lo, top)[0] / z
    sd = math.sqrt(integrate.quad(lambda p: (p - mean) ** 2 * density(p), lo, top)[0] / z)
    n_eff = 1.0 / np.sum(w**2)
    assert abs(w @ x - mean) < 5 * sd / math.sqrt(n_eff), (w @ x, mean)
    assert abs(math.sqrt(w @ (x - w @ x) ** 2) - sd) < 5 * sd / math.sqrt(2 * n_eff)
    others = np.delete(space.free, j)
    assert np.array_equal(draws[:, others], np.broadcast_to(q[others], (x.size, others.size)))


def test_embedding_leaves_a_posterior_as_flat_as_its_prior_flat():
    # A flat likelihood: the sampler's particles are prior draws; the embedded posterior must be
    # the prior again (no thinning at the box's edges), here checked by the slots' sds against
    # the uniform box's width / sqrt(12) and by the mass in the outer tenths of each box.
    space, centre, width = _cv_space()
    rng = np.random.default_rng(3)
    n = 20000
    u = rng.uniform(size=(n, space.dim))
    q = space.to_raw(np.log(u) - np.log1p(-u))
    draws, w, _ = embed_parameter_error(space, q, np.full(n, 1.0 / n), 0.1 * width, rng, min_draws=n)
    box = ~(space.frac_of[space.free] >= 0)
    x = draws[:, space.free[box]]
    lo, hi = space.lows[space.free][box], space.highs[space.free][box]
    sd = np.sqrt(w @ (x - w @ x) ** 2)
    assert np.all(np.abs(sd / ((hi - lo) / math.sqrt(12)) - 1) < 0.03), sd / ((hi - lo) / math.sqrt(12))
    rel = (x - lo) / (hi - lo)
    outer = w @ ((rel < 0.1) | (rel > 0.9))
    assert np.all(np.abs(outer - 0.2) < 0.02), outer
