"""Named options: each is a ``typing.Literal`` type, checked by one validator.

    Mode = Literal["init", "all"]
    choices.check("mode", mode, Mode)   # ValueError naming the option, the value and the choices
"""
from __future__ import annotations

from typing import Any, get_args


def options(kind: Any) -> tuple:
    """The allowed values of a ``Literal`` type (or a tuple of values), as a tuple."""
    return tuple(get_args(kind)) or tuple(kind)


def check(name: str, value: Any, kind: Any) -> Any:
    """``value`` if it is one of ``kind``'s values, else a ValueError naming ``name`` and them."""
    allowed = options(kind)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value
