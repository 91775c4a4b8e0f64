"""A measured trace as a joint fit sees it: its potential program and the points it compares.

Two kinds of program are read from a measured potential: sweeps (a piecewise-linear program
through its turning points, at one scan rate) and potential steps (chronoamperometry: holds at a
few levels with jumps between them, ``STEP_JUMP_V`` or more between two samples and no hold
wandering by over ``HOLD_SPAN_V``). For steps the file's first sample is taken one sample
interval after the first jump when the file's own clock says so (its ``time_offset_s`` between 0
and twice the sampling interval, as instruments record a step), and at the jump otherwise (that
sample, where the current is unbounded, is then left out of the fit); a later jump happens at
the last sample of the level before it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..io import turning_points

__all__ = ["Trace", "trace_from_measurement", "STEP_JUMP_V", "HOLD_SPAN_V"]

#: a potential change between two samples that counts as a jump (V)
STEP_JUMP_V = 0.02
#: the most a held potential may wander (V; a measured rather than set potential is noisy)
HOLD_SPAN_V = 0.005


@dataclass(frozen=True)
class Trace:
    """One measured trace: ``vertices`` (V, the potential program's turning points, start and end
    included; for steps the held levels), ``scan_rate`` V/s (None for steps), ``potential`` (V),
    ``current`` (A, IUPAC), ``path`` the position along the program (0 at the start, 1 at the end)
    of each point (for sweeps the fraction of the potential walked, for steps of the time), a
    ``label``, ``fitted`` (bool per point: the points a fit compares; None: all) and ``holds``
    (steps only: each level's duration, s; None for sweeps). The whole program is simulated
    either way: the current inside a window depends on what came before it."""

    vertices: tuple
    scan_rate: float
    potential: np.ndarray
    current: np.ndarray
    path: np.ndarray
    label: str
    fitted: np.ndarray | None = None
    holds: tuple | None = None

    @property
    def is_step(self) -> bool:
        """Whether the program is potential steps (chronoamperometry) rather than sweeps."""
        return self.holds is not None

    @property
    def program_time(self) -> np.ndarray:
        """(N,) s since the program's start (steps only). Raises ValueError for a sweep."""
        if self.holds is None:
            raise ValueError(f"trace: {self.label} is a sweep; its position is ``path``")
        return self.path * float(sum(self.holds))

    @property
    def since_jump(self) -> np.ndarray:
        """(N,) s since the last jump before each point (steps only)."""
        t = self.program_time
        starts = np.concatenate([[0.0], np.cumsum(self.holds)[:-1]])
        k = np.clip(np.searchsorted(starts, t, side="left") - 1, 0, len(self.holds) - 1)
        return t - starts[k]

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
    a fit compares. A potential-step record (see the module's text) becomes a step trace; its
    ``scan_rate`` is not needed and ``sweeps`` do not apply. Raises ValueError when they leave
    fewer than 16 points."""
    if cycle is not None:  # select_cycle refuses a cycle the measurement lacks, one cycle or several
        m = m.select_cycle(cycle)
    steps = _step_program(m)
    if steps is not None:
        return _step_trace(m, *steps, label=label, window=window, sweeps=sweeps)
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


def _step_program(m):
    """(levels, first-sample index of each level) when the measured potential is a sequence of
    holds, else None."""
    e = np.asarray(m.potential, np.float64)
    starts = np.concatenate([[0], np.flatnonzero(np.abs(np.diff(e)) >= STEP_JUMP_V) + 1])
    ends = np.concatenate([starts[1:], [e.size]])
    if any(b - a < 2 or np.ptp(e[a:b]) > HOLD_SPAN_V for a, b in zip(starts, ends)):
        return None
    return tuple(float(np.median(e[a:b])) for a, b in zip(starts, ends)), starts


def _step_trace(m, levels, starts, *, label, window, sweeps) -> Trace:
    t = np.asarray(m.time, np.float64)
    name = label or str(m.metadata.get("source_file", "potential steps"))
    if sweeps not in (None, "all"):
        raise ValueError(f"sweeps: {name} is a potential-step record (no sweeps); choose its points with --window")
    dt = float(np.median(np.diff(t)))
    offset = float(m.metadata.get("time_offset_s", 0.0))
    offset = offset if 0.0 < offset <= 2.0 * dt else 0.0
    ends = [float(t[k - 1]) + offset for k in starts[1:]] + [float(t[-1]) + offset]
    holds = tuple(float(b - a) for a, b in zip([0.0, *ends[:-1]], ends))
    keep = np.ones(t.size, bool)
    keep[0] = offset > 0.0  # a sample at the jump itself: the current there is unbounded
    if window is not None:
        lo, hi = sorted(float(x) for x in window)
        keep &= (m.potential >= lo) & (m.potential <= hi)
    if keep.sum() < 16:
        raise ValueError(f"window: {name} keeps {int(keep.sum())} points; at least 16 are needed")
    path = (t + offset) / ends[-1]
    return Trace(tuple(levels), None, np.asarray(m.potential, np.float64), np.asarray(m.current, np.float64), path,
                 name, None if keep.all() else keep, holds)
