"""Measured files on their way into inference: reading, the waveform check, the route decision
and the ``--known`` parser. The library decides the route; the command line only asks.

Units: a measured current is in A (IUPAC sign) when read; on the model's grid it becomes the
model's units, mA per cm^2 of electrode (``current_A * 1e3 / area``). ``--noise`` is in those
units, mA/cm^2, on every route (``noise_to_amperes`` gives the A a joint fit needs).
"""

from __future__ import annotations

import enum
import math
import re
from pathlib import Path

import numpy as np

from .. import io
from ..data import PHYSICAL_PARAMETERS, TASKS, slot_of
from ..fm import ModelCard
from ..posterior import Engine

__all__ = ["Route", "WAVEFORM_TOLERANCE_V", "NOISE_UNIT", "read_measurement", "waveform_gap", "choose_route",
           "parse_known", "noise_to_amperes", "is_model_grid_npz"]

#: Largest departure (V) of a measured potential from a model protocol that still counts as that
#: protocol: 20 mV, a few times the potential step of a typical export and well below the
#: distance between any two of the model's protocols.
WAVEFORM_TOLERANCE_V = 0.02
#: The one unit of ``--noise`` on every route.
NOISE_UNIT = "mA/cm^2"


class Route(str, enum.Enum):
    """How measured files are fitted: resampled onto the model's protocol grid (surrogate or
    simulator engine), or on each trace's own measured potential program (simulator, joint fit)."""

    MODEL_GRID = "model_grid"
    MEASURED = "measured"

    def __str__(self) -> str:
        return self.value


def is_model_grid_npz(path) -> bool:
    """Whether ``path`` is an ``.npz`` in the seed's model-grid layout (``e``, ``i_obs``: a trace
    already on the model's grid; True) or a measurement ``ecsfm import`` wrote (``time``,
    ``potential``, ``current_A``: read like any instrument file; False). False for any other
    suffix. Raises ValueError for an npz in neither layout or one that cannot be read."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
    except (OSError, ValueError, EOFError, AttributeError) as err:
        raise ValueError(f"measurement: {path} is not a readable npz file ({type(err).__name__})") from None
    if {"time", "potential", "current_A"} <= files:
        return False
    missing = ", ".join(repr(k) for k in ("e", "i_obs") if k not in files)
    if missing:
        raise ValueError(f"{path}: missing key {missing} (a model-grid trace needs e, i_obs; optional i_mask, "
                         "known_p_core, known_p_mask; or give the npz `ecsfm import` writes)")
    return True


def read_measurement(path, *, current_unit: str | None = None, sign_convention: str = "iupac",
                     scan_rate: float | None = None, fmt: str = "auto") -> dict:
    """``{"time": s, "potential": V, "current_A": A, "scan_rate": V/s or None}`` from a
    CSV/TSV/instrument text file (``ecsfm.io.read``; ``scan_rate`` V/s rebuilds the time of a file
    without a time column). Raises ValueError naming the problem."""
    if sign_convention not in ("iupac", "us"):
        raise ValueError(f"sign-convention: must be 'iupac' or 'us', got {sign_convention!r}")
    m = io.read(path, fmt=fmt, current_unit=current_unit, sign_convention=sign_convention, scan_rate=scan_rate)
    if m.n_points < 8:
        raise ValueError(f"{path}: only {m.n_points} data rows")
    return {"time": np.array(m.time), "potential": np.array(m.potential), "current_A": np.array(m.current),
            "scan_rate": m.scan_rate}


def waveform_gap(model_dir, measurement, task: str, *, units: str | None = None,
                 scan_rate: float | None = None, fmt: str = "auto") -> float:
    """Largest |measured potential - the model's ``task`` protocol| (V) over the measured trace,
    both on their relative time axes (so any ``scan_rate`` serves a file without a time column).
    Raises ValueError for an unknown task or model folder."""
    rec = read_measurement(measurement, current_unit=units, scan_rate=scan_rate, fmt=fmt)
    card = ModelCard.read(model_dir)
    if task not in TASKS:
        raise ValueError(f"task: {task!r} not one of {sorted(TASKS)}")
    template = TASKS[task].template(card.target_len)
    tau = rec["time"] / float(rec["time"][-1])
    return float(np.max(np.abs(np.interp(tau, np.asarray(template.grid.tau), np.asarray(template.potential))
                               - rec["potential"])))


def choose_route(model_dir, measurements, *, task: str, waveform: str = "auto", engine=Engine.SURROGATE,
                 units: str | None = None, scan_rates=(), fmt: str = "auto") -> tuple[Route, list[str]]:
    """The route for ``measurements`` and the notes that explain it.

    ``waveform``: ``"model"`` (the model's protocol grid), ``"measured"`` (each trace's own
    program) or ``"auto"``: several files with the simulator engine go to the measured route (a
    joint fit on any sweeps); otherwise a text file whose potential departs from the model's
    ``task`` protocol by more than ``WAVEFORM_TOLERANCE_V`` does. The surrogate knows only its
    training waveforms, so the measured route always runs the simulator (a note says so).
    ``scan_rates``: one for every file or one per file (V/s), for files without a time column.
    Raises ValueError for a missing file or a bad ``waveform``."""
    if waveform not in ("auto", "model", "measured"):
        raise ValueError(f"waveform: must be 'auto', 'model' or 'measured', got {waveform!r}")
    measurements = [Path(m) for m in measurements]
    if not measurements:
        raise ValueError("measurement: give at least one file")
    for path in measurements:
        if not path.exists():
            raise ValueError(f"measurement: {path} does not exist")
    rates = list(scan_rates) * len(measurements) if len(scan_rates) == 1 else list(scan_rates)
    engine = Engine(engine)
    route = Route.MEASURED if waveform == "measured" else Route.MODEL_GRID
    if waveform == "auto" and len(measurements) > 1 and engine is Engine.SIMULATOR:
        route = Route.MEASURED
    notes = []
    if waveform == "auto" and route is Route.MODEL_GRID:
        gaps = {m.name: waveform_gap(model_dir, m, task, units=units, fmt=fmt,
                                     scan_rate=rates[k] if k < len(rates) else None)
                for k, m in enumerate(measurements) if not is_model_grid_npz(m)}
        off = {name: gap for name, gap in gaps.items() if gap > WAVEFORM_TOLERANCE_V}
        if off:
            route = Route.MEASURED
            name, gap = max(off.items(), key=lambda kv: kv[1])
            notes.append(f"the measured potential program of {name} departs from the model's {task} protocol by "
                         f"{gap * 1e3:.0f} mV: fitted on the measured waveform(s) with the simulator engine")
    if route is Route.MEASURED and engine is Engine.SURROGATE:
        notes.append("engine: the surrogate knows only its training waveforms; the measured traces are fitted with "
                     "the simulator engine")
    return route, notes


def parse_known(items, layout) -> dict[int, float]:
    """``NAME=VALUE`` items (physical units, ``NAME[k]`` for couple k) -> {base slot: slot value}
    of the base ``layout`` (``ParamSpace``). Raises ValueError naming the item."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"known: expected NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        m = re.match(r"^([a-z_0-9]+?)(?:\[(\d+)\])?$", name.strip().lower())
        if not m or m.group(1) not in PHYSICAL_PARAMETERS or PHYSICAL_PARAMETERS[m.group(1)].slot is None:
            allowed = ", ".join(n for n, p in PHYSICAL_PARAMETERS.items() if p.slot is not None)
            raise ValueError(f"known: unknown parameter {name!r}; allowed: {allowed} (per couple: NAME[k])")
        slot, is_log = slot_of(m.group(1))
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"known: {name} = {value!r} is not a number") from None
        if not math.isfinite(v) or (is_log and v <= 0):
            raise ValueError(f"known: {name} must be {'> 0' if is_log else 'finite'}, got {value}")
        per_couple = slot not in ("ln_ru", "ln_cdl")
        idx = layout.index(slot, int(m.group(2) or 0)) if per_couple else layout.index(slot)
        out[idx] = math.log(v) if is_log else v
    return out


def noise_to_amperes(noise: float | None, area_cm2: float) -> float | None:
    """A noise sd in ``NOISE_UNIT`` (mA/cm^2) as the current's sd in A for an electrode of
    ``area_cm2``; None stays None (unknown noise)."""
    return None if noise is None else float(noise) * 1e-3 * float(area_cm2)
