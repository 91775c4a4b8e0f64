"""Cross-entropy adaptive importance sampling with a Laplace stage, in unconstrained coordinates.

CEM iterations adapt a Gaussian proposal to the elite particles; they are a proposal device only.
Every particle drawn in every iteration is importance-weighted against the deterministic mixture
of the proposals actually used (each iteration's proposal carries a defensive component equal to
the first, prior-matched one), ``w ~ prior x likelihood / q_mix``, so the weighted sample targets
the posterior. The Laplace stage (damped Gauss-Newton to the mode, then a multivariate t on it,
truncated to the prior's support with its mass inside in the density) joins the mixture the same
way, so the weights stay exact.
"""

from __future__ import annotations

import math

import numpy as np

from ._proposals import mvn_logpdf, mvt_logpdf, weighted_gaussian
from .config import CEMPosteriorConfig
from .diagnostics import normalise_log_weights, pareto_khat
from .optimize import levenberg_marquardt

__all__ = ["run_cem_posterior", "LOGISTIC_STD", "LAPLACE_MASS_DRAWS"]

#: Standard deviation of the standard logistic distribution, pi / sqrt(3): the prior's sd in the
#: unconstrained coordinates y = logit(u) of a uniform box.
LOGISTIC_STD = math.pi / math.sqrt(3.0)
#: Draws of the Laplace t proposal that measure its mass inside the prior's support (no
#: simulation: the map to the box only); the mass enters the truncated density's normaliser.
LAPLACE_MASS_DRAWS = 16384
#: Ridge on the elite covariance, and the jitter of its Cholesky factor (unconstrained units^2).
_ELITE_RIDGE, _CHOL_JITTER = 1e-4, 1e-9
#: Rejection rounds of the truncated Laplace proposal, each drawing 4 x n candidates: enough for a
#: proposal with 1/256 of its mass inside the prior's box.
_TRUNCATION_ROUNDS, _CANDIDATES_PER_ROUND = 64, 4


class _Proposals:
    """Every batch evaluated so far and the proposal (log density, particle count) it came from."""

    def __init__(self, log_prior, log_likelihood, n: int):
        self.log_prior, self.log_likelihood, self.n = log_prior, log_likelihood, n
        self.comps, self.ys, self.lps, self.lls = [], [], [], []

    def evaluate(self, y: np.ndarray, log_q, count: int) -> None:
        # Padded to the particle count so every likelihood call has one shape (one compiled program).
        m = y.shape[0]
        padded = np.concatenate([y, np.repeat(y[:1], self.n - m, axis=0)]) if m < self.n else y
        self.comps.append((log_q, count))
        self.ys.append(y)
        self.lls.append(np.asarray(self.log_likelihood(padded), np.float64)[:m])
        self.lps.append(np.asarray(self.log_prior(y), np.float64))

    def log_q_mix(self, y: np.ndarray) -> np.ndarray:
        parts = [math.log(k) + f(y) for f, k in self.comps]
        return np.logaddexp.reduce(np.stack(parts), axis=0) - math.log(sum(k for _, k in self.comps))

    def log_weights(self) -> tuple[np.ndarray, np.ndarray]:
        y_all = np.concatenate(self.ys)
        return y_all, np.concatenate(self.lps) + np.concatenate(self.lls) - self.log_q_mix(y_all)


def run_cem_posterior(log_prior, log_likelihood, dim: int, config: CEMPosteriorConfig = CEMPosteriorConfig(), *,
                      seed: int = 0, init_mean=None, init_std=None, newton_fn=None, coords=None,
                      phi_fn=None) -> dict:
    """Adaptive importance sampling with cross-entropy proposal updates (and, given
    ``newton_fn``, a Laplace stage), in ``dim`` unconstrained coordinates.

    ``log_prior(y)`` and ``log_likelihood(y)`` take a batch (n, dim) and return (n,) (one call
    per iteration for all particles). The first proposal is ``N(init_mean, init_std^2)`` (default:
    the logistic prior's mean and standard deviation). ``newton_fn(y) -> (phi, grad, hess)``
    (negative log posterior, its gradient and a positive-definite Hessian approximation, batched
    over K points) enables the Laplace stage; ``phi_fn(y) -> phi`` (optional, the negative log
    posterior alone) lets each Gauss-Newton iteration try several dampings in one call.
    ``coords`` (optional; see ``ParameterSpace``: ``to_z``, ``from_z``, ``log_det_dz_dy``,
    ``laplace_precision_z``) supplies the coordinates the Laplace proposal is built in.

    Returns a dict: ``samples`` (N, dim) of every stage, normalised ``weights`` (N,) ~ prior x
    likelihood / q_mix, ``ess``, ``pareto_k``, ``log_likelihood`` (N,), ``log_weights`` (N,),
    ``log_evidence`` (importance-sampling estimate), ``n_evaluations``, ``mode`` and
    ``laplace_cov`` (None without a Laplace stage) and ``batch_sizes`` (particles per stage).
    """
    rng = np.random.default_rng(seed)
    mean0 = np.zeros(dim) if init_mean is None else np.asarray(init_mean, np.float64)
    std0 = np.full(dim, LOGISTIC_STD) if init_std is None else np.broadcast_to(np.asarray(init_std, np.float64), (dim,))
    chol0 = np.diag(std0)
    n, delta = config.n_particles, config.defensive_weight
    book = _Proposals(log_prior, log_likelihood, n)

    def with_defence(m, c):
        if delta == 0:
            return lambda y: mvn_logpdf(y, m, c)
        return lambda y: np.logaddexp(np.log1p(-delta) + mvn_logpdf(y, m, c), np.log(delta) + mvn_logpdf(y, mean0, chol0))

    mean, chol = mean0, chol0
    for it in range(config.n_iterations):
        n_def = 0 if it == 0 else int(round(delta * n))
        y = np.concatenate([mean + rng.standard_normal((n - n_def, dim)) @ chol.T,
                            mean0 + rng.standard_normal((n_def, dim)) @ chol0.T])
        book.evaluate(y, with_defence(mean, chol) if it else (lambda y, m=mean0, c=chol0: mvn_logpdf(y, m, c)), n)
        if it == config.n_iterations - 1:
            break
        # Elites by importance weight against the mixture so far (in the first iteration this is
        # the ordering by posterior density relative to the proposal).
        y_all, lw = book.log_weights()
        n_elite = max(int(math.ceil(config.elite_fraction * y_all.shape[0])), dim + 2)
        elite = np.argsort(-np.where(np.isfinite(lw), lw, -np.inf))[:n_elite]
        w_elite, _ = normalise_log_weights(lw[elite])
        # Flatten the elite weights so one lucky particle does not collapse the proposal.
        m, cov = weighted_gaussian(y_all[elite], np.sqrt(w_elite), ridge=_ELITE_RIDGE)
        mean, chol = m, np.linalg.cholesky(cov * config.inflation**2 + _CHOL_JITTER * np.eye(dim))
    mode = laplace_cov = None
    if newton_fn is not None and config.n_newton > 0:
        mode, laplace_cov = _laplace_stage(book, config, rng, dim, newton_fn, phi_fn, coords)
    y_all, lw = book.log_weights()
    ll = np.concatenate(book.lls)
    w, ess = normalise_log_weights(lw)
    # The importance-sampling estimate of Z averages over every draw: a draw outside the prior's
    # support has weight 0 and still counts in the mean (averaging over the finite weights alone
    # overstates Z by the fraction of draws inside the support).
    finite = lw[np.isfinite(lw)]
    log_evidence = (float(np.log(np.sum(np.exp(finite - finite.max())) / lw.size) + finite.max())
                    if finite.size else -np.inf)
    return {"samples": y_all, "weights": w, "ess": ess, "pareto_k": pareto_khat(lw), "log_likelihood": ll,
            "log_weights": lw, "log_evidence": log_evidence, "n_evaluations": int(y_all.shape[0]),
            "mode": mode, "laplace_cov": laplace_cov, "batch_sizes": [int(y.shape[0]) for y in book.ys]}


def _laplace_stage(book: _Proposals, config: CEMPosteriorConfig, rng, dim: int, newton_fn, phi_fn, coords):
    """Gauss-Newton from the best particles to the mode, then ``n_particles`` draws of a t on it
    (truncated to the prior's support when ``coords`` is given), evaluated into ``book``.
    Returns (mode (dim,), Laplace covariance (dim, dim) or None when the Hessian is singular)."""
    n = config.n_particles
    y_all = np.concatenate(book.ys)
    post = np.concatenate(book.lps) + np.concatenate(book.lls)
    order = np.argsort(-np.where(np.isfinite(post), post, -np.inf))
    ends, phis, hessians = levenberg_marquardt(newton_fn, y_all[order[: config.n_starts]], config.n_newton,
                                               phi_fn=phi_fn)
    best = int(np.argmin(np.where(np.isfinite(phis), phis, np.inf)))
    mode, hess = ends[best], hessians[best]
    centre = mode if coords is None else coords.to_z(mode[None])[0]
    laplace_cov = None
    try:
        prec = hess if coords is None else coords.laplace_precision_z(mode, hess)
        laplace_cov = np.linalg.inv(0.5 * (prec + prec.T))
        chol_l = np.linalg.cholesky(laplace_cov * config.laplace_scale**2)
    except np.linalg.LinAlgError:
        return mode, laplace_cov
    if not (np.all(np.isfinite(chol_l)) and np.all(np.isfinite(centre))):
        return mode, laplace_cov
    dof = config.t_dof

    def t_draws(m):
        return centre + (rng.standard_normal((m, dim)) @ chol_l.T) / np.sqrt(rng.chisquare(dof, size=(m, 1)) / dof)

    if coords is None:
        book.evaluate(t_draws(n), lambda y, m=centre, c=chol_l: mvt_logpdf(y, m, c, dof), n)
        return mode, laplace_cov
    # The t truncated to the prior's support (outside it the target is zero): a posterior pressed
    # against a box edge would otherwise lose most draws there. Exact draws by rejection (the
    # first n inside); the truncated density is the t's divided by its mass inside.
    mass = float(np.mean(np.all(np.isfinite(coords.from_z(t_draws(LAPLACE_MASS_DRAWS))), axis=1)))
    kept, n_kept, tries = [], 0, 0
    while mass > 0 and n_kept < n and tries < _TRUNCATION_ROUNDS:
        cand = coords.from_z(t_draws(_CANDIDATES_PER_ROUND * n))
        kept.append(cand[np.all(np.isfinite(cand), axis=1)])
        n_kept += kept[-1].shape[0]
        tries += 1
    y = np.concatenate(kept)[:n] if kept else np.zeros((0, dim))
    if y.shape[0]:
        book.evaluate(y, lambda y, m=centre, c=chol_l, lm=math.log(mass): mvt_logpdf(coords.to_z(y), m, c, dof)
                      + coords.log_det_dz_dy(y) - lm, y.shape[0])
    return mode, laplace_cov
