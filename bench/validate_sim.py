"""Print the simulator's accuracy against textbook theory at default settings (a table for the docs).

Run: ``python bench/validate_sim.py``. The tests assert the same quantities with their tolerances;
this prints the measured values.
"""

from __future__ import annotations

import numpy as np

from ecsfm import sim
from ecsfm.sim import analytic

AREA, D, V = 0.0707, 1e-5, 0.1


def cv(e_start, e_vertex, couple, cell=None):
    wf = sim.cyclic_voltammetry(e_start, e_vertex, V)
    res = sim.simulate(wf, couple, cell or sim.Cell(area=AREA))
    e, i = np.asarray(res.potential, float), np.asarray(res.current, float)
    n = int(np.argmin(e)) + 1
    return e, i, n


def main() -> None:
    rows = []
    rev = sim.Couple(e0=0.0, k0=10.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
    e, i, n = cv(0.3, -0.3, rev)
    epc, ipc = sim.find_peak(e[:n], i[:n], -1)
    epa, _ = sim.find_peak(e[n:], i[n:], 1)
    rs = analytic.randles_sevcik_peak_current(1, AREA, 1.0, D, V)
    rows.append(("Randles-Sevcik peak current", f"{-ipc / rs - 1:+.3%}", "within 1 %"))
    rows.append(("reversible dEp (switch 300 mV past E0)", f"{(epa - epc) * 1e3:.2f} mV", "57-60 mV"))
    rows.append(("reversible Ep - E1/2", f"{epc * 1e3:.2f} mV", "-28.5 +- 1.5 mV"))
    for k0 in (1e-5, 1e-6):
        irr = sim.Couple(e0=0.0, k0=k0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0)
        e, i, n = cv(0.3, -1.0, irr)
        ep, ip = sim.find_peak(e[:n], i[:n], -1)
        ip_ref = analytic.irreversible_peak_current(1, 0.5, AREA, 1.0, D, V)
        ep_ref = analytic.irreversible_peak_potential(0.0, 1, 0.5, k0, D, V)
        rows.append((f"irreversible ip (k0 = {k0:g})", f"{-ip / ip_ref - 1:+.3%}", "within 2 %"))
        rows.append((f"irreversible Ep (k0 = {k0:g})", f"{(ep - ep_ref) * 1e3:+.2f} mV", "within 3 mV"))
    wf = sim.potential_step(0.5, -0.5, 2.0)
    res = sim.simulate(wf, rev, sim.Cell(area=AREA))
    t = np.asarray(res.time, float)
    m = (t >= 0.02) & (t <= 2.0)
    err = np.max(np.abs(np.asarray(res.current)[m] / -analytic.cottrell_current(t[m], 1, AREA, 1.0, D) - 1))
    rows.append(("Cottrell, 1-100 % of the step (max)", f"{err:.3%}", "within 1 %"))
    worst = 0.0
    for psi, dep in analytic.NICHOLSON_TABLE:
        k0 = psi * np.sqrt(np.pi * D * V / sim.thermal_voltage())
        e, i, n = cv(0.4, -dep / 2e3 - 0.1125, sim.Couple(e0=0.0, k0=k0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0))
        sep = (sim.find_peak(e[n:], i[n:], 1)[0] - sim.find_peak(e[:n], i[:n], -1)[0]) * 1e3
        worst = max(worst, abs(sep - dep))
    rows.append(("Nicholson dEp(psi), psi = 0.1-20 (max |error|)", f"{worst:.2f} mV", "3 mV or 3 %"))
    width = max(len(r[0]) for r in rows)
    print(f"{'quantity':<{width}}  {'measured':>12}  required")
    for name, val, req in rows:
        print(f"{name:<{width}}  {val:>12}  {req}")


if __name__ == "__main__":
    main()
