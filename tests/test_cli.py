"""The ecsfm command: files written, units stated, errors as one line."""

import numpy as np
import pytest

from ecsfm.cli import main


def _read(path):
    lines = path.read_text().splitlines()
    comments = [ln for ln in lines if ln.startswith("#")]
    header = lines[len(comments)].split(",")
    data = np.loadtxt(path, delimiter=",", comments="#", skiprows=len(comments) + 1, ndmin=2)
    return comments, header, data


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


@pytest.mark.parametrize(
    "technique, args, columns",
    [
        ("swv", ["--e-start", "0.3", "--e-end", "-0.3"], ["base_potential_V", "forward_current_A",
                                                          "reverse_current_A", "difference_current_A"]),
        ("ca", ["--e-initial", "0.3", "--e-step", "-0.3", "--duration", "1"], ["time_s", "potential_V"]),
        ("eis", ["--c-red", "1.0"], ["frequency_Hz", "z_real_ohm"]),
    ],
)
def test_simulate_other_techniques(tmp_path, technique, args, columns):
    out = tmp_path / f"{technique}.csv"
    assert main(["simulate", technique, *args, "--out", str(out), "--plot", str(tmp_path / "p.png")]) == 0
    _, header, data = _read(out)
    assert header[: len(columns)] == columns
    assert np.all(np.isfinite(data))


def test_bad_input_is_one_line_naming_the_field(tmp_path, capsys):
    rc = main(["simulate", "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.1",
               "--d-ox=-1e-5", "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("ecsfm: error: d_ox: must be in (0")
    assert "\n" not in err
    assert not (tmp_path / "x.csv").exists()


def test_demo_writes_outputs(tmp_path):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    for name in ("demo_cv.csv", "demo_scan_rates.csv", "demo_cv.png"):
        assert (tmp_path / name).stat().st_size > 0
    _, _, data = _read(tmp_path / "demo_scan_rates.csv")
    # Reversible peak currents vs Randles-Sevcik, within 1 %.
    np.testing.assert_allclose(data[:, 1], data[:, 2], rtol=0.01)


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
