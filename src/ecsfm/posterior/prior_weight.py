"""How often the surrogate's inference misses, and how wide its predictive bands should be:
the calibrated prior weight and band scale, put into the posterior.

At the seed's small budget a sizeable fraction of the surrogate's parameter posteriors sit
confidently on the wrong parameters, so the posterior is an epsilon-contamination by the prior:

    (1 - w_task) x the sampler's posterior + w_task x the prior,

``w_task`` fitted per task on fresh simulated cases to minimise the mixtures' continuous ranked
probability score at the truths (a proper scoring rule; its score is quadratic in ``w``: a
closed-form fit). The predictive's band scale ``lambda_task`` multiplies the discrepancy's part of
the predictive variance, fitted by the Gaussian CRPS at the observed points of the same cases at
each observed fraction of ``BAND_KEEP`` (``ln lambda`` linear in the fraction between). The
fitting is ``ecsfm.posterior.calibrate``; the reasons and measurements are in ``docs/posterior.md``.
"""

from __future__ import annotations

import math
import re

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import ndtr

from ..fm import ModelCard
from .diagnostics import INTERVAL_MASS

__all__ = ["FORM_VERSION", "BAND_KEEP", "slot_kind", "prior_weight", "predictive_band_scale", "contaminate",
           "crps_terms", "fit_prior_weight", "gaussian_crps", "fit_band_scale", "central_interval_coverage"]

#: Version of the calibrated form recorded in ``model_meta.json["parameter_error"]``.
FORM_VERSION = 2


def slot_kind(name: str) -> str:
    """A slot's parameter without its couple index: ``"ln_k0[1]"`` -> ``"ln_k0"``."""
    return re.sub(r"\[\d+\]$", "", name)


def prior_weight(meta: dict, task: str, method: str) -> float | None:
    """The calibrated prior weight for this task and method, or None when the model has none."""
    block = ModelCard.from_meta(meta or {}).parameter_error(FORM_VERSION, method)
    if block is None:
        return None
    w = block.get("per_task", {}).get(task)
    return None if w is None else float(w)


#: Observed fractions the band scale is calibrated at: the seed's dense and sparse regimes.
BAND_KEEP = (1.0, 0.35)


def predictive_band_scale(meta: dict, task: str, method: str, observed_fraction: float = 1.0) -> float | None:
    """The calibrated factor on the discrepancy's predictive variance for this task and method at
    this fraction of observed points, or None when the model has none (a block written before the
    band scale was fitted). Between the calibrated fractions ``ln lambda`` is interpolated linearly in
    the fraction; outside them the nearest one holds."""
    block = ModelCard.from_meta(meta or {}).parameter_error(FORM_VERSION, method)
    if block is None:
        return None
    per_keep = (block.get("band_scale") or {}).get("per_task", {}).get(task)
    if not per_keep:
        return None
    pts = sorted((float(k), math.log(float(v))) for k, v in per_keep.items())
    return float(math.exp(np.interp(float(observed_fraction), [k for k, _ in pts], [v for _, v in pts])))


def contaminate(space, samples_raw: np.ndarray, weights: np.ndarray, var_raw: np.ndarray, prior_w: float,
                rng: np.random.Generator, n_prior: int | None = None):
    """The mixture ``(1 - prior_w) x`` the weighted sample ``+ prior_w x`` the prior: returns
    (samples (N + M, core), weights (N + M,), mean (core,), variance (core,)), with M prior draws
    (default max(N, 1024)) sharing ``prior_w``. ``var_raw`` is the sample's own variance estimate
    (the unbiased one); the mixture's variance is ``(1-w) v + w v0 + w (1-w) (m - m0)^2``."""
    samples_raw = np.asarray(samples_raw, np.float64)
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    draws = space.prior_draws(n_prior or max(samples_raw.shape[0], 1024), rng)
    m, m0 = w @ samples_raw, draws.mean(0)
    v0 = draws.var(0, ddof=1)
    mean = (1 - prior_w) * m + prior_w * m0
    var = (1 - prior_w) * np.asarray(var_raw) + prior_w * v0 + prior_w * (1 - prior_w) * (m - m0) ** 2
    both = np.concatenate([samples_raw, draws])
    weights = np.concatenate([(1 - prior_w) * w, np.full(draws.shape[0], prior_w / draws.shape[0])])
    return both, weights, mean, var



def central_interval_coverage(u: np.ndarray) -> tuple[float, float]:
    """Coverage of the central ``INTERVAL_MASS`` credible intervals from CDFs at the truth ``u``."""
    u = np.asarray(u, np.float64)
    return tuple(float(np.mean(np.abs(u - 0.5) <= c / 2)) for c in INTERVAL_MASS)



def crps_terms(x_post: np.ndarray, w_post: np.ndarray, x_prior: np.ndarray, truth: float) -> dict:
    """The pieces of the continuous ranked probability score of a mixture of a weighted sample and
    prior draws at the truth, all in the units of ``x``: ``a = E|X - t|``, ``b = E|X0 - t|``,
    ``A = E|X - X'|``, ``B = E|X0 - X0'|``, ``C = E|X - X0|`` (X from the posterior, X0 from the
    prior). The mixture with prior weight w scores
    ``(1 - w) a + w b - ((1 - w)^2 A + w^2 B + 2 w (1 - w) C) / 2``."""
    x, w, x0 = (np.asarray(v, np.float64) for v in (x_post, w_post, x_prior))
    w = w / w.sum()
    return {"a": float(w @ np.abs(x - truth)), "b": float(np.mean(np.abs(x0 - truth))),
            "A": float(w @ np.abs(x[:, None] - x[None, :]) @ w),
            "B": float(np.mean(np.abs(x0[:, None] - x0[None, :]))),
            "C": float(w @ np.mean(np.abs(x[:, None] - x0[None, :]), axis=1))}


def fit_prior_weight(rows) -> float:
    """The prior weight w in [0, 1] that minimises the mean continuous ranked probability score of
    the mixtures at the truths over ``rows`` (each with ``crps_terms``' keys, one per free slot and
    case, in prior-sd units). A proper scoring rule rewards calibration and sharpness together:
    the prior alone is calibrated too (its intervals cover prior draws at the nominal rates), and a
    weight fitted to coverage alone drifts there. The score is quadratic in w, so the minimum is
    in closed form."""
    t = {k: float(np.mean([r[k] for r in rows])) for k in ("a", "b", "A", "B", "C")}
    # score(w) = const + lin w + quad w^2
    lin = t["b"] - t["a"] + t["A"] - t["C"]
    quad = -0.5 * (t["A"] + t["B"] - 2.0 * t["C"])
    # quad = energy distance / 2 >= 0: convex; zero only when posterior and prior coincide.
    if quad <= 1e-15:
        return 0.0 if lin >= 0 else 1.0
    return float(np.clip(-lin / (2.0 * quad), 0.0, 1.0))


def gaussian_crps(residual, sd) -> np.ndarray:
    """CRPS of N(mu, sd^2) at an outcome ``mu + residual`` (closed form, Gneiting & Raftery 2007):
    ``sd (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi))`` with ``z = residual / sd``."""
    r, s = np.asarray(residual, np.float64), np.asarray(sd, np.float64)
    z = r / s
    return s * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) - 1.0 / math.sqrt(math.pi))


def fit_band_scale(cases, bounds: tuple[float, float] = (1e-4, 100.0)) -> float:
    """The factor ``lambda`` on the discrepancy's predictive variance that minimises the mean
    Gaussian CRPS over the observed points of ``cases``: each a dict with ``residual`` (observed -
    predictive mean), ``var_parameters``, ``var_discrepancy`` (arrays over its observed points) and
    ``noise_var``; the predictive sd is ``sqrt(var_parameters + lambda var_discrepancy + noise_var)``.
    1.0 when no case has a discrepancy variance. The score is smooth and unimodal in practice; it is
    minimised over ``ln lambda`` in ``bounds`` by a bounded scalar search."""
    r = np.concatenate([np.asarray(c["residual"], np.float64) for c in cases])
    vp = np.concatenate([np.asarray(c["var_parameters"], np.float64) for c in cases])
    vd = np.concatenate([np.asarray(c["var_discrepancy"], np.float64) for c in cases])
    n2 = np.concatenate([np.full(np.size(c["residual"]), float(c["noise_var"])) for c in cases])
    if not np.any(vd > 0):
        return 1.0
    score = lambda ln_lam: float(np.mean(gaussian_crps(r, np.sqrt(vp + math.exp(ln_lam) * vd + n2))))  # noqa: E731
    res = minimize_scalar(score, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    return float(math.exp(res.x))

