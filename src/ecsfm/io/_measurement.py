"""The measured-voltammogram record every reader returns."""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Measurement"]

MetaValue = str | int | float


def _frozen(values, name: str, dtype) -> np.ndarray:
    arr = np.array(values, dtype=dtype, copy=True)
    if arr.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Measurement:
    """One measured voltammogram, in SI units and the IUPAC sign convention.

    Fields (N points):

    - ``time`` (N,) s, float64: starts at 0, strictly increasing (a file's own clock offset is in
      ``metadata["time_offset_s"]``).
    - ``potential`` (N,) V: the applied potential (the instrument's set point where the file has one).
    - ``current`` (N,) A: oxidation (anodic) current positive.
    - ``scan_rate``: V/s, or None where the trace has no single scan rate.
    - ``cycle`` (N,) int64: 0-based cycle index of each point; starts at 0, non-decreasing in steps of 1.
    - ``metadata``: read-only mapping str -> str | int | float (format, source file, instrument,
      where the scan rate and time came from, the file's sign convention, reference electrode
      and area in cm^2 when the file states them, ...).
    """

    time: np.ndarray
    potential: np.ndarray
    current: np.ndarray
    scan_rate: float | None
    cycle: np.ndarray
    metadata: Mapping[str, MetaValue]

    def __post_init__(self):
        time = _frozen(self.time, "time", np.float64)
        potential = _frozen(self.potential, "potential", np.float64)
        current = _frozen(self.current, "current", np.float64)
        cycle_in = np.asarray(self.cycle)
        if cycle_in.size and not np.all(np.isfinite(cycle_in.astype(np.float64))):
            raise ValueError("cycle: must be finite integers")
        if cycle_in.size and np.any(cycle_in.astype(np.float64) != np.round(cycle_in.astype(np.float64))):
            raise ValueError("cycle: must be integers")
        cycle = _frozen(cycle_in.astype(np.int64), "cycle", np.int64)
        n = time.size
        if n < 2:
            raise ValueError(f"time: need at least 2 points, got {n}")
        for name, arr in (("potential", potential), ("current", current), ("cycle", cycle)):
            if arr.size != n:
                raise ValueError(f"{name}: has {arr.size} points, time has {n}")
        for name, arr in (("time", time), ("potential", potential), ("current", current)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name}: contains NaN or Inf")
        if time[0] != 0.0:
            raise ValueError(f"time: must start at 0 s, got {time[0]!r}")
        if np.any(np.diff(time) <= 0):
            k = int(np.flatnonzero(np.diff(time) <= 0)[0])
            raise ValueError(f"time: must be strictly increasing, not at point {k + 1}")
        if cycle[0] != 0 or np.any((np.diff(cycle) != 0) & (np.diff(cycle) != 1)):
            raise ValueError("cycle: must start at 0 and be non-decreasing in steps of 1")
        scan_rate = self.scan_rate
        if scan_rate is not None:
            scan_rate = float(scan_rate)
            if not (math.isfinite(scan_rate) and scan_rate > 0):
                raise ValueError(f"scan_rate: must be > 0 V/s or None, got {self.scan_rate!r}")
        meta = {}
        for key, value in dict(self.metadata).items():
            if not isinstance(key, str):
                raise ValueError(f"metadata: keys must be str, got {key!r}")
            if isinstance(value, (bool, np.bool_)):
                value = int(value)
            elif isinstance(value, (np.integer, np.floating)):
                value = value.item()
            if not isinstance(value, (str, int, float)):
                raise ValueError(f"metadata[{key!r}]: must be str, int or float, got {type(value).__name__}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"metadata[{key!r}]: must be finite, got {value}")
            meta[key] = value
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "potential", potential)
        object.__setattr__(self, "current", current)
        object.__setattr__(self, "cycle", cycle)
        object.__setattr__(self, "scan_rate", scan_rate)
        object.__setattr__(self, "metadata", types.MappingProxyType(meta))

    @property
    def n_points(self) -> int:
        """Number of samples N."""
        return int(self.time.size)

    @property
    def n_cycles(self) -> int:
        """Number of cycles (``cycle[-1] + 1``)."""
        return int(self.cycle[-1]) + 1

    @property
    def duration(self) -> float:
        """``time[-1]``, s."""
        return float(self.time[-1])

    def select_cycle(self, k: int) -> Measurement:
        """Cycle ``k`` (0-based; negative counts from the end) as a one-cycle Measurement.

        Its time restarts at 0 (the offset is added to ``metadata["time_offset_s"]``), its cycle
        array is all 0 and ``metadata["selected_cycle"]`` is ``k``.
        """
        n = self.n_cycles
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not -n <= k < n:
            raise ValueError(f"cycle: must be an integer in [0, {n - 1}] (this measurement has {n}), got {k!r}")
        k = int(k) % n
        idx = np.flatnonzero(self.cycle == k)
        if idx.size < 2:
            raise ValueError(f"cycle: cycle {k} has only {idx.size} point; cannot stand alone")
        t0 = float(self.time[idx[0]])
        meta = dict(self.metadata)
        meta["time_offset_s"] = float(meta.get("time_offset_s", 0.0)) + t0
        meta["selected_cycle"] = k + int(meta.get("selected_cycle", 0))
        return Measurement(time=self.time[idx] - t0, potential=self.potential[idx], current=self.current[idx],
                           scan_rate=self.scan_rate, cycle=np.zeros(idx.size, np.int64), metadata=meta)

    def cycles(self) -> tuple[Measurement, ...]:
        """Every cycle as its own Measurement (see :meth:`select_cycle`)."""
        return tuple(self.select_cycle(k) for k in range(self.n_cycles))

    def __repr__(self) -> str:
        v = "None" if self.scan_rate is None else f"{self.scan_rate:.4g} V/s"
        return (f"Measurement(n_points={self.n_points}, n_cycles={self.n_cycles}, duration={self.duration:.4g} s, "
                f"potential=[{self.potential.min():.4g}, {self.potential.max():.4g}] V, scan_rate={v}, "
                f"format={self.metadata.get('format', '?')!r})")
