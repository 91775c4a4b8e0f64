"""What ``simulate`` returns: ``SimulationResult``, with its own diagnostics (``problems()``)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["SimulationResult", "FAR_FIELD_WARN", "NEWTON_WARN_V", "REACTION_LAYER_WARN"]

#: Perturbation at the outermost interior node (fraction of the largest bulk concentration) above
#: which the result warns that the grid is too short. That node sits ~1.2 diffusion lengths inside
#: x_max = 6, where a semi-infinite profile is perturbed by ~erfc(2.4) ~ 1e-3 of its surface value
#: (what the datasets show); 1e-2 means the far boundary is genuinely interfering.
FAR_FIELD_WARN = 1e-2
#: Estimated interface-potential error, V, above which the result warns (0.01 mV).
NEWTON_WARN_V = 1e-5
#: First grid spacing over the thinnest reaction layer above which the result warns.
REACTION_LAYER_WARN = 0.3


class SimulationResult(eqx.Module):
    """What ``simulate`` returns (one simulation; a leading batch axis under ``vmap``).

    Attributes:
        time: s, (N+1,).
        potential: applied potential, V, (N+1,).
        current: total current, A, (N+1,) (IUPAC: oxidation positive). ``current[0]`` is the
            cell at rest (0 A).
        faradaic_current: A, (N+1,).
        charging_current: A, (N+1,).
        interface_potential: ``potential - current * ru``, V, (N+1,).
        couple_current: faradaic current of each couple, A, (N+1, S).
        surface_concentration: mM at the electrode, (N+1, S, 2) as ``[ox, red]``.
        final_concentration: mM at the end, on the nodes, (S, 2, M+1).
        grid_x: dimensionless node positions, (M+1,).
        diffusion_length: the length the grid is in, cm, (S, 2): ``sqrt(D * duration)``; a thin
            layer's thickness; a rotating disc's ``(D nu^1/2 / (0.51 w^3/2))^1/3``. Node k of
            species j of couple s is at ``grid_x[k] * diffusion_length[s, j]`` cm (from the
            electrode's surface).
        far_field: largest |perturbation| at the last interior node / largest bulk conc., ()
            (0 for a thin layer and a rotating disc, whose far ends are a wall and the bulk).
        newton_residual: largest estimated error of the interface potential over the run,
            ``|g / g'|`` with ``g = E - E_app + Ru i``, V, ().
        reaction_layer: mechanisms only (else None): the first grid spacing over the thinnest
            reaction layer ``sqrt(D / k)``, (); above ``REACTION_LAYER_WARN`` it is not resolved.

    For a mechanism the "couples" are its electron transfers in order, then any surface couples,
    whose two concentrations are their coverages, mol/cm^2.
    """

    time: Float[Array, " n"]
    potential: Float[Array, " n"]
    current: Float[Array, " n"]
    faradaic_current: Float[Array, " n"]
    charging_current: Float[Array, " n"]
    interface_potential: Float[Array, " n"]
    couple_current: Float[Array, "n s"]
    surface_concentration: Float[Array, "n s 2"]
    final_concentration: Float[Array, "s 2 m"]
    grid_x: Float[Array, " m"]
    diffusion_length: Float[Array, "s 2"]
    far_field: Float[Array, ""]
    newton_residual: Float[Array, ""]
    reaction_layer: Float[Array, ""] | None = None

    def profile(self, x_cm: Float[Array, " k"]) -> Float[Array, "s 2 k"]:
        """Final concentrations (mM) at distances ``x_cm`` (cm) from the electrode."""
        x_cm = jnp.asarray(x_cm)
        xs = x_cm[None, None, :] / self.diffusion_length[..., None]
        interp = jnp.vectorize(lambda xq, f: jnp.interp(xq, self.grid_x, f), signature="(k),(m)->(k)")
        return interp(xs, self.final_concentration)

    def problems(self) -> list[str]:
        """Human-readable list of what went wrong (empty if nothing). Needs concrete values."""
        out = []
        if not bool(jnp.all(jnp.isfinite(self.current))):
            out.append("current is not finite: check the inputs (traced inputs are not validated)")
        if float(jnp.max(self.far_field)) > FAR_FIELD_WARN:
            out.append(
                f"grid too short: the far boundary is perturbed by {float(jnp.max(self.far_field)):.2e} "
                "of the bulk; increase SolverConfig.x_max"
            )
        if float(jnp.max(self.newton_residual)) > NEWTON_WARN_V:
            out.append(
                f"iR drop not converged: residual {float(jnp.max(self.newton_residual)):.2e} V; "
                "increase SolverConfig.newton_iterations or use a finer time step"
            )
        if self.reaction_layer is not None and float(jnp.max(self.reaction_layer)) > REACTION_LAYER_WARN:
            out.append(
                f"reaction layer not resolved: the first grid spacing is {float(jnp.max(self.reaction_layer)):.2g} "
                "reaction layers; lower SolverConfig.h0 below ~0.3 / sqrt(k T)"
            )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()
