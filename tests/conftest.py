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


# The longest test files (the seed notebook ~3 minutes, the exported tiny model's ~4, the
# interrupted runs' ~2, the joint fits' and training's ~1.5 each on 2 cores), longest first: the
# workers take whole files (--dist loadfile) in this order, so these run beside the many short
# ones instead of becoming the run's tail.
_LONG_FILES = ("test_seed_notebook.py", "fm/test_pipeline.py", "reliability/test_interrupt.py", "fm/test_joint.py",
               "fm/test_train.py")


def _long_first(item) -> int:
    path = item.nodeid.split("::")[0]
    return next((k for k, name in enumerate(_LONG_FILES) if path.endswith(name)), len(_LONG_FILES))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_long_first)


@pytest.fixture
def peak():
    """Parabola-refined peak finder (the 1 mV sampling would quantise peaks to +-0.5 mV)."""
    return sim.find_peak
