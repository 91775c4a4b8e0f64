"""``ecsfm infer`` on measured potential programs: several measured sweeps of one cell fitted
jointly with the simulator (``ecsfm.posterior.fit_joint``), any sweep shape, any scan rates."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .. import io, sim
from .._atomic import atomic_path, write_text
from ..data import PHYSICAL_PARAMETERS
from ..posterior import JOINT_SCHEMA_VERSION, Engine, JointConfig, Method, fit_joint, trace_from_measurement
from ..posterior import leave_one_out as loo_check
from ..posterior import write_inference_data
from .infer import SUMMARY_SCHEMA_VERSION
from .measurement import NOISE_UNIT, noise_to_amperes
from .plausibility import check_current
from .blank import subtract_blank
from .plots import plot_joint_marginals, plot_separate, plot_trace

__all__ = ["run_joint_infer", "parse_priors"]

#: --known names the joint fit takes as concentrations/cell values rather than fixed parameters
_JOINT_CELL = ("c_ox", "c_red")
#: --known names that fix a fitted parameter
_JOINT_PARAMS = tuple(n for n, p in PHYSICAL_PARAMETERS.items() if p.slot is not None and n not in _JOINT_CELL) + (
    "offset",)  # A, on every trace: a record known to carry no constant background


#: the geometries whose radius follows from the area
RADIAL = ("disc", "microdisc", "sphere", "hemisphere")
#: the area (cm^2) of an electrode of radius r (cm) is this times r^2: planar means a disc
AREA_PER_RADIUS_SQUARED = {"planar": math.pi, "thin-layer": math.pi, "rotating-disc": math.pi} | {
    name: float(sim.GEOMETRIES[name](radius=1.0).area()) for name in RADIAL}  # as the ``sim`` geometry gives it


def run_joint_infer(*, measurements, out_dir, area: float | None = None, radius: float | None = None, known=(), scan_rates=(), reference: str | None = None,
                    separate: bool = False, cycle: int = 0, per_trace=("offset",), tie_d_red: bool = True,
                    noise: float | None = None, n_particles: int | None = None, units: str | None = None,
                    sign_convention: str = "auto", temperature: float | None = None, seed: int = 0,
                    warnings=(), discrepancy_length: float | None = 1.0, area_rsd: float = 0.0,
                    conc_rsd: float = 0.0, fmt: str = "auto", force: bool = False, priors=(),
                    window: tuple[float, float] | None = None, sweeps=None, background_degree: int = 0,
                    cdl_degree: int = 0, blank=None, leave_one_out: bool = False, geometry: str = "planar",
                    electrode: dict | None = None, mechanism: str = "E", solver_h0: float | None = None) -> dict:
    """Fit one couple to several measured traces on their own potential programs
    (``ecsfm.posterior.fit_joint``, the simulator), check the fit (``model_check`` in the summary,
    also per trace fitted alone with ``separate``) and write ``posterior_summary.json``,
    ``posterior_artifacts.npz``, ``posterior.nc`` (ArviZ InferenceData), one ``trace_<k>.png`` overlay
    per trace, ``posterior_marginals.png`` and, with ``separate``, ``separate_fits.png`` (each trace fitted alone: the parameters per scan
    rate, ordered by scan rate). ``area`` cm^2, or ``radius`` cm (the area then follows from the
    geometry: a disc's pi r^2 when planar, 4 pi r^2 a sphere's, 2 pi r^2 a hemisphere's); ``noise`` the current's noise sd in mA/cm^2
    (``NOISE_UNIT``, as on the model-grid route; None: unknown, integrated out); ``known``
    ``NAME=VALUE`` items (``c_ox`` in mM is required); ``fmt`` the files' format
    (``ecsfm.io.read``); ``force`` skips the current's plausibility check
    (``ecsfm.workflows.plausibility``); ``priors`` ``NAME=LOW:HIGH`` items that replace a
    parameter's prior box (physical units, as ``known``); ``window`` (E1, E2) V and ``sweeps``
    ("all", "first" or sweep indices) the points compared
    (``ecsfm.posterior.trace_from_measurement``);
    ``background_degree`` a polynomial background per trace and ``cdl_degree`` a potential-dependent
    Cdl; ``geometry`` the electrode's (``JointConfig``: planar, sphere, hemisphere, thin-layer,
    rotating-disc) with ``electrode`` its stated quantities (``thickness`` cm; ``omega`` rad/s,
    ``viscosity`` cm^2/s); ``blank`` a blank scan's file, its current subtracted from every trace
    (``subtract_blank``); ``leave_one_out`` also fits every trace's companions and checks the
    prediction of it (``ecsfm.posterior.leave_one_out``: one more fit per trace). Returns the
    summary. ``mechanism``, ``solver_h0``: as ``JointConfig``'s. Raises ValueError naming the
    argument on bad input."""
    measurements = [Path(m) for m in measurements]
    if not measurements:
        raise ValueError("measurement: give at least one file")
    if len(scan_rates) not in (0, 1, len(measurements)):
        raise ValueError(f"scan-rate: give one value for all traces or one per measurement ({len(measurements)}), "
                         f"got {len(scan_rates)}")
    area = electrode_area(area, radius, geometry)
    cell, fixed = _split_known(known)
    traces = _read_traces(measurements, scan_rates, fmt=fmt, units=units, sign_convention=sign_convention,
                          blank=blank, cycle=cycle, window=window, sweeps=sweeps)
    if noise is not None and not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise: must be > 0 {NOISE_UNIT} (or omitted: unknown), got {noise}")
    temp = sim.DEFAULT_TEMPERATURE if temperature is None else float(temperature)
    electrode = dict(electrode or {})
    if not force:
        _check_plausible(traces, area, cell["c_ox"], temp, geometry, electrode)
    bounds = parse_priors(priors)
    cfg_kw = dict(per_trace=tuple(per_trace), tie_d_red=tie_d_red, noise=noise_to_amperes(noise, area), known=fixed,
                  bounds=bounds, background_degree=int(background_degree), cdl_degree=int(cdl_degree), geometry=geometry,
                  **{k: float(v) for k, v in electrode.items() if v is not None},
                  discrepancy_length=discrepancy_length, area_rsd=area_rsd, conc_rsd=conc_rsd, mechanism=mechanism,
                  solver_h0=solver_h0)
    if n_particles is not None:
        cfg_kw["n_particles"] = int(n_particles)
    config = JointConfig(**cfg_kw)
    t0 = time.perf_counter()
    res = fit_joint(traces, area=area, c_ox=cell["c_ox"], c_red=cell["c_red"], temperature=temp, config=config,
                    seed=seed)
    cell_kw = dict(area=area, c_ox=cell["c_ox"], c_red=cell["c_red"], temperature=temp, config=config)
    per_rate = _separate_fits(traces, seed, **cell_kw) if separate and len(traces) > 1 else None
    loo = loo_check(traces, seed=seed + 1000, **cell_kw) if leave_one_out else None
    elapsed = time.perf_counter() - t0
    out = Path(out_dir)
    summary = {
        "schema_version": SUMMARY_SCHEMA_VERSION, "kind": "joint", "joint_schema_version": JOINT_SCHEMA_VERSION,
        "engine": str(Engine.SIMULATOR), "method": str(Method.SMC), "potential_reference": reference or "as measured",
        "noise_mA_per_cm2": None if noise is None else float(noise),
        "priors_changed": {k: list(v) for k, v in bounds.items()},
        "assumptions": _assumptions(reference, area, area_rsd, cell, conc_rsd, tie_d_red, temp, noise,
                                    discrepancy_length, cycle, per_trace, bounds, fixed, window, sweeps,
                                    background_degree, blank, cdl_degree, _electrode_text(geometry, area, electrode)),
        "traces": res["traces"], "parameters": res["parameters"], "k0_bound": res["k0_bound"],
        "model_check": res["model_check"], "leave_one_out": loo, "residual_rms_A": res["residual_rms_A"],
        "known": res["known"], "fixed": res["fixed"],
        "separate_fits": per_rate, "seconds": elapsed, "n_likelihood_evaluations": res["n_likelihood_evaluations"],
        "mechanism": res["mechanism"], "log_evidence": res["log_evidence"], "log_evidence_se": res["log_evidence_se"], "sampler": res["sampler"], "config": res["config"],
        "warnings": list(warnings) + res["warnings"],
    }
    _write(out, summary, res, per_rate, reference)
    return summary


def _check_plausible(traces, area: float, c_ox: float, temp: float, geometry: str, electrode: dict) -> None:
    """``check_current`` with what the geometry adds to the currents a cell can give (sweeps only:
    a step's first current has no bound of this kind)."""
    traces = [t for t in traces if not t.is_step]
    radius = math.sqrt(area / AREA_PER_RADIUS_SQUARED[geometry]) if geometry in RADIAL else None
    if geometry in ("disc", "microdisc"):  # its steady state 4nFDCr is a sphere's of radius pi r / 4 (per area)
        radius *= math.pi / 4.0
    check_current(traces, area=area, c_ox=c_ox, temperature=temp, radius=radius,
                  **{k: v for k, v in electrode.items() if k in ("thickness", "omega", "viscosity")})


def _electrode_text(geometry: str, area: float, electrode: dict) -> str:
    """The electrode's diffusion field in words, for the assumptions."""
    if geometry in ("disc", "microdisc"):
        return (f"disc with edge diffusion, radius {math.sqrt(area / math.pi):.4g} cm (from the area; uniform surface "
                "concentration)")
    if geometry in ("sphere", "hemisphere"):
        return f"radial ({geometry}), radius {math.sqrt(area / AREA_PER_RADIUS_SQUARED[geometry]):.4g} cm (from the area)"
    if geometry == "thin-layer":
        return f"thin layer, {electrode['thickness']:.4g} cm thick (finite diffusion)"
    if geometry == "rotating-disc":
        return (f"rotating disc at {electrode['omega']:.4g} rad/s ({electrode['omega'] * 60 / (2 * math.pi):.4g} rpm), "
                f"viscosity {electrode.get('viscosity', 0.00893):.4g} cm^2/s (Levich)")
    return "planar (semi-infinite linear diffusion)"


def electrode_area(area: float | None, radius: float | None, geometry: str = "planar") -> float:
    """The electrode's area, cm^2: ``area`` as given, or from ``radius`` (cm) and the geometry
    (``AREA_PER_RADIUS_SQUARED``). Raises ValueError unless exactly one is given and positive."""
    if (area is None) == (radius is None):
        raise ValueError("area: give the electrode's area or its radius, one of them")
    if radius is not None:
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"radius: must be > 0 cm, got {radius}")
        area = AREA_PER_RADIUS_SQUARED[geometry] * radius**2
    if not (math.isfinite(area) and area > 0):
        raise ValueError(f"area: must be > 0 cm^2, got {area}")
    return area


def _separate_fits(traces, seed: int, **cell_kw) -> list[dict]:
    """Each trace fitted alone, ordered by scan rate: its parameters, model check and warnings."""
    per_rate = []
    for k, t in sorted(enumerate(traces), key=lambda kt: kt[1].scan_rate or 0.0):  # steps first
        r = fit_joint([t], seed=seed + 1 + k, **cell_kw)
        per_rate.append({"label": t.label, "scan_rate": t.scan_rate,
                         "parameters": {n: v for n, v in r["parameters"].items() if "[" not in n},
                         "model_check": r["model_check"], "warnings": r["warnings"]})
    return per_rate


def _read_traces(measurements, scan_rates, *, fmt, units, sign_convention, blank, cycle, window, sweeps) -> list:
    """The measured files as ``Trace``s: read, the blank subtracted, the cycle, window and sweeps chosen."""
    traces = []
    for k, path in enumerate(measurements):
        if not path.exists():
            raise ValueError(f"measurement: {path} does not exist")
        v = scan_rates[0] if len(scan_rates) == 1 else (scan_rates[k] if scan_rates else None)
        m = io.read(path, fmt=fmt, current_unit=units, scan_rate=v, sign_convention=sign_convention)
        if blank is not None:  # the blank's cycle is chosen with the trace's: one cycle left
            m = subtract_blank(m, io.read(blank, fmt=fmt, current_unit=units, sign_convention=sign_convention,
                                          scan_rate=v), cycle=cycle)
        traces.append(trace_from_measurement(m, cycle=None if blank is not None else cycle, label=path.name,
                                             window=window, sweeps=sweeps))
    return traces


def _write(out: Path, summary: dict, res: dict, per_rate, reference) -> None:
    """The summary JSON, the posterior samples (npz) and the plots, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "posterior_summary.json", json.dumps(summary, indent=1, default=float))
    with atomic_path(out / "posterior_artifacts.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, schema_version=np.int64(JOINT_SCHEMA_VERSION), names=np.asarray(list(res["samples"])),
                     **{f"sample_{n}": v for n, v in res["samples"].items()})
    write_inference_data(out / "posterior.nc", res["samples"], units={n: p["unit"] for n, p in res["parameters"].items()},
                         observed=res["predictive"], attrs={"engine": "simulator", "sampler": "SMC",
                                                            "log_evidence": float(res["log_evidence"])})
    for k, pred in enumerate(res["predictive"]):
        plot_trace(out / f"trace_{k}.png", pred, reference)
    plot_joint_marginals(out / "posterior_marginals.png", res["samples"], res["parameters"], res["prior_boxes"])
    if per_rate and all(r["scan_rate"] for r in per_rate):  # parameters against the scan rate
        plot_separate(out / "separate_fits.png", per_rate, res["parameters"], reference)


def _assumptions(reference, area, area_rsd, cell, conc_rsd, tie_d_red, temp, noise, length, cycle, per_trace,
                 bounds, fixed, window, sweeps, degree, blank, cdl_degree=0,
                 electrode="planar (semi-infinite linear diffusion)") -> dict:
    """Every assumption of the fit, in words (the console echoes them; the summary keeps them)."""
    def exact(rsd):
        return "(exact)" if not rsd else f"(+/- {100 * rsd:g} %, log-normal)"

    background = ("a constant offset" if not degree else f"a polynomial of degree {degree} in E") + " per trace" + \
        ("" if "cdl" in per_trace else ", one Cdl for all traces") + (", Cdl per trace" if "cdl" in per_trace else "") + \
        (f", Cdl a polynomial of degree {cdl_degree} in E" if cdl_degree else "") + \
        (", Ru per trace" if "ru" in per_trace else "") + (f", blank {Path(blank).name} subtracted" if blank else "")
    sweeps_text = "all sweeps" if sweeps in (None, "all") else ("the first sweep" if sweeps == "first" else
                                                                 "sweeps " + ",".join(str(k) for k in sweeps))
    where = f"{sweeps_text} of cycle {cycle}" + ("" if window is None else f", {min(window):g} to {max(window):g} V")
    return {"reference electrode": reference or "as measured (none stated: --reference)",
            "electrode": electrode,
            "area": f"{area:.4g} cm^2 {exact(area_rsd)}", "c_ox": f"{cell['c_ox']:g} mM {exact(conc_rsd)}",
            "c_red": f"{cell['c_red']:g} mM", "D_red": "= D_ox (tied; --free-d-red frees it)" if tie_d_red else "free",
            "T": f"{temp:g} K", "n": "1 electron",
            "noise": "unknown, one sd per trace integrated out" if noise is None else f"{noise:g} {NOISE_UNIT}",
            "model discrepancy": "none (independent residuals)" if length is None else
            f"smooth, correlation length {length:g} V (--discrepancy-length)",
            "window": where, "background": background,
            "fixed": ", ".join(f"{k} = {v:g}" for k, v in fixed.items()) or "nothing",
            "priors changed": ", ".join(f"{k} {lo:g}:{hi:g}" for k, (lo, hi) in bounds.items()) or "none"}


def parse_priors(items) -> dict:
    """``NAME=LOW:HIGH`` items (physical units: e0 V, k0 cm/s, alpha, d_ox/d_red cm^2/s, ru ohm,
    cdl F/cm^2, kappa) -> {name: (low, high)}, the prior boxes of a joint fit. Raises ValueError
    naming the item."""
    out = {}
    for item in items:
        name, sep, box = (x.strip() for x in str(item).partition("="))
        lo, colon, hi = box.partition(":")
        if not sep or not colon:
            raise ValueError(f"prior: expected NAME=LOW:HIGH, got {item!r}")
        name = name.lower()
        if name not in _JOINT_PARAMS + ("kappa",):
            raise ValueError(f"prior: unknown parameter {name!r}; allowed: {', '.join(_JOINT_PARAMS + ('kappa',))}")
        try:
            low, high = float(lo), float(hi)
        except ValueError:
            raise ValueError(f"prior: {name} = {box!r} is not LOW:HIGH numbers") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"prior: {name} needs LOW < HIGH, got {box!r}")
        if PHYSICAL_PARAMETERS[name].log and low <= 0:
            raise ValueError(f"prior: {name} is positive; LOW must be > 0, got {low:g}")
        if name == "alpha" and not (0 < low and high < 1):
            raise ValueError(f"prior: alpha's range must lie in (0, 1), got {box!r}")
        out[name] = (low, high)
    return out


def _split_known(known) -> tuple[dict, dict]:
    """``NAME=VALUE`` items -> (the cell's concentrations ``c_ox``/``c_red``, mM; fixed parameters).
    Raises ValueError on an unknown name, a non-number or a missing ``c_ox``."""
    cell, fixed = {"c_ox": None, "c_red": 0.0}, {}
    for item in known:
        if "=" not in item:
            raise ValueError(f"known: expected NAME=VALUE, got {item!r}")
        name, value = (s.strip() for s in item.split("=", 1))
        name = name.lower()
        if name not in _JOINT_CELL + _JOINT_PARAMS:  # the fittable names of PHYSICAL_PARAMETERS
            raise ValueError(f"known: unknown parameter {name!r}; allowed: {', '.join(_JOINT_CELL + _JOINT_PARAMS)}")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"known: {name} = {value!r} is not a number") from None
        (cell if name in _JOINT_CELL else fixed)[name] = v
    for name, value in cell.items():
        if value is not None and not (math.isfinite(value) and (value > 0 if name == "c_ox" else value >= 0)):
            raise ValueError(f"known: {name} must be {'> 0' if name == 'c_ox' else '>= 0'} mM, got {value}")
    if cell["c_ox"] is None:
        raise ValueError("known: give c_ox=<mM> (a voltammogram measures C sqrt(D): the bulk concentration must be "
                         "known to infer D)")
    return cell, fixed
