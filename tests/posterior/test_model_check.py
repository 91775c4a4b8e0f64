"""The model check (ecsfm.posterior.model_check) against exact linear-Gaussian answers.

For y = X beta + eps with a flat prior the posterior of X beta is Gaussian around the (weighted)
least-squares fit with covariance sigma^2 X (X^T W X)^-1 X^T, so posterior draws can be made
exactly. Under the model the check's p-values must be uniform, with white or discrepancy-weighted
(W = (I + kappa^2 R)^-1) fits alike; a smooth misfit outside the model's span must be flagged.
Thresholds come from the binomial sampling distribution of the counted rates (+/- 4 standard
errors), at any ``ECSFM_TEST_SEED``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ecsfm.posterior import ALARM_LEVEL, model_check, noise_from_second_differences

N, S, SIGMA = 96, 96, 0.05
_X = np.linspace(-1.0, 1.0, N)
#: a peak, a step and a drift: the shapes a voltammogram's parameters move
DESIGN = np.stack([np.ones(N), _X, np.exp(-(((_X - 0.2) / 0.12) ** 2)), np.tanh(6 * _X)], axis=1)


def _fit_draws(y, rng, weight=None, sigma=SIGMA):
    """Exact posterior draws of X beta (flat prior, noise sd ``sigma``) for a fit weighed by ``weight``."""
    w = np.eye(N) if weight is None else weight
    a = np.linalg.inv(DESIGN.T @ w @ DESIGN)
    beta = a @ DESIGN.T @ w @ y
    return rng.multivariate_normal(beta, sigma**2 * a, S) @ DESIGN.T


def _p_values(rng, cases, *, weight=None, misfit=0.0, noise=None):
    ps = []
    for c in range(cases):
        y = DESIGN @ rng.normal(size=DESIGN.shape[1]) + misfit + rng.normal(0.0, SIGMA, N)
        draws = _fit_draws(y, rng, weight, SIGMA if noise is None else noise)  # the fit assumes the stated noise
        ps.append(model_check([y], [draws], noise=noise, weights=None if weight is None else
                              [weight], seed=c)["p_value"])
    return np.asarray(ps)


def _within_binomial(count: int, n: int, rate: float) -> bool:
    return abs(count - n * rate) <= 4.0 * math.sqrt(n * rate * (1 - rate)) + 1


@pytest.mark.parametrize("discrepancy", [False, True])
def test_p_values_are_uniform_when_the_model_holds(stat_seed, discrepancy):
    rng = np.random.default_rng(stat_seed)
    weight = None
    if discrepancy:  # the joint fit's weighting: exponential correlation over the path, kappa = 1
        r = np.exp(-np.abs(_X[:, None] - _X[None, :]) / 0.5)
        weight = np.linalg.inv(np.eye(N) + r)
    ps = _p_values(rng, 120, weight=weight)
    assert stats.kstest(ps, "uniform").pvalue > 1e-4
    assert _within_binomial(int(np.sum(ps < 0.1)), ps.size, 0.1)


def test_a_smooth_misfit_outside_the_model_is_flagged(stat_seed):
    rng = np.random.default_rng(stat_seed)
    # a curved background of 3 noise sds at the ends, which no column of DESIGN can make
    ps = _p_values(rng, 40, misfit=3 * SIGMA * (_X**2 - np.cos(3 * _X)))
    assert np.mean(ps < ALARM_LEVEL) >= 0.9


def test_a_stated_noise_that_is_too_small_is_flagged(stat_seed):
    rng = np.random.default_rng(stat_seed)
    assert np.mean(_p_values(rng, 20, noise=SIGMA / 4) < ALARM_LEVEL) >= 0.9
    assert np.mean(_p_values(rng, 20, noise=SIGMA) < ALARM_LEVEL) < 0.3  # the true noise: rarely


def test_the_verdict_names_the_worst_trace_and_bonferroni_combines(stat_seed):
    rng = np.random.default_rng(stat_seed)
    good = DESIGN @ rng.normal(size=4) + rng.normal(0.0, SIGMA, N)
    bad = DESIGN @ rng.normal(size=4) + 0.3 * np.cos(4 * _X) + rng.normal(0.0, SIGMA, N)
    res = model_check([good, bad], [_fit_draws(good, rng), _fit_draws(bad, rng)], labels=["good", "bad"])
    assert not res["adequate"] and res["worst_trace"] == "bad"
    assert res["p_value"] == pytest.approx(min(1.0, 2 * min(t["p_value"] for t in res["traces"])))
    assert "bad" in res["reason"] and res["statistic"] > 5


def test_noise_from_second_differences_reads_noise_under_a_smooth_trend(stat_seed):
    rng = np.random.default_rng(stat_seed)
    x = 5.0 * np.sin(np.linspace(0, 3, 4000)) + rng.normal(0.0, 0.2, 4000)
    # the MAD of 4000 correlated second differences: relative se ~0.025 (37 % efficiency); 4 se
    assert noise_from_second_differences(x) == pytest.approx(0.2, rel=0.1)


@pytest.mark.parametrize("observed, draws, kw, word", [
    ([np.zeros(8)], [np.zeros((2, 8))], {}, "n >= 16"),
    ([np.zeros(32)], [np.zeros((2, 31))], {}, "n >= 16"),
    ([np.full(32, np.nan)], [np.zeros((2, 32))], {}, "finite"),
    ([np.zeros(32)], [], {}, "one (S, n) array"),
    ([np.zeros(32)], [np.zeros((2, 32))], {"noise": -1.0}, "noise"),
    ([np.zeros(32)], [np.zeros((2, 32))], {"weights": [np.eye(3)]}, "weights"),
])
def test_bad_input_is_refused(observed, draws, kw, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(").replace(")", r"\)")):
        model_check(observed, draws, **kw)


def test_held_out_p_values_are_uniform_for_a_prediction_from_other_data(stat_seed):
    # New data y* = X beta + eps predicted from the posterior of beta given other data y: the null
    # residual is new noise plus the prediction's spread, which held_out=True samples.
    rng = np.random.default_rng(stat_seed)
    ps = []
    for c in range(120):
        beta = rng.normal(size=DESIGN.shape[1])
        y = DESIGN[::2] @ beta + rng.normal(0.0, SIGMA, N // 2)  # fitted on half the points...
        a = np.linalg.inv(DESIGN[::2].T @ DESIGN[::2])
        draws = rng.multivariate_normal(a @ DESIGN[::2].T @ y, SIGMA**2 * a, S) @ DESIGN.T
        y_new = DESIGN @ beta + rng.normal(0.0, SIGMA, N)  # ...predicting a new trace
        ps.append(model_check([y_new], [draws], held_out=True, seed=c)["p_value"])
    ps = np.asarray(ps)
    assert stats.kstest(ps, "uniform").pvalue > 1e-4
    assert _within_binomial(int(np.sum(ps < 0.1)), ps.size, 0.1)
