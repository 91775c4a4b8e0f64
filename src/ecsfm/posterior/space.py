"""The free-parameter space of one inference: which slots of the conditioning vector are free,
their prior boxes, and the map between raw values and unconstrained coordinates.

Free slots are sampled in unconstrained coordinates ``y = logit(u)``, ``u`` the slot's position
in its prior box, so the prior is the logistic density in ``y`` and every proposal is a plain
Gaussian. Known slots -- the task/stage one-hots, protocol slots, slots the prior fixes, slots
the caller marks known, and every slot of a couple whose known concentration is zero (an absent
couple) -- never move.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..data import SPECIES_QUANTITIES, CoreLayout, PriorSpec

__all__ = ["ParameterSpace", "SpaceArrays"]

_PRIOR_STD_CACHE: dict = {}


class ParameterSpace:
    """Which slots of ``p_core`` are free, their prior boxes, and the map from unconstrained ``y``.

    With two or more active couples whose E0 are free, the couples are exchangeable (swapping
    their slots leaves the current unchanged), so the posterior is labelled: slot order = order of
    increasing E0 (``canonical_order`` puts a known truth in the same labelling).

    Built from the dataset prior of the known task/stage, the known values and mask. Free slot j
    maps ``p_j = a_j + (b_j - a_j) sigmoid(y_j)``; a ``fraction`` slot (``C_red = u C_ox``) maps
    onto ``[low, high] x C_ox`` of its couple, so the prior in ``y`` is the product of logistic
    densities (plus, when ``C_red`` is known but ``C_ox`` is free, the conditional density of the
    known ``C_red``).
    """

    def __init__(self, meta: dict, known_p_core, known_p_mask, geometry: dict):
        """``meta``: the model metadata (task and stage names, priors); ``known_p_core`` (core,)
        raw values, whose one-hots select the task and stage (hence the prior);
        ``known_p_mask`` (core,) bool; ``geometry``: ``resolve_model_geometry``'s sizes.
        Raises ValueError naming the argument on a wrong size, a non-finite known slot, an
        unknown task/stage, no active couple, nothing free, or a known value outside its prior."""
        self.geometry = geometry
        self.core_layout = CoreLayout(int(geometry["max_species"]), tuple(meta.get("task_names", [])),
                                      tuple(meta.get("stage_names", [])))
        self.layout = layout = self.core_layout.base
        core = self.core_layout.size
        if core != int(geometry["phys_dim_core"]):
            raise ValueError(f"geometry: phys_dim_core {geometry['phys_dim_core']} disagrees with the metadata's "
                             f"layout ({core} slots)")
        known = np.asarray(known_p_core, np.float64).reshape(-1)
        if known.size != core:
            raise ValueError(f"known_p_core: expected {core} values (base {layout.size} + "
                             f"{self.core_layout.n_tasks} tasks + {self.core_layout.n_stages} stages), got {known.size}")
        mask = np.asarray(known_p_mask).reshape(-1).astype(bool)
        if mask.size != core:
            raise ValueError(f"known_p_mask: expected {core} values, got {mask.size}")
        if not np.all(np.isfinite(known[mask])):
            raise ValueError("known_p_core: known slots must be finite")
        self.task, self.stage = self.core_layout.task_of(known), self.core_layout.stage_of(known)
        key = f"{self.task}/{self.stage}"
        priors = meta.get("priors", {})
        if key not in priors:
            raise ValueError(f"known_p_core: task/stage {key!r} has no prior in the model metadata "
                             f"(known: {sorted(priors)})")
        self.prior = PriorSpec.from_dict(priors[key])
        self.known = known
        self.active = layout.active_couples(known[: layout.size])
        if not self.active.any():
            raise ValueError("known_p_core: no active couple (every couple has C_ox + C_red = 0); set the "
                             "concentration slots of the couples present to any positive value")
        free = np.zeros(core, bool)
        free[: layout.size] = ~mask[: layout.size]
        lows, highs, frac_of = self._boxes(known, free)
        self.free = np.flatnonzero(free)
        if self.free.size == 0:
            raise ValueError("known_p_mask: every slot is known; nothing to infer")
        # Known values of free-able slots must lie in the prior's support (absent couples and
        # protocol slots have no box: lows == highs == 0).
        for i in np.flatnonzero(~free[: layout.size] & mask[: layout.size]):
            if frac_of[i] < 0 and highs[i] > lows[i] and not lows[i] - 1e-9 <= known[i] <= highs[i] + 1e-9:
                raise ValueError(f"known_p_core: {layout.names[i]} = {known[i]:.6g} is outside the prior's "
                                 f"support [{lows[i]:.6g}, {highs[i]:.6g}]")
        self.lows, self.highs, self.frac_of = lows, highs, frac_of
        # Known C_red with free C_ox: the conditional prior density of C_red given C_ox.
        self.cond_frac = [(i, int(frac_of[i])) for i in range(core)
                          if frac_of[i] >= 0 and not free[i] and free[frac_of[i]]]
        self.names = list(self.core_layout.names)
        self.dim = int(self.free.size)
        e0_slots = [layout.index("e0", k) for k in np.flatnonzero(self.active)]
        self.ordered_e0 = e0_slots if len(e0_slots) >= 2 and all(free[i] for i in e0_slots) else []
        self.arrays = SpaceArrays(jnp.asarray(known, jnp.float32), jnp.asarray(self.free, jnp.int32),
                                  jnp.asarray(lows[self.free], jnp.float32), jnp.asarray(highs[self.free], jnp.float32),
                                  jnp.asarray(frac_of[self.free], jnp.int32))

    def _boxes(self, known: np.ndarray, free: np.ndarray):
        """The prior's box (lows, highs (core,)) of every slot and the couple slot a ``fraction``
        slot scales with (``frac_of``, -1 elsewhere); fixes ``known`` and ``free`` in place for the
        slots the prior fixes, absent couples and protocol slots."""
        layout, core = self.layout, known.size
        lows, highs, frac_of = np.zeros(core), np.zeros(core), np.full(core, -1)
        for name, spec in self.prior.species.items():
            for k in range(layout.max_species):
                i = layout.index(name, k)
                if not self.active[k] or spec.dist == "fixed":
                    if self.active[k]:  # an absent couple keeps its filler values
                        known[i] = spec.bounds_p(name.startswith("ln_"))[0]
                    free[i] = False
                    continue
                if spec.dist == "fraction":
                    frac_of[i] = layout.index(spec.of, k)
                    lows[i], highs[i] = spec.low, spec.high
                else:
                    lows[i], highs[i] = spec.bounds_p(name.startswith("ln_"))
        roles = layout.roles
        for name, spec in self.prior.globals.items():
            i = layout.index(name)
            if roles[i] == "protocol" or spec.dist == "fixed":
                if spec.dist == "fixed" and roles[i] != "protocol":
                    known[i] = spec.bounds_p(name.startswith("ln_"))[0]
                free[i] = False
                continue
            lows[i], highs[i] = spec.bounds_p(name.startswith("ln_"))
        return lows, highs, frac_of

    def to_raw(self, y: np.ndarray) -> np.ndarray:
        """Unconstrained (n, dim) -> p_core (n, core) in raw units."""
        y = np.asarray(y, np.float64)
        u = 1.0 / (1.0 + np.exp(-np.clip(y, -500, 500)))
        p = np.tile(self.known, (y.shape[0], 1))
        fr = self.frac_of[self.free]
        box = fr < 0
        lo, hi = self.lows[self.free], self.highs[self.free]
        p[:, self.free[box]] = lo[box] + (hi[box] - lo[box]) * u[:, box]
        if (~box).any():
            of = fr[~box]
            p[:, self.free[~box]] = p[:, of] * (lo[~box] + (hi[~box] - lo[~box]) * u[:, ~box])
        return p

    def log_prior(self, y: np.ndarray) -> np.ndarray:
        """Log prior density in y (n,): logistic per coordinate (+ the conditional term)."""
        y = np.asarray(y, np.float64)
        out = -np.sum(np.logaddexp(0.0, y) + np.logaddexp(0.0, -y), axis=1)
        if self.ordered_e0:
            # Exchangeable couples: the couple slots are labelled by increasing E0 (the current
            # does not change when couples swap slots), times the n! labellings folded in.
            e0 = self.to_raw(y)[:, self.ordered_e0]
            out = out + np.where(np.all(np.diff(e0, axis=1) > 0, axis=1), math.lgamma(len(self.ordered_e0) + 1), -np.inf)
        if self.cond_frac:
            p = self.to_raw(y)
            for i, of in self.cond_frac:
                a, b = self.lows[i] * p[:, of], self.highs[i] * p[:, of]
                inside = (self.known[i] >= a) & (self.known[i] <= b)
                out = out + np.where(inside, -np.log(np.maximum(b - a, 1e-300)), -np.inf)
        return out

    # -- the Laplace proposal's coordinates: raw p, with concentrations on a log scale ---------
    # In y = logit(u) the C_ox-D ridge of a voltammogram (i ~ C sqrt(D)) bends with the logit of
    # each box; in (ln C, ln D) it is straight, so a Gaussian there fits it.

    @property
    def _log_kind(self) -> np.ndarray:
        return np.asarray([self.names[i].startswith(("c_ox", "c_red")) for i in self.free])

    def _box(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fr = self.frac_of[self.free]
        lo, hi = self.lows[self.free], self.highs[self.free]
        scale = np.where(fr >= 0, p[:, np.maximum(fr, 0)], 1.0)
        return lo * scale, hi * scale

    def to_z(self, y: np.ndarray) -> np.ndarray:
        pf = self.to_raw(y)[:, self.free]
        return np.where(self._log_kind, np.log(np.maximum(pf, 1e-300)), pf)

    def from_z(self, z: np.ndarray) -> np.ndarray:
        """Inverse of ``to_z``; rows outside the prior's support come back as NaN."""
        z = np.asarray(z, np.float64)
        pf = np.where(self._log_kind, np.exp(np.minimum(z, 700.0)), z)
        p = np.tile(self.known, (z.shape[0], 1))
        p[:, self.free] = pf
        a, b = self._box(p)
        u = (pf - a) / (b - a)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(u) - np.log1p(-u)
        bad = ~np.all((u > 0) & (u < 1), axis=1)
        y[bad] = np.nan
        return y

    def log_det_dz_dy(self, y: np.ndarray) -> np.ndarray:
        """log |det dz/dy| (n,); the map is triangular (C_red after C_ox), so diagonal terms."""
        y = np.clip(np.asarray(y, np.float64), -500, 500)
        p = self.to_raw(y)
        a, b = self._box(p)
        ld = np.log(b - a) - np.logaddexp(0.0, y) - np.logaddexp(0.0, -y)
        ld = ld - np.where(self._log_kind, np.log(np.maximum(p[:, self.free], 1e-300)), 0.0)
        return ld.sum(1)

    def laplace_precision_z(self, y_mode: np.ndarray, hess_y: np.ndarray) -> np.ndarray:
        """Precision of the Laplace proposal in z: the likelihood's Gauss-Newton Hessian moved
        from y to z, plus the precision of a Gaussian with each prior box's variance (so that
        directions the data do not inform stay as wide as the prior, not infinite)."""
        y0 = np.asarray(y_mode, np.float64)
        sig = 1.0 / (1.0 + np.exp(-np.clip(y0, -500, 500)))
        h_lik = hess_y - np.diag(2.0 * sig * (1.0 - sig))
        eps = 1e-5
        jac = np.empty((self.dim, self.dim))  # dz/dy at the mode, by central differences
        for j in range(self.dim):
            e = np.zeros(self.dim)
            e[j] = eps
            jac[:, j] = (self.to_z((y0 + e)[None])[0] - self.to_z((y0 - e)[None])[0]) / (2 * eps)
        inv = np.linalg.inv(jac)
        p = self.to_raw(y0[None])
        a, b = self._box(p)
        a, b = a[0], b[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            width = np.where(self._log_kind, np.log(b / np.maximum(a, 1e-2 * b)), b - a)
        return inv.T @ h_lik @ inv + np.diag(12.0 / width**2)  # a uniform box's variance is width^2 / 12

    def canonical_order(self, p_core) -> np.ndarray:
        """``p_core`` with its active couples' slots permuted to increasing E0 (the labelling of
        the posterior when couples are exchangeable); unchanged otherwise."""
        p = np.array(p_core, dtype=np.float64, copy=True)
        if not self.ordered_e0:
            return p
        s = self.layout.max_species
        couples = [i % s for i in self.ordered_e0]
        order = [couples[j] for j in np.argsort(p[self.ordered_e0], kind="stable")]
        src = p.copy()
        for name, _, _ in SPECIES_QUANTITIES:
            for dst_k, src_k in zip(couples, order):
                p[self.layout.index(name, dst_k)] = src[self.layout.index(name, src_k)]
        return p

    def prior_std_raw(self, n: int = 4096, seed: int = 0) -> np.ndarray:
        """Prior standard deviation of every slot (core,), by sampling (0 for known slots); the
        same prior (boxes, known values, free slots) is sampled once per process."""
        key = (self.known.tobytes(), self.free.tobytes(), self.lows.tobytes(), self.highs.tobytes(), n, seed)
        if key not in _PRIOR_STD_CACHE:
            if len(_PRIOR_STD_CACHE) > 256:
                _PRIOR_STD_CACHE.clear()
            _PRIOR_STD_CACHE[key] = self.prior_draws(n, np.random.default_rng(seed)).std(0)
        return _PRIOR_STD_CACHE[key].copy()

    def prior_draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws (n, core) of the prior: uniform positions in the prior's box (its
        coordinates y = logit(position)), the support's constraints (e.g. ordered E0 of
        exchangeable couples) by rejection."""
        out, have = [], 0
        while have < n:
            u = rng.uniform(1e-12, 1.0 - 1e-12, size=(2 * n, self.dim))
            y = np.log(u) - np.log1p(-u)
            y = y[np.isfinite(self.log_prior(y))]
            out.append(self.to_raw(y))
            have += y.shape[0]
        return np.concatenate(out)[:n]




class SpaceArrays(eqx.Module):
    """The unconstrained -> raw map of a ``ParameterSpace`` as arrays, for compiled code:
    ``to_raw(y (n, dim)) -> p_core (n, core)``."""

    known: jax.Array
    free: jax.Array
    lo: jax.Array
    hi: jax.Array
    frac_of: jax.Array

    def to_raw(self, y):
        u = jax.nn.sigmoid(y)
        val = self.lo + (self.hi - self.lo) * u
        p = jnp.broadcast_to(self.known, (y.shape[0], self.known.size))
        box = self.frac_of < 0
        p = p.at[:, self.free].set(jnp.where(box, val, 0.0))
        of = p[:, jnp.maximum(self.frac_of, 0)]
        return p.at[:, self.free].set(jnp.where(box, val, of * val))

