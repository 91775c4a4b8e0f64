"""Does the fitted model describe the data? A check of the residuals' smooth structure.

A fit can be precise and wrong: when the cell model lacks something the data have (a sloping
background, uncompensated resistance fixed at zero, edge diffusion, a follow-up reaction), the
parameters bend to absorb it and the marginals stay narrow. What the parameters cannot absorb is
left in the residual as a *smooth* structure over the potential program, which white measurement
noise does not have. The check asks whether the residual has more energy in its smooth
components than noise would give.

For each trace (points in time order, ``n`` of them):

* ``r = y - mean_s f(theta_s)``: the residual at the posterior-mean prediction, over posterior
  draws ``f(theta_s)`` of the noise-free current;
* ``sigma``: the noise sd, given, or estimated from the median absolute second difference of
  ``r`` (a smooth misfit barely moves second differences, so it does not inflate the estimate);
* ``T = |B^T r|^2 / sigma^2`` with ``B`` the first ``K = n / 8`` cosine modes (DCT-II,
  orthonormal): the residual's energy in its smooth components, in noise variances. Under the
  model, with white noise, ``T`` is about ``K``.
* The null distribution respects the residuals' correlation. Fitting removes the directions the
  parameters can move the prediction in, so residuals of a correct model are correlated: for a
  linear-Gaussian model the posterior-mean residual is ``r = (I - P W) eps`` with ``P = C /
  sigma^2``, ``C`` the covariance of ``f(theta_s)`` over the posterior draws, and ``W`` the
  inverse residual correlation the likelihood weighed with (``I`` for white noise; ``(I + kappa^2
  R)^-1`` with a smooth discrepancy term, which leaves the smooth directions loosely fitted).
  ``T``'s null distribution is sampled from ``r = (I - P W) eps``, the noise re-estimated in each
  replicate the same way, and the p-value is the fraction of replicates with a larger ``T``.

Traces are combined by Bonferroni (``p = min(1, n_traces * min p_j)``), so the alarm's false rate
is at most its level whatever the correlation between traces. The alarm level is
``ALARM_LEVEL`` (5 %). Its measured false-alarm and detection rates on simulated fits are in
``docs/model_check.md`` (``bench/model_check_calibration.py``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ALARM_LEVEL", "CHECK_METHOD", "model_check", "noise_from_second_differences", "smooth_basis"]

#: p-value below which a fit is called inadequate: the nominal 5 % the false-alarm target asks
#: for (measured on 200 simulated fits: 1 %; docs/model_check.md)
ALARM_LEVEL = 0.05
CHECK_METHOD = ("smooth-residual energy (first n/8 cosine modes) against its null distribution under the fitted "
                "posterior's residual covariance sigma^2 I - C; noise from second differences; Bonferroni over traces")
#: 1.4826: the median absolute deviation's factor to a normal sd; sqrt(6): the sd of a second
#: difference of white noise is sqrt(6) noise sds.
_MAD_TO_SD, _SECOND_DIFFERENCE_SD = 1.4826, math.sqrt(6.0)
_N_NULL = 4000
_MIN_POINTS = 16


def noise_from_second_differences(x, axis: int = -1) -> np.ndarray:
    """Robust white-noise sd of ``x`` along ``axis`` (same units): the median absolute deviation
    of its second differences over sqrt(6). A smooth signal contributes little to second
    differences, so this reads the noise under a smooth trend or misfit."""
    d2 = np.diff(np.asarray(x, np.float64), 2, axis=axis)
    med = np.median(d2, axis=axis, keepdims=True)
    return _MAD_TO_SD * np.median(np.abs(d2 - med), axis=axis) / _SECOND_DIFFERENCE_SD


def smooth_basis(n: int, k: int) -> np.ndarray:
    """(n, k) the first ``k`` orthonormal DCT-II vectors over ``n`` equally spaced points (the
    constant first)."""
    i = np.arange(n)[:, None] + 0.5
    m = np.arange(k)[None, :]
    b = np.cos(np.pi * i * m / n) * math.sqrt(2.0 / n)
    b[:, 0] /= math.sqrt(2.0)
    return b


def _trace_check(y: np.ndarray, draws: np.ndarray, noise: float | None, weight: np.ndarray | None,
                 rng: np.random.Generator, held_out: bool = False) -> dict:
    n = y.size
    k = max(2, n // 8)
    basis = smooth_basis(n, k)
    r = y - draws.mean(0)
    smooth = basis.T @ r
    sigma = float(noise) if noise is not None else float(noise_from_second_differences(r))
    peak = float(np.max(np.abs(y))) or 1.0
    misfit = float(np.sqrt(np.mean((basis @ smooth) ** 2)))
    if not sigma > 0:  # a noise-free residual: any smooth misfit at all is a misfit
        bad = bool(np.any(smooth != 0))
        return {"statistic": math.inf if bad else 0.0, "p_value": 0.0 if bad else 1.0, "noise": 0.0,
                "smooth_misfit_rms": misfit, "peak": peak, "n_modes": k}
    stat = float(np.sum(smooth**2) / sigma**2)
    if held_out:  # data the fit did not see: new noise plus the prediction's own spread
        dev = (draws - draws.mean(0)) / sigma
        z = rng.standard_normal((_N_NULL, n)) + dev[rng.integers(0, draws.shape[0], _N_NULL)]
    else:
        proj = np.atleast_2d(np.cov(draws, rowvar=False)) / sigma**2 if draws.shape[0] > 1 else np.zeros((n, n))
        # r = M eps with M = I - P W: the fit's residual operator (P: the posterior covariance of
        # the prediction in noise variances; W: the likelihood's inverse residual correlation)
        m = np.eye(n) - (proj if weight is None else proj @ weight)
        z = rng.standard_normal((_N_NULL, n)) @ m.T  # (M, n) null residuals in units of sigma
    s_rep = 1.0 if noise is not None else noise_from_second_differences(z, axis=1)
    t_rep = np.sum((z @ basis) ** 2, axis=1) / s_rep**2
    p = (1.0 + float(np.sum(t_rep >= stat))) / (1.0 + _N_NULL)
    return {"statistic": stat / k, "p_value": p, "noise": sigma, "smooth_misfit_rms": misfit, "peak": peak,
            "n_modes": k}


def model_check(observed, draws, *, noise=None, weights=None, labels=None, level: float = ALARM_LEVEL,
                seed: int = 0, held_out: bool = False) -> dict:
    """Check whether posterior draws of the noise-free current describe the observed currents.

    ``observed``: a sequence of (n_j,) currents (any one unit, points in time order, ``n_j >= 16``; ~100-400
    points evenly thinned along each trace suit it); ``draws``: matching (S, n_j) posterior draws
    of the noise-free current (S >= 1; S = 1: no correction for the fit's removed directions,
    which makes the check conservative); ``noise``: None (estimated per trace), one sd or one
    per trace (the currents' unit); ``weights``: None (the fit weighed residuals as white noise) or per trace the (n_j,
    n_j) inverse residual correlation the fit's likelihood used (e.g. ``(I + kappa^2 R)^-1`` with a
    smooth discrepancy term); ``labels`` names the traces; ``level`` the alarm level;
    ``held_out``: the draws are predictions of data the fit did not see (a leave-one-out
    check), so the null residual is new noise plus the prediction's spread, ``eps + f_s - mean f``,
    instead of the fit's residual ``(I - P W) eps``.

    Returns ``{"adequate", "statistic" (worst trace's smooth-residual energy per mode, in noise
    variances: ~1 for a model that fits), "p_value" (Bonferroni over traces), "method",
    "worst_trace", "reason", "level", "traces": [per trace: label, statistic, p_value, noise,
    smooth_misfit_rms, peak, n_modes]}``, currents in the units given. Raises ValueError on
    mismatched shapes, too few points or non-finite values.
    """
    observed = [np.asarray(y, np.float64) for y in observed]
    draws = [np.asarray(d, np.float64) for d in draws]
    if not observed or len(draws) != len(observed):
        raise ValueError(f"draws: need one (S, n) array per observed trace, got {len(draws)} for {len(observed)}")
    labels = [f"trace {j}" for j in range(len(observed))] if labels is None else list(labels)
    noises = list(noise) if isinstance(noise, (list, tuple, np.ndarray)) else [noise] * len(observed)
    weights = [None] * len(observed) if weights is None else list(weights)
    if len(labels) != len(observed) or len(noises) != len(observed) or len(weights) != len(observed):
        raise ValueError("labels/noise/weights: need one per trace")
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    per = []
    for y, d, s, w, label in zip(observed, draws, noises, weights, labels):
        d = d[None] if d.ndim == 1 else d
        if y.ndim != 1 or y.size < _MIN_POINTS or d.shape[1:] != y.shape:
            raise ValueError(f"{label}: need (n,) observed with n >= {_MIN_POINTS} and (S, n) draws, got {y.shape} "
                             f"and {d.shape}")
        if not (np.all(np.isfinite(y)) and np.all(np.isfinite(d))):
            raise ValueError(f"{label}: observed or predicted current is not finite")
        if s is not None and not (math.isfinite(s) and s > 0):
            raise ValueError(f"noise: must be > 0 (the currents' unit) or None, got {s}")
        if w is not None and np.shape(w) != (y.size, y.size):
            raise ValueError(f"{label}: weights must be ({y.size}, {y.size}), got {np.shape(w)}")
        per.append({"label": label, **_trace_check(y, d, s, None if w is None else np.asarray(w, np.float64), rng,
                                                    held_out)})
    worst = min(per, key=lambda t: (t["p_value"], -t["statistic"]))
    p = min(1.0, len(per) * worst["p_value"])
    adequate = p >= level
    reason = ("the residuals' smooth part is within what noise gives" if adequate else
              f"{worst['label']}: the residual's smooth components hold {worst['statistic']:.3g} x the energy noise "
              f"gives (p = {p:.2g}); the smooth misfit is {100 * worst['smooth_misfit_rms'] / worst['peak']:.2g} % "
              "of the peak current: the model does not describe these data")
    return {"adequate": bool(adequate), "statistic": float(worst["statistic"]), "p_value": float(p),
            "method": CHECK_METHOD, "worst_trace": worst["label"], "reason": reason, "level": level, "traces": per}
