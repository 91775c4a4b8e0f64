"""``ecsfm simulate TECHNIQUE``: one experiment of ``ecsfm.sim`` as CSV (+ PNG)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ... import sim
from .._common import add_electrode_flags, electrode_quantities, length_cm

__all__ = ["add_parser", "run", "WRITES", "MAX_FREQUENCIES"]

WRITES = "file"
#: Most frequencies of one impedance spectrum (a spectrum is a few points per decade).
MAX_FREQUENCIES = 100_000
#: A potential beyond this (V) is outside any electrolyte's window: likely mV typed as V.
MAX_POTENTIAL_V = 5.0
#: Most time points written without --force (a CSV row is ~50 bytes: 10 MB).
MAX_POINTS = 200_000
_POTENTIAL_FLAGS = ("--e-start", "--e-vertex", "--e-end", "--e-initial", "--e-step", "--e-return", "--e-dc", "--e0")
_COUPLE_KEYS = ("e0", "k0", "alpha", "d_ox", "d_red", "c_ox", "c_red", "n")
# technique -> (help, [(flag, type, default: None required / str help of a None default / value)], sim builder)
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
    g.add_argument("--couple", action="append", default=[], metavar="K=V,...",
                   help="an extra couple, e.g. 'e0=0.3,k0=0.1,c_ox=0.5' (unset fields as above); repeatable")
    g.add_argument("--reorganization", type=float, default=None,
                   help="Marcus reorganisation energy, eV, for every couple (default: Butler-Volmer)")
    mech = p.add_argument_group("mechanism (the first couple's; ecsfm.sim.EC, ECcat, CE, ECE, Surface, EC2, DISP1)")
    mech.add_argument("--mechanism", choices=tuple(sim.MECHANISMS), default="E",
                      help="E: the couples alone (default); EC: R <=> Z follows; ECcat: R -> O (catalysis); CE: Y <=> O "
                           "precedes (--c-ox is then Y + O); ECE: R1 -> O2, O2 the first --couple; surface: the first "
                           "couple confined to the electrode (--k0 in 1/s, --gamma); convection: the solution renewed "
                           "from the bulk across a layer --delta; EC2: 2R -> R2 (--k-dim); DISP1: R -> I (--k-f), "
                           "R + I -> O (--k-d); EC2 and DISP1 run the general implicit solver (slower)")
    mech.add_argument("--k-f", type=float, default=None, help="EC, CE, ECE: forward rate constant, 1/s")
    mech.add_argument("--k-b", type=float, default=None, help="EC (default 0), CE: backward rate constant, 1/s")
    mech.add_argument("--k-cat", type=float, default=None, help="ECcat: pseudo-first-order rate constant, 1/s")
    mech.add_argument("--k-dim", type=float, default=None, help="EC2: dimerisation rate constant, 1/(M s)")
    mech.add_argument("--k-d", type=float, default=None, help="DISP1: disproportionation R + I -> O, 1/(M s)")
    mech.add_argument("--gamma", type=float, default=None, help="surface: coverage, mol/cm2")
    mech.add_argument("--delta", type=float, default=None, help="convection: the diffusion layer's thickness, cm")
    mech.add_argument("--theta-ox", type=float, default=1.0, help="surface: oxidised fraction at the start (default 1)")
    mech.add_argument("--interaction", type=float, default=0.0,
                      help="surface: Frumkin's interaction G (< 2; > 0 attraction, < 0 repulsion; default 0: Langmuir)")
    c = p.add_argument_group("cell")
    c.add_argument("--area", type=float, default=None,
                   help="electrode area, cm2 (default: 0.0707, a 3 mm disc, for a planar electrode; the geometry's own "
                        "for a disc, sphere or hemisphere)")
    c.add_argument("--geometry", choices=tuple(sim.GEOMETRIES), default="planar",
                   help="planar (default: semi-infinite linear diffusion), disc or microdisc (a disc in an insulating "
                        "plane, edge diffusion included, any radius; needs --radius), sphere or hemisphere (radial "
                        "diffusion; needs --radius), thin-layer (finite diffusion against an inert wall; needs --thickness), "
                        "rotating-disc (Levich convective diffusion; needs --radius and --rpm or --omega)")
    c.add_argument("--radius", default=None, metavar="LENGTH",
                   help="the disc's, sphere's or hemisphere's radius with its unit, e.g. 10um, 1.5mm, 0.15cm")
    add_electrode_flags(c)
    c.add_argument("--temperature", type=float, default=298.15, help="K (default 298.15)")
    c.add_argument("--ru", type=float, default=0.0, help="uncompensated resistance, ohm (default 0)")
    c.add_argument("--cdl", type=float, default=0.0, help="double-layer capacitance, F/cm2 (default 0)")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True, help="CSV file to write")
    o.add_argument("--plot", type=Path, default=None, help="PNG file to write (optional)")
    o.add_argument("--force", action="store_true",
                   help=f"write potentials beyond +/-{MAX_POTENTIAL_V:g} V and outputs beyond {MAX_POINTS} points")


def add_parser(subparsers) -> None:
    ps = subparsers.add_parser("simulate", help="simulate one experiment and write CSV (+ PNG)")
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
    g.add_argument("--e-dc", type=float, default=None,
                   help="DC potential, V (default: equilibrium of the first couple)")
    g.add_argument("--f-min", type=float, default=0.01, help="Hz (default 0.01)")
    g.add_argument("--f-max", type=float, default=1e5, help="Hz (default 1e5)")
    g.add_argument("--n-freq", type=int, default=61, help="points, log-spaced (default 61)")
    _add_couple_args(e)
    e.set_defaults(c_red=1.0)


def _couples(args) -> list:
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
    if args.reorganization is not None:
        couples = [sim.Couple(**{k: getattr(c, k) for k in _COUPLE_KEYS}, reorganization=args.reorganization)
                   for c in couples]
    return couples


def _need(args, flag: str, why: str) -> float:
    value = getattr(args, flag[2:].replace("-", "_"))
    if value is None:
        raise ValueError(f"{flag}: --mechanism {args.mechanism} needs {why}")
    return value


def _mechanism(args, couples: list) -> list:
    """The couples with the first one (two for ECE) in the asked mechanism. Raises ValueError
    naming a missing flag."""
    kind, first, rest = args.mechanism, couples[0], couples[1:]
    if kind == "E":
        return couples
    if kind == "EC":
        return [sim.EC(first, k_f=_need(args, "--k-f", "the follow-up rate constant (1/s)"), k_b=args.k_b or 0.0)] + rest
    if kind == "ECcat":
        return [sim.ECcat(first, k_cat=_need(args, "--k-cat", "the catalytic rate constant (1/s)"))] + rest
    if kind == "CE":
        return [sim.CE(first, k_f=_need(args, "--k-f", "the forward rate constant Y -> O (1/s)"),
                       k_b=_need(args, "--k-b", "the backward rate constant O -> Y (1/s)"))] + rest
    if kind == "ECE":
        if not rest:
            raise ValueError("--couple: --mechanism ECE needs the second couple (O2 + e- <=> R2) as --couple K=V,...")
        return [sim.ECE(first, rest[0], k_f=_need(args, "--k-f", "the rate constant of R1 -> O2 (1/s)"))] + rest[1:]
    if kind in ("EC2", "DISP1"):
        if rest:
            raise ValueError(f"--couple: --mechanism {kind} is simulated on its own, without extra couples")
        if kind == "EC2":
            return [sim.EC2(first, k_dim=_need(args, "--k-dim", "the dimerisation rate constant (1/(M s))"))]
        return [sim.DISP1(first, k_f=_need(args, "--k-f", "the rate constant of R -> I (1/s)"),
                          k_d=_need(args, "--k-d", "the rate constant of R + I -> O (1/(M s))"))]
    if kind == "convection":
        return [sim.Convection(first, delta=_need(args, "--delta", "the diffusion layer's thickness (cm)"))] + rest
    return [sim.Surface(e0=args.e0, k0=args.k0, alpha=args.alpha, n=args.n, theta_ox=args.theta_ox,
                        interaction=args.interaction,
                        gamma=_need(args, "--gamma", "the coverage (mol/cm2)"))] + rest


def _impedance(args, couples, cell, meta) -> int:
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


def _check_scale(args) -> None:
    """Refuse (unless --force) a potential that looks like mV typed as V."""
    for flag in _POTENTIAL_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None and abs(value) > MAX_POTENTIAL_V and not args.force:
            raise ValueError(f"{flag}: {value:g} V is outside any electrolyte's window (|E| <= {MAX_POTENTIAL_V:g} V); "
                             f"potentials are in V ({value:g} mV = {value / 1e3:g} V); --force to simulate it anyway")


#: the planar electrode's area when none is given: a 3 mm disc, cm^2
DEFAULT_AREA_CM2 = 0.0707


def _geometry(args):
    """The electrode geometry the flags ask for. Raises ValueError naming the flag."""
    stated = electrode_quantities(args)
    if args.geometry == "rotating-disc":
        if args.radius is None:
            raise ValueError("--radius: a rotating disc needs its radius, e.g. --radius 2.5mm")
        return sim.RotatingDisc(radius=length_cm("--radius", args.radius), **stated)
    if args.geometry in ("planar", "thin-layer"):
        if args.radius is not None:
            raise ValueError(f"--radius: a {args.geometry} electrode has no radius here (give --area, cm2, or "
                             "--geometry disc / sphere / hemisphere)")
        return sim.Planar() if args.geometry == "planar" else sim.ThinLayer(**stated)
    if args.radius is None:
        raise ValueError(f"--radius: a {args.geometry} needs its radius, e.g. --radius 10um")
    return sim.GEOMETRIES[args.geometry](radius=length_cm("--radius", args.radius))


def run(args) -> int:
    _check_scale(args)
    couples = _couples(args)
    cell = sim.Cell(area=args.area, temperature=args.temperature, ru=args.ru, cdl=args.cdl, geometry=_geometry(args))
    if args.area is None and args.geometry in ("planar", "thin-layer"):
        cell = sim.Cell(area=DEFAULT_AREA_CM2, temperature=args.temperature, ru=args.ru, cdl=args.cdl,
                        geometry=cell.geometry)
    args.area = float(cell.area)
    meta = {k: getattr(args, k) for k in ("area", "temperature", "ru", "cdl", "geometry")
            if getattr(args, k, None) is not None}
    if args.radius is not None:
        meta["radius_cm"] = length_cm("--radius", args.radius)
    if args.thickness is not None:
        meta["thickness_cm"] = length_cm("--thickness", args.thickness)
    if args.geometry == "rotating-disc":
        meta.update(omega_rad_per_s=float(cell.geometry.omega), viscosity_cm2_per_s=args.viscosity)
    meta["couples"] = json.dumps([{k: float(getattr(c, k)) for k in _COUPLE_KEYS} for c in couples])
    if args.technique == "eis":
        if args.mechanism != "E" or args.reorganization is not None:
            raise ValueError("--mechanism: impedance is computed for plain Butler-Volmer couples only")
        return _impedance(args, couples, cell, meta)
    couples = _mechanism(args, couples)
    meta["mechanism"] = args.mechanism
    meta.update({k: getattr(args, k) for k in ("k_f", "k_b", "k_cat", "k_dim", "k_d", "gamma", "interaction", "delta",
                                                 "reorganization")
                 if getattr(args, k) is not None})
    helptext, options, builder = _WAVEFORMS[args.technique]
    kwargs = {}
    for flag, _, _ in options:
        key = flag[2:].replace("-", "_")
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    waveform = getattr(sim, builder)(**kwargs)
    if waveform.n_points > MAX_POINTS and not args.force:
        raise ValueError(f"{args.technique}: {waveform.n_points} time points (a CSV of ~{waveform.n_points * 50 / 1e6:.0f} "
                         f"MB) is more than {MAX_POINTS}; check the units (V, V/s, s) or a coarser --step, or --force "
                         "to write it")
    meta.update({f"waveform.{k}": v for k, v in kwargs.items()})
    meta["technique"] = args.technique
    result = sim.simulate(waveform, couples, cell)
    for msg in result.problems():
        print(f"warning: {msg}", file=sys.stderr)
    sim.write_csv(args.out, waveform, result, meta)
    if args.plot:
        sim.plot_result(args.plot, waveform, result, title=helptext)
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else "") + f" ({waveform.n_points} time points)")
    return 0
