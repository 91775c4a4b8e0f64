"""Simulation-based calibration (Talts et al. 2018) of the posterior, either engine.

For k = 1..n: draw parameters from the dataset prior of one task/stage, simulate the trace with
``ecsfm.sim`` (the dataset's own task program), add Gaussian noise, infer, and record for every
free parameter of the active couples the posterior CDF at the truth,
``u = sum_i w_i 1[theta_i < theta_true]``. If the posterior is calibrated, ``u ~ Uniform(0, 1)``
for every parameter: rank histograms (with the 99 % band of a uniform histogram), the
Kolmogorov-Smirnov p-value, and the expected-coverage curve (the central credible interval of
level c covers the truth iff ``|u - 1/2| <= c/2``) over c = 0.05 ... 0.95 with binomial bands.

Draws are journalled (``records.jsonl``): an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from scipy import stats
from tqdm.auto import tqdm

from .._atomic import save_png, write_text
from ..data import CoreLayout, ParamSpace, PriorSpec, read_json, simulate_rows
from ..fm import default_assets
from ..posterior import (DEFAULT_ENGINE, DEFAULT_METHOD, ParameterSpace, config_from_budget, default_inference,
                         infer_parameter_posterior, interval_coverage, parse_engine, parse_method)
from ._journal import Journal, run_items
from .calibration import load_model

__all__ = ["run_sbc", "SBC_FILENAME", "SBC_SCHEMA_VERSION", "LEVELS"]

SBC_FILENAME = "sbc.json"
SBC_SCHEMA_VERSION = 1
LEVELS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2).tolist())


def _draws(meta: dict, geometry: dict, task: str, stage: str, n: int, noise: float, seed: int) -> list[dict]:
    """``n`` prior draws of ``task/stage`` simulated now and observed with noise: the SBC's jobs."""
    space = ParamSpace(int(geometry["max_species"]))
    key = f"{task}/{stage}"
    if key not in meta["priors"]:
        raise ValueError(f"task/stage: {key!r} has no prior in the model metadata (known: {sorted(meta['priors'])})")
    prior = PriorSpec.from_dict(meta["priors"][key])
    rng = np.random.default_rng(seed)
    p = prior.sample(rng, n, space)
    i, e, _ = simulate_rows(meta, geometry, task, p)
    obs = i + rng.normal(0.0, noise, size=i.shape)
    layout = CoreLayout.from_meta(meta)
    return [{"k": k, "p_core": layout.core(p[k], task, stage).astype(np.float64).tolist(), "observed": obs[k].tolist(),
             "signal": e[k].tolist(), "noise": noise} for k in range(n)]


def _run_draw(model_dir: str, engine: str, method: str, n_particles: int, parameter_error: bool, job: dict) -> dict:
    """One SBC draw: the posterior of a simulated observation and its CDF at the truth per free slot."""
    model, normalizers, meta, geometry = load_model(model_dir)
    core = np.asarray(job["p_core"])
    known = CoreLayout.from_meta(meta).known_mask()
    cfg = config_from_budget({"n_particles": n_particles}, method=method, engine=engine,
                             obs_noise_std=float(job["noise"]), parameter_error=parameter_error)
    post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                     observed_current=np.asarray(job["observed"]), applied_signal=np.asarray(job["signal"]),
                                     known_p_core=core, known_p_mask=known, config=cfg, seed=int(job["k"]))
    core = ParameterSpace(meta, core, known, geometry).canonical_order(core)  # exchangeable couples: E0 order
    samples = np.asarray(post["posterior_samples_raw"], np.float64)
    w = np.asarray(post["posterior_weights"], np.float64)
    w = w / w.sum()
    free = [i for i in post["free_indices"] if i < int(geometry["phys_dim_base"])]
    u = {post["parameter_names"][i]: float(w @ (samples[:, i] < core[i])) for i in free}
    return {"k": int(job["k"]), "u": u, "ess": float(post["ess"]), "n_warnings": len(post["warnings"]),
            "prior_weight": post["parameter_error_prior_weight"]}


def run_sbc(out_dir, *, model_dir=None, n: int = 200, task: str = "cv", stage: str = "intermediate",
            engine=DEFAULT_ENGINE, method=DEFAULT_METHOD, noise: float = 0.02, n_particles: int | None = None,
            seed: int = 0, scheduler=None, progress: bool = True, parameter_error: bool = True,
            fresh: bool = False) -> dict:
    """Run SBC and write ``sbc.json``, ``sbc_ranks.png`` and ``sbc_coverage.png`` into ``out_dir``.

    ``parameter_error=False`` leaves the model's calibrated prior weight out of the surrogate
    engine's posteriors (``PosteriorInferenceConfig.parameter_error``); the result records the
    weight each draw's posterior carried. ``n_particles``: the sampler's particle count (None: the
    method's default, ``default_inference``)."""
    engine, method = parse_engine(engine), parse_method(method)
    n_particles = int(n_particles or default_inference(method)["n_particles"])
    if not (isinstance(n, int) and 10 <= n <= 1_000_000):
        raise ValueError(f"n: must be an integer in [10, 1000000], got {n}")
    if not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise: must be > 0, got {noise}")
    model_dir = str(Path(model_dir) if model_dir else default_assets()[0].parent)
    _, _, meta, geometry = load_model(model_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_dir": model_dir, "n": n, "task": task, "stage": stage, "engine": str(engine), "method": str(method),
              "noise": noise, "n_particles": n_particles, "seed": seed,
              **({} if parameter_error else {"parameter_error": False})}
    journal = Journal(out / "records.jsonl", config, key=lambda it: it["k"], fresh=fresh)
    jobs = [j for j in _draws(meta, geometry, task, stage, n, noise, seed) if j["k"] not in journal.done]
    if len(jobs) < n:
        print(f"resuming the SBC in {out}: {n - len(jobs)} of {n} draws reused from records.jsonl (--fresh starts "
              "afresh)", file=sys.stderr)
    bar = tqdm(total=n, initial=n - len(jobs), desc=f"SBC ({engine}/{method})", unit="draw", disable=not progress)

    def keep(item):
        journal.add(item)
        bar.update()

    run_items(jobs, _run_draw, (model_dir, str(engine), str(method), n_particles, bool(parameter_error)), keep,
              scheduler)
    bar.close()
    items = [journal.done[k] for k in range(n)]
    names = sorted({name for it in items for name in it["u"]}, key=lambda s: (s.split("[")[-1], s))
    per = {}
    for name in names:
        u = np.asarray([it["u"][name] for it in items if name in it["u"]])
        ks = stats.kstest(u, "uniform")
        cover = [interval_coverage(u, c) for c in LEVELS]
        per[name] = {"n": int(u.size), "ks_pvalue": float(ks.pvalue), "ks_statistic": float(ks.statistic),
                     "coverage": dict(zip(map(str, LEVELS), cover)), "u": u.tolist()}
    failing = [k for k, v in per.items() if v["ks_pvalue"] < 0.01]
    result = {"schema_version": SBC_SCHEMA_VERSION, "config": config, "levels": list(LEVELS), "parameters": per,
              "failing_ks_p_below_0.01": failing,
              "median_ess": float(np.median([it["ess"] for it in items])),
              "draws_with_warnings": int(sum(it["n_warnings"] > 0 for it in items)),
              "parameter_error_prior_weight": _median_prior_weight(items)}
    write_text(out / SBC_FILENAME, json.dumps(result, indent=1))
    _plot(out, per, n)
    return result


def _median_prior_weight(items: list[dict]) -> float | None:
    """The median prior weight the draws' posteriors carried; None when a draw journalled before
    this was recorded is among them (its posterior may have carried one: it was not written down)."""
    weights = [it.get("prior_weight") for it in items]
    return None if any(w is None for w in weights) else float(np.median(weights))


def _plot(out: Path, per: dict, n: int) -> None:

    names = list(per)
    cols = min(5, len(names))
    rows = -(-len(names) // cols)
    bins = 10
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        u = np.asarray(per[name]["u"])
        lo, hi = stats.binom.ppf([0.005, 0.995], u.size, 1 / bins)
        ax.axhspan(lo, hi, color="0.85", label="99 % band (uniform)")
        ax.hist(u, bins=bins, range=(0, 1), color="tab:blue", alpha=0.8)
        ax.set_title(f"{name}  KS p={per[name]['ks_pvalue']:.2g}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"SBC rank statistics (posterior CDF at the truth), {n} draws")
    fig.tight_layout()
    save_png(fig, out / "sbc_ranks.png", dpi=120)

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    levels = np.asarray(LEVELS)
    m = next(iter(per.values()))["n"]
    lo, hi = stats.binom.ppf(0.005, m, levels) / m, stats.binom.ppf(0.995, m, levels) / m
    ax.fill_between(levels, lo, hi, color="0.85", label="99 % binomial band")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for name in names:
        ax.plot(levels, list(per[name]["coverage"].values()), lw=1, label=name)
    ax.set_xlabel("credibility level")
    ax.set_ylabel("empirical coverage")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, out / "sbc_coverage.png", dpi=120)


def compare_sbc(results, out_png) -> dict:
    """Two or more SBC results (``sbc.json`` paths or dicts) side by side: per run, the coverage
    curve pooled over parameters, with the binomial band of the smallest run; returns the pooled
    curves. The gap between a surrogate-engine and a simulator-engine curve is the price of the
    surrogate (and of its sampler)."""

    runs = []
    for r in results:
        if not isinstance(r, dict):
            r = read_json(r, "compare")
        if r.get("schema_version") != SBC_SCHEMA_VERSION:
            raise ValueError(f"sbc: schema_version {r.get('schema_version')!r}, expected {SBC_SCHEMA_VERSION}")
        runs.append(r)
    if len(runs) < 2:
        raise ValueError("sbc: give at least two results to compare")
    levels = np.asarray(LEVELS)
    pooled = {}
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    n_min = min(r["config"]["n"] for r in runs)
    lo, hi = stats.binom.ppf(0.005, n_min, levels) / n_min, stats.binom.ppf(0.995, n_min, levels) / n_min
    ax.fill_between(levels, lo, hi, color="0.85", label=f"99 % binomial band ({n_min} draws, one parameter)")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for r in runs:
        c = r["config"]
        label = f"{c['engine']}/{c['method']} ({c['n']} draws, {c['task']})"
        curve = np.mean([list(p["coverage"].values()) for p in r["parameters"].values()], axis=0)
        pooled[label] = curve.tolist()
        ax.plot(levels, curve, "o-", ms=3, lw=1.5, label=label)
    ax.set_xlabel("credibility level")
    ax.set_ylabel("empirical coverage (mean over parameters)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, out_png, dpi=120)
    return {"levels": list(LEVELS), "pooled_coverage": pooled}
