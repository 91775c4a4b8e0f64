"""CV throughput per electrode geometry, printed as ratios to planar measured in one run.

The issue's cases: CVs at 1 mV resolution, r = 1.5 mm at 25 mV/s and r = 10 um at 100 mV/s,
0.3 -> -0.3 -> 0.3 V, batch 1024 (k0 spread over 1e-4 ... 10 cm/s), default solver settings.
Per geometry (planar, a disc with its edge, sphere, hemisphere, a 20 um thin layer, a rotating disc
at 1000 rpm) it times native batching (the batch given as a leading field dimension) and
``jax.vmap`` of one simulation, each split over two XLA CPU devices with ``pmap``, and prints CVs/s,
the ratio to planar and vmap / native. Targets: the disc >= 5,000 CVs/s; sphere, thin layer and
rotating disc within 2x of planar; vmap within ~1.25x of native.

Run: ``python bench/bench_geometry.py [--batch 1024] [--repeats 5]``
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import argparse  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench_sim_throughput import timed  # noqa: E402  (this folder is on the path when run as a script)

from ecsfm import sim  # noqa: E402

THICKNESS = 2e-3  # cm: a 20 um thin layer
OMEGA = 1000 * 2 * np.pi / 60  # rad/s: a disc at 1000 rpm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n_dev = jax.local_device_count()
    batch = args.batch - args.batch % n_dev
    k0 = jnp.logspace(-4, 1, batch)
    print(f"devices: {n_dev} x {jax.devices()[0].platform}, batch {batch}, best of {args.repeats}")
    for radius, rate in ((0.15, 0.025), (1e-3, 0.1)):
        wf = sim.cyclic_voltammetry(e_start=0.3, e_vertex=-0.3, scan_rate=rate, step=1e-3)
        print(f"\nr = {radius * 1e4:g} um, v = {rate * 1e3:g} mV/s, {wf.n_points} points per CV")
        base = None
        for name, shape in sim.GEOMETRIES.items():
            if name == "microdisc":  # the disc's other name
                continue
            if name == "planar":
                geometry, area = shape(), np.pi * radius**2
            elif name == "thin-layer":
                geometry, area = shape(thickness=THICKNESS), np.pi * radius**2
            elif name == "rotating-disc":
                geometry, area = shape(radius=radius, omega=OMEGA), None
            else:
                geometry, area = shape(radius=radius), None

            def cv(k, geometry=geometry, area=area):
                couple = sim.Couple(e0=0.0, k0=k, alpha=0.5, d_ox=1e-5, d_red=1e-5, c_ox=1.0)
                return sim.simulate(wf, couple, sim.Cell(area=area, geometry=geometry)).current

            t_native = timed(jax.pmap(cv), k0.reshape(n_dev, -1), repeats=args.repeats)
            t_vmap = timed(jax.pmap(jax.vmap(cv)), k0.reshape(n_dev, -1), repeats=args.repeats)
            base = t_native if base is None else base
            print(f"  {name:13s} native {batch / t_native:10.0f} CV/s  time / planar {t_native / base:5.2f}   "
                  f"vmap {batch / t_vmap:10.0f} CV/s  vmap / native time {t_vmap / t_native:5.2f}")


if __name__ == "__main__":
    main()
