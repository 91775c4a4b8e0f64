"""save_npz / load_npz and the ``ecsfm import`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecsfm import io
from ecsfm.cli import main


def _measurement(cycles=2):
    one = np.concatenate([np.arange(0.3, -0.3, -0.01), np.arange(-0.3, 0.3, 0.01)])
    e = np.concatenate([one] * cycles + [[0.3]])
    t = np.arange(e.size) * 0.1
    i = 1e-6 * np.sin(np.arange(e.size) * 0.05)
    cyc = np.minimum(np.arange(e.size) // one.size, cycles - 1)
    return io.Measurement(time=t, potential=e, current=i, scan_rate=0.1, cycle=cyc,
                          metadata={"format": "csv", "area_cm2": 0.0707, "note": "µA → A, ünïcode"})


def test_npz_round_trip_exact(tmp_path):
    m = _measurement()
    io.save_npz(m, tmp_path / "m.npz")
    back = io.load_npz(tmp_path / "m.npz")
    for name in ("time", "potential", "current", "cycle"):
        assert np.array_equal(getattr(back, name), getattr(m, name))
    assert back.scan_rate == m.scan_rate and dict(back.metadata) == dict(m.metadata)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert int(z["schema_version"]) == io.NPZ_SCHEMA_VERSION == 1
        assert sorted(z.files) == sorted(["schema_version", "time", "potential", "current_A", "scan_rate", "cycle",
                                          "metadata"])
        assert json.loads(str(z["metadata"][0]))["area_cm2"] == 0.0707
    # None scan rate is stored as NaN and comes back as None
    m2 = io.Measurement(time=m.time, potential=m.potential, current=m.current, scan_rate=None, cycle=m.cycle,
                        metadata={})
    assert io.load_npz(io.save_npz(m2, tmp_path / "n.npz")).scan_rate is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "n.npz"]  # no temporary files left


def _write(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_load_npz_refuses_bad_files(tmp_path):
    m = _measurement()
    good = {"schema_version": np.asarray(1), "time": m.time, "potential": m.potential, "current_A": m.current,
                "scan_rate": np.asarray(0.1), "cycle": m.cycle, "metadata": np.asarray(["{}"])}
    cases = [
        (dict(good, schema_version=np.asarray(2)), r"schema_version 2 is not 1"),
        ({k: v for k, v in good.items() if k != "cycle"}, r"missing key\(s\) cycle"),
        (dict(good, metadata=np.asarray([{"a": 1}], dtype=object)), r"[Pp]ickle|[Oo]bject arrays"),
        (dict(good, metadata=np.asarray(["not json"])), r"metadata is not JSON"),
        (dict(good, time=m.time[::-1].copy()), r"time: must start at 0|strictly increasing"),
    ]
    for k, (arrays, pattern) in enumerate(cases):
        path = _write(tmp_path / f"bad{k}.npz", **arrays)
        with pytest.raises(ValueError, match=pattern) as err:
            io.load_npz(path)
        assert "\n" not in str(err.value) and str(err.value).startswith(str(path))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="text.npz"):
        io.load_npz(tmp_path / "text.npz")
    with pytest.raises(ValueError, match="no such file"):
        io.load_npz(tmp_path / "missing.npz")


def test_measurement_invariants():
    m = _measurement()
    with pytest.raises(ValueError, match="time: must start at 0"):
        io.Measurement(time=m.time + 1, potential=m.potential, current=m.current, scan_rate=0.1, cycle=m.cycle,
                       metadata={})
    with pytest.raises(ValueError, match="current: has 3 points"):
        io.Measurement(time=m.time, potential=m.potential, current=m.current[:3], scan_rate=0.1, cycle=m.cycle,
                       metadata={})
    with pytest.raises(ValueError, match="scan_rate: must be > 0"):
        io.Measurement(time=m.time, potential=m.potential, current=m.current, scan_rate=0.0, cycle=m.cycle,
                       metadata={})
    with pytest.raises(ValueError, match="cycle: must start at 0"):
        io.Measurement(time=m.time, potential=m.potential, current=m.current, scan_rate=0.1, cycle=m.cycle + 1,
                       metadata={})
    with pytest.raises(ValueError, match=r"metadata\['x'\]: must be str, int or float"):
        io.Measurement(time=m.time, potential=m.potential, current=m.current, scan_rate=0.1, cycle=m.cycle,
                       metadata={"x": [1]})
    with pytest.raises(ValueError):  # read-only arrays: a Measurement does not change under its user
        m.current[0] = 1.0
    with pytest.raises(TypeError):
        m.metadata["format"] = "x"


def _csv(tmp_path, name="cv_100mV.csv"):
    one = np.concatenate([np.arange(0.3, -0.3, -0.002), np.arange(-0.3, 0.3, 0.002)])
    e = np.concatenate([one, one, [0.3]])
    rising = np.concatenate([[False], np.diff(e) > 0])
    i = np.where(rising, 1, -1) * (2e-6 + 10e-6 * np.exp(-(e / 0.05) ** 2))
    path = tmp_path / name
    path.write_text("E/V,I/uA\n" + "\n".join(f"{a:.3f},{b * 1e6:.6f}" for a, b in zip(e, i)) + "\n")
    return path, e, i


def test_cli_import_writes_npz_and_prints_one_line(tmp_path, capsys):
    path, e, i = _csv(tmp_path)
    out = tmp_path / "out" / "m.npz"
    assert main(["import", str(path), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and f"{e.size} points" in lines[0]
    assert "0.1 V/s" in lines[0] and "2 cycle(s)" in lines[0] and str(out) in lines[0]
    m = io.load_npz(out)
    assert m.n_cycles == 2 and np.allclose(m.current, i, rtol=1e-6) and m.scan_rate == pytest.approx(0.1)
    # one cycle, and a declared US file
    assert main(["import", str(path), "--out", str(out), "--cycle", "1", "--sign-convention", "us"]) == 0
    m1 = io.load_npz(out)
    assert m1.n_cycles == 1 and m1.metadata["selected_cycle"] == 1
    assert np.allclose(m1.current, -i[m.cycle == 1], rtol=1e-6)
    assert "warning" in capsys.readouterr().err


@pytest.mark.parametrize("args,pattern", [
    (["--cycle", "5"], "cycle: must be an integer in [0, 1]"),
    (["--current-unit", "mA"], "states current in uA"),
    (["--format", "chi"], "not a CH Instruments text export"),
])
def test_cli_import_bad_input_is_one_line(tmp_path, capsys, args, pattern):
    path, _, _ = _csv(tmp_path)
    out = tmp_path / "m.npz"
    assert main(["import", str(path), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecsfm: error:") and pattern in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_cli_import_missing_scan_rate(tmp_path, capsys):
    path, _, _ = _csv(tmp_path, name="cv.csv")
    assert main(["import", str(path), "--out", str(tmp_path / "m.npz")]) == 2
    assert "no time column and no scan rate" in capsys.readouterr().err
    assert main(["import", str(path), "--out", str(tmp_path / "m.npz"), "--scan-rate", "0.05"]) == 0
    assert io.load_npz(tmp_path / "m.npz").metadata["scan_rate_source"] == "argument"
