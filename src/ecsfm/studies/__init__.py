"""ecsfm.studies: reviewer-facing experiments that check the whole chain against known truth.

Each study computes (a JSON payload, resumable from a journal), then plots and reports in
separate functions:

* ``run_calibration_study``: the identifiability and calibration study (the seed experiment),
  ``ecsfm study calibration``;
* ``run_sbc`` / ``compare_sbc``: simulation-based calibration of the posterior, ``ecsfm study sbc``;
* ``run_engine_comparison``: the surrogate's posterior beside the simulator's, case by case;
* ``run_information_sweep``: recovery and calibration over a grid of observed fractions and noise.
"""

from .calibration import RESULT_FILENAME, STUDY_SCHEMA_VERSION, exact_posterior_calibration_error, run_calibration_study
from .calibration_report import paired_differences
from .engines import ENGINES_SCHEMA_VERSION, run_engine_comparison
from .sbc import LEVELS, SBC_FILENAME, SBC_SCHEMA_VERSION, compare_sbc, run_sbc
from .sweep import SWEEP_SCHEMA_VERSION, run_information_sweep

__all__ = [
    "ENGINES_SCHEMA_VERSION",
    "LEVELS",
    "RESULT_FILENAME",
    "SBC_FILENAME",
    "SBC_SCHEMA_VERSION",
    "STUDY_SCHEMA_VERSION",
    "SWEEP_SCHEMA_VERSION",
    "compare_sbc",
    "exact_posterior_calibration_error",
    "paired_differences",
    "run_calibration_study",
    "run_engine_comparison",
    "run_information_sweep",
    "run_sbc",
]
