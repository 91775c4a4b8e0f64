"""``ecsfm train-posterior``: the amortised posterior q(theta | trace) on a dataset (resumable)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    pt = subparsers.add_parser("train-posterior",
                               help="train the amortised posterior (method amortized) on a dataset (resumable)")
    pt.add_argument("--data", type=Path, required=True, help="dataset folder (with manifest.json)")
    pt.add_argument("--out", type=Path, required=True, help="model folder (rerun to resume)")
    pt.add_argument("--steps", type=int, default=16000)
    pt.add_argument("--batch-size", type=int, default=512)
    pt.add_argument("--lr", type=float, default=1e-3)
    pt.add_argument("--save-every", type=int, default=500, help="checkpoint every this many steps")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ...posterior import train_amortized

    rebuild = [f"ecsfm train-posterior --data DATA --out MODEL --steps {args.steps} --batch-size {args.batch_size} "
               f"--lr {args.lr:g} --seed {args.seed}"]
    record = train_amortized(args.data, args.out, steps=args.steps, batch_size=args.batch_size,
                             learning_rate=args.lr, save_every=args.save_every, seed=args.seed,
                             progress=not args.no_progress, rebuild=rebuild)
    val = record["val_loss"]
    print(f"{args.out}: {record['steps']} steps (resumed from {record['resumed_from_step']}), validation loss "
          f"{'n/a' if val is None else f'{val:.3f}'} nats, {record['seconds_this_run']:.0f} s this run")
    return 0
