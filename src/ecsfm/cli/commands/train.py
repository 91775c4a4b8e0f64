"""``ecsfm train``: the flow-matching surrogate on a dataset (resumable)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    pt = subparsers.add_parser("train", help="train the flow-matching surrogate on a dataset (resumable)")
    pt.add_argument("--data", type=Path, required=True, help="dataset folder (with manifest.json)")
    pt.add_argument("--out", type=Path, required=True, help="model folder (rerun to resume)")
    pt.add_argument("--arch", default="conv", choices=("conv", "mlp"))
    pt.add_argument("--steps", type=int, default=20000)
    pt.add_argument("--batch-size", type=int, default=128)
    pt.add_argument("--hidden-size", type=int, default=32)
    pt.add_argument("--depth", type=int, default=4)
    pt.add_argument("--cond-dim", type=int, default=64)
    pt.add_argument("--lr", type=float, default=2e-3)
    pt.add_argument("--eval-every", type=int, default=500)
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this wall time")
    pt.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ...fm import TrainConfig, train

    config = TrainConfig(arch=args.arch, steps=args.steps, batch_size=args.batch_size, hidden_size=args.hidden_size,
                         depth=args.depth, cond_dim=args.cond_dim, lr=args.lr, eval_every=args.eval_every,
                         steps_per_call=min(50, args.eval_every), seed=args.seed)
    history = train(args.data, args.out, config, progress=not args.no_progress, max_minutes=args.max_minutes)
    last = history["step"][-1] if history["step"] else 0
    print(f"{args.out}: {last} steps, best val loss {min(history['val_loss'], default=float('nan')):.4f}")
    return 0
