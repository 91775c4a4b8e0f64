"""The seed notebook's import path for posterior inference (``ecsfm.fm.posterior``): a thin
re-export of ``ecsfm.posterior``, where the code lives. Nothing inside ecsfm imports through it."""

from ..posterior import (  # noqa: F401  (re-exported for the seed notebook)
    CEMPosteriorConfig,
    PosteriorInferenceConfig,
    SMCPosteriorConfig,
    compute_reliability_metrics,
    infer_joint_posterior,
    infer_parameter_posterior,
)

__all__ = ["CEMPosteriorConfig", "PosteriorInferenceConfig", "SMCPosteriorConfig", "compute_reliability_metrics",
           "infer_parameter_posterior", "infer_joint_posterior"]
