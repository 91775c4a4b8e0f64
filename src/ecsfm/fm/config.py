"""The surrogate's training configuration: one frozen dataclass, recorded in ``model_meta.json``
(``training_config``) and read back to rebuild the architecture of a saved model."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainConfig"]

#: Upper bounds of the integer settings: refused up front rather than met as an out-of-memory
#: crash. A batch of 2^16 rows of the largest dataset geometry is already ~2 GB of activations
#: per layer; 2^12 channels and 64 layers are far beyond what the surrogate needs.
_CONFIG_MAX = {"hidden_size": 4096, "depth": 64, "cond_dim": 4096, "batch_size": 65536, "steps": 10**9,
               "eval_every": 10**9, "steps_per_call": 10**4, "n_val_rows": 10**6}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (all recorded in model_meta.json).

    Architecture: ``arch`` (``"conv"``: ``VectorFieldNet``; ``"mlp"``: ``MLPVectorField``),
    ``hidden_size``, ``depth``, ``cond_dim``. Optimiser: AdamW with linear warm-up then cosine
    decay to ``lr * final_lr_fraction`` (counted in optimiser steps), global-norm gradient clipping,
    an exponential moving average of the weights (the saved model is the EMA). ``steps_per_call``
    optimiser steps run inside one compiled ``lax.scan`` (no host round trip per step).
    ``current_weight``: the current block's share of the loss (``cfm_loss``).
    Raises ValueError naming the field and its allowed range.
    """

    arch: str = "conv"
    hidden_size: int = 32
    depth: int = 4
    cond_dim: int = 64
    batch_size: int = 128
    steps: int = 20000
    lr: float = 2e-3
    warmup_steps: int = 500
    final_lr_fraction: float = 0.05
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    ema_decay: float = 0.999
    current_weight: float = 0.8
    eval_every: int = 500
    steps_per_call: int = 50
    n_val_rows: int = 1024
    seed: int = 0

    def __post_init__(self):
        if self.arch not in ("conv", "mlp"):
            raise ValueError(f"arch: must be 'conv' or 'mlp', got {self.arch!r}")
        for name, hi in _CONFIG_MAX.items():
            v = getattr(self, name)
            if not (isinstance(v, int) and 1 <= v <= hi):
                raise ValueError(f"{name}: must be an integer in [1, {hi}], got {v!r}")
        if self.eval_every % self.steps_per_call:
            raise ValueError(f"eval_every: must be a multiple of steps_per_call ({self.steps_per_call})")
        if not 0.0 < self.lr < 1.0:
            raise ValueError(f"lr: must be in (0, 1), got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: must be in [0, 1), got {self.ema_decay}")
