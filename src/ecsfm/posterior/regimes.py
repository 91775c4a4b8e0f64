"""Observation regimes: how much of a trace is observed and how noisy it is, and the seed's mask.

A regime is ``{"keep_prob": fraction of points observed, "noise_std": noise sd in mA}``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEED_REGIMES", "MIN_OBSERVED_POINTS", "build_mask", "validate_regimes"]

#: The seed's three regimes: dense and clean, sparse (35 % of the points) and clean, sparse and noisy.
SEED_REGIMES = {
    "dense_clean": {"keep_prob": 1.00, "noise_std": 0.02},
    "sparse_clean": {"keep_prob": 0.35, "noise_std": 0.02},
    "sparse_noisy": {"keep_prob": 0.35, "noise_std": 0.08},
}
#: The seed's floor on the observed points of a sparse mask.
MIN_OBSERVED_POINTS = 24


def build_mask(length: int, keep_prob: float, rng: np.random.Generator,
               min_points: int = MIN_OBSERVED_POINTS) -> np.ndarray:
    """The seed's observation mask (length,) float32 of 0/1: keep each point with ``keep_prob``,
    at least ``min_points`` (a dense regime, ``keep_prob >= 0.999``, keeps every point and draws
    nothing from ``rng``)."""
    if keep_prob >= 0.999:
        return np.ones((length,), dtype=np.float32)
    mask = rng.random(length) < keep_prob
    if int(mask.sum()) < min_points:
        idx = rng.choice(length, size=min(min_points, length), replace=False)
        mask[idx] = True
    return mask.astype(np.float32)


def validate_regimes(regimes: dict) -> dict:
    """``regimes`` checked: each a dict with ``keep_prob`` in (0, 1] and ``noise_std`` > 0.
    Raises ValueError naming the regime and field."""
    out = {}
    for name, reg in regimes.items():
        try:
            keep, noise = float(reg["keep_prob"]), float(reg["noise_std"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"regimes[{name!r}]: needs numeric keep_prob and noise_std, got {reg!r}") from None
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"regimes[{name!r}].keep_prob: must be in (0, 1], got {keep}")
        if not noise > 0.0:
            raise ValueError(f"regimes[{name!r}].noise_std: must be > 0, got {noise}")
        out[name] = {"keep_prob": keep, "noise_std": noise}
    return out
