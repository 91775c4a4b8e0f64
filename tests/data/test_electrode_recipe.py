"""A recipe's electrode: a dataset of a 10 um microdisc (``microdisc_multitask``) is simulated at
that disc, recorded as such, and re-simulated as such by the inference's simulator engine.

The check is physical: each chronoamperometry row's current at the end of its step, T, is Shoup and
Szabo's disc current ``4 n F D C r f(4 D T / r^2)`` for the row's D and C (their formula's accuracy
is 0.6 %), once the row's finite kinetics are allowed for (``1 / (1 + m / k_c)``, m = 4 D / (pi r),
the steady mass-transfer coefficient, k_c the cathodic rate constant at the step's potential): rows
where that correction is under 3 % must agree within 2 %. A planar electrode of the same area would
give a current 4-100x smaller at these time scales."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecsfm import data, sim


@pytest.fixture(scope="module")
def microdisc_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("microdisc")
    data.generate(data.Plan(recipe="microdisc_multitask", n_samples=48, chunk_size=48, max_species=1, target_len=32,
                            nx=4, seed=5), out, progress=False)
    return out


def test_a_microdisc_dataset_is_simulated_recorded_and_resimulated_as_a_disc(microdisc_data):
    manifest = json.loads((microdisc_data / "manifest.json").read_text())
    r = 1e-3
    assert manifest["simulator"]["electrode"] == {"name": "disc", "radius_cm": r}
    assert manifest["simulator"]["area_cm2"] == pytest.approx(np.pi * r**2)
    with np.load(microdisc_data / manifest["chunks"][0]["file"], allow_pickle=False) as z:
        task = np.asarray(manifest["task_names"])[z["task_id"]]
        rows = task == "ca_step"
        p, i, t = z["p"][rows].astype(np.float64), z["i"][rows].astype(np.float64), z["t"][rows].astype(np.float64)
    space = data.ParamSpace(1)
    phys = space.to_physical(p)
    d, c, e0, k0, alpha = (phys[k][:, 0] for k in ("d_ox", "c_ox", "e0", "k0", "alpha"))
    f = sim.FARADAY / (sim.GAS_CONSTANT * 298.15)
    k_c = k0 * np.exp(alpha * f * (e0 + 0.5))  # the step holds -0.5 V
    correction = 1.0 / (1.0 + 4 * d / (np.pi * r) / k_c)
    tau = 4 * d * t[:, -1] / r**2
    shoup_szabo = 0.7854 + 0.8862 / np.sqrt(tau) + 0.2146 * np.exp(-0.7823 / np.sqrt(tau))
    expected = -4 * sim.FARADAY * d * c * 1e-6 * r * shoup_szabo * 1e3  # mA
    fast = correction > 0.97
    assert fast.sum() >= 3, correction
    np.testing.assert_allclose(i[fast, -1], expected[fast] * correction[fast], rtol=0.02)
    # The inference's simulator engine re-simulates rows at the recorded electrode.
    again, _, _ = data.simulate_rows(manifest, {"target_len": 32, "nx": 4, "max_species": 1}, "ca_step", p)
    np.testing.assert_allclose(again, i, rtol=1e-4, atol=1e-9)


def test_a_recipe_electrode_is_checked():
    with pytest.raises(ValueError, match="radius: a disc electrode needs one"):
        data.Recipe("x", stages={"foundation": 1.0}, tasks={"cv": 1.0}, electrode="disc")
    with pytest.raises(ValueError, match="electrode: must be one of"):
        data.Recipe("x", stages={"foundation": 1.0}, tasks={"cv": 1.0}, electrode="cube", radius=1e-3)
    with pytest.raises(ValueError, match="radius: must be in"):
        data.Recipe("x", stages={"foundation": 1.0}, tasks={"cv": 1.0}, electrode="sphere", radius=-1.0)
    assert data.Recipe("x", stages={"foundation": 1.0}, tasks={"cv": 1.0}, electrode="hemisphere",
                       radius=0.1).area == pytest.approx(2 * np.pi * 0.01)
