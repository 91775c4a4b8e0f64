"""The chain on a tiny model: scorecard, export, `ecsfm infer`, the calibration study."""

import json

import numpy as np
import pytest

from ecsfm.cli import main


@pytest.fixture(scope="module")
def assets(dataset, trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("assets")
    from ecsfm.fm.export import export_assets

    meta = export_assets(trained[0], dataset, out, n_rows=24)
    return out, meta


def test_scorecard_has_baselines_and_canonical_scenarios(dataset, trained, tmp_path):
    from ecsfm.fm.eval_classical import CANONICAL_SCENARIOS, evaluate_surrogate

    card = evaluate_surrogate(trained[0], dataset, tmp_path, n_rows=24, n_draws=2, n_steps=8, progress=False)
    saved = json.loads((tmp_path / "scorecard.json").read_text())
    assert saved["schema_version"] == 1 and saved["overall"]["n"] == card["overall"]["n"] > 0
    for row in card["per_task"].values():
        for key in ("surrogate", "mean_trace", "nearest_neighbour"):
            assert np.isfinite(row[key]["nrmse"]["median"])
        assert 0.0 <= row["draw_spread"]["coverage_1sigma"] <= row["draw_spread"]["coverage_2sigma"] <= 1.0
    assert [c["name"] for c in card["canonical"]] == list(CANONICAL_SCENARIOS)
    assert card["throughput"]["surrogate_traces_per_s"] > 0 and card["throughput"]["simulator_traces_per_s_cv"] > 0
    for name in ("scorecard_tasks.png", "scorecard_canonical.png", "scorecard_errors.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_export_ships_only_test_rows_and_a_calibrated_discrepancy(assets, dataset):
    out, meta = assets
    with np.load(out / "chunk_0.npz", allow_pickle=False) as z:
        assert set(z["split"].tolist()) == {2}
        assert {"i", "e", "p", "task_id", "stage_id"} <= set(z.files)
        n = z["i"].shape[0]
        assert 0 < n <= 24 and z["i"].shape[1] == 32 and n == meta["provenance"]["held_out_chunk"]["n_rows"]
    for task, row in meta["discrepancy"]["per_task"].items():
        assert row["model"]["a_mA"] >= 0 and row["model"]["b"] >= 0
    assert meta["provenance"]["held_out_chunk"]["split"] == "test" and meta["simulator"]["area_cm2"] == 1.0


def _case(assets_dir, row=0):
    from ecsfm.fm.eval_classical import load_surrogate
    from ecsfm.studies.calibration import compose_core_params

    _, _, _, geometry = load_surrogate(assets_dir)
    with np.load(assets_dir / "chunk_0.npz", allow_pickle=False) as z:
        core = compose_core_params(z["p"][row], int(z["task_id"][row]), int(z["stage_id"][row]), geometry)
        return z["e"][row], z["i"][row], core, geometry


def test_infer_cli_on_an_npz_measurement(assets, tmp_path):
    out, _ = assets
    e, i, core, geometry = _case(out)
    rng = np.random.default_rng(0)
    km = np.zeros(core.size, bool)
    km[geometry["phys_dim_base"]:] = True
    mask = (rng.random(e.size) < 0.7).astype(np.float32)
    np.savez(tmp_path / "m.npz", e=e, i_obs=i + rng.normal(0, 0.02, i.size), i_mask=mask, known_p_core=core,
             known_p_mask=km, p_true=core)
    rc = main(["infer", "--model", str(out), "--measurement", str(tmp_path / "m.npz"), "--noise", "0.02",
               "--particles", "128", "--known", "alpha=0.5", "--out", str(tmp_path / "post")])
    assert rc == 0
    summary = json.loads((tmp_path / "post" / "posterior_summary.json").read_text())
    assert "alpha" not in summary["parameters"] and "e0[0]" in summary["parameters"] or "e0[1]" in summary["parameters"]
    for v in summary["parameters"].values():
        assert v["q05"] <= v["q50"] <= v["q95"] and v["sd"] >= 0
    assert summary["diagnostics"]["engine"] == "simulator" and summary["diagnostics"]["method"] == "smc"
    for name in ("posterior_predictive.png", "posterior_marginals.png", "posterior_artifacts.npz"):
        assert (tmp_path / "post" / name).exists()


@pytest.mark.parametrize("args, message", [
    (["--known", "zz=1"], "unknown parameter 'zz'"),
    (["--known", "k0=-1"], "k0 must be > 0"),
    (["--known", "e0=3"], "outside the prior"),
    (["--noise", "-1"], "obs_noise_std"),
])
def test_infer_cli_bad_input_is_one_line_and_nonzero(assets, tmp_path, capsys, args, message):
    out, _ = assets
    e, i, core, geometry = _case(out)
    np.savez(tmp_path / "m.npz", e=e, i_obs=i, known_p_core=core)
    rc = main(["infer", "--model", str(out), "--measurement", str(tmp_path / "m.npz"), "--out", str(tmp_path / "p")]
              + args)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_infer_cli_refuses_wrong_lengths_and_nan(assets, tmp_path, capsys):
    out, _ = assets
    e, i, core, _ = _case(out)
    np.savez(tmp_path / "short.npz", e=e[:-1], i_obs=i[:-1], known_p_core=core)
    assert main(["infer", "--model", str(out), "--measurement", str(tmp_path / "short.npz"), "--out", str(tmp_path)]) == 2
    assert "32 points" in capsys.readouterr().err
    bad = i.copy()
    bad[3] = np.nan
    np.savez(tmp_path / "nan.npz", e=e, i_obs=bad, known_p_core=core)
    assert main(["infer", "--model", str(out), "--measurement", str(tmp_path / "nan.npz"), "--out", str(tmp_path)]) == 2
    assert "NaN" in capsys.readouterr().err


def test_calibration_study_over_a_local_dask_cluster_and_resume(assets, tmp_path):
    from distributed import Client, LocalCluster

    from ecsfm.studies.calibration import RESULT_FILENAME, run_calibration_study

    out, _ = assets
    kw = dict(checkpoint=out / "surrogate_model.eqx", chunk=out / "chunk_0.npz", n_cases=2, engine="simulator",
              method="cem", progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        first = run_calibration_study(tmp_path / "a", scheduler=client, **kw)
    local = run_calibration_study(tmp_path / "b", **kw)
    assert [r["case_index"] for r in first["records"]] == [r["case_index"] for r in local["records"]]
    # Same seeds, same cases: the distributed run gives the local run's numbers.
    for a, b in zip(first["records"], local["records"]):
        assert a["param_nrmse"] == pytest.approx(b["param_nrmse"], rel=1e-5)
    saved = json.loads((tmp_path / "b" / RESULT_FILENAME).read_text())
    assert set(saved["summary"]) == {"dense_clean", "sparse_clean", "sparse_noisy"}
    assert len(saved["records"]) == 6 and len(saved["criteria"]) == 3
    for name in ("posterior_recovery_calibration_boxes.png", "posterior_calibration_curves.png",
                 "posterior_sparse_noisy_worst_case.png", "report.md"):
        assert (tmp_path / "b" / name).exists()
    # Interrupted after 3 cases (journal cut mid-line): the rerun does only the rest.
    journal = (tmp_path / "b" / "records.jsonl").read_text().splitlines()
    (tmp_path / "b" / "records.jsonl").write_text("\n".join(journal[:4]) + "\n" + journal[4][:50])
    again = run_calibration_study(tmp_path / "b", **kw)
    assert [r["param_nrmse"] for r in again["records"]] == pytest.approx([r["param_nrmse"] for r in local["records"]])
