"""Applied-potential waveforms.

A :class:`Waveform` is the applied potential on a time grid ``t_0 = 0 < t_1 < ... < t_N``.
The solver takes one implicit step per interval ``(t_{n-1}, t_n]`` at the potential
``potential[n]`` (potential steps happen at the start of an interval), and reports the
current at every ``t_n``.

The grid is stored as the *relative* times ``tau = t / duration`` (a static, hashable
:class:`TimeGrid`) and the duration as an array. Waveforms of the same shape (same number of
points, same relative spacing) but different scan rates or potentials therefore share one
compiled simulator and can be stacked and ``vmap``-ed over; only ``potential``, ``duration`` and
``params`` are arrays.

Ramps use uniform steps (``step`` V per interval). After every potential jump (steps, pulses,
stairs) the solver takes geometrically growing sub-steps so that the ``t^-1/2`` transient that
follows a jump is resolved; the growth factor and count are arguments of each builder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "TimeGrid",
    "Waveform",
    "cyclic_voltammetry",
    "linear_sweep",
    "staircase_voltammetry",
    "potential_step",
    "double_potential_step",
    "step_sequence",
    "sinusoid",
    "stack",
]

#: Largest number of time points a builder will make; beyond it the compiled scan gets
#: unwieldy and a coarser ``step`` or fewer sub-steps should be chosen.
MAX_POINTS = 2_000_000


@dataclass(frozen=True, eq=False)
class TimeGrid:
    """Relative time points and where the potential jumps; hashable by value (a static field).

    Attributes:
        tau: relative times (N+1,), ``tau[0] = 0``, ``tau[-1] = 1``, strictly increasing.
        jump: (N,) bool, True where step n starts with a potential jump (the flux is then
            discontinuous and the solver does not interpolate it across the step).
    """

    tau: np.ndarray
    jump: np.ndarray | None = None

    def __post_init__(self):
        tau = np.asarray(self.tau, dtype=np.float64)
        if tau.ndim != 1 or tau.size < 2:
            raise ValueError("time grid: need at least two time points")
        if not np.all(np.diff(tau) > 0):
            raise ValueError("time grid: relative times must be strictly increasing")
        tau = (tau - tau[0]) / (tau[-1] - tau[0])
        jump = np.zeros(tau.size - 1, bool) if self.jump is None else np.asarray(self.jump, bool)
        if jump.shape != (tau.size - 1,):
            raise ValueError(f"time grid: jump must have shape ({tau.size - 1},), got {jump.shape}")
        tau.setflags(write=False)
        jump.setflags(write=False)
        object.__setattr__(self, "tau", tau)
        object.__setattr__(self, "jump", jump)
        object.__setattr__(self, "_hash", hash((tau.tobytes(), jump.tobytes())))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, TimeGrid) and (
            self is other
            or (
                self._hash == other._hash
                and np.array_equal(self.tau, other.tau)
                and np.array_equal(self.jump, other.jump)
            )
        )

    @property
    def n_steps(self) -> int:
        return self.tau.size - 1

    @property
    def steps(self) -> np.ndarray:
        """Relative step sizes (N,)."""
        return np.diff(self.tau)


class Waveform(eqx.Module):
    """An applied potential program.

    Attributes:
        potential: applied potential at each time point, V, shape (N+1,).
        duration: total duration, s, shape ().
        grid: relative time points (static).
        kind: the technique, e.g. ``"cv"``, ``"swv"`` (static).
        params: the builder's arguments as arrays (scan rate, amplitudes, ...), for records.
        sampling: named index sets into the time axis at which a technique reads its current
            (static), e.g. ``(("forward", (...)), ("reverse", (...)))`` for square wave.
    """

    potential: Float[Array, " n"]
    duration: Float[Array, ""]
    params: dict
    grid: TimeGrid = eqx.field(static=True)
    kind: str = eqx.field(static=True)
    sampling: tuple = eqx.field(static=True, default=())

    @property
    def time(self) -> Float[Array, " n"]:
        """Time points, s, shape (..., N+1)."""
        duration = jnp.asarray(self.duration)
        return duration[..., None] * jnp.asarray(self.grid.tau, dtype=jnp.result_type(duration))

    @property
    def n_points(self) -> int:
        return self.grid.tau.size


# ---------------------------------------------------------------------------------------------
# Validation helpers: plain Python floats at the boundary, a ValueError naming the field.


def _finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    return v


def _positive(name: str, value) -> float:
    v = _finite(name, value)
    if v <= 0:
        raise ValueError(f"{name}: must be > 0, got {v}")
    return v


def _count(name: str, value, minimum: int = 1) -> int:
    if int(value) != value or int(value) < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    if int(value) > MAX_POINTS:
        raise ValueError(f"{name}: must be an integer in [{minimum}, {MAX_POINTS}] (the most time points a "
                         f"waveform may have), got {value!r}")
    return int(value)


def _growth(name: str, value) -> float:
    v = _finite(name, value)
    if not 1.0 <= v <= 3.0:
        raise ValueError(f"{name}: must be in [1, 3], got {v}")
    return v


def _graded_fractions(n: int, growth: float) -> np.ndarray:
    """Cumulative fractions (n,) of ``n`` geometrically growing sub-steps, ending at 1."""
    if growth == 1.0:
        h = np.ones(n)
    else:
        h = growth ** np.arange(n, dtype=np.float64)
    return np.cumsum(h) / np.sum(h)


class _Builder:
    """Accumulates (time, potential) points and sampling indices in float64."""

    def __init__(self, e_initial: float):
        self.t = [0.0]
        self.e = [e_initial]
        self.jump: list[bool] = []
        self.samples: dict[str, list[int]] = {}

    def _room(self, n_steps: int) -> None:
        # Checked before anything is allocated: repeated cycles or stairs could otherwise grow
        # the point lists far past MAX_POINTS before build() sees them.
        if len(self.t) + n_steps > MAX_POINTS:
            raise ValueError(f"waveform: more than {MAX_POINTS} time points; use a coarser step, fewer "
                             "cycles or fewer sub-steps")

    def ramp(self, e_to: float, duration: float, n_steps: int) -> None:
        self._room(n_steps)
        t0, e0 = self.t[-1], self.e[-1]
        frac = np.arange(1, n_steps + 1) / n_steps
        self.t.extend(t0 + duration * frac)
        self.e.extend(e0 + (e_to - e0) * frac)
        self.jump.extend([False] * n_steps)

    def hold(self, e: float, duration: float, n_steps: int, growth: float) -> None:
        """Jump to ``e`` at the current time and hold it for ``duration`` (graded sub-steps)."""
        self._room(n_steps)
        t0 = self.t[-1]
        self.t.extend(t0 + duration * _graded_fractions(n_steps, growth))
        self.e.extend([e] * n_steps)
        # A hold is declared to start with a jump (static structure, whatever the values).
        self.jump.extend([True] + [False] * (n_steps - 1))

    def mark(self, name: str) -> None:
        """Record the current last point as a sample of channel ``name``."""
        self.samples.setdefault(name, []).append(len(self.t) - 1)

    def build(self, kind: str, params: dict) -> Waveform:
        t = np.asarray(self.t)
        if t.size > MAX_POINTS:
            raise ValueError(
                f"waveform: {t.size} time points exceeds {MAX_POINTS}; use a coarser step"
            )
        duration = t[-1]
        sampling = tuple((k, tuple(v)) for k, v in self.samples.items())
        return Waveform(
            potential=jnp.asarray(np.asarray(self.e)),
            duration=jnp.asarray(duration),
            params={k: jnp.asarray(v) for k, v in params.items()},
            grid=TimeGrid(t / duration, np.asarray(self.jump, bool)),
            kind=kind,
            sampling=sampling,
        )


def _sweep_steps(name: str, span: float, step: float) -> int:
    n = max(1, int(round(abs(span) / step)))
    if n > MAX_POINTS:
        raise ValueError(f"{name}: {n} steps exceeds {MAX_POINTS}; use a coarser step")
    return n


# ---------------------------------------------------------------------------------------------
# Builders


def cyclic_voltammetry(
    e_start: float,
    e_vertex: float,
    scan_rate: float,
    *,
    e_end: float | None = None,
    n_cycles: int = 1,
    step: float = 1e-3,
) -> Waveform:
    """Linear-sweep cyclic voltammetry ``e_start -> e_vertex -> e_end`` repeated ``n_cycles`` times.

    Args:
        e_start: initial potential, V.
        e_vertex: switching potential, V (must differ from ``e_start``).
        scan_rate: sweep rate, V/s (> 0).
        e_end: final potential of each cycle, V (default ``e_start``); later cycles start here.
        n_cycles: number of cycles (>= 1).
        step: potential increment per time step, V (default 1 mV, the usual potentiostat step).
    """
    e_start = _finite("e_start", e_start)
    e_vertex = _finite("e_vertex", e_vertex)
    scan_rate = _positive("scan_rate", scan_rate)
    e_end = e_start if e_end is None else _finite("e_end", e_end)
    n_cycles = _count("n_cycles", n_cycles)
    step = _positive("step", step)
    if e_vertex == e_start:
        raise ValueError("e_vertex: must differ from e_start (a sweep needs a non-zero span)")
    if e_vertex == e_end:
        raise ValueError("e_end: must differ from e_vertex")
    b = _Builder(e_start)
    for _ in range(n_cycles):
        for target in (e_vertex, e_end):
            span = target - b.e[-1]
            b.ramp(target, abs(span) / scan_rate, _sweep_steps("step", span, step))
    params = dict(e_start=e_start, e_vertex=e_vertex, e_end=e_end, scan_rate=scan_rate, step=step)
    return b.build("cv", params)


def linear_sweep(e_start: float, e_end: float, scan_rate: float, *, step: float = 1e-3) -> Waveform:
    """Linear-sweep voltammetry ``e_start -> e_end`` at ``scan_rate`` V/s, ``step`` V per point."""
    e_start = _finite("e_start", e_start)
    e_end = _finite("e_end", e_end)
    scan_rate = _positive("scan_rate", scan_rate)
    step = _positive("step", step)
    if e_end == e_start:
        raise ValueError("e_end: must differ from e_start (a sweep needs a non-zero span)")
    b = _Builder(e_start)
    span = e_end - e_start
    b.ramp(e_end, abs(span) / scan_rate, _sweep_steps("step", span, step))
    return b.build("lsv", dict(e_start=e_start, e_end=e_end, scan_rate=scan_rate, step=step))


def piecewise_sweep(vertices, scan_rate: float, *, step: float = 1e-3) -> Waveform:
    """Linear sweeps through ``vertices`` (V, at least two, consecutive ones different) at one
    ``scan_rate`` V/s, ``step`` V per point: any measured CV program (a start between the
    vertices, extra half-cycles, an end short of the start)."""
    scan_rate = _positive("scan_rate", scan_rate)
    step = _positive("step", step)
    v = [_finite("vertices", x) for x in np.asarray(vertices, np.float64).reshape(-1)]
    if len(v) < 2:
        raise ValueError(f"vertices: need at least two potentials, got {len(v)}")
    b = _Builder(v[0])
    for target in v[1:]:
        span = target - b.e[-1]
        if span == 0:
            raise ValueError("vertices: consecutive potentials must differ")
        b.ramp(target, abs(span) / scan_rate, max(1, int(round(abs(span) / step))))
    return b.build("cv", dict(vertices=np.asarray(v), scan_rate=scan_rate, step=step))


def staircase_voltammetry(
    e_start: float,
    e_vertex: float,
    scan_rate: float,
    *,
    e_end: float | None = None,
    n_cycles: int = 1,
    step: float = 2e-3,
    sample_fraction: float = 1.0,
    n_substeps: int = 12,
    growth: float = 1.5,
) -> Waveform:
    """Staircase cyclic voltammetry, as digital potentiostats apply it.

    Each stair is a jump of ``step`` V held for ``step / scan_rate`` s; the current is sampled
    at ``sample_fraction`` of each stair (channel ``"sampled"``; 1.0 = end of the stair).
    """
    e_start = _finite("e_start", e_start)
    e_vertex = _finite("e_vertex", e_vertex)
    scan_rate = _positive("scan_rate", scan_rate)
    e_end = e_start if e_end is None else _finite("e_end", e_end)
    n_cycles = _count("n_cycles", n_cycles)
    step = _positive("step", step)
    n_substeps = _count("n_substeps", n_substeps, 2)
    growth = _growth("growth", growth)
    if not 0.0 < sample_fraction <= 1.0:
        raise ValueError(f"sample_fraction: must be in (0, 1], got {sample_fraction}")
    if e_vertex == e_start:
        raise ValueError("e_vertex: must differ from e_start (a sweep needs a non-zero span)")
    frac = _graded_fractions(n_substeps, growth)
    i_sample = int(np.argmin(np.abs(frac - sample_fraction)))
    b = _Builder(e_start)
    tread = step / scan_rate
    for _ in range(n_cycles):
        for target in (e_vertex, e_end):
            e0 = b.e[-1]
            n = _sweep_steps("step", target - e0, step)
            for k in range(1, n + 1):
                start = len(b.t) - 1
                b.hold(e0 + (target - e0) * k / n, tread, n_substeps, growth)
                b.samples.setdefault("sampled", []).append(start + 1 + i_sample)
    params = dict(e_start=e_start, e_vertex=e_vertex, e_end=e_end, scan_rate=scan_rate, step=step)
    return b.build("staircase_cv", params)


def potential_step(
    e_initial: float,
    e_step: float,
    duration: float,
    *,
    n_steps: int = 200,
    growth: float = 1.04,
) -> Waveform:
    """Chronoamperometry: rest at ``e_initial``, jump to ``e_step`` at t = 0, hold ``duration`` s.

    Time steps grow geometrically by ``growth`` from the jump so that the Cottrell
    ``t^-1/2`` transient is resolved from ~1e-4 of the duration on.
    """
    e_initial = _finite("e_initial", e_initial)
    e_step = _finite("e_step", e_step)
    duration = _positive("duration", duration)
    n_steps = _count("n_steps", n_steps, 2)
    growth = _growth("growth", growth)
    b = _Builder(e_initial)
    b.hold(e_step, duration, n_steps, growth)
    return b.build("ca", dict(e_initial=e_initial, e_step=e_step, step_duration=duration))


def double_potential_step(
    e_initial: float,
    e_step: float,
    e_return: float,
    step_duration: float,
    return_duration: float | None = None,
    *,
    n_steps: int = 200,
    growth: float = 1.04,
) -> Waveform:
    """Double potential step: ``e_initial -> e_step`` for ``step_duration`` s, then ``e_return``."""
    e_initial = _finite("e_initial", e_initial)
    e_step = _finite("e_step", e_step)
    e_return = _finite("e_return", e_return)
    step_duration = _positive("step_duration", step_duration)
    return_duration = step_duration if return_duration is None else _positive(
        "return_duration", return_duration
    )
    n_steps = _count("n_steps", n_steps, 2)
    growth = _growth("growth", growth)
    b = _Builder(e_initial)
    b.hold(e_step, step_duration, n_steps, growth)
    b.mark("step_end")
    b.hold(e_return, return_duration, n_steps, growth)
    params = dict(
        e_initial=e_initial,
        e_step=e_step,
        e_return=e_return,
        step_duration=step_duration,
        return_duration=return_duration,
    )
    return b.build("double_step", params)


def step_sequence(levels, durations, *, n_steps: int = 200, growth: float = 1.04) -> Waveform:
    """Multi-step chronoamperometry: the cell rests at ``levels[0]`` (V) and at t = 0 each level is
    held in turn for its ``durations`` (s), a jump at the start of every hold (also the first, from
    the bulk state, as after a step from a potential where nothing reacts). ``n_steps`` graded
    sub-steps per hold. Raises ValueError for unequal lengths or a non-positive duration."""
    levels = [_finite("levels", e) for e in np.atleast_1d(np.asarray(levels, np.float64))]
    durations = [_positive("durations", d) for d in np.atleast_1d(np.asarray(durations, np.float64))]
    if not levels or len(levels) != len(durations):
        raise ValueError(f"levels: need one duration per level, got {len(levels)} levels and {len(durations)} "
                         "durations")
    n_steps = _count("n_steps", n_steps, 2)
    growth = _growth("growth", growth)
    b = _Builder(levels[0])
    for e, d in zip(levels, durations):
        b.hold(e, d, n_steps, growth)
        b.mark("hold_end")
    return b.build("steps", dict(levels=np.asarray(levels), durations=np.asarray(durations)))


def sinusoid(
    e_dc: float,
    amplitude: float,
    frequency: float,
    *,
    n_periods: int = 8,
    points_per_period: int = 64,
) -> Waveform:
    """A sinusoid ``e_dc + amplitude * sin(2 pi f t)`` for ``n_periods`` periods (AC voltammetry, EIS).

    ``points_per_period`` must be >= 20 so that the signal is never aliased.
    """
    e_dc = _finite("e_dc", e_dc)
    amplitude = _positive("amplitude", amplitude)
    frequency = _positive("frequency", frequency)
    n_periods = _count("n_periods", n_periods)
    points_per_period = _count("points_per_period", points_per_period, 20)
    n = n_periods * points_per_period
    if n + 1 > MAX_POINTS:
        raise ValueError(f"n_periods: n_periods * points_per_period must be < {MAX_POINTS}, got "
                         f"{n_periods} * {points_per_period}")
    t = np.arange(n + 1) / (points_per_period * frequency)
    b = _Builder(e_dc)
    b.t = list(t)
    b.e = list(e_dc + amplitude * np.sin(2.0 * np.pi * frequency * t))
    b.jump = [False] * n
    params = dict(e_dc=e_dc, amplitude=amplitude, frequency=frequency, n_periods=n_periods)
    return b.build("sinusoid", params)


def stack(waveforms: Sequence[Waveform]) -> Waveform:
    """Stack waveforms of the same shape into one with a leading batch axis (for ``vmap``)."""
    first = waveforms[0]
    same = []
    for w in waveforms:
        # Relative time grids built for different durations agree to round-off, not bit for bit.
        if not (w.kind == first.kind and w.sampling == first.sampling and w.grid.tau.shape == first.grid.tau.shape
                and np.allclose(w.grid.tau, first.grid.tau, rtol=0, atol=1e-12)
                and np.array_equal(w.grid.jump, first.grid.jump)):
            raise ValueError("waveforms: all must share one time grid, kind and sampling to stack")
        same.append(dataclasses.replace(w, grid=first.grid))
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *same)
