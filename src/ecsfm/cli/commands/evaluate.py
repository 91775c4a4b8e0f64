"""``ecsfm evaluate``: the surrogate's scorecard against the simulator."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    pe = subparsers.add_parser("evaluate", help="the surrogate's scorecard against the simulator (JSON + plots)")
    pe.add_argument("--model", type=Path, required=True, help="model folder")
    pe.add_argument("--data", type=Path, required=True, help="dataset folder (its test split is used)")
    pe.add_argument("--out", type=Path, required=True, help="scorecard folder")
    pe.add_argument("--rows", type=int, default=384, help="test rows, spread evenly over tasks (default 384)")
    pe.add_argument("--draws", type=int, default=8, help="flow draws per row (default 8)")
    pe.add_argument("--steps", type=int, default=60, help="Euler steps (default 60)")
    pe.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ...fm import evaluate_surrogate

    card = evaluate_surrogate(args.model, args.data, args.out, n_rows=args.rows, n_draws=args.draws,
                              n_steps=args.steps, progress=not args.no_progress)
    o = card["overall"]["nrmse"]
    print(f"wrote {args.out}/scorecard.json: test NRMSE median {100 * o['median']:.2f} %, p90 {100 * o['p90']:.2f} %")
    for task, row in card["per_task"].items():
        print(f"  {task:16s} surrogate {100 * row['surrogate']['nrmse']['median']:6.2f} %   nearest neighbour "
              f"{100 * row['nearest_neighbour']['nrmse']['median']:6.2f} %   mean trace "
              f"{100 * row['mean_trace']['nrmse']['median']:6.2f} %")
    return 0
