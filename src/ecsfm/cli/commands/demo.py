"""``ecsfm demo``: the simulator demo, CVs across kinetic regimes."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    pd = subparsers.add_parser("demo", help="the simulator demo: CVs across kinetic regimes, CSV + PNG")
    pd.add_argument("--out", type=Path, default=Path("ecsfm_demo"), help="output folder (default ecsfm_demo)")


def run(args) -> int:
    from ...workflows import run_demo

    for line in run_demo(args.out):
        print(line)
    return 0
