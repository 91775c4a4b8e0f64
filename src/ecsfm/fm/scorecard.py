"""The surrogate's scorecard against the simulator (``ecsfm evaluate``), and its held-out error.

``current_nrmse``: range-normalised RMS error of the surrogate's mean current on a dataset split,
per task. ``evaluate_surrogate``: per-task NRMSE, peak-current and peak-potential errors, draw
spread vs actual error, two baselines (mean training trace; nearest training neighbour in
parameter space), canonical scenarios re-simulated with ``ecsfm.sim``, and throughput of
surrogate vs simulator, as ``scorecard.json`` (schema ``SCORECARD_SCHEMA_VERSION``) and plots.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from .._atomic import atomic_path, write_text
from ..data import CoreLayout, ParamSpace, simulate_rows
from ._data import SurrogateData, load_rows, state_to_current
from .artifacts import load_surrogate
from .objective import sample_current

__all__ = ["current_nrmse", "evaluate_surrogate", "CANONICAL_SCENARIOS", "SCORECARD_SCHEMA_VERSION"]

SCORECARD_SCHEMA_VERSION = 1
#: Rows of the throughput measurement (one batch, same rows for surrogate and simulator).
THROUGHPUT_BATCH = 64


def current_nrmse(model, normalizers, data_dir, *, split: int = 2, n_rows: int = 256, n_draws: int = 8,
                  n_steps: int = 60, seed: int = 0) -> dict:
    """Range-normalised RMS error of the surrogate's mean current (``n_draws`` draws, ``n_steps``
    Euler steps) on up to ``n_rows`` rows of a split (2 = test), overall and per task:
    ``rmse(mean draw - truth) / (max(truth) - min(truth))`` per row, then median and 90th
    percentile; plus how the spread of the draws compares with the actual error.

    Returns ``{"overall": summary, "per_task": {task: summary}, "n_draws", "n_steps", "split"}``,
    a summary being ``{n, median, p90, median_draw_spread}`` (fractions of each row's range)."""
    data = load_rows(data_dir)
    rows = np.flatnonzero(data.split == split)
    rows = np.random.default_rng(seed).permutation(rows)[:n_rows]
    length = data.e.shape[-1]
    draws = np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(seed), data.e[rows, 0], data.p[rows],
                                      n_draws=n_draws, n_steps=n_steps), np.float64)
    truth = state_to_current(data.x[rows, -length:].astype(np.float64))
    pred = draws.mean(0)
    span = np.maximum(truth.max(1) - truth.min(1), 1e-12)
    nrmse = np.sqrt(np.mean((pred - truth) ** 2, axis=1)) / span
    spread = np.sqrt(np.mean(draws.std(0) ** 2, axis=1)) / span

    def summary(sel):
        return {"n": int(sel.sum()), "median": float(np.median(nrmse[sel])), "p90": float(np.quantile(nrmse[sel], 0.9)),
                "median_draw_spread": float(np.median(spread[sel]))}

    names = data.manifest["task_names"]
    return {"overall": summary(np.ones(rows.size, bool)),
            "per_task": {names[t]: summary(data.task_id[rows] == t) for t in np.unique(data.task_id[rows])},
            "n_draws": n_draws, "n_steps": n_steps, "split": split}


def _canonical(space: ParamSpace) -> list[tuple[str, str, str, np.ndarray]]:
    """(name, task, stage, base p) of the canonical scenarios (mid-prior cells, low Ru/Cdl)."""

    def cell(task, couples, time_scale, ru=1.0, cdl=2e-6):
        p = space.filler()
        for k, c in enumerate(couples):
            for key in ("e0", "alpha", "c_ox", "c_red"):
                p[space.index(key, k)] = c.get(key, {"alpha": 0.5, "c_ox": 1.0, "c_red": 0.0}.get(key, 0.0))
            p[space.index("ln_k0", k)] = math.log(c.get("k0", 1.0))
            p[space.index("ln_d_ox", k)] = p[space.index("ln_d_red", k)] = math.log(c.get("d", 1e-5))
        p[space.index("ln_time_scale")] = math.log(time_scale)
        p[space.index("ln_ru")], p[space.index("ln_cdl")] = math.log(ru), math.log(cdl)
        return p

    return [
        ("reversible CV (0.1 V/s)", "cv", "intermediate", cell("cv", [{"e0": 0.0}], 20.0)),
        ("quasi-reversible CV (k0 1e-3 cm/s, 0.1 V/s)", "cv", "advanced", cell("cv", [{"e0": 0.05, "k0": 1e-3}], 20.0)),
        ("two-couple CV", "cv_multispecies", "intermediate",
         cell("cv_multispecies", [{"e0": -0.15}, {"e0": 0.15, "d": 7e-6}], 20.0)),
        ("SWV (25 Hz)", "swv", "intermediate", cell("swv", [{"e0": 0.0}], 10.24)),
        ("chronoamperometry (1 s)", "ca_step", "intermediate", cell("ca_step", [{"e0": 0.0}], 1.0)),
        ("sinusoid (10 Hz, 10 mV)", "eis", "intermediate", cell("eis", [{"e0": 0.0, "c_red": 0.5}], 0.8)),
    ]


#: Names of the canonical scenarios the scorecard re-simulates.
CANONICAL_SCENARIOS = ("reversible CV (0.1 V/s)", "quasi-reversible CV (k0 1e-3 cm/s, 0.1 V/s)", "two-couple CV",
                       "SWV (25 Hz)", "chronoamperometry (1 s)", "sinusoid (10 Hz, 10 mV)")


def evaluate_surrogate(model_dir, data_dir, out_dir, *, n_rows: int = 384, n_draws: int = 8, n_steps: int = 60,
                       seed: int = 0, progress: bool = True) -> dict:
    """The surrogate's scorecard on the test split of ``data_dir``; writes ``scorecard.json``,
    ``scorecard_tasks.png`` (per-task error with baselines), ``scorecard_canonical.png``
    (overlays of canonical scenarios) and ``scorecard_errors.png``; returns the dict.

    Per task (up to ``n_rows`` rows drawn evenly over tasks): NRMSE of the mean of ``n_draws``
    draws (``n_steps`` Euler steps), relative error of the peak |current|, error of the potential
    at the peak (V; meaningful for the voltammetric tasks), and the draws' spread vs the actual
    error (coverage of truth by mean +- 1/2 spread; ratio of spread to error). Baselines in the
    same table: ``mean_trace`` (the task's mean training current) and ``nearest_neighbour``
    (the training row of the same task nearest in normalised parameters).
    Raises ValueError for settings out of range or an ``out_dir`` that is a file.
    """
    out = Path(out_dir)
    for name, value, hi in (("rows", n_rows, 100_000), ("draws", n_draws, 1024), ("steps", n_steps, 10_000)):
        if not (isinstance(value, int) and 1 <= value <= hi):
            raise ValueError(f"{name}: must be an integer in [1, {hi}], got {value!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; the scorecard needs a folder")
    model, normalizers, meta, geometry = load_surrogate(model_dir)
    data = load_rows(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    picked = _pick_test_rows(data, n_rows, np.random.default_rng(seed))
    bar = tqdm(total=np.unique(data.task_id[picked]).size + 2, desc="evaluate", disable=not progress)
    table, rows_out = _task_table(model, normalizers, data, picked, n_draws=n_draws, n_steps=n_steps, seed=seed,
                                  bar=bar)
    all_nrmse = np.concatenate(list(rows_out.values()))
    canon = _canonical_overlays(model, normalizers, meta, geometry, CoreLayout.from_manifest(data.manifest),
                                n_draws=n_draws, n_steps=n_steps, seed=seed)
    bar.update()
    throughput = _throughput(model, normalizers, meta, geometry, data, picked, n_steps=n_steps)
    bar.update()
    bar.close()
    card = {
        "schema_version": SCORECARD_SCHEMA_VERSION,
        "model_dir": str(model_dir), "data_dir": str(data_dir),
        "settings": {"n_rows": int(picked.size), "n_draws": n_draws, "n_steps": n_steps, "seed": seed, "split": "test"},
        "overall": {"nrmse": _summ(all_nrmse), "n": int(all_nrmse.size)}, "per_task": table,
        "canonical": [{k: v for k, v in c.items() if k not in ("e", "i_sim", "draws")} for c in canon],
        "throughput": throughput,
        "discrepancy": meta.get("discrepancy"),
    }
    write_text(out / "scorecard.json", json.dumps(card, indent=1))
    _plot_scorecard(out, table, canon, rows_out)
    return card


def _pick_test_rows(data: SurrogateData, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n_rows`` test rows, the same number from every task present (in task order)."""
    test_rows = np.flatnonzero(data.split == 2)
    tasks = np.unique(data.task_id[test_rows])
    per = max(1, n_rows // tasks.size)
    return np.concatenate([rng.permutation(test_rows[data.task_id[test_rows] == t])[:per] for t in tasks])


def _task_table(model, normalizers, data: SurrogateData, picked: np.ndarray, *, n_draws: int, n_steps: int,
                seed: int, bar) -> tuple[dict, dict]:
    """Per task of the picked rows: the scorecard's table entry, and each row's NRMSE (n,)."""
    names = data.manifest["task_names"]
    length = data.e.shape[-1]
    train_rows = np.flatnonzero(data.split == 0)
    truth_all = state_to_current(data.x[:, -length:].astype(np.float64))
    pm, ps = normalizers[4], normalizers[5]
    table, rows_out = {}, {}
    for t in np.unique(data.task_id[picked]):
        rows = picked[data.task_id[picked] == t]
        draws = np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(seed + int(t)), data.e[rows, 0],
                                          data.p[rows], n_draws=n_draws, n_steps=n_steps), np.float64)
        truth = truth_all[rows]
        e = data.e[rows, 0].astype(np.float64)
        pred = draws.mean(0)
        m = _row_metrics(pred, truth, e)
        spread = draws.std(0)
        err = np.abs(pred - truth)
        # Baselines.
        tr = train_rows[data.task_id[train_rows] == t]
        base_mean = _row_metrics(np.broadcast_to(truth_all[tr].mean(0), truth.shape), truth, e)
        pn_tr = (data.p[tr] - pm) / ps
        pn = (data.p[rows] - pm) / ps
        nn = np.argmin(((pn[:, None, :] - pn_tr[None, :, :]) ** 2).sum(-1), axis=1)
        base_nn = _row_metrics(truth_all[tr[nn]], truth, e)
        table[names[t]] = {
            "n": int(rows.size),
            "surrogate": {k: _summ(v) for k, v in m.items()},
            "mean_trace": {k: _summ(v) for k, v in base_mean.items()},
            "nearest_neighbour": {k: _summ(v) for k, v in base_nn.items()},
            "draw_spread": {"coverage_1sigma": float(np.mean(err <= spread)),
                            "coverage_2sigma": float(np.mean(err <= 2 * spread)),
                            "median_spread_over_error": float(np.median(spread) / max(np.median(err), 1e-12))},
        }
        rows_out[names[t]] = m["nrmse"]
        bar.update()
    return table, rows_out


def _canonical_overlays(model, normalizers, meta: dict, geometry: dict, layout: CoreLayout, *, n_draws: int,
                        n_steps: int, seed: int) -> list[dict]:
    """Each canonical scenario re-simulated and drawn by the surrogate: name, task, errors, and
    the arrays the overlay plot needs (``e``, ``i_sim``, ``draws``)."""
    canon = []
    for name, task, stage, p in _canonical(layout.base):
        i_sim, e_sim, _ = simulate_rows(meta, geometry, task, p[None])
        core = layout.core(p, task, stage)
        draws = np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(seed), e_sim, core[None],
                                          n_draws=n_draws, n_steps=n_steps), np.float64)[:, 0]
        m = _row_metrics(draws.mean(0)[None], i_sim, e_sim)
        canon.append({"name": name, "task": task, "nrmse": float(m["nrmse"][0]), "peak_rel": float(m["peak_rel"][0]),
                      "peak_dv": float(m["peak_dv"][0]), "e": e_sim[0], "i_sim": i_sim[0], "draws": draws})
    return canon


def _throughput(model, normalizers, meta: dict, geometry: dict, data: SurrogateData, picked: np.ndarray, *,
                n_steps: int) -> dict:
    """Traces per second of surrogate (first call: compile time) and simulator on one batch of
    the same protocol (cv, else the first task picked), in this process."""
    rows = picked[:THROUGHPUT_BATCH]
    t0 = time.perf_counter()
    sample_current(model, normalizers, jax.random.PRNGKey(1), data.e[rows, 0], data.p[rows], n_draws=1, n_steps=n_steps)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(2), data.e[rows, 0], data.p[rows], n_draws=1,
                              n_steps=n_steps))
    surrogate_tps = THROUGHPUT_BATCH / (time.perf_counter() - t0)
    layout = CoreLayout.from_manifest(data.manifest)
    cv = layout.task_index("cv") if "cv" in layout.task_names else int(np.unique(data.task_id[picked])[0])
    pb = layout.base_of(data.p[picked[data.task_id[picked] == cv][:THROUGHPUT_BATCH]])
    _, _, run = simulate_rows(meta, geometry, layout.task_names[cv], pb)
    t0 = time.perf_counter()
    jax.block_until_ready(run(jnp.asarray(pb, jnp.float32)))
    sim_tps = pb.shape[0] / (time.perf_counter() - t0)
    return {"surrogate_traces_per_s": surrogate_tps, "simulator_traces_per_s_cv": sim_tps,
            "surrogate_compile_s": t_first, "batch": THROUGHPUT_BATCH,
            "note": "on this machine the simulator is the faster engine for these protocols; the surrogate "
                    "earns its place where simulation is expensive (many couples, fine grids, GPU batches) "
                    "and as a differentiable amortised emulator"}


def _row_metrics(pred: np.ndarray, truth: np.ndarray, e: np.ndarray) -> dict:
    """Per row of (n, L) currents (mA) and signals (V): ``nrmse`` (of the row's range),
    ``peak_rel`` (relative error of the peak |current|), ``peak_dv`` (V, potential at the peak)."""
    span = np.maximum(truth.max(1) - truth.min(1), 1e-12)
    nrmse = np.sqrt(np.mean((pred - truth) ** 2, axis=1)) / span
    k_true = np.argmax(np.abs(truth), axis=1)
    k_pred = np.argmax(np.abs(pred), axis=1)
    rows = np.arange(truth.shape[0])
    peak_true = np.abs(truth[rows, k_true])
    peak_rel = np.abs(np.abs(pred[rows, k_pred]) - peak_true) / np.maximum(peak_true, 1e-12)
    peak_dv = np.abs(e[rows, k_pred] - e[rows, k_true])
    return {"nrmse": nrmse, "peak_rel": peak_rel, "peak_dv": peak_dv}


def _summ(v: np.ndarray) -> dict:
    return {"median": float(np.median(v)), "p90": float(np.quantile(v, 0.9)), "mean": float(np.mean(v))}


def _plot_scorecard(out: Path, table: dict, canon: list, nrmse_rows: dict) -> None:
    """Draw ``scorecard_tasks.png``, ``scorecard_canonical.png`` and ``scorecard_errors.png``."""
    _plot_tasks(out, table)
    _plot_canonical(out, canon)
    _plot_errors(out, nrmse_rows)


def _plot_tasks(out: Path, table: dict) -> None:
    names = list(table)
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    x = np.arange(len(names))
    for j, (key, label) in enumerate((("surrogate", "surrogate"), ("nearest_neighbour", "nearest training neighbour"),
                                      ("mean_trace", "mean training trace"))):
        ax.bar(x + (j - 1) * 0.27, [100 * table[n][key]["nrmse"]["median"] for n in names], 0.27, label=label)
    ax.set_xticks(x, names, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("median NRMSE of current (%)")
    ax.set_title("held-out test rows: surrogate vs baselines")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "scorecard_tasks.png") as tmp:
        fig.savefig(tmp, format="png", dpi=130)


def _plot_canonical(out: Path, canon: list) -> None:
    fig = Figure(figsize=(4.2 * ((len(canon) + 1) // 2), 7))
    axes = fig.subplots(2, (len(canon) + 1) // 2)
    for ax, c in zip(axes.ravel(), canon):
        xs = c["e"] if c["task"] in ("cv", "cv_multispecies", "swv", "dpv") else np.arange(c["e"].size)
        for d in c["draws"]:
            ax.plot(xs, d, color="tab:orange", lw=0.6, alpha=0.5)
        ax.plot(xs, c["i_sim"], "k-", lw=1.2, label="simulator")
        ax.plot(xs, c["draws"].mean(0), "--", color="tab:red", lw=1.0, label="surrogate mean")
        ax.set_title(f"{c['name']}\nNRMSE {100 * c['nrmse']:.1f} %", fontsize=9)
        ax.set_xlabel("E (V)" if c["task"] in ("cv", "cv_multispecies", "swv", "dpv") else "sample")
        ax.set_ylabel("i (mA)")
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out / "scorecard_canonical.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _plot_errors(out: Path, nrmse_rows: dict) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for n, v in nrmse_rows.items():
        ax.hist(100 * v, bins=np.logspace(-1, 2.5, 30), histtype="step", label=n)
    ax.set_xscale("log")
    ax.set_xlabel("NRMSE per test row (%)")
    ax.set_ylabel("rows")
    ax.axvline(3, color="k", ls=":", lw=1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out / "scorecard_errors.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
