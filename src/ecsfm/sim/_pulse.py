"""Pulse waveforms -- square-wave and differential-pulse voltammetry -- and the sampled
currents their readouts take (forward, reverse and difference), built on the staircase of
``_waveforms``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._waveforms import Waveform, _Builder, _count, _finite, _growth, _positive, _sweep_steps

__all__ = ["square_wave_voltammetry", "differential_pulse_voltammetry", "sampled_currents"]


def _pulsed_staircase(e_start, e_end, step, pulses, n_substeps, growth):
    """A staircase ``e_start -> e_end`` in ``step`` V; on each stair the ``pulses``
    ``(offset in the scan direction V, duration s, channel)`` are applied in order, each
    sampled at its end. Returns the builder and the stair (base) potentials."""
    if e_end == e_start:
        raise ValueError("e_end: must differ from e_start (a scan needs a non-zero span)")
    direction = 1.0 if e_end > e_start else -1.0
    n = _sweep_steps("step", e_end - e_start, step)
    base = e_start + direction * step * np.arange(1, n + 1)
    b = _Builder(e_start)
    for e_base in base:
        for offset, duration, channel in pulses:
            b.hold(e_base + direction * offset, duration, n_substeps, growth)
            b.mark(channel)
    return b, base


def square_wave_voltammetry(
    e_start: float,
    e_end: float,
    *,
    step: float = 5e-3,
    amplitude: float = 25e-3,
    frequency: float = 25.0,
    n_substeps: int = 12,
    growth: float = 1.5,
) -> Waveform:
    """Osteryoung square-wave voltammetry.

    A staircase from ``e_start`` to ``e_end`` in increments of ``step`` V, one per period
    ``1/frequency`` s; on each stair a forward pulse (``+amplitude`` in the scan direction) for
    half a period, then a reverse pulse (``-amplitude``). Channels ``"forward"`` and
    ``"reverse"`` sample the current at the end of each half-period; the difference current is
    forward - reverse (see :func:`sampled_currents`). ``params["base_potential"]`` holds the
    staircase potential of each period.
    """
    e_start = _finite("e_start", e_start)
    e_end = _finite("e_end", e_end)
    step = _positive("step", step)
    amplitude = _positive("amplitude", amplitude)
    frequency = _positive("frequency", frequency)
    n_substeps = _count("n_substeps", n_substeps, 2)
    growth = _growth("growth", growth)
    half = 0.5 / frequency
    pulses = ((amplitude, half, "forward"), (-amplitude, half, "reverse"))
    b, base = _pulsed_staircase(e_start, e_end, step, pulses, n_substeps, growth)
    params = dict(e_start=e_start, e_end=e_end, step=step, amplitude=amplitude, frequency=frequency)
    return b.build("swv", {**params, "base_potential": base})


def differential_pulse_voltammetry(
    e_start: float,
    e_end: float,
    *,
    step: float = 5e-3,
    pulse_amplitude: float = 50e-3,
    pulse_width: float = 0.05,
    period: float = 0.5,
    n_substeps: int = 12,
    growth: float = 1.5,
) -> Waveform:
    """Differential pulse voltammetry.

    A staircase from ``e_start`` to ``e_end`` (``step`` V per ``period`` s); at the end of each
    period a pulse of ``pulse_amplitude`` V (in the scan direction) lasting ``pulse_width`` s.
    Channels ``"before"`` (just before the pulse) and ``"pulse"`` (end of the pulse); the
    difference current is pulse - before.
    """
    e_start = _finite("e_start", e_start)
    e_end = _finite("e_end", e_end)
    step = _positive("step", step)
    pulse_amplitude = _positive("pulse_amplitude", pulse_amplitude)
    pulse_width = _positive("pulse_width", pulse_width)
    period = _positive("period", period)
    n_substeps = _count("n_substeps", n_substeps, 2)
    growth = _growth("growth", growth)
    if pulse_width >= period:
        raise ValueError(f"pulse_width: must be < period ({period} s), got {pulse_width}")
    pulses = ((0.0, period - pulse_width, "before"), (pulse_amplitude, pulse_width, "pulse"))
    b, base = _pulsed_staircase(e_start, e_end, step, pulses, n_substeps, growth)
    params = dict(e_start=e_start, e_end=e_end, step=step, pulse_amplitude=pulse_amplitude,
                  pulse_width=pulse_width, period=period)
    return b.build("dpv", {**params, "base_potential": base})


def sampled_currents(waveform: Waveform, current: Float[Array, "... n"]) -> dict:
    """The technique's sampled currents, each of shape (..., n_samples).

    For square wave and differential pulse the ``"difference"`` channel is added
    (forward - reverse, pulse - before). An empty dict for continuous techniques.
    """
    current = jnp.asarray(current)
    out = {name: current[..., np.asarray(idx)] for name, idx in waveform.sampling}
    if waveform.kind == "swv":
        out["difference"] = out["forward"] - out["reverse"]
    elif waveform.kind == "dpv":
        out["difference"] = out["pulse"] - out["before"]
    return out
