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

Per-step fields beyond the contract are built only when asked for (``make_lanes(fields=...)``; a
model lists the fields it reads in ``capabilities.fields``, which ``models.lanes_for`` passes),
so a model that reads none pays nothing:

* ``"gap"`` (float32): seconds from the step's input event to its target event (the frame's
  ``time``), the time-gap control signal of HRNN-meta (Ma & Narayanaswamy). 0 on padding.
* ``"feedback"`` (float32): the input event's ``value`` (a rating, a click/purchase code), known
  when the next event is predicted. 0 on padding.
* ``"rating"`` (float32): the target event's ``value``, the label of a rating-prediction head
  (HRNN-meta's RMSE objective). 0 on padding.
* ``"event_type"`` (float32 holding codes): the input event's ``event_code`` (its type, e.g.
  click/purchase, coded by ``data.encode``), categorical feedback. 0 on padding.

Where the user-level update runs (``closing``, ``close_at``): at the step whose input opens a
session (``"input"``, Quadrana et al.), or at the step whose target opens one (``"target"``: the
boundary is known when the next session's first item is predicted; ``targets="user"`` only), or
nowhere (``"never"``: for models without a user level; no step is ever held, so every step of a
lane is the user's next event).
"""
from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from hrnn_jax import choices

Targets = Literal["session", "user"]
CloseAt = Literal["input", "target", "never"]
FIELDS = ("item", "target", "session_start", "user_start", "valid", "user", "event", "evaluate",
          "closing")
# Optional per-step fields: name -> (the frame column it is read from, its value at the steps whose
# input events are rows ``src`` of that column, the targets being rows ``src + 1``).
EXTRA_FIELDS = {
    "gap": ("time", lambda col, src: col[src + 1] - col[src]),  # seconds, input -> target
    "feedback": ("value", lambda col, src: col[src]),  # the input event's value (e.g. a rating)
    "rating": ("value", lambda col, src: col[src + 1]),  # the target event's value: a label
    "event_type": ("event_code", lambda col, src: col[src]),  # the input event's type code
}


@dataclass(frozen=True)
class Lanes:
    """Windows of user-parallel lanes. Every field is ``[W, B, L]`` (W windows).

    item/target (int32, 0 = padding / no target), session_start/user_start/valid (bool), user
    (int32), event (int64: row of the target event in the source frame, -1 on padding), evaluate
    (bool: the step's prediction is scored by evaluation). ``closing`` is ``[W, L, K]`` int32: the
    lanes that close a session at each step (``close_at="input"``: session_start and not user_start;
    ``"target"``: the target opens the user's next session), in ascending order, padded with the
    distinct values B, B+1, ... (past the last lane: gathers read zeros, scatters skip).
    Steps with ``valid`` False (padding at the end of a lane, or a hold step) leave the state as is.
    ``extras``: the optional per-step fields asked for (``EXTRA_FIELDS``), each ``[W, B, L]``.
    """

    item: np.ndarray
    target: np.ndarray
    session_start: np.ndarray
    user_start: np.ndarray
    valid: np.ndarray
    user: np.ndarray
    event: np.ndarray
    evaluate: np.ndarray
    closing: np.ndarray
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return self.item.shape[0]

    @property
    def n_events(self) -> int:
        """Number of steps with a target (the training events of one pass)."""
        return int((self.target > 0).sum())

    def window(self, w: int) -> dict[str, np.ndarray]:
        """Window ``w`` as a dict of ``[B, L]`` arrays: the batch contract of the models."""
        return {name: a[w] for name, a in self.window_arrays().items()}

    def window_arrays(self) -> dict[str, np.ndarray]:
        """All windows as a dict of ``[W, B, L]`` arrays (the contract's fields and the extras)."""
        return {**{name: getattr(self, name) for name in FIELDS}, **self.extras}

    def __iter__(self):
        return (self.window(w) for w in range(len(self)))


def _steps(frame: pl.DataFrame, targets: Targets, close_at: CloseAt):
    """Step arrays (one entry per step, grouped by user, in time order)."""
    choices.check("targets", targets, Targets)
    choices.check("close_at", close_at, CloseAt)
    if close_at == "target" and targets != "user":
        raise ValueError("close_at='target' closes a session at the step that predicts the next "
                         "session's first item; only targets='user' lanes have such steps")
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
    if close_at == "input":
        closing = sess_first & ~first
    elif close_at == "target":  # the target event opens a session of the same user
        closing = session[src + 1] != s_sess
    else:
        closing = np.zeros(len(src), bool)
    return dict(src=src, user=s_user, item=item[src], target=item[src + 1],
                user_start=first, session_start=sess_first, closing=closing)


def _extra(frame: pl.DataFrame, name: str, src: np.ndarray) -> np.ndarray:
    """Optional per-step field ``name`` for the steps whose input events are ``src``."""
    column, value = EXTRA_FIELDS[name]
    if column not in frame.columns:
        raise ValueError(f"the per-step field {name!r} needs a {column!r} column in the frame "
                         f"(columns: {', '.join(frame.columns)})")
    return value(frame[column].to_numpy().astype(np.float64), src).astype(np.float32)


def auto_slots(frame: pl.DataFrame, batch_size: int, targets: Targets,
               close_at: CloseAt) -> int:
    """A cap on session boundaries per step: 1.2x their mean rate over B lanes, rounded up.

    On the benchmark's log (sessions of 3-12 events, B = 50) a cap of 9 slots placed the steps in
    as many windows as no cap at all; 12 (the former 1.5x + 1) only added user-level work.
    """
    return _slots_for(_steps(frame, targets, close_at)["closing"], batch_size)


def _slots_for(closing: np.ndarray, batch_size: int) -> int:
    """:func:`auto_slots` from the steps' closing flags."""
    rate = int(closing.sum()) / max(len(closing), 1)
    return int(min(batch_size, max(1, np.ceil(1.2 * rate * batch_size))))


def _place(seqs: list[np.ndarray], closing: np.ndarray, slots: int):
    """Step ids per lane and time ``[B, T]`` (-1 = none), at most ``slots`` closing steps per time.

    A lane whose next step would close a session beyond the cap waits one step (a hold step,
    ``valid`` False, which leaves the lane's state unchanged).
    """
    B = len(seqs)
    lens = np.array([len(q) for q in seqs])
    flat = np.full((B, lens.max(initial=0) + 1), -1, np.int64)
    for b, q in enumerate(seqs):
        flat[b, :len(q)] = q
    ptr = np.zeros(B, np.int64)
    cols = []
    lanes = np.arange(B)
    while True:
        nxt = flat[lanes, ptr]
        active = nxt >= 0
        if not active.any():
            break
        closes = active & closing[np.maximum(nxt, 0)]
        hold = closes & (np.cumsum(closes) > slots)
        place = active & ~hold
        cols.append(np.where(place, nxt, -1))
        ptr += place
    return np.stack(cols, axis=1) if cols else np.full((B, 0), -1, np.int64)


def make_lanes(frame: pl.DataFrame, *, batch_size: int, window: int, targets: Targets,
               close_at: CloseAt,
               seed: int | None = None, evaluate: np.ndarray | None = None,
               boundary_slots: int | None = None, fields: tuple[str, ...] = ()) -> Lanes:
    """Lay the events of ``frame`` (columns user, item, session; sorted by user, time) into lanes.

    seed: users are put in a random order drawn from ``seed`` (reshuffle each epoch by passing a new
      seed); ``None`` keeps user order (evaluation).
    evaluate: optional bool ``[len(frame)]``: the target events whose predictions are scored.
    boundary_slots: at most this many lanes close a session (a session start that is not a user
      start) at the same step; a lane that would exceed it waits one hold step. Hierarchical models
      run their user-level update on these slots only (``closing``). Default: :func:`auto_slots`.
    fields: optional per-step fields to build (names of ``EXTRA_FIELDS``), in ``Lanes.extras``.
    close_at: ``"input"`` | ``"target"`` | ``"never"``: where ``closing`` lists a session's end
      (module doc).
    """
    if batch_size < 1 or window < 1:
        raise ValueError(f"batch_size and window must be >= 1, got {batch_size} and {window}")
    unknown = sorted(set(fields) - set(EXTRA_FIELDS))
    if unknown:
        raise ValueError(f"unknown per-step field(s) {unknown}; known: {sorted(EXTRA_FIELDS)}")
    st = _steps(frame, targets, close_at)
    closing = st["closing"]
    K = boundary_slots or _slots_for(closing, batch_size)
    if not 1 <= K <= batch_size:
        raise ValueError(f"boundary_slots must be in 1..{batch_size}, got {K}")
    n = len(st["src"])
    starts = np.flatnonzero(st["user_start"])
    lengths = np.diff(np.append(starts, n))
    order = np.arange(len(starts))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(starts))
    # Fig. 2: the next user goes to the lane that frees first (ties: lowest lane).
    heap = [(0, lane) for lane in range(batch_size)]
    users_of = [[] for _ in range(batch_size)]
    for u in order:
        t, lane = heapq.heappop(heap)
        users_of[lane].append(starts[u] + np.arange(lengths[u]))
        heapq.heappush(heap, (t + int(lengths[u]), lane))
    seqs = [np.concatenate(us) if us else np.zeros(0, np.int64) for us in users_of]
    placed = _place(seqs, closing, K)
    T = max(window, -(-placed.shape[1] // window) * window)
    grid_ids = np.full((batch_size, T), -1, np.int64)
    grid_ids[:, :placed.shape[1]] = placed
    real = grid_ids >= 0
    ids = np.maximum(grid_ids, 0)

    def grid(values, fill, dtype):
        if np.ndim(values):  # a frame without steps has nothing to look up: all padding
            values = np.asarray(values)[ids] if n else np.zeros(ids.shape, np.asarray(values).dtype)
        g = np.where(real, values, fill)
        return g.astype(dtype).reshape(batch_size, T // window, window).transpose(1, 0, 2).copy()

    target_event = st["src"] + 1
    ev = np.zeros(n, bool) if evaluate is None else np.asarray(evaluate, bool)[target_event]
    # closing lanes of every time step, ascending, padded with B, B+1, ... (past the last lane)
    close_grid = real & (closing[ids] if n else False)  # [B, T]
    rank = np.cumsum(close_grid, axis=0) - 1
    slots = np.broadcast_to(batch_size + np.arange(K, dtype=np.int32), (T, K)).copy()
    b_idx, t_idx = np.nonzero(close_grid)
    slots[t_idx, rank[b_idx, t_idx]] = b_idx
    return Lanes(
        item=grid(st["item"], 0, np.int32),
        target=grid(st["target"], 0, np.int32),
        session_start=grid(st["session_start"], False, bool),
        user_start=grid(st["user_start"], False, bool),
        valid=grid(True, False, bool),
        user=grid(st["user"], 0, np.int32),
        event=grid(target_event, -1, np.int64),
        evaluate=grid(ev, False, bool),
        closing=slots.reshape(T // window, window, K).copy(),
        extras={name: grid(_extra(frame, name, st["src"]), 0, np.float32) for name in fields},
    )
