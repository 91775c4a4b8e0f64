"""Simulation of one task's rows: the compiled runner the generator and the surrogate's checks share.

``task_runner`` builds (once per argument set) the jitted simulator that turns base parameter
vectors into the dataset's readout of a task's traces; ``simulate_rows`` runs it with the
simulator settings a dataset (or a model trained on it) records.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import sim
from ._space import SPECIES_QUANTITIES, ParamSpace
from ._tasks import TASKS

__all__ = ["task_runner", "simulate_rows", "electrode_key", "REPORT_XI_MAX"]

#: Concentration profiles are reported at ``nx`` points on [0, REPORT_XI_MAX] diffusion lengths
#: ``sqrt(D T)`` of each species (its own D, the protocol's T).
REPORT_XI_MAX = 4.0


@functools.lru_cache(maxsize=64)
def task_runner(task: str, target_len: int, nx: int, max_species: int, area: float,
                temperature: float, config: sim.SolverConfig, electrode: tuple = ("planar", None)):
    """The compiled simulator of one task's rows (cached per argument set).

    ``task``: a name of ``TASKS``; ``target_len`` samples per trace, ``nx`` profile points,
    ``max_species`` couple slots, ``area`` (cm^2), ``temperature`` (K), solver ``config``;
    ``electrode``: (name, radius in cm or None), a planar electrode or a ``sim`` disc, sphere or
    hemisphere (``electrode_key`` of a manifest's simulator section; its area is ``area``).
    Returns ``run(p)``: base vectors ``p`` (B, ParamSpace(max_species).size) ->
    ``(i (B, L) mA, e (B, L) V, t (B, L) s, profiles (B, S, 2, nx) mM, far_field (B,),
    newton_residual (B,) V)``, the dataset's readout of each trace.
    """
    spec = TASKS[task]
    template = spec.template(target_len)
    ro = spec.readout(target_len, template)
    space = ParamSpace(max_species)
    nodes = config.nodes()
    xi = np.linspace(0.0, REPORT_XI_MAX, nx)
    j1 = np.clip(np.searchsorted(nodes, xi, side="left"), 1, nodes.size - 1)
    j0 = j1 - 1
    wj = (xi - nodes[j0]) / (nodes[j1] - nodes[j0])
    potential = np.asarray(template.potential, np.float64)
    name, radius = electrode
    shape = sim.Planar() if name == "planar" else sim.GEOMETRIES[name](radius=radius)

    @jax.jit
    def run(p):
        p = p.astype(jnp.float32)
        blk = {name: p[:, space.block(name)] for name, _, _ in SPECIES_QUANTITIES}
        couples = [
            sim.Couple(e0=blk["e0"][:, k], k0=jnp.exp(blk["ln_k0"][:, k]), alpha=blk["alpha"][:, k],
                       d_ox=jnp.exp(blk["ln_d_ox"][:, k]), d_red=jnp.exp(blk["ln_d_red"][:, k]),
                       c_ox=blk["c_ox"][:, k], c_red=blk["c_red"][:, k])
            for k in range(max_species)
        ]
        cell = sim.Cell(area=area, temperature=temperature, ru=jnp.exp(p[:, space.index("ln_ru")]),
                        cdl=jnp.exp(p[:, space.index("ln_cdl")]), geometry=shape)
        duration = jnp.exp(p[:, space.index("ln_time_scale")])
        wf = eqx.tree_at(lambda w: w.duration, template, duration)
        res = sim.simulate(wf, couples, cell, config=config)
        cur = res.current * 1e3  # A -> mA
        if "pos" in ro:
            i = cur[:, ro["pos"]] - cur[:, ro["neg"]]
            e = jnp.broadcast_to(jnp.asarray(ro["e"], jnp.float32), i.shape)
        else:
            w1 = jnp.asarray(ro["w1"], jnp.float32)
            i = cur[:, ro["i0"]] * (1 - w1) + cur[:, ro["i1"]] * w1
            e_row = potential[ro["i0"]] * (1 - ro["w1"]) + potential[ro["i1"]] * ro["w1"]
            e = jnp.broadcast_to(jnp.asarray(e_row, jnp.float32), i.shape)
        t = duration[:, None] * jnp.asarray(ro["tau"], jnp.float32)[None, :]
        fc = res.final_concentration  # (B, S, 2, M+1)
        w = jnp.asarray(wj, jnp.float32)
        prof = fc[..., j0] * (1 - w) + fc[..., j1] * w  # (B, S, 2, nx)
        return i, e, t, prof, res.far_field, res.newton_residual

    return run


def electrode_key(simulator: Mapping) -> tuple:
    """``task_runner``'s ``electrode`` from a simulator section: (name, radius cm or None); planar
    when the section names none (datasets and models made before electrodes were recorded)."""
    spec = simulator.get("electrode") or {"name": "planar"}
    return spec["name"], (None if spec.get("radius_cm") is None else float(spec["radius_cm"]))


def simulate_rows(meta: Mapping, geometry: Mapping, task: str, p_base):
    """Simulate base vectors of one task as the dataset was simulated.

    ``meta``: a model metadata or manifest dict with its ``simulator`` section (``area_cm2``,
    ``temperature_K``, ``solver_config``); ``geometry``: sizes ``target_len``, ``nx``,
    ``max_species``; ``p_base`` (n, ParamSpace(max_species).size). Returns ``(current (n, L) mA
    float64, applied signal (n, L) float64, run)`` with ``run`` the compiled ``task_runner``.
    Raises ValueError when ``meta`` has no simulator section.
    """
    simulator = meta.get("simulator")
    if simulator is None:
        raise ValueError("simulator: the metadata has no 'simulator' section (area, temperature, solver); "
                         "re-export the model with this ecsfm version")
    run = task_runner(task, int(geometry["target_len"]), int(geometry["nx"]), int(geometry["max_species"]),
                      float(simulator["area_cm2"]), float(simulator["temperature_K"]),
                      sim.SolverConfig(**simulator["solver_config"]), electrode_key(simulator))
    i, e, *_ = run(jnp.asarray(p_base, jnp.float32))
    return np.asarray(i, np.float64), np.asarray(e, np.float64), run
