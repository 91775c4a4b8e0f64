"""How often the surrogate's inference misses, calibrated on fresh simulations and put into the posterior.

The calibrated discrepancy (``eval_classical.calibrate_discrepancy``) makes the surrogate's
*predictive* bands honest. Its *parameter* posteriors at the seed's small budget (CEM + Laplace,
64 x 4 particles) are not: on fresh simulated dense cases most posteriors are about right, but a
sizeable fraction sit confidently on the wrong parameters (a wrong mode of the likelihood, or a
place where the surrogate's error looks like a change of the parameters), so the errors of the
posterior means are heavy-tailed: for E0 of a cv the median error is one posterior sd, the RMS
error five (measured on 48 cases per task; README).

A Gaussian error in parameter space (the *embedded* model error of Sargsyan, Najm & Ghanem, 2015)
was tried first: fitted by moments it needs about one prior sd on most parameters, which inside the
prior's box widens every posterior and still misses the far-off ones (two-fold check on the
calibration cases: central 68.3 / 95.4 % intervals 0.40 -> 0.43 / 0.66 -> 0.67 for the cv tasks
and ca_step, 0.46 -> 0.57 / 0.74 -> 0.84 for swv, dpv, eis). The errors are a mixture -- a sharp
posterior that is right, or one that is lost -- and the model here says so: the posterior is

    (1 - w_task) x the sampler's posterior + w_task x the prior,

an epsilon-contamination of the posterior by the prior: with probability ``w_task`` the inference
carries no information about where the truth is. ``w_task`` is fitted per task on fresh prior
draws simulated now (never seen in training), observed as the seed's dense_clean regime and
inferred at the settings it is for: the weight that minimises the mixtures' continuous ranked
probability score at the truths (a proper scoring rule: it rewards calibration and sharpness
together; coverage alone would drift to the prior, which is calibrated too). The score of a
mixture is quadratic in its weight, so the fit needs no further inference and has a closed form;
a two-fold check reports the coverage it buys on cases it was not fitted on. The metadata records the
method and budget, and the weight applies only for that method; the predictive keeps the sampler's
particles (it is the surrogate's current there that matches the data).

The same fresh cases calibrate the predictive's band (``band_scale``). The discrepancy is fitted
to the surrogate's error at the *true* parameters -- what the likelihood needs -- but the predictive
is read after the posterior has moved the parameters, which absorbs part of that error (ca_step's
smooth level error most of all), so the discrepancy's leave-one-out variance can be too wide, or too
narrow, for the residual that is left. Per task one factor ``lambda`` multiplies the discrepancy's
part of the predictive variance (``parameter spread + lambda x discrepancy + noise``), chosen to
minimise the mean Gaussian CRPS of the predictive at the observed points of the task's cases (a
proper score again; a factor fitted to the coverage at one or two levels would chase the heavy tails
of the residuals). How much the leave-one-out variance overstates the residual depends on how
densely the trace is observed (measured: ca_step's dense factor, 0.03, made its bands far too narrow
at 35 % of the points), so the factor is fitted at each of ``BAND_KEEP`` (the seed's dense and sparse
fractions; the same parameter draws, observed anew) and ``ln lambda`` is interpolated linearly in the
observed fraction. The likelihood and the parameter posterior are not touched. A two-fold check
reports the seed's calibration error on cases the factor was not fitted on.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

__all__ = ["FORM_VERSION", "slot_kind", "prior_weight", "predictive_band_scale", "contaminate",
           "crps_terms", "fit_prior_weight", "gaussian_crps", "fit_band_scale", "calibrate_parameter_error", "BAND_KEEP"]

#: Version of the calibrated form recorded in ``model_meta.json["parameter_error"]``.
FORM_VERSION = 2

#: Nominal central-interval masses of the check.
_LEVELS = (0.6827, 0.9545)


def slot_kind(name: str) -> str:
    """A slot's parameter without its couple index: ``"ln_k0[1]"`` -> ``"ln_k0"``."""
    return re.sub(r"\[\d+\]$", "", name)


def prior_weight(meta: dict, task: str, method: str) -> float | None:
    """The calibrated prior weight for this task and method, or None when the model has none."""
    block = (meta or {}).get("parameter_error")
    if not block or block.get("form_version") != FORM_VERSION or block.get("method") != method:
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
    block = (meta or {}).get("parameter_error")
    if not block or block.get("form_version") != FORM_VERSION or block.get("method") != method:
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


def _interval_coverage(u: np.ndarray) -> tuple[float, float]:
    """Coverage of the central 68.3 / 95.4 % credible intervals from CDFs at the truth."""
    u = np.asarray(u, np.float64)
    return tuple(float(np.mean(np.abs(u - 0.5) <= c / 2)) for c in _LEVELS)


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
    from scipy.special import ndtr

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
    from scipy.optimize import minimize_scalar

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


def _band_calibration_error(case: dict, lam: float) -> tuple[float, float, float]:
    """Coverage at 1 and 2 sd of one case's observed points and the seed's calibration error
    (``compute_reliability_metrics``, the metric the studies report)."""
    from .posterior import compute_reliability_metrics

    r = np.asarray(case["residual"], np.float64)
    sd = np.sqrt(np.asarray(case["var_parameters"]) + lam * np.asarray(case["var_discrepancy"]) + case["noise_var"])
    m = compute_reliability_metrics(r, np.zeros_like(r), sd, np.ones(r.size, bool))
    return m["coverage_1sigma"], m["coverage_2sigma"], m["calibration_error"]


def _sparse_band_cases(model, normalizers, meta: dict, geometry: dict, cfg, task: str, fresh: tuple, keep: float,
                       noise_std: float, seed: int, done=lambda n: None) -> list[dict]:
    """``_band_case`` of each fresh row ``fresh = (p, which, truth_i, e)`` of ``task`` observed at
    fraction ``keep`` (the seed's mask) with new noise, from the stream (seed, task index, keep %)."""
    from ..studies.calibration import build_mask
    from ._data import compose_core_params

    p, which, truth_i, e = fresh
    ti = list(meta["task_names"]).index(task)
    rng = np.random.default_rng([seed, ti, int(round(100 * keep))])
    out = []
    for r in range(p.shape[0]):
        core = compose_core_params(p[r], ti, which[r], geometry).astype(np.float64)
        mask = build_mask(truth_i.shape[1], keep, rng)
        obs = truth_i[r] + rng.normal(0.0, noise_std, truth_i.shape[1])
        post = _infer_fresh(model, normalizers, meta, geometry, cfg, core, obs, e[r], int(rng.integers(2**31)), mask)
        out.append(_band_case(task, r, keep, obs, post, noise_std))
        done(1)
    return out


def _infer_fresh(model, normalizers, meta: dict, geometry: dict, cfg, core: np.ndarray, obs: np.ndarray,
                 signal: np.ndarray, seed: int, mask=None) -> dict:
    """One calibration inference of a fresh simulated row: every base slot free, the one-hots known."""
    from .posterior import infer_parameter_posterior

    return infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry, observed_current=obs,
                                     applied_signal=signal, known_p_core=core, known_p_mask=_fresh_known(geometry),
                                     obs_mask=mask, config=cfg, seed=seed, meta=meta)


def _fresh_known(geometry: dict) -> np.ndarray:
    """The known-slot mask of a calibration case: the task and stage one-hots (every base slot free)."""
    return np.arange(int(geometry["phys_dim_core"])) >= int(geometry["phys_dim_base"])


def _band_case(task: str, case: int, keep: float, obs: np.ndarray, post: dict, noise_std: float) -> dict:
    """What ``fit_band_scale`` needs of one inference: residual and variance parts at its observed points."""
    sel = np.asarray(post["observed_mask"]) > 0.5
    return {"task": task, "case": case, "keep": keep, "noise_var": noise_std**2,
            "residual": (obs - np.asarray(post["predictive_mean_current"], np.float64))[sel],
            "var_parameters": np.asarray(post["predictive_var_parameters"], np.float64)[sel],
            "var_discrepancy": np.asarray(post["predictive_var_discrepancy"], np.float64)[sel]}


def _band_two_fold_check(cases: list[dict]) -> dict:
    """Per task (and observed fraction, when the cases carry ``keep``), the seed's predictive
    calibration error (mean over cases) of each half's cases (split by parity) with the band scale
    fitted on the other half, and with no scale (1)."""
    keeps = sorted({c.get("keep") for c in cases if c.get("keep") is not None}, reverse=True)
    if keeps:
        return {str(k): _band_two_fold_check([dict(c, keep=None) for c in cases if c.get("keep") == k]) for k in keeps}
    out = {}
    for task in dict.fromkeys(c["task"] for c in cases):
        mine = [c for c in cases if c["task"] == task]
        err_with, err_without, cov_with = [], [], []
        for f in (0, 1):
            fit = [c for c in mine if c["case"] % 2 != f]
            lam = fit_band_scale(fit) if fit else 1.0
            for c in (c for c in mine if c["case"] % 2 == f):
                c1, c2, e = _band_calibration_error(c, lam)
                err_with.append(e)
                cov_with.append((c1, c2))
                err_without.append(_band_calibration_error(c, 1.0)[2])
        out[task] = {"n_cases": len(mine), "calibration_error_without": round(float(np.mean(err_without)), 5),
                     "calibration_error_with": round(float(np.mean(err_with)), 5),
                     "coverage_with": [round(float(v), 4) for v in np.mean(cov_with, axis=0)]}
    all_with = [v["calibration_error_with"] * v["n_cases"] for v in out.values()]
    all_without = [v["calibration_error_without"] * v["n_cases"] for v in out.values()]
    n = sum(v["n_cases"] for v in out.values())
    return {"per_task": out, "calibration_error_without": round(sum(all_without) / max(n, 1), 5),
            "calibration_error_with": round(sum(all_with) / max(n, 1), 5)}


# -------------------------------------------------------------------------------------------------
# Calibration


def calibrate_parameter_error(model, normalizers, meta: dict, geometry: dict, *, n_per_task: int = 32,
                              noise_std: float = 0.02, config=None, seed: int = 0, tasks=None,
                              progress: bool = False) -> dict:
    """Fit the prior weight on fresh prior draws: per task ``n_per_task`` parameter vectors from
    the task's priors (its stages in turn), simulated now with the dataset's simulator, observed
    densely with Gaussian noise ``noise_std`` (the seed's dense_clean regime), inferred with
    ``config`` (default: ``PosteriorInferenceConfig`` at the seed's settings) without the weight.
    Per free slot of each case the posterior CDF at the truth and the prior's (2,048 prior draws)
    are kept, and per case the predictive's residual and variance parts at the observed points.
    Returns the ``model_meta.json["parameter_error"]`` block: the weights fitted on all
    cases, a two-fold check (weights fitted on one half of each task's cases, coverage and
    contraction of the other half's mixtures), the per-slot rows, and ``band_scale``: the
    predictive's per-task band scale (``fit_band_scale``) with its own two-fold check. Each task draws from its own
    stream (``seed``, task index), so a subset of tasks reproduces those tasks of a full run."""
    from tqdm.auto import tqdm

    from ._data import compose_core_params
    from .eval_classical import fresh_prior_rows
    from .posterior import ParameterSpace, PosteriorInferenceConfig

    if not (isinstance(n_per_task, int) and n_per_task >= 4):
        raise ValueError(f"n_per_task: must be an integer >= 4, got {n_per_task}")
    cfg = config if config is not None else PosteriorInferenceConfig(obs_noise_std=noise_std)
    cfg = dataclasses.replace(cfg, obs_noise_std=noise_std, parameter_error=False, band_scale=False)
    all_tasks = list(meta["task_names"])
    nb = int(geometry["phys_dim_base"])
    rows, band_cases = [], []
    sparse_keeps = [k for k in BAND_KEEP if k < 1.0]
    bar = tqdm(total=n_per_task * len(tasks or all_tasks) * (1 + len(sparse_keeps)), desc="parameter error",
               disable=not progress)
    for task in tasks or all_tasks:
        keys = [k for k in meta["priors"] if k.split("/")[0] == task]
        if not keys:
            continue
        ti = all_tasks.index(task)
        rng = np.random.default_rng([seed, ti])
        p, which, truth_i, e = fresh_prior_rows(meta, geometry, task, keys, n_per_task, rng)
        for r in range(p.shape[0]):
            core = compose_core_params(p[r], ti, which[r], geometry).astype(np.float64)
            obs = truth_i[r] + rng.normal(0.0, noise_std, truth_i.shape[1])
            post = _infer_fresh(model, normalizers, meta, geometry, cfg, core, obs, e[r], int(rng.integers(2**31)))
            space = ParameterSpace(meta, core, _fresh_known(geometry), geometry)
            truth = space.canonical_order(core)
            free = space.free[space.free < nb]
            w = np.asarray(post["posterior_weights"], np.float64)
            xs = np.asarray(post["posterior_samples_raw"], np.float64)[:, free]
            x0 = space.prior_draws(1024, rng)[:, free]
            u_post = (w / w.sum()) @ (xs < truth[free])
            u_prior = np.mean(x0 < truth[free], axis=0)
            prior_sd = np.maximum(np.asarray(post["prior_std_raw"], np.float64)[free], 1e-12)
            err = (np.asarray(post["posterior_mean_raw"], np.float64)[free] - truth[free]) / prior_sd
            sd = np.asarray(post["posterior_std_raw"], np.float64)[free] / prior_sd
            band_cases.append(_band_case(task, r, 1.0, obs, post, noise_std))
            for j, slot in enumerate(free):
                rows.append({"task": task, "case": r, "kind": slot_kind(space.names[slot]), "u_post": float(u_post[j]),
                             "u_prior": float(u_prior[j]), "err": float(err[j]), "sd": float(sd[j]),
                             **crps_terms(xs[:, j] / prior_sd[j], w, x0[:, j] / prior_sd[j], truth[slot] / prior_sd[j])})
            bar.update(1)
        # The band scale at the sparse fractions: the same parameter draws, observed anew at each
        # fraction (own stream, so the dense cases above -- and the weights -- do not change).
        for keep in sparse_keeps:
            band_cases += _sparse_band_cases(model, normalizers, meta, geometry, cfg, task, (p, which, truth_i, e),
                                             keep, noise_std, seed, bar.update)
    bar.close()
    per_task = {t: fit_prior_weight([x for x in rows if x["task"] == t]) for t in dict.fromkeys(x["task"] for x in rows)}
    return {
        "form_version": FORM_VERSION,
        "form": "posterior = (1 - w_task) x the sampler's posterior + w_task x the prior; w_task minimises the mean "
                "CRPS (prior-sd units, per free slot) of the mixture at the truths of fresh prior draws",
        "method": cfg.method,
        "inference": {"n_particles": cfg.cem.n_particles, "n_iterations": cfg.cem.n_iterations,
                      "n_mc_per_particle": cfg.n_mc_per_particle, "n_integration_steps": cfg.n_integration_steps,
                      "smc_particles": cfg.smc.n_particles},
        "regime": {"keep_prob": 1.0, "noise_std": noise_std},
        "n_per_task": n_per_task, "seed": seed,
        "per_task": per_task,
        "check": _two_fold_check(rows),
        "band_scale": {
            "form": "predictive variance = parameter spread + lambda_task x the discrepancy's conditional variance + "
                    "noise; lambda_task minimises the mean Gaussian CRPS at the observed points of the same fresh "
                    "cases, observed at each fraction in observed_fractions (ln lambda linear in the fraction between)",
            "observed_fractions": list(BAND_KEEP),
            "per_task": {t: {str(k): round(fit_band_scale([c for c in band_cases if c["task"] == t and c["keep"] == k]), 5)
                             for k in BAND_KEEP}
                         for t in dict.fromkeys(c["task"] for c in band_cases)},
            "check": _band_two_fold_check(band_cases)},
        "rows": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }


def _two_fold_check(rows: list[dict]) -> dict:
    """Central-interval coverage of each half's mixtures (cases split by parity within each task)
    with the weight fitted on the other half, and without the weight."""
    u_post = np.asarray([r["u_post"] for r in rows])
    u_prior = np.asarray([r["u_prior"] for r in rows])
    task = np.asarray([r["task"] for r in rows])
    fold = np.asarray([r["case"] % 2 for r in rows])
    u_mix = np.empty_like(u_post)
    weights = {}
    for t in np.unique(task):
        for f in (0, 1):
            fit, check = (task == t) & (fold != f), (task == t) & (fold == f)
            w = fit_prior_weight([r for r, k in zip(rows, fit) if k]) if fit.any() else 0.0
            weights.setdefault(str(t), []).append(w)
            u_mix[check] = (1 - w) * u_post[check] + w * u_prior[check]
    return {"n_slots": int(u_post.size), "interval_coverage_without": _interval_coverage(u_post),
            "interval_coverage_with": _interval_coverage(u_mix), "fold_weights": weights}
