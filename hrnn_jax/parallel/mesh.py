"""The device mesh: ``make_mesh("data=4,items=2")``.

Three axes, each optional (an axis left out has size 1):

* ``data``: the lanes of a batch (user-parallel mini-batches) and the recurrent carry;
* ``items``: the rows of the item and user tables (``Capabilities.sharded_tables``): each device
  holds a slice of the catalogue, and scores, softmax and ranks are combined over the axis;
* ``seeds``: the leading axis of seeds trained side by side (``TrainConfig.seeds``).

Every other parameter (the recurrent kernels, the user-level GRU, attention weights) is
replicated. The axes are ``AxisType.Auto``: the shardings of a step's inputs and outputs are
given to ``jax.jit`` and XLA partitions the step itself (the unique-rows sort inside a row-sparse
update needs Auto axes: with Explicit ones it refuses to sort a sharded dimension).
"""
from __future__ import annotations

import math
from typing import Mapping, Union

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

AXES = ("seeds", "data", "items")
MeshSpec = Union[Mesh, str, Mapping[str, int], None]


def parse_mesh(text: str) -> dict[str, int]:
    """``"data=4,items=2"`` -> ``{"data": 4, "items": 2}`` (ValueError naming the bad part)."""
    sizes: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"mesh: {part!r} is not AXIS=SIZE with a size >= 1 "
                             f"(e.g. data=4,items=2)")
        if name not in AXES:
            raise ValueError(f"mesh: unknown axis {name!r}; axes: {', '.join(AXES)}")
        if name in sizes:
            raise ValueError(f"mesh: axis {name!r} given twice")
        sizes[name] = int(value)
    if not sizes:
        raise ValueError("mesh: no axis given (e.g. data=4,items=2)")
    return sizes


def make_mesh(spec: MeshSpec) -> Mesh | None:
    """A :class:`jax.sharding.Mesh` over the first devices, from axis sizes (a dict or
    ``"data=4,items=2"``), or ``spec`` itself when it is a mesh (checked). ``None`` -> ``None``:
    one device, the library's default. The axes follow :data:`AXES`' order; their product must
    not exceed the devices of the process group (``jax.devices()``: every process's devices under
    ``jax.distributed``)."""
    if spec is None:
        return None
    if isinstance(spec, Mesh):
        return check_mesh(spec)
    sizes = parse_mesh(spec) if isinstance(spec, str) else dict(spec)
    bad = sorted(set(sizes) - set(AXES))
    if bad:
        raise ValueError(f"mesh: unknown axis {bad}; axes: {', '.join(AXES)}")
    names = tuple(a for a in AXES if a in sizes)
    shape = tuple(int(sizes[a]) for a in names)
    if any(s < 1 for s in shape):
        raise ValueError(f"mesh: axis sizes must be >= 1, got {sizes}")
    devices = jax.devices()
    need = math.prod(shape)
    if need > len(devices):
        raise ValueError(
            f"mesh {sizes} needs {need} devices, this process group has {len(devices)} "
            f"({jax.default_backend()}); on CPU, start Python with "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={need}")
    grid = np.array(devices[:need], dtype=object).reshape(shape)
    return Mesh(grid, names, axis_types=(AxisType.Auto,) * len(names))


def check_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` if its axes are among :data:`AXES` and all ``AxisType.Auto`` (ValueError
    otherwise)."""
    bad = sorted(set(mesh.axis_names) - set(AXES))
    if bad:
        raise ValueError(f"mesh: unknown axis {bad}; axes: {', '.join(AXES)}")
    if any(t != AxisType.Auto for t in mesh.axis_types):
        raise ValueError("mesh: every axis must be AxisType.Auto (XLA partitions the step; "
                         "jax.make_mesh defaults to Explicit axes: pass "
                         "axis_types=(AxisType.Auto,) * n)")
    return mesh


def local_mesh(spec: MeshSpec) -> Mesh | None:
    """A mesh of this process's own devices, for work each process does alone (ranking the rows
    of its share of an encoded log): None (one device) without ``spec`` or with one local
    device; else every local device, over ``items`` as many as ``spec``'s ``items`` axis when
    that divides them, the rest over ``data``."""
    n = jax.local_device_count()
    if spec is None or n == 1:
        return None
    if isinstance(spec, Mesh):
        items = axis_size(check_mesh(spec), "items")
    else:  # the sizes alone: the whole mesh need not be made here
        items = int((parse_mesh(spec) if isinstance(spec, str) else dict(spec)).get("items", 1))
    items = items if n % items == 0 else 1
    grid = np.array(jax.local_devices(), dtype=object).reshape(n // items, items)
    return Mesh(grid, ("data", "items"), axis_types=(AxisType.Auto,) * 2)


def axis_size(mesh: Mesh | None, name: str) -> int:
    """The size of axis ``name`` (1 when there is no mesh or no such axis)."""
    if mesh is None or name not in mesh.axis_names:
        return 1
    return int(mesh.shape[name])


def describe(mesh: Mesh | None) -> str:
    """``"data=4,items=2"``, or ``"1 device"``."""
    if mesh is None:
        return "1 device"
    return ",".join(f"{a}={mesh.shape[a]}" for a in mesh.axis_names)
