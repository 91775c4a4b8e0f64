"""Is it the sampler? SBC of the package's SMC on a linear-Gaussian likelihood with the cv prior.

The simulator-engine SBC of the cv task (nine free parameters) found ranks non-uniform. This
takes the simulator out: the cv current is linearised once at a reference point,
``i(p) = i_ref + J (p - p_ref)`` (central differences of ``ecsfm.sim`` in the base coordinates of
the nine free slots; noise-scaled singular values from ~700 down to ~0.04, so a few directions are
pinned and the rest fill the prior's box, as in the real problem), truths are drawn from the
dataset's cv prior, data from that linear model plus Gaussian noise, and the package's inference
(``infer_parameter_posterior`` with ``log_likelihood_override``, ``method="smc"``) is scored by SBC.
Prior, coordinates, sampler and rank statistic are the package's; the likelihood is exact. Exact
inference gives uniform ranks, so a failure here is the sampler's.

It was: with the earlier move rule (``--jump-target 0.5 --final-jump-target 0.5 --max-moves 16``)
the pooled central 68.3 / 95.4 % intervals covered 0.634 / 0.930 over 1,000 draws (KS p 0.0006
for ln Ru); with the defaults now (1 x dim per stage, 2 x dim at temperature 1, at most 32 moves)
0.671 / 0.943, every parameter's KS p >= 0.085.

Run: ``python bench/sbc_linear_smc.py [--n 1000] [--particles 1024] [--jump-target J]
[--final-jump-target F] [--max-moves M]`` (~0.8 s per draw at the defaults on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats

from ecsfm.data import ParamSpace, PriorSpec
from ecsfm.data import simulate_rows as _simulate_rows
from ecsfm.fm import load_surrogate
from ecsfm.posterior import PosteriorInferenceConfig, SMCPosteriorConfig, infer_parameter_posterior
from ecsfm.fm import default_assets

NOISE = 0.02  # mA
SLOTS = ("e0", "ln_k0", "alpha", "ln_d_ox", "ln_d_red", "c_ox", "c_red")


def linearised_cv(meta, geometry, space):
    """Reference base vector, the nine free slots, i_ref (L,), J (L, 9) and the applied signal."""
    ref = space.filler()
    for name, v in dict(e0=0.0, ln_k0=math.log(0.01), alpha=0.5, ln_d_ox=math.log(1e-5), ln_d_red=math.log(1e-5),
                        c_ox=1.0, c_red=0.1).items():
        ref[space.index(name, 0)] = v
    for name, v in dict(ln_ru=math.log(1.0), ln_cdl=math.log(5e-6), ln_time_scale=math.log(20.0)).items():
        ref[space.index(name)] = v
    free = [space.index(name, 0) for name in SLOTS] + [space.index("ln_ru"), space.index("ln_cdl")]
    h = 1e-3
    rows = np.tile(ref, (1 + 2 * len(free), 1))
    for j, slot in enumerate(free):
        rows[1 + 2 * j, slot] += h
        rows[2 + 2 * j, slot] -= h
    i, e, _ = _simulate_rows(meta, geometry, "cv", rows)
    jac = np.stack([(i[1 + 2 * j] - i[2 + 2 * j]) / (2 * h) for j in range(len(free))], 1)
    return ref, free, i[0], jac, e[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--particles", type=int, default=1024)
    ap.add_argument("--jump-target", type=float, default=SMCPosteriorConfig.jump_target)
    ap.add_argument("--final-jump-target", type=float, default=SMCPosteriorConfig.final_jump_target)
    ap.add_argument("--max-moves", type=int, default=SMCPosteriorConfig.max_moves)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    model, normalizers, meta, geometry = load_surrogate(str(default_assets()[0].parent))
    space = ParamSpace(int(geometry["max_species"]))
    n_base = int(geometry["phys_dim_base"])
    prior = PriorSpec.from_dict(meta["priors"]["cv/intermediate"])
    ref, free, i_ref, jac, signal = linearised_cv(meta, geometry, space)
    print("noise-scaled singular values of J:", np.round(np.linalg.svd(jac / NOISE, compute_uv=False), 2))
    tasks, stages = meta["task_names"], meta["stage_names"]
    onehots = np.concatenate([np.eye(len(tasks))[tasks.index("cv")], np.eye(len(stages))[stages.index("intermediate")]])
    rng = np.random.default_rng(args.seed)
    truths = prior.sample(rng, args.n, space)
    truths[:, space.index("ln_time_scale")] = ref[space.index("ln_time_scale")]
    smc = SMCPosteriorConfig(n_particles=args.particles, jump_target=args.jump_target,
                              final_jump_target=args.final_jump_target, max_moves=args.max_moves)
    cfg = PosteriorInferenceConfig(obs_noise_std=NOISE, engine="simulator", method="smc", smc=smc)
    known = np.zeros(n_base + onehots.size, bool)
    known[n_base:] = True
    u = np.empty((args.n, len(free)))
    t0 = time.perf_counter()
    for k in range(args.n):
        core = np.concatenate([truths[k], onehots])
        y = i_ref + jac @ (truths[k, free] - ref[free]) + rng.normal(0.0, NOISE, i_ref.size)

        def log_likelihood(p_core, y=y):
            r = y[None, :] - i_ref[None, :] - (np.asarray(p_core, np.float64)[:, free] - ref[free]) @ jac.T
            return -0.5 * np.sum((r / NOISE) ** 2, axis=1)

        post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry, observed_current=y,
                                         applied_signal=signal, known_p_core=core, known_p_mask=known, config=cfg,
                                         seed=k, log_likelihood_override=log_likelihood)
        s = np.asarray(post["posterior_samples_raw"], np.float64)
        w = np.asarray(post["posterior_weights"], np.float64)
        u[k] = (w / w.sum()) @ (s[:, free] < core[free])
        if (k + 1) % 100 == 0:
            print(f"{k + 1} draws, {time.perf_counter() - t0:.0f} s", flush=True)
    cover = {c: float(np.mean(np.abs(u - 0.5) <= c / 2)) for c in (0.5, 0.6827, 0.9, 0.9545)}
    print("pooled central-interval coverage: " + ", ".join(f"{c:.3g}: {v:.3f}" for c, v in cover.items()))
    for j, slot in enumerate(free):
        print(f"  {space.names[slot]:10s} KS p {stats.kstest(u[:, j], 'uniform').pvalue:.4f}  "
              f"50 % {np.mean(np.abs(u[:, j] - 0.5) <= 0.25):.3f}  90 % {np.mean(np.abs(u[:, j] - 0.5) <= 0.45):.3f}")


if __name__ == "__main__":
    main()
