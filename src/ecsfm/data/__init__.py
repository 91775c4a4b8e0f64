"""ecsfm.data: the parameter and conditioning layouts, priors and recipes as data, seed-compatible
dataset chunks, generation, simulation of a task's rows, inspection."""

from ._chunks import CHUNK_KEYS, MANIFEST_KEYS, dataset_file, read_chunk, read_json, read_manifest, read_npz, sha256_file, write_npz
from ._inspect import dataset_report, inspect_dataset, plot_gallery, plot_summary
from ._core import CoreLayout
from ._generate import SCHEMA_VERSION, Plan, chunk_path, generate, make_chunk, split_of
from ._physical import PHYSICAL_PARAMETERS, PhysicalParameter, slot_of
from ._prior import Dist, PriorSpec
from ._recipes import AUGMENTATION_NAMES, BASE_PRIOR, RECIPES, STAGE_CHANGES, STAGE_NAMES, Recipe
from ._simulate import REPORT_XI_MAX, electrode_key, simulate_rows, task_runner
from ._space import GLOBAL_QUANTITIES, INACTIVE_FILLER, ROLES, SPECIES_QUANTITIES, ParamSpace
from ._tasks import MIN_SAMPLES_PER_PERIOD, TASK_NAMES, TASKS, TaskSpec

__all__ = [
    "AUGMENTATION_NAMES",
    "BASE_PRIOR",
    "CHUNK_KEYS",
    "CoreLayout",
    "Dist",
    "GLOBAL_QUANTITIES",
    "INACTIVE_FILLER",
    "MANIFEST_KEYS",
    "MIN_SAMPLES_PER_PERIOD",
    "PHYSICAL_PARAMETERS",
    "ParamSpace",
    "PhysicalParameter",
    "Plan",
    "PriorSpec",
    "RECIPES",
    "REPORT_XI_MAX",
    "ROLES",
    "Recipe",
    "SCHEMA_VERSION",
    "SPECIES_QUANTITIES",
    "STAGE_CHANGES",
    "STAGE_NAMES",
    "TASKS",
    "TASK_NAMES",
    "TaskSpec",
    "chunk_path",
    "dataset_file",
    "dataset_report",
    "inspect_dataset",
    "plot_gallery",
    "plot_summary",
    "generate",
    "make_chunk",
    "read_chunk",
    "read_json",
    "read_manifest",
    "read_npz",
    "sha256_file",
    "slot_of",
    "simulate_rows",
    "electrode_key",
    "split_of",
    "task_runner",
    "write_npz",
]
