"""Sampling with the amortised posterior: draws of q, importance weights from the exact
likelihood, adaptive rounds, diagnostics, and tempered SMC when the weights cannot be trusted.

Target: the posterior over the free slots' ``y`` extended by independent standard normals on the
flow's other dimensions (``ecsfm.posterior.amortized``). Round 1 weights draws of q by
``prior(y) lik(y) N(eps) / q(y, eps)``. Where q is too wide in a few directions (it learned less
than the data hold) the weights are valid but few carry mass; further rounds then draw from a
multivariate t fitted to the weighted draws so far and weight every draw against the equal-count
mixture of all proposals used (the deterministic-mixture or balance-heuristic weights of adaptive
multiple importance sampling, Cornuet et al. 2012: consistent, each proposal's density known at
every draw: q's is exact at any point). The log evidence is the log mean weight, its Monte Carlo
standard error sd(w) / (mean(w) sqrt(N)) by the delta method. When Pareto k-hat stays above
``khat_max`` or the ESS below ``min_ess``, tempered SMC runs from the last fitted t (itself built
from q's weighted draws) to the posterior.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._proposals import mixture_t_draw, mvt_logpdf, weighted_gaussian
from .amortized import Y_SCALE, draw, log_density, standard_normal_logpdf
from .config import SMCPosteriorConfig
from .diagnostics import normalise_log_weights, pareto_khat
from .optimize import levenberg_marquardt
from .smc import run_smc_posterior

__all__ = ["run_amortized_posterior", "AMORTIZED_MIN_ESS", "AMORTIZED_KHAT_MAX", "AMORTIZED_ROUNDS"]

#: below this many effective draws the corrected estimate falls back on SMC from q
AMORTIZED_MIN_ESS = 100.0
#: above this Pareto k-hat the importance weights' tail is too heavy to trust (Vehtari et al. 2024)
AMORTIZED_KHAT_MAX = 0.7
#: importance-sampling rounds at most: q, then t proposals fitted to the weighted draws so far
AMORTIZED_ROUNDS = 4
#: the t proposals' degrees of freedom and the factor their scale is widened by
_DOF = 5.0
_INFLATION = 1.5
#: the Laplace round: Gauss-Newton steps and the scale on the inverse Hessian (CEM's defaults)
_NEWTON_STEPS = 16
#: the prior's share in the fallback SMC's reference distribution
_DEFENSIVE = 0.2
_LAPLACE_SCALE = 1.2


def _split(v: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y of the free slots, the other dimensions) of flow-unit draws ``v``."""
    rest = np.ones(v.shape[1], bool)
    rest[free] = False
    return v[:, free] * Y_SCALE, v[:, rest]


def _target(space, log_likelihood, y, rest):
    out = space.log_prior(y) + np.asarray(log_likelihood(y), np.float64) + standard_normal_logpdf(rest)
    return np.where(np.isfinite(out), out, -np.inf)


def _diagnostics(lw: np.ndarray) -> dict:
    """ESS, efficiency, Pareto k-hat and the log evidence with its Monte Carlo error of log weights."""
    n = lw.size
    if not np.isfinite(lw).any():
        return {"weights": np.full(n, 1.0 / n), "ess": 0.0, "efficiency": 0.0, "pareto_k": float("inf"),
                "log_evidence": float("-inf"), "log_evidence_mc_error": float("nan")}
    w, ess = normalise_log_weights(lw)
    top = float(np.max(lw[np.isfinite(lw)]))
    scaled = np.exp(lw - top)
    return {"weights": w, "ess": float(ess), "efficiency": float(ess) / n, "pareto_k": float(pareto_khat(lw)),
            "log_evidence": top + math.log(scaled.mean()),
            "log_evidence_mc_error": float(scaled.std() / (scaled.mean() * math.sqrt(n)))}


def _fit_t(y: np.ndarray, w: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale Cholesky factor of a t proposal on weighted draws: their weighted covariance
    plus 5 % of q's own per-slot variance (a population of a few effective draws has a singular
    covariance), widened by ``_INFLATION``^2."""
    mean, cov = weighted_gaussian(y, w, ridge=0.0)
    cov = _INFLATION**2 * (cov + np.diag(0.05 * spread + 1e-9))
    return mean, np.linalg.cholesky(cov)


def _laplace(newton_fn, phi_fn, start: np.ndarray):
    """(mode, scale Cholesky factor) of a Laplace t from ``start``, or None (no Jacobian, or a
    singular Hessian)."""
    if newton_fn is None:
        return None
    ends, phis, hessians = levenberg_marquardt(newton_fn, start[None], _NEWTON_STEPS, phi_fn=phi_fn)
    if not np.isfinite(phis[0]):
        return None
    try:
        cov = np.linalg.inv(0.5 * (hessians[0] + hessians[0].T)) * _LAPLACE_SCALE**2
        return ends[0], np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None


def run_amortized_posterior(model, context, space, log_likelihood, *, n_draws: int = 1024, seed: int = 0,
                            correct: bool = True, min_ess: float = AMORTIZED_MIN_ESS,
                            khat_max: float = AMORTIZED_KHAT_MAX, rounds: int = AMORTIZED_ROUNDS,
                            fallback: SMCPosteriorConfig = SMCPosteriorConfig(n_particles=1024), newton_fn=None,
                            phi_fn=None) -> dict:
    """Posterior draws for one case. ``model``: an ``AmortizedPosterior``; ``context``: its raw
    context (``case_context``); ``space``: the case's ``ParameterSpace``; ``log_likelihood(y (n,
    dim)) -> (n,)``. ``correct=False`` returns q's draws as they are (``amortized_raw``).

    Round 1 weights ``n_draws`` draws of q. While the weights fail their diagnostics, up to
    ``rounds - 1`` more rounds each draw ``n_draws`` from a multivariate t and every draw is
    reweighted against the equal mixture of all proposals used: the first such t sits on the
    posterior mode found by damped Gauss-Newton from the best-weighted draw (``newton_fn`` /
    ``phi_fn`` as for CEM's Laplace stage; its scale the inverse Gauss-Newton Hessian times
    1.2^2), later ones (or all, without ``newton_fn``) are fitted to the weighted draws so far. If they still fail, tempered SMC
    runs from the last t to the posterior (``fallback``'s settings).

    Returns the sampler dict of ``infer`` (``samples`` y (n, dim), ``weights``, ``ess``,
    ``pareto_k``, ``log_evidence``, ``n_evaluations``) plus ``amortized``: the importance
    sampling's ESS, efficiency (ESS / draws), k-hat, log evidence with its Monte Carlo error, the
    rounds used, whether it ``fell_back`` on SMC and why."""
    free = np.asarray(space.free)
    ctx = jnp.asarray(context, jnp.float32)
    rng = np.random.default_rng([seed, 11])
    v, lq = (np.asarray(a, np.float64) for a in draw(model, jax.random.key(np.uint32(seed % 2**32)), ctx,
                                                          int(n_draws)))
    log_jac = free.size * math.log(Y_SCALE)  # q of y = q of v / Y_SCALE^dim on the free dimensions
    y, rest = _split(v, free)
    n = y.shape[0]
    if not correct:
        diag = {"ess": float(n), "efficiency": 1.0, "pareto_k": float("nan"), "log_evidence": float("nan"),
                "log_evidence_mc_error": float("nan"), "rounds": 1, "fell_back": False,
                "reason": "uncorrected (amortized_raw)"}
        return {"samples": y, "weights": np.full(n, 1.0 / n), "ess": float(n), "pareto_k": float("nan"),
                "log_evidence": float("nan"), "n_evaluations": 0, "amortized": diag}

    def log_q(yy, rr):
        flow_v = np.empty((yy.shape[0], free.size + rr.shape[1]))
        flow_v[:, free] = yy / Y_SCALE
        flow_v[:, np.setdiff1d(np.arange(flow_v.shape[1]), free)] = rr
        return np.asarray(log_density(model, jnp.asarray(flow_v, jnp.float32), ctx), np.float64) - log_jac

    target = _target(space, log_likelihood, y, rest)
    proposals = [("q", None)]
    log_p = [lq - log_jac]  # each proposal's log density at every draw so far
    spread = np.var(y, axis=0)
    diag = _diagnostics(target - log_p[0])
    while len(proposals) < rounds and (diag["pareto_k"] > khat_max or diag["ess"] < min_ess):
        laplace = _laplace(newton_fn, phi_fn, y[np.argmax(diag["weights"])]) if len(proposals) == 1 else None
        mean, chol = laplace if laplace is not None else _fit_t(y, diag["weights"], spread)
        y_new = mean + mixture_t_draw(rng, n_draws, np.ones(1), np.zeros((1, y.shape[1])), chol[None], _DOF)
        rest_new = rng.standard_normal((n_draws, rest.shape[1]))
        log_p = [np.concatenate([lp, log_q(y_new, rest_new) if name == "q" else
                                 mvt_logpdf(y_new, prm[0], prm[1], _DOF) + standard_normal_logpdf(rest_new)])
                 for (name, prm), lp in zip(proposals, log_p)]
        proposals.append(("t", (mean, chol)))
        y, rest = np.concatenate([y, y_new]), np.concatenate([rest, rest_new])
        log_p.append(mvt_logpdf(y, mean, chol, _DOF) + standard_normal_logpdf(rest))
        target = np.concatenate([target, _target(space, log_likelihood, y_new, rest_new)])
        mixture = np.logaddexp.reduce(np.stack(log_p), axis=0) - math.log(len(log_p))
        diag = _diagnostics(target - mixture)
    summary = {k: diag[k] for k in ("ess", "efficiency", "pareto_k", "log_evidence", "log_evidence_mc_error")}
    summary.update(rounds=len(proposals), fell_back=False, reason="")
    if diag["pareto_k"] <= khat_max and diag["ess"] >= min_ess:
        return {"samples": y, "weights": diag["weights"], "ess": diag["ess"], "pareto_k": diag["pareto_k"],
                "log_evidence": diag["log_evidence"], "n_evaluations": y.shape[0], "amortized": summary}
    summary.update(fell_back=True, reason=(f"Pareto k-hat {diag['pareto_k']:.2f} > {khat_max}"
                                           if diag["pareto_k"] > khat_max else f"ESS {diag['ess']:.0f} < {min_ess:g}")
                   + f" after {len(proposals)} rounds: tempered SMC from the last proposal")
    res = _fallback(space, log_likelihood, *_fit_t(y, diag["weights"], spread), fallback, seed)
    return {**res, "n_evaluations": y.shape[0] + res["n_evaluations"], "amortized": summary}


def _fallback(space, log_likelihood, mean: np.ndarray, chol: np.ndarray, config: SMCPosteriorConfig,
              seed: int) -> dict:
    """Tempered SMC from the t (``mean``, ``chol``) with a defensive share of the prior to the
    posterior; the sampler dict of ``run_amortized_posterior`` without ``amortized``."""

    def log_ref(yy):  # the t, with a defensive share of the prior (the t may miss part of the posterior)
        return np.logaddexp(math.log(1 - _DEFENSIVE) + mvt_logpdf(yy, mean, chol, _DOF),
                            math.log(_DEFENSIVE) + space.log_prior(yy))

    def log_ratio(yy):
        out = space.log_prior(yy) + np.asarray(log_likelihood(yy), np.float64) - log_ref(yy)
        return np.where(np.isfinite(out), out, -np.inf)

    def sample_ref(r, m):
        out = mean + mixture_t_draw(r, int(m), np.ones(1), np.zeros((1, mean.size)), chol[None], _DOF)
        pick = r.random(int(m)) < _DEFENSIVE
        u = r.uniform(1e-12, 1 - 1e-12, size=(int(pick.sum()), mean.size))
        out[pick] = np.log(u) - np.log1p(-u)  # the prior in y: logistic (its support constraints via log_ratio)
        return out

    res = run_smc_posterior(log_ref, log_ratio, mean.size, config, seed=seed, sample_prior=sample_ref, coords=space)
    return {"samples": res["samples"], "weights": res["weights"], "ess": float(res["ess"]),
            "pareto_k": float(res["pareto_k"]), "log_evidence": float(res["log_evidence"]),
            "n_evaluations": int(res["n_evaluations"]), "temperatures": res["temperatures"], "moves": res["moves"],
            "acceptance": res["acceptance"], "reached_posterior": res["reached_posterior"]}
