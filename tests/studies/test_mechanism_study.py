"""The mechanism-identification study's bookkeeping: what counts as distinguishable (physics),
the confusion matrix and accuracy, and the reliability of the probabilities (against hand counts)."""

import math

import numpy as np
import pytest

from ecsfm.studies.mechanisms import CANDIDATES, distinguishable, draw_truth, prior_bounds, summarize
from ecsfm.workflows import model_probabilities

F_RT = 96485.33212 / (8.314462618 * 298.15)


def test_chemistry_too_slow_or_too_fast_to_show_is_not_counted():
    base = {"e0": 0.0, "k0": 0.01, "alpha": 0.5, "d": 1e-5}
    v = [0.02, 0.1, 0.5]
    # EC: k RT / F v at the slowest rate below 0.02 -> indistinguishable
    assert not distinguishable("EC", base | {"k_f": 0.01 * F_RT * 0.02}, v)[0]
    assert distinguishable("EC", base | {"k_f": 0.05 * F_RT * 0.02}, v)[0]
    # CE: K > 20 (O dominates at equilibrium) or K sqrt(k RT / F v) > 20 at the fastest rate
    assert not distinguishable("CE", base | {"k_f": 30.0, "k_b": 1.0}, v)[0]
    k_sum = (30.0 / 0.1) ** 2 * F_RT * 0.5  # K = 0.1, K sqrt(lambda) = 30
    assert not distinguishable("CE", base | {"k_f": k_sum * 0.1 / 1.1, "k_b": k_sum / 1.1}, v)[0]
    assert distinguishable("CE", base | {"k_f": 1.0, "k_b": 10.0}, v)[0]
    assert distinguishable("E", base, v)[0]


def test_drawn_cases_lie_in_the_boxes_the_fits_use():
    """The study's model probabilities can only be calibrated if each mechanism's rate constants are
    drawn from the prior its fit uses: each drawn rate lies in that fit's box, and over many draws
    the ln rates fill it uniformly (mean at the box's centre, sd of width / sqrt(12)); the shared
    parameters lie in the study's stated ranges."""
    rng = np.random.default_rng(0)
    for m in CANDIDATES:
        bounds = prior_bounds(m)
        draws = [draw_truth(m, rng) for _ in range(400)]
        assert set(draws[0]) == {"e0", "k0", "alpha", "d"} | set(bounds)
        for t in draws:
            assert -0.1 <= t["e0"] <= 0.1 and 1e-3 <= t["k0"] <= 1 and 0.4 <= t["alpha"] <= 0.6
            assert 5e-6 <= t["d"] <= 1.5e-5
        for name in bounds:
            lo, hi = bounds[name]
            x = np.asarray([t[name] for t in draws])
            assert np.all((x >= lo) & (x <= hi)), (m, name)
            if name in ("k_f", "k_b", "k_cat"):
                u = (np.log(x) - math.log(lo)) / math.log(hi / lo)
                assert abs(u.mean() - 0.5) < 4 * 0.2887 / 20 and abs(u.std() - 0.2887) < 0.03, (m, name)
    assert prior_bounds("E") == {}  # the shared parameters keep the fit's own boxes


def _record(true, probs, ok=True):
    names = list(CANDIDATES)
    return {"mechanism": true, "chosen": names[int(np.argmax(probs))], "distinguishable": ok,
            "fits": {m: {"probability": p} for m, p in zip(names, probs)}}


def test_confusion_accuracy_and_calibration_error_are_the_hand_counts():
    records = [_record("E", [0.9, 0.1, 0, 0]), _record("EC", [0.3, 0.7, 0, 0]), _record("EC", [0.6, 0.4, 0, 0]),
               _record("CE", [0.5, 0, 0, 0.5]), _record("ECcat", [0, 0, 1.0, 0], ok=False)]
    s = summarize(records, CANDIDATES)
    assert s["confusion"][0] == [1, 0, 0, 0] and s["confusion"][1] == [1, 1, 0, 0]
    assert s["confusion"][3] == [1, 0, 0, 0]  # a tie goes to the first (argmax)
    assert s["n_distinguishable"] == 4 and s["n_indistinguishable"] == 1 and s["accuracy"] == pytest.approx(0.5)
    # 20 (case, candidate) pairs; bins by probability, ECE = sum |mean p - frequency| n / N
    p = np.asarray([[0.9, 0.1, 0, 0], [0.3, 0.7, 0, 0], [0.6, 0.4, 0, 0], [0.5, 0, 0, 0.5], [0, 0, 1.0, 0]]).ravel()
    truth = np.asarray([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]).ravel()
    ece = 0.0
    for b in range(10):
        sel = np.clip((p * 10).astype(int), 0, 9) == b
        if sel.any():
            ece += abs(p[sel].mean() - truth[sel].mean()) * sel.sum() / p.size
    assert s["expected_calibration_error"] == pytest.approx(ece)


def test_model_probabilities_and_their_errors_follow_the_evidence():
    p, se = model_probabilities([-10.0, -10.0 - math.log(3)], [0.0, 0.0])
    assert p == pytest.approx([0.75, 0.25]) and se == pytest.approx([0.0, 0.0])
    # first-order error: dp_1/dlnZ_2 = -p_1 p_2, so sd(p_1) = p_1 p_2 sd(lnZ_2) when only Z_2 is noisy
    _, se = model_probabilities([-10.0, -10.0 - math.log(3)], [0.0, 0.2])
    assert se[0] == pytest.approx(0.75 * 0.25 * 0.2) and se[1] == pytest.approx(se[0])
    # the delta method against the spread of probabilities under noisy log evidences
    rng = np.random.default_rng(1)
    z = np.asarray([-5.0, -6.0, -8.0])
    sd = np.asarray([0.05, 0.1, 0.02])
    draws = z + sd * rng.standard_normal((20000, 3))
    w = np.exp(draws - draws.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    np.testing.assert_allclose(model_probabilities(z, sd)[1], w.std(0), rtol=0.05)
