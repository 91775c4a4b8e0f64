"""``ecsfm study {calibration,sbc,engines,sweep}``: the reviewer-facing studies.

Each study takes a model folder (``--model DIR``; ``--checkpoint FILE`` is a deprecated alias for
calibration, engines and sweep) and leaves engine, method and particle count to the library's
defaults unless given.
"""

from __future__ import annotations

from pathlib import Path

from .._common import add_engine_method, add_model, comma_list, floats, given

__all__ = ["add_parser", "run"]


def _add_calibration(ssub) -> None:
    pc = ssub.add_parser("calibration", help="posterior identifiability & calibration (the seed experiment)")
    add_model(pc, checkpoint_alias=True)
    pc.add_argument("--data", type=Path, default=None, help="held-out chunk .npz (default: shipped chunk)")
    pc.add_argument("--cases", type=int, default=8, help="cases per regime (default 8, as the seed)")
    add_engine_method(pc)
    pc.add_argument("--regimes", default=None, help="comma list of the seed's regimes (default: all three)")
    pc.add_argument("--particles", type=int, default=None,
                    help="sampler particles (default: the method's own, the seed's 64 for cem, 2,048 for smc)")
    pc.add_argument("--steps", type=int, default=None, help="flow Euler steps (default: the seed's 60)")
    pc.add_argument("--scheduler", default=None, help="Dask scheduler address to spread cases over")
    pc.add_argument("--no-parameter-error", action="store_true",
                    help="leave the model's calibrated parameter error out of the posteriors (for comparison)")
    pc.add_argument("--no-band-scale", action="store_true",
                    help="leave the model's calibrated predictive band scale out (for comparison)")
    pc.add_argument("--out", type=Path, default=Path("ecsfm_study"), help="output folder (default ecsfm_study)")
    pc.add_argument("--fresh", action="store_true",
                    help="discard a study of other settings in --out (otherwise refused; the same settings resume)")
    pc.add_argument("--no-progress", action="store_true")


def _add_sbc(ssub) -> None:
    pb = ssub.add_parser("sbc", help="simulation-based calibration over prior draws")
    add_model(pb)
    pb.add_argument("--n", type=int, default=200, help="prior draws (default 200)")
    pb.add_argument("--task", default="cv")
    pb.add_argument("--stage", default="intermediate")
    add_engine_method(pb)
    pb.add_argument("--particles", type=int, default=None, help="sampler particles (default: the method's own)")
    pb.add_argument("--noise", type=float, default=0.02, help="observation noise sd, mA (default 0.02)")
    pb.add_argument("--seed", type=int, default=0)
    pb.add_argument("--scheduler", default=None)
    pb.add_argument("--no-parameter-error", action="store_true",
                    help="leave the model's calibrated parameter error out of the posteriors (for comparison)")
    pb.add_argument("--out", type=Path, default=Path("ecsfm_sbc"))
    pb.add_argument("--fresh", action="store_true",
                    help="discard an SBC of other settings in --out (otherwise refused; the same settings resume)")
    pb.add_argument("--compare", type=Path, nargs="+", default=None, metavar="SBC_JSON",
                    help="instead of running: plot these sbc.json results' coverage curves side by side into --out")
    pb.add_argument("--no-progress", action="store_true")


def _add_engines(ssub) -> None:
    pe = ssub.add_parser("engines", help="surrogate vs simulator posterior on the same held-out cases")
    add_model(pe, checkpoint_alias=True)
    pe.add_argument("--data", type=Path, default=None, help="held-out chunk .npz (default: shipped chunk)")
    pe.add_argument("--cases", type=int, default=6, help="held-out cases (default 6)")
    pe.add_argument("--regime", default="dense_clean", help="one of the seed's regimes (default dense_clean)")
    pe.add_argument("--out", type=Path, default=Path("ecsfm_engines"))
    pe.add_argument("--no-progress", action="store_true")


def _add_sweep(ssub) -> None:
    pw = ssub.add_parser("sweep", help="recovery vs information: keep fraction x noise grid, heat maps")
    add_model(pw, checkpoint_alias=True)
    pw.add_argument("--data", type=Path, default=None, help="held-out chunk .npz (default: shipped chunk)")
    pw.add_argument("--keep", default="1,0.35,0.1", help="comma list of observed fractions (default 1,0.35,0.1)")
    pw.add_argument("--noise", default="0.01,0.02,0.08", help="comma list of noise sd, mA (default 0.01,0.02,0.08)")
    pw.add_argument("--cases", type=int, default=10, help="held-out cases per cell (default 10)")
    pw.add_argument("--tasks", default=None, help="comma list: draw cases only from these tasks (default: all)")
    add_engine_method(pw)
    pw.add_argument("--scheduler", default=None, help="Dask scheduler address to spread cases over")
    pw.add_argument("--out", type=Path, default=Path("ecsfm_sweep"))
    pw.add_argument("--no-progress", action="store_true")


def _add_mechanisms(ssub) -> None:
    pm = ssub.add_parser("mechanisms", help="which mechanism the evidence names, on cases simulated from each")
    pm.add_argument("--cases", type=int, default=100, help="cases per mechanism (default 100)")
    pm.add_argument("--mechanisms", default="E,EC,ECcat,CE", help="comma list of candidates (default E,EC,ECcat,CE)")
    pm.add_argument("--noise", default="0.005,0.02", help="comma list of noise sd, fractions of each trace's peak")
    pm.add_argument("--particles", type=int, default=256, help="SMC particles per fit (default 256)")
    pm.add_argument("--seed", type=int, default=0)
    pm.add_argument("--fresh", action="store_true", help="discard a study of other settings in --out")
    pm.add_argument("--out", type=Path, default=Path("ecsfm_mechanisms"))
    pm.add_argument("--no-progress", action="store_true")


def add_parser(subparsers) -> None:
    ps = subparsers.add_parser("study", help="reviewer-facing studies")
    ssub = ps.add_subparsers(dest="study", required=True)
    for add in (_add_calibration, _add_sbc, _add_engines, _add_sweep, _add_mechanisms):
        add(ssub)


def _calibration(args) -> int:
    from ...posterior import SEED_REGIMES, default_inference
    from ...studies.calibration import run_calibration_study

    regimes = None
    if args.regimes:
        names = comma_list(args.regimes)
        unknown = [r for r in names if r not in SEED_REGIMES]
        if unknown or not names:
            raise ValueError(f"regimes: unknown {unknown}; choose from {list(SEED_REGIMES)}")
        regimes = {r: SEED_REGIMES[r] for r in names}
    inference = None
    if args.particles is not None or args.steps is not None:
        inference = {**default_inference(**given(method=args.method)),
                     **given(n_particles=args.particles, n_steps=args.steps)}
    payload = run_calibration_study(args.out, model=args.model, chunk=args.data, n_cases=args.cases, regimes=regimes,
                                    inference=inference, scheduler=args.scheduler, progress=not args.no_progress,
                                    parameter_error=not args.no_parameter_error, band_scale=not args.no_band_scale,
                                    fresh=args.fresh, **given(engine=args.engine, method=args.method))
    for name, row in payload["summary"].items():
        print(f"  {name:12s} R={row['reliability_score_mean']:.1f} param_nrmse={row['param_nrmse_mean']:.3f} "
              f"pred_cal={row['pred_calibration_error_mean']:.3f} (exact posterior "
              f"{row['pred_calibration_error_exact_reference_mean']:.3f}) param cov 68/95 % intervals "
              f"{row['active_param_interval_cov_1sigma_pooled']:.2f}/"
              f"{row['active_param_interval_cov_2sigma_pooled']:.2f} "
              f"t={row['elapsed_s_mean']:.2f}s")
    for c in payload["criteria"]:
        print(f"  {'HELD' if c['held'] else 'NOT HELD'}: {c['criterion']}")
    print(f"wrote {args.out}/report.md")
    return 0


def _sbc(args) -> int:
    from ...studies.sbc import compare_sbc, run_sbc

    if args.compare:
        res = compare_sbc(args.compare, args.out / "sbc_compare.png")
        for label, curve in res["pooled_coverage"].items():
            print(f"  {label}: coverage at 50/90 % = {curve[res['levels'].index(0.5)]:.2f} / "
                  f"{curve[res['levels'].index(0.9)]:.2f}")
        print(f"wrote {args.out}/sbc_compare.png")
        return 0
    res = run_sbc(args.out, model_dir=args.model, n=args.n, task=args.task, stage=args.stage, noise=args.noise,
                  seed=args.seed, scheduler=args.scheduler, progress=not args.no_progress,
                  parameter_error=not args.no_parameter_error, fresh=args.fresh,
                  **given(engine=args.engine, method=args.method, n_particles=args.particles))
    for name, v in res["parameters"].items():
        print(f"  {name:12s} KS p = {v['ks_pvalue']:.3f}   90 % interval coverage {v['coverage']['0.9']:.3f}")
    if res["parameter_error_prior_weight"]:
        print(f"  posteriors mixed with the prior at the model's calibrated weight "
              f"{res['parameter_error_prior_weight']:.2f}")
    print(f"wrote {args.out}/sbc.json, sbc_ranks.png, sbc_coverage.png")
    return 0


def _engines(args) -> int:
    from ...studies.engines import run_engine_comparison

    res = run_engine_comparison(args.out, n_cases=args.cases, regime=args.regime, model=args.model, chunk=args.data,
                                progress=not args.no_progress)
    for engine in ("surrogate", "simulator"):
        v = res["summary"][engine]
        print(f"  {engine:10s} coverage +-1/2 sd {v['coverage_1sigma']:.2f} / {v['coverage_2sigma']:.2f}, "
              f"68/95 % intervals {v['interval_coverage_1sigma']:.2f} / {v['interval_coverage_2sigma']:.2f} "
              f"over {v['n_slots']} parameter slots")
    print(f"  posterior sd, surrogate / simulator (median): "
          f"{res['summary']['sd_ratio_surrogate_over_simulator_median']:.2f}")
    print(f"wrote {args.out}/engines.json, engines.png")
    return 0


def _sweep(args) -> int:
    from ...studies.sweep import run_information_sweep

    res = run_information_sweep(args.out, keep=floats("keep", args.keep), noise=floats("noise", args.noise),
                                n_cases=args.cases, model=args.model, chunk=args.data, scheduler=args.scheduler,
                                progress=not args.no_progress, tasks=comma_list(args.tasks) or None,
                                **given(engine=args.engine, method=args.method))
    for g in res["grid"]:
        print(f"  keep {g['keep']:<5g} noise {g['noise_std']:<6g} error {g['active_param_nrmse_prior_units_mean']:.3f}"
              f"  coverage +-1/2 sd {g['active_param_cov_1sigma_pooled']:.2f} / "
              f"{g['active_param_cov_2sigma_pooled']:.2f}"
              f"  68/95 % intervals {g['active_param_interval_cov_1sigma_pooled']:.2f} / "
              f"{g['active_param_interval_cov_2sigma_pooled']:.2f}")
    print(f"wrote {args.out}/sweep.json, sweep_heatmaps.png")
    return 0


def _mechanisms(args) -> int:
    from ...studies.mechanisms import run_mechanism_study

    res = run_mechanism_study(args.out, n_per_mechanism=args.cases, candidates=tuple(comma_list(args.mechanisms)),
                              noise_levels=floats("noise", args.noise), n_particles=args.particles, seed=args.seed,
                              fresh=args.fresh, progress=not args.no_progress)
    s = res["summary"]
    print("  simulated \\ most probable: " + "  ".join(f"{m:>6s}" for m in s["candidates"]))
    for m, row in zip(s["candidates"], s["confusion"]):
        print(f"  {m:>26s}  " + "  ".join(f"{v:6d}" for v in row))
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.3f}"
    print(f"  accuracy on the {s['n_distinguishable']} distinguishable cases {acc} "
          f"({s['n_indistinguishable']} cannot be told apart in principle); expected calibration error of the "
          f"probabilities {s['expected_calibration_error']:.3f}")
    print(f"wrote {args.out}/mechanisms.json, mechanisms.png")
    return 0


_STUDIES = {"calibration": _calibration, "sbc": _sbc, "engines": _engines, "sweep": _sweep, "mechanisms": _mechanisms}


def run(args) -> int:
    return _STUDIES[args.study](args)
