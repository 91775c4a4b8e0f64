"""ecsfm: voltammograms to physical parameters with honest uncertainty."""

__version__ = "0.1.0"

from . import sim

__all__ = ["sim", "__version__"]
