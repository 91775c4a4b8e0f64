"""Bad input raises ValueError naming the field and its allowed range."""

import math

import pytest

from ecsfm import sim

GOOD = dict(e0=0.0, k0=1e-2, alpha=0.5, d_ox=1e-5, d_red=1e-5, c_ox=1.0, c_red=0.0)


@pytest.mark.parametrize(
    "field, value",
    [("d_ox", -1e-5), ("d_red", 0.0), ("c_ox", -1.0), ("c_red", -0.1), ("alpha", 1.5), ("alpha", 0.0),
     ("k0", 0.0), ("e0", math.nan), ("k0", math.inf), ("n", 0.0)],
)
def test_couple_rejects(field, value):
    with pytest.raises(ValueError, match=rf"^{field}: must be .*(\(|\[).*(\)|\])"):
        sim.Couple(**{**GOOD, field: value})


@pytest.mark.parametrize("field, value", [("area", 0.0), ("temperature", -1.0), ("ru", -1.0), ("cdl", -1e-6),
                                          ("ru", math.nan)])
def test_cell_rejects(field, value):
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        sim.Cell(**{field: value})


def test_waveform_rejects():
    with pytest.raises(ValueError, match="^scan_rate: must be > 0"):
        sim.cyclic_voltammetry(0.3, -0.3, 0.0)
    with pytest.raises(ValueError, match="^e_vertex: must differ from e_start"):
        sim.cyclic_voltammetry(0.3, 0.3, 0.1)
    with pytest.raises(ValueError, match="^e_start: must be finite"):
        sim.cyclic_voltammetry(math.nan, 0.3, 0.1)
    with pytest.raises(ValueError, match="^points_per_period: must be an integer >= 20"):
        sim.sinusoid(0.0, 0.01, 10.0, points_per_period=16)
    with pytest.raises(ValueError, match="^pulse_width: must be < period"):
        sim.differential_pulse_voltammetry(0.3, -0.3, pulse_width=0.5, period=0.5)
    with pytest.raises(ValueError, match="^x_max"):
        sim.SolverConfig(x_max=1.0)


def test_traced_values_are_not_checked_but_reported():
    import jax
    import jax.numpy as jnp

    wf = sim.cyclic_voltammetry(0.3, -0.3, 0.1, step=5e-3)
    res = jax.jit(lambda d: sim.simulate(wf, sim.Couple(**{**GOOD, "d_ox": d})))(jnp.asarray(-1e-5))
    assert any("not finite" in p for p in res.problems())
