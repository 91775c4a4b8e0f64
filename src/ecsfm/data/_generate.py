"""Dataset generation: a plan, a pure chunk builder, and drivers (in process, or on Dask).

Determinism: chunk K is a pure function of (plan, K). Its random stream is
``SeedSequence([seed, K])``; its task composition is fixed by the recipe's weights (largest
remainder), so every full chunk runs the same compiled simulator programs whatever the worker
count or order. Rows are simulated per task in one natively batched call.

Durability: each chunk is written atomically (temp file + rename) with a JSON sidecar holding
its row count and sha256; a rerun skips chunks whose file matches its sidecar and rebuilds
missing or corrupt ones, so an interrupted run (even ``kill -9``) loses and duplicates nothing.
``manifest.json`` is written last, atomically.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import __version__, sim
from .._atomic import remove_stale_temporaries, write_text
from ._chunks import sha256_file, write_npz
from ._recipes import AUGMENTATION_NAMES, RECIPES, STAGE_NAMES
from ._simulate import REPORT_XI_MAX, task_runner
from ._space import SPECIES_QUANTITIES, ParamSpace
from ._tasks import TASK_NAMES, TASKS

__all__ = ["Plan", "SCHEMA_VERSION", "make_chunk", "generate", "chunk_path", "REPORT_XI_MAX"]

SCHEMA_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
CURRENT_UNIT = "mA"


#: Allowed ranges of the plan's sizes, so an absurd request is refused up front with its reason
#: instead of meeting an out-of-memory crash (or a loop over 10^9 chunk files) later.
_PLAN_RANGES = {"n_samples": (1, 10**9), "chunk_size": (1, 10**6), "target_len": (20, 16384), "nx": (2, 1024)}
#: One chunk's traces (chunk_size * target_len float32 values; 2^26 = 256 MB per array) are built
#: in memory together with the simulator's own states.
MAX_CHUNK_VALUES = 2**26


@dataclass(frozen=True)
class Plan:
    """Everything that determines a dataset's bytes."""

    recipe: str
    n_samples: int
    chunk_size: int
    max_species: int = 2
    target_len: int = 256
    nx: int = 16
    seed: int = 0
    solver: dict = field(default_factory=lambda: asdict(sim.SolverConfig()))

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe: unknown {self.recipe!r}; allowed: {', '.join(RECIPES)}")
        for name, (lo, hi) in _PLAN_RANGES.items():
            v = getattr(self, name)
            if not (isinstance(v, int) and lo <= v <= hi):
                raise ValueError(f"{name}: must be an integer in [{lo}, {hi}], got {v!r}")
        rows = min(self.chunk_size, self.n_samples)
        if rows * self.target_len > MAX_CHUNK_VALUES:
            raise ValueError(f"chunk_size: rows per chunk * target_len must be <= {MAX_CHUNK_VALUES} (a chunk is built "
                             f"in memory), got {rows} * {self.target_len}; use smaller chunks")
        ParamSpace(self.max_species)
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**63):
            raise ValueError(f"seed: must be an integer in [0, 2^63), got {self.seed!r}")
        sim.SolverConfig(**self.solver)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk_size)

    def base_rows(self, k: int) -> int:
        return min(self.chunk_size, self.n_samples - k * self.chunk_size)

    @property
    def space(self) -> ParamSpace:
        return ParamSpace(self.max_species)

    @property
    def config(self) -> sim.SolverConfig:
        return sim.SolverConfig(**self.solver)

    def task_counts(self, n: int) -> dict[str, int]:
        """Rows per task in a chunk of ``n`` base rows: the recipe's weights over the tasks this
        max_species allows, by largest remainder."""
        recipe = RECIPES[self.recipe]
        w = {t: recipe.tasks[t] for t in TASK_NAMES if TASKS[t].n_active[0] <= self.max_species}
        total = sum(w.values())
        if total <= 0:
            raise ValueError(f"recipe {self.recipe}: no task is possible with max_species={self.max_species}")
        exact = {t: n * v / total for t, v in w.items()}
        counts = {t: int(np.floor(x)) for t, x in exact.items()}
        for t in sorted(exact, key=lambda t: (counts[t] - exact[t], TASK_NAMES.index(t)))[: n - sum(counts.values())]:
            counts[t] += 1
        return counts

    def to_dict(self) -> dict:
        return asdict(self)


def chunk_path(out: str | os.PathLike, k: int) -> Path:
    return Path(out) / f"chunk_{k}.npz"


def _sidecar(out, k) -> Path:
    return Path(out) / f"chunk_{k}.json"




def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A fixed 64-bit integer hash (Steele et al., SplitMix64), vectorised."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_of(base_id: np.ndarray, seed: int, fractions) -> np.ndarray:
    """0 train / 1 val / 2 test for each base sample: a hash of (seed, base_id), so twins share
    their base sample's split and the assignment never depends on chunking or workers."""
    h = _splitmix64(_splitmix64(np.asarray(base_id, np.uint64)) ^ np.uint64(seed))
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    edges = np.cumsum(fractions)[:2]
    return np.searchsorted(edges, u, side="right").astype(np.uint8)


def make_chunk(plan: Plan, k: int) -> tuple[dict[str, np.ndarray], dict]:
    """Build chunk ``k``: (arrays, QC summary). Pure: the same (plan, k) gives the same arrays."""
    if not 0 <= k < plan.n_chunks:
        raise ValueError(f"chunk: must be in [0, {plan.n_chunks}), got {k}")
    recipe = RECIPES[plan.recipe]
    space = plan.space
    s = plan.max_species
    rng = np.random.default_rng(np.random.SeedSequence([plan.seed, k]))
    n = plan.base_rows(k)
    stage_w = np.asarray([recipe.stages[st] for st in STAGE_NAMES])
    parts = []
    qc = {"max_far_field": 0.0, "max_newton_residual_V": 0.0, "rows_per_task": {}}
    t0 = time.perf_counter()
    sim_s = 0.0
    for task, count in plan.task_counts(n).items():
        if count == 0:
            continue
        stages = rng.choice(len(STAGE_NAMES), size=count, p=stage_w)
        p = np.empty((count, space.size))
        for st in np.unique(stages):
            sel = stages == st
            p[sel] = recipe.prior(task, STAGE_NAMES[st]).sample(rng, int(sel.sum()), space)
        run = task_runner(task, plan.target_len, plan.nx, s, recipe.area, recipe.temperature, plan.config,
                          (recipe.electrode, recipe.radius))
        ts = time.perf_counter()
        i, e, t, prof, far, resid = jax.device_get(run(jnp.asarray(p, jnp.float32)))
        sim_s += time.perf_counter() - ts
        bad = ~np.all(np.isfinite(i), axis=1)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise RuntimeError(f"chunk {k}, task {task}: non-finite current for parameters "
                               f"{dict(zip(space.names, np.round(p[r], 6)))}")
        qc["max_far_field"] = max(qc["max_far_field"], float(np.max(far)))
        qc["max_newton_residual_V"] = max(qc["max_newton_residual_V"], float(np.max(resid)))
        qc["rows_per_task"][task] = int(count)
        parts.append(dict(
            i=i, e=e, t=t, p=p.astype(np.float32),
            ox=prof[:, :, 0].reshape(count, s * plan.nx), red=prof[:, :, 1].reshape(count, s * plan.nx),
            task_id=np.full(count, TASK_NAMES.index(task), np.int32), stage_id=stages.astype(np.int32),
        ))
    rows = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    order = rng.permutation(n)
    rows = {key: v[order] for key, v in rows.items()}
    rows["base_id"] = (k * plan.chunk_size + np.arange(n)).astype(np.int64)
    rows["aug_id"] = np.zeros(n, np.int32)

    # Exact augmentation: permuting the couple slots leaves the current unchanged.
    if s >= 2 and recipe.augment > 0:
        twins = np.flatnonzero(rng.random(n) < recipe.augment)
        perms = np.stack([_non_identity_permutation(rng, s) for _ in twins]) if twins.size else np.zeros((0, s), int)
        aug = {key: v[twins].copy() for key, v in rows.items()}
        for name, _, _ in SPECIES_QUANTITIES:
            blk = aug["p"][:, space.block(name)]
            aug["p"][:, space.block(name)] = np.take_along_axis(blk, perms, axis=1)
        for key in ("ox", "red"):
            prof = aug[key].reshape(-1, s, plan.nx)
            aug[key] = np.take_along_axis(prof, perms[:, :, None], axis=1).reshape(-1, s * plan.nx)
        aug["aug_id"] = np.ones(twins.size, np.int32)
        rows = {key: np.concatenate([rows[key], aug[key]]) for key in rows}

    rows["split"] = split_of(rows["base_id"], plan.seed, recipe.split)
    rows["task_names"] = np.asarray(TASK_NAMES)
    rows["stage_names"] = np.asarray(STAGE_NAMES)
    rows["augmentation_names"] = np.asarray(AUGMENTATION_NAMES)
    qc["simulate_s"] = sim_s
    qc["build_s"] = time.perf_counter() - t0
    return rows, qc


def _non_identity_permutation(rng: np.random.Generator, s: int) -> np.ndarray:
    perm = rng.permutation(s)
    return np.roll(perm, 1) if np.all(perm == np.arange(s)) else perm


# -------------------------------------------------------------------------------------------------
# Writing, resuming, driving


def chunk_is_complete(out, k) -> dict | None:
    """The sidecar of chunk ``k`` if the chunk file matches its checksum, else None."""
    side, path = _sidecar(out, k), chunk_path(out, k)
    if not (side.exists() and path.exists()):
        return None
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError:
        return None
    if meta.get("schema_version") != SCHEMA_VERSION or sha256_file(path) != meta.get("sha256"):
        return None
    return meta


def build_chunk_file(plan_dict: dict, k: int, out: str) -> dict:
    """Build and write chunk ``k`` and its sidecar (run in a worker); returns the sidecar."""
    plan = Plan(**plan_dict)
    t0 = time.perf_counter()
    arrays, qc = make_chunk(plan, k)
    tw = time.perf_counter()
    digest = write_npz(chunk_path(out, k), arrays)
    qc["write_s"] = time.perf_counter() - tw
    meta = {
        "schema_version": SCHEMA_VERSION,
        "chunk": k,
        "file": chunk_path(out, k).name,
        "rows": int(arrays["i"].shape[0]),
        "base_rows": plan.base_rows(k),
        "rows_per_split": {name: int(np.sum(arrays["split"] == j)) for j, name in enumerate(SPLIT_NAMES)},
        "sha256": digest,
        "qc": qc,
        "total_s": time.perf_counter() - t0,
    }
    write_text(_sidecar(out, k), json.dumps(meta, indent=1, sort_keys=True))
    return meta


def _check_plan_file(out: Path, plan: Plan) -> None:
    path = out / "plan.json"
    new = {"schema_version": SCHEMA_VERSION, "plan": plan.to_dict()}
    if path.exists():
        old = json.loads(path.read_text())
        if old != new:
            raise ValueError(f"out: {out} holds a different dataset (plan.json differs); "
                             "use a new --out folder or remove it")
    else:
        write_text(path, json.dumps(new, indent=1, sort_keys=True))


def generate(plan: Plan, out: str | os.PathLike, *, workers: int | None = None,
             scheduler: str | None = None, progress: bool = True) -> dict:
    """Generate (or finish) the dataset of ``plan`` in ``out``; returns the manifest.

    ``workers`` > 1 starts a local Dask cluster of that many single-threaded processes;
    ``scheduler`` connects to an existing Dask scheduler (``tcp://host:port``; the workers must
    see ``out`` on a shared filesystem, as on an HPC cluster started with dask-jobqueue).
    Without either, chunks are built in this process.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_plan_file(out, plan)
    remove_stale_temporaries(out)  # a kill mid-write leaves one; the rerun rewrites that file
    t0 = time.perf_counter()
    done = {k: m for k in range(plan.n_chunks) if (m := chunk_is_complete(out, k)) is not None}
    todo = [k for k in range(plan.n_chunks) if k not in done]
    bar = tqdm(total=plan.n_chunks, initial=len(done), unit="chunk", desc=f"generate {plan.recipe}",
               disable=not progress)
    if todo and (workers and workers > 1 or scheduler):
        from distributed import Client, LocalCluster, as_completed  # heavy; only for cluster runs

        cluster = None
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        try:
            futures = [client.submit(build_chunk_file, plan.to_dict(), k, str(out.resolve()), pure=False)
                       for k in todo]
            for fut in as_completed(futures):
                meta = fut.result()
                done[meta["chunk"]] = meta
                bar.update(1)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        for k in todo:
            done[k] = build_chunk_file(plan.to_dict(), k, str(out))
            bar.update(1)
    bar.close()
    manifest = _manifest(plan, [done[k] for k in range(plan.n_chunks)], time.perf_counter() - t0)
    write_text(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _manifest(plan: Plan, chunks: list[dict], elapsed_s: float) -> dict:
    recipe = RECIPES[plan.recipe]
    space = plan.space
    tasks = {t: {"time_scale_s": list(TASKS[t].time_scale),
                 "frequency_range_Hz": TASKS[t].frequency_range(plan.target_len)}
             for t in TASK_NAMES}
    return {
        "schema_version": SCHEMA_VERSION,
        "package": "ecsfm",
        "package_version": __version__,
        "plan": plan.to_dict(),
        "recipe": recipe.to_dict(plan.max_species),
        "seed": plan.seed,
        "simulator": {"solver_config": plan.solver, "dtype": "float32",
                      "area_cm2": recipe.area, "temperature_K": recipe.temperature,
                      "electrode": recipe.cell_geometry()},
        "max_species": plan.max_species,
        "target_len": plan.target_len,
        "nx": plan.nx,
        "params": space.describe(),
        "task_names": list(TASK_NAMES),
        "stage_names": list(STAGE_NAMES),
        "augmentation_names": list(AUGMENTATION_NAMES),
        "tasks": tasks,
        "units": {
            "i": f"{CURRENT_UNIT} (for the recipe's electrode area, {recipe.area} cm^2; IUPAC, oxidation +)",
            "e": "V (applied; for swv/dpv the staircase potential of each period)",
            "t": "s (for swv/dpv the end of each period's reverse/pulse sample)",
            "p": "see params (names, units, roles)",
            "ox": f"mM, (S * nx): couple-major, at {plan.nx} points on [0, {REPORT_XI_MAX}] sqrt(D_ox T)",
            "red": f"mM, (S * nx): couple-major, at {plan.nx} points on [0, {REPORT_XI_MAX}] sqrt(D_red T)",
            "task_id": "index into task_names", "stage_id": "index into stage_names",
            "aug_id": "index into augmentation_names", "base_id": "the simulated base sample of a row",
            "split": "0 train, 1 val, 2 test (by base sample)",
        },
        "split": {"names": list(SPLIT_NAMES), "fractions": list(recipe.split),
                  "rule": "splitmix64(splitmix64(base_id) ^ seed) mapped to [0, 1), thresholds at the cumulative fractions",
                  "rows": {name: sum(c["rows_per_split"][name] for c in chunks) for name in SPLIT_NAMES}},
        "chunks": [{key: c[key] for key in ("file", "rows", "base_rows", "sha256", "rows_per_split")} for c in chunks],
        "n_rows": sum(c["rows"] for c in chunks),
        "n_base_samples": plan.n_samples,
        "generation": {"elapsed_s_this_run": elapsed_s,
                       "chunk_build_s": sum(c["total_s"] for c in chunks),
                       "simulate_s": sum(c["qc"]["simulate_s"] for c in chunks),
                       "write_s": sum(c["qc"]["write_s"] for c in chunks)},
        "qc": {"max_far_field": max(c["qc"]["max_far_field"] for c in chunks),
               "max_newton_residual_V": max(c["qc"]["max_newton_residual_V"] for c in chunks)},
    }
