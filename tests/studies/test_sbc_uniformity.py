"""Simulation-based calibration on a posterior known exactly (pure numpy, thousands of draws).

The SBC study (``ecsfm.studies.sbc``) records per parameter the posterior CDF at the truth,
``u = sum_i w_i 1[theta_i < theta_true]``, tests u ~ Uniform(0, 1) by Kolmogorov-Smirnov and
reads the coverage of central intervals from u (``ecsfm.posterior.interval_coverage``). Here the
posterior is the conjugate normal-normal one, sampled exactly: the statistic must look uniform;
with the posterior's sd halved (over-confident) it must not. Every random number comes from
``stat_seed`` (``ECSFM_TEST_SEED``).
"""

import math

import numpy as np
from scipy import stats

from ecsfm.posterior import interval_coverage
from ecsfm.studies.sbc import LEVELS

N_SBC = 4000  # SBC replications (truth, data, posterior)
N_POST = 1000  # exact posterior draws per replication (u is a multiple of 1/1000)
#: KS p-value below which uniformity is rejected: a calibrated posterior falls below it at 1 seed
#: in 1,000 (the p-value of a true null is uniform; u's 1/1000 grid moves the KS distance by at most
#: 0.001, against the 0.03 critical distance at 4,000 draws).
KS_LEVEL = 1e-3


def _sbc_u(rng, sd_factor=1.0):
    """u for N_SBC replications of: theta ~ N(0, 1); y_1..8 ~ N(theta, 0.5^2); the conjugate
    posterior N(mu_n, s_n^2) -- its sd times ``sd_factor`` -- sampled with N_POST equal-weight draws."""
    n_obs, sigma = 8, 0.5
    theta = rng.standard_normal(N_SBC)
    y = theta[:, None] + sigma * rng.standard_normal((N_SBC, n_obs))
    prec = 1.0 + n_obs / sigma**2
    mu, sd = (y.sum(1) / sigma**2) / prec, 1.0 / math.sqrt(prec)
    draws = mu[:, None] + sd_factor * sd * rng.standard_normal((N_SBC, N_POST))
    w = np.full(N_POST, 1.0 / N_POST)
    return (draws < theta[:, None]) @ w  # the study's statistic, weights included


def test_sbc_ranks_of_an_exact_posterior_are_uniform(stat_seed):
    u = _sbc_u(np.random.default_rng(stat_seed))
    assert stats.kstest(u, "uniform").pvalue > KS_LEVEL
    # Every central interval covers at its nominal level, within 4 binomial standard errors
    # (+ 2/N_POST for u's grid): over the 19 levels a false alarm at ~1 seed in 1,000.
    for c in LEVELS:
        se = math.sqrt(c * (1 - c) / N_SBC)
        assert abs(interval_coverage(u, c) - c) < 4 * se + 2 / N_POST, (c, interval_coverage(u, c))


def test_sbc_rejects_a_posterior_twice_too_narrow(stat_seed):
    u = _sbc_u(np.random.default_rng(stat_seed), sd_factor=0.5)
    # With the sd halved, u -> Phi(2 z), z ~ N(0, 1): the KS distance tends to 0.161 (at u ~ 0.09),
    # 5 times the 0.031 of a p-value of 1e-3 at this size: the p-value is far below any level.
    assert stats.kstest(u, "uniform").pvalue < 1e-12
    # Coverage of the central c interval: |u - 1/2| <= c/2 iff |z| <= Phi^-1((1 + c)/2) / 2, well
    # below nominal (0.68 -> 0.38). (u's binomial noise from N_POST draws moves the expected
    # coverage by at most 0.21 of a standard error, computed by quadrature; covered by 2/N_POST.)
    for c in LEVELS:
        expected = 2 * stats.norm.cdf(stats.norm.ppf((1 + c) / 2) / 2) - 1
        se = math.sqrt(expected * (1 - expected) / N_SBC)
        got = interval_coverage(u, c)
        assert abs(got - expected) < 4 * se + 2 / N_POST, (c, got, expected)
