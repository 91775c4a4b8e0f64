"""The simulator engine's SMC posterior against posteriors computed by quadrature, over prior draws.

For each of ``--n`` prior draws of a cv couple (the shipped model's cv/intermediate prior), only
E0 and D_red are free (the E1/2 ridge: E1/2 ~ E0 + (RT/2F) ln(D_red / D_ox)); every other slot is
known. The trace is simulated, noise 0.02 mA is added, and the posterior is computed twice: by
tempered SMC (1,024 particles) and on a 161 x 161 grid spanning the SMC mean +- 8 sd (clipped to
the prior box; the prior is uniform in E0 and ln D_red, so the grid weights are the likelihood).
Prints the sd ratio SMC / grid, the difference of the posterior CDFs at the truth, and the SBC
statistics (KS p-value, 50 % and 90 % central-interval coverage) of both: a grid posterior is
exact up to its resolution, so its SBC must pass and SMC must agree with it.

Run: ``python bench/validate_posterior_grid.py [--n 200]`` (~4 s per draw on 2 CPU cores).
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
from scipy import stats

from ecsfm.data import ParamSpace
from ecsfm.fm import load_surrogate
from ecsfm.posterior import PosteriorInferenceConfig, SMCPosteriorConfig, infer_parameter_posterior
from ecsfm.posterior.engines import simulator_forward
from ecsfm.fm import default_assets
from ecsfm.studies.sbc import _draws

FREE = ("e0", "ln_d_red")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    model, normalizers, meta, geometry = load_surrogate(default_assets()[0].parent)
    layout = ParamSpace(int(geometry["max_species"]))
    n_base = int(geometry["phys_dim_base"])
    prior = meta["priors"]["cv/intermediate"]["species"]
    idx = [layout.index(name, 0) for name in FREE]
    box = [(np.log(prior[n]["low"]), np.log(prior[n]["high"])) if n.startswith("ln_") else (prior[n]["low"], prior[n]["high"])
           for n in FREE]
    cfg = PosteriorInferenceConfig(obs_noise_std=0.02, engine="simulator", method="smc",
                                   smc=SMCPosteriorConfig(n_particles=1024))
    u_smc, u_grid, sd_ratio = [], [], []
    for job in _draws(meta, geometry, "cv", "intermediate", args.n, 0.02, args.seed):
        core = np.asarray(job["p_core"])
        known = np.ones(core.size, bool)
        known[idx] = False
        obs = np.asarray(job["observed"])
        post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry, observed_current=obs,
                                         applied_signal=np.asarray(job["signal"]), known_p_core=core,
                                         known_p_mask=known, config=cfg, seed=int(job["k"]), meta=meta)
        s = np.asarray(post["posterior_samples_raw"], np.float64)[:, idx]
        m, sd = s.mean(0), s.std(0)
        axes = [np.linspace(max(lo, m[j] - 8 * sd[j]), min(hi, m[j] + 8 * sd[j]), 161) for j, (lo, hi) in enumerate(box)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
        forward = simulator_forward(meta, geometry, "cv", layout.active_couples(core[:n_base]))
        p = np.tile(core[:n_base], (pts.shape[0], 1))
        p[:, idx] = pts
        ll = np.concatenate([-0.5 * np.sum((np.asarray(forward(jnp.asarray(p[b:b + 4096], jnp.float32))[0], np.float64)
                                             - obs) ** 2, axis=1) / 0.02**2 for b in range(0, len(p), 4096)])
        w = np.exp(ll - ll.max())
        w /= w.sum()
        g_mean = w @ pts
        u_smc.append(np.mean(s < core[idx], axis=0))
        u_grid.append(w @ (pts < core[idx]))
        sd_ratio.append(sd / np.sqrt(w @ (pts - g_mean) ** 2))
    u_smc, u_grid, sd_ratio = map(np.asarray, (u_smc, u_grid, sd_ratio))
    print(f"{args.n} prior draws of a cv couple, free: {', '.join(FREE)}")
    for j, name in enumerate(FREE):
        print(f"{name:10s} sd SMC / grid: median {np.median(sd_ratio[:, j]):.3f}, range {sd_ratio[:, j].min():.3f}-"
              f"{sd_ratio[:, j].max():.3f}; |CDF_SMC - CDF_grid| at the truth: mean {np.mean(np.abs(u_smc[:, j] - u_grid[:, j])):.3f}, "
              f"max {np.max(np.abs(u_smc[:, j] - u_grid[:, j])):.3f}")
        for label, u in (("grid", u_grid[:, j]), ("SMC", u_smc[:, j])):
            print(f"    SBC {label:4s}: KS p {stats.kstest(u, 'uniform').pvalue:.3f}, 50 % interval covers "
                  f"{np.mean(np.abs(u - 0.5) <= 0.25):.3f}, 90 % covers {np.mean(np.abs(u - 0.5) <= 0.45):.3f}")


if __name__ == "__main__":
    main()
