"""The conditioning vector's layout: the one owner of ``[base | one-hot task | one-hot stage]``.

The surrogate is conditioned on a core vector of ``size = n_base + n_tasks + n_stages`` slots:
the base parameters (``ParamSpace(max_species)``, so ``core[4*S + k]`` is E0 of couple k), then
one slot per task name and one per stage name, exactly one of each block set to 1. Everything in
ecsfm that builds, slices or reads that vector asks a ``CoreLayout`` instead of doing index
arithmetic on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._space import ParamSpace

__all__ = ["CoreLayout"]


def _names(field: str, value) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise ValueError(f"{field}: must be a sequence of names, got {type(value).__name__}")
    names = tuple(str(v) if isinstance(v, str) else v for v in value)  # np.str_ -> str
    bad = [v for v in names if not (isinstance(v, str) and v)]
    if bad:
        raise ValueError(f"{field}: every name must be a non-empty string, got {bad[0]!r}")
    if len(set(names)) != len(names):
        dupes = sorted({v for v in names if names.count(v) > 1})
        raise ValueError(f"{field}: names must be unique, {dupes} repeat")
    return names


@dataclass(frozen=True)
class CoreLayout:
    """Layout of the core vector ``[base (n_base) | one-hot task (n_tasks) | one-hot stage (n_stages)]``.

    ``max_species``: couple slots of the base block (``ParamSpace``'s range, [1, 16]);
    ``task_names`` / ``stage_names``: the vocabularies, in one-hot order (unique, non-empty;
    either may be empty, then its block has no slots). Lists are accepted and stored as tuples.
    Raises ValueError naming the field on any other input.
    """

    max_species: int
    task_names: tuple[str, ...]
    stage_names: tuple[str, ...]

    def __post_init__(self):
        ParamSpace(self.max_species)  # raises ValueError naming max_species
        object.__setattr__(self, "task_names", _names("task_names", self.task_names))
        object.__setattr__(self, "stage_names", _names("stage_names", self.stage_names))

    @classmethod
    def from_meta(cls, meta: Mapping) -> CoreLayout:
        """The layout a ``model_meta.json`` dict records (keys ``max_species``, ``task_names``,
        ``stage_names``). Raises ValueError naming a missing or bad key."""
        return cls._from_dict(meta, "model metadata")

    @classmethod
    def from_manifest(cls, manifest: Mapping) -> CoreLayout:
        """The layout of a dataset's ``manifest.json`` dict (same keys as ``from_meta``)."""
        return cls._from_dict(manifest, "manifest")

    @classmethod
    def _from_dict(cls, d: Mapping, what: str) -> CoreLayout:
        missing = [k for k in ("max_species", "task_names", "stage_names") if k not in d]
        if missing:
            raise ValueError(f"{missing[0]}: the {what} has no {missing[0]!r}")
        s = d["max_species"]
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or int(s) != s:
            raise ValueError(f"max_species: must be an integer in [1, 16], got {s!r}")
        return cls(int(s), tuple(d["task_names"]), tuple(d["stage_names"]))

    # -- sizes --------------------------------------------------------------------------------

    @property
    def base(self) -> ParamSpace:
        """The base block's layout."""
        return ParamSpace(self.max_species)

    @property
    def n_base(self) -> int:
        return self.base.size

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def n_stages(self) -> int:
        return len(self.stage_names)

    @property
    def size(self) -> int:
        """Length of the core vector: ``n_base + n_tasks + n_stages``."""
        return self.n_base + self.n_tasks + self.n_stages

    @property
    def names(self) -> tuple[str, ...]:
        """A name per slot: the base names, then ``task:<t>`` and ``stage:<s>``."""
        return (self.base.names + tuple(f"task:{t}" for t in self.task_names)
                + tuple(f"stage:{s}" for s in self.stage_names))

    @property
    def one_hot_slice(self) -> slice:
        """The slots of both one-hot blocks: ``slice(n_base, size)``."""
        return slice(self.n_base, self.size)

    # -- building ----------------------------------------------------------------------------

    def task_index(self, task: str | int) -> int:
        """Index of ``task`` (a name, or an index clipped to [0, n_tasks - 1]).
        Raises ValueError for an unknown name or a layout without tasks."""
        return self._index("task", self.task_names, task)

    def stage_index(self, stage: str | int) -> int:
        """Index of ``stage`` (a name, or an index clipped to [0, n_stages - 1])."""
        return self._index("stage", self.stage_names, stage)

    @staticmethod
    def _index(field: str, names: tuple[str, ...], which) -> int:
        if isinstance(which, str):
            if which not in names:
                raise ValueError(f"{field}: unknown {which!r}; allowed: {', '.join(map(repr, names))}")
            return names.index(which)
        if isinstance(which, bool) or not isinstance(which, int | np.integer):
            raise ValueError(f"{field}: must be a name or an index, got {which!r}")
        if not names:
            raise ValueError(f"{field}: the layout has no {field}s")
        return int(np.clip(int(which), 0, len(names) - 1))

    def one_hot(self, task: str | int, stage: str | int) -> np.ndarray:
        """The one-hot blocks ``[task (n_tasks) | stage (n_stages)]`` (float32). An empty block
        ignores its argument."""
        out = np.zeros(self.n_tasks + self.n_stages, np.float32)
        if self.n_tasks:
            out[self.task_index(task)] = 1.0
        if self.n_stages:
            out[self.n_tasks + self.stage_index(stage)] = 1.0
        return out

    def core(self, base_row, task: str | int, stage: str | int) -> np.ndarray:
        """The core vector (size,) float32 of one row: the first ``n_base`` values of
        ``base_row`` (a longer row, e.g. a whole core vector, is cut), then ``one_hot(task, stage)``.
        Raises ValueError when ``base_row`` has fewer than ``n_base`` values."""
        base = np.asarray(base_row).reshape(-1)
        if base.size < self.n_base:
            raise ValueError(f"base_row: expected at least {self.n_base} values, got {base.size}")
        out = np.zeros(self.size, np.float32)
        out[: self.n_base] = base[: self.n_base]
        out[self.one_hot_slice] = self.one_hot(task, stage)
        return out

    def cores(self, base_rows, task_ids, stage_ids) -> np.ndarray:
        """Core vectors (n, size) float32 of many rows: ``base_rows`` (n, >= n_base), integer
        ``task_ids`` and ``stage_ids`` (n,) (not clipped: an index out of range raises ValueError)."""
        base = np.asarray(base_rows)
        t, s = np.asarray(task_ids).reshape(-1), np.asarray(stage_ids).reshape(-1)
        if base.ndim != 2 or base.shape[1] < self.n_base:
            raise ValueError(f"base_rows: expected shape (n, >= {self.n_base}), got {base.shape}")
        for field, ids, n in (("task_ids", t, self.n_tasks), ("stage_ids", s, self.n_stages)):
            if ids.size != base.shape[0]:
                raise ValueError(f"{field}: expected {base.shape[0]} values, got {ids.size}")
            if ids.size and (ids.min() < 0 or ids.max() >= n):
                raise ValueError(f"{field}: must lie in [0, {n}), got [{ids.min()}, {ids.max()}]")
        return np.concatenate([base[:, : self.n_base], np.eye(self.n_tasks, dtype=np.float32)[t],
                               np.eye(self.n_stages, dtype=np.float32)[s]], 1).astype(np.float32)

    def known_mask(self, base_known=None) -> np.ndarray:
        """Which core slots are known (size,) bool: the one-hot slots always, the base slots where
        ``base_known`` (n_base,) bool is True (none by default)."""
        mask = np.zeros(self.size, bool)
        if base_known is not None:
            known = np.asarray(base_known).reshape(-1)
            if known.size != self.n_base:
                raise ValueError(f"base_known: expected {self.n_base} values, got {known.size}")
            mask[: self.n_base] = known.astype(bool)
        mask[self.one_hot_slice] = True
        return mask

    # -- reading -----------------------------------------------------------------------------

    def _check(self, core, *, one_row: bool) -> np.ndarray:
        v = np.asarray(core)
        if v.ndim < 1 or v.shape[-1] < self.size or (one_row and v.ndim != 1):
            want = "(>= size,)" if one_row else "(..., >= size)"
            raise ValueError(f"core: expected shape {want} with size {self.size}, got {v.shape}")
        return v

    def base_of(self, core) -> np.ndarray:
        """The base block ``core[..., :n_base]`` of one or many core vectors (..., >= size)."""
        return self._check(core, one_row=False)[..., : self.n_base]

    def task_of(self, core) -> str | None:
        """The task whose one-hot slot is largest (argmax) in one core vector (>= size,); None when
        the layout has no tasks."""
        v = self._check(core, one_row=True)
        if not self.n_tasks:
            return None
        return self.task_names[int(np.argmax(v[self.n_base: self.n_base + self.n_tasks]))]

    def stage_of(self, core) -> str | None:
        """The stage whose one-hot slot is largest in one core vector (>= size,); None without stages."""
        v = self._check(core, one_row=True)
        if not self.n_stages:
            return None
        start = self.n_base + self.n_tasks
        return self.stage_names[int(np.argmax(v[start: start + self.n_stages]))]
