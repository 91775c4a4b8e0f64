"""Seconds per joint fit of a scan-rate series (``ecsfm.fm.joint``, simulator engine).

A synthetic series like the published RuHex one (7 scan rates 0.005-0.4 V/s, 0.2 -> -0.6 -> 0.2 V,
1 mV steps, A = 0.0707 cm^2, 1 mM, 0.5 % noise) is fitted jointly with the default settings;
the time of a first call (compile included) and of a second call are printed, with the number of
likelihood evaluations (particles x stages x moves) and simulated traces per second. With
``--realdata DIR`` the published series is fitted too.

The surrogate engine is not timed here: it knows only its training protocols (0.5 -> -0.5 -> 0.5 V
for cv), so measured programs like these are outside it and ``ecsfm infer`` uses the simulator.

Run: ``python bench/bench_joint.py [--particles 1024] [--realdata ../shared/realdata]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ecsfm import io, sim
from ecsfm.fm.joint import JointConfig, fit_joint, trace_from_measurement

RATES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4)


def synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    couple = sim.Couple(e0=-0.18, k0=0.03, alpha=0.5, d_ox=8.4e-6, d_red=8.4e-6, c_ox=1.0, c_red=0.0)
    out = []
    for v in RATES:
        r = sim.simulate(sim.cyclic_voltammetry(0.2, -0.6, v), [couple], sim.Cell(area=0.0707, ru=50.0, cdl=2e-5))
        i = np.asarray(r.current, np.float64)
        i = i + rng.normal(0, 0.005 * np.abs(i).max(), i.size)
        m = io.Measurement(time=np.asarray(r.time, np.float64), potential=np.asarray(r.potential, np.float64),
                           current=i, scan_rate=v, cycle=np.zeros(i.size, int), metadata={"source_file": f"{v} V/s"})
        out.append(trace_from_measurement(m))
    return out


def timed(traces, config, label):
    for call in ("first (compile)", "second"):
        t0 = time.perf_counter()
        r = fit_joint(traces, area=0.0707, c_ox=1.0, config=config)
        dt = time.perf_counter() - t0
        n = r["n_likelihood_evaluations"]
        print(f"{label:28s} {call:16s} {dt:7.1f} s, {n} evaluations x {len(traces)} traces = "
              f"{n * len(traces) / dt:,.0f} simulated traces/s; e0 {r['parameters']['e0']['q50']:.4f} V, "
              f"D {r['parameters']['d_ox']['q50']:.3g} cm2/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--particles", type=int, default=1024)
    ap.add_argument("--realdata", type=Path, default=None)
    args = ap.parse_args()
    config = JointConfig(n_particles=args.particles)
    timed(synthetic(), config, "synthetic 7-rate series")
    if args.realdata is not None:
        files = sorted((args.realdata / "ruhex_gc_freesim").glob("*.csv"))
        timed([trace_from_measurement(io.read(f)) for f in files], config, "published RuHex series")


if __name__ == "__main__":
    main()
