"""ecsfm.data: priors and recipes as data, seed-compatible dataset chunks, generation, inspection."""

from ._chunks import CHUNK_KEYS, MANIFEST_KEYS, dataset_file, read_chunk, read_json, read_manifest, read_npz, sha256_file, write_npz
from ._inspect import dataset_report, inspect_dataset, plot_gallery, plot_summary
from ._generate import SCHEMA_VERSION, Plan, chunk_path, generate, make_chunk, split_of
from ._prior import Dist, PriorSpec
from ._recipes import AUGMENTATION_NAMES, BASE_PRIOR, RECIPES, STAGE_CHANGES, STAGE_NAMES, Recipe
from ._space import GLOBAL_QUANTITIES, INACTIVE_FILLER, ROLES, SPECIES_QUANTITIES, ParamSpace
from ._tasks import MIN_SAMPLES_PER_PERIOD, TASK_NAMES, TASKS, TaskSpec

__all__ = [
    "AUGMENTATION_NAMES",
    "BASE_PRIOR",
    "CHUNK_KEYS",
    "Dist",
    "GLOBAL_QUANTITIES",
    "INACTIVE_FILLER",
    "MANIFEST_KEYS",
    "MIN_SAMPLES_PER_PERIOD",
    "ParamSpace",
    "Plan",
    "PriorSpec",
    "RECIPES",
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
    "split_of",
    "write_npz",
]
