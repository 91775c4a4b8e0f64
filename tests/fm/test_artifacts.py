"""The model folder's typed card: parsed once, with the fallbacks of older metadata."""

from pathlib import Path

import numpy as np
import pytest

import ecsfm
from ecsfm.data import CoreLayout, ParamSpace, PriorSpec, simulate_rows
from ecsfm.fm.artifacts import ModelCard, discrepancy_of, load_model_metadata, resolve_model_geometry
from ecsfm.fm.config import TrainConfig

DEFAULT = Path(ecsfm.__file__).parent / "assets" / "default"

MINIMAL = {"hidden_size": 16, "depth": 2, "cond_dim": 8, "max_species": 2, "nx": 4}


def test_card_of_the_shipped_model():
    card = ModelCard.read(DEFAULT)
    meta = load_model_metadata(DEFAULT / "model_meta.json")
    assert card.raw == meta and card.schema_version == 1
    assert (card.max_species, card.nx, card.target_len, card.signal_channels) == (2, 16, 256, 1)
    assert card.layout == CoreLayout.from_meta(meta) and card.layout.size == meta["phys_dim_core"]
    assert card.task_names == tuple(meta["task_names"]) and card.stage_names == tuple(meta["stage_names"])
    assert (card.hidden_size, card.depth, card.cond_dim) == (meta["hidden_size"], meta["depth"], meta["cond_dim"])
    assert card.train_config() == TrainConfig(**meta["training_config"])
    assert card.simulator == meta["simulator"] and card.priors == meta["priors"]
    PriorSpec.from_dict(card.prior("cv", "intermediate"))
    with pytest.raises(ValueError, match="task/stage"):
        card.prior("cv", "expert")
    block = card.parameter_error(meta["parameter_error"]["form_version"], meta["parameter_error"]["method"])
    assert block == meta["parameter_error"]
    assert card.parameter_error(meta["parameter_error"]["form_version"] + 1, "cem") is None
    model = meta["discrepancy"]["per_task"]["cv"]["model"]
    assert card.discrepancy("cv") == {"a": model["a_mA"], "b": model["b"], "rho": model["rho"],
                                      "nugget": model["nugget"], "gain": model["gain"], "onset": model["onset"],
                                      "end": model["end"], "edge_points": model["edge_points"]}


def test_card_reads_old_and_minimal_metadata_with_its_fallbacks():
    card = ModelCard.from_meta(MINIMAL).check_complete()
    assert card.target_len is None and card.signal_channels == 1 and card.simulator is None
    assert card.layout.size == ParamSpace(2).size and card.priors == {} and card.training_config == {}
    with pytest.raises(ValueError, match="training_config"):
        card.train_config()
    # Before the correlated form: independent points; before the gain and the ends' terms: none.
    old = MINIMAL | {"discrepancy": {"per_task": {"cv": {"model": {"a_mA": 0.01, "b": 0.1}}}}}
    assert ModelCard.from_meta(old).discrepancy("cv") == {"a": 0.01, "b": 0.1, "rho": 0.0, "nugget": 1.0,
                                                          "gain": 0.0, "onset": 0.0, "end": 0.0, "edge_points": 1.0}
    # No fitted form: the residual RMS of the task, else of all tasks, as independent points.
    rms = {"discrepancy": {"current_residual_rms_mA": 0.2, "per_task": {"swv": {"residual_rms_mA": 0.05}}}}
    assert discrepancy_of(rms, "swv")["a"] == 0.05 and discrepancy_of(rms, "cv")["a"] == 0.2
    assert discrepancy_of(None, None) == {"a": 0.0, "b": 0.0, "rho": 0.0, "nugget": 1.0, "gain": 0.0,
                                          "onset": 0.0, "end": 0.0, "edge_points": 1.0}
    # Partial metadata (a discrepancy and nothing else) reads; only a complete card is a model's.
    partial = ModelCard.from_meta(rms)
    assert partial.discrepancy("swv") == discrepancy_of(rms, "swv") and partial.layout is None
    assert ModelCard.from_meta(None).max_species is None
    with pytest.raises(ValueError, match="max_species"):
        partial.check_complete()


@pytest.mark.parametrize("change, field", [
    ({"nx": None}, "nx"),
    ({"cond_dim": None}, "cond_dim"),
    ({"max_species": 0}, "max_species"),
    ({"depth": "4"}, "depth"),
    ({"task_names": ["cv", "cv"]}, "task_names"),
    ({"simulator": [1]}, "simulator"),
    ({"schema_version": 99}, "schema_version"),
])
def test_bad_metadata_raises_naming_the_field(change, field):
    meta = {k: v for k, v in (MINIMAL | change).items() if v is not None}
    with pytest.raises(ValueError, match=field):
        ModelCard.from_meta(meta).check_complete()


def test_geometry_fallback_base_size_is_the_layouts():
    s, nx, length = 3, 2, 8
    state = 2 * s * nx + length
    norms = (np.zeros(state), np.ones(state), np.zeros(length), np.ones(length), np.zeros(40), np.ones(40))
    geometry = resolve_model_geometry(norms, {"max_species": s, "nx": nx, "task_names": ["a"], "stage_names": []})
    assert geometry["phys_dim_base"] == ParamSpace(s).size == 24 and geometry["phys_dim_core"] == 25


def test_simulate_rows_needs_the_simulator_section():
    meta = load_model_metadata(DEFAULT / "model_meta.json")
    geometry = {k: meta[k] for k in ("target_len", "nx", "max_species")}
    space = ParamSpace(2)
    p = space.filler()[None]
    p[0, space.index("c_ox", 0)] = 1.0
    p[0, space.index("ln_time_scale")] = np.log(20.0)
    i, e, _ = simulate_rows(meta, geometry, "cv", p)
    assert i.shape == e.shape == (1, 256) and i.dtype == e.dtype == np.float64 and np.all(np.isfinite(i))
    assert np.ptp(i) > 0
    with pytest.raises(ValueError, match="simulator"):
        simulate_rows({}, geometry, "cv", p)
