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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import sim
from ..data import PHYSICAL_PARAMETERS
from .config import SMCPosteriorConfig
from .model_check import model_check
from .smc import run_smc_posterior
from .traces import Trace, trace_from_measurement

__all__ = ["JointConfig", "Trace", "trace_from_measurement", "fit_joint", "JOINT_SCHEMA_VERSION", "PER_TRACE_CHOICES"]

JOINT_SCHEMA_VERSION = 1
PER_TRACE_CHOICES = ("offset", "cdl", "ru")
#: name -> (unit, sampled in ln?, default box in sampled units or None for a data-dependent box),
#: read from the one table of physical parameters
_PARAMS = {name: (p.unit, p.log, p.box_in_fit_units()) for name, p in PHYSICAL_PARAMETERS.items()
           if name != "c_red"}
#: parameters with a log-normal prior around a stated value (area, concentration): +/- this many sd
_LOGNORMAL_SPAN = 5.0


@dataclass(frozen=True)
class JointConfig:
    """``n_particles`` SMC particles; ``points_per_trace`` thinned points per trace;
    ``sim_step`` the simulator's potential step (V; 2 mV changes CV peaks by < 0.1 % from 0.5 mV);
    ``per_trace`` the nuisance parameters fitted per trace (``offset`` always);
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
    trace's largest |current|: a sloping or curved background the same on both sweeps); ``smc`` the
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
        for name in ("area_rsd", "conc_rsd"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 0.5):
                raise ValueError(f"{name}: must be a relative standard deviation in [0, 0.5], got {value}")
        fittable = sorted(set(_PARAMS) - {"offset", "kappa", "area", "c_ox"})
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


# -------------------------------------------------------------------------------------------------
# The parameter layout and the batched forward model


class _Layout:
    """Slot names, boxes (slot units) and which trace a per-trace slot belongs to."""

    def __init__(self, traces, config: JointConfig, area: float = 1.0, c_ox: float = 1.0):
        e_lo = min(float(t.potential.min()) for t in traces)
        e_hi = max(float(t.potential.max()) for t in traces)
        shared = ["e0", "k0", "alpha", "d_ox"] + ([] if config.tie_d_red else ["d_red"])
        shared += [p for p in ("ru", "cdl") if p not in config.per_trace]
        shared += ["kappa"] if config.discrepancy_length is not None else []
        self.names, self.lows, self.highs, self.is_log, self.fixed = [], [], [], [], {}
        self.lognormal = {}  # name -> (ln of the stated value, sd of ln)
        for name, value, rsd in (("area", area, config.area_rsd), ("c_ox", c_ox, config.conc_rsd)):
            if rsd > 0:
                sd = math.log1p(rsd)
                self.lognormal[name] = (math.log(value), sd)
                shared.append(name)
            else:
                self.fixed[name] = math.log(value)
        for name in shared:
            unit, is_log, box = _PARAMS[name]
            if name in config.bounds:
                lo, hi = config.bounds[name]
                box = (math.log(lo), math.log(hi)) if is_log else (float(lo), float(hi))
            elif name in self.lognormal:
                centre, sd = self.lognormal[name]
                box = (centre - _LOGNORMAL_SPAN * sd, centre + _LOGNORMAL_SPAN * sd)
            elif box is None:  # e0: the window of the traces
                box = (e_lo, e_hi)
            if name in config.known:
                value = config.known[name]
                self.fixed[name] = math.log(value) if is_log else float(value)
                continue
            self.names.append(name)
            self.lows.append(box[0])
            self.highs.append(box[1])
            self.is_log.append(is_log)
        self.per_trace = [p for p in PER_TRACE_CHOICES if p in config.per_trace or p == "offset"]
        for p in self.per_trace:
            for j, t in enumerate(traces):
                if p == "offset":
                    span = 0.1 * float(np.max(np.abs(t.current)))
                    box = (-span, span)
                else:
                    box = _PARAMS[p][2]
                self.names.append(f"{p}[{j}]")
                self.lows.append(box[0])
                self.highs.append(box[1])
                self.is_log.append(_PARAMS[p][1])
        self.background_degree = config.background_degree
        for d in range(1, config.background_degree + 1):
            for j, t in enumerate(traces):
                span = 0.2 * float(np.max(np.abs(t.current)))
                self.names.append(f"bg{d}[{j}]")
                self.lows.append(-span)
                self.highs.append(span)
                self.is_log.append(False)
        self.lows, self.highs = np.asarray(self.lows), np.asarray(self.highs)
        self.is_log = np.asarray(self.is_log, bool)
        self.dim = len(self.names)

    def to_slots(self, y: np.ndarray) -> np.ndarray:
        return self.lows + (self.highs - self.lows) / (1.0 + np.exp(-np.clip(y, -60, 60)))

    def log_prior(self, y: np.ndarray) -> np.ndarray:
        """Log prior density in y (n,): uniform on each box is the logistic density in the logit
        coordinate; a log-normal parameter (area, concentration) adds its normal density in ln
        units times the box width (truncated at +/- 5 sd: mass 6e-7 left out)."""
        out = np.sum(-np.abs(y) - 2.0 * np.log1p(np.exp(-np.abs(y))), axis=1)
        if self.lognormal:
            slots = self.to_slots(y)
            for name, (centre, sd) in self.lognormal.items():
                j = self.names.index(name)
                out = out + (math.log(self.highs[j] - self.lows[j]) - 0.5 * math.log(2 * math.pi) - math.log(sd)
                             - 0.5 * ((slots[:, j] - centre) / sd) ** 2)
        return out

    def slot(self, slots, name: str, n_traces: int):
        """(N, T) values of a parameter for every trace (shared, per-trace or fixed)."""
        if name in self.fixed:
            return jnp.full((slots.shape[0], n_traces), self.fixed[name], slots.dtype)
        if name in self.names:
            return jnp.broadcast_to(slots[:, self.names.index(name)][:, None], (slots.shape[0], n_traces))
        cols = [self.names.index(f"{name}[{j}]") for j in range(n_traces)]
        return slots[:, jnp.asarray(cols)]


class _JointForward(eqx.Module):
    """slots (N, P) -> currents (N, T, n) A at each trace's thinned points (one compiled call)."""

    templates: tuple  # per group: a Waveform whose duration is the path length at 1 V/s
    groups: tuple = eqx.field(static=True)  # per group: trace indices
    layout: _Layout = eqx.field(static=True)
    durations: jax.Array  # (T,) s
    index: jax.Array  # (T, n) int: left grid point of each observed point in its group's grid
    weight: jax.Array  # (T, n)
    background: jax.Array  # (degree, T, n): Legendre P_1..P_degree of the potential over each trace's window
    c_red_fraction: float = eqx.field(static=True)  # c_red / c_ox as stated (both scale together)
    temperature: float = eqx.field(static=True)
    tie_d_red: bool = eqx.field(static=True)

    def __call__(self, slots):
        n_traces = self.durations.shape[0]
        n = slots.shape[0]
        val = {name: self.layout.slot(slots, name, n_traces)
               for name in ("e0", "k0", "alpha", "d_ox", "ru", "cdl", "area", "c_ox")}
        val["d_red"] = val["d_ox"] if self.tie_d_red else self.layout.slot(slots, "d_red", n_traces)
        out = jnp.zeros((n, n_traces, self.index.shape[1]), slots.dtype)
        for template, members in zip(self.templates, self.groups):
            cols = jnp.asarray(members)

            def flat(name, cols=cols):
                return val[name][:, cols].reshape(-1)

            c_ox = jnp.exp(flat("c_ox"))
            couple = sim.Couple(e0=flat("e0"), k0=jnp.exp(flat("k0")), alpha=flat("alpha"), d_ox=jnp.exp(flat("d_ox")),
                                d_red=jnp.exp(flat("d_red")), c_ox=c_ox, c_red=c_ox * self.c_red_fraction)
            cell = sim.Cell(area=jnp.exp(flat("area")), temperature=self.temperature, ru=jnp.exp(flat("ru")),
                            cdl=jnp.exp(flat("cdl")))
            dur = jnp.broadcast_to(self.durations[cols][None, :], (n, len(members))).reshape(-1)
            wf = eqx.tree_at(lambda w: w.duration, template, dur)
            cur = sim.simulate(wf, [couple], cell).current.reshape(n, len(members), -1)
            idx, w = self.index[cols], self.weight[cols]  # (Tg, n_obs)
            at = jnp.take_along_axis(cur, jnp.broadcast_to(idx[None], (n, *idx.shape)), axis=2)
            at1 = jnp.take_along_axis(cur, jnp.broadcast_to(idx[None] + 1, (n, *idx.shape)), axis=2)
            out = out.at[:, cols].set(at * (1 - w) + at1 * w)
        out = out + self.layout.slot(slots, "offset", n_traces)[:, :, None]
        for d in range(self.background.shape[0]):
            out = out + self.layout.slot(slots, f"bg{d + 1}", n_traces)[:, :, None] * self.background[d][None]
        return out


@eqx.filter_jit
def _apply(forward, slots):
    """``forward(slots)``, compiled once per forward model."""
    return forward(slots)


@eqx.filter_jit
def _joint_loglik(forward, slots, obs, noise, basis, eig, kappa2):
    """(N,) log-likelihood, (N, T) per trace; currents compared in uA. Residual covariance
    ``sigma^2 (I + kappa^2 R)`` per trace with ``R = basis diag(eig) basis^T`` (``eig = 0``: no
    discrepancy); ``kappa2`` (N,)."""
    r = (obs[None] - forward(slots)) * 1e6
    n = obs.shape[1]
    rq = jnp.einsum("tnk,ptn->ptk", basis, r)  # residual in R's eigenbasis
    scale = 1.0 + kappa2[:, None, None] * eig[None]  # (N, T, n)
    quad = jnp.sum(rq**2 / scale, axis=2)
    logdet = jnp.sum(jnp.log(scale), axis=2)
    per = jnp.where(noise > 0, -0.5 * quad / (noise * 1e6) ** 2 - n * jnp.log(noise * 1e6),
                    -0.5 * n * jnp.log(quad)) - 0.5 * logdet
    return per.sum(1), per


def _build(traces, config: JointConfig, area: float, c_ox: float, c_red: float, temperature: float,
           with_basis: bool = True):
    layout = _Layout(traces, config, area, c_ox)
    keys, groups, templates, group_of = [], [], [], []
    for j, t in enumerate(traces):
        key = tuple(round(v, 3) for v in t.vertices)
        if key not in keys:
            keys.append(key)
            groups.append([])
            templates.append(sim.piecewise_sweep(t.vertices, 1.0, step=config.sim_step))
        group_of.append(keys.index(key))
        groups[group_of[-1]].append(j)
    n_obs = config.points_per_trace
    index, weight, obs, basis, eig, xs = [], [], [], [], [], []
    for j, t in enumerate(traces):
        cand = t.fitted_index  # the points inside the window and sweeps chosen
        take = cand[np.unique(np.linspace(0, cand.size - 1, n_obs).round().astype(int))]
        take = np.resize(take, n_obs)  # a short trace repeats points (never for >= n_obs points)
        tau = np.asarray(templates[group_of[j]].grid.tau)
        k = np.clip(np.searchsorted(tau, t.path[take], side="right") - 1, 0, tau.size - 2)
        index.append(k)
        weight.append((t.path[take] - tau[k]) / (tau[k + 1] - tau[k]))
        obs.append(t.current[take])
        e_lo, e_hi = float(t.potential.min()), float(t.potential.max())
        xs.append((t.potential[take] - 0.5 * (e_lo + e_hi)) / (0.5 * (e_hi - e_lo)))
        if not with_basis:
            continue
        if config.discrepancy_length is None:
            basis.append(np.eye(n_obs))
            eig.append(np.zeros(n_obs))
        else:  # exponential correlation over the potential path walked between the points
            walked = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(t.potential)))])[take]
            lam, vec = np.linalg.eigh(np.exp(-np.abs(walked[:, None] - walked[None, :]) / config.discrepancy_length))
            basis.append(vec)
            eig.append(np.maximum(lam, 0.0))
    durations = np.asarray([float(templates[group_of[j]].duration) / t.scan_rate for j, t in enumerate(traces)])
    forward = _JointForward(tuple(templates), tuple(tuple(g) for g in groups), layout,
                            jnp.asarray(durations, jnp.float32), jnp.asarray(np.asarray(index), jnp.int32),
                            jnp.asarray(np.asarray(weight), jnp.float32),
                            jnp.asarray(_legendre(np.asarray(xs), config.background_degree), jnp.float32),
                            float(c_red) / float(c_ox),
                            float(temperature), bool(config.tie_d_red))
    return (layout, forward, jnp.asarray(np.asarray(obs), jnp.float32),
            (jnp.asarray(np.asarray(basis), jnp.float32), jnp.asarray(np.asarray(eig), jnp.float32)) if with_basis
            else None)


def _legendre(x: np.ndarray, degree: int) -> np.ndarray:
    """(degree, *x.shape): Legendre polynomials P_1..P_degree of x in [-1, 1]."""
    return np.stack([np.polynomial.legendre.legval(x, [0] * d + [1]) for d in range(1, degree + 1)]) if degree \
        else np.zeros((0, *x.shape))


def _summary(name: str, values: np.ndarray, unit: str) -> dict:
    q = np.quantile(values, [0.025, 0.05, 0.5, 0.95, 0.975])
    return {"mean": float(values.mean()), "sd": float(values.std()), "q025": float(q[0]), "q05": float(q[1]),
            "q50": float(q[2]), "q95": float(q[3]), "q975": float(q[4]), "unit": unit}


def fit_joint(traces, *, area: float, c_ox: float, c_red: float = 0.0, temperature: float = sim.DEFAULT_TEMPERATURE,
              config: JointConfig = JointConfig(), seed: int = 0, n_predictive: int = 128) -> dict:
    """Posterior of one couple's parameters given ``traces`` (a list of ``Trace``).

    ``area`` cm^2, ``c_ox``/``c_red`` bulk concentrations (mM; known: a CV measures C sqrt(D),
    so one of them must be given to identify D; with ``config.area_rsd`` / ``conc_rsd`` > 0 the
    area and the concentrations are parameters around these values, ``c_red / c_ox`` kept). Returns ``parameters`` (physical units: mean, sd,
    2.5/5/50/95/97.5 % quantiles), ``samples`` (name -> (N,) physical), ``k0_bound`` (the k0
    decision), per-trace ``residual_rms_A`` (over the fitted points), ``predictive`` (per trace:
    potential, observed, mean, 2.5/97.5 % of the simulated current over posterior draws, which
    points were fitted, the noise sd and the discrepancy's sd at the posterior median kappa, A), the SMC diagnostics and
    ``warnings``.
    """
    traces = list(traces)
    if not traces:
        raise ValueError("traces: need at least one measured trace")
    for name, value in (("area", area), ("c_ox", c_ox), ("temperature", temperature)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be > 0, got {value}")
    if not (math.isfinite(c_red) and c_red >= 0):
        raise ValueError(f"c_red: must be >= 0 mM, got {c_red}")
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
    params = {name: _summary(name, v, _PARAMS[name.split("[")[0]][0] if not name.startswith("bg") else "A")
              for name, v in samples.items()}
    warnings = []
    if not res["reached_posterior"]:
        warnings.append(f"SMC stopped at temperature {res['temperatures'][-1]:.3g} < 1: not the posterior")
    warnings += _bound_warnings(layout, slots)
    k0_bound = _k0_bound(layout, slots, samples, config, temperature, traces) if "k0" in layout.names else None
    predictive, rms = _predictive(traces, slots, config, area, c_ox, c_red, temperature, seed, n_predictive)
    check = _model_check(traces, layout, forward, obs, basis, eig, slots, config, seed, n_predictive)
    kappa = float(np.median(samples["kappa"])) if "kappa" in samples else 0.0
    for pred, tc in zip(predictive, check["traces"]):  # what the predictive band adds to the parameters' spread
        pred["noise_sd"], pred["discrepancy_sd"] = tc["noise"], kappa * tc["noise"]
    return {"schema_version": JOINT_SCHEMA_VERSION, "engine": "simulator", "parameters": params, "samples": samples,
            "fixed": {k: v for k, v in config.known.items()}, "k0_bound": k0_bound, "residual_rms_A": rms,
            "predictive": predictive, "model_check": check, "traces": [{"label": t.label, "scan_rate": t.scan_rate,
                                                   "vertices_V": list(t.vertices)} for t in traces],
            "log_evidence": float(res["log_evidence"]), "n_likelihood_evaluations": int(res["n_evaluations"]),
            "sampler": {"temperatures": res["temperatures"].tolist(), "moves": res["moves"].tolist(),
                        "acceptance": res["acceptance"].tolist()},
            "known": {"area_cm2": area, "c_ox_mM": c_ox, "c_red_mM": c_red, "temperature_K": temperature},
            "config": {k: (v if not isinstance(v, SMCPosteriorConfig) else v.__dict__) for k, v in config.__dict__.items()},
            "warnings": warnings}


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
    v_max = max(t.scan_rate for t in traces)
    lam = samples["k0"] / np.sqrt(d * f_rt * v_max)
    return {"lower_bound_only": bool(ln_q95 > hi - 0.1 * (hi - lo)), "k0_q05": float(np.quantile(samples["k0"], 0.05)),
            "matsuda_ayabe_lambda_q05_at_fastest": float(np.quantile(lam, 0.05)),
            "rule": "lower bound only when the posterior 95 % quantile of ln k0 lies in the top 10 % of "
                    "the prior box (the data do not bound k0 from above)"}


def _predictive(traces, slots: np.ndarray, config: JointConfig, area: float, c_ox: float, c_red: float,
                temperature: float, seed: int, n_predictive: int) -> tuple[list[dict], list[float]]:
    """Posterior predictive at every measured point from ``n_predictive`` posterior draws, and the
    RMS residual (A) of its mean per trace."""
    rng = np.random.default_rng(seed + 1)
    pick = rng.choice(slots.shape[0], size=min(n_predictive, slots.shape[0]), replace=False)
    full_cfg = JointConfig(**{**config.__dict__, "points_per_trace": min(max(t.path.size for t in traces), 4096)})
    _, full_forward, _, _ = _build(traces, full_cfg, area, c_ox, c_red, temperature, with_basis=False)
    cur = np.asarray(_apply(full_forward, jnp.asarray(slots[pick], jnp.float32)), np.float64)
    predictive, rms = [], []
    for j, t in enumerate(traces):
        take = np.unique(np.linspace(0, t.path.size - 1, full_cfg.points_per_trace).round().astype(int))
        c = cur[:, j, : take.size]
        mean = c.mean(0)
        fitted = np.ones(take.size, bool) if t.fitted is None else t.fitted[take]
        resid = (t.current[take] - mean)[fitted]
        rms.append(float(np.sqrt(np.mean(resid**2))))
        predictive.append({"label": t.label, "scan_rate": t.scan_rate, "potential": t.potential[take], "fitted": fitted,
                           "observed": t.current[take], "mean": mean, "q025": np.quantile(c, 0.025, axis=0),
                           "q975": np.quantile(c, 0.975, axis=0)})
    return predictive, rms


def _model_check(traces, layout: _Layout, forward, obs, basis, eig, slots: np.ndarray, config: JointConfig, seed: int,
                 n_draws: int) -> dict:
    """``ecsfm.posterior.model_check`` at the likelihood's points: ``n_draws`` posterior draws of
    the noise-free current, and the inverse residual correlation the likelihood weighed with at
    the posterior median of kappa (the discrepancy term loosens the fit's smooth directions)."""
    rng = np.random.default_rng(seed + 2)
    pick = rng.choice(slots.shape[0], size=min(n_draws, slots.shape[0]), replace=False)
    draws = np.asarray(_apply(forward, jnp.asarray(slots[pick], jnp.float32)), np.float64)
    kappa2 = float(np.median(np.exp(2.0 * slots[:, layout.names.index("kappa")]))) if "kappa" in layout.names else 0.0
    vec, lam = np.asarray(basis, np.float64), np.asarray(eig, np.float64)
    weights = [(v / (1.0 + kappa2 * e)[None, :]) @ v.T for v, e in zip(vec, lam)]
    return model_check(list(np.asarray(obs, np.float64)), [draws[:, j] for j in range(len(traces))],
                       noise=config.noise, weights=weights, labels=[t.label for t in traces], seed=seed)
