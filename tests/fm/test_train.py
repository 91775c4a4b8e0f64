"""Training: loss goes down, artifacts load as the seed loads them, resume continues exactly."""

import json

import equinox as eqx
import jax
import numpy as np
import pytest

from ecsfm import fm
from ecsfm.fm.config import TrainConfig
from ecsfm.fm.model import build_model
from ecsfm.fm.train import train

from ..conftest import CFG


def test_training_lowers_the_loss_and_writes_artifacts(trained):
    out, history = trained
    assert history["step"] == [20, 40, 60]
    assert history["val_loss"][-1] < history["val_loss"][0]
    meta = fm.load_model_metadata(out / fm.MODEL_META_FILENAME)
    normalizers = fm.load_saved_normalizers(out / fm.NORMALIZERS_FILENAME)
    geometry = fm.resolve_model_geometry(normalizers, meta)
    assert geometry["target_len"] == 32 and geometry["phys_dim"] == geometry["phys_dim_core"]
    assert meta["training"]["finished"] and meta["discrepancy"]["current_residual_rms_mA"] > 0
    assert len(meta["params"]) == geometry["phys_dim_base"]
    model = fm.VectorFieldNet(state_dim=geometry["state_dim"], hidden_size=meta["hidden_size"], depth=meta["depth"],
                              cond_dim=meta["cond_dim"], phys_dim=geometry["phys_dim"],
                              signal_channels=geometry["signal_channels"], key=jax.random.PRNGKey(0))
    model = eqx.tree_deserialise_leaves(out / fm.CHECKPOINT_FILENAME, model)
    assert (out / "loss_curve.png").exists() and (out / "training_history.json").exists()
    # Constant one-hot columns (a task absent from training) do not explode: std floored at 1.
    assert np.all(np.isfinite(normalizers[5])) and np.all(normalizers[5] > 0)


def test_resume_continues_exactly(dataset, trained, tmp_path):
    # Interrupt after the first evaluation (20 steps), rerun: the final EMA weights are bit for
    # bit those of the uninterrupted run.
    out_full, _ = trained
    cut = tmp_path / "cut"
    h0 = train(dataset, cut, CFG, progress=False, stop_at_step=20)
    assert h0["step"] == [20]
    assert not fm.load_model_metadata(cut / fm.MODEL_META_FILENAME)["training"]["finished"]
    # A state saved when the dataset's identity was its manifest file's bytes still resumes.
    from ecsfm.fm._data import legacy_manifest_hash
    from ecsfm.fm.train import TRAIN_STATE_META_FILENAME

    state_meta = json.loads((cut / TRAIN_STATE_META_FILENAME).read_text())
    state_meta["dataset_manifest_sha256"] = legacy_manifest_hash(dataset)
    (cut / TRAIN_STATE_META_FILENAME).write_text(json.dumps(state_meta))
    h1 = train(dataset, cut, CFG, progress=False)
    assert h1["step"] == [20, 40, 60]
    a = eqx.tree_deserialise_leaves(cut / fm.CHECKPOINT_FILENAME, build_model(CFG, _geom(cut), jax.random.PRNGKey(1)))
    b = eqx.tree_deserialise_leaves(out_full / fm.CHECKPOINT_FILENAME,
                                    build_model(CFG, _geom(out_full), jax.random.PRNGKey(1)))
    for x, y in zip(jax.tree_util.tree_leaves(eqx.filter(a, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(b, eqx.is_array))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="another config"):
        train(dataset, cut, TrainConfig(**{**CFG.__dict__, "lr": 1e-3}), progress=False)


def _geom(folder):
    return fm.resolve_model_geometry(fm.load_saved_normalizers(folder / fm.NORMALIZERS_FILENAME),
                                     fm.load_model_metadata(folder / fm.MODEL_META_FILENAME))


def test_nrmse_grows_with_the_models_error(dataset, trained):
    # After 60 steps on 24 rows the surrogate is barely trained (its NRMSE is ~1.3, as an untrained
    # one's), so the two cannot be told apart; a model whose every weight is tripled draws currents
    # far off the data, and the score must say so.
    from ecsfm.fm.artifacts import load_surrogate
    from ecsfm.fm.scorecard import current_nrmse

    out, _ = trained
    model, normalizers, meta, geometry = load_surrogate(out)
    score = current_nrmse(model, normalizers, dataset, split=1, n_rows=24, n_draws=2, n_steps=10)
    assert score["overall"]["n"] == 24 and 0 < score["overall"]["median"] <= score["overall"]["p90"]
    broken = jax.tree_util.tree_map(lambda w: 3.0 * w if eqx.is_inexact_array(w) else w, model)
    worse = current_nrmse(broken, normalizers, dataset, split=1, n_rows=24, n_draws=2, n_steps=10)
    assert worse["overall"]["median"] > 2.0 * score["overall"]["median"], (worse["overall"], score["overall"])


def test_data_parallel_training_on_two_devices_matches_one(dataset, trained, tmp_path):
    # The same run with the batch sharded over two XLA CPU devices gives the same weights up to
    # float32 summation order (a subprocess: the device count is fixed when JAX starts).
    import os
    import subprocess
    import sys

    out_full, _ = trained
    code = (
        "import jax; assert jax.local_device_count() == 2\n"
        "from ecsfm.fm.train import TrainConfig, train\n"
        f"cfg = TrainConfig(**{CFG.__dict__!r})\n"
        f"train({str(dataset)!r}, {str(tmp_path / 'dp')!r}, cfg, progress=False)\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    a = eqx.tree_deserialise_leaves(tmp_path / "dp" / fm.CHECKPOINT_FILENAME,
                                    build_model(CFG, _geom(tmp_path / "dp"), jax.random.PRNGKey(1)))
    b = eqx.tree_deserialise_leaves(out_full / fm.CHECKPOINT_FILENAME,
                                    build_model(CFG, _geom(out_full), jax.random.PRNGKey(1)))
    for x, y in zip(jax.tree_util.tree_leaves(eqx.filter(a, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(b, eqx.is_array))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-3, atol=1e-4)
