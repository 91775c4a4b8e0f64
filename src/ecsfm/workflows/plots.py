"""The figures of file-in/file-out inference: predictive overlays and marginals (computing is
done elsewhere; these only draw). Figures are built with matplotlib's object API (no pyplot
state, no backend chosen at import)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .._atomic import save_png

__all__ = ["plot_predictive", "plot_marginals", "plot_trace", "plot_joint_marginals", "plot_separate"]


def plot_predictive(path, e, i_obs, mask, post, task, label: str | None = None) -> None:
    sel = mask >= 0.5
    voltammetric = task in ("cv", "cv_multispecies", "swv", "dpv")
    x = e if voltammetric else np.arange(e.size)
    m = np.asarray(post["predictive_mean_current"])
    s = np.asarray(post["predictive_std_current"])
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(x, m, color="tab:blue", lw=1.2, label="posterior predictive mean")
    if voltammetric:  # a potential axis folds back on itself: draw the band as lines
        ax.plot(x, m - 2 * s, color="tab:blue", lw=0.6, ls=":", label="+-2 sd")
        ax.plot(x, m + 2 * s, color="tab:blue", lw=0.6, ls=":")
    else:
        ax.fill_between(x, m - 2 * s, m + 2 * s, alpha=0.25, label="+-2 sd")
    ax.plot(x[sel], i_obs[sel], "k.", ms=2.5, label="observed")
    if (~sel).any():
        ax.plot(x[~sel], i_obs[~sel], ".", color="gray", ms=2, alpha=0.4, label="held out")
    ax.set_xlabel("E (V)" if voltammetric else "sample")
    ax.set_ylabel("i (mA/cm^2)")
    ax.set_title((f"{label}: " if label else "")
                 + f"posterior predictive ({post['engine']}, {post['method']}, ESS {post['ess']:.0f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=130)


def plot_marginals(path, post, space, p_true) -> None:
    free = [i for i in post["free_indices"] if i < space.size][:9]
    samples = np.asarray(post["posterior_samples_raw"], np.float64)
    w = np.asarray(post["posterior_weights"], np.float64)
    k = len(free)
    fig = Figure(figsize=(1.6 * k + 1, 1.6 * k + 1))
    axes = fig.subplots(k, k, squeeze=False)
    for a in range(k):
        for b in range(k):
            ax = axes[a, b]
            ax.tick_params(labelsize=5)
            if b > a:
                ax.axis("off")
                continue
            xa, xb = samples[:, free[a]], samples[:, free[b]]
            if a == b:
                ax.hist(xa, bins=30, weights=w, color="tab:blue", alpha=0.7)
                if p_true is not None:
                    ax.axvline(p_true[free[a]], color="k", ls="--", lw=1)
            else:
                ax.scatter(xb, xa, s=4 + 200 * w / max(w.max(), 1e-12), alpha=0.4, color="tab:blue", lw=0)
                if p_true is not None:
                    ax.plot(p_true[free[b]], p_true[free[a]], "k+", ms=8)
            if a == k - 1:
                ax.set_xlabel(post["parameter_names"][free[b]], fontsize=6)
            if b == 0:
                ax.set_ylabel(post["parameter_names"][free[a]], fontsize=6)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def _save(fig, path) -> None:
    save_png(fig, path, dpi=110)


def _fill_sweeps(ax, e, lo, hi, **kw) -> None:
    """``fill_between`` per monotonic sweep: over a voltammogram's back-and-forth potential one
    polygon would cover each sweep twice and be drawn empty."""
    turns = np.flatnonzero(np.diff(np.sign(np.diff(e))) != 0) + 1
    bounds = [0, *turns.tolist(), e.size - 1]
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        ax.fill_between(e[a:b + 1], lo[a:b + 1], hi[a:b + 1], **(kw if k == 0 else {**kw, "label": None}))


def plot_trace(path, pred: dict, reference) -> None:
    """Measured and predicted current of one trace with two 95 % bands -- the parameters' spread,
    and the predictive band that adds the noise and the model discrepancy (where new data would
    fall) -- and a residual panel with both; points outside the fitted window in grey."""
    fig = Figure(figsize=(6, 6))
    ax, ar = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    step = "time" in pred  # a potential-step trace: against time since the program's start, log axis
    e, ua = (np.where(pred["time"] > 0, pred["time"], np.nan) if step else pred["potential"]), 1e6
    fitted = np.asarray(pred.get("fitted", np.ones(e.size, bool)), bool)
    half_param = (pred["q975"] - pred["q025"]) / 2
    extra = pred.get("noise_sd", 0.0) ** 2 + pred.get("discrepancy_sd", 0.0) ** 2
    half_pred = np.sqrt(half_param**2 + 1.96**2 * extra)
    m = pred["mean"]
    _fill_sweeps(ax, e, (m - half_pred) * ua, (m + half_pred) * ua, color="tab:orange", alpha=0.25, lw=0,
                 label="95 % predictive band (+ noise, discrepancy)")
    _fill_sweeps(ax, e, pred["q025"] * ua, pred["q975"] * ua, color="tab:red", alpha=0.4, lw=0,
                 label="95 % band of the parameters")
    ax.plot(e, np.where(fitted, pred["observed"], np.nan) * ua, color="k", lw=0.8, label="measured (fitted)")
    if not fitted.all():
        ax.plot(e, np.where(fitted, np.nan, pred["observed"]) * ua, color="0.6", lw=0.8, label="measured (not fitted)")
    ax.plot(e, m * ua, color="tab:red", lw=1.0, label="posterior predictive mean")
    ax.set_ylabel("current (µA, oxidation +)")
    ax.set_title(f"{pred['label']}: " + ("potential steps" if step else f"{pred['scan_rate']:g} V/s"), fontsize=9)
    ax.legend(fontsize=7)
    _fill_sweeps(ar, e, -half_pred * ua, half_pred * ua, color="tab:orange", alpha=0.25, lw=0)
    _fill_sweeps(ar, e, -half_param * ua, half_param * ua, color="tab:red", alpha=0.4, lw=0)
    ar.plot(e, np.where(fitted, pred["observed"] - m, np.nan) * ua, color="k", lw=0.6)
    ar.plot(e, np.where(fitted, np.nan, pred["observed"] - m) * ua, color="0.6", lw=0.6)
    ar.axhline(0, color="tab:red", lw=0.8)
    ar.set_ylabel("residual (µA)")
    if step:
        ar.set_xscale("log")
        ar.set_xlabel("t (s)")
    else:
        ar.set_xlabel(f"E (V vs {reference})" if reference else "E (V)")
    fig.tight_layout()
    _save(fig, path)


#: axis labels of the joint fit's parameters: what each is, with its unit
_LABELS = {"e0": "E0' (V)", "k0": "k0 (cm/s)", "alpha": "alpha", "d_ox": "D_ox (cm²/s)", "d_red": "D_red (cm²/s)",
           "ru": "Ru (ohm)", "cdl": "Cdl (F/cm²)", "kappa": "kappa: discrepancy / noise sd", "area": "area (cm²)",
           "c_ox": "c_ox (mM)"}
_LOG_SCALE = ("k0", "d_ox", "d_red", "ru", "cdl", "kappa", "area", "c_ox")


def plot_joint_marginals(path, samples: dict, params: dict, boxes: dict | None = None) -> None:
    """A pair (corner) plot of the shared parameters: histograms on the diagonal with the 95 %
    interval dotted, 2-D histograms below it; log axes for the scale parameters; the prior box
    drawn in grey (``boxes``: name -> [low, high]). A grid, readable from 3 to 16 parameters."""
    names = [n for n in samples if "[" not in n][:16]
    k = len(names)
    size = max(1.6, min(2.4, 16.0 / k))
    fig = Figure(figsize=(size * k, size * k))
    axes = fig.subplots(k, k, squeeze=False)
    boxes = boxes or {}

    def axis(n):
        v = np.asarray(samples[n], np.float64)
        return (np.log10(v), True) if n in _LOG_SCALE and np.all(v > 0) else (v, False)

    data = {n: axis(n) for n in names}

    def shown(n):
        """The axis range: the posterior's 99 % and, when a prior bound is within one posterior width
        of it, that bound (a bound far from the posterior says nothing and would squash the plot)."""
        x, log = data[n]
        lo, hi = np.quantile(x, [0.005, 0.995])
        width = max(hi - lo, 1e-12 * max(1.0, abs(hi)))
        for edge in boxes.get(n, ()):
            e = np.log10(edge) if log else edge
            if lo - width <= e <= hi + width:
                lo, hi = min(lo, e), max(hi, e)
        pad = 0.08 * (hi - lo)
        return lo - pad, hi + pad

    lims = {n: shown(n) for n in names}
    for i, ni in enumerate(names):
        for j, nj in enumerate(names):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            xj, logj = data[nj]
            if i == j:
                ax.hist(xj, bins=40, range=lims[nj], color="tab:blue", alpha=0.8)
                for q in ("q025", "q975"):
                    val = params[nj][q]
                    ax.axvline(np.log10(val) if logj else val, color="k", ls=":", lw=0.8)
                ax.set_yticks([])
            else:
                xi, logi = data[ni]
                ax.hist2d(xj, xi, bins=30, range=[lims[nj], lims[ni]], cmap="Blues")
                for edge in boxes.get(ni, ()):
                    ax.axhline(np.log10(edge) if logi else edge, color="0.5", lw=1.2)
                ax.set_ylim(lims[ni])
            for edge in boxes.get(nj, ()):
                ax.axvline(np.log10(edge) if logj else edge, color="0.5", lw=1.2)
            ax.set_xlim(lims[nj])
            ax.tick_params(labelsize=6)
            if i == k - 1:
                ax.set_xlabel(("log10 " if logj else "") + _LABELS.get(nj, nj), fontsize=7)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(("log10 " if data[ni][1] else "") + _LABELS.get(ni, ni), fontsize=7)
            elif j > 0:
                ax.set_yticklabels([])
    fig.suptitle("posterior; grey lines: the prior's bounds, drawn where the posterior comes within its own width "
                 "of them; dotted: 95 % interval", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_separate(path, per_rate: list, joint: dict, reference) -> None:
    names = [n for n in ("e0", "d_ox", "k0", "ru") if n in per_rate[0]["parameters"]]
    fig = Figure(figsize=(3.2 * len(names), 3))
    axes = fig.subplots(1, len(names), squeeze=False)
    v = np.asarray([r["scan_rate"] for r in per_rate])
    for ax, n in zip(axes[0], names):
        p = [r["parameters"][n] for r in per_rate]
        mid = np.asarray([q["q50"] for q in p])
        err = np.asarray([[q["q50"] - q["q025"] for q in p], [q["q975"] - q["q50"] for q in p]])
        ax.errorbar(v, mid, yerr=err, fmt="o", color="tab:blue", ms=4, capsize=2, label="each trace alone")
        if n in joint:
            ax.axhspan(joint[n]["q025"], joint[n]["q975"], color="tab:red", alpha=0.25, label="joint 95 %")
            ax.axhline(joint[n]["q50"], color="tab:red", lw=1)
        ax.set_xscale("log")
        if n in ("d_ox", "k0", "ru"):
            ax.set_yscale("log")
        unit = per_rate[0]["parameters"][n]["unit"]
        ax.set_ylabel(f"{n} ({unit}{', vs ' + reference if n == 'e0' and reference else ''})", fontsize=8)
        ax.set_xlabel("scan rate (V/s)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
