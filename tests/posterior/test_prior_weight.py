"""The calibrated prior weight in the surrogate's posteriors: its fit, its mixture, where it applies."""

import math

import numpy as np
from scipy.special import ndtr, ndtri

from ecsfm.data._recipes import STAGE_NAMES
from ecsfm.data._tasks import TASK_NAMES
from ecsfm.posterior.calibrate import _band_two_fold_check
from ecsfm.posterior.prior_weight import (FORM_VERSION, central_interval_coverage, contaminate, crps_terms, fit_band_scale,
                                          fit_prior_weight, gaussian_crps, predictive_band_scale, prior_weight)
from ecsfm.posterior import ParameterSpace

from .test_inference import _fake_model_context


def _space(task="cv", couples=1):
    layout, meta, geometry, _ = _fake_model_context()
    base = layout.filler()
    for k in range(couples):
        base[layout.index("c_ox", k)] = 1.25
    base[layout.index("ln_time_scale")] = math.log(20.0)
    core = np.concatenate([base, np.eye(len(TASK_NAMES))[TASK_NAMES.index(task)],
                           np.eye(len(STAGE_NAMES))[STAGE_NAMES.index("intermediate")]])
    known = np.zeros(core.size, bool)
    known[layout.size:] = True
    return ParameterSpace(meta, core, known, geometry)


def _box_normal(rng, centre: float, s: float, n: int) -> np.ndarray:
    """n draws of N(centre, s^2) truncated to [0, 1] (inverse CDF)."""
    lo, hi = ndtr((0.0 - centre) / s), ndtr((1.0 - centre) / s)
    return centre + s * ndtri(lo + (hi - lo) * rng.uniform(size=n))


def _rows(rng, n_cases: int, lost: float, s: float = 0.05):
    """CRPS pieces of 1-D cases: truth ~ U(0, 1) (the prior), datum x = truth + s xi; the posterior
    is the exact one, N(x, s^2) truncated to the box (so the truths are calibrated against it), or,
    with probability ``lost``, a posterior as sharp somewhere else in the box."""
    rows, u = [], []
    x0 = rng.uniform(size=256)
    for _ in range(n_cases):
        t = rng.uniform()
        centre = rng.uniform() if rng.uniform() < lost else t + s * rng.standard_normal()
        x = _box_normal(rng, centre, s, 128)
        rows.append(crps_terms(x, np.ones(x.size), x0, t))
        u.append((np.mean(x < t), np.mean(x0 < t)))
    return rows, np.asarray(u)


def test_fitted_weight_is_zero_for_calibrated_posteriors_and_grows_with_lost_ones(stat_seed):
    # A proper score's optimum: no prior weight when every posterior is the exact one (any
    # mixture with the prior scores worse in expectation); a weight that grows with the fraction of
    # lost posteriors, short of the prior alone (which is calibrated but not sharp), and that
    # moves interval coverage toward nominal.
    rng = np.random.default_rng([0, stat_seed])
    rows, _ = _rows(rng, 300, 0.0)
    # The fitted weight is the clipped minimiser -lin / (2 quad) of the mean score; at a true
    # optimum of 0 its sampling sd is sd(lin per case) / sqrt(n) / (2 quad): 4 of them.
    lin = np.asarray([r["b"] - r["a"] + r["A"] - r["C"] for r in rows])
    quad = -0.5 * np.mean([r["A"] + r["B"] - 2 * r["C"] for r in rows])
    se = float(np.std(lin)) / math.sqrt(len(rows)) / (2 * quad)
    assert fit_prior_weight(rows) <= 4 * se, (fit_prior_weight(rows), se)
    fitted = []
    for lost in (0.1, 0.4, 0.7):
        rows, u = _rows(rng, 300, lost)
        w = fit_prior_weight(rows)
        fitted.append(w)
        miss = [sum(abs(c - m) for c, m in zip(central_interval_coverage(v), (0.6827, 0.9545)))
                for v in (u[:, 0], (1 - w) * u[:, 0] + w * u[:, 1])]
        assert miss[1] < miss[0], (lost, w, miss)
    # Measured over 40 seeds: 0.10 (sd 0.030), 0.39 (0.043), 0.70 (0.044); neighbours' differences
    # 0.30 (sd 0.051) and 0.31 (sd 0.069), both more than 4 sd from 0. (The exact posteriors' weight
    # above: mean 0.0025, positive in half the seeds, as a clipped estimate of 0 should be.)
    assert 0.0 < fitted[0] < fitted[1] < fitted[2] < 1.0, fitted


def test_mixture_score_is_the_crps_of_the_mixture_sample():
    # The closed form in w against the CRPS computed directly from the mixed weighted sample.
    rng = np.random.default_rng(4)
    x, x0, t, w = rng.normal(0.3, 0.1, 300), rng.uniform(size=500), 0.6, 0.35
    terms = crps_terms(x, np.ones(300), x0, t)
    closed = (1 - w) * terms["a"] + w * terms["b"] - 0.5 * ((1 - w) ** 2 * terms["A"] + w**2 * terms["B"]
                                                             + 2 * w * (1 - w) * terms["C"])
    both = np.concatenate([x, x0])
    p = np.concatenate([np.full(300, (1 - w) / 300), np.full(500, w / 500)])
    direct = p @ np.abs(both - t) - 0.5 * p @ np.abs(both[:, None] - both[None, :]) @ p
    assert abs(closed - direct) < 1e-12


def test_lookup_applies_only_to_the_calibrated_task_method_and_form():
    meta = {"parameter_error": {"form_version": FORM_VERSION, "method": "cem", "per_task": {"cv": 0.4}}}
    assert prior_weight(meta, "cv", "cem") == 0.4
    assert prior_weight(meta, "cv", "smc") is None and prior_weight(meta, "swv", "cem") is None
    assert prior_weight({}, "cv", "cem") is None
    old = {"parameter_error": dict(meta["parameter_error"], form_version=FORM_VERSION - 1)}
    assert prior_weight(old, "cv", "cem") is None


def test_prior_draws_follow_the_prior_and_its_constraints(stat_seed):
    # Two exchangeable couples: every draw has increasing E0; a uniform box slot has the box's
    # mean and variance; C_red = u C_ox stays within its fraction of C_ox.
    space = _space("cv_multispecies", couples=2)
    draws = space.prior_draws(20000, np.random.default_rng([1, stat_seed]))
    e0 = draws[:, space.ordered_e0]
    assert len(space.ordered_e0) == 2 and np.all(np.diff(e0, axis=1) > 0)
    j = space.layout.index("alpha", 0)
    lo, hi = space.lows[j], space.highs[j]
    # Standard errors over 20,000 uniform draws: of the mean (hi - lo) / sqrt(12 n), of the
    # variance ratio sqrt(0.8 / n) (fourth moment 1.8 var^2); 4 of each.
    assert abs(draws[:, j].mean() - (lo + hi) / 2) < 4 * (hi - lo) / math.sqrt(12 * draws.shape[0])
    assert abs(draws[:, j].var() / ((hi - lo) ** 2 / 12) - 1) < 4 * math.sqrt(0.8 / draws.shape[0])
    red, ox = space.layout.index("c_red", 0), space.layout.index("c_ox", 0)
    assert np.all(draws[:, red] <= space.highs[red] * draws[:, ox] + 1e-12) and np.all(draws[:, red] >= 0)


def test_mixture_moments_and_weights_are_the_mixtures(stat_seed):
    # The returned weighted sample is the sampler's particles at (1 - w) of the mass and prior draws
    # at w; its mean is the mixture's, and the variance formula matches the weighted sample's.
    space = _space()
    rng = np.random.default_rng([2, stat_seed])
    n = 5000
    centre = space.to_raw(np.zeros((1, space.dim)))[0]
    q = np.tile(centre, (n, 1))
    width = space.highs[space.free] - space.lows[space.free]
    q[:, space.free] += rng.standard_normal((n, space.dim)) * 0.02 * np.where(width > 0, width, 1.0)
    w_in = np.full(n, 1.0 / n)
    var_in = q.var(0, ddof=1)
    both, w, mean, var = contaminate(space, q, w_in, var_in, 0.3, rng, n_prior=50000)
    assert both.shape[0] == n + 50000 and np.array_equal(both[:n], q)
    assert abs(w[:n].sum() - 0.7) < 1e-12 and abs(w.sum() - 1.0) < 1e-12
    np.testing.assert_allclose(mean, w @ both, rtol=1e-9, atol=1e-12)
    sample_var = w @ (both - w @ both) ** 2
    np.testing.assert_allclose(var[space.free], sample_var[space.free], rtol=0.02)
    # The mixture's variance, from independent prior draws: (1 - w) v + w v0 + w (1 - w) (m - m0)^2.
    # Its sampling error is that of v0 and m0 from contaminate's 50,000 draws and ours:
    # sd(var estimate) = sqrt((m4 - v0^2) / n), sd(mean) = sqrt(v0 / n); 4 standard errors.
    ref = space.prior_draws(200_000, np.random.default_rng([3, stat_seed]))[:, space.free]
    m_ref, v_ref = ref.mean(0), ref.var(0)
    m4 = np.mean((ref - m_ref) ** 4, axis=0)
    m_in, v_in = q[:, space.free].mean(0), var_in[space.free]
    expected = 0.7 * v_in + 0.3 * v_ref + 0.21 * (m_in - m_ref) ** 2
    n_both = 1 / 50_000 + 1 / ref.shape[0]
    se = np.sqrt(0.09 * (m4 - v_ref**2) * n_both + (0.42 * (m_in - m_ref)) ** 2 * v_ref * n_both)
    assert np.all(np.abs(var[space.free] - expected) < 4 * se), (var[space.free], expected, se)
    assert np.all(expected > 0.25 * v_ref)  # the prior's share dominates the sharp sample's


def test_gaussian_crps_is_the_closed_form_and_the_expected_score_is_least_at_the_true_sd(stat_seed):
    # CRPS(N(0, 1), 0) = (sqrt 2 - 1) / sqrt(pi); scale equivariance; and, averaged over outcomes
    # drawn from N(0, 1), the score of N(0, s^2) is least at s = 1 (a proper score), where its
    # expectation is 1 / sqrt(pi).
    assert abs(float(gaussian_crps(0.0, 1.0)) - (math.sqrt(2) - 1) / math.sqrt(math.pi)) < 1e-12
    assert abs(float(gaussian_crps(1.5, 3.0)) - 3.0 * float(gaussian_crps(0.5, 1.0))) < 1e-12
    y = np.random.default_rng([0, stat_seed]).standard_normal(200_000)
    scores = {s: float(np.mean(gaussian_crps(y, s))) for s in (0.7, 0.9, 1.0, 1.1, 1.4)}
    assert min(scores, key=scores.get) == 1.0
    se = float(np.std(gaussian_crps(y, 1.0))) / math.sqrt(y.size)  # of the mean score
    assert abs(scores[1.0] - 1 / math.sqrt(math.pi)) < 4 * se


def _band_cases(true_scale, n_cases=24, n_points=256, seed=0):
    # Residuals drawn from N(0, vp + true_scale * vd + noise^2) with per-point variance parts
    # spread like a voltammogram's (a discrepancy larger at a peak, a small parameter spread).
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(n_cases):
        x = np.linspace(0, 1, n_points)
        vd = (0.01 + 0.05 * np.exp(-((x - rng.uniform(0.3, 0.7)) / 0.1) ** 2)) ** 2
        vp = np.full(n_points, 0.002**2)
        sd = np.sqrt(vp + true_scale * vd + 0.02**2)
        cases.append({"task": "cv", "case": k, "noise_var": 0.02**2, "residual": sd * rng.standard_normal(n_points),
                      "var_parameters": vp, "var_discrepancy": vd})
    return cases


def test_band_scale_recovers_a_known_factor_and_fixes_coverage_on_held_out_cases(stat_seed):
    # ln(fitted / true) measured over 200 seeds: sd 0.059, 0.048, 0.039 (bias < 0.011); 4 sd each.
    for true_scale, sd in ((0.5, 0.059), (1.0, 0.048), (2.5, 0.039)):
        lam = fit_band_scale(_band_cases(true_scale, seed=[0, stat_seed]))
        assert abs(math.log(lam / true_scale)) < 4 * sd, (true_scale, lam)
    # Bands twice too wide in variance: the two-fold check's calibration error must fall. Its
    # fall measured over 40 seeds: 0.0355, sd 0.0069, so "falls" (> 0) holds by > 5 sd, and a scale
    # left at 1 (no fall) fails.
    cases = _band_cases(0.5, seed=[1, stat_seed])
    check = _band_two_fold_check(cases)
    assert check["calibration_error_with"] < check["calibration_error_without"], check
    # Coverage over the held-out points: within 4 binomial standard errors of nominal.
    n = sum(c["residual"].size for c in cases)
    cov1, cov2 = check["per_task"]["cv"]["coverage_with"]
    assert abs(cov1 - 0.6827) < 4 * math.sqrt(0.6827 * 0.3173 / n), cov1
    assert abs(cov2 - 0.9545) < 4 * math.sqrt(0.9545 * 0.0455 / n), cov2
    no_disc = [dict(c, var_discrepancy=np.zeros_like(c["var_discrepancy"])) for c in _band_cases(1.0, seed=[0, stat_seed])]
    assert fit_band_scale(no_disc) == 1.0


def test_band_scale_applies_only_to_the_method_it_was_fitted_for_and_follows_the_observed_fraction():
    meta = {"parameter_error": {"form_version": FORM_VERSION, "method": "cem", "per_task": {"cv": 0.4},
                                "band_scale": {"per_task": {"cv": {"1.0": 0.8, "0.35": 0.2}}}}}
    assert abs(predictive_band_scale(meta, "cv", "cem") - 0.8) < 1e-12
    assert abs(predictive_band_scale(meta, "cv", "cem", 0.35) - 0.2) < 1e-12
    assert abs(predictive_band_scale(meta, "cv", "cem", 0.675) - 0.4) < 1e-12  # ln-linear: the geometric mean
    assert abs(predictive_band_scale(meta, "cv", "cem", 0.1) - 0.2) < 1e-12  # the nearest outside the range
    assert predictive_band_scale(meta, "cv", "smc") is None and predictive_band_scale(meta, "swv", "cem") is None
    older = {"parameter_error": {k: v for k, v in meta["parameter_error"].items() if k != "band_scale"}}
    assert predictive_band_scale(older, "cv", "cem") is None


def test_band_cases_pack_to_flat_arrays_and_back_and_refuse_a_mismatch(tmp_path):
    import pytest

    from ecsfm.posterior import pack_band_cases, unpack_band_cases

    rng = np.random.default_rng(0)
    cases = [{"task": t, "case": k, "keep": keep, "noise_var": 4e-4, "residual": rng.normal(size=n),
              "var_parameters": rng.random(n), "var_discrepancy": rng.random(n)}
             for k, (t, keep, n) in enumerate([("cv", 1.0, 7), ("swv", 0.35, 3), ("cv", 0.35, 0)])]
    np.savez(tmp_path / "c.npz", **pack_band_cases(cases))
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        back = unpack_band_cases(z)
        bad = dict(z)
    assert [(c["task"], c["case"], c["keep"], c["noise_var"]) for c in back] == \
           [(c["task"], c["case"], c["keep"], c["noise_var"]) for c in cases]
    for a, b in zip(back, cases):
        for key in ("residual", "var_parameters", "var_discrepancy"):
            np.testing.assert_array_equal(a[key], b[key])
    bad["offsets"] = bad["offsets"][:-1]
    with pytest.raises(ValueError, match="offsets"):
        unpack_band_cases(bad)
    bad["schema_version"] = np.asarray(99)
    with pytest.raises(ValueError, match="schema_version"):
        unpack_band_cases(bad)
