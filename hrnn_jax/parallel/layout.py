"""Where every array of a step lives on a mesh, and the padding that lets any size be sharded.

A *plan* is a pytree shaped as the arrays it describes whose leaves are tuples of :class:`Split`:
array dimension ``dim`` (true size ``size``) is sharded over mesh axis ``axis``; an empty tuple
is a replicated array. ``jax.jit`` wants every sharded dimension to be a multiple of its axis'
size, and a catalogue of N + 1 rows or 50 lanes rarely is. So arrays are *stored* padded (zero
rows or lanes at the end, :func:`put`), and a jitted function slices them back to their true
sizes before it computes (:func:`take`) and pads its results again (:func:`give`). Everything in
between sees exactly the shapes of one device: the same random draws (``jax.random`` is
partitionable), the same masks, the same sums, in a different reduction order only.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hrnn_jax.parallel.mesh import axis_size

Plan = Any  # a pytree of tuple[Split, ...]


@dataclasses.dataclass(frozen=True)
class Split:
    """Dimension ``dim`` of an array, of true size ``size``, sharded over mesh axis ``axis``."""

    axis: str
    dim: int
    size: int


def is_splits(x) -> bool:
    """A plan's leaf: a tuple of :class:`Split` (the empty tuple too)."""
    return type(x) is tuple and all(isinstance(s, Split) for s in x)


def _map(fn: Callable, plan: Plan, *trees):
    return jax.tree_util.tree_map(fn, plan, *trees, is_leaf=is_splits)


def padded(size: int, k: int) -> int:
    """``size`` rounded up to a multiple of ``k``."""
    return -(-size // k) * k


def spec(mesh: Mesh, ndim: int, splits: tuple) -> PartitionSpec:
    """The partition spec of an array of ``ndim`` dimensions under ``splits`` (axes the mesh
    lacks are left out)."""
    entries: list = [None] * ndim
    for s in splits:
        if s.axis in mesh.axis_names:
            entries[s.dim] = s.axis
    return PartitionSpec(*entries)


def shardings(mesh: Mesh, plan: Plan, shapes) -> Any:
    """The :class:`NamedSharding` of every array (``shapes``: the arrays or their shapes)."""
    return _map(lambda sp, a: NamedSharding(mesh, spec(mesh, len(np.shape(a)), sp)), plan, shapes)


def _pad_widths(mesh: Mesh, shape, splits) -> list:
    widths = [(0, 0)] * len(shape)
    for s in splits:
        if shape[s.dim] != s.size:
            raise ValueError(f"an array's dimension {s.dim} is {shape[s.dim]}, its plan says "
                             f"{s.size}")
        widths[s.dim] = (0, padded(s.size, axis_size(mesh, s.axis)) - s.size)
    return widths


def pad_host(mesh: Mesh, tree, plan: Plan):
    """``tree`` (arrays of true sizes) padded with zeros for storage, as host arrays (those that
    need no padding as they are)."""
    def one(splits, a):
        widths = _pad_widths(mesh, np.shape(a), splits)
        return np.pad(np.asarray(a), widths) if any(w[1] for w in widths) else a
    return _map(one, plan, tree)


def put(mesh: Mesh, tree, plan: Plan):
    """``tree`` (host or device arrays of true sizes, the same in every process) padded and
    placed on ``mesh``; under many processes each one places only its own devices' slices."""
    def one(splits, a):
        sharding = NamedSharding(mesh, spec(mesh, np.ndim(a), splits))
        if jax.process_count() == 1:
            return jax.device_put(a, sharding)
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return _map(one, plan, pad_host(mesh, tree, plan))


def put_part(mesh: Mesh, tree, plan: Plan, axis: str, offset: int):
    """:func:`put` for host arrays that hold only this process's block of their dimensions split
    over ``axis``: indices ``offset`` onwards of the plan's true size (e.g. its lane groups'
    lanes, ``data.read_share``). That size must be a multiple of the axis (no padding), and the
    slices of this process's devices must lie in the block (ValueError otherwise)."""
    def one(splits, a):
        own = [s for s in splits if s.axis == axis]
        if not own:
            return put(mesh, a, splits)
        s = own[0]  # the other split dimensions (a seed axis) are whole here: padded as put's
        host = np.asarray(pad_host(mesh, a, tuple(o for o in splits if o.axis != axis)))
        if s.size % axis_size(mesh, axis):
            raise ValueError(f"a block of {s.size} along mesh axis {axis!r} must be a multiple "
                             f"of the axis ({axis_size(mesh, axis)}) to come from its processes")
        shape = host.shape[:s.dim] + (s.size,) + host.shape[s.dim + 1:]
        n = host.shape[s.dim]

        def local(index):
            at = index[s.dim]
            lo, hi = (at.start or 0) - offset, (s.size if at.stop is None else at.stop) - offset
            if lo < 0 or hi > n:
                raise ValueError(f"this process holds indices {offset}..{offset + n - 1} along "
                                 f"{axis!r}; its devices need {lo + offset}..{hi + offset - 1}: "
                                 "give each process the block of its own devices")
            return host[index[:s.dim] + (slice(lo, hi),) + index[s.dim + 1:]]
        sharding = NamedSharding(mesh, spec(mesh, host.ndim, splits))
        return jax.make_array_from_callback(shape, sharding, local)
    return _map(one, plan, tree)


def take(mesh: Mesh, tree, plan: Plan):
    """Inside a jitted function: the stored (padded) arrays at their true sizes, with their
    shardings kept (XLA shards an uneven dimension itself)."""
    def one(splits, a):
        for s in splits:
            a = jax.lax.slice_in_dim(a, 0, s.size, axis=s.dim)
        if splits:
            a = jax.lax.with_sharding_constraint(a, NamedSharding(mesh, spec(mesh, a.ndim,
                                                                             splits)))
        return a
    return _map(one, plan, tree)


def give(mesh: Mesh, tree, plan: Plan):
    """Inside a jitted function: results of true sizes padded for storage (zeros)."""
    def one(splits, a):
        widths = _pad_widths(mesh, a.shape, splits)
        return jnp.pad(a, widths) if any(w[1] for w in widths) else a
    return _map(one, plan, tree)


def fetch(tree, plan: Plan):
    """Stored arrays back at their true sizes, as host arrays (the caller's to keep)."""
    def one(splits, a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:  # other processes' slices
            a = multihost_utils.process_allgather(a, tiled=True)
        a = np.asarray(a)
        for s in splits:
            a = np.take(a, np.arange(s.size), axis=s.dim)
        return a
    return _map(one, plan, tree)


def replicated(tree) -> Plan:
    """A plan that replicates every array of ``tree``."""
    return jax.tree_util.tree_map(lambda _: (), tree)


def jit_on(mesh: Mesh, fn: Callable, in_plans: tuple, out_plans, shapes_in: tuple,
           shapes_out, donate_argnums=()) -> Callable:
    """``fn`` jitted to take and return stored (padded, sharded) arrays: its arguments are sliced
    to their true sizes (``in_plans``), its results padded (``out_plans``); ``shapes_*`` are the
    true-size arrays or ``jax.ShapeDtypeStruct``s, used for the shardings only."""
    def stored(*args):
        out = fn(*(take(mesh, a, p) for a, p in zip(args, in_plans)))
        return give(mesh, out, out_plans)
    in_sh = tuple(shardings(mesh, p, s) for p, s in zip(in_plans, shapes_in))
    out_sh = shardings(mesh, out_plans, shapes_out)
    return jax.jit(stored, in_shardings=in_sh, out_shardings=out_sh,
                   donate_argnums=donate_argnums)
