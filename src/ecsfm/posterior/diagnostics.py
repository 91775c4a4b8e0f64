"""Diagnostics of weighted samples and predictive bands: weight normalisation and ESS, Pareto
k-hat, weighted moments, central-interval coverage and the seed's reliability metrics."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["INTERVAL_MASS", "pareto_khat", "normalise_log_weights", "weighted_variance", "interval_coverage",
           "compute_reliability_metrics"]

#: Masses of the central intervals of +-1 and +-2 standard deviations of a normal:
#: erf(1/sqrt 2) = 0.6827 and erf(2/sqrt 2) = 0.9545. The one source of these numbers.
INTERVAL_MASS = (math.erf(1 / math.sqrt(2)), math.erf(2 / math.sqrt(2)))


def pareto_khat(log_weights) -> float:
    """Shape k-hat of a generalised Pareto fit to the largest importance weights.

    The tail is the largest ``min(n/5, 3 sqrt(n))`` weights above the next one; the fit is the
    empirical-Bayes estimator of Zhang & Stephens (2009) with the weak prior towards 0.5 of
    Vehtari et al. (Pareto smoothed importance sampling). k-hat < 0.5: the weights' variance is
    finite; 0.5-0.7: usable; > 0.7: the importance-sampling estimate is unreliable. Written here
    (30 lines) rather than pulling in a full Bayesian-workflow package for one function.
    """
    lw = np.sort(np.asarray(log_weights, np.float64))
    lw = lw[np.isfinite(lw)]
    n = lw.size
    m = int(min(n / 5.0, 3.0 * math.sqrt(n)))
    if m < 5:
        return float("nan")
    lw = lw - lw[-1]
    x = np.exp(lw[-m:]) - np.exp(lw[-m - 1])  # exceedances over the threshold, sorted
    if x[-1] <= 0:
        return 0.0
    n_grid = 30 + int(math.sqrt(m))
    j = np.arange(1, n_grid + 1, dtype=np.float64)
    xq = x[max(int(m / 4.0 + 0.5) - 1, 0)]
    b = 1.0 / x[-1] + (1.0 - np.sqrt(n_grid / (j - 0.5))) / (3.0 * max(xq, 1e-300))
    k = np.mean(np.log1p(-b[:, None] * x[None, :]), axis=1)
    profile = m * (np.log(-b / k) - k - 1.0)
    post = np.exp(profile - np.logaddexp.reduce(profile))
    b_hat = float(np.sum(b * post))
    k_hat = float(np.mean(np.log1p(-b_hat * x)))
    return (m * k_hat + 10.0 * 0.5) / (m + 10.0)


def normalise_log_weights(lw: np.ndarray) -> tuple[np.ndarray, float]:
    """Normalised weights (N,) from log weights (N,) (non-finite ones count as zero) and their
    effective sample size ``1 / sum w^2``. Raises FloatingPointError when every weight is zero."""
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    top = np.max(lw)
    if not np.isfinite(top):
        raise FloatingPointError("every particle has zero posterior density (all outside the prior or NaN)")
    w = np.exp(lw - top)
    w = w / w.sum()
    return w, float(1.0 / np.sum(w**2))


def weighted_variance(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and variance over the first axis of ``x`` (N, ...) with normalised weights
    ``w`` (N,): the unbiased estimate for reliability weights, ``sum w (x - m)^2 / (1 - sum w^2)``
    (numpy's ``cov(aweights=w, ddof=1)``), which is ``n / (n - 1)`` for equal weights and ESS /
    (ESS - 1) for importance weights. The plain ``sum w (x - m)^2`` is low by that factor: 20 % at
    the effective sample size of 5 that a 16-parameter importance sample can leave. A single
    particle (ESS 1) has no spread to measure: its variance is 0."""
    w = np.asarray(w, np.float64)
    w = w / w.sum()
    m = np.tensordot(w, x, axes=1)
    var = np.maximum(np.tensordot(w, (x - m) ** 2, axes=1), 0.0)
    sum_w2 = float(np.sum(w**2))
    return m, var / (1.0 - sum_w2) if sum_w2 < 1.0 - 1e-12 else var


def interval_coverage(u, mass: float) -> float:
    """The fraction of posterior CDF values at the truth ``u`` whose central credible interval of
    this mass covers the truth (``|u - 1/2| <= mass / 2``); nan for none."""
    u = np.asarray(u, float)
    return float(np.mean(np.abs(u - 0.5) <= mass / 2)) if u.size else float("nan")


def compute_reliability_metrics(observed, pred_mean, pred_std, mask=None) -> dict:
    """Calibration and accuracy of a predictive band on the points where ``mask`` is set.

    ``nrmse``: RMS error / range of the observed points; ``nll``: mean Gaussian negative log
    likelihood per point (in the current's units); ``coverage_1sigma``/``2sigma``: fraction of
    points inside mean +- 1/2 std; ``calibration_error`` = |cov1 - 0.6827| + |cov2 - 0.9545|;
    ``sharpness``: mean std / range. ``reliability_score`` (0-100, unit-free) =
    ``100 x max(0, 1 - calibration_error) / (1 + nrmse / 0.1)``: 100 for a calibrated band around
    an exact, noise-free trace; halved by a 10 % error (noise included) or by a calibration error
    of 0.5.
    """
    o = np.asarray(observed, np.float64)
    m = np.asarray(pred_mean, np.float64)
    s = np.maximum(np.asarray(pred_std, np.float64), 1e-12)
    sel = np.ones(o.shape, bool) if mask is None else np.asarray(mask) >= 0.5
    if not sel.any():
        nan = float("nan")
        return {k: nan for k in ("reliability_score", "nrmse", "nll", "coverage_1sigma", "coverage_2sigma",
                                 "calibration_error", "sharpness")} | {"n_points": 0}
    o, m, s = o[sel], m[sel], s[sel]
    span = max(float(o.max() - o.min()), 1e-12)
    z = (o - m) / s
    nrmse = float(np.sqrt(np.mean((o - m) ** 2)) / span)
    cov1, cov2 = float(np.mean(np.abs(z) <= 1.0)), float(np.mean(np.abs(z) <= 2.0))
    cal = abs(cov1 - INTERVAL_MASS[0]) + abs(cov2 - INTERVAL_MASS[1])
    return {
        "reliability_score": float(100.0 * max(0.0, 1.0 - cal) / (1.0 + nrmse / 0.1)),
        "nrmse": nrmse,
        "nll": float(np.mean(0.5 * z**2 + np.log(s) + 0.5 * math.log(2 * math.pi))),
        "coverage_1sigma": cov1,
        "coverage_2sigma": cov2,
        "calibration_error": float(cal),
        "sharpness": float(np.mean(s) / span),
        "n_points": int(sel.sum()),
    }


# =================================================================================================
# The free-parameter space of one inference
