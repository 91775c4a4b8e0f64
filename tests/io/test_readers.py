"""Each format on small synthetic files written here, and every error a reader raises."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ecsfm import io


def cv(e_start=0.3, e_vertex=-0.3, step=1e-3, cycles=1, ip=10e-6, e0=0.0, cdl_v=0.5e-6):
    """A cyclic sweep e_start -> e_vertex -> e_start (repeated) and an IUPAC current: a negative
    reduction peak on the way down, a positive oxidation peak on the way back, charging
    current ``cdl_v`` (A) with the sign of dE/dt. Returns potential (V), current (A)."""
    down = np.arange(e_start, e_vertex - step / 2, -step if e_vertex < e_start else step)
    up = down[::-1][1:]
    one = np.concatenate([down, up[:-1]])
    e = np.concatenate([one] * cycles + [[e_start]])
    rising = np.concatenate([[np.sign(e_vertex - e_start)], np.sign(np.diff(e))]) > 0
    bump = ip * np.exp(-((e - e0) / 0.05) ** 2)
    return e, np.where(rising, bump + cdl_v, -bump - cdl_v)


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding, newline="")
    return path


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- plain tables


def test_csv_header_units_and_time_column(tmp_path):
    e, i = cv()
    t = 100.0 + np.arange(e.size) * 0.01  # the file's clock does not start at 0
    rows = "\n".join(f"{a:.4f},{b:.6f},{c * 1e6:.6f}" for a, b, c in zip(t, e, i))
    m = io.read(write(tmp_path / "data.csv", "time/s,E (V),current/uA\n" + rows + "\n"))
    assert m.metadata["format"] == "csv" and m.metadata["current_unit"] == "uA"
    assert np.allclose(m.current, i, atol=1e-12) and np.allclose(m.potential, e)
    assert m.time[0] == 0 and np.allclose(m.time, np.arange(e.size) * 0.01)
    assert m.metadata["time_offset_s"] == pytest.approx(100.0)
    assert m.scan_rate == pytest.approx(0.1, rel=1e-6)  # 1 mV per 10 ms, from the time column
    assert m.metadata["scan_rate_source"] == "estimated from the time column"


@pytest.mark.parametrize("unit,scale", [("A", 1.0), ("mA", 1e-3), ("uA", 1e-6), ("µA", 1e-6), ("μA", 1e-6),
                                        ("nA", 1e-9), ("pA", 1e-12)])
def test_current_unit_conversion(tmp_path, unit, scale):
    e, i = cv(step=0.01)
    body = "\n".join(f"{k * 0.1},{a:.3f},{b / scale:.9g}" for k, (a, b) in enumerate(zip(e, i)))
    m = io.read(write(tmp_path / "u.csv", f"t (s),Potential (V),I ({unit})\n{body}\n"))
    assert np.allclose(m.current, i, rtol=1e-8, atol=0)


def test_semicolon_decimal_comma_potential_in_mV(tmp_path):
    e, i = cv(step=0.01)
    body = "\n".join(f"{a * 1e3:.1f};{b * 1e9:.4f}".replace(".", ",") for a, b in zip(e, i))
    m = io.read(write(tmp_path / "eu_50mV.csv", "E/mV;I/nA\n" + body + "\n"))
    assert np.allclose(m.potential, e) and np.allclose(m.current, i, rtol=1e-6)
    assert m.scan_rate == pytest.approx(0.05)


def test_headerless_two_columns_rebuilds_time_from_the_scan_rate(tmp_path):
    e, i = cv(step=2e-3, cycles=2)
    path = write(tmp_path / "plain.txt", "\n".join(f"{a:.4f}\t{b * 1e3:.6e}" for a, b in zip(e, i)))
    m = io.read(path, current_unit="mA", scan_rate=0.05)
    assert np.allclose(m.current, i, rtol=1e-6)
    assert m.metadata["scan_rate_source"] == "argument"
    expected = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(e)))]) / 0.05
    assert np.allclose(m.time, expected, rtol=1e-9)
    assert m.duration == pytest.approx(2 * 2 * 0.6 / 0.05, rel=1e-6)  # 2 cycles of 1.2 V at 50 mV/s
    assert m.n_cycles == 2


def test_headerless_current_unit_is_assumed_A_and_said(tmp_path):
    e, i = cv(step=0.01)
    m = io.read(write(tmp_path / "x_0.1Vs.csv", "\n".join(f"{a:.3f},{b:.6e}" for a, b in zip(e, i))))
    assert m.metadata["current_unit_source"].startswith("assumed A")
    assert m.scan_rate == pytest.approx(0.1)


def test_ecsfm_own_csv_with_comment_header(tmp_path):
    e, i = cv(step=0.01)
    t = np.arange(e.size) * 0.1
    lines = ["# ecsfm simulation", "# units: V, s, A (IUPAC: oxidation current positive)",
             "time_s,potential_V,current_A,interface_potential_V,charging_current_A"]
    lines += [f"{a},{b:.3f},{c:.6e},0,1e-9" for a, b, c in zip(t, e, i)]
    m = io.read(write(tmp_path / "sim.csv", "\n".join(lines)))
    assert np.allclose(m.current, i) and m.metadata["current_column"] == "current_A"
    assert m.metadata["potential_column"] == "potential_V"
    assert m.metadata["sign_convention_source"] == "stated in the file"


# ---------------------------------------------------------------- instrument exports


def _palmsens_text(e, i_ua):
    head = ["Date and time:,2021-03-04 10:11:12", "Notes:", "old note scanrate0.5",
            "Cyclic Voltammetry: CV I vs E Scan 1", "Date and time measurement:,2021-03-04 10:01:00", "V,µA"]
    return "\r\n".join(head + [f"{a:.6E},{b:.6E}" for a, b in zip(e, i_ua)]) + "\r\n\ufeff\r\n"


def test_palmsens_utf16_detected_by_content(tmp_path):
    e, i = cv(e_start=0.5, e_vertex=-0.1, step=2e-3)
    path = write(tmp_path / "export_0020mV.txt", _palmsens_text(e, i * 1e6), encoding="utf-16")
    assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    m = io.read(path)
    assert m.metadata["format"] == "palmsens" and m.metadata["current_unit"] == "µA"
    assert np.allclose(m.current, i, rtol=1e-6)
    assert m.scan_rate == pytest.approx(0.02)  # from the name, not the Notes line
    assert m.metadata["notes"] == "old note scanrate0.5"
    assert m.metadata["date_measured"] == "2021-03-04 10:01:00"
    assert io.read_palmsens(path).n_points == e.size


def _nova_text(e, i, t, scan, rate):
    head = "Column 1 (V)\tColumn 5 (V/s)\tScan\tPotential applied (V)\tTime (s)\tWE(1).Current (A)\t" \
           "WE(1).Potential (V)\tIndex"
    rows = [f"{0.5 if k == 0 else ''}\t{rate if k == 0 else ''}\t{s}\t{a}\t{b}\t{c}\t{a + 1e-4}\t{k + 1}"
            for k, (a, b, c, s) in enumerate(zip(e, t, i, scan))]
    rows += ["\t\t7\t\t\t\t\t"] * 3  # NOVA's placeholder rows
    return "\ufeff" + "\r\n".join([head] + rows) + "\r\n"


def test_autolab_applied_potential_scan_column_and_placeholder_rows(tmp_path):
    e, i = cv(step=5e-3, cycles=2)
    t = 5000 + np.arange(e.size) * 0.05
    scan = np.where(np.arange(e.size) < e.size // 2, 1, 2)
    m = io.read(write(tmp_path / "nova.txt", _nova_text(e, i, t, scan, 0.1)))
    assert m.metadata["format"] == "autolab" and m.n_points == e.size
    assert m.metadata["potential_column"] == "Potential applied (V)"
    assert np.allclose(m.potential, e) and np.allclose(m.current, i)
    assert m.scan_rate == 0.1 and m.metadata["scan_rate_source"] == "column 'Column 5 (V/s)'"
    assert m.metadata["Column 1 (V)"] == 0.5
    assert m.metadata["time_offset_s"] == pytest.approx(5000)
    assert m.metadata["cycle_source"] == "column 'Scan'"
    assert m.n_cycles == 2 and np.array_equal(m.cycle, scan - 1)


def _chi_text(e, i, rate=0.05, segments=2):
    head = ["Nov. 26, 2025   10:00:00", "Cyclic Voltammetry", "Instrument Model:  CHI660E", "Header:", "Note:", "",
            f"Init E (V) = {e[0]}", f"High E (V) = {e.max()}", f"Low E (V) = {e.min()}", "Init P/N = N",
            f"Scan Rate (V/s) = {rate}", f"Segment = {segments}", "Sample Interval (V) = 0.001",
            "Quiet Time (sec) = 2", "Sensitivity (A/V) = 1.e-5", "", "Results:", "Segment 1:", "Ep = -0.010V",
            "ip = 1.0e-5A", "", "Potential/V, Current/A", ""]
    half = e.size // 2
    rows = ["Segment 1:"] + [f"{a:.3f}, {b:.4e}" for a, b in zip(e[:half], i[:half])]
    rows += ["Segment 2:"] + [f"{a:.3f}, {b:.4e}" for a, b in zip(e[half:], i[half:])]
    return "\n".join(head + rows) + "\n"


def test_chi_us_convention_detected_from_the_loop(tmp_path):
    e, i = cv()
    m = io.read(write(tmp_path / "chi.txt", _chi_text(e, -i)))  # written cathodic-positive
    assert m.metadata["format"] == "chi" and m.metadata["instrument"] == "CH Instruments CHI660E"
    assert m.metadata["sign_convention_in_file"] == "us"
    assert m.metadata["sign_convention_source"].startswith("detected from the loop orientation")
    assert np.allclose(m.current, i, rtol=1e-3, atol=1e-12)
    assert m.scan_rate == 0.05 and m.metadata["scan_rate_source"] == "header 'Scan Rate (V/s)'"
    assert m.metadata["init_e_V"] == pytest.approx(0.3) and m.metadata["init_p_n"] == "N"
    assert m.duration == pytest.approx(1.2 / 0.05, rel=1e-6)
    # an IUPAC CHI file is recognised as such; a declared convention is obeyed as written
    iupac = io.read(write(tmp_path / "chi2.txt", _chi_text(e, i)))
    assert iupac.metadata["sign_convention_in_file"] == "iupac" and np.allclose(iupac.current, i, rtol=1e-3, atol=1e-12)
    declared = io.read_chi(tmp_path / "chi.txt", sign_convention="iupac")
    assert np.allclose(declared.current, -i, rtol=1e-3, atol=1e-12) and "warning" in declared.metadata


def test_chi_single_sweep_assumes_us_and_says_so(tmp_path):
    e = np.round(np.arange(0.3, -0.3, -1e-3), 4)
    i = 1e-6 * np.exp(-((e + 0.1) / 0.05) ** 2)  # reduction written positive
    m = io.read(write(tmp_path / "lsv.txt", _chi_text(e, i)))
    assert m.metadata["sign_convention_source"].startswith("assumed US")
    assert np.allclose(m.current, -i, rtol=1e-3, atol=1e-12)


def _mpt(e, i_ma, t, cyc, *, decimal=".", area="0.071 cm²", rate="50.000", rate_unit="mV/s"):
    settings = ["", "Cyclic Voltammetry", "", "Run on channel : 1 (SN 1234)", "Device : SP-300 (SN 1111)",
                f"Electrode surface area : {area}", "Reference electrode : Ag/AgCl (3 M KCl)",
                "Acquisition started on : 01/02/2024 10:00:00", f"dE/dt               {rate}",
                f"dE/dt unit          {rate_unit}", "E1 (V)              0.300"]
    cols = "mode\tox/red\terror\ttime/s\tcontrol/V\tEwe/V\t<I>/mA\tcycle number\t(Q-Qo)/C\t"
    n_header = 2 + len(settings) + 1
    lines = ["EC-Lab ASCII FILE", f"Nb header lines : {n_header}"] + settings + [cols]
    for a, b, c, k in zip(t, e, i_ma, cyc):
        row = f"2\t1\t0\t{a:.6E}\t{b + 0.2:.6E}\t{b:.6E}\t{c:.6E}\t{k:.15E}\t0.0\t"
        lines.append(row.replace(".", decimal))
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("decimal", [".", ","])
def test_biologic_mpt(tmp_path, decimal):
    e, i = cv(step=2e-3, cycles=3)
    t = np.arange(e.size) * 0.04
    cyc = 1.0 + np.minimum(np.arange(e.size) // 600, 2)
    text = _mpt(e, i * 1e3, t, cyc, decimal=decimal, area="0,071 cm²" if decimal == "," else "0.071 cm²")
    path = tmp_path / "cv_C01.mpt"
    path.write_bytes(text.encode("cp1252"))  # EC-Lab writes Windows-1252 (the ² above)
    m = io.read(path)
    assert m.metadata["format"] == "biologic" and m.metadata["encoding"] == "cp1252"
    assert m.metadata["potential_column"] == "Ewe/V"  # not control/V (may be vs Eoc)
    assert np.allclose(m.potential, e, atol=1e-9) and np.allclose(m.current, i, rtol=1e-6)
    assert m.scan_rate == pytest.approx(0.05) and m.metadata["scan_rate_source"] == "header 'dE/dt'"
    assert m.metadata["area_cm2"] == pytest.approx(0.071)
    assert m.metadata["reference_electrode"] == "Ag/AgCl (3 M KCl)"
    assert m.metadata["instrument"] == "BioLogic SP-300 (SN 1111)"
    assert m.n_cycles == 3 and np.array_equal(m.cycle, (cyc - 1).astype(int))
    assert np.allclose(m.time, t)


# ---------------------------------------------------------------- sign, cycles, file names


def test_sign_convention_us_negates_and_auto_keeps(tmp_path):
    e, i = cv(step=0.01)
    path = write(tmp_path / "s.csv", "t/s,E/V,I/A\n" + "\n".join(
        f"{k},{a:.3f},{b:.6e}" for k, (a, b) in enumerate(zip(e, i))))
    auto, iupac, us = (io.read(path, sign_convention=s) for s in ("auto", "iupac", "us"))
    assert np.array_equal(auto.current, iupac.current) and np.array_equal(us.current, -iupac.current)
    assert us.metadata["sign_convention_in_file"] == "us" and us.metadata["sign_convention_source"] == "argument"
    assert "warning" in us.metadata and "warning" not in iupac.metadata


@pytest.mark.parametrize("e_start,e_vertex,cycles,noise", [(0.3, -0.3, 3, 0.0), (0.69, -0.1, 4, 0.0),
                                                           (-0.2, 0.6, 2, 2e-4), (0.3, -0.3, 1, 0.0)])
def test_cycles_split_at_the_return_to_the_start(e_start, e_vertex, cycles, noise):
    e, _ = cv(e_start=e_start, e_vertex=e_vertex, step=1e-3, cycles=cycles)
    e = e + noise * np.random.default_rng(0).standard_normal(e.size)
    c = io.split_cycles(e)
    assert c[0] == 0 and c[-1] == cycles - 1 and np.all(np.diff(c) >= 0)
    counts = np.bincount(c)
    n_one = 2 * round(abs(e_vertex - e_start) / 1e-3)
    assert np.all(np.abs(counts - n_one) <= 2), counts


def test_cycles_from_the_middle_of_the_window():
    one = np.concatenate([np.arange(0, 0.5, 1e-3), np.arange(0.5, -0.5, -1e-3), np.arange(-0.5, 0, 1e-3)])
    e = np.concatenate([one, one, [0.0]])
    c = io.split_cycles(e)
    assert c[-1] == 1 and abs(np.count_nonzero(c == 0) - one.size) <= 1


def test_select_cycle_and_cycles(tmp_path):
    e, i = cv(cycles=3, step=2e-3)
    path = write(tmp_path / "c_100mV.csv", "E/V,I/A\n" + "\n".join(f"{a:.3f},{b:.6e}" for a, b in zip(e, i)))
    m = io.read(path)
    parts = m.cycles()
    assert m.n_cycles == 3 and sum(p.n_points for p in parts) == m.n_points
    second = m.select_cycle(1)
    assert second.time[0] == 0 and second.n_cycles == 1 and second.metadata["selected_cycle"] == 1
    k0 = int(np.flatnonzero(m.cycle == 1)[0])
    assert second.metadata["time_offset_s"] == pytest.approx(m.time[k0])
    assert np.array_equal(second.potential, m.potential[m.cycle == 1])
    assert m.select_cycle(-1).metadata["selected_cycle"] == 2
    with pytest.raises(ValueError, match=r"cycle: must be an integer in \[0, 2\]"):
        m.select_cycle(3)


@pytest.mark.parametrize("name,expected", [
    ("ECSA_0100mV.txt", 0.1), ("ECSA_0005mV_scan1-SWV.csv", 0.005), ("RuHex_GCE_1.00E-01.csv", 0.1),
    ("cv_0.05Vs.csv", 0.05), ("cv 20 mVs-1.txt", 0.02), ("run_2.5e-2.csv", 0.025),
    ("cv_100.csv", None), ("cv_5mV_100mV.csv", None), ("run_0.1_0.2.csv", None), ("2020.07.10.csv", None),
    ("sample3.csv", None)])
def test_scan_rate_from_filename_rules(name, expected):
    got = io.scan_rate_from_filename(name)
    assert (got is None) if expected is None else got[0] == pytest.approx(expected)


def test_the_argument_overrides_the_file_scan_rate(tmp_path):
    e, i = cv(step=0.01)
    path = write(tmp_path / "chi.txt", _chi_text(e, i, rate=0.05))
    m = io.read(path, scan_rate=0.2)
    assert m.scan_rate == 0.2 and m.duration == pytest.approx(1.2 / 0.2, rel=1e-6)


# ---------------------------------------------------------------- errors: one line, file and line named


def _rows(n=10):
    return "\n".join(f"{k * 0.1:.1f},{0.1 - 0.01 * k:.3f},{1e-6 * k:.1e}" for k in range(n))


@pytest.mark.parametrize("content,pattern", [
    ("", r"empty file"),
    ("t/s,E/V,I/A\n", r"no numeric data rows"),
    ("t/s,E/V,I/A\n" + _rows() + "\n1.5,0.2\n", r"line 12: empty value in column 'I/A'"),
    ("t/s,E/V,I/A\n" + _rows() + "\n1.5,0.2,1e-6,7\n", r"line 12: ragged row"),
    ("t/s,E/V,I/A\n" + _rows(3) + "\n0.4,nan,1e-6\n" + _rows(3), r"line 5: NaN or Inf in column 'E/V'"),
    ("t/s,E/V,I/A\n0,0.1,1e-6\n0.1,0.09,inf\n", r"line 3: NaN or Inf in column 'I/A'"),
    ("t/s,E/V,I/A\n" + _rows(4) + "\n0.2,0.05,1e-6\n", r"line 6: time is not increasing"),
    ("t/s,E/V,I/A\n" + _rows(4) + "\n0.5,x,1e-6\n", r"line 6: not a number: 'x'"),
    ("t/s,E/V,I/A\n" + _rows(4) + "\n0.5,,1e-6\n", r"line 6: empty value in column 'E/V'"),
    ("t/s,E/V,I (kA)\n" + _rows(), r"unknown current unit 'kA'"),
    ("t/s,E/V,I/A\n0,0.1,1e-6\n", r"only 1 data row"),
    ("t/s,E/V,Q/C\n" + _rows(), r"names no current column"),
    ("0.1,0.2,0.3,0.4\n0.2,0.3,0.4,0.5\n", r"no header line and 4 columns"),
    ("E/V,I/A\n0.1,1e-6\n0.2,2e-6\n", r"no time column and no scan rate"),
    ("E/V,I/A\n0.1,1e-6\n0.1,2e-6\n", None),
    ("t/s,E/V,cycle,I/A\n0,0.1,2,0\n1,0.2,1,0\n2,0.3,1,0\n", r"line 3: cycle number decreases"),
])
def test_errors_name_file_line_and_problem(tmp_path, content, pattern):
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(ValueError) as err:
        io.read(path, scan_rate=0.1 if pattern is None else None)
    msg = one_line(err)
    assert msg.startswith(str(path))
    assert re.search(pattern or r"line 3: potential 0.1 V repeats the row before", msg), msg


@pytest.mark.parametrize("data,pattern", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"line 3: binary data \(NUL byte\)"),
    (b"E/V,I/A\n0.1,1e-6\n0.2,\x81\x8d\n", r"line 3: not UTF-8 or UTF-16 text \(byte 0x81\)"),
    (b"\xef\xbb\xbfE/V,I/A\n0.1,\xff\n", r"line 2: not UTF-8 or UTF-16 text \(byte 0xff\)"),
    (b"\xff\xfeE\x00/\x00\x00\xd8", r"not valid UTF-16 text"),
])
def test_bad_bytes(tmp_path, data, pattern):
    path = tmp_path / "bytes.csv"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=pattern) as err:
        io.read(path)
    assert one_line(err).startswith(str(path))


def test_windows_1252_header_is_accepted(tmp_path):
    path = tmp_path / "w.csv"
    path.write_bytes("t/s,E/V,I/µA\n0,0.1,1\n1,0.2,2\n".encode("cp1252"))
    m = io.read(path)
    assert m.metadata["encoding"] == "cp1252" and np.allclose(m.current, [1e-6, 2e-6])


def test_argument_and_format_errors(tmp_path):
    path = write(tmp_path / "ok.csv", "t/s,E/V,I/uA\n" + _rows())
    for kwargs, pattern in (({"current_unit": "xA"}, r"current-unit: unknown current unit 'xA'"),
                            ({"current_unit": "mA"}, r"states current in uA .* --current-unit 'mA'"),
                            ({"scan_rate": -1}, r"scan-rate: must be > 0"),
                            ({"sign_convention": "european"}, r"sign-convention: must be one of"),
                            ({"fmt": "gamry"}, r"format: must be 'auto' or one of"),
                            ({"fmt": "chi"}, r"not a CH Instruments text export"),
                            ({"fmt": "biologic"}, r"not an EC-Lab export")):
        with pytest.raises(ValueError, match=pattern) as err:
            io.read(path, **kwargs)
        one_line(err)
    with pytest.raises(ValueError, match=r"no such file"):
        io.read(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"line 2: expected 'Nb header lines"):
        io.read(write(tmp_path / "b.mpt", "EC-Lab ASCII FILE\nsomething\n"))
