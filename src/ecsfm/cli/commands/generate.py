"""``ecsfm generate``: a dataset of simulated voltammograms (resumable)."""

from __future__ import annotations

from pathlib import Path

from ... import data

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    pg = subparsers.add_parser("generate", help="generate (or finish) a dataset of simulated voltammograms")
    pg.add_argument("--recipe", default="curriculum_multitask",
                    help="baseline_random, curriculum_multitask (default), stress_mixture or microdisc_multitask (a 10 um "
                         "disc with edge diffusion)")
    pg.add_argument("--n-samples", type=int, required=True, help="base samples (rows before augmentation)")
    pg.add_argument("--chunk-size", type=int, default=4096, help="base samples per chunk file (default 4096)")
    pg.add_argument("--max-species", type=int, default=2, help="couple slots per row (default 2)")
    pg.add_argument("--target-len", type=int, default=256, help="points per trace (default 256)")
    pg.add_argument("--nx", type=int, default=16, help="points per concentration profile (default 16)")
    pg.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    pg.add_argument("--out", type=Path, required=True, help="dataset folder (created; rerun to resume)")
    where = pg.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="local worker processes (Dask LocalCluster)")
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, tcp://host:port")
    pg.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    plan = data.Plan(recipe=args.recipe, n_samples=args.n_samples, chunk_size=args.chunk_size,
                     max_species=args.max_species, target_len=args.target_len, nx=args.nx, seed=args.seed)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers: must be >= 1, got {args.workers}")
    manifest = data.generate(plan, args.out, workers=args.workers, scheduler=args.scheduler,
                             progress=not args.no_progress)
    gen = manifest["generation"]
    print(f"{args.out}: {manifest['n_rows']} rows in {len(manifest['chunks'])} chunks "
          f"(splits {manifest['split']['rows']}); this run {gen['elapsed_s_this_run']:.1f} s")
    return 0
