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
from typing import Callable, Literal

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


@dataclass(frozen=True)
class LaneGroups:
    """Lanes laid out in ``n`` independent groups (``make_lanes(groups=...)``), so that a process
    can build its own lanes from its own users' events (``data.read_share``).

    Group g holds the users with codes ``bounds[g] <= user < bounds[g + 1]`` (``group_bounds``:
    ranges of about equal numbers of events) in lanes ``g * B / n`` to ``(g + 1) * B / n - 1``,
    with its own user order (drawn from ``seed``, and ``g`` for g > 0) and its own cap on closing
    sessions per step (``boundary_slots``, or :func:`auto_slots` of its own events over its
    lanes). Every group's steps then share one time axis (the longest group sets the windows),
    and each step's closing lanes are the union of the groups', ascending (K = the sum of the
    groups' caps). ``n = 1`` is the ungrouped layout.

    mine: the groups laid out from the frame given (all of them, unless the frame is one
    process's share); ``exchange(lists)`` then returns every group's closing lanes from this
    process's (``lists``: group -> ``[T_g, K_g]`` lane ids, -1 padded), e.g. by an all-gather
    over processes.
    """

    n: int
    bounds: np.ndarray
    mine: range
    exchange: Callable | None = None


def group_bounds(user_events: np.ndarray, n: int) -> np.ndarray:
    """User-code bounds ``[n + 1]`` of ``n`` lane groups from the events of each user code
    ``user_events [U]``: contiguous code ranges of about equal numbers of events (group g ends
    at the first code where the cumulative count reaches ``g / n`` of the total)."""
    if n < 1:
        raise ValueError(f"lane groups must be >= 1, got {n}")
    cum = np.cumsum(np.asarray(user_events, np.int64))
    total = int(cum[-1]) if len(cum) else 0
    inner = np.searchsorted(cum, [total * g / n for g in range(1, n)], side="left") + 1
    return np.concatenate([[0], np.minimum(inner, len(cum)), [len(cum)]]).astype(np.int64)


def lane_groups(frame: pl.DataFrame, n: int) -> LaneGroups:
    """The ``n`` lane groups of a whole frame (every group laid out in this process)."""
    users = frame["user"].to_numpy()
    events = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    return LaneGroups(n, group_bounds(events, n), range(n))


def _lay_group(st: dict, starts: np.ndarray, lengths: np.ndarray, lanes: int, slots: int,
               seed: int | None, g: int) -> np.ndarray:
    """Step ids ``[lanes, T_g]`` (-1 none) of the users ``starts``/``lengths`` (their first step
    and number of steps): Fig. 2 (the next user goes to the lane that frees first, ties: lowest
    lane), then at most ``slots`` closing steps per time (:func:`_place`)."""
    order = np.arange(len(starts))
    if seed is not None:
        order = np.random.default_rng(seed if g == 0 else (seed, g)).permutation(len(starts))
    heap = [(0, lane) for lane in range(lanes)]
    users_of = [[] for _ in range(lanes)]
    for u in order:
        t, lane = heapq.heappop(heap)
        users_of[lane].append(starts[u] + np.arange(lengths[u]))
        heapq.heappush(heap, (t + int(lengths[u]), lane))
    seqs = [np.concatenate(us) if us else np.zeros(0, np.int64) for us in users_of]
    return _place(seqs, st["closing"], slots)


def _closing_lists(placed: np.ndarray, closing: np.ndarray, slots: int) -> np.ndarray:
    """The closing lanes of each time of a group's layout ``[T_g, slots]``, ascending, -1
    padded."""
    grid = (placed >= 0) & (closing[np.maximum(placed, 0)] if len(closing) else False)
    out = np.full((placed.shape[1], slots), -1, np.int32)
    t_idx, b_idx = np.nonzero(grid.T)
    rank = np.cumsum(grid, axis=0)[b_idx, t_idx] - 1
    out[t_idx, rank] = b_idx
    return out


def _join_closing(lists: dict, offsets: dict, T: int, B: int) -> np.ndarray:
    """Every group's closing lists (lane ids within the group, -1 padded) as one ``[T, K]``
    array of lane ids, ascending per time, slot j padded with B + j (distinct, past the last
    lane)."""
    K = sum(a.shape[1] for a in lists.values())
    ids = np.full((T, K), -1, np.int64)
    at = 0
    for g, a in sorted(lists.items()):
        ids[:a.shape[0], at:at + a.shape[1]] = np.where(a >= 0, a + offsets[g], -1)
        at += a.shape[1]
    ids = np.sort(np.where(ids >= 0, ids, B + K), axis=1)  # padding after every lane
    return np.where(ids >= B, B + np.arange(K), ids).astype(np.int32)  # slot j pads with B + j


def make_lanes(frame: pl.DataFrame, *, batch_size: int, window: int, targets: Targets,
               close_at: CloseAt,
               seed: int | None = None, evaluate: np.ndarray | None = None,
               boundary_slots: int | None = None, fields: tuple[str, ...] = (),
               groups: int | LaneGroups = 1) -> Lanes:
    """Lay the events of ``frame`` (columns user, item, session; sorted by user, time) into lanes.

    seed: users are put in a random order drawn from ``seed`` (reshuffle each epoch by passing a new
      seed); ``None`` keeps user order (evaluation).
    evaluate: optional bool ``[len(frame)]``: the target events whose predictions are scored.
    boundary_slots: at most this many lanes close a session (a session start that is not a user
      start) at the same step; a lane that would exceed it waits one hold step. Hierarchical models
      run their user-level update on these slots only (``closing``). Default: :func:`auto_slots`.
      With lane groups, the cap of each group.
    fields: optional per-step fields to build (names of ``EXTRA_FIELDS``), in ``Lanes.extras``.
    close_at: ``"input"`` | ``"target"`` | ``"never"``: where ``closing`` lists a session's end
      (module doc).
    groups: lane groups (:class:`LaneGroups`, or their number: :func:`lane_groups` of the frame);
      ``batch_size`` must be a multiple of their number. With a process's share (``groups.mine``
      not every group) the result holds the lanes of its groups only, ``[W, B * len(mine) / n,
      L]``, and ``closing`` every group's.
    """
    if batch_size < 1 or window < 1:
        raise ValueError(f"batch_size and window must be >= 1, got {batch_size} and {window}")
    unknown = sorted(set(fields) - set(EXTRA_FIELDS))
    if unknown:
        raise ValueError(f"unknown per-step field(s) {unknown}; known: {sorted(EXTRA_FIELDS)}")
    groups = lane_groups(frame, groups) if isinstance(groups, int) else groups
    if batch_size % groups.n:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of the lane groups "
                         f"({groups.n})")
    st = _steps(frame, targets, close_at)
    placed, lists = _lay_groups(st, groups, batch_size // groups.n, boundary_slots, seed)
    if groups.exchange is not None:
        lists = groups.exchange(lists)
    T = max([a.shape[0] for a in lists.values()] + [window])
    T = -(-T // window) * window
    B_g = batch_size // groups.n
    closing_ids = _join_closing(lists, {g: g * B_g for g in lists}, T, batch_size)
    grid_ids = np.full((B_g * len(groups.mine), T), -1, np.int64)
    for i, g in enumerate(groups.mine):
        grid_ids[i * B_g:(i + 1) * B_g, :placed[g].shape[1]] = placed[g]
    return _grid_lanes(frame, st, grid_ids, closing_ids, window, evaluate, fields)


def _lay_groups(st: dict, groups: LaneGroups, lanes: int, boundary_slots: int | None,
                seed: int | None) -> tuple[dict, dict]:
    """Each of ``groups.mine``'s layout ``[lanes, T_g]`` and closing lists ``[T_g, K_g]``."""
    n = len(st["src"])
    starts = np.flatnonzero(st["user_start"])
    lengths = np.diff(np.append(starts, n))
    codes = st["user"][starts]
    placed, lists = {}, {}
    for g in groups.mine:
        lo, hi = np.searchsorted(codes, groups.bounds[g:g + 2], side="left")
        end = starts[hi] if hi < len(starts) else n  # a group's steps are contiguous
        own = st["closing"][starts[lo]:end] if hi > lo else np.zeros(0, bool)
        K = boundary_slots or _slots_for(own, lanes)
        if not 1 <= K <= lanes:
            raise ValueError(f"boundary_slots must be in 1..{lanes}, got {K}")
        placed[g] = _lay_group(st, starts[lo:hi], lengths[lo:hi], lanes, K, seed, g)
        lists[g] = _closing_lists(placed[g], st["closing"], K)
    return placed, lists


def _grid_lanes(frame, st, grid_ids, closing_ids, window, evaluate, fields) -> Lanes:
    """The :class:`Lanes` of step ids ``grid_ids [B, T]`` (-1 none) and closing lanes
    ``closing_ids [T, K]``."""
    n = len(st["src"])
    batch_size, T = grid_ids.shape
    K = closing_ids.shape[1]
    real = grid_ids >= 0
    ids = np.maximum(grid_ids, 0)

    def grid(values, fill, dtype):
        if np.ndim(values):  # a frame without steps has nothing to look up: all padding
            values = np.asarray(values)[ids] if n else np.zeros(ids.shape, np.asarray(values).dtype)
        g = np.where(real, values, fill)
        return g.astype(dtype).reshape(batch_size, T // window, window).transpose(1, 0, 2).copy()

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
        closing=closing_ids.reshape(T // window, window, K).copy(),
        extras={name: grid(_extra(frame, name, st["src"]), 0, np.float32) for name in fields},
    )
