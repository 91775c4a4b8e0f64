import pytest

from ecsfm import sim


@pytest.fixture
def peak():
    """Parabola-refined peak finder (the 1 mV sampling would quantise peaks to +-0.5 mV)."""
    return sim.find_peak
