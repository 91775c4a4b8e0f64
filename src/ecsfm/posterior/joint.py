"""Joint posterior of one redox couple from several measured voltammograms (a scan-rate series).

The likelihood runs the simulator (``ecsfm.sim``) on each trace's own measured potential program
(its vertices and scan rate), all particles x all traces in one compiled, batched call. One
parameter set is shared by every trace (E0, k0, alpha, D, and by default Ru and Cdl); nuisance
parameters named in ``per_trace`` (the baseline offset always, optionally Cdl and Ru) get one
value per trace. This is the route for data outside the surrogate's training waveforms.

* Prior: uniform on a box per parameter (``ecsfm.data.PHYSICAL_PARAMETERS``), in ln units for the
  positive scale parameters, E0 over the traces' potential window, offsets within +/- 10 % of the
  trace's largest |current|; area and concentration, given a relative sd, log-normal around the
  stated values (a voltammogram measures ``A C sqrt(D)``).
* Likelihood: each trace thinned to ``points_per_trace`` points along its potential path;
  Gaussian residuals with one sd per trace, given (``noise``, A) or integrated out under
  p(sigma) ~ 1/sigma; with ``discrepancy_length`` a smooth model error, covariance
  ``sigma^2 (I + kappa^2 R)``, ``R_ij = exp(-|s_i - s_j| / length)`` over the potential path.
* Sampler: ``ecsfm.posterior.run_smc_posterior`` in logit coordinates of the box.

k0 is reported as a lower bound when the posterior's 95 % quantile of ln k0 lies in the top 10 %
of the prior box. Why each choice, with measurements: ``docs/posterior.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from .. import sim
from ._joint_model import (_PARAMS, MECHANISM_H0, MECHANISM_SLOTS, PER_TRACE_CHOICES, SLOW_MECHANISMS, _apply, _build, _joint_loglik, _Layout,
                           points_of)
from .config import SMCPosteriorConfig
from .model_check import model_check
from .smc import run_smc_posterior
from .traces import Trace, trace_from_measurement

__all__ = ["JointConfig", "Trace", "trace_from_measurement", "fit_joint", "JOINT_SCHEMA_VERSION", "PER_TRACE_CHOICES",
           "MECHANISM_SLOTS", "MECHANISM_H0", "SLOW_MECHANISMS"]

JOINT_SCHEMA_VERSION = 1
#: the geometries a joint fit knows (a radius follows from the area; a thin layer's thickness and a
#: rotating disc's rotation rate and viscosity are stated, not fitted)
FIT_GEOMETRIES = ("planar", "disc", "microdisc", "sphere", "hemisphere", "thin-layer", "rotating-disc")
@dataclass(frozen=True)
class JointConfig:
    """``n_particles`` SMC particles; ``points_per_trace`` thinned points per trace;
    ``sim_step`` the simulator's potential step (V; 2 mV changes CV peaks by < 0.1 % from 0.5 mV);
    ``per_trace`` the nuisance parameters fitted per trace (``offset`` always, unless ``known``
    states it: ``{"offset": 0.0}`` A on every trace, for records without a constant background);
    ``tie_d_red`` D_red = D_ox (else D_red free); ``noise`` the current's noise sd (A) or None
    (unknown, integrated out per trace); ``known`` physical values that fix parameters
    (e.g. ``{"alpha": 0.5}``); ``bounds`` overrides of prior boxes in physical units;
    ``discrepancy_length`` (V) the correlation length of the smooth model discrepancy (None: no
    discrepancy, independent residuals); ``area_rsd`` / ``conc_rsd`` the relative standard
    deviations of the stated electrode area and bulk concentration (0: taken as exact; else each
    is a parameter with a log-normal prior around the stated value -- a voltammogram measures
    ``A C sqrt(D)``, so D's interval is only as narrow as A and C are known);
    ``background_degree`` 0-3: a polynomial background in the potential per trace beyond the
    offset (Legendre terms of degree 1..d over the trace's window, each within +/- 20 % of the
    trace's largest |current|: a sloping or curved background the same on both sweeps);
    ``cdl_degree`` 0-3: a potential-dependent double-layer capacitance, Cdl(E) = Cdl (1 + sum_d c_d
    P_d(x)) with Legendre terms over all traces' window and each c_d in [-1, 1] (shared by the
    traces; its charging current flips sign with the sweep and scales with the scan rate);
    ``geometry`` the electrode's, one of ``FIT_GEOMETRIES`` (a sphere's, hemisphere's or rotating
    disc's radius follows from the area, so the area's uncertainty carries into it), with a thin
    layer's ``thickness`` (cm) and a rotating disc's ``omega`` (rad/s) and ``viscosity`` (cm^2/s)
    as stated; ``mechanism`` one of ``MECHANISM_SLOTS`` (E: the couple alone; EC, ECcat, CE add
    their rate constants, 1/s, ln-uniform over ``RATE_BOX``; EC2 its dimerisation constant, 1/(M s),
    over ``DIMERISATION_BOX``, on the general implicit solver: ~200x slower); ``solver_h0`` the simulator grid's first
    spacing (None: the default for E, ``MECHANISM_H0`` with chemistry; give one value to compare
    mechanisms on one discretisation); ``smc`` the
    sampler (its particle count is ``n_particles``); its tempering keeps 80 % ESS per stage (the
    Ru-k0 trade-off makes separated local modes; ``docs/posterior.md``)."""

    n_particles: int = 1024
    points_per_trace: int = 200
    sim_step: float = 2e-3
    per_trace: tuple = ("offset",)
    tie_d_red: bool = True
    noise: float | None = None
    known: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)
    discrepancy_length: float | None = 1.0
    area_rsd: float = 0.0
    conc_rsd: float = 0.0
    background_degree: int = 0
    cdl_degree: int = 0
    geometry: str = "planar"
    thickness: float | None = None
    omega: float | None = None
    viscosity: float = 0.00893
    mechanism: str = "E"
    solver_h0: float | None = None
    smc: SMCPosteriorConfig = SMCPosteriorConfig(n_particles=1024, target_ess_fraction=0.8)

    def __post_init__(self):
        if not (isinstance(self.n_particles, int) and 64 <= self.n_particles <= 65536):
            raise ValueError(f"n_particles: must be an integer in [64, 65536], got {self.n_particles!r}")
        if not (isinstance(self.points_per_trace, int) and 16 <= self.points_per_trace <= 4096):
            raise ValueError(f"points_per_trace: must be an integer in [16, 4096], got {self.points_per_trace!r}")
        if not (math.isfinite(self.sim_step) and 1e-4 <= self.sim_step <= 0.02):
            raise ValueError(f"sim_step: must be in [1e-4, 0.02] V, got {self.sim_step}")
        bad = set(self.per_trace) - set(PER_TRACE_CHOICES)
        if bad:
            raise ValueError(f"per_trace: unknown {sorted(bad)}; allowed {PER_TRACE_CHOICES}")
        if self.noise is not None and not (math.isfinite(self.noise) and self.noise > 0):
            raise ValueError(f"noise: must be > 0 A (or None: unknown), got {self.noise}")
        if self.discrepancy_length is not None and not (math.isfinite(self.discrepancy_length)
                                                        and 1e-3 <= self.discrepancy_length <= 2.0):
            raise ValueError(f"discrepancy_length: must be in [0.001, 2] V (or None), got {self.discrepancy_length}")
        if self.background_degree not in (0, 1, 2, 3):
            raise ValueError(f"background_degree: must be 0, 1, 2 or 3, got {self.background_degree!r}")
        if self.geometry not in FIT_GEOMETRIES:
            raise ValueError(f"geometry: must be one of {', '.join(FIT_GEOMETRIES)}, got {self.geometry!r}")
        needs = {"thin-layer": ("thickness", self.thickness), "rotating-disc": ("omega", self.omega)}
        if self.geometry in needs:
            name, value = needs[self.geometry]
            if value is None or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: a {self.geometry} fit needs it > 0, got {value}")
        if not (math.isfinite(self.viscosity) and self.viscosity > 0):
            raise ValueError(f"viscosity: must be > 0 cm^2/s, got {self.viscosity}")
        if self.mechanism not in MECHANISM_SLOTS:
            raise ValueError(f"mechanism: must be one of {', '.join(MECHANISM_SLOTS)}, got {self.mechanism!r}")
        if self.solver_h0 is not None and not (math.isfinite(self.solver_h0) and 1e-5 <= self.solver_h0 <= 1e-2):
            raise ValueError(f"solver_h0: must be in [1e-5, 1e-2] diffusion lengths, got {self.solver_h0}")
        if self.mechanism == "ECcat" and not self.tie_d_red:
            raise ValueError("mechanism: ECcat needs D_red = D_ox (tie_d_red)")
        if self.cdl_degree not in (0, 1, 2, 3):
            raise ValueError(f"cdl_degree: must be 0, 1, 2 or 3, got {self.cdl_degree!r}")
        for name in ("area_rsd", "conc_rsd"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 0.5):
                raise ValueError(f"{name}: must be a relative standard deviation in [0, 0.5], got {value}")
        fittable = sorted(set(_PARAMS) - {"kappa", "area", "c_ox"})  # offset: A, the same on every trace
        for name, value in self.known.items():
            if name not in fittable:
                raise ValueError(f"known: {name!r} is not a fittable parameter; allowed {fittable}")
            if not math.isfinite(value) or (_PARAMS[name][1] and value <= 0):
                raise ValueError(f"known: {name} must be {'> 0' if _PARAMS[name][1] else 'finite'}, got {value}")
            if name == "alpha" and not 0 < value < 1:
                raise ValueError(f"known: alpha must be in (0, 1), got {value}")
        for name, box in self.bounds.items():
            if name not in _PARAMS or name in ("offset", "area", "c_ox") or len(box) != 2 \
                    or not (math.isfinite(box[0]) and math.isfinite(box[1]) and box[0] < box[1]):
                raise ValueError(f"bounds: {name!r} needs (low, high) with low < high, got {box!r}")
            if _PARAMS[name][1] and box[0] <= 0:
                raise ValueError(f"bounds: {name} is positive: its low bound must be > 0, got {box[0]}")


def _summary(name: str, values: np.ndarray, unit: str) -> dict:
    q = np.quantile(values, [0.025, 0.05, 0.5, 0.95, 0.975])
    return {"mean": float(values.mean()), "sd": float(values.std()), "q025": float(q[0]), "q05": float(q[1]),
            "q50": float(q[2]), "q95": float(q[3]), "q975": float(q[4]), "unit": unit}


def fit_joint(traces, *, area: float, c_ox: float, c_red: float = 0.0, temperature: float = sim.DEFAULT_TEMPERATURE,
              config: JointConfig = JointConfig(), seed: int = 0, n_predictive: int = 128) -> dict:
    """Posterior of one couple's parameters given ``traces`` (a list of ``Trace``).

    ``area`` cm^2, ``c_ox``/``c_red`` bulk concentrations (mM; known: a CV measures C sqrt(D),
    so one of them must be given to identify D; with ``config.area_rsd`` / ``conc_rsd`` > 0 the
    area and the concentrations are parameters around these values, ``c_red / c_ox`` kept).
    Returns ``parameters`` (physical units: mean, sd, 2.5/5/50/95/97.5 % quantiles), ``samples`` (name -> (N,) physical), ``k0_bound`` (the k0
    decision), per-trace ``residual_rms_A`` (over the fitted points), ``predictive`` (per trace:
    potential, observed, mean, 2.5/97.5 % of the simulated current over posterior draws, which
    points were fitted, the noise sd and the discrepancy's sd at the posterior median kappa, A),
    ``model_check`` (``ecsfm.posterior.model_check``), ``prior_boxes`` (name -> [low, high],
    physical; log-normal parameters: +/- 5 sd), the SMC diagnostics and ``warnings``.
    """
    traces = list(traces)
    if not traces:
        raise ValueError("traces: need at least one measured trace")
    for name, value in (("area", area), ("c_ox", c_ox), ("temperature", temperature)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be > 0, got {value}")
    if not (math.isfinite(c_red) and c_red >= 0):
        raise ValueError(f"c_red: must be >= 0 mM, got {c_red}")
    if c_red > 0 and config.mechanism in ("EC", "ECcat", "EC2"):
        raise ValueError(f"c_red: an {config.mechanism} fit needs none in the bulk (its R would react away), got {c_red}")
    layout, forward, obs, (basis, eig) = _build(traces, config, area, c_ox, c_red, temperature)
    noise = jnp.float32(config.noise or 0.0)

    def kappa2(slots):
        if "kappa" not in layout.names:
            return jnp.zeros(slots.shape[0], jnp.float32)
        return jnp.asarray(np.exp(2.0 * slots[:, layout.names.index("kappa")]), jnp.float32)

    def log_likelihood(y):
        slots = layout.to_slots(y)
        ll, _ = _joint_loglik(forward, jnp.asarray(slots, jnp.float32), obs, noise, basis, eig, kappa2(slots))
        ll = np.asarray(ll, np.float64)
        return np.where(np.isfinite(ll), ll, -np.inf)

    smc_cfg = SMCPosteriorConfig(**{**config.smc.__dict__, "n_particles": config.n_particles})
    res = run_smc_posterior(layout.log_prior, log_likelihood, layout.dim, smc_cfg, seed=seed)
    slots = layout.to_slots(res["samples"])
    samples = {}
    for j, name in enumerate(layout.names):
        samples[name] = np.exp(slots[:, j]) if layout.is_log[j] else slots[:, j]
    params = {name: _summary(name, v, _unit(name)) for name, v in samples.items()}
    warnings = []
    if not res["reached_posterior"]:
        warnings.append(f"SMC stopped at temperature {res['temperatures'][-1]:.3g} < 1: not the posterior")
    warnings += _bound_warnings(layout, slots)
    k0_bound = _k0_bound(layout, slots, samples, config, temperature, traces) if "k0" in layout.names else None
    predictive, rms, (cur, takes) = _predictive(traces, slots, config, area, c_ox, c_red, temperature, seed,
                                                n_predictive)
    check = _model_check(traces, layout, obs, basis, eig, slots, config, seed, cur, takes)
    kappa = float(np.median(samples["kappa"])) if "kappa" in samples else 0.0
    for pred, tc in zip(predictive, check["traces"]):  # what the predictive band adds to the parameters' spread
        pred["noise_sd"], pred["discrepancy_sd"] = tc["noise"], kappa * tc["noise"]
    return {"schema_version": JOINT_SCHEMA_VERSION, "engine": "simulator", "parameters": params, "samples": samples,
            "fixed": {k: v for k, v in config.known.items()}, "k0_bound": k0_bound, "residual_rms_A": rms,
            "predictive": predictive, "model_check": check, "traces": [_trace_record(t) for t in traces],
            "prior_boxes": {n: [float(np.exp(lo)) if lg else float(lo), float(np.exp(hi)) if lg else float(hi)]
                            for n, lo, hi, lg in zip(layout.names, layout.lows, layout.highs, layout.is_log)},
            "mechanism": config.mechanism, "log_evidence": float(res["log_evidence"]),
            "log_evidence_se": float(res["log_evidence_se"]), "n_likelihood_evaluations": int(res["n_evaluations"]),
            "sampler": {"temperatures": res["temperatures"].tolist(), "moves": res["moves"].tolist(),
                        "acceptance": res["acceptance"].tolist()},
            "known": {"area_cm2": area, "c_ox_mM": c_ox, "c_red_mM": c_red, "temperature_K": temperature},
            "config": {k: (v if not isinstance(v, SMCPosteriorConfig) else v.__dict__) for k, v in config.__dict__.items()},
            "warnings": warnings}


def _trace_record(t: Trace) -> dict:
    """What the summary says of a trace's program: sweeps by scan rate and turning points, steps by
    their levels and hold durations."""
    if t.is_step:
        return {"label": t.label, "program": "steps", "scan_rate": None, "levels_V": list(t.vertices),
                "holds_s": list(t.holds)}
    return {"label": t.label, "program": "sweeps", "scan_rate": t.scan_rate, "vertices_V": list(t.vertices)}


def _unit(name: str) -> str:
    """The unit of a sampled parameter (``bg<d>[j]`` background terms in A, ``cdl_p<d>`` relative to Cdl)."""
    if name.startswith("bg"):
        return "A"
    if name.startswith("cdl_p"):
        return "relative to Cdl"
    return _PARAMS[name.split("[")[0]][0]


#: quantities a fit is run for: a bound that sets one of them is always worth a warning
_OF_INTEREST = ("e0", "alpha", "d_ox", "d_red")


def _bound_warnings(layout: _Layout, slots: np.ndarray) -> list[str]:
    """A warning per parameter whose prior box, not the data, sets the answer: posterior mass
    piles against one bound (over 3x the prior's 5 % in the outer 5 % of the box on that side, and
    not on both: a parameter the data do not inform, such as alpha of a reversible couple, fills
    its box evenly). For E0, alpha and D either bound counts; for Ru and Cdl only the upper one
    (the data asking for more resistance or capacitance than a cell has: a misfit compensated),
    since their lower bounds stand for "negligible". k0 has its own rule (``_k0_bound``). Plus one
    on D when the area and concentration are taken as exact."""
    warnings = []
    for j, name in enumerate(layout.names):
        if name not in _OF_INTEREST + ("ru", "cdl"):
            continue
        u = (slots[:, j] - layout.lows[j]) / (layout.highs[j] - layout.lows[j])
        lower, upper = np.mean(u < 0.05) > 0.15, np.mean(u > 0.95) > 0.15
        if lower == upper or (lower and name not in _OF_INTEREST):
            continue
        side = "lower" if lower else "upper"
        edge = layout.lows[j] if lower else layout.highs[j]
        shown = math.exp(edge) if layout.is_log[j] else edge
        lo, hi = (math.exp(v) if layout.is_log[j] else v for v in (layout.lows[j], layout.highs[j]))
        warnings.append(f"{name}: the posterior piles against the prior's {side} bound {shown:.3g}: the bound, not the "
                        f"data, sets it (widen it with --prior {name}=LOW:HIGH, now {lo:.3g}:{hi:.3g}; or look at the "
                        "residuals: a misfit can push it there)")
    if "d_ox" in layout.names and not layout.lognormal:
        warnings.append("d_ox: its interval takes the electrode area and the concentration as exact (a voltammogram "
                        "measures A C sqrt(D)); state their relative uncertainties (--area-rsd, --conc-rsd; JointConfig "
                        "area_rsd, conc_rsd) to carry them into D")
    return warnings


def _k0_bound(layout: _Layout, slots: np.ndarray, samples: dict, config: JointConfig, temperature: float,
              traces) -> dict:
    """Whether the data bound k0 from above, its 5 % quantile and the Matsuda-Ayabe parameter
    ``k0 / sqrt(D F v / RT)`` at the fastest scan rate."""
    j = layout.names.index("k0")
    lo, hi = layout.lows[j], layout.highs[j]
    ln_q95 = float(np.quantile(slots[:, j], 0.95))
    d = samples["d_ox"] if "d_ox" in samples else np.full(slots.shape[0], config.known.get("d_ox", 1e-5))
    f_rt = sim.FARADAY / (sim.GAS_CONSTANT * temperature)
    rates = [t.scan_rate for t in traces if not t.is_step]
    lam = samples["k0"] / np.sqrt(d * f_rt * max(rates)) if rates else None
    return {"lower_bound_only": bool(ln_q95 > hi - 0.1 * (hi - lo)), "k0_q05": float(np.quantile(samples["k0"], 0.05)),
            "matsuda_ayabe_lambda_q05_at_fastest": None if lam is None else float(np.quantile(lam, 0.05)),
            "rule": "lower bound only when the posterior 95 % quantile of ln k0 lies in the top 10 % of "
                    "the prior box (the data do not bound k0 from above)"}


def _predictive(traces, slots: np.ndarray, config: JointConfig, area: float, c_ox: float, c_red: float,
                temperature: float, seed: int, n_predictive: int):
    """Posterior predictive at every measured point (up to 4,096 per trace) from ``n_predictive``
    posterior draws, the RMS residual (A) of its mean per trace over the fitted points, and the
    draws themselves with the point indices they are at (``(cur (S, T, n), takes)``)."""
    rng = np.random.default_rng(seed + 1)
    pick = rng.choice(slots.shape[0], size=min(n_predictive, slots.shape[0]), replace=False)
    full_cfg = JointConfig(**{**config.__dict__, "points_per_trace": min(max(t.path.size for t in traces), 4096)})
    _, full_forward, _, _ = _build(traces, full_cfg, area, c_ox, c_red, temperature, with_basis=False,
                                   fitted_only=False)
    cur = np.asarray(_apply(full_forward, jnp.asarray(slots[pick], jnp.float32)), np.float64)
    predictive, rms, takes = [], [], []
    for j, t in enumerate(traces):
        take = points_of(t, full_cfg.points_per_trace, fitted_only=False)
        n = np.unique(take).size  # a trace shorter than the longest repeats its last points
        take, c = take[:n], cur[:, j, :n]
        mean = c.mean(0)
        fitted = np.ones(take.size, bool) if t.fitted is None else t.fitted[take]
        resid = (t.current[take] - mean)[fitted]
        rms.append(float(np.sqrt(np.mean(resid**2))))
        takes.append(take)
        predictive.append({"label": t.label, "scan_rate": t.scan_rate, "potential": t.potential[take], "fitted": fitted,
                           "observed": t.current[take], "mean": mean, "q025": np.quantile(c, 0.025, axis=0),
                           "q975": np.quantile(c, 0.975, axis=0)}
                          | ({"time": t.program_time[take]} if t.is_step else {}))
    return predictive, rms, (cur, takes)


def _model_check(traces, layout: _Layout, obs, basis, eig, slots: np.ndarray, config: JointConfig, seed: int, cur,
                 takes) -> dict:
    """``ecsfm.posterior.model_check`` at the likelihood's points: the predictive's posterior draws
    of the noise-free current there (the nearest predicted point where a long trace was thinned),
    and the inverse residual correlation the likelihood weighed with at the posterior median of
    kappa (the discrepancy term loosens the fit's smooth directions)."""
    draws = []
    for j, t in enumerate(traces):
        want = points_of(t, config.points_per_trace)
        pos = np.clip(np.searchsorted(takes[j], want), 0, takes[j].size - 1)
        left = np.clip(pos - 1, 0, None)
        pos = np.where(np.abs(takes[j][left] - want) < np.abs(takes[j][pos] - want), left, pos)
        draws.append(cur[:, j, pos])
    kappa2 = float(np.median(np.exp(2.0 * slots[:, layout.names.index("kappa")]))) if "kappa" in layout.names else 0.0
    vec, lam = np.asarray(basis, np.float64), np.asarray(eig, np.float64)
    weights = [(v / (1.0 + kappa2 * e)[None, :]) @ v.T for v, e in zip(vec, lam)]
    return model_check(list(np.asarray(obs, np.float64)), draws,
                       noise=config.noise, weights=weights, labels=[t.label for t in traces], seed=seed)
