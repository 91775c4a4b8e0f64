"""The time loop for mechanisms (``_mechanisms``): channels, transfers and surface couples.

Planar semi-infinite diffusion, any waveform, Ru and Cdl. Per step, as in ``_solver``:

1. Each channel's surface deviation is ``u = a + beta1 q`` (``a``: what the history leaves, from the
   modes; ``q``: this step's flux). The channel's tables are the planar propagator's with every mode
   rate shifted by its decay, ``mu -> mu - kappa T``, computed per channel and batch member in JAX
   before the loop (so the rate constants can be traced, batched and differentiated).
2. Each transfer's reduced and oxidised surface concentrations are fixed combinations of channel
   deviations, so both are linear in the transfer rates ``r``; Butler-Volmer is linear in them at a
   given interface potential, which leaves ``M r = rhs`` with ``M`` 1x1 or 2x2 per mechanism
   (solved in closed form; a general solve for longer lists).
3. A surface couple relaxes exponentially over the step towards the coverage Nernst gives
   (exact at one interface potential); its current is the charge passed over the step / the step.
4. With Ru, the interface potential solves ``E = E_app - Ru i(E)`` by safeguarded Newton
   (``_ohmic.solve_ir``); ``i(E)`` is non-decreasing in E, as there.

The reaction layer ``sqrt(D / k)`` must be resolved by the grid: the first spacing ``h0`` (in
diffusion lengths of the whole run) should be below ~``0.3 / sqrt(k T)``. ``problems()`` of the
result says so when it is not (``reaction_layer`` below); the solution stays stable and non-negative
there but loses accuracy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._finite import dawson
from ._grid import SolverConfig, _operator, jump_weights, since_jump
from ._mechanisms import Surface, channels
from ._physics import _concrete
from ._ohmic import solve_ir
from ._units import FARADAY, GAS_CONSTANT, MOL_PER_CM3_PER_MM

__all__ = ["assemble", "simulate_network", "simulate_mechanisms", "step_kinds"]


def _block(parts: list[list[list]], rows: list[int], cols: list[int]) -> list[list]:
    """Block-diagonal nested lists from per-item nested lists (zeros elsewhere)."""
    out = [[0.0] * sum(cols) for _ in range(sum(rows))]
    r0 = c0 = 0
    for part, nr, nc in zip(parts, rows, cols):
        for i in range(nr):
            for j in range(nc):
                out[r0 + i][c0 + j] = part[i][j]
        r0, c0 = r0 + nr, c0 + nc
    return out


def assemble(items) -> tuple[dict, dict]:
    """The items (couples, diffusing mechanisms, ``Surface`` s) as one network: ``net`` with
    ``kappa``, ``d`` (C, ...), the transfers' ``e0 k0 alpha n d_ox d_red red0 ox0`` and ``scale`` (their
    couples' largest bulk concentration) (J, ...), ``flux`` (C, J, ...),
    ``red``, ``ox`` (J, C, ...); ``surf`` with ``e0 k0 alpha gamma theta_ox n interaction`` (Ss, ...) (empty
    dicts when there is none of a kind). Leading axis first, batch dimensions after."""
    diffusing = [channels(x) for x in items if not isinstance(x, Surface)]
    surfaces = [x for x in items if isinstance(x, Surface)]
    net, surf = {}, {}
    if diffusing:
        nc = [len(p["kappa"]) for p in diffusing]
        nj = [len(p["couples"]) for p in diffusing]
        couples = [c for p in diffusing for c in p["couples"]]
        cat = lambda key: [v for p in diffusing for v in p[key]]  # noqa: E731
        net = dict(kappa=cat("kappa"), d=cat("d"), red0=cat("red0"), ox0=cat("ox0"),
                   flux=_block([p["flux"] for p in diffusing], nc, nj),
                   red=_block([p["red"] for p in diffusing], nj, nc), ox=_block([p["ox"] for p in diffusing], nj, nc),
                   scale=[jnp.maximum(c.c_ox, c.c_red) for c in couples],
                   **{k: [getattr(c, k) for c in couples] for k in ("e0", "k0", "alpha", "n", "d_ox", "d_red",
                                                                     "reorganization")})
    if surfaces:
        surf = {k: [getattr(s, k) for s in surfaces] for k in ("e0", "k0", "alpha", "gamma", "theta_ox", "n",
                                                                "interaction")}
    return net, surf


def step_kinds(grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct step kinds of a time grid as in ``_grid.propagator``: (step size, time since the last
    jump or -1) per kind, (U,) each, and each step's kind (N,)."""
    since = since_jump(grid)
    keys = np.stack([[float(f"{s:.12g}") for s in grid.steps], [float(f"{s:.12g}") for s in since]], axis=1)
    uniq, index = np.unique(keys, axis=0, return_inverse=True)
    return uniq[:, 0], uniq[:, 1], index.reshape(-1).astype(np.int32)


def _tables(config: SolverConfig, grid, kappa_t, dtype) -> dict:
    """Step tables of channels decaying at ``kappa_t`` (C, B) (units of the run's duration):
    ``decay, phi0_v, phi1_v, w_next`` (U, C, m, B) over the kept modes and ``beta0, beta1``
    (U, C, B) over all of them; ``rows`` (N,), ``to_nodes`` (M, m)."""
    x = config.nodes()
    mu, q, w = _operator(x)
    v = q[0, :] / np.sqrt(w[0])
    h, since, rows = step_kinds(grid)
    keep = np.exp(h[:, None] * mu[None, :]).max(axis=0) > config.mode_tolerance
    lam = jnp.asarray(-mu, dtype)[None, None, :, None] + kappa_t[None, :, None, :]  # (1, C, M, B) > 0
    hh = jnp.asarray(h, dtype)[:, None, None, None]
    z = -lam * hh
    decay = jnp.exp(z)
    phi = -jnp.expm1(z) / lam
    small = jnp.abs(z) < 1e-3
    zs = jnp.where(small, 1.0, z)
    phi1 = hh * jnp.where(small, 0.5 + z / 6.0 + z**2 / 24.0, (jnp.expm1(zs) - zs) / zs**2)
    shaped = since >= 0
    if np.any(shaped):
        tau = jnp.asarray(np.where(shaped, since, 1.0), dtype)[:, None, None, None]
        p0, p1 = jump_weights(tau, hh, lam, phi, xp=jnp, dawsn=dawson)
        sel = jnp.asarray(shaped)[:, None, None, None]
        phi1 = jnp.where(sel, p1, phi1)
        phi = jnp.where(sel, p0 + p1, phi)
    phi0 = phi - phi1
    v2 = jnp.asarray(v * v, dtype)[None, None, :, None]
    vk = jnp.asarray(v[keep], dtype)[None, None, :, None]
    k = np.flatnonzero(keep)
    return dict(decay=decay[:, :, k], phi0_v=phi0[:, :, k] * vk, phi1_v=phi1[:, :, k] * vk,
                w_next=decay[:, :, k] * vk, beta0=jnp.sum(phi0 * v2, axis=2), beta1=jnp.sum(phi1 * v2, axis=2),
                rows=rows, to_nodes=jnp.asarray((q / np.sqrt(w)[:, None])[:, keep], dtype), x=x)


def _solve(mat, rhs):
    """``mat r = rhs`` per batch member: mat (J, J, B), rhs (J, B)."""
    n = rhs.shape[0]
    if n == 1:
        return rhs / mat[0]
    if n == 2:
        det = mat[0, 0] * mat[1, 1] - mat[0, 1] * mat[1, 0]
        return jnp.stack([mat[1, 1] * rhs[0] - mat[0, 1] * rhs[1], mat[0, 0] * rhs[1] - mat[1, 0] * rhs[0]]) / det
    sol = jnp.linalg.solve(jnp.moveaxis(mat, -1, 0), jnp.moveaxis(rhs, -1, 0)[..., None])[..., 0]
    return jnp.moveaxis(sol, 0, -1)


#: Gauss-Hermite nodes and weights for the Marcus-Hush-Chidsey integral
_HERMITE = np.polynomial.hermite.hermgauss(24)


def _mhc_log_k(c, big_l):
    """``ln int exp(-(x - c)^2 / 4L) / (1 + exp(x)) dx`` (Chidsey's integral, energies in kT):
    the integrand is log-concave, so its peak is found by Newton's method and the integral by
    24-point Gauss-Hermite quadrature about it, scaled to its curvature (agrees with adaptive
    quadrature to ~1e-5 in the log for L from 0.3 to 2000)."""
    x = jnp.minimum(c, 0.0)
    for _ in range(12):
        sig = jax.nn.sigmoid(x)
        x = x - (-(x - c) / (2.0 * big_l) - sig) / (-1.0 / (2.0 * big_l) - sig * (1.0 - sig))
    sig = jax.nn.sigmoid(x)
    s = 1.0 / jnp.sqrt(1.0 / (2.0 * big_l) + sig * (1.0 - sig))
    u, w = (jnp.asarray(v, c.dtype) for v in _HERMITE)
    xs = x[..., None] + jnp.sqrt(2.0) * s[..., None] * u
    log_i = -((xs - c[..., None]) ** 2) / (4.0 * big_l[..., None]) - jnp.logaddexp(0.0, xs) + u * u
    return jnp.log(jnp.sqrt(2.0) * s) + jax.scipy.special.logsumexp(log_i, b=w, axis=-1)


def _log_rates(eta, alpha, big_l, ref):
    """``ln(k_ox / k0)`` and ``ln(k_red / k0)`` at ``eta = f (E - e0)``: Butler-Volmer's
    ``(1-a) eta`` and ``-a eta``; with ``ref`` (None unless some transfer has a finite
    reorganisation energy: ``_mhc_log_k(L, L)``), Marcus-Hush-Chidsey's where ``big_l`` (lambda F /
    RT) is finite: ``k_red(eta) / k0 = K(L + eta) / K(L)`` and ``k_ox(eta) = k_red(-eta)``."""
    bv = ((1.0 - alpha) * eta, -alpha * eta)
    if ref is None:
        return bv
    finite = jnp.isfinite(big_l)
    lam = jnp.where(finite, big_l, 1.0)
    return (jnp.where(finite, _mhc_log_k(lam - eta, lam) - ref, bv[0]),
            jnp.where(finite, _mhc_log_k(lam + eta, lam) - ref, bv[1]))


def _mhc_reference(net: dict, f):
    """``_mhc_log_k(L, L)`` per transfer (L = lambda F / RT; 1 where Butler-Volmer), once per run."""
    big_l = net["reorganization"] * f / net["n"]
    lam = jnp.where(jnp.isfinite(big_l), big_l, 1.0)
    return _mhc_log_k(lam, lam)


def _exps(log_a, log_c):
    """``exp(log_a)`` and ``exp(log_c)`` both scaled by ``exp(-s)``, and that scale, with
    ``s = max(log_a, log_c)`` (the larger becomes 1: nothing overflows)."""
    s = jnp.maximum(log_a, log_c)
    return jnp.exp(log_a - s), jnp.exp(log_c - s), jnp.exp(-s)


def _mix(coef, x):
    """``sum_c coef[j, c] x[c]`` per batch member: coef (J, C, B or 1), x (C, B) -> (J, B), written
    as a broadcast and a sum over the small middle axis (XLA:CPU vectorises it over the batch)."""
    return jnp.sum(coef * x[None], axis=1)


def _transfer_rates(net: dict, f, ref, e, a, gb):
    """Net oxidation rate of each transfer (J, B), mM cm/s, at interface potential ``e`` (B,), with
    the channels' history ``a`` (C, B) and flux responses ``gb`` = g beta1 (C, B)."""
    xa, xc, scale = _exps(*_log_rates(f * (e - net["e0"]), net["alpha"], net["reorganization"] * f / net["n"], ref))
    red_a = net["red0"] + _mix(net["red"], a)
    ox_a = net["ox0"] + _mix(net["ox"], a)
    resp = gb[:, None] * net["flux"]  # (C, J, B): channel c's surface change per unit rate of transfer l
    a_red = jnp.sum(net["red"][:, :, None] * resp[None], axis=1)  # (J, J, B)
    a_ox = jnp.sum(net["ox"][:, :, None] * resp[None], axis=1)
    mat = jnp.eye(xa.shape[0], dtype=xa.dtype)[..., None] * scale[None] - net["k0"][:, None] * (
        xa[:, None] * a_red - xc[:, None] * a_ox)
    return _solve(mat, net["k0"] * (xa * red_a - xc * ox_a))


def _advance(tab: dict, modes, q_old, q, row, row_next):
    """The channels' modes after a step with fluxes ``q_old`` -> ``q`` (C, B), and what they leave
    at the surface for the next step, ``a`` (C, B). The sum over modes is unrolled: XLA:CPU then
    emits one vectorised loop over the batch (as in ``_solver``)."""
    modes = modes * tab["decay"][row] + q_old[:, None] * tab["phi0_v"][row] + q[:, None] * tab["phi1_v"][row]
    w = tab["w_next"][row_next]
    a_next = tab["beta0"][row_next] * q
    for k in range(modes.shape[1]):
        a_next = a_next + modes[:, k] * w[:, k]
    return modes, a_next


def _surface_step(surf: dict, f_s, e, gam_red, h):
    """New reduced coverage (Ss, B), mol/cm^2, after a step of ``h`` s at interface potential ``e``:
    exponential relaxation towards Nernst's coverage at Laviron's rate ``k_s (e_a + e_c)``."""
    eta = f_s * (e - surf["e0"])
    log_rate = jnp.log(surf["k0"]) + jnp.logaddexp((1.0 - surf["alpha"]) * eta, -surf["alpha"] * eta)
    relax = jnp.exp(-jnp.exp(log_rate) * h)
    eq = surf["gamma"] * jax.nn.sigmoid(-eta)  # Nernst: G_R / G = 1 / (1 + exp(eta))
    return eq + (gam_red - eq) * relax


#: bisection halvings, then Newton steps, of the Frumkin step's reduced fraction in [0, 1]
FRUMKIN_BISECTIONS, FRUMKIN_NEWTON = 30, 2


def _frumkin_step(surf: dict, f_s, e, gam_red, h):
    """``_surface_step`` with Frumkin's interaction G: Laviron's law at the effective overpotential
    ``nf eta - G (2 x - 1)`` (``x`` the reduced fraction), which makes Frumkin's isotherm its
    equilibrium. Nonlinear in ``x``, so one backward-Euler step, solved by bisection on [0, 1]
    (the residual is negative at 0 and positive at 1) and finished by Newton steps, through which
    the gradient flows."""
    x_old = gam_red / surf["gamma"]
    eta = f_s * (e - surf["e0"])
    a, kh = surf["alpha"], surf["k0"] * h

    def resid(x):
        eta_e = eta - surf["interaction"] * (2.0 * x - 1.0)
        rate = (1.0 - x) * jnp.exp(jnp.clip(-a * eta_e, -60.0, 60.0)) - x * jnp.exp(jnp.clip((1.0 - a) * eta_e, -60.0, 60.0))
        return x - x_old - kh * rate

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        up = resid(mid) > 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, FRUMKIN_BISECTIONS, halve, (jnp.zeros_like(x_old), jnp.ones_like(x_old)))
    x = jax.lax.stop_gradient(0.5 * (lo + hi))
    for _ in range(FRUMKIN_NEWTON):
        g, dg = jax.jvp(resid, (x,), (jnp.ones_like(x),))
        x = jnp.clip(x - g / dg, 0.0, 1.0)
    return surf["gamma"] * x


@functools.partial(jax.jit, static_argnames=("grid", "config", "ohmic", "mhc", "frumkin"))
def simulate_network(waveform, net: dict, surf: dict, cell, *, grid, config: SolverConfig, ohmic: bool,
                     mhc: bool = False, frumkin: bool = False) -> dict:
    """Run the loop on ``assemble``'s arrays, each flattened to a trailing batch axis of size B (1
    where shared; ``cell``: a dict of ``area temperature ru cdl`` (B,), ``potential`` (N+1, B),
    ``duration`` (B,) inside ``waveform``, a dict; ``grid`` its ``TimeGrid``; ``mhc``: whether any
    transfer may have Marcus-Hush-Chidsey kinetics; ``frumkin``: whether any surface couple may
    have Frumkin interactions). Returns the result's fields with a trailing B."""
    potential, duration = waveform["potential"], waveform["duration"]
    dtype, n_b = potential.dtype, max([potential.shape[-1], duration.shape[-1]] + [v.shape[-1] for v in cell.values()]
                                      + [v.shape[-1] for d in (net, surf) for v in d.values()])
    full = lambda x: jnp.broadcast_to(x, x.shape[:-1] + (n_b,))  # noqa: E731
    temp, area, ru, cap = cell["temperature"], cell["area"], cell["ru"], cell["cdl"] * cell["area"]
    has_net, has_surf = bool(net), bool(surf)
    if has_net:
        g = jnp.sqrt(duration / net["d"])  # (C, B) s/cm
        tab = _tables(config, grid, full(net["kappa"] * duration), dtype)
        rows, m, n_c = tab["rows"], tab["decay"].shape[2], net["kappa"].shape[0]
        amp = net["n"] * FARADAY * area * MOL_PER_CM3_PER_MM  # A per mM cm/s
    else:
        rows, m, n_c = step_kinds(grid)[2], 0, 0
    f = net["n"] * FARADAY / (GAS_CONSTANT * temp) if has_net else None
    f_s = surf["n"] * FARADAY / (GAS_CONSTANT * temp) if has_surf else None
    if has_surf:
        amp_s = surf["n"] * FARADAY * area  # A per mol/cm^2/s
    next_rows = np.concatenate([rows[1:], rows[-1:]])
    dt = jnp.asarray(grid.steps, dtype)[:, None] * duration  # (N, B) s

    ref = _mhc_reference(net, f) if has_net and mhc else None
    transfer_rates = functools.partial(_transfer_rates, net, f, ref) if has_net else None
    surface_step = functools.partial(_frumkin_step if frumkin else _surface_step, surf, f_s) if has_surf else None

    def step(carry, xs):
        modes, q_old, a, e_prev, i_prev, gam_red = carry
        row, row_next, e_app, h, jump = xs
        gb = g * tab["beta1"][row] if has_net else None

        def total(e):
            i = cap * (e - e_prev) / h
            if has_net:
                i = i + jnp.sum(amp * transfer_rates(e, a, gb), axis=0)
            if has_surf:
                i = i + jnp.sum(amp_s * (gam_red - surface_step(e, gam_red, h)) / h, axis=0)
            return i

        if ohmic:
            guess = jnp.where(jump, e_prev, e_app - ru * i_prev)
            e, resid = solve_ir(total, e_app, guess, ru, config.newton_iterations, 1e-6)
        else:
            e, resid = e_app, jnp.zeros_like(e_app)
        e = full(e)
        i_parts, surface = [], []
        if has_net:
            r = transfer_rates(e, a, gb)
            q = g * _mix(net["flux"], r)
            u = a + tab["beta1"][row] * q
            surface += [full(net["ox0"] + _mix(net["ox"], u)), full(net["red0"] + _mix(net["red"], u))]
            modes, a_next = _advance(tab, modes, q_old, q, row, row_next)
            i_parts.append(full(amp * r))
        else:
            q, a_next = q_old, a
        if has_surf:
            new = surface_step(e, gam_red, h)
            i_parts.append(full(amp_s * (gam_red - new) / h))
            surface = [jnp.concatenate(s) for s in zip(surface, [full(surf["gamma"] - new), full(new)])] \
                if surface else [full(surf["gamma"] - new), full(new)]
            gam_red = new
        i_each = jnp.concatenate(i_parts, 0)
        i_far = jnp.sum(i_each, axis=0)
        i_cap = cap * (e - e_prev) / h
        i_tot = full(i_far + i_cap)
        out = dict(current=i_tot, faradaic_current=full(i_far), charging_current=full(i_cap), interface_potential=e,
                   couple_current=i_each, surface_concentration=jnp.stack(surface, 1), resid=full(resid))
        return (modes, q, a_next, e, i_tot, gam_red), out

    gam0 = full(surf["gamma"] * (1.0 - surf["theta_ox"])) if has_surf else jnp.zeros((0, n_b), dtype)
    carry0 = (jnp.zeros((n_c, m, n_b), dtype), jnp.zeros((n_c, n_b), dtype), jnp.zeros((n_c, n_b), dtype),
              full(potential[0]), jnp.zeros((n_b,), dtype), gam0)
    xs = (jnp.asarray(rows), jnp.asarray(next_rows), potential[1:], dt, jnp.asarray(grid.jump))
    (modes, _, _, _, _, _), outs = jax.lax.scan(step, carry0, xs)
    return _finish(outs, modes, tab if has_net else None, net, surf, gam0, potential, duration, config, full)


def _finish(outs: dict, modes, tab, net: dict, surf: dict, gam0, potential, duration, config: SolverConfig, full) -> dict:
    """The loop's outputs with the state at rest in front, the final profiles of each transfer's
    species, the far-field and reaction-layer diagnostics and the diffusion lengths (trailing B)."""
    dtype, n_b = potential.dtype, potential.shape[-1]
    has_net, has_surf = bool(net), bool(surf)
    n_j = net["e0"].shape[0] if has_net else 0
    n_s = surf["e0"].shape[0] if has_surf else 0
    resid = outs.pop("resid")
    first = dict(current=jnp.zeros((1, n_b), dtype), faradaic_current=jnp.zeros((1, n_b), dtype),
                 charging_current=jnp.zeros((1, n_b), dtype), interface_potential=full(potential[:1]),
                 couple_current=jnp.zeros((1, n_j + n_s, n_b), dtype))
    start = []
    if has_net:
        start.append(full(jnp.stack([net["ox0"], net["red0"]], 1)))
    if has_surf:
        start.append(full(jnp.stack([surf["gamma"] * surf["theta_ox"], gam0], 1)))
    first["surface_concentration"] = jnp.concatenate(start, 0)[None]
    out = {k: jnp.concatenate([first[k], v], 0) for k, v in outs.items()}
    out["newton_residual"] = jnp.max(jnp.abs(resid), axis=0)
    x = config.nodes()
    if has_net:  # each transfer's species profiles (surface couples: none)
        chan = jnp.einsum("km,cmb->ckb", tab["to_nodes"], modes)  # (C, M, B)
        chan = jnp.concatenate([chan, jnp.zeros_like(chan[:, :1])], 1)
        prof = [full(net["ox0"])[:, None] + jnp.einsum("jc...,ck...->jk...", net["ox"], chan),
                full(net["red0"])[:, None] + jnp.einsum("jc...,ck...->jk...", net["red"], chan)]
        final = jnp.stack(prof, 1)  # (J, 2, M+1, B)
        scale = jnp.maximum(jnp.max(full(net["scale"]), axis=0), 1e-30)  # the largest bulk concentration
        out["far_field"] = jnp.max(jnp.abs(chan[:, -2]), axis=0) / scale
        # a reaction layer thinner than the first spacing (h0 in diffusion lengths) is not resolved
        out["reaction_layer"] = jnp.max(config.h0 * jnp.sqrt(full(net["kappa"] * duration)), axis=0)
    else:
        final = jnp.zeros((0, 2, x.size, n_b), dtype)
        out["far_field"] = out["reaction_layer"] = jnp.zeros((n_b,), dtype)
    if has_surf:
        final = jnp.concatenate([final, jnp.zeros((n_s, 2, x.size, n_b), dtype)], 0)
    out["final_concentration"] = final
    lengths = [full(jnp.sqrt(jnp.stack([net["d_ox"], net["d_red"]], 1) * duration))] if has_net else []
    out["diffusion_length"] = jnp.concatenate(lengths + ([jnp.zeros((n_s, 2, n_b), dtype)] if has_surf else []), 0)
    out["grid_x"] = jnp.asarray(x, dtype)
    return out


def simulate_mechanisms(waveform, items, cell, config: SolverConfig, ohmic: bool):
    """``simulate`` for a list with at least one mechanism: assembled, batched (leading batch
    dimensions of any field broadcast like numpy, flattened to the loop's trailing axis) and
    returned as a ``SimulationResult`` whose "couples" are the transfers, then the surface couples."""
    from ._result import SimulationResult

    if cell.geometry.solver is not None:
        raise ValueError(f"mechanisms: only planar diffusion is solved with coupled chemistry so far, got "
                         f"{type(cell.geometry).__name__}")
    dtype = jnp.result_type(float)
    net, surf = assemble(items)
    nested = ("flux", "red", "ox")
    leaves = [jnp.asarray(v, dtype) for d in (net, surf) for k, vals in d.items()
              for v in ([x for row in vals for x in row] if k in nested else vals)]
    leaves += [jnp.asarray(getattr(cell, k), dtype) for k in ("area", "temperature", "ru", "cdl")]
    batch = jnp.broadcast_shapes(*(v.shape for v in leaves), waveform.potential.shape[:-1], waveform.duration.shape)
    n_b = int(np.prod(batch, dtype=np.int64))

    def flat(x):  # (*batch) -> (B,)
        return jnp.broadcast_to(jnp.asarray(x, dtype), batch).reshape(n_b)

    def per(d):  # lists of (*batch) -> (K, B); the nested flux/red/ox -> (K, L, B)
        return {k: jnp.stack([jnp.stack([flat(v) for v in row]) for row in vals]) if k in nested
                else jnp.stack([flat(v) for v in vals]) for k, vals in d.items()}

    nets, surfs = per(net), per(surf)
    pot = jnp.broadcast_to(waveform.potential.astype(dtype), batch + waveform.potential.shape[-1:])
    wf = dict(potential=jnp.moveaxis(pot.reshape((n_b, -1)), 0, -1), duration=flat(waveform.duration.astype(dtype)))
    cl = {k: flat(jnp.asarray(getattr(cell, k), dtype)) for k in ("area", "temperature", "ru", "cdl")}
    reorg = [_concrete(v) for v in net.get("reorganization", [])]
    mhc = any(v is None or bool(np.any(np.isfinite(v))) for v in reorg)
    inter = [_concrete(v) for v in surf.get("interaction", [])]
    frumkin = any(v is None or bool(np.any(v != 0)) for v in inter)
    out = simulate_network(wf, nets, surfs, cl, grid=waveform.grid, config=config, ohmic=ohmic, mhc=mhc,
                           frumkin=frumkin)
    out = {k: (v if k == "grid_x" else jnp.moveaxis(v, -1, 0).reshape(batch + v.shape[:-1])) for k, v in out.items()}
    time = jnp.broadcast_to(waveform.time.astype(dtype), batch + waveform.potential.shape[-1:])
    return SimulationResult(time=time, potential=pot, **out)
