"""The likelihood's covariance and the posterior predictive of the current.

Gaussian over the observed points, full and untempered, with covariance
``obs_noise_std^2 I + S R S (+ g^2 c c^T)``: the surrogate's calibrated discrepancy
(``ecsfm.fm.discrepancy``; per task a scale ``s^2 = a^2 + (b level)^2``, a correlation
``R = (1 - nugget) rho^|i-j| + nugget I`` over points, a gain term and an independent term at the
trace's ends). The scale reads the *observed* current's level, not the prediction's, so the
covariance does not depend on the parameters (a parameter-dependent variance would reward small
predicted currents through its log-determinant). With the simulator engine the covariance is the
noise alone.

The predictive is that of an *observation*: the model's current plus the discrepancy conditioned
on the observed residual (Kennedy & O'Hagan), leave-one-out at the observed points so that their
coverage measures calibration rather than fit.
"""

from __future__ import annotations

import math

import numpy as np

from ..fm import ModelCard, current_level, discrepancy_covariance
from .diagnostics import weighted_variance

__all__ = ["discrepancy_model", "likelihood_covariance", "discrepancy_conditional", "predictive_current"]


def discrepancy_model(meta: dict, task: str | None) -> dict:
    """The calibrated discrepancy of a task as the likelihood uses it: ``a`` (mA), ``b``, ``rho``,
    ``nugget``, ``gain``, ``onset``, ``end``, ``edge_points`` (``ModelCard.discrepancy``: older
    metadata forms read with their fallbacks)."""
    return ModelCard.from_meta(meta or {}).discrepancy(task)


def likelihood_covariance(obs: np.ndarray, sel: np.ndarray, noise2: float, disc: dict | None,
                           gain_shape: np.ndarray | None = None):
    """The likelihood's covariance over the observed points -- discrepancy ``S R S + g^2 c c^T``
    (scale and shape ``c`` from the observed current, smoothed, so it does not depend on the
    parameters) + noise -- as a
    whitening matrix (L, L) (zero rows/columns at unobserved points, one shape for every mask:
    no recompiles), the constant -1/2 (log det + n log 2 pi), and the discrepancy's covariance
    over every point (L, L) (zero without a discrepancy) for the predictive. ``gain_shape`` (L,)
    replaces the observed current as the gain term's ``c`` (the scale stays the observed one's)."""
    length = obs.size
    idx = np.flatnonzero(sel)
    if disc is None or (disc["a"] == 0.0 and disc["b"] == 0.0):  # noise alone: a diagonal covariance
        white = np.diag(np.where(sel, 1.0 / math.sqrt(noise2), 0.0))
        const = -0.5 * idx.size * (math.log(noise2) + math.log(2 * math.pi))
        return white, float(const), np.zeros((length, length))
    model = {"a_mA": disc["a"]} | {k: v for k, v in disc.items() if k != "a"}
    shape = current_level(obs, sel, signed=True)
    k_d = discrepancy_covariance(np.abs(shape), shape if gain_shape is None else gain_shape, model)
    chol = np.linalg.cholesky(k_d[np.ix_(idx, idx)] + noise2 * np.eye(idx.size))
    white = np.zeros((length, length))
    white[np.ix_(idx, idx)] = np.linalg.inv(chol)
    const = -np.sum(np.log(np.diag(chol))) - 0.5 * idx.size * math.log(2 * math.pi)
    return white, float(const), k_d


def discrepancy_conditional(mean_i: np.ndarray, obs: np.ndarray, sel: np.ndarray, white: np.ndarray,
                             k_d: np.ndarray, noise2: float) -> tuple[np.ndarray, np.ndarray]:
    """Per particle, the predictive mean of the current (N, L) with the discrepancy conditioned on
    the residual of the observed points, and the predictive variance of an observation less the
    noise (L,; the same for every particle: the covariance is fixed).

    Masked-out points: the Gaussian-process conditional on every observed point,
    ``K_{*o} (K_oo + noise)^-1 r_o`` and ``diag(K - K_{*o} (K_oo + noise)^-1 K_{o*})``. Observed
    points: the leave-one-out conditional (on every *other* observed point), in closed form from
    ``P = (K_oo + noise)^-1``: mean ``y_j - (P r)_j / P_jj``, variance ``1 / P_jj - noise`` -- a
    point does not predict itself, so coverage of the observed points measures calibration, not
    fit. Without a discrepancy (``k_d = 0``) both are the model's current with zero variance.
    ``white`` whitens ``k_d`` + noise on the observed block (``W^T W = P``), as
    ``likelihood_covariance`` returns it."""
    if not np.any(k_d):
        return mean_i, np.zeros(obs.size)
    idx = np.flatnonzero(sel)
    w_o = white[np.ix_(idx, idx)]
    prec = w_o.T @ w_o  # (K_oo + noise)^-1
    gain = k_d[:, idx] @ prec  # (L, n_obs)
    r = obs[idx][None, :] - mean_i[:, idx]  # (N, n_obs)
    corrected = mean_i + r @ gain.T
    var = np.maximum(np.diag(k_d) - np.einsum("ij,ji->i", gain, k_d[idx, :]), 0.0)
    p_jj = np.diag(prec)
    corrected[:, idx] = obs[idx][None, :] - (r @ prec) / p_jj[None, :]
    var[idx] = np.maximum(1.0 / p_jj - noise2, 0.0)
    return corrected, var


def predictive_current(mean_i: np.ndarray, w: np.ndarray, obs: np.ndarray, sel: np.ndarray, noise2: float,
                        disc: dict | None, white: np.ndarray,
                        k_d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The posterior predictive of the current (L,) and its variance less the noise in two parts,
    the particles' weighted spread (L,) and the discrepancy's conditional variance (L,), from the
    particles' model currents ``mean_i`` (N, L) and weights ``w`` (N,): per particle the
    discrepancy's conditional (``discrepancy_conditional``) is added, then the weighted moments.

    The gain term's shape is the posterior's model current (``w @ mean_i``, smoothed as in the
    calibration, which used the noise-free simulated current), not the noisy observations that the
    likelihood's fixed covariance is built from: a shape that carries the noise makes the
    leave-one-out conditional regress each point on a direction holding that point's own noise
    (through the smoothing window), and the predictive then follows the noise (measured: ``docs/posterior.md``)."""
    if disc is not None and disc["gain"] > 0 and np.any(k_d):
        white, _, k_d = likelihood_covariance(obs, sel, noise2, disc, gain_shape=current_level(w @ mean_i, signed=True))
    mean_i, var_cond = discrepancy_conditional(mean_i, obs, sel, white, k_d, noise2)
    pred_mean, spread = weighted_variance(mean_i, w)
    return pred_mean, spread, var_cond
