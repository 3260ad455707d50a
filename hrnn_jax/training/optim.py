"""Optimisers: optax rules, and the same rule applied to the rows of a table that a batch touches.

``make_optimizer`` builds the paper's Adagrad with momentum (Quadrana et al. Sec. 4.2, as GRU4Rec's
official code: acc += g^2; v = momentum * v - lr * g / sqrt(acc + eps); w += v) or Adam, from optax
parts. Clipping is not part of it: the train step clips the dense gradients and the row gradients
together by their global norm (``optax.clip_by_global_norm``).

``row_update`` applies any such optax rule to the rows ``ids`` of an embedding table only: gather
the rows' optimiser state, run the rule on them, add the updates to the rows and scatter the state
back. The cost per step then depends on the batch, not on the catalogue. For rules whose state only
changes where the gradient is non-zero (plain Adagrad), it equals the dense update (tested). With
momentum (and Adam), untouched rows keep their momentum unapplied until they are touched again: the
*lazy* variant, as GRU4Rec's official code does for its embedding tables. Adam's step count is
global.
"""
from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import optax

from hrnn_jax import choices

Optimizer = Literal["adagrad", "adam"]
OPTIMIZERS = choices.options(Optimizer)


def make_optimizer(name: str = "adagrad", learning_rate: float = 0.1, momentum: float = 0.0,
                   eps: float = 1e-6) -> optax.GradientTransformation:
    """The update rule (without clipping). ``adagrad`` with ``momentum`` > 0 is
    Adagrad + momentum."""
    choices.check("optimizer", name, OPTIMIZERS)
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if name == "adagrad":
        parts = [optax.scale_by_rss(initial_accumulator_value=0.0, eps=eps)]
        if momentum:
            parts.append(optax.trace(decay=momentum))
        return optax.chain(*parts, optax.scale(-learning_rate))
    return optax.adam(learning_rate)


def _is_row_leaf(leaf, table) -> bool:
    return hasattr(leaf, "shape") and leaf.shape == table.shape


def row_update(tx: optax.GradientTransformation, table, state, ids, row_grads, active=None):
    """Apply ``tx`` to rows ``ids [M]`` of ``table [N, ...]`` given their gradients ``[M, ...]``.

    ``ids`` must be sorted and distinct, padding included (``hrnn_jax.precision.unique_rows``);
    ids >= N are padding and are skipped, whatever their gradient. The writes declare their
    indices unique and sorted, so they need no atomics on any backend. ``state`` is
    ``tx.init(table)``; leaves shaped like the table are gathered and scattered by row, the others
    (step counts) are updated as a whole. The rows themselves are only read if the rule needs them
    (``params``); otherwise the step adds the updates in place without gathering them.

    ``active`` (optional traced bool scalar): False writes nothing, the table and its state stay
    as they were (the scatters get out-of-range ids, which they drop).
    """
    get = lambda a: a.at[ids].get(mode="clip")  # noqa: E731  padding ids read a row they never write
    rows = get(table)
    row_state = jax.tree_util.tree_map(lambda s: get(s) if _is_row_leaf(s, table) else s, state)
    updates, new_row_state = tx.update(row_grads, row_state, rows)
    at = dict(mode="drop", unique_indices=True, indices_are_sorted=True)
    whole = lambda full, part: part  # noqa: E731
    if active is not None:
        ids = jnp.where(active, ids, table.shape[0] + jnp.arange(ids.shape[0], dtype=ids.dtype))
        whole = lambda full, part: jnp.where(active, part, full)  # noqa: E731
    new_table = table.at[ids].add(updates, **at)
    state = jax.tree_util.tree_map(
        lambda full, part: full.at[ids].set(part, **at) if _is_row_leaf(full, table)
        else whole(full, part), state, new_row_state)
    return new_table, state
