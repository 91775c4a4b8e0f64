"""ecsfm.fm: the conditional flow-matching surrogate of the simulator.

The vector fields and their construction (``model``, ``config``), the dataset rows as surrogate
inputs (``_data``), the objective and sampler (``objective``), training (``train``), the artifacts
on disk with the typed model card (``artifacts``) and the shipped default model (``assets``), the
calibrated discrepancy (``discrepancy``) and the scorecard against the simulator (``scorecard``).
``eval_classical``, ``train`` and ``posterior`` keep the seed notebook's import paths.
"""

from ._data import (
    CURRENT_SCALE_MA,
    STD_FLOOR,
    SurrogateData,
    current_to_state,
    fit_normalizers,
    load_rows,
    manifest_hash,
    state_to_current,
)
from .artifacts import (
    CHECKPOINT_FILENAME,
    META_SCHEMA_VERSION,
    MODEL_KEYS,
    MODEL_META_FILENAME,
    NORMALIZER_KEYS,
    NORMALIZERS_FILENAME,
    ModelCard,
    discrepancy_of,
    load_model_metadata,
    load_saved_normalizers,
    load_surrogate,
    resolve_model_geometry,
    save_model_metadata,
    save_normalizers,
)
from .assets import DEFAULT_MODEL_DIR, HELD_OUT_CHUNK_FILENAME, default_assets
from .config import TrainConfig
from .discrepancy import (
    DISCREPANCY_FORM_VERSION,
    LEVEL_HALF_WIDTH,
    calibrate_discrepancy,
    calibrate_discrepancy_fresh,
    current_level,
    discrepancy_correlation,
    discrepancy_covariance,
    discrepancy_edges,
    discrepancy_variance,
    edge_variance,
    fresh_prior_rows,
)
from .model import MLPVectorField, VectorFieldNet, build_model, time_embedding
from .objective import cfm_loss, integrate_flow, sample_current
from .scorecard import CANONICAL_SCENARIOS, SCORECARD_SCHEMA_VERSION, current_nrmse, evaluate_surrogate
from .train import train

__all__ = [
    "CANONICAL_SCENARIOS",
    "CHECKPOINT_FILENAME",
    "CURRENT_SCALE_MA",
    "DEFAULT_MODEL_DIR",
    "HELD_OUT_CHUNK_FILENAME",
    "DISCREPANCY_FORM_VERSION",
    "LEVEL_HALF_WIDTH",
    "META_SCHEMA_VERSION",
    "MLPVectorField",
    "MODEL_KEYS",
    "MODEL_META_FILENAME",
    "ModelCard",
    "NORMALIZERS_FILENAME",
    "NORMALIZER_KEYS",
    "SCORECARD_SCHEMA_VERSION",
    "STD_FLOOR",
    "SurrogateData",
    "TrainConfig",
    "VectorFieldNet",
    "build_model",
    "calibrate_discrepancy",
    "calibrate_discrepancy_fresh",
    "cfm_loss",
    "current_level",
    "current_nrmse",
    "current_to_state",
    "default_assets",
    "discrepancy_correlation",
    "discrepancy_covariance",
    "discrepancy_edges",
    "discrepancy_of",
    "discrepancy_variance",
    "edge_variance",
    "evaluate_surrogate",
    "fit_normalizers",
    "fresh_prior_rows",
    "integrate_flow",
    "load_model_metadata",
    "load_rows",
    "load_saved_normalizers",
    "load_surrogate",
    "manifest_hash",
    "resolve_model_geometry",
    "sample_current",
    "save_model_metadata",
    "save_normalizers",
    "state_to_current",
    "time_embedding",
    "train",
]
