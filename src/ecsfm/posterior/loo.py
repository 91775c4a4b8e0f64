"""Leave one trace out: fit the others, predict the held-out one (a scan-rate series' own test).

A cell model can fit each scan rate with parameters that do not carry from one rate to the next
(edge diffusion or a follow-up reaction, whose weight changes with the time scale, read as a
different D or k0 per rate). The joint fit then compromises and its in-sample check may still
pass. Fitting all traces but one and predicting that one asks the question directly: do the
parameters the other rates give predict this rate?

The held-out trace's own nuisance terms (its baseline offset and polynomial background) cannot
be predicted from the others; they enter linearly, so they are projected out of its residual
(least squares per draw) before the check. The check is ``model_check(held_out=True)``: the
null residual is new noise plus the spread of the prediction over the others' posterior. An
exact refit per trace, not importance-sampled from the joint posterior: removing one rate moves
a series' posterior far enough that importance weights collapse (Pareto k-hat > 1 on simulated
3-rate series), so the refits cost one joint fit per trace.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .. import sim
from ._joint_model import _apply, _build
from .joint import JointConfig, fit_joint
from .model_check import model_check

__all__ = ["leave_one_out"]


def leave_one_out(traces, *, area: float, c_ox: float, c_red: float = 0.0, temperature: float = sim.DEFAULT_TEMPERATURE,
                  config: JointConfig = JointConfig(), seed: int = 0, n_draws: int = 128) -> dict:
    """For each trace: fit the others (``fit_joint``), predict it with ``n_draws`` posterior draws,
    and check the prediction (``model_check(held_out=True)``). Returns the check's record over
    all traces (Bonferroni; ``method`` says it is leave-one-out) with, per trace, the held-out
    fit's D and k0 medians. Raises ValueError for fewer than 3 traces, per-trace Cdl/Ru (a
    held-out trace's own nonlinear terms cannot be predicted) or a potential-dependent Cdl over
    traces of different windows."""
    traces = list(traces)
    if len(traces) < 3:
        raise ValueError(f"leave_one_out: needs at least 3 traces (2 to fit, 1 to predict), got {len(traces)}")
    if set(config.per_trace) - {"offset"}:
        raise ValueError("leave_one_out: per-trace cdl/ru of a held-out trace cannot be predicted; fit with "
                         "per_trace=('offset',)")
    windows = {(round(float(t.potential.min()), 3), round(float(t.potential.max()), 3)) for t in traces}
    if config.cdl_degree and len(windows) > 1:
        raise ValueError("leave_one_out: a potential-dependent Cdl (cdl_degree > 0) is scaled over the traces' window, "
                         "and these traces span different windows: leave it out or cut them to one --window")
    rng = np.random.default_rng(seed)
    observed, draws, fits = [], [], []
    for k, held in enumerate(traces):
        others = [t for j, t in enumerate(traces) if j != k]
        res = fit_joint(others, area=area, c_ox=c_ox, c_red=c_red, temperature=temperature, config=config,
                        seed=seed + 1 + k, n_predictive=16)
        layout, forward, obs, _ = _build([held], config, area, c_ox, c_red, temperature, with_basis=False)
        pick = rng.choice(len(next(iter(res["samples"].values()))), size=n_draws, replace=False)
        slots = np.zeros((n_draws, layout.dim))
        for j, name in enumerate(layout.names):
            if name in res["samples"]:  # a shared parameter: the others' posterior, in slot units
                v = res["samples"][name][pick]
                slots[:, j] = np.log(v) if layout.is_log[j] else v
        pred = np.asarray(_apply(forward, jnp.asarray(slots, jnp.float32)), np.float64)[:, 0]
        y = np.asarray(obs, np.float64)[0]
        x = np.asarray(forward.background, np.float64)[:, 0] if forward.background.shape[0] else np.zeros((0, y.size))
        nuisance = np.vstack([np.ones(y.size), x]).T if x.size else np.ones((y.size, 1))
        away = np.eye(y.size) - nuisance @ np.linalg.pinv(nuisance)  # project out offset and background
        observed.append(away @ y)
        draws.append(pred @ away.T)
        fits.append({"d_ox": res["parameters"]["d_ox"]["q50"] if "d_ox" in res["parameters"] else None,
                     "k0": res["parameters"]["k0"]["q50"] if "k0" in res["parameters"] else None})
    check = model_check(observed, draws, noise=config.noise, held_out=True, labels=[t.label for t in traces],
                        seed=seed)
    for t, f, tr in zip(check["traces"], fits, traces):
        t.update({"scan_rate": tr.scan_rate, "others_d_ox": f["d_ox"], "others_k0": f["k0"]})
    check["method"] = "leave one trace out (the others refitted), " + check["method"]
    return check

