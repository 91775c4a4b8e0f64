"""``ecsfm infer``: a measurement file in, a posterior summary, artifacts and plots out.

Measurement files:

* ``.npz`` (the seed's layout): ``e`` (L,) applied potential, ``i_obs`` (L,) current in the
  model's units (mA for its area), optional ``i_mask`` (L,), ``known_p_core``, ``known_p_mask``,
  ``p_true`` (for plots only);
* ``.csv``/``.txt`` with time, potential and current columns: a header names them with units
  (``time/s``, ``E (V)``, ``current/uA`` ...), or ``--units`` gives the current's unit; a CH
  Instruments text export (header block, ``Scan Rate (V/s) = ...``, then
  ``Potential/V, Current/A``) rebuilds time from the scan rate.

A measured trace must follow one of the model's protocols (task template, e.g. the cv task's
0.5 -> -0.5 -> 0.5 V sweep): its duration sets the protocol's time-scale slot and it is resampled
to the model's L points; a waveform that does not match is refused with the reason.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, save_png, write_text
from .posterior import _PER_TRACE_KEYS, _weighted_variance

__all__ = ["read_measurement", "run_infer", "PHYSICAL_NAMES", "SUMMARY_SCHEMA_VERSION"]

SUMMARY_SCHEMA_VERSION = 1
#: name on the command line -> (slot quantity, log slot?)
PHYSICAL_NAMES = {"d_ox": ("ln_d_ox", True), "d_red": ("ln_d_red", True), "c_ox": ("c_ox", False),
                  "c_red": ("c_red", False), "e0": ("e0", False), "k0": ("ln_k0", True), "alpha": ("alpha", False),
                  "ru": ("ln_ru", True), "cdl": ("ln_cdl", True)}


def read_measurement(path, *, current_unit: str | None = None, sign_convention: str = "iupac") -> dict:
    """``{"time": s, "potential": V, "current_A": A, "scan_rate": V/s or None}`` from a
    CSV/TSV/CH Instruments (or any ``ecsfm.io``) text file. Raises ValueError naming the line and the problem."""
    from .. import io

    if sign_convention not in ("iupac", "us"):
        raise ValueError(f"sign-convention: must be 'iupac' or 'us', got {sign_convention!r}")
    m = io.read(path, current_unit=current_unit, sign_convention=sign_convention)
    if m.n_points < 8:
        raise ValueError(f"{path}: only {m.n_points} data rows")
    return {"time": np.array(m.time), "potential": np.array(m.potential), "current_A": np.array(m.current),
            "scan_rate": m.scan_rate}


def waveform_gap(model_dir, measurement, task: str, *, units: str | None = None) -> float:
    """Largest |measured potential - the model's ``task`` protocol| (V) over the measured trace,
    both on their relative time axes (inf when the task has no single-sweep protocol)."""
    from ..data._tasks import TASKS
    from .train import MODEL_META_FILENAME

    rec = read_measurement(measurement, current_unit=units)
    meta_path = Path(model_dir) / MODEL_META_FILENAME
    if not meta_path.exists():
        raise ValueError(f"model: {meta_path} does not exist")
    if task not in TASKS:
        raise ValueError(f"task: {task!r} not one of {sorted(TASKS)}")
    template = TASKS[task].template(int(json.loads(meta_path.read_text())["target_len"]))
    tau = rec["time"] / float(rec["time"][-1])
    return float(np.max(np.abs(np.interp(tau, np.asarray(template.grid.tau), np.asarray(template.potential))
                               - rec["potential"])))


def _parse_known(items: list[str], space) -> dict[int, float]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"known: expected NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        m = re.match(r"^([a-z_0-9]+?)(?:\[(\d+)\])?$", name.strip().lower())
        if not m or m.group(1) not in PHYSICAL_NAMES:
            raise ValueError(f"known: unknown parameter {name!r}; allowed: {', '.join(PHYSICAL_NAMES)} "
                             "(per couple: NAME[k])")
        slot, is_log = PHYSICAL_NAMES[m.group(1)]
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"known: {name} = {value!r} is not a number") from None
        if not math.isfinite(v) or (is_log and v <= 0):
            raise ValueError(f"known: {name} must be {'> 0' if is_log else 'finite'}, got {value}")
        idx = space.index(slot) if slot in ("ln_ru", "ln_cdl") else space.index(slot, int(m.group(2) or 0))
        out[idx] = math.log(v) if is_log else v
    return out


def _load_on_model_grid(measurement: Path, *, geometry, space, tasks, stages, task, stage, couples, area, units,
                        sign_convention):
    """One measurement on the model's grid: ``e``, ``i_obs`` (model units), ``mask``, ``core``,
    ``kmask`` and ``p_true`` (npz only, else None)."""
    from ..data import read_npz
    from ..data._tasks import TASKS

    length = int(geometry["target_len"])
    if not measurement.exists():
        raise ValueError(f"measurement: {measurement} does not exist")
    p_true = None
    if measurement.suffix == ".npz":
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
        if kmask is None:
            kmask = np.zeros(core.size, bool)
            kmask[int(geometry["phys_dim_base"]):] = True
    else:
        rec = read_measurement(measurement, current_unit=units, sign_convention=sign_convention)
        template = TASKS[task].template(length)
        ro = TASKS[task].readout(length, template)
        if "pos" in ro:
            raise ValueError(f"task: CSV input is supported for cv/ca_step/eis protocols, not {task} (use npz)")
        duration = float(rec["time"][-1])
        tau = rec["time"] / duration
        pot_template = np.interp(tau, np.asarray(template.grid.tau), np.asarray(template.potential))
        gap = float(np.max(np.abs(pot_template - rec["potential"])))
        if gap > 0.02:
            raise ValueError(f"measurement: {measurement.name}'s potential departs from the model's {task} protocol by "
                             f"{gap * 1e3:.0f} mV (the model knows only its training waveforms; see `ecsfm simulate` "
                             "for the simulator)")
        e = np.interp(np.asarray(ro["tau"]), tau, rec["potential"])
        i_obs = np.interp(np.asarray(ro["tau"]), tau, rec["current_A"]) * 1e3 / area  # A -> mA per cm^2
        mask = np.ones(length)
        base = space.filler()
        for k in range(couples):
            base[space.index("c_ox", k)] = 1.0
        base[space.index("ln_time_scale")] = math.log(duration)
        core = np.concatenate([base, np.eye(len(tasks))[tasks.index(task)], np.eye(len(stages))[stages.index(stage)]])
        kmask = np.zeros(core.size, bool)
        kmask[space.size:] = True
    if not np.all(np.isfinite(i_obs[mask >= 0.5])):
        raise ValueError(f"measurement: {measurement.name}'s observed current contains NaN or Inf")
    if int((mask >= 0.5).sum()) < 3:
        raise ValueError(f"measurement: {measurement.name} has {int((mask >= 0.5).sum())} observed point(s); at least "
                         "3 are needed")
    return e, i_obs, mask, core, kmask, p_true


def run_infer(*, model_dir, measurement, out_dir, task: str = "cv", stage: str = "intermediate", known=(),
              noise: float | None = None, engine: str = "simulator", method: str | None = None, couples: int = 1,
              area: float = 1.0, units: str | None = None, sign_convention: str = "iupac",
              n_particles: int | None = None, seed: int = 0) -> dict:
    """Run one inference from a file -- or from several files of the same cell on the model's
    protocol (a scan-rate series: one parameter set, ``ecsfm.fm.posterior.infer_joint_posterior``)
    -- and write ``posterior_summary.json``, ``posterior_artifacts.npz``, ``posterior_marginals.png``
    and ``posterior_predictive.png`` (one trace) or ``trace_<k>.png`` (one per trace). Returns the
    summary."""
    from ..data import ParamSpace
    from .eval_classical import load_surrogate
    from .posterior import (CEMPosteriorConfig, PosteriorInferenceConfig, SMCPosteriorConfig,
                            infer_joint_posterior)

    paths = [Path(m) for m in (measurement if isinstance(measurement, (list, tuple)) else [measurement])]
    if not paths:
        raise ValueError("measurement: give at least one file")
    out = Path(out_dir)
    for path in paths:
        if not path.exists():
            raise ValueError(f"measurement: {path} does not exist")
    model, normalizers, meta, geometry = load_surrogate(model_dir)
    space = ParamSpace(int(geometry["max_species"]))
    tasks, stages = meta["task_names"], meta["stage_names"]
    if task not in tasks:
        raise ValueError(f"task: {task!r} not one of {tasks}")
    if stage not in stages:
        raise ValueError(f"stage: {stage!r} not one of {stages}")
    if not (isinstance(couples, int) and 1 <= couples <= space.max_species):
        raise ValueError(f"couples: must be in [1, {space.max_species}], got {couples}")
    if not (math.isfinite(area) and area > 0):
        raise ValueError(f"area: must be > 0 cm^2, got {area}")
    loaded = [_load_on_model_grid(path, geometry=geometry, space=space, tasks=tasks, stages=stages, task=task,
                                  stage=stage, couples=couples, area=area, units=units,
                                  sign_convention=sign_convention) for path in paths]
    if noise is not None and not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise: must be > 0 mA/cm^2 (or omitted: estimated), got {noise}")
    if n_particles is not None and not (isinstance(n_particles, int) and 4 <= n_particles <= 65536):
        raise ValueError(f"particles: must be an integer in [4, 65536], got {n_particles!r}")
    for path, t in zip(paths[1:], loaded[1:]):
        if not np.array_equal(t[4], loaded[0][4]):
            raise ValueError(f"measurement: {path.name}'s known_p_mask differs from {paths[0].name}'s (the traces of a "
                             "joint fit share which parameters are known)")
    overrides = _parse_known(list(known), space)
    for _, _, _, core, kmask, _ in loaded:
        for idx, v in overrides.items():
            core[idx] = v
            kmask[idx] = True
    if noise is None:
        # A robust noise estimate per trace: the MAD of second differences of the observed
        # current; several traces share the largest (one noise level per inference).
        estimates = []
        for _, i_obs, mask, _, _, _ in loaded:
            d2 = np.diff(i_obs[mask >= 0.5], 2)
            estimates.append(float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6)))
        noise = max(max(estimates), 1e-6)
    method = method or ("smc" if engine == "simulator" else "cem")
    cfg = PosteriorInferenceConfig(
        obs_noise_std=float(noise), engine=engine, method=method,
        cem=CEMPosteriorConfig(n_particles=n_particles or 64),
        smc=SMCPosteriorConfig(n_particles=n_particles or 2048))
    post = infer_joint_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                 observed_currents=[t[1] for t in loaded], applied_signals=[t[0] for t in loaded],
                                 known_p_cores=[t[3] for t in loaded], known_p_mask=loaded[0][4],
                                 obs_masks=[t[2] for t in loaded], config=cfg, seed=seed, meta=meta)
    joint = len(paths) > 1
    trace_view = [{**post, **{key: post[key][k] for key in _PER_TRACE_KEYS}} for k in range(len(paths))]
    summary = _summary(post if joint else trace_view[0], space, cfg,
                       [str(p) for p in paths] if joint else paths[0], noise)
    if joint:
        summary["kind"] = "joint"
        summary["traces"] = [{"label": p.name, "time_scale_s": float(math.exp(t[3][space.index("ln_time_scale")]))}
                             for p, t in zip(paths, loaded)]
    e, i_obs, mask = (np.stack([t[j] for t in loaded]) for j in range(3))
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "posterior_summary.json", json.dumps(summary, indent=1))
    with atomic_path(out / "posterior_artifacts.npz") as tmp:
        with open(tmp, "wb") as f:
            squeeze = (lambda a: a[0]) if not joint else (lambda a: a)
            np.savez(f, schema_version=np.asarray(SUMMARY_SCHEMA_VERSION), e=squeeze(e), i_obs=squeeze(i_obs),
                     i_mask=squeeze(mask),
                     **{k: np.asarray(post[k]) for k in ("posterior_samples_raw", "posterior_weights",
                                                         "posterior_mean_raw", "posterior_std_raw")},
                     **{k: squeeze(np.asarray(post[k])) for k in ("predictive_mean_current", "predictive_std_current",
                                                                  "predictive_std_current_noise_free")})
    if joint:
        for k, view in enumerate(trace_view):
            _plot_predictive(out / f"trace_{k}.png", e[k], i_obs[k], mask[k], view, task, label=paths[k].name)
    else:
        _plot_predictive(out / "posterior_predictive.png", e[0], i_obs[0], mask[0], trace_view[0], task)
    _plot_marginals(out / "posterior_marginals.png", post, space, loaded[0][5])
    return summary


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs) -> list[float]:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    cw = cw / cw[-1]
    return [float(np.interp(q, cw, x[order])) for q in qs]


def _summary(post: dict, space, cfg, measurement, noise) -> dict:
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
        mean, var = _weighted_variance(x, w)
        unit = space.units[i].replace("ln(", "").rstrip(")") if is_log else space.units[i]
        q05, q50, q95 = _weighted_quantiles(x, w, (0.05, 0.5, 0.95))
        name = (base[3:] if is_log else base) + (slot[len(base):] if "[" in slot else "")
        params[name] = {"mean": float(mean), "sd": float(np.sqrt(var)), "q05": q05, "q50": q50,
                        "q95": q95, "unit": unit, "slot": slot}
    return {"schema_version": SUMMARY_SCHEMA_VERSION, "measurement": str(measurement), "parameters": params,
            "diagnostics": {"engine": post["engine"], "method": post["method"], "task": post["task"],
                            "stage": post["stage"], "ess": post["ess"], "pareto_k": post["pareto_k"],
                            "n_likelihood_evaluations": post["n_likelihood_evaluations"],
                            "log_evidence": post["log_evidence"], "obs_noise_std_mA": float(noise),
                            "warnings": post["warnings"], "reliability_observed": post["reliability"],
                            "parameter_error_applied": post["parameter_error_prior_weight"] > 0,
                            "predictive_band_scale": post["predictive_band_scale"],
                            "reliability_heldout": post["reliability_heldout"]},
            "units": {"current": "mA per cm^2 of electrode (the model's units)"}}


def _plot_predictive(path, e, i_obs, mask, post, task, label: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = mask >= 0.5
    voltammetric = task in ("cv", "cv_multispecies", "swv", "dpv")
    x = e if voltammetric else np.arange(e.size)
    m = np.asarray(post["predictive_mean_current"])
    s = np.asarray(post["predictive_std_current"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(x, m, color="tab:blue", lw=1.2, label="posterior predictive mean")
    if voltammetric:  # a potential axis folds back on itself: draw the band as lines
        ax.plot(x, m - 2 * s, color="tab:blue", lw=0.6, ls=":", label="+-2 sd")
        ax.plot(x, m + 2 * s, color="tab:blue", lw=0.6, ls=":")
    else:
        ax.fill_between(x, m - 2 * s, m + 2 * s, alpha=0.25, label="+-2 sd")
    ax.plot(x[sel], i_obs[sel], "k.", ms=2.5, label="observed")
    if (~sel).any():
        ax.plot(x[~sel], i_obs[~sel], ".", color="gray", ms=2, alpha=0.4, label="held out")
    ax.set_xlabel("E (V)" if voltammetric else "sample")
    ax.set_ylabel("i (mA/cm^2)")
    ax.set_title((f"{label}: " if label else "")
                 + f"posterior predictive ({post['engine']}, {post['method']}, ESS {post['ess']:.0f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=130)
    plt.close(fig)


def _plot_marginals(path, post, space, p_true) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    free = [i for i in post["free_indices"] if i < space.size][:9]
    samples = np.asarray(post["posterior_samples_raw"], np.float64)
    w = np.asarray(post["posterior_weights"], np.float64)
    k = len(free)
    fig, axes = plt.subplots(k, k, figsize=(1.6 * k + 1, 1.6 * k + 1), squeeze=False)
    for a in range(k):
        for b in range(k):
            ax = axes[a, b]
            ax.tick_params(labelsize=5)
            if b > a:
                ax.axis("off")
                continue
            xa, xb = samples[:, free[a]], samples[:, free[b]]
            if a == b:
                ax.hist(xa, bins=30, weights=w, color="tab:blue", alpha=0.7)
                if p_true is not None:
                    ax.axvline(p_true[free[a]], color="k", ls="--", lw=1)
            else:
                ax.scatter(xb, xa, s=4 + 200 * w / max(w.max(), 1e-12), alpha=0.4, color="tab:blue", lw=0)
                if p_true is not None:
                    ax.plot(p_true[free[b]], p_true[free[a]], "k+", ms=8)
            if a == k - 1:
                ax.set_xlabel(post["parameter_names"][free[b]], fontsize=6)
            if b == 0:
                ax.set_ylabel(post["parameter_names"][free[a]], fontsize=6)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)


# =================================================================================================
# Joint inference on measured potential programs (several traces, simulator engine)

#: --known names the joint fit takes as concentrations/cell values rather than fixed parameters
_JOINT_CELL = ("c_ox", "c_red")
_JOINT_PARAMS = ("e0", "k0", "alpha", "d_ox", "d_red", "ru", "cdl")


def run_joint_infer(*, measurements, out_dir, area: float, known=(), scan_rates=(), reference: str | None = None,
                    separate: bool = False, cycle: int = 0, per_trace=("offset",), tie_d_red: bool = True,
                    noise: float | None = None, n_particles: int | None = None, units: str | None = None,
                    sign_convention: str = "auto", temperature: float | None = None, seed: int = 0,
                    warnings=(), discrepancy_length: float | None = 1.0, area_rsd: float = 0.0,
                    conc_rsd: float = 0.0) -> dict:
    """Fit one couple to several measured traces (``ecsfm.fm.joint``) and write
    ``posterior_summary.json``, ``posterior_artifacts.npz``, one ``trace_<k>.png`` overlay per trace,
    ``posterior_marginals.png`` and, with ``separate``, ``separate_fits.png`` (each trace fitted
    alone: the parameters per scan rate). Returns the summary."""
    import time

    from .. import io, sim
    from .joint import JOINT_SCHEMA_VERSION, JointConfig, fit_joint, trace_from_measurement

    measurements = [Path(m) for m in measurements]
    if not measurements:
        raise ValueError("measurement: give at least one file")
    if len(scan_rates) not in (0, 1, len(measurements)):
        raise ValueError(f"scan-rate: give one value for all traces or one per measurement ({len(measurements)}), "
                         f"got {len(scan_rates)}")
    if not (math.isfinite(area) and area > 0):
        raise ValueError(f"area: must be > 0 cm^2, got {area}")
    cell, fixed = {"c_ox": None, "c_red": 0.0}, {}
    for item in known:
        if "=" not in item:
            raise ValueError(f"known: expected NAME=VALUE, got {item!r}")
        name, value = (s.strip() for s in item.split("=", 1))
        name = name.lower()
        if name not in _JOINT_CELL + _JOINT_PARAMS:
            raise ValueError(f"known: unknown parameter {name!r}; allowed: {', '.join(_JOINT_CELL + _JOINT_PARAMS)}")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"known: {name} = {value!r} is not a number") from None
        (cell if name in _JOINT_CELL else fixed)[name] = v
    if cell["c_ox"] is None:
        raise ValueError("known: give c_ox=<mM> (a voltammogram measures C sqrt(D): the bulk concentration must be "
                         "known to infer D)")
    traces = []
    for k, path in enumerate(measurements):
        if not path.exists():
            raise ValueError(f"measurement: {path} does not exist")
        v = scan_rates[0] if len(scan_rates) == 1 else (scan_rates[k] if scan_rates else None)
        m = io.read(path, current_unit=units, scan_rate=v, sign_convention=sign_convention)
        traces.append(trace_from_measurement(m, cycle=cycle, label=path.name))
    cfg_kw = dict(per_trace=tuple(per_trace), tie_d_red=tie_d_red, noise=noise, known=fixed,
                  discrepancy_length=discrepancy_length, area_rsd=area_rsd, conc_rsd=conc_rsd)
    if n_particles is not None:
        cfg_kw["n_particles"] = int(n_particles)
    config = JointConfig(**cfg_kw)
    temp = sim.DEFAULT_TEMPERATURE if temperature is None else float(temperature)
    t0 = time.perf_counter()
    res = fit_joint(traces, area=area, c_ox=cell["c_ox"], c_red=cell["c_red"], temperature=temp, config=config,
                    seed=seed)
    elapsed = time.perf_counter() - t0
    per_rate = None
    if separate and len(traces) > 1:
        per_rate = []
        for k, t in enumerate(traces):
            r = fit_joint([t], area=area, c_ox=cell["c_ox"], c_red=cell["c_red"], temperature=temp, config=config,
                          seed=seed + 1 + k)
            per_rate.append({"label": t.label, "scan_rate": t.scan_rate,
                             "parameters": {n: v for n, v in r["parameters"].items() if "[" not in n}})
    out = Path(out_dir)
    summary = {
        "schema_version": SUMMARY_SCHEMA_VERSION, "kind": "joint", "joint_schema_version": JOINT_SCHEMA_VERSION,
        "engine": "simulator", "method": "smc", "potential_reference": reference or "as measured",
        "traces": res["traces"], "parameters": res["parameters"], "k0_bound": res["k0_bound"],
        "residual_rms_A": res["residual_rms_A"], "known": res["known"], "fixed": res["fixed"],
        "separate_fits": per_rate, "seconds": elapsed, "n_likelihood_evaluations": res["n_likelihood_evaluations"],
        "log_evidence": res["log_evidence"], "sampler": res["sampler"], "config": res["config"],
        "warnings": list(warnings) + res["warnings"],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "posterior_summary.json", json.dumps(summary, indent=1, default=float))
    with atomic_path(out / "posterior_artifacts.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, schema_version=np.int64(JOINT_SCHEMA_VERSION), names=np.asarray(list(res["samples"])),
                     **{f"sample_{n}": v for n, v in res["samples"].items()})
    for k, pred in enumerate(res["predictive"]):
        _plot_trace(out / f"trace_{k}.png", pred, reference)
    _plot_joint_marginals(out / "posterior_marginals.png", res["samples"], res["parameters"])
    if per_rate:
        _plot_separate(out / "separate_fits.png", per_rate, res["parameters"], reference)
    return summary


def _save(fig, path) -> None:
    import matplotlib.pyplot as plt

    save_png(fig, path, dpi=110)
    plt.close(fig)


def _plot_trace(path, pred: dict, reference) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ar) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    e = pred["potential"]
    ax.plot(e, pred["observed"] * 1e6, color="k", lw=0.8, label="measured")
    ax.plot(e, pred["mean"] * 1e6, color="tab:red", lw=1.0, label="posterior predictive mean")
    ax.fill_between(e, pred["q025"] * 1e6, pred["q975"] * 1e6, color="tab:red", alpha=0.3, lw=0,
                    label="95 % band (parameter uncertainty)")
    ax.set_ylabel("current (µA, oxidation +)")
    ax.set_title(f"{pred['label']}: {pred['scan_rate']:g} V/s", fontsize=9)
    ax.legend(fontsize=7)
    ar.plot(e, (pred["observed"] - pred["mean"]) * 1e6, color="k", lw=0.6)
    ar.axhline(0, color="tab:red", lw=0.8)
    ar.set_ylabel("residual (µA)")
    ar.set_xlabel(f"E (V vs {reference})" if reference else "E (V)")
    fig.tight_layout()
    _save(fig, path)


def _plot_joint_marginals(path, samples: dict, params: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in samples if "[" not in n]
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.4), squeeze=False)
    for ax, n in zip(axes[0], names):
        ax.hist(samples[n], bins=40, color="tab:blue", alpha=0.8)
        ax.axvline(params[n]["q025"], color="k", ls=":", lw=0.8)
        ax.axvline(params[n]["q975"], color="k", ls=":", lw=0.8)
        ax.set_xlabel(f"{n} ({params[n]['unit']})", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    _save(fig, path)


def _plot_separate(path, per_rate: list, joint: dict, reference) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("e0", "d_ox", "k0", "ru") if n in per_rate[0]["parameters"]]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    v = np.asarray([r["scan_rate"] for r in per_rate])
    for ax, n in zip(axes[0], names):
        p = [r["parameters"][n] for r in per_rate]
        mid = np.asarray([q["q50"] for q in p])
        err = np.asarray([[q["q50"] - q["q025"] for q in p], [q["q975"] - q["q50"] for q in p]])
        ax.errorbar(v, mid, yerr=err, fmt="o", color="tab:blue", ms=4, capsize=2, label="each trace alone")
        if n in joint:
            ax.axhspan(joint[n]["q025"], joint[n]["q975"], color="tab:red", alpha=0.25, label="joint 95 %")
            ax.axhline(joint[n]["q50"], color="tab:red", lw=1)
        ax.set_xscale("log")
        if n in ("d_ox", "k0", "ru"):
            ax.set_yscale("log")
        unit = per_rate[0]["parameters"][n]["unit"]
        ax.set_ylabel(f"{n} ({unit}{', vs ' + reference if n == 'e0' and reference else ''})", fontsize=8)
        ax.set_xlabel("scan rate (V/s)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
