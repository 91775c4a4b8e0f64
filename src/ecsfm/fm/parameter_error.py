"""The surrogate's error in parameter space: calibrated on fresh simulations, embedded in the posterior.

The calibrated discrepancy (``eval_classical.calibrate_discrepancy``) models the surrogate's
error as a Gaussian process over the trace's points, fitted to the marginal size and correlation of
the residuals. What it cannot know is *where* that error points: a surrogate that learned a
slightly wrong map from parameters to currents makes errors that look like a change of the
parameters (a peak a little too late reads as a shifted E0), i.e. errors along the columns of
the Jacobian. The likelihood then moves the parameters to absorb them, and the posterior is
narrower than the truth's distance from it while the predictive bands stay calibrated (measured on
50 held-out dense cases of the shipped model: central 68.3 / 95.4 % intervals cover 0.43 / 0.66;
the posterior mean's error is 1.03 prior sd against a posterior sd of 0.7).

The remedy here is the *embedded* model error of Sargsyan, Najm and Ghanem (2015): the surrogate is
read at parameters ``q = p + eps`` with ``eps ~ N(0, S)`` instead of ``p``, so the likelihood of
``p`` is the surrogate's likelihood smoothed by ``S``. ``S`` is diagonal, per task and parameter
(the couple index dropped), in units of each parameter's prior sd, and is estimated by the method
of moments on fresh prior draws simulated now (never seen in training) and inferred at the
inference settings it is calibrated for: for a calibrated posterior the squared error of its mean
averages its variance, so ``S_jj = max(0, mean(err_j^2) - mean(sd_j^2))``. Because the inference
settings are part of what is calibrated, an importance sampler's own shortfall at a small budget is
absorbed too: the metadata records the method and budget, and the term is applied only for that
method.

The surrogate was trained inside the prior's box only, so its effective parameters ``q`` are
kept there: ``q | p ~ N(p, S)`` restricted to the box, ``N(q - p; 0, S) / Z(p)`` with ``Z(p)`` the
Gaussian's mass in the box. (Unrestricted, a posterior as flat as its prior would come out lower
near every edge, where half the smoothing mass would fall outside the box; restricted, a flat
posterior stays flat.)

Sampling needs no further likelihood call. The sampler's weighted particles ``q_i`` target
``prior(q) L(q)``; drawing ``p = q + eps`` and weighting by ``prior(p) / (prior(q) Z(p))`` targets
the joint ``prior(p) N(q - p; 0, S) L(q) / Z(p)``, whose ``p`` marginal is the embedded posterior
(the weight is exact: importance sampling on the pair). Draws outside the prior's support get
weight 0. Each particle gets several draws so that the embedded sample is smooth.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

__all__ = ["FORM_VERSION", "slot_kind", "parameter_error_sd", "embed_parameter_error",
           "calibrate_parameter_error", "fit_parameter_error"]

#: Version of the calibrated form recorded in ``model_meta.json["parameter_error"]``.
FORM_VERSION = 1

#: The embedded sample has at least this many draws (each particle is drawn at least once).
MIN_EMBEDDED_DRAWS = 4096


def slot_kind(name: str) -> str:
    """A slot's parameter without its couple index: ``"ln_k0[1]"`` -> ``"ln_k0"``."""
    return re.sub(r"\[\d+\]$", "", name)


def parameter_error_sd(meta: dict, task: str, method: str, names: list[str]) -> np.ndarray | None:
    """Per named slot, the embedded error's sd in prior-sd units (0 for a parameter the
    calibration did not see), or None when the model has no calibration for this task and method."""
    block = (meta or {}).get("parameter_error")
    if not block or block.get("form_version") != FORM_VERSION or block.get("method") != method:
        return None
    per = block.get("per_task", {}).get(task)
    if per is None:
        return None
    return np.asarray([float(per.get(slot_kind(n), 0.0)) for n in names], np.float64)


def _log_density_raw(space, p: np.ndarray) -> np.ndarray:
    """Log prior density of raw ``p_core`` rows (n, core) over the free slots; -inf outside the
    support. The prior is defined in ``y`` (``ParameterSpace.log_prior``); raw = y's map, so the
    density picks up ``-log |dp/dy|`` = ``-(log |dz/dy| + sum over log-scale slots of log p)``."""
    pf = p[:, space.free]
    log_kind = space._log_kind
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(log_kind, np.log(np.where(pf > 0, pf, np.nan)), pf)
    y = space.from_z(z)
    bad = ~np.all(np.isfinite(y), axis=1)
    y = np.where(bad[:, None], 0.0, y)
    lp = space.log_prior(y) - space.log_det_dz_dy(y)
    lp = lp - np.sum(np.where(log_kind, np.log(np.maximum(np.abs(pf), 1e-300)), 0.0), axis=1)
    return np.where(bad, -np.inf, lp)


def _log_box_mass(space, p: np.ndarray, sd_raw: np.ndarray) -> np.ndarray:
    """log Z(p) (n,): the mass of N(p, diag(sd_raw^2)) in the prior's box (per free slot, the
    box given the row's own C_ox for a fraction slot)."""
    from scipy.special import ndtr

    sd = np.asarray(sd_raw, np.float64)
    on = sd > 0
    a, b = space._box(p)
    x = p[:, space.free]
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = ndtr((b[:, on] - x[:, on]) / sd[on]) - ndtr((a[:, on] - x[:, on]) / sd[on])
        return np.sum(np.log(np.maximum(mass, 1e-300)), axis=1)


def embed_parameter_error(space, samples_raw: np.ndarray, weights: np.ndarray, sd_raw: np.ndarray,
                          rng: np.random.Generator, min_draws: int = MIN_EMBEDDED_DRAWS):
    """The embedded posterior's weighted draws from the sampler's (``samples_raw`` (N, core),
    normalised ``weights`` (N,)): ``sd_raw`` (dim,) is the error's sd per free slot in raw units.
    Returns (draws (N * m, core), weights (N * m,), parent index (N * m,)), m = ceil(min_draws / N)."""
    samples_raw = np.asarray(samples_raw, np.float64)
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    n = samples_raw.shape[0]
    m = max(1, math.ceil(min_draws / n))
    parent = np.repeat(np.arange(n), m)
    draws = samples_raw[parent].copy()
    draws[:, space.free] += rng.standard_normal((parent.size, space.free.size)) * np.asarray(sd_raw)[None, :]
    lp_new = _log_density_raw(space, draws) - _log_box_mass(space, draws, sd_raw)
    lp_old = _log_density_raw(space, samples_raw)[parent]
    with np.errstate(invalid="ignore"):
        log_ratio = np.where(np.isfinite(lp_new) & np.isfinite(lp_old), lp_new - lp_old, -np.inf)
    lw = np.log(np.maximum(w[parent], 1e-300)) + log_ratio
    lw[w[parent] <= 0] = -np.inf
    if not np.isfinite(lw).any():  # every draw left the support: keep the sampler's particles
        return samples_raw, w, np.arange(n)
    out = np.exp(lw - lw[np.isfinite(lw)].max())
    out[~np.isfinite(lw)] = 0.0
    return draws, out / out.sum(), parent


# -------------------------------------------------------------------------------------------------
# Calibration


def fit_parameter_error(rows: list[dict]) -> dict:
    """Method-of-moments fit per (task, parameter): ``rows`` hold ``task``, ``kind``, ``err`` and
    ``sd`` (the posterior mean's error and the posterior sd, both in prior-sd units) of one free
    slot of one case. Returns ``{task: {kind: sd}}`` (prior-sd units)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["task"], {}).setdefault(r["kind"], []).append((r["err"], r["sd"]))
    out = {}
    for task, kinds in groups.items():
        out[task] = {}
        for kind, vals in kinds.items():
            err, sd = np.asarray(vals, np.float64).T
            out[task][kind] = float(math.sqrt(max(0.0, float(np.mean(err**2) - np.mean(sd**2)))))
    return out


def _interval_coverage(u: np.ndarray) -> tuple[float, float]:
    """Coverage of the central 68.3 / 95.4 % credible intervals from posterior CDFs at the truth."""
    u = np.asarray(u, np.float64)
    return float(np.mean(np.abs(u - 0.5) <= 0.6827 / 2)), float(np.mean(np.abs(u - 0.5) <= 0.9545 / 2))


def calibrate_parameter_error(model, normalizers, meta: dict, geometry: dict, *, n_per_task: int = 32,
                              noise_std: float = 0.02, config=None, seed: int = 0, tasks=None,
                              progress: bool = False) -> dict:
    """Fit the embedded parameter error on fresh prior draws: per task ``n_per_task`` parameter
    vectors from the task's priors (its stages in turn), simulated now with the dataset's simulator,
    observed densely with Gaussian noise ``noise_std`` (the seed's dense_clean regime), inferred with
    ``config`` (default: ``PosteriorInferenceConfig`` at the seed's settings) without the term.
    Returns the ``model_meta.json["parameter_error"]`` block: the fit on all cases, a two-fold check
    (fit on one half of each task's cases, coverage of the other half's embedded posteriors) and
    the per-slot rows. Each task draws from its own stream (``seed``, task index), so a subset of
    tasks reproduces those tasks of a full run."""
    from tqdm.auto import tqdm

    from ..data import ParamSpace, PriorSpec
    from ._data import compose_core_params
    from .eval_classical import _simulate_rows
    from .posterior import ParameterSpace, PosteriorInferenceConfig, infer_parameter_posterior

    if not (isinstance(n_per_task, int) and n_per_task >= 4):
        raise ValueError(f"n_per_task: must be an integer >= 4, got {n_per_task}")
    cfg = config if config is not None else PosteriorInferenceConfig(obs_noise_std=noise_std)
    cfg = dataclasses.replace(cfg, obs_noise_std=noise_std, parameter_error=False)
    layout = ParamSpace(int(geometry["max_species"]))
    all_tasks, stages = list(meta["task_names"]), list(meta["stage_names"])
    nb = int(geometry["phys_dim_base"])
    rows, cases = [], []
    bar = tqdm(total=n_per_task * len(tasks or all_tasks), desc="parameter error", disable=not progress)
    for task in tasks or all_tasks:
        keys = [k for k in meta["priors"] if k.split("/")[0] == task]
        if not keys:
            continue
        ti = all_tasks.index(task)
        rng = np.random.default_rng([seed, ti])
        p_rows, which = [], []
        for j, key in enumerate(keys):
            m = n_per_task // len(keys) + (j < n_per_task % len(keys))
            p_rows.append(PriorSpec.from_dict(meta["priors"][key]).sample(rng, m, layout))
            which += [stages.index(key.split("/")[1])] * m
        p = np.concatenate(p_rows)
        truth_i, e, _ = _simulate_rows(meta, geometry, task, p)
        known = np.zeros(int(geometry["phys_dim_core"]), bool)
        known[nb:] = True
        for r in range(p.shape[0]):
            core = compose_core_params(p[r], ti, which[r], geometry).astype(np.float64)
            obs = truth_i[r] + rng.normal(0.0, noise_std, truth_i.shape[1])
            post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                             observed_current=obs, applied_signal=e[r], known_p_core=core,
                                             known_p_mask=known, config=cfg, seed=int(rng.integers(2**31)),
                                             meta=meta)
            space = ParameterSpace(meta, core, known, geometry)
            truth = space.canonical_order(core)
            free = space.free[space.free < nb]
            prior_sd = np.maximum(np.asarray(post["prior_std_raw"], np.float64)[free], 1e-12)
            mean = np.asarray(post["posterior_mean_raw"], np.float64)[free]
            sd = np.asarray(post["posterior_std_raw"], np.float64)[free]
            case = {"task": task, "space": space, "truth": truth, "free": free, "prior_sd": prior_sd,
                    "samples": np.asarray(post["posterior_samples_raw"], np.float64),
                    "weights": np.asarray(post["posterior_weights"], np.float64), "rows": []}
            for j, slot in enumerate(free):
                row = {"task": task, "kind": slot_kind(space.names[slot]), "err": float((mean[j] - truth[slot]) / prior_sd[j]),
                       "sd": float(sd[j] / prior_sd[j])}
                rows.append(row)
                case["rows"].append(row)
            cases.append(case)
            bar.update(1)
    bar.close()
    check = _two_fold_check(cases, seed)
    return {
        "form_version": FORM_VERSION,
        "form": "posterior of p with the surrogate read at p + eps, eps ~ N(0, diag(sd_k^2 prior_sd_k^2)) per task "
                "and parameter k (couple index dropped); sd_k^2 = max(0, mean(err^2) - mean(posterior sd^2)) in "
                "prior-sd units over fresh prior draws",
        "method": cfg.method,
        "inference": {"n_particles": cfg.cem.n_particles, "n_iterations": cfg.cem.n_iterations,
                      "n_mc_per_particle": cfg.n_mc_per_particle, "n_integration_steps": cfg.n_integration_steps,
                      "smc_particles": cfg.smc.n_particles},
        "regime": {"keep_prob": 1.0, "noise_std": noise_std},
        "n_per_task": n_per_task, "seed": seed,
        "per_task": fit_parameter_error(rows),
        "check": check,
        "rows": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }


def _two_fold_check(cases: list[dict], seed: int) -> dict:
    """Central-interval coverage of each half's embedded posteriors with the term fitted on the
    other half (cases split alternately within each task), and without the term."""
    rng = np.random.default_rng(seed + 1)
    before, after = [], []
    for fold in (0, 1):
        fit_rows, check = [], []
        counts: dict = {}
        for c in cases:
            k = counts[c["task"]] = counts.get(c["task"], -1) + 1
            if k % 2 == fold:
                check.append(c)
            else:
                fit_rows.extend(c["rows"])
        sds = fit_parameter_error(fit_rows)
        for c in check:
            space, free = c["space"], c["free"]
            names = [space.names[i] for i in space.free]
            units = np.asarray([sds.get(c["task"], {}).get(slot_kind(n), 0.0) for n in names])
            prior_all = space.prior_std_raw()[space.free]
            draws, w, _ = embed_parameter_error(space, c["samples"], c["weights"], units * prior_all, rng)
            cols = np.isin(space.free, free)
            before.append(c["weights"] / c["weights"].sum() @ (c["samples"][:, free] < c["truth"][free]))
            after.append(w @ (draws[:, space.free[cols]] < c["truth"][space.free[cols]]))
    b, a = np.concatenate(before), np.concatenate(after)
    return {"n_slots": int(b.size), "interval_coverage_without": _interval_coverage(b),
            "interval_coverage_with": _interval_coverage(a)}
