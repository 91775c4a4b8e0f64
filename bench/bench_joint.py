"""Seconds per joint fit of a scan-rate series (``ecsfm.fm.joint``, simulator engine).

A synthetic series like the published RuHex one (7 scan rates 0.005-0.4 V/s, 0.2 -> -0.6 -> 0.2 V,
1 mV steps, A = 0.0707 cm^2, 1 mM, 0.5 % noise) is fitted jointly with the default settings;
the time of a first call (compile included) and of a second call are printed, with the number of
likelihood evaluations (particles x stages x moves) and simulated traces per second. With
``--realdata DIR`` the published series is fitted too.

Both engines on one series (``--engines``): the surrogate knows only its training protocols
(0.5 -> -0.5 -> 0.5 V for cv), so a second synthetic series is simulated on that protocol (3 scan
rates 0.05-0.5 V/s, a couple inside the shipped model's prior, 0.5 % noise) and written as CSV
files; it is fitted with the shipped surrogate (``ecsfm infer --engine surrogate`` on the files:
CEM at the seed's settings, one parameter set for the three traces) and with the simulator joint
fit (SMC, the files' measured programs; D_red free, as in the surrogate's prior), first and
second call timed, estimates beside the truth.

Run: ``python bench/bench_joint.py [--particles 1024] [--realdata ../shared/realdata] [--engines]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ecsfm import io, sim
from ecsfm.posterior import JointConfig, fit_joint, trace_from_measurement

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


ON_PROTOCOL = dict(e0=0.05, k0=0.02, alpha=0.5, d=1e-5, ru=1.0, cdl=2e-6)
TIME_SCALES = (40.0, 10.0, 4.0)  # s for 2 V of sweep: 0.05, 0.2, 0.5 V/s


def on_protocol_series(folder: Path, seed: int = 0) -> list[Path]:
    """CSV files (time s, potential V, current uA) on the cv task's protocol, 1 cm^2, 1 mM."""
    import equinox as eqx

    from ecsfm.data._tasks import TASKS
    from ecsfm.fm import load_surrogate
    from ecsfm.fm import default_assets

    rng = np.random.default_rng(seed)
    _, _, _, geometry = load_surrogate(default_assets()[0].parent)
    template = TASKS["cv"].template(int(geometry["target_len"]))
    t = ON_PROTOCOL
    couple = sim.Couple(e0=t["e0"], k0=t["k0"], alpha=t["alpha"], d_ox=t["d"], d_red=t["d"], c_ox=1.0, c_red=0.0)
    paths = []
    for time_scale in TIME_SCALES:
        wf = eqx.tree_at(lambda w: w.duration, template, np.float32(time_scale))
        r = sim.simulate(wf, [couple], sim.Cell(area=1.0, ru=t["ru"], cdl=t["cdl"]))
        i = np.asarray(r.current, np.float64)
        i = i + rng.normal(0, 0.005 * np.abs(i).max(), i.size)
        path = folder / f"cv_{2.0 / time_scale:g}Vps.csv"
        rows = [f"{a:.6e},{b:.6e},{c * 1e6:.6e}" for a, b, c in zip(np.asarray(r.time), np.asarray(r.potential), i)]
        path.write_text("time/s,potential/V,current/uA\n" + "\n".join(rows) + "\n")
        paths.append(path)
    return paths


def both_engines(particles: int) -> None:
    import tempfile

    from ecsfm.workflows import run_infer
    from ecsfm.fm import default_assets

    t = ON_PROTOCOL
    with tempfile.TemporaryDirectory() as tmp:
        paths = on_protocol_series(Path(tmp))
        traces = [trace_from_measurement(io.read(p)) for p in paths]
        print(f"on-protocol series {len(paths)} traces: truth e0 {t['e0']} V, k0 {t['k0']} cm/s, D {t['d']:.3g} cm2/s")
        engines = {
            "surrogate/cem": lambda: run_infer(model_dir=default_assets()[0].parent, measurement=paths,
                                               out_dir=Path(tmp) / "sur", engine="surrogate",
                                               known=["c_ox=1.0", "c_red=0"]),
            # D_red free as in the surrogate's prior (E0 trades off against ln(D_red / D_ox)).
            "simulator/smc": lambda: fit_joint(traces, area=1.0, c_ox=1.0,
                                               config=JointConfig(n_particles=particles, tie_d_red=False)),
        }
        for label, fit in engines.items():
            for call in ("first (compile)", "second"):
                t0 = time.perf_counter()
                res = fit()
                dt = time.perf_counter() - t0
                p = {k.replace("[0]", ""): v for k, v in res["parameters"].items()}
                ess = f", ESS {res['diagnostics']['ess']:.0f}" if "diagnostics" in res else ""
                print(f"  {label:14s} {call:16s} {dt:7.1f} s; "
                      + ", ".join(f"{n} {p[n]['q50']:.3g} [{p[n]['q05']:.3g}, {p[n]['q95']:.3g}]"
                                  for n in ("e0", "k0", "d_ox", "d_red")) + f" (90 %){ess}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--particles", type=int, default=1024)
    ap.add_argument("--realdata", type=Path, default=None)
    ap.add_argument("--engines", action="store_true", help="only the both-engines series on the model's protocol")
    args = ap.parse_args()
    if args.engines:
        both_engines(args.particles)
        return
    config = JointConfig(n_particles=args.particles)
    timed(synthetic(), config, "synthetic 7-rate series")
    if args.realdata is not None:
        files = sorted((args.realdata / "ruhex_gc_freesim").glob("*.csv"))
        timed([trace_from_measurement(io.read(f)) for f in files], config, "published RuHex series")


if __name__ == "__main__":
    main()
