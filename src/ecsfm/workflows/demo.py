"""The simulator demo (``ecsfm demo``): a file-out job on the simulator alone.

Cyclic voltammograms of one couple (1 mM, D = 1e-5 cm2/s, 3 mm disc) across the three kinetic
regimes at 0.1 V/s, and a scan-rate series of the reversible couple checked against the
Randles-Sevcik equation, and the reversible couple at spheres and discs of shrinking radius against
the planar electrode (current per area: the radial field adds ``n F C D / r0``, the sphere's steady
state; a disc's edge tends to Saito's ``4 n F C D / (pi r)``); each set is one natively batched call. Writes ``demo_cv.csv``, ``demo_scan_rates.csv``,
``demo_geometry.csv`` and ``demo_cv.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .._atomic import atomic_path, write_text
from ..sim import Cell, Couple, Disc, Sphere, analytic, cyclic_voltammetry, simulate, stack, table_csv

AREA = 0.0707  # cm2, 3 mm disc
D = 1e-5  # cm2/s
FARADAY_MM_PER_CM3 = 96485.33212 * 1e-6  # F times 1 mM in mol/cm3: C/cm3
REGIMES = {"reversible (k0 = 1 cm/s)": 1.0, "quasi-reversible (k0 = 1e-3 cm/s)": 1e-3,
           "irreversible (k0 = 1e-5 cm/s)": 1e-5}
SCAN_RATES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
RADII_CM = (0.1, 0.01, 1e-3)  # spheres and discs of 1 mm, 100 um and 10 um


def run_demo(out: str | Path) -> list[str]:
    """Write the demo's CSV files and figure into ``out``; returns the lines to print."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cell = Cell(area=AREA)
    wf = cyclic_voltammetry(e_start=0.5, e_vertex=-0.5, scan_rate=0.1)
    k0 = np.asarray(list(REGIMES.values()))
    res = simulate(wf, Couple(e0=0.0, k0=k0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0), cell)
    e = np.asarray(wf.potential)
    t = np.asarray(wf.time)
    i = np.asarray(res.current)  # (3, N+1)

    names = ["time_s", "potential_V", *(f"current_A_k0_{k:g}" for k in k0)]
    write_text(out / "demo_cv.csv", table_csv(names, np.column_stack([t, e, i.T]), [
        "ecsfm simulator demo: CV, 1 mM O, D = 1e-5 cm2/s, A = 0.0707 cm2, 0.1 V/s, T = 298.15 K",
        "units: s, V, A (IUPAC: oxidation current positive)"]))

    # Scan-rate series: the waveforms differ only in duration (same points per sweep), so they
    # stack into one batch and run as one compiled program.
    wfs = stack([cyclic_voltammetry(e_start=0.5, e_vertex=-0.5, scan_rate=v) for v in SCAN_RATES])
    series = simulate(wfs, Couple(e0=0.0, k0=1.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0), cell)
    ip = -np.min(np.asarray(series.current), axis=1)
    v = np.asarray(SCAN_RATES)
    ip_rs = analytic.randles_sevcik_peak_current(1, AREA, 1.0, D, v)
    write_text(out / "demo_scan_rates.csv", table_csv(
        ("scan_rate_V_per_s", "peak_current_A", "randles_sevcik_A"), np.column_stack([v, ip, ip_rs]),
        ["reversible couple: cathodic peak current vs scan rate, simulated and Randles-Sevcik"]))

    radii = np.asarray(RADII_CM)
    spheres = simulate(wf, Couple(e0=0.0, k0=1.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0),
                       Cell(geometry=Sphere(radius=radii)))
    discs = simulate(wf, Couple(e0=0.0, k0=1.0, alpha=0.5, d_ox=D, d_red=D, c_ox=1.0), Cell(geometry=Disc(radius=radii)))
    density = np.vstack([i[0] / AREA, np.asarray(spheres.current) / (4 * np.pi * radii[:, None] ** 2),
                         np.asarray(discs.current) / (np.pi * radii[:, None] ** 2)])  # A/cm2
    labels = ["planar", *(f"sphere r = {r * 1e4:g} um" for r in radii), *(f"disc r = {r * 1e4:g} um" for r in radii)]
    write_text(out / "demo_geometry.csv", table_csv(
        ["time_s", "potential_V", "planar_A_per_cm2", *(f"sphere_{r * 1e4:g}um_A_per_cm2" for r in radii),
         *(f"disc_{r * 1e4:g}um_A_per_cm2" for r in radii)],
        np.column_stack([t, e, density.T]),
        ["reversible couple at 0.1 V/s: current per electrode area, planar, at spheres (radial diffusion) and at "
         "discs in an insulating plane (edge diffusion)"]))

    fig = Figure(figsize=(16, 4.2))
    ax0, ax1, ax2 = fig.subplots(1, 3)
    _voltammograms(ax0, e, i * 1e6, REGIMES, "current / uA (oxidation +)", "CV at 0.1 V/s across kinetic regimes")
    ax1.plot(np.sqrt(v), ip * 1e6, "o", label="simulated")
    ax1.plot(np.sqrt(v), ip_rs * 1e6, "-", label="Randles-Sevcik 0.4463 nFAC(nFvD/RT)^1/2")
    ax1.set_xlabel("sqrt(scan rate / V s^-1)")
    ax1.set_ylabel("cathodic peak current / uA")
    ax1.legend(fontsize=8)
    ax1.set_title("reversible couple: peak current vs scan rate")
    _voltammograms(ax2, e, density * 1e3, labels, "current density / mA cm^-2 (oxidation +)",
                   "reversible couple at 0.1 V/s: planar vs spheres and discs")
    fig.tight_layout()
    with atomic_path(out / "demo_cv.png") as tmp:
        fig.savefig(tmp, dpi=130, format="png")

    rel = ip / ip_rs - 1
    lines = [f"wrote {out / 'demo_cv.csv'}, {out / 'demo_scan_rates.csv'}, {out / 'demo_geometry.csv'}, "
             f"{out / 'demo_cv.png'}"]
    lines.append("Randles-Sevcik check (reversible, simulated / theory - 1): "
                 + ", ".join(f"{vv:g} V/s: {r:+.2%}" for vv, r in zip(v, rel)))
    for name, row in zip(REGIMES, i):
        k_c, k_a = int(np.argmin(row)), int(np.argmax(row))
        lines.append(f"{name}: Epc = {e[k_c] * 1e3:+.0f} mV, Epa = {e[k_a] * 1e3:+.0f} mV, "
                     f"dEp = {(e[k_a] - e[k_c]) * 1e3:.0f} mV")
    steady = FARADAY_MM_PER_CM3 * D / radii  # n F C D / r0, A/cm2
    lines.append("spheres at 0.1 V/s, current density at the vertex over the steady state n F C D / r0: "
                 + ", ".join(f"{r * 1e4:g} um: {-row[np.argmin(e)] / s:.3f}" for r, row, s in
                             zip(radii, density[1:4], steady)))
    saito = 4 * steady / np.pi  # 4 n F C D r / (pi r^2), A/cm2
    lines.append("discs at 0.1 V/s, current density at the vertex over Saito's steady state 4 n F C D / (pi r): "
                 + ", ".join(f"{r * 1e4:g} um: {-row[np.argmin(e)] / s:.3f}" for r, row, s in
                             zip(radii, density[4:], saito)))
    return lines


def _voltammograms(ax, e, rows, labels, ylabel: str, title: str) -> None:
    """One panel of voltammograms against the applied potential, one labelled line per row."""
    for label, row in zip(labels, rows):
        ax.plot(e, row, label=label)
    ax.set_xlabel("applied potential / V vs E0")
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="0.7", lw=0.6)
    ax.legend(fontsize=8)
    ax.set_title(title)
