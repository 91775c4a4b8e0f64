"""The amortised posterior: importance sampling against the exact likelihood makes any q exact,
the fallback from q still finds the posterior, training resumes by skipping what it did, and
a model for other data is refused in one line. A tiny model, barely trained, is the q here: what
is tested is the correction, which must not depend on how good q is."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ecsfm.cli import main
from ecsfm.data import CoreLayout
from ecsfm.fm import default_assets, load_surrogate
from ecsfm.posterior import (AmortizedConfig, PosteriorInferenceConfig, infer_parameter_posterior, load_amortized,
                             train_amortized)
from ecsfm.posterior.amortized import check_compatible

TINY = AmortizedConfig(embed_width=32, embed_dim=16, flow_layers=2, nn_width=16, nn_depth=1, knots=4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 384-row dataset of the default model's recipe and a q trained on it for 40 steps."""
    root = tmp_path_factory.mktemp("amortized")
    assert main(["generate", "--recipe", "curriculum_multitask", "--n-samples", "256", "--chunk-size", "256",
                 "--max-species", "2", "--target-len", "256", "--nx", "16", "--seed", "3", "--out", str(root / "data"),
                 "--no-progress"]) == 0
    record = train_amortized(root / "data", root / "q", steps=40, batch_size=32, config=TINY, save_every=20,
                             progress=False)
    return root, record


def _case(stat_seed):
    model, norms, meta, geometry = load_surrogate(default_assets()[0].parent)
    layout = CoreLayout.from_meta(meta)
    with np.load(default_assets()[1]) as z:
        active0 = layout.base.active_couples(z["p"][:, : layout.n_base])[:, 0]  # couple 0 present
        k = int(np.flatnonzero((z["task_id"] == list(meta["task_names"]).index("cv")) & active0)[stat_seed % 8])
        core = layout.core(z["p"][k], int(z["task_id"][k]), int(z["stage_id"][k]))
        current, signal = z["i"][k], z["e"][k]
    return model, norms, meta, geometry, layout, core, current, signal


def test_the_correction_makes_a_poor_q_exact(tiny, stat_seed):
    """Likelihood: E0[0] ~ N(e0_true, (10 mV)^2), nothing else informed, so the posterior of E0 is
    that Gaussian (well inside its box) and every other slot keeps its prior. The barely trained
    q is far from it (its raw draws' sd is many times 10 mV); corrected by importance sampling
    (falling back on SMC from q when the weights fail), the posterior mean and sd of E0 match
    within 5 standard errors."""
    root, _ = tiny
    model, norms, meta, geometry, layout, core, current, signal = _case(stat_seed)
    e0 = layout.base.index("e0", 0)
    truth = float(core[e0])
    override = lambda p: -0.5 * ((p[:, e0] - truth) / 0.01) ** 2  # noqa: E731
    kw = dict(model=model, normalizers=norms, geometry=geometry, observed_current=current, applied_signal=signal,
              known_p_core=core, known_p_mask=layout.known_mask(), seed=stat_seed, amortized_model=root / "q",
              log_likelihood_override=override)
    raw = infer_parameter_posterior(config=PosteriorInferenceConfig(method="amortized_raw", engine="simulator"), **kw)
    post = infer_parameter_posterior(config=PosteriorInferenceConfig(method="amortized", engine="simulator"), **kw)
    assert raw["posterior_std_raw"][e0] > 3 * 0.01
    ess = post["ess"]
    assert abs(post["posterior_mean_raw"][e0] - truth) < 5 * 0.01 / math.sqrt(ess)
    assert abs(post["posterior_std_raw"][e0] / 0.01 - 1) < 5 / math.sqrt(2 * ess)
    diag = post["sampler"]["amortized"]
    assert 0.0 <= diag["efficiency"] <= 1.0 and math.isfinite(post["log_evidence"])
    if diag["fell_back"]:  # the result says so
        assert any("SMC started from it" in w for w in post["warnings"])


def test_training_resumes_by_skipping_what_it_did_and_refuses_other_settings(tiny):
    """A rerun of the finished run does no step (counted from the record); other settings into
    the same folder are refused by name."""
    root, first = tiny
    assert first["resumed_from_step"] == 0 and first["steps"] == 40
    again = train_amortized(root / "data", root / "q", steps=40, batch_size=32, config=TINY, save_every=20,
                            progress=False)
    assert again["resumed_from_step"] == 40
    with pytest.raises(ValueError, match="other settings"):
        train_amortized(root / "data", root / "q", steps=41, batch_size=32, config=TINY, progress=False)
    _, meta = load_amortized(root / "q")
    assert meta["schema_version"] == 1 and meta["training"]["n_train_rows"] > 0
    assert json.loads((root / "q" / "amortized_meta.json").read_text())["dim"] == meta["dim"]


def test_a_model_for_other_data_is_refused_in_one_line(tiny):
    root, _ = tiny
    _, ameta = load_amortized(root / "q")
    _, _, meta, geometry = load_surrogate(default_assets()[0].parent)
    check_compatible(ameta, meta, geometry["target_len"])  # the same recipe: accepted
    for change, word in (({"target_len": 128}, "trace length"), ({"task_names": ["cv"]}, "tasks"),
                         ({"priors": {}}, "prior")):
        with pytest.raises(ValueError, match=word) as err:
            check_compatible({**ameta, **change}, meta, geometry["target_len"])
        assert "\n" not in str(err.value)


def test_importance_weights_alone_correct_q_where_its_density_slopes(monkeypatch, stat_seed):
    """Pure importance sampling (one round, no fallback) with a q whose density is known in closed
    form: Gaussian in the flow's units, sd 1 / Y_SCALE on E0[0]'s coordinate (steep where the
    likelihood sits; every other slot stated), standard on the padding. Likelihood: E0[0] ~
    N(0.19 V, (30 mV)^2), near the top of its box, where this q's density falls by e^-2 across the
    posterior; with a flat prior the posterior of E0 is that Gaussian truncated to the box (scipy's
    truncnorm). Weights that left q out would pull the mean about one posterior sd down. The
    weighted mean and sd must match within 5 standard errors."""
    from scipy import stats

    from ecsfm.posterior import ParameterSpace, run_amortized_posterior
    from ecsfm.posterior import amortized_sampler as sampler
    from ecsfm.posterior.amortized import Y_SCALE

    _, _, meta, geometry, layout, core, _, _ = _case(0)
    e0 = layout.base.index("e0", 0)
    stated = np.ones(layout.n_base, bool)
    stated[e0] = False  # E0 alone free: the weights' variance is E0's, the padding's ratio is exactly 1
    space = ParameterSpace(meta, core, layout.known_mask(stated), geometry)
    assert list(space.free) == [e0]
    sd = np.ones(layout.n_base)
    sd[e0] = 1.0 / Y_SCALE

    def log_q(v):
        return np.sum(-0.5 * (v / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi), axis=-1)

    def fake_draw(model, key, context, n):
        v = np.random.default_rng(int(np.asarray(jax.random.key_data(key)).sum())).standard_normal((n, sd.size)) * sd
        return v, log_q(v)

    import jax

    monkeypatch.setattr(sampler, "draw", fake_draw)
    monkeypatch.setattr(sampler, "log_density", lambda model, v, context: log_q(np.asarray(v)))
    lo, hi = space.lows[e0], space.highs[e0]
    mu, s = 0.19, 0.03
    post = run_amortized_posterior(None, np.zeros(4), space, lambda y: -0.5 * ((space.to_raw(y)[:, e0] - mu) / s) ** 2,
                                   n_draws=8192, rounds=1, min_ess=1.0, khat_max=np.inf, seed=stat_seed)
    assert not post["amortized"]["fell_back"] and post["amortized"]["rounds"] == 1
    x, w = space.to_raw(post["samples"])[:, e0], post["weights"]
    exact = stats.truncnorm((lo - mu) / s, (hi - mu) / s, loc=mu, scale=s)
    mean = float(np.sum(w * x))
    spread = float(np.sqrt(np.sum(w * (x - mean) ** 2)))
    ess = post["ess"]
    assert ess > 100, ess
    assert abs(mean - exact.mean()) < 5 * exact.std() / math.sqrt(ess)
    assert abs(spread / exact.std() - 1) < 5 / math.sqrt(2 * ess)
