import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest
from hypothesis import settings

from ecsfm import data, sim
from ecsfm.fm import TrainConfig, train

# One persistent JAX compilation cache for the whole test run, shared by both xdist workers and by
# every subprocess a test starts (CLI runs, the seed notebook): a program compiled once is loaded,
# not compiled again, by the other worker or the next process. Only programs that took at least
# half a second to compile are stored. A cache directory set by the caller is used as it is.
_OWN_CACHE = "ECSFM_TEST_OWNS_JAX_CACHE"


#: Seed of every statistical test: ``ECSFM_TEST_SEED`` (default 0, so the suite is deterministic).
#: Thresholds in those tests come from the statistic's sampling distribution, so any seed passes
#: with the stated probability; rerun with another seed to check that a test is not tuned to one.
TEST_SEED = int(os.environ.get("ECSFM_TEST_SEED", "0"))

# Hypothesis: a fixed, derandomised profile for CI (the default) and a larger random one for local
# exploration (HYPOTHESIS_PROFILE=explore).
settings.register_profile("ci", derandomize=True, max_examples=50, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def stat_seed() -> int:
    """The statistical tests' seed (``ECSFM_TEST_SEED``)."""
    return TEST_SEED


def pytest_configure(config):
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ecsfm-test-jax-cache-")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
        os.environ[_OWN_CACHE] = str(os.getpid())  # the process that removes it at the end
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")))


def pytest_unconfigure(config):
    if os.environ.get(_OWN_CACHE) == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


# The longest test files (the seed notebook ~3 minutes, the exported tiny model's ~4, the
# interrupted runs' ~2, the joint fits' and training's ~1.5 each on 2 cores), longest first: the
# workers take whole files (--dist loadfile) in this order, so these run beside the many short
# ones instead of becoming the run's tail.
_LONG_FILES = ("test_seed_notebook.py", "workflows/test_pipeline.py", "reliability/test_interrupt.py",
               "posterior/test_joint.py", "fm/test_train.py")


def _long_first(item) -> int:
    path = item.nodeid.split("::")[0]
    return next((k for k, name in enumerate(_LONG_FILES) if path.endswith(name)), len(_LONG_FILES))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_long_first)


@pytest.fixture
def peak():
    """Parabola-refined peak finder (the 1 mV sampling would quantise peaks to +-0.5 mV)."""
    return sim.find_peak


# A tiny dataset and a tiny trained surrogate, shared by the tests of fm, workflows and studies.
# Built once per test run: under pytest-xdist the first worker to ask builds them in the run's
# shared temporary folder while holding a file lock, and the other worker waits for it and reads
# the same folders (building them twice would cost ~25 s of the suite's time).

CFG = TrainConfig(steps=60, eval_every=20, steps_per_call=10, batch_size=32, hidden_size=16, depth=2,
                  cond_dim=16, warmup_steps=5, n_val_rows=64)


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run by one process of the test run; every process gets the folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by the workers
    out, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                build(out)
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    return _built_once(tmp_path_factory, "fm_dataset", lambda out: data.generate(
        data.Plan(recipe="curriculum_multitask", n_samples=160, chunk_size=80, max_species=2, target_len=32, nx=4,
                  seed=3), out, progress=False))


@pytest.fixture(scope="session")
def trained(dataset, tmp_path_factory):
    out = _built_once(tmp_path_factory, "fm_model", lambda out: train(dataset, out, CFG, progress=False))
    return out, json.loads((out / "training_history.json").read_text())
