"""Dataset QC: what a dataset holds, and whether anything in it is wrong.

``inspect_dataset`` reads every chunk once (checking its sha256 against the manifest) and writes
``report.json``, ``summary.png`` and ``gallery.png``. Computing is kept apart from drawing:
``dataset_report`` returns the report and the gallery rows; ``plot_summary`` and ``plot_gallery``
draw them.

Checks (each a count, per task where it matters): non-finite values in any key; flat traces
(current range below ``FLAT_MA``); clipped traces (the extreme current repeated on >= 3 successive
samples, the signature of a saturated or clipped signal); parameters outside their row's prior
support (log prior = -inf); aliasing (samples per period of the sinusoid, counted from the
zero crossings of the applied potential, below ``MIN_SAMPLES_PER_PERIOD``); checksum mismatches.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .._atomic import atomic_path, write_text
from ._chunks import _check_chunk_keys, dataset_file, read_manifest, read_npz, sha256_file
from ._prior import PriorSpec
from ._recipes import STAGE_NAMES
from ._space import ParamSpace
from ._tasks import MIN_SAMPLES_PER_PERIOD, TASK_NAMES

__all__ = ["inspect_dataset", "dataset_report", "plot_summary", "plot_gallery", "FLAT_MA"]

#: A trace whose current spans less than this (mA for 1 cm^2, i.e. 1 nA/cm^2) is flat.
FLAT_MA = 1e-6
REPORT_SCHEMA_VERSION = 1
#: Most traces drawn in the gallery (one small panel each).
MAX_GALLERY = 1000


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy normalised to [0, 1] by log(number of categories)."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(len(counts))) if len(counts) > 1 and p.size else 0.0


def _clipped(i: np.ndarray) -> np.ndarray:
    """Rows whose max or min value is held on >= 3 successive samples."""
    out = np.zeros(i.shape[0], bool)
    for ext in (i.max(1, keepdims=True), i.min(1, keepdims=True)):
        at = np.isclose(i, ext, rtol=0, atol=0)
        run = at[:, :-2] & at[:, 1:-1] & at[:, 2:]
        out |= run.any(1) & (np.ptp(i, 1) > 0)
    return out


def _samples_per_period(e: np.ndarray) -> np.ndarray:
    """Samples per period of a sinusoidal signal from its mean crossings (inf if none)."""
    x = e - e.mean(1, keepdims=True)
    crossings = (np.signbit(x[:, 1:]) != np.signbit(x[:, :-1])).sum(1)
    with np.errstate(divide="ignore"):
        return np.where(crossings > 0, 2.0 * e.shape[1] / np.maximum(crossings, 1), np.inf)


def _coverage(p: np.ndarray, space: ParamSpace) -> dict:
    """Range and 5/95 % quantiles of every base slot over the rows ``p`` (None for no rows)."""
    coverage = {}
    for j, name in enumerate(space.names):
        v = p[:, j]
        coverage[name] = {"min": float(v.min()) if v.size else None, "max": float(v.max()) if v.size else None,
                          "q05": float(np.quantile(v, 0.05)) if v.size else None,
                          "q95": float(np.quantile(v, 0.95)) if v.size else None}
    return coverage


def _problems(checksum_bad: list, nonfinite: dict, per_task: dict) -> list[str]:
    """The report's problems, one readable line each."""
    problems = []
    if checksum_bad:
        problems.append(f"checksum mismatch or missing: {', '.join(checksum_bad)}")
    problems += [f"{k}: {v} non-finite values" for k, v in nonfinite.items() if v]
    for t, d in per_task.items():
        for key in ("flat_traces", "clipped_traces", "params_outside_prior"):
            if d[key]:
                problems.append(f"{t}: {d[key]} {key.replace('_', ' ')}")
        if d.get("min_samples_per_period", np.inf) < MIN_SAMPLES_PER_PERIOD:
            problems.append(f"{t}: aliased, {d['min_samples_per_period']:.1f} samples per period")
    return problems


def dataset_report(dataset: str | os.PathLike, *, gallery: int = 12, seed: int = 0) -> tuple[dict, dict]:
    """The QC report (JSON-ready) and the gallery rows (arrays) of a dataset folder."""
    # Longer than 80 lines: one pass over the chunks fills a dozen accumulators; split, each
    # would be threaded through helper signatures.
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    space = ParamSpace(int(manifest["max_species"]))
    rdict = manifest["recipe"]
    # The priors recorded in the manifest are the source of truth, not today's code.
    priors = {key: PriorSpec.from_dict(v) for key, v in rdict["priors"].items()}
    n_t, n_s = len(TASK_NAMES), len(STAGE_NAMES)
    counts = np.zeros((n_t, n_s), int)
    aug_counts = np.zeros(len(manifest["augmentation_names"]), int)
    nonfinite = {}
    flat = np.zeros(n_t, int)
    clipped = np.zeros(n_t, int)
    outside = np.zeros(n_t, int)
    max_abs_i = np.zeros(n_t)
    min_spp = np.full(n_t, np.inf)
    checksum_bad = []
    params, tasks_all = [], []
    rng = np.random.default_rng(seed)
    keep = {}  # reservoir of gallery rows keyed by a random priority
    for c in manifest["chunks"]:
        path = dataset_file(dataset, c["file"])
        if not path.exists() or sha256_file(path) != c["sha256"]:
            checksum_bad.append(c["file"])
            continue
        z = _check_chunk_keys(path, read_npz(path))
        for key, arr in z.items():
            if arr.dtype.kind == "f":
                nonfinite[key] = nonfinite.get(key, 0) + int((~np.isfinite(arr)).sum())
        task, stage, aug = z["task_id"], z["stage_id"], z["aug_id"]
        np.add.at(counts, (task, stage), 1)
        np.add.at(aug_counts, aug, 1)
        i = z["i"].astype(np.float64)
        for t in np.unique(task):
            sel = task == t
            flat[t] += int((np.ptp(i[sel], 1) < FLAT_MA).sum())
            clipped[t] += int(_clipped(i[sel]).sum())
            max_abs_i[t] = max(max_abs_i[t], float(np.abs(i[sel]).max()))
            if TASK_NAMES[t] == "eis":
                min_spp[t] = min(min_spp[t], float(_samples_per_period(z["e"][sel].astype(np.float64)).min()))
            for s in np.unique(stage[sel]):
                rows = sel & (stage == s)
                lp = priors[f"{TASK_NAMES[t]}/{STAGE_NAMES[s]}"].log_prob(z["p"][rows], space)
                outside[t] += int((~np.isfinite(lp)).sum())
        base = aug == 0
        params.append(z["p"][base])
        tasks_all.append(task[base])
        prio = rng.random(task.size)
        for r in np.flatnonzero(base):
            if len(keep) < gallery or prio[r] > min(keep):
                keep[prio[r]] = {k: z[k][r] for k in ("i", "e", "t", "p", "task_id", "stage_id")}
                if len(keep) > gallery:
                    del keep[min(keep)]
    p = np.concatenate(params) if params else np.zeros((0, space.size))
    tasks_arr = np.concatenate(tasks_all) if tasks_all else np.zeros(0, int)
    coverage = _coverage(p, space)
    per_task = {
        TASK_NAMES[t]: {
            "rows": int(counts[t].sum()),
            "max_abs_i_mA": float(max_abs_i[t]),
            "flat_traces": int(flat[t]),
            "clipped_traces": int(clipped[t]),
            "params_outside_prior": int(outside[t]),
            **({"min_samples_per_period": float(min_spp[t])} if TASK_NAMES[t] == "eis" else {}),
        }
        for t in range(n_t) if counts[t].sum() > 0
    }
    problems = _problems(checksum_bad, nonfinite, per_task)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "dataset": str(dataset),
        "manifest_schema_version": manifest["schema_version"],
        "recipe": rdict["name"],
        "n_rows": int(counts.sum()),
        "rows_by_task_stage": {TASK_NAMES[t]: {STAGE_NAMES[s]: int(counts[t, s]) for s in range(n_s) if counts[t, s]}
                               for t in range(n_t) if counts[t].sum()},
        "rows_by_augmentation": dict(zip(manifest["augmentation_names"], aug_counts.tolist())),
        "task_entropy": _entropy(counts.sum(1)[[t for t in range(n_t) if rdict["tasks"].get(TASK_NAMES[t], 0) > 0]]),
        "stage_entropy": _entropy(counts.sum(0)[[s for s in range(n_s) if rdict["stages"].get(STAGE_NAMES[s], 0) > 0]]),
        "nonfinite": nonfinite,
        "per_task": per_task,
        "param_coverage_base_rows": coverage,
        "problems": problems,
    }
    gallery_rows = {k: np.stack([keep[q][k] for q in sorted(keep)]) for k in ("i", "e", "t", "p", "task_id", "stage_id")} if keep else {}
    gallery_rows["param_matrix"] = p
    gallery_rows["param_tasks"] = tasks_arr
    return report, gallery_rows


def plot_summary(path, report: dict, rows: dict, space: ParamSpace) -> None:
    p = rows["param_matrix"]
    quantities = [("e0", "E0 / V", False), ("ln_k0", "k0 / cm s^-1", True), ("ln_d_ox", "D_ox / cm^2 s^-1", True),
                  ("ln_time_scale", "time scale / s", True), ("ln_ru", "Ru / ohm", True), ("ln_cdl", "Cdl / F cm^-2", True)]
    fig = Figure(figsize=(16, 7))
    axes = fig.subplots(2, 4)
    ax = axes[0, 0]
    tasks = list(report["rows_by_task_stage"])
    stages = sorted({s for d in report["rows_by_task_stage"].values() for s in d}, key=STAGE_NAMES.index)
    bottom = np.zeros(len(tasks))
    for s in stages:
        v = np.asarray([report["rows_by_task_stage"][t].get(s, 0) for t in tasks])
        ax.bar(tasks, v, bottom=bottom, label=s)
        bottom += v
    ax.set_ylabel("rows")
    ax.set_title(f"rows by task and stage (H_task = {report['task_entropy']:.2f})", fontsize=9)
    ax.tick_params(axis="x", rotation=45, labelsize=7)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.bar(list(report["per_task"]), [d["max_abs_i_mA"] for d in report["per_task"].values()])
    ax.set_yscale("log")
    ax.set_ylabel("max |i| / mA (1 cm^2)")
    ax.set_title("largest current per task", fontsize=9)
    ax.tick_params(axis="x", rotation=45, labelsize=7)
    active = space.active_couples(p) if p.size else np.zeros((0, space.max_species), bool)
    for ax, (q, label, log) in zip(list(axes[0, 2:]) + list(axes[1]), quantities):
        if q in ("ln_time_scale", "ln_ru", "ln_cdl"):
            v = p[:, space.index(q)]
        else:
            v = p[:, space.block(q)][active]
        v = np.exp(v) if log else v
        bins = np.geomspace(v.min(), v.max(), 30) if log and v.size and v.min() > 0 else 30
        ax.hist(v, bins=bins, color="C2")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_title("base rows, active couples" if q not in ("ln_time_scale", "ln_ru", "ln_cdl") else "base rows", fontsize=9)
    fig.suptitle(f"{report['recipe']}: {report['n_rows']} rows; problems: {len(report['problems'])}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def plot_gallery(path, rows: dict) -> None:
    n = len(rows.get("i", []))
    cols = 4
    nrow = max(1, -(-n // cols))
    fig = Figure(figsize=(4 * cols, 2.8 * nrow))
    axes = fig.subplots(nrow, cols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        task = TASK_NAMES[int(rows["task_id"][k])]
        t, i, e = rows["t"][k], rows["i"][k], rows["e"][k]
        ax.plot(t, i, color="C0", lw=1)
        ax.set_xlabel("t / s", fontsize=7)
        ax.set_ylabel("i / mA", color="C0", fontsize=7)
        if task == "ca_step":
            ax.set_xscale("log")
        ax2 = ax.twinx()
        ax2.plot(t, e, color="C1", lw=0.8)
        ax2.set_ylabel("E / V", color="C1", fontsize=7)
        ax.set_title(f"{task} / {STAGE_NAMES[int(rows['stage_id'][k])]}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax2.tick_params(labelsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def inspect_dataset(dataset, out, *, gallery: int = 12, seed: int = 0) -> dict:
    """Write ``report.json``, ``summary.png`` and ``gallery.png`` for a dataset; returns the report."""
    out = Path(out)
    if not (isinstance(gallery, int) and 1 <= gallery <= MAX_GALLERY):
        raise ValueError(f"gallery: must be an integer in [1, {MAX_GALLERY}], got {gallery!r}")
    manifest = read_manifest(dataset)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; the report needs a folder")
    out.mkdir(parents=True, exist_ok=True)
    report, rows = dataset_report(dataset, gallery=gallery, seed=seed)
    space = ParamSpace(int(manifest["max_species"]))
    write_text(out / "report.json", json.dumps(report, indent=1, sort_keys=True))
    plot_summary(out / "summary.png", report, rows, space)
    plot_gallery(out / "gallery.png", rows)
    return report
