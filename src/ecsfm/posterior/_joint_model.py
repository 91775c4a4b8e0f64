"""The joint fit's parameter layout and batched forward model (``ecsfm.posterior.joint``):
prior boxes per slot, the simulator run on every trace's own potential program for all particles
in one compiled call, and the likelihood with its smooth discrepancy term."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import sim
from ..data import PHYSICAL_PARAMETERS

PER_TRACE_CHOICES = ("offset", "cdl", "ru")
#: the mechanisms a joint fit knows (``ecsfm.sim``) and the rate constants each adds as shared slots:
#: EC an irreversible follow-up R -> Z; ECcat R -> O (D_red = D_ox); CE Y <=> O before the transfer
#: (the stated c_ox is Y + O); convection: the solution renewed from the bulk across a layer delta (cm)
MECHANISM_SLOTS = {"E": (), "EC": ("k_f",), "ECcat": ("k_cat",), "CE": ("k_f", "k_b"), "convection": ("delta",),
                   "EC2": ("k_dim",)}
#: mechanisms solved by the general implicit solver (``sim.Scheme``): ~200x slower per simulation,
#: so fitted only when asked for by name, never by ``--mechanism auto``
SLOW_MECHANISMS = ("EC2",)
#: EC2's dimerisation rate constant's box, 1/(M s), sampled in ln
DIMERISATION_BOX = (1.0, 1e10)
#: the convective diffusion layer's box, cm (10 um to 1 cm), sampled in ln
DELTA_BOX = (1e-3, 1.0)
#: the rate constants' box, 1/s, sampled in ln: the default grid resolves reaction layers to
#: k T ~ 1e6 with the fit's finer first spacing (``MECHANISM_H0``), a 100 s sweep at 1e4 1/s
RATE_BOX = (1e-4, 1e4)
#: the first grid spacing of a fit with coupled chemistry (5x finer than the default), and of every
#: candidate when mechanisms are compared (one discretisation for all, so none is favoured by it)
MECHANISM_H0 = 2e-4
#: name -> (unit, sampled in ln?, default box in sampled units or None for a data-dependent box),
#: read from the one table of physical parameters
_PARAMS = {name: (p.unit, p.log, p.box_in_fit_units()) for name, p in PHYSICAL_PARAMETERS.items()
           if name != "c_red"} | {k: ("1/s", True, (math.log(RATE_BOX[0]), math.log(RATE_BOX[1])))
                                   for k in ("k_f", "k_b", "k_cat")} | {
    "delta": ("cm", True, (math.log(DELTA_BOX[0]), math.log(DELTA_BOX[1]))),
    "k_dim": ("1/(M s)", True, (math.log(DIMERISATION_BOX[0]), math.log(DIMERISATION_BOX[1])))}
#: the coefficients of a potential-dependent Cdl: Cdl(E) = Cdl (1 + sum_d c_d P_d(x)), x the potential
#: scaled to [-1, 1] over all traces' window, each c_d within +/- this
CDL_SHAPE_SPAN = 1.0
#: parameters with a log-normal prior around a stated value (area, concentration): +/- this many sd
_LOGNORMAL_SPAN = 5.0
#: graded sub-steps per held level of a potential-step trace (``sim.step_sequence``): the current
#: after each jump is resolved from ~1e-5 of the hold on, and a measured point between two of them
#: is interpolated within ~1e-4 of the t^-1/2 transient
HOLD_STEPS = 200
#: E0's prior box reaches this far (V) beyond the potentials of a fit that holds potential steps
STEP_E0_MARGIN = 0.5


# -------------------------------------------------------------------------------------------------
# The parameter layout and the batched forward model


class _Layout:
    """Slot names, boxes (slot units) and which trace a per-trace slot belongs to."""

    def __init__(self, traces, config, area: float = 1.0, c_ox: float = 1.0):
        e_lo = min(float(t.potential.min()) for t in traces)
        e_hi = max(float(t.potential.max()) for t in traces)
        if any(t.is_step for t in traces):  # E0 may lie anywhere around held levels (a step to a plateau)
            e_lo, e_hi = e_lo - STEP_E0_MARGIN, e_hi + STEP_E0_MARGIN
        shared = ["e0", "k0", "alpha", "d_ox"] + ([] if config.tie_d_red else ["d_red"])
        shared += [p for p in ("ru", "cdl") if p not in config.per_trace]
        shared += ["kappa"] if config.discrepancy_length is not None else []
        shared += list(MECHANISM_SLOTS[config.mechanism])
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
            if p == "offset" and "offset" in config.known:  # the same stated offset (A) on every trace
                self.fixed["offset"] = float(config.known["offset"])
                continue
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
        self.cdl_degree = config.cdl_degree
        for d in range(1, config.cdl_degree + 1):
            self.names.append(f"cdl_p{d}")
            self.lows.append(-CDL_SHAPE_SPAN)
            self.highs.append(CDL_SHAPE_SPAN)
            self.is_log.append(False)
        self.window = (e_lo, e_hi)
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
    charging: jax.Array  # (cdl_degree, T, n) V/s: dE/dt times P_1..P_cdl_degree over all traces' window
    c_red_fraction: float = eqx.field(static=True)  # c_red / c_ox as stated (both scale together)
    geometry: str = eqx.field(static=True)  # a name of sim.GEOMETRIES: the radius follows from the area
    electrode: tuple = eqx.field(static=True)  # (thickness cm, omega rad/s, viscosity cm^2/s) as stated
    temperature: float = eqx.field(static=True)
    tie_d_red: bool = eqx.field(static=True)
    mechanism: str = eqx.field(static=True, default="E")  # a key of MECHANISM_SLOTS
    solver_h0: float = eqx.field(static=True, default=sim.SolverConfig().h0)  # the grid's first spacing

    def _item(self, couple, flat):
        """The couple in this fit's mechanism (``sim.EC`` ...), its rate constants from the slots."""
        if self.mechanism == "EC":
            return sim.EC(couple, k_f=jnp.exp(flat("k_f")))
        if self.mechanism == "ECcat":
            return sim.ECcat(couple, k_cat=jnp.exp(flat("k_cat")))
        if self.mechanism == "CE":
            return sim.CE(couple, k_f=jnp.exp(flat("k_f")), k_b=jnp.exp(flat("k_b")))
        if self.mechanism == "convection":
            return sim.Convection(couple, delta=jnp.exp(flat("delta")))
        if self.mechanism == "EC2":
            return sim.EC2(couple, k_dim=jnp.exp(flat("k_dim")))
        return couple

    def __call__(self, slots):
        n_traces = self.durations.shape[0]
        n = slots.shape[0]
        val = {name: self.layout.slot(slots, name, n_traces)
               for name in ("e0", "k0", "alpha", "d_ox", "ru", "cdl", "area", "c_ox") + MECHANISM_SLOTS[self.mechanism]}
        val["d_red"] = val["d_ox"] if self.tie_d_red else self.layout.slot(slots, "d_red", n_traces)
        out = jnp.zeros((n, n_traces, self.index.shape[1]), slots.dtype)
        for template, members in zip(self.templates, self.groups):
            cols = jnp.asarray(members)

            def flat(name, cols=cols):
                return val[name][:, cols].reshape(-1)

            c_ox = jnp.exp(flat("c_ox"))
            couple = sim.Couple(e0=flat("e0"), k0=jnp.exp(flat("k0")), alpha=flat("alpha"), d_ox=jnp.exp(flat("d_ox")),
                                d_red=jnp.exp(flat("d_red")), c_ox=c_ox, c_red=c_ox * self.c_red_fraction)
            area = jnp.exp(flat("area"))
            cell = sim.Cell(area=area, temperature=self.temperature, ru=jnp.exp(flat("ru")), cdl=jnp.exp(flat("cdl")),
                            geometry=_geometry(self.geometry, area, *self.electrode))
            dur = jnp.broadcast_to(self.durations[cols][None, :], (n, len(members))).reshape(-1)
            wf = eqx.tree_at(lambda w: w.duration, template, dur)
            solver = sim.SolverConfig(h0=self.solver_h0)
            cur = sim.simulate(wf, [self._item(couple, flat)], cell, config=solver).current.reshape(n, len(members), -1)
            idx, w = self.index[cols], self.weight[cols]  # (Tg, n_obs)
            at = jnp.take_along_axis(cur, jnp.broadcast_to(idx[None], (n, *idx.shape)), axis=2)
            at1 = jnp.take_along_axis(cur, jnp.broadcast_to(idx[None] + 1, (n, *idx.shape)), axis=2)
            out = out.at[:, cols].set(at * (1 - w) + at1 * w)
        out = out + self.layout.slot(slots, "offset", n_traces)[:, :, None]
        for d in range(self.background.shape[0]):
            out = out + self.layout.slot(slots, f"bg{d + 1}", n_traces)[:, :, None] * self.background[d][None]
        if self.charging.shape[0]:  # Cdl's potential dependence: extra charging current A Cdl dE/dt sum c_d P_d
            scale = jnp.exp(val["area"] + val["cdl"])[:, :, None]
            shape = sum(self.layout.slot(slots, f"cdl_p{d + 1}", n_traces)[:, :, None] * self.charging[d][None]
                        for d in range(self.charging.shape[0]))
            out = out + scale * shape
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


def _geometry(name: str, area, thickness, omega, viscosity):
    """The ``sim`` geometry ``name`` of an electrode of ``area`` (cm^2): a radius follows from it."""
    if name == "planar":
        return sim.Planar()
    if name == "thin-layer":
        return sim.ThinLayer(thickness=thickness)
    if name == "rotating-disc":
        return sim.RotatingDisc(radius=jnp.sqrt(area / math.pi), omega=omega, viscosity=viscosity)
    shape = sim.GEOMETRIES[name]  # a disc, sphere or hemisphere: its area over r^2 is its area at r = 1
    return shape(radius=jnp.sqrt(area / float(shape(radius=1.0).area())))


def points_of(t, n_obs: int, fitted_only: bool = True) -> np.ndarray:
    """(n_obs,) indices of a trace's points a forward model evaluates: ``n_obs`` evenly thinned
    among the fitted points (``fitted_only``) or among all; a short trace repeats points."""
    cand = t.fitted_index if fitted_only else np.arange(t.current.size)
    take = cand[np.unique(np.linspace(0, cand.size - 1, n_obs).round().astype(int))]
    return np.resize(take, n_obs)


def _build(traces, config, area: float, c_ox: float, c_red: float, temperature: float,
           with_basis: bool = True, fitted_only: bool = True):
    layout = _Layout(traces, config, area, c_ox)
    keys, groups, templates, group_of = [], [], [], []
    for j, t in enumerate(traces):
        key = tuple(round(v, 3) for v in t.vertices)
        if t.is_step:  # a step program is simulated in seconds: its holds are part of its shape
            key = ("steps", key, tuple(float(f"{h:.6g}") for h in t.holds))
        if key not in keys:
            keys.append(key)
            groups.append([])
            templates.append(sim.step_sequence(t.vertices, t.holds, n_steps=HOLD_STEPS) if t.is_step
                             else sim.piecewise_sweep(t.vertices, 1.0, step=config.sim_step))
        group_of.append(keys.index(key))
        groups[group_of[-1]].append(j)
    n_obs = config.points_per_trace
    index, weight, obs, basis, eig, xs, charging = [], [], [], [], [], [], []
    e_mid, e_half = 0.5 * (layout.window[1] + layout.window[0]), 0.5 * (layout.window[1] - layout.window[0])
    for j, t in enumerate(traces):
        take = points_of(t, n_obs, fitted_only)
        tau = np.asarray(templates[group_of[j]].grid.tau)
        k = np.clip(np.searchsorted(tau, t.path[take], side="right") - 1, 0, tau.size - 2)
        index.append(k)
        weight.append((t.path[take] - tau[k]) / (tau[k + 1] - tau[k]))
        obs.append(t.current[take])
        e_lo, e_hi = float(t.potential.min()), float(t.potential.max())
        if t.is_step:  # a background over the record's time; no charging while a level is held
            xs.append(2.0 * t.path[take] - 1.0)
            rate = np.zeros(take.size)
        else:
            xs.append((t.potential[take] - 0.5 * (e_lo + e_hi)) / (0.5 * (e_hi - e_lo)))
            rate = t.scan_rate * _sweep_direction(t.vertices, t.path[take])  # dE/dt, V/s
        charging.append(rate[None] * _legendre((t.potential[take] - e_mid) / e_half, config.cdl_degree))
        if not with_basis:
            continue
        if config.discrepancy_length is None:
            basis.append(np.eye(n_obs))
            eig.append(np.zeros(n_obs))
        else:  # exponential correlation over the potential path walked between the points (steps: decades of time)
            walked = (np.log10(np.maximum(t.since_jump[take], 1e-9)) if t.is_step
                      else np.concatenate([[0.0], np.cumsum(np.abs(np.diff(t.potential)))])[take])
            lam, vec = np.linalg.eigh(np.exp(-np.abs(walked[:, None] - walked[None, :]) / config.discrepancy_length))
            basis.append(vec)
            eig.append(np.maximum(lam, 0.0))
    durations = np.asarray([float(templates[group_of[j]].duration) / (1.0 if t.is_step else t.scan_rate)
                            for j, t in enumerate(traces)])
    forward = _JointForward(tuple(templates), tuple(tuple(g) for g in groups), layout,
                            jnp.asarray(durations, jnp.float32), jnp.asarray(np.asarray(index), jnp.int32),
                            jnp.asarray(np.asarray(weight), jnp.float32),
                            jnp.asarray(_legendre(np.asarray(xs), config.background_degree), jnp.float32),
                            jnp.asarray(np.stack(charging, axis=1), jnp.float32),
                            float(c_red) / float(c_ox), config.geometry,
                            (config.thickness, config.omega, float(config.viscosity)),
                            float(temperature), bool(config.tie_d_red), config.mechanism,
                            config.solver_h0 or (MECHANISM_H0 if config.mechanism != "E" else sim.SolverConfig().h0))
    return (layout, forward, jnp.asarray(np.asarray(obs), jnp.float32),
            (jnp.asarray(np.asarray(basis), jnp.float32), jnp.asarray(np.asarray(eig), jnp.float32)) if with_basis
            else None)


def _legendre(x: np.ndarray, degree: int) -> np.ndarray:
    """(degree, *x.shape): Legendre polynomials P_1..P_degree of x in [-1, 1]."""
    return np.stack([np.polynomial.legendre.legval(x, [0] * d + [1]) for d in range(1, degree + 1)]) if degree \
        else np.zeros((0, *x.shape))


def _sweep_direction(vertices, path: np.ndarray) -> np.ndarray:
    """(n,) +1 where the potential rises, -1 where it falls, at positions ``path`` (the fraction of
    the program walked, 0..1) of the piecewise-linear program through ``vertices``."""
    v = np.asarray(vertices, np.float64)
    ends = np.cumsum(np.abs(np.diff(v)))
    ends = ends / ends[-1]
    seg = np.clip(np.searchsorted(ends, path, side="right"), 0, v.size - 2)
    return np.sign(v[seg + 1] - v[seg])
