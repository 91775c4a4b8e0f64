"""Reading numbers off voltammograms."""

from __future__ import annotations

import numpy as np

__all__ = ["find_peak"]


def find_peak(potential, current, sign: int) -> tuple[float, float]:
    """Peak (potential V, current A) of ``sign * current`` (sign = +1 anodic, -1 cathodic),
    refined by a parabola through the largest sample and its two neighbours.

    Without the refinement a 1 mV sampled sweep quantises the peak potential to +-0.5 mV.
    Raises ValueError if the extreme lies on the first or last sample (no peak inside).
    """
    if sign not in (1, -1):
        raise ValueError(f"sign: must be +1 (anodic) or -1 (cathodic), got {sign}")
    e = np.asarray(potential, dtype=np.float64)
    y = sign * np.asarray(current, dtype=np.float64)
    k = int(np.argmax(y))
    if k == 0 or k == y.size - 1:
        raise ValueError("current: the extreme is at an end of the trace, not a peak")
    y0, y1, y2 = y[k - 1], y[k], y[k + 1]
    curv = y0 - 2 * y1 + y2
    d = 0.5 * (y0 - y2) / curv if curv != 0 else 0.0
    return float(e[k] + d * (e[k + 1] - e[k])), float(sign * (y1 - 0.25 * (y0 - y2) * d))
