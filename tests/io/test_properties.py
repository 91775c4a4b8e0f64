"""Property tests (hypothesis): write -> read round trips and cycle counting on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ecsfm import io

_FINITE = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False)
# The number of examples and the seeding come from the hypothesis profile (tests/conftest.py: "ci",
# derandomised, by default; HYPOTHESIS_PROFILE=explore for more, random examples).
_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def traces(draw):
    n = draw(st.integers(2, 120))
    dt = draw(st.lists(st.floats(1e-4, 10.0, allow_nan=False), min_size=n - 1, max_size=n - 1))
    t = np.concatenate([[0.0], np.cumsum(dt)])
    e = np.asarray(draw(st.lists(st.floats(-5, 5, allow_nan=False, allow_subnormal=False), min_size=n, max_size=n)))
    i = np.asarray(draw(st.lists(_FINITE, min_size=n, max_size=n)))
    return t, e, i


@_SETTINGS
@given(trace=traces(), delim=st.sampled_from([",", "\t", ";", " "]),
       unit=st.sampled_from(["A", "mA", "uA", "µA", "nA", "pA"]))
def test_csv_write_read_round_trip(tmp_path, trace, delim, unit):
    """Any finite table written at full precision reads back exactly (current scaled by its unit)."""
    t, e, i = np.unique(trace[0]), trace[1], trace[2]
    e, i = e[: t.size], i[: t.size]
    assume(t.size >= 2)  # np.unique may merge times: a table needs two distinct ones
    header = delim.join(["time/s", "potential/V", f"current/{unit}"])
    body = "\n".join(delim.join(repr(float(x)) for x in row) for row in zip(t, e, i))
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n" + body + "\n")
    m = io.read(path, fmt="csv", sign_convention="iupac")
    scale = {"A": 1.0, "mA": 1e-3, "uA": 1e-6, "µA": 1e-6, "nA": 1e-9, "pA": 1e-12}[unit]
    assert np.array_equal(m.time, t) and np.array_equal(m.potential, e)
    assert np.array_equal(m.current, i * scale)


_META = st.dictionaries(st.text(min_size=1, max_size=12),
                        st.one_of(st.text(max_size=20), st.integers(-10**9, 10**9), _FINITE), max_size=6)


@_SETTINGS
@given(trace=traces(), meta=_META, rate=st.one_of(st.none(), st.floats(1e-4, 1e3)),
       cuts=st.lists(st.integers(1, 119), max_size=3))
def test_npz_round_trip(tmp_path, trace, meta, rate, cuts):
    t, e, i = trace
    cycle = np.zeros(t.size, np.int64)
    for c in sorted({k for k in cuts if k < t.size}):
        cycle[c:] += 1
    m = io.Measurement(time=t, potential=e, current=i, scan_rate=rate, cycle=cycle, metadata=meta)
    back = io.load_npz(io.save_npz(m, tmp_path / "m.npz"))
    for name in ("time", "potential", "current", "cycle"):
        assert np.array_equal(getattr(back, name), getattr(m, name))
    assert back.scan_rate == m.scan_rate and dict(back.metadata) == dict(m.metadata)


@settings(deadline=None)
@given(e_start=st.floats(-0.5, 0.5), span=st.floats(0.2, 1.0), down=st.booleans(),
       step=st.sampled_from([1e-3, 2e-3, 2.44e-3, 5e-3]), cycles=st.integers(1, 4),
       noise=st.sampled_from([0.0, 1e-4]), seed=st.integers(0, 2**16))
def test_split_cycles_counts_triangle_cycles(e_start, span, down, step, cycles, noise, seed):
    """A triangle starting at one vertex and swept ``cycles`` times splits into that many
    cycles of equal length (to a point), with or without 0.1 mV of potential noise."""
    e_vertex = e_start - span if down else e_start + span
    n = round(span / step)
    leg = e_start + (e_vertex - e_start) * np.arange(n) / n
    one = np.concatenate([leg, e_vertex + (e_start - e_vertex) * np.arange(n) / n])
    e = np.concatenate([one] * cycles + [[e_start]])
    e = e + noise * np.random.default_rng(seed).standard_normal(e.size)
    c = io.split_cycles(e)
    assert c[-1] == cycles - 1
    assert np.all(np.abs(np.bincount(c) - one.size) <= 2)


@settings(deadline=None)
@given(mv=st.integers(1, 9999), prefix=st.sampled_from(["ECSA", "cv", "Fe_GC"]),
       suffix=st.sampled_from(["", "_scan1-SWV", "_run2"]))
def test_scan_rate_from_a_mV_file_name(mv, prefix, suffix):
    v, source = io.scan_rate_from_filename(f"{prefix}_{mv:04d}mV{suffix}.csv")
    assert v == pytest.approx(mv * 1e-3, rel=1e-12) and "file name" in source
