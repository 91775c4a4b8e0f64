"""Absurd sizes are refused up front, with the field and its allowed range, before anything is
allocated or written: each command runs in a subprocess under a short timeout, so an attempt to
allocate (or to loop over 10^9 chunks) would fail the test by timing out or by a MemoryError
traceback instead of exit status 2."""

import subprocess
import sys

import pytest

CASES = [
    (["generate", "--n-samples", "100", "--target-len", "1000000000"], "--target-len: must be an integer in [20, 16384]"),
    (["generate", "--n-samples", str(10**12)], "--n-samples: must be an integer in [1, 1000000000]"),
    (["generate", "--n-samples", "100", "--nx", "1000000000"], "nx: must be an integer in [2, 1024]"),
    (["generate", "--n-samples", "10000000", "--chunk-size", "1000000000"], "--chunk-size: must be an integer in [1, 1000000]"),
    (["generate", "--n-samples", "1000000", "--chunk-size", "1000000", "--target-len", "1000"],
     "--chunk-size: rows per chunk * target_len must be <= 67108864"),
    (["train", "--data", "DATA", "--batch-size", "1000000000"], "--batch-size: must be an integer in [1, 65536]"),
    (["train", "--data", "DATA", "--hidden-size", "1000000000"], "--hidden-size: must be an integer in [1, 4096]"),
    (["simulate", "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.1", "--step", "1e-12"],
     "step: 600000000000 steps exceeds 2000000"),
    (["simulate", "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.1", "--step", "0.01",
      "--n-cycles", "100000000"], "--n-cycles: must be an integer in [1, 2000000]"),
    (["simulate", "ca", "--e-initial", "0.3", "--e-step", "-0.3", "--duration", "1", "--n-steps", "1000000000"],
     "--n-steps: must be an integer in [2, 2000000]"),
    (["simulate", "sinusoid", "--e-dc", "0", "--amplitude", "0.01", "--frequency", "10", "--n-periods", "100000000"],
     "--n-periods: must be an integer in [1, 2000000]"),
    (["simulate", "sinusoid", "--e-dc", "0", "--amplitude", "0.01", "--frequency", "10", "--n-periods", "100000",
      "--points-per-period", "100"], "--n-periods: n_periods * points_per_period must be < 2000000"),
    (["simulate", "swv", "--e-start", "0", "--e-end", "1", "--step", "1e-6"], "waveform: more than 2000000 time points"),
    (["simulate", "eis", "--n-freq", "1000000000"], "--n-freq: must be an integer in [1, 100000]"),
    (["study", "calibration", "--cases", "1000000000"], "cases: must be an integer in [1, 100000]"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:2]) + " " + a[-2] for a, _ in CASES])
def test_absurd_size_is_refused_up_front(tmp_path, args, message):
    args = [str(tmp_path / "data") if a == "DATA" else a for a in args]
    out = tmp_path / "out"
    if args[0] == "simulate":
        args += ["--out", str(out / "x.csv")]
    else:
        args += ["--out", str(out), "--no-progress"]
    # A refusal costs the interpreter and JAX start: ~3 s on an idle 2-core machine, ~20 s with
    # the rest of the suite beside it. The timeout only stops a runaway, so it is set far above
    # any machine's start (600 s) rather than near this one's: an attempt at these sizes still
    # fails the test, by dying with a MemoryError traceback (exit status 1, not 2), by writing
    # the output folder, or, at worst, by running into the timeout.
    res = subprocess.run([sys.executable, "-m", "ecsfm", *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.startswith("ecsfm: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert message in res.stderr
    assert not out.exists()  # refused before anything was written
