"""jit, vmap, native batching and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecsfm import sim

WF = sim.cyclic_voltammetry(e_start=0.3, e_vertex=-0.3, scan_rate=0.1, step=4e-3)
BASE = dict(e0=0.0, k0=1e-2, alpha=0.5, d_ox=1e-5, d_red=1e-5, c_ox=1.0, c_red=0.1, n=1.0)
CELL = dict(area=0.0707, temperature=298.15, ru=20.0, cdl=1e-5)
VALUES = {
    "e0": [-0.05, 0.0, 0.05], "k0": [1e-4, 1e-2, 1.0], "alpha": [0.3, 0.5, 0.7],
    "d_ox": [5e-6, 1e-5, 2e-5], "d_red": [5e-6, 1e-5, 2e-5], "c_ox": [0.5, 1.0, 2.0],
    "c_red": [0.0, 0.1, 0.5], "n": [1.0, 2.0, 1.0],
    "area": [0.01, 0.0707, 0.2], "temperature": [280.0, 298.15, 320.0],
    "ru": [0.0, 20.0, 200.0], "cdl": [0.0, 1e-5, 5e-5],
}


def run(**over):
    c = {k: over.get(k, v) for k, v in BASE.items()}
    e = {k: over.get(k, v) for k, v in CELL.items()}
    return sim.simulate(WF, sim.Couple(**c), sim.Cell(**e)).current


@pytest.mark.parametrize("field", list(VALUES))
def test_vmap_and_native_batch_match_a_loop(field):
    vals = jnp.asarray(VALUES[field])
    looped = np.stack([np.asarray(run(**{field: float(v)})) for v in VALUES[field]])
    vmapped = np.asarray(jax.jit(jax.vmap(lambda v: run(**{field: v})))(vals))
    native = np.asarray(run(**{field: vals}))
    # Same root of the iR equation to its 1e-6 V tolerance (a batch iterates until its slowest
    # member converges, so members may take extra steps): currents agree to ~f * 1e-6 V ~ 4e-5.
    scale = np.max(np.abs(looped))
    np.testing.assert_allclose(vmapped, looped, atol=1e-4 * scale)
    np.testing.assert_allclose(native, looped, atol=1e-4 * scale)


def test_native_batch_chunks_and_shapes():
    # More members than a chunk (with padding) and a 2-D batch shape.
    k0 = jnp.logspace(-4, 0, 10).reshape(2, 5)
    cfg = sim.SolverConfig(batch_chunk=4)
    res = sim.simulate(WF, sim.Couple(**{**BASE, "k0": k0}), sim.Cell(**CELL), config=cfg)
    assert res.current.shape == (2, 5, WF.n_points)
    assert res.surface_concentration.shape == (2, 5, WF.n_points, 1, 2)
    ref = np.stack([np.asarray(run(k0=float(k))) for k in np.asarray(k0).ravel()]).reshape(2, 5, -1)
    np.testing.assert_allclose(res.current, ref, atol=1e-4 * np.max(np.abs(ref)))  # iR tolerance, above


def test_vmap_over_native_batches_and_nested_vmaps_match_a_loop():
    # vmap is turned into native batching (a custom batching rule): members that are themselves
    # native batches (d_ox of 3 here) and vmaps inside vmaps must keep their own axes
    d = jnp.asarray([5e-6, 1e-5, 2e-5])
    ks = jnp.asarray([1e-3, 1e-1])

    def one(k, dd):
        return run(k0=k, d_ox=dd, d_red=dd)

    mixed = np.asarray(jax.vmap(lambda k: one(k, d))(ks))
    assert mixed.shape == (2, 3, WF.n_points)
    looped = np.stack([np.asarray(one(float(k), d)) for k in ks])
    np.testing.assert_allclose(mixed, looped, atol=1e-4 * np.max(np.abs(looped)))
    grid = jnp.asarray([[1e-3, 1e-2], [1e-1, 1.0]])
    nested = np.asarray(jax.vmap(jax.vmap(lambda k: one(k, 1e-5)))(grid))
    ref = np.stack([np.stack([np.asarray(one(float(k), 1e-5)) for k in row]) for row in grid])
    np.testing.assert_allclose(nested, ref, atol=1e-4 * np.max(np.abs(ref)))


def test_batched_waveforms_share_one_program():
    waves = sim.stack([sim.cyclic_voltammetry(0.3, -0.3, v, step=4e-3) for v in (0.05, 0.1, 0.2)])
    res = sim.simulate(waves, sim.Couple(**BASE), sim.Cell(**CELL))
    for j, v in enumerate((0.05, 0.1, 0.2)):
        one = sim.simulate(sim.cyclic_voltammetry(0.3, -0.3, v, step=4e-3), sim.Couple(**BASE), sim.Cell(**CELL))
        np.testing.assert_allclose(res.current[j], one.current, atol=1e-4 * float(jnp.max(jnp.abs(one.current))))


@pytest.mark.parametrize("field", ["k0", "e0", "d_ox", "ru"])
def test_gradients_are_finite_and_match_finite_differences(field):
    target = run()

    def loss(x):
        return jnp.mean((run(**{field: x}) - target) ** 2) / jnp.mean(target**2)

    x0 = {"k0": 3e-3, "e0": 0.01, "d_ox": 1.3e-5, "ru": 50.0}[field]
    g = float(jax.jit(jax.grad(loss))(jnp.asarray(x0)))
    assert np.isfinite(g) and g != 0.0
    h = 1e-3 * abs(x0)
    fd = (float(loss(jnp.asarray(x0 + h))) - float(loss(jnp.asarray(x0 - h)))) / (2 * h)
    assert abs(g - fd) <= 0.05 * abs(fd), (g, fd)
