"""A tiny dataset and a tiny trained surrogate, shared by the fm tests.

Built once per test run: under pytest-xdist the first worker to ask builds them in the run's
shared temporary folder while holding a file lock, and the other worker waits for it and reads the
same folders (building them twice would cost ~25 s of the suite's time).
"""

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest

from ecsfm import data
from ecsfm.fm.train import TrainConfig, train

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
