"""State that outlives a window: a user's past steps for attention, and the running mean of a
user's inputs.

The lanes (``hrnn_jax.data.lanes``) cut each user's sequence into windows of L steps, so the past of
a step lies partly in earlier windows. A model that attends over the last ``T`` steps keeps them in
its carry, one buffer per lane: ``buf_<name> [B, T, W]`` for each quantity it attends over and
``buf_ok [B, T]`` (the slot holds a valid step of the lane's current user), made by
:func:`empty_buffer`. :func:`extend` lays the buffer before the window's steps and says which of
those ``T + L`` keys each step sees: its own user's valid steps j <= t, at most its last T (itself
included). A new user (``user_start``) hides everything before it, and the buffer it leaves keeps
only the current user's steps.

:func:`additive_scores` and :func:`masked_softmax` are the pieces of additive attention that
HCRNN's temporary channel (``hrnn_jax.models.hcrnn``), NARM and STAMP
(``hrnn_jax.models.attention``) share; :func:`prefix_means` is the running mean that STAMP's m_s is.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hrnn_jax import cells


class Past(NamedTuple):
    """What a window sees of its lanes' pasts (:func:`extend`).

    ``keys``: ``{name: [B, T + L, W]}``, the buffer's T slots (oldest first), then the window's L
    steps; ``visible``: bool ``[B, L, T + L]``, step t may attend to key k; ``buffer``: the carry's
    new ``buf_<name>`` and ``buf_ok`` entries, the last T keys."""

    keys: dict
    visible: jax.Array
    buffer: dict


def empty_buffer(batch_size: int, steps: int, **widths: int) -> dict:
    """An empty buffer of the last T = ``steps`` steps for B lanes: ``{"buf_<name>": zeros [B, T,
    width] for each name=width, "buf_ok": False [B, T]}``, to merge into a model's carry."""
    buffer = {f"buf_{name}": jnp.zeros((batch_size, steps, w)) for name, w in widths.items()}
    buffer["buf_ok"] = jnp.zeros((batch_size, steps), bool)
    return buffer


def extend(carry: dict, steps: dict, batch: dict) -> Past:
    """The keys, visibility and next buffer of one window.

    ``carry``: holds ``buf_<name>`` for every name of ``steps``, and ``buf_ok``
    (:func:`empty_buffer`); ``steps``: ``{name: [B, L, W]}``, the window's values; ``batch``: the
    window's ``user_start`` and ``valid`` ``[B, L]``. Step t sits at key position T + t, so it
    sees the positions ``t + 1 .. T + t`` that hold valid steps of its own user."""
    user_start, valid = batch["user_start"], batch["valid"]
    B, L = valid.shape
    T = carry["buf_ok"].shape[1]
    keys = {name: jnp.concatenate([carry[f"buf_{name}"], v], axis=1) for name, v in steps.items()}
    seg = jnp.cumsum(user_start, axis=1)  # the window's user segments, 0 = the carried user
    key_seg = jnp.concatenate([jnp.zeros((B, T), seg.dtype), seg], axis=1)
    key_ok = jnp.concatenate([carry["buf_ok"], valid], axis=1)
    pos = jnp.arange(T + L)[None, None, :]
    q = jnp.arange(L)[None, :, None]
    visible = (key_ok[:, None, :] & (key_seg[:, None, :] == seg[:, :, None])  # [B, L, T+L]
               & (pos <= T + q) & (pos > q))
    keep = key_ok & (key_seg == seg[:, -1:])  # the lane's current user's steps only
    buffer = {f"buf_{name}": k[:, -T:] for name, k in keys.items()}
    buffer["buf_ok"] = keep[:, -T:]
    return Past(keys, visible, buffer)


def additive_scores(query: jax.Array, keys: jax.Array, v: jax.Array) -> jax.Array:
    """Additive attention scores ``v^T sigmoid(q_t + k_j)`` of projected queries ``[B, L, A]``
    and projected keys ``[B, K, A]``: ``[B, L, K]``."""
    return jax.nn.sigmoid(query[:, :, None, :] + keys[:, None, :, :]) @ v


def masked_softmax(scores: jax.Array, visible: jax.Array) -> jax.Array:
    """Softmax over the visible keys (last axis); hidden keys get weight 0."""
    return jax.nn.softmax(jnp.where(visible, scores, -1e30), axis=-1)


def prefix_means(total: jax.Array, count: jax.Array, x: jax.Array, batch: dict):
    """Running mean of each user's inputs up to and including each step.

    ``total [B, W]`` and ``count [B]``: the sum and number of the carried user's valid inputs;
    ``x [B, L, W]``. A new user (``user_start``) restarts both; padding leaves them as they are.
    Returns ``(means [B, L, W], total, count)``."""
    def step(state, x_t):
        s, n = state[0] + x_t, state[1] + 1.0
        return (s, n), s / jnp.maximum(n, 1.0)[:, None]

    fresh = (jnp.zeros_like(total), jnp.zeros_like(count))
    (total, count), means = cells.masked_scan(step, (total, count), jnp.swapaxes(x, 0, 1),
                                              reset=batch["user_start"].T, fresh=fresh,
                                              valid=batch["valid"].T)
    return jnp.swapaxes(means, 0, 1), total, count
