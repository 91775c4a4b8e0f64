"""The model check's false-alarm and detection rates, measured on simulated fits.

Each case simulates one cyclic voltammogram (3 mm disc, 0.07 cm^2) at a 0.5 mV potential step,
finer than the fit's 2 mV, adds white noise of 0.5 % of the peak current, and fits it with
``ecsfm.posterior.fit_joint`` (512 particles, 200 points, the default discrepancy term). The
parameters are drawn at random per case (E0 in [-0.1, 0.1] V, k0 log-uniform in [1e-3, 1] cm/s,
alpha in [0.35, 0.65], D log-uniform in [3e-6, 1.5e-5] cm^2/s, Ru log-uniform in [1, 100] ohm, Cdl
log-uniform in [5e-6, 5e-5] F/cm^2, scan rate log-uniform in [0.02, 1] V/s, 1 mM).

Kinds of case:

* ``null``: data from the fitted model class; the check should flag at most its level;
* ``ru``: Ru 200 ohm in the data (5 mM, so the iR drop matters), Ru fixed at ~0 in the fit;
* ``slope``: a linear background in the data, +/- 2-20 % of the peak current at the window's ends;
* ``curve``: a quadratic background in the data, 2-20 % of the peak current at the window's ends.

Radial edge diffusion and a follow-up chemical reaction need simulator capabilities that do not
exist yet (planar diffusion, one electron transfer); they join the table when the simulator has them.

Each case is one line of ``<out>/cases.jsonl`` (a rerun skips the cases already there), and the
table of rates is printed and written to ``<out>/summary.json``.

Run: ``python bench/model_check_calibration.py --out bench_out/model_check --null 200 --per-kind 60``
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import jax
import numpy as np
from scipy.stats import beta as beta_dist
from tqdm import tqdm

from ecsfm import io, sim
from ecsfm.posterior import ALARM_LEVEL, JointConfig, fit_joint, trace_from_measurement

AREA = 0.07
KINDS = ("null", "ru", "slope", "curve")
SHIFT = 0.10  # a misspecification counts as harmful when it moves D or k0 by this fraction


def _draw(rng: np.random.Generator) -> dict:
    return {"e0": rng.uniform(-0.1, 0.1), "k0": math.exp(rng.uniform(math.log(1e-3), 0.0)),
            "alpha": rng.uniform(0.35, 0.65), "d": math.exp(rng.uniform(math.log(3e-6), math.log(1.5e-5))),
            "ru": math.exp(rng.uniform(0.0, math.log(100.0))), "cdl": math.exp(rng.uniform(math.log(5e-6), math.log(5e-5))),
            "v": math.exp(rng.uniform(math.log(0.02), 0.0)), "c": 1.0}


def simulate_case(kind: str, seed: int):
    """(trace, truth, fit known) of one case."""
    rng = np.random.default_rng(seed)
    p = _draw(rng)
    known = {}
    if kind == "ru":
        p["ru"], p["c"], known = 200.0, 5.0, {"ru": 1e-2}
    couple = sim.Couple(e0=p["e0"], k0=p["k0"], alpha=p["alpha"], d_ox=p["d"], d_red=p["d"], c_ox=p["c"], c_red=0.0)
    e_hi, e_lo = round(p["e0"] + 0.35, 3), round(p["e0"] - 0.35, 3)
    r = sim.simulate(sim.cyclic_voltammetry(e_hi, e_lo, p["v"], step=5e-4), [couple],
                     sim.Cell(area=AREA, ru=p["ru"], cdl=p["cdl"]))
    e, i = np.asarray(r.potential, np.float64), np.asarray(r.current, np.float64)
    peak = float(np.abs(i).max())
    x = (e - 0.5 * (e_hi + e_lo)) / (0.5 * (e_hi - e_lo))  # -1 .. 1 across the window
    size = rng.uniform(0.02, 0.2) * peak  # the background's size at the window's ends
    if kind == "slope":
        i = i + size * x
    elif kind == "curve":
        i = i + size * x**2
    i = i + rng.normal(0.0, 0.005 * peak, i.size)
    m = io.Measurement(time=np.asarray(r.time, np.float64), potential=e, current=i, scan_rate=p["v"],
                       cycle=np.zeros(i.size, int), metadata={"source_file": f"{kind}-{seed}"})
    return trace_from_measurement(m), p, known


def run_case(kind: str, seed: int, n_particles: int) -> dict:
    trace, p, known = simulate_case(kind, seed)
    res = fit_joint([trace], area=AREA, c_ox=p["c"], config=JointConfig(n_particles=n_particles, points_per_trace=200,
                                                                         known=known), seed=seed)
    q = res["parameters"]
    mc = res["model_check"]
    d_shift = q["d_ox"]["q50"] / p["d"] - 1.0
    k_shift = q["k0"]["q50"] / p["k0"] - 1.0 if "k0" in q else 0.0
    k_bounded = not (res["k0_bound"] or {}).get("lower_bound_only", False)
    return {"kind": kind, "seed": seed, "truth": p, "d_shift": d_shift, "k0_shift": k_shift, "k0_bounded": k_bounded,
            "harmful": bool(abs(d_shift) >= SHIFT or (k_bounded and abs(k_shift) >= SHIFT)),
            "p_value": mc["p_value"], "statistic": mc["statistic"], "flagged": not mc["adequate"],
            "d_in_95": bool(q["d_ox"]["q025"] <= p["d"] <= q["d_ox"]["q975"])}


def _upper95(k: int, n: int) -> float:
    """Clopper-Pearson one-sided 95 % upper bound of a rate from k of n."""
    return 1.0 if k >= n else float(beta_dist.ppf(0.95, k + 1, n - k))


def _lower95(k: int, n: int) -> float:
    return 0.0 if k == 0 else float(beta_dist.ppf(0.05, k, n - k + 1))


def summarise(rows: list[dict], level: float = ALARM_LEVEL) -> dict:
    """Per kind of case: how often the check flags at ``level`` (from each case's p-value), and how
    often it catches the harmful cases, with one-sided 95 % Clopper-Pearson bounds."""
    out = {}
    for kind in KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        flagged = sum(r["p_value"] < level for r in rs)
        harmful = [r for r in rs if r["harmful"]]
        caught = sum(r["p_value"] < level for r in harmful)
        out[kind] = {"cases": len(rs), "flagged": flagged, "flag_rate": flagged / len(rs),
                     "flag_rate_upper95": _upper95(flagged, len(rs)), "harmful": len(harmful),
                     "harmful_flagged": caught, "detection_rate": caught / len(harmful) if harmful else None,
                     "detection_rate_lower95": _lower95(caught, len(harmful)) if harmful else None,
                     "d_coverage_95": float(np.mean([r["d_in_95"] for r in rs])),
                     "median_abs_d_shift": float(np.median([abs(r["d_shift"]) for r in rs]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--null", type=int, default=200, help="cases from the fitted model class")
    ap.add_argument("--per-kind", type=int, default=60, help="cases per misspecification")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--particles", type=int, default=512)
    ap.add_argument("--level", type=float, default=ALARM_LEVEL, help=f"alarm level (default {ALARM_LEVEL})")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "cases.jsonl"
    done = {(r["kind"], r["seed"]) for r in map(json.loads, log.read_text().splitlines())} if log.exists() else set()
    todo = [(k, 1000 * KINDS.index(k) + s) for k in args.kinds.split(",")
            for s in range(args.null if k == "null" else args.per_kind)]
    with open(log, "a") as fh:
        for kind, seed in tqdm([t for t in todo if t not in done], desc="cases"):
            fh.write(json.dumps(run_case(kind, seed, args.particles), default=float) + "\n")
            fh.flush()
            jax.clear_caches()  # each case compiles its own forward model: drop it, or memory grows
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    table = summarise(rows, args.level)
    tmp = args.out / "summary.json.tmp"
    tmp.write_text(json.dumps({"schema_version": 1, "shift": SHIFT, "level": args.level, "kinds": table}, indent=1))
    tmp.replace(args.out / "summary.json")
    print(f"alarm level {args.level:g}")
    print(f"{'kind':6s} {'cases':>5s} {'flagged':>8s} {'rate':>6s} {'(95% CI)':>14s} {'harmful':>7s} {'caught':>6s} "
          f"{'detect':>6s} {'D cov95':>7s}")
    for kind, t in table.items():
        det = "-" if t["detection_rate"] is None else f"{t['detection_rate']:.2f}"
        ci = f"<= {t['flag_rate_upper95']:.3f}" if kind == "null" else (
            "" if t["detection_rate"] is None else f">= {t['detection_rate_lower95']:.3f}")
        print(f"{kind:6s} {t['cases']:5d} {t['flagged']:8d} {t['flag_rate']:6.3f} {ci:>14s} {t['harmful']:7d} "
              f"{t['harmful_flagged']:6d} {det:>6s} {t['d_coverage_95']:7.2f}")


if __name__ == "__main__":
    main()
