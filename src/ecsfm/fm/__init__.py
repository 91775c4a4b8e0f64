"""ecsfm.fm: the conditional flow-matching surrogate of the simulator.

Available now: the vector fields (``model``), the objective and sampler (``objective``), the
artifact format (``train``: file names, normaliser and metadata I/O) and geometry resolution
(``eval_classical``). Training and evaluation build on these.
"""

from .eval_classical import resolve_model_geometry
from .model import MLPVectorField, VectorFieldNet, time_embedding
from .objective import cfm_loss, integrate_flow
from .train import (
    CHECKPOINT_FILENAME,
    MODEL_META_FILENAME,
    NORMALIZERS_FILENAME,
    load_model_metadata,
    load_saved_normalizers,
    save_model_metadata,
    save_normalizers,
)

__all__ = [
    "CHECKPOINT_FILENAME",
    "MLPVectorField",
    "MODEL_META_FILENAME",
    "NORMALIZERS_FILENAME",
    "VectorFieldNet",
    "cfm_loss",
    "integrate_flow",
    "load_model_metadata",
    "load_saved_normalizers",
    "resolve_model_geometry",
    "save_model_metadata",
    "save_normalizers",
    "time_embedding",
]
