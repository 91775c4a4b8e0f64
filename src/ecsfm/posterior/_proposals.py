"""Proposal densities shared by the samplers: multivariate normal and t log densities, weighted
Gaussian fits, a Gaussian mixture fitted by EM, t-mixture draws, support-truncated draws and
systematic resampling. Shapes: points ``y`` (n, d), means (d,), Cholesky factors (d, d).

Written here (about 100 lines of numpy) rather than taken from a library: the samplers need the
log density of exactly the proposal they drew from, truncated to the prior's box, and the batch
shapes of one compiled likelihood call; the closest library pieces (scipy.stats) take one point
set at a time and do not truncate."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mvn_logpdf", "mvt_logpdf", "weighted_gaussian", "fit_mixture", "mixture_t_logpdf", "mixture_t_draw",
           "draw_in_support", "systematic_resample"]


def mvn_logpdf(y: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """Log density (n,) of N(mean, chol chol^T) at the rows of ``y`` (n, d)."""
    z = np.linalg.solve(chol, (y - mean).T).T
    d = y.shape[1]
    return -0.5 * np.sum(z**2, 1) - np.sum(np.log(np.diag(chol))) - 0.5 * d * math.log(2 * math.pi)


def weighted_gaussian(y: np.ndarray, w: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean (d,) and covariance (d, d) of the rows of ``y`` with weights ``w`` (n,),
    ``ridge`` added to the diagonal."""
    w = w / w.sum()
    mean = w @ y
    c = y - mean
    cov = (c * w[:, None]).T @ c + ridge * np.eye(y.shape[1])
    return mean, cov


def mvt_logpdf(y: np.ndarray, mean: np.ndarray, chol: np.ndarray, dof: float) -> np.ndarray:
    """Log density (n,) of a multivariate t (``dof`` degrees of freedom, scale chol chol^T)."""
    z = np.linalg.solve(chol, (y - mean).T).T
    d = y.shape[1]
    return (math.lgamma((dof + d) / 2) - math.lgamma(dof / 2) - 0.5 * d * math.log(dof * math.pi)
            - np.sum(np.log(np.diag(chol))) - 0.5 * (dof + d) * np.log1p(np.sum(z**2, 1) / dof))


def fit_mixture(z: np.ndarray, k: int, rng, n_iter: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A k-component Gaussian mixture fitted to the points z (n, d) by EM from a k-means++ start:
    (weights (k,), means (k, d), Cholesky factors (k, d, d)). Components left with too few points
    are dropped, so a unimodal cloud comes back as one or two components."""
    n, d = z.shape
    ridge = 1e-6 * np.eye(d) * max(float(np.mean(np.var(z, 0))), 1e-12)
    means = [z[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((z[:, None, :] - np.asarray(means)[None]) ** 2).sum(-1), axis=1)
        means.append(z[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else z[rng.integers(n)])
    means = np.asarray(means)
    covs = np.repeat((np.cov(z.T).reshape(d, d) + ridge)[None], k, axis=0)
    weights = np.full(k, 1.0 / k)
    for _ in range(n_iter):
        chols = np.linalg.cholesky(covs)
        logp = np.stack([np.log(w) + mvn_logpdf(z, m, c) for w, m, c in zip(weights, means, chols)], 1)
        with np.errstate(invalid="ignore"):
            resp = np.exp(logp - np.logaddexp.reduce(logp, axis=1, keepdims=True))
        nk = resp.sum(0)
        keep = nk > 2 * d + 2
        if keep.any() and not keep.all():
            resp = resp[:, keep]
            with np.errstate(invalid="ignore"):
                resp = resp / resp.sum(1, keepdims=True)
            nk = resp.sum(0)
        if not (np.all(np.isfinite(resp)) and keep.any()):
            # A cloud collapsed onto a few points (a very sharp likelihood) leaves points no component
            # explains: one Gaussian of all the points instead.
            cov = np.cov(z.T).reshape(d, d) + ridge
            return np.ones(1), z.mean(0)[None], np.linalg.cholesky(cov)[None]
        weights = nk / n
        means = (resp.T @ z) / nk[:, None]
        covs = np.stack([((z - m).T * r) @ (z - m) / nk_ + ridge for m, r, nk_ in zip(means, resp.T, nk)])
    return weights, means, np.linalg.cholesky(covs)


def mixture_t_logpdf(z, weights, means, chols, dof):
    """Log density (n,) of a mixture of multivariate t with these weights (k,), means (k, d) and
    scale Cholesky factors (k, d, d)."""
    return np.logaddexp.reduce(np.stack([math.log(w) + mvt_logpdf(z, m, c, dof)
                                         for w, m, c in zip(weights, means, chols)]), axis=0)


def mixture_t_draw(rng, m: int, weights, means, chols, dof) -> np.ndarray:
    """``m`` draws (m, d) of the t mixture of ``mixture_t_logpdf``."""
    comp = rng.choice(weights.size, size=m, p=weights)
    g = np.einsum("nij,nj->ni", chols[comp], rng.standard_normal((m, means.shape[1])))
    return means[comp] + g / np.sqrt(rng.chisquare(dof, size=(m, 1)) / dof)


def draw_in_support(draw, n: int, in_support, rounds: int = 30) -> np.ndarray:
    """n draws of ``draw(m)`` redrawn (up to ``rounds`` times) where ``in_support`` is False.

    For an independence proposal this is the proposal truncated to the target's support: its
    normaliser is one constant, which cancels from the Metropolis-Hastings ratio, so no draw is
    spent outside the prior's box (rows still outside after the last round are rejected as before,
    a state-independent chance of staying put, which keeps the kernel exact)."""
    z = draw(n)
    bad = ~in_support(z)
    for _ in range(rounds):
        if not bad.any():
            break
        z[bad] = draw(int(bad.sum()))
        bad[bad] = ~in_support(z[bad])
    return z


def systematic_resample(rng, w: np.ndarray) -> np.ndarray:
    """Indices (n,) of a systematic resampling of normalised weights ``w`` (n,)."""
    n = w.size
    u = (rng.random() + np.arange(n)) / n
    idx = np.searchsorted(np.cumsum(w), u)
    return np.minimum(idx, n - 1)

