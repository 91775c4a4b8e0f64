"""Adaptive tempered sequential Monte Carlo in unconstrained coordinates.

Temperatures are chosen by bisection so the incremental weights keep an ESS of
``target_ess_fraction x n``; after each reweighting the particles are resampled (systematic) and
moved by Metropolis steps targeting ``prior x likelihood^beta``: independence proposals from a
Student-t mixture fitted to the particles (truncated to the prior's support) alternate with
random walks, until the particles have left the resampling's duplicates behind. Exact at
temperature 1 in the limit.
"""

from __future__ import annotations

import math

import numpy as np

from ._proposals import draw_in_support, fit_mixture, mixture_t_draw, mixture_t_logpdf, systematic_resample
from .config import SMCPosteriorConfig
from .diagnostics import normalise_log_weights, pareto_khat

__all__ = ["run_smc_posterior"]

# The independence proposal: a mixture of Student-t (these degrees of freedom) fitted to the
# particles by EM, each component's covariance widened by this factor (heavier tails than the
# target keep the weights pi / q bounded, so the independence sampler mixes well).
_SMC_T_DOF = 7.0
_SMC_T_SCALE = 1.2
_SMC_MIX_MAX = 4  # components of the independence proposal (a multimodal cloud gets one per mode)
_POINTS_PER_COMPONENT_DIM = 10  # particles per component and dimension that an EM fit needs
#: Initial random-walk scale: 2.38 / sqrt(dim) times the particle covariance is the optimal
#: Gaussian random-walk scale for a Gaussian target (Roberts, Gelman & Gilks 1997), and the scale
#: is then adapted towards the acceptance rate ``_RW_ACCEPT`` (0.234 is that paper's asymptotic
#: optimum; 0.25 is the round target used here), within ``_RW_SCALE_RANGE``.
_RW_SCALE0 = 2.38
_RW_ACCEPT = 0.25
_RW_SCALE_RANGE = (0.05, 5.0)
#: Bisection steps of the next temperature (2^-50: far below any meaningful step).
_BISECTION_STEPS = 50
#: Rounds of redrawing initial prior draws that fall outside the prior's support.
_SUPPORT_ROUNDS = 50


def _next_temperature(ll: np.ndarray, beta: float, target: float) -> float:
    """The largest temperature in (beta, 1] whose incremental weights keep an ESS >= target."""
    def ess_at(b):
        return normalise_log_weights((b - beta) * ll)[1]

    if ess_at(1.0) >= target:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ess_at(mid) >= target else (lo, mid)
    return max(lo, beta + 1e-6)  # a floor on the step, so that tempering always advances


def run_smc_posterior(log_prior, log_likelihood, dim: int, config: SMCPosteriorConfig = SMCPosteriorConfig(), *,
                      seed: int = 0, sample_prior=None, coords=None) -> dict:
    """Adaptive tempered SMC in ``dim`` unconstrained coordinates.

    ``log_prior(y)`` and ``log_likelihood(y)`` take a batch (n, dim) and return (n,).
    ``sample_prior(rng, n)`` draws (n, dim) from the prior (default: the logistic prior of the
    unit-box coordinates). ``coords`` (optional; ``to_z``, ``from_z``, ``log_det_dz_dy``) gives
    the coordinates the moves are made in (the Jacobian enters the acceptance ratio).

    Returns a dict: equally weighted ``samples`` (n, dim) and ``weights``, ``log_likelihood``
    (n,), ``log_evidence`` with ``log_evidence_se`` (its Monte Carlo standard error, summed over the
    stages as ``(n / ESS_t - 1) / n``, the variance of the log of a mean of weights with that ESS;
    resampling and the moves' correlations are not in it), ``temperatures``, ``acceptance`` and ``moves`` per stage,
    ``reached_posterior`` (the last temperature is 1), ``n_evaluations``, and the ``ess`` /
    ``pareto_k`` of the last reweighting.
    """
    rng = np.random.default_rng(seed)
    n = config.n_particles

    def draw(m):
        if sample_prior is None:
            u = rng.uniform(1e-12, 1 - 1e-12, size=(m, dim))
            return np.log(u) - np.log1p(-u)
        return np.asarray(sample_prior(rng, m), np.float64)

    # Start from the prior: draws where log_prior is -inf (a constraint such as ordered couples)
    # are outside its support and are replaced.
    y = draw(n)
    for _ in range(_SUPPORT_ROUNDS):
        bad = ~np.isfinite(np.asarray(log_prior(y), np.float64))
        if not bad.any():
            break
        y[bad] = draw(int(bad.sum()))
    lp = np.asarray(log_prior(y), np.float64)
    ll = np.asarray(log_likelihood(y), np.float64)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    state = {"beta": 0.0, "scale": _RW_SCALE0, "n_eval": n}
    log_z, log_z_var, betas, accepts, moves = 0.0, 0.0, [0.0], [], []
    last_lw = np.zeros(n)
    for _ in range(config.max_stages):
        if state["beta"] >= 1.0:
            break
        new = _next_temperature(ll, state["beta"], config.target_ess_fraction * n)
        lw = (new - state["beta"]) * ll
        finite = lw[np.isfinite(lw)]
        log_z += float(np.log(np.sum(np.exp(finite - finite.max())) / n) + finite.max())
        w, stage_ess = normalise_log_weights(lw)
        log_z_var += max(n / max(stage_ess, 1.0) - 1.0, 0.0) / n  # var of ln(mean w) ~ var(w) / (n mean^2)
        last_lw = lw
        state["beta"] = new
        betas.append(new)
        idx = systematic_resample(rng, w)
        y, lp, ll, rates = _move(y[idx], lp[idx], ll[idx], state, config, rng, log_prior, log_likelihood, coords)
        moves.append(len(rates))
        accepts.append(float(np.mean(rates)))
    _, ess = normalise_log_weights(last_lw)
    return {"samples": y, "weights": np.full(n, 1.0 / n), "ess": ess, "pareto_k": pareto_khat(last_lw),
            "log_likelihood": ll, "log_evidence": log_z, "log_evidence_se": float(np.sqrt(log_z_var)),
            "temperatures": np.asarray(betas),
            "acceptance": np.asarray(accepts), "moves": np.asarray(moves),
            "reached_posterior": bool(state["beta"] >= 1.0), "n_evaluations": int(state["n_eval"])}


def _move(y, lp, ll, state: dict, config: SMCPosteriorConfig, rng, log_prior, log_likelihood, coords):
    """Metropolis moves of the resampled particles at temperature ``state["beta"]``, in the move
    coordinates z = coords.to_z(y) (where posterior ridges are straighter). Even moves:
    independence proposals from a t mixture fitted to the particles (near the posterior one
    accepted move decorrelates a particle); odd moves: a random walk with the particle covariance,
    its scale adapted towards ``_RW_ACCEPT``. Moves continue until the particles have left the
    resampling's duplicates behind (median whitened squared jump >= the jump target x dim).
    Returns the moved (y, lp, ll) and the acceptance rate of each move; updates ``state``'s
    random-walk scale and evaluation count."""
    n, dim = y.shape
    beta = state["beta"]

    def in_support(z):  # rows of z (move coordinates) inside the prior's support
        yz = z if coords is None else coords.from_z(z)
        ok = np.all(np.isfinite(yz), axis=1)
        ok[ok] = np.isfinite(np.asarray(log_prior(yz[ok]), np.float64))
        return ok

    zz = y if coords is None else coords.to_z(y)
    chol = np.linalg.cholesky(np.cov(zz.T).reshape(dim, dim) + 1e-10 * np.eye(dim))
    mix_w, mix_m, mix_c = fit_mixture(zz, max(1, min(_SMC_MIX_MAX, n // (_POINTS_PER_COMPONENT_DIM * dim))), rng)
    mix_c = mix_c * _SMC_T_SCALE
    ljac = 0.0 if coords is None else -coords.log_det_dz_dy(y)
    z_start = zz.copy()
    n_min = config.n_moves + (config.final_moves if beta >= 1.0 else 0)
    jump = config.final_jump_target if beta >= 1.0 else config.jump_target
    rates = []
    for move in range(config.max_moves):
        independent = move % 2 == 0
        if independent:
            z_new = draw_in_support(lambda m: mixture_t_draw(rng, m, mix_w, mix_m, mix_c, _SMC_T_DOF), n, in_support)
            lq_new = mixture_t_logpdf(z_new, mix_w, mix_m, mix_c, _SMC_T_DOF)
            lq = mixture_t_logpdf(zz, mix_w, mix_m, mix_c, _SMC_T_DOF)  # at the current points
        else:
            z_new = zz + state["scale"] * (rng.standard_normal((n, dim)) @ chol.T) / math.sqrt(dim)
        y_new = z_new if coords is None else coords.from_z(z_new)
        valid = np.all(np.isfinite(y_new), axis=1)
        y_eval = np.where(valid[:, None], y_new, y)
        lp_new = np.asarray(log_prior(y_eval), np.float64)
        ll_new = np.asarray(log_likelihood(y_eval), np.float64)
        ll_new = np.where(np.isfinite(ll_new), ll_new, -np.inf)
        ljac_new = 0.0 if coords is None else -coords.log_det_dz_dy(y_eval)
        state["n_eval"] += n
        log_a = (lp_new + beta * ll_new + ljac_new) - (lp + beta * ll + ljac)
        if independent:
            log_a = log_a - lq_new + lq
        ok = valid & (np.log(rng.random(n)) < np.where(np.isnan(log_a), -np.inf, log_a))
        y = np.where(ok[:, None], y_eval, y)
        zz = np.where(ok[:, None], z_new, zz)
        lp = np.where(ok, lp_new, lp)
        ll = np.where(ok, ll_new, ll)
        if coords is not None:
            ljac = np.where(ok, ljac_new, ljac)
        rate = float(ok.mean())
        if not independent:
            state["scale"] = min(max(state["scale"] * math.exp(rate - _RW_ACCEPT), _RW_SCALE_RANGE[0]),
                                 _RW_SCALE_RANGE[1])  # a gentle Robbins-Monro step on the log scale
        rates.append(rate)
        white = np.linalg.solve(chol, (zz - z_start).T)
        if move + 1 >= n_min and float(np.median(np.sum(white**2, axis=0))) >= jump * dim:
            break
    return y, lp, ll, rates
