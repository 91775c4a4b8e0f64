"""Dataset QC: a clean dataset passes, and each defect it looks for is caught."""

import json
import shutil

import numpy as np
import pytest

from ecsfm import data
from ecsfm.cli import main

SMALL = dict(recipe="baseline_random", n_samples=60, chunk_size=30, max_species=2, target_len=40, nx=4, seed=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    data.generate(data.Plan(**SMALL), out, progress=False)
    return out


def test_clean_dataset_has_no_problems(dataset, tmp_path):
    report = data.inspect_dataset(dataset, tmp_path)
    assert report["problems"] == []
    assert report["n_rows"] == json.loads((dataset / "manifest.json").read_text())["n_rows"]
    assert 0.5 < report["task_entropy"] <= 1.0
    assert report["per_task"]["eis"]["min_samples_per_period"] >= data.MIN_SAMPLES_PER_PERIOD
    for name in ("report.json", "summary.png", "gallery.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_defects_are_caught(dataset, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    z = data.read_npz(bad / "chunk_0.npz")
    space = data.ParamSpace(2)
    z["i"][0] = 0.0  # flat
    z["i"][1, 5] = np.nan  # non-finite
    z["i"][2, 10:14] = z["i"][2].max() + 1.0  # clipped at its maximum for 4 samples
    z["p"][3, space.index("e0", 0)] = 0.9  # outside every prior
    digest = data.write_npz(bad / "chunk_0.npz", z)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["chunks"][0]["sha256"] = digest
    manifest["chunks"][1]["sha256"] = "0" * 64  # a chunk that no longer matches its checksum
    (bad / "manifest.json").write_text(json.dumps(manifest))
    report = data.inspect_dataset(bad, tmp_path / "report")
    text = " | ".join(report["problems"])
    assert "checksum" in text and "chunk_1.npz" in text
    assert report["nonfinite"]["i"] == 1
    assert sum(d["flat_traces"] for d in report["per_task"].values()) == 1
    assert sum(d["clipped_traces"] for d in report["per_task"].values()) >= 1
    assert sum(d["params_outside_prior"] for d in report["per_task"].values()) == 1


def test_cli_generate_and_inspect(tmp_path, capsys):
    out = tmp_path / "d"
    rc = main(["generate", "--recipe", "stress_mixture", "--n-samples", "24", "--chunk-size", "12",
               "--target-len", "32", "--nx", "4", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert (out / "manifest.json").exists() and (out / "chunk_1.npz").exists()
    assert main(["data", "inspect", str(out), "--out", str(tmp_path / "r")]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
    assert main(["generate", "--recipe", "nope", "--n-samples", "4", "--out", str(tmp_path / "x")]) == 2
