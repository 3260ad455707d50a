"""Precision and determinism: what the library computes exactly, on every backend, and how.

Policy
------
On an accelerator, float32 matrix products may run at reduced precision for speed: with JAX's
default setting an NVIDIA GPU (Ampere and later) uses TF32 (10-bit mantissa) and a TPU bfloat16
passes. The library splits its arithmetic in two:

* **Follows the configurable matmul precision** (``jax_default_matmul_precision``; set it with
  :func:`matmul_precision` or ``hrnn-jax compare --precision``): the recurrent cells' matrix
  products, the input projections, the output scores and the losses. These are approximations by
  design; at ``"default"`` a GPU trades about three decimal digits for speed, ``"highest"`` gives
  full float32. Ranks computed from scores inherit their precision.
* **Exact on every backend, whatever the setting** (never TF32, bf16 or atomics):

  - copies of recurrent states between lanes and slots (:func:`take_lanes`, :func:`put_lanes`):
    gathers and scatters with distinct indices, exact for every value (a one-hot matrix product
    would round in TF32 at the default precision, flush subnormals, and spread a NaN or inf of
    one lane to all rows; it also measured about 8% slower on CPU);
  - row gathers of embedding tables (:func:`take_rows`; :func:`take_rows_of` for several tables
    indexed alike, an output layer's weights and bias): their gradient is accumulated by
    :func:`segment_sum`, a sort and a segmented tree sum with a fixed order, instead of an atomic
    scatter-add, so it is the same from run to run;
  - the rows a batch touches (:func:`unique_rows`): sorts and binary searches, no scatter;
  - the row-sparse optimiser's writes (``hrnn_jax.training.optim.row_update``): scatters whose
    indices are distinct and declared so (``unique_indices=True``), which need no atomics.

Determinism
-----------
On CPU every run with the same seed is bit-identical. On a GPU, the ops above remove the library's
own sources of run-to-run variation (atomic scatter-adds of row gradients and of lane copies), so
the default settings already gave bit-identical runs on an H100 (see the README for what was
measured). :func:`deterministic_mode` also asks XLA for deterministic kernels everywhere
(``--xla_gpu_deterministic_ops=true``), for what XLA itself might still vary; it must be called
before JAX starts its backend, and it slows HRNN's training there (the README has the figures).
"""
from __future__ import annotations

import math
import os
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from hrnn_jax import choices

MatmulPrecision = Literal["default", "high", "highest"]
MATMUL_PRECISIONS = choices.options(MatmulPrecision)
_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


# ------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------
def matmul_precision(name: str):
    """Context manager: the precision of the approximate matrix products (see the module policy).

    ``"default"`` (backend's fastest: TF32 on recent NVIDIA GPUs), ``"high"`` or ``"highest"``
    (full float32). Exact ops ignore it. A jitted function traced inside the context keeps it.
    """
    choices.check("matmul precision", name, MATMUL_PRECISIONS)
    return jax.default_matmul_precision(name)


def current_matmul_precision() -> str:
    """The matmul precision in effect (``"default"`` when JAX's setting is unset)."""
    return jax.config.jax_default_matmul_precision or "default"


def deterministic_mode() -> None:
    """Ask XLA for deterministic GPU kernels (``--xla_gpu_deterministic_ops=true`` in XLA_FLAGS).

    Call it before the first JAX computation of the process; afterwards XLA has read its flags and
    the call raises RuntimeError. Does nothing to results on CPU, which is deterministic already.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _DETERMINISTIC_FLAG in flags.split():
        return
    if _backend_started():
        raise RuntimeError("deterministic_mode() must be called before the first JAX computation "
                           f"(or set XLA_FLAGS={_DETERMINISTIC_FLAG} in the environment)")
    os.environ["XLA_FLAGS"] = f"{flags} {_DETERMINISTIC_FLAG}".strip()


# A start-up setting of JAX's public configuration: JAX refuses to change it once a backend has
# started (and XLA has read its flags).
_START_UP_SETTING = "jax_cpu_get_local_topology_timeout_minutes"


def _backend_started() -> bool:
    """Whether JAX has started a backend, asked through its public configuration: changing a
    start-up setting is refused once one has (the change is undone at once). A JAX without that
    setting cannot tell: False."""
    try:
        value = getattr(jax.config, _START_UP_SETTING)
    except AttributeError:
        return False
    try:
        jax.config.update(_START_UP_SETTING, value + 1)
    except RuntimeError:
        return True
    jax.config.update(_START_UP_SETTING, value)
    return False


def is_deterministic() -> bool:
    """True when XLA was asked for deterministic GPU kernels (see :func:`deterministic_mode`)."""
    return _DETERMINISTIC_FLAG in os.environ.get("XLA_FLAGS", "").split()


# ------------------------------------------------------------------------------------------
# Exact lane copies
# ------------------------------------------------------------------------------------------
def take_lanes(idx: jax.Array, tree):
    """Rows ``idx [K]`` of every ``[B, ...]`` array of ``tree``: a tree of ``[K, ...]`` arrays.

    ``idx`` holds distinct lanes in ascending order, padded with distinct values >= B (those rows
    read as zeros), as ``data.make_lanes`` lists the closing lanes. A gather: exact for every
    value on every backend; its gradient is a scatter-add with declared distinct indices.
    """
    at = dict(mode="fill", fill_value=0, unique_indices=True, indices_are_sorted=True)
    return jax.tree_util.tree_map(lambda a: a.at[idx].get(**at), tree)


def put_lanes(tree, idx: jax.Array, part):
    """``tree`` (arrays ``[B, ...]``) with rows ``idx [K]`` replaced by those of ``part`` (the same
    structure, arrays ``[K, ...]``); padding indices (>= B) write nothing. A scatter with distinct,
    sorted indices: exact, and needs no atomics.
    """
    at = dict(mode="drop", unique_indices=True, indices_are_sorted=True)
    return jax.tree_util.tree_map(lambda a, p: a.at[idx].set(p, **at), tree, part)


# ------------------------------------------------------------------------------------------
# Row gathers with a deterministic gradient
# ------------------------------------------------------------------------------------------
def segment_sum(data: jax.Array, ids: jax.Array, num_segments: int) -> jax.Array:
    """Sum of the rows of ``data [n, ...]`` with the same id ``ids [n]`` (in 0..num_segments-1;
    others are dropped): ``[num_segments, ...]``.

    Deterministic on every backend: the rows are sorted by id (stable) and summed within each run
    of equal ids by a segmented tree sum (``jax.lax.associative_scan``), whose order of additions
    is fixed by the shape; each segment's total is then read at its last row by binary search.
    No scatter, so no atomics.
    """
    n = ids.shape[0]
    shape = data.shape
    if n == 0:
        return jnp.zeros((num_segments,) + shape[1:], data.dtype)
    x = data.reshape(n, -1)
    order, sid = stable_order(ids, num_segments)
    x = x[order]
    first = jnp.concatenate([jnp.ones((1,), bool), sid[1:] != sid[:-1]])

    def combine(a, b):
        (va, fa), (vb, fb) = a, b
        return jnp.where(fb[..., None], vb, va + vb), fa | fb

    sums, _ = jax.lax.associative_scan(combine, (x, first))
    seg = jnp.arange(num_segments, dtype=sid.dtype)
    last = jnp.clip(search_sorted(sid, seg, side="right") - 1, 0, n - 1)
    out = jnp.where((sid[last] == seg)[:, None], sums[last], 0.0)
    return out.reshape((num_segments,) + shape[1:]).astype(data.dtype)


COMPARE_ALL_MAX = 1 << 16  # sorted x queries up to which every pair is compared in one kernel

def search_sorted(a: jax.Array, v: jax.Array, side: str = "left") -> jax.Array:
    """``jnp.searchsorted(a, v, side)``, the same integers: problems of up to
    ``COMPARE_ALL_MAX`` pairs compare every pair in one kernel (``method="compare_all"``), larger
    ones run the binary search (``"scan"``), a loop of small kernels. Measured on 2 CPU cores:
    the session GRU's window-1 step (ids of 50 to 100 rows) 6% faster; above 2^16 pairs (a
    window of 20 steps, 1,000 ids) comparing every pair was 7-10% slower than searching."""
    small = a.shape[0] * v.size <= COMPARE_ALL_MAX
    return jnp.searchsorted(a, v, side=side, method="compare_all" if small else "scan")


def stable_order(ids: jax.Array, num_segments: int) -> tuple[jax.Array, jax.Array]:
    """``(order, sorted_ids)``: ``jnp.argsort(ids, stable=True)`` for ``ids [n]``, and the ids in
    that order, ids outside ``0..num_segments-1`` read as -1 (below) or ``num_segments`` (above).

    The rows with ids in range get the positions and order of a stable argsort. Where the packed
    keys ``(clipped id + 1) * n + position`` fit in 32 bits, one sort of those keys does it: a
    sort of one array of integers, which XLA runs several times faster on CPU than a sort that
    carries a second array (the argsort's positions). Otherwise it is that argsort.
    """
    n = ids.shape[0]
    clipped = jnp.clip(ids, -1, num_segments).astype(jnp.int32)
    if (num_segments + 2) * n > 2**32:
        order = jnp.argsort(clipped, stable=True)
        return order, clipped[order]
    keys = jnp.sort((clipped + 1).astype(jnp.uint32) * n + jnp.arange(n, dtype=jnp.uint32))
    return (keys % n).astype(jnp.int32), (keys // n).astype(jnp.int32) - 1


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _take_rows(num_rows, tables, ids):
    return tuple(t.at[ids].get(mode="promise_in_bounds") for t in tables)


def _take_rows_fwd(num_rows, tables, ids):
    return _take_rows(num_rows, tables, ids), ids


def _take_rows_bwd(num_rows, ids, gs):
    """One :func:`segment_sum` for every table: the cotangents side by side ``[n, W]``. Its
    columns are summed independently, so each table's gradient is that of its own sum."""
    flat = ids.reshape(-1)
    n = flat.shape[0]
    cols = [g.reshape(n, math.prod(g.shape[ids.ndim:])) for g in gs]
    summed = segment_sum(jnp.concatenate(cols, axis=1), flat, num_rows)
    at = np.cumsum([0] + [c.shape[1] for c in cols])
    grads = [summed[:, a:b] for a, b in zip(at[:-1], at[1:])]
    return tuple(gr.reshape((num_rows,) + g.shape[ids.ndim:]) for gr, g in zip(grads, gs)), None


_take_rows.defvjp(_take_rows_fwd, _take_rows_bwd)


def take_rows(table: jax.Array, ids: jax.Array) -> jax.Array:
    """``table[ids]`` (ids promised in bounds): ``[M, ...], [...] -> [..., ...]``.

    The same values as a plain gather; its gradient with respect to ``table`` is accumulated by
    :func:`segment_sum` (deterministic) instead of a scatter-add (atomic on GPUs).
    """
    return _take_rows(table.shape[0], (table,), ids)[0]


def take_rows_of(tables: tuple[jax.Array, ...], ids: jax.Array) -> tuple[jax.Array, ...]:
    """The rows ``ids`` of each of several tables with as many rows (:func:`take_rows` of each,
    the same values and gradients bit for bit), their gradients accumulated by one
    :func:`segment_sum` rather than one per table (an output layer's weights and bias)."""
    return _take_rows(tables[0].shape[0], tuple(tables), ids)


def unique_rows(ids: jax.Array, num_rows: int) -> tuple[jax.Array, jax.Array]:
    """The distinct values of ``ids`` and each id's position among them, with no scatter.

    Returns ``(uniq [n], inverse ids.shape)``, ``n = ids.size``: ``uniq`` holds the distinct ids
    sorted ascending, then the padding values ``num_rows + 1, num_rows + 2, ...`` (distinct, out of
    range: scatters with ``mode="drop"`` skip them and may declare ``unique_indices``), and
    ``uniq[inverse] == ids``. Sorts and binary searches only, so it is deterministic everywhere.
    """
    flat = ids.reshape(-1)
    n = flat.shape[0]
    s = jnp.sort(flat)
    first = jnp.concatenate([jnp.ones((1,), bool), s[1:] != s[:-1]])
    pad = num_rows + 1 + jnp.arange(n, dtype=s.dtype)
    uniq = jnp.sort(jnp.where(first, s, pad))
    inverse = search_sorted(uniq, flat).astype(jnp.int32)
    return uniq, inverse.reshape(ids.shape)
