"""Property tests (hypothesis) of the instrument readers: a random triangular sweep written in the
layout of a PalmSens PSTrace, Metrohm Autolab NOVA, CH Instruments or BioLogic EC-Lab export reads
back, through the format's reader and through ``read(fmt="auto")``, as it was written.

The exports are written by the synthetic writers of ``test_readers.py``. Potentials lie on a grid
of 0.1 mV (1 mV for CHI, which writes three decimals), so every format writes them exactly and
they must read back bit for bit; currents read back to half a unit in the last digit the format
writes. The CSV and npz round trips and the cycle splitter alone are in ``test_properties.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecsfm import io
from ecsfm.io._read import LOOP_MIN
from tests.io.test_readers import _chi_text, _mpt, _nova_text, _palmsens_text, write

_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _rounding(digits: int) -> float:
    """Largest relative error of a number written with ``digits`` digits after the point of a
    mantissa in [1, 10) (``%.6E`` -> 6): half a unit in the last digit, 0.5 * 10**-digits, plus
    1e-15 for the float64 unit scaling (A <-> uA, mA) done on each side."""
    return 0.5 * 10.0**-digits + 1e-15


class Trace(NamedTuple):
    """A triangular sweep start -> vertex -> start, ``cycles`` times, then the start once more.

    ``e`` (N,) V on the grid; ``travelled`` (N,) V, potential travelled from the first point
    (exact: summed in integer grid units); ``cycle`` (N,) 0-based cycle each point was written
    in (a cycle begins at the starting potential); ``direction`` (N,) +-1, the sign of dE/dt
    leading into each point; ``i`` (N,) A, random signs and magnitudes log-uniform within a
    random part of 1e-9..1e-3 A; ``i_loop`` (N,) A, IUPAC charging-like current (sign of dE/dt,
    magnitude 1-2 x a random 1e-9..1e-3 A) whose loop orientation is unambiguous.
    """

    e: np.ndarray
    travelled: np.ndarray
    cycle: np.ndarray
    direction: np.ndarray
    i: np.ndarray
    i_loop: np.ndarray
    n: int
    cycles: int
    step: float


@st.composite
def sweeps(draw, grid: int = 1) -> Trace:
    """Start in +-1 V, step 0.1-10 mV, 5-150 points per leg, either direction, 1-3 cycles;
    ``grid`` is the potential resolution in units of 0.1 mV (1 mV steps and start for CHI)."""
    start = grid * draw(st.integers(-10_000 // grid, 10_000 // grid))
    step = grid * draw(st.integers(1, 100 // grid))
    n = draw(st.integers(5, 150))
    d = draw(st.sampled_from([-1, 1]))
    cycles = draw(st.integers(1, 3))
    k = np.arange(n)
    one = np.concatenate([start + d * step * k, start + d * step * (n - k)])
    q = np.concatenate([np.tile(one, cycles), [start]])  # integer units of 0.1 mV
    dq = np.diff(q, prepend=q[0] - d)
    lo = draw(st.floats(-9.0, -3.0))
    hi = draw(st.floats(lo, -3.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    i = rng.choice([-1.0, 1.0], q.size) * 10.0 ** rng.uniform(lo, hi, q.size)
    i_loop = np.sign(dq) * 10.0**hi * (1.0 + rng.uniform(0.0, 1.0, q.size))
    return Trace(e=q / 1e4, travelled=np.concatenate([[0], np.cumsum(np.abs(np.diff(q)))]) / 1e4,
                 cycle=np.minimum(np.arange(q.size) // (2 * n), cycles - 1), direction=np.sign(dq),
                 i=i, i_loop=i_loop, n=n, cycles=cycles, step=step / 1e4)


def _read_both(path, reader, fmt: str, encoding: str) -> io.Measurement:
    """The format's reader and ``read(fmt="auto")`` give the same measurement; the content is
    detected as ``fmt``."""
    assert io.detect_format(path.read_bytes().decode(encoding)) == fmt
    m, auto = reader(path), io.read(path, fmt="auto")
    assert m.metadata["format"] == auto.metadata["format"] == fmt
    for name in ("time", "potential", "current", "cycle"):
        assert np.array_equal(getattr(m, name), getattr(auto, name)), name
    assert m.scan_rate == auto.scan_rate and dict(m.metadata) == dict(auto.metadata)
    return m


def _assert_time_from_0(m: io.Measurement) -> None:
    assert m.time[0] == 0.0 and np.all(np.diff(m.time) > 0)


def _assert_rebuilt_time(m: io.Measurement, trace: Trace, v: float) -> None:
    """No time column: time = potential travelled / v. The reader sums |dE| of the N <= 901
    parsed potentials in float64: each difference of two parsed values near E is off by up to
    ~2 eps |E| (absolute: with |E| = 0.6 V and steps of 0.1 mV that is 1e-12 relative to the
    step, not to the sum), so the rebuilt time is within N x 2 eps max|E| / v of the exact one."""
    _assert_time_from_0(m)
    assert m.metadata["time_source"].startswith("rebuilt")
    atol = trace.e.size * 2 * np.finfo(np.float64).eps * np.abs(trace.e).max() / v
    np.testing.assert_allclose(m.time, trace.travelled / v, rtol=1e-12, atol=atol)
    assert m.duration == pytest.approx(trace.travelled[-1] / v, rel=1e-12, abs=atol)


def _assert_vertex_cycles(m: io.Measurement, trace: Trace) -> None:
    """No cycle column: cycles split at the sweep's vertices. ``split_cycles`` keeps the return
    to the starting potential in the cycle it closes, so cycle c >= 1 starts one point after the
    written start (point 2 n c)."""
    k = np.arange(trace.e.size)
    assert m.metadata["cycle_source"] == "potential vertices"
    assert np.array_equal(m.cycle, np.minimum(np.maximum(k - 1, 0) // (2 * trace.n), trace.cycles - 1))


@_SETTINGS
@given(trace=sweeps(), rate_mv=st.integers(1, 9999))
def test_palmsens_round_trip(tmp_path, trace, rate_mv):
    """PSTrace CSV (UTF-16 with BOM, units line 'V,µA', '%.6E' numbers, no time column, no scan
    rate inside): potential exact, current in A to 7 digits, IUPAC kept; scan rate from the file
    name ('cv_0100mV.csv'); time rebuilt; cycles from the vertices."""
    path = write(tmp_path / f"cv_{rate_mv:04d}mV.csv", _palmsens_text(trace.e, trace.i * 1e6), encoding="utf-16")
    assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    m = _read_both(path, io.read_palmsens, "palmsens", "utf-16")
    assert m.metadata["encoding"] == "utf-16" and m.metadata["current_unit"] == "µA"
    assert np.array_equal(m.potential, trace.e)
    np.testing.assert_allclose(m.current, trace.i, rtol=_rounding(6), atol=0)
    assert m.metadata["sign_convention_in_file"] == "iupac"
    v = rate_mv * 1e-3
    assert m.scan_rate == pytest.approx(v, rel=1e-12) and m.metadata["scan_rate_source"].startswith("file name")
    _assert_rebuilt_time(m, trace, v)
    _assert_vertex_cycles(m, trace)


@_SETTINGS
@given(trace=sweeps(), rate=st.floats(1e-3, 10.0), t0=st.floats(0.0, 1e4))
def test_autolab_round_trip(tmp_path, trace, rate, t0):
    """NOVA text (UTF-8 with BOM, tab-separated, numbers at full precision, the instrument clock
    in 'Time (s)', the scan rate in the first row of 'Column 5 (V/s)', 'Scan' numbered from 1,
    placeholder rows at the end): potential, current (A, IUPAC) and scan exactly as written;
    time from the column, moved to start at 0 with the offset in the metadata."""
    t = t0 + trace.travelled / rate
    scan = trace.cycle + 1
    path = write(tmp_path / "nova.txt", _nova_text(trace.e, trace.i, t, scan, rate))
    m = _read_both(path, io.read_autolab, "autolab", "utf-8-sig")
    assert np.array_equal(m.potential, trace.e) and np.array_equal(m.current, trace.i)
    assert m.metadata["sign_convention_in_file"] == "iupac"
    assert m.scan_rate == rate and m.metadata["scan_rate_source"] == "column 'Column 5 (V/s)'"
    _assert_time_from_0(m)
    assert np.array_equal(m.time, t - t[0]) and m.metadata["time_offset_s"] == t[0]
    # (t0 + x) - t0 differs from x by a few ulps of t[-1] <= 1e4 + 900 s
    tol = 8 * np.finfo(float).eps * t[-1]
    np.testing.assert_allclose(m.time, trace.travelled / rate, rtol=1e-12, atol=tol)
    assert m.duration == pytest.approx(trace.travelled[-1] / rate, rel=1e-12, abs=tol)
    assert m.metadata["cycle_source"] == "column 'Scan'" and np.array_equal(m.cycle, trace.cycle)


@_SETTINGS
@given(trace=sweeps(grid=10), rate=st.floats(1e-3, 10.0), written_in=st.sampled_from(["iupac", "us"]),
       loop=st.booleans())
def test_chi_round_trip(tmp_path, trace, rate, written_in, loop):
    """CHI text (UTF-8, 'Potential/V, Current/A', potential '%.3f', current '%.4e', rows split
    by 'Segment N:' lines, 'Scan Rate (V/s) = v' in the header, no time column): potential exact;
    the metadata's sign convention follows the documented rule (loop orientation >= LOOP_MIN
    decides, else US is assumed) and the current is that convention's as-written current, in A
    to 5 digits, turned to IUPAC. A charging-like loop (``loop``) is always judged right, so a
    US file comes back IUPAC. Time rebuilt from the header's scan rate; cycles from the vertices."""
    i_iupac = trace.i_loop if loop else trace.i
    written = i_iupac if written_in == "iupac" else -i_iupac
    path = write(tmp_path / "chi.txt", _chi_text(trace.e, written, rate=rate, segments=2 * trace.cycles))
    m = _read_both(path, io.read_chi, "chi", "utf-8")
    assert np.array_equal(m.potential, trace.e)
    convention, source = m.metadata["sign_convention_in_file"], m.metadata["sign_convention_source"]
    as_written = -m.current if convention == "us" else m.current
    np.testing.assert_allclose(as_written, written, rtol=_rounding(4), atol=0)
    r = io.loop_orientation(m.potential, as_written)
    if r is None or abs(r) < LOOP_MIN:
        assert convention == "us" and source.startswith("assumed US"), (r, source)
    else:
        assert convention == ("iupac" if r > 0 else "us") and source.startswith("detected from the loop"), (r, source)
    if loop:
        assert convention == written_in, (r, source)
        np.testing.assert_allclose(m.current, i_iupac, rtol=_rounding(4), atol=0)
    assert m.scan_rate == rate and m.metadata["scan_rate_source"] == "header 'Scan Rate (V/s)'"
    _assert_rebuilt_time(m, trace, rate)
    _assert_vertex_cycles(m, trace)


@_SETTINGS
@given(trace=sweeps(), rate_mv=st.floats(1.0, 1000.0), k0=st.integers(0, 200), first_cycle=st.integers(0, 1),
       decimal=st.sampled_from([".", ","]))
def test_biologic_round_trip(tmp_path, trace, rate_mv, k0, first_cycle, decimal):
    """EC-Lab .mpt (Windows-1252, tab-separated, '%.6E' numbers with a decimal point or comma,
    'dE/dt' in mV/s written '%.3f', '<I>/mA', 'time/s' starting k0 samples late, float 'cycle
    number' from 0 or 1): potential exact, current in A to 7 digits, IUPAC kept; time from the
    column moved to start at 0; scan rate from the header; cycles as written, counted from 0."""
    rate_text = f"{rate_mv:.3f}"
    v = float(rate_text) * 1e-3
    t = (k0 * trace.step + trace.travelled) / v
    text = _mpt(trace.e, trace.i * 1e3, t, first_cycle + trace.cycle.astype(float), decimal=decimal,
                area=f"0{decimal}071 cm²", rate=rate_text.replace(".", decimal), rate_unit="mV/s")
    path = tmp_path / "cv_C01.mpt"
    path.write_bytes(text.encode("cp1252"))
    m = _read_both(path, io.read_biologic, "biologic", "cp1252")
    assert m.metadata["encoding"] == "cp1252" and m.metadata["current_unit"] == "mA"
    assert np.array_equal(m.potential, trace.e)
    np.testing.assert_allclose(m.current, trace.i, rtol=_rounding(6), atol=0)
    assert m.metadata["sign_convention_in_file"] == "iupac"
    assert m.scan_rate == pytest.approx(v, rel=1e-12) and m.metadata["scan_rate_source"] == "header 'dE/dt'"
    # each written time is off by <= 5e-7 of itself, so a difference of two by <= 1e-6 t[-1]
    _assert_time_from_0(m)
    tol = 2 * _rounding(6) * t[-1]
    np.testing.assert_allclose(m.time, trace.travelled / v, rtol=0, atol=tol)
    assert m.duration == pytest.approx(trace.travelled[-1] / v, abs=tol)
    assert m.metadata["time_offset_s"] == pytest.approx(t[0], rel=_rounding(6), abs=0)
    assert m.metadata["cycle_source"] == "column 'cycle number'" and np.array_equal(m.cycle, trace.cycle)
