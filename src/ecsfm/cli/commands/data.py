"""``ecsfm data inspect``: the QC report of a dataset."""

from __future__ import annotations

from pathlib import Path

from ...data import inspect_dataset

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    pdata = subparsers.add_parser("data", help="dataset tools")
    dsub = pdata.add_subparsers(dest="data_command", required=True)
    pi = dsub.add_parser("inspect", help="QC report of a dataset: JSON, summary PNG, trace gallery")
    pi.add_argument("dataset", type=Path, help="dataset folder (with manifest.json)")
    pi.add_argument("--out", type=Path, required=True, help="report folder")
    pi.add_argument("--gallery", type=int, default=12, help="random traces in the gallery (default 12)")
    pi.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    report = inspect_dataset(args.dataset, args.out, gallery=args.gallery, seed=args.seed)
    print(f"wrote {args.out}/report.json, summary.png, gallery.png: {report['n_rows']} rows, "
          f"{len(report['problems'])} problem(s)")
    for msg in report["problems"]:
        print(f"  problem: {msg}")
    return 0
