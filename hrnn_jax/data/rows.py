"""Evaluation rows: which predictions of a stream are scored, with what each needs (the user's
earlier items, the history length and the position in the session for the breakdowns).

    rows  = make_eval_rows(stream, targets="session")     # one row per evaluated prediction
    ranks = evaluation.rank_chunks(score_fn, rows)         # hrnn_jax.evaluation.metrics

Targets (``rows_targets``): within the test session for the last-session protocol (Quadrana et
al.), else the user's previous event in any session.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from hrnn_jax import choices
from hrnn_jax.data.lanes import Targets


# --------------------------------------------------------------------------------------------
# Evaluation rows
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalRows:
    """One row per evaluated prediction "input event -> target event"; arrays of length R.

    event:            int64 [R]   event index (row position in ``stream``) of the TARGET event.
    user:             int32 [R]   user of the row.
    item:             int32 [R]   input item (the event just before the target).
    target:           int32 [R]   target item (1..N).
    history_sessions: int32 [R]   number of distinct training (``is_test`` False) sessions of the
                                  user.
    position:         int32 [R]   1-based position of the INPUT event within its own session.
    session_length:   int32 [R]   length (events, train and test) of the TARGET's session in
                                  ``stream``.
    same_session:     bool  [R]   input and target belong to the same session (always True for
                                  ``targets="session"``). Optional; None means all True.
    history_start:    int64 [R]   event index of the user's first event in ``stream``: the history
                                  of row r (every event of the user before the target, training
                                  and earlier test events, in stream order) is the stream slice
                                  ``[history_start[r], event[r])`` (see :meth:`history`).
    stream_item:      int32 [E]   item of every stream event (E = stream length).
    stream_time:      float64 [E] time of every stream event (the log's unit, seconds for
                                  ``data.read_interactions``). The three history fields are
                                  optional (None) for rows built by hand; baselines that read the
                                  history (time-decayed Item-KNN, MF, sequential MF) need them, and
                                  so do the seen items (``exclude_seen``, PersonalPop).

    Storage is O(E + R): the per-row fields above and one copy of the stream's items and times.
    No per-row list of the items seen before the target is stored (with long histories, e.g.
    LastFM-1K's 1,738 events a user and a temporal split, that list is O(R x history): 1e8
    entries for 1,000 users x 2,000 events). The seen items of a row, the distinct items of its
    history (training events + earlier test events, the input item included), and how often each
    occurs there, are derived on demand for a chunk of rows by :meth:`seen`, as padded [r, W]
    arrays: each user's events up to its last target in the chunk are sorted by item once, and a
    row keeps the items whose first occurrence precedes its target (its histories are prefixes
    of that span). :meth:`seen_of` gives one row's. The evaluation (``rank_chunks`` with
    ``exclude_seen``, PersonalPop) asks for them chunk by chunk, so its memory is O(E + R + chunk
    x (W + N)) whatever the history lengths.
    """

    event: np.ndarray
    user: np.ndarray
    item: np.ndarray
    target: np.ndarray
    history_sessions: np.ndarray
    position: np.ndarray
    session_length: np.ndarray
    same_session: np.ndarray | None = None
    history_start: np.ndarray | None = None
    stream_item: np.ndarray | None = None
    stream_time: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.event.shape[0])

    def _require_history(self) -> None:
        if self.history_start is None or self.stream_item is None:
            raise ValueError("these evaluation rows carry no history (history_start, stream_item, "
                             "stream_time), which the seen items are derived from too; build "
                             "them with make_eval_rows")

    def history(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The histories of rows ``index`` [r] as stream positions, without a Python loop:
        ``(flat [n], row [n])``, ``flat`` the stream index of every history event (oldest first
        within a row) and ``row`` its position in ``index``. Read items and times as
        ``stream_item[flat]``, ``stream_time[flat]``."""
        self._require_history()
        index = np.asarray(index, dtype=np.int64)
        starts = self.history_start[index]
        return csr_ranges(starts, self.event[index] - starts)

    def seen(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Items seen before the targets of rows ``index`` [r], from their histories.

        Returns ``(items, counts)``, both int32 [r, W]: row i lists the distinct items of the
        history of row ``index[i]`` (the user's events before the target: training history and
        earlier test events, the input item included) in ascending order, and how many of those
        events are on each; the rest of the row is padding, item 0 with count 0. ``W`` is the
        longest list rounded up to a power of two (at least 8), so that jitted consumers
        (:func:`seen_mask`) compile only a few shapes. The rows of one user share a history
        prefix, so each user's events up to its last target in ``index`` are sorted once: work
        and memory are O(those events + r x W). Raises ValueError for rows without history
        fields.
        """
        index = np.asarray(index, dtype=np.int64)
        self._require_history()
        ends = self.event[index]
        # Rows of one user share their history start, and their histories are prefixes of the
        # longest one: sort each user's span once, not every row's history.
        group_start, group = np.unique(self.history_start[index], return_inverse=True)
        group = group.reshape(-1)
        group_end = np.zeros(len(group_start), dtype=np.int64)
        np.maximum.at(group_end, group, ends)
        flat, g = csr_ranges(group_start, group_end - group_start)  # by group, then position
        key = (g << 32) | self.stream_item[flat].astype(np.int64)   # (group, item); items >= 0
        order = np.argsort(key, kind="stable")                       # ... then position
        key, flat = key[order], flat[order]
        first = np.empty(len(key), dtype=bool)
        first[:1] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        pair_first = np.flatnonzero(first)  # each distinct (group, item): its first occurrence
        pair_key = key[pair_first]
        pairs = np.bincount(pair_key >> 32, minlength=len(group_start))
        # Every (row, item of its group's span), rows in ``index`` order, items ascending; the
        # row has seen the item iff the item's first occurrence is before the row's target.
        cand, row = csr_ranges((np.cumsum(pairs) - pairs)[group], pairs[group])
        keep = flat[pair_first[cand]] < ends[row]
        cand, row = cand[keep], row[keep]
        # Occurrences before the target: the pair's positions (ascending) below ``ends[row]``.
        stride = len(self.stream_item) + 1
        occ = (np.cumsum(first) - 1) * stride + flat  # sorted: by pair, then position
        counts = np.searchsorted(occ, cand * stride + ends[row]) - pair_first[cand]
        lengths = np.bincount(row, minlength=len(index))
        width = 8
        while width < (lengths.max() if len(lengths) else 0):
            width *= 2
        col = np.arange(len(row)) - (np.cumsum(lengths) - lengths)[row]
        items = np.zeros((len(index), width), dtype=np.int32)
        items[row, col] = pair_key[cand] & 0xFFFFFFFF
        out_counts = np.zeros((len(index), width), dtype=np.int32)
        out_counts[row, col] = counts
        return items, out_counts

    def seen_of(self, r: int) -> np.ndarray:
        """Distinct items seen before the target of row ``r``, ascending: int32 [n_r] (their
        counts: :meth:`seen`)."""
        items, counts = self.seen(np.array([r], dtype=np.int64))
        return items[0][counts[0] > 0]


def csr_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ranges ``[starts[r], starts[r] + lengths[r])`` without a Python loop.

    Returns (flat positions [sum(lengths)], row id of each position [sum(lengths)]).
    """
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    row = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    flat = (np.repeat(starts.astype(np.int64), lengths)
            + (np.arange(total, dtype=np.int64) - ptr[row]))
    return flat, row


def rows_targets(protocol: str) -> Targets:
    """The targets of the evaluation rows: within the test session for "last-session", else the
    user's previous event in any session (for "users": every step of a test user's sequence)."""
    return "session" if protocol == "last-session" else "user"


def make_eval_rows(stream: pl.DataFrame, targets: str = "session") -> EvalRows:
    """Rows to evaluate from a combined train+test stream.

    ``stream``: columns user Int32, item Int32 (1..N), time Float64, session Int32, is_test Boolean,
    sorted by (user, is_test, time); a row's position is its event index.

    A row is made for every test event (``is_test`` True) that has a predecessor:
      * ``targets="session"``: the previous event of the same user in the same session (which may be
        a training event, e.g. under leave-one-out or temporal splits);
      * ``targets="user"``: the previous event of the same user, in any session (the first test
        event of a session is then predicted from the last event of the previous session).
    Rows are sorted by ``event``. A row's history (and so its seen items, ``EvalRows.seen``) is
    the user's events before the target in stream order (training events first, then earlier
    test events). Time and memory are O(stream events + rows).
    """
    choices.check("targets", targets, Targets)
    missing = {"user", "item", "time", "session", "is_test"} - set(stream.columns)
    if missing:
        raise ValueError(f"stream lacks columns {sorted(missing)}")
    users = stream["user"].to_numpy()
    if len(users) and np.any(np.diff(users) < 0):
        raise ValueError("stream must be sorted by user (then is_test, time)")

    df = stream.select("user", "item", "session", "is_test").with_row_index("event").with_columns(
        local=pl.int_range(pl.len()).over("user"),                       # 0-based index within user
        pos_in_session=pl.int_range(1, pl.len() + 1).over("session"),    # 1-based position
        session_length=pl.len().over("session"),
        history_sessions=pl.col("session").filter(~pl.col("is_test")).n_unique().over("user"),
    ).with_columns(
        prev_item=pl.col("item").shift(1).over("user"),
        prev_session=pl.col("session").shift(1).over("user"),
        prev_position=pl.col("pos_in_session").shift(1).over("user"),
    )

    keep = pl.col("is_test") & pl.col("prev_item").is_not_null()
    if targets == "session":
        keep = keep & (pl.col("prev_session") == pl.col("session"))
    rows = df.filter(keep).sort("event")

    user = rows["user"].to_numpy().astype(np.int32)
    local = rows["local"].to_numpy().astype(np.int64)

    return EvalRows(
        event=rows["event"].to_numpy().astype(np.int64),
        user=user,
        item=rows["prev_item"].to_numpy().astype(np.int32),
        target=rows["item"].to_numpy().astype(np.int32),
        history_sessions=rows["history_sessions"].fill_null(0).to_numpy().astype(np.int32),
        position=rows["prev_position"].to_numpy().astype(np.int32),
        session_length=rows["session_length"].to_numpy().astype(np.int32),
        same_session=(rows["prev_session"] == rows["session"]).to_numpy(),
        history_start=(rows["event"].to_numpy() - local).astype(np.int64),
        stream_item=stream["item"].to_numpy().astype(np.int32),
        stream_time=stream["time"].to_numpy().astype(np.float64),
    )
