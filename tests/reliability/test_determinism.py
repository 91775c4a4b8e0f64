"""The same seed gives the same posterior: ``ecsfm infer`` run twice on one file writes equal
``posterior_summary.json`` (every field; the single-file summary holds no wall-clock time) and
equal arrays in ``posterior_artifacts.npz`` (compared exactly: the computation is the same
sequence of float operations on one machine). Dataset chunks: byte-identical across runs and
worker counts is shown by ``tests/data/test_generate.py``."""

from __future__ import annotations

import json

import numpy as np

from ecsfm import data
from ecsfm.cli import main
from ecsfm.fm import load_surrogate
from ecsfm.data import CoreLayout
from ecsfm.fm import default_assets


def test_infer_twice_gives_identical_posterior_summaries(tmp_path, capsys):
    ckpt, chunk = default_assets()
    _, _, meta, geometry = load_surrogate(ckpt.parent)
    z = data.read_npz(chunk)
    r = int(np.flatnonzero(z["task_id"] == meta["task_names"].index("cv"))[1])
    core = CoreLayout.from_meta(geometry["meta"]).core(z["p"][r], int(z["task_id"][r]), int(z["stage_id"][r]))
    obs = z["i"][r] + np.random.default_rng(3).normal(0.0, 0.02, z["i"][r].size)
    np.savez(tmp_path / "m.npz", e=z["e"][r], i_obs=obs, known_p_core=core)
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        # CEM with 64 particles (the seed settings): seconds, and exercises the random draws.
        assert main(["infer", "--measurement", str(tmp_path / "m.npz"), "--method", "cem", "--particles", "64",
                     "--seed", "11", "--out", str(out)]) == 0
        runs.append((json.loads((out / "posterior_summary.json").read_text()),
                     data.read_npz(out / "posterior_artifacts.npz")))
    capsys.readouterr()
    (s0, a0), (s1, a1) = runs
    assert s0 == s1
    assert sorted(a0) == sorted(a1)
    for key in a0:
        np.testing.assert_array_equal(a0[key], a1[key], err_msg=key)
