"""``ecsfm recalibrate``: refit a model's calibrated discrepancy and parameter error."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    pr = subparsers.add_parser("recalibrate", help="refit a model's calibrated discrepancy and parameter error on "
                                                   "fresh simulations")
    pr.add_argument("--model", type=Path, required=True, help="model folder (its model_meta.json is rewritten)")
    pr.add_argument("--rows-per-task", type=int, default=128, help="fresh simulated rows per task (default 128)")
    pr.add_argument("--seed", type=int, default=17)
    pr.add_argument("--parameter-error-cases", type=int, default=32,
                    help="fresh cases per task for the parameter error, one inference each (default 32; 0: none)")
    pr.add_argument("--parameter-error-seed", type=int, default=0)
    pr.add_argument("--keep-discrepancy", action="store_true",
                    help="refit the parameter error only, under the model's current discrepancy")
    pr.add_argument("--no-progress", action="store_true")


def _print(meta: dict, keep_discrepancy: bool) -> None:
    block = meta.get("parameter_error") or {}
    scales = (block.get("band_scale") or {}).get("per_task", {})
    for task, weight in block.get("per_task", {}).items():
        band = ""
        if task in scales:  # per observed fraction: {"1.0": lambda, "0.35": lambda}
            band = "  predictive band scale (discrepancy variance x) " + ", ".join(
                f"{float(keep):.0%} observed {lam:.2f}" for keep, lam in sorted(scales[task].items(), key=lambda kv: -float(kv[0])))
        print(f"{task:16s} prior weight in the posterior (how often the inference misses): {weight:.2f}{band}")
    if keep_discrepancy:
        return
    for task, row in meta["discrepancy"]["per_task"].items():
        m = row["model"]
        print(f"{task:16s} a {m['a_mA']:.3g} mA  b {m['b']:.3g}  rho {m['rho']:.3f}  nugget {m['nugget']:.3f}  "
              f"gain {m.get('gain', 0.0):.3f}  onset {m.get('onset', 0.0):.3g}  end {m.get('end', 0.0):.3g}  "
              f"edge {m.get('edge_points', 1.0):.2f} pts  held-out whitened rms {row['heldout_whitened_rms']:.2f}")


def run(args) -> int:
    from ...workflows import recalibrate_discrepancy

    meta = recalibrate_discrepancy(args.model, n_per_task=args.rows_per_task, seed=args.seed,
                                   parameter_error_cases=args.parameter_error_cases,
                                   parameter_error_seed=args.parameter_error_seed,
                                   discrepancy=not args.keep_discrepancy, progress=not args.no_progress)
    _print(meta, args.keep_discrepancy)
    return 0
