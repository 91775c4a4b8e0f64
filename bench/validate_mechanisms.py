"""The mechanisms' checks against the literature, as a table (the tests assert the same bounds).

Default solver settings, float32, planar, D = 1e-5 cm^2/s, 1 mM, A = 1 cm^2, 0.1 V/s.

Run: ``python bench/validate_mechanisms.py``
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx

from ecsfm import sim

F, R, T = 96485.33212, 8.314462618, 298.15
FRT, D = F / (R * T), 1e-5


def couple(**kw):
    return sim.Couple(**({"e0": 0.0, "k0": 1.0, "alpha": 0.5, "d_ox": D, "d_red": D, "c_ox": 1.0} | kw))


def cathodic_peak(res):
    i, e = np.asarray(res.current), np.asarray(res.potential)
    half = i.size // 2
    return _peak_at(e[:half], i[:half]), -i[:half].min()


def scheme_rows() -> list[tuple[str, str, str]]:
    """Second-order schemes (``sim.Scheme``, the implicit solver), on the finer grid h0 = 2e-4."""
    fine = sim.SolverConfig(h0=2e-4)
    rows = []
    sweep = sim.linear_sweep(0.3, -0.3, 0.1, step=1e-3)
    lam = np.asarray([1e-3, 1e2, 1e3, 1e4])  # k c RT / F v
    res = sim.simulate(sweep, [sim.EC2(couple(k0=10.0), k_dim=lam / (1e-3 / (FRT * 0.1)))], config=fine)
    ep = [_peak_at(np.asarray(res.potential[j]), np.asarray(res.current[j])) for j in range(lam.size)]
    rows.append(("EC2: peak shift per decade of lambda = kcRT/Fv, 1e3 -> 1e4", f"{1e3 * (ep[3] - ep[2]):.2f} mV",
                 f"{1e3 * math.log(10) / (3 * FRT):.2f} mV (RT ln10 / 3F)"))
    rows.append(("EC2: same, 1e2 -> 1e3", f"{1e3 * (ep[2] - ep[1]):.2f} mV", "approaching it"))
    rows.append(("EC2, lambda = 1e-3: Ep - E0", f"{1e3 * ep[0]:.2f} mV", "-28.5 mV (reversible)"))
    step = sim.potential_step(0.3, -0.4, 1.0, n_steps=120, growth=1.06)
    res = sim.simulate(step, [sim.DISP1(couple(k0=10.0), k_f=np.asarray([1e-3, 3.0, 1e2]), k_d=1e9)], config=fine)
    n_app = np.asarray(res.current[:, -1]) / (-F * 1e-6 * math.sqrt(D / (math.pi * float(res.time[0, -1]))))
    rows.append(("DISP1: apparent n (i / Cottrell at 1 s), k_f = 1e-3, 3, 1e2 /s", ", ".join(f"{n:.3f}" for n in n_app),
                 "1 -> 2, increasing"))
    cv = sim.cyclic_voltammetry(0.3, -0.3, scan_rate=0.1, step=1e-3)
    k = np.asarray([0.1, 1.0, 10.0])
    ref = np.asarray(sim.simulate(cv, [sim.EC(couple(k0=0.05), k_f=k)], config=fine).current)
    scheme = sim.Scheme([sim.Species("O", D, 1.0), sim.Species("R", D), sim.Species("Z", D)],
                        [sim.Transfer("O", "R", 0.0, 0.05, 0.5)], [sim.Reaction("R", "Z", k_f=k)])
    got = np.asarray(sim.simulate(cv, [scheme], config=fine).current)
    rows.append(("EC as a Scheme against sim.EC, k_f = 0.1, 1, 10 /s", f"{np.max(np.abs(got - ref)) / np.abs(ref).max():.2%}",
                 "of the peak (same physics)"))
    return rows


def _peak_at(e, i):
    """The reduction peak's potential: a parabola through the lowest point and its neighbours."""
    j = int(np.argmin(i))
    y0, y1, y2 = i[j - 1 : j + 2]
    return e[j] + (e[j + 1] - e[j]) * 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)


def main() -> None:
    rows = []
    cv = sim.cyclic_voltammetry(0.3, -0.3, scan_rate=0.1, step=1e-3)
    ep = {k: cathodic_peak(sim.simulate(cv, [sim.EC(couple(), k_f=k)]))[0] for k in (10.0, 100.0, 1000.0)}
    rows.append(("EC: peak shift per decade of k_f, 100 -> 1000 /s (pure kinetic zone)",
                 f"{1e3 * (ep[1000.0] - ep[100.0]):.2f} mV", f"{1e3 * math.log(10) / (2 * FRT):.2f} mV (RT ln10 / 2F)"))
    rows.append(("EC: same, 10 -> 100 /s", f"{1e3 * (ep[100.0] - ep[10.0]):.2f} mV", "approaching it"))
    slow = cathodic_peak(sim.simulate(cv, [sim.EC(couple(), k_f=0.01)]))[0]
    rows.append(("EC, k_f = 0.01 /s: Ep - E0 (diffusion zone)", f"{1e3 * slow:.2f} mV", "-28.5 mV (reversible)"))
    for k in (10.0, 100.0):
        res = sim.simulate(cv, [sim.ECcat(couple(), k_cat=k)])
        plateau = -float(res.current[np.argmin(np.asarray(res.potential))])
        rows.append((f"EC': plateau / nFAC sqrt(D k), k_cat = {k:g} /s",
                     f"{plateau / (F * 1e-6 * math.sqrt(D * k)):.4f}", "1 within 2 %"))
    step = sim.potential_step(0.4, -0.6, duration=1.0, n_steps=200, growth=1.04)
    t = np.asarray(step.time)
    late = t > 0.02
    res = sim.simulate(step, [sim.CE(couple(), k_f=10.0, k_b=1e4)])
    want = F * 1e-6 * 1e-3 * math.sqrt(D * 1.001e4) * erfcx(1e-3 * np.sqrt(1.001e4 * t[late]))
    rows.append(("CE, K = 1e-3, k = 1e4 /s: current / Koutecky's, t = 0.02-1 s",
                 f"{np.max(np.abs(-np.asarray(res.current)[late] / want - 1)):.2%} max dev", "within 2 %"))
    step = sim.potential_step(0.6, -0.5, duration=1.0, n_steps=200, growth=1.04)
    t = np.asarray(step.time)
    late = t > 0.5
    cottrell = F * 1e-6 * np.sqrt(D / (math.pi * t[late]))
    n_app = [float(np.median(-np.asarray(sim.simulate(step, [sim.ECE(couple(), couple(e0=0.3, c_ox=0.0), k_f=k)])
                                        .current)[late] / cottrell)) for k in (1e-3, 3.0, 1e3)]
    rows.append(("ECE: apparent n at k_f = 1e-3, 3, 1e3 /s (t > 0.5 s)", ", ".join(f"{n:.3f}" for n in n_app),
                 "1 -> 2, increasing"))
    wf = sim.cyclic_voltammetry(0.5, -0.5, scan_rate=0.1, step=5e-4)
    e = np.asarray(wf.potential)
    half = e.size // 2
    res = sim.simulate(wf, [sim.Surface(e0=0.0, k0=1e6, alpha=0.5, gamma=1e-10)])
    i = np.asarray(res.current)
    ip = F * F * 0.1 * 1e-10 / (4 * R * T)
    rows.append(("surface, reversible: ip / (n^2 F^2 v A G / 4RT)", f"{-i[:half].min() / ip:.5f}", "1 within 1 %"))
    rows.append(("surface, reversible: dEp", f"{1e3 * (e[half + np.argmax(i[half:])] - e[np.argmin(i[:half])]):.2f} mV",
                 "0 (to the 0.5 mV step)"))
    for k_s in (0.01, 0.1):
        i = np.asarray(sim.simulate(wf, [sim.Surface(e0=0.0, k0=k_s, alpha=0.5, gamma=1e-10)]).current)
        lav = -math.log(0.5 * FRT * 0.1 / k_s) / (0.5 * FRT)
        rows.append((f"surface, k_s = {k_s:g} /s: Epc - Laviron's irreversible Epc",
                     f"{1e3 * (e[np.argmin(i[:half])] - lav):.2f} mV", "within 2 mV"))
    wide = sim.cyclic_voltammetry(0.5, -0.5, scan_rate=0.1, step=1e-3)
    bv = np.asarray(sim.simulate(wide, [couple(k0=1e-3)]).current)
    mhc = np.asarray(sim.simulate(wide, [couple(k0=1e-3, reorganization=20.0)]).current)
    rows.append(("MHC, lambda = 20 eV, against Butler-Volmer alpha 0.5", f"{np.abs(mhc - bv).max() / np.abs(bv).max():.2%}",
                 "of the peak, within 0.5 %"))
    rows += scheme_rows()
    width = max(len(r[0]) for r in rows)
    for name, got, want in rows:
        print(f"{name:{width}s}  {got:>22s}   {want}")


if __name__ == "__main__":
    main()
