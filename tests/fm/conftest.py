"""A tiny dataset and a tiny trained surrogate, shared by the fm tests (built once per session)."""

import pytest

from ecsfm import data
from ecsfm.fm.train import TrainConfig, train

CFG = TrainConfig(steps=60, eval_every=20, steps_per_call=10, batch_size=32, hidden_size=16, depth=2,
                  cond_dim=16, warmup_steps=5, n_val_rows=64)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    data.generate(data.Plan(recipe="curriculum_multitask", n_samples=160, chunk_size=80, max_species=2,
                            target_len=32, nx=4, seed=3), out, progress=False)
    return out


@pytest.fixture(scope="session")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    history = train(dataset, out, CFG, progress=False)
    return out, history
