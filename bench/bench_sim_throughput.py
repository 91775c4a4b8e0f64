"""Batched CV throughput of ecsfm.sim, printed as ratios measured in one run.

The issue's reference CV: one couple, 0.3 -> -0.3 -> 0.3 V at 0.1 V/s, 1 mV steps (1201 points),
batch 1024 (k0 spread over 1e-4 ... 10 cm/s), default solver settings (those the accuracy tests
use). The batch is split over two XLA CPU devices (one per core) with ``pmap``. Also timed:
the same with Ru and Cdl on, the ``jax.vmap`` route, one simulation's latency, and the
published ``cvsim`` package (semi-analytical, numpy) on the same CV in the same process.

Run: ``python bench/bench_sim_throughput.py [--batch 1024] [--repeats 5]``
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

AREA = 0.0707


def timed(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=None, help="SolverConfig.batch_chunk (default: the default)")
    args = ap.parse_args()
    wf = sim.cyclic_voltammetry(e_start=0.3, e_vertex=-0.3, scan_rate=0.1, step=1e-3)
    n_dev = jax.local_device_count()
    batch = args.batch - args.batch % n_dev
    k0 = jnp.logspace(-4, 1, batch).reshape(n_dev, -1)

    config = sim.SolverConfig() if args.chunk is None else sim.SolverConfig(batch_chunk=args.chunk)

    def cv(k0, ru=0.0, cdl=0.0):
        couple = sim.Couple(e0=0.0, k0=k0, alpha=0.5, d_ox=1e-5, d_red=1e-5, c_ox=1.0)
        return sim.simulate(wf, couple, sim.Cell(area=AREA, ru=ru, cdl=cdl), config=config).current

    plain = jax.pmap(cv)
    ohmic = jax.pmap(lambda k: cv(k, ru=jnp.full_like(k, 50.0), cdl=jnp.full_like(k, 2e-5)))
    one_dev = jax.jit(lambda k: cv(k))
    vmapped = jax.jit(jax.vmap(lambda k: cv(k)))
    single = jax.jit(lambda k: cv(k))

    t_plain = timed(plain, k0, repeats=args.repeats)
    t_ohmic = timed(ohmic, k0, repeats=args.repeats)
    t_one = timed(one_dev, k0.reshape(-1), repeats=args.repeats)
    t_vmap = timed(vmapped, k0.reshape(-1), repeats=max(1, args.repeats // 2))
    t_single = timed(single, jnp.asarray(1e-2), repeats=args.repeats * 4)

    try:
        from cvsim.mechanisms import E_q

        def run_cvsim():
            return E_q(
                start_potential=0.3, switch_potential=-0.3, reduction_potential=0.0,
                scan_rate=0.1, c_bulk=1.0, diffusion_reactant=1e-5, diffusion_product=1e-5,
                alpha=0.5, k0=1e-2, step_size=1.0, disk_radius=1.5, temperature=298.15,
            ).simulate()

        run_cvsim()
        t0 = time.perf_counter()
        n_cvsim = 5
        for _ in range(n_cvsim):
            run_cvsim()
        t_cvsim = (time.perf_counter() - t0) / n_cvsim
    except ImportError:
        t_cvsim = float("nan")

    rate = batch / t_plain
    print(f"devices: {n_dev} x {jax.devices()[0].platform}, dtype {jnp.result_type(float)}, "
          f"{wf.n_points} points per CV, batch {batch}")
    print(f"throughput (Ru = Cdl = 0, {n_dev} devices): {rate:12.0f} CV/s   target 100000: ratio {rate / 1e5:.2f}")
    print(f"throughput (Ru = 50 ohm, Cdl = 20 uF/cm2): {batch / t_ohmic:12.0f} CV/s   ratio to Ru=0: {t_plain / t_ohmic:.2f}")
    print(f"throughput (1 device):                     {batch / t_one:12.0f} CV/s   2-device speed-up: {t_one / t_plain:.2f}")
    print(f"throughput (jax.vmap of one simulation):   {batch / t_vmap:12.0f} CV/s   native/vmap: {t_vmap / t_plain:.1f}")
    print(f"latency, one CV (jit, 1 device):           {t_single * 1e3:12.3f} ms")
    print(f"cvsim 1.0 (semi-analytical), one CV:       {t_cvsim * 1e3:12.3f} ms   "
          f"ecsfm batch throughput / cvsim: {rate * t_cvsim:.0f}x, single latency ratio: {t_cvsim / t_single:.1f}x")


if __name__ == "__main__":
    main()
