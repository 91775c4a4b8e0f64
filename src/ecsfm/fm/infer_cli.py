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

from .._atomic import atomic_path, write_text

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


def run_infer(*, model_dir, measurement, out_dir, task: str = "cv", stage: str = "intermediate", known=(),
              noise: float | None = None, engine: str = "simulator", method: str | None = None, couples: int = 1,
              area: float = 1.0, units: str | None = None, sign_convention: str = "iupac",
              n_particles: int | None = None, seed: int = 0) -> dict:
    """Run one inference from a file and write ``posterior_summary.json``, ``posterior_artifacts.npz``,
    ``posterior_predictive.png``, ``posterior_marginals.png``. Returns the summary."""
    from ..data import ParamSpace
    from ..data._tasks import TASKS
    from .eval_classical import load_surrogate
    from .posterior import (CEMPosteriorConfig, PosteriorInferenceConfig, SMCPosteriorConfig,
                            infer_parameter_posterior)

    measurement, out = Path(measurement), Path(out_dir)
    if not measurement.exists():
        raise ValueError(f"measurement: {measurement} does not exist")
    model, normalizers, meta, geometry = load_surrogate(model_dir)
    space = ParamSpace(int(geometry["max_species"]))
    length = int(geometry["target_len"])
    tasks, stages = meta["task_names"], meta["stage_names"]
    if task not in tasks:
        raise ValueError(f"task: {task!r} not one of {tasks}")
    if stage not in stages:
        raise ValueError(f"stage: {stage!r} not one of {stages}")
    if not (isinstance(couples, int) and 1 <= couples <= space.max_species):
        raise ValueError(f"couples: must be in [1, {space.max_species}], got {couples}")
    if not (math.isfinite(area) and area > 0):
        raise ValueError(f"area: must be > 0 cm^2, got {area}")
    p_true = None
    if measurement.suffix == ".npz":
        with np.load(measurement, allow_pickle=False) as z:
            for key in ("e", "i_obs"):
                if key not in z.files:
                    raise ValueError(f"{measurement}: missing key {key!r} (need e, i_obs; optional i_mask, "
                                     "known_p_core, known_p_mask)")
            e, i_obs = np.asarray(z["e"], np.float64), np.asarray(z["i_obs"], np.float64)
            mask = np.asarray(z["i_mask"], np.float64) if "i_mask" in z.files else np.ones_like(i_obs)
            core = np.asarray(z["known_p_core"], np.float64) if "known_p_core" in z.files else None
            kmask = np.asarray(z["known_p_mask"]).astype(bool) if "known_p_mask" in z.files else None
            p_true = np.asarray(z["p_true"], np.float64) if "p_true" in z.files else None
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
            raise ValueError(f"measurement: its potential departs from the model's {task} protocol by {gap * 1e3:.0f} mV "
                             "(the model knows only its training waveforms; see `ecsfm simulate` for the simulator)")
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
        raise ValueError("measurement: observed current contains NaN or Inf")
    for idx, v in _parse_known(list(known), space).items():
        core[idx] = v
        kmask[idx] = True
    if noise is None:
        # A robust noise estimate: the MAD of second differences of the observed current.
        d2 = np.diff(i_obs[mask >= 0.5], 2)
        noise = max(float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6)), 1e-6)
    method = method or ("smc" if engine == "simulator" else "cem")
    cfg = PosteriorInferenceConfig(
        obs_noise_std=float(noise), engine=engine, method=method,
        cem=CEMPosteriorConfig(n_particles=n_particles or 64),
        smc=SMCPosteriorConfig(n_particles=n_particles or 2048))
    post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry, observed_current=i_obs,
                                     applied_signal=e, known_p_core=core, known_p_mask=kmask, obs_mask=mask,
                                     config=cfg, seed=seed, meta=meta)
    summary = _summary(post, space, cfg, measurement, noise)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "posterior_summary.json", json.dumps(summary, indent=1))
    with atomic_path(out / "posterior_artifacts.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, schema_version=np.asarray(SUMMARY_SCHEMA_VERSION), e=e, i_obs=i_obs, i_mask=mask,
                     **{k: np.asarray(post[k]) for k in ("posterior_samples_raw", "posterior_weights",
                                                         "posterior_mean_raw", "posterior_std_raw",
                                                         "predictive_mean_current", "predictive_std_current",
                                                         "predictive_std_current_noise_free")})
    _plot_predictive(out / "posterior_predictive.png", e, i_obs, mask, post, task)
    _plot_marginals(out / "posterior_marginals.png", post, space, p_true)
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
        mean = float(w @ x)
        unit = space.units[i].replace("ln(", "").rstrip(")") if is_log else space.units[i]
        q05, q50, q95 = _weighted_quantiles(x, w, (0.05, 0.5, 0.95))
        name = (base[3:] if is_log else base) + (slot[len(base):] if "[" in slot else "")
        params[name] = {"mean": mean, "sd": float(np.sqrt(max(w @ (x - mean) ** 2, 0.0))), "q05": q05, "q50": q50,
                        "q95": q95, "unit": unit, "slot": slot}
    return {"schema_version": SUMMARY_SCHEMA_VERSION, "measurement": str(measurement), "parameters": params,
            "diagnostics": {"engine": post["engine"], "method": post["method"], "task": post["task"],
                            "stage": post["stage"], "ess": post["ess"], "pareto_k": post["pareto_k"],
                            "n_likelihood_evaluations": post["n_likelihood_evaluations"],
                            "log_evidence": post["log_evidence"], "obs_noise_std_mA": float(noise),
                            "warnings": post["warnings"], "reliability_observed": post["reliability"],
                            "reliability_heldout": post["reliability_heldout"]},
            "units": {"current": "mA per cm^2 of electrode (the model's units)"}}


def _plot_predictive(path, e, i_obs, mask, post, task) -> None:
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
    ax.set_title(f"posterior predictive ({post['engine']}, {post['method']}, ESS {post['ess']:.0f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
