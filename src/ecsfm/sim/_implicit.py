"""A general implicit reaction-diffusion solver for ``sim.Scheme``: any species, first- and
second-order homogeneous reactions, Butler-Volmer or Marcus-Hush-Chidsey transfers, Ru and Cdl
(planar).

Why a second solver. The channel solver (``_network``) is exact in time and fast, but only for
first-order chemistry among species of equal D: then the chemistry separates into channels that
each diffuse and decay at one rate. Second-order chemistry (dimerisation, disproportionation)
couples the species nonlinearly at every point of the solution, and unequal D breaks the
separation. Here every species lives on one physical grid and the coupled system is solved as it
stands.

Discretisation. The grid is ``_grid``'s (node 0 on the electrode, spacings ``h0 growth^k``, the last
node at bulk concentration), in units of ``sqrt(D_max T)`` (``T`` the run's duration; a slower
species is resolved a little better than its own diffusion length asks). Finite volumes, with
control widths ``w_k``: ``w_k dc/dt = D (c_{k+1} - c_k) / h_k - D (c_k - c_{k-1}) / h_{k-1} +
w_k R(c_k)`` and, at node 0, the transfers' fluxes in place of the missing left face. In time,
backward Euler on the waveform's own steps (first order; L-stable, so stiff chemistry neither
oscillates nor goes negative). Each step solves the nonlinear system for every concentration and
the interface potential together (``E = E_app - Ru i``) by Newton's method with the exact
Jacobian, from the previous step's
state; ``NEWTON_STEPS`` iterations, the last update of E reported as ``newton_residual``. The
Jacobian is block tridiagonal (one (S+1) x (S+1) block per node: the species there, and E in node
0's), built from its parts (diffusion, ``jax.jacfwd`` of the local reaction source and of the
electrode boundary) and solved by the block Thomas algorithm with unrolled elimination per block.

Cost (``bench/bench_mechanisms.py``): ~10^2 CVs/s batched, ~200x below the channel solver: use
the named first-order mechanisms (``sim.EC`` ...) where they apply; the two agree
(``tests/sim/test_scheme.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._finite import LEVICH_C, XI_MAX
from ._finite import _nodes as finite_nodes
from ._grid import SolverConfig
from ._network import _log_rates, _mhc_reference
from ._physics import _concrete
from ._scheme import PER_MM, Scheme, order
from ._units import FARADAY, GAS_CONSTANT, MOL_PER_CM3_PER_MM

__all__ = ["simulate_scheme", "NEWTON_STEPS"]

#: Newton iterations per time step (from the previous step's state: quadratic convergence leaves
#: the last update far below the discretisation error)
NEWTON_STEPS = 4
#: exponents of the Butler-Volmer factors are clipped to +/- this (float32 holds exp(88))
EXP_CLIP = 60.0


def _static(scheme: Scheme) -> dict:
    """The scheme's structure as numbers: per reaction the (species index, coefficient) pairs of
    each side and the net stoichiometry (Rn, S); per transfer its ox and red index and n."""
    idx = scheme.index
    s = len(scheme.species)
    net = np.zeros((len(scheme.reactions), s))
    sides = []
    for k, r in enumerate(scheme.reactions):
        for name, nu in r.reactants:
            net[k, idx(name)] -= nu
        for name, nu in r.products:
            net[k, idx(name)] += nu
        sides.append(([(idx(n), nu) for n, nu in r.reactants], [(idx(n), nu) for n, nu in r.products],
                      PER_MM ** (order(r.reactants) - 1), PER_MM ** (max(order(r.products), 1) - 1)))
    return dict(sides=sides, net=net, ox=np.asarray([idx(t.ox) for t in scheme.transfers]),
                red=np.asarray([idx(t.red) for t in scheme.transfers]),
                n=np.asarray([t.n for t in scheme.transfers], float),
                mhc=any(v is None or bool(np.any(np.isfinite(v))) for v in (_concrete(t.reorganization)
                                                                            for t in scheme.transfers)))


def _reaction_source(st: dict, kf, kb, c):
    """dc/dt from the homogeneous reactions at one point, mM/s, (S,); ``c`` (S,) mM."""
    if not st["sides"]:
        return jnp.zeros_like(c)
    rates = []
    for k, (left, right, scale_f, scale_b) in enumerate(st["sides"]):
        fwd = kf[k] * scale_f
        for i, nu in left:
            fwd = fwd * c[i] ** nu
        back = kb[k] * scale_b if right else 0.0
        for i, nu in right:
            back = back * c[i] ** nu
        rates.append(fwd - back)
    return jnp.asarray(st["net"], c.dtype).T @ jnp.stack(rates)


def _gauss(a, b):
    """``a^-1 b`` for a small (B, B) ``a`` by Gaussian elimination unrolled over B, without pivoting:
    the blocks here are diagonally dominant (w/dt and diffusion on the diagonal, the iR equation's
    1 + Ru di/dE). Elementwise operations only: a batched LAPACK call per 4x4 block cost ~10x more."""
    n = a.shape[0]
    a = [[a[i, j] for j in range(n)] for i in range(n)]
    b = [b[i] for i in range(n)]
    for k in range(n):
        inv = 1.0 / a[k][k]
        for i in range(k + 1, n):
            f = a[i][k] * inv
            for j in range(k + 1, n):
                a[i][j] = a[i][j] - f * a[k][j]
            b[i] = b[i] - f * b[k]
    x = [None] * n
    for i in reversed(range(n)):
        acc = b[i]
        for j in range(i + 1, n):
            acc = acc - a[i][j] * x[j]
        x[i] = acc / a[i][i]
    return jnp.stack(x)


def _bernoulli(z):
    """``z / (e^z - 1)`` (1 at z = 0), stable for either sign."""
    small = jnp.abs(z) < 1e-4
    safe = jnp.where(small, 1.0, z)
    return jnp.where(small, 1.0 - z / 2, safe / jnp.expm1(safe))


def _thomas(diag, lower, upper, rhs):
    """Block-tridiagonal (Thomas) solve: ``diag`` (m, B, B), ``lower``/``upper`` (m, B) the diagonal
    off-diagonal blocks (``lower[0]``, ``upper[-1]`` unused), ``rhs`` (m, B); returns (m, B)."""
    b = diag.shape[-1]

    def forward(carry, inp):
        cp, dp = carry
        dk, lk, uk, rk = inp
        out = _gauss(dk - lk[:, None] * cp, jnp.concatenate([jnp.diag(uk), (rk - lk * dp)[:, None]], 1))
        return (out[:, :-1], out[:, -1]), (out[:, :-1], out[:, -1])

    zero = (jnp.zeros((b, b), diag.dtype), jnp.zeros(b, diag.dtype))
    _, (cps, dps) = jax.lax.scan(forward, zero, (diag, lower, upper, rhs))

    def backward(nxt, inp):
        x = inp[1] - inp[0] @ nxt
        return x, x

    return jax.lax.scan(backward, jnp.zeros(b, diag.dtype), (cps, dps), reverse=True)[1]


class _Discretised:
    """One member's finite-volume system: unknowns ``c`` (m, S) mM at nodes 0..m-1 (node m is the
    bulk) and the interface potential ``e``; residuals and the Jacobian's blocks (B = S + 1)."""

    def __init__(self, st: dict, x: np.ndarray, ohmic: bool, p: dict, dtype):
        self.st, self.p, self.ohmic, self.dtype = st, p, ohmic, dtype
        wall = "thickness" in p  # a thin layer: every node unknown, no flux through the last face
        self.n_s, self.m = p["d"].shape[0], x.size - (0 if wall else 1)
        if wall:
            self.length = p["thickness"]
        elif "flow" in p:  # a rotating disc: v_x = -flow x^2 (1/(cm s)); its own length scale (``_finite``)
            self.length = (jnp.max(p["d"]) / p["flow"]) ** (1.0 / 3.0)
        else:
            self.length = jnp.sqrt(jnp.max(p["d"]) * p["duration"])
        xs = jnp.asarray(x, dtype) * self.length  # cm from the electrode's surface
        h = jnp.diff(xs)
        faces = jnp.concatenate([jnp.zeros(1, dtype), (xs[:-1] + xs[1:]) / 2])  # control-volume faces
        if wall:  # the last node's half cell ends at the wall; a closed face beyond it
            h, faces = jnp.concatenate([h, jnp.ones(1, dtype)]), jnp.concatenate([faces, xs[-1:]])
        if "radius" in p:  # radial: volumes and face areas per unit electrode area grow as (r / r0)^2
            r0 = p["radius"]
            self.face = ((r0 + faces[1:]) / r0) ** 2  # (m,) the face between node k and k+1
            self.w = ((r0 + faces[1:]) ** 3 - (r0 + faces[:-1]) ** 3) / (3 * r0**2)
        else:
            self.face, self.w = jnp.ones_like(h), jnp.diff(faces)
        if wall:
            self.face = self.face.at[-1].set(0.0)
        self.h = h
        # Convection (a rotating disc) enters the face fluxes by exponential fitting (Scharfetter-
        # Gummel): exact for advection-diffusion at a constant velocity over a cell, so the coarse
        # outer cells neither oscillate nor smear. Into node k through its right face:
        # D / h (B(P) c_{k+1} - B(-P) c_k), P = v h / D, B(z) = z / (e^z - 1); B = 1 without flow.
        # The flow is not divergence-free in 1-D (the disc's radial outflow carries the rest): the
        # equation is dc/dt = D c'' - v c', i.e. the conservative fluxes plus c dv/dx, taken per node
        # as (v_right - v_left) c_k, which leaves the bulk exactly at rest.
        if "flow" in p:
            v = -p["flow"] * faces**2  # (m+1,) cm/s at the faces, 0 on the disc
            peclet = v[1:, None] * h[:, None] / p["d"][None]  # (m, S)
            self.b_up, self.b_down = _bernoulli(peclet), _bernoulli(-peclet)
            self.dv = jnp.diff(v)[:, None]  # (m, 1)
        else:
            self.b_up = self.b_down = jnp.ones((self.m, self.n_s), dtype)
            self.dv = jnp.zeros((self.m, 1), dtype)
        n = jnp.asarray(st["n"], dtype)
        self.f = n * FARADAY / (GAS_CONSTANT * p["temperature"])
        # Marcus-Hush-Chidsey: lambda F / RT per transfer and its rate at eta = 0, once per run
        self.big_l = p["reorganization"] * self.f / n
        self.mhc_ref = _mhc_reference({"reorganization": p["reorganization"], "n": n}, self.f) if st["mhc"] else None
        self.amp = n * FARADAY * p["area"] * MOL_PER_CM3_PER_MM  # A per mM cm/s
        ox, red, cols = st["ox"], st["red"], jnp.arange(st["ox"].size)
        self.into = jnp.zeros((self.n_s, ox.size), dtype).at[ox, cols].add(1.0).at[red, cols].add(-1.0)
        self.couple_d = jnp.concatenate([p["d"], jnp.zeros(1, dtype)])  # diffusion couples species, not E
        g = p["d"][None] * (self.face / h)[:, None]  # (m, S) conductance of each node's right face
        pad = lambda a: jnp.concatenate([a, jnp.zeros((a.shape[0], 1), dtype)], 1)  # noqa: E731  (E's slot)
        self.lower = -jnp.concatenate([jnp.zeros((1, self.n_s + 1), dtype), pad(g * self.b_down)[:-1]])  # (m, B)
        self.upper = -jnp.concatenate([pad(g * self.b_up)[:-1], jnp.zeros((1, self.n_s + 1), dtype)])
        self.g = g

    def source(self, c):  # homogeneous reactions at one node, mM/s
        return _reaction_source(self.st, self.p["kf"], self.p["kb"], c)

    def rates(self, c0, e):
        """Each transfer's net oxidation rate, mM cm/s: Butler-Volmer, or Marcus-Hush-Chidsey where a
        transfer's reorganisation energy is finite (``_network``'s rates)."""
        p = self.p
        log_ox, log_red = _log_rates(self.f * (e - p["e0"]), p["alpha"], self.big_l, self.mhc_ref)
        up = jnp.exp(jnp.clip(log_ox, -EXP_CLIP, EXP_CLIP))
        down = jnp.exp(jnp.clip(log_red, -EXP_CLIP, EXP_CLIP))
        return p["k0"] * (up * c0[self.st["red"]] - down * c0[self.st["ox"]])

    def boundary(self, c0, e, e_old, e_app, dt):
        """Node 0's transfer source (S,) and the iR equation's residual, as (S+1,); (rates, current)."""
        r = self.rates(c0, e)
        i_total = jnp.sum(self.amp * r) + self.p["cdl"] * self.p["area"] * (e - e_old) / dt
        g = e - e_app + (self.p["ru"] * i_total if self.ohmic else 0.0)
        return jnp.concatenate([-self.into @ r, g[None]]), (r, i_total)

    def residual(self, c, e, c_old, e_old, e_app, dt):
        """(m, B): each node's species balance (backward Euler); E's equation in node 0's last slot."""
        right = self.g * (self.b_up * jnp.concatenate([c[1:], self.p["c0"][None]]) - self.b_down * c)  # into k
        left = jnp.concatenate([jnp.zeros((1, self.n_s), self.dtype), right[:-1]])
        res = (self.w[:, None] * (c - c_old) / dt - (right - left) - self.dv * c
               - self.w[:, None] * jax.vmap(self.source)(c))
        res = jnp.concatenate([res, jnp.zeros((self.m, 1), self.dtype)], 1)
        return res.at[0].add(self.boundary(c[0], e, e_old, e_app, dt)[0])

    def blocks(self, c, e, e_old, e_app, dt):
        """The Jacobian's diagonal blocks (m, B, B): accumulation and diffusion on the diagonal, the
        reactions' local Jacobian, and in node 0 the electrode's (E's slot an identity elsewhere)."""
        m, n_s, dtype = self.m, self.n_s, self.dtype
        jr = jax.vmap(jax.jacfwd(self.source))(c)  # (m, S, S)
        out_right, out_left = self.g * self.b_down, self.g * self.b_up  # what leaves node k through each face
        faces = out_right + jnp.concatenate([jnp.zeros((1, n_s), dtype), out_left[:-1]])
        on_diag = jnp.concatenate([self.w[:, None] / dt + faces - self.dv, jnp.ones((m, 1), dtype)], 1)
        diag = jnp.eye(n_s + 1, dtype=dtype)[None] * on_diag[:, :, None]
        diag = diag.at[:, :n_s, :n_s].add(-self.w[:, None, None] * jr)
        jc, je = jax.jacfwd(lambda c0, ee: self.boundary(c0, ee, e_old, e_app, dt)[0], argnums=(0, 1))(c[0], e)
        return diag.at[0].add(jnp.concatenate([jc, je[:, None]], 1).at[n_s, n_s].add(-1.0))


def _member(st: dict, x: np.ndarray, ohmic: bool, p: dict, potential, steps):
    """One simulation: ``p`` the member's numbers (d, c0 (S,); e0, k0, alpha, reorganization (J,); kf, kb (Rn,);
    area, temperature, ru, cdl, duration), ``potential`` (N+1,) V, ``steps`` (N,) relative."""
    dtype = potential.dtype
    sys = _Discretised(st, x, ohmic, p, dtype)
    n_s, ox, red, bulk = sys.n_s, st["ox"], st["red"], p["c0"]

    def step(carry, inp):
        c_old, e_old = carry
        e_app, dt = inp

        def newton(_, state):
            c, e, _ = state
            dy = _thomas(sys.blocks(c, e, e_old, e_app, dt), sys.lower, sys.upper,
                         sys.residual(c, e, c_old, e_old, e_app, dt))
            return jnp.maximum(c - dy[:, :n_s], 0.0), e - dy[0, n_s], dy[0, n_s]  # concentrations stay >= 0

        start = (c_old, e_old if ohmic else e_app, jnp.zeros((), dtype))
        c, e, de = jax.lax.fori_loop(0, NEWTON_STEPS, newton, start)
        r, i_total = sys.boundary(c[0], e, e_old, e_app, dt)[1]
        i_far = sys.amp * r
        out = dict(current=i_total, faradaic_current=jnp.sum(i_far), charging_current=i_total - jnp.sum(i_far),
                   interface_potential=e, couple_current=i_far,
                   surface_concentration=jnp.stack([c[0, ox], c[0, red]], 1), resid=jnp.abs(de))
        return (c, e), out

    c_init = jnp.broadcast_to(bulk, (sys.m, n_s)).astype(dtype)
    dt = jnp.asarray(steps, dtype) * p["duration"]
    (c_end, _), outs = jax.lax.scan(step, (c_init, potential[0]), (potential[1:], dt))
    wall = "thickness" in p
    prof = c_end if wall else jnp.concatenate([c_end, bulk[None]])  # (nodes, S)
    out = {k: jnp.concatenate([jnp.zeros_like(v[:1]), v]) for k, v in outs.items() if k != "resid"}
    out["interface_potential"] = out["interface_potential"].at[0].set(potential[0])
    out["surface_concentration"] = out["surface_concentration"].at[0].set(jnp.stack([bulk[ox], bulk[red]], 1))
    out["newton_residual"] = jnp.max(outs["resid"])
    out["final_concentration"] = jnp.stack([prof[:, ox].T, prof[:, red].T], 1)  # (J, 2, m+1)
    out["diffusion_length"] = jnp.full((ox.size, 2), sys.length, dtype)
    scale = jnp.maximum(jnp.max(bulk), 1e-30)
    out["far_field"] = jnp.zeros((), dtype) if wall else jnp.max(jnp.abs(c_end[-1] - bulk)) / scale
    # the fastest pseudo-first-order rate, k c^(order - 1), at the largest bulk concentration; the
    # first spacing over the thinnest reaction layer sqrt(D_min / kappa)
    kappa = jnp.max(jnp.concatenate([jnp.zeros(1, dtype), p["kf"] * jnp.asarray(
        [s[2] for s in st["sides"]], dtype) * scale ** jnp.asarray([order(s[0]) - 1 for s in st["sides"]], dtype)]))
    out["reaction_layer"] = x[1] * sys.length * jnp.sqrt(kappa / jnp.min(p["d"]))
    return out


def simulate_scheme(waveform, items, cell, config: SolverConfig, ohmic: bool):
    """``simulate`` for a list holding one ``Scheme``: batched over leading dimensions of any
    field (broadcast like numpy) by ``jax.vmap``; returns a ``SimulationResult`` whose "couples"
    are the scheme's transfers. Planar, radial to a sphere or hemisphere (``sim.Sphere``,
    ``sim.Hemisphere``), in a thin layer (``sim.ThinLayer``: a wall, no flux) or at a rotating disc
    (``sim.RotatingDisc``: von Karman's flow, exponentially fitted face fluxes). Raises ValueError for another geometry or other items beside it."""
    from ._result import SimulationResult

    if len(items) != 1:
        raise ValueError(f"couples: a Scheme is simulated on its own (put every species in it), got {len(items)} items")
    if cell.geometry.solver not in (None, "sphere", "thin-layer", "rde"):
        raise ValueError(f"Scheme: planar, radial (sphere, hemisphere), thin-layer or rotating-disc transport is "
                         f"solved so far, got {type(cell.geometry).__name__}")
    scheme = items[0]
    st = _static(scheme)
    dtype = jnp.result_type(float)
    stack = lambda xs: jnp.stack(jnp.broadcast_arrays(*[jnp.asarray(v, dtype) for v in xs]), -1) if xs else None  # noqa: E731
    p = dict(d=stack([s.d for s in scheme.species]), c0=stack([s.c for s in scheme.species]),
             e0=stack([t.e0 for t in scheme.transfers]), k0=stack([t.k0 for t in scheme.transfers]),
             alpha=stack([t.alpha for t in scheme.transfers]),
             reorganization=stack([t.reorganization for t in scheme.transfers]),
             kf=stack([r.k_f for r in scheme.reactions]), kb=stack([r.k_b for r in scheme.reactions]),
             area=jnp.asarray(cell.area, dtype), temperature=jnp.asarray(cell.temperature, dtype),
             ru=jnp.asarray(cell.ru, dtype), cdl=jnp.asarray(cell.cdl, dtype),
             duration=jnp.asarray(waveform.duration, dtype))
    x = config.nodes()
    if cell.geometry.solver == "sphere":
        p["radius"] = jnp.asarray(cell.geometry.radius, dtype)
    if cell.geometry.solver == "thin-layer":  # the layer's own grid, in units of its thickness (``_finite``)
        p["thickness"], x = jnp.asarray(cell.geometry.thickness, dtype), finite_nodes(config.growth, 1.0)
    if cell.geometry.solver == "rde":  # von Karman's v_x = -C w^3/2 nu^-1/2 x^2; the bulk at XI_MAX lengths
        geo = cell.geometry
        p["flow"] = jnp.asarray(LEVICH_C * geo.omega**1.5 / jnp.sqrt(geo.viscosity), dtype)
        x = finite_nodes(config.growth, XI_MAX)
    if p["kf"] is None:
        p["kf"] = p["kb"] = jnp.zeros((0,), dtype)
    vector = {"d", "c0", "e0", "k0", "alpha", "reorganization", "kf", "kb"}
    batch = jnp.broadcast_shapes(*[v.shape[:-1] if k in vector else v.shape for k, v in p.items()],
                                 waveform.potential.shape[:-1])
    n_b = int(np.prod(batch, dtype=np.int64))
    flat = {k: jnp.broadcast_to(v, batch + v.shape[-1:] if k in vector else batch).reshape((n_b,) + v.shape[-1:] * (k in vector))
            for k, v in p.items()}
    pot = jnp.broadcast_to(waveform.potential.astype(dtype), batch + waveform.potential.shape[-1:])
    run = jax.vmap(lambda q, e: _member(st, x, ohmic, q, e, waveform.grid.steps))
    out = run(flat, pot.reshape((n_b, -1)))
    out = {k: v.reshape(batch + v.shape[1:]) for k, v in out.items()}
    time = jnp.broadcast_to(waveform.time.astype(dtype), batch + waveform.potential.shape[-1:])
    return SimulationResult(time=time, potential=pot, grid_x=jnp.asarray(x, dtype), **out)
