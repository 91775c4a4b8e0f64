"""Writing simulation results: CSV with units in the header, and plots a person wants to see.

Both write atomically. Plotting is kept apart from computing; matplotlib is imported lazily
with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
import os

import numpy as np
from matplotlib.figure import Figure

from .. import __version__
from .._atomic import atomic_path, write_text
from ._result import SimulationResult
from ._pulse import sampled_currents
from ._waveforms import Waveform

__all__ = ["result_table", "table_csv", "write_csv", "plot_result", "write_impedance_csv", "plot_impedance"]

CSV_SCHEMA_VERSION = 2  # 2: the column names on the first line, the notes after them


def result_table(waveform: Waveform, result: SimulationResult) -> tuple[list[str], np.ndarray]:
    """The main table of a result: (column names with units, values (rows, columns)).

    Sampled techniques (square wave, differential pulse, staircase) give one row per sample;
    continuous ones one row per time point.
    """
    sampled = sampled_currents(waveform, result.current)
    if waveform.kind in ("swv", "dpv"):
        base = np.asarray(waveform.params["base_potential"])
        names = ["base_potential_V"] + [f"{k}_current_A" for k in sampled]
        cols = [base] + [np.asarray(v) for v in sampled.values()]
        return names, np.stack(cols, 1)
    if waveform.kind == "staircase_cv":
        idx = np.asarray(dict(waveform.sampling)["sampled"])
        names = ["time_s", "potential_V", "current_A"]
        cols = [np.asarray(result.time)[idx], np.asarray(result.potential)[idx], np.asarray(sampled["sampled"])]
        return names, np.stack(cols, 1)
    names = ["time_s", "potential_V", "current_A", "interface_potential_V", "charging_current_A"]
    cols = [result.time, result.potential, result.current, result.interface_potential, result.charging_current]
    return names, np.stack([np.asarray(c) for c in cols], 1)


def _notes(meta: dict) -> list[str]:
    lines = [f"ecsfm {__version__} simulation (csv schema {CSV_SCHEMA_VERSION})",
             "units: V, s, A (IUPAC: oxidation current positive), cm, cm2, mM, ohm, F/cm2, K"]
    return lines + [f"{k} = {v}" for k, v in meta.items()]


def table_csv(names, values, notes=()) -> str:
    """CSV text: the column names on the first line, then each note as a ``# `` comment line, then
    the rows (``%.9g``). Names first, so ``numpy.genfromtxt(f, delimiter=",", names=True)`` and
    ``pandas.read_csv(f, comment="#")`` both read the columns by name, and so does ``ecsfm.io.read``."""
    buf = io.StringIO()
    buf.write(",".join(names) + "\n")
    buf.write("".join(f"# {line}\n" for line in notes))
    np.savetxt(buf, np.asarray(values), delimiter=",", comments="", fmt="%.9g")
    return buf.getvalue()


def write_csv(path: str | os.PathLike, waveform: Waveform, result: SimulationResult, meta: dict) -> None:
    """Write the result table with a commented header of settings and units."""
    names, values = result_table(waveform, result)
    write_text(path, table_csv(names, values, _notes(meta)))


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format=os.path.splitext(str(path))[1][1:] or "png")


def plot_result(path: str | os.PathLike, waveform: Waveform, result: SimulationResult, title: str = "") -> None:
    """A two-panel figure: the technique's natural plot, and potential and current against time."""
    t = np.asarray(result.time)
    e = np.asarray(result.potential)
    i_ua = np.asarray(result.current) * 1e6
    fig = Figure(figsize=(11, 4.2))
    (ax0, ax1) = fig.subplots(1, 2)
    kind = waveform.kind
    if kind in ("swv", "dpv"):
        sampled = {k: np.asarray(v) * 1e6 for k, v in sampled_currents(waveform, result.current).items()}
        base = np.asarray(waveform.params["base_potential"])
        for name, style in zip(sampled, ("--", ":", "-")):
            ax0.plot(base, sampled[name], style, label=name, lw=2 if name == "difference" else 1.2)
        ax0.set_xlabel("base potential / V")
        ax0.legend()
    elif kind in ("ca", "double_step"):
        ax0.plot(t[1:], i_ua[1:])
        ax0.set_xscale("log")
        ax0.set_xlabel("time / s (log)")
    elif kind == "staircase_cv":
        idx = np.asarray(dict(waveform.sampling)["sampled"])
        ax0.plot(e[idx], i_ua[idx])
        ax0.set_xlabel("potential / V")
    else:
        ax0.plot(e, i_ua)
        ax0.set_xlabel("applied potential / V")
    ax0.set_ylabel("current / uA (oxidation +)")
    ax0.axhline(0, color="0.7", lw=0.6)
    ax0.set_title(title or kind)
    ax1.plot(t, i_ua, color="C0", lw=1)
    ax1.set_xlabel("time / s")
    ax1.set_ylabel("current / uA", color="C0")
    ax2 = ax1.twinx()
    ax2.plot(t, e, color="C1", lw=1)
    ax2.set_ylabel("applied potential / V", color="C1")
    ax1.set_title("time course")
    fig.tight_layout()
    _save(fig, path)


def write_impedance_csv(path, frequency, z, meta: dict) -> None:
    f = np.asarray(frequency)
    z = np.asarray(z)
    values = np.stack([f, z.real, z.imag, np.abs(z), np.degrees(np.angle(z))], 1)
    names = ("frequency_Hz", "z_real_ohm", "z_imag_ohm", "z_abs_ohm", "phase_deg")
    write_text(path, table_csv(names, values, _notes(meta)))


def plot_impedance(path, frequency, z, title: str = "impedance") -> None:
    """Nyquist (-Z'' against Z', equal axes) and Bode plots."""
    f = np.asarray(frequency)
    z = np.asarray(z)
    fig = Figure(figsize=(11, 4.2))
    (ax0, ax1) = fig.subplots(1, 2)
    ax0.plot(z.real, -z.imag, "o-", ms=3)
    ax0.set_xlabel("Z' / ohm")
    ax0.set_ylabel("-Z'' / ohm")
    ax0.set_aspect("equal", adjustable="datalim")
    ax0.set_title(f"{title}: Nyquist")
    ax1.loglog(f, np.abs(z), color="C0")
    ax1.set_xlabel("frequency / Hz")
    ax1.set_ylabel("|Z| / ohm", color="C0")
    ax2 = ax1.twinx()
    ax2.semilogx(f, -np.degrees(np.angle(z)), color="C1")
    ax2.set_ylabel("-phase / deg", color="C1")
    ax1.set_title("Bode")
    fig.tight_layout()
    _save(fig, path)
