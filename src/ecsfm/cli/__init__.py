"""The ``ecsfm`` command.

    ecsfm simulate cv --e-start 0.3 --e-vertex -0.3 --scan-rate 0.1 --k0 0.01 --out cv.csv --plot cv.png
    ecsfm simulate {cv,lsv,staircase,ca,double-step,swv,dpv,sinusoid,eis} ...
    ecsfm generate --recipe curriculum_multitask --n-samples N --chunk-size M --out DIR [--workers W]
    ecsfm data inspect DIR --out REPORT_DIR
    ecsfm train --data DIR --out MODEL_DIR [--steps N] [--max-minutes M]
    ecsfm evaluate --model MODEL_DIR --data DIR --out DIR
    ecsfm export --model MODEL_DIR --data DIR --out ASSET_DIR
    ecsfm recalibrate --model MODEL_DIR
    ecsfm import FILE --out measurement.npz [--format auto] [--cycle K]
    ecsfm infer --model MODEL_DIR --measurement FILE [--task cv] [--known e0=0.1 ...] [--noise 0.02] --out DIR
    ecsfm infer --measurement a.csv --measurement b.csv ... --area 0.0707 --known c_ox=1.0 [--separate] --out DIR
    ecsfm study calibration [--model DIR] [--data CHUNK] [--cases 8] --out DIR
    ecsfm study sweep --keep 1,0.35,0.1 --noise 0.01,0.02,0.08 --cases 10 --out DIR
    ecsfm study sbc --n 1000 --out DIR
    ecsfm demo --out DIR

One module per command (``ecsfm.cli.commands.<command>``: ``add_parser``, ``run``): it parses its
arguments, calls one library function and prints; the library decides. A bad value is reported
as one line naming the field and its allowed range (exit status 2), with no traceback.
"""

from __future__ import annotations

import re
import sys

from ._common import check_output
from ._parser import COMMANDS, build_parser

__all__ = ["main", "build_parser"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``ecsfm`` command on ``argv`` (default: the process's); returns the exit status."""
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        check_output(args, getattr(command, "WRITES", "folder"))
        return command.run(args)
    except (ValueError, FloatingPointError) as err:
        print(f"ecsfm: error: {_as_flag(str(err), vars(args))}", file=sys.stderr)
        return 2


#: positional arguments and sub-command names: not flags
_POSITIONAL = {"file", "command", "data_command", "technique", "study", "dir"}


def _as_flag(message: str, options: dict) -> str:
    """A library message that starts with an argument's Python name (``per_trace: ...``) names
    the flag as the command line spells it (``--per-trace: ...``)."""
    m = re.match(r"^([a-z][a-z0-9_-]*): ", message)
    if m and m.group(1).replace("-", "_") in options and m.group(1) not in _POSITIONAL:
        return f"--{m.group(1).replace('_', '-')}: {message[m.end():]}"
    return message
