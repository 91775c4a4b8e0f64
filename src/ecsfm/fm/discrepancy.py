"""The surrogate's calibrated discrepancy: what inference adds to the likelihood covariance.

The residual of the surrogate's mean current against the simulator's is modelled per task as
``resid ~ N(0, S R S + g^2 c c^T)`` over a trace's L points: ``S = diag(s)`` with
``s^2 = a^2 + (b level)^2`` (``a`` in mA; ``level = |c|``, ``c`` the current's moving average,
``current_level``), ``R = (1 - nugget) rho^|i-j| + nugget I`` plus an independent term at the
trace's two ends (``edge_variance``), and a gain term ``g`` (the whole trace off by a random factor
``1 + g eps``). ``calibrate_discrepancy`` fits it on dataset rows, ``calibrate_discrepancy_fresh``
on rows drawn from the model's priors and simulated now; the result is the ``discrepancy`` block
of ``model_meta.json`` (``form_version`` ``DISCREPANCY_FORM_VERSION``; ``ModelCard.discrepancy``
reads older versions). Why this form: docs/surrogate.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize
from tqdm.auto import tqdm

from ..data import CoreLayout, ParamSpace, PriorSpec, simulate_rows
from ._data import state_to_current
from .objective import sample_current

__all__ = ["LEVEL_HALF_WIDTH", "DISCREPANCY_FORM_VERSION", "current_level", "edge_variance", "discrepancy_correlation",
           "discrepancy_edges", "discrepancy_covariance", "discrepancy_variance", "calibrate_discrepancy",
           "calibrate_discrepancy_fresh", "fresh_prior_rows"]

#: Half-width (points) of the moving average that sets a trace's current level for the discrepancy
#: scale: the same estimator reads the simulator's current in calibration and the observed
#: (noisy, possibly partial) current in inference, so the scale never depends on the parameters.
LEVEL_HALF_WIDTH = 3
#: Version of the fitted form written to ``model_meta.json["discrepancy"]["form_version"]``: 1
#: independent points, 2 correlated (rho, nugget), 3 with the gain term, 4 with the ends' term.
DISCREPANCY_FORM_VERSION = 4


def current_level(current, mask=None, half_width: int = LEVEL_HALF_WIDTH, signed: bool = False) -> np.ndarray:
    """|moving average| (..., L), in the current's unit, of a current (..., L) over its observed
    points (``mask``, broadcastable, 1 = observed), window ``2 half_width + 1``; an unobserved point
    gets the average of its observed neighbours (0 where it has none). ``signed``: the moving
    average itself (the trace's smoothed shape, which the discrepancy's gain term scales)."""
    x = np.asarray(current, np.float64)
    m = np.ones_like(x) if mask is None else np.broadcast_to(np.asarray(mask, np.float64), x.shape)
    kernel = np.ones(2 * half_width + 1)

    def smooth(v):
        return np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), -1, v)

    num, den = smooth(np.where(m > 0.5, x, 0.0)), smooth((m > 0.5).astype(np.float64))
    avg = np.where(den > 0, num / np.maximum(den, 1.0), 0.0)
    return avg if signed else np.abs(avg)


def edge_variance(length: int, onset: float = 0.0, end: float = 0.0, edge_points: float = 1.0) -> np.ndarray:
    """The discrepancy's extra independent variance at the trace's ends (L,), in units of each
    point's squared scale: ``onset e^(-i / edge_points) + end e^(-(L - 1 - i) / edge_points)``."""
    i = np.arange(length, dtype=np.float64)
    ell = max(float(edge_points), 1e-6)
    return onset * np.exp(-i / ell) + end * np.exp(-(length - 1 - i) / ell)


def discrepancy_correlation(length: int, rho: float, nugget: float, onset: float = 0.0, end: float = 0.0,
                            edge_points: float = 1.0) -> np.ndarray:
    """The discrepancy's correlation (length, length) over a trace's points:
    ``(1 - nugget) rho^|i - j| + nugget I`` plus the ends' independent term ``diag(edge_variance)``
    (zero by default)."""
    lag = np.abs(np.arange(length)[:, None] - np.arange(length)[None, :])
    return (1.0 - nugget) * rho**lag + np.diag(nugget + edge_variance(length, onset, end, edge_points))


def discrepancy_edges(model: Mapping) -> tuple[float, float, float]:
    """``(onset, end, edge_points)`` of a fitted model dict: (0, 0, 1), no ends' term, for a model
    written before form version 4."""
    return float(model.get("onset", 0.0)), float(model.get("end", 0.0)), float(model.get("edge_points", 1.0))


def _fit_discrepancy(resid: np.ndarray, level: np.ndarray, shape: np.ndarray | None = None, *,
                     edges: bool = False) -> dict:
    """Maximum-likelihood fit of ``resid_row ~ N(0, S R S + g^2 c c^T)`` over rows (n, L):
    ``S = diag(s)``, ``s^2 = a^2 + (b level)^2``, ``R = (1 - nugget) rho^|i-j| + nugget I``, and,
    when ``shape`` (the rows' smoothed signed currents ``c``) is given, a gain term: the surrogate's
    whole trace off by a random factor ``1 + g eps`` (its amplitude errors are of that kind; the
    correlated term alone reads one such error as many independent ones and hands it to the
    parameters that set the amplitude, C sqrt(D)). ``R`` is shared by every row, so one Cholesky
    factor per evaluation serves them all; the rank-one term enters through the
    Sherman-Morrison and determinant identities.

    ``edges``: ``R`` also carries an independent term at the trace's two ends,
    ``diag(onset e^(-i/l) + end e^(-(L-1-i)/l))`` (``edge_variance``). The surrogate misses the
    first few points' fast transient (the charging current's onset, a potential step) by far more
    than its smooth error elsewhere; without this term those few points would set the scale of
    every point (docs/surrogate.md).

    Returns ``{"a_mA", "b", "rho", "nugget"}`` plus ``"gain"`` with ``shape`` and ``"onset", "end",
    "edge_points"`` with ``edges``."""
    n, length = resid.shape
    scale = max(float(np.sqrt(np.mean(resid**2))), 1e-9)
    with_gain = shape is not None

    def unpack(theta):
        t = np.clip(np.asarray(theta, np.float64), -30.0, 30.0)
        k = 5 if with_gain else 4
        return (math.exp(t[0]), math.exp(t[1]), 1.0 / (1.0 + math.exp(-t[2])), 1.0 / (1.0 + math.exp(-t[3])),
                math.exp(t[4]) if with_gain else 0.0,
                *((math.exp(t[k]), math.exp(t[k + 1]), math.exp(t[k + 2])) if edges else (0.0, 0.0, 1.0)))

    def nll(theta):
        a, b, rho, nugget, g, onset, end, ell = unpack(theta)
        s = _point_scale(a, b, level, _SCALE_FLOOR * scale)
        u = resid / s
        try:
            cf = cho_factor(discrepancy_correlation(length, min(rho, 0.9995), nugget, onset, end, ell), lower=True)
        except np.linalg.LinAlgError:
            return 1e30
        r_u = cho_solve(cf, u.T).T
        quad = np.sum(u * r_u, axis=1)
        logdet = np.full(n, 2.0 * np.sum(np.log(np.diag(cf[0]))))
        if with_gain:
            c = shape / s
            cu, cc = np.sum(c * r_u, axis=1), np.sum(c * cho_solve(cf, c.T).T, axis=1)
            quad = quad - g**2 * cu**2 / (1.0 + g**2 * cc)
            logdet = logdet + np.log1p(g**2 * cc)
        return float(0.5 * np.sum(quad + logdet) + np.sum(np.log(s)))

    starts = [[math.log(scale), math.log(0.05), 2.0, -3.0], [math.log(0.1 * scale), math.log(0.2), 4.0, -5.0]]
    if with_gain:
        starts = [x + [math.log(g0)] for x in starts for g0 in (0.03, 0.3)]
    if edges:
        # The ends' term from a few starts; each polished by quasi-Newton (finite differences),
        # which is far cheaper than a simplex in eight dimensions.
        starts = [x + [math.log(v0), math.log(v0 / 10), math.log(1.0)] for x in starts for v0 in (1.0, 30.0)]
        rough = [minimize(nll, np.asarray(x0), method="Nelder-Mead", options={"maxfev": 400}) for x0 in starts]
        best = min((minimize(nll, r.x, method="L-BFGS-B", options={"maxiter": 500}) for r in
                    sorted(rough, key=lambda r: r.fun)[:2]), key=lambda r: r.fun)
    else:
        best = min((minimize(nll, np.asarray(x0), method="Nelder-Mead",
                             options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 3000}) for x0 in starts),
                   key=lambda r: r.fun)
    a, b, rho, nugget, g, onset, end, ell = unpack(best.x)
    out = {"a_mA": a, "b": b, "rho": min(rho, 0.9995), "nugget": nugget}
    return (out | ({"gain": g} if with_gain else {})
            | ({"onset": onset, "end": end, "edge_points": ell} if edges else {}))


#: Each point's discrepancy scale carries a floor of this fraction of the residuals' RMS (in the fit
#: and in whitening): a purely relative fit (a ~ 0) would otherwise have zero scale, hence a
#: singular covariance, wherever the current is zero.
_SCALE_FLOOR = 1e-6


def _point_scale(a: float, b: float, level: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """The discrepancy's scale at each point: ``sqrt(a^2 + (b level)^2 + floor^2)``."""
    return np.sqrt(a**2 + (b * level) ** 2 + floor**2)


def discrepancy_covariance(level: np.ndarray, shape: np.ndarray | None, model: Mapping,
                           floor: float = 0.0) -> np.ndarray:
    """The discrepancy's covariance (L, L), mA^2, over one trace's points: ``S R S + g^2 c c^T``
    (``R`` with the ends' term of a form-4 model). ``level`` (L,) mA, ``shape`` (L,) mA (the gain
    term's ``c``; None: no gain term), ``model`` a fitted model dict (``a_mA, b, rho, nugget``, and
    optionally ``gain, onset, end, edge_points``); ``floor`` (mA) joins each point's scale:
    ``s^2 = a^2 + (b level)^2 + floor^2``."""
    s = _point_scale(model["a_mA"], model["b"], level, floor)
    k = s[:, None] * discrepancy_correlation(level.size, model["rho"], model["nugget"], *discrepancy_edges(model)) * s[None, :]
    g = float(model.get("gain", 0.0))
    return k + g**2 * np.outer(shape, shape) if g > 0 and shape is not None else k


def discrepancy_variance(level: np.ndarray, shape: np.ndarray | None, model: Mapping,
                         floor: float = 0.0) -> np.ndarray:
    """Each point's discrepancy variance (..., L), mA^2: the diagonal of ``discrepancy_covariance``,
    over any number of rows (``level`` and ``shape`` (..., L)) at once."""
    s2 = _point_scale(model["a_mA"], model["b"], level, floor) ** 2
    var = s2 * (1.0 + edge_variance(np.shape(level)[-1], *discrepancy_edges(model)))  # R's diagonal: 1 + the ends' term
    g = float(model.get("gain", 0.0))
    return var + g**2 * np.asarray(shape) ** 2 if g > 0 and shape is not None else var


def _whitened(resid: np.ndarray, level: np.ndarray, model: dict, shape: np.ndarray | None = None) -> np.ndarray:
    """Residual rows whitened by the fitted discrepancy: iid N(0, 1) where the model is right.
    Each point's scale carries the fit's floor (``_SCALE_FLOOR`` x the residuals' RMS)."""
    floor = _SCALE_FLOOR * max(float(np.sqrt(np.mean(resid**2))), 1e-9)
    if float(model.get("gain", 0.0)) > 0 and shape is not None:  # a covariance per row
        return np.stack([solve_triangular(np.linalg.cholesky(discrepancy_covariance(lv, sh, model, floor)), r,
                                          lower=True) for r, lv, sh in zip(resid, level, shape)])
    s = _point_scale(model["a_mA"], model["b"], level, floor)
    chol = np.linalg.cholesky(discrepancy_correlation(resid.shape[1], model["rho"], model["nugget"], *discrepancy_edges(model)))
    return solve_triangular(chol, (resid / s).T, lower=True).T


def _discrepancy_from_residuals(resid: np.ndarray, level: np.ndarray, shape: np.ndarray, task_of_row: list, *,
                                n_mc: int, n_steps: int, source: str, seed: int) -> dict:
    """Per task: fit the correlated discrepancy (with its gain term) on half the rows, check it on
    the other half."""
    rng = np.random.default_rng(seed)
    per_task = {}
    names = sorted(set(task_of_row), key=task_of_row.index)
    tasks = np.asarray(task_of_row)
    for name in names:
        rows = rng.permutation(np.flatnonzero(tasks == name))
        fit, check = (rows[: len(rows) // 2], rows[len(rows) // 2:]) if len(rows) >= 8 else (rows, rows)
        model = _fit_discrepancy(resid[fit], level[fit], shape[fit], edges=True)
        # The per-point (marginal) bands: residual / sd on held-out rows should cover 68 / 95 %;
        # the fitted scale is kept (no rescaling), the coverages are reported.
        z_marg = resid[check] / np.sqrt(discrepancy_variance(level[check], shape[check], model))
        z_white = _whitened(resid[check], level[check], model, shape[check])
        per_task[name] = {"model": model, "n_rows": int(rows.size), "n_rows_fit": int(fit.size),
                          "residual_rms_mA": float(np.sqrt(np.mean(resid[rows] ** 2))),
                          "heldout_coverage_1sigma": float(np.mean(np.abs(z_marg) <= 1)),
                          "heldout_coverage_2sigma": float(np.mean(np.abs(z_marg) <= 2)),
                          "heldout_whitened_rms": float(np.sqrt(np.mean(z_white**2))),
                          "heldout_whitened_lag1_corr": float(np.mean(z_white[:, 1:] * z_white[:, :-1])
                                                              / max(np.mean(z_white**2), 1e-30))}
    return {"form": "resid ~ N(0, S R S + gain^2 c c^T): S = diag(sqrt(a^2 + (b level)^2)), c = moving average of the "
                    f"current (half-width {LEVEL_HALF_WIDTH}), level = |c|; R = (1 - nugget) rho^|i-j| + nugget I + "
                    "diag(onset exp(-i / edge_points) + end exp(-(L - 1 - i) / edge_points)); "
                    "resid = mean of the "
                    f"{n_mc} common-random-number draws - simulator current; maximum likelihood per task on half the "
                    "rows, checked on the other half",
            "form_version": DISCREPANCY_FORM_VERSION, "level_half_width": LEVEL_HALF_WIDTH,
            "current_residual_rms_mA": float(np.sqrt(np.mean(resid**2))),
            "per_task": per_task, "n_rows": int(resid.shape[0]), "n_draws": n_mc, "n_steps": n_steps, "rows": source}


def calibrate_discrepancy(model, normalizers, data, rows: np.ndarray, *, n_mc: int = 2, n_steps: int = 60,
                          seed: int = 0) -> dict:
    """The surrogate's discrepancy, per task, as inference uses it, on dataset rows (validation).

    ``data``: a ``SurrogateData``; ``rows`` (n,) indices into it. The residual of the mean of
    ``n_mc`` common-random-number draws (``n_steps`` Euler steps; as in inference) against the
    simulator's current is smooth along the trace, so it is modelled with a correlation over points
    (``_fit_discrepancy``), not as independent points, which would make posteriors far too narrow.
    The scale depends on the current's level, read the same way from the simulator here and from
    the observed data in inference, never on the parameters (a parameter-dependent variance would
    reward parameters with small predicted currents through its log-determinant).

    Returns the ``model_meta.json["discrepancy"]`` block: ``form``, ``form_version``,
    ``level_half_width``, ``current_residual_rms_mA``, ``per_task`` (task -> ``model`` and held-out
    coverages), ``n_rows``, ``n_draws``, ``n_steps``, ``rows``.
    """
    length = data.e.shape[-1]
    draws = np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(seed), data.e[rows, 0], data.p[rows],
                                      n_draws=n_mc, n_steps=n_steps), np.float64)
    truth = state_to_current(data.x[rows, -length:].astype(np.float64))
    names = data.manifest["task_names"]
    shape = current_level(truth, signed=True)
    return _discrepancy_from_residuals(draws.mean(0) - truth, np.abs(shape), shape,
                                       [names[t] for t in data.task_id[rows]], n_mc=n_mc, n_steps=n_steps,
                                       source="validation split", seed=seed)


def fresh_prior_rows(meta: dict, geometry: dict, task: str, keys: list[str], n: int, rng: np.random.Generator):
    """``n`` base parameter vectors drawn from the priors ``keys`` (``task/stage``, in turn) and
    simulated now with the dataset's simulator (``meta["simulator"]``): (p (n, base), stage index
    per row (list), current (n, L) mA, applied signal (n, L) V)."""
    space = ParamSpace(int(geometry["max_species"]))
    layout = CoreLayout.from_meta(meta)
    p_rows, which = [], []
    for j, key in enumerate(keys):
        m = n // len(keys) + (j < n % len(keys))
        p_rows.append(PriorSpec.from_dict(meta["priors"][key]).sample(rng, m, space))
        which += [layout.stage_index(key.split("/")[1])] * m
    p = np.concatenate(p_rows)
    truth, e, _ = simulate_rows(meta, geometry, task, p)
    return p, which, truth, e


def calibrate_discrepancy_fresh(model, normalizers, meta: dict, geometry: dict, *, n_per_task: int = 128,
                                n_mc: int = 2, n_steps: int = 60, seed: int = 0, progress: bool = False) -> dict:
    """``calibrate_discrepancy`` on fresh rows: ``n_per_task`` (>= 8) parameter vectors drawn from
    each task's priors (every stage the metadata has, in turn), simulated now with the dataset's
    simulator (so never seen in training; no dataset needed). Returns the discrepancy block, as
    ``calibrate_discrepancy``. Raises ValueError for ``n_per_task`` < 8."""
    if not (isinstance(n_per_task, int) and n_per_task >= 8):
        raise ValueError(f"n_per_task: must be an integer >= 8, got {n_per_task}")
    rng = np.random.default_rng(seed)
    layout = CoreLayout.from_meta(meta)
    resid, level, shape, labels = [], [], [], []
    for task in tqdm(layout.task_names, desc="discrepancy", disable=not progress):
        keys = [k for k in meta["priors"] if k.split("/")[0] == task]
        if not keys:
            continue
        p, which, truth, e = fresh_prior_rows(meta, geometry, task, keys, n_per_task, rng)
        core = np.stack([layout.core(p[r], task, which[r]) for r in range(p.shape[0])])
        full = np.zeros((core.shape[0], int(geometry["phys_dim"])), np.float32)
        full[:, : core.shape[1]] = core
        draws = np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(int(rng.integers(2**31))), e, full,
                                          n_draws=n_mc, n_steps=n_steps), np.float64)
        resid.append(draws.mean(0) - truth)
        shape.append(current_level(truth, signed=True))
        level.append(np.abs(shape[-1]))
        labels += [task] * truth.shape[0]
    return _discrepancy_from_residuals(np.concatenate(resid), np.concatenate(level), np.concatenate(shape), labels,
                                       n_mc=n_mc, n_steps=n_steps, source=f"fresh prior draws ({n_per_task} per task)", seed=seed)
