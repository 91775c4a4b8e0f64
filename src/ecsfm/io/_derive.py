"""What a reader derives when a file does not state it: sweep reversals, cycles, time from the
scan rate, the scan rate from a time column or a file name, and the loop orientation that tells
the current's sign convention."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np

__all__ = [
    "estimate_scan_rate",
    "loop_orientation",
    "rebuild_time",
    "scan_rate_from_filename",
    "split_cycles",
    "turning_points",
]

#: A reversal counts once the potential has come back by this fraction of the trace's potential
#: range: far above instrument noise (~0.1 mV on a window of 0.1 V or more) and far below any
#: real CV vertex-to-vertex excursion, so noisy measured potentials give no false reversals.
REVERSAL_FRACTION = 0.05


def turning_points(potential: np.ndarray) -> tuple[list[int], int]:
    """Indices of the sweep's vertices (potential extrema where the sweep reverses) and the
    initial direction (+1 positive-going, -1 negative-going, 0 if the potential never moves)."""
    e = np.asarray(potential, np.float64)
    span = float(e.max() - e.min()) if e.size else 0.0
    if span <= 0:
        return [], 0
    h = REVERSAL_FRACTION * span
    moved = np.flatnonzero(np.abs(e - e[0]) > h)
    if not moved.size:
        return [], 0
    d0 = 1 if e[moved[0]] > e[0] else -1
    d, ext, turns = d0, 0, []
    for k in range(1, e.size):
        if d * (e[k] - e[ext]) > 0:
            ext = k
        elif d * (e[ext] - e[k]) > h:
            turns.append(ext)
            d, ext = -d, k
    return turns, d0


def _step(e: np.ndarray) -> float:
    de = np.abs(np.diff(e))
    de = de[de > 0]
    return float(np.median(de)) if de.size else 0.0


def split_cycles(potential: np.ndarray) -> np.ndarray:
    """0-based cycle index (N,) of each point from the potential alone.

    A cycle starts at the first point; after two vertices it ends when the potential, sweeping
    again in the initial direction, goes past the starting potential by more than half a
    potential step (so a cycle 0.2 -> -0.6 -> 0.2 V keeps both 0.2 V ends). If it turns again
    before getting there, the third vertex ends the cycle. A last cycle of fewer than three
    points is merged into the one before (a stray sample, not a cycle).
    """
    e = np.asarray(potential, np.float64)
    cycle = np.zeros(e.size, np.int64)
    turns, d0 = turning_points(e)
    if len(turns) < 2:
        return cycle
    tol = 0.5 * _step(e)
    e_start, start, k = e[0], 0, 0
    while True:
        later = [t for t in turns if t > start]
        if len(later) < 2:
            break
        second = later[1]
        stop = later[2] if len(later) > 2 else e.size - 1
        past = np.flatnonzero(d0 * (e[second + 1: stop + 1] - e_start) > tol)
        if past.size:
            boundary = second + 1 + int(past[0])
        elif len(later) > 2:
            boundary = stop + 1
        else:
            break
        if boundary >= e.size:
            break
        k += 1
        cycle[boundary:] = k
        start = boundary
    if k and np.count_nonzero(cycle == k) < 3:
        cycle[cycle == k] = k - 1
    return cycle


def rebuild_time(potential: np.ndarray, scan_rate: float) -> tuple[np.ndarray, int | None]:
    """Time (N,) s of a constant-rate sweep sampled once per potential step:
    ``t = cumsum(|dE|) / v`` from 0. Returns ``(time, k)``, with ``k`` the first point whose
    potential repeats the one before (time cannot be rebuilt there), else None."""
    de = np.abs(np.diff(np.asarray(potential, np.float64)))
    zero = np.flatnonzero(de == 0)
    time = np.concatenate([[0.0], np.cumsum(de)]) / float(scan_rate)
    return time, (int(zero[0]) + 1 if zero.size else None)


def estimate_scan_rate(time: np.ndarray, potential: np.ndarray) -> float | None:
    """Scan rate V/s from a time column: potential travelled over time taken, on the sweeps
    (between vertices) that cover at least a fifth of the potential range; None if the
    potential does not sweep."""
    e, t = np.asarray(potential, np.float64), np.asarray(time, np.float64)
    turns, d0 = turning_points(e)
    if d0 == 0:
        return None
    ends = [0, *turns, e.size - 1]
    span = float(e.max() - e.min())
    de = dt = 0.0
    for a, b in itertools.pairwise(ends):
        if b > a and abs(e[b] - e[a]) >= 0.2 * span:
            de += abs(e[b] - e[a])
            dt += t[b] - t[a]
    return de / dt if dt > 0 and de > 0 else None


_MV = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)[ _-]?mV(?:_?s(?:-1)?|ps)?(?![A-Za-z])", re.IGNORECASE)
_VS = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)[ _-]?V(?:_?s(?:-1)?|ps)(?![A-Za-z])")
_BARE = re.compile(r"(?<![A-Za-z0-9.])(\d+\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)(?![A-Za-z0-9.])")


def scan_rate_from_filename(name: str | Path) -> tuple[float, str] | None:
    """``(scan rate V/s, how it was read)`` from a file name, or None when the name is silent or
    ambiguous.

    Rules, on the name without its extension, first that applies:

    1. a number followed by ``mV`` (optionally ``mVs``, ``mV_s``, ``mVs-1``, ``mVps``) is mV/s:
       ``ECSA_0100mV.txt`` -> 0.1 V/s; several such numbers that differ -> ambiguous, None;
    2. a number followed by ``Vs``, ``V_s``, ``Vs-1`` or ``Vps`` is V/s: ``cv_0.05Vs.csv`` -> 0.05;
    3. exactly one bare decimal or exponent number (``1.00E-01``, ``0.1``; not an integer,
       which is as often a sample or run number) between 1e-4 and 1e4 is V/s:
       ``RuHex_GCE_1.00E-01.csv`` -> 0.1 V/s.

    Free text inside a file (e.g. a PSTrace "Notes" line) is never used: it is often stale.
    """
    stem = Path(str(name)).name
    stem = stem.rsplit(".", 1)[0] if re.search(r"\.[A-Za-z]\w*$", stem) else stem
    for pattern, scale, rule in ((_MV, 1e-3, "mV/s"), (_VS, 1.0, "V/s")):
        values = {float(m.group(1)) for m in pattern.finditer(stem)}
        if len(values) == 1:
            v = values.pop() * scale
            return (v, f"file name (number before {'mV' if scale != 1.0 else 'V/s'} read as {rule})") if v > 0 \
                else None
        if len(values) > 1:
            return None
    bare = [float(m.group(1)) for m in _BARE.finditer(stem)]
    if len(bare) == 1 and 1e-4 <= bare[0] <= 1e4:
        return bare[0], "file name (bare number read as V/s)"
    return None


def loop_orientation(potential: np.ndarray, current: np.ndarray) -> float | None:
    """Signed area of the current-potential loop, ``sum(I dE)`` along the trace, over
    ``(I range x E range)``; None for a trace with no vertex.

    In the IUPAC convention the positive-going sweep's current lies above the negative-going
    one's (double-layer charging ``Cdl dE/dt`` and the diffusive return peaks both do that), so
    the value is positive; a file that writes cathodic current as positive gives a negative one.
    """
    e, i = np.asarray(potential, np.float64), np.asarray(current, np.float64)
    turns, _ = turning_points(e)
    if not turns:
        return None
    norm = float((i.max() - i.min()) * (e.max() - e.min()))
    if norm <= 0:
        return None
    return float(np.sum(0.5 * (i[1:] + i[:-1]) * np.diff(e)) / norm)
