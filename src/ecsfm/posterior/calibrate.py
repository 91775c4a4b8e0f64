"""Calibration of the prior weight and band scale (``ecsfm.posterior.prior_weight``) on fresh
simulated cases: parameters drawn from each task's priors, simulated now with the dataset's
simulator (never seen in training), observed as the seed's regimes and inferred at the settings
the calibration is for. Writes the ``model_meta.json["parameter_error"]`` block."""

from __future__ import annotations

import dataclasses

import numpy as np
from tqdm.auto import tqdm

from ..data import CoreLayout
from ..fm import fresh_prior_rows
from .config import PosteriorInferenceConfig
from .diagnostics import compute_reliability_metrics
from .infer import infer_parameter_posterior
from .prior_weight import (BAND_KEEP, FORM_VERSION, central_interval_coverage, crps_terms, fit_band_scale,
                           fit_prior_weight, slot_kind)
from .regimes import build_mask
from .space import ParameterSpace

__all__ = ["calibrate_parameter_error", "pack_band_cases", "unpack_band_cases", "BAND_CASES_SCHEMA"]

#: Schema version of the packed band cases (``pack_band_cases``).
BAND_CASES_SCHEMA = 1


def _band_calibration_error(case: dict, lam: float) -> tuple[float, float, float]:
    """Coverage at 1 and 2 sd of one case's observed points and the seed's calibration error
    (``compute_reliability_metrics``, the metric the studies report)."""
    r = np.asarray(case["residual"], np.float64)
    sd = np.sqrt(np.asarray(case["var_parameters"]) + lam * np.asarray(case["var_discrepancy"]) + case["noise_var"])
    m = compute_reliability_metrics(r, np.zeros_like(r), sd, np.ones(r.size, bool))
    return m["coverage_1sigma"], m["coverage_2sigma"], m["calibration_error"]


def _sparse_band_cases(model, normalizers, meta: dict, geometry: dict, cfg, task: str, fresh: tuple, keep: float,
                       noise_std: float, seed: int, done=lambda n: None) -> list[dict]:
    """``_band_case`` of each fresh row ``fresh = (p, which, truth_i, e)`` of ``task`` observed at
    fraction ``keep`` (the seed's mask) with new noise, from the stream (seed, task index, keep %)."""
    p, which, truth_i, e = fresh
    layout = CoreLayout.from_meta(meta)
    ti = layout.task_names.index(task)
    rng = np.random.default_rng([seed, ti, int(round(100 * keep))])
    out = []
    for r in range(p.shape[0]):
        core = layout.core(p[r], ti, which[r]).astype(np.float64)
        mask = build_mask(truth_i.shape[1], keep, rng)
        obs = truth_i[r] + rng.normal(0.0, noise_std, truth_i.shape[1])
        post = _infer_fresh(model, normalizers, meta, geometry, cfg, core, obs, e[r], int(rng.integers(2**31)), mask)
        out.append(_band_case(task, r, keep, obs, post, noise_std))
        done(1)
    return out


def _infer_fresh(model, normalizers, meta: dict, geometry: dict, cfg, core: np.ndarray, obs: np.ndarray,
                 signal: np.ndarray, seed: int, mask=None) -> dict:
    """One calibration inference of a fresh simulated row: every base slot free, the one-hots known."""
    return infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry, observed_current=obs,
                                     applied_signal=signal, known_p_core=core, known_p_mask=_fresh_known(meta),
                                     obs_mask=mask, config=cfg, seed=seed, meta=meta)


def _fresh_known(meta: dict) -> np.ndarray:
    """The known-slot mask of a calibration case: the task and stage one-hots (every base slot free)."""
    return CoreLayout.from_meta(meta).known_mask()


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
                              progress: bool = False, with_cases: bool = False):
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
    stream (``seed``, task index), so a subset of tasks reproduces those tasks of a full run.
    ``with_cases=True`` returns ``(block, pack_band_cases(cases))``: the per-case residuals and
    variance parts the band scales were fitted on, so that they can be shipped and refitted."""
    if not (isinstance(n_per_task, int) and n_per_task >= 4):
        raise ValueError(f"n_per_task: must be an integer >= 4, got {n_per_task}")
    cfg = config if config is not None else PosteriorInferenceConfig(obs_noise_std=noise_std)
    cfg = dataclasses.replace(cfg, obs_noise_std=noise_std, parameter_error=False, band_scale=False)
    all_tasks = list(meta["task_names"])
    rows, band_cases = [], []
    sparse_keeps = [k for k in BAND_KEEP if k < 1.0]
    bar = tqdm(total=n_per_task * len(tasks or all_tasks) * (1 + len(sparse_keeps)), desc="parameter error",
               disable=not progress)
    for task in tasks or all_tasks:
        keys = [k for k in meta["priors"] if k.split("/")[0] == task]
        if not keys:
            continue
        rng = np.random.default_rng([seed, all_tasks.index(task)])
        fresh = fresh_prior_rows(meta, geometry, task, keys, n_per_task, rng)
        task_rows, task_cases = _dense_cases(model, normalizers, meta, geometry, cfg, task, fresh, noise_std, rng,
                                             bar.update)
        rows += task_rows
        band_cases += task_cases
        # The band scale at the sparse fractions: the same parameter draws, observed anew at each
        # fraction (own stream, so the dense cases above -- and the weights -- do not change).
        for keep in sparse_keeps:
            band_cases += _sparse_band_cases(model, normalizers, meta, geometry, cfg, task, fresh, keep, noise_std,
                                             seed, bar.update)
    bar.close()
    per_task = {t: fit_prior_weight([x for x in rows if x["task"] == t]) for t in dict.fromkeys(x["task"] for x in rows)}
    block = {
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
    return (block, pack_band_cases(band_cases)) if with_cases else block


def pack_band_cases(cases: list[dict]) -> dict[str, np.ndarray]:
    """The band-scale cases (``_band_case`` dicts) as flat arrays for an ``.npz`` without pickles:
    ``residual``, ``var_parameters``, ``var_discrepancy`` (mA, mA^2; every case's observed points
    concatenated, float64), ``offsets`` (n_cases + 1; case k's points are
    ``offsets[k]:offsets[k + 1]``), per case ``task`` (str), ``case`` (index within its task),
    ``keep`` (observed fraction), ``noise_var`` (mA^2), and ``schema_version``."""
    sizes = [np.size(c["residual"]) for c in cases]
    cat = lambda key: np.concatenate([np.asarray(c[key], np.float64).ravel() for c in cases]) if cases else np.zeros(0)  # noqa: E731
    return {"schema_version": np.asarray(BAND_CASES_SCHEMA), "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            "task": np.asarray([c["task"] for c in cases], dtype=str), "case": np.asarray([c["case"] for c in cases], np.int64),
            "keep": np.asarray([c["keep"] for c in cases], np.float64),
            "noise_var": np.asarray([c["noise_var"] for c in cases], np.float64),
            **{k: cat(k) for k in ("residual", "var_parameters", "var_discrepancy")}}


def unpack_band_cases(z) -> list[dict]:
    """The inverse of ``pack_band_cases`` (``z``: its arrays, e.g. an open ``np.load``); raises
    ValueError on another schema version or inconsistent offsets."""
    if int(z["schema_version"]) != BAND_CASES_SCHEMA:
        raise ValueError(f"band cases: schema_version {int(z['schema_version'])}, this version reads {BAND_CASES_SCHEMA}")
    off = np.asarray(z["offsets"])
    if off.size != len(z["task"]) + 1 or off[0] != 0 or off[-1] != np.size(z["residual"]) or np.any(np.diff(off) < 0):
        raise ValueError("band cases: offsets do not match the arrays")
    return [{"task": str(z["task"][k]), "case": int(z["case"][k]), "keep": float(z["keep"][k]),
             "noise_var": float(z["noise_var"][k]),
             **{key: np.asarray(z[key][off[k]:off[k + 1]]) for key in ("residual", "var_parameters", "var_discrepancy")}}
            for k in range(off.size - 1)]


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
    return {"n_slots": int(u_post.size), "interval_coverage_without": central_interval_coverage(u_post),
            "interval_coverage_with": central_interval_coverage(u_mix), "fold_weights": weights}


def _dense_cases(model, normalizers, meta: dict, geometry: dict, cfg, task: str, fresh: tuple, noise_std: float,
                 rng: np.random.Generator, done=lambda n: None) -> tuple[list[dict], list[dict]]:
    """Each fresh row of ``task`` observed densely with noise and inferred: per free slot the rows
    ``fit_prior_weight`` needs (posterior and prior CDF at the truth, CRPS terms, in prior-sd
    units), and per case the ``fit_band_scale`` case."""
    p, which, truth_i, e = fresh
    layout = CoreLayout.from_meta(meta)
    ti, nb = layout.task_names.index(task), layout.n_base
    rows, cases = [], []
    for r in range(p.shape[0]):
        core = layout.core(p[r], ti, which[r]).astype(np.float64)
        obs = truth_i[r] + rng.normal(0.0, noise_std, truth_i.shape[1])
        post = _infer_fresh(model, normalizers, meta, geometry, cfg, core, obs, e[r], int(rng.integers(2**31)))
        space = ParameterSpace(meta, core, _fresh_known(meta), geometry)
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
        cases.append(_band_case(task, r, 1.0, obs, post, noise_std))
        for j, slot in enumerate(free):
            rows.append({"task": task, "case": r, "kind": slot_kind(space.names[slot]), "u_post": float(u_post[j]),
                         "u_prior": float(u_prior[j]), "err": float(err[j]), "sd": float(sd[j]),
                         **crps_terms(xs[:, j] / prior_sd[j], w, x0[:, j] / prior_sd[j], truth[slot] / prior_sd[j])})
        done(1)
    return rows, cases
