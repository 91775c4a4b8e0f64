"""Dataset generation throughput (rows per second), with the share of time in the simulator,
in chunk I/O and in the rest (Python: prior sampling, read-out, augmentation, bookkeeping).

The issue's case: curriculum_multitask, max_species 2, target_len 256, on the 2-core CPU with two
Dask worker processes, chunk writes included. Compilation (once per task and worker) is part of
the first chunks; the steady-state rate excludes each worker's first chunk.

Run: ``python bench/bench_generate.py [--n-samples 65536] [--chunk-size 4096] [--workers 2]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ecsfm import data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="curriculum_multitask")
    ap.add_argument("--n-samples", type=int, default=65536)
    ap.add_argument("--chunk-size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-species", type=int, default=2)
    ap.add_argument("--target-len", type=int, default=256)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="ecsfm_bench_"))
    try:
        plan = data.Plan(recipe=args.recipe, n_samples=args.n_samples, chunk_size=args.chunk_size,
                         max_species=args.max_species, target_len=args.target_len)
        t0 = time.perf_counter()
        manifest = data.generate(plan, out, workers=args.workers, progress=False)
        wall = time.perf_counter() - t0
        sides = [json.loads((out / f"chunk_{k}.json").read_text()) for k in range(plan.n_chunks)]
        sim_s = sum(s["qc"]["simulate_s"] for s in sides)
        write_s = sum(s["qc"]["write_s"] for s in sides)
        total_s = sum(s["total_s"] for s in sides)
        rows = manifest["n_rows"]
        first = sorted(sides, key=lambda s: -s["total_s"])[: max(1, args.workers)]  # compile-laden
        steady_rows = rows - sum(s["rows"] for s in first)
        steady_s = (total_s - sum(s["total_s"] for s in first)) / max(1, args.workers)
        print(f"{args.recipe}, S={args.max_species}, L={args.target_len}, {args.workers} workers, "
              f"{plan.n_chunks} chunks of {args.chunk_size} base samples")
        print(f"rows written: {rows} ({args.n_samples} simulated + {rows - args.n_samples} exact twins), "
              f"{sum(c['rows'] for c in manifest['chunks']) * 0 + sum((out / c['file']).stat().st_size for c in manifest['chunks']) / 1e6:.0f} MB")
        print(f"wall clock incl. cluster start and compilation: {wall:.1f} s -> {rows / wall:,.0f} rows/s, "
              f"{args.n_samples / wall:,.0f} simulated rows/s   target 5000 rows/s: ratio {rows / wall / 5000:.2f}")
        print(f"steady state (each worker's first chunk excluded): {steady_rows / steady_s:,.0f} rows/s")
        print(f"time in workers: simulator {sim_s / total_s:.0%}, chunk I/O {write_s / total_s:.0%}, "
              f"other Python {(total_s - sim_s - write_s) / total_s:.0%} (of {total_s:.1f} worker-s)")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
