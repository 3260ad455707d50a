"""User-parallel mini-batches (Quadrana et al. 2017, Sec. 3.2.2 and Fig. 2) cut into fixed windows.

B lanes; each lane is a stream of whole users, one after the other. A user's events become steps
(input item -> target item). When a user ends, the next user of the (shuffled) order starts in the
lane that frees first. The streams are padded at the end and cut into windows of L steps, so every
train step sees arrays of the same shape ``[B, L]`` and the recurrent state is carried from one
window to the next (truncated back-propagation through time; L = 1 is the original training: one
step per mini-batch).

Targets:

* ``"session"``: a session of n events gives n - 1 steps (inputs 1..n-1, targets 2..n), as
  GRU4Rec/HRNN's original code; the last event of a session is a target only, and a session of one
  event gives no step at all (the user-level GRU never sees it: filter such sessions first).
* ``"user"``: the user's events form one sequence (RNN Concat, Donkers et al., HCRNN): n events of
  a user give n - 1 steps; the last event of a session predicts the first of the next one.

A step opens a session (``session_start``) when its input event is the first step of its session;
it opens a user (``user_start``) at the user's first step, which is also a session start.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import polars as pl

TARGETS = ("session", "user")
FIELDS = ("item", "target", "session_start", "user_start", "valid", "user", "event", "evaluate")


@dataclass(frozen=True)
class Lanes:
    """Windows of user-parallel lanes. Every field is ``[W, B, L]`` (W windows).

    item/target (int32, 0 = padding / no target), session_start/user_start/valid (bool), user (int32),
    event (int64: row of the target event in the source frame, -1 on padding), evaluate (bool: the
    step's prediction is scored by evaluation).
    """

    item: np.ndarray
    target: np.ndarray
    session_start: np.ndarray
    user_start: np.ndarray
    valid: np.ndarray
    user: np.ndarray
    event: np.ndarray
    evaluate: np.ndarray

    def __len__(self) -> int:
        return self.item.shape[0]

    @property
    def n_events(self) -> int:
        """Number of steps with a target (the training events of one pass)."""
        return int((self.target > 0).sum())

    def window(self, w: int) -> dict[str, np.ndarray]:
        """Window ``w`` as a dict of ``[B, L]`` arrays: the batch contract of the models."""
        return {name: getattr(self, name)[w] for name in FIELDS}

    def window_arrays(self) -> dict[str, np.ndarray]:
        """All windows as a dict of ``[W, B, L]`` arrays."""
        return {name: getattr(self, name) for name in FIELDS}

    def __iter__(self):
        return (self.window(w) for w in range(len(self)))


def _steps(frame: pl.DataFrame, targets: str):
    """Step arrays (one entry per step, grouped by user, in time order)."""
    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
    user = frame["user"].to_numpy().astype(np.int64)
    item = frame["item"].to_numpy().astype(np.int32)
    session = frame["session"].to_numpy().astype(np.int64)
    if len(user) > 1 and np.any(np.diff(user) < 0):
        raise ValueError("events must be sorted by user (then time); sort the frame first")
    nxt_same_user = np.zeros(len(user), bool)
    nxt_same_user[:-1] = user[1:] == user[:-1]
    has_target = nxt_same_user.copy()
    if targets == "session":
        has_target[:-1] &= session[1:] == session[:-1]
    src = np.flatnonzero(has_target)  # input event of every step
    s_user, s_sess = user[src], session[src]
    first = np.ones(len(src), bool)
    first[1:] = s_user[1:] != s_user[:-1]
    sess_first = first.copy()
    sess_first[1:] |= s_sess[1:] != s_sess[:-1]
    return dict(src=src, user=s_user, item=item[src], target=item[src + 1],
                user_start=first, session_start=sess_first)


def make_lanes(frame: pl.DataFrame, *, batch_size: int, window: int, targets: str = "session",
               seed: int | None = None, evaluate: np.ndarray | None = None) -> Lanes:
    """Lay the events of ``frame`` (columns user, item, session; sorted by user, time) into lanes.

    seed: users are put in a random order drawn from ``seed`` (reshuffle each epoch by passing a new
      seed); ``None`` keeps user order (evaluation).
    evaluate: optional bool ``[len(frame)]``: the target events whose predictions are scored.
    """
    if batch_size < 1 or window < 1:
        raise ValueError(f"batch_size and window must be >= 1, got {batch_size} and {window}")
    st = _steps(frame, targets)
    n = len(st["src"])
    starts = np.flatnonzero(st["user_start"])
    lengths = np.diff(np.append(starts, n))
    order = np.arange(len(starts))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(starts))
    # Fig. 2: the next user goes to the lane that frees first (ties: lowest lane).
    heap = [(0, lane) for lane in range(batch_size)]
    lane_of = np.empty(len(starts), np.int64)
    offset_of = np.empty(len(starts), np.int64)
    for u in order:
        t, lane = heapq.heappop(heap)
        lane_of[u], offset_of[u] = lane, t
        heapq.heappush(heap, (t + int(lengths[u]), lane))
    total = max(t for t, _ in heap)
    T = max(window, -(-total // window) * window)
    # position of every step in the [B, T] grid
    step_user = np.repeat(np.arange(len(starts)), lengths)
    pos = offset_of[step_user] + (np.arange(n) - starts[step_user])
    lane = lane_of[step_user]

    def grid(values, fill, dtype):
        g = np.full((batch_size, T), fill, dtype)
        g[lane, pos] = values
        return g.reshape(batch_size, T // window, window).transpose(1, 0, 2).copy()

    target_event = st["src"] + 1
    ev = np.zeros(n, bool) if evaluate is None else np.asarray(evaluate, bool)[target_event]
    return Lanes(
        item=grid(st["item"], 0, np.int32),
        target=grid(st["target"], 0, np.int32),
        session_start=grid(st["session_start"], False, bool),
        user_start=grid(st["user_start"], False, bool),
        valid=grid(True, False, bool),
        user=grid(st["user"], 0, np.int32),
        event=grid(target_event, -1, np.int64),
        evaluate=grid(ev, False, bool),
    )
