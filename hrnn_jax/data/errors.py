"""Bad input data: ``DataError`` (a ValueError whose message names the column, the rows or the
file at fault), and the small helpers that make such messages.
"""
from __future__ import annotations

import polars as pl


class DataError(ValueError):
    """Bad input data; message names the column(s) or rows at fault."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """An error's message on one line, cut at ``limit`` characters (its type name if empty)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def bad_rows(df: pl.DataFrame, mask: pl.Expr) -> tuple[int, list[int]]:
    """Number of rows where ``mask`` holds and the first few 0-based row numbers."""
    rows = df.with_row_index("_row").filter(mask)["_row"]
    return rows.len(), rows.head(5).to_list()


def check_file(path, what: str = "file") -> str:
    """``path`` as text; DataError unless it names an existing regular file (a directory, or
    nothing, named as such)."""
    import os

    path = os.fspath(path)
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory, not a {what}")
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    return path
