"""Surrogate traces per second against simulator traces per second on the same rows.

For each task of a dataset's test split: a batch of rows (default 512) is run through the
surrogate (one draw, 60 Euler steps, one compiled program) and through the simulator (the
dataset's own task programs, native batching), both timed in this process after compilation.
Prints the ratio per task. Honest reading: for a single-couple CV the simulator is cheap and
usually faster; the surrogate pays off for expensive protocols and when one network call
replaces many simulations inside inference.

Run: ``python bench/bench_surrogate.py --model MODEL_DIR --data DATASET_DIR [--batch 512]``
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ecsfm.data import task_runner as _task_runner
from ecsfm.fm._data import load_rows
from ecsfm.fm import load_surrogate
from ecsfm.fm.train import sample_current


def best_of(fn, repeats=3):
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    model, normalizers, meta, geom = load_surrogate(args.model)
    data = load_rows(args.data)
    man = data.manifest
    plan = man["plan"]
    base = geom["phys_dim_base"]
    from ecsfm.sim import SolverConfig

    config = SolverConfig(**plan["solver"])
    print(f"device {jax.devices()[0].platform}, batch {args.batch}, surrogate {args.steps} Euler steps, 1 draw")
    for t, name in enumerate(man["task_names"]):
        rows = np.flatnonzero(data.task_id == t)
        if rows.size == 0:
            continue
        rows = np.resize(rows, args.batch)
        e, p = data.e[rows, 0], data.p[rows]
        run = _task_runner(name, geom["target_len"], geom["nx"], geom["max_species"],
                           man["recipe"]["area_cm2"], man["recipe"]["temperature_K"], config)
        p_base = jnp.asarray(p[:, :base])
        t_sim = best_of(lambda: run(p_base))
        t_sur = best_of(lambda: sample_current(model, normalizers, jax.random.PRNGKey(0), e, p,
                                               n_draws=1, n_steps=args.steps))
        print(f"{name:16s} simulator {args.batch / t_sim:10.0f} traces/s   surrogate {args.batch / t_sur:10.0f} "
              f"traces/s   surrogate/simulator {t_sim / t_sur:6.2f}")


if __name__ == "__main__":
    main()
