"""The ecsfm command: files written, units stated, errors as one line."""

import numpy as np
import pytest

from ecsfm.cli import main


def _read(path):
    """(comment lines, column names, data) as a user reads the CSV: numpy.genfromtxt(names=True)."""
    comments = [ln for ln in path.read_text().splitlines() if ln.startswith("#")]
    table = np.genfromtxt(path, delimiter=",", names=True, comments="#", ndmin=1)
    header = list(table.dtype.names)
    return comments, header, np.stack([table[n] for n in header], axis=1)


def test_simulate_cv_writes_csv_and_png(tmp_path):
    out, png = tmp_path / "cv.csv", tmp_path / "cv.png"
    rc = main(["simulate", "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.1",
               "--k0", "0.01", "--ru", "50", "--out", str(out), "--plot", str(png)])
    assert rc == 0
    comments, header, data = _read(out)
    assert header[:3] == ["time_s", "potential_V", "current_A"]
    assert any("oxidation current positive" in c for c in comments)
    assert data.shape == (601 * 2 - 1, 5)
    assert data[:, 2].min() < 0 < data[:, 2].max()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


_F, _R, _T = 96485.33212, 8.314462618, 298.15  # C/mol, J/(mol K), K (CODATA 2018; the CLI's default T)
_AREA, _C, _D = 0.0707, 1e-6, 1e-5  # the CLI's default electrode (cm^2), 1 mM in mol/cm^3, D cm^2/s


def _check_swv(data):
    # A reversible couple (k0 = 1 cm/s: k0 / sqrt(D f) = 63) with E0 = 0.1 V and equal D: the
    # difference current peaks at E1/2 = E0, to the nearest 5 mV step of the base potential;
    # reduction current negative (IUPAC).
    k = np.argmax(np.abs(data[:, 3]))
    assert abs(data[k, 0] - 0.1) <= 5e-3 + 1e-9 and data[k, 3] < 0, data[k]


def _check_ca(data):
    # A step 0.3 V past E0 (k0 exp(alpha F eta / RT) = 3 cm/s >> sqrt(D / t)): diffusion-limited,
    # the Cottrell current -n F A C sqrt(D / (pi t)) within 1 % from 20 ms on (measured 0.3 %).
    t, i = data[:, 0], data[:, 2]
    late = t >= 0.02
    cottrell = -_F * _AREA * _C * np.sqrt(_D / (np.pi * t[late]))
    np.testing.assert_allclose(i[late], cottrell, rtol=0.01)


def _check_eis(data):
    # At the equilibrium potential of C_ox = C_red = 1 mM, no Ru or Cdl: the faradaic impedance is
    # the charge-transfer resistance plus the Warburg element (Bard & Faulkner, 2nd ed., section 10.3):
    # R_ct = RT / (F^2 A k0 C), sigma = RT / (F^2 A sqrt 2) (1 / (C sqrt D_ox) + 1 / (C sqrt D_red)),
    # Z = R_ct + sigma w^-1/2 (1 - j); within 0.1 % at every frequency (measured 2e-7).
    w = 2 * np.pi * data[:, 0]
    r_ct = _R * _T / (_F**2 * _AREA * 1e-2 * _C)
    sigma = _R * _T / (_F**2 * _AREA * np.sqrt(2)) * 2 / (_C * np.sqrt(_D))
    np.testing.assert_allclose(data[:, 1], r_ct + sigma / np.sqrt(w), rtol=1e-3)
    np.testing.assert_allclose(data[:, 2], -sigma / np.sqrt(w), rtol=1e-3)


@pytest.mark.parametrize(
    "technique, args, columns, check",
    [
        ("swv", ["--e-start", "0.3", "--e-end", "-0.3", "--e0", "0.1", "--k0", "1"],
         ["base_potential_V", "forward_current_A", "reverse_current_A", "difference_current_A"], _check_swv),
        ("ca", ["--e-initial", "0.3", "--e-step", "-0.3", "--duration", "1"], ["time_s", "potential_V", "current_A"],
         _check_ca),
        ("eis", ["--c-red", "1.0"], ["frequency_Hz", "z_real_ohm", "z_imag_ohm"], _check_eis),
    ],
)
def test_simulate_other_techniques(tmp_path, technique, args, columns, check):
    out = tmp_path / f"{technique}.csv"
    assert main(["simulate", technique, *args, "--out", str(out), "--plot", str(tmp_path / "p.png")]) == 0
    _, header, data = _read(out)
    assert header[: len(columns)] == columns
    check(data)


def test_bad_input_is_one_line_naming_the_field(tmp_path, capsys):
    rc = main(["simulate", "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.1",
               "--d-ox=-1e-5", "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("ecsfm: error: --d-ox: must be in (0")
    assert "\n" not in err
    assert not (tmp_path / "x.csv").exists()


def test_demo_writes_outputs(tmp_path):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    for name in ("demo_cv.csv", "demo_scan_rates.csv", "demo_geometry.csv", "demo_cv.png"):
        assert (tmp_path / name).stat().st_size > 0
    _, _, data = _read(tmp_path / "demo_scan_rates.csv")
    # Reversible peak currents vs Randles-Sevcik, within 1 %.
    np.testing.assert_allclose(data[:, 1], data[:, 2], rtol=0.01)
    # A 10 um sphere at 0.1 V/s is near its steady state at the vertex, 5 s past E0: its current
    # density there is n F C D (1/r0 + 1/sqrt(pi D t)) with t ~ 5 s (8 % above the steady state),
    # within 3 %; a 1 mm one is near planar (peaked, only slightly larger).
    _, _, geo = _read(tmp_path / "demo_geometry.csv")
    vertex = np.argmin(geo[:, 1])
    expected = 96485.33212e-6 * 1e-5 * (1 / 1e-3 + 1 / np.sqrt(np.pi * 1e-5 * 5.0))
    assert abs(-geo[vertex, 5] / expected - 1) < 0.03
    assert -geo[:, 3].min() < 1.2 * -geo[:, 2].min()
    # A 10 um disc at 0.1 V/s (p = 0.62): its peak is Aoki's 4nFDCr (0.34 e^-0.66p + 0.66 + 0.351 p)
    # per pi r^2, within 2 %
    p = 1e-3 * np.sqrt(96485.33212 * 0.1 / (8.314462618 * 298.15 * 1e-5))
    aoki = 4 * 96485.33212e-6 * 1e-5 / (np.pi * 1e-3) * (0.34 * np.exp(-0.66 * p) + 0.66 + 0.351 * p)
    assert abs(-geo[:, 8].min() / aoki - 1) < 0.02


def test_checkpoint_is_a_deprecated_alias_of_the_model_folder(tmp_path, capsys):
    from ecsfm.cli import build_parser

    ckpt = tmp_path / "model" / "surrogate_model.eqx"
    for study in ("calibration", "engines", "sweep"):
        args = build_parser().parse_args(["study", study, "--checkpoint", str(ckpt)])
        assert args.model == ckpt.parent
        err = capsys.readouterr().err.strip()
        assert "--checkpoint is deprecated" in err and "\n" not in err
        with pytest.raises(SystemExit) as stop:  # one or the other
            build_parser().parse_args(["study", study, "--checkpoint", str(ckpt), "--model", str(tmp_path)])
        assert stop.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert build_parser().parse_args(["study", "calibration"]).model is None  # the library's default model


@pytest.mark.parametrize("argv", [["infer"], ["study", "calibration"], ["study", "sbc"], ["study", "sweep"]])
def test_engine_and_method_defaults_are_the_library_s(capsys, argv):
    from ecsfm.posterior import DEFAULT_ENGINE, DEFAULT_METHOD
    from ecsfm.workflows import NOISE_UNIT

    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default {DEFAULT_ENGINE}" in text and f"default {DEFAULT_METHOD}" in text
    assert argv != ["infer"] or f"sd in {NOISE_UNIT}" in text


def test_simulate_force_writes_what_the_scale_check_refuses(tmp_path):
    # 6 V is outside any electrolyte's window: refused as likely mV, written with --force
    argv = ["simulate", "cv", "--e-start", "6", "--e-vertex", "5.5", "--e0", "5.75", "--scan-rate", "0.1",
            "--out", str(tmp_path / "cv.csv")]
    assert main(argv) == 2 and not (tmp_path / "cv.csv").exists()
    assert main([*argv, "--force"]) == 0
    e = np.genfromtxt(tmp_path / "cv.csv", delimiter=",", names=True, comments="#")
    assert e.dtype.names and np.max(e[e.dtype.names[1]]) == pytest.approx(6.0)
