"""JSON output: results with numpy values and tuples written as plain JSON."""
from __future__ import annotations

import json

import numpy as np


def to_jsonable(obj):
    """Recursively turn numpy scalars/arrays and tuples into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def write_json(path: str, payload: dict) -> None:
    """``payload`` as indented JSON at ``path`` (see :func:`to_jsonable`)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(to_jsonable(payload), fh, indent=2)
        fh.write("\n")
