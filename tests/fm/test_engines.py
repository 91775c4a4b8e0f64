"""Surrogate vs simulator posterior on the same case (ecsfm study engines)."""

from __future__ import annotations

import json

import numpy as np

from ecsfm.cli import main


def test_engine_comparison_runs_both_engines_on_the_same_observation(tmp_path, capsys):
    assert main(["study", "engines", "--cases", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    res = json.loads((tmp_path / "engines.json").read_text())
    (case,) = res["cases"]
    assert case["surrogate_record"] and case["simulator_record"]
    for engine in ("surrogate", "simulator"):
        v = case[engine]
        assert len(v["z"]) == len(case["parameters"]) > 0
        sd = np.asarray(v["sd_prior_units"])
        # A posterior sd in prior units lies in [0, 1] up to Monte-Carlo noise (contraction >= 0).
        assert np.all(sd >= 0) and np.all(sd <= 1.5), (engine, sd)
        np.testing.assert_allclose(v["error_prior_units"], np.asarray(v["z"]) * sd, rtol=1e-9)
    # The exact likelihood's posterior is not degenerate: it keeps some spread in every slot.
    assert np.all(np.asarray(case["simulator"]["sd_prior_units"]) > 1e-3)
    assert (tmp_path / "engines.png").stat().st_size > 20_000
    assert "coverage" in capsys.readouterr().out
