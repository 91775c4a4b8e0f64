"""A blank scan -- the same potential program in the same electrolyte without the analyte --
subtracted from a measured trace: the background of the cell (charging, surface processes,
solvent and impurity currents) measured rather than modelled."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..io import turning_points

__all__ = ["BLANK_VERTEX_TOLERANCE_V", "subtract_blank"]

#: the blank's turning points must match the trace's within this (V): the same program
BLANK_VERTEX_TOLERANCE_V = 0.01


def _program(m) -> tuple[np.ndarray, np.ndarray]:
    """(turning-point potentials incl. start and end, the fraction of the potential path walked
    at each point)."""
    e = np.asarray(m.potential, np.float64)
    turns, _ = turning_points(e)
    idx = [0, *[int(k) for k in turns if 0 < k < e.size - 1], e.size - 1]
    walked = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(e)))])
    return e[idx], walked / walked[-1]


def subtract_blank(m, blank, *, cycle: int = 0):
    """``m``'s cycle ``cycle`` with the blank's current subtracted, point by point at the same
    position along the potential program (the blank's own cycle ``cycle``, or its only one).
    Returns a one-cycle ``ecsfm.io.Measurement`` (metadata ``blank_subtracted``). Raises
    ValueError when the two programs differ (turning points more than
    ``BLANK_VERTEX_TOLERANCE_V`` apart, or a different number of sweeps)."""
    m = m.select_cycle(cycle)
    blank = blank.select_cycle(cycle if blank.n_cycles > cycle else 0)
    v_m, s_m = _program(m)
    v_b, s_b = _program(blank)
    name = blank.metadata.get("source_file", "the blank")
    if v_m.size != v_b.size or np.max(np.abs(v_m - v_b)) > BLANK_VERTEX_TOLERANCE_V:
        raise ValueError(f"blank: {name}'s potential program (turning points {np.round(v_b, 3).tolist()} V) is not the "
                         f"trace's ({np.round(v_m, 3).tolist()} V); record the blank with the same program")
    background = np.interp(s_m, s_b, np.asarray(blank.current, np.float64))
    return dataclasses.replace(m, current=np.asarray(m.current, np.float64) - background,
                               metadata={**m.metadata, "blank_subtracted": str(name)})
