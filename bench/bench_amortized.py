"""Seconds per case of the amortised posterior against simulator SMC, on the same held-out cases.

Cases: rows of one task of the shipped held-out chunk (default cv), observed densely with noise
sd 0.02 mA (the seed's dense_clean). Each is inferred with the simulator engine by
``method="amortized"`` (q's draws corrected by importance sampling, SMC from q when the weights
fail) and by ``method="smc"`` (tempered SMC from the prior, 2,048 particles); after one call per
method for compilation, the median wall time per case of each and their ratio are printed in one
run, with the median importance-sampling efficiency (ESS / draws), the fallback rate and the
interval coverage of the truth by each method's central 95 % intervals. Last, the throughput of q
alone for a batch of observations at once (draws and their log density for every observation,
one compiled call).

Run: ``python bench/bench_amortized.py [--task cv] [--cases 20] [--model DIR] [--batch 1000]``
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ecsfm.data import CoreLayout
from ecsfm.fm import DEFAULT_MODEL_DIR, default_assets, load_surrogate
from ecsfm.posterior import PosteriorInferenceConfig, infer_parameter_posterior, load_amortized


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="cv")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="amortised model folder")
    ap.add_argument("--batch", type=int, default=1000, help="observations in the batch-throughput test")
    args = ap.parse_args()
    model, norms, meta, geometry = load_surrogate(default_assets()[0].parent)
    layout = CoreLayout.from_meta(meta)
    with np.load(default_assets()[1]) as z:
        rows = np.flatnonzero(z["task_id"] == list(meta["task_names"]).index(args.task))[: args.cases + 1]
        cases = [(layout.core(z["p"][k], int(z["task_id"][k]), int(z["stage_id"][k])), z["i"][k], z["e"][k])
                 for k in rows]
    rng = np.random.default_rng(0)
    out = {}
    for method in ("amortized", "smc"):
        cfg = PosteriorInferenceConfig(method=method, engine="simulator", obs_noise_std=0.02)
        times, eff, fell, inside = [], [], [], []
        for j, (core, current, signal) in enumerate(cases):
            obs = current + rng.normal(0.0, 0.02, current.size)
            t0 = time.perf_counter()
            post = infer_parameter_posterior(model=model, normalizers=norms, geometry=geometry, observed_current=obs,
                                             applied_signal=signal, known_p_core=core,
                                             known_p_mask=layout.known_mask(), config=cfg, seed=j,
                                             amortized_model=args.model)
            if j == 0:
                continue  # compilation
            times.append(time.perf_counter() - t0)
            free = np.asarray(post["free_indices"])
            s, w = np.asarray(post["posterior_samples_raw"], np.float64)[:, free], np.asarray(post["posterior_weights"])
            order = np.argsort(s, axis=0)
            cdf = np.asarray([np.sum(w[order[:, i]][s[order[:, i], i] <= core[f]]) for i, f in enumerate(free)])
            inside += list(np.abs(cdf - 0.5) <= 0.477)
            if method == "amortized":
                diag = post["sampler"]["amortized"]
                eff.append(diag["efficiency"])
                fell.append(diag["fell_back"])
        out[method] = np.median(times)
        extra = (f", median IS efficiency {np.median(eff):.3f}, fallback {np.mean(fell):.0%}"
                 if method == "amortized" else "")
        print(f"{method:10s} median {np.median(times):.3f} s/case over {len(times)} {args.task} cases{extra}; "
              f"95 % interval coverage {np.mean(inside):.3f} ({len(inside)} slots)")
    print(f"amortized is {out['smc'] / out['amortized']:.1f}x faster than SMC per case (medians, one run)")
    q, ameta = load_amortized(args.model)
    ctx = jnp.zeros((args.batch, int(ameta["context_dim"])), jnp.float32)
    batched = jax.jit(jax.vmap(lambda c, k: q.sample_and_log_prob(k, 64, c)))
    keys = jax.random.split(jax.random.key(0), args.batch)
    jax.block_until_ready(batched(ctx, keys))
    t0 = time.perf_counter()
    jax.block_until_ready(batched(ctx, keys))
    dt = time.perf_counter() - t0
    print(f"q alone: {args.batch} observations x 64 draws with log density in {dt:.2f} s "
          f"({args.batch / dt:.0f} observations/s)")


if __name__ == "__main__":
    main()
