"""Side-by-side SBC coverage curves (ecsfm study sbc --compare) on rank sets of known calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecsfm.cli import main
from ecsfm.studies.sbc import LEVELS, SBC_SCHEMA_VERSION


def _result(u_by_param: dict, engine: str) -> dict:
    per = {}
    for name, u in u_by_param.items():
        cover = [float(np.mean(np.abs(u - 0.5) <= c / 2)) for c in LEVELS]
        per[name] = {"n": int(u.size), "coverage": dict(zip(map(str, LEVELS), cover)), "u": u.tolist()}
    return {"schema_version": SBC_SCHEMA_VERSION, "parameters": per,
            "config": {"engine": engine, "method": "smc", "n": 2000, "task": "cv"}}


def test_compare_shows_the_calibrated_and_the_overconfident_run(tmp_path, capsys, stat_seed):
    rng = np.random.default_rng(stat_seed)
    # Calibrated: ranks uniform. Overconfident: intervals half as wide as they should be, so the
    # truth's posterior CDF piles at 0 and 1 (u = Phi(2 z), z standard normal).
    from scipy import stats

    good = {f"p{k}": rng.random(2000) for k in range(3)}
    bad = {f"p{k}": stats.norm.cdf(2 * rng.standard_normal(2000)) for k in range(3)}
    paths = []
    for name, res in (("sim", _result(good, "simulator")), ("sur", _result(bad, "surrogate"))):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(res))
    assert main(["study", "sbc", "--compare", *map(str, paths), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "sbc_compare.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "simulator/smc" in out and "surrogate/smc" in out
    from ecsfm.studies.sbc import compare_sbc

    res = compare_sbc(paths, tmp_path / "again.png")
    sim, sur = (np.asarray(v) for v in res["pooled_coverage"].values())
    lv = np.asarray(LEVELS)
    # Pooled over 6,000 ranks, each level's coverage is a binomial fraction: within 4 of its
    # standard errors of the exact value (19 levels: a miss at any of them has probability < 1e-3).
    def se(p):
        return np.sqrt(p * (1 - p) / 6000)

    assert np.all(np.abs(sim - lv) < 4 * se(lv))
    # Half-width intervals: a central level-c interval covers P(|z| <= q_c / 2).
    expect = 2 * stats.norm.cdf(stats.norm.ppf(0.5 + lv / 2) / 2) - 1
    assert np.all(np.abs(sur - expect) < 4 * se(expect))
    with pytest.raises(ValueError, match="at least two"):
        compare_sbc(paths[:1], tmp_path / "x.png")
