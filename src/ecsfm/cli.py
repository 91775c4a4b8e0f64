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

Every subcommand calls only the public API of ``ecsfm.sim``. A bad value is reported as one
line naming the field and its allowed range (exit status 2), with no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

#: Most frequencies of one impedance spectrum (a spectrum is a few points per decade).
MAX_FREQUENCIES = 100_000


def _add_couple_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("redox couple (O + n e- <=> R)")
    g.add_argument("--e0", type=float, default=0.0, help="formal potential, V (default 0)")
    g.add_argument("--k0", type=float, default=1e-2, help="standard rate constant, cm/s (default 0.01)")
    g.add_argument("--alpha", type=float, default=0.5, help="transfer coefficient (default 0.5)")
    g.add_argument("--d-ox", type=float, default=1e-5, help="D of O, cm2/s (default 1e-5)")
    g.add_argument("--d-red", type=float, default=1e-5, help="D of R, cm2/s (default 1e-5)")
    g.add_argument("--c-ox", type=float, default=1.0, help="bulk O, mM (default 1)")
    g.add_argument("--c-red", type=float, default=0.0, help="bulk R, mM (default 0)")
    g.add_argument("--n", type=float, default=1.0, help="electrons (default 1)")
    g.add_argument(
        "--couple",
        action="append",
        default=[],
        metavar="K=V,...",
        help="an extra couple, e.g. 'e0=0.3,k0=0.1,c_ox=0.5' (unset fields as above); repeatable",
    )
    c = p.add_argument_group("cell")
    c.add_argument("--area", type=float, default=0.0707, help="electrode area, cm2 (default 0.0707, a 3 mm disc)")
    c.add_argument("--temperature", type=float, default=298.15, help="K (default 298.15)")
    c.add_argument("--ru", type=float, default=0.0, help="uncompensated resistance, ohm (default 0)")
    c.add_argument("--cdl", type=float, default=0.0, help="double-layer capacitance, F/cm2 (default 0)")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True, help="CSV file to write")
    o.add_argument("--plot", type=Path, default=None, help="PNG file to write (optional)")


_COUPLE_KEYS = ("e0", "k0", "alpha", "d_ox", "d_red", "c_ox", "c_red", "n")


def _couples(args, sim):
    base = {k: getattr(args, k) for k in _COUPLE_KEYS}
    couples = [sim.Couple(**base)]
    for spec in args.couple:
        values = dict(base)
        for item in filter(None, spec.split(",")):
            key, sep, val = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in _COUPLE_KEYS:
                raise ValueError(f"--couple: '{item}' is not KEY=VALUE with KEY in {', '.join(_COUPLE_KEYS)}")
            try:
                values[key] = float(val)
            except ValueError:
                raise ValueError(f"--couple: {key} = {val.strip()!r} is not a number") from None
        couples.append(sim.Couple(**values))
    return couples


_WAVEFORMS = {
    "cv": (
        "cyclic voltammetry (linear sweep)",
        [("--e-start", float, None), ("--e-vertex", float, None), ("--scan-rate", float, None),
         ("--e-end", float, "default: e-start"), ("--n-cycles", int, 1), ("--step", float, 1e-3)],
        "cyclic_voltammetry",
    ),
    "lsv": (
        "linear sweep voltammetry",
        [("--e-start", float, None), ("--e-end", float, None), ("--scan-rate", float, None), ("--step", float, 1e-3)],
        "linear_sweep",
    ),
    "staircase": (
        "staircase cyclic voltammetry",
        [("--e-start", float, None), ("--e-vertex", float, None), ("--scan-rate", float, None),
         ("--e-end", float, "default: e-start"), ("--n-cycles", int, 1), ("--step", float, 2e-3),
         ("--sample-fraction", float, 1.0)],
        "staircase_voltammetry",
    ),
    "ca": (
        "chronoamperometry (one potential step at t = 0)",
        [("--e-initial", float, None), ("--e-step", float, None), ("--duration", float, None), ("--n-steps", int, 200)],
        "potential_step",
    ),
    "double-step": (
        "double potential step chronoamperometry",
        [("--e-initial", float, None), ("--e-step", float, None), ("--e-return", float, None),
         ("--step-duration", float, None), ("--n-steps", int, 200)],
        "double_potential_step",
    ),
    "swv": (
        "square-wave voltammetry (Osteryoung)",
        [("--e-start", float, None), ("--e-end", float, None), ("--step", float, 5e-3),
         ("--amplitude", float, 25e-3), ("--frequency", float, 25.0)],
        "square_wave_voltammetry",
    ),
    "dpv": (
        "differential pulse voltammetry",
        [("--e-start", float, None), ("--e-end", float, None), ("--step", float, 5e-3),
         ("--pulse-amplitude", float, 50e-3), ("--pulse-width", float, 0.05), ("--period", float, 0.5)],
        "differential_pulse_voltammetry",
    ),
    "sinusoid": (
        "a sinusoid about a DC potential (AC voltammetry)",
        [("--e-dc", float, None), ("--amplitude", float, None), ("--frequency", float, None),
         ("--n-periods", int, 8), ("--points-per-period", int, 64)],
        "sinusoid",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors (a missing option, a choice outside the vocabulary, a value
    that is not a number) on one line, like every other error of the command."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="ecsfm", description="Voltammetry simulation and inference.")
    sub = ap.add_subparsers(dest="command", required=True)
    ps = sub.add_parser("simulate", help="simulate one experiment and write CSV (+ PNG)")
    wsub = ps.add_subparsers(dest="technique", required=True)
    for name, (helptext, options, _) in _WAVEFORMS.items():
        w = wsub.add_parser(name, help=helptext, description=helptext)
        g = w.add_argument_group("waveform (V, s, V/s)")
        for flag, typ, default in options:
            if default is None:
                g.add_argument(flag, type=typ, required=True)
            elif isinstance(default, str):
                g.add_argument(flag, type=typ, default=None, help=default)
            else:
                g.add_argument(flag, type=typ, default=default, help=f"default {default}")
        _add_couple_args(w)
    e = wsub.add_parser("eis", help="small-signal impedance spectrum (linearised)")
    g = e.add_argument_group("spectrum")
    g.add_argument("--e-dc", type=float, default=None, help="DC potential, V (default: equilibrium of the first couple)")
    g.add_argument("--f-min", type=float, default=0.01, help="Hz (default 0.01)")
    g.add_argument("--f-max", type=float, default=1e5, help="Hz (default 1e5)")
    g.add_argument("--n-freq", type=int, default=61, help="points, log-spaced (default 61)")
    _add_couple_args(e)
    e.set_defaults(c_red=1.0)

    pg = sub.add_parser("generate", help="generate (or finish) a dataset of simulated voltammograms")
    pg.add_argument("--recipe", default="curriculum_multitask",
                    help="baseline_random, curriculum_multitask (default) or stress_mixture")
    pg.add_argument("--n-samples", type=int, required=True, help="base samples (rows before augmentation)")
    pg.add_argument("--chunk-size", type=int, default=4096, help="base samples per chunk file (default 4096)")
    pg.add_argument("--max-species", type=int, default=2, help="couple slots per row (default 2)")
    pg.add_argument("--target-len", type=int, default=256, help="points per trace (default 256)")
    pg.add_argument("--nx", type=int, default=16, help="points per concentration profile (default 16)")
    pg.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    pg.add_argument("--out", type=Path, required=True, help="dataset folder (created; rerun to resume)")
    where = pg.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="local worker processes (Dask LocalCluster)")
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, tcp://host:port")
    pg.add_argument("--no-progress", action="store_true", help="no progress bar")

    pdata = sub.add_parser("data", help="dataset tools")
    dsub = pdata.add_subparsers(dest="data_command", required=True)
    pi = dsub.add_parser("inspect", help="QC report of a dataset: JSON, summary PNG, trace gallery")
    pi.add_argument("dataset", type=Path, help="dataset folder (with manifest.json)")
    pi.add_argument("--out", type=Path, required=True, help="report folder")
    pi.add_argument("--gallery", type=int, default=12, help="random traces in the gallery (default 12)")
    pi.add_argument("--seed", type=int, default=0)

    pt = sub.add_parser("train", help="train the flow-matching surrogate on a dataset (resumable)")
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

    pe = sub.add_parser("evaluate", help="the surrogate's scorecard against the simulator (JSON + plots)")
    pe.add_argument("--model", type=Path, required=True, help="model folder")
    pe.add_argument("--data", type=Path, required=True, help="dataset folder (its test split is used)")
    pe.add_argument("--out", type=Path, required=True, help="scorecard folder")
    pe.add_argument("--rows", type=int, default=384, help="test rows, spread evenly over tasks (default 384)")
    pe.add_argument("--draws", type=int, default=8, help="flow draws per row (default 8)")
    pe.add_argument("--steps", type=int, default=60, help="Euler steps (default 60)")
    pe.add_argument("--no-progress", action="store_true")

    px = sub.add_parser("export", help="copy a model + a held-out test chunk into an asset folder")
    px.add_argument("--model", type=Path, required=True)
    px.add_argument("--data", type=Path, required=True)
    px.add_argument("--out", type=Path, required=True)
    px.add_argument("--rows", type=int, default=384, help="test rows in the held-out chunk (default 384)")
    px.add_argument("--parameter-error-cases", type=int, default=32,
                    help="fresh cases per task for the parameter error, one inference each (default 32; 0: none)")

    pr = sub.add_parser("recalibrate", help="refit a model's calibrated discrepancy and parameter error on fresh "
                                            "simulations")
    pr.add_argument("--model", type=Path, required=True, help="model folder (its model_meta.json is rewritten)")
    pr.add_argument("--rows-per-task", type=int, default=128, help="fresh simulated rows per task (default 128)")
    pr.add_argument("--seed", type=int, default=17)
    pr.add_argument("--parameter-error-cases", type=int, default=32,
                    help="fresh cases per task for the parameter error, one inference each (default 32; 0: none)")
    pr.add_argument("--parameter-error-seed", type=int, default=0)
    pr.add_argument("--keep-discrepancy", action="store_true",
                    help="refit the parameter error only, under the model's current discrepancy")
    pr.add_argument("--no-progress", action="store_true")

    pn = sub.add_parser("infer", help="posterior of unknown parameters from a measured current")
    pn.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped default model)")
    pn.add_argument("--measurement", type=Path, action="append", required=True,
                    help="npz (seed layout) or an instrument export (CSV, PalmSens, Autolab, CHI, BioLogic); repeat it "
                         "for a joint fit of several traces (a scan-rate series)")
    pn.add_argument("--task", default="cv", help="protocol of the measurement (a task of the model; default cv)")
    pn.add_argument("--stage", default="intermediate", help="prior stage (default intermediate)")
    pn.add_argument("--known", action="append", default=[], metavar="NAME=VALUE",
                    help="fix a parameter, physical units: e0 (V), k0 (cm/s), d_ox, d_red (cm2/s), c_ox, c_red (mM), "
                         "alpha, ru (ohm), cdl (F/cm2); per couple NAME[k]")
    pn.add_argument("--noise", type=float, default=None, help="observation noise sd, mA/cm2 (default: estimated)")
    pn.add_argument("--engine", default="simulator", choices=("simulator", "surrogate"),
                    help="likelihood engine (default simulator: faster and exact on CPU, see docs)")
    pn.add_argument("--method", default=None, choices=("smc", "cem"), help="default: smc (simulator), cem (surrogate)")
    pn.add_argument("--particles", type=int, default=None)
    pn.add_argument("--couples", type=int, default=1, help="redox couples present (default 1)")
    pn.add_argument("--area", type=float, default=1.0, help="electrode area, cm2 (CSV input; default 1)")
    pn.add_argument("--units", default=None, help="current unit of a CSV without units in its header (A, mA, uA, nA)")
    pn.add_argument("--sign-convention", default="iupac", choices=("iupac", "us"),
                    help="of the file's current (us: cathodic positive; converted to IUPAC)")
    pn.add_argument("--seed", type=int, default=0)
    pn.add_argument("--out", type=Path, required=True)
    pn.add_argument("--waveform", default="auto", choices=("auto", "model", "measured"),
                    help="model: resample onto the model's protocol (one trace); measured: simulate each trace's own "
                         "potential program (simulator engine, any number of traces); auto: model when one trace "
                         "follows the model's protocol, else measured")
    pn.add_argument("--scan-rate", type=float, action="append", default=[],
                    help="V/s, one for all traces or one per --measurement (default: from the files)")
    pn.add_argument("--reference", default=None, help="reference electrode the potentials are measured against")
    pn.add_argument("--cycle", type=int, default=0, help="cycle of each file to fit (0-based; default 0)")
    pn.add_argument("--per-trace", default="offset",
                    help="nuisance parameters fitted per trace, comma list of offset,cdl,ru (default offset)")
    pn.add_argument("--free-d-red", action="store_true", help="fit D_red separately (default D_red = D_ox)")
    pn.add_argument("--separate", action="store_true", help="also fit each trace alone (parameters per scan rate)")
    pn.add_argument("--area-rsd", type=float, default=0.0, metavar="FRACTION",
                    help="relative sd of the stated --area (e.g. 0.02; default 0: exact): the area becomes a parameter "
                         "with a log-normal prior, and D's interval carries it (measured traces)")
    pn.add_argument("--conc-rsd", type=float, default=0.0, metavar="FRACTION",
                    help="relative sd of the stated concentration (--known c_ox=...; default 0: exact)")
    pn.add_argument("--discrepancy-length", default="1.0",
                    help="measured traces: correlation length (V) of the smooth model discrepancy, or 'none' for "
                         "independent residuals (default 1.0)")

    pm = sub.add_parser("import", help="read a measured voltammogram (CSV, PalmSens, Autolab, CHI, BioLogic) into npz")
    pm.add_argument("file", type=Path, help="the instrument export")
    pm.add_argument("--out", type=Path, required=True, help="the measurement .npz to write")
    pm.add_argument("--format", default="auto", choices=("auto", "csv", "palmsens", "autolab", "chi", "biologic"),
                    help="file format (default: detected from the content)")
    pm.add_argument("--current-unit", default=None, help="current unit where the file states none (A, mA, uA, nA, pA)")
    pm.add_argument("--scan-rate", type=float, default=None, help="V/s; overrides the file's (default: from the file)")
    pm.add_argument("--sign-convention", default="auto", choices=("auto", "iupac", "us"),
                    help="of the file's current (us: cathodic positive; converted to IUPAC; default: the file's own)")
    pm.add_argument("--cycle", type=int, default=None, help="keep only this cycle (0-based; default: all)")

    ps = sub.add_parser("study", help="reviewer-facing studies")
    ssub = ps.add_subparsers(dest="study", required=True)
    pc = ssub.add_parser("calibration", help="posterior identifiability & calibration (the seed experiment)")
    pc.add_argument("--model", type=Path, default=None, help="model folder (default: shipped default model)")
    pc.add_argument("--data", type=Path, default=None, help="held-out chunk .npz (default: shipped chunk)")
    pc.add_argument("--cases", type=int, default=8, help="cases per regime (default 8, as the seed)")
    pc.add_argument("--engine", default="surrogate", choices=("surrogate", "simulator"))
    pc.add_argument("--method", default="cem", choices=("cem", "smc"))
    pc.add_argument("--regimes", default=None, help="comma list of the seed's regimes (default: all three)")
    pc.add_argument("--particles", type=int, default=None,
                    help="sampler particles (default: the seed's 64 for cem, 2,048 for smc)")
    pc.add_argument("--steps", type=int, default=None, help="flow Euler steps (default: the seed's 60)")
    pc.add_argument("--scheduler", default=None, help="Dask scheduler address to spread cases over")
    pc.add_argument("--no-parameter-error", action="store_true",
                    help="leave the model's calibrated parameter error out of the posteriors (for comparison)")
    pc.add_argument("--no-band-scale", action="store_true",
                    help="leave the model's calibrated predictive band scale out (for comparison)")
    pc.add_argument("--out", type=Path, default=Path("ecsfm_study"), help="output folder (default ecsfm_study)")
    pc.add_argument("--no-progress", action="store_true")
    pb = ssub.add_parser("sbc", help="simulation-based calibration over prior draws")
    pb.add_argument("--model", type=Path, default=None, help="model folder (default: shipped default model)")
    pb.add_argument("--n", type=int, default=200, help="prior draws (default 200)")
    pb.add_argument("--task", default="cv")
    pb.add_argument("--stage", default="intermediate")
    pb.add_argument("--engine", default="simulator", choices=("surrogate", "simulator"))
    pb.add_argument("--method", default="smc", choices=("cem", "smc"))
    pb.add_argument("--particles", type=int, default=1024)
    pb.add_argument("--noise", type=float, default=0.02, help="observation noise sd, mA (default 0.02)")
    pb.add_argument("--seed", type=int, default=0)
    pb.add_argument("--scheduler", default=None)
    pb.add_argument("--no-parameter-error", action="store_true",
                    help="leave the model's calibrated parameter error out of the posteriors (for comparison)")
    pb.add_argument("--out", type=Path, default=Path("ecsfm_sbc"))
    pb.add_argument("--compare", type=Path, nargs="+", default=None, metavar="SBC_JSON",
                    help="instead of running: plot these sbc.json results' coverage curves side by side into --out")
    pb.add_argument("--no-progress", action="store_true")

    pe = ssub.add_parser("engines", help="surrogate vs simulator posterior on the same held-out cases")
    pe.add_argument("--model", type=Path, default=None, help="model folder (default: shipped default model)")
    pe.add_argument("--data", type=Path, default=None, help="held-out chunk .npz (default: shipped chunk)")
    pe.add_argument("--cases", type=int, default=6, help="held-out cases (default 6)")
    pe.add_argument("--regime", default="dense_clean", help="one of the seed's regimes (default dense_clean)")
    pe.add_argument("--out", type=Path, default=Path("ecsfm_engines"))
    pe.add_argument("--no-progress", action="store_true")
    pw = ssub.add_parser("sweep", help="recovery vs information: keep fraction x noise grid, heat maps")
    pw.add_argument("--model", type=Path, default=None, help="model folder (default: shipped default model)")
    pw.add_argument("--data", type=Path, default=None, help="held-out chunk .npz (default: shipped chunk)")
    pw.add_argument("--keep", default="1,0.35,0.1", help="comma list of observed fractions (default 1,0.35,0.1)")
    pw.add_argument("--noise", default="0.01,0.02,0.08", help="comma list of noise sd, mA (default 0.01,0.02,0.08)")
    pw.add_argument("--cases", type=int, default=10, help="held-out cases per cell (default 10)")
    pw.add_argument("--tasks", default=None, help="comma list: draw cases only from these tasks (default: all)")
    pw.add_argument("--engine", default="simulator", choices=("surrogate", "simulator"))
    pw.add_argument("--method", default="smc", choices=("cem", "smc"))
    pw.add_argument("--scheduler", default=None, help="Dask scheduler address to spread cases over")
    pw.add_argument("--out", type=Path, default=Path("ecsfm_sweep"))
    pw.add_argument("--no-progress", action="store_true")

    pd = sub.add_parser("demo", help="the simulator demo: CVs across kinetic regimes, CSV + PNG")
    pd.add_argument("--out", type=Path, default=Path("ecsfm_demo"), help="output folder (default ecsfm_demo)")
    return ap


def _meta(args, keys) -> dict:
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _cmd_simulate(args) -> int:
    from . import sim

    couples = _couples(args, sim)
    cell = sim.Cell(area=args.area, temperature=args.temperature, ru=args.ru, cdl=args.cdl)
    meta = _meta(args, ("area", "temperature", "ru", "cdl"))
    meta["couples"] = json.dumps([{k: float(getattr(c, k)) for k in _COUPLE_KEYS} for c in couples])
    if args.technique == "eis":
        c0 = couples[0]
        if args.e_dc is None:
            if args.c_ox <= 0 or args.c_red <= 0:
                raise ValueError("--e-dc: needed unless both --c-ox and --c-red are > 0 (equilibrium potential)")
            args.e_dc = float(sim.analytic.nernst_potential(c0.e0, c0.n, c0.c_ox, c0.c_red, args.temperature))
        if not 0 < args.f_min < args.f_max:
            raise ValueError(f"--f-min: must be in (0, f_max = {args.f_max}), got {args.f_min}")
        if not 1 <= args.n_freq <= MAX_FREQUENCIES:
            raise ValueError(f"--n-freq: must be an integer in [1, {MAX_FREQUENCIES}], got {args.n_freq}")
        freq = np.logspace(np.log10(args.f_min), np.log10(args.f_max), args.n_freq)
        z = np.asarray(sim.impedance(couples, cell, args.e_dc, freq))
        meta["e_dc"] = args.e_dc
        sim.write_impedance_csv(args.out, freq, z, meta)
        if args.plot:
            sim.plot_impedance(args.plot, freq, z)
        print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
        return 0
    helptext, options, builder = _WAVEFORMS[args.technique]
    kwargs = {}
    for flag, _, _ in options:
        key = flag[2:].replace("-", "_")
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    waveform = getattr(sim, builder)(**kwargs)
    meta.update({f"waveform.{k}": v for k, v in kwargs.items()})
    meta["technique"] = args.technique
    result = sim.simulate(waveform, couples, cell)
    problems = result.problems()
    for msg in problems:
        print(f"warning: {msg}", file=sys.stderr)
    sim.write_csv(args.out, waveform, result, meta)
    if args.plot:
        sim.plot_result(args.plot, waveform, result, title=helptext)
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else "") + f" ({waveform.n_points} time points)")
    return 0


def _cmd_generate(args) -> int:
    from . import data

    plan = data.Plan(recipe=args.recipe, n_samples=args.n_samples, chunk_size=args.chunk_size,
                     max_species=args.max_species, target_len=args.target_len, nx=args.nx, seed=args.seed)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers: must be >= 1, got {args.workers}")
    manifest = data.generate(plan, args.out, workers=args.workers, scheduler=args.scheduler,
                             progress=not args.no_progress)
    gen = manifest["generation"]
    print(f"{args.out}: {manifest['n_rows']} rows in {len(manifest['chunks'])} chunks "
          f"(splits {manifest['split']['rows']}); this run {gen['elapsed_s_this_run']:.1f} s")
    return 0


def _cmd_train(args) -> int:
    from .fm.train import TrainConfig, train

    config = TrainConfig(arch=args.arch, steps=args.steps, batch_size=args.batch_size, hidden_size=args.hidden_size,
                         depth=args.depth, cond_dim=args.cond_dim, lr=args.lr, eval_every=args.eval_every,
                         steps_per_call=min(50, args.eval_every), seed=args.seed)
    history = train(args.data, args.out, config, progress=not args.no_progress, max_minutes=args.max_minutes)
    last = history["step"][-1] if history["step"] else 0
    print(f"{args.out}: {last} steps, best val loss {min(history['val_loss'], default=float('nan')):.4f}")
    return 0


def _cmd_data(args) -> int:
    from .data import inspect_dataset

    report = inspect_dataset(args.dataset, args.out, gallery=args.gallery, seed=args.seed)
    print(f"wrote {args.out}/report.json, summary.png, gallery.png: {report['n_rows']} rows, "
          f"{len(report['problems'])} problem(s)")
    for msg in report["problems"]:
        print(f"  problem: {msg}")
    return 0


def _cmd_demo(args) -> int:
    from . import sim
    from .sim._demo import run_demo

    del sim
    summary = run_demo(args.out)
    for line in summary:
        print(line)
    return 0


def _cmd_evaluate(args) -> int:
    from .fm.eval_classical import evaluate_surrogate

    card = evaluate_surrogate(args.model, args.data, args.out, n_rows=args.rows, n_draws=args.draws,
                              n_steps=args.steps, progress=not args.no_progress)
    o = card["overall"]["nrmse"]
    print(f"wrote {args.out}/scorecard.json: test NRMSE median {100 * o['median']:.2f} %, p90 {100 * o['p90']:.2f} %")
    for task, row in card["per_task"].items():
        print(f"  {task:16s} surrogate {100 * row['surrogate']['nrmse']['median']:6.2f} %   nearest neighbour "
              f"{100 * row['nearest_neighbour']['nrmse']['median']:6.2f} %   mean trace "
              f"{100 * row['mean_trace']['nrmse']['median']:6.2f} %")
    return 0


def _cmd_export(args) -> int:
    from .fm.export import export_assets

    meta = export_assets(args.model, args.data, args.out, n_rows=args.rows,
                         parameter_error_cases=args.parameter_error_cases, progress=True)
    print(f"wrote {args.out}: model + {meta['provenance']['held_out_chunk']['n_rows']} held-out test rows")
    return 0


def _discrepancy_length(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"discrepancy-length: expected a length in V or 'none', got {text!r}") from None


def _cmd_recalibrate(args) -> int:
    from .fm.export import recalibrate_discrepancy

    if args.parameter_error_cases and args.parameter_error_cases < 4:
        raise ValueError(f"parameter-error-cases: must be 0 or >= 4, got {args.parameter_error_cases}")
    meta = recalibrate_discrepancy(args.model, n_per_task=args.rows_per_task, seed=args.seed,
                                   parameter_error_cases=args.parameter_error_cases,
                                   parameter_error_seed=args.parameter_error_seed,
                                   discrepancy=not args.keep_discrepancy, progress=not args.no_progress)
    block = meta.get("parameter_error") or {}
    scales = (block.get("band_scale") or {}).get("per_task", {})
    for task, weight in block.get("per_task", {}).items():
        band = f"  predictive band scale (discrepancy variance x) {scales[task]:.2f}" if task in scales else ""
        print(f"{task:16s} prior weight in the posterior (how often the inference misses): {weight:.2f}{band}")
    if args.keep_discrepancy:
        return 0
    for task, row in meta["discrepancy"]["per_task"].items():
        m = row["model"]
        print(f"{task:16s} a {m['a_mA']:.3g} mA  b {m['b']:.3g}  rho {m['rho']:.3f}  nugget {m['nugget']:.3f}  "
              f"gain {m.get('gain', 0.0):.3f}  onset {m.get('onset', 0.0):.3g}  end {m.get('end', 0.0):.3g}  "
              f"edge {m.get('edge_points', 1.0):.2f} pts  held-out whitened rms {row['heldout_whitened_rms']:.2f}")
    return 0


def _cmd_infer(args) -> int:
    from .fm.infer_cli import run_infer, run_joint_infer, waveform_gap
    from .studies.calibration import default_assets

    model = args.model or default_assets()[0].parent
    several = len(args.measurement) > 1
    # Route: the model's protocol (resampled onto its grid; one trace, or -- with the surrogate
    # engine -- several, one shared parameter set) or each trace's measured potential program
    # (the simulator on the joint fit: any sweep, any number of traces).
    measured = args.waveform == "measured" or (several and args.engine == "simulator" and args.waveform == "auto")
    notes = []
    if args.waveform == "auto" and not measured:
        gaps = {m.name: waveform_gap(model, m, args.task, units=args.units)
                for m in args.measurement if m.suffix != ".npz"}
        off = {name: gap for name, gap in gaps.items() if gap > 0.02}
        if off:
            measured = True
            name, gap = max(off.items(), key=lambda kv: kv[1])
            notes.append(f"the measured potential program of {name} departs from the model's {args.task} protocol by "
                         f"{gap * 1e3:.0f} mV: fitted on the measured waveform(s) with the simulator engine")
    if measured:
        if args.engine == "surrogate":
            notes.append("engine: the surrogate knows only its training waveforms; the measured traces are fitted with "
                         "the simulator engine")
        summary = run_joint_infer(measurements=args.measurement, out_dir=args.out, area=args.area, known=args.known,
                                  scan_rates=args.scan_rate, reference=args.reference, separate=args.separate,
                                  cycle=args.cycle, per_trace=[p.strip() for p in args.per_trace.split(",") if p.strip()],
                                  tie_d_red=not args.free_d_red, noise=args.noise, n_particles=args.particles,
                                  units=args.units, sign_convention="auto" if args.sign_convention == "iupac" else "us",
                                  seed=args.seed, warnings=notes,
                                  discrepancy_length=_discrepancy_length(args.discrepancy_length),
                                  area_rsd=args.area_rsd, conc_rsd=args.conc_rsd)
        for name, v in summary["parameters"].items():
            if "[" not in name:
                print(f"  {name:6s} {v['q50']:.4g} [{v['q025']:.4g}, {v['q975']:.4g}] {v['unit']} (95 %)")
        kb = summary["k0_bound"]
        if kb and kb["lower_bound_only"]:
            print(f"  k0 is only bounded from below: k0 > {kb['k0_q05']:.3g} cm/s (95 %)")
        if summary["separate_fits"]:
            for r in summary["separate_fits"]:
                p = r["parameters"]
                print(f"  alone {r['scan_rate']:8.4g} V/s: " + ", ".join(f"{n} {p[n]['q50']:.4g}" for n in p))
        print(f"wrote {args.out}: simulator/smc on {len(summary['traces'])} measured trace(s), "
              f"{summary['seconds']:.1f} s")
        for w in summary["warnings"]:
            print(f"  warning: {w}")
        return 0
    summary = run_infer(model_dir=model, measurement=list(args.measurement), out_dir=args.out, task=args.task,
                        stage=args.stage, known=args.known, noise=args.noise, engine=args.engine, method=args.method,
                        couples=args.couples, area=args.area, units=args.units, sign_convention=args.sign_convention,
                        n_particles=args.particles, seed=args.seed)
    for name, v in summary["parameters"].items():
        print(f"  {name:10s} {v['q50']:.4g} [{v['q05']:.4g}, {v['q95']:.4g}] {v['unit']}")
    d = summary["diagnostics"]
    what = f" on {len(args.measurement)} traces (one parameter set)" if several else ""
    print(f"wrote {args.out}: {d['engine']}/{d['method']}{what}, ESS {d['ess']:.0f}")
    for w in d["warnings"]:
        print(f"  warning: {w}")
    return 0


def _cmd_import(args) -> int:
    from . import io

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


def _cmd_study(args) -> int:
    from .studies.calibration import SEED_REGIMES, default_inference, run_calibration_study

    if args.study == "sbc":
        from .studies.sbc import compare_sbc, run_sbc

        if args.compare:
            res = compare_sbc(args.compare, args.out / "sbc_compare.png")
            for label, curve in res["pooled_coverage"].items():
                print(f"  {label}: coverage at 50/90 % = {curve[res['levels'].index(0.5)]:.2f} / "
                      f"{curve[res['levels'].index(0.9)]:.2f}")
            print(f"wrote {args.out}/sbc_compare.png")
            return 0
        res = run_sbc(args.out, model_dir=args.model, n=args.n, task=args.task, stage=args.stage, engine=args.engine,
                      method=args.method, noise=args.noise, n_particles=args.particles, seed=args.seed,
                      scheduler=args.scheduler, progress=not args.no_progress,
                      parameter_error=not args.no_parameter_error)
        for name, v in res["parameters"].items():
            print(f"  {name:12s} KS p = {v['ks_pvalue']:.3f}   90 % interval coverage {v['coverage']['0.9']:.3f}")
        if res["parameter_error_prior_weight"]:
            print(f"  posteriors mixed with the prior at the model's calibrated weight {res['parameter_error_prior_weight']:.2f}")
        print(f"wrote {args.out}/sbc.json, sbc_ranks.png, sbc_coverage.png")
        return 0
    if args.study == "engines":
        from .studies.engines import run_engine_comparison

        res = run_engine_comparison(args.out, n_cases=args.cases, regime=args.regime,
                                    checkpoint=args.model / "surrogate_model.eqx" if args.model else None,
                                    chunk=args.data, progress=not args.no_progress)
        for engine in ("surrogate", "simulator"):
            v = res["summary"][engine]
            print(f"  {engine:10s} coverage +-1/2 sd {v['coverage_1sigma']:.2f} / {v['coverage_2sigma']:.2f}, "
                  f"68/95 % intervals {v['interval_coverage_1sigma']:.2f} / {v['interval_coverage_2sigma']:.2f} "
                  f"over {v['n_slots']} parameter slots")
        print(f"  posterior sd, surrogate / simulator (median): {res['summary']['sd_ratio_surrogate_over_simulator_median']:.2f}")
        print(f"wrote {args.out}/engines.json, engines.png")
        return 0
    if args.study == "sweep":
        from .studies.sweep import run_information_sweep

        def floats(name, text):
            try:
                return [float(x) for x in text.split(",") if x.strip()]
            except ValueError:
                raise ValueError(f"{name}: expected a comma list of numbers, got {text!r}") from None

        res = run_information_sweep(args.out, keep=floats("keep", args.keep), noise=floats("noise", args.noise),
                                    n_cases=args.cases, engine=args.engine, method=args.method,
                                    checkpoint=args.model / "surrogate_model.eqx" if args.model else None,
                                    chunk=args.data, scheduler=args.scheduler, progress=not args.no_progress,
                                    tasks=[t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None)
        for g in res["grid"]:
            print(f"  keep {g['keep']:<5g} noise {g['noise_std']:<6g} error {g['active_param_nrmse_prior_units_mean']:.3f}"
                  f"  coverage +-1/2 sd {g['active_param_cov_1sigma_pooled']:.2f} / {g['active_param_cov_2sigma_pooled']:.2f}"
                  f"  68/95 % intervals {g['active_param_interval_cov_1sigma_pooled']:.2f} / "
                  f"{g['active_param_interval_cov_2sigma_pooled']:.2f}")
        print(f"wrote {args.out}/sweep.json, sweep_heatmaps.png")
        return 0
    regimes = None
    if args.regimes:
        names = [r.strip() for r in args.regimes.split(",") if r.strip()]
        unknown = [r for r in names if r not in SEED_REGIMES]
        if unknown or not names:
            raise ValueError(f"regimes: unknown {unknown}; choose from {list(SEED_REGIMES)}")
        regimes = {r: SEED_REGIMES[r] for r in names}
    inference = default_inference(args.method)
    inference.update({k: v for k, v in (("n_particles", args.particles), ("n_steps", args.steps)) if v is not None})
    ckpt = args.model / "surrogate_model.eqx" if args.model else None
    payload = run_calibration_study(args.out, checkpoint=ckpt, chunk=args.data, n_cases=args.cases, engine=args.engine,
                                    method=args.method, regimes=regimes, inference=inference, scheduler=args.scheduler,
                                    progress=not args.no_progress, parameter_error=not args.no_parameter_error,
                                    band_scale=not args.no_band_scale)
    for name, row in payload["summary"].items():
        print(f"  {name:12s} R={row['reliability_score_mean']:.1f} param_nrmse={row['param_nrmse_mean']:.3f} "
              f"pred_cal={row['pred_calibration_error_mean']:.3f} (exact posterior "
              f"{row['pred_calibration_error_exact_reference_mean']:.3f}) param cov 68/95 % intervals "
              f"{row['active_param_interval_cov_1sigma_pooled']:.2f}/{row['active_param_interval_cov_2sigma_pooled']:.2f} "
              f"t={row['elapsed_s_mean']:.2f}s")
    for c in payload["criteria"]:
        print(f"  {'HELD' if c['held'] else 'NOT HELD'}: {c['criterion']}")
    print(f"wrote {args.out}/report.md")
    return 0


def _check_outputs(args) -> None:
    """Refuse, before any work, an output that is a folder where a file is written or a file where a
    folder is (``simulate``/``import`` write files, every other command a folder)."""
    for flag in ("out", "plot"):
        path = getattr(args, flag, None)
        if path is None:
            continue
        if args.command in ("simulate", "import") or flag == "plot":
            if path.is_dir():
                raise ValueError(f"--{flag}: {path} is a folder; give a file name")
        elif path.exists() and not path.is_dir():
            raise ValueError(f"--{flag}: {path} is a file; give a folder (created if missing)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_outputs(args)
        if args.command == "simulate":
            return _cmd_simulate(args)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "generate":
            return _cmd_generate(args)
        if args.command == "data":
            return _cmd_data(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "evaluate":
            return _cmd_evaluate(args)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "recalibrate":
            return _cmd_recalibrate(args)
        if args.command == "infer":
            return _cmd_infer(args)
        if args.command == "study":
            return _cmd_study(args)
        if args.command == "import":
            return _cmd_import(args)
    except (ValueError, FloatingPointError) as err:
        print(f"ecsfm: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
