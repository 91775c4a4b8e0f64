"""The calibration study's verdict on recovery: paired differences between regimes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecsfm.studies.calibration import paired_differences

NAMES = ["dense_clean", "sparse_clean", "sparse_noisy"]


def _records(errors: dict[str, list[float]], cases=(3, 7, 11, 20)) -> list[dict]:
    return [{"regime": name, "case_index": c, "param_nrmse": e} for name, errs in errors.items()
            for c, e in zip(cases, errs)]


def test_a_constant_shift_is_exact_and_alternating_ones_have_the_sample_standard_error():
    base = [0.5, 0.7, 0.6, 0.9]
    rec = _records({"dense_clean": base, "sparse_clean": [b + 0.1 for b in base],
                    "sparse_noisy": [b + 0.1 + s for b, s in zip(base, (0.2, -0.2, 0.2, -0.2))]})
    up, flat = paired_differences(rec, NAMES)
    assert (up["from"], up["to"], up["n"]) == ("dense_clean", "sparse_clean", 4)
    assert up["mean"] == pytest.approx(0.1) and up["se"] == pytest.approx(0.0, abs=1e-12)
    # Differences +-0.2: mean 0, sample sd 0.2 * sqrt(4 / 3), standard error that / sqrt(4).
    assert flat["mean"] == pytest.approx(0.0, abs=1e-12)
    assert flat["se"] == pytest.approx(0.2 * math.sqrt(4 / 3) / 2)


def test_only_cases_present_in_both_regimes_are_paired():
    rec = _records({"dense_clean": [0.5, 0.6, 0.7, 0.8], "sparse_clean": [0.6, 0.7, 0.8, 0.9]})
    rec = [r for r in rec if not (r["regime"] == "sparse_clean" and r["case_index"] == 20)]
    rec.append({"regime": "sparse_clean", "case_index": 99, "param_nrmse": 5.0})  # no dense partner
    (step,) = paired_differences(rec, NAMES[:2])
    assert step["n"] == 3 and step["mean"] == pytest.approx(0.1)
    (single,) = paired_differences(_records({"dense_clean": [0.5], "sparse_clean": [0.9]}), NAMES[:2])
    assert single["n"] == 1 and single["mean"] == pytest.approx(0.4) and np.isnan(single["se"])
