"""Where a missed posterior comes from: the search, or the likelihood it searched?

For ``--cases`` fresh prior draws of a task (simulated now, never in training), observed densely
with noise 0.02 mA and inferred at the seed's settings without the prior weight, this evaluates
the inference's own negative log posterior phi (prior x likelihood, in the sampler's
coordinates) at the truth and at the mode the Laplace stage found, and runs the same
Gauss-Newton search from the truth:

* the run from the truth ends lower than the mode found -> the search missed the truth's mode;
* otherwise the truth belongs to the mode found, and phi(truth) - phi(mode) says how far out in
  the posterior it sits: for an exact, near-Gaussian posterior 2 x that difference is about
  chi-square with as many degrees of freedom as free parameters (median chi2_d / 2; above the
  95 % point in 5 % of the cases).

Both engines see the same cases and the same sampler, so the difference between them is the
surrogate's likelihood. The inference's phi is captured by wrapping
``ecsfm.fm.posterior.run_cem_posterior`` (the functions it is handed), not rebuilt here.

Run: ``python bench/truth_vs_mode.py [--task cv] [--cases 24] [--engines surrogate simulator]``
(~10 s per case and engine on 2 CPU cores).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from ecsfm import posterior as P
from ecsfm.posterior import infer as infer_module
from ecsfm.posterior.optimize import levenberg_marquardt
from ecsfm.data import CoreLayout
from ecsfm.fm import fresh_prior_rows, load_surrogate
from ecsfm.fm import default_assets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="cv")
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--engines", nargs="+", default=["surrogate", "simulator"], choices=("surrogate", "simulator"))
    args = ap.parse_args()
    model, normalizers, meta, geometry = load_surrogate(default_assets()[0].parent)
    nb = int(geometry["phys_dim_base"])
    ti = meta["task_names"].index(args.task)
    keys = [k for k in meta["priors"] if k.split("/")[0] == args.task]
    rng = np.random.default_rng([args.seed, ti])
    p, which, truth_i, e = fresh_prior_rows(meta, geometry, args.task, keys, args.cases, rng)
    obs = truth_i + rng.normal(0.0, 0.02, truth_i.shape)
    known = np.zeros(int(geometry["phys_dim_core"]), bool)
    known[nb:] = True

    seen = {}
    inner = infer_module.run_cem_posterior  # the name inference calls

    def capture(log_prior, log_likelihood, dim, config, **kw):
        res = inner(log_prior, log_likelihood, dim, config, **kw)
        seen.update(res=res, coords=kw["coords"], phi_fn=kw["phi_fn"], newton_fn=kw["newton_fn"])
        return res

    infer_module.run_cem_posterior = capture
    print(f"{args.cases} fresh {args.task} cases, dense, noise 0.02 mA, seed settings, no prior weight")
    for engine in args.engines:
        cfg = P.PosteriorInferenceConfig(obs_noise_std=0.02, engine=engine, parameter_error=False)
        gaps, missed, dims = [], 0, []
        for r in range(args.cases):
            core = CoreLayout.from_meta(geometry["meta"]).core(p[r], ti, which[r]).astype(np.float64)
            P.infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry, observed_current=obs[r],
                                        applied_signal=e[r], known_p_core=core, known_p_mask=known, config=cfg, seed=r,
                                        meta=meta)
            space, phi = seen["coords"], seen["phi_fn"]
            truth = space.canonical_order(core)[space.free]
            y_truth = space.from_z(np.where(space._log_kind, np.log(np.maximum(truth, 1e-300)), truth)[None])
            mode = seen["res"]["mode"][None]
            _, phi_local, _ = levenberg_marquardt(seen["newton_fn"], y_truth, cfg.cem.n_newton, phi_fn=phi)
            phi_truth, phi_mode = float(phi(y_truth)[0]), float(phi(mode)[0])
            if phi_local[0] < phi_mode - 2.0:
                missed += 1
            else:
                gaps.append(phi_truth - phi_mode)
                dims.append(space.free.size)
        d = int(np.median(dims)) if dims else 0
        gaps = np.asarray(gaps)
        print(f"{engine:10s} search missed the truth's mode in {missed} of {args.cases}; otherwise phi(truth) - "
              f"phi(mode): median {np.median(gaps):.1f} (exact posterior: {stats.chi2.median(d) / 2:.1f}, {d} "
              f"parameters), beyond the 95 % region in {np.mean(gaps > stats.chi2.ppf(0.95, d) / 2):.0%} (exact: 5 %)")


if __name__ == "__main__":
    main()
