import numpy as np
import pytest


def parabolic_peak(e, i, sign):
    """Peak (potential, current) of ``sign * i`` refined by a parabola through 3 points.

    The 1 mV sampling would otherwise quantise peak potentials to +-0.5 mV.
    """
    e = np.asarray(e)
    i = np.asarray(i)
    k = int(np.argmax(sign * i))
    y0, y1, y2 = sign * i[k - 1], sign * i[k], sign * i[k + 1]
    d = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return float(e[k] + d * (e[k + 1] - e[k])), float(sign * (y1 - 0.25 * (y0 - y2) * d))


@pytest.fixture
def peak():
    return parabolic_peak
