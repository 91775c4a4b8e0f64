"""The conditioning vector's layout ``[base | one-hot task | one-hot stage]`` against known truth."""

import numpy as np
import pytest

from ecsfm import data
from ecsfm.data import CoreLayout

TASKS = ("cv", "swv", "ca_step")
STAGES = ("basic", "intermediate")


def test_core_places_the_base_and_the_one_hots_where_design_says():
    for s in (1, 2, 3):
        layout = CoreLayout(s, TASKS, STAGES)
        n_base = 7 * s + 3  # DESIGN.md: 7 per-couple blocks of S slots, then 3 globals
        assert (layout.n_base, layout.n_tasks, layout.n_stages, layout.size) == (n_base, 3, 2, n_base + 5)
        assert layout.one_hot_slice == slice(n_base, n_base + 5)
        base = np.arange(n_base, dtype=np.float64) + 0.5
        core = layout.core(base, "swv", "intermediate")
        assert core.shape == (layout.size,) and core.dtype == np.float32
        for k in range(s):
            assert core[4 * s + k] == base[4 * s + k]  # E0 of couple k
            assert layout.names[4 * s + k] == f"e0[{k}]"
            assert layout.names[5 * s + k] == f"ln_k0[{k}]"
        np.testing.assert_array_equal(core[n_base:], [0, 1, 0, 0, 1])
        assert layout.names[n_base:] == ("task:cv", "task:swv", "task:ca_step", "stage:basic", "stage:intermediate")
        # Indices name the same slots as names; out-of-range indices are clipped (as the seed does).
        np.testing.assert_array_equal(layout.core(base, 1, 1), core)
        np.testing.assert_array_equal(layout.one_hot(99, -4), [0, 0, 1, 1, 0])
        # A whole core vector as the base row: its base part is taken.
        np.testing.assert_array_equal(layout.core(core, "cv", "basic")[:n_base], core[:n_base])


def test_known_mask_marks_the_one_hots_and_the_given_base_slots():
    layout = CoreLayout(2, TASKS, STAGES)
    np.testing.assert_array_equal(layout.known_mask(), [False] * 17 + [True] * 5)
    base_known = np.zeros(17, bool)
    base_known[layout.base.index("ln_time_scale")] = True
    mask = layout.known_mask(base_known)
    assert mask.dtype == bool and np.flatnonzero(mask).tolist() == [14, 17, 18, 19, 20, 21]
    with pytest.raises(ValueError, match="base_known"):
        layout.known_mask(np.ones(5, bool))


def test_task_and_stage_round_trip():
    layout = CoreLayout(2, TASKS, STAGES)
    base = np.random.default_rng(0).normal(size=layout.n_base)
    for task in TASKS:
        for stage in STAGES:
            core = layout.core(base, task, stage)
            assert (layout.task_of(core), layout.stage_of(core)) == (task, stage)
            np.testing.assert_array_equal(layout.base_of(core), base.astype(np.float32))
    rows = np.stack([layout.core(base, t, 0) for t in TASKS])
    assert layout.base_of(rows).shape == (3, layout.n_base)
    np.testing.assert_array_equal(layout.cores(rows[:, :17], [0, 1, 2], [0, 0, 0]), rows)
    empty = CoreLayout(1, (), ())
    assert empty.size == 10 and empty.task_of(np.zeros(10)) is None and empty.stage_of(np.zeros(10)) is None


def test_layout_from_meta_and_manifest():
    meta = {"max_species": 2, "task_names": list(data.TASK_NAMES), "stage_names": list(data.STAGE_NAMES)}
    layout = CoreLayout.from_meta(meta)
    assert layout == CoreLayout.from_manifest(meta) == CoreLayout(2, data.TASK_NAMES, data.STAGE_NAMES)
    assert isinstance(layout.task_names, tuple) and layout.size == 17 + len(data.TASK_NAMES) + len(data.STAGE_NAMES)
    with pytest.raises(ValueError, match="stage_names"):
        CoreLayout.from_meta({"max_species": 2, "task_names": ["cv"]})


@pytest.mark.parametrize("args, field", [
    ((0, TASKS, STAGES), "max_species"),
    ((2.0, TASKS, STAGES), "max_species"),
    ((2, "cv", STAGES), "task_names"),
    ((2, ("cv", "cv"), STAGES), "task_names"),
    ((2, TASKS, ("basic", "")), "stage_names"),
    ((2, TASKS, (1, 2)), "stage_names"),
])
def test_bad_layouts_raise_naming_the_field(args, field):
    with pytest.raises(ValueError, match=field):
        CoreLayout(*args)


def test_bad_rows_raise_naming_the_argument():
    layout = CoreLayout(2, TASKS, STAGES)
    with pytest.raises(ValueError, match="base_row"):
        layout.core(np.zeros(5), "cv", "basic")
    with pytest.raises(ValueError, match="task"):
        layout.core(np.zeros(17), "eis", "basic")
    with pytest.raises(ValueError, match="stage"):
        layout.one_hot("cv", "expert")
    with pytest.raises(ValueError, match="core"):
        layout.task_of(np.zeros(20))
    with pytest.raises(ValueError, match="task_ids"):
        layout.cores(np.zeros((2, 17)), [0, 3], [0, 0])
