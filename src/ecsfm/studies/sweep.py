"""Recovery versus information: the calibration study over a grid of keep fraction x noise level.

Each grid cell is one observation regime of ``ecsfm.studies.calibration`` (the same held-out
cases in every cell, masks and noise drawn as the seed draws them), so the cells differ only in
how much information the observation carries. Per cell: parameter error of the identifiable
slots (posterior mean - truth, in prior standard deviations, RMS over slots), coverage of the
truth at 1 and 2 posterior sd (pooled over slots; nominal 0.683 / 0.954), and posterior
contraction. Written as ``sweep.json`` and ``sweep_heatmaps.png``; the per-case records and the
study's own plots are in ``study/`` (journalled there: an interrupted sweep resumes).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .._atomic import save_png, write_text
from ..posterior import DEFAULT_ENGINE, DEFAULT_METHOD, INTERVAL_MASS
from .calibration import run_calibration_study

__all__ = ["run_information_sweep", "SWEEP_SCHEMA_VERSION"]

SWEEP_SCHEMA_VERSION = 2  # 2: central-interval coverage beside the +-sd coverage
_METRICS = (
    ("active_param_nrmse_prior_units_mean", "parameter error (prior sd, RMS)", "viridis_r", None),
    ("active_param_interval_cov_1sigma_pooled", "68.3 % interval coverage", "RdBu", INTERVAL_MASS[0]),
    ("active_param_interval_cov_2sigma_pooled", "95.4 % interval coverage", "RdBu", INTERVAL_MASS[1]),
    ("contraction_mean", "posterior contraction (1 - var/prior var)", "viridis", None),
)


def _regime_name(keep: float, noise: float) -> str:
    return f"keep{keep:g}_noise{noise:g}"


def run_information_sweep(out_dir, *, keep=(1.0, 0.35, 0.1), noise=(0.01, 0.02, 0.08), n_cases: int = 10,
                          engine=DEFAULT_ENGINE, method=DEFAULT_METHOD, model=None, chunk=None,
                          scheduler=None, progress: bool = True, tasks=None, base_seed: int | None = None) -> dict:
    """Run the grid and write ``sweep.json`` + ``sweep_heatmaps.png`` into ``out_dir``; returns the
    JSON payload (``grid``: per cell the metrics above; ``keep``, ``noise``, ``config``). ``tasks``
    restricts the cases to rows of those tasks; ``base_seed`` the study's draw (default the seed's)."""
    keep = [float(k) for k in keep]
    noise = [float(s) for s in noise]
    if not keep or not all(0.0 < k <= 1.0 for k in keep):
        raise ValueError(f"keep: fractions in (0, 1], got {keep}")
    if not noise or not all(math.isfinite(s) and s > 0 for s in noise):
        raise ValueError(f"noise: standard deviations > 0 (mA), got {noise}")
    regimes = {_regime_name(k, s): {"keep_prob": k, "noise_std": s} for s in noise for k in keep}
    out = Path(out_dir)
    study = run_calibration_study(out / "study", model=model, chunk=chunk, n_cases=n_cases, regimes=regimes,
                                  engine=engine, method=method, scheduler=scheduler, progress=progress,
                                  tasks=tasks, **({} if base_seed is None else {"base_seed": base_seed}))
    grid = []
    for s in noise:
        for k in keep:
            summ = study["summary"][_regime_name(k, s)]
            contraction = summ["contraction_by_parameter"]
            grid.append({"keep": k, "noise_std": s, "n_cases": summ["n_cases"],
                         "obs_fraction_mean": summ["obs_fraction_mean"],
                         "active_param_nrmse_prior_units_mean": summ["active_param_nrmse_prior_units_mean"],
                         "active_param_cov_1sigma_pooled": summ["active_param_cov_1sigma_pooled"],
                         "active_param_cov_2sigma_pooled": summ["active_param_cov_2sigma_pooled"],
                         "active_param_interval_cov_1sigma_pooled": summ["active_param_interval_cov_1sigma_pooled"],
                         "active_param_interval_cov_2sigma_pooled": summ["active_param_interval_cov_2sigma_pooled"],
                         "active_param_n_slots": summ["active_param_n_slots"],
                         "contraction_by_parameter": contraction,
                         "contraction_mean": float(np.mean(list(contraction.values()))) if contraction else float("nan"),
                         "pred_calibration_error_mean": summ["pred_calibration_error_mean"]})
    payload = {"schema_version": SWEEP_SCHEMA_VERSION, "keep": keep, "noise": noise,
               "config": {**study["config"], "n_cases": n_cases}, "grid": grid}
    write_text(out / "sweep.json", json.dumps(payload, indent=2))
    _heatmaps(out / "sweep_heatmaps.png", payload)
    return payload


def _heatmaps(path: Path, payload: dict) -> None:
    keep, noise = payload["keep"], payload["noise"]
    cell = {(g["keep"], g["noise_std"]): g for g in payload["grid"]}
    fig = Figure(figsize=(4.2 * len(_METRICS), 3.6))
    axes = fig.subplots(1, len(_METRICS))
    for ax, (key, title, cmap, nominal) in zip(axes, _METRICS):
        m = np.asarray([[cell[(k, s)][key] for k in keep] for s in noise], float)
        if nominal is None:
            im = ax.imshow(m, cmap=cmap, origin="lower", aspect="auto")
        else:  # diverging around the nominal value: blue over-covers, red under-covers
            span = max(float(np.nanmax(np.abs(m - nominal))), 0.05)
            im = ax.imshow(m, cmap=cmap, origin="lower", aspect="auto", vmin=nominal - span, vmax=nominal + span)
        for a in range(len(noise)):
            for b in range(len(keep)):
                ax.text(b, a, f"{m[a, b]:.2f}", ha="center", va="center", fontsize=8, color="k",
                        bbox={"facecolor": "white", "alpha": 0.6, "lw": 0, "pad": 1})
        ax.set_xticks(range(len(keep)), [f"{k:g}" for k in keep])
        ax.set_yticks(range(len(noise)), [f"{s:g}" for s in noise])
        ax.set_xlabel("fraction of points observed")
        ax.set_ylabel("noise sd (mA)")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    cfg = payload["config"]
    tasks = ", ".join(cfg.get("tasks", [])) or "all tasks"
    fig.suptitle(f"Recovery vs information: {cfg['engine']}/{cfg['method']}, {cfg['n_cases']} held-out cases per cell "
                 f"({tasks})",
                 fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=120)
