"""The surrogate's building blocks: seed-compatible construction and loading, the flow-matching
objective and sampler against analytic velocity fields."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecsfm import fm
from ecsfm.fm.eval_classical import _resolve_model_geometry
from ecsfm.fm.model import VectorFieldNet
from ecsfm.fm.train import MODEL_META_FILENAME, NORMALIZERS_FILENAME, load_model_metadata, load_saved_normalizers

S, NX, L = 2, 4, 32
P_BASE = 7 * S + 3


def _write_artifacts(folder, hidden=16, depth=2, cond_dim=8):
    n_tasks, n_stages = 6, 5
    phys = P_BASE + n_tasks + n_stages
    state = 2 * S * NX + L
    norms = (np.zeros(state), np.ones(state), np.zeros(L), np.ones(L), np.zeros(phys), np.ones(phys))
    fm.save_normalizers(folder / NORMALIZERS_FILENAME, norms)
    meta = dict(hidden_size=hidden, depth=depth, cond_dim=cond_dim, max_species=S, nx=NX, target_len=L,
                signal_channels=1, phys_dim_base=P_BASE, task_names=["a"] * n_tasks, stage_names=["b"] * n_stages)
    fm.save_model_metadata(folder / MODEL_META_FILENAME, meta)
    model = VectorFieldNet(state_dim=state, hidden_size=hidden, depth=depth, cond_dim=cond_dim, phys_dim=phys,
                           signal_channels=1, key=jax.random.PRNGKey(5))
    # Perturb the zero-initialised output layer so that the round trip is a real check.
    model = eqx.tree_at(lambda m: m.conv_out.weight, model, jnp.full_like(model.conv_out.weight, 0.01))
    eqx.tree_serialise_leaves(folder / fm.CHECKPOINT_FILENAME, model)
    return model


def test_seed_style_loading_restores_the_model(tmp_path):
    saved = _write_artifacts(tmp_path)
    # Exactly the seed notebook's sequence.
    normalizers = load_saved_normalizers(tmp_path / NORMALIZERS_FILENAME)
    meta = load_model_metadata(tmp_path / MODEL_META_FILENAME)
    geometry = _resolve_model_geometry(normalizers, meta)
    assert geometry["state_dim"] == 2 * S * NX + L and geometry["phys_dim_core"] == geometry["phys_dim"]
    _, model_key = jax.random.split(jax.random.PRNGKey(np.uint32(2026)))
    model = VectorFieldNet(state_dim=int(geometry["state_dim"]), hidden_size=int(meta.get("hidden_size", 128)),
                           depth=int(meta.get("depth", 3)), cond_dim=int(meta.get("cond_dim", 32)),
                           phys_dim=int(geometry["phys_dim"]), signal_channels=int(geometry["signal_channels"]),
                           key=model_key)
    model = eqx.tree_deserialise_leaves(tmp_path / fm.CHECKPOINT_FILENAME, model)
    x = jnp.linspace(-1, 1, geometry["state_dim"])
    e, p = jnp.sin(jnp.arange(L) / 5.0), jnp.ones(geometry["phys_dim"])
    np.testing.assert_array_equal(model(0.3, x, e, p), saved(0.3, x, e, p))


def test_geometry_mismatch_is_reported(tmp_path):
    _write_artifacts(tmp_path)
    normalizers = load_saved_normalizers(tmp_path / NORMALIZERS_FILENAME)
    meta = load_model_metadata(tmp_path / MODEL_META_FILENAME)
    with pytest.raises(ValueError, match="state_dim"):
        _resolve_model_geometry(normalizers, {**meta, "nx": NX + 1})


class _PointMassField(eqx.Module):
    """The exact marginal velocity of the linear path from N(0, I) to a point mass at ``mu``."""

    mu: jnp.ndarray

    def __call__(self, t, x, E, p, *, key=None):
        return (self.mu - x) / (1.0 - t)


def test_flow_matching_loss_is_zero_for_the_exact_field_and_positive_otherwise():
    mu = jnp.linspace(-2.0, 3.0, 10)
    x1 = jnp.tile(mu, (64, 1))
    E, p = jnp.zeros((64, 1, 4)), jnp.zeros((64, 3))
    exact = fm.cfm_loss(_PointMassField(mu), x1, E, p, jax.random.PRNGKey(0))
    wrong = fm.cfm_loss(_PointMassField(mu + 0.1), x1, E, p, jax.random.PRNGKey(0))
    assert float(exact) < 1e-8
    assert float(wrong) > 1e-3


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_integrate_flow_transports_noise_to_the_target(method):
    mu = jnp.linspace(-2.0, 3.0, 10)
    x0 = jax.random.normal(jax.random.PRNGKey(1), (10,))
    # Euler lands exactly on mu (the last step has 1 - t = h); midpoint's half steps too.
    x1 = jax.jit(lambda x: fm.integrate_flow(_PointMassField(mu), x, None, None, 60, method))(x0)
    np.testing.assert_allclose(x1, mu, atol=1e-5)
    with pytest.raises(ValueError, match="n_steps"):
        fm.integrate_flow(_PointMassField(mu), x0, None, None, 0)


def test_vector_field_uses_the_signal_and_time():
    model = VectorFieldNet(state_dim=2 * S * NX + L, hidden_size=16, depth=2, cond_dim=8, phys_dim=5,
                           key=jax.random.PRNGKey(0))
    model = eqx.tree_at(lambda m: m.conv_out.weight, model, jnp.full_like(model.conv_out.weight, 0.1))
    x, p = jnp.zeros(2 * S * NX + L), jnp.zeros(5)
    a = model(0.5, x, jnp.zeros(L), p)
    b = model(0.5, x, jnp.ones(L), p)
    c = model(0.1, x, jnp.zeros(L), p)
    assert a.shape == (2 * S * NX + L,)
    assert not np.allclose(a[-L:], b[-L:]) and not np.allclose(a, c)
    with pytest.raises(ValueError, match="hidden_size"):
        VectorFieldNet(state_dim=10, hidden_size=2, depth=1, cond_dim=8, phys_dim=3, key=jax.random.PRNGKey(0))
