"""Which mechanism do the data support? ``ecsfm study mechanisms``.

Cases are simulated from each mechanism (``ecsfm.sim``: E, EC, ECcat, CE) with parameters drawn
from the priors below, finer than any fit (0.5 mV steps, first grid spacing 1e-4 against the fits'
2 mV and 2e-4), with Gaussian noise of a fraction of each trace's peak, as single CVs or as
scan-rate series. Every candidate mechanism is fitted to every case (``ecsfm.posterior.fit_joint``,
SMC, all on one grid, ``MECHANISM_H0``: a plain couple on the default grid carries a discretisation
error the finer-gridded mechanisms do not: 2.4 nats of log evidence on a 3-rate series at 2 % noise), and the posterior model probabilities follow from the log evidences under equal prior odds
(``ecsfm.workflows.model_probabilities``). The study reports the confusion matrix (true against
most probable), the accuracy, and the reliability of the probabilities (each case x candidate
probability against whether that candidate is the truth; expected calibration error over 10 bins).

Cases whose chemistry cannot show in the data in principle are reported as such and not counted
as errors (``distinguishable``): an EC or EC' whose chemistry is too slow to act within the sweep
(k RT / Fv < 0.02 at the slowest rate), a CE whose equilibrium lies so far on O's side, or is so
fast, that the current is the plain couple's (K > 20, or K sqrt(k RT / Fv) > 20 at the fastest rate).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from .. import io, sim
from .._atomic import save_png, write_text
from ..posterior import MECHANISM_H0, JointConfig, fit_joint, trace_from_measurement
from ..workflows import model_probabilities
from ._journal import Journal

__all__ = ["run_mechanism_study", "draw_truth", "prior_bounds", "distinguishable", "MECHANISM_STUDY_SCHEMA", "CANDIDATES"]

MECHANISM_STUDY_SCHEMA = 4  # 2: every candidate on one grid (MECHANISM_H0); 3: the fits use the draws'
#: priors; 4: only for the rate constants
CANDIDATES = ("E", "EC", "ECcat", "CE")
AREA, C_OX = 0.0707, 1.0
#: the fitted window and the series' scan rates (V/s)
WINDOW = (0.35, -0.35)
SERIES = ((0.1,), (0.02, 0.1, 0.5))
F_RT = sim.FARADAY / (sim.GAS_CONSTANT * sim.DEFAULT_TEMPERATURE)


#: the study's priors, physical units, sampled uniformly (``(lo, hi)``) or ln-uniformly (``("ln", lo,
#: hi)``). Each case is drawn from them. Every fit takes its mechanism's rate constants over the very
#: box its cases come from (``JointConfig.bounds``), so the posterior model probabilities can be
#: calibrated: with the fit's default 1e-4..1e4 /s an EC prior spends mass on rates no data here can
#: tell from zero, an Occam penalty the truth never paid. The shared parameters keep the fit's wider
#: default boxes: they are the same for every candidate (their Occam factors cancel in the odds), and
#: a box that ends where the draws end lets a plain couple drawn near an edge (D = 5.02e-6 against
#: 5e-6), fitted on a coarser grid than it was simulated on, pile up at the edge, where a mechanism's
#: extra freedom takes up the slack: P(CE) = 0.99 on such plain couples in a first run.
SHARED_PRIOR = {"e0": (-0.1, 0.1), "k0": ("ln", 1e-3, 1.0), "alpha": (0.4, 0.6), "d_ox": ("ln", 5e-6, 1.5e-5)}
RATE_PRIORS = {"E": {}, "EC": {"k_f": ("ln", 1e-2, 1e3)}, "ECcat": {"k_cat": ("ln", 1e-2, 1e2)},
               "CE": {"k_f": ("ln", 1e-1, 1e3), "k_b": ("ln", 1e-1, 1e3)}}


def _box(spec) -> tuple[float, float]:
    return (spec[1], spec[2]) if spec[0] == "ln" else spec


def prior_bounds(mechanism: str) -> dict:
    """The ``JointConfig.bounds`` a fit of ``mechanism`` uses in this study (physical units): its
    rate constants' boxes (the shared parameters keep the fit's defaults)."""
    return {k: _box(v) for k, v in RATE_PRIORS[mechanism].items()}


def draw_truth(mechanism: str, rng: np.random.Generator) -> dict:
    """One case's parameters from the study's priors (``SHARED_PRIOR``, ``RATE_PRIORS``): E0 in
    +/- 0.1 V, k0 ln-uniform in 1e-3..1 cm/s, alpha in 0.4..0.6, D ln-uniform in 5e-6..1.5e-5
    cm^2/s; EC's k_f in 1e-2..1e3 /s, EC''s k_cat in 1e-2..1e2 /s, CE's k_f and k_b each in
    1e-1..1e3 /s (so K = k_f / k_b spans 1e-4..1e4), rates ln-uniform."""
    truth = {}
    for name, spec in (SHARED_PRIOR | RATE_PRIORS[mechanism]).items():
        if spec[0] == "ln":
            truth[name] = float(math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2]))))
        else:
            truth[name] = float(rng.uniform(*spec))
    truth["d"] = truth.pop("d_ox")
    return truth


def distinguishable(mechanism: str, truth: dict, rates) -> tuple[bool, str]:
    """Whether the chemistry of a case can show in CVs at ``rates`` (V/s), and why not."""
    lam = lambda k, v: k / (F_RT * v)  # noqa: E731  (k RT / F v)
    if mechanism in ("EC", "ECcat"):
        k = truth.get("k_f", truth.get("k_cat"))
        if lam(k, min(rates)) < 0.02:
            return False, f"chemistry too slow to act within the sweep (k RT/Fv = {lam(k, min(rates)):.2g})"
    if mechanism == "CE":
        k_eq, k_sum = truth["k_f"] / truth["k_b"], truth["k_f"] + truth["k_b"]
        if k_eq > 20 or k_eq * math.sqrt(lam(k_sum, max(rates))) > 20:
            return False, "the equilibrium supplies O as fast as diffusion: the plain couple's current"
    return True, ""


def _item(mechanism: str, truth: dict):
    couple = sim.Couple(e0=truth["e0"], k0=truth["k0"], alpha=truth["alpha"], d_ox=truth["d"], d_red=truth["d"],
                        c_ox=C_OX)
    if mechanism == "EC":
        return sim.EC(couple, k_f=truth["k_f"])
    if mechanism == "ECcat":
        return sim.ECcat(couple, k_cat=truth["k_cat"])
    if mechanism == "CE":
        return sim.CE(couple, k_f=truth["k_f"], k_b=truth["k_b"])
    return couple


def _traces(mechanism: str, truth: dict, rates, noise: float, rng: np.random.Generator) -> list:
    """The case's CVs, simulated finer than the fits, with noise ``noise`` x each trace's peak."""
    traces = []
    for v in rates:
        r = sim.simulate(sim.cyclic_voltammetry(*WINDOW, v, step=5e-4), [_item(mechanism, truth)],
                         sim.Cell(area=AREA, ru=5.0, cdl=2e-5), config=sim.SolverConfig(h0=1e-4, growth=1.15))
        i = np.asarray(r.current, np.float64)
        i = i + rng.normal(0.0, noise * np.abs(i).max(), i.size)
        m = io.Measurement(time=np.asarray(r.time, np.float64), potential=np.asarray(r.potential, np.float64),
                           current=i, scan_rate=v, cycle=np.zeros(i.size, int), metadata={"source_file": f"{v:g} V/s"})
        traces.append(trace_from_measurement(m))
    return traces


def _run_case(job: dict, n_particles: int, points: int) -> dict:
    """Every candidate fitted to one case: log evidence, its error, probability, model check."""
    rng = np.random.default_rng(job["seed"])
    traces = _traces(job["mechanism"], job["truth"], job["rates"], job["noise"], rng)
    fits = {}
    t0 = time.perf_counter()
    for m in job["candidates"]:
        res = fit_joint(traces, area=AREA, c_ox=C_OX, seed=job["seed"] + 1,
                        config=JointConfig(n_particles=n_particles, points_per_trace=points, mechanism=m,
                                           solver_h0=MECHANISM_H0, bounds=prior_bounds(m)))
        fits[m] = {"log_evidence": res["log_evidence"], "log_evidence_se": res["log_evidence_se"],
                   "adequate": bool(res["model_check"]["adequate"])}
    prob, prob_se = model_probabilities([fits[m]["log_evidence"] for m in job["candidates"]],
                                        [fits[m]["log_evidence_se"] for m in job["candidates"]])
    for m, p, e in zip(job["candidates"], prob, prob_se):
        fits[m].update(probability=p, probability_se=e)
    chosen = job["candidates"][int(np.argmax(prob))]
    ok, why = distinguishable(job["mechanism"], job["truth"], job["rates"])
    return {**job, "fits": fits, "chosen": chosen, "distinguishable": ok, "why_not": why,
            "seconds": time.perf_counter() - t0}


def _jobs(n_per_mechanism: int, candidates, noise_levels, series, seed: int) -> list[dict]:
    """Per mechanism ``n_per_mechanism`` cases; case k takes noise level k mod L and series
    (k // L) mod S, so every level meets every series."""
    jobs = []
    for mi, mech in enumerate(candidates):
        rng = np.random.default_rng([seed, mi])
        for k in range(n_per_mechanism):
            noise = noise_levels[k % len(noise_levels)]
            rates = series[(k // len(noise_levels)) % len(series)]
            jobs.append({"mechanism": mech, "case": k, "truth": draw_truth(mech, rng), "noise": float(noise),
                         "rates": [float(v) for v in rates], "candidates": list(candidates),
                         "seed": int(1_000_003 * seed + 1009 * mi + k)})
    return jobs


def summarize(records: list[dict], candidates) -> dict:
    """Confusion matrix (rows: true, columns: most probable) over the distinguishable cases, the
    accuracy there, and the reliability of the probabilities over all case x candidate pairs
    (10 bins: mean probability, frequency of being the truth, count; expected calibration error)."""
    idx = {m: k for k, m in enumerate(candidates)}
    conf = np.zeros((len(candidates), len(candidates)), int)
    for r in records:
        if r["distinguishable"]:
            conf[idx[r["mechanism"]], idx[r["chosen"]]] += 1
    n = int(conf.sum())
    p = np.asarray([r["fits"][m]["probability"] for r in records for m in candidates])
    hit = np.asarray([float(r["mechanism"] == m) for r in records for m in candidates])
    bins = np.clip((p * 10).astype(int), 0, 9)
    rel = [{"bin": [b / 10, (b + 1) / 10], "n": int(np.sum(bins == b)),
            "mean_probability": float(p[bins == b].mean()) if np.any(bins == b) else None,
            "frequency_true": float(hit[bins == b].mean()) if np.any(bins == b) else None} for b in range(10)]
    ece = float(sum(abs(x["mean_probability"] - x["frequency_true"]) * x["n"] for x in rel if x["n"]) / max(p.size, 1))
    return {"candidates": list(candidates), "confusion": conf.tolist(), "n_distinguishable": n,
            "n_indistinguishable": sum(not r["distinguishable"] for r in records),
            "accuracy": float(np.trace(conf) / n) if n else None,
            "accuracy_per_mechanism": {m: float(conf[k, k] / conf[k].sum()) if conf[k].sum() else None
                                       for m, k in idx.items()},
            "reliability": rel, "expected_calibration_error": ece, "n_cases": len(records)}


def _plots(out: Path, summary: dict) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4))
    ax, bx = fig.subplots(1, 2)
    conf = np.asarray(summary["confusion"])
    ax.imshow(conf, cmap="Blues")
    names = summary["candidates"]
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("most probable")
    ax.set_ylabel("simulated")
    for (i, j), v in np.ndenumerate(conf):
        ax.text(j, i, str(v), ha="center", va="center")
    acc = summary["accuracy"]
    ax.set_title(f"distinguishable cases: accuracy {acc:.2f}" if acc is not None else "no distinguishable case")
    rel = [r for r in summary["reliability"] if r["n"]]
    bx.plot([0, 1], [0, 1], "k--", lw=1)
    bx.plot([r["mean_probability"] for r in rel], [r["frequency_true"] for r in rel], "o-")
    for r in rel:
        bx.annotate(str(r["n"]), (r["mean_probability"], r["frequency_true"]), fontsize=7)
    bx.set_xlabel("posterior model probability")
    bx.set_ylabel("fraction that is the truth")
    bx.set_title(f"reliability (ECE {summary['expected_calibration_error']:.3f})")
    fig.tight_layout()
    save_png(fig, out / "mechanisms.png")


def run_mechanism_study(out_dir, *, n_per_mechanism: int = 100, noise_levels=(0.005, 0.02), series=SERIES,
                        candidates=CANDIDATES, n_particles: int = 256, points_per_trace: int = 100, seed: int = 0,
                        fresh: bool = False, progress: bool = True) -> dict:
    """Simulate ``n_per_mechanism`` cases of each of ``candidates``, fit every candidate to each,
    and write ``out_dir/mechanisms.json`` (records and ``summarize``), ``mechanisms.png``
    (confusion matrix, reliability diagram) and the journal ``cases.jsonl`` (an interrupted study
    resumes, and a larger ``n_per_mechanism`` extends a finished study with the same settings; other
    settings are refused unless ``fresh``). Returns the payload."""
    bad = [m for m in candidates if m not in CANDIDATES]
    if bad or len(candidates) < 2:
        raise ValueError(f"candidates: need two or more of {', '.join(CANDIDATES)}, got {list(candidates)}")
    if not (isinstance(n_per_mechanism, int) and 1 <= n_per_mechanism <= 10_000):
        raise ValueError(f"cases: must be an integer in [1, 10000], got {n_per_mechanism!r}")
    if not noise_levels or any(not (0 < x < 0.5) for x in noise_levels):
        raise ValueError(f"noise: each level a fraction of the peak in (0, 0.5), got {list(noise_levels)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The case count is not a setting of the journal: cases are drawn in order, so the first n of a
    # larger study are those of a smaller one, and ``--cases`` can grow a finished study.
    config = {"schema_version": MECHANISM_STUDY_SCHEMA,
              "noise_levels": list(noise_levels), "series": [list(s) for s in series], "candidates": list(candidates),
              "n_particles": n_particles, "points_per_trace": points_per_trace, "seed": seed}
    journal = Journal(out / "cases.jsonl", config, key=lambda r: (r["mechanism"], r["case"]), fresh=fresh)
    jobs = _jobs(n_per_mechanism, candidates, noise_levels, series, seed)
    # Case-major order: a study stopped part-way holds about as many cases of every mechanism.
    todo = sorted((j for j in jobs if (j["mechanism"], j["case"]) not in journal.done),
                  key=lambda j: (j["case"], candidates.index(j["mechanism"])))
    if journal.n_reused:
        print(f"resuming: {journal.n_reused} of {len(jobs)} cases already done")
    for job in tqdm(todo, desc="mechanisms", unit="case", disable=not progress):
        journal.add(_run_case(job, n_particles, points_per_trace))
        # Each fit compiles its own forward model (its layout is part of the program), and JAX keeps
        # every compiled program: without this a study of ~40 cases ran out of memory.
        jax.clear_caches()
    records = [journal.done[(j["mechanism"], j["case"])] for j in jobs]
    payload = {"schema_version": MECHANISM_STUDY_SCHEMA, "config": config | {"n_per_mechanism": n_per_mechanism},
               "resumed_cases": journal.n_reused,
               "summary": summarize(records, candidates), "records": records}
    write_text(out / "mechanisms.json", json.dumps(payload, indent=1, default=float))
    _plots(out, payload["summary"])
    return payload
