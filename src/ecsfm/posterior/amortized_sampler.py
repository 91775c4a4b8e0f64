"""Sampling with the amortised posterior: draws of q, importance weights from the exact
likelihood, diagnostics, and tempered SMC from q when the weights cannot be trusted.

Target: the posterior over the free slots' ``y`` extended by independent standard normals on the
flow's other dimensions (``ecsfm.posterior.amortized``). Weights ``prior(y) lik(y) N(eps) / q(y,
eps)``; the log evidence is their log mean (its Monte Carlo standard error by the delta method:
sd(w) / (mean(w) sqrt(N))). The fallback (Pareto k-hat above ``khat_max`` or ESS below
``min_ess``) runs ``run_smc_posterior`` with q as its reference distribution: particles start as
draws of q and are tempered from q to the posterior, moving with q's exact density.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .amortized import Y_SCALE, draw, log_density, standard_normal_logpdf
from .config import SMCPosteriorConfig
from .diagnostics import normalise_log_weights, pareto_khat
from .smc import run_smc_posterior

__all__ = ["run_amortized_posterior", "AMORTIZED_MIN_ESS", "AMORTIZED_KHAT_MAX"]

#: below this many effective draws the corrected estimate falls back on SMC from q
AMORTIZED_MIN_ESS = 100.0
#: above this Pareto k-hat the importance weights' tail is too heavy to trust (Vehtari et al. 2024)
AMORTIZED_KHAT_MAX = 0.7


def _split(v: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y of the free slots, the other dimensions) of flow-unit draws ``v``."""
    rest = np.ones(v.shape[1], bool)
    rest[free] = False
    return v[:, free] * Y_SCALE, v[:, rest]


def run_amortized_posterior(model, context, space, log_likelihood, *, n_draws: int = 1024, seed: int = 0,
                            correct: bool = True, min_ess: float = AMORTIZED_MIN_ESS,
                            khat_max: float = AMORTIZED_KHAT_MAX,
                            fallback: SMCPosteriorConfig = SMCPosteriorConfig(n_particles=1024)) -> dict:
    """Posterior draws for one case. ``model``: an ``AmortizedPosterior``; ``context``: its raw
    context (``case_context``); ``space``: the case's ``ParameterSpace``; ``log_likelihood(y (n,
    dim)) -> (n,)``. ``correct=False`` returns q's draws as they are (``amortized_raw``).

    Returns the sampler dict of ``infer`` (``samples`` y (n, dim), ``weights``, ``ess``,
    ``pareto_k``, ``log_evidence``, ``n_evaluations``) plus ``amortized``: the importance
    sampling's ESS, efficiency (ESS / draws), k-hat, log evidence with its Monte Carlo error,
    whether it ``fell_back`` on SMC from q and why."""
    free = np.asarray(space.free)
    ctx = jnp.asarray(context, jnp.float32)
    key = jax.random.key(np.uint32(seed % 2**32))
    v, lq = (np.asarray(a, np.float64) for a in draw(model, key, ctx, int(n_draws)))
    log_jac = free.size * math.log(Y_SCALE)  # q of y = q of v / Y_SCALE^dim on the free dimensions
    y, rest = _split(v, free)
    n = y.shape[0]
    if not correct:
        diag = {"ess": float(n), "efficiency": 1.0, "pareto_k": float("nan"), "log_evidence": float("nan"),
                "log_evidence_mc_error": float("nan"), "fell_back": False, "reason": "uncorrected (amortized_raw)"}
        return {"samples": y, "weights": np.full(n, 1.0 / n), "ess": float(n), "pareto_k": float("nan"),
                "log_evidence": float("nan"), "n_evaluations": 0, "amortized": diag}
    ll = np.asarray(log_likelihood(y), np.float64)
    lw = space.log_prior(y) + ll + standard_normal_logpdf(rest) - (lq - log_jac)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    diag = {"fell_back": False, "reason": ""}
    if np.isfinite(lw).any():
        w, ess = normalise_log_weights(lw)
        top = float(np.max(lw[np.isfinite(lw)]))
        scaled = np.exp(lw - top)
        log_z = top + math.log(scaled.mean())
        mc = float(scaled.std() / (scaled.mean() * math.sqrt(n)))
        k = pareto_khat(lw)
    else:
        w, ess, log_z, mc, k = np.full(n, 1.0 / n), 0.0, float("-inf"), float("nan"), float("inf")
    diag.update(ess=float(ess), efficiency=float(ess) / n, pareto_k=float(k), log_evidence=float(log_z),
                log_evidence_mc_error=mc)
    if k <= khat_max and ess >= min_ess:
        return {"samples": y, "weights": w, "ess": float(ess), "pareto_k": float(k), "log_evidence": float(log_z),
                "n_evaluations": n, "amortized": diag}
    diag.update(fell_back=True, reason=(f"Pareto k-hat {k:.2f} > {khat_max}" if k > khat_max else
                                        f"ESS {ess:.0f} < {min_ess:g}") + ": tempered SMC from q")

    def augmented(vv):
        flow_v = np.array(vv, np.float64, copy=True)
        flow_v[:, free] /= Y_SCALE
        return flow_v

    def log_q(vv):
        return np.asarray(log_density(model, jnp.asarray(augmented(vv), jnp.float32), ctx), np.float64) - log_jac

    def log_ratio(vv):
        yy, rr = vv[:, free], np.delete(vv, free, axis=1)
        out = space.log_prior(yy) + np.asarray(log_likelihood(yy), np.float64) + standard_normal_logpdf(rr) - log_q(vv)
        return np.where(np.isfinite(out), out, -np.inf)

    def sample_q(rng, m):
        vv, _ = draw(model, jax.random.key(int(rng.integers(2**31))), ctx, int(m))
        vv = np.asarray(vv, np.float64)
        vv[:, free] *= Y_SCALE
        return vv

    res = run_smc_posterior(log_q, log_ratio, v.shape[1], fallback, seed=seed, sample_prior=sample_q)
    return {"samples": res["samples"][:, free], "weights": res["weights"], "ess": float(res["ess"]),
            "pareto_k": float(res["pareto_k"]), "log_evidence": float(res["log_evidence"]),
            "n_evaluations": n + int(res["n_evaluations"]), "amortized": diag,
            "temperatures": res["temperatures"], "moves": res["moves"], "acceptance": res["acceptance"],
            "reached_posterior": res["reached_posterior"]}
