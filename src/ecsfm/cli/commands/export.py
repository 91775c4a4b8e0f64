"""``ecsfm export``: a model and a held-out test chunk as an asset folder."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    px = subparsers.add_parser("export", help="copy a model + a held-out test chunk into an asset folder")
    px.add_argument("--model", type=Path, required=True)
    px.add_argument("--data", type=Path, required=True)
    px.add_argument("--out", type=Path, required=True)
    px.add_argument("--rows", type=int, default=384, help="test rows in the held-out chunk (default 384)")
    px.add_argument("--parameter-error-cases", type=int, default=32,
                    help="fresh cases per task for the parameter error, one inference each (default 32; 0: none)")


def run(args) -> int:
    from ...workflows import export_assets

    meta = export_assets(args.model, args.data, args.out, n_rows=args.rows,
                         parameter_error_cases=args.parameter_error_cases, progress=True)
    print(f"wrote {args.out}: model + {meta['provenance']['held_out_chunk']['n_rows']} held-out test rows")
    return 0
