"""The readers on published measurements (../shared/realdata, GPL-3.0, read in place, never copied).

Checks are facts about the experiments (the realdata README, electrochemistry), not the readers'
own output: point counts, potential windows, scan rates, peak currents, sqrt(v) scaling,
Randles-Sevcik, peak separations, formal potentials, and the instruments' own clocks.
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import numpy as np
import pytest

from ecsfm import io

REALDATA = Path(os.environ.get("ECSFM_REALDATA") or Path(__file__).resolve().parents[3] / "shared" / "realdata")


def _files(folder: str, pattern: str) -> list[Path]:
    files = sorted((REALDATA / folder).glob(pattern))
    if not files:
        pytest.skip(f"real data not found: {REALDATA / folder} (set ECSFM_REALDATA to the realdata folder)")
    return files


def _peaks(m: io.Measurement):
    """(vertex index, (E, I) of the cathodic peak, (E, I) of the anodic peak) of a one-cycle CV."""
    e, i = m.potential, m.current
    vertex = int(np.argmin(e) if e[1] < e[0] else np.argmax(e))
    kc, ka = int(np.argmin(i)), int(np.argmax(i))
    return vertex, kc, ka, (e[kc], i[kc]), (e[ka], i[ka])


# ---------------------------------------------------------------- RuHex on glassy carbon, 7 scan rates


@pytest.fixture(scope="module")
def ruhex():
    files = _files("ruhex_gc_freesim", "RuHex_GCE_*.csv")
    out = {}
    for f in files:
        v_name = float(re.search(r"RuHex_GCE_(.+)\.csv", f.name).group(1))
        out[v_name] = io.read(f)
    return out


def test_ruhex_points_window_scan_rate_and_duration(ruhex):
    assert sorted(ruhex) == [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4]
    for v, m in ruhex.items():
        assert m.metadata["format"] == "csv"
        assert m.n_points == 1600
        assert m.scan_rate == pytest.approx(v, rel=1e-12)
        assert "file name" in m.metadata["scan_rate_source"]
        # one cycle 0.2 -> -0.6 -> 0.2 V in 1 mV steps (the last point is 0.199 V, one step short)
        assert m.potential[0] == pytest.approx(0.2, abs=1e-9)
        assert m.potential.min() == pytest.approx(-0.6, abs=1e-9)
        assert m.potential[-1] == pytest.approx(0.2, abs=1.5e-3)
        assert m.n_cycles == 1
        # t = |dE| / v: 1.6 V of sweep (less the one missing 1 mV step: 0.06 %)
        assert m.duration == pytest.approx(1.6 / v, rel=1e-3)
        assert np.allclose(np.diff(m.time), 1e-3 / v, rtol=1e-6)


def test_ruhex_peaks_sign_size_and_sqrt_scan_rate(ruhex):
    vs, ipc = [], []
    for v, m in sorted(ruhex.items()):
        vertex, kc, ka, (epc, i_c), (epa, i_a) = _peaks(m)
        # IUPAC: the Ru(III) reduction peak is negative and on the negative-going sweep;
        # the re-oxidation peak is positive, on the way back, at a higher potential.
        assert i_c < 0 < i_a and kc < vertex < ka and epa > epc
        # reversible one-electron couple: peak separation near 59 mV (a little more with Ru)
        assert 0.055 < epa - epc < 0.080
        # formal potential from the source's analysis: E0' ~ -0.181 V vs SCE
        assert (epa + epc) / 2 == pytest.approx(-0.181, abs=0.005)
        vs.append(v)
        ipc.append(-i_c)
    # README: -4.4 uA at 5 mV/s and -35.3 uA at 0.4 V/s
    assert -ipc[0] == pytest.approx(-4.4e-6, rel=0.05)
    assert -ipc[-1] == pytest.approx(-35.3e-6, rel=0.05)
    slope = np.polyfit(np.log(vs), np.log(ipc), 1)[0]
    assert slope == pytest.approx(0.5, abs=0.05)


def test_ruhex_randles_sevcik_at_the_faster_scans(ruhex):
    """1 mM, A = 0.0707 cm^2, D = 8.4e-6 cm^2/s (README). Slow scans sit above planar
    Randles-Sevcik by the disc's edge diffusion (4nFDCr ~ 0.5 uA), so only v >= 0.05 V/s."""
    from ecsfm.sim.analytic import randles_sevcik_peak_current

    for v, m in ruhex.items():
        if v >= 0.05:
            rs = randles_sevcik_peak_current(1, 0.0707, 1.0, 8.4e-6, v)
            assert -m.current.min() == pytest.approx(rs, rel=0.05)


# ---------------------------------------------------------------- PalmSens PSTrace, UTF-16


@pytest.fixture(scope="module")
def palmsens():
    return {int(re.search(r"ECSA_(\d+)mV", f.name).group(1)): (f, io.read(f))
            for f in _files("palmsens_ferricyanide_gc", "ECSA_*mV*.csv")}


def test_palmsens_imports_unedited_with_units_and_scan_rates_from_names(palmsens):
    assert sorted(palmsens) == [5, 10, 20, 40, 60]
    for mv, (f, m) in palmsens.items():
        assert m.metadata["format"] == "palmsens" and m.metadata["encoding"] == "utf-16"
        assert m.scan_rate == pytest.approx(mv * 1e-3, rel=1e-12)
        assert "file name" in m.metadata["scan_rate_source"]
        # the first data row, parsed here independently: current written in uA, read in A
        rows = [r for r in f.read_text(encoding="utf-16").splitlines() if re.match(r"^[-\d.]+E", r)]
        e0, i0 = (float(x) for x in rows[0].split(","))
        assert m.potential[0] == e0 and m.current[0] == pytest.approx(i0 * 1e-6, rel=1e-12)
        # window 0.7 / -0.1 V, start 0.69 V, 2 mV steps, first scan only
        assert m.potential[0] == pytest.approx(0.69, abs=2e-3)
        assert m.potential.min() == pytest.approx(-0.1, abs=2e-3)
        assert m.potential.max() == pytest.approx(0.7, abs=2e-3)
        assert m.n_cycles == 1
        first = m.select_cycle(0)
        assert first.n_points == m.n_points and first.time[0] == 0.0
        assert np.median(np.abs(np.diff(m.potential))) == pytest.approx(2e-3, rel=0.05)
        assert 1e-6 < -m.current.min() < 1e-4  # tens of uA on a 3 mm disc, not uA read as A


def test_palmsens_instrument_clock_confirms_file_name_scan_rate(palmsens):
    """Each file spans 'Date and time measurement' .. 'Date and time' on the instrument clock:
    four scans (README) plus a few seconds of set-up. The rebuilt one-scan duration must fit
    that; the 'Notes' line (scanrate0.005 in every file) would not."""
    for mv, (_, m) in palmsens.items():
        t0 = datetime.datetime.fromisoformat(m.metadata["date_measured"])
        t1 = datetime.datetime.fromisoformat(m.metadata["date_saved"])
        elapsed = (t1 - t0).total_seconds()
        assert 4 * m.duration <= elapsed <= 4 * m.duration + 30, (mv, elapsed, m.duration)


def test_palmsens_peaks_iupac_and_kinetics(palmsens):
    seps, mids, ipc = [], [], []
    for mv, (_, m) in sorted(palmsens.items()):
        vertex, kc, ka, (epc, i_c), (epa, i_a) = _peaks(m)
        # ferricyanide in the bulk: reduction peak on the negative-going sweep, negative (IUPAC)
        assert i_c < 0 < i_a and kc < vertex < ka
        seps.append(epa - epc)
        mids.append((epa + epc) / 2)
        ipc.append(-i_c)
    # README: peak separation grows from ~100 to ~185 mV with scan rate (slow kinetics / Ru)
    assert np.all(np.diff(seps) > 0)
    assert seps[0] == pytest.approx(0.100, abs=0.015) and seps[-1] == pytest.approx(0.185, abs=0.015)
    # the formal potential does not move with scan rate; peak current grows with it
    assert np.ptp(mids) < 0.01
    assert np.all(np.diff(ipc) > 0)


# ---------------------------------------------------------------- Autolab NOVA


@pytest.fixture(scope="module")
def autolab():
    return {int(re.search(r"ECSA_(\d+)mV", f.name).group(1)): io.read(f)
            for f in _files("autolab_ferricyanide", "ECSA_*mV.txt")}


def test_autolab_time_scan_rate_and_sign(autolab):
    assert sorted(autolab) == [20, 100]
    mids, seps = [], []
    for mv, m in sorted(autolab.items()):
        assert m.metadata["format"] == "autolab"
        assert m.scan_rate == pytest.approx(mv * 1e-3, rel=1e-12)  # "Column 5 (V/s)"
        assert m.metadata["time_offset_s"] > 0  # NOVA's clock did not start at this scan
        assert m.time[0] == 0 and np.all(np.diff(m.time) > 0)
        # the instrument's time column agrees with the stated scan rate: |dE|/dt on the sweep
        de, dt = np.abs(np.diff(m.potential)), np.diff(m.time)
        assert np.median(de / dt) == pytest.approx(mv * 1e-3, rel=0.01)
        # ... and with the file name
        assert io.scan_rate_from_filename(f"ECSA_{mv:04d}mV.txt")[0] == pytest.approx(m.scan_rate)
        vertex, kc, ka, (epc, i_c), (epa, i_a) = _peaks(m)
        assert i_c < 0 < i_a and kc < vertex < ka
        mids.append((epa + epc) / 2)
        seps.append(epa - epc)
    assert abs(mids[0] - mids[1]) < 0.005 and seps[1] > seps[0]


def test_real_files_loop_orientation_is_iupac():
    """All three published sets are IUPAC; the loop test that ``read_chi`` uses agrees on each."""
    for folder, pattern in (("ruhex_gc_freesim", "*.csv"), ("palmsens_ferricyanide_gc", "*.csv"),
                            ("autolab_ferricyanide", "ECSA_*.txt")):
        for f in _files(folder, pattern):
            m = io.read(f)
            assert io.loop_orientation(m.potential, m.current) > 0.1
            assert "warning" not in m.metadata
