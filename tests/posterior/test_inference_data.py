"""Posterior draws as ArviZ InferenceData: systematic resampling keeps every weight's share, and
what is written is what ArviZ reads back."""

from __future__ import annotations

import numpy as np
import pytest

from ecsfm.posterior import write_inference_data
from ecsfm.posterior.inference_data import equal_weight_draws


def test_systematic_resampling_gives_each_draw_its_share_within_one(stat_seed):
    rng = np.random.default_rng(stat_seed)
    w = rng.gamma(0.3, size=500)  # very uneven weights, many near zero
    n = 2000
    counts = np.bincount(equal_weight_draws(n, w, seed=stat_seed), minlength=w.size)
    assert counts.sum() == n
    assert np.all(np.abs(counts - n * w / w.sum()) < 1.0 + 1e-9)  # systematic resampling's guarantee


@pytest.mark.parametrize("weights", [np.array([1.0, -1.0]), np.array([0.0, 0.0]), np.array([1.0, np.nan])])
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError, match="weights"):
        equal_weight_draws(4, weights)


def test_what_is_written_is_what_arviz_reads(tmp_path):
    import arviz as az

    rng = np.random.default_rng(0)
    samples = {"d_ox": rng.lognormal(np.log(7e-6), 0.01, 300), "ru[0]": rng.uniform(1, 2, 300),
               "ru[1]": rng.uniform(5, 6, 300)}
    path = write_inference_data(tmp_path / "p.nc", samples, units={"d_ox": "cm^2/s", "ru[0]": "ohm"},
                                observed=[{"label": "a", "potential": np.linspace(0, 1, 7), "observed": np.ones(7)}],
                                attrs={"log_evidence": -3.5})
    idata = az.from_netcdf(path)
    np.testing.assert_array_equal(idata.posterior["d_ox"].values[0], samples["d_ox"])
    np.testing.assert_array_equal(idata.posterior["ru"].sel(trace=1).values[0], samples["ru[1]"])
    assert idata.posterior["ru"].attrs["units"] == "ohm" and idata.posterior.attrs["schema_version"] == 1
    assert idata.posterior.attrs["log_evidence"] == -3.5
    assert idata.observed_data["current_0"].attrs["units"] == "A"
    with pytest.raises(ValueError, match="same number of draws"):
        write_inference_data(tmp_path / "q.nc", {"a": np.ones(3), "b": np.ones(4)})
    assert not (tmp_path / "q.nc").exists()
