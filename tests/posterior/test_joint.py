"""Joint inference over several measured traces (ecsfm.fm.joint) against known truth.

Synthetic scan-rate series are simulated with known parameters at a finer potential step than the
fit uses, with Gaussian noise; the joint posterior must contain the truth and pin E0 and D. The
published RuHex series (../shared/realdata, read in place; skipped when absent) is checked against
its source's E0' and for scan-rate independence of D.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ecsfm import io, sim
from ecsfm.cli import main
from ecsfm.posterior import JointConfig, fit_joint, trace_from_measurement

AREA = 0.07


def _series(rates, *, e0, k0, alpha, d, ru, cdl, noise_frac, seed, step=1e-3):
    rng = np.random.default_rng(seed)
    couple = sim.Couple(e0=e0, k0=k0, alpha=alpha, d_ox=d, d_red=d, c_ox=1.0, c_red=0.0)
    traces = []
    for v in rates:
        # finer than the fit in potential (step) and in space (first spacing 2.5e-4 growing by 1.1
        # against the default 1e-3 and 1.25): a discretisation error of the fit is not shared
        r = sim.simulate(sim.cyclic_voltammetry(0.25, -0.45, v, step=step), [couple], sim.Cell(area=AREA, ru=ru, cdl=cdl),
                         config=sim.SolverConfig(h0=2.5e-4, growth=1.1))
        i = np.asarray(r.current, np.float64)
        i = i + rng.normal(0.0, noise_frac * np.abs(i).max(), i.size)
        m = io.Measurement(time=np.asarray(r.time, np.float64), potential=np.asarray(r.potential, np.float64),
                           current=i, scan_rate=v, cycle=np.zeros(i.size, int), metadata={"source_file": f"{v}"})
        traces.append(trace_from_measurement(m))
    return traces


def test_joint_posterior_contains_the_truth_of_a_quasi_reversible_series(stat_seed):
    # Seed-driven (ECSFM_TEST_SEED): noise and sampler. Six parameters each inside a calibrated 99 %
    # interval: at most one of six outside fails at 1.5e-3 of seeds (binomial, 6 x 0.01), where
    # "all six inside 95 %" failed at ~26 % (0.95^6).
    truth = dict(e0=-0.1, k0=4e-3, alpha=0.5, d=7e-6, ru=30.0, cdl=2e-5)
    traces = _series([0.05, 0.5], noise_frac=0.01, seed=1 + stat_seed, **truth)
    res = fit_joint(traces, area=AREA, c_ox=1.0, config=JointConfig(points_per_trace=100), seed=stat_seed)
    p = res["parameters"]
    outside = []
    for name, key in (("e0", "e0"), ("k0", "k0"), ("d_ox", "d"), ("alpha", "alpha"), ("ru", "ru"), ("cdl", "cdl")):
        lo, hi = np.quantile(res["samples"][name], [0.005, 0.995])
        if not lo <= truth[key] <= hi:
            outside.append((name, float(lo), float(hi), truth[key]))
    assert len(outside) <= 1, outside
    assert abs(p["e0"]["q50"] - truth["e0"]) < 3e-3
    assert abs(p["d_ox"]["q50"] / truth["d"] - 1) < 0.05
    # Quasi-reversible (Lambda ~ 0.3-1 here): k0 is bounded on both sides, not just from below.
    assert not res["k0_bound"]["lower_bound_only"]
    assert p["k0"]["q975"] / p["k0"]["q025"] < 3.0
    # Noise of 1 % of each trace's peak: the residual RMS is that noise, not a misfit.
    for rms, t in zip(res["residual_rms_A"], traces):
        assert rms < 0.02 * np.abs(t.current).max()


def test_reversible_data_give_k0_only_a_lower_bound(stat_seed):
    traces = _series([0.05, 0.5], e0=0.0, k0=2.0, alpha=0.5, d=1e-5, ru=1.0, cdl=1e-5, noise_frac=0.01,
                     seed=2 + stat_seed)
    res = fit_joint(traces, area=AREA, c_ox=1.0, config=JointConfig(n_particles=256, points_per_trace=100),
                    seed=stat_seed)
    kb = res["k0_bound"]
    assert kb["lower_bound_only"], kb
    assert kb["matsuda_ayabe_lambda_q05_at_fastest"] > 1.0  # the lower bound is already in the fast regime
    assert abs(res["parameters"]["e0"]["q50"]) < 3e-3


def test_joint_cli_refuses_bad_input_in_one_line(tmp_path, capsys):
    traces = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for k, path in enumerate(traces):
        e = np.concatenate([np.linspace(0.2, -0.4, 300), np.linspace(-0.4, 0.2, 300)[1:]])
        path.write_text("E/V,I/A\n" + "\n".join(f"{x:.5f},{1e-6 * np.tanh(10 * x):.6e}" for x in e))
    cases = [
        ([], "c_ox"),  # no concentration
        (["--known", "c_ox=1", "--scan-rate", "0.1", "--scan-rate", "0.2", "--scan-rate", "0.3"], "scan-rate"),
        (["--known", "c_ox=1", "--known", "zeta=3"], "zeta"),
        (["--known", "c_ox=1"], "scan rate"),  # no scan rate anywhere
    ]
    for extra, word in cases:
        argv = ["infer", "--waveform", "measured", "--measurement", str(traces[0]), "--measurement", str(traces[1]),
                "--area", "0.07", "--out", str(tmp_path / "out"), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0], (extra, err)
    assert not (tmp_path / "out").exists()


REALDATA = Path(os.environ.get("ECSFM_REALDATA") or Path(__file__).resolve().parents[3] / "shared" / "realdata")


def test_ruhex_scan_rate_series_joint_fit(tmp_path):
    files = sorted((REALDATA / "ruhex_gc_freesim").glob("RuHex_GCE_*.csv"))
    if not files:
        pytest.skip(f"real data not found: {REALDATA / 'ruhex_gc_freesim'} (set ECSFM_REALDATA)")
    argv = ["infer", *[a for f in files for a in ("--measurement", str(f))], "--area", "0.0707", "--known", "c_ox=1.0",
            "--reference", "SCE", "--particles", "128", "--area-rsd", "0.02", "--conc-rsd", "0.02", "--out", str(tmp_path)]
    assert main(argv) == 0
    s = json.loads((tmp_path / "posterior_summary.json").read_text())
    assert s["engine"] == "simulator" and len(s["traces"]) == 7
    e0, d = s["parameters"]["e0"], s["parameters"]["d_ox"]
    # The source's E0' (-0.181 V vs SCE, from its own analysis) within 2 mV (0.2 mV measured with
    # 1,024 particles and with these 128), and D within 10 % of the source's 8.4e-6 (+2.6 % and
    # +3.2 % measured): the smooth discrepancy term takes the wandering background the planar
    # model cannot explain (without it: E0 1.8 mV off with a 0.5 mV interval, D +15 %).
    assert abs(e0["q50"] + 0.181) < 2e-3, e0
    assert abs(d["q50"] / 8.4e-6 - 1) < 0.1, d
    # With the area and concentration known to 2 % (relative sd), D's 95 % interval carries them
    # (only A C sqrt(D) is measured) and holds the source's value; A and C stay at their priors.
    assert d["q025"] <= 8.4e-6 <= d["q975"], d
    area = s["parameters"]["area"]
    assert abs(area["q50"] / 0.0707 - 1) < 0.01 and 0.01 < area["sd"] / area["q50"] < 0.03, area
    assert s["parameters"]["kappa"]["q50"] > 10  # the data do ask for a discrepancy
    for k in range(7):
        assert (tmp_path / f"trace_{k}.png").stat().st_size > 10_000
    # Each scan rate >= 0.025 V/s alone: D agrees within 10 % across scan rates.
    mid = [f for f in files if io.read(f).scan_rate >= 0.025]
    ds = []
    for k, f in enumerate((mid[0], mid[-1])):  # the slowest and the fastest of them
        m = io.read(f)
        r = fit_joint([trace_from_measurement(m)], area=0.0707, c_ox=1.0,
                      config=JointConfig(n_particles=256, points_per_trace=120), seed=k)
        ds.append(r["parameters"]["d_ox"]["q50"])
    assert max(ds) / min(ds) < 1.1, ds


def test_stated_area_and_concentration_uncertainty_is_a_proper_log_normal_prior_and_scales_the_current():
    from ecsfm.posterior._joint_model import _LOGNORMAL_SPAN, _build

    traces = _series([0.1], e0=0.0, k0=0.05, alpha=0.5, d=8e-6, ru=0.2, cdl=1e-7, noise_frac=0.0, seed=3)
    cfg = JointConfig(points_per_trace=64, area_rsd=0.03, conc_rsd=0.02)
    layout, forward, _, _ = _build(traces, cfg, 0.07, 1.0, 0.0, sim.DEFAULT_TEMPERATURE, with_basis=False)
    assert {"area", "c_ox"} <= set(layout.names)
    # Prior in the logit coordinate of each: integrates to 1, and ln(value) has mean ln(stated),
    # sd ln(1 + rsd). The other coordinates are held at 0; the coordinate's own density at y = 0
    # is 1/4 (logistic) x 2 span sd (box width) x N(0; 0, sd) = span / (2 sqrt(2 pi)).
    y = np.linspace(-30, 30, 60001)
    at_zero = np.log(_LOGNORMAL_SPAN / (2 * np.sqrt(2 * np.pi)))
    for name, stated, rsd in (("area", 0.07, 0.03), ("c_ox", 1.0, 0.02)):
        j = layout.names.index(name)
        grid = np.zeros((y.size, layout.dim))
        grid[:, j] = y
        dens = np.exp(layout.log_prior(grid) - layout.log_prior(np.zeros((1, layout.dim))) + at_zero)
        ln_v = layout.to_slots(grid)[:, j]
        mass = np.trapezoid(dens, y)
        mean = np.trapezoid(dens * ln_v, y)
        sd = np.sqrt(np.trapezoid(dens * (ln_v - mean) ** 2, y))
        assert abs(mass - 1) < 1e-4, (name, mass)
        assert abs(mean - np.log(stated)) < 1e-4 and abs(sd / np.log1p(rsd) - 1) < 1e-3, (name, mean, sd)
    # The forward: 10 % more area and 10 % more concentration give 1.21 x the (faradaic) current.
    slots = layout.to_slots(np.zeros((2, layout.dim)))
    for name in ("area", "c_ox"):
        slots[1, layout.names.index(name)] = slots[0, layout.names.index(name)] + np.log(1.1)
    for name, value in (("e0", 0.0), ("k0", np.log(0.05)), ("alpha", 0.5), ("d_ox", np.log(8e-6)), ("ru", np.log(0.2)),
                        ("cdl", np.log(1e-7)), ("offset[0]", 0.0)):
        slots[:, layout.names.index(name)] = value
    cur = np.asarray(forward(np.asarray(slots, np.float32)), np.float64)
    assert np.max(np.abs(cur[1] - 1.21 * cur[0])) < 2e-3 * np.abs(cur[0]).max()
