"""What a user controls in a fit of measured traces: the background model chosen by evidence,
a blank scan, a potential window, the sweeps. Data are simulated at a finer potential step than
the fit uses (0.5 mV against 2 mV), with a known truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecsfm import sim
from ecsfm.cli import main

AREA, D = 0.0707, 7e-6
FIT = ["--area", str(AREA), "--known", "c_ox=1", "--particles", "256"]


def _cv(v, *, background=None, faradaic=True, cdl=2e-5):
    """(E, I) of one CV, 0.35 -> -0.35 -> 0.35 V, with an optional background(E, direction)."""
    couple = sim.Couple(e0=0.0, k0=0.02, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0 if faradaic else 0.0, c_red=0.0)
    r = sim.simulate(sim.cyclic_voltammetry(0.35, -0.35, v, step=5e-4), [couple], sim.Cell(area=AREA, cdl=cdl))
    e, i = np.asarray(r.potential, np.float64), np.asarray(r.current, np.float64)
    if background is not None:
        i = i + background(e, np.sign(np.gradient(e)))
    return np.asarray(r.time, np.float64), e, i


def _write(path, t, e, i, rng, noise=3e-8):
    i = i + rng.normal(0.0, noise, i.size)
    path.write_text("time/s,E/V,I/A\n" + "\n".join(f"{a:.6f},{b:.6f},{c:.6e}" for a, b, c in zip(t, e, i)))
    return str(path)


def _summary(folder):
    return json.loads((folder / "posterior_summary.json").read_text())


def _chosen_over(folder, better: str, worse: str, nats: float) -> dict:
    """The comparison in ``folder`` chose ``better``, by more than ``nats`` of log evidence over
    ``worse``, and its check calls ``better`` adequate and ``worse`` not. Returns the rows by variant."""
    record = json.loads((folder / "comparison.json").read_text())
    rows = {r["variant"]: r for r in record["variants"]}
    assert record["chosen"] == better
    assert rows[better]["log_evidence"] > rows[worse]["log_evidence"] + nats
    assert rows[better]["adequate"] and not rows[worse]["adequate"]
    return rows


def test_the_evidence_chooses_the_background_the_data_have(tmp_path, stat_seed, capsys):
    rng = np.random.default_rng(stat_seed)
    slope = lambda e, d: 2e-6 * e / 0.35  # noqa: E731  (2 uA at the window's ends, ~10 % of the peak)
    data = _write(tmp_path / "cv.csv", *_cv(0.1, background=slope), rng)
    assert main(["infer", "--measurement", data, "--waveform", "measured", *FIT, "--compare", "background=0,1",
                 "--out", str(tmp_path / "cmp")]) == 0
    rows = _chosen_over(tmp_path / "cmp", "background=1", "background=0", 5)
    assert abs(rows["background=1"]["parameters"]["d_ox"] / D - 1) < 0.05
    out = capsys.readouterr().out
    assert "chosen: background=1" in out and "MISFIT" in out


def test_the_evidence_finds_a_potential_dependent_cdl(tmp_path, stat_seed, capsys):
    """Charging current A Cdl(E) dE/dt with Cdl(E) = Cdl (1 + 0.6 x) over the window: it flips sign
    with the sweep, so no background the same on both sweeps mimics it; the cdl=1 variant is chosen,
    checks adequate and recovers the slope and D."""
    rng = np.random.default_rng(stat_seed)
    cdl, shape, v = 5e-5, 0.6, 0.1
    extra = lambda e, d: AREA * cdl * shape * (e / 0.35) * v * d  # noqa: E731  (0.2 uA at the ends, 1.4 % of the peak)
    data = _write(tmp_path / "cv.csv", *_cv(v, background=extra, cdl=cdl), rng)
    assert main(["infer", "--measurement", data, "--waveform", "measured", *FIT, "--compare", "cdl=0,1",
                 "--out", str(tmp_path / "cmp")]) == 0
    rows = _chosen_over(tmp_path / "cmp", "cdl=1", "cdl=0", 5)
    assert abs(rows["cdl=1"]["parameters"]["d_ox"] / D - 1) < 0.05
    assert abs(rows["cdl=1"]["parameters"]["cdl_p1"] - shape) < 0.15
    assert "Cdl a polynomial of degree 1 in E" in _summary(tmp_path / "cmp" / "cdl-1")["assumptions"]["background"]


def test_a_blank_scan_removes_a_background_the_cell_model_lacks(tmp_path, stat_seed):
    rng = np.random.default_rng(stat_seed)
    # a background that differs between the sweeps and curves: surface processes, not charging alone
    bg = lambda e, d: 1.5e-6 * np.exp(-((e - 0.2) / 0.05) ** 2) * d + 1e-6 * (e / 0.35) ** 2  # noqa: E731
    data = _write(tmp_path / "cv.csv", *_cv(0.1, background=bg), rng)
    blank = _write(tmp_path / "blank.csv", *_cv(0.1, background=bg, faradaic=False), rng)
    assert main(["infer", "--measurement", data, "--waveform", "measured", *FIT, "--blank", blank,
                 "--out", str(tmp_path / "with")]) == 0
    with_blank = _summary(tmp_path / "with")
    assert with_blank["model_check"]["adequate"], with_blank["model_check"]
    assert abs(with_blank["parameters"]["d_ox"]["q50"] / D - 1) < 0.05
    assert "blank blank.csv subtracted" in with_blank["assumptions"]["background"]
    # the posterior as ArviZ InferenceData: arviz's own summary reads it, in the summary's units
    import arviz as az
    idata = az.from_netcdf(tmp_path / "with" / "posterior.nc")
    table = az.summary(idata, var_names=["d_ox", "e0"], kind="stats", hdi_prob=0.95, round_to="none")
    assert table.loc["d_ox", "mean"] == pytest.approx(with_blank["parameters"]["d_ox"]["mean"], rel=1e-3)
    assert idata.posterior["d_ox"].attrs["units"] == with_blank["parameters"]["d_ox"]["unit"]
    assert idata.posterior["offset"].sizes["trace"] == 1 and "current_0" in idata.observed_data
    assert main(["infer", "--measurement", data, "--waveform", "measured", *FIT, "--out", str(tmp_path / "none")]) == 0
    assert not _summary(tmp_path / "none")["model_check"]["adequate"]


def test_a_window_leaves_out_a_feature_beyond_it(tmp_path, stat_seed):
    rng = np.random.default_rng(stat_seed)
    # an onset of solvent reduction below -0.25 V that the cell model does not have
    onset = lambda e, d: -1e-6 * np.expm1(np.clip((-0.25 - e) / 0.05, 0, None))  # noqa: E731
    data = _write(tmp_path / "cv.csv", *_cv(0.1, background=onset), rng)
    assert main(["infer", "--measurement", data, "--waveform", "measured", *FIT, "--out", str(tmp_path / "all")]) == 0
    assert not _summary(tmp_path / "all")["model_check"]["adequate"]
    assert main(["infer", "--measurement", data, "--waveform", "measured", *FIT, "--window=-0.24:0.35",
                 "--out", str(tmp_path / "cut")]) == 0
    cut = _summary(tmp_path / "cut")
    assert cut["model_check"]["adequate"], cut["model_check"]
    assert abs(cut["parameters"]["d_ox"]["q50"] / D - 1) < 0.05
    assert "-0.24 to 0.35 V" in cut["assumptions"]["window"]


@pytest.mark.parametrize("extra, words", [
    (["--window", "a:b"], ["--window", "E1:E2"]),
    (["--window", "0.1:0.1"], ["--window", "E1 != E2"]),
    (["--sweeps", "x"], ["--sweeps", "first"]),
    (["--sweeps", "5"], ["--sweeps", "0..1", "[5]"]),
    (["--window", "0.348:0.35"], ["--window", "at least 16"]),
    (["--compare", "zeta=1,2"], ["--compare", "background"]),
    (["--compare", "background=1"], ["--compare", "two variants"]),
    (["--compare", "background=7,1"], ["--compare", "0-3"]),
    (["--compare", "cdl=1,5"], ["--compare", "cdl", "0-3"]),
    (["--cdl-degree", "7"], ["--cdl-degree", "0, 1, 2, 3"]),
])
def test_bad_controls_are_refused_in_one_line(tmp_path, capsys, extra, words):
    data = _write(tmp_path / "cv.csv", *_cv(0.1), np.random.default_rng(0))
    try:
        rc = main(["infer", "--measurement", data, "--waveform", "measured", *FIT, *extra, "--out", str(tmp_path / "o")])
    except SystemExit as stop:  # argparse's own refusals (a choice outside the list) exit from the parser
        rc = stop.code
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()
    for w in words:
        assert w in err, (w, err)


def test_a_blank_of_another_program_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = _write(tmp_path / "cv.csv", *_cv(0.1), rng)
    t, e, i = _cv(0.1)
    blank = _write(tmp_path / "blank.csv", t, e * 0.8, i, rng)  # a narrower window
    assert main(["infer", "--measurement", data, "--waveform", "measured", *FIT, "--blank", blank,
                 "--out", str(tmp_path / "o")]) == 2
    assert "same program" in capsys.readouterr().err



def test_the_evidence_names_the_mechanism_the_data_have(tmp_path, stat_seed, capsys):
    # An EC couple (R -> Z at 3 /s) simulated finer than the fit (0.5 mV steps, first spacing 1e-4
    # against 2 mV and 2e-4): the comparison gives EC the probability, with k_f's 95 % interval
    # around the truth, and the plain couple a failed model check.
    from ecsfm.workflows.route import mechanism_candidates

    rng = np.random.default_rng(stat_seed)
    couple = sim.Couple(e0=0.0, k0=0.02, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    wf = sim.cyclic_voltammetry(0.35, -0.35, 0.1, step=5e-4)
    r = sim.simulate(wf, [sim.EC(couple, k_f=3.0)], sim.Cell(area=AREA, cdl=2e-5),
                     config=sim.SolverConfig(h0=1e-4, growth=1.15))
    data = _write(tmp_path / "ec.csv", np.asarray(r.time), np.asarray(r.potential), np.asarray(r.current, np.float64),
                  rng)
    assert main(["infer", "--measurement", data, "--waveform", "measured", *FIT[:-1], "64",
                 "--compare", "mechanism=E,EC", "--out", str(tmp_path / "mech")]) == 0
    rows = _chosen_over(tmp_path / "mech", "mechanism=EC", "mechanism=E", 10)
    assert rows["mechanism=EC"]["probability"] > 0.99 and rows["mechanism=EC"]["probability_se"] < 0.01
    k_f = _summary(tmp_path / "mech" / "mechanism-EC")["parameters"]["k_f"]
    assert k_f["q025"] < 3.0 < k_f["q975"] and k_f["q975"] / k_f["q025"] < 3, k_f
    assert "mechanism=EC" in capsys.readouterr().out
    # what --mechanism auto compares: every mechanism the stated cell allows
    assert mechanism_candidates(["c_ox=1"]) == ["E", "EC", "ECcat", "CE", "convection"]
    assert mechanism_candidates(["c_ox=1", "c_red=0.5"]) == ["E", "CE", "convection"]
    assert mechanism_candidates(["c_ox=1"], tie_d_red=False) == ["E", "EC", "CE", "convection"]
