"""ecsfm.posterior: Bayesian inference of unknown parameters from partial, noisy currents.

>>> from ecsfm.fm import load_surrogate
>>> from ecsfm.posterior import PosteriorInferenceConfig, infer_parameter_posterior
>>> model, normalizers, meta, geometry = load_surrogate("model_dir")
>>> post = infer_parameter_posterior(model=model, normalizers=normalizers, geometry=geometry,
...                                  observed_current=i_obs, applied_signal=e, known_p_core=p_known,
...                                  known_p_mask=mask, config=PosteriorInferenceConfig())

Modules: ``config`` (engines, methods, sampler settings), ``space`` (the free-parameter space
and its prior), ``engines`` (surrogate or simulator forward), ``likelihood`` (covariance and
predictive), ``cem`` / ``smc`` (samplers), ``diagnostics`` (ESS, Pareto k-hat, coverage,
reliability), ``regimes`` (observation regimes and masks), ``model_check`` (does the fitted model describe
the data: the residuals' smooth structure against noise), ``prior_weight`` / ``calibrate``
(the surrogate's calibrated prior weight and band scale), ``infer`` (single-trace and joint
inference on the model's grid), ``inference_data`` (draws as an ArviZ netCDF file), ``joint`` (joint fits of measured sweeps with the simulator).
"""

from .calibrate import BAND_CASES_SCHEMA, calibrate_parameter_error, pack_band_cases, unpack_band_cases
from .cem import run_cem_posterior
from .config import (
    DEFAULT_ENGINE,
    DEFAULT_METHOD,
    SEED_INFERENCE,
    CEMPosteriorConfig,
    Engine,
    Method,
    PosteriorInferenceConfig,
    SMCPosteriorConfig,
    config_from_budget,
    default_inference,
    parse_engine,
    parse_method,
)
from .diagnostics import (
    INTERVAL_MASS,
    compute_reliability_metrics,
    interval_coverage,
    normalise_log_weights,
    pareto_khat,
    weighted_variance,
)
from .infer import infer_joint_posterior, infer_parameter_posterior
from .inference_data import INFERENCE_DATA_SCHEMA_VERSION, write_inference_data
from .model_check import ALARM_LEVEL, model_check, noise_from_second_differences
from .loo import leave_one_out
from .joint import JOINT_SCHEMA_VERSION, MECHANISM_H0, MECHANISM_SLOTS, SLOW_MECHANISMS, JointConfig, Trace, fit_joint, trace_from_measurement
from .prior_weight import BAND_KEEP, contaminate, predictive_band_scale, prior_weight
from .regimes import SEED_REGIMES, build_mask, validate_regimes
from .result import PER_TRACE_FIELDS, PosteriorResult
from .smc import run_smc_posterior
from .amortized import AmortizedConfig, AmortizedPosterior, load_amortized, save_amortized
from .amortized_sampler import AMORTIZED_KHAT_MAX, AMORTIZED_MIN_ESS, run_amortized_posterior
from .amortized_train import train_amortized
from .space import ParameterSpace

__all__ = [
    "ALARM_LEVEL",
    "BAND_KEEP",
    "CEMPosteriorConfig",
    "DEFAULT_ENGINE",
    "DEFAULT_METHOD",
    "Engine",
    "INFERENCE_DATA_SCHEMA_VERSION",
    "INTERVAL_MASS",
    "JOINT_SCHEMA_VERSION",
    "JointConfig",
    "Method",
    "PER_TRACE_FIELDS",
    "ParameterSpace",
    "PosteriorInferenceConfig",
    "PosteriorResult",
    "SEED_INFERENCE",
    "SEED_REGIMES",
    "SMCPosteriorConfig",
    "Trace",
    "build_mask",
    "calibrate_parameter_error",
    "pack_band_cases",
    "unpack_band_cases",
    "BAND_CASES_SCHEMA",
    "compute_reliability_metrics",
    "config_from_budget",
    "contaminate",
    "default_inference",
    "fit_joint",
    "MECHANISM_SLOTS",
    "SLOW_MECHANISMS",
    "MECHANISM_H0",
    "infer_joint_posterior",
    "infer_parameter_posterior",
    "write_inference_data",
    "leave_one_out",
    "model_check",
    "noise_from_second_differences",
    "interval_coverage",
    "normalise_log_weights",
    "parse_engine",
    "parse_method",
    "pareto_khat",
    "predictive_band_scale",
    "prior_weight",
    "run_cem_posterior",
    "run_smc_posterior",
    "AmortizedConfig",
    "AmortizedPosterior",
    "load_amortized",
    "save_amortized",
    "run_amortized_posterior",
    "train_amortized",
    "AMORTIZED_KHAT_MAX",
    "AMORTIZED_MIN_ESS",
    "trace_from_measurement",
    "validate_regimes",
    "weighted_variance",
]
