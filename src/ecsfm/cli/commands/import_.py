"""``ecsfm import``: a measured voltammogram (an instrument export) as a measurement npz."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ... import io

__all__ = ["add_parser", "run", "WRITES"]

WRITES = "file"


def add_parser(subparsers) -> None:
    pm = subparsers.add_parser("import", help="read a measured voltammogram (CSV, PalmSens, Autolab, CHI, BioLogic) "
                                              "into npz")
    pm.add_argument("file", type=Path, help="the instrument export")
    pm.add_argument("--out", type=Path, required=True, help="the measurement .npz to write")
    pm.add_argument("--format", default="auto", choices=("auto", "csv", "palmsens", "autolab", "chi", "biologic"),
                    help="file format (default: detected from the content)")
    pm.add_argument("--current-unit", default=None, help="current unit where the file states none (A, mA, uA, nA, pA)")
    pm.add_argument("--scan-rate", type=float, default=None, help="V/s; overrides the file's (default: from the file)")
    pm.add_argument("--sign-convention", default="auto", choices=("auto", "iupac", "us"),
                    help="of the file's current (us: cathodic positive; converted to IUPAC; default: the file's own)")
    pm.add_argument("--cycle", type=int, default=None, help="keep only this cycle (0-based; default: all)")


def run(args) -> int:
    m = io.read(args.file, fmt=args.format, current_unit=args.current_unit, scan_rate=args.scan_rate,
                sign_convention=args.sign_convention)
    n_cycles = m.n_cycles
    if args.cycle is not None:
        m = m.select_cycle(args.cycle)
    io.save_npz(m, args.out)
    v = "unknown" if m.scan_rate is None else f"{m.scan_rate:.4g} V/s ({m.metadata.get('scan_rate_source')})"
    ka, kc = int(np.argmax(m.current)), int(np.argmin(m.current))
    kept = f"cycle {args.cycle} of {n_cycles}" if args.cycle is not None else f"{n_cycles} cycle(s)"
    print(f"{args.file.name} [{m.metadata['format']}]: {m.n_points} points, E {m.potential.min():.4g} .. "
          f"{m.potential.max():.4g} V, {m.duration:.4g} s, scan rate {v}, {kept}, peak currents "
          f"{m.current[ka]:.4g} A at {m.potential[ka]:.4g} V / {m.current[kc]:.4g} A at {m.potential[kc]:.4g} V "
          f"(IUPAC; file: {m.metadata['sign_convention_in_file']}); wrote {args.out}")
    warnings = [m.metadata.get("warning")]
    if str(m.metadata.get("current_unit_source", "")).startswith("assumed"):
        warnings.append(f"current unit {m.metadata['current_unit_source']}")
    for w in filter(None, warnings):
        print(f"  warning: {w}", file=sys.stderr)
    return 0
