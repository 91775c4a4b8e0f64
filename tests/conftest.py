import os
import shutil
import tempfile

import jax
import pytest

from ecsfm import sim

# One persistent JAX compilation cache for the whole test run, shared by both xdist workers and by
# every subprocess a test starts (CLI runs, the seed notebook): a program compiled once is loaded,
# not compiled again, by the other worker or the next process. Only programs that took at least
# half a second to compile are stored. A cache directory set by the caller is used as it is.
_OWN_CACHE = "ECSFM_TEST_OWNS_JAX_CACHE"


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


def pytest_collection_modifyitems(config, items):
    # The longest test (the seed notebook, ~3 minutes) is handed out first, so that it runs beside
    # the rest of the suite instead of becoming its tail.
    items.sort(key=lambda item: "test_seed_notebook_runs" not in item.nodeid)


@pytest.fixture
def peak():
    """Parabola-refined peak finder (the 1 mV sampling would quantise peaks to +-0.5 mV)."""
    return sim.find_peak
