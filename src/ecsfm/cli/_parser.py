"""The top-level parser, built from the command modules, and the dispatch table."""

from __future__ import annotations

# Each command module imports the heavy parts of the library (JAX models, SciPy, Matplotlib) inside
# its ``run``, so building the parser for ``ecsfm --help`` stays fast.
from .commands import (data, demo, evaluate, export, generate, import_, infer, recalibrate, simulate, study, train,
                       train_posterior)
from ._common import Parser

__all__ = ["COMMANDS", "build_parser"]

#: Command name -> its module (``ecsfm.cli.commands``), in the order of the help.
COMMANDS = {
    "simulate": simulate,
    "generate": generate,
    "data": data,
    "train": train,
    "train-posterior": train_posterior,
    "evaluate": evaluate,
    "export": export,
    "recalibrate": recalibrate,
    "infer": infer,
    "import": import_,
    "study": study,
    "demo": demo,
}


def build_parser() -> Parser:
    ap = Parser(prog="ecsfm", description="Voltammetry simulation and inference.")
    sub = ap.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return ap
