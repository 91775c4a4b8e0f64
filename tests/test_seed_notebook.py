"""The seed notebook runs unmodified against the package and the shipped default assets."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecsfm.fm import default_assets

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "nature_04_posterior_identifiability_calibration.ipynb"
SEED = ROOT.parent / "shared" / "seed" / "nature_04_posterior_identifiability_calibration.txt"
ARTIFACTS = Path("/tmp/ecsfm/notebook_nature_04")  # fixed by the seed

# Executes the code cells in order in one namespace, as a kernel would (plots to the Agg backend).
RUNNER = """
import json, sys
nb = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for cell in nb["cells"]:
    if cell["cell_type"] == "code":
        exec(compile("".join(cell["source"]), "<notebook cell>", "exec"), ns)
"""


def _code_cells():
    nb = json.loads(NOTEBOOK.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_notebook_is_the_seed_cell_for_cell():
    if not SEED.exists():
        pytest.skip("seed text not present beside this checkout")
    seed = SEED.read_text()
    cells = _code_cells()
    assert len(cells) == seed.count("In [None]:")
    for code in cells:
        assert code in seed


def test_seed_notebook_runs_and_writes_its_json_and_plots():
    ckpt, chunk = default_assets()
    assert ckpt.exists() and chunk.exists(), "the default assets ship with the package"
    start = time.time()
    env = dict(os.environ, ECSFM_CHECKPOINT=str(ckpt), ECSFM_DATASET_CHUNK=str(chunk), MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, "-c", RUNNER, str(NOTEBOOK)], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = ARTIFACTS / "posterior_identifiability_calibration.json"
    assert result.stat().st_mtime >= start
    payload = json.loads(result.read_text())
    assert set(payload["summary"]) == {"dense_clean", "sparse_clean", "sparse_noisy"}
    assert len(payload["records"]) == 24
    # The summary is the records' means, per regime (recomputed here), and each regime observed
    # what it says: every point when dense, a fraction keep_prob when sparse (each point kept
    # independently: within 4 binomial standard errors over the regime's 8 traces).
    import numpy as np

    with np.load(chunk, allow_pickle=False) as z:
        length = z["i"].shape[1]
    for regime, row in payload["summary"].items():
        recs = [r for r in payload["records"] if r["regime"] == regime]
        assert len(recs) == 8, regime
        for key in ("obs_fraction", "param_nrmse", "pred_cov_1sigma", "pred_cov_2sigma", "reliability_score"):
            assert abs(row[f"{key}_mean"] - np.mean([r[key] for r in recs])) < 1e-9, (regime, key)
        keep = payload["config"]["observation_regimes"][regime]["keep_prob"]
        n_points = len(recs) * length
        assert abs(row["obs_fraction_mean"] - keep) <= 4 * np.sqrt(keep * (1 - keep) / n_points), (regime, row)
    for name in ("posterior_recovery_calibration_boxes.png", "posterior_calibration_curves.png",
                 "posterior_sparse_noisy_worst_case.png"):
        assert (ARTIFACTS / name).stat().st_mtime >= start
