"""Evaluation on a device mesh (``predict.model_ranks(..., mesh=...)``): the lanes run over the
``data`` axis with the model's tables sharded by rows over ``items`` (as in training), and every
row chunk is ranked against the item-sharded output layer with counts summed over ``items``
(``hrnn_jax.parallel.ranking``): the same ranks as one device."""
from __future__ import annotations

from functools import lru_cache

import jax
import numpy as np
from jax.sharding import Mesh

from hrnn_jax import parallel
from hrnn_jax.models.contract import Model
from hrnn_jax.parallel import ranking
from hrnn_jax.parallel.layout import Split, replicated


def _signature(tree) -> tuple:
    """A hashable key of a pytree's structure, shapes and dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(a.shape), str(a.dtype)) for a in leaves)


def _shapes(signature):
    """The ``jax.ShapeDtypeStruct`` pytree of a :func:`_signature`."""
    treedef, leaves = signature
    return jax.tree_util.tree_unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])


@lru_cache(maxsize=32)
def _forward(mesh: Mesh, model: Model, params_sig, carry_sig, batch_sig):
    """The jitted window on ``mesh`` for arrays of these signatures (compiled once each)."""
    params, carry, batch = (_shapes(sig) for sig in (params_sig, carry_sig, batch_sig))

    def fn(p, c, b):
        return model.apply(p, c, b)[:2]
    out = jax.eval_shape(fn, params, carry, batch)
    plans = (parallel.params_plan(model, params), parallel.lanes_plan(carry),
             parallel.batch_plan(batch))
    return parallel.jit_on(mesh, fn, plans, (plans[1], parallel.lanes_plan(out[1])),
                           (params, carry, batch), out, donate_argnums=1)


class Forward:
    """Windows of lanes through ``model.apply`` on ``mesh``, the lanes' carry kept on it:
    ``y = forward(batch)`` returns the window's outputs ``[B, L, W]`` on the host."""

    def __init__(self, mesh: Mesh, model: Model, params, batch_size: int):
        self.mesh, self.model = mesh, model
        self.params = parallel.put(mesh, params, parallel.params_plan(model, params))
        self._params_sig = _signature(params)
        carry = model.init_carry(batch_size)
        self._carry_sig = _signature(carry)
        self.carry = parallel.put(mesh, carry, parallel.lanes_plan(carry))

    def __call__(self, batch: dict) -> np.ndarray:
        run = _forward(self.mesh, self.model, self._params_sig, self._carry_sig,
                       _signature(batch))
        stored = parallel.put(self.mesh, batch, parallel.batch_plan(batch))
        self.carry, y = run(self.params, self.carry, stored)
        return parallel.fetch(y, (Split("data", 0, batch["item"].shape[0]),))


@lru_cache(maxsize=32)
def _ranker(mesh: Mesh, n_cols: int, ties: str, with_seen: bool, with_outside: bool):
    def rank(scoring, y, targets, seen, outside):
        return ranking.sharded_ranks(mesh, scoring, y, targets, seen if with_seen else None,
                                     outside if with_outside else None, n_cols=n_cols,
                                     ties=ties)
    return jax.jit(rank)


def rank_fn(mesh: Mesh, model: Model, params, y: np.ndarray, *, ties: str, outside=None):
    """``rank_fn(index, targets, seen)`` for ``evaluation.rank_chunks``: rows ``index`` of the
    states ``y [R, W]`` ranked against the model's scoring tables, stored row-sharded."""
    scoring = model.scoring_params(params)
    n_cols = int(scoring["item_out"].shape[0])
    plan = {"item_out": (Split("items", 0, n_cols),), "item_bias": (Split("items", 0, n_cols),)}
    stored = parallel.put(mesh, {k: scoring[k] for k in plan}, plan)
    out = None if outside is None else parallel.put(mesh, np.asarray(outside),
                                                    (Split("items", 0, n_cols),))

    def rank(index, targets, seen):
        fn = _ranker(mesh, n_cols, ties, seen is not None, out is not None)
        rows = {"y": y[index], "targets": targets, "seen": seen}
        rows = parallel.put(mesh, rows, replicated(rows))
        return fn(stored, rows["y"], rows["targets"], rows["seen"], out)
    return rank
