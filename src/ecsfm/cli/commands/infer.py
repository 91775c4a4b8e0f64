"""``ecsfm infer``: the posterior of unknown parameters from measured currents.

The library picks the route (``ecsfm.workflows.infer_files``): the model's protocol grid, or the
measured potential programs with the simulator; this command prints what the route returned.
"""

from __future__ import annotations

import math
from pathlib import Path

from .._common import add_electrode_flags, add_engine_method, comma_list, electrode_quantities, given, length_cm

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    pn = subparsers.add_parser("infer", help="posterior of unknown parameters from a measured current")
    pn.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped default model)")
    pn.add_argument("--measurement", type=Path, action="append", required=True,
                    help="npz (seed layout) or an instrument export (CSV, PalmSens, Autolab, CHI, BioLogic); repeat it "
                         "for a joint fit of several traces (a scan-rate series)")
    pn.add_argument("--task", default="cv", help="protocol of the measurement (a task of the model; default cv)")
    pn.add_argument("--stage", default="intermediate", help="prior stage (default intermediate)")
    pn.add_argument("--known", action="append", default=[], metavar="NAME=VALUE",
                    help="fix a parameter, physical units: e0 (V), k0 (cm/s), d_ox, d_red (cm2/s), c_ox, c_red (mM), "
                         "alpha, ru (ohm), cdl (F/cm2); per couple NAME[k]; measured waveforms also offset (A, every "
                         "trace's constant background, e.g. offset=0)")
    pn.add_argument("--noise", type=float, default=None,
                    help="observation noise sd in mA/cm^2 (current per electrode area), on every route (default: "
                         "unknown: estimated on the model's grid, integrated out on measured waveforms)")
    add_engine_method(pn)
    pn.add_argument("--particles", type=int, default=None)
    pn.add_argument("--couples", type=int, default=1, help="redox couples present (default 1)")
    size = pn.add_mutually_exclusive_group()
    size.add_argument("--area", type=float, default=None,
                      help="electrode area, cm2 (required for a measured file: its current is divided by it)")
    size.add_argument("--radius", default=None, metavar="LENGTH",
                      help="the electrode's radius with its unit, e.g. 1.5mm, 10um, 0.15cm: a disc's (area pi r^2) or, "
                           "with --geometry sphere or hemisphere, a sphere's (4 pi r^2) or hemisphere's (2 pi r^2); instead of --area")
    pn.add_argument("--geometry", choices=("planar", "disc", "microdisc", "sphere", "hemisphere", "thin-layer",
                                          "rotating-disc"), default="planar",
                    help="measured traces: planar diffusion (default; a disc without its edge), a disc with its edge "
                         "diffusion (disc, or its other name microdisc: any radius), radial diffusion to a "
                         "sphere or hemisphere (the radius follows from --area or is --radius), a thin layer "
                         "(--thickness) or a rotating disc (--rpm or --omega, --viscosity)")
    add_electrode_flags(pn, what="measured traces: ")
    pn.add_argument("--current-unit", "--units", dest="units", default=None,
                    help="current unit of a file whose header states none (A, mA, uA, nA, pA)")
    pn.add_argument("--format", default="auto", choices=("auto", "csv", "palmsens", "autolab", "chi", "biologic"),
                    help="file format (default: detected from the content; an .npz from `ecsfm import` is read as is)")
    pn.add_argument("--force", action="store_true",
                    help="fit even when the current is impossible for the stated area and concentration (a unit "
                         "mistake is likelier)")
    pn.add_argument("--sign-convention", default="iupac", choices=("iupac", "us"),
                    help="of the file's current (us: cathodic positive; converted to IUPAC)")
    pn.add_argument("--seed", type=int, default=0)
    pn.add_argument("--out", type=Path, required=True)
    pn.add_argument("--waveform", default="auto", choices=("auto", "model", "measured"),
                    help="model: resample onto the model's protocol; measured: simulate each trace's own potential "
                         "program (simulator engine, any number of traces); auto: model when the traces follow the "
                         "model's protocol, else measured (several traces with the simulator engine: measured)")
    _add_measured_args(pn)


def _add_measured_args(pn) -> None:
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
    pn.add_argument("--prior", action="append", default=[], metavar="NAME=LOW:HIGH",
                    help="measured traces: the prior range of a parameter, physical units: e0 (V), k0 (cm/s), alpha, "
                         "d_ox, d_red (cm2/s), ru (ohm), cdl (F/cm2), kappa; e.g. alpha=0.1:0.9, ru=0.1:50 "
                         "(defaults: k0 1e-5:10, alpha 0.3:0.7, d 1e-6:5e-5, ru 0.1:2000, cdl 1e-7:1e-3)")
    pn.add_argument("--window", default=None, metavar="E1:E2",
                    help="measured traces: fit only the points between these potentials, V (the whole program is "
                         "still simulated); a negative E1 needs the = form: --window=-0.3:0.2")
    pn.add_argument("--sweeps", default="all",
                    help="measured traces: the sweeps to fit: all (default), first, or 0-based indices, e.g. 0,1")
    pn.add_argument("--background", type=int, default=0, choices=(0, 1, 2, 3), metavar="DEGREE",
                    help="measured traces: polynomial background in E per trace beyond the offset (0-3; default 0)")
    pn.add_argument("--cdl-degree", type=int, default=0, choices=(0, 1, 2, 3), metavar="DEGREE",
                    help="measured traces: Cdl varies with E as a polynomial of this degree (0-3; default 0: constant); "
                         "its charging current flips sign with the sweep")
    pn.add_argument("--blank", type=Path, default=None, metavar="FILE",
                    help="measured traces: a blank scan (same program and electrolyte, no analyte) subtracted from "
                         "every trace")
    pn.add_argument("--compare", action="append", default=[], metavar="KEY=V1,V2",
                    help="measured traces: fit each variant and choose by log evidence; KEY: background (0-3), cdl "
                         "(0-3), geometry (planar, disc, sphere, hemisphere), ru (free or ohm), d_red (tied, free), alpha (LOW:HIGH ranges); repeat for combinations")
    pn.add_argument("--mechanism", default="E", choices=("E", "EC", "ECcat", "CE", "convection", "EC2", "auto"),
                    help="measured traces: the couple's mechanism (ecsfm.sim): E alone (default); EC an irreversible "
                         "follow-up R -> Z; ECcat catalysis R -> O; CE a preceding Y <=> O (--known c_ox is Y + O); "
                         "their rate constants (1/s) are fitted; convection: the solution renewed from the bulk across "
                         "a fitted diffusion layer delta (cm); EC2 a dimerisation 2R -> R2 (1/(M s); the general solver, "
                         "~200x slower). auto: fit every one that applies (EC2 only when named) and report each "
                         "one's posterior probability from the evidence")
    pn.add_argument("--leave-one-out", action="store_true",
                    help="measured series of >= 3 traces: also fit all but each trace and check its prediction "
                         "(one more fit per trace)")
    pn.add_argument("--discrepancy-length", default="1.0",
                    help="measured traces: correlation length (V) of the smooth model discrepancy, or 'none' for "
                         "independent residuals (default 1.0)")


def _discrepancy_length(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"discrepancy-length: expected a length in V or 'none', got {text!r}") from None


def _window(text):
    if text is None:
        return None
    lo, sep, hi = text.partition(":")
    try:
        window = (float(lo), float(hi))
    except ValueError:
        raise ValueError(f"window: expected E1:E2 in V, got {text!r}") from None
    if not sep or not all(math.isfinite(x) for x in window) or window[0] == window[1]:
        raise ValueError(f"window: expected E1:E2 in V with E1 != E2, got {text!r}")
    return window


def _sweeps(text: str):
    if text in ("all", "first"):
        return text
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise ValueError(f"sweeps: expected all, first or 0-based indices such as 0,1; got {text!r}") from None


def _radius(args) -> float | None:
    return None if args.radius is None else length_cm("--radius", args.radius)


def run(args) -> int:
    from ...workflows import Route, infer_files

    route, summary = infer_files(
        model_dir=args.model, measurements=args.measurement, out_dir=args.out,
        waveform=args.waveform, task=args.task, stage=args.stage, known=args.known, noise=args.noise,
        couples=args.couples, area=args.area, radius=_radius(args), units=args.units, fmt=args.format, force=args.force, sign_convention=args.sign_convention,
        n_particles=args.particles, seed=args.seed, scan_rates=args.scan_rate, reference=args.reference,
        separate=args.separate, cycle=args.cycle, per_trace=comma_list(args.per_trace),
        tie_d_red=not args.free_d_red, discrepancy_length=_discrepancy_length(args.discrepancy_length),
        area_rsd=args.area_rsd, conc_rsd=args.conc_rsd, priors=args.prior, window=_window(args.window),
        sweeps=None if args.sweeps == "all" else _sweeps(args.sweeps), background_degree=args.background,
        cdl_degree=args.cdl_degree, geometry=args.geometry, electrode=electrode_quantities(args), blank=args.blank, compare=args.compare, leave_one_out=args.leave_one_out, mechanism=args.mechanism,
        **given(engine=args.engine, method=args.method))
    if args.compare or args.mechanism == "auto":
        _print_comparison(args, summary)
    elif route is Route.MEASURED:
        _print_measured(args, summary)
    else:
        _print_model_grid(args, summary)
    return 0


def _print_check(check: dict, plots: dict, out) -> None:
    """The model check's verdict, first: a misfit named with the plot to look at."""
    if check["adequate"]:
        print(f"model check: adequate (p = {check['p_value']:.2g}; {check['reason']})")
        return
    print(f"MODEL CHECK FAILED -- the model does not describe the data; do not trust these numbers as they stand.\n"
          f"  {check['reason']}.\n  Look at {Path(out) / plots[check['worst_trace']]} (its residual panel).")


def _program(scan_rate) -> str:
    """How a trace is named in the console: by its scan rate, or as potential steps."""
    return "steps" if scan_rate is None else f"{scan_rate:g} V/s"


def _print_measured(args, summary: dict) -> None:
    labels = [t["label"] for t in summary["traces"]]
    _print_check(summary["model_check"], {label: f"trace_{k}.png" for k, label in enumerate(labels)}, args.out)
    if len(labels) > 1:
        rate = {t["label"]: t["scan_rate"] for t in summary["traces"]}
        per = sorted(summary["model_check"]["traces"], key=lambda t: rate[t["label"]] or 0.0)
        print("  smooth misfit per trace, % of its peak (model check): " + ", ".join(
            f"{_program(rate[t['label']])} {100 * t['smooth_misfit_rms'] / t['peak']:.2g}"
            + ("" if t["p_value"] * len(per) >= summary["model_check"]["level"] else " (misfit)") for t in per))
    loo = summary.get("leave_one_out")
    if loo:
        print(("leave one trace out: each rate predicted by the others' fit: " if loo["adequate"] else
               f"LEAVE ONE OUT FAILED -- the other rates' parameters do not predict {loo['worst_trace']}: ")
              + ", ".join(f"{_program(t['scan_rate'])} p={min(1.0, len(loo['traces']) * t['p_value']):.2g} "
                          f"(D {t['others_d_ox']:.3g} from the others)"
                          for t in sorted(loo["traces"], key=lambda t: t["scan_rate"] or 0.0)))
    print("assumed: " + "; ".join(f"{k} {v}" for k, v in summary["assumptions"].items()))
    for name, v in summary["parameters"].items():
        if "[" not in name:
            unit = "" if v["unit"] == "1" else f" {v['unit']}"
            print(f"  {name:6s} {v['q50']:.4g} [{v['q025']:.4g}, {v['q975']:.4g}]{unit} (95 %)")
    kb = summary["k0_bound"]
    if kb and kb["lower_bound_only"]:
        print(f"  k0 is only bounded from below: k0 > {kb['k0_q05']:.3g} cm/s (95 %)")
    for r in summary["separate_fits"] or ():  # ordered by scan rate
        p = r["parameters"]
        verdict = "fits" if r["model_check"]["adequate"] else f"MISFIT (p = {r['model_check']['p_value']:.2g})"
        print(f"  alone {_program(r['scan_rate']):>12s} [{verdict}]: " + ", ".join(f"{n} {p[n]['q50']:.4g}" for n in p))
        for w in r["warnings"]:
            print(f"    warning: {w}")
    print(f"wrote {args.out}: {summary['engine']}/{summary['method']} on {len(summary['traces'])} measured "
          f"trace(s), {summary['seconds']:.1f} s wall time")
    for w in summary["warnings"]:
        print(f"  warning: {w}")


def _print_comparison(args, record: dict) -> None:
    names = ("e0", "k0", "d_ox", "k_f", "k_b", "k_cat", "delta", "k_dim")
    print(f"{'variant':24s} {'log evidence':>15s} {'probability':>14s}  model check  "
          + "  ".join(f"{n:>8s}" for n in names))
    for r in record["variants"]:
        p = r["parameters"]
        check = "adequate" if r["adequate"] else f"MISFIT p={r['check_p_value']:.1g}"
        mark = "*" if r["variant"] == record["chosen"] else " "
        print(f"{mark}{r['variant']:23s} {r['log_evidence']:8.1f} +- {r['log_evidence_se']:4.2f} "
              f"{r['probability']:6.3f} +- {r['probability_se']:5.3f}  {check:11s}  "
              + "  ".join(f"{p[n]:8.3g}" if n in p else f"{'-':>8s}" for n in names))
    print(f"chosen: {record['chosen']} ({record['reason']}); each variant's fit is in its folder under {args.out}")
    if record["none_adequate"]:
        print("  warning: no variant describes the data (every model check failed): the chosen one is the least bad")


def _print_model_grid(args, summary: dict) -> None:
    names = [Path(m).name for m in args.measurement]
    plots = {n: (f"trace_{k}.png" if len(names) > 1 else "posterior_predictive.png") for k, n in enumerate(names)}
    _print_check(summary["model_check"], plots, args.out)
    for name, v in summary["parameters"].items():
        print(f"  {name:10s} {v['q50']:.4g} [{v['q05']:.4g}, {v['q95']:.4g}] {v['unit']}")
    d = summary["diagnostics"]
    what = f" on {len(args.measurement)} traces (one parameter set)" if len(args.measurement) > 1 else ""
    print(f"wrote {args.out}: {d['engine']}/{d['method']}{what}, ESS {d['ess']:.0f}")
    for w in d["warnings"]:
        print(f"  warning: {w}")
