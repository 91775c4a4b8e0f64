"""The default surrogate and held-out chunk shipped inside the package (``ecsfm/assets/default``):
what the main job, ``ecsfm infer`` and the studies use when no model is given."""

from __future__ import annotations

from pathlib import Path

from .artifacts import CHECKPOINT_FILENAME

__all__ = ["DEFAULT_MODEL_DIR", "HELD_OUT_CHUNK_FILENAME", "default_assets"]

#: The held-out test chunk shipped beside a model (``ecsfm export`` writes it).
HELD_OUT_CHUNK_FILENAME = "chunk_0.npz"
#: The shipped model folder (model, normalisers, metadata and a held-out test chunk).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default"


def default_assets() -> tuple[Path, Path]:
    """(checkpoint file, held-out chunk) of the shipped default model folder."""
    return DEFAULT_MODEL_DIR / CHECKPOINT_FILENAME, DEFAULT_MODEL_DIR / HELD_OUT_CHUNK_FILENAME
