"""ecsfm.workflows: file-in/file-out jobs built on the library.

* ``infer_files``: measured files -> posterior summary, artifacts and plots, on the route the
  library picks (``choose_route``): the model's protocol grid (``run_infer``) or the measured
  potential programs with the simulator (``run_joint_infer``);
* ``model_probabilities`` / ``mechanism_candidates``: the posterior probabilities of fitted
  variants from their log evidences, and the mechanisms ``--mechanism auto`` compares;
* ``run_demo``: the simulator demo's CSV files and figure;
* ``export_assets`` / ``recalibrate_discrepancy``: a trained surrogate with its calibrations and a
  held-out chunk, as the package ships them.
"""

from .compare import model_probabilities
from .demo import run_demo
from .export import (
    DISCREPANCY_ROWS_PER_TASK,
    PARAMETER_ERROR_CASES_PER_TASK,
    REBUILD_COMMANDS,
    export_assets,
    recalibrate_discrepancy,
)
from .infer import SUMMARY_SCHEMA_VERSION, estimate_noise, run_infer
from .infer_measured import run_joint_infer
from .measurement import (
    NOISE_UNIT,
    WAVEFORM_TOLERANCE_V,
    Route,
    choose_route,
    is_model_grid_npz,
    noise_to_amperes,
    parse_known,
    read_measurement,
    waveform_gap,
)
from .route import infer_files, mechanism_candidates

__all__ = [
    "DISCREPANCY_ROWS_PER_TASK",
    "NOISE_UNIT",
    "is_model_grid_npz",
    "PARAMETER_ERROR_CASES_PER_TASK",
    "REBUILD_COMMANDS",
    "Route",
    "SUMMARY_SCHEMA_VERSION",
    "WAVEFORM_TOLERANCE_V",
    "choose_route",
    "estimate_noise",
    "export_assets",
    "infer_files",
    "mechanism_candidates",
    "model_probabilities",
    "noise_to_amperes",
    "parse_known",
    "read_measurement",
    "run_demo",
    "recalibrate_discrepancy",
    "run_infer",
    "run_joint_infer",
    "waveform_gap",
]
