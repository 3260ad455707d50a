"""The request files of ``hrnn-jax recommend``: a new user's history, a file of users (and
sessions in progress), and the recommendations written back as CSV or Parquet."""
from __future__ import annotations

import os

import polars as pl

from hrnn_jax import data


def _read_table(path, columns: dict) -> pl.DataFrame:
    """A CSV or Parquet file (by extension) with the given columns read as text."""
    path = data.check_file(path)
    try:
        if path.lower().endswith((".parquet", ".pq")):
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, schema_overrides={c: pl.String for c in columns})
    except (pl.exceptions.PolarsError, OSError, UnicodeError) as err:
        raise data.DataError(f"cannot parse {path}: {data.one_line(err)}") from None
    missing = [c for c, required in columns.items() if required and c not in frame.columns]
    if missing:
        raise data.DataError(f"missing column(s) {missing} in {path}; columns present: "
                             f"{frame.columns}")
    return frame.with_columns(pl.col(c).cast(pl.String) for c in columns if c in frame.columns)


def read_history(path) -> list[list[str]]:
    """A new user's history from a CSV/Parquet file with columns session, item (raw ids in time
    order): its sessions, in order of first appearance, as lists of raw item ids."""
    frame = _read_table(path, {"session": True, "item": True})
    if frame.height == 0 or frame["item"].null_count() or frame["session"].null_count():
        raise data.DataError(f"{path}: needs at least one row and no empty session or item")
    sessions: dict[str, list[str]] = {}
    for s, i in zip(frame["session"].to_list(), frame["item"].to_list()):
        sessions.setdefault(s, []).append(i)
    return list(sessions.values())


def read_requests(path) -> tuple[list[str], list[list[str] | None]]:
    """Users (column ``user``) and optional sessions in progress (column ``session``: raw item
    ids separated by spaces; empty: none) from a CSV/Parquet file."""
    frame = _read_table(path, {"user": True, "session": False})
    if frame.height == 0 or frame["user"].null_count():
        raise data.DataError(f"{path}: needs at least one row and a user on every row")
    text = frame["session"].to_list() if "session" in frame.columns else [None] * frame.height
    return frame["user"].to_list(), [s.split() if s and s.split() else None for s in text]


def write_table(frame: pl.DataFrame, path) -> None:
    """Write ``frame`` as CSV or Parquet, by the extension of ``path``."""
    path = os.fspath(path)
    if path.lower().endswith((".parquet", ".pq")):
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
