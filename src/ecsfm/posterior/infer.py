"""Posterior inference of the free slots of the conditioning vector from partial, noisy traces.

Three lines for a user::

    model, normalizers, meta, geometry = load_surrogate("model_dir")
    post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                     observed_current=i_obs, applied_signal=e, known_p_core=p_known,
                                     known_p_mask=mask, config=PosteriorInferenceConfig())

The target is ``prior(theta) x likelihood(i_obs | theta)``, untempered: the prior is the
dataset's prior for the known task and stage (``ParameterSpace``), the likelihood Gaussian with
the covariance of ``ecsfm.posterior.likelihood``, the current from the configured ``Engine``, the
sampler the configured ``Method``. Where the seed's reference implementation tempered the
likelihood by 1/N, had no prior, weighted particles without the proposal density and left the
observation noise out of the predictive, this does the exact thing (``docs/posterior.md``).
Nothing loops over particles or Euler steps in Python: each sampler stage evaluates all
particles in one compiled call.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from .amortized import check_compatible, case_context, load_amortized
from .amortized_sampler import run_amortized_posterior
from .cem import run_cem_posterior
from .config import Engine, Method, PosteriorInferenceConfig
from .diagnostics import compute_reliability_metrics, weighted_variance
from ..fm import DEFAULT_MODEL_DIR
from .engines import build_forward, forward_batch, forward_jacobian, log_likelihood_batch, to_f32
from .likelihood import discrepancy_model, likelihood_covariance, predictive_current
from .prior_weight import contaminate, predictive_band_scale, prior_weight
from .result import PER_TRACE_FIELDS, PosteriorResult
from .smc import run_smc_posterior
from .space import ParameterSpace

__all__ = ["infer_parameter_posterior", "infer_joint_posterior", "PARETO_K_MAX"]

#: Above this Pareto k-hat an importance-sampling estimate is unreliable (Vehtari et al., Pareto
#: smoothed importance sampling, 2024: k-hat > 0.7).
PARETO_K_MAX = 0.7


def infer_parameter_posterior(*, model, normalizers, geometry: dict, observed_current, applied_signal,
                              known_p_core, known_p_mask, obs_mask=None,
                              config: PosteriorInferenceConfig = PosteriorInferenceConfig(), seed: int = 0,
                              meta: dict | None = None, log_likelihood_override=None,
                              amortized_model=None) -> PosteriorResult:
    """Posterior over the free slots of the conditioning vector given one (partial, noisy) trace.

    ``observed_current`` (L,) in dataset units (mA for the dataset's area); ``applied_signal``
    (L,) or (channels, L) V; ``known_p_core`` (core,) raw values (the one-hots select the task and
    stage, hence the prior; protocol slots are always taken from it); ``known_p_mask`` (core,)
    bool; ``obs_mask`` (L,) 1 = observed (None: all). ``meta``: the model metadata (default
    ``geometry["meta"]``, which ``resolve_model_geometry`` attaches).
    ``log_likelihood_override(p_core (n, core)) -> (n,)`` replaces the likelihood (for tests
    against problems with a known posterior). ``seed`` fixes the sampler and the flow's draws.
    ``amortized_model``: the amortised posterior ``method="amortized"`` / ``"amortized_raw"`` use
    (a folder ``ecsfm train-posterior`` wrote; default: the one shipped beside the default model).

    Returns a ``PosteriorResult`` (readable as the seed's dict). Raises ValueError naming the
    argument on inputs of the wrong size, non-finite observed points or an empty mask.
    """
    res = infer_joint_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                observed_currents=[observed_current], applied_signals=[applied_signal],
                                known_p_cores=[known_p_core], known_p_mask=known_p_mask,
                                obs_masks=None if obs_mask is None else [obs_mask], config=config, seed=seed,
                                meta=meta, log_likelihood_override=log_likelihood_override,
                                amortized_model=amortized_model)
    return res.trace(0)


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


def _spaces(meta, geometry, known_p_cores, known_p_mask) -> list[ParameterSpace]:
    """One ``ParameterSpace`` per trace; ValueError when the traces disagree outside the protocol slots."""
    spaces = [ParameterSpace(meta, c, known_p_mask, geometry) for c in known_p_cores]
    space = spaces[0]
    protocol = np.asarray([r == "protocol" for r in space.layout.roles]
                          + [False] * (space.known.size - len(space.layout.roles)))
    for k, sp in enumerate(spaces[1:], 1):
        if not np.array_equal(sp.free, space.free) or not np.allclose(sp.known[~protocol], space.known[~protocol]):
            raise ValueError(f"known_p_cores[{k}]: differs from trace 0 outside the protocol slots (the traces of a "
                             "joint fit share every parameter, task and stage)")
    return spaces


class _JointLikelihood:
    """The product of the traces' Gaussian likelihoods (each with its own fixed covariance, the
    surrogate's errors taken as independent between traces), one compiled call per trace."""

    def __init__(self, traces: list[dict], space: ParameterSpace, keep_forward: bool, override=None):
        self.traces, self.space, self.keep_forward, self.override = traces, space, keep_forward, override

    def summed(self, y, keep: bool) -> np.ndarray:
        # ``keep``: store the forward values (CEM's predictive re-uses those of its proposals).
        total = np.zeros(y.shape[0])
        for t in self.traces:
            ll, mean, _ = log_likelihood_batch(t["forward"], t["arrays"], to_f32(y), t["obs_j"], t["white_j"],
                                               t["const_j"])
            if keep:
                t["evaluated"].append(mean)
            total += np.asarray(ll, np.float64)
        return total

    def __call__(self, y) -> np.ndarray:
        if self.override is not None:
            return np.asarray(self.override(self.space.to_raw(y)), np.float64)
        total = self.summed(y, keep=self.keep_forward)
        return np.where(np.isfinite(total), total, -np.inf)

    def phi(self, y) -> np.ndarray:
        """The negative log posterior alone (forward passes, no Jacobian), up to the constants."""
        total = -self.space.log_prior(y) - self.summed(y, keep=False)
        return np.where(np.isfinite(total), total, np.inf)

    def newton(self, y):
        """Gauss-Newton pieces (phi, grad, hess) of the negative log posterior at K points
        (covariance held fixed); the logistic prior's terms in closed form."""
        sig_y = 1.0 / (1.0 + np.exp(-np.clip(y, -500, 500)))
        phi = -self.space.log_prior(y)
        grad = 2.0 * sig_y - 1.0
        hess = np.eye(y.shape[1]) * (2.0 * sig_y * (1.0 - sig_y))[:, :, None]
        for t in self.traces:
            mean, _, jac = (np.asarray(a, np.float64) for a in forward_jacobian(t["forward"], t["arrays"], to_f32(y)))
            wr = (np.where(t["sel"], t["obs"], 0.0)[None] - mean) @ t["white"].T  # whitened residual (K, L)
            wj = np.einsum("ij,kjd->kid", t["white"], jac)  # whitened Jacobian (K, L, dim)
            phi = phi + 0.5 * np.sum(wr**2, axis=1) - t["const"]
            grad = grad - np.einsum("kid,ki->kd", wj, wr)
            hess = hess + np.einsum("kid,kie->kde", wj, wj)
        return np.where(np.isfinite(phi), phi, np.inf), grad, hess


def _time_scale_warnings(spaces: list[ParameterSpace], config: PosteriorInferenceConfig) -> list[str]:
    """The surrogate learned its protocols over the prior's time scales; outside, it extrapolates."""
    space = spaces[0]
    spec = space.prior.globals.get("ln_time_scale")
    if config.engine is not Engine.SURROGATE or spec is None or spec.dist == "fixed":
        return []
    lo, hi = spec.bounds_p(True)
    slot = space.layout.index("ln_time_scale")
    out = []
    for k, sp in enumerate(spaces):
        if not lo - 1e-9 <= sp.known[slot] <= hi + 1e-9:
            where = f"trace {k}: " if len(spaces) > 1 else ""
            out.append(f"{where}time scale {math.exp(sp.known[slot]):.3g} s is outside the model's prior "
                       f"[{math.exp(lo):.3g}, {math.exp(hi):.3g}] s: the surrogate extrapolates there "
                       "(engine='simulator' does not)")
    return out


def _amortized(amortized_model, meta: dict, geometry: dict, space: ParameterSpace, known_p_mask, checked,
               config: PosteriorInferenceConfig):
    """(model, raw context) of the amortised posterior for the one trace in ``checked``."""
    if len(checked) != 1:
        raise ValueError(f"method: {config.method} fits one trace at a time; use method='smc' for a joint fit of "
                         f"{len(checked)} traces")
    model, ameta = _load_amortized(str(DEFAULT_MODEL_DIR if amortized_model is None else amortized_model))
    check_compatible(ameta, meta, int(geometry["target_len"]))
    obs, _, sel = checked[0]
    base = space.layout.size
    mask = np.asarray(known_p_mask, bool).reshape(-1)[:base]
    given = mask & (space.highs[:base] > space.lows[:base]) & ~np.isin(np.arange(base), space.free)
    return model, case_context(space, ameta, obs, sel, config.obs_noise_std, given)


@functools.lru_cache(maxsize=4)
def _load_amortized(folder: str):
    return load_amortized(folder)


def _sample(config: PosteriorInferenceConfig, space: ParameterSpace, lik: _JointLikelihood, seed: int,
            differentiable: bool, amortized=None) -> tuple[dict, list[str]]:
    """Run the configured sampler; returns its result dict and the warnings its diagnostics raise."""
    warnings = []
    if config.method in (Method.AMORTIZED, Method.AMORTIZED_RAW):
        model, context = amortized
        res = run_amortized_posterior(model, context, space, lik, n_draws=config.amortized_draws, seed=seed,
                                      correct=config.method is Method.AMORTIZED, fallback=config.smc,
                                      newton_fn=lik.newton if differentiable else None,
                                      phi_fn=lik.phi if differentiable else None)
        diag = res["amortized"]
        if config.method is Method.AMORTIZED_RAW:
            warnings.append("amortized_raw: the amortised posterior as it is, not checked against the likelihood")
        elif diag["fell_back"]:
            warnings.append(f"the amortised posterior's importance weights failed ({diag['reason']}): the "
                            "observation may lie outside what the estimator was trained on; the result is SMC "
                            "started from it, not the amortised answer")
            if not res["reached_posterior"]:
                warnings.append("SMC from q stopped short of temperature 1: the result is not the posterior")
        return res, warnings
    if config.method is Method.CEM:
        res = run_cem_posterior(space.log_prior, lik, space.dim, config.cem, seed=seed,
                                newton_fn=lik.newton if differentiable else None, coords=space,
                                phi_fn=lik.phi if differentiable else None)
        if res["pareto_k"] > PARETO_K_MAX:
            warnings.append(f"Pareto k-hat {res['pareto_k']:.2f} > {PARETO_K_MAX}: the importance weights have a heavy "
                            "tail; the posterior estimate is unreliable (more particles/iterations, or method='smc')")
        if res["ess"] < config.cem.min_ess:
            warnings.append(f"effective sample size {res['ess']:.1f} < {config.cem.min_ess:g}: few particles carry "
                            "the posterior; intervals are rough")
        return res, warnings
    res = run_smc_posterior(space.log_prior, lik, space.dim, config.smc, seed=seed, coords=space)
    if not res["reached_posterior"]:
        warnings.append(f"SMC stopped at temperature {res['temperatures'][-1]:.3g} < 1 after "
                        f"{config.smc.max_stages} stages: the result is not the posterior")
    return res, warnings


def _trace_predictive(t: dict, res: dict, y: np.ndarray, w: np.ndarray, config: PosteriorInferenceConfig,
                      disc: dict | None, meta: dict, task: str | None, noise2: float) -> dict:
    """One trace's predictive and reliability (``PER_TRACE_FIELDS``): the forward values of the
    weighted particles -- for CEM those computed during the search, for SMC one more call at the
    final particles -- with the discrepancy's Gaussian-process conditional on the observed residual
    added per particle (leave-one-out at the observed points), its variance scaled by the model's
    band scale (1 where none), plus the parameter spread and the noise."""
    obs, sel = t["obs"], t["sel"]
    if config.method is Method.CEM:
        mean_i = np.concatenate([np.asarray(m, np.float64)[:k] for m, k in zip(t["evaluated"], res["batch_sizes"])])
    else:
        mean_i = np.asarray(forward_batch(t["forward"], t["arrays"], to_f32(y))[0], np.float64)
    band_scale = 1.0
    if disc is not None and config.band_scale:
        band_scale = predictive_band_scale(meta, task, config.method, float(np.mean(sel))) or 1.0
    pred_mean, var_par, var_disc = predictive_current(mean_i, w, obs, sel, noise2, disc, t["white"], t["k_d"])
    return _per_trace(obs, sel, pred_mean, var_par, var_disc, band_scale, noise2)


def _per_trace(obs, sel, pred_mean, var_par, var_disc, band_scale: float, noise2: float) -> dict:
    pred_var_nf = var_par + band_scale * var_disc
    pred_std = np.sqrt(pred_var_nf + noise2)
    return {"predictive_mean_current": pred_mean.astype(np.float32),
            "predictive_std_current": pred_std.astype(np.float32),
            "predictive_std_current_noise_free": np.sqrt(pred_var_nf).astype(np.float32),
            "predictive_var_parameters": var_par.astype(np.float32),
            "predictive_var_discrepancy": var_disc.astype(np.float32),
            "predictive_band_scale": float(band_scale),
            "observed_current": obs.astype(np.float32), "observed_mask": sel.astype(np.float32),
            "reliability": compute_reliability_metrics(obs, pred_mean, pred_std, sel),
            "reliability_heldout": compute_reliability_metrics(obs, pred_mean, pred_std, ~sel) if (~sel).any() else None}


def infer_joint_posterior(*, model, normalizers, geometry: dict, observed_currents, applied_signals, known_p_cores,
                          known_p_mask, obs_masks=None, config: PosteriorInferenceConfig = PosteriorInferenceConfig(),
                          seed: int = 0, meta: dict | None = None, log_likelihood_override=None,
                          amortized_model=None) -> PosteriorResult:
    """One posterior from several traces of the same cell (a scan-rate series on the model's
    protocol): the traces share every parameter and differ only in their protocol slots (e.g.
    ``ln_time_scale``) and applied signals. ``observed_currents``, ``applied_signals``,
    ``known_p_cores`` and ``obs_masks`` hold one entry per trace (shapes as in
    ``infer_parameter_posterior``); the cores must agree on every slot but the protocol's. Returns
    a ``PosteriorResult`` whose ``PER_TRACE_FIELDS`` hold one entry per trace. ``amortized_model``
    as in ``infer_parameter_posterior`` (the amortised methods take one trace). Raises ValueError
    naming the argument (and trace) on bad input."""
    meta = meta if meta is not None else geometry.get("meta")
    if meta is None:
        raise ValueError("meta: the model metadata is needed (for the prior); pass meta= or build the geometry "
                         "with ecsfm.fm.resolve_model_geometry")
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
    spaces = _spaces(meta, geometry, known_p_cores, known_p_mask)
    space = spaces[0]
    disc = (discrepancy_model(meta, space.task)
            if config.engine is Engine.SURROGATE and config.use_discrepancy else None)
    noise2 = config.obs_noise_std**2
    traces = []
    for (obs, sig, sel), sp in zip(checked, spaces):
        forward = build_forward(config.engine, model=model, normalizers=normalizers, meta=meta, geometry=geometry,
                                applied_signal=sig, task=sp.task, active=sp.active, n_mc=config.n_mc_per_particle,
                                n_steps=config.n_integration_steps, seed=seed)
        white_np, ll_const, k_d = likelihood_covariance(obs, sel, noise2, disc)
        traces.append({"forward": forward, "arrays": sp.arrays, "obs": obs, "sel": sel, "white": white_np,
                       "const": ll_const, "k_d": k_d, "evaluated": [],
                       "obs_j": jnp.asarray(np.where(sel, obs, 0.0), jnp.float32),
                       "white_j": jnp.asarray(white_np, jnp.float32), "const_j": jnp.float32(ll_const)})
    lik = _JointLikelihood(traces, space, keep_forward=config.method is Method.CEM, override=log_likelihood_override)
    amortized = (_amortized(amortized_model, meta, geometry, space, known_p_mask, checked, config)
                 if config.method in (Method.AMORTIZED, Method.AMORTIZED_RAW) else None)
    res, sampler_warnings = _sample(config, space, lik, seed, differentiable=log_likelihood_override is None,
                                    amortized=amortized)
    warnings = _time_scale_warnings(spaces, config) + sampler_warnings
    y, w = res["samples"], res["weights"]
    length = int(geometry["target_len"])
    per_trace = {key: [] for key in PER_TRACE_FIELDS}
    for t in traces:
        if log_likelihood_override is None:
            one = _trace_predictive(t, res, y, w, config, disc, meta, space.task, noise2)
        else:
            zeros = np.zeros(length)
            one = _per_trace(t["obs"], t["sel"], zeros, zeros, zeros, 1.0, noise2)
        for key in PER_TRACE_FIELDS:
            per_trace[key].append(one[key])
    return _assemble(res, space, config, meta, normalizers, per_trace, warnings, seed, n_traces,
                     mix=config.engine is Engine.SURROGATE and config.parameter_error
                     and log_likelihood_override is None)


def _assemble(res: dict, space: ParameterSpace, config: PosteriorInferenceConfig, meta: dict, normalizers,
              per_trace: dict, warnings: list[str], seed: int, n_traces: int, mix: bool) -> PosteriorResult:
    """The result: weighted moments of the samples in raw and normalised units, the prior weight
    mixed in where the model has one (``ecsfm.posterior.prior_weight``; the predictive keeps the
    sampler's particles), the sampler's diagnostics."""
    samples, w = space.to_raw(res["samples"]), res["weights"]
    mean_raw, var_raw = weighted_variance(samples, w)
    std_sampler = np.sqrt(np.maximum(var_raw, 0.0))
    mixed = prior_weight(meta, space.task, config.method) if mix else None
    if mixed:
        samples, w, mean_raw, var_raw = contaminate(space, samples, w, var_raw, mixed, np.random.default_rng([seed, 7]))
    std_raw = np.sqrt(np.maximum(var_raw, 0.0))
    std_raw[~np.isin(np.arange(samples.shape[1]), space.free)] = 0.0
    p_mean = np.asarray(normalizers[4], np.float64).reshape(-1)[: samples.shape[1]]
    p_std = np.asarray(normalizers[5], np.float64).reshape(-1)[: samples.shape[1]]
    if config.method is Method.CEM:
        sampler = {"batch_sizes": res["batch_sizes"]}
    else:
        sampler = {k: np.asarray(res[k]).tolist() for k in ("temperatures", "moves", "acceptance") if k in res}
        if "amortized" in res:
            sampler["amortized"] = res["amortized"]
    return PosteriorResult(
        posterior_mean_norm=((mean_raw - p_mean) / p_std).astype(np.float32),
        posterior_std_norm=(std_raw / p_std).astype(np.float32),
        posterior_mean_raw=mean_raw.astype(np.float32), posterior_std_raw=std_raw.astype(np.float32),
        posterior_samples_raw=samples.astype(np.float32), posterior_weights=w.astype(np.float32),
        **per_trace,
        parameter_names=space.names, free_indices=space.free.tolist(), prior_std_raw=space.prior_std_raw(),
        parameter_error_prior_weight=float(mixed or 0.0),
        posterior_std_raw_sampler=np.where(std_raw > 0, std_sampler, 0.0).astype(np.float32),
        ess=float(res["ess"]), pareto_k=float(res["pareto_k"]), log_evidence=float(res["log_evidence"]),
        n_likelihood_evaluations=int(res["n_evaluations"]), warnings=warnings, method=config.method,
        engine=config.engine, sampler=sampler, task=space.task, stage=space.stage, n_traces=n_traces)
