"""A model's structure as JSON, so that a checkpoint rebuilds any model, however it was composed.

``to_spec(model)`` walks the model's dataclass fields: numbers, text, tuples and dicts as they are,
nested cells and models (flax modules, dataclasses) as ``{"class": "module:QualName", "fields":
{...}}`` with the fields their class does not default, functions (a cell's ``gate_fn``) by their
import path, and data arrays (HRNN-meta's item features, which the parameters hold anyway) by
their shape and dtype. ``from_spec`` rebuilds the model, arrays as zeros of that shape.

A class or function that cannot be imported back under its own name (one defined inside a
function, a lambda) is a :class:`SpecError` at save time, naming the field. Loading imports the
modules a spec names, as unpickling would: load only checkpoints you trust. Classes must be
dataclasses (models, flax modules).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import numpy as np
from flax import linen as nn

_FLAX_INTERNAL = ("parent", "name")  # flax's own dataclass fields, set when a module is bound


class SpecError(ValueError):
    """A model that cannot be written as a spec, or a spec that cannot be read back."""


def _path(obj, where: str) -> str:
    name = f"{obj.__module__}:{obj.__qualname__}"
    try:
        back = _resolve(name)
    except SpecError:
        back = None
    if back is not obj:
        raise SpecError(f"{where}: {obj!r} cannot be imported back as {name} (define it at the "
                        "top level of an importable module to save this model)")
    return name


def _resolve(name: str):
    module, _, qualname = name.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise SpecError(f"cannot import {name}: {err}") from None
    return obj


def _default(cls, f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _is_default(value, default) -> bool:
    if default is dataclasses.MISSING:
        return False
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):  # arrays and the like
        return False


def to_spec(obj: Any, where: str = "model") -> Any:
    """The JSON-able structure of ``obj`` (a model, a cell, or a field of one)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, tuple):
        return {"tuple": [to_spec(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [to_spec(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise SpecError(f"{where}: dict keys must be text")
        return {"dict": {k: to_spec(v, f"{where}.{k}") for k, v in obj.items()}}
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__") and hasattr(obj, "shape"):
        arr = np.asarray(obj)
        return {"array": {"shape": list(arr.shape), "dtype": str(arr.dtype)}}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        skip = _FLAX_INTERNAL if isinstance(obj, nn.Module) else ()
        fields = {}
        for f in dataclasses.fields(obj):
            if not f.init or f.name in skip:
                continue
            value = getattr(obj, f.name)
            if not _is_default(value, _default(cls, f)):
                fields[f.name] = to_spec(value, f"{where}.{f.name}")
        return {"class": _path(cls, where), "fields": fields}
    if callable(obj):
        return {"function": _path(obj, where)}
    raise SpecError(f"{where}: cannot save a value of type {type(obj).__name__}")


def from_spec(spec: Any) -> Any:
    """The inverse of :func:`to_spec` (arrays come back as zeros of their shape)."""
    if spec is None or isinstance(spec, (bool, int, float, str)):
        return spec
    if isinstance(spec, list):
        return [from_spec(v) for v in spec]
    if not isinstance(spec, dict) or len(spec) not in (1, 2):
        raise SpecError(f"not a model spec: {spec!r}")
    if "tuple" in spec:
        return tuple(from_spec(v) for v in spec["tuple"])
    if "dict" in spec:
        return {k: from_spec(v) for k, v in spec["dict"].items()}
    if "array" in spec:
        return np.zeros(spec["array"]["shape"], spec["array"]["dtype"])
    if "function" in spec:
        fn = _resolve(spec["function"])
        if not callable(fn):
            raise SpecError(f"{spec['function']} is not a function")
        return fn
    if "class" in spec:
        cls = _resolve(spec["class"])
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise SpecError(f"{spec['class']} is not a model, a flax module or a dataclass")
        return cls(**{k: from_spec(v) for k, v in spec.get("fields", {}).items()})
    raise SpecError(f"not a model spec: {spec!r}")
