"""ecsfm.studies: reviewer-facing experiments that check the whole chain against known truth.

``calibration``: the identifiability and calibration study (the seed experiment), as
``ecsfm study calibration``.
"""

from .calibration import SEED_INFERENCE, SEED_REGIMES, run_calibration_study

__all__ = ["SEED_INFERENCE", "SEED_REGIMES", "run_calibration_study"]
