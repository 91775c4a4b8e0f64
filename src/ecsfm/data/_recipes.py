"""Stages and recipes: which priors and tasks a dataset draws from, as data.

The prior of a row is ``BASE_PRIOR`` with its stage's changes and its task's (number of active
couples, time-scale range) applied. Stages form a curriculum from near-reversible, low-Ru cells
to stress cases; a recipe is a mixture over stages and tasks. Everything serialises into the
dataset manifest (and from there into ``model_meta.json``), so the log prior of any parameter
vector can be evaluated later with ``Recipe.prior(task, stage).log_prob``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import sim
from ._prior import Dist, PriorSpec
from ._tasks import TASK_NAMES, TASKS

__all__ = ["STAGE_NAMES", "BASE_PRIOR", "STAGE_CHANGES", "Recipe", "RECIPES", "AUGMENTATION_NAMES", "ELECTRODES"]

STAGE_NAMES = ("baseline", "foundation", "intermediate", "advanced", "stress")
#: a recipe's electrode -> its area over r^2 (None: planar, any area), as the ``sim`` geometry gives it
ELECTRODES = {"planar": None} | {name: float(sim.GEOMETRIES[name](radius=1.0).area())
                                 for name in ("disc", "sphere", "hemisphere")}
#: aug_id 0 is the simulated row; 1 is an exact twin with the couple slots permuted (the
#: current of independent couples does not depend on their order).
AUGMENTATION_NAMES = ("none", "permute_couples")

#: Physical ranges shared by every stage (literature-typical aqueous values at a macroelectrode,
#: 1 cm^2): D 1e-6..5e-5 cm^2/s, C_ox 0.5..2 mM, E0 within +-0.25 V of the window centre (the
#: windows run 0.5 .. -0.5 V, so every wave lies >= 0.25 V inside: no trace is flat by
#: construction), alpha 0.3..0.7.
BASE_PRIOR = PriorSpec(
    species={
        "ln_d_ox": Dist("loguniform", 1e-6, 5e-5),
        "ln_d_red": Dist("loguniform", 1e-6, 5e-5),
        "c_ox": Dist("uniform", 0.5, 2.0),
        "c_red": Dist("fraction", 0.0, 0.5, of="c_ox"),
        "e0": Dist("uniform", -0.25, 0.25),
        "ln_k0": Dist("loguniform", 1e-4, 1.0),
        "alpha": Dist("uniform", 0.3, 0.7),
    },
    globals={
        "ln_time_scale": Dist("loguniform", 2.0, 200.0),
        "ln_ru": Dist("loguniform", 0.1, 20.0),
        "ln_cdl": Dist("loguniform", 1e-6, 2e-5),
    },
)

#: What each stage changes in BASE_PRIOR (ranges of k0 in cm/s, Ru in ohm, Cdl in F/cm^2).
STAGE_CHANGES = {
    "baseline": {
        "ln_k0": Dist("loguniform", 1e-6, 1.0),
        "ln_ru": Dist("loguniform", 0.1, 100.0),
        "ln_cdl": Dist("loguniform", 1e-6, 5e-5),
        "c_red": Dist("fraction", 0.0, 1.0, of="c_ox"),
    },
    "foundation": {
        "ln_k0": Dist("loguniform", 1e-2, 1.0),
        "ln_ru": Dist("loguniform", 0.1, 2.0),
        "ln_cdl": Dist("loguniform", 1e-6, 5e-6),
        "c_red": Dist("fraction", 0.0, 0.1, of="c_ox"),
    },
    "intermediate": {},
    "advanced": {
        "ln_k0": Dist("loguniform", 1e-6, 1.0),
        "ln_ru": Dist("loguniform", 0.1, 100.0),
        "ln_cdl": Dist("loguniform", 1e-6, 5e-5),
        "c_red": Dist("fraction", 0.0, 1.0, of="c_ox"),
    },
    "stress": {
        "ln_k0": Dist("loguniform", 1e-7, 10.0),
        "ln_ru": Dist("loguniform", 10.0, 300.0),
        "ln_cdl": Dist("loguniform", 2e-5, 1e-4),
        "c_ox": Dist("uniform", 0.1, 10.0),
        "c_red": Dist("fraction", 0.0, 1.0, of="c_ox"),
    },
}


def _normalise(name: str, weights: dict, vocabulary: tuple) -> dict:
    for k, w in weights.items():
        if k not in vocabulary:
            raise ValueError(f"{name}: unknown {k!r}; allowed: {', '.join(vocabulary)}")
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"{name}: weight of {k} must be >= 0, got {w}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"{name}: weights must not all be zero")
    return {k: weights.get(k, 0.0) / total for k in vocabulary}


@dataclass(frozen=True)
class Recipe:
    """A dataset recipe: mixture weights over stages and tasks, exact augmentation, split.

    Attributes:
        name: recipe name.
        stages, tasks: relative weights (normalised on construction).
        augment: probability that a base row with >= 2 couple slots also gets a permuted twin.
        split: train / val / test fractions, assigned per base sample.
        area: electrode area of every row, cm^2 (currents are stored in mA for this area). With a
            ``radius`` it follows from the electrode: pi r^2 for a disc, 4 pi r^2 for a sphere,
            2 pi r^2 for a hemisphere.
        temperature: K.
        electrode: the diffusion field of every row: "planar" (default), or "disc", "sphere",
            "hemisphere" with their ``radius`` in cm (``sim.Disc`` etc.).
        radius: cm, for a disc, sphere or hemisphere; None for planar.
    """

    name: str
    stages: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)
    augment: float = 0.5
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    area: float = 1.0
    temperature: float = 298.15
    electrode: str = "planar"
    radius: float | None = None

    def __post_init__(self):
        if self.electrode not in ELECTRODES:
            raise ValueError(f"electrode: must be one of {', '.join(ELECTRODES)}, got {self.electrode!r}")
        if (self.radius is None) != (self.electrode == "planar"):
            raise ValueError(f"radius: a {self.electrode} electrode {'has none' if self.radius else 'needs one'} (cm)")
        if self.radius is not None:
            if not (math.isfinite(self.radius) and 0 < self.radius <= 100.0):
                raise ValueError(f"radius: must be in (0, 100] cm, got {self.radius}")
            object.__setattr__(self, "area", ELECTRODES[self.electrode] * self.radius**2)
        object.__setattr__(self, "stages", _normalise("stages", self.stages, STAGE_NAMES))
        object.__setattr__(self, "tasks", _normalise("tasks", self.tasks, TASK_NAMES))
        if not 0.0 <= self.augment <= 1.0:
            raise ValueError(f"augment: must be in [0, 1], got {self.augment}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-9:
            raise ValueError(f"split: need three fractions >= 0 summing to 1, got {self.split}")

    def prior(self, task: str, stage: str) -> PriorSpec:
        """The prior of rows of ``task`` in ``stage``."""
        spec = TASKS[task]
        changes = dict(STAGE_CHANGES[stage])
        changes["ln_time_scale"] = Dist("loguniform", *spec.time_scale)
        changes["n_active"] = spec.n_active
        return BASE_PRIOR.replace(**changes)

    def cell_geometry(self) -> dict:
        """The electrode as the manifest's ``simulator`` section records it: ``{"name": ...}``
        with ``radius_cm`` when it has one (``task_runner`` builds the ``sim`` geometry from it)."""
        return {"name": self.electrode} | ({} if self.radius is None else {"radius_cm": self.radius})

    def to_dict(self, max_species: int | None = None) -> dict:
        priors = {
            f"{task}/{stage}": self.prior(task, stage).to_dict()
            for task in TASK_NAMES
            for stage in STAGE_NAMES
            if self.tasks[task] > 0 and self.stages[stage] > 0
            and (max_species is None or TASKS[task].n_active[0] <= max_species)
        }
        return {
            "name": self.name,
            "stages": self.stages,
            "tasks": self.tasks,
            "augment": self.augment,
            "augmentation_names": list(AUGMENTATION_NAMES),
            "split": list(self.split),
            "area_cm2": self.area,
            "temperature_K": self.temperature,
            "electrode": self.cell_geometry(),
            "priors": priors,
        }


RECIPES = {
    r.name: r
    for r in (
        Recipe("baseline_random", stages={"baseline": 1.0}, tasks={t: 1.0 for t in TASK_NAMES}),
        Recipe(
            "curriculum_multitask",
            stages={"foundation": 0.3, "intermediate": 0.4, "advanced": 0.3},
            tasks={"cv": 0.3, "cv_multispecies": 0.2, "ca_step": 0.15, "swv": 0.15, "dpv": 0.1, "eis": 0.1},
        ),
        # A 10 um microdisc: over the tasks' time scales (2-200 s) and the prior's D, p = r sqrt(F v / RT D)
        # runs from ~0.1 (steady state) to ~6 (peaked): the regimes a microdisc user meets.
        Recipe(
            "microdisc_multitask",
            stages={"foundation": 0.3, "intermediate": 0.4, "advanced": 0.3},
            tasks={"cv": 0.4, "ca_step": 0.2, "swv": 0.2, "dpv": 0.2},
            electrode="disc", radius=1e-3,
        ),
        Recipe(
            "stress_mixture",
            stages={"intermediate": 0.25, "advanced": 0.25, "stress": 0.5},
            tasks={t: 1.0 for t in TASK_NAMES},
        ),
    )
}
