"""Exact scores over an item-sharded catalogue: ranks and log-softmax combined over ``items``.

Each device scores its own rows of the output layer (``score_items`` on its slice), counts the
items of its slice that score above (and equal to) the target and those it counts at all, and
the counts are summed over the ``items`` axis (``psum``: integers, exact). The target's score is
read from the same local scores on the device that holds the target's row (the others add 0),
so every comparison is the one of one device. The log-sum-exp of a full softmax is combined the
same way: the maximum over the axis, then the sum of the local sums of exponentials.

Every rule of :func:`hrnn_jax.evaluation.rank_targets` holds: column 0 (padding) and the storage
padding beyond N never count, seen items and ``outside`` items are skipped, the target always
counts, a non-finite target score ranks last among the counted items.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from hrnn_jax.evaluation.metrics import block_seen
from hrnn_jax.models.layers import score_items


def _local(mesh: Mesh, table):
    """``(first global id of this device's rows, their count)`` inside ``shard_map``."""
    n = table.shape[0]
    off = jax.lax.axis_index("items") * n if "items" in mesh.axis_names else 0
    return off, n


def _psum(mesh: Mesh, x):
    return jax.lax.psum(x, "items") if "items" in mesh.axis_names else x


def _shard_counts(mesh, n_cols, ties, out_w, out_b, y, targets, seen, outside):
    """Counts over this device's rows: (above, equal, counted, target score)."""
    off, n = _local(mesh, out_w)
    ids = off + jnp.arange(n, dtype=jnp.int32)
    scores = score_items({"item_out": out_w, "item_bias": out_b}, y)        # [r, n]
    is_target = ids[None, :] == targets[:, None]
    mine = (targets >= off) & (targets < off + n)
    t = _psum(mesh, jnp.where(mine, scores[jnp.arange(y.shape[0]),
                                           jnp.clip(targets - off, 0, n - 1)], 0.0))
    counted = (ids[None, :] > 0) & (ids[None, :] < n_cols) & ~is_target
    if seen is not None:
        counted = counted & ~block_seen(seen, off, n)
    if outside is not None:
        counted = counted & ~outside[None, :]
    above = jnp.sum(counted & (scores > t[:, None]), axis=1, dtype=jnp.int32)
    equal = jnp.sum(counted & (scores == t[:, None]), axis=1, dtype=jnp.int32) \
        if ties != "optimistic" else jnp.zeros_like(above)
    total = jnp.sum(counted, axis=1, dtype=jnp.int32)
    return _psum(mesh, above), _psum(mesh, equal), _psum(mesh, total), t


def sharded_ranks(mesh: Mesh, scoring, y, targets, seen=None, outside=None, *,
                  n_cols: int, ties: str = "optimistic") -> jax.Array:
    """Ranks (``evaluation.rank_targets``' rules) of ``targets [r]`` given states ``y [r, W]``,
    with ``scoring`` the stored (padded, row-sharded) ``item_out``/``item_bias`` and ``outside``
    (stored bool ``[N+1]`` padded, or None) of ``n_cols`` = N + 1 real columns. Jittable;
    ``n_cols`` and ``ties`` static."""
    item = P("items") if "items" in mesh.axis_names else P()
    specs = (item, item, P(), P(), P() if seen is not None else None,
             item if outside is not None else None)
    fn = jax.shard_map(partial(_shard_counts, mesh, n_cols, ties), mesh=mesh,
                       in_specs=specs, out_specs=(P(), P(), P(), P()), check_vma=False)
    above, equal, total, t = fn(scoring["item_out"], scoring["item_bias"], y, targets, seen,
                                outside)
    rank = 1.0 + above.astype(jnp.float32)
    if ties != "optimistic":
        rank = rank + equal.astype(jnp.float32) * (1.0 if ties == "pessimistic" else 0.5)
    return jnp.where(jnp.isfinite(t), rank, 1.0 + total.astype(jnp.float32))


def _shard_lse(mesh, n_cols, out_w, out_b, y):
    off, n = _local(mesh, out_w)
    ids = off + jnp.arange(n, dtype=jnp.int32)
    scores = score_items({"item_out": out_w, "item_bias": out_b}, y)
    scores = jnp.where((ids[None, :] > 0) & (ids[None, :] < n_cols), scores, -jnp.inf)
    m = jax.lax.stop_gradient(jax.lax.pmax(scores.max(axis=1), "items")
                              if "items" in mesh.axis_names else scores.max(axis=1))
    return m + jnp.log(_psum(mesh, jnp.exp(scores - m[:, None]).sum(axis=1)))


def sharded_logsumexp(mesh: Mesh, scoring, y, *, n_cols: int) -> jax.Array:
    """``logsumexp`` over items 1..N of ``y``'s scores ``[r]``, from the row-sharded stored
    ``scoring`` tables: the local sums combined over ``items``. Jittable; ``n_cols`` static."""
    item = P("items") if "items" in mesh.axis_names else P()
    fn = jax.shard_map(partial(_shard_lse, mesh, n_cols), mesh=mesh,
                       in_specs=(item, item, P()), out_specs=P(), check_vma=False)
    return fn(scoring["item_out"], scoring["item_bias"], y)
