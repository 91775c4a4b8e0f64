"""The seed notebook's import path for geometry resolution (``ecsfm.fm.eval_classical``): a thin
re-export of ``ecsfm.fm.artifacts``. ``_resolve_model_geometry`` is the name the seed imports;
``resolve_model_geometry`` is the same function. The surrogate's evaluation lives in
``ecsfm.fm.scorecard`` and its discrepancy in ``ecsfm.fm.discrepancy``."""

from __future__ import annotations

from .artifacts import resolve_model_geometry

__all__ = ["resolve_model_geometry", "_resolve_model_geometry"]

#: The name the seed notebook imports.
_resolve_model_geometry = resolve_model_geometry
