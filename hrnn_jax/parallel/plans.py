"""The plans (``hrnn_jax.parallel.layout``) of a model's arrays, from its declarations: the
tables of ``Capabilities.sharded_tables`` by rows over ``items``, the lanes of a carry or a batch
over ``data``, a leading seed axis over ``seeds``, everything else replicated."""
from __future__ import annotations

import jax
import numpy as np

from hrnn_jax.models.contract import Model
from hrnn_jax.parallel.layout import Plan, Split


def _lead(seeds: int) -> tuple[Split, ...]:
    return (Split("seeds", 0, seeds),) if seeds > 1 else ()


def params_plan(model: Model, params, seeds: int = 1) -> Plan:
    """Each table's rows over ``items``; the other parameters replicated (``seeds`` > 1: the
    leading seed axis over ``seeds``)."""
    tables = model.capabilities.sharded_tables
    d = 1 if seeds > 1 else 0
    lead = _lead(seeds)

    def one(path, a):
        key = path[0].key if path and isinstance(path[0], jax.tree_util.DictKey) else None
        if key in tables:
            return lead + (Split("items", d, a.shape[d]),)
        return lead
    return jax.tree_util.tree_map_with_path(one, params)


def opt_state_plan(model: Model, params, opt_state, seeds: int = 1) -> Plan:
    """An optimiser state's arrays that mirror a table (a dict key naming it on their path and its
    number of rows) sharded as that table; the others replicated."""
    tables = model.capabilities.sharded_tables
    d = 1 if seeds > 1 else 0
    lead = _lead(seeds)

    def one(path, a):
        keys = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
        for k in keys:
            if k in tables and a.ndim > d and a.shape[d] == params[k].shape[d]:
                return lead + (Split("items", d, a.shape[d]),)
        return lead if a.ndim else ()
    return jax.tree_util.tree_map_with_path(one, opt_state)


def lanes_plan(tree, seeds: int = 1, dim: int = 0) -> Plan:
    """Every array's lane axis (``dim``, after the seed axis) over ``data``."""
    d = dim + (1 if seeds > 1 else 0)
    return jax.tree_util.tree_map(lambda a: _lead(seeds) + (Split("data", d, a.shape[d]),),
                                  tree)


def seeds_plan(tree, seeds: int = 1) -> Plan:
    """Only the leading seed axis over ``seeds`` (a replicated array for one seed)."""
    return jax.tree_util.tree_map(lambda a: _lead(seeds) if np.ndim(a) else (), tree)


# The batch contract's fields without a lane axis (``hrnn_jax.data.lanes.Lanes``): ``closing``
# lists lane ids per step, ``[L, K]``.
UNLANED = ("closing",)


def batch_plan(batch: dict, seeds: int = 1, dim: int = 0) -> Plan:
    """A batch (or windows, ``dim`` = 1) of the batch contract: every field's lane axis over
    ``data``, :data:`UNLANED` fields replicated."""
    return {k: seeds_plan(v, seeds) if k in UNLANED else lanes_plan(v, seeds, dim)
            for k, v in batch.items()}
