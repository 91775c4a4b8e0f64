"""Time stepping: ``simulate(waveform, couples, cell)``.

Per time step (all inside one ``lax.scan``; batching is ``vmap`` over any argument):

1. Diffusion of every species over the step is exact in the mode basis (``_grid``); what the
   surface concentration would be with no new flux this step is
   ``a = v . (exp(mu h) u~) + beta0 q_old``.
2. The surface concentration responds linearly to this step's flux: ``u(0) = a + beta1 q``.
   Butler-Volmer is linear in the surface concentrations at a given interface potential, so
   the implicit kinetic boundary has a closed form (no iteration, no clipping):

       r = k0 (e_a X - e_c Y) / (1 + beta k0 (e_a g_R + e_c g_O))

   with ``X, Y`` the no-reaction surface concentrations of R and O, ``e_a, e_c`` the anodic and
   cathodic exponentials and ``g = sqrt(T / D)`` each species' flux scale. Numerator and
   denominator are scaled by ``exp(-max exponent)`` so nothing overflows at any overpotential.
3. With uncompensated resistance the interface potential ``E = E_app - Ru i(E)`` with
   ``i = i_F(E) + Cdl A (E - E_prev)/dt`` is solved by safeguarded Newton (``g(E)`` is monotone
   increasing, so the root is bracketed by ``E_app`` and ``E_app - Ru i(E_app)``). With
   ``Ru = 0`` known before tracing this is skipped: ``E = E_app`` exactly.
4. The modes advance with the flux ``q = +g_O r`` (O produced by oxidation) and ``-g_R r``.

Currents are in A, IUPAC (oxidation positive). ``r`` is in mM cm/s; ``i = n F A r * 1e-6``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._finite import LEVICH_C, finite_operator, finite_tables
from ._grid import SolverConfig, propagator
from ._ohmic import solve_ir
from ._disc import EDGE_POLES, EDGE_WEIGHTS, edge_coefficients, edge_step
from ._physics import Cell, Couple, _concrete, stack_couples
from ._mechanisms import CE, EC, ECE, ECcat, Mechanism
from ._implicit import simulate_scheme
from ._network import simulate_mechanisms
from ._scheme import Scheme, as_scheme
from ._result import SimulationResult
from ._units import FARADAY, GAS_CONSTANT, MOL_PER_CM3_PER_MM
from ._waveforms import Waveform

__all__ = ["SimulationResult", "simulate"]

#: The iR solve stops when every Newton correction is below this (V); float32 potentials near
#: 1 V resolve ~1e-7 V.
NEWTON_TOL_V = 1e-6


def _marcus(c) -> bool:
    """True if a couple may have Marcus-Hush-Chidsey kinetics (a finite or traced reorganisation energy)."""
    lam = _concrete(c.reorganization) if isinstance(c, Couple) else None
    return isinstance(c, Couple) and (lam is None or bool(np.any(np.isfinite(lam))))


def _maybe_zero(x) -> bool:
    """True if ``x`` is concrete and all zero (so a code path can be skipped before tracing)."""
    v = _concrete(x)
    return v is not None and bool(np.all(v == 0))


def simulate(
    waveform: Waveform,
    couples: Couple | Sequence[Couple],
    cell: Cell | None = None,
    *,
    config: SolverConfig = SolverConfig(),
) -> SimulationResult:
    """Simulate the current of ``couples`` in ``cell`` under ``waveform``.

    Args:
        waveform: the applied potential program (see ``ecsfm.sim`` builders).
        couples: one ``Couple`` or a sequence of S of them (independent couples, one electrode),
            mixed with named mechanisms (``EC``, ``ECcat``, ``CE``, ``ECE``, ``Convection``,
            ``Surface``: planar; one of the first four alone also on a sphere, hemisphere, thin
            layer or rotating disc), or one ``Scheme`` on its own (``EC2``, ``DISP1``, any
            mechanism as data; the general implicit solver).
        cell: area, temperature, Ru, Cdl (default: 1 cm^2, 298.15 K, no Ru, no Cdl).
        config: discretisation settings (static).

    Returns:
        A ``SimulationResult``; ``result.problems()`` lists anything that went wrong.

    ``jit``-able, differentiable with ``jax.grad``, and batched two ways: ``jax.vmap`` over any
    array field of the arguments, or, faster, by giving the fields leading batch dimensions
    (they broadcast like numpy; e.g. ``Couple(k0=jnp.logspace(-4, 0, 1024), ...)``). The result
    then has those leading dimensions. Native batches run with the batch as the fastest-varying
    axis, in cache-sized chunks of ``config.batch_chunk``; one compiled program per waveform
    shape, batch shape and config.
    """
    if not isinstance(waveform, Waveform):
        raise ValueError(f"waveform: expected a Waveform, got {type(waveform).__name__}")
    cell = Cell() if cell is None else cell
    if not isinstance(cell, Cell):
        raise ValueError(f"cell: expected a Cell, got {type(cell).__name__}")
    items = list(couples) if isinstance(couples, Sequence) else [couples]
    if cell.geometry.solver in ("sphere", "thin-layer", "rde") and len(items) == 1 \
            and isinstance(items[0], (EC, ECcat, CE, ECE)):
        items = [as_scheme(items[0])]  # the channel solver is planar; the general one is not only
    if any(isinstance(c, Scheme) for c in items):
        return simulate_scheme(waveform, items, cell, config, not _maybe_zero(cell.ru))
    if any(isinstance(c, Mechanism) or _marcus(c) for c in items):
        return simulate_mechanisms(waveform, items, cell, config, not _maybe_zero(cell.ru))
    cp = stack_couples(couples)
    # Known-zero Ru (concrete, before tracing) skips the iR solve: E_interface = E_applied.
    ohmic = not _maybe_zero(cell.ru)
    kind = cell.geometry.solver
    finite, radial = (kind, None) if kind in ("thin-layer", "rde") else (None, kind)
    return _kernel(config, ohmic, radial, finite)(waveform, cp, cell)


@functools.lru_cache(maxsize=None)
def _kernel(config: SolverConfig, ohmic: bool, radial: str | None, finite: str | None):
    """``_simulate`` for these static settings, with its ``jax.vmap`` turned into native batching.

    Traced per member, a simulation carries every array with the vmap axis in front, a layout
    XLA:CPU runs 5-7x slower than the native one (the batch as the last, contiguous axis;
    ``bench/bench_geometry.py``). The ``custom_vmap`` rule passes the batched arguments on as
    they come, their vmap axis leading, which native batching reads as a batch dimension. Its
    derivatives are those of ``_simulate`` itself (the ``custom_jvp`` rule is ``jax.jvp`` of it:
    forward and reverse mode both work, and a vmap of a derivative takes JAX's own batching)."""

    def run(waveform, cp, cell):
        return _simulate(waveform, cp, cell, config=config, ohmic=ohmic, radial=radial, finite=finite)

    batched = jax.custom_batching.custom_vmap(run)

    @batched.def_vmap
    def _native(axis_size, in_batched, waveform, cp, cell):
        if _member_batch_rank((waveform, cp, cell), in_batched) > 0:
            # each member is itself a native batch: the vmap axis cannot simply lead (the members'
            # own batch dimensions would misalign); JAX's own batching of the simulator is exact
            axes = jax.tree_util.tree_map(lambda b: 0 if b else None, tuple(in_batched))
            out = jax.vmap(run, in_axes=axes)(waveform, cp, cell)
            return out, jax.tree_util.tree_map(lambda _: True, out)
        out = batched(waveform, cp, cell)  # the vmap axis leads every batched leaf: a batch dimension
        flag = any(jax.tree_util.tree_leaves(in_batched))
        return out, jax.tree_util.tree_map(lambda _: flag, out)

    kernel = jax.custom_jvp(batched)

    @kernel.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(run, primals, tangents)

    return kernel


def _member_batch_rank(args, in_batched) -> int:
    """The most native batch dimensions any one vmapped member has (0: every member is a single
    simulation). ``args`` = (waveform, stacked couples, cell); the couples' species axis, the
    potential's time axis and a batched leaf's vmap axis are not batch dimensions."""
    (waveform, cp, cell), (wb, cb, lb) = args, in_batched
    ranks = [waveform.potential.ndim - 1 - int(wb.potential), waveform.duration.ndim - int(wb.duration)]
    ranks += [x.ndim - 1 - int(b) for x, b in zip(jax.tree_util.tree_leaves(cp), jax.tree_util.tree_leaves(cb))]
    ranks += [x.ndim - int(b) for x, b in zip(jax.tree_util.tree_leaves(cell), jax.tree_util.tree_leaves(lb))]
    return max(ranks)


@functools.partial(jax.jit, static_argnames=("config", "ohmic", "radial", "finite"))
def _simulate(waveform: Waveform, cp: Couple, cell: Cell, *, config: SolverConfig, ohmic: bool, radial: str | None,
              finite: str | None):
    """``simulate`` after validation, compiled once per waveform shape, batch shape and config
    (inlined when the caller is itself traced)."""
    dtype = jnp.result_type(float)
    batch_shape = jnp.broadcast_shapes(
        *(x.shape[:-1] for x in jax.tree_util.tree_leaves(cp)),
        *(x.shape for x in jax.tree_util.tree_leaves(cell)),
        waveform.potential.shape[:-1],
        waveform.duration.shape,
    )
    n_batch = int(np.prod(batch_shape, dtype=np.int64))

    # Inputs the whole batch shares keep a trailing axis of size 1 (read once, broadcast in the
    # loop); batched ones get the batch as their trailing axis.
    def trailing(x, event_ndim):  # (*b, *event) -> (*event, B) or (*event, 1)
        x = jnp.asarray(x, dtype)
        event = x.shape[x.ndim - event_ndim :]
        if x.ndim == event_ndim:
            return x[..., None]
        x = jnp.broadcast_to(x, batch_shape + event).reshape((n_batch,) + event)
        return jnp.moveaxis(x, 0, -1)

    inputs = dict(
        couple={k: trailing(getattr(cp, k), 1) for k in _COUPLE_FIELDS},
        cell={k: trailing(getattr(cell, k), 0) for k in _CELL_FIELDS}
        | {"curvature": trailing(cell.geometry.curvature(), 0)}
        | ({"thickness": trailing(cell.geometry.thickness, 0)} if finite == "thin-layer" else {})
        | ({"omega": trailing(cell.geometry.omega, 0), "viscosity": trailing(cell.geometry.viscosity, 0)}
           if finite == "rde" else {}),
        potential=trailing(waveform.potential, 1),
        duration=trailing(waveform.duration, 0),
    )
    prop = finite_operator(config, waveform.grid, finite) if finite else propagator(config, waveform.grid)
    chunk = min(config.batch_chunk, n_batch)
    n_chunks = -(-n_batch // chunk)
    single = n_batch == 1
    core = functools.partial(
        _core, prop=prop, steps=waveform.grid.steps, jump=waveform.grid.jump, ohmic=ohmic, radial=radial, finite=finite,
        config=config,
        tail=() if single else (chunk,),
    )
    if single:
        # No trailing batch axis at all: under an outer vmap, XLA:CPU handles (V, 2S, m) well
        # and (V, 2S, m, 1) very badly.
        out = core(jax.tree_util.tree_map(lambda x: x[..., 0], inputs))
    elif n_chunks == 1:
        out = core(inputs)
    else:
        pad = n_chunks * chunk - n_batch

        def split(x):  # (..., B) -> (n_chunks, ..., chunk); padding repeats the last member
            if x.shape[-1] == 1:  # shared by the batch
                return jnp.broadcast_to(x, (n_chunks,) + x.shape)
            x = jnp.concatenate([x, jnp.repeat(x[..., -1:], pad, axis=-1)], -1) if pad else x
            return jnp.moveaxis(x.reshape(x.shape[:-1] + (n_chunks, chunk)), -2, 0)

        out = jax.lax.map(core, jax.tree_util.tree_map(split, inputs))
        out = jax.tree_util.tree_map(
            lambda x: jnp.moveaxis(x, 0, -2).reshape(x.shape[1:-1] + (n_chunks * chunk,))[..., :n_batch],
            out,
        )

    def unbatch(x):  # (..., B) -> (*batch, ...)
        if single:
            return x.reshape(batch_shape + x.shape)
        return jnp.moveaxis(x, -1, 0).reshape(batch_shape + x.shape[:-1])

    out = jax.tree_util.tree_map(unbatch, out)
    time = jnp.broadcast_to(waveform.time.astype(dtype), batch_shape + waveform.potential.shape[-1:])
    potential = jnp.broadcast_to(waveform.potential.astype(dtype), time.shape)
    return SimulationResult(
        time=time,
        potential=potential,
        grid_x=jnp.asarray(prop.x, dtype),  # in units of diffusion_length (the thin layer's, the disc's L)
        **out,
    )


_COUPLE_FIELDS = ("e0", "k0", "alpha", "d_ox", "d_red", "c_ox", "c_red", "n")
_CELL_FIELDS = ("area", "temperature", "ru", "cdl")


def _core(inputs: dict, *, prop, steps, jump, ohmic: bool, radial: str | None, finite: str | None, config: SolverConfig,
          tail: tuple) -> dict:
    """The time loop on a batch laid out with the batch as the last axis (size B).

    Couple arrays are (S, B), cell arrays and the duration (B,), the potential (N+1, B), where
    an input shared by the whole batch has a trailing 1 instead of B; for a single simulation
    (``tail = ()``) there is no trailing axis at all. Outputs have a trailing B (or none).
    The carried modes are (2S, m, B), O of every couple then R of every couple (a flat species
    axis: XLA:CPU vectorises this layout far better than (S, 2, m, B) when S = 1). The surface
    value ``a`` for the next step is computed in the same pass that advances the modes (one read
    and one write of the state per step). ``epsilon = sqrt(D T) / r`` per species (2S, B).
    ``radial = "sphere"``: the modes carry ``w = (r / r0) (c - c_bulk)``, whose boundary flux gains
    ``epsilon w(0)``. ``radial = "disc"``: the modes receive the flux less the edge's, ``epsilon
    (u + sum_k w_k z_k)``, ``z_k`` the surface deviation ``u`` low-pass filtered (carried, (2S, K,
    B); ``_disc``). ``finite``: a thin layer or a rotating disc, whose step tables differ per
    species and member (``_finite``)."""
    # Longer than 80 lines on purpose: the scan body and the state it carries read as one unit;
    # split, the per-step arrays would be threaded through helper signatures.
    cp = inputs["couple"]
    cl = inputs["cell"]
    potential = inputs["potential"]
    duration = inputs["duration"]
    dtype = potential.dtype
    n_species = cp["e0"].shape[0]

    def col(x):  # a per-step constant, broadcast against a trailing batch axis if there is one
        return x[..., None] if tail else x

    def full(x):  # (..., 1) -> (..., B): carried values must keep one shape through the loop
        return jnp.broadcast_to(x, x.shape[:-1] + tail) if tail else x

    f = cp["n"] * FARADAY / (GAS_CONSTANT * cl["temperature"])  # (S, B) 1/V
    g_ox = jnp.sqrt(duration / cp["d_ox"])  # (S, B) s/cm
    g_red = jnp.sqrt(duration / cp["d_red"])
    amp_per_rate = cp["n"] * FARADAY * cl["area"] * MOL_PER_CM3_PER_MM  # A per (mM cm/s)
    cap = cl["cdl"] * cl["area"]  # (B,) F
    ru = cl["ru"]
    bulk = jnp.concatenate(jnp.broadcast_arrays(cp["c_ox"], cp["c_red"]), 0)  # (2S, B or 1)
    eps = jnp.concatenate([1.0 / g_ox, 1.0 / g_red], 0) * duration * cl["curvature"] if radial else None  # sqrt(D T) / r
    table = functools.partial(jnp.asarray, dtype=dtype)

    if finite:  # per species and member: (U, 2S, m, [B]) and (U, 2S, [B])
        g = jnp.concatenate([g_ox, g_red], 0)
        if finite == "thin-layer":
            length = cl["thickness"] * jnp.ones_like(g)
        else:  # (D nu^1/2 / (C w^3/2))^1/3, D = T / g^2
            length = (duration / g**2 * jnp.sqrt(cl["viscosity"]) / (LEVICH_C * cl["omega"] ** 1.5)) ** (1.0 / 3.0)
        s = (duration / (g * length)) ** 2  # D T / L^2
        tab = finite_tables(prop, s, dtype)
        decay, phi0_v, phi1_v, w_next, beta0, beta1 = (
            tab[k] for k in ("decay", "phi0_v", "phi1_v", "w_next", "beta0", "beta1"))
        uniform = prop.steps.size == 1
    else:
        decay = col(table(prop.decay))  # (U, m, [1])
        phi0_v = col(table(prop.phi0_v))
        phi1_v = col(table(prop.phi1_v))
        w_next = col(table(prop.decay * prop.v))  # v * exp(mu h): next step's surface weights
        beta0 = table(prop.beta0)
        beta1 = table(prop.beta1)
        uniform = prop.decay.shape[0] == 1
    rows = np.asarray(prop.step_index)
    m = prop.v.size
    next_rows = np.concatenate([rows[1:], rows[-1:]])
    dt = col(jnp.asarray(steps, dtype)) * duration  # (N, [B]) s
    if radial == "disc":  # edge filters: rates (2S, K, [B]) 1/s, weights (K, [1]); one step size: coefficients once
        edge_rate, edge_weights = col(table(EDGE_POLES)) * (eps * eps / duration)[:, None], col(table(EDGE_WEIGHTS))
        edge_fixed = edge_coefficients(edge_rate * dt[0]) if uniform else None

    def rates(e, a, b):
        """Net oxidation rate of each couple (S, B), mM cm/s, at interface potential e (B,); the
        surface deviations are ``a + b q`` with ``b`` a number or per species (2S, B)."""
        eta = f * (e - cp["e0"])
        # Scale numerator and denominator by exp(-s), s = max((1-alpha) eta, -alpha eta) >= 0:
        # the larger exponential becomes 1 and the other exp(-|eta|) (ea - ec = eta).
        s = jnp.where(eta >= 0, 1.0 - cp["alpha"], -cp["alpha"]) * eta
        z = jnp.exp(-jnp.abs(eta))
        xa = jnp.where(eta >= 0, 1.0, z)
        xc = jnp.where(eta >= 0, z, 1.0)
        num = cp["k0"] * (xa * (cp["c_red"] + a[n_species:]) - xc * (cp["c_ox"] + a[:n_species]))
        b_ox, b_red = (b[:n_species], b[n_species:]) if radial or finite else (b, b)
        den = jnp.exp(-s) + cp["k0"] * (xa * g_red * b_red + xc * g_ox * b_ox)
        return num / den

    def step(carry, xs):
        modes, q_old, a, e_prev, i_prev, (z, u_prev) = carry  # (2S,m,B), (2S,B), (2S,B), (B,), (B,)
        row, row_next, e_app, h, jump = xs
        if uniform:  # one step size throughout (a ramp): constant tables, no per-step gather
            row = row_next = 0
        b = beta1[row]
        if radial == "sphere":  # surface w = a + b (q - eps w): solved for w, it is a' + b' q
            a, b = a / (1.0 + b * eps), b / (1.0 + b * eps)
        elif radial == "disc":  # u = a + b (q - eps (gain u + hist)): solved for u, it is a' + b' q
            ex, c0, c1, hist, gain = edge_step(z, u_prev, edge_fixed or edge_coefficients(edge_rate * h), jump,
                                               edge_weights)
            a, b = (a - b * eps * hist) / (1.0 + b * eps * gain), b / (1.0 + b * eps * gain)

        def total(e):
            ifar = jnp.sum(amp_per_rate * rates(e, a, b), axis=0)
            return ifar + cap * (e - e_prev) / h

        if ohmic:
            # Starting guess: the last interface potential after a jump (the double layer keeps
            # it from following the applied jump at once), else the last iR drop carried over.
            guess = jnp.where(jump, e_prev, e_app - ru * i_prev)
            e, resid = solve_ir(total, e_app, guess, ru, config.newton_iterations, NEWTON_TOL_V)
        else:
            e, resid = e_app, jnp.zeros_like(e_app)
        e = full(e)
        r = full(rates(e, a, b))  # (S, B)
        q = jnp.concatenate([g_ox * r, -g_red * r], 0)  # (2S, B) dimensionless flux into solution
        surface = bulk + a + b * q
        if radial == "sphere":  # the flux the modes of w receive
            q = q - eps * (a + b * q)
        elif radial == "disc":  # the flux less the edge's; the filters take the new surface value
            u = a + b * q
            q = q - eps * (gain * u + hist)
            z, u_prev = ex * z + c0 * u_prev[:, None] + c1 * u[:, None], u
        modes = modes * decay[row] + q_old[:, None] * phi0_v[row] + q[:, None] * phi1_v[row]
        # The sum over modes is unrolled: XLA:CPU then emits one vectorised loop over the batch
        # (~2.5x faster than a reduce over the middle axis, measured in bench/).
        w = w_next[row_next]
        a_next = beta0[row_next] * q
        for k in range(m):
            a_next = a_next + modes[:, k] * (w[:, k] if finite else w[k])
        i_couple = amp_per_rate * r
        i_far = jnp.sum(i_couple, axis=0)
        i_cap = cap * (e - e_prev) / h
        i_tot = full(i_far + i_cap)
        out = dict(
            current=i_tot,
            faradaic_current=i_far,
            charging_current=full(i_cap),
            interface_potential=e,
            couple_current=i_couple,
            surface_concentration=full(surface),
            resid=full(resid),
            q=q,
        )
        return (modes, q, a_next, e, i_tot, (z, u_prev)), out

    zeros = jnp.zeros((2 * n_species,) + tail, dtype)
    carry0 = (
        jnp.zeros((2 * n_species, m) + tail, dtype),
        zeros,
        beta0[rows[0]] * zeros,
        full(potential[0]),
        jnp.zeros(tail, dtype),
        (jnp.zeros((2 * n_species, EDGE_POLES.size if radial == "disc" else 0) + tail, dtype), zeros),
    )
    xs = (jnp.asarray(rows), jnp.asarray(next_rows), potential[1:], dt, jnp.asarray(jump))
    (modes, _, _, _, _, _), outs = jax.lax.scan(step, carry0, xs)

    q = outs.pop("q")
    resid = outs.pop("resid")
    q_prev = q[-2] if q.shape[0] > 1 else jnp.zeros_like(q[-1])
    if finite:  # every mode kept, the wall node included; no far boundary
        final = jnp.einsum("km,jm...->jk...", jnp.asarray(prop.to_nodes, dtype), modes) + bulk[:, None]
        far = jnp.zeros(tail, dtype)
    else:
        fast = jnp.asarray(prop.fast_to_nodes, dtype)  # (M, 2)
        nodes = (
            jnp.einsum("km,jm...->jk...", jnp.asarray(prop.to_nodes, dtype), modes)
            + q_prev[:, None] * col(fast[:, 0])
            + q[-1][:, None] * col(fast[:, 1])
        )  # (2S, M, B)
        if radial == "sphere":  # w = (r / r0) (c - c_bulk) -> c - c_bulk
            nodes = nodes / (1.0 + eps[:, None] * col(jnp.asarray(prop.x[:-1], dtype)))
        final = jnp.concatenate([nodes, jnp.zeros_like(nodes[:, :1])], 1) + bulk[:, None]
        scale = jnp.maximum(jnp.max(bulk, axis=0), jnp.finfo(dtype).tiny)  # (B,)
        far = jnp.max(jnp.abs(nodes[:, -1]), axis=0) / scale

    def by_couple(x, axis):  # (..., 2S, ...) -> (..., S, 2, ...)
        shape = x.shape[:axis] + (2, n_species) + x.shape[axis + 1 :]
        return jnp.swapaxes(x.reshape(shape), axis, axis + 1)

    rest = dict(
        current=jnp.zeros((1,) + tail, dtype),
        faradaic_current=jnp.zeros((1,) + tail, dtype),
        charging_current=jnp.zeros((1,) + tail, dtype),
        interface_potential=jnp.broadcast_to(potential[:1], (1,) + tail),
        couple_current=jnp.zeros((1, n_species) + tail, dtype),
        surface_concentration=jnp.broadcast_to(bulk[None], (1, 2 * n_species) + tail),
    )
    out = {k: jnp.concatenate([rest[k], v], 0) for k, v in outs.items()}
    out["surface_concentration"] = by_couple(out["surface_concentration"], 1)
    out["final_concentration"] = by_couple(final, 0)
    out["diffusion_length"] = jnp.stack(  # the length node positions are in (a thin layer's, a disc's L)
        jnp.broadcast_arrays(*((length[:n_species], length[n_species:]) if finite else
                               (jnp.sqrt(cp["d_ox"] * duration), jnp.sqrt(cp["d_red"] * duration)))), 1
    )
    out["far_field"] = far
    out["newton_residual"] = jnp.max(jnp.abs(resid), axis=0)
    if tail:
        out = {k: jnp.broadcast_to(v, v.shape[:-1] + tail) for k, v in out.items()}
    return out

