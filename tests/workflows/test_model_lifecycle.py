"""``ecsfm export``, ``ecsfm recalibrate`` and ``ecsfm evaluate`` end to end on the tiny model.

What each writes is checked against the dataset it came from, read here directly from its chunk
files: the exported chunk holds real test-split rows of the dataset and nothing else; recalibrate
rewrites the discrepancy (the same calibration export made, from the same fresh rows) and drops
a parameter error calibrated under the replaced one, touching nothing else; evaluate's baseline
errors are recomputed here from the chunks.
"""

import hashlib
import json
import math
import shutil

import numpy as np
import pytest

from ecsfm.cli import main
from ecsfm.fm import CANONICAL_SCENARIOS

#: Fresh rows per task the discrepancy is fitted on. ``ecsfm export`` has no flag for it (it ships
#: 128); 8, the calibration's minimum, keeps the export to seconds -- it tests the same code path.
ROWS_PER_TASK = 8


def _dataset_rows(dataset):
    """Every row of the dataset's chunk files: {key: (N, ...)} for the per-row keys."""
    chunks = [np.load(p, allow_pickle=False) for p in sorted(dataset.glob("chunk_*.npz"))]
    keys = ("i", "e", "p", "split", "task_id", "stage_id")
    return {k: np.concatenate([c[k] for c in chunks]) for k in keys}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def exported(trained, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ecsfm.workflows.export.DISCREPANCY_ROWS_PER_TASK", ROWS_PER_TASK)
        assert main(["export", "--model", str(trained[0]), "--data", str(dataset), "--out", str(out), "--rows", "16",
                     "--parameter-error-cases", "0"]) == 0
    return out


def test_export_ships_the_model_and_real_test_rows_only(exported, trained, dataset):
    for name in ("surrogate_model.eqx", "normalizers.npz"):  # copied byte for byte
        assert _sha(exported / name) == _sha(trained[0] / name)
    rows = _dataset_rows(dataset)
    with np.load(exported / "chunk_0.npz", allow_pickle=False) as z:
        chunk = {k: z[k] for k in ("i", "e", "p", "split", "task_id", "stage_id")}
    n = chunk["i"].shape[0]
    assert n == 16 and np.all(chunk["split"] == 2)
    # Each exported row is one test row of the dataset, all its arrays together, none twice.
    found = []
    for k in range(n):
        same = np.flatnonzero(np.all(rows["p"] == chunk["p"][k], axis=1) & (rows["split"] == 2))
        assert same.size == 1, k
        j = int(same[0])
        for key in ("i", "e", "task_id", "stage_id"):
            assert np.array_equal(rows[key][j], chunk[key][k]), (k, key)
        found.append(j)
    assert len(set(found)) == n
    # Stratified over the tasks present in the test split: at most ceil(16 / tasks) rows each.
    tasks = np.unique(rows["task_id"][rows["split"] == 2])
    assert np.bincount(chunk["task_id"]).max() <= math.ceil(16 / tasks.size)
    meta = json.loads((exported / "model_meta.json").read_text())
    assert meta["provenance"]["held_out_chunk"] == {"split": "test", "n_rows": 16, "seed": 0}
    assert meta["simulator"] == json.loads((dataset / "manifest.json").read_text())["simulator"]
    disc = meta["discrepancy"]
    assert disc["rows"] == f"fresh prior draws ({ROWS_PER_TASK} per task)"
    assert {row["n_rows"] for row in disc["per_task"].values()} == {ROWS_PER_TASK}
    assert "parameter_error" not in meta  # --parameter-error-cases 0: none calibrated


def test_recalibrate_rewrites_the_discrepancy_and_nothing_else(exported, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    meta_path = folder / "model_meta.json"
    original = json.loads(meta_path.read_text())
    # A stale state: a different discrepancy, and a parameter error calibrated under it.
    stale = json.loads(json.dumps(original))
    for row in stale["discrepancy"]["per_task"].values():
        row["model"]["a_mA"] = 123.0
    stale["parameter_error"] = {"per_task": {task: 0.5 for task in stale["task_names"]}, "stale": True}
    meta_path.write_text(json.dumps(stale))
    before = {name: _sha(folder / name) for name in ("surrogate_model.eqx", "normalizers.npz", "chunk_0.npz")}
    assert main(["recalibrate", "--model", str(folder), "--rows-per-task", str(ROWS_PER_TASK), "--seed", "17",
                 "--parameter-error-cases", "0", "--no-progress"]) == 0
    new = json.loads(meta_path.read_text())
    # Export fitted its discrepancy on fresh rows drawn with seed 0 + 17; recalibrate with seed 17
    # draws the same rows and must fit the same numbers -- the stale ones are gone.
    assert new["discrepancy"] == original["discrepancy"]
    assert "parameter_error" not in new  # calibrated under the replaced discrepancy: dropped
    assert {k: v for k, v in new.items() if k not in ("discrepancy", "package_version")} == \
        {k: v for k, v in original.items() if k not in ("discrepancy", "package_version")}
    assert {name: _sha(folder / name) for name in before} == before  # model, normalisers, chunk untouched


def test_evaluate_scorecard_against_baselines_recomputed_from_the_chunks(trained, dataset, tmp_path):
    rows = _dataset_rows(dataset)
    test = rows["split"] == 2
    tasks = np.unique(rows["task_id"][test])
    out = tmp_path / "card"
    # One test row per task (--rows = number of tasks): the cheapest scorecard that still covers
    # every task, the canonical scenarios and the throughput.
    assert main(["evaluate", "--model", str(trained[0]), "--data", str(dataset), "--out", str(out),
                 "--rows", str(tasks.size), "--draws", "2", "--steps", "4", "--no-progress"]) == 0
    card = json.loads((out / "scorecard.json").read_text())
    names = json.loads((dataset / "manifest.json").read_text())["task_names"]
    assert card["settings"]["n_rows"] == card["overall"]["n"] == tasks.size
    assert sorted(card["per_task"]) == sorted(names[t] for t in tasks)
    assert [c["name"] for c in card["canonical"]] == list(CANONICAL_SCENARIOS)
    assert all(math.isfinite(c["nrmse"]) and c["nrmse"] > 0 for c in card["canonical"])
    for t in tasks:
        entry = card["per_task"][names[t]]
        assert entry["n"] == 1
        # The mean-training-trace baseline, recomputed from the chunks for every test row of the
        # task: the row predicted by the task's mean training current, NRMSE = rms error / the
        # row's range. The scored row's value must be one of them. (The chunks store the current in
        # float32, the scorecard decodes it from the state: agreement to 1e-4 relative; distinct
        # rows' values differ by far more.)
        truth = rows["i"][test & (rows["task_id"] == t)].astype(np.float64)
        mean_train = rows["i"][(rows["split"] == 0) & (rows["task_id"] == t)].astype(np.float64).mean(0)
        nrmse = np.sqrt(np.mean((mean_train - truth) ** 2, axis=1)) / (truth.max(1) - truth.min(1))
        got = entry["mean_trace"]["nrmse"]["median"]
        assert np.min(np.abs(nrmse / got - 1)) < 1e-4, (names[t], got, nrmse)
        s = entry["surrogate"]["nrmse"]
        assert math.isfinite(s["median"]) and s["median"] > 0
    for name in ("scorecard_tasks.png", "scorecard_canonical.png", "scorecard_errors.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recalibrate_prints_each_tasks_weight_and_band_scales(capsys):
    # The band scales are stored per observed fraction; the summary line names each (a format of
    # the whole dict once crashed the command after it had written the model).
    from ecsfm.cli.commands.recalibrate import _print

    meta = {"parameter_error": {"per_task": {"cv": 0.35}, "band_scale": {"per_task": {"cv": {"1.0": 1.52, "0.35": 1.7}}}}}
    _print(meta, keep_discrepancy=True)
    out = capsys.readouterr().out
    assert "cv" in out and "0.35" in out and "100% observed 1.52" in out and "35% observed 1.70" in out
