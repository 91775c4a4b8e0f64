"""Vector fields for conditional flow matching over the surrogate state.

The state of one row is ``x = [ox (S*nx), red (S*nx), current (L)]`` (normalised); the model is
conditioned on the flow time ``t`` in [0, 1], the applied signal ``E`` (``signal_channels`` x L,
normalised) and the core parameter vector ``p`` (normalised base parameters, task and stage
one-hots, optional mask features). Both networks are ``eqx.Module`` s whose every architectural
choice follows from their constructor arguments, so ``eqx.tree_deserialise_leaves(checkpoint,
VectorFieldNet(...))`` restores a saved model.

``VectorFieldNet`` (the default): a residual stack of dilated 1-D convolutions along the time axis
of the current, with FiLM modulation by an embedding of (t, p) in every block, plus a
state-wide MLP head that carries the concentration profiles and global structure; the length L is
read from ``E`` at call time. ``MLPVectorField`` is the plain baseline on concatenated inputs.
``build_model`` makes the one a ``TrainConfig`` names for a geometry.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .config import TrainConfig

__all__ = ["VectorFieldNet", "MLPVectorField", "time_embedding", "build_model"]


def time_embedding(t: Float[Array, ""], dim: int) -> Float[Array, " dim"]:
    """Sinusoidal features of the flow time t in [0, 1] (frequencies 1 .. 1000), shape (dim,)."""
    half = dim // 2
    freqs = jnp.exp(jnp.linspace(0.0, math.log(1000.0), half))
    ang = 2.0 * jnp.pi * t * freqs
    emb = jnp.concatenate([jnp.sin(ang), jnp.cos(ang)])
    return jnp.pad(emb, (0, dim - emb.size))


class _Conv1d(eqx.Module):
    """'Same'-padded dilated 1-D convolution written as one matrix product over shifted copies
    of the input (XLA:CPU runs this several times faster than its native small-channel
    convolution). Weight (out, in, k) initialised like ``eqx.nn.Linear`` with fan-in in * k."""

    weight: Float[Array, "o i k"]
    bias: Float[Array, " o"]
    dilation: int = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, *, key):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size: must be odd for 'same' padding, got {kernel_size}")
        kw, kb = jax.random.split(key)
        lim = 1.0 / math.sqrt(in_channels * kernel_size)
        self.weight = jax.random.uniform(kw, (out_channels, in_channels, kernel_size), minval=-lim, maxval=lim)
        self.bias = jax.random.uniform(kb, (out_channels,), minval=-lim, maxval=lim)
        self.dilation = int(dilation)

    def __call__(self, h: Float[Array, "i l"]) -> Float[Array, "o l"]:
        k = self.weight.shape[-1]
        length = h.shape[-1]
        pad = self.dilation * (k // 2)
        hp = jnp.pad(h, ((0, 0), (pad, pad)))
        cols = jnp.concatenate([hp[:, j * self.dilation: j * self.dilation + length] for j in range(k)], axis=0)
        w = jnp.transpose(self.weight, (0, 2, 1)).reshape(self.weight.shape[0], -1)  # (o, k * i)
        return w @ cols + self.bias[:, None]


class _FiLMBlock(eqx.Module):
    conv: _Conv1d
    mix: _Conv1d
    film: eqx.nn.Linear
    norm: eqx.nn.GroupNorm

    def __init__(self, hidden: int, cond_dim: int, dilation: int, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv = _Conv1d(hidden, hidden, kernel_size=5, dilation=dilation, key=k1)
        self.mix = _Conv1d(hidden, hidden, kernel_size=1, key=k2)
        self.film = eqx.nn.Linear(cond_dim, 2 * hidden, key=k3)
        self.norm = eqx.nn.GroupNorm(groups=min(8, hidden), channels=hidden)

    def __call__(self, h: Float[Array, "c l"], cond: Float[Array, " d"]) -> Float[Array, "c l"]:
        scale, shift = jnp.split(self.film(cond), 2)
        y = self.norm(h) * (1.0 + scale[:, None]) + shift[:, None]
        y = self.mix(jax.nn.gelu(self.conv(jax.nn.gelu(y))))
        return h + y


class VectorFieldNet(eqx.Module):
    """The flow's velocity field ``v(t, x | E, p)``.

    Call ``model(t, x, E, p)`` with t (), x (state_dim,), E (signal_channels, L) or (L,),
    p (phys_dim,); returns (state_dim,). The last L entries of the state are the current.
    """

    cond_mlp: eqx.nn.MLP
    head: eqx.nn.MLP
    conv_in: _Conv1d
    blocks: tuple
    conv_out: _Conv1d
    state_dim: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    phys_dim: int = eqx.field(static=True)
    signal_channels: int = eqx.field(static=True)

    def __init__(self, state_dim: int, hidden_size: int, depth: int, cond_dim: int, phys_dim: int,
                 key: PRNGKeyArray, signal_channels: int = 1):
        for name, v, lo in (("state_dim", state_dim, 2), ("hidden_size", hidden_size, 8), ("depth", depth, 1),
                            ("cond_dim", cond_dim, 4), ("phys_dim", phys_dim, 1), ("signal_channels", signal_channels, 1)):
            if int(v) != v or v < lo:
                raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")
        keys = jax.random.split(key, 4 + depth)
        self.state_dim, self.hidden_size, self.depth = int(state_dim), int(hidden_size), int(depth)
        self.cond_dim, self.phys_dim, self.signal_channels = int(cond_dim), int(phys_dim), int(signal_channels)
        self.cond_mlp = eqx.nn.MLP(cond_dim + phys_dim, cond_dim, width_size=2 * cond_dim, depth=2,
                                   activation=jax.nn.gelu, key=keys[0])
        self.head = eqx.nn.MLP(state_dim + cond_dim, state_dim, width_size=2 * hidden_size, depth=2,
                               activation=jax.nn.gelu, key=keys[1])
        self.conv_in = _Conv1d(1 + signal_channels, hidden_size, kernel_size=5, key=keys[2])
        self.blocks = tuple(_FiLMBlock(hidden_size, cond_dim, 2 ** (i % 6), key=keys[4 + i]) for i in range(depth))
        out = _Conv1d(hidden_size, 1, kernel_size=1, key=keys[3])
        # Start the convolutional branch at zero output: the initial field is the MLP head's.
        self.conv_out = eqx.tree_at(lambda c: (c.weight, c.bias), out,
                                    (jnp.zeros_like(out.weight), jnp.zeros_like(out.bias)))

    def __call__(self, t, x, E, p, *, key=None):
        E = jnp.reshape(E, (self.signal_channels, -1))
        length = E.shape[-1]
        if length > self.state_dim:
            raise ValueError(f"E: length {length} exceeds state_dim {self.state_dim}")
        cond = self.cond_mlp(jnp.concatenate([time_embedding(t, self.cond_dim), p]))
        v = self.head(jnp.concatenate([x, cond]))
        h = self.conv_in(jnp.concatenate([x[-length:][None, :], E], axis=0))
        for block in self.blocks:
            h = block(h, cond)
        return v.at[-length:].add(self.conv_out(jax.nn.gelu(h))[0])


class MLPVectorField(eqx.Module):
    """Baseline: an MLP on ``[x, E, p, time features]`` concatenated (needs L at construction)."""

    mlp: eqx.nn.MLP
    cond_dim: int = eqx.field(static=True)

    def __init__(self, state_dim: int, hidden_size: int, depth: int, cond_dim: int, phys_dim: int,
                 signal_len: int, key: PRNGKeyArray, signal_channels: int = 1):
        self.cond_dim = int(cond_dim)
        self.mlp = eqx.nn.MLP(state_dim + signal_channels * signal_len + phys_dim + cond_dim, state_dim,
                              width_size=hidden_size, depth=depth, activation=jax.nn.gelu, key=key)

    def __call__(self, t, x, E, p, *, key=None):
        return self.mlp(jnp.concatenate([x, jnp.ravel(E), p, time_embedding(t, self.cond_dim)]))


def build_model(config: TrainConfig, geometry: dict, key: PRNGKeyArray) -> VectorFieldNet | MLPVectorField:
    """A freshly initialised vector field for ``geometry`` (``state_dim``, ``phys_dim``,
    ``signal_channels``, and ``target_len`` for the MLP): ``VectorFieldNet`` when
    ``config.arch == "conv"``, else ``MLPVectorField``, sized by ``config``'s ``hidden_size``,
    ``depth`` and ``cond_dim``. The same (config, geometry) gives the structure a checkpoint
    deserialises into."""
    if config.arch == "conv":
        return VectorFieldNet(state_dim=geometry["state_dim"], hidden_size=config.hidden_size, depth=config.depth,
                              cond_dim=config.cond_dim, phys_dim=geometry["phys_dim"],
                              signal_channels=geometry["signal_channels"], key=key)
    return MLPVectorField(state_dim=geometry["state_dim"], hidden_size=config.hidden_size, depth=config.depth,
                          cond_dim=config.cond_dim, phys_dim=geometry["phys_dim"],
                          signal_len=geometry["target_len"], signal_channels=geometry["signal_channels"], key=key)
