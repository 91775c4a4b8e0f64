"""Every ``ecsfm simulate`` technique through ``ecsfm.cli.main``: the CSV it writes obeys the
physics of that experiment (textbook formulas, with the tolerances of the library's own tests in
tests/sim/, since the command adds no numerics of its own), so a flag that does not reach the
simulator, a wrong column or a wrong unit fails. tests/test_cli.py covers the files, headers and
error messages (and swv / ca / eis at default settings); this file covers every technique's
numbers, with the flags a default run leaves untouched.
"""

import math

import numpy as np
import pytest

from ecsfm import sim
from ecsfm.cli import main
from ecsfm.sim import analytic

AREA, D, V = 0.0707, 1e-5, 0.1  # the command's default area (cm^2) and D (cm^2/s); scan rate V/s
REVERSIBLE = ["--k0", "10"]  # psi ~ 90: reversible at 0.1 V/s
# Independent constants (CODATA 2018, exact in the 2019 SI).
F, R = 96485.33212, 8.314462618


def _simulate(tmp_path, technique, *args):
    """Run ``ecsfm simulate technique args --out X.csv``; returns {column name: values}."""
    out = tmp_path / f"{technique}.csv"
    assert main(["simulate", technique, *args, "--out", str(out)]) == 0
    table = np.genfromtxt(out, delimiter=",", names=True, comments="#")  # as a user reads it
    return {n: table[n] for n in table.dtype.names}


def test_simulate_a_microsphere_reaches_its_steady_state(tmp_path):
    # a 5 um sphere at 10 mV/s: the plateau is 4 pi n F D C r0 within the transient term
    # r0 / sqrt(pi D t) (< 1.5 % here); the area written is the sphere's 4 pi r0^2
    r0 = 5e-4
    t = _simulate(tmp_path, "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.01", "--step", "0.002",
                  *REVERSIBLE, "--geometry", "sphere", "--radius", "5um")
    steady = -4 * math.pi * F * D * 1e-6 * r0
    assert abs(t["current_A"].min() / steady - 1) < 0.03
    header = (tmp_path / "cv.csv").read_text()
    assert f"area = {4 * math.pi * r0**2!r}" in header and "geometry = sphere" in header


def test_simulate_a_microdisc_gives_aokis_peak(tmp_path):
    # a 10 um disc at 10 mV/s (p = 0.2): the peak is 4nFDCr (0.34 e^-0.66p + 0.66 + 0.351 p) within
    # 2 % (Aoki et al. 1984); the area written is the disc's pi r^2, "microdisc" the disc by another name
    r = 1e-3
    t = _simulate(tmp_path, "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.01", "--step", "0.002",
                  *REVERSIBLE, "--geometry", "microdisc", "--radius", "10um")
    p = r * math.sqrt(F * 0.01 / (R * 298.15 * D))
    aoki = 4 * F * D * 1e-6 * r * (0.34 * math.exp(-0.66 * p) + 0.66 - 0.13 * math.exp(-11 / p) + 0.351 * p)
    assert abs(-t["current_A"].min() / aoki - 1) < 0.02
    assert f"area = {math.pi * r**2!r}" in (tmp_path / "cv.csv").read_text()


def test_simulate_a_rotating_disc_reaches_the_levich_current(tmp_path):
    # 2.5 mm disc at 1000 rpm in water: 0.62045 n F A D^2/3 w^1/2 nu^-1/6 C within 1 % at the end
    t = _simulate(tmp_path, "lsv", "--e-start", "0.3", "--e-end", "-0.3", "--scan-rate", "0.005", "--step", "0.002",
                  *REVERSIBLE, "--geometry", "rotating-disc", "--radius", "2.5mm", "--rpm", "1000")
    omega, nu, area = 1000 * 2 * math.pi / 60, 0.00893, math.pi * 0.25**2
    levich = 0.62045 * F * area * D ** (2 / 3) * omega**0.5 * nu ** (-1 / 6) * 1e-6
    assert abs(-t["current_A"][-1] / levich - 1) < 0.01


def test_simulate_a_thin_layer_gives_the_exhaustive_electrolysis_peak(tmp_path):
    # a 10 um layer at 1 mV/s: i_p = n^2 F^2 v A L C / (4 R T), the same on both sweeps
    t = _simulate(tmp_path, "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.001", "--step", "0.002",
                  *REVERSIBLE, "--geometry", "thin-layer", "--thickness", "10um", "--area", "0.1")
    peak = F**2 * 0.001 * 0.1 * 1e-3 * 1e-6 / (4 * R * 298.15)
    assert abs(-t["current_A"].min() / peak - 1) < 0.01 and abs(t["current_A"].max() / peak - 1) < 0.01


def _rs():
    return analytic.randles_sevcik_peak_current(1, AREA, 1.0, D, V)


def _ep_offset():
    """Reversible Ep - E1/2 of a reduction, V: -1.109 RT/F (-28.5 mV at 25 C)."""
    return analytic.REVERSIBLE_PEAK_OFFSET * R * 298.15 / F


def test_lsv_peak_is_randles_sevcik_at_e_half_minus_28_mv(tmp_path):
    # Within 1 % and 1.5 mV, as tests/sim/test_voltammetry_theory.py (1 mV samples, parabola-refined peak).
    c = _simulate(tmp_path, "lsv", "--e-start", "0.3", "--e-end", "-0.3", "--scan-rate", str(V), *REVERSIBLE)
    assert c["potential_V"][0] == pytest.approx(0.3) and c["potential_V"][-1] == pytest.approx(-0.3)
    assert c["time_s"][-1] == pytest.approx(0.6 / V, rel=1e-6)  # the sweep takes span / v
    ep, ip = sim.find_peak(c["potential_V"], c["current_A"], -1)
    assert abs(-ip / _rs() - 1) < 0.01
    assert abs(ep - _ep_offset()) < 1.5e-3


def test_cv_peaks_straddle_e0_by_the_reversible_separation(tmp_path):
    # --e0 0.1: the mid-peak potential is E1/2 = E0 (equal D) within 1.5 mV; switching 300 mV past
    # E0, Nicholson & Shain's separation is 57-58 mV (the 298.15 K test's 57-60 mV window).
    c = _simulate(tmp_path, "cv", "--e-start", "0.4", "--e-vertex", "-0.2", "--scan-rate", str(V), "--e0", "0.1",
                  *REVERSIBLE)
    e, i = c["potential_V"], c["current_A"]
    n = int(np.argmin(e)) + 1
    epc, ipc = sim.find_peak(e[:n], i[:n], -1)
    epa, _ = sim.find_peak(e[n:], i[n:], +1)
    assert abs(0.5 * (epa + epc) - 0.1) < 1.5e-3
    assert 0.057 <= epa - epc <= 0.060
    assert abs(-ipc / _rs() - 1) < 0.01


def test_staircase_sampled_early_in_each_stair_matches_the_linear_sweep(tmp_path):
    # Sampled at ~1/4 of 1 mV stairs, the staircase peak is the linear-sweep peak within 2 % (Bilewski
    # et al., J. Phys. Chem. 86 (1982) 3704; the library's test allows 2 %), at the reversible
    # potential within 1.5 mV; sampled at the end of 2 mV stairs (the defaults) it is lower by > 5 %
    # (measured 9 %): the sample fraction reaches the waveform.
    early = _simulate(tmp_path, "staircase", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", str(V),
                      "--step", "1e-3", "--sample-fraction", "0.25", *REVERSIBLE)
    k = int(np.argmin(early["current_A"]))
    assert abs(-early["current_A"][k] / _rs() - 1) < 0.02
    assert abs(early["potential_V"][k] - _ep_offset()) < 1.5e-3
    late = _simulate(tmp_path, "staircase", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", str(V),
                     *REVERSIBLE)
    assert -late["current_A"].min() < 0.95 * _rs()


def test_ca_follows_cottrell_with_every_couple_and_cell_flag(tmp_path):
    # A step 500 mV past E0 (diffusion-limited) with non-default n, C, D and area:
    # i = -nFAC sqrt(D / (pi t)) within 1 % from 1 % of the duration on (tests/sim/
    # test_transients_and_cell.py; measured 0.3 %). Each flag changes the current by 29 % or more.
    n, c_mm, d, area = 2, 2.5, 2e-5, 0.5
    c = _simulate(tmp_path, "ca", "--e-initial", "0.5", "--e-step", "-0.5", "--duration", "2", "--n", str(n),
                  "--c-ox", str(c_mm), "--d-ox", str(d), "--area", str(area), *REVERSIBLE)
    t = c["time_s"]
    m = t >= 0.02
    cottrell = -n * F * area * c_mm * 1e-6 * np.sqrt(d / (np.pi * t[m]))
    assert m.sum() > 50 and c["potential_V"][-1] == pytest.approx(-0.5)
    assert np.max(np.abs(c["current_A"][m] / cottrell - 1)) < 0.01


def test_double_step_reverse_transient(tmp_path):
    # Back to full re-oxidation at tau: i = nFAC sqrt(D/pi) (1/sqrt(t - tau) - 1/sqrt(t)) within 2 %
    # from 1.02 tau on (Bard & Faulkner 5.7.3; tests/sim/test_transients_and_cell.py; measured 0.3 %).
    tau = 1.0
    c = _simulate(tmp_path, "double-step", "--e-initial", "0.5", "--e-step", "-0.5", "--e-return", "0.5",
                  "--step-duration", str(tau), *REVERSIBLE)
    t = c["time_s"]
    m = t >= 1.02 * tau
    ref = F * AREA * 1e-6 * np.sqrt(D / np.pi) * (1 / np.sqrt(t[m] - tau) - 1 / np.sqrt(t[m]))
    assert np.max(np.abs(c["current_A"][m] / ref - 1)) < 0.02


def test_swv_peak_sits_at_e0_with_a_frequency_independent_dimensionless_height(tmp_path):
    # Reversible SWV: the net current peaks at E1/2 = E0 (--e0 0.05) to half the 5 mV staircase
    # step, and is forward minus reverse. Its dimensionless height di / (nFAC sqrt(D / (pi tp))),
    # tp = 1 / 2f, does not depend on frequency (Osteryoung): at 10 and 100 Hz within 1 %, as in
    # tests/sim/test_pulse_and_ac.py -- the raw peaks differ by sqrt(10).
    psi = []
    for f in (10.0, 100.0):
        c = _simulate(tmp_path, "swv", "--e-start", "0.3", "--e-end", "-0.3", "--e0", "0.05", "--frequency", str(f),
                      *REVERSIBLE)
        diff = c["difference_current_A"]
        k = int(np.argmax(np.abs(diff)))
        assert abs(c["base_potential_V"][k] - 0.05) <= 2.5e-3 + 1e-9 and diff[k] < 0  # a reduction
        np.testing.assert_allclose(diff, c["forward_current_A"] - c["reverse_current_A"], atol=1e-6 * abs(diff[k]))
        psi.append(-diff[k] / (F * AREA * 1e-6 * math.sqrt(D / (math.pi * 0.5 / f))))
    assert abs(psi[0] / psi[1] - 1) < 0.01, psi


def test_dpv_peak_position_and_height(tmp_path):
    # Parry & Osteryoung (Bard & Faulkner 7.3.16), a 50 mV pulse on a reduction scan: the peak at
    # E1/2 + dE/2 = E0 + 25 mV (to half the 5 mV step), height nFAC sqrt(D/(pi tp)) (1 - s)/(1 + s),
    # s = exp(nF dE / 2RT), within 4 % (depletion by earlier pulses, as in tests/sim/test_pulse_and_ac.py).
    c = _simulate(tmp_path, "dpv", "--e-start", "0.3", "--e-end", "-0.3", "--e0", "0.05", *REVERSIBLE)
    diff = c["difference_current_A"]
    k = int(np.argmax(np.abs(diff)))
    assert abs(c["base_potential_V"][k] - 0.075) <= 2.5e-3 + 1e-9
    s = math.exp(-0.05 * F / (2 * R * 298.15))
    expected = F * AREA * 1e-6 * math.sqrt(D / (math.pi * 0.05)) * (1 - s) / (1 + s)
    assert abs(-diff[k] / expected - 1) < 0.04


def _randles(freq_hz, *, ru, cdl, k0, temperature, c=1.0):
    """Ru + 1 / (j w Cdl A + 1 / (R_ct + sigma (1 - j) / sqrt(w))) at equilibrium, C_O = C_R = c mM,
    alpha = 0.5, equal D: R_ct = RT / (F^2 A k0 C), sigma = 2 RT / (F^2 A sqrt(2) C sqrt(D))."""
    w = 2 * np.pi * np.asarray(freq_hz)
    cc = c * 1e-6
    r_ct = R * temperature / (F**2 * AREA * k0 * cc)
    sigma = 2 * R * temperature / (F**2 * AREA * math.sqrt(2) * cc * math.sqrt(D))
    return ru + 1 / (1j * w * cdl * AREA + 1 / (r_ct + sigma * (1 - 1j) / np.sqrt(w)))


def test_sinusoid_samples_and_impedance(tmp_path):
    # 20 periods of 64 points at 10 Hz: 1281 rows 1/640 s apart, E = 5 mV sin(2 pi f t). A lock-in
    # on the last 10 periods gives Z = E / I, the Randles impedance within 2 % and 1 degree (as
    # tests/sim/test_pulse_and_ac.py: backward-Euler double layer, 64 points per period).
    f = 10.0
    c = _simulate(tmp_path, "sinusoid", "--e-dc", "0", "--amplitude", "0.005", "--frequency", str(f),
                  "--n-periods", "20", "--c-red", "1", "--k0", "0.01", "--ru", "10", "--cdl", "2e-5")
    t, e, i = c["time_s"], c["potential_V"], c["current_A"]
    assert t.size == 20 * 64 + 1
    # Times are float32 (spacing 2.4e-7 s at 2 s): steps to that, and E to that times the largest
    # slope 2 pi f x 5 mV = 0.31 V/s (7.5e-8 V).
    np.testing.assert_allclose(np.diff(t), 1 / (64 * f), atol=2.4e-7)
    np.testing.assert_allclose(e, 0.005 * np.sin(2 * np.pi * f * t), atol=1e-7)
    m = t >= 10 / f
    lock = np.exp(-2j * np.pi * f * t[m])
    z = np.sum(e[m] * lock) / np.sum(i[m] * lock)
    ref = _randles(f, ru=10.0, cdl=2e-5, k0=0.01, temperature=298.15)
    assert abs(abs(z) / abs(ref) - 1) < 0.02
    assert abs(np.degrees(np.angle(z) - np.angle(ref))) < 1.0


def test_eis_spectrum_is_the_randles_circuit_at_the_given_temperature(tmp_path):
    # The linearised spectrum at the equilibrium potential (C_O = C_R = 1 mM by default), 310 K:
    # the hand-computed Randles circuit at every frequency within 1e-5 (single-precision spectrum
    # written to 9 digits); at 1 MHz the real part is Ru. At 298.15 K R_ct would be 4 % lower.
    c = _simulate(tmp_path, "eis", "--ru", "25", "--cdl", "2e-5", "--k0", "1e-3", "--temperature", "310",
                  "--f-min", "0.01", "--f-max", "1e6", "--n-freq", "41")
    f = c["frequency_Hz"]
    np.testing.assert_allclose(f, np.logspace(-2, 6, 41), rtol=1e-6)
    z = c["z_real_ohm"] + 1j * c["z_imag_ohm"]
    ref = _randles(f, ru=25.0, cdl=2e-5, k0=1e-3, temperature=310.0)
    np.testing.assert_allclose(z, ref, rtol=1e-5)
    assert abs(z[-1].real - 25.0) < 0.01
    np.testing.assert_allclose(c["z_abs_ohm"], np.abs(ref), rtol=1e-5)
    np.testing.assert_allclose(c["phase_deg"], np.degrees(np.angle(ref)), atol=1e-3)


def test_simulate_mechanisms_from_the_command_line(tmp_path, capsys):
    # EC': the plateau n F A C sqrt(D k_cat) (2 %); surface couple: ip = F^2 v A G / 4RT (1 %);
    # EC in the pure-kinetic zone: the cathodic peak 29.6 mV further positive per decade of k_f.
    sweep = ["--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", str(V), *REVERSIBLE]
    cat = _simulate(tmp_path, "cv", *sweep, "--mechanism", "ECcat", "--k-cat", "100")
    assert abs(-cat["current_A"].min() / (F * AREA * 1e-6 * math.sqrt(D * 100.0)) - 1) < 0.02
    surf = _simulate(tmp_path, "cv", *sweep, "--mechanism", "surface", "--k0", "1e6", "--gamma", "1e-10",
                     "--step", "5e-4")
    assert abs(-surf["current_A"].min() / (F * F * V * AREA * 1e-10 / (R * 298.15 * 4)) - 1) < 0.01
    peaks = []
    for k in ("100", "1000"):
        t = _simulate(tmp_path, "cv", *sweep, "--mechanism", "EC", "--k-f", k)
        half = t["current_A"].size // 2
        peaks.append(t["potential_V"][np.argmin(t["current_A"][:half])])
    assert abs(peaks[1] - peaks[0] - math.log(10) * R * 298.15 / (2 * F)) <= 2e-3, peaks
    assert "mechanism = EC" in (tmp_path / "cv.csv").read_text()
    capsys.readouterr()
    assert main(["simulate", "cv", *sweep, "--mechanism", "CE", "--k-f", "1", "--out", str(tmp_path / "x.csv")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    for bad in (["EC2"], ["DISP1", "--k-f", "1"], ["EC2", "--k-dim", "1e5", "--couple", "e0=0.3"]):
        assert main(["simulate", "cv", *sweep, "--mechanism", *bad, "--out", str(tmp_path / "x.csv")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and ("--k-" in err or "on its own" in err), err
