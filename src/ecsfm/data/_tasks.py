"""The task vocabulary: which experiment a dataset row is, and how its trace is read out.

Every task has exactly one free protocol quantity, its time scale T (s, the ``ln_time_scale``
slot), so that all rows of a task share one waveform *shape* (one compiled simulator program)
and differ only in duration; the model sees T through ``p`` and the waveform through ``e``.

Each task's trace has ``target_len`` points:

=================  ==================================================  =====================================
task               protocol (T = time scale)                           trace
=================  ==================================================  =====================================
cv                 0.5 -> -0.5 -> 0.5 V, 2 mV steps, v = 2 V / T       i(t), e(t) at L uniform times
cv_multispecies    as cv, 2 or more active couples                     as cv
ca_step            0.5 V -> -0.5 V at t = 0, held T                    i(t) at L log-spaced times, 1e-3 T..T
swv                0.5 -> -0.5 V in L stairs, 25 mV pulses, f = L / T  difference current vs stair potential
dpv                0.5 -> -0.5 V in L stairs, 50 mV pulses (T/10L),     difference current vs stair potential
                   period T / L
eis                0 V + 10 mV sine, n_p = L // 32 periods, f = n_p / T i(t), e(t) at L uniform times
=================  ==================================================  =====================================

No aliasing: the sinusoid is read at L uniform times over ``n_p = L // 32`` periods, i.e. 32
samples per period (>= 20 for any L >= 20); square-wave and differential-pulse traces are one
sample per period by definition (the technique's own read-out), and their staircase ``e`` is not
periodic. The frequency range follows from L and the time-scale range (see ``frequency_range``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import sim

__all__ = ["TaskSpec", "TASKS", "TASK_NAMES", "MIN_SAMPLES_PER_PERIOD"]

MIN_SAMPLES_PER_PERIOD = 20
#: Sub-steps per pulse of swv/dpv (growth 2 from the jump): the sampled difference current stays
#: within 0.35 % of its peak of a 32-sub-step reference (asserted < 0.5 % in the tests), at half
#: the cost of 8 sub-steps.
PULSE_SUBSTEPS, PULSE_GROWTH = 4, 2.0
E_HIGH, E_LOW = 0.5, -0.5


@dataclass(frozen=True)
class TaskSpec:
    """One task. ``time_scale`` is the (low, high) range of T in s; ``n_active`` the range of
    active couples (the high end is capped by max_species)."""

    name: str
    time_scale: tuple[float, float]
    n_active: tuple[int, int] = (1, 1)

    def n_periods(self, target_len: int) -> int:
        """Sine periods shown by the eis task (32 samples per period)."""
        return max(1, target_len // 32)

    def frequency_range(self, target_len: int) -> tuple[float, float] | None:
        """Hz, for the periodic tasks (swv: square-wave frequency; dpv: pulse rate; eis: sine)."""
        lo, hi = self.time_scale
        if self.name in ("swv", "dpv"):
            return target_len / hi, target_len / lo
        if self.name == "eis":
            n = self.n_periods(target_len)
            return n / hi, n / lo
        return None

    def template(self, target_len: int) -> sim.Waveform:
        """The waveform with T = 1 s; a row's waveform is this with ``duration = T``."""
        if target_len < MIN_SAMPLES_PER_PERIOD:
            raise ValueError(f"target_len: must be >= {MIN_SAMPLES_PER_PERIOD}, got {target_len}")
        span = E_HIGH - E_LOW
        if self.name in ("cv", "cv_multispecies"):
            return sim.cyclic_voltammetry(E_HIGH, E_LOW, scan_rate=2 * span, step=2e-3)
        if self.name == "ca_step":
            return sim.potential_step(E_HIGH, E_LOW, duration=1.0, n_steps=256, growth=1.03)
        if self.name == "swv":
            return sim.square_wave_voltammetry(E_HIGH, E_LOW, step=span / target_len, amplitude=0.025,
                                               frequency=float(target_len), n_substeps=PULSE_SUBSTEPS,
                                               growth=PULSE_GROWTH)
        if self.name == "dpv":
            period = 1.0 / target_len
            return sim.differential_pulse_voltammetry(E_HIGH, E_LOW, step=span / target_len, pulse_amplitude=0.05,
                                                      pulse_width=period / 10, period=period,
                                                      n_substeps=PULSE_SUBSTEPS, growth=PULSE_GROWTH)
        if self.name == "eis":
            n = self.n_periods(target_len)
            return sim.sinusoid(0.0, 0.01, frequency=float(n), n_periods=n, points_per_period=64)
        raise ValueError(f"task: unknown {self.name!r}")

    def readout(self, target_len: int, template: sim.Waveform) -> dict:
        """How to turn a simulated trace (N+1 points) into L points: numpy index/weight arrays.

        ``{"tau": (L,) relative times, "i0", "i1": (L,) indices, "w1": (L,) weights}`` for
        interpolation (current and potential at ``tau``), or ``{"tau", "pos", "neg", "e"}`` for a
        difference of two sampled channels at the stair potentials ``e``.
        """
        tau_sim = template.grid.tau
        if self.name in ("swv", "dpv"):
            ch = dict(template.sampling)
            pos, neg = ("forward", "reverse") if self.name == "swv" else ("pulse", "before")
            pos, neg = np.asarray(ch[pos]), np.asarray(ch[neg])
            return {"tau": tau_sim[pos], "pos": pos, "neg": neg,
                    "e": np.asarray(template.params["base_potential"])}
        if self.name == "ca_step":
            tau = np.geomspace(1e-3, 1.0, target_len)
        else:
            tau = np.linspace(0.0, 1.0, target_len)
        i1 = np.clip(np.searchsorted(tau_sim, tau, side="left"), 1, tau_sim.size - 1)
        i0 = i1 - 1
        w1 = (tau - tau_sim[i0]) / (tau_sim[i1] - tau_sim[i0])
        return {"tau": tau, "i0": i0, "i1": i1, "w1": w1}


TASKS = {
    t.name: t
    for t in (
        TaskSpec("cv", time_scale=(2.0, 200.0)),  # 0.01 .. 1 V/s
        TaskSpec("cv_multispecies", time_scale=(2.0, 200.0), n_active=(2, 16)),
        TaskSpec("ca_step", time_scale=(0.1, 10.0)),
        TaskSpec("swv", time_scale=(2.56, 51.2)),  # at L = 256: 5 .. 100 Hz
        TaskSpec("dpv", time_scale=(12.8, 128.0)),  # at L = 256: periods 0.05 .. 0.5 s
        TaskSpec("eis", time_scale=(0.008, 80.0)),  # at L = 256: 8 periods, 0.1 Hz .. 1 kHz
    )
}
TASK_NAMES = tuple(TASKS)
