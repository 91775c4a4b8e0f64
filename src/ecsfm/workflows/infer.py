"""``ecsfm infer`` on the model's protocol grid: measurement files in, a posterior summary,
artifacts and plots out.

Measurement files:

* ``.npz`` written by ``ecsfm import`` (a measurement, read like a text file);
* ``.npz`` (the seed's layout): ``e`` (L,) applied potential, ``i_obs`` (L,) current in the
  model's units (mA for its area), optional ``i_mask`` (L,), ``known_p_core``, ``known_p_mask``,
  ``p_true`` (for plots only);
* text files with time, potential and current columns (``ecsfm.io.read``: instrument exports,
  CSV/TSV with units in the header or given).

A measured trace must follow one of the model's protocols (task template, e.g. the cv task's
0.5 -> -0.5 -> 0.5 V sweep): its duration sets the protocol's time-scale slot and it is
resampled to the model's L points; a waveform that departs from it by more than
``WAVEFORM_TOLERANCE_V`` is refused with the reason (``ecsfm.workflows.infer_measured`` fits any
sweep with the simulator).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, write_text
from ..data import TASKS, CoreLayout, read_npz
from ..fm import load_surrogate
from ..posterior import (DEFAULT_ENGINE, DEFAULT_METHOD, config_from_budget, default_inference, infer_joint_posterior,
                         model_check, noise_from_second_differences, weighted_variance, write_inference_data)
from .measurement import NOISE_UNIT, WAVEFORM_TOLERANCE_V, is_model_grid_npz, parse_known, read_measurement
from .plots import plot_marginals, plot_predictive

__all__ = ["run_infer", "SUMMARY_SCHEMA_VERSION", "estimate_noise"]

SUMMARY_SCHEMA_VERSION = 1


def _load_npz(measurement: Path, length: int, layout: CoreLayout):
    """``e``, ``i_obs``, ``mask``, ``core``, ``kmask``, ``p_true`` of a seed-layout npz file."""
    z = read_npz(measurement)  # allow_pickle=False; an unreadable file raises a ValueError naming it
    for key in ("e", "i_obs"):
        if key not in z:
            raise ValueError(f"{measurement}: missing key {key!r} (need e, i_obs; optional i_mask, "
                             "known_p_core, known_p_mask)")
    for key in ("e", "i_obs", "i_mask", "known_p_core", "known_p_mask", "p_true"):
        if key in z and z[key].dtype.kind not in "biuf":
            raise ValueError(f"{measurement}: array {key!r} must be numeric, got dtype {z[key].dtype}")
    e, i_obs = np.asarray(z["e"], np.float64), np.asarray(z["i_obs"], np.float64)
    mask = np.asarray(z["i_mask"], np.float64) if "i_mask" in z else np.ones_like(i_obs)
    core = np.asarray(z["known_p_core"], np.float64) if "known_p_core" in z else None
    kmask = np.asarray(z["known_p_mask"]).astype(bool) if "known_p_mask" in z else None
    p_true = np.asarray(z["p_true"], np.float64) if "p_true" in z else None
    if not np.all(np.isfinite(mask) & (mask >= 0) & (mask <= 1)):
        raise ValueError(f"{measurement}: i_mask must be finite and in [0, 1] (>= 0.5: observed)")
    if e.shape != (length,) or i_obs.shape != (length,) or mask.shape != (length,):
        raise ValueError(f"{measurement}: e, i_obs, i_mask must each have {length} points (the model's "
                         f"target_len), got {e.shape}, {i_obs.shape}, {mask.shape}")
    if core is None:
        raise ValueError(f"{measurement}: an npz measurement needs known_p_core (its one-hots select task and "
                         "stage; its protocol slot holds the time scale)")
    return e, i_obs, mask, core, layout.known_mask() if kmask is None else kmask, p_true


def _load_text(measurement: Path, length: int, layout: CoreLayout, *, task, stage, couples, area, units,
               sign_convention, fmt="auto"):
    """A text measurement resampled onto the ``task`` protocol's grid, in the model's units."""
    rec = read_measurement(measurement, current_unit=units, sign_convention=sign_convention, fmt=fmt)
    template = TASKS[task].template(length)
    ro = TASKS[task].readout(length, template)
    if "pos" in ro:
        raise ValueError(f"task: text input is supported for cv/ca_step/eis protocols, not {task} (use npz)")
    duration = float(rec["time"][-1])
    tau = rec["time"] / duration
    pot_template = np.interp(tau, np.asarray(template.grid.tau), np.asarray(template.potential))
    gap = float(np.max(np.abs(pot_template - rec["potential"])))
    if gap > WAVEFORM_TOLERANCE_V:
        raise ValueError(f"measurement: {measurement.name}'s potential departs from the model's {task} protocol by "
                         f"{gap * 1e3:.0f} mV (the model knows only its training waveforms; fit it on its measured "
                         "waveform with the simulator: --waveform measured)")
    e = np.interp(np.asarray(ro["tau"]), tau, rec["potential"])
    i_obs = np.interp(np.asarray(ro["tau"]), tau, rec["current_A"]) * 1e3 / area  # A -> mA per cm^2
    base = layout.base.filler()
    for k in range(couples):
        base[layout.base.index("c_ox", k)] = 1.0
    base[layout.base.index("ln_time_scale")] = math.log(duration)
    return e, i_obs, np.ones(length), layout.core(base, task, stage).astype(np.float64), layout.known_mask(), None


def _load_on_model_grid(measurement: Path, *, geometry, layout: CoreLayout, task, stage, couples, area, units,
                        sign_convention, fmt="auto"):
    """One measurement (already checked to exist by ``run_infer``) on the model's grid: ``e``,
    ``i_obs`` (model units), ``mask``, ``core``, ``kmask`` and ``p_true`` (npz only, else None)."""
    length = int(geometry["target_len"])
    if is_model_grid_npz(measurement):
        e, i_obs, mask, core, kmask, p_true = _load_npz(measurement, length, layout)
    else:
        e, i_obs, mask, core, kmask, p_true = _load_text(measurement, length, layout, task=task, stage=stage,
                                                         couples=couples, area=area, units=units,
                                                         sign_convention=sign_convention, fmt=fmt)
    if not np.all(np.isfinite(i_obs[mask >= 0.5])):
        raise ValueError(f"measurement: {measurement.name}'s observed current contains NaN or Inf")
    if int((mask >= 0.5).sum()) < 3:
        raise ValueError(f"measurement: {measurement.name} has {int((mask >= 0.5).sum())} observed point(s); at least "
                         "3 are needed")
    return e, i_obs, mask, core, kmask, p_true


def estimate_noise(currents, masks) -> float:
    """A robust noise sd (the currents' units) from the MAD of second differences of each trace's
    observed points; several traces share the largest (one noise level per inference)."""
    estimates = [float(noise_from_second_differences(np.asarray(i)[np.asarray(m) >= 0.5])) for i, m in zip(currents, masks)]
    return max(max(estimates), 1e-6)


def _check_inputs(layout: CoreLayout, task, stage, couples, area, noise, n_particles) -> None:
    if task not in layout.task_names:
        raise ValueError(f"task: {task!r} not one of {list(layout.task_names)}")
    if stage not in layout.stage_names:
        raise ValueError(f"stage: {stage!r} not one of {list(layout.stage_names)}")
    if not (isinstance(couples, int) and 1 <= couples <= layout.base.max_species):
        raise ValueError(f"couples: must be in [1, {layout.base.max_species}], got {couples}")
    if not (math.isfinite(area) and area > 0):
        raise ValueError(f"area: must be > 0 cm^2, got {area}")
    if noise is not None and not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise: must be > 0 {NOISE_UNIT} (or omitted: estimated), got {noise}")
    if n_particles is not None and not (isinstance(n_particles, int) and 4 <= n_particles <= 65536):
        raise ValueError(f"particles: must be an integer in [4, 65536], got {n_particles!r}")


def run_infer(*, model_dir, measurement, out_dir, task: str = "cv", stage: str = "intermediate", known=(),
              noise: float | None = None, engine=DEFAULT_ENGINE, method=DEFAULT_METHOD, couples: int = 1,
              area: float = 1.0, units: str | None = None, sign_convention: str = "iupac",
              n_particles: int | None = None, seed: int = 0, fmt: str = "auto") -> dict:
    """Run one inference from a file -- or from several files of the same cell on the model's
    protocol (a scan-rate series: one parameter set, ``infer_joint_posterior``) -- and write
    ``posterior_summary.json``, ``posterior_artifacts.npz``, ``posterior.nc`` (ArviZ InferenceData),
    ``posterior_marginals.png`` and
    ``posterior_predictive.png`` (one trace) or ``trace_<k>.png`` (one per trace). ``noise``: the
    observation noise sd in mA/cm^2 (None: estimated from the data); ``area`` cm^2; ``known``:
    ``NAME=VALUE`` items in physical units. Returns the summary. Raises ValueError naming the
    argument on bad input."""
    paths = [Path(m) for m in (measurement if isinstance(measurement, (list, tuple)) else [measurement])]
    if not paths:
        raise ValueError("measurement: give at least one file")
    for path in paths:
        if not path.exists():
            raise ValueError(f"measurement: {path} does not exist")
    model, normalizers, meta, geometry = load_surrogate(model_dir)
    layout = CoreLayout.from_meta(meta)
    _check_inputs(layout, task, stage, couples, area, noise, n_particles)
    loaded = [_load_on_model_grid(path, geometry=geometry, layout=layout, task=task, stage=stage, couples=couples,
                                  area=area, units=units, sign_convention=sign_convention, fmt=fmt) for path in paths]
    for path, t in zip(paths[1:], loaded[1:]):
        if not np.array_equal(t[4], loaded[0][4]):
            raise ValueError(f"measurement: {path.name}'s known_p_mask differs from {paths[0].name}'s (the traces of a "
                             "joint fit share which parameters are known)")
    overrides = parse_known(list(known), layout.base)
    for _, _, _, core, kmask, _ in loaded:
        for idx, v in overrides.items():
            core[idx] = v
            kmask[idx] = True
    if noise is None:
        noise = estimate_noise([t[1] for t in loaded], [t[2] for t in loaded])
    budget = default_inference(method) | ({"n_particles": int(n_particles)} if n_particles else {})
    cfg = config_from_budget(budget, method=method, engine=engine, obs_noise_std=float(noise))
    post = infer_joint_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                 observed_currents=[t[1] for t in loaded], applied_signals=[t[0] for t in loaded],
                                 known_p_cores=[t[3] for t in loaded], known_p_mask=loaded[0][4],
                                 obs_masks=[t[2] for t in loaded], config=cfg, seed=seed, meta=meta)
    joint = len(paths) > 1
    summary = _summary(post if joint else post.trace(0), layout, [str(p) for p in paths] if joint else paths[0],
                       noise)
    summary["model_check"] = model_check(
        [t[1][t[2] >= 0.5] for t in loaded],
        [np.asarray(post.trace(k)["predictive_mean_current"], np.float64)[t[2] >= 0.5][None] for k, t in enumerate(loaded)],
        noise=float(noise), labels=[p.name for p in paths], seed=seed)
    if joint:
        summary["kind"] = "joint"
        summary["traces"] = [{"label": p.name,
                              "time_scale_s": float(math.exp(t[3][layout.base.index("ln_time_scale")]))}
                             for p, t in zip(paths, loaded)]
    _write(Path(out_dir), summary, post, loaded, paths, task, layout)
    return summary


def _write(out: Path, summary: dict, post, loaded, paths, task: str, layout: CoreLayout) -> None:
    """The summary JSON, the artifacts npz and the plots, each written atomically."""
    joint = len(paths) > 1
    e, i_obs, mask = (np.stack([t[j] for t in loaded]) for j in range(3))
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "posterior_summary.json", json.dumps(summary, indent=1))
    squeeze = (lambda a: a[0]) if not joint else (lambda a: a)
    with atomic_path(out / "posterior_artifacts.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, schema_version=np.asarray(SUMMARY_SCHEMA_VERSION), e=squeeze(e), i_obs=squeeze(i_obs),
                     i_mask=squeeze(mask),
                     **{k: np.asarray(post[k]) for k in ("posterior_samples_raw", "posterior_weights",
                                                         "posterior_mean_raw", "posterior_std_raw")},
                     **{k: squeeze(np.asarray(post[k])) for k in ("predictive_mean_current", "predictive_std_current",
                                                                  "predictive_std_current_noise_free")})
    if joint:
        for k in range(len(paths)):
            plot_predictive(out / f"trace_{k}.png", e[k], i_obs[k], mask[k], post.trace(k), task, label=paths[k].name)
    else:
        plot_predictive(out / "posterior_predictive.png", e[0], i_obs[0], mask[0], post.trace(0), task)
    plot_marginals(out / "posterior_marginals.png", post, layout.base, loaded[0][5])
    draws = np.asarray(post["posterior_samples_raw"], np.float64)
    column = {name: list(post["parameter_names"]).index(p["slot"]) for name, p in summary["parameters"].items()}
    physical = {name: np.exp(draws[:, column[name]]) if p["slot"].startswith("ln_") else draws[:, column[name]]
                for name, p in summary["parameters"].items()}
    write_inference_data(out / "posterior.nc", physical, units={n: p["unit"] for n, p in summary["parameters"].items()},
                         weights=np.asarray(post["posterior_weights"], np.float64), index_dim="couple",
                         attrs={"engine": str(post["engine"]), "sampler": str(post["method"]),
                                "log_evidence": float(post["log_evidence"])})


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs) -> list[float]:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    cw = cw / cw[-1]
    return [float(np.interp(q, cw, x[order])) for q in qs]


def _summary(post, layout: CoreLayout, measurement, noise: float) -> dict:
    """The summary: per free base slot its physical mean, sd and 5/50/95 % quantiles; the
    diagnostics; the noise level in ``NOISE_UNIT``."""
    space = layout.base
    samples = np.asarray(post["posterior_samples_raw"], np.float64)
    w = np.asarray(post["posterior_weights"], np.float64)
    params = {}
    for i in post["free_indices"]:
        if i >= space.size:
            continue
        slot = post["parameter_names"][i]
        base = slot.split("[")[0]
        is_log = base.startswith("ln_")
        x = np.exp(samples[:, i]) if is_log else samples[:, i]
        mean, var = weighted_variance(x, w)
        unit = space.units[i].replace("ln(", "").rstrip(")") if is_log else space.units[i]
        q05, q50, q95 = _weighted_quantiles(x, w, (0.05, 0.5, 0.95))
        name = (base[3:] if is_log else base) + (slot[len(base):] if "[" in slot else "")
        params[name] = {"mean": float(mean), "sd": float(np.sqrt(var)), "q05": q05, "q50": q50,
                        "q95": q95, "unit": unit, "slot": slot}
    return {"schema_version": SUMMARY_SCHEMA_VERSION, "measurement": str(measurement), "parameters": params,
            "diagnostics": {"engine": str(post["engine"]), "method": str(post["method"]), "task": post["task"],
                            "stage": post["stage"], "ess": post["ess"], "pareto_k": post["pareto_k"],
                            "n_likelihood_evaluations": post["n_likelihood_evaluations"],
                            "log_evidence": post["log_evidence"], "obs_noise_std_mA": float(noise),
                            "noise_mA_per_cm2": float(noise),
                            "warnings": post["warnings"], "reliability_observed": post["reliability"],
                            "parameter_error_applied": post["parameter_error_prior_weight"] > 0,
                            "predictive_band_scale": post["predictive_band_scale"],
                            "reliability_heldout": post["reliability_heldout"],
                            **({"amortized": post["sampler"]["amortized"]} if "amortized" in post["sampler"] else {})},
            "units": {"current": "mA per cm^2 of electrode (the model's units)", "noise": NOISE_UNIT}}
