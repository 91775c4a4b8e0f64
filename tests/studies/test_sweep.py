"""The information sweep: one calibration-study regime per (keep fraction, noise) cell."""

from __future__ import annotations

import json

import numpy as np

from ecsfm.studies.sweep import run_information_sweep


def test_sweep_cells_carry_the_asked_information(tmp_path, stat_seed):
    # Seed-driven (ECSFM_TEST_SEED): the study's draw of cases, noise and masks.
    res = run_information_sweep(tmp_path, keep=(1.0, 0.3), noise=(0.02, 0.2), n_cases=2, engine="simulator",
                                method="cem", progress=False, tasks=["cv"], base_seed=2026 + stat_seed)
    assert len(res["grid"]) == 4
    study = json.loads((tmp_path / "study" / "posterior_identifiability_calibration.json").read_text())
    assert {r["task"] for r in study["records"]} == {"cv"} and len(study["records"]) == 8
    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert on_disk["schema_version"] == 2 and on_disk["grid"] == json.loads(json.dumps(res["grid"]))
    assert (tmp_path / "sweep_heatmaps.png").stat().st_size > 20_000
    cell = {(g["keep"], g["noise_std"]): g for g in res["grid"]}
    for (keep, _), g in cell.items():
        # The observed fraction is the asked one (256 points x 2 cases: binomial sd < 0.03).
        assert abs(g["obs_fraction_mean"] - keep) < 0.1
        assert 0.0 <= g["active_param_cov_1sigma_pooled"] <= g["active_param_cov_2sigma_pooled"] <= 1.0
        assert 0.0 <= g["active_param_interval_cov_1sigma_pooled"] <= g["active_param_interval_cov_2sigma_pooled"] <= 1.0
    # Ten times the noise on the same cases and points: the posterior contracts less.
    for keep in (1.0, 0.3):
        assert cell[(keep, 0.2)]["contraction_mean"] < cell[(keep, 0.02)]["contraction_mean"]
    assert np.isfinite([g["active_param_nrmse_prior_units_mean"] for g in res["grid"]]).all()
