"""Potential-step records (chronoamperometry) as a joint fit reads them: the program's levels and
holds from the measured potential, and when the first sample was taken. The step waveform itself
is checked against Cottrell."""

from __future__ import annotations

import numpy as np
import pytest

from ecsfm import io, sim
from ecsfm.posterior import trace_from_measurement


def _record(potential, dt=1e-3, offset=None, current=None):
    t = dt * np.arange(potential.size)
    meta = {} if offset is None else {"time_offset_s": offset}
    current = np.full(t.size, -1e-6) if current is None else current
    return io.Measurement(time=t, potential=potential, current=current, scan_rate=None,
                          cycle=np.zeros(t.size, int), metadata=meta)


def test_a_double_step_record_gives_its_levels_holds_and_times():
    """400 samples at 0.3 V then 600 at -0.2 V, the first 1 ms after the step (the file's clock
    starts at one interval, as instruments record a step), the held potential noisy by 1 mV: two
    holds of 0.4 s and 0.6 s, each sample's time since its jump exact."""
    rng = np.random.default_rng(0)
    e = np.concatenate([np.full(400, 0.3), np.full(600, -0.2)]) + rng.uniform(-1e-3, 1e-3, 1000)
    tr = trace_from_measurement(_record(e, offset=1e-3))
    assert tr.is_step and tr.scan_rate is None and tr.fitted is None
    assert np.allclose(tr.vertices, (0.3, -0.2), atol=1e-3)
    assert np.allclose(tr.holds, (0.4, 0.6), rtol=1e-9)
    t_true = 1e-3 * np.arange(1, 1001)
    assert np.allclose(tr.program_time, t_true, rtol=1e-12)
    assert np.allclose(tr.since_jump, np.where(t_true <= 0.4 + 1e-12, t_true, t_true - 0.4), atol=1e-12)


def test_a_record_starting_at_the_step_leaves_that_sample_out():
    """A file whose clock starts at 0 (or at an unrelated offset) has its first sample at the jump,
    where the current is unbounded: that sample is not fitted, the others are."""
    for offset in (None, 12.5):
        tr = trace_from_measurement(_record(np.full(200, -0.4), offset=offset))
        assert tr.is_step and tr.holds == pytest.approx((0.199,))
        assert not tr.fitted[0] and tr.fitted[1:].all()


def test_sweeps_are_not_read_as_steps_and_steps_take_no_sweeps():
    """A CV (even a coarse one) stays a sweep; ``sweeps`` on a step record is refused by name."""
    e = np.concatenate([np.linspace(0.3, -0.3, 61), np.linspace(-0.3, 0.3, 61)[1:]])
    assert not trace_from_measurement(_record(e), scan_rate=0.1).is_step
    with pytest.raises(ValueError, match="sweeps"):
        trace_from_measurement(_record(np.full(100, -0.4), offset=1e-3), sweeps="first")


def test_the_step_sequence_follows_cottrell_from_its_first_point():
    """``sim.step_sequence`` at one diffusion-limited level is Cottrell's n F A C sqrt(D / pi t)
    within 2 % at every output point; a second level back to where nothing reacts gives the
    reverse transient of a double step, its current at the end of the second hold within 2 % of
    Cottrell's reverse formula (Bard & Faulkner eq. 5.7.14)."""
    d, hold = 1e-5, 0.5
    couple = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=d, d_red=d, c_ox=1.0, c_red=0.0)
    r = sim.simulate(sim.step_sequence([-0.5, 0.5], [hold, hold]), [couple], sim.Cell())
    t, i = np.asarray(r.time, np.float64), np.asarray(r.current, np.float64)
    scale = sim.FARADAY * 1e-6 * np.sqrt(d / np.pi)
    first = (t > 0) & (t <= hold)
    assert np.max(np.abs(i[first] / (-scale / np.sqrt(t[first])) - 1)) < 0.02
    late = t > hold * 1.05
    reverse = scale * (1 / np.sqrt(t[late] - hold) - 1 / np.sqrt(t[late]))
    assert np.max(np.abs(i[late] / reverse - 1)) < 0.02
