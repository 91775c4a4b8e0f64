"""Soak: many consecutive posterior inferences in one process, resident memory before and after.

Cases: the cv rows of a held-out chunk (default: the shipped assets), dense observations with
noise 0.02 mA, fitted in turn (cycling through the rows) with the simulator engine and CEM at the
seed settings (64 particles x 4 iterations), each with its own seed. The resident set size
(``VmRSS`` of /proc/self/status) is read after ``--warmup`` inferences (compilation and caches
settled) and after the last; the growth in between must stay within ``--limit`` percent.

Run: ``python bench/bench_soak.py [--n 1000] [--warmup 50] [--limit 10]``
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np

from ecsfm.fm import load_surrogate
from ecsfm.posterior import PosteriorInferenceConfig, infer_parameter_posterior
from ecsfm.data import CoreLayout
from ecsfm.fm import default_assets


def rss_mib() -> float:
    """Resident set size of this process now (MiB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS line in /proc/self/status (not Linux?)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ckpt, chunk = default_assets()
    ap.add_argument("--model", type=Path, default=ckpt.parent)
    ap.add_argument("--chunk", type=Path, default=chunk)
    ap.add_argument("--n", type=int, default=1000, help="inferences in all (default 1000)")
    ap.add_argument("--warmup", type=int, default=50, help="inferences before the first reading (default 50)")
    ap.add_argument("--limit", type=float, default=10.0, help="allowed RSS growth after warm-up, %% (default 10)")
    args = ap.parse_args()
    if not 0 < args.warmup < args.n:
        raise SystemExit("--warmup must be in (0, --n)")
    model, normalizers, meta, geometry = load_surrogate(args.model)
    with np.load(args.chunk, allow_pickle=False) as z:
        rows = np.flatnonzero(z["task_id"] == meta["task_names"].index("cv"))
        cases = [(z["e"][r], z["i"][r], CoreLayout.from_meta(geometry["meta"]).core(z["p"][r], int(z["task_id"][r]), int(z["stage_id"][r]))) for r in rows]
    known = np.zeros(geometry["phys_dim_core"], bool)
    known[geometry["phys_dim_base"]:] = True
    config = PosteriorInferenceConfig(obs_noise_std=0.02, engine="simulator")
    rng = np.random.default_rng(0)
    print(f"{args.n} inferences (simulator engine, CEM at the seed settings) cycling over {len(cases)} cv rows")
    rss0 = None
    t0 = time.perf_counter()
    for k in range(args.n):
        e, i, core = cases[k % len(cases)]
        post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry, meta=meta,
                                         observed_current=i + rng.normal(0.0, 0.02, i.size), applied_signal=e,
                                         known_p_core=core, known_p_mask=known, config=config, seed=k)
        del post
        if k + 1 == args.warmup:
            gc.collect()
            rss0, t_warm = rss_mib(), time.perf_counter()
            print(f"after {args.warmup} (warm-up): RSS {rss0:.1f} MiB, {t_warm - t0:.1f} s")
        elif rss0 is not None and (k + 1) % 250 == 0:
            print(f"after {k + 1}: RSS {rss_mib():.1f} MiB")
    gc.collect()
    rss1 = rss_mib()
    per = (time.perf_counter() - t_warm) / (args.n - args.warmup)
    growth = 100.0 * (rss1 - rss0) / rss0
    verdict = "within" if growth <= args.limit else "NOT within"
    print(f"after {args.n}: RSS {rss1:.1f} MiB; growth after warm-up {growth:+.2f} % ({verdict} {args.limit:g} %); "
          f"{per:.3f} s per inference")


if __name__ == "__main__":
    main()
