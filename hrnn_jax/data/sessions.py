"""From a validated log to integer codes: sessions by idle gap, repeated interactions within a
session (opt-in), the maximum value only (opt-in), the support and length filters (repeated until
nothing changes, every dropped row counted by reason), and ``encode``.

Frames after ``encode`` use the *encoded schema*: ``user`` Int32 (0..U-1), ``item`` Int32
(1..N, 0 is padding), ``time`` Float64 seconds, ``session`` Int32, plus ``event`` / ``value``
(and ``event_code``) when present, sorted by (user, time).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from hrnn_jax.data.errors import DataError


def sort_events(df: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Stable sort (ties keep their current order)."""
    return df.sort(list(keys), maintain_order=True)


def sessionize(df: pl.DataFrame, gap: float = 1800.0) -> pl.DataFrame:
    """Sort by (user, time) stably and add ``session`` (Int64, global ids 0..S-1).

    A session starts at a user's first event and whenever the idle time since the user's
    previous event is strictly greater than ``gap`` seconds (a gap equal to ``gap`` stays).
    """
    if not gap > 0:
        raise DataError(f"session gap must be > 0 seconds, got {gap}")
    df = sort_events(df.drop("session", strict=False), "user", "time")
    return df.with_columns(session=session_starts("user", gap).cast(pl.Int64).cum_sum() - 1)


def session_starts(user: str, gap: float) -> pl.Expr:
    """True at the rows that open a session, rows in (user, time) order: a user's first event,
    or an idle time since the user's previous event strictly greater than ``gap`` seconds
    (``sessionize``'s rule; ``data.stream`` applies it to its partitions)."""
    return ((pl.col(user) != pl.col(user).shift(1))
            | ((pl.col("time") - pl.col("time").shift(1)) > gap)).fill_null(True)


def user_rules(user: str, min_session_len: int, min_sessions: int,
               min_user_events: int) -> tuple[tuple[str, pl.Expr], ...]:
    """``filter_interactions``' rules after the item support, in its order, as (reason, rows
    kept): they need only a user's own events (``data.stream`` applies them partition by
    partition)."""
    return (("session_length", pl.len().over("session") >= min_session_len),
            ("user_sessions", pl.col("session").n_unique().over(user) >= min_sessions),
            ("user_events", pl.len().over(user) >= min_user_events))


def dedupe_sessions(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Drop repeated interactions of the same type within a session (Quadrana et al. 4.1).

    An event is dropped when an earlier row of the same session has the same item and, if there
    is an ``event`` column, the same interaction type (without one, the type is ignored); the
    first occurrence is kept, repeats need not be adjacent, and repeats in other sessions are
    kept. Row order is kept. Run it after ``sessionize`` (rows in (user, time) order, so "first"
    is the earliest) and before ``filter_interactions``; once is enough, as removing repeats
    cannot create new ones.

    Args:
      df: events with ``session`` and ``item`` columns (``event`` optional).

    Returns:
      (the events without repeats, number of events dropped).
    """
    if "session" not in df.columns:
        raise DataError("dedupe_sessions needs a 'session' column; call sessionize first")
    key = ["session", "item"] + (["event"] if "event" in df.columns else [])
    kept = df.unique(subset=key, keep="first", maintain_order=True)
    return kept, df.height - kept.height


def keep_max_value(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Only the events whose ``value`` is the log's maximum: explicit ratings made binary
    implicit feedback, as Song et al. (2019) treat MovieLens ("activating only the maximum
    rating"). Row order is kept.

    Returns:
      (the kept events, number of events dropped).
    """
    if "value" not in df.columns:
        raise DataError("keeping the maximum rating needs a 'value' column (the ratings)")
    top = df["value"].max()
    kept = df.filter(pl.col("value") == top)
    return kept, df.height - kept.height


def filter_interactions(df: pl.DataFrame, *, min_item_support: int = 5, min_session_len: int = 2,
                        min_sessions: int = 1, min_user_events: int = 1
                        ) -> tuple[pl.DataFrame, dict[str, int]]:
    """Quadrana et al. section 4.1 filters, repeated until nothing changes.

    Each round removes, in order: events of items with fewer than ``min_item_support`` events,
    sessions with fewer than ``min_session_len`` events, users with fewer than ``min_sessions``
    sessions, users with fewer than ``min_user_events`` events (Shuvo et al. use 5; HCRNN keeps
    sequences of at least 10). The report counts removed events per reason, summed over rounds.
    Session ids are kept as they are (not renumbered). Needs a ``session`` column (see
    ``sessionize``).
    """
    if "session" not in df.columns:
        raise DataError("filter_interactions needs a 'session' column; call sessionize first")
    report = {"item_support": 0, "session_length": 0, "user_sessions": 0, "user_events": 0}
    n_start = df.height
    rules = (("item_support", pl.len().over("item") >= min_item_support),
             *user_rules("user", min_session_len, min_sessions, min_user_events))
    changed = True
    while changed and df.height:
        changed = False
        for reason, keep in rules:
            before = df.height
            df = df.filter(keep)
            report[reason] += before - df.height
            changed |= df.height < before
    if df.height == 0:
        raise DataError(f"all {n_start} rows were removed by the filters: {report}")
    return df, report


def id_order(ids: pl.Series) -> np.ndarray:
    """Unique raw ids, sorted numerically when they all look like integers, else as strings."""
    ids = ids.cast(pl.String).unique()
    frame = pl.DataFrame({"raw": ids, "num": ids.cast(pl.Int64, strict=False)})
    keys = ["raw"] if frame["num"].null_count() else ["num", "raw"]
    return frame.sort(keys)["raw"].to_numpy().astype(object)


@dataclass(frozen=True)
class Encoded:
    """Integer-coded events plus the tables that map codes back to raw ids."""

    events: pl.DataFrame
    user_ids: np.ndarray  # raw id of user code u at position u
    item_ids: np.ndarray  # raw id of item code i at position i; position 0 (padding) is None

    @property
    def n_items(self) -> int:
        """Number of items N (codes 1..N), padding excluded."""
        return len(self.item_ids) - 1

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @cached_property
    def _item_codes(self) -> dict[str, int]:
        return {raw: code for code, raw in enumerate(self.item_ids) if code > 0}

    def encode_items(self, raw) -> np.ndarray:
        """Raw item ids (any scalar type; compared as strings) -> int32 codes 1..N."""
        raw = [str(r) for r in np.atleast_1d(np.asarray(raw, dtype=object))]
        unknown = sorted({r for r in raw if r not in self._item_codes})
        if unknown:
            raise DataError(f"{len(unknown)} unknown item id(s): {unknown[:5]}")
        return np.array([self._item_codes[r] for r in raw], dtype=np.int32)

    def decode_items(self, codes) -> np.ndarray:
        """Item codes 0..N -> raw ids (object array; code 0 gives the padding entry None)."""
        codes = np.asarray(codes)
        bad = codes[(codes < 0) | (codes > self.n_items)]
        if bad.size:
            raise DataError(f"{bad.size} unknown item code(s) (valid 0..{self.n_items}): "
                            f"{sorted(set(bad.tolist()))[:5]}")
        return self.item_ids[codes]


def encode(df: pl.DataFrame, catalogue=None) -> Encoded:
    """Map raw ids to integer codes and renumber sessions 0..S-1 in (user, time) order.

    Users get codes 0..U-1 and items 1..N in sorted raw-id order (numeric order when all ids
    are integers). Rows are sorted by (user, time) stably.

    ``catalogue``: raw item ids (e.g. ``ItemFeatures.item_ids``) that get codes too, whether or
    not they occur in ``df``: an explicit catalogue, so that items without events (cold items)
    can be scored and recommended.

    With an ``event`` column (the interaction type) the events also get ``event_code`` (Int32):
    0..K-1 in sorted order of the type names.
    """
    if "session" not in df.columns:
        raise DataError("encode needs a 'session' column; call sessionize first")
    user_ids = id_order(df["user"])
    items = df["item"].cast(pl.String)
    if catalogue is not None:
        items = pl.concat([items, pl.Series(np.asarray(catalogue, dtype=object).astype(str),
                                            dtype=pl.String)])
    item_ids = np.concatenate([np.array([None], dtype=object), id_order(items)])
    user_map = pl.DataFrame({"user": user_ids.tolist(), "_u": np.arange(len(user_ids))},
                            schema={"user": pl.String, "_u": pl.Int32})
    item_map = pl.DataFrame({"item": item_ids[1:].tolist(), "_i": np.arange(1, len(item_ids))},
                            schema={"item": pl.String, "_i": pl.Int32})
    extra = [c for c in ("event", "value") if c in df.columns]
    ev = (df.with_columns(pl.col("user", "item").cast(pl.String))
          .with_row_index("_row")
          .join(user_map, on="user", how="left")
          .join(item_map, on="item", how="left")
          .sort(["_u", "time", "_row"])
          .with_row_index("_pos"))
    # a session's new id is the rank of its first row in (user, time) order
    first_pos = pl.col("_pos").min().over(["_u", "session"])
    ev = ev.with_columns(session=first_pos.rank("dense") - 1)
    events = ev.select(pl.col("_u").alias("user"), pl.col("_i").alias("item"),
                       pl.col("time").cast(pl.Float64), pl.col("session").cast(pl.Int32), *extra)
    if "event" in events.columns:  # the types' codes 0..K-1 in sorted order of their names
        events = events.with_columns(
            event_code=(pl.col("event").rank("dense") - 1).cast(pl.Int32))
    return Encoded(events=events, user_ids=user_ids, item_ids=item_ids)


def summary(events: pl.DataFrame) -> dict:
    """Counts: {"users", "items", "sessions", "events"}."""
    return {"users": events["user"].n_unique(), "items": events["item"].n_unique(),
            "sessions": events["session"].n_unique(), "events": events.height}
