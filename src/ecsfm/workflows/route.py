"""One entry point for measured files: decide the route, run it, return what it wrote."""

from __future__ import annotations

import math

from pathlib import Path

from ..fm import DEFAULT_MODEL_DIR
from ..posterior import DEFAULT_ENGINE, DEFAULT_METHOD
from .infer import run_infer
from .compare import parse_compare, run_comparison
from ..posterior import MECHANISM_SLOTS, SLOW_MECHANISMS
from .infer_measured import run_joint_infer
from .measurement import Route, choose_route, is_model_grid_npz

__all__ = ["infer_files"]


def mechanism_candidates(known=(), tie_d_red: bool = True) -> list[str]:
    """The mechanisms ``--mechanism auto`` compares: every one of ``MECHANISM_SLOTS`` that the stated
    cell allows (EC and ECcat need no R in the bulk; ECcat needs D_red = D_ox), but not the
    ``SLOW_MECHANISMS`` (EC2: fitted when named)."""
    c_red = 0.0
    for item in known:
        name, _, value = str(item).partition("=")
        if name.strip() == "c_red":
            c_red = float(value)
    return [m for m in MECHANISM_SLOTS if m not in SLOW_MECHANISMS
            and not ((m in ("EC", "ECcat") and c_red > 0) or (m == "ECcat" and not tie_d_red))]


def infer_files(*, model_dir=None, measurements, out_dir, waveform: str = "auto", engine=DEFAULT_ENGINE,
                method=DEFAULT_METHOD, task: str = "cv", stage: str = "intermediate", known=(),
                noise: float | None = None, couples: int = 1, area: float | None = None, radius: float | None = None,
                units: str | None = None,
                sign_convention: str = "iupac", n_particles: int | None = None, seed: int = 0, scan_rates=(),
                reference: str | None = None, separate: bool = False, cycle: int = 0, per_trace=("offset",),
                tie_d_red: bool = True, discrepancy_length: float | None = 1.0, area_rsd: float = 0.0,
                conc_rsd: float = 0.0, fmt: str = "auto", force: bool = False, priors=(), window=None, sweeps=None,
                background_degree: int = 0, cdl_degree: int = 0, blank=None, compare=(),
                leave_one_out: bool = False, geometry: str = "planar", electrode: dict | None = None,
                mechanism: str = "E") -> tuple[Route, dict]:
    """Fit measured files on the route ``choose_route`` picks and write the results into
    ``out_dir``; returns (route, summary). ``noise`` is in mA/cm^2 on both routes. The
    model-grid route (``run_infer``) uses ``task``, ``stage``, ``couples``, ``engine``,
    ``method``; the measured route (``run_joint_infer``) the scan rates, ``cycle``, ``per_trace``
    and the discrepancy and uncertainty settings. ``model_dir``: a model folder (default: the one
    shipped in the package). ``area`` (cm^2), or ``radius`` (cm: the area follows from the
    geometry, a disc's when planar), is required unless every file is a model-grid npz
    (already per cm^2): there is no default electrode. ``fmt`` the files' format (``ecsfm.io.read``);
    ``force`` skips the current's plausibility check; ``priors`` (``NAME=LOW:HIGH``) the prior
    boxes of a measured-waveform fit; ``window``, ``sweeps``, ``background_degree``, ``cdl_degree``, ``geometry`` (with ``electrode``) and ``blank``
    (``run_joint_infer``) its points and background; ``compare`` (``KEY=V1,V2`` items) fits the
    variants and returns the comparison (``run_comparison``) instead of one summary;
    ``leave_one_out`` adds the leave-one-trace-out check; ``mechanism`` the couple's (E, EC, ECcat,
    CE), or "auto": every one that applies compared by evidence (``mechanism_candidates``). Raises
    ValueError naming the argument."""
    measurements = [Path(m) for m in measurements]
    model_dir = DEFAULT_MODEL_DIR if model_dir is None else model_dir
    route, notes = choose_route(model_dir, measurements, task=task, waveform=waveform, engine=engine, units=units,
                                scan_rates=scan_rates, fmt=fmt)
    if radius is not None and area is not None:
        raise ValueError("radius: give the area or the radius, not both")
    if radius is not None and route is not Route.MEASURED:
        area, radius = math.pi * radius**2, None  # the model grid's electrode is planar: a disc
    if area is None and radius is None and (route is Route.MEASURED or not all(is_model_grid_npz(m) for m in measurements)):
        raise ValueError("area: give the electrode's area (--area, cm^2) or its radius with the unit (--radius, e.g. "
                         "1.5mm); a measured current is divided by it and there is no default electrode")
    measured_only = {"--window": window, "--sweeps": sweeps, "--background": background_degree,
                     "--cdl-degree": cdl_degree, "--blank": blank, "--geometry": geometry != "planar",
                     "--compare": compare, "--prior": priors, "--leave-one-out": leave_one_out,
                     "--mechanism": mechanism != "E"}
    if route is not Route.MEASURED and any(measured_only.values()):
        given = ", ".join(k for k, v in measured_only.items() if v)
        raise ValueError(f"waveform: {given} apply to fits of the measured waveform (--waveform measured); the model "
                         "grid's prior and background are the surrogate's training ones")
    if route is Route.MEASURED:
        fit = dict(measurements=measurements, area=area, radius=radius, scan_rates=scan_rates, reference=reference, separate=separate,
                   cycle=cycle, per_trace=per_trace, noise=noise, n_particles=n_particles, units=units,
                   sign_convention="auto" if sign_convention == "iupac" else "us", seed=seed, warnings=notes,
                   discrepancy_length=discrepancy_length, area_rsd=area_rsd, conc_rsd=conc_rsd, fmt=fmt, force=force,
                   window=window, sweeps=sweeps, blank=blank, cdl_degree=cdl_degree, geometry=geometry,
                   electrode=electrode)
        if mechanism == "auto":
            compare = list(compare) + ["mechanism=" + ",".join(mechanism_candidates(known, tie_d_red))]
            mechanism = "E"
        fit["mechanism"] = mechanism
        if compare:
            return route, run_comparison(parse_compare(compare), out_dir=out_dir, known=known, priors=priors,
                                         tie_d_red=tie_d_red, background_degree=background_degree, **fit)
        summary = run_joint_infer(out_dir=out_dir, known=known, priors=priors, tie_d_red=tie_d_red,
                                  background_degree=background_degree, leave_one_out=leave_one_out, **fit)
        return route, summary
    summary = run_infer(model_dir=model_dir, measurement=measurements, out_dir=out_dir, task=task, stage=stage,
                        known=known, noise=noise, engine=engine, method=method, couples=couples,
                        area=1.0 if area is None else area, units=units, fmt=fmt, sign_convention=sign_convention,
                        n_particles=n_particles, seed=seed)
    return route, summary
