"""Training on a device mesh (``fit(..., mesh=...)``): the train state's plan and the compiled
steps that take and return it stored on the mesh (``hrnn_jax.parallel.layout``).

The step itself is the one of one device: the plan pads and places the arrays, XLA partitions
the computation. Lanes (the carry, the windows) are sharded over ``data``, the model's tables
(``Capabilities.sharded_tables``, and the optimiser state that mirrors them) by rows over
``items``, a leading seed axis over ``seeds``; the rest is replicated. A row-sparse update
gathers, sums (sorted segment sums) and scatters the touched rows of a sharded table, so it is
exact and, for a fixed mesh, deterministic; the sums of a full softmax or of the gradients run in
another order than on one device (float32 rounding only).
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from hrnn_jax import parallel
from hrnn_jax.training.step import TrainState, TrainStep, steps_call


def state_plan(model, state: TrainState, seeds: int) -> TrainState:
    """Where each array of ``state`` lives (a :class:`TrainState` of plans)."""
    return TrainState(parallel.params_plan(model, state.params, seeds),
                      parallel.opt_state_plan(model, state.params, state.opt_state, seeds),
                      parallel.lanes_plan(state.carry, seeds),
                      parallel.seeds_plan(state.step, seeds))


def compiled_on(mesh: Mesh, step: TrainStep, K: int, S: int, state: TrainState,
                batches: dict, rngs, active) -> tuple[Callable, TrainState]:
    """``(run, plan)``: the K-step call of ``loop.fit`` (``step.steps_call``) jitted for
    ``mesh`` (taking and returning the state stored by ``plan``, windows padded by
    ``windows_plan``), and the state's plan. ``state``, ``batches``, ``rngs`` and ``active``
    give the shapes (one call's)."""
    fn = steps_call(step, K, S)
    plan = state_plan(step.model, state, S)
    in_plans = (plan, windows_plan(batches, S), parallel.seeds_plan(rngs, S),
                parallel.seeds_plan(active, S))
    out = jax.eval_shape(fn, state, batches, rngs, active)
    out_plans = (plan, parallel.seeds_plan(out[1], S))
    jitted = parallel.jit_on(mesh, fn, in_plans, out_plans, (state, batches, rngs, active),
                             out, donate_argnums=0)

    def run(state, batches, rngs, active):  # the keys and flags of every process, placed
        return jitted(state, batches, parallel.put(mesh, rngs, in_plans[2]),
                      parallel.put(mesh, active, in_plans[3]))
    return run, plan


def windows_plan(batches: dict, seeds: int):
    """The windows ``[(S,) K, B, L]``: lanes over ``data``."""
    return parallel.batch_plan(batches, seeds, dim=1)


def exchange_closing(lists: dict) -> dict:
    """Every lane group's closing lists from this process's (``data.LaneGroups.exchange``): each
    process holds as many groups, and two all-gathers (their shapes, then the lists padded to the
    largest) give every process all of them, in group order."""
    mine = sorted(lists)
    shapes = np.asarray(multihost_utils.process_allgather(
        np.array([lists[g].shape for g in mine], np.int64)))  # [P, per, 2]
    T, K = (int(v) for v in shapes.reshape(-1, 2).max(axis=0))
    block = np.full((len(mine), T, K), -1, np.int32)
    for i, g in enumerate(mine):
        block[i, :lists[g].shape[0], :lists[g].shape[1]] = lists[g]
    every = np.asarray(multihost_utils.process_allgather(block))  # [P, per, T, K]
    per = len(mine)
    return {p * per + i: every[p, i, :shapes[p, i, 0], :shapes[p, i, 1]]
            for p in range(every.shape[0]) for i in range(per)}
