"""What several commands share: the one-line parser, the output check, engine and method options,
the deprecated ``--checkpoint`` alias and small argument parsers."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

__all__ = ["Parser", "check_output", "given", "comma_list", "floats", "add_engine_method", "add_model"]


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors (a missing option, a choice outside the vocabulary, a value
    that is not a number) on one line, like every other error of the command."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def check_output(args, writes: str) -> None:
    """Refuse, before any work, an output that is a folder where a file is written or a file where a
    folder is (``writes``: ``"file"`` or ``"folder"``, what ``--out`` names; ``--plot`` is a file)."""
    for flag in ("out", "plot"):
        path = getattr(args, flag, None)
        if path is None:
            continue
        if writes == "file" or flag == "plot":
            if path.is_dir():
                raise ValueError(f"--{flag}: {path} is a folder; give a file name")
        elif path.exists() and not path.is_dir():
            raise ValueError(f"--{flag}: {path} is a file; give a folder (created if missing)")


def given(**options) -> dict:
    """The options the user gave (not None): the library's own defaults decide the others."""
    return {k: v for k, v in options.items() if v is not None}


#: length units a value may be written in -> cm
LENGTH_UNITS = {"m": 100.0, "cm": 1.0, "mm": 0.1, "um": 1e-4, "µm": 1e-4, "nm": 1e-7}


def length_cm(flag: str, text: str) -> float:
    """A length written with its unit (``10um``, ``1.5 mm``, ``0.15cm``) in cm. Raises ValueError
    naming ``flag`` for a missing or unknown unit or a value that is not > 0."""
    body = str(text).strip()
    unit = next((u for u in sorted(LENGTH_UNITS, key=len, reverse=True) if body.endswith(u)), None)
    units = ", ".join(LENGTH_UNITS)
    if unit is None:
        raise ValueError(f"{flag}: give the unit ({units}), e.g. 10um or 1.5mm; got {text!r}")
    try:
        value = float(body[: -len(unit)].strip())
    except ValueError:
        raise ValueError(f"{flag}: expected a number and a unit ({units}), e.g. 10um; got {text!r}") from None
    if not (value > 0 and value * LENGTH_UNITS[unit] <= 100.0):
        raise ValueError(f"{flag}: must be > 0 and at most 1 m, got {text!r}")
    return value * LENGTH_UNITS[unit]


def add_electrode_flags(group, *, what: str = "") -> None:
    """``--thickness`` (a thin layer), ``--rpm`` / ``--omega`` and ``--viscosity`` (a rotating disc)."""
    group.add_argument("--thickness", default=None, metavar="LENGTH",
                       help=f"{what}a thin layer's thickness with its unit, e.g. 20um")
    spin = group.add_mutually_exclusive_group()
    spin.add_argument("--rpm", type=float, default=None, help=f"{what}a rotating disc's rotation rate, rev/min")
    spin.add_argument("--omega", type=float, default=None, help=f"{what}a rotating disc's rotation rate, rad/s")
    group.add_argument("--viscosity", type=float, default=0.00893,
                       help=f"{what}the solution's kinematic viscosity for a rotating disc, cm2/s (default 0.00893: "
                            "water at 25 C)")


def electrode_quantities(args) -> dict:
    """A thin layer's ``thickness`` (cm) or a rotating disc's ``omega`` (rad/s) and ``viscosity``
    (cm^2/s), from ``add_electrode_flags``' flags and ``args.geometry``; {} for other geometries.
    Raises ValueError naming the flag when one is missing, not > 0, or given for another geometry."""
    if args.thickness is not None and args.geometry != "thin-layer":
        raise ValueError("--thickness: only a thin layer has one (--geometry thin-layer)")
    spin = args.omega if args.rpm is None else args.rpm * 2.0 * math.pi / 60.0
    if (spin is not None) != (args.geometry == "rotating-disc"):
        raise ValueError("--rpm: a rotating disc needs its rotation rate (--rpm or --omega), and only it has one")
    if args.geometry == "thin-layer":
        if args.thickness is None:
            raise ValueError("--thickness: a thin layer needs its thickness, e.g. --thickness 20um")
        return {"thickness": length_cm("--thickness", args.thickness)}
    if args.geometry == "rotating-disc":
        if not (math.isfinite(spin) and spin > 0):
            raise ValueError(f"--rpm: must be > 0, got {args.rpm if args.rpm is not None else args.omega}")
        return {"omega": spin, "viscosity": args.viscosity}
    return {}


def comma_list(text: str | None) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``; None or blank -> ``[]``."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def floats(name: str, text: str) -> list[float]:
    """A comma list of numbers; ValueError naming ``name`` otherwise."""
    try:
        return [float(x) for x in comma_list(text)]
    except ValueError:
        raise ValueError(f"{name}: expected a comma list of numbers, got {text!r}") from None


def add_engine_method(p: argparse.ArgumentParser) -> None:
    """``--engine`` / ``--method``, unset by default: the library's ``DEFAULT_ENGINE`` /
    ``DEFAULT_METHOD`` apply (``tests/test_cli.py`` checks the help states them)."""
    p.add_argument("--engine", default=None, choices=("surrogate", "simulator"),
                   help="likelihood engine (default surrogate, the library's; simulator + smc is the exact, "
                        "calibrated path)")
    p.add_argument("--method", default=None, choices=("cem", "smc", "amortized", "amortized_raw"),
                   help="sampler (default cem, the library's; amortized: the trained amortised posterior corrected "
                        "by importance sampling, SMC from it when the weights fail; amortized_raw: uncorrected)")


class _CheckpointAlias(argparse.Action):
    """``--checkpoint FILE`` (deprecated): stands for ``--model`` of the file's folder."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"ecsfm: warning: {option_string} is deprecated; using --model {values.parent}", file=sys.stderr)
        setattr(namespace, self.dest, values.parent)


def add_model(p: argparse.ArgumentParser, *, checkpoint_alias: bool = False) -> None:
    """``--model DIR`` (default: the shipped default model), with ``checkpoint_alias`` the
    deprecated ``--checkpoint FILE`` that maps to the file's folder."""
    group = p.add_mutually_exclusive_group() if checkpoint_alias else p
    group.add_argument("--model", type=Path, default=None, metavar="DIR",
                       help="model folder (default: shipped default model)")
    if checkpoint_alias:
        group.add_argument("--checkpoint", type=Path, dest="model", action=_CheckpointAlias, metavar="FILE",
                           help="deprecated: a model's checkpoint file, read as --model of its folder")
