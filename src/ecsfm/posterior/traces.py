"""A measured sweep as a joint fit sees it: its potential program and the points it compares."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..io import turning_points

__all__ = ["Trace", "trace_from_measurement"]


@dataclass(frozen=True)
class Trace:
    """One measured sweep: ``vertices`` (V, the potential program's turning points, start and end
    included), ``scan_rate`` V/s, ``potential`` (V), ``current`` (A, IUPAC), ``path`` the position
    along the program (0 at the start, 1 at the end) of each point, a ``label``, and ``fitted``
    (bool per point: the points a fit compares; None: all). The whole program is simulated
    either way: the current inside a window depends on what came before it."""

    vertices: tuple
    scan_rate: float
    potential: np.ndarray
    current: np.ndarray
    path: np.ndarray
    label: str
    fitted: np.ndarray | None = None

    @property
    def fitted_index(self) -> np.ndarray:
        """Indices of the points a fit compares (all when ``fitted`` is None)."""
        return np.arange(self.current.size) if self.fitted is None else np.flatnonzero(self.fitted)


def trace_from_measurement(m, *, cycle: int | None = 0, scan_rate: float | None = None, label: str | None = None,
                           window: tuple[float, float] | None = None, sweeps=None) -> Trace:
    """A ``Trace`` from an ``ecsfm.io.Measurement`` (one cycle by default; ``cycle=None`` keeps
    every point). The potential program is rebuilt from the measured potential's turning points.
    ``window`` (E1, E2) V and ``sweeps`` (None or "all": every sweep; "first"; or a sequence of
    0-based sweep indices, a sweep running from one turning point to the next) choose the points
    a fit compares. Raises ValueError when they leave fewer than 16 points."""
    if cycle is not None:  # select_cycle refuses a cycle the measurement lacks, one cycle or several
        m = m.select_cycle(cycle)
    v = scan_rate if scan_rate is not None else m.scan_rate
    if v is None or not (math.isfinite(v) and v > 0):
        raise ValueError(f"scan_rate: {m.metadata.get('source_file', 'trace')} has no scan rate; give one (V/s)")
    e = np.asarray(m.potential, np.float64)
    turns, _ = turning_points(e)
    idx = [0, *[int(k) for k in turns if 0 < k < e.size - 1], e.size - 1]
    vertices = tuple(float(e[k]) for k in idx)
    if len(vertices) < 2 or max(vertices) - min(vertices) < 0.05:
        raise ValueError(f"trace: the potential spans {1e3 * (e.max() - e.min()):.0f} mV; a sweep of at least 50 mV "
                         "is needed")
    steps = np.abs(np.diff(e))
    walked = np.concatenate([[0.0], np.cumsum(steps)])
    path = walked / walked[-1]
    name = label or str(m.metadata.get("source_file", f"{v:g} V/s"))
    fitted = _fitted_points(e, idx, window, sweeps, name)
    return Trace(vertices, float(v), e, np.asarray(m.current, np.float64), path, name, fitted)


def _fitted_points(e: np.ndarray, idx: list[int], window, sweeps, name: str) -> np.ndarray | None:
    if window is None and sweeps in (None, "all"):
        return None
    keep = np.ones(e.size, bool)
    if window is not None:
        lo, hi = sorted(float(x) for x in window)
        keep &= (e >= lo) & (e <= hi)
    if sweeps not in (None, "all"):
        chosen = [0] if sweeps == "first" else [int(k) for k in sweeps]
        n_sweeps = len(idx) - 1
        bad = [k for k in chosen if not 0 <= k < n_sweeps]
        if bad:
            raise ValueError(f"sweeps: {name} has sweeps 0..{n_sweeps - 1}, not {bad}")
        in_sweep = np.zeros(e.size, bool)
        for k in chosen:
            in_sweep[idx[k]: idx[k + 1] + 1] = True
        keep &= in_sweep
    if keep.sum() < 16:
        raise ValueError(f"window: {name} keeps {int(keep.sum())} points inside the window and sweeps chosen; at "
                         "least 16 are needed")
    return keep
