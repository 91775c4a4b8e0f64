"""Evaluation of the surrogate against the simulator, and geometry resolution.

* ``current_nrmse``: held-out range-normalised RMS error of the current, per task.
* ``calibrate_discrepancy`` / ``calibrate_discrepancy_fresh``: the surrogate's calibrated
  discrepancy (what inference adds to the likelihood covariance: a level-dependent scale and a
  correlation over the trace's points), fitted on validation rows or on fresh simulations.
* ``evaluate_surrogate`` (``ecsfm evaluate``): the scorecard -- per task NRMSE, peak-current and
  peak-potential errors, draw spread vs actual error, two baselines (mean training trace;
  nearest training neighbour in parameter space), canonical scenarios re-simulated with
  ``ecsfm.sim``, and throughput of surrogate vs simulator -- as JSON and overlay plots.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["resolve_model_geometry", "_resolve_model_geometry", "load_surrogate", "current_nrmse",
           "calibrate_discrepancy", "calibrate_discrepancy_fresh", "current_level", "evaluate_surrogate", "CANONICAL_SCENARIOS", "SCORECARD_SCHEMA_VERSION"]

SCORECARD_SCHEMA_VERSION = 1


def resolve_model_geometry(normalizers, meta: dict) -> dict:
    """Sizes of the surrogate's inputs, from its normalisers and metadata.

    Returns ``state_dim`` (2 S nx + L), ``phys_dim`` (length of the conditioning vector the model
    takes), ``signal_channels``, ``phys_dim_base`` (base parameters), ``phys_dim_core`` (base +
    task and stage one-hots), ``n_tasks``, ``n_stages``, ``max_species``, ``nx``, ``target_len``,
    and ``meta`` itself (so that posterior inference, given only the geometry, finds the prior,
    the vocabularies and the calibrated discrepancy).
    Raises ValueError when the files disagree with each other.
    """
    x_mean, _, e_mean, _, p_mean, _ = normalizers
    state_dim = int(np.asarray(x_mean).size)
    phys_dim = int(np.asarray(p_mean).size)
    signal_channels = int(meta.get("signal_channels", 1))
    target_len = int(meta.get("target_len", np.asarray(e_mean).size // signal_channels))
    max_species = int(meta["max_species"])
    nx = int(meta["nx"])
    n_tasks = len(meta.get("task_names", [])) if "n_tasks" not in meta else int(meta["n_tasks"])
    n_stages = len(meta.get("stage_names", [])) if "n_stages" not in meta else int(meta["n_stages"])
    phys_dim_base = int(meta.get("phys_dim_base", len(meta.get("params", [])) or 7 * max_species + 3))
    phys_dim_core = phys_dim_base + n_tasks + n_stages
    geometry = dict(state_dim=state_dim, phys_dim=phys_dim, signal_channels=signal_channels,
                    phys_dim_base=phys_dim_base, phys_dim_core=phys_dim_core, n_tasks=n_tasks,
                    n_stages=n_stages, max_species=max_species, nx=nx, target_len=target_len, meta=meta)
    if state_dim != 2 * max_species * nx + target_len:
        raise ValueError(f"geometry: state_dim {state_dim} != 2 * max_species * nx + target_len = "
                         f"{2 * max_species * nx + target_len}")
    if np.asarray(e_mean).size != signal_channels * target_len:
        raise ValueError(f"geometry: e_mean has {np.asarray(e_mean).size} entries, expected "
                         f"signal_channels * target_len = {signal_channels * target_len}")
    if phys_dim < phys_dim_core:
        raise ValueError(f"geometry: phys_dim {phys_dim} < phys_dim_core {phys_dim_core}")
    return geometry


#: The name the seed notebook imports.
_resolve_model_geometry = resolve_model_geometry


def load_surrogate(model_dir):
    """``(model, normalizers, meta, geometry)`` of a trained surrogate folder."""
    from pathlib import Path

    import equinox as eqx
    import jax

    from .train import (CHECKPOINT_FILENAME, MODEL_META_FILENAME, NORMALIZERS_FILENAME, TrainConfig, build_model,
                        load_model_metadata, load_saved_normalizers)

    model_dir = Path(model_dir)
    for name in (MODEL_META_FILENAME, NORMALIZERS_FILENAME, CHECKPOINT_FILENAME):
        if not (model_dir / name).is_file():
            raise ValueError(f"model: {model_dir} is not a model folder (no {name}; a model folder is made by "
                             "ecsfm train)")
    meta = load_model_metadata(model_dir / MODEL_META_FILENAME)
    normalizers = load_saved_normalizers(model_dir / NORMALIZERS_FILENAME)
    geometry = resolve_model_geometry(normalizers, meta)
    config = TrainConfig(**meta["training_config"])
    model = build_model(config, geometry, jax.random.PRNGKey(0))
    model = eqx.tree_deserialise_leaves(model_dir / CHECKPOINT_FILENAME, model)
    return model, normalizers, meta, geometry


def current_nrmse(model, normalizers, data_dir, *, split: int = 2, n_rows: int = 256, n_draws: int = 8,
                  n_steps: int = 60, seed: int = 0) -> dict:
    """Range-normalised RMS error of the surrogate's mean current (``n_draws`` draws, ``n_steps``
    Euler steps) on up to ``n_rows`` rows of a split (2 = test), overall and per task:
    ``rmse(mean draw - truth) / (max(truth) - min(truth))`` per row, then median and 90th
    percentile; plus how the spread of the draws compares with the actual error."""
    import jax

    from ._data import load_rows, state_to_current
    from .train import sample_current

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


# =================================================================================================
# Calibrated discrepancy


#: Half-width (points) of the moving average that sets a trace's current level for the discrepancy
#: scale: the same estimator reads the simulator's current in calibration and the observed
#: (noisy, possibly partial) current in inference, so the scale never depends on the parameters.
LEVEL_HALF_WIDTH = 3
DISCREPANCY_FORM_VERSION = 4


def current_level(current, mask=None, half_width: int = LEVEL_HALF_WIDTH, signed: bool = False) -> np.ndarray:
    """|moving average| of a current (..., L) over its observed points (``mask``, 1 = observed),
    window ``2 half_width + 1``; an unobserved point gets the average of its observed neighbours
    (0 where it has none). ``signed``: the moving average itself (the trace's smoothed shape, which
    the discrepancy's gain term scales)."""
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
    """The discrepancy's correlation over a trace's points: ``(1 - nugget) rho^|i - j| + nugget I``
    plus the ends' independent term ``diag(edge_variance)`` (zero by default)."""
    lag = np.abs(np.arange(length)[:, None] - np.arange(length)[None, :])
    return (1.0 - nugget) * rho**lag + np.diag(nugget + edge_variance(length, onset, end, edge_points))


def _edges(model: dict) -> tuple[float, float, float]:
    """``(onset, end, edge_points)`` of a fitted model (no ends' term before form version 4)."""
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
    than its smooth error elsewhere; without this term those few innovations (mean squared whitened
    residual 60-200 at the second point, against ~0.1-0.3 in the bulk) set the scale of every point
    and make the bands 2-3 times too wide in the bulk."""
    from scipy.linalg import cho_factor, cho_solve
    from scipy.optimize import minimize

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


def discrepancy_covariance(level: np.ndarray, shape: np.ndarray | None, model: dict, floor: float = 0.0) -> np.ndarray:
    """The discrepancy's covariance over one trace's points (L, L): ``S R S + g^2 c c^T`` (``R`` with
    the ends' term of a form-4 model)
    (``floor`` (mA) joins each point's scale: ``s^2 = a^2 + (b level)^2 + floor^2``)."""
    s = _point_scale(model["a_mA"], model["b"], level, floor)
    k = s[:, None] * discrepancy_correlation(level.size, model["rho"], model["nugget"], *_edges(model)) * s[None, :]
    g = float(model.get("gain", 0.0))
    return k + g**2 * np.outer(shape, shape) if g > 0 and shape is not None else k


def discrepancy_variance(level: np.ndarray, shape: np.ndarray | None, model: dict, floor: float = 0.0) -> np.ndarray:
    """Each point's discrepancy variance (..., L): the diagonal of ``discrepancy_covariance``,
    over any number of rows at once."""
    s2 = _point_scale(model["a_mA"], model["b"], level, floor) ** 2
    var = s2 * (1.0 + edge_variance(np.shape(level)[-1], *_edges(model)))  # R's diagonal: 1 + the ends' term
    g = float(model.get("gain", 0.0))
    return var + g**2 * np.asarray(shape) ** 2 if g > 0 and shape is not None else var


def _whitened(resid: np.ndarray, level: np.ndarray, model: dict, shape: np.ndarray | None = None) -> np.ndarray:
    """Residual rows whitened by the fitted discrepancy: iid N(0, 1) where the model is right.
    Each point's scale carries the fit's floor (``_SCALE_FLOOR`` x the residuals' RMS)."""
    from scipy.linalg import solve_triangular

    floor = _SCALE_FLOOR * max(float(np.sqrt(np.mean(resid**2))), 1e-9)
    if float(model.get("gain", 0.0)) > 0 and shape is not None:  # a covariance per row
        return np.stack([solve_triangular(np.linalg.cholesky(discrepancy_covariance(lv, sh, model, floor)), r,
                                          lower=True) for r, lv, sh in zip(resid, level, shape)])
    s = _point_scale(model["a_mA"], model["b"], level, floor)
    chol = np.linalg.cholesky(discrepancy_correlation(resid.shape[1], model["rho"], model["nugget"], *_edges(model)))
    return solve_triangular(chol, (resid / s).T, lower=True).T


def _calibration_error(z: np.ndarray) -> float:
    z = np.abs(np.ravel(z))
    return abs(float(np.mean(z <= 1)) - math.erf(1 / math.sqrt(2))) + abs(float(np.mean(z <= 2)) - math.erf(2 / math.sqrt(2)))


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

    The residual of the mean of ``n_mc`` common-random-number draws (as in inference) against the
    simulator's current is smooth along the trace (lag-1 correlation ~0.97 for the shipped model):
    modelled as ``N(0, S R S)`` with a level-dependent scale ``s^2 = a^2 + (b level)^2`` and an
    exponential correlation over points plus a nugget (see ``_fit_discrepancy``). Treating the
    points as independent would count one smooth error 256 times and make posteriors far too
    narrow. The scale depends on the current's level, read the same way from the simulator here
    and from the observed data in inference, never on the parameters (a parameter-dependent
    variance would reward parameters with small predicted currents through its log-determinant).
    """
    import jax

    from ._data import state_to_current
    from .train import sample_current

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
    simulated now with the dataset's simulator: (p (n, base), stage index per row, current (n, L)
    mA, applied signal (n, L) V)."""
    from ..data import ParamSpace, PriorSpec

    space = ParamSpace(int(geometry["max_species"]))
    stages = list(meta["stage_names"])
    p_rows, which = [], []
    for j, key in enumerate(keys):
        m = n // len(keys) + (j < n % len(keys))
        p_rows.append(PriorSpec.from_dict(meta["priors"][key]).sample(rng, m, space))
        which += [stages.index(key.split("/")[1])] * m
    p = np.concatenate(p_rows)
    truth, e, _ = _simulate_rows(meta, geometry, task, p)
    return p, which, truth, e


def calibrate_discrepancy_fresh(model, normalizers, meta: dict, geometry: dict, *, n_per_task: int = 128,
                                n_mc: int = 2, n_steps: int = 60, seed: int = 0, progress: bool = False) -> dict:
    """``calibrate_discrepancy`` on fresh rows: parameters drawn from each task's priors (every
    stage the metadata has, in turn), simulated now with the dataset's simulator (so never seen in
    training; no dataset needed)."""
    import jax
    from tqdm.auto import tqdm

    from ._data import compose_core_params
    from .train import sample_current

    if not (isinstance(n_per_task, int) and n_per_task >= 8):
        raise ValueError(f"n_per_task: must be an integer >= 8, got {n_per_task}")
    rng = np.random.default_rng(seed)
    tasks = list(meta["task_names"])
    resid, level, shape, labels = [], [], [], []
    for task in tqdm(tasks, desc="discrepancy", disable=not progress):
        keys = [k for k in meta["priors"] if k.split("/")[0] == task]
        if not keys:
            continue
        p, which, truth, e = fresh_prior_rows(meta, geometry, task, keys, n_per_task, rng)
        core = np.stack([compose_core_params(p[r], tasks.index(task), which[r], geometry) for r in range(p.shape[0])])
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


# =================================================================================================
# Canonical scenarios


def _canonical(space, task_names, stage_names):
    """(name, task, stage, base p) of the canonical scenarios (mid-prior cells, low Ru/Cdl)."""
    import math

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


def _simulate_rows(meta: dict, geometry: dict, task: str, p_base: np.ndarray):
    """Simulator current (mA), applied signal for base vectors of one task, via the dataset's runner."""
    import jax.numpy as jnp

    from .. import sim
    from ..data._generate import _task_runner

    simulator = meta["simulator"]
    run = _task_runner(task, int(geometry["target_len"]), int(geometry["nx"]), int(geometry["max_species"]),
                       float(simulator["area_cm2"]), float(simulator["temperature_K"]),
                       sim.SolverConfig(**simulator["solver_config"]))
    i, e, *_ = run(jnp.asarray(p_base, jnp.float32))
    return np.asarray(i, np.float64), np.asarray(e, np.float64), run


# =================================================================================================
# The scorecard


def _row_metrics(pred: np.ndarray, truth: np.ndarray, e: np.ndarray) -> dict:
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


def evaluate_surrogate(model_dir, data_dir, out_dir, *, n_rows: int = 384, n_draws: int = 8, n_steps: int = 60,
                       seed: int = 0, progress: bool = True) -> dict:
    """The surrogate's scorecard on the test split of ``data_dir``; writes ``scorecard.json``,
    ``scorecard_tasks.png`` (per-task error with baselines), ``scorecard_canonical.png``
    (overlays of canonical scenarios) and ``scorecard_errors.png``; returns the dict.

    Per task (rows drawn evenly over tasks): NRMSE of the mean of ``n_draws`` draws
    (``n_steps`` Euler steps), relative error of the peak |current|, error of the potential at
    the peak (V; meaningful for the voltammetric tasks), and the draws' spread vs the actual
    error (coverage of truth by mean +- 1/2 spread; ratio of spread to error). Baselines in the
    same table: ``mean_trace`` (the task's mean training current) and ``nearest_neighbour``
    (the training row of the same task nearest in normalised parameters).
    """
    import json
    import time
    from pathlib import Path

    import jax
    from tqdm.auto import tqdm

    from .._atomic import write_text
    from ._data import load_rows, state_to_current
    from .train import sample_current

    out = Path(out_dir)
    for name, value, hi in (("rows", n_rows, 100_000), ("draws", n_draws, 1024), ("steps", n_steps, 10_000)):
        if not (isinstance(value, int) and 1 <= value <= hi):
            raise ValueError(f"{name}: must be an integer in [1, {hi}], got {value!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; the scorecard needs a folder")
    model, normalizers, meta, geometry = load_surrogate(model_dir)
    data = load_rows(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = data.manifest["task_names"]
    length = data.e.shape[-1]
    rng = np.random.default_rng(seed)
    train_rows = np.flatnonzero(data.split == 0)
    test_rows = np.flatnonzero(data.split == 2)
    tasks = np.unique(data.task_id[test_rows])
    per = max(1, n_rows // tasks.size)
    picked = np.concatenate([rng.permutation(test_rows[data.task_id[test_rows] == t])[:per] for t in tasks])
    truth_all = state_to_current(data.x[:, -length:].astype(np.float64))
    pm, ps = normalizers[4], normalizers[5]
    bar = tqdm(total=len(tasks) + 2, desc="evaluate", disable=not progress)
    table, rows_out = {}, {}
    draws_all = []
    for t in tasks:
        rows = picked[data.task_id[picked] == t]
        draws = np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(seed + int(t)), data.e[rows, 0],
                                          data.p[rows], n_draws=n_draws, n_steps=n_steps), np.float64)
        draws_all.append(draws)
        truth = truth_all[rows]
        e = data.e[rows, 0].astype(np.float64)
        pred = draws.mean(0)
        m = _row_metrics(pred, truth, e)
        spread = draws.std(0)
        err = np.abs(pred - truth)
        # Baselines.
        tr = train_rows[data.task_id[train_rows] == t]
        mean_trace = truth_all[tr].mean(0)
        base_mean = _row_metrics(np.broadcast_to(mean_trace, truth.shape), truth, e)
        pn_tr = (data.p[tr] - pm) / ps
        pn = (data.p[rows] - pm) / ps
        nn = np.argmin(((pn[:, None, :] - pn_tr[None, :, :]) ** 2).sum(-1), axis=1)
        base_nn = _row_metrics(truth_all[tr[nn]], truth, e)
        table[names[t]] = {
            "n": int(rows.size),
            "surrogate": {k: _summ(v) for k, v in m.items()},
            "mean_trace": {k: _summ(v) for k, v in base_mean.items()},
            "nearest_neighbour": {k: _summ(v) for k, v in base_nn.items()},
            "draw_spread": {"coverage_1sigma": float(np.mean(err <= spread)), "coverage_2sigma": float(np.mean(err <= 2 * spread)),
                            "median_spread_over_error": float(np.median(spread) / max(np.median(err), 1e-12))},
        }
        rows_out[names[t]] = m["nrmse"]
        bar.update()
    all_nrmse = np.concatenate(list(rows_out.values()))
    overall = {"nrmse": _summ(all_nrmse), "n": int(all_nrmse.size)}

    # Canonical scenarios, re-simulated.
    from ..data import ParamSpace

    space = ParamSpace(int(geometry["max_species"]))
    canon = []
    n_tasks, n_stages = len(names), len(data.manifest["stage_names"])
    for name, task, stage, p in _canonical(space, names, data.manifest["stage_names"]):
        i_sim, e_sim, _ = _simulate_rows(meta, geometry, task, p[None])
        core = np.concatenate([p, np.eye(n_tasks)[names.index(task)],
                               np.eye(n_stages)[data.manifest["stage_names"].index(stage)]])
        draws = np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(seed), e_sim, core[None],
                                          n_draws=n_draws, n_steps=n_steps), np.float64)[:, 0]
        m = _row_metrics(draws.mean(0)[None], i_sim, e_sim)
        canon.append({"name": name, "task": task, "nrmse": float(m["nrmse"][0]), "peak_rel": float(m["peak_rel"][0]),
                      "peak_dv": float(m["peak_dv"][0]), "e": e_sim[0], "i_sim": i_sim[0], "draws": draws})
    bar.update()

    # Throughput on one protocol (cv), same batch, same run.
    batch = 64
    rows = picked[:batch]
    t0 = time.perf_counter()
    sample_current(model, normalizers, jax.random.PRNGKey(1), data.e[rows, 0], data.p[rows], n_draws=1, n_steps=n_steps)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.asarray(sample_current(model, normalizers, jax.random.PRNGKey(2), data.e[rows, 0], data.p[rows], n_draws=1,
                              n_steps=n_steps))
    surrogate_tps = batch / (time.perf_counter() - t0)
    cv = names.index("cv") if "cv" in names else int(tasks[0])
    pb = data.p[picked[data.task_id[picked] == cv][:batch], : space.size]
    _, _, run = _simulate_rows(meta, geometry, names[cv], pb)
    t0 = time.perf_counter()
    jax.block_until_ready(run(jax.numpy.asarray(pb, jax.numpy.float32)))
    sim_tps = pb.shape[0] / (time.perf_counter() - t0)
    bar.update()
    bar.close()

    card = {
        "schema_version": SCORECARD_SCHEMA_VERSION,
        "model_dir": str(model_dir), "data_dir": str(data_dir),
        "settings": {"n_rows": int(picked.size), "n_draws": n_draws, "n_steps": n_steps, "seed": seed, "split": "test"},
        "overall": overall, "per_task": table,
        "canonical": [{k: v for k, v in c.items() if k not in ("e", "i_sim", "draws")} for c in canon],
        "throughput": {"surrogate_traces_per_s": surrogate_tps, "simulator_traces_per_s_cv": sim_tps,
                       "surrogate_compile_s": t_first, "batch": batch,
                       "note": "on this machine the simulator is the faster engine for these protocols; the surrogate "
                               "earns its place where simulation is expensive (many couples, fine grids, GPU batches) "
                               "and as a differentiable amortised emulator"},
        "discrepancy": meta.get("discrepancy"),
    }
    write_text(out / "scorecard.json", json.dumps(card, indent=1))
    _plot_scorecard(out, table, canon, rows_out)
    return card


def _plot_scorecard(out, table: dict, canon: list, nrmse_rows: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._atomic import atomic_path

    names = list(table)
    fig, ax = plt.subplots(figsize=(8, 4))
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
    plt.close(fig)

    fig, axes = plt.subplots(2, (len(canon) + 1) // 2, figsize=(4.2 * ((len(canon) + 1) // 2), 7))
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
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
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
    plt.close(fig)
