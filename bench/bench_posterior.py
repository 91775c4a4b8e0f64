"""Seconds per posterior inference, both engines, at the seed notebook's settings.

Cases: the first ``--cases`` cv rows of a held-out chunk (default: the shipped assets), dense
observations with noise 0.02 mA. Timed in this process after one warm-up inference per
configuration (whose time is reported as the compile time):

* surrogate engine, CEM + Laplace, 64 particles x 4 iterations, 2 MC draws, 60 Euler steps;
* simulator engine, the same CEM settings;
* simulator engine, tempered SMC with 2,048 particles.

Prints seconds per case and the ratio to the targets (surrogate <= 1 s, simulator CEM <= 0.05 s,
SMC <= 2 s), all measured in one run.

Run: ``python bench/bench_posterior.py [--model DIR] [--chunk FILE] [--cases 4]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ecsfm.fm import load_surrogate
from ecsfm.posterior import PosteriorInferenceConfig, SMCPosteriorConfig, infer_parameter_posterior
from ecsfm.data import CoreLayout
from ecsfm.fm import default_assets


def main() -> None:
    ap = argparse.ArgumentParser()
    ckpt, chunk = default_assets()
    ap.add_argument("--model", type=Path, default=ckpt.parent)
    ap.add_argument("--chunk", type=Path, default=chunk)
    ap.add_argument("--cases", type=int, default=4)
    args = ap.parse_args()
    model, normalizers, meta, geometry = load_surrogate(args.model)
    with np.load(args.chunk, allow_pickle=False) as z:
        rows = np.flatnonzero(z["task_id"] == meta["task_names"].index("cv"))[: args.cases + 1]
        cases = [(z["e"][r], z["i"][r], CoreLayout.from_meta(geometry["meta"]).core(z["p"][r], int(z["task_id"][r]), int(z["stage_id"][r]))) for r in rows]
    known = np.zeros(geometry["phys_dim_core"], bool)
    known[geometry["phys_dim_base"]:] = True
    rng = np.random.default_rng(0)
    configs = {
        "surrogate CEM (seed settings)": (PosteriorInferenceConfig(obs_noise_std=0.02), 1.0),
        "simulator CEM (seed settings)": (PosteriorInferenceConfig(obs_noise_std=0.02, engine="simulator"), 0.05),
        "simulator SMC (2048 particles)": (PosteriorInferenceConfig(obs_noise_std=0.02, engine="simulator", method="smc",
                                                                   smc=SMCPosteriorConfig(n_particles=2048)), 2.0),
    }
    print(f"{len(cases) - 1} cv cases, model {args.model}")
    floor = network_floor(model, normalizers, geometry, meta, cases[0])
    print(f"surrogate network alone at the seed's settings (5 batches of 64 particles x 2 draws x 60 steps): "
          f"{floor:.2f} s/case, target 1.0 s: ratio {floor:.2f} (the Laplace stage's Jacobians come on top)")
    for name, (cfg, target) in configs.items():
        times = []
        for k, (e, i, core) in enumerate(cases):
            obs = i + rng.normal(0, 0.02, i.size)
            t0 = time.perf_counter()
            post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry,
                                             observed_current=obs, applied_signal=e, known_p_core=core,
                                             known_p_mask=known, config=cfg, seed=k)
            times.append(time.perf_counter() - t0)
        per_case = float(np.median(times[1:]))
        print(f"{name:32s} {per_case:8.3f} s/case (first call incl. compile {times[0]:.2f} s), "
              f"target {target} s: ratio {per_case / target:.2f}, evaluations/case {post['n_likelihood_evaluations']}")


def network_floor(model, normalizers, geometry, meta, case, n_particles: int = 64, n_batches: int = 5) -> float:
    """Seconds the surrogate's network alone needs at the seed's settings: ``n_batches`` likelihood
    batches (4 CEM iterations + the Laplace draws) of ``n_particles`` x 2 draws x 60 Euler steps."""
    import jax
    import jax.numpy as jnp

    from ecsfm import posterior as P
    from ecsfm.posterior import engines

    e, _, core = case
    known = np.zeros(geometry["phys_dim_core"], bool)
    known[geometry["phys_dim_base"]:] = True
    space = P.ParameterSpace(meta, core, known, geometry)
    forward = engines.surrogate_forward(model, normalizers, geometry, e, 2, 60, 0)
    y = jnp.zeros((n_particles, space.dim), jnp.float32)
    jax.block_until_ready(engines.forward_batch(forward, space.arrays, y))
    t0 = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(engines.forward_batch(forward, space.arrays, y))
    return n_batches * (time.perf_counter() - t0) / 3


if __name__ == "__main__":
    main()
