"""Generation: seed-compatible chunks, determinism across workers, resume after kill -9, splits,
exact augmentation."""

import json
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from ecsfm import data
from ecsfm.fm._data import manifest_hash

SMALL = dict(recipe="curriculum_multitask", n_samples=96, chunk_size=24, max_species=2, target_len=32, nx=4, seed=7)


def _hashes(folder):
    return {c["file"]: c["sha256"] for c in json.loads((folder / "manifest.json").read_text())["chunks"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    manifest = data.generate(data.Plan(**SMALL), out, progress=False)
    return out, manifest


def test_chunks_are_seed_compatible(reference):
    out, manifest = reference
    space = data.ParamSpace(SMALL["max_species"])
    z = data.read_npz(out / "chunk_0.npz")  # allow_pickle=False
    n = z["i"].shape[0]
    for key, shape in (("i", (n, 32)), ("e", (n, 32)), ("t", (n, 32)), ("p", (n, space.size)),
                       ("ox", (n, 2 * 4)), ("red", (n, 2 * 4))):
        assert z[key].shape == shape and z[key].dtype == np.float32, key
    for key in ("task_id", "stage_id", "aug_id", "base_id", "split"):
        assert z[key].shape == (n,)
    assert list(z["task_names"]) == list(data.TASK_NAMES)
    assert list(z["stage_names"]) == list(data.STAGE_NAMES)
    assert manifest["params"][space.index("e0", 1)]["name"] == "e0[1]"
    assert manifest["n_rows"] == sum(c["rows"] for c in manifest["chunks"])
    # Every row's parameters lie in its prior; the time axis is the protocol's.
    recipe = data.RECIPES[SMALL["recipe"]]
    for r in range(n):
        prior = recipe.prior(data.TASK_NAMES[z["task_id"][r]], data.STAGE_NAMES[z["stage_id"][r]])
        assert np.isfinite(prior.log_prob(z["p"][r].astype(np.float64), space)), r
    t_end = z["t"][:, -1]
    scale = np.exp(z["p"][:, space.index("ln_time_scale")])
    interp = np.isin(z["task_id"], [data.TASK_NAMES.index(t) for t in ("cv", "cv_multispecies", "ca_step", "eis")])
    np.testing.assert_allclose(t_end[interp], scale[interp], rtol=1e-5)


def test_twins_are_exact_and_share_the_split(reference):
    out, _ = reference
    z = data.read_npz(out / "chunk_1.npz")
    twins = np.flatnonzero(z["aug_id"] == 1)
    assert twins.size > 0
    for r in twins[:6]:
        base = np.flatnonzero((z["base_id"] == z["base_id"][r]) & (z["aug_id"] == 0))[0]
        assert z["split"][r] == z["split"][base]
        np.testing.assert_array_equal(z["i"][r], z["i"][base])
        assert not np.array_equal(z["p"][r], z["p"][base])
        # Re-simulating the permuted parameters gives the same current: the permutation is exact.
        task = data.TASK_NAMES[z["task_id"][r]]
        run = data.task_runner(task, 32, 4, 2, 1.0, 298.15, data.Plan(**SMALL).config)
        i_perm = np.asarray(run(jnp.asarray(z["p"][r : r + 1]))[0])[0]
        scale = np.abs(z["i"][base]).max()
        np.testing.assert_allclose(i_perm, z["i"][base], atol=1e-4 * scale)


def test_split_is_by_base_sample_and_near_its_fractions():
    base = np.arange(200_000)
    split = data.split_of(base, seed=3, fractions=(0.8, 0.1, 0.1))
    frac = np.bincount(split, minlength=3) / base.size
    np.testing.assert_allclose(frac, [0.8, 0.1, 0.1], atol=0.005)  # binomial sd ~ 0.001
    np.testing.assert_array_equal(split, data.split_of(base, seed=3, fractions=(0.8, 0.1, 0.1)))


def test_one_and_two_workers_write_identical_bytes(reference, tmp_path):
    ref, _ = reference
    manifest = data.generate(data.Plan(**SMALL), tmp_path / "two", workers=2, progress=False)
    assert _hashes(tmp_path / "two") == _hashes(ref)
    assert manifest["n_rows"] == json.loads((ref / "manifest.json").read_text())["n_rows"]
    # The same dataset made by another run (other timings) has the same identity.
    assert manifest_hash(tmp_path / "two") == manifest_hash(ref)
    assert (tmp_path / "two" / "manifest.json").read_bytes() != (ref / "manifest.json").read_bytes()


def test_dataset_identity_ignores_timings_and_sees_content(reference, tmp_path):
    ref, _ = reference
    base = json.loads((ref / "manifest.json").read_text())

    def identity(manifest, name):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=3))  # another layout, too
        return manifest_hash(folder)

    timings = {**base, "generation": {k: v + 1.0 for k, v in base["generation"].items()}}
    assert identity(timings, "timings") == manifest_hash(ref)
    chunk = json.loads(json.dumps(base))
    chunk["chunks"][1]["sha256"] = "0" * 64
    assert identity(chunk, "chunk") != manifest_hash(ref)
    assert identity({**base, "seed": base["seed"] + 1}, "seed") != manifest_hash(ref)


_KILL_AFTER_FIRST_CHUNK = """
import os, signal, sys
import ecsfm.data._generate as g
build = g.build_chunk_file
def build_then_die(*args, **kwargs):
    build(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
g.build_chunk_file = build_then_die
from ecsfm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_then_rerun_loses_and_duplicates_nothing(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "ecsfm", "generate", "--recipe", SMALL["recipe"], "--n-samples",
            str(SMALL["n_samples"]), "--chunk-size", str(SMALL["chunk_size"]), "--max-species", "2",
            "--target-len", "32", "--nx", "4", "--seed", str(SMALL["seed"]), "--out", str(out), "--no-progress"]
    # SIGKILL right after the first chunk is written, from inside the process: a watcher polling
    # for the chunk races the generator, which can finish every small chunk before the kill lands.
    killed = subprocess.run([sys.executable, "-c", _KILL_AFTER_FIRST_CHUNK, *args[3:]], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert (out / "chunk_0.json").exists() and not (out / "chunk_1.json").exists()
    assert not (out / "manifest.json").exists()
    # Corrupt a finished chunk as a crash in the middle of a copy would.
    path = out / "chunk_0.npz"
    path.write_bytes(path.read_bytes()[:100])
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, timeout=300)
    assert _hashes(out) == _hashes(ref)
    chunks = [data.read_npz(out / f"chunk_{k}.npz") for k in range(4)]
    ids = np.concatenate([z["base_id"][z["aug_id"] == 0] for z in chunks])
    np.testing.assert_array_equal(np.sort(ids), np.arange(SMALL["n_samples"]))
    assert not list(out.glob("*.tmp*"))


def test_rerun_into_a_different_dataset_is_refused(reference):
    ref, _ = reference
    with pytest.raises(ValueError, match="different dataset"):
        data.generate(data.Plan(**{**SMALL, "seed": 8}), ref, progress=False)
