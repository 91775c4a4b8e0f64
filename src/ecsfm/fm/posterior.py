"""Bayesian inference of unknown parameters from a partial, noisy current trace.

Three lines for a user (see ``infer_parameter_posterior``)::

    model, normalizers, meta, geometry = load_surrogate("model_dir")
    post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                     observed_current=i_obs, applied_signal=e, known_p_core=p_known,
                                     known_p_mask=mask, obs_mask=None, config=PosteriorInferenceConfig())

The statistics (each choice is deliberate; the seed notebook's names are kept):

* **Target.** ``prior(theta) x likelihood(i_obs | theta)`` over the free slots of the
  conditioning vector, untempered. The prior is the dataset's prior for the known task and stage
  (from ``model_meta.json``): uniform / log-uniform boxes per slot and ``C_red = u C_ox``.
  Known slots -- the task/stage one-hots, the protocol slots (the experiment sets them), slots
  the prior fixes, slots the caller marks in ``known_p_mask``, and every slot of a couple whose
  known concentration is zero (an absent couple: how many couples are present is part of the
  experiment, not a parameter here) -- never move.
* **Coordinates.** Free slots are sampled in unconstrained coordinates ``y = logit(u)`` with
  ``u`` the slot's position in its prior box, so the prior is the logistic density in ``y`` and
  every proposal is a plain Gaussian.
* **Likelihood.** Gaussian over the observed points, full and untempered (a sum, no averaging
  over points), covariance ``obs_noise_std^2 I + S R S``: the surrogate's calibrated discrepancy
  from ``model_meta.json`` -- per task a scale ``s^2 = a^2 + (b level)^2`` and a correlation
  ``R = (1 - nugget) rho^|i-j| + nugget I`` over points, plus an independent term at the trace's
  first and last few points (where the surrogate misses fast transients), fitted by maximum
  likelihood on rows the model never saw (``ecsfm.fm.eval_classical.calibrate_discrepancy``). Two choices, both from
  measurement: the surrogate's error is smooth along a trace (lag-1 correlation of its residual
  ~0.97), so independent points would count one error hundreds of times and give posteriors far
  narrower than the exact (simulator) one; and the scale reads the *observed* current's level,
  not the prediction's, because a variance that depends on the parameters rewards parameters
  with small predicted currents through its log-determinant. The flow's ``n_mc_per_particle``
  draws are averaged; their scatter is part of the calibrated residual (it was calibrated on
  the mean of as many draws). With ``engine="simulator"`` the current comes from ``ecsfm.sim``
  directly and the covariance is the noise alone.
* **Common random numbers.** The flow's x0 draws are drawn once per inference, so the likelihood
  is a deterministic, smooth function of the parameters.
* **CEM (method="cem").** Cross-entropy iterations adapt a Gaussian proposal to the elite
  particles; it is a proposal device only. Every particle drawn in every iteration is then
  importance-weighted against the deterministic mixture of the proposals actually used
  (each iteration's proposal carries a defensive component equal to the first, prior-matched
  one), ``w ~ prior x likelihood / q_mix``, so the weighted sample targets the posterior.
  A Laplace stage (damped Gauss-Newton to the mode, then a multivariate t on it, truncated to
  the prior's box with its mass inside in the density) joins the mixture the same way.
  The result reports the effective sample size and the Pareto k-hat of the weights, and warns
  when they say the estimate is unreliable (k-hat > 0.7 or ESS < ``min_ess``).
* **SMC (method="smc").** Adaptive likelihood tempering (each next temperature keeps the ESS of
  the incremental weights at half the particles), systematic resampling and Metropolis moves
  (independence proposals from a Student-t mixture fitted to the particles, truncated to the
  prior's support, alternating with random walks) until the particles have moved about a
  posterior width from the resampling's duplicates (see ``SMCPosteriorConfig``); exact at
  temperature 1 in the limit.
* **Predictive.** ``predictive_mean_current`` / ``predictive_std_current`` are the posterior
  predictive of an *observation*: the model's current plus the discrepancy conditioned on the
  observed residual (a smooth error the data reveal; Kennedy & O'Hagan) -- at an observed point
  conditioned on the *other* points (leave-one-out, closed form), so the coverage of observed
  points measures calibration rather than fit -- with parameter uncertainty + the discrepancy's
  conditional variance + observation noise; ``predictive_std_current_noise_free`` leaves the noise out.
  The two variance parts are returned (``predictive_var_parameters``, ``predictive_var_discrepancy``);
  the discrepancy's enters scaled by the model's calibrated band scale (``predictive_band_scale``):
  the discrepancy is fitted to the surrogate's error at the *true* parameters, which the likelihood
  needs, while after the posterior has moved the parameters part of that error is absorbed, so the
  band it implies can be too wide (or too narrow) for the residual that is left; the scale is fitted
  per task on fresh simulated cases (``ecsfm.fm.parameter_error.fit_band_scale``).
* **How often the inference misses.** When the model's metadata carries a calibrated
  ``parameter_error`` for the task and method (``ecsfm.fm.parameter_error``), the parameter
  posterior is mixed with the prior at that weight: the fraction of fresh simulated cases on which
  the sampler's posterior at this budget carries no information about the truth. The predictive
  keeps the sampler's particles.

Nothing loops over particles or Euler steps in Python: each iteration evaluates all particles in
one compiled call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..data import SPECIES_QUANTITIES
from .parameter_error import contaminate, predictive_band_scale, prior_weight

__all__ = [
    "CEMPosteriorConfig",
    "SMCPosteriorConfig",
    "PosteriorInferenceConfig",
    "run_cem_posterior",
    "run_smc_posterior",
    "compute_reliability_metrics",
    "infer_parameter_posterior",
    "infer_joint_posterior",
    "pareto_khat",
    "ParameterSpace",
]

_COV1, _COV2 = math.erf(1 / math.sqrt(2)), math.erf(2 / math.sqrt(2))
_LOGISTIC_STD = math.pi / math.sqrt(3.0)


# =================================================================================================
# Configuration


def _require_ints(obj, **minimum) -> None:
    """ValueError naming the first field that is not an integer >= its minimum."""
    for name, lo in minimum.items():
        v = getattr(obj, name)
        if not (isinstance(v, int) and v >= lo):
            raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")


@dataclass(frozen=True)
class CEMPosteriorConfig:
    """Cross-entropy proposal adaptation + importance weighting.

    ``n_particles`` per iteration, ``n_iterations`` proposals, the proposal of iteration t+1 is
    the weighted Gaussian fit to the ``elite_fraction`` best particles so far, widened by
    ``inflation`` (a proposal must be wider than the posterior for importance sampling) and
    mixed with the first proposal at ``defensive_weight``.

    Then, when the likelihood is differentiable, a Laplace stage: up to ``n_newton`` damped
    Gauss-Newton (Levenberg-Marquardt) iterations from the ``n_starts`` best particles (all starts
    in one batch; each iteration tries four dampings in one forward call and takes the Jacobian
    only at the accepted point; the best end point is the mode), and ``n_particles`` more draws
    from a multivariate t (``t_dof`` degrees of freedom) with the inverse Gauss-Newton Hessian
    times ``laplace_scale^2`` as its scale, truncated to the prior's support (a posterior pressed
    against a box edge would otherwise lose most draws outside it; the truncated density carries
    the t's mass inside). With a posterior far narrower than the prior (dense data) blind
    proposal adaptation with a few hundred particles cannot find the mode to the needed
    precision in 9-16 dimensions; the gradient can. The t proposal joins the mixture, so the
    weights stay exact (``n_newton = 0``: CEM only). Measured on 50 held-out dense cv cases with
    the exact (simulator) likelihood: 8 iterations, untruncated: coverage 0.13 / 0.23 at 1 / 2
    sigma, median ESS 1.0; truncated 0.28 / 0.47 (ESS 3.9); 16 iterations 0.36 / 0.59 (ESS 5.6);
    32 iterations and 3 starts 0.39 / 0.65 (ESS 7.0, 1.3x the time): the Gauss-Newton mode
    crawls along the E0-D_red and k0 ridges, where a Gaussian is a poor proposal anyway.
    """

    n_particles: int = 64
    n_iterations: int = 4
    elite_fraction: float = 0.25
    inflation: float = 1.5
    defensive_weight: float = 0.1
    min_ess: float = 10.0
    n_newton: int = 16
    n_starts: int = 1
    t_dof: float = 5.0
    laplace_scale: float = 1.2

    def __post_init__(self):
        _require_ints(self, n_particles=4, n_iterations=1, n_starts=1, n_newton=0)
        if not 0.0 < self.elite_fraction <= 1.0:
            raise ValueError(f"elite_fraction: must be in (0, 1], got {self.elite_fraction}")
        if not self.inflation >= 1.0:
            raise ValueError(f"inflation: must be >= 1, got {self.inflation}")
        if not 0.0 <= self.defensive_weight < 1.0:
            raise ValueError(f"defensive_weight: must be in [0, 1), got {self.defensive_weight}")
        if not self.t_dof > 2.0:
            raise ValueError(f"t_dof: must be > 2, got {self.t_dof}")


@dataclass(frozen=True)
class SMCPosteriorConfig:
    """Tempered SMC: ``n_particles``; after each resampling, Metropolis moves alternating an
    independence proposal (a Student-t fitted to the particles) and a random walk, at least
    ``n_moves`` (``n_moves + final_moves`` at temperature 1) and then until the particles have
    moved a mean whitened squared distance of ``jump_target x dim`` from where the resampling left
    them, for at least half of them (median; 2 x dim = independent draws), at most ``max_moves``;
    at the last temperature (1) the target is ``final_jump_target``; at most ``max_stages``
    temperatures. (A mean would be met by a few long independence jumps while most particles
    still sit on their duplicates.)

    The defaults are measured, not guessed (``bench/sbc_linear_smc.py``): on a linear-Gaussian
    likelihood with the cv task's geometry (nine free parameters, a box prior, singular values
    spanning four decades) the earlier target of 0.5 x dim at every stage left the posterior sds
    ~8 % narrow (too little movement per stage compounds over ~16 stages, and a narrow cloud is
    slow to widen again at temperature 1) and failed SBC; 1 x dim per stage and 2 x dim at the
    last stage brings them within ~1 % for about twice the likelihood evaluations."""

    n_particles: int = 2048
    n_moves: int = 2
    max_stages: int = 60
    target_ess_fraction: float = 0.5
    final_moves: int = 2
    max_moves: int = 32
    jump_target: float = 1.0
    final_jump_target: float = 2.0

    def __post_init__(self):
        _require_ints(self, n_particles=16, n_moves=1, max_stages=1, final_moves=0, max_moves=1)
        if not 0.05 <= self.target_ess_fraction < 1.0:
            raise ValueError(f"target_ess_fraction: must be in [0.05, 1), got {self.target_ess_fraction}")
        if self.max_moves < self.n_moves + self.final_moves:
            raise ValueError(f"max_moves: must be >= n_moves + final_moves = {self.n_moves + self.final_moves}, "
                             f"got {self.max_moves}")
        for name in ("jump_target", "final_jump_target"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 2.0):
                raise ValueError(f"{name}: must be in [0, 2], got {value}")


@dataclass(frozen=True)
class PosteriorInferenceConfig:
    """Everything one inference needs besides the data.

    ``obs_noise_std`` is in the units of the observed current (dataset units: mA).
    ``method``: ``"cem"`` or ``"smc"``; ``engine``: ``"surrogate"`` or ``"simulator"``.
    ``use_discrepancy`` adds the surrogate's calibrated discrepancy (correlated over the trace's
    points, see ``ecsfm.fm.eval_classical.calibrate_discrepancy``) to the likelihood covariance;
    without it the surrogate's likelihood has the observation noise alone.
    ``parameter_error`` mixes the prior into the parameter posterior at the model's calibrated
    weight (``model_meta.json["parameter_error"]``, see ``ecsfm.fm.parameter_error``): surrogate
    engine only, and only for the method it was calibrated for; the predictive is not affected.
    ``band_scale`` multiplies the discrepancy's part of the predictive variance by the model's
    calibrated band scale at the trace's observed fraction (same block, fitted on the same fresh
    cases; surrogate engine and that method only); the likelihood and the parameter posterior are
    not affected.
    """

    cem: CEMPosteriorConfig = field(default_factory=CEMPosteriorConfig)
    n_mc_per_particle: int = 2
    n_integration_steps: int = 60
    obs_noise_std: float = 0.02
    method: str = "cem"
    engine: str = "surrogate"
    smc: SMCPosteriorConfig = field(default_factory=SMCPosteriorConfig)
    use_discrepancy: bool = True
    parameter_error: bool = True
    band_scale: bool = True

    def __post_init__(self):
        _require_ints(self, n_mc_per_particle=1, n_integration_steps=1)
        if not (math.isfinite(self.obs_noise_std) and self.obs_noise_std > 0):
            raise ValueError(f"obs_noise_std: must be finite and > 0, got {self.obs_noise_std}")
        if self.method not in ("cem", "smc"):
            raise ValueError(f"method: must be 'cem' or 'smc', got {self.method!r}")
        if self.engine not in ("surrogate", "simulator"):
            raise ValueError(f"engine: must be 'surrogate' or 'simulator', got {self.engine!r}")


# =================================================================================================
# Weights diagnostics


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


def _normalise_log_weights(lw: np.ndarray) -> tuple[np.ndarray, float]:
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    top = np.max(lw)
    if not np.isfinite(top):
        raise FloatingPointError("every particle has zero posterior density (all outside the prior or NaN)")
    w = np.exp(lw - top)
    w = w / w.sum()
    return w, float(1.0 / np.sum(w**2))


# =================================================================================================
# Generic samplers over unconstrained coordinates y (d,)


def _mvn_logpdf(y: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    z = np.linalg.solve(chol, (y - mean).T).T
    d = y.shape[1]
    return -0.5 * np.sum(z**2, 1) - np.sum(np.log(np.diag(chol))) - 0.5 * d * math.log(2 * math.pi)


def _weighted_variance(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _weighted_gaussian(y: np.ndarray, w: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    w = w / w.sum()
    mean = w @ y
    c = y - mean
    cov = (c * w[:, None]).T @ c + ridge * np.eye(y.shape[1])
    return mean, cov


def _mvt_logpdf(y: np.ndarray, mean: np.ndarray, chol: np.ndarray, dof: float) -> np.ndarray:
    z = np.linalg.solve(chol, (y - mean).T).T
    d = y.shape[1]
    return (math.lgamma((dof + d) / 2) - math.lgamma(dof / 2) - 0.5 * d * math.log(dof * math.pi)
            - np.sum(np.log(np.diag(chol))) - 0.5 * (dof + d) * np.log1p(np.sum(z**2, 1) / dof))


#: draws of the Laplace t proposal that measure its mass inside the prior's support
_LAPLACE_MASS_DRAWS = 16384
#: damping factors tried at once in each Levenberg-Marquardt iteration (relative to the current one)
_LM_TRIALS = (0.1, 1.0, 10.0, 100.0)


def _levenberg_marquardt(newton_fn, y0: np.ndarray, n_steps: int, phi_fn=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Damped Gauss-Newton on the negative log posterior from several starts at once.

    ``newton_fn(y (K, dim)) -> (phi (K,), grad (K, dim), hess (K, dim, dim))``, phi the negative
    log posterior. With ``phi_fn(y (M, dim)) -> phi (M,)`` (a forward pass only: far cheaper than
    the Jacobian), each iteration tries the steps of several dampings (``_LM_TRIALS`` times the
    current one) in one batched call and takes the Jacobian only at the best point that lowers
    phi, so no Jacobian is spent on a rejected step; without it, one damping per iteration, the
    Jacobian evaluated at every trial point. Stops early once every start's accepted step lowers
    phi by less than 1e-6 relative. Returns the end points (K, dim), their phi (K,) and Hessians.
    """
    y = np.asarray(y0, np.float64)
    k, dim = y.shape
    phi, g, h = newton_fn(y)
    lam = np.ones(k)
    done = np.zeros(k, bool)
    trials = np.asarray(_LM_TRIALS if phi_fn is not None else (1.0,))
    for _ in range(n_steps):
        if done.all():  # every start converged: further steps would not move it
            break
        diag = np.maximum(np.einsum("kii->ki", h), 1e-8)
        steps = np.zeros((k, trials.size, dim))
        ok = np.zeros((k, trials.size), bool)
        for j in range(k):  # K x trials small linear solves
            if not (np.all(np.isfinite(h[j])) and np.all(np.isfinite(g[j]))):
                continue
            for c, f in enumerate(trials):
                try:
                    steps[j, c] = np.linalg.solve(h[j] + lam[j] * f * np.diag(diag[j]), -g[j])
                    ok[j, c] = True
                except np.linalg.LinAlgError:
                    pass
        cand = y[:, None, :] + steps
        if phi_fn is None:
            c_phi, c_g, c_h = newton_fn(cand[:, 0])
            trial_phi = c_phi[:, None]
        else:
            trial_phi = np.asarray(phi_fn(cand.reshape(-1, dim)), np.float64).reshape(k, trials.size)
        trial_phi = np.where(ok & np.isfinite(trial_phi), trial_phi, np.inf)
        best = np.argmin(trial_phi, axis=1)
        better = trial_phi[np.arange(k), best] < phi
        if phi_fn is not None and better.any():  # the Jacobian only where a step is taken
            new_y = np.where(better[:, None], cand[np.arange(k), best], y)
            c_phi, c_g, c_h = newton_fn(new_y)
            better &= np.isfinite(c_phi) & (c_phi < phi)
        elif phi_fn is not None:
            c_phi, c_g, c_h = phi, g, h
        done |= better & (phi - c_phi < 1e-6 * (1.0 + np.abs(phi)))
        y = np.where(better[:, None], cand[np.arange(k), best], y)
        phi = np.where(better, c_phi, phi)
        g = np.where(better[:, None], c_g, g)
        h = np.where(better[:, None, None], c_h, h)
        lam = np.where(better, np.maximum(lam * trials[best] / 10.0, 1e-7), lam * trials.max() * 4.0)
    return y, phi, h


def run_cem_posterior(log_prior, log_likelihood, dim: int, config: CEMPosteriorConfig = CEMPosteriorConfig(), *,
                      seed: int = 0, init_mean=None, init_std=None, newton_fn=None, coords=None,
                      phi_fn=None) -> dict:
    """Adaptive importance sampling with cross-entropy proposal updates (and, given
    ``newton_fn``, a Laplace stage), in ``dim`` unconstrained coordinates.

    ``log_prior(y)`` and ``log_likelihood(y)`` take a batch (n, dim) and return (n,) (one call
    per iteration for all particles). The first proposal is ``N(init_mean, init_std^2)`` (default:
    the logistic prior's mean and standard deviation). ``newton_fn(y) -> (phi, grad, hess)``
    (negative log posterior, its gradient and a positive-definite Hessian approximation at one
    point) enables the Laplace stage; ``phi_fn(y) -> phi`` (optional, the negative log posterior
    alone, a forward pass) lets each damped Gauss-Newton iteration try several dampings at once and
    take Jacobians only where a step is accepted. ``coords`` (optional) supplies the coordinates the Laplace
    proposal is built in (``to_z``, ``from_z``, ``log_det_dz_dy``, ``laplace_precision_z``; see
    ``ParameterSpace``): a Gaussian in y can be a poor fit where a posterior ridge is straight in
    other coordinates. Returns ``samples`` (N, dim) of every stage, normalised
    ``weights`` ~ prior x likelihood / q_mix (q_mix: the deterministic mixture of every proposal
    used, weighted by its particle count), ``ess``, ``pareto_k``, ``log_likelihood`` (N,),
    ``log_evidence`` (importance-sampling estimate), ``mode`` and ``laplace_cov`` (if any).
    """
    rng = np.random.default_rng(seed)
    mean0 = np.zeros(dim) if init_mean is None else np.asarray(init_mean, np.float64)
    std0 = np.full(dim, _LOGISTIC_STD) if init_std is None else np.broadcast_to(np.asarray(init_std, np.float64), (dim,))
    chol0 = np.diag(std0)
    comps = []  # (log-density function, particle count) of every proposal used
    ys, lps, lls = [], [], []
    n = config.n_particles
    mean, chol = mean0, chol0
    delta = config.defensive_weight

    def gaussian_with_defence(m, c):
        if delta == 0:
            return lambda y: _mvn_logpdf(y, m, c)
        return lambda y: np.logaddexp(np.log1p(-delta) + _mvn_logpdf(y, m, c), np.log(delta) + _mvn_logpdf(y, mean0, chol0))

    def log_q_mix(y):
        parts = [math.log(k) + f(y) for f, k in comps]
        return np.logaddexp.reduce(np.stack(parts), axis=0) - math.log(sum(k for _, k in comps))

    def evaluate(y):
        # Pad to the particle count so every call has one shape (one compiled program).
        m = y.shape[0]
        padded = np.concatenate([y, np.repeat(y[:1], n - m, axis=0)]) if m < n else y
        ys.append(y)
        lls.append(np.asarray(log_likelihood(padded), np.float64)[:m])
        lps.append(np.asarray(log_prior(y), np.float64))

    for it in range(config.n_iterations):
        n_def = 0 if it == 0 else int(round(delta * n))
        y = np.concatenate([mean + rng.standard_normal((n - n_def, dim)) @ chol.T,
                            mean0 + rng.standard_normal((n_def, dim)) @ chol0.T])
        comps.append((gaussian_with_defence(mean, chol) if it else (lambda y, m=mean0, c=chol0: _mvn_logpdf(y, m, c)), n))
        evaluate(y)
        if it == config.n_iterations - 1:
            break
        # Elites by importance weight against the mixture so far (in the first iteration this is
        # the ordering by posterior density relative to the proposal).
        y_all = np.concatenate(ys)
        lw = np.concatenate(lps) + np.concatenate(lls) - log_q_mix(y_all)
        n_elite = max(int(math.ceil(config.elite_fraction * y_all.shape[0])), dim + 2)
        elite = np.argsort(-np.where(np.isfinite(lw), lw, -np.inf))[:n_elite]
        w_elite, _ = _normalise_log_weights(lw[elite])
        # Flatten the elite weights so one lucky particle does not collapse the proposal.
        m, cov = _weighted_gaussian(y_all[elite], np.sqrt(w_elite), ridge=1e-4)
        mean, chol = m, np.linalg.cholesky(cov * config.inflation**2 + 1e-9 * np.eye(dim))
    mode = laplace_cov = None
    if newton_fn is not None and config.n_newton > 0:
        y_all = np.concatenate(ys)
        post = np.concatenate(lps) + np.concatenate(lls)
        order = np.argsort(-np.where(np.isfinite(post), post, -np.inf))
        starts = y_all[order[: config.n_starts]]
        ends, phis, hessians = _levenberg_marquardt(newton_fn, starts, config.n_newton, phi_fn=phi_fn)
        best = int(np.argmin(np.where(np.isfinite(phis), phis, np.inf)))
        mode, hess = ends[best], hessians[best]
        centre = mode if coords is None else coords.to_z(mode[None])[0]
        try:
            prec = hess if coords is None else coords.laplace_precision_z(mode, hess)
            laplace_cov = np.linalg.inv(0.5 * (prec + prec.T))
            chol_l = np.linalg.cholesky(laplace_cov * config.laplace_scale**2)
        except np.linalg.LinAlgError:
            chol_l = None
        if chol_l is not None and np.all(np.isfinite(chol_l)) and np.all(np.isfinite(centre)):
            dof = config.t_dof

            def t_draws(m):
                return centre + (rng.standard_normal((m, dim)) @ chol_l.T) / np.sqrt(rng.chisquare(dof, size=(m, 1)) / dof)

            if coords is None:
                y = t_draws(n)
                comps.append((lambda y, m=centre, c=chol_l: _mvt_logpdf(y, m, c, dof), n))
            else:
                # The t truncated to the prior's support (outside it the target is zero): a
                # posterior pressed against a box edge would otherwise lose most draws there.
                # Exact draws by rejection (the first n inside), and the truncated density is
                # the t's divided by its mass inside, counted on 16,384 draws of its own (no
                # simulation: the map to the box only).
                mass = float(np.mean(np.all(np.isfinite(coords.from_z(t_draws(_LAPLACE_MASS_DRAWS))), axis=1)))
                kept, n_kept, tries = [], 0, 0
                while mass > 0 and n_kept < n and tries < 64:
                    cand = coords.from_z(t_draws(4 * n))
                    kept.append(cand[np.all(np.isfinite(cand), axis=1)])
                    n_kept += kept[-1].shape[0]
                    tries += 1
                y = np.concatenate(kept)[:n] if kept else np.zeros((0, dim))
                if y.shape[0]:
                    comps.append((lambda y, m=centre, c=chol_l, lm=math.log(mass): _mvt_logpdf(coords.to_z(y), m, c, dof)
                                  + coords.log_det_dz_dy(y) - lm, y.shape[0]))
            if y.shape[0]:
                evaluate(y)
    y_all = np.concatenate(ys)
    ll = np.concatenate(lls)
    lw = np.concatenate(lps) + ll - log_q_mix(y_all)
    w, ess = _normalise_log_weights(lw)
    finite = lw[np.isfinite(lw)]
    log_evidence = float(np.log(np.mean(np.exp(finite - finite.max()))) + finite.max()) if finite.size else -np.inf
    return {"samples": y_all, "weights": w, "ess": ess, "pareto_k": pareto_khat(lw), "log_likelihood": ll,
            "log_weights": lw, "log_evidence": log_evidence, "n_evaluations": int(y_all.shape[0]),
            "mode": mode, "laplace_cov": laplace_cov, "batch_sizes": [int(y.shape[0]) for y in ys]}


# The SMC moves' independence proposal: a mixture of Student-t (these degrees of freedom) fitted
# to the particles by EM, each component's covariance widened by this factor (heavier tails than
# the target keep the weights pi / q bounded, so the independence sampler mixes well).
_SMC_T_DOF = 7.0
_SMC_T_SCALE = 1.2
_SMC_MIX_MAX = 4  # components of the independence proposal (a multimodal cloud gets one per mode)


def _fit_mixture(z: np.ndarray, k: int, rng, n_iter: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        logp = np.stack([np.log(w) + _mvn_logpdf(z, m, c) for w, m, c in zip(weights, means, chols)], 1)
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


def _mixture_t_logpdf(z, weights, means, chols, dof):
    return np.logaddexp.reduce(np.stack([math.log(w) + _mvt_logpdf(z, m, c, dof)
                                         for w, m, c in zip(weights, means, chols)]), axis=0)


def _mixture_t_draw(rng, m: int, weights, means, chols, dof) -> np.ndarray:
    comp = rng.choice(weights.size, size=m, p=weights)
    g = np.einsum("nij,nj->ni", chols[comp], rng.standard_normal((m, means.shape[1])))
    return means[comp] + g / np.sqrt(rng.chisquare(dof, size=(m, 1)) / dof)


def _draw_in_support(draw, n: int, in_support, rounds: int = 30) -> np.ndarray:
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


def _systematic_resample(rng, w: np.ndarray) -> np.ndarray:
    n = w.size
    u = (rng.random() + np.arange(n)) / n
    idx = np.searchsorted(np.cumsum(w), u)
    return np.minimum(idx, n - 1)


def run_smc_posterior(log_prior, log_likelihood, dim: int, config: SMCPosteriorConfig = SMCPosteriorConfig(), *,
                      seed: int = 0, sample_prior=None, coords=None) -> dict:
    """Adaptive tempered SMC in ``dim`` unconstrained coordinates.

    ``sample_prior(rng, n)`` draws (n, dim) from the prior (default: the logistic prior of the
    unit-box coordinates). Temperatures are chosen by bisection so the incremental weights keep
    an ESS of ``target_ess_fraction * n``; after each reweighting the particles are resampled
    (systematic) and moved by Metropolis steps targeting ``prior x likelihood^beta`` (in
    ``coords``' z coordinates when given): independence proposals from a mixture of Student-t
    fitted to the particles (EM, up to 4 components; truncated to the prior's support, so that no
    proposal is spent outside the box) alternate with random walks of covariance ``(s^2 / dim) x`` the particle covariance
    (s adapted towards 25 % acceptance), as many as it takes the particles to move away from the
    resampling's duplicates (see ``SMCPosteriorConfig``). Returns equally weighted ``samples``,
    ``log_evidence``, the temperatures, the moves and acceptance rates per stage and the ESS /
    Pareto k-hat of the last reweighting.
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
    for _ in range(50):
        bad = ~np.isfinite(np.asarray(log_prior(y), np.float64))
        if not bad.any():
            break
        y[bad] = draw(int(bad.sum()))
    lp = np.asarray(log_prior(y), np.float64)
    ll = np.asarray(log_likelihood(y), np.float64)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    beta, log_z = 0.0, 0.0
    betas, accepts, moves = [0.0], [], []
    scale = 2.38
    last_lw = np.zeros(n)
    n_eval = n

    def in_support(z):  # rows of z (move coordinates) inside the prior's support
        yz = z if coords is None else coords.from_z(z)
        ok = np.all(np.isfinite(yz), axis=1)
        ok[ok] = np.isfinite(np.asarray(log_prior(yz[ok]), np.float64))
        return ok

    for _ in range(config.max_stages):
        if beta >= 1.0:
            break
        target = config.target_ess_fraction * n

        def ess_at(b):
            return _normalise_log_weights((b - beta) * ll)[1]

        if ess_at(1.0) >= target:
            new = 1.0
        else:
            lo, hi = beta, 1.0
            for _ in range(50):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if ess_at(mid) >= target else (lo, mid)
            new = max(lo, beta + 1e-6)
        lw = (new - beta) * ll
        finite = lw[np.isfinite(lw)]
        log_z += float(np.log(np.sum(np.exp(finite - finite.max())) / n) + finite.max())
        w, _ = _normalise_log_weights(lw)
        last_lw = lw
        beta = new
        betas.append(beta)
        idx = _systematic_resample(rng, w)
        y, lp, ll = y[idx], lp[idx], ll[idx]
        # Metropolis moves in the move coordinates z = coords.to_z(y) (where posterior ridges are
        # straighter; the Jacobian enters the acceptance ratio). Even moves: independence proposals
        # from a mixture of Student-t fitted to the particles (near the posterior one accepted move
        # decorrelates a particle; the proposal density is evaluated at the current points, which
        # the random walk has moved since); odd moves: a random walk with the particle covariance, its
        # scale adapted towards 25 % acceptance. Moves continue until the particles have left the
        # resampling's duplicates behind (median whitened squared jump >= jump_target x dim).
        zz = y if coords is None else coords.to_z(y)
        cov = np.cov(zz.T).reshape(dim, dim) + 1e-10 * np.eye(dim)
        chol = np.linalg.cholesky(cov)
        mix_w, mix_m, mix_c = _fit_mixture(zz, max(1, min(_SMC_MIX_MAX, n // (10 * dim))), rng)
        mix_c = mix_c * _SMC_T_SCALE
        ljac = 0.0 if coords is None else -coords.log_det_dz_dy(y)
        z_start = zz.copy()

        n_min = config.n_moves + (config.final_moves if beta >= 1.0 else 0)
        jump = config.final_jump_target if beta >= 1.0 else config.jump_target
        rates = []
        for move in range(config.max_moves):
            independent = move % 2 == 0
            if independent:
                z_new = _draw_in_support(lambda m: _mixture_t_draw(rng, m, mix_w, mix_m, mix_c, _SMC_T_DOF),
                                         n, in_support)
                lq_new = _mixture_t_logpdf(z_new, mix_w, mix_m, mix_c, _SMC_T_DOF)
                lq = _mixture_t_logpdf(zz, mix_w, mix_m, mix_c, _SMC_T_DOF)  # at the current points
            else:
                z_new = zz + scale * (rng.standard_normal((n, dim)) @ chol.T) / math.sqrt(dim)
            y_new = z_new if coords is None else coords.from_z(z_new)
            valid = np.all(np.isfinite(y_new), axis=1)
            y_eval = np.where(valid[:, None], y_new, y)
            lp_new = np.asarray(log_prior(y_eval), np.float64)
            ll_new = np.asarray(log_likelihood(y_eval), np.float64)
            ll_new = np.where(np.isfinite(ll_new), ll_new, -np.inf)
            ljac_new = 0.0 if coords is None else -coords.log_det_dz_dy(y_eval)
            n_eval += n
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
                scale *= math.exp(rate - 0.25)  # gentle Robbins-Monro step on log scale
                scale = min(max(scale, 0.05), 5.0)
            rates.append(rate)
            white = np.linalg.solve(chol, (zz - z_start).T)
            if move + 1 >= n_min and float(np.median(np.sum(white**2, axis=0))) >= jump * dim:
                break
        acc = float(np.mean(rates))
        moves.append(len(rates))
        accepts.append(float(acc))
    w_final, ess = _normalise_log_weights(last_lw)
    return {"samples": y, "weights": np.full(n, 1.0 / n), "ess": ess, "pareto_k": pareto_khat(last_lw),
            "log_likelihood": ll, "log_evidence": log_z, "temperatures": np.asarray(betas),
            "acceptance": np.asarray(accepts), "moves": np.asarray(moves), "reached_posterior": bool(beta >= 1.0), "n_evaluations": int(n_eval)}


# =================================================================================================
# Reliability metrics


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
    cal = abs(cov1 - _COV1) + abs(cov2 - _COV2)
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


_PRIOR_STD_CACHE: dict = {}


class ParameterSpace:
    """Which slots of ``p_core`` are free, their prior boxes, and the map from unconstrained ``y``.

    With two or more active couples whose E0 are free, the couples are exchangeable (swapping
    their slots leaves the current unchanged), so the posterior is labelled: slot order = order of
    increasing E0 (``canonical_order`` puts a known truth in the same labelling).

    Built from the dataset prior of the known task/stage, the known values and mask. Free slot j
    maps ``p_j = a_j + (b_j - a_j) sigmoid(y_j)``; a ``fraction`` slot (``C_red = u C_ox``) maps
    onto ``[low, high] x C_ox`` of its couple, so the prior in ``y`` is the product of logistic
    densities (plus, when ``C_red`` is known but ``C_ox`` is free, the conditional density of the
    known ``C_red``).
    """

    def __init__(self, meta: dict, known_p_core, known_p_mask, geometry: dict):
        from ..data import ParamSpace as _Layout
        from ..data import PriorSpec

        self.geometry = geometry
        s = int(geometry["max_species"])
        layout = _Layout(s)
        self.layout = layout
        n_base, n_tasks, n_stages = int(geometry["phys_dim_base"]), int(geometry["n_tasks"]), int(geometry["n_stages"])
        core = int(geometry["phys_dim_core"])
        known = np.asarray(known_p_core, np.float64).reshape(-1)
        if known.size != core:
            raise ValueError(f"known_p_core: expected {core} values (base {n_base} + {n_tasks} tasks + "
                             f"{n_stages} stages), got {known.size}")
        mask = np.asarray(known_p_mask).reshape(-1).astype(bool)
        if mask.size != core:
            raise ValueError(f"known_p_mask: expected {core} values, got {mask.size}")
        if not np.all(np.isfinite(known[mask])):
            raise ValueError("known_p_core: known slots must be finite")
        task_names = list(meta.get("task_names", []))
        stage_names = list(meta.get("stage_names", []))
        self.task = task_names[int(np.argmax(known[n_base:n_base + n_tasks]))] if n_tasks else None
        self.stage = stage_names[int(np.argmax(known[n_base + n_tasks:n_base + n_tasks + n_stages]))] if n_stages else None
        key = f"{self.task}/{self.stage}"
        priors = meta.get("priors", {})
        if key not in priors:
            raise ValueError(f"known_p_core: task/stage {key!r} has no prior in the model metadata "
                             f"(known: {sorted(priors)})")
        self.prior = PriorSpec.from_dict(priors[key])
        self.known = known
        free = np.zeros(core, bool)
        free[:n_base] = ~mask[:n_base]
        roles = layout.roles
        active = layout.active_couples(known[:n_base])
        self.active = active
        if not active.any():
            raise ValueError("known_p_core: no active couple (every couple has C_ox + C_red = 0); set the "
                             "concentration slots of the couples present to any positive value")
        lows, highs = np.zeros(core), np.zeros(core)
        frac_of = np.full(core, -1)
        for name, spec in self.prior.species.items():
            for k in range(s):
                i = layout.index(name, k)
                if not active[k] or spec.dist == "fixed":
                    if active[k]:  # an absent couple keeps its filler values
                        known[i] = spec.bounds_p(name.startswith("ln_"))[0]
                    free[i] = False
                    continue
                if spec.dist == "fraction":
                    frac_of[i] = layout.index(spec.of, k)
                    lows[i], highs[i] = spec.low, spec.high
                else:
                    lows[i], highs[i] = spec.bounds_p(name.startswith("ln_"))
        for name, spec in self.prior.globals.items():
            i = layout.index(name)
            if roles[i] == "protocol" or spec.dist == "fixed":
                if spec.dist == "fixed" and roles[i] != "protocol":
                    known[i] = spec.bounds_p(name.startswith("ln_"))[0]
                free[i] = False
                continue
            lows[i], highs[i] = spec.bounds_p(name.startswith("ln_"))
        self.free = np.flatnonzero(free)
        if self.free.size == 0:
            raise ValueError("known_p_mask: every slot is known; nothing to infer")
        # Known values of free-able slots must lie in the prior's support (absent couples and
        # protocol slots have no box: lows == highs == 0).
        for i in np.flatnonzero(~free[:n_base] & mask[:n_base]):
            if frac_of[i] < 0 and highs[i] > lows[i] and not lows[i] - 1e-9 <= known[i] <= highs[i] + 1e-9:
                raise ValueError(f"known_p_core: {layout.names[i]} = {known[i]:.6g} is outside the prior's "
                                 f"support [{lows[i]:.6g}, {highs[i]:.6g}]")
        self.lows, self.highs, self.frac_of = lows, highs, frac_of
        # Known C_red with free C_ox: the conditional prior density of C_red given C_ox.
        self.cond_frac = [(i, int(frac_of[i])) for i in range(core)
                          if frac_of[i] >= 0 and not free[i] and free[frac_of[i]]]
        self.names = list(layout.names) + [f"task:{t}" for t in task_names] + [f"stage:{t}" for t in stage_names]
        self.dim = int(self.free.size)
        e0_slots = [layout.index("e0", k) for k in np.flatnonzero(active)]
        self.ordered_e0 = e0_slots if len(e0_slots) >= 2 and all(free[i] for i in e0_slots) else []
        self.arrays = _SpaceArrays(jnp.asarray(known, jnp.float32), jnp.asarray(self.free, jnp.int32),
                                   jnp.asarray(lows[self.free], jnp.float32), jnp.asarray(highs[self.free], jnp.float32),
                                   jnp.asarray(frac_of[self.free], jnp.int32))

    def to_raw(self, y: np.ndarray) -> np.ndarray:
        """Unconstrained (n, dim) -> p_core (n, core) in raw units."""
        y = np.asarray(y, np.float64)
        u = 1.0 / (1.0 + np.exp(-np.clip(y, -500, 500)))
        p = np.tile(self.known, (y.shape[0], 1))
        fr = self.frac_of[self.free]
        box = fr < 0
        lo, hi = self.lows[self.free], self.highs[self.free]
        p[:, self.free[box]] = lo[box] + (hi[box] - lo[box]) * u[:, box]
        if (~box).any():
            of = fr[~box]
            p[:, self.free[~box]] = p[:, of] * (lo[~box] + (hi[~box] - lo[~box]) * u[:, ~box])
        return p

    def log_prior(self, y: np.ndarray) -> np.ndarray:
        """Log prior density in y (n,): logistic per coordinate (+ the conditional term)."""
        y = np.asarray(y, np.float64)
        out = -np.sum(np.logaddexp(0.0, y) + np.logaddexp(0.0, -y), axis=1)
        if self.ordered_e0:
            # Exchangeable couples: the couple slots are labelled by increasing E0 (the current
            # does not change when couples swap slots), times the n! labellings folded in.
            e0 = self.to_raw(y)[:, self.ordered_e0]
            out = out + np.where(np.all(np.diff(e0, axis=1) > 0, axis=1), math.lgamma(len(self.ordered_e0) + 1), -np.inf)
        if self.cond_frac:
            p = self.to_raw(y)
            for i, of in self.cond_frac:
                a, b = self.lows[i] * p[:, of], self.highs[i] * p[:, of]
                inside = (self.known[i] >= a) & (self.known[i] <= b)
                out = out + np.where(inside, -np.log(np.maximum(b - a, 1e-300)), -np.inf)
        return out

    # -- the Laplace proposal's coordinates: raw p, with concentrations on a log scale ---------
    # In y = logit(u) the C_ox-D ridge of a voltammogram (i ~ C sqrt(D)) bends with the logit of
    # each box; in (ln C, ln D) it is straight, so a Gaussian there fits it.

    @property
    def _log_kind(self) -> np.ndarray:
        return np.asarray([self.names[i].startswith(("c_ox", "c_red")) for i in self.free])

    def _box(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fr = self.frac_of[self.free]
        lo, hi = self.lows[self.free], self.highs[self.free]
        scale = np.where(fr >= 0, p[:, np.maximum(fr, 0)], 1.0)
        return lo * scale, hi * scale

    def to_z(self, y: np.ndarray) -> np.ndarray:
        pf = self.to_raw(y)[:, self.free]
        return np.where(self._log_kind, np.log(np.maximum(pf, 1e-300)), pf)

    def from_z(self, z: np.ndarray) -> np.ndarray:
        """Inverse of ``to_z``; rows outside the prior's support come back as NaN."""
        z = np.asarray(z, np.float64)
        pf = np.where(self._log_kind, np.exp(np.minimum(z, 700.0)), z)
        p = np.tile(self.known, (z.shape[0], 1))
        p[:, self.free] = pf
        a, b = self._box(p)
        u = (pf - a) / (b - a)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(u) - np.log1p(-u)
        bad = ~np.all((u > 0) & (u < 1), axis=1)
        y[bad] = np.nan
        return y

    def log_det_dz_dy(self, y: np.ndarray) -> np.ndarray:
        """log |det dz/dy| (n,); the map is triangular (C_red after C_ox), so diagonal terms."""
        y = np.clip(np.asarray(y, np.float64), -500, 500)
        p = self.to_raw(y)
        a, b = self._box(p)
        ld = np.log(b - a) - np.logaddexp(0.0, y) - np.logaddexp(0.0, -y)
        ld = ld - np.where(self._log_kind, np.log(np.maximum(p[:, self.free], 1e-300)), 0.0)
        return ld.sum(1)

    def laplace_precision_z(self, y_mode: np.ndarray, hess_y: np.ndarray) -> np.ndarray:
        """Precision of the Laplace proposal in z: the likelihood's Gauss-Newton Hessian moved
        from y to z, plus the precision of a Gaussian with each prior box's variance (so that
        directions the data do not inform stay as wide as the prior, not infinite)."""
        y0 = np.asarray(y_mode, np.float64)
        sig = 1.0 / (1.0 + np.exp(-np.clip(y0, -500, 500)))
        h_lik = hess_y - np.diag(2.0 * sig * (1.0 - sig))
        eps = 1e-5
        jac = np.empty((self.dim, self.dim))  # dz/dy at the mode, by central differences
        for j in range(self.dim):
            e = np.zeros(self.dim)
            e[j] = eps
            jac[:, j] = (self.to_z((y0 + e)[None])[0] - self.to_z((y0 - e)[None])[0]) / (2 * eps)
        inv = np.linalg.inv(jac)
        p = self.to_raw(y0[None])
        a, b = self._box(p)
        a, b = a[0], b[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            width = np.where(self._log_kind, np.log(b / np.maximum(a, 1e-2 * b)), b - a)
        return inv.T @ h_lik @ inv + np.diag(12.0 / width**2)

    def canonical_order(self, p_core) -> np.ndarray:
        """``p_core`` with its active couples' slots permuted to increasing E0 (the labelling of
        the posterior when couples are exchangeable); unchanged otherwise."""
        p = np.array(p_core, dtype=np.float64, copy=True)
        if not self.ordered_e0:
            return p
        s = self.layout.max_species
        couples = [i % s for i in self.ordered_e0]
        order = [couples[j] for j in np.argsort(p[self.ordered_e0], kind="stable")]
        src = p.copy()
        for name, _, _ in SPECIES_QUANTITIES:
            for dst_k, src_k in zip(couples, order):
                p[self.layout.index(name, dst_k)] = src[self.layout.index(name, src_k)]
        return p

    def prior_std_raw(self, n: int = 4096, seed: int = 0) -> np.ndarray:
        """Prior standard deviation of every slot (core,), by sampling (0 for known slots); the
        same prior (boxes, known values, free slots) is sampled once per process."""
        key = (self.known.tobytes(), self.free.tobytes(), self.lows.tobytes(), self.highs.tobytes(), n, seed)
        if key not in _PRIOR_STD_CACHE:
            if len(_PRIOR_STD_CACHE) > 256:
                _PRIOR_STD_CACHE.clear()
            _PRIOR_STD_CACHE[key] = self.prior_draws(n, np.random.default_rng(seed)).std(0)
        return _PRIOR_STD_CACHE[key].copy()

    def prior_draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws (n, core) of the prior: uniform positions in the prior's box (its
        coordinates y = logit(position)), the support's constraints (e.g. ordered E0 of
        exchangeable couples) by rejection."""
        out, have = [], 0
        while have < n:
            u = rng.uniform(1e-12, 1.0 - 1e-12, size=(2 * n, self.dim))
            y = np.log(u) - np.log1p(-u)
            y = y[np.isfinite(self.log_prior(y))]
            out.append(self.to_raw(y))
            have += y.shape[0]
        return np.concatenate(out)[:n]


# =================================================================================================
# Engines: p_core (n, core) -> mean and model variance of the current (n, L) in dataset units.
# They are equinox modules so that one compiled program serves every inference with the same
# shapes (the model and the inputs are arguments, not constants baked into a closure).


class _SurrogateForward(eqx.Module):
    model: eqx.Module
    en: jax.Array
    x0: jax.Array
    xm: jax.Array
    xs: jax.Array
    pm: jax.Array
    ps: jax.Array
    n_steps: int = eqx.field(static=True)
    phys_dim: int = eqx.field(static=True)

    def __call__(self, p):
        from ._data import state_to_current
        from .objective import integrate_flow

        p = p.astype(jnp.float32)
        if p.shape[1] < self.phys_dim:
            p = jnp.pad(p, ((0, 0), (0, self.phys_dim - p.shape[1])))
        pn = (p - self.pm) / self.ps
        length = self.en.shape[-1]
        x1 = jax.vmap(lambda q: jax.vmap(lambda x: integrate_flow(self.model, x, self.en, q, self.n_steps))(self.x0))(pn)
        cur = state_to_current(x1[..., -length:] * self.xs[-length:] + self.xm[-length:])
        return cur.mean(1), cur.var(1)


class _SimulatorForward(eqx.Module):
    """The simulator on the active couples only (an absent couple carries no current, so it is
    not simulated: a one-couple case costs half of a two-couple one)."""

    run: object = eqx.field(static=True)
    take: tuple = eqx.field(static=True)

    def __call__(self, p):
        i = self.run(p[:, jnp.asarray(self.take)].astype(jnp.float32))[0]
        return i, jnp.zeros_like(i)


class _SpaceArrays(eqx.Module):
    """The unconstrained -> raw map as arrays (see ``ParameterSpace``)."""

    known: jax.Array
    free: jax.Array
    lo: jax.Array
    hi: jax.Array
    frac_of: jax.Array

    def to_raw(self, y):
        u = jax.nn.sigmoid(y)
        val = self.lo + (self.hi - self.lo) * u
        p = jnp.broadcast_to(self.known, (y.shape[0], self.known.size))
        box = self.frac_of < 0
        p = p.at[:, self.free].set(jnp.where(box, val, 0.0))
        of = p[:, jnp.maximum(self.frac_of, 0)]
        return p.at[:, self.free].set(jnp.where(box, val, of * val))


def _to_f32(y) -> jax.Array:
    """float32 on the device, cast by numpy (a float64 -> float32 cast by jax dispatches an op)."""
    return jnp.asarray(np.asarray(y, np.float32))


@eqx.filter_jit
def _forward_batch(forward, space, y):
    return forward(space.to_raw(y))


@eqx.filter_jit
def _log_likelihood_batch(forward, space, y, obs, white, const):
    """Gaussian log-likelihood (K,) of the observed points at K points y, and the forward mean and
    spread (K, L): one compiled call per batch. ``white`` (L, L) whitens the residual (zero rows
    and columns at unobserved points); ``const`` = -1/2 (log det + n log 2 pi) of the covariance."""
    mean, var = forward(space.to_raw(y))
    w = (obs[None, :] - mean) @ white.T
    return -0.5 * jnp.sum(w**2, axis=1) + const, mean, var


@eqx.filter_jit
def _forward_jacobian(forward, space, y):
    """Mean, model variance (K, L) and d mean / d y (K, L, dim) at K points y (K, dim)."""

    def mean_of(v):  # the mean, and (as aux) the primal pass's values: no second forward pass
        m, s = forward(space.to_raw(v[None]))
        return m[0], (m[0], s[0])

    jac, (mean, var) = jax.vmap(jax.jacfwd(mean_of, has_aux=True))(y)
    return mean, var, jac


def _surrogate_engine(model, normalizers, geometry, applied_signal, n_mc: int, n_steps: int, seed: int):
    xm, xs, em, es, pm, ps = (jnp.asarray(a, jnp.float32) for a in normalizers)
    length = int(geometry["target_len"])
    channels = int(geometry["signal_channels"])
    e = jnp.asarray(applied_signal, jnp.float32).reshape(channels * length)
    en = ((e - em) / es).reshape(channels, length)
    x0 = jax.random.normal(jax.random.PRNGKey(np.uint32(seed % (2**32))), (n_mc, int(geometry["state_dim"])))
    return _SurrogateForward(model, en, x0, xm, xs, pm, ps, int(n_steps), int(geometry["phys_dim"]))


def _simulator_engine(meta: dict, geometry: dict, task: str, active: np.ndarray):
    from .. import sim
    from ..data import ParamSpace as _Layout
    from ..data._generate import _task_runner
    from ..data._space import GLOBAL_QUANTITIES, SPECIES_QUANTITIES

    simulator = meta.get("simulator")
    if simulator is None:
        raise ValueError("engine='simulator': the model metadata has no 'simulator' section (area, temperature, "
                         "solver); re-export the model with this ecsfm version")
    config = sim.SolverConfig(**simulator["solver_config"])
    layout = _Layout(int(geometry["max_species"]))
    couples = [int(k) for k in np.flatnonzero(active)]
    take = tuple([layout.index(name, k) for name, _, _ in SPECIES_QUANTITIES for k in couples]
                 + [layout.index(name) for name, _, _ in GLOBAL_QUANTITIES])
    run = _task_runner(task, int(geometry["target_len"]), int(geometry["nx"]), len(couples),
                       float(simulator["area_cm2"]), float(simulator["temperature_K"]), config)
    return _SimulatorForward(run, take)


def _discrepancy(meta: dict, task: str | None) -> dict:
    """The calibrated discrepancy of a task: scale ``s^2 = a^2 + (b level)^2`` (a in mA), the
    correlation ``(1 - nugget) rho^|i-j| + nugget I`` over points and the gain sd (metadata written
    before the correlated form (``form_version`` < 2) read as independent points: rho 0, nugget 1;
    before the gain term (< 3) as gain 0; before the ends' term (< 4) as onset = end = 0)."""
    from .eval_classical import _edges

    disc = (meta or {}).get("discrepancy", {})
    per = disc.get("per_task", {}).get(task or "", {})
    model = per.get("model")
    if model is None:  # no fitted form: the residual RMS, independent points
        a = float(per.get("residual_rms_mA", disc.get("current_residual_rms_mA", 0.0)))
        model = {"a_mA": a, "b": 0.0, "rho": 0.0, "nugget": 1.0}
    onset, end, edge_points = _edges(model)
    return {"a": float(model["a_mA"]), "b": float(model["b"]), "rho": float(model.get("rho", 0.0)),
            "nugget": float(model.get("nugget", 1.0)), "gain": float(model.get("gain", 0.0)),
            "onset": onset, "end": end, "edge_points": edge_points}


def _likelihood_covariance(obs: np.ndarray, sel: np.ndarray, noise2: float, disc: dict | None,
                           gain_shape: np.ndarray | None = None):
    """The likelihood's covariance over the observed points -- discrepancy ``S R S + g^2 c c^T``
    (scale and shape ``c`` from the observed current, smoothed, so it does not depend on the
    parameters) + noise -- as a
    whitening matrix (L, L) (zero rows/columns at unobserved points, one shape for every mask:
    no recompiles), the constant -1/2 (log det + n log 2 pi), and the discrepancy's covariance
    over every point (L, L) (zero without a discrepancy) for the predictive. ``gain_shape`` (L,)
    replaces the observed current as the gain term's ``c`` (the scale stays the observed one's)."""
    from .eval_classical import current_level, discrepancy_covariance

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


def _discrepancy_conditional(mean_i: np.ndarray, obs: np.ndarray, sel: np.ndarray, white: np.ndarray,
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
    ``_likelihood_covariance`` returns it."""
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


def _predictive_current(mean_i: np.ndarray, w: np.ndarray, obs: np.ndarray, sel: np.ndarray, noise2: float,
                        disc: dict | None, white: np.ndarray,
                        k_d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The posterior predictive of the current (L,) and its variance less the noise in two parts,
    the particles' weighted spread (L,) and the discrepancy's conditional variance (L,), from the
    particles' model currents ``mean_i`` (N, L) and weights ``w`` (N,): per particle the
    discrepancy's conditional (``_discrepancy_conditional``) is added, then the weighted moments.

    The gain term's shape is the posterior's model current (``w @ mean_i``, smoothed as in the
    calibration, which used the noise-free simulated current), not the noisy observations that the
    likelihood's fixed covariance is built from: a shape that carries the noise makes the
    leave-one-out conditional regress each point on a direction holding that point's own noise
    (through the smoothing window), and the predictive then follows the noise (measured: on the
    main job's dense cases, 12 degrees of freedom spent on the noise and a calibration error of
    0.052 with the observed shape; see the README)."""
    if disc is not None and disc["gain"] > 0 and np.any(k_d):
        from .eval_classical import current_level

        white, _, k_d = _likelihood_covariance(obs, sel, noise2, disc, gain_shape=current_level(w @ mean_i, signed=True))
    mean_i, var_cond = _discrepancy_conditional(mean_i, obs, sel, white, k_d, noise2)
    pred_mean, spread = _weighted_variance(mean_i, w)
    return pred_mean, spread, var_cond


# =================================================================================================
# The user-facing inference


def infer_parameter_posterior(*, model, normalizers, geometry: dict, observed_current, applied_signal,
                              known_p_core, known_p_mask, obs_mask=None,
                              config: PosteriorInferenceConfig = PosteriorInferenceConfig(), seed: int = 0,
                              meta: dict | None = None, log_likelihood_override=None) -> dict:
    """Posterior over the free slots of the conditioning vector given a (partial, noisy) current.

    Inputs: ``observed_current`` (L,) in dataset units (mA for the dataset's area);
    ``applied_signal`` (L,) or (channels, L) V; ``known_p_core`` (core,) raw values (the one-hots
    select the task and stage, hence the prior; protocol slots are always taken from it);
    ``known_p_mask`` (core,) bool; ``obs_mask`` (L,) 1 = observed (None: all). ``meta``: the
    model metadata (default ``geometry["meta"]``, which ``resolve_model_geometry`` attaches).
    ``log_likelihood_override(p_core (n, core)) -> (n,)`` replaces the likelihood (for tests
    against problems with a known posterior).

    Returns the seed's keys -- ``posterior_mean_norm``, ``posterior_std_norm`` (core,),
    ``posterior_mean_raw``, ``posterior_std_raw``, ``posterior_samples_raw`` (N, core),
    ``posterior_weights`` (N,), ``predictive_mean_current``, ``predictive_std_current`` (L,),
    ``observed_current``, ``observed_mask``, ``reliability`` (observed points) -- plus
    ``reliability_heldout`` (masked-out points), ``predictive_std_current_noise_free``,
    ``parameter_names``, ``free_indices``, ``ess``, ``pareto_k``, ``warnings``, ``method``,
    ``engine``, ``task``, ``stage``, ``prior_std_raw``, ``log_evidence``, and
    ``parameter_error_prior_weight``: the calibrated prior weight mixed into the parameter
    posterior (0 where none was applied; then the samples are the sampler's own particles), and
    ``posterior_std_raw_sampler``: the sds of the sampler's posterior before that mixing (the one
    the predictive uses); ``predictive_var_parameters`` and ``predictive_var_discrepancy`` (L,),
    the parts of the predictive variance less the noise, and ``predictive_band_scale``, the factor
    the discrepancy's part entered with (``PosteriorInferenceConfig.band_scale``).
    """
    res = infer_joint_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                observed_currents=[observed_current], applied_signals=[applied_signal],
                                known_p_cores=[known_p_core], known_p_mask=known_p_mask,
                                obs_masks=None if obs_mask is None else [obs_mask], config=config, seed=seed,
                                meta=meta, log_likelihood_override=log_likelihood_override)
    for key in _PER_TRACE_KEYS:
        res[key] = res[key][0]
    return res


#: keys of ``infer_joint_posterior``'s result that hold one entry per trace
_PER_TRACE_KEYS = ("predictive_mean_current", "predictive_std_current", "predictive_std_current_noise_free",
                   "predictive_var_parameters", "predictive_var_discrepancy", "predictive_band_scale",
                   "observed_current", "observed_mask", "reliability", "reliability_heldout")


def _check_trace(geometry: dict, obs, sig, obs_mask, k: int, n_traces: int):
    """One trace's observed current (L,), signal and mask (bool, L), checked; errors name the trace."""
    where = f"[{k}]" if n_traces > 1 else ""
    length = int(geometry["target_len"])
    obs = np.asarray(obs, np.float64).reshape(-1)
    if obs.size != length:
        raise ValueError(f"observed_current{where}: expected {length} points (the model's target_len), got {obs.size}")
    sig = np.asarray(sig, np.float64)
    if sig.size != int(geometry["signal_channels"]) * length:
        raise ValueError(f"applied_signal{where}: expected {int(geometry['signal_channels']) * length} values, "
                         f"got {sig.size}")
    if not np.all(np.isfinite(sig)):
        raise ValueError(f"applied_signal{where}: contains NaN or Inf")
    mask = np.ones(length) if obs_mask is None else np.asarray(obs_mask, np.float64).reshape(-1)
    if mask.size != length:
        raise ValueError(f"obs_mask{where}: expected {length} values, got {mask.size}")
    sel = mask >= 0.5
    if not sel.any():
        raise ValueError(f"obs_mask{where}: no observed point (the mask is empty)")
    if not np.all(np.isfinite(obs[sel])):
        raise ValueError(f"observed_current{where}: observed points contain NaN or Inf")
    return obs, sig, sel


def infer_joint_posterior(*, model, normalizers, geometry: dict, observed_currents, applied_signals, known_p_cores,
                          known_p_mask, obs_masks=None, config: PosteriorInferenceConfig = PosteriorInferenceConfig(),
                          seed: int = 0, meta: dict | None = None, log_likelihood_override=None) -> dict:
    """One posterior from several traces of the same cell (a scan-rate series on the model's
    protocol): the traces share every parameter and differ only in their protocol slots (e.g.
    ``ln_time_scale``) and applied signals. The likelihood is the product of the traces'
    likelihoods (each with its own discrepancy covariance: the surrogate's errors are taken as
    independent between traces), evaluated trace by trace, all particles in one compiled call
    each. ``observed_currents``, ``applied_signals``, ``known_p_cores`` and ``obs_masks`` hold one
    entry per trace; the cores must agree on every slot but the protocol's. The result has
    ``infer_parameter_posterior``'s keys, with the per-trace ones (predictive, observed,
    reliability) as one entry per trace."""
    meta = meta if meta is not None else geometry.get("meta")
    if meta is None:
        raise ValueError("meta: the model metadata is needed (for the prior); pass meta= or build the geometry "
                         "with ecsfm.fm.eval_classical.resolve_model_geometry")
    observed_currents, applied_signals = list(observed_currents), list(applied_signals)
    known_p_cores = [np.asarray(c, np.float64) for c in known_p_cores]
    n_traces = len(observed_currents)
    if n_traces == 0:
        raise ValueError("observed_currents: need at least one trace")
    masks = [None] * n_traces if obs_masks is None else list(obs_masks)
    if not len(applied_signals) == len(known_p_cores) == len(masks) == n_traces:
        raise ValueError(f"traces: {n_traces} observed currents, {len(applied_signals)} applied signals, "
                         f"{len(known_p_cores)} known_p_cores, {len(masks)} masks: one of each per trace")
    checked = [_check_trace(geometry, o, g, m, k, n_traces)
               for k, (o, g, m) in enumerate(zip(observed_currents, applied_signals, masks))]
    spaces = [ParameterSpace(meta, c, known_p_mask, geometry) for c in known_p_cores]
    space = spaces[0]
    protocol = np.asarray([r == "protocol" for r in space.layout.roles]
                          + [False] * (space.known.size - len(space.layout.roles)))
    for k, sp in enumerate(spaces[1:], 1):
        if not np.array_equal(sp.free, space.free) or not np.allclose(sp.known[~protocol], space.known[~protocol]):
            raise ValueError(f"known_p_cores[{k}]: differs from trace 0 outside the protocol slots (the traces of a "
                             "joint fit share every parameter, task and stage)")
    length = int(geometry["target_len"])

    disc = _discrepancy(meta, space.task) if config.engine == "surrogate" and config.use_discrepancy else None
    noise2 = config.obs_noise_std**2
    # Per trace: its forward (the surrogate sees the trace's signal), the likelihood's fixed
    # covariance -- noise + (surrogate) the calibrated, correlated discrepancy, whose residual
    # already includes the scatter of the flow's draws -- as a whitening matrix.
    traces = []
    for (obs, sig, sel), sp in zip(checked, spaces):
        if config.engine == "surrogate":
            forward = _surrogate_engine(model, normalizers, geometry, sig, config.n_mc_per_particle,
                                        config.n_integration_steps, seed)
        else:
            forward = _simulator_engine(meta, geometry, sp.task, sp.active)
        white_np, ll_const, k_d = _likelihood_covariance(obs, sel, noise2, disc)
        traces.append({"forward": forward, "arrays": sp.arrays, "obs": obs, "sel": sel, "white": white_np,
                       "const": ll_const, "k_d": k_d, "evaluated": [],
                       "obs_j": jnp.asarray(np.where(sel, obs, 0.0), jnp.float32),
                       "white_j": jnp.asarray(white_np, jnp.float32), "const_j": jnp.float32(ll_const)})

    def summed_log_likelihood(y, keep: bool):
        # Sum over traces, one compiled call each; ``keep``: store the forward values (CEM's
        # predictive re-uses those of its proposals).
        total = np.zeros(y.shape[0])
        for t in traces:
            ll, mean, _ = _log_likelihood_batch(t["forward"], t["arrays"], _to_f32(y), t["obs_j"],
                                                t["white_j"], t["const_j"])
            if keep:
                t["evaluated"].append(mean)
            total += np.asarray(ll, np.float64)
        return total

    def log_likelihood(y):
        if log_likelihood_override is not None:
            return np.asarray(log_likelihood_override(space.to_raw(y)), np.float64)
        total = summed_log_likelihood(y, keep=config.method == "cem")
        return np.where(np.isfinite(total), total, -np.inf)

    def phi_fn(y):
        # The negative log posterior alone (forward passes, no Jacobian), up to the constants.
        total = -space.log_prior(y) - summed_log_likelihood(y, keep=False)
        return np.where(np.isfinite(total), total, np.inf)

    def newton_fn(y):
        # Gauss-Newton pieces of the negative log posterior at K points (covariance held fixed).
        sig_y = 1.0 / (1.0 + np.exp(-np.clip(y, -500, 500)))
        phi = -space.log_prior(y)
        grad = 2.0 * sig_y - 1.0
        hess = np.eye(y.shape[1]) * (2.0 * sig_y * (1.0 - sig_y))[:, :, None]
        for t in traces:
            mean, _, jac = (np.asarray(a, np.float64) for a in
                            _forward_jacobian(t["forward"], t["arrays"], _to_f32(y)))
            wr = (np.where(t["sel"], t["obs"], 0.0)[None] - mean) @ t["white"].T  # whitened residual (K, L)
            wj = np.einsum("ij,kjd->kid", t["white"], jac)  # whitened Jacobian (K, L, dim)
            phi = phi + 0.5 * np.sum(wr**2, axis=1) - t["const"]
            grad = grad - np.einsum("kid,ki->kd", wj, wr)
            hess = hess + np.einsum("kid,kie->kde", wj, wj)
        return np.where(np.isfinite(phi), phi, np.inf), grad, hess

    warnings = []
    spec = space.prior.globals.get("ln_time_scale")
    if config.engine == "surrogate" and spec is not None and spec.dist != "fixed":
        # The surrogate learned its protocols over the prior's time scales; outside, it extrapolates.
        lo, hi = spec.bounds_p(True)
        slot = space.layout.index("ln_time_scale")
        for k, sp in enumerate(spaces):
            if not lo - 1e-9 <= sp.known[slot] <= hi + 1e-9:
                where = f"trace {k}: " if n_traces > 1 else ""
                warnings.append(f"{where}time scale {math.exp(sp.known[slot]):.3g} s is outside the model's prior "
                                f"[{math.exp(lo):.3g}, {math.exp(hi):.3g}] s: the surrogate extrapolates there "
                                "(engine='simulator' does not)")
    if config.method == "cem":
        res = run_cem_posterior(space.log_prior, log_likelihood, space.dim, config.cem, seed=seed,
                                newton_fn=None if log_likelihood_override is not None else newton_fn,
                                coords=space, phi_fn=None if log_likelihood_override is not None else phi_fn)
        if res["pareto_k"] > 0.7:
            warnings.append(f"Pareto k-hat {res['pareto_k']:.2f} > 0.7: the importance weights have a heavy tail; "
                            "the posterior estimate is unreliable (more particles/iterations, or method='smc')")
        if res["ess"] < config.cem.min_ess:
            warnings.append(f"effective sample size {res['ess']:.1f} < {config.cem.min_ess:g}: few particles carry "
                            "the posterior; intervals are rough")
    else:
        res = run_smc_posterior(space.log_prior, log_likelihood, space.dim, config.smc, seed=seed, coords=space)
        if not res["reached_posterior"]:
            warnings.append(f"SMC stopped at temperature {res['temperatures'][-1]:.3g} < 1 after "
                            f"{config.smc.max_stages} stages: the result is not the posterior")
    y, w = res["samples"], res["weights"]
    samples = space.to_raw(y)
    per_trace = {key: [] for key in _PER_TRACE_KEYS}
    for t in traces:
        obs, sel = t["obs"], t["sel"]
        # Predictive: the forward values of the weighted particles -- for CEM those computed during
        # the search (one likelihood call per stage, padded to the particle count), for SMC one more
        # call at the final particles.
        if log_likelihood_override is None:
            if config.method == "cem":
                mean_i = np.concatenate([np.asarray(m, np.float64)[:k] for m, k in zip(t["evaluated"],
                                                                                        res["batch_sizes"])])
            else:
                mean_i = np.asarray(_forward_batch(t["forward"], t["arrays"], _to_f32(y))[0],
                                    np.float64)
            # The discrepancy is smooth, so the observed points say what it is: per particle, its
            # Gaussian-process conditional given the residual at the observed points (leave-one-out
            # at the observed points themselves) is added to the prediction, and its conditional
            # variance joins the parameter uncertainty (Kennedy & O'Hagan's predictive of the real
            # process). Without a discrepancy both are zero.
            # The discrepancy's part carries the band scale calibrated on fresh simulations
            # (ecsfm.fm.parameter_error.fit_band_scale; 1 where the model has none).
            band_scale = 1.0
            if disc is not None and config.band_scale:
                band_scale = predictive_band_scale(meta, space.task, config.method, float(np.mean(sel))) or 1.0
            pred_mean, var_par, var_disc = _predictive_current(mean_i, w, obs, sel, noise2, disc, t["white"],
                                                               t["k_d"])
            pred_var_nf = var_par + band_scale * var_disc
            pred_std = np.sqrt(pred_var_nf + noise2)
            pred_std_nf = np.sqrt(pred_var_nf)
        else:
            pred_mean = np.zeros(length)
            pred_std = pred_std_nf = np.full(length, math.sqrt(noise2))
            var_par = var_disc = np.zeros(length)
            band_scale = 1.0
        per_trace["predictive_mean_current"].append(pred_mean.astype(np.float32))
        per_trace["predictive_std_current"].append(pred_std.astype(np.float32))
        per_trace["predictive_std_current_noise_free"].append(pred_std_nf.astype(np.float32))
        per_trace["predictive_var_parameters"].append(var_par.astype(np.float32))
        per_trace["predictive_var_discrepancy"].append(var_disc.astype(np.float32))
        per_trace["predictive_band_scale"].append(float(band_scale))
        per_trace["observed_current"].append(obs.astype(np.float32))
        per_trace["observed_mask"].append(sel.astype(np.float32))
        per_trace["reliability"].append(compute_reliability_metrics(obs, pred_mean, pred_std, sel))
        per_trace["reliability_heldout"].append(compute_reliability_metrics(obs, pred_mean, pred_std, ~sel)
                                                if (~sel).any() else None)
    mean_raw, var_raw = _weighted_variance(samples, w)
    std_sampler = np.sqrt(np.maximum(var_raw, 0.0))
    mixed = None
    if config.engine == "surrogate" and config.parameter_error and log_likelihood_override is None:
        mixed = prior_weight(meta, space.task, config.method)
    if mixed:
        # The calibrated chance that this inference misses (ecsfm.fm.parameter_error): the posterior
        # is mixed with the prior at that weight. The predictive above keeps the sampler's particles.
        samples, w, mean_raw, var_raw = contaminate(space, samples, w, var_raw, mixed,
                                                    np.random.default_rng([seed, 7]))
    std_raw = np.sqrt(np.maximum(var_raw, 0.0))
    std_raw[~np.isin(np.arange(samples.shape[1]), space.free)] = 0.0
    p_mean = np.asarray(normalizers[4], np.float64).reshape(-1)[: samples.shape[1]]
    p_std = np.asarray(normalizers[5], np.float64).reshape(-1)[: samples.shape[1]]
    return {
        "posterior_mean_norm": ((mean_raw - p_mean) / p_std).astype(np.float32),
        "posterior_std_norm": (std_raw / p_std).astype(np.float32),
        "posterior_mean_raw": mean_raw.astype(np.float32),
        "posterior_std_raw": std_raw.astype(np.float32),
        "posterior_samples_raw": samples.astype(np.float32),
        "posterior_weights": w.astype(np.float32),
        **per_trace,
        "parameter_names": space.names,
        "free_indices": space.free.tolist(),
        "prior_std_raw": space.prior_std_raw(),
        "parameter_error_prior_weight": float(mixed or 0.0),
        "posterior_std_raw_sampler": np.where(std_raw > 0, std_sampler, 0.0).astype(np.float32),
        "ess": float(res["ess"]),
        "pareto_k": float(res["pareto_k"]),
        "log_evidence": float(res["log_evidence"]),
        "n_likelihood_evaluations": int(res["n_evaluations"]),
        "warnings": warnings,
        "method": config.method,
        "engine": config.engine,
        "sampler": ({"temperatures": res["temperatures"].tolist(), "moves": res["moves"].tolist(),
                     "acceptance": res["acceptance"].tolist()} if config.method == "smc" else
                    {"batch_sizes": res["batch_sizes"]}),
        "task": space.task,
        "stage": space.stage,
        "n_traces": n_traces,
    }
