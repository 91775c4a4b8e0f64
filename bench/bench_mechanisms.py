"""Batched CV throughput of mechanisms (EC, EC', MHC) against the plain couple, ratios in one run.

The reference CV of ``bench_sim_throughput.py``: 0.3 -> -0.3 -> 0.3 V at 0.1 V/s, 1 mV steps
(1201 points), batch 1024, default solver settings, split over two XLA CPU devices (one per core)
with ``pmap``. The plain couple's batch spreads k0 over 1e-4 ... 10 cm/s; the mechanisms' spread
their rate constant over 1e-2 ... 1e3 1/s (k0 = 1 cm/s); the Marcus-Hush-Chidsey couple spreads
lambda over 0.2 ... 2 eV (k0 = 1e-3 cm/s). The issue's target: EC and EC' >= 20,000 CVs/s.
Schemes (``sim.Scheme``, the implicit solver: EC2, and EC written as a scheme) run a smaller batch
(``--scheme-batch``, default 64): they are ~100x slower, and the rate is per CV all the same.

Run: ``python bench/bench_mechanisms.py [--batch 1024] [--repeats 5]``
"""

from __future__ import annotations

import os

# Two host devices, one per core; must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ecsfm import sim  # noqa: E402


def timed(fn, arg, repeats: int) -> float:
    jax.block_until_ready(fn(arg))  # compile + warm up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scheme-batch", type=int, default=64)
    args = ap.parse_args()
    wf = sim.cyclic_voltammetry(e_start=0.3, e_vertex=-0.3, scan_rate=0.1, step=1e-3)
    n_dev = jax.local_device_count()
    batch = args.batch - args.batch % n_dev

    def couple(**kw):
        return sim.Couple(**({"e0": 0.0, "k0": 1.0, "alpha": 0.5, "d_ox": 1e-5, "d_red": 1e-5, "c_ox": 1.0} | kw))

    cases = {
        "plain couple (k0 spread)": (np.logspace(-4, 1, batch), lambda k: [couple(k0=k)]),
        "EC (k_f spread)": (np.logspace(-2, 3, batch), lambda k: [sim.EC(couple(), k_f=k)]),
        "EC' (k_cat spread)": (np.logspace(-2, 3, batch), lambda k: [sim.ECcat(couple(), k_cat=k)]),
        "CE (k_f spread, K = 0.1)": (np.logspace(-2, 3, batch), lambda k: [sim.CE(couple(), k_f=k, k_b=10 * k)]),
        "MHC couple (lambda spread)": (np.linspace(0.2, 2.0, batch), lambda lam: [couple(k0=1e-3, reorganization=lam)]),
    }
    small = args.scheme_batch - args.scheme_batch % n_dev
    ec_scheme = lambda k: [sim.Scheme([sim.Species("O", 1e-5, 1.0), sim.Species("R", 1e-5), sim.Species("Z", 1e-5)],  # noqa: E731
                                      [sim.Transfer("O", "R", 0.0, 1.0)], [sim.Reaction("R", "Z", k_f=k)])]
    cases |= {"EC as a Scheme (implicit)": (np.logspace(-2, 3, small), ec_scheme),
              "EC2 (k_dim 1e2..1e7 /M/s)": (np.logspace(2, 7, small), lambda k: [sim.EC2(couple(), k_dim=k)])}
    rates = {}
    for name, (values, build) in cases.items():
        fn = jax.pmap(lambda v, build=build: sim.simulate(wf, build(v), sim.Cell(area=0.0707)).current)
        t = timed(fn, jnp.asarray(values, jnp.float32).reshape(n_dev, -1), args.repeats if values.size == batch else 1)
        rates[name] = values.size / t
    base = rates["plain couple (k0 spread)"]
    print(f"{batch} CVs of {wf.potential.shape[-1]} points on {n_dev} CPU devices")
    for name, rate in rates.items():
        print(f"  {name:30s} {rate:10,.0f} CVs/s   {rate / base:7.3g} x the plain couple")


if __name__ == "__main__":
    main()
