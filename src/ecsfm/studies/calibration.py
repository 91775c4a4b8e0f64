"""The identifiability and calibration study (the seed experiment) as a library function.

known truth -> partial, noisy observation -> posterior -> recovery and calibration.

Cases, noise and masks are drawn exactly as the seed notebook draws them (same seeds, same
order), and every record carries the seed's keys; beside them each record has the metrics over
the *identifiable* slots only (the free slots of active couples; the seed's all-slot metrics
also count slots that are known or absent, which are recovered trivially), per parameter name,
with the posterior contraction ``1 - posterior var / prior var``.

With two or more couples the couples are exchangeable (the current is unchanged when they swap
slots), so the posterior labels them by increasing E0 and the truth is relabelled the same way
before any metric is computed.

Nothing is lost when a run is interrupted: each finished case is appended to
``records.jsonl`` in the output folder and a rerun skips it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from scipy import stats
from tqdm.auto import tqdm

from .._atomic import write_text
from ..data import CoreLayout, read_npz
from ..fm import CHECKPOINT_FILENAME, default_assets, load_surrogate
from ..posterior import (DEFAULT_ENGINE, DEFAULT_METHOD, INTERVAL_MASS, SEED_INFERENCE, SEED_REGIMES, ParameterSpace, build_mask,
                         config_from_budget, default_inference, infer_parameter_posterior, interval_coverage,
                         parse_engine, parse_method, validate_regimes)
from ._journal import Journal, run_items
from .calibration_report import criteria, paired_differences, plot_study, write_report

__all__ = ["SEED_REGIMES", "SEED_INFERENCE", "RESULT_FILENAME", "STUDY_SCHEMA_VERSION", "default_assets",
           "default_inference", "build_mask", "exact_posterior_calibration_error", "paired_differences",
           "run_calibration_study", "summarize", "study_jobs", "run_case"]

# 2: records carry the posterior CDF at the truth; summaries its interval coverage. 3: records and
# summaries carry the calibration error an exact posterior would score (additive). 4: the recovery
# criterion carries the paired differences between regimes (additive).
STUDY_SCHEMA_VERSION = 4
RESULT_FILENAME = "posterior_identifiability_calibration.json"


def exact_posterior_calibration_error(n_points: int, n_params: float) -> float:
    """The seed's predictive calibration error ``|cov1 - 0.6827| + |cov2 - 0.9545|`` that an
    *exact* posterior is expected to score when, as in the seed, coverage is counted at the very
    points the posterior was fitted to: ``n_points`` observed points, ``n_params`` effective
    parameters (the sum of the free parameters' contractions ``1 - posterior var / prior var``).

    For a linear-Gaussian model with any Gaussian prior, under its own prior predictive, the fitted
    residual at point i has variance ``sigma^2 (1 - h_i)`` while the posterior predictive of an
    observation there has ``sigma^2 (1 + h_i)``, with ``h`` the diagonal of the Bayesian hat matrix
    and ``sum(h) = n_params``. So even an exact posterior over-covers its own data, and with a
    finite number of points the coverage fraction scatters around its expectation, which the
    absolute values turn into a positive error. Here every point has the average leverage
    ``h = n_params / n_points`` and the points are taken as independent (the residuals' correlation
    ``-h_ij`` is small for ``n_params << n_points``); the expectation over the binomial count of
    covered points is exact under those two approximations. A reference, not a criterion: the seed
    asks for <= 0.05, and for 256 points an exact posterior scores 0.034 with no free parameter and
    0.049 with 16.
    """
    n = int(n_points)
    if n < 1:
        raise ValueError(f"n_points: must be >= 1, got {n_points}")
    h = min(max(float(n_params), 0.0) / n, 0.999)
    ratio = math.sqrt((1.0 + h) / (1.0 - h))  # predictive sd / residual sd
    k = np.arange(n + 1)
    err = 0.0
    for nominal, width in ((INTERVAL_MASS[0], 1.0), (INTERVAL_MASS[1], 2.0)):
        q = math.erf(width * ratio / math.sqrt(2.0))  # P(|residual| <= width x predictive sd)
        err += float(stats.binom.pmf(k, n, q) @ np.abs(k / n - nominal))
    return err


# -------------------------------------------------------------------------------------------------
# One case


_MODEL_CACHE: dict = {}


def load_model(model_dir) -> tuple:
    """``load_surrogate(model_dir)``, once per process and folder (a study's cases share it)."""
    key = str(Path(model_dir).resolve())
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_surrogate(model_dir)
    return _MODEL_CACHE[key]


def run_case(model_dir: str, job: dict) -> dict:
    """One (regime, case) inference of a study job (``study_jobs``); returns the record and the
    payload for plots."""
    model, normalizers, meta, geometry = load_model(model_dir)
    cfg = config_from_budget(job["inference"], method=job["method"], engine=job["engine"],
                             obs_noise_std=float(job["noise_std"]),
                             parameter_error=bool(job.get("parameter_error", True)),
                             band_scale=bool(job.get("band_scale", True)))
    truth_core = np.asarray(job["p_core"], np.float32)
    known_mask = CoreLayout.from_meta(meta).known_mask()
    t0 = time.perf_counter()
    post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                     observed_current=np.asarray(job["observed"], np.float32),
                                     applied_signal=np.asarray(job["signal"], np.float32), known_p_core=truth_core,
                                     known_p_mask=known_mask, obs_mask=np.asarray(job["mask"], np.float32), config=cfg,
                                     seed=int(job["seed"]), amortized_model=model_dir)
    elapsed = time.perf_counter() - t0
    # Exchangeable couples: the posterior labels them by increasing E0; so is the truth.
    truth_core = ParameterSpace(meta, truth_core, known_mask, geometry).canonical_order(truth_core).astype(np.float32)
    return _record(job, post, truth_core, normalizers, geometry, elapsed)


def _record(job, post, truth_core, normalizers, geometry, elapsed) -> dict:
    nb = int(geometry["phys_dim_base"])
    p_mean, p_std = np.asarray(normalizers[4], np.float64), np.asarray(normalizers[5], np.float64)
    true_norm = ((truth_core - p_mean[: truth_core.size]) / p_std[: truth_core.size])[:nb]
    m = np.asarray(post["posterior_mean_norm"], np.float64)[:nb]
    s = np.maximum(np.asarray(post["posterior_std_norm"], np.float64)[:nb], 1e-6)
    err = np.abs(m - true_norm)
    rel = dict(post["reliability"])
    pred_mean = np.asarray(post["predictive_mean_current"], np.float64)
    pred_std = np.maximum(np.asarray(post["predictive_std_current"], np.float64), 1e-6)
    obs = np.asarray(post["observed_current"], np.float64)
    sel = np.asarray(post["observed_mask"]) >= 0.5
    z = (obs[sel] - pred_mean[sel]) / pred_std[sel]
    free = np.asarray(post["free_indices"], int)
    free = free[free < nb]
    names = [post["parameter_names"][i] for i in free]
    prior_sd = np.asarray(post["prior_std_raw"], np.float64)[free]
    post_sd_raw = np.asarray(post["posterior_std_raw"], np.float64)[free]
    z_free = (np.asarray(post["posterior_mean_raw"], np.float64)[free] - truth_core[free]) / np.maximum(post_sd_raw, 1e-12)
    err_prior_units = (np.asarray(post["posterior_mean_raw"], np.float64)[free] - truth_core[free]) / np.maximum(prior_sd, 1e-12)
    # The posterior CDF at the truth (the SBC rank statistic): the central credible interval of mass c
    # covers the truth iff |u - 1/2| <= c/2, whatever the posterior's shape.
    w_post = np.asarray(post["posterior_weights"], np.float64)
    w_post = w_post / max(w_post.sum(), 1e-300)
    u_free = w_post @ (np.asarray(post["posterior_samples_raw"], np.float64)[:, free] < truth_core[free])
    contraction = 1 - post_sd_raw**2 / np.maximum(prior_sd**2, 1e-300)
    # The predictive's effective parameters are the sampler's (the prior weight does not enter it).
    sampler_sd = np.asarray(post["posterior_std_raw_sampler"], np.float64)[free]
    n_eff = float(np.sum(np.clip(1 - sampler_sd**2 / np.maximum(prior_sd**2, 1e-300), 0.0, 1.0)))
    record = {
        "regime": job["regime"], "case_index": int(job["case_index"]), "elapsed_s": float(elapsed),
        "obs_fraction": float(np.mean(sel)),
        "param_nrmse": float(np.sqrt(np.mean(err**2))), "param_mae": float(np.mean(err)),
        "param_cov_1sigma": float(np.mean(err <= s)), "param_cov_2sigma": float(np.mean(err <= 2 * s)),
        "reliability_score": float(rel["reliability_score"]), "pred_nrmse": float(rel["nrmse"]),
        "pred_nll": float(rel["nll"]), "pred_cov_1sigma": float(rel["coverage_1sigma"]),
        "pred_cov_2sigma": float(rel["coverage_2sigma"]), "pred_calibration_error": float(rel["calibration_error"]),
        "pred_sharpness": float(rel["sharpness"]),
        # Beyond the seed: identifiable slots only, in units of the prior's sd, per parameter.
        "task": post["task"], "stage": post["stage"], "engine": post["engine"], "method": post["method"],
        "ess": float(post["ess"]), "pareto_k": float(post["pareto_k"]), "n_warnings": len(post["warnings"]),
        "parameter_error_applied": post["parameter_error_prior_weight"] > 0,
        **({"amortized_efficiency": float(post["sampler"]["amortized"]["efficiency"]),
            "amortized_fell_back": bool(post["sampler"]["amortized"]["fell_back"])}
           if "amortized" in post["sampler"] else {}),
        "predictive_band_scale": float(post["predictive_band_scale"]),
        "active_param_names": names,
        "active_param_nrmse_prior_units": float(np.sqrt(np.mean(err_prior_units**2))) if names else float("nan"),
        "active_param_cov_1sigma": float(np.mean(np.abs(z_free) <= 1)) if names else float("nan"),
        "active_param_cov_2sigma": float(np.mean(np.abs(z_free) <= 2)) if names else float("nan"),
        "active_param_z": dict(zip(names, map(float, z_free))),
        "active_param_cdf_at_truth": dict(zip(names, map(float, np.atleast_1d(u_free)))),
        "active_param_contraction": dict(zip(names, map(float, contraction))),
        # What an exact posterior with as many observed points and effective parameters would
        # score on the seed's in-sample calibration error (see exact_posterior_calibration_error).
        "n_params_effective": n_eff,
        "pred_calibration_error_exact_reference": exact_posterior_calibration_error(int(sel.sum()), n_eff),
        "heldout_pred_cov_1sigma": (post["reliability_heldout"] or {}).get("coverage_1sigma"),
        "heldout_pred_cov_2sigma": (post["reliability_heldout"] or {}).get("coverage_2sigma"),
    }
    payload = {"z": z.tolist(), "observed_current": obs.tolist(), "observed_mask": sel.astype(float).tolist(),
               "pred_mean": pred_mean.tolist(), "pred_std": pred_std.tolist(),
               "samples_raw": np.asarray(post["posterior_samples_raw"], np.float64).tolist(),
               "weights": np.asarray(post["posterior_weights"], np.float64).tolist(),
               "post_mean_raw": np.asarray(post["posterior_mean_raw"], np.float64).tolist(),
               "true_core": truth_core.astype(np.float64).tolist(),
               "potential": None if job.get("signal") is None
               else np.asarray(job["signal"], np.float64).reshape(-1)[-obs.size:].tolist(),
               "time": None if job.get("time") is None else np.asarray(job["time"], np.float64).tolist()}
    return {"record": record, "payload": payload}


# -------------------------------------------------------------------------------------------------
# The study


#: the seed notebook's base seed: the study draws its cases, noise and masks from it
SEED_BASE = 2026


def study_jobs(chunk_path: Path, geometry: dict, n_cases: int, regimes: dict, inference: dict, engine: str,
               method: str, only_tasks=None, base_seed: int = SEED_BASE) -> list[dict]:
    """The study's (regime, case) jobs, drawn exactly as the seed draws them: cases from the
    chunk's rows (``only_tasks``: task ids to draw from), noise and masks from per-case streams.
    ``base_seed`` other than the seed's (``SEED_BASE``) draws another, equally valid study.
    Raises ValueError when the chunk lacks a key or does not match the model."""
    layout = CoreLayout.from_meta(geometry["meta"])
    chunk = read_npz(chunk_path)  # allow_pickle=False; an unreadable file raises a ValueError naming it
    for key in ("i", "e", "p", "task_id", "stage_id"):
        if key not in chunk:
            raise ValueError(f"{chunk_path}: missing key {key!r} (a dataset chunk has i, e, p, task_id, stage_id)")
    currents = np.asarray(chunk["i"], np.float32)
    signals = np.asarray(chunk["e"], np.float32)
    params = np.asarray(chunk["p"], np.float32)
    task_ids = np.asarray(chunk["task_id"], np.int32)
    stage_ids = np.asarray(chunk["stage_id"], np.int32)
    times = np.asarray(chunk["t"], np.float64) if "t" in chunk else None  # s, per row (the plots' axis)
    if currents.shape[1] != int(geometry["target_len"]):
        raise ValueError(f"{chunk_path}: traces have {currents.shape[1]} points, the model expects "
                         f"{geometry['target_len']}")
    # Without a task filter the pool is every row and the draw is exactly the seed's.
    pool = np.arange(currents.shape[0]) if only_tasks is None else np.flatnonzero(np.isin(task_ids, only_tasks))
    if pool.size == 0:
        raise ValueError(f"tasks: the chunk {chunk_path} has no row of the asked tasks")
    rng = np.random.default_rng(base_seed)
    case_indices = np.asarray(pool[rng.choice(pool.size, size=min(n_cases, pool.size), replace=False)], dtype=np.int32)
    jobs = []
    for regime_idx, (name, cfg) in enumerate(regimes.items()):
        for local, row in enumerate(case_indices):
            case_rng = np.random.default_rng(base_seed + regime_idx * 10000 + int(row))
            truth = currents[row]
            noisy = truth + case_rng.normal(0.0, float(cfg["noise_std"]), size=truth.shape[0]).astype(np.float32)
            mask = build_mask(truth.shape[0], keep_prob=float(cfg["keep_prob"]), rng=case_rng)
            jobs.append({"regime": name, "case_index": int(row), "local": local, "noise_std": float(cfg["noise_std"]),
                         "observed": noisy, "mask": mask, "signal": signals[row],
                         "time": None if times is None else times[row],
                         "p_core": layout.core(params[row], int(task_ids[row]), int(stage_ids[row])),
                         "seed": base_seed + regime_idx * 1000 + local, "inference": inference, "engine": engine,
                         "method": method})
    return jobs


def summarize(rows: list[dict]) -> dict:
    """The seed's per-regime summary, plus identifiable-slot coverage and contraction."""
    arr = lambda key: np.asarray([float(r[key]) for r in rows], dtype=float)  # noqa: E731
    out = {
        "n_cases": float(len(rows)),
        "obs_fraction_mean": float(np.mean(arr("obs_fraction"))),
        "elapsed_s_mean": float(np.mean(arr("elapsed_s"))),
        "param_nrmse_mean": float(np.mean(arr("param_nrmse"))),
        "param_cov_1sigma_mean": float(np.mean(arr("param_cov_1sigma"))),
        "param_cov_2sigma_mean": float(np.mean(arr("param_cov_2sigma"))),
        "pred_nrmse_mean": float(np.mean(arr("pred_nrmse"))),
        "pred_nll_mean": float(np.mean(arr("pred_nll"))),
        "pred_cov_1sigma_mean": float(np.mean(arr("pred_cov_1sigma"))),
        "pred_cov_2sigma_mean": float(np.mean(arr("pred_cov_2sigma"))),
        "pred_calibration_error_mean": float(np.mean(arr("pred_calibration_error"))),
        "reliability_score_mean": float(np.mean(arr("reliability_score"))),
    }
    zs = [v for r in rows for v in r["active_param_z"].values()]
    z = np.abs(np.asarray(zs, float))
    out["active_param_cov_1sigma_pooled"] = float(np.mean(z <= 1)) if z.size else float("nan")
    out["active_param_cov_2sigma_pooled"] = float(np.mean(z <= 2)) if z.size else float("nan")
    out["active_param_n_slots"] = int(z.size)
    ref = [r["pred_calibration_error_exact_reference"] for r in rows if "pred_calibration_error_exact_reference" in r]
    out["pred_calibration_error_exact_reference_mean"] = float(np.mean(ref)) if ref else float("nan")
    # Central credible intervals of the 1- and 2-sigma masses: nominal for any calibrated posterior,
    # where mean +- k sd is nominal only for a Gaussian one (a flat, prior-dominated marginal on a box
    # gives 0.577 / 1.000 at +-1 / 2 sd even when exactly calibrated).
    us = np.asarray([v for r in rows for v in r.get("active_param_cdf_at_truth", {}).values()], float)
    for k, mass in ((1, INTERVAL_MASS[0]), (2, INTERVAL_MASS[1])):
        out[f"active_param_interval_cov_{k}sigma_pooled"] = interval_coverage(us, mass)
    out["active_param_nrmse_prior_units_mean"] = float(np.nanmean(arr("active_param_nrmse_prior_units")))
    per = {}
    for r in rows:
        for name, c in r["active_param_contraction"].items():
            per.setdefault(name.split("[")[0], []).append(c)
    out["contraction_by_parameter"] = {k: float(np.mean(v)) for k, v in sorted(per.items())}
    pooled = [c for v in per.values() for c in v]
    out["contraction_mean"] = float(np.mean(pooled)) if pooled else float("nan")
    return out


def _check_budget(inference: dict) -> dict:
    for key in SEED_INFERENCE:
        if key not in inference:
            raise ValueError(f"inference: missing {key!r} (the seed's keys: {list(SEED_INFERENCE)})")
    if int(inference["n_particles"]) < 2 or int(inference["n_steps"]) < 1:
        raise ValueError(f"inference: needs n_particles >= 2 and n_steps >= 1, got {inference['n_particles']} "
                         f"and {inference['n_steps']}")
    return inference


def run_calibration_study(out_dir, *, model=None, chunk=None, n_cases: int = 8, regimes: dict | None = None,
                          inference: dict | None = None, engine=DEFAULT_ENGINE, method=DEFAULT_METHOD,
                          scheduler: str | None = None, progress: bool = True, tasks=None,
                          parameter_error: bool = True, band_scale: bool = True, base_seed: int = SEED_BASE,
                          fresh: bool = False) -> dict:
    """Run the seed's study and write its JSON, its three PNGs and ``report.md`` into ``out_dir``.

    ``model`` (a model folder) and ``chunk`` (a dataset chunk) default to the assets shipped in the
    package. ``scheduler``: address of a Dask scheduler (or a ``distributed.Client``/``LocalCluster``)
    to spread cases over. ``tasks``: draw the cases only from rows of these tasks (default: every
    row, exactly the seed's draw). ``parameter_error`` / ``band_scale``: as in
    ``PosteriorInferenceConfig``. ``inference``: the seed's keys (``SEED_INFERENCE``); default
    ``default_inference(method)``. ``base_seed``: the draw of cases, noise and masks (default the
    seed's, ``SEED_BASE``; tests vary it). Returns the JSON payload (``resumed_cases``: how many
    were read back). A rerun with the same settings resumes from ``records.jsonl`` and says so on
    stderr; a folder holding a study of other settings is refused (ValueError naming the settings
    that differ) unless ``fresh``, which discards it. Raises ValueError naming the argument on bad
    input.
    """
    d_ckpt, d_chunk = default_assets()
    model = Path(model) if model else d_ckpt.parent
    chunk = Path(chunk) if chunk else d_chunk
    for what, path in (("model", model), ("chunk", chunk)):
        if not path.exists():
            raise ValueError(f"{what}: {path} does not exist")
    if not (isinstance(n_cases, int) and 1 <= n_cases <= 100000):
        raise ValueError(f"cases: must be an integer in [1, 100000], got {n_cases}")
    engine, method = parse_engine(engine), parse_method(method)
    regimes = validate_regimes(SEED_REGIMES if regimes is None else regimes)
    inference = _check_budget(default_inference(method) if inference is None else dict(inference))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, _, meta, geometry = load_model(model)
    only = None
    if tasks:
        unknown = [t for t in tasks if t not in meta["task_names"]]
        if unknown:
            raise ValueError(f"tasks: unknown {unknown}; the model knows {meta['task_names']}")
        only = [meta["task_names"].index(t) for t in tasks]
    jobs = study_jobs(chunk, geometry, n_cases, regimes, inference, str(engine), str(method), only, int(base_seed))
    for job in jobs:
        job["parameter_error"] = bool(parameter_error)
        job["band_scale"] = bool(band_scale)
    config = {"checkpoint": str(model / CHECKPOINT_FILENAME), "dataset_chunk": str(chunk),
              "case_indices": sorted({j["case_index"] for j in jobs}, key=[j["case_index"] for j in jobs].index),
              "observation_regimes": regimes, "inference_base": inference, "engine": str(engine),
              "method": str(method), **({"tasks": list(tasks)} if tasks else {}),
              **({} if parameter_error else {"parameter_error": False}), **({} if band_scale else {"band_scale": False}),
              **({} if base_seed == SEED_BASE else {"base_seed": int(base_seed)})}
    items, reused = _run_jobs(out, config, jobs, model, scheduler, progress, fresh)
    payload = _finish(out, config, items, regimes, geometry, meta)
    payload["resumed_cases"] = reused
    return payload


def _run_jobs(out: Path, config: dict, jobs: list[dict], model: Path, scheduler, progress: bool,
              fresh: bool) -> tuple[list[dict], int]:
    """Every job's item, finished ones read back from the journal (``records.jsonl``: kept for
    the same configuration), the others run (locally or on a Dask scheduler) and appended; and
    how many were read back."""
    journal = Journal(out / "records.jsonl", config, key=lambda it: (it["record"]["regime"], it["record"]["case_index"]),
                      fresh=fresh)
    done = journal.done
    todo = [j for j in jobs if (j["regime"], j["case_index"]) not in done]
    if len(todo) < len(jobs):
        print(f"resuming the study in {out}: {len(jobs) - len(todo)} of {len(jobs)} cases reused from records.jsonl "
              "(--fresh starts afresh)", file=sys.stderr)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="calibration study", unit="case",
               disable=not progress)

    def keep(item):
        journal.add(item)
        bar.update()
        bar.set_postfix(regime=item["record"]["regime"], R=f"{item['record']['reliability_score']:.0f}")

    run_items(todo, run_case, (str(model),), keep, scheduler)
    bar.close()
    return [done[(j["regime"], j["case_index"])] for j in jobs], len(jobs) - len(todo)


def _finish(out: Path, config: dict, items: list[dict], regimes: dict, geometry: dict, meta: dict) -> dict:
    """Summaries, the JSON, the plots, the criteria and the report."""
    records = [it["record"] for it in items]
    summary = {name: summarize([r for r in records if r["regime"] == name]) for name in regimes}
    payload = {"schema_version": STUDY_SCHEMA_VERSION, "config": config, "summary": summary, "records": records}
    write_text(out / RESULT_FILENAME, json.dumps(payload, indent=2))
    worst = {}
    for name in regimes:
        reg = [it for it in items if it["record"]["regime"] == name]
        worst[name] = min(reg, key=lambda it: it["record"]["reliability_score"])
    z_by_regime = {name: np.concatenate([np.asarray(it["payload"]["z"]) for it in items if it["record"]["regime"] == name])
                   for name in regimes}
    plot_study(out, records, list(regimes), z_by_regime, worst.get("sparse_noisy") or worst[list(regimes)[-1]],
               geometry, meta)
    verdicts = criteria(summary, list(regimes), worst, records)
    payload["criteria"] = verdicts
    write_text(out / RESULT_FILENAME, json.dumps(payload, indent=2))
    write_report(out, payload, verdicts)
    return payload
