"""The calibration study's verdicts, plots and report (drawing and writing only; the study's
numbers come from ``ecsfm.studies.calibration``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .._atomic import save_png, write_text
from ..data import ParamSpace
from ..posterior import INTERVAL_MASS

__all__ = ["paired_differences", "criteria", "plot_study", "write_report"]


def paired_differences(records: list[dict], names: list[str], key: str = "param_nrmse") -> list[dict]:
    """Change of ``key`` from each regime to the next, paired over the cases both hold (every
    regime observes the same cases): mean difference, its standard error over cases (sample sd /
    sqrt(n); nan for a single case) and n. A step whose mean is within two standard errors of
    zero is one that these cases cannot order."""
    by = {n: {r["case_index"]: float(r[key]) for r in records if r["regime"] == n} for n in names}
    out = []
    for a, b in zip(names, names[1:]):
        common = sorted(set(by[a]) & set(by[b]))
        d = np.asarray([by[b][c] - by[a][c] for c in common], float)
        se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
        out.append({"from": a, "to": b, "mean": float(np.mean(d)) if d.size else float("nan"), "se": se,
                    "n": int(d.size)})
    return out


def criteria(summary: dict, names: list[str], worst: dict, records: list[dict]) -> list[dict]:
    first, last = names[0], names[-1]
    cal = summary[first]["pred_calibration_error_mean"]
    errs = [summary[n]["param_nrmse_mean"] for n in names]
    monotone = all(a <= b + 1e-12 for a, b in zip(errs, errs[1:]))
    steps = paired_differences(records, names)
    paired = "; paired over the same cases (mean +- standard error): " + ", ".join(
        f"{s['to']} - {s['from']} {s['mean']:+.3f} +- {s['se']:.3f}" for s in steps) if steps else ""
    undecided = [s for s in steps if not abs(s["mean"]) > 2 * s["se"]]
    if steps and undecided:
        paired += (f" ({len(undecided)} of {len(steps)} within two standard errors of zero: these cases cannot "
                   "order them)")
    w = worst.get("sparse_noisy") or worst[last]
    return [
        {"criterion": "Posterior predictive coverage tracks nominal Gaussian targets (1 sigma and 2 sigma) on dense "
                      "observations",
         "held": bool(cal <= 0.05),
         "numbers": f"{first}: coverage {summary[first]['pred_cov_1sigma_mean']:.3f} (nominal {INTERVAL_MASS[0]:.3f}) and "
                    f"{summary[first]['pred_cov_2sigma_mean']:.3f} ({INTERVAL_MASS[1]:.3f}); calibration error {cal:.3f} "
                    f"(threshold 0.05; an exact posterior with the same observed points and effective number of "
                    f"parameters would score {summary[first]['pred_calibration_error_exact_reference_mean']:.3f}, "
                    "since coverage is counted at the points it was fitted to)"},
        {"criterion": "Parameter recovery degrades gracefully as observations become sparse/noisy",
         "held": bool(monotone),
         "numbers": "parameter NRMSE (normalised units) " + " -> ".join(f"{n} {e:.3f}" for n, e in zip(names, errs))
                    + paired,
         "paired_differences": steps},
        {"criterion": "Failure cases are explicitly visualized and interpreted",
         "held": True,
         "numbers": f"worst {w['record']['regime']} case #{w['record']['case_index']} (task {w['record']['task']}, "
                    f"reliability {w['record']['reliability_score']:.1f}, ESS {w['record']['ess']:.1f}) shown in "
                    "posterior_sparse_noisy_worst_case.png"},
    ]


def _save(fig, path: Path, dpi: int = 150) -> None:
    save_png(fig, path, dpi=dpi)


def plot_study(out: Path, records: list[dict], names: list[str], z_by_regime: dict, worst: dict, geometry: dict,
           meta: dict) -> None:
    vals = lambda metric: [np.asarray([float(r[metric]) for r in records if r["regime"] == n]) for n in names]  # noqa: E731
    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    axes[0].boxplot(vals("reliability_score"), tick_labels=names)
    axes[0].set_title("Posterior reliability score")
    axes[0].set_ylabel("score (0-100)")
    axes[1].boxplot(vals("param_nrmse"), tick_labels=names)
    axes[1].set_title("Parameter recovery error")
    axes[1].set_ylabel("NRMSE (normalised parameter space)")
    axes[2].bar(np.arange(len(names)), [float(np.mean(v)) for v in vals("pred_calibration_error")])
    axes[2].set_xticks(np.arange(len(names)), names)
    axes[2].set_title("Predictive calibration error")
    axes[2].set_ylabel(f"|cov1 - {INTERVAL_MASS[0]:.4f}| + |cov2 - {INTERVAL_MASS[1]:.4f}|")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out / "posterior_recovery_calibration_boxes.png")

    thresholds = np.linspace(0.5, 2.5, 9)
    expected = np.asarray([math.erf(t / math.sqrt(2.0)) for t in thresholds])
    fig = Figure(figsize=(7.5, 5.5))
    ax = fig.subplots()
    ax.plot(thresholds, expected, "k--", lw=1.3, label="ideal Gaussian coverage")
    for n in names:
        z = np.abs(z_by_regime[n])
        ax.plot(thresholds, [np.mean(z <= t) for t in thresholds], "o-", label=n)
    ax.set_xlabel("z threshold")
    ax.set_ylabel("empirical coverage P(|z| <= threshold)")
    ax.set_title("Posterior predictive calibration curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, out / "posterior_calibration_curves.png")

    p = worst["payload"]
    obs = np.asarray(p["observed_current"])
    mask = np.asarray(p["observed_mask"]) >= 0.5
    pred, std = np.asarray(p["pred_mean"]), np.asarray(p["pred_std"])
    r = worst["record"]
    t, xlabel, log_x = _physical_axis(p, r["task"], obs.size)
    fig = Figure(figsize=(16, 4.5))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    if xlabel.startswith("E"):  # a potential axis folds back on itself: the bands as lines
        for k, style in ((2, ":"), (1, "--")):
            ax.plot(t, pred - k * std, color="tab:blue", lw=0.7, ls=style, label=f"pred +-{k} sd")
            ax.plot(t, pred + k * std, color="tab:blue", lw=0.7, ls=style)
    else:
        ax.fill_between(t, pred - 2 * std, pred + 2 * std, alpha=0.25, label="pred +-2 sd")
        ax.fill_between(t, pred - std, pred + std, alpha=0.35, label="pred +-1 sd")
    ax.plot(t, pred, lw=1.2, label="pred mean")
    ax.plot(t[mask], obs[mask], "k.", ms=3, label="observed")
    ax.plot(t[~mask], obs[~mask], ".", color="gray", ms=2, alpha=0.25, label="missing")
    ax.set_title(f"Worst {r['regime']} case #{r['case_index']} ({r['task']})")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("current (mA)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    samples, w = np.asarray(p["samples_raw"]), np.asarray(p["weights"])
    w = w / max(w.sum(), 1e-12)
    truth, post_mean = np.asarray(p["true_core"]), np.asarray(p["post_mean_raw"])
    space = ParamSpace(int(geometry["max_species"]))
    # The first couple present (the seed plots slot 0, which may be an absent couple's filler).
    k = int(np.argmax(space.active_couples(truth[: space.size])))
    for ax, idx, label in ((axes[1], space.index("e0", k), f"E0[{k}] (V)"),
                           (axes[2], space.index("ln_k0", k), f"ln k0[{k}] (ln cm/s)")):
        ax.hist(samples[:, idx], bins=24, weights=w, density=True, alpha=0.7)
        ax.axvline(truth[idx], color="k", ls="--", label="truth")
        ax.axvline(post_mean[idx], color="tab:red", label="posterior mean")
        ax.set_title(f"posterior marginal: {label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "posterior_sparse_noisy_worst_case.png")


#: tasks whose trace is read against the applied potential (the others against time)
_VOLTAMMETRIC = ("cv", "cv_multispecies", "swv", "dpv")


def _physical_axis(payload: dict, task: str, n: int) -> tuple[np.ndarray, str, bool]:
    """The worst case's x axis: the applied potential for a voltammogram, the time (log for a
    step) otherwise; the sample index only for a journal written before these were recorded."""
    if task in _VOLTAMMETRIC and payload.get("potential") is not None:
        return np.asarray(payload["potential"]), "E (V)", False
    if payload.get("time") is not None:
        return np.asarray(payload["time"]), "t (s)", task == "ca_step"
    return np.arange(n), "sample", False


def _parameter_error_note(records: list[dict]) -> str:
    n = sum(bool(r.get("parameter_error_applied")) for r in records)
    if n == 0:
        return "none (the engine is exact, the model has none for this method, or it was switched off)"
    return (f"applied in {n} of {len(records)} cases (ecsfm.posterior.prior_weight; the predictive bands do not use "
            "it)")


def _band_scale_note(records: list[dict]) -> str:
    scales: dict = {}
    for r in records:
        if r.get("predictive_band_scale", 1.0) != 1.0:
            scales.setdefault(r["task"], set()).add(round(r["predictive_band_scale"], 2))
    if not scales:
        return "none (the engine has no discrepancy, the model has none for this method, or it was switched off)"
    return ("the discrepancy's part of the predictive variance times " +
            ", ".join(f"{'-'.join(f'{v:.2f}' for v in sorted(vs))} ({t})" for t, vs in sorted(scales.items())) +
            " by observed fraction (calibrated on fresh simulations; ecsfm.posterior.prior_weight.fit_band_scale)")


def _amortized_note(records: list[dict]) -> list[str]:
    """The amortised method's importance sampling per regime: median efficiency, fallback rate."""
    rows = [r for r in records if "amortized_efficiency" in r]
    if not rows:
        return []
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    per = [f"{n} {np.median([r['amortized_efficiency'] for r in rows if r['regime'] == n]):.3f} / "
           f"{np.mean([r['amortized_fell_back'] for r in rows if r['regime'] == n]):.0%}" for n in regimes]
    return ["The amortised posterior's importance sampling, per regime (median efficiency = effective draws / "
            "draws; the share of cases whose weights failed their diagnostics and fell back on SMC): "
            + ", ".join(per) + ".", ""]


def _moved(c: float) -> str:
    """How far posteriors of mean contraction ``c`` moved from the prior, in words."""
    if not math.isfinite(c):
        return "not measured"
    if c < 0.1:
        return "barely narrower than the prior: these data, through this method, taught little"
    if c < 0.5:
        return "moderately narrower than the prior"
    return "much narrower than the prior"


def write_report(out: Path, payload: dict, criteria: list[dict]) -> None:
    """``report.md``: what the study did, how far the posteriors moved from the prior, whether they
    are right, the seed's criteria and metrics -- each metric defined where first used."""
    cfg, summary = payload["config"], payload["summary"]
    regimes = cfg["observation_regimes"]
    names = list(summary)
    n_cases = len(cfg["case_indices"])
    contraction = {n: summary[n].get("contraction_mean", float("nan")) for n in names}
    overall = float(np.nanmean(list(contraction.values()))) if names else float("nan")
    method = f"{cfg['engine']} engine with {cfg['method'].upper()}"
    lines = ["# Posterior identifiability and calibration", "",
             f"{n_cases} simulated voltammograms the model never trained on (held-out rows of the dataset, each with "
             "its true parameters) are each observed in " + str(len(names)) + " regimes -- " + "; ".join(
                 f"**{n}**: " + ("every point" if regimes[n]["keep_prob"] >= 1 else
                                  f"{100 * regimes[n]['keep_prob']:.0f} % of the points kept at random")
                 + f", noise sd {regimes[n]['noise_std']:g} mA" for n in names)
             + f" -- and the posterior of the unknown parameters is inferred from each by the {method}. Because "
             "every truth is known, the study measures whether the posteriors are right (the truth falls inside "
             "their intervals as often as the intervals claim) and how much the data taught (how much narrower than "
             "the prior they are).", "",
             f"Model: `{cfg['checkpoint']}`  ", f"Held-out chunk: `{cfg['dataset_chunk']}`  ",
             f"Inference settings (the seed's keys): {cfg['inference_base']}  ",
             "Surrogate's calibrated parameter error in the posteriors: "
             f"{_parameter_error_note(payload['records'])}  ",
             f"Calibrated predictive band scale: {_band_scale_note(payload['records'])}", "",
             "## How far the posteriors moved from the prior", "",
             "*Contraction* of a parameter is 1 - posterior variance / prior variance: 0 when the data taught nothing, "
             "1 when they pin it. Averaged over the unknown parameters of the couples present:", "",
             f"- **{method}**: mean contraction {overall:.2f} ("
             + ", ".join(f"{n} {contraction[n]:.2f}" for n in names) + f"): {_moved(overall)}.", "",
             *_amortized_note(payload["records"]),
             *_summary_table(summary, contraction), *_seed_sections(summary, criteria),
             *_contraction_table(summary)]
    write_text(out / "report.md", "\n".join(lines))


def _summary_table(summary: dict, contraction: dict) -> list[str]:
    lines = ["## Summary", "",
             "| regime | points kept | parameter error (NRMSE) | interval coverage 68.3 % / 95.4 % "
             "| mean contraction | s/case |", "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['obs_fraction_mean']:.2f} | {s['param_nrmse_mean']:.3f} | "
                     f"{s['active_param_interval_cov_1sigma_pooled']:.2f} / "
                     f"{s['active_param_interval_cov_2sigma_pooled']:.2f} | {contraction[name]:.2f} | "
                     f"{s['elapsed_s_mean']:.2f} |")
    n_slots = max([int(s.get("active_param_n_slots", 0)) for s in summary.values()] + [1])
    se = [math.sqrt(m * (1 - m) / n_slots) for m in INTERVAL_MASS]
    lines += ["",
              "- *Parameter error (NRMSE)*: the root mean square, over the parameter vector, of (posterior mean - "
              "truth) in units of each parameter's spread over the dataset (the seed's normalisation; known and absent "
              "slots count as exact). 0 is perfect; about 1 is no better than guessing the dataset's mean.",
              "- *Interval coverage*: the fraction of unknown parameters (of couples present) whose truth lies inside "
              "the posterior's central 68.3 % / 95.4 % credible interval. A calibrated posterior gives 0.683 / 0.954, "
              f"within about +-{se[0]:.2f} / +-{se[1]:.2f} (one binomial standard error over {n_slots} parameters "
              "per regime, pooled over cases); below nominal means over-confident, above means too cautious.",
              "- *Points kept*: the fraction of the trace's points observed.", ""]
    return lines


def _seed_sections(summary: dict, criteria: list[dict]) -> list[str]:
    lines = ["## The seed's success criteria", "",
              "The seed is the experiment this study reproduces (posterior identifiability and calibration of the "
              "surrogate). It states three criteria, judged here on its own metrics (defined below):", ""]
    for c in criteria:
        lines.append(f"- **{'HELD' if c['held'] else 'NOT HELD'}** -- {c['criterion']}: {c['numbers']}")
    lines += ["", "## The seed's own metrics", "",
              "| regime | coverage +-1 / +-2 sd (all slots) | predictive coverage 1 / 2 sd | predictive calibration error "
              "(an exact posterior's) | reliability score |", "|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['param_cov_1sigma_mean']:.2f} / {s['param_cov_2sigma_mean']:.2f} | "
                     f"{s['pred_cov_1sigma_mean']:.2f} / {s['pred_cov_2sigma_mean']:.2f} | "
                     f"{s['pred_calibration_error_mean']:.3f} ({s['pred_calibration_error_exact_reference_mean']:.3f}) | "
                     f"{s['reliability_score_mean']:.1f} |")
    lines += ["",
              "- *Coverage +-1 / +-2 sd*: the fraction of all parameter slots whose truth lies within 1 / 2 posterior "
              "standard deviations of the posterior mean. It counts known and absent slots (recovered exactly) and is "
              "nominal (0.683 / 0.954) only for Gaussian posteriors: a flat, prior-dominated marginal covers 0.577 / "
              "1.000 even when exactly calibrated. The interval coverage above is the calibration measure.",
              "- *Predictive coverage*: the fraction of observed points inside the posterior predictive mean +- 1 / 2 "
              "sd. *Predictive calibration error* = |coverage at 1 sd - 0.683| + |coverage at 2 sd - 0.954|. Both are "
              "counted at the observed points, the data the posterior was fitted to, where even an exact posterior "
              "over-covers (its fitted residual has variance sigma^2 (1 - h), its predictive sigma^2 (1 + h), h the "
              "leverage), and the absolute values turn scatter into a positive bias; in brackets the error an exact "
              "linear-Gaussian posterior with each case's observed points and effective parameters would score: what "
              "a perfectly calibrated posterior is expected to reach.",
              "- *Reliability score* (0-100): 100 x max(0, 1 - predictive calibration error) / (1 + predictive NRMSE / "
              "0.1), the predictive NRMSE being the RMS of observed - predicted over the observed range. 100 is a "
              "calibrated band around an exact, noise-free trace; a 10 % error (noise included) or a calibration error "
              "of 0.5 halves it.", ""]
    return lines


def _contraction_table(summary: dict) -> list[str]:
    lines = ["## Contraction per parameter", "",
              "| regime | " + " | ".join(next(iter(summary.values()))["contraction_by_parameter"]) + " |",
              "|---|" + "---|" * len(next(iter(summary.values()))["contraction_by_parameter"])]
    for name, s in summary.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in s["contraction_by_parameter"].values()) + " |")
    lines += ["", "A negative entry is a posterior wider than the prior. One case can be (a likelihood that pushes mass "
              "to both ends of a box spreads it more than the uniform prior does), but averaged over cases an exact "
              "posterior's variance is at most the prior's (the law of total variance), so a clearly negative mean "
              "marks an artefact of the method: too few effective particles to estimate a variance, or the prior "
              "mixed into the posterior at the model's calibrated weight.", "",
              "## Plots", "", "![recovery](posterior_recovery_calibration_boxes.png)", "",
              "![calibration](posterior_calibration_curves.png)", "",
              "![worst case](posterior_sparse_noisy_worst_case.png) (the worst case by reliability score, against "
              "the applied potential or time)", ""]
    return lines
