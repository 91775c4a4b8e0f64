"""The current's plausibility check (ecsfm.workflows.plausibility) against Randles-Sevcik, and the
one path from an instrument file through ``ecsfm import`` to ``ecsfm infer``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecsfm import io, sim
from ecsfm.cli import main
from ecsfm.posterior import trace_from_measurement
from ecsfm.sim.analytic import randles_sevcik_peak_current
from ecsfm.workflows.plausibility import check_current, expected_range

AREA, V = 0.0707, 0.1


def _cv(d=7e-6, c=1.0, k0=1.0):
    couple = sim.Couple(e0=0.0, k0=k0, alpha=0.5, d_ox=d, d_red=d, c_ox=c, c_red=0.0)
    r = sim.simulate(sim.cyclic_voltammetry(0.4, -0.4, V, step=2e-3), [couple], sim.Cell(area=AREA, cdl=2e-5))
    return io.Measurement(time=np.asarray(r.time, np.float64), potential=np.asarray(r.potential, np.float64),
                          current=np.asarray(r.current, np.float64), scan_rate=V,
                          cycle=np.zeros(np.asarray(r.time).size, int), metadata={"source_file": "cv"})


def test_the_range_brackets_randles_sevcik_over_every_liquid_diffusion_coefficient():
    lo, hi = expected_range(area=AREA, c_ox=1.0, scan_rate=V)
    for d in (1e-7, 1e-6, 1e-5, 1e-4):
        ip = float(randles_sevcik_peak_current(1, AREA, 1.0, d, V))
        assert lo < ip < hi
    # a unit mistake of 10^3 falls outside at either end of the D range
    assert hi < 1e3 * float(randles_sevcik_peak_current(1, AREA, 1.0, 1e-4, V))
    assert lo > 1e-3 * float(randles_sevcik_peak_current(1, AREA, 1.0, 1e-7, V))


@pytest.mark.parametrize("d", [1e-6, 1e-5])
def test_a_simulated_voltammogram_passes(d):
    check_current([trace_from_measurement(_cv(d=d))], area=AREA, c_ox=1.0)


@pytest.mark.parametrize("scale, c_ox, area, words", [
    (1e3, 1.0, AREA, ["larger", "mA but read as A", "--current-unit mA", "c_ox given in M"]),
    (1e6, 1.0, AREA, ["larger", "uA but read as A", "--current-unit uA"]),
    (1.0, 1e-3 * 1.0, AREA, ["larger", "c_ox given in M"]),
    (1.0, 1e3, AREA, ["smaller", "c_ox given in uM"]),
])
def test_unit_mistakes_are_stopped_and_named(scale, c_ox, area, words):
    m = _cv()
    t = trace_from_measurement(io.Measurement(time=m.time, potential=m.potential, current=m.current * scale,
                                              scan_rate=V, cycle=m.cycle, metadata=m.metadata))
    with pytest.raises(ValueError) as err:
        check_current([t], area=area, c_ox=c_ox)
    for w in words + ["--force"]:
        assert w in str(err.value), (w, str(err.value))


def test_what_import_writes_infer_reads_and_a_trailing_comma_csv_imports(tmp_path):
    # A NOVA-style CSV: every row ends with a delimiter and the procedure's scan rate is written in
    # the first row only. It imports unedited; the npz that import writes goes straight into infer.
    m = _cv()
    rows = [f"{e:.6f},{i:.6e}," + (f"{V}," if k == 0 else ",") for k, (e, i) in enumerate(zip(m.potential, m.current))]
    (tmp_path / "nova.csv").write_text("Potential (V),Current (A),Scan rate (V/s),\n" + "\n".join(rows) + "\n")
    assert main(["import", str(tmp_path / "nova.csv"), "--out", str(tmp_path / "m.npz")]) == 0
    back = io.read(tmp_path / "m.npz")
    assert back.scan_rate == pytest.approx(V) and np.allclose(back.current, m.current, rtol=1e-5, atol=1e-12)
    assert main(["infer", "--measurement", str(tmp_path / "m.npz"), "--waveform", "measured", "--radius", "1.5mm",
                 "--known", "c_ox=1", "--known", "alpha=0.5", "--known", "ru=1", "--particles", "128",
                 "--out", str(tmp_path / "post")]) == 0
    s = json.loads((tmp_path / "post" / "posterior_summary.json").read_text())
    assert s["known"]["area_cm2"] == pytest.approx(np.pi * 0.15**2)
    assert abs(s["parameters"]["e0"]["q50"]) < 0.005  # the simulated E0 is 0 V
    assert set(s["model_check"]) >= {"adequate", "statistic", "p_value", "method", "worst_trace", "reason"}
