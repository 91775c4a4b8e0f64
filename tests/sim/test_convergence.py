"""Observed order of accuracy under time-step and grid refinement.

Run in float64 (a subprocess with JAX_ENABLE_X64=1): the differences between refinement levels
reach ~1e-6 of the current, below float32 resolution. The quantity is the current of a
quasi-reversible linear sweep at E = E0 - 50 mV (a time point of every level). Order from three
successive differences: p = log2(|Q_h - Q_h/2| / |Q_h/2 - Q_h/4|). The scheme is exact in time
for the diffusion and trapezoidal in the boundary flux (design order 2); the vertex-centred
finite-volume grid is second order when every spacing is halved (h0 / 2, growth^(1/2)).
"""

import json
import os
import subprocess
import sys

PROBE = r"""
import json
import numpy as np
from ecsfm import sim
couple = sim.Couple(e0=0.0, k0=1e-2, alpha=0.5, d_ox=1e-5, d_red=1e-5, c_ox=1.0)
def current_at(step, config):
    wf = sim.linear_sweep(0.3, -0.3, 0.1, step=step)
    res = sim.simulate(wf, couple, config=config)
    k = int(np.argmin(np.abs(np.asarray(res.potential) + 0.05)))
    return float(res.current[k])
fine_space = sim.SolverConfig(h0=2e-3, growth=1.1, mode_tolerance=1e-12)
time_q = [current_at(s, fine_space) for s in (2e-3, 1e-3, 5e-4, 2.5e-4)]
space_q = [current_at(5e-4, sim.SolverConfig(h0=2e-2 / 2**k, growth=1.5 ** (1 / 2**k), mode_tolerance=1e-12))
           for k in range(4)]
def orders(q):
    d = np.abs(np.diff(q))
    return list(np.log2(d[:-1] / d[1:]))
print(json.dumps({"time": orders(time_q), "space": orders(space_q), "dtype": str(np.asarray(sim.simulate(
    sim.linear_sweep(0.1, -0.1, 0.1), couple).current).dtype)}))
"""


def test_observed_convergence_orders():
    env = dict(os.environ, JAX_ENABLE_X64="1")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["dtype"] == "float64"
    # Design order 2 in both; +-0.25 allows the pre-asymptotic first level.
    for p in res["time"]:
        assert 1.75 < p < 2.4, res
    for p in res["space"]:
        assert 1.75 < p < 2.4, res
