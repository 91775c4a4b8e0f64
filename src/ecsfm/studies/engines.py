"""Surrogate posterior beside the simulator posterior, case by case: the price of the surrogate.

The same held-out cases, the same observation (dense_clean by default: the seed's noise and
mask draws), inferred twice: with the surrogate engine (CEM + Laplace at the seed's budget, as
the main job runs it) and with the simulator engine (tempered SMC: the exact likelihood up to
discretisation). Per case and identifiable parameter: both posteriors' mean and sd, in prior
standard deviations from the truth. Written as ``engines.json`` and ``engines.png`` (one row per
case: the observation with both predictive bands, then both posteriors' 2-sd intervals per
parameter around the truth).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tqdm.auto import tqdm

from .._atomic import save_png, write_text
from ..fm import default_assets
from ..posterior import INTERVAL_MASS, SEED_REGIMES, Engine, Method, default_inference, interval_coverage
from .calibration import load_model, run_case, study_jobs

__all__ = ["run_engine_comparison", "ENGINES_SCHEMA_VERSION"]

ENGINES_SCHEMA_VERSION = 3  # 2: central-interval coverage in the summary; 3: each case's observation digest
ENGINES = ((Engine.SURROGATE, Method.CEM), (Engine.SIMULATOR, Method.SMC))


def run_engine_comparison(out_dir, *, n_cases: int = 6, regime: str = "dense_clean", model=None, chunk=None,
                          progress: bool = True) -> dict:
    """Run both engines on ``n_cases`` held-out cases of ``chunk`` with the model folder ``model``
    (default: the shipped assets); write ``engines.json`` and ``engines.png`` and return the payload."""
    if regime not in SEED_REGIMES:
        raise ValueError(f"regime: {regime!r} not one of {list(SEED_REGIMES)}")
    if not (isinstance(n_cases, int) and 1 <= n_cases <= 1000):
        raise ValueError(f"cases: must be an integer in [1, 1000], got {n_cases}")
    d_ckpt, d_chunk = default_assets()
    model = Path(model) if model else d_ckpt.parent
    chunk = Path(chunk) if chunk else d_chunk
    for what, path in (("model", model), ("chunk", chunk)):
        if not path.exists():
            raise ValueError(f"{what}: {path} does not exist")
    _, _, _, geometry = load_model(model)
    cases = []
    bar = tqdm(total=n_cases * len(ENGINES), desc="engines", unit="inference", disable=not progress)
    runs = {}
    for engine, method in ENGINES:
        jobs = study_jobs(chunk, geometry, n_cases, {regime: SEED_REGIMES[regime]}, default_inference(method),
                          str(engine), str(method))
        runs[engine] = []
        for job in jobs:
            runs[engine].append(run_case(str(model), job))
            bar.update()
    bar.close()
    for sur, ref in zip(runs[Engine.SURROGATE], runs[Engine.SIMULATOR]):
        rs, rr = sur["record"], ref["record"]
        names = list(rr["active_param_z"])
        cases.append({
            "case_index": rr["case_index"], "task": rr["task"], "parameters": names,
            "surrogate": _posterior_view(sur, names), "simulator": _posterior_view(ref, names),
            "observation_sha256": {"surrogate": _observation_digest(sur), "simulator": _observation_digest(ref)},
            "surrogate_record": {k: rs[k] for k in ("active_param_cov_1sigma", "active_param_cov_2sigma", "ess",
                                                    "pred_calibration_error", "elapsed_s")},
            "simulator_record": {k: rr[k] for k in ("active_param_cov_1sigma", "active_param_cov_2sigma", "ess",
                                                    "pred_calibration_error", "elapsed_s")},
        })
    zs = {e: np.abs(np.concatenate([c[e]["z"] for c in cases])) for e, _ in ENGINES}
    us = {e: np.asarray([u for run in runs[e] for u in run["record"]["active_param_cdf_at_truth"].values()])
          for e, _ in ENGINES}
    sd_ratio = np.concatenate([np.asarray(c["surrogate"]["sd_prior_units"]) / np.maximum(c["simulator"]["sd_prior_units"], 1e-12)
                               for c in cases])
    summary = {e: {"coverage_1sigma": float(np.mean(zs[e] <= 1)), "coverage_2sigma": float(np.mean(zs[e] <= 2)),
                   "interval_coverage_1sigma": interval_coverage(us[e], INTERVAL_MASS[0]),
                   "interval_coverage_2sigma": interval_coverage(us[e], INTERVAL_MASS[1]),
                   "n_slots": int(zs[e].size)} for e, _ in ENGINES}
    summary["sd_ratio_surrogate_over_simulator_median"] = float(np.median(sd_ratio))
    payload = {"schema_version": ENGINES_SCHEMA_VERSION, "regime": regime, "model": str(model),
               "dataset_chunk": str(chunk), "summary": summary, "cases": cases}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "engines.json", json.dumps(payload, indent=2))
    _plot(out / "engines.png", runs, cases)
    return payload


def _observation_digest(item: dict) -> str:
    """SHA-256 of the observed current and its mask an inference saw (float64 bytes, then the
    mask's), so a reader can check that both engines fitted the same observation."""
    pay = item["payload"]
    h = hashlib.sha256(np.asarray(pay["observed_current"], np.float64).tobytes())
    h.update(np.asarray(pay["observed_mask"], np.float64).tobytes())
    return h.hexdigest()


def _posterior_view(item: dict, names: list[str]) -> dict:
    """Posterior mean - truth and sd of the named slots, in prior standard deviations."""
    rec = item["record"]
    z = np.asarray([rec["active_param_z"][n] for n in names])
    contraction = np.asarray([rec["active_param_contraction"][n] for n in names])
    sd = np.sqrt(np.maximum(1.0 - contraction, 0.0))  # posterior sd / prior sd
    return {"z": z.tolist(), "sd_prior_units": sd.tolist(), "error_prior_units": (z * sd).tolist()}


def _plot(path: Path, runs: dict, cases: list[dict]) -> None:
    n = len(cases)
    fig = Figure(figsize=(12, 2.6 * n))
    axes = fig.subplots(n, 2, squeeze=False, gridspec_kw={"width_ratios": [1, 1.4]})
    colors = {"surrogate": "tab:orange", "simulator": "tab:blue"}
    for row, case in enumerate(cases):
        ax = axes[row][0]
        for engine in ("surrogate", "simulator"):
            pay = runs[engine][row]["payload"]
            obs = np.asarray(pay["observed_current"])
            m, s = np.asarray(pay["pred_mean"]), np.asarray(pay["pred_std"])
            x = np.arange(obs.size)
            ax.fill_between(x, m - 2 * s, m + 2 * s, color=colors[engine], alpha=0.3, lw=0, label=f"{engine} ±2σ")
        ax.plot(x, obs, "k.", ms=1.5, label="observed")
        ax.set_title(f"case {case['case_index']} ({case['task']})", fontsize=8)
        ax.set_ylabel("current (mA)", fontsize=7)
        ax.tick_params(labelsize=6)
        if row == 0:
            ax.legend(fontsize=6)
        ax = axes[row][1]
        k = np.arange(len(case["parameters"]))
        for off, engine in ((-0.15, "surrogate"), (0.15, "simulator")):
            v = case[engine]
            ax.errorbar(k + off, v["error_prior_units"], yerr=2 * np.asarray(v["sd_prior_units"]), fmt="o", ms=3,
                        capsize=2, color=colors[engine], label=engine)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(k, case["parameters"], rotation=45, fontsize=6)
        ax.set_ylabel("mean − truth ± 2 sd\n(prior sd)", fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
        if row == 0:
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
