"""Running a trained model over whole user histories: evaluation and ``recommend``.

Evaluation streams each user's training history first (bootstrapping the session and user states,
Quadrana et al. Sec. 4.3) and then its test events, in the same user-parallel lanes as training;
only the steps whose target is an evaluation row are scored. States depend only on a user's own
events, so the figures do not depend on the number of lanes or the window length (tested).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from hrnn_jax import cells, evaluation, parallel
from hrnn_jax.config import TrainConfig
from hrnn_jax.data.lanes import Targets
from hrnn_jax.data.rows import EvalRows
from hrnn_jax.evaluation import on_mesh
from hrnn_jax.models.contract import Model, field_columns, lane_targets, lanes_for
from hrnn_jax.models.layers import score_items

# Evaluation runs forward only, and its results depend neither on the lanes nor on the window
# (tested): these are the defaults of every function here (long windows: few dispatches).
LANES = TrainConfig.batch_size
EVAL_WINDOW = 20


@partial(jax.jit, static_argnums=0)
def forward(model, params, carry, batch):
    """``(carry, y)`` of one window at evaluation (the model's extra loss terms dropped)."""
    return model.apply(params, carry, batch)[:2]


@jax.jit
def _scores(params, y):
    return score_items(params, y).at[:, 0].set(-jnp.inf)


def _row_scorer(params, y):
    """``score_rows(ids)``: ``score_items`` of ``y`` on the rows ``ids`` of the scoring tables
    (the blocked ranking and log-softmax of ``evaluation.metrics``)."""
    def score_rows(ids):
        return score_items({"item_out": jnp.take(params["item_out"], ids, axis=0),
                            "item_bias": jnp.take(params["item_bias"], ids, axis=0)}, y)
    return score_rows


@partial(jax.jit, static_argnames=("ties", "item_block"))
def rank_scores(params, y, targets, seen, ties, outside=None,
                item_block=evaluation.metrics.ITEM_BLOCK):
    """The targets' ranks among every item's scores, in one jitted call (scores stay inside it).
    ``outside``: optional bool ``[N+1]``, items that never count (those not among the
    candidates of ``evaluation.rank_chunks``).

    A catalogue of at most ``item_block`` columns is scored at once and ranked by
    ``evaluation.rank_targets``; a larger one block by block (``evaluation.rank_in_blocks``:
    ``[r, item_block]`` scores at a time, the table read in place, each block's rows sliced)."""
    n_cols = params["item_out"].shape[0]
    if n_cols <= item_block:
        scores = score_items(params, y)
        exclude = None if seen is None else evaluation.seen_mask(seen, n_cols)
        return evaluation.rank_targets(scores, targets, ties=ties,
                                       exclude=evaluation.with_outside(exclude, outside))

    return evaluation.metrics.rank_in_blocks(_row_scorer(params, y), targets, n_cols, ties=ties,
                                             seen=seen, outside=outside, block=item_block)


@partial(jax.jit, static_argnames=("item_block",))
def _target_log_probs(params, y, targets, item_block=16384):
    """log softmax over items 1..N (column 0, padding, left out) at each row's target; a
    catalogue of more than ``item_block`` columns by blocks of items (its scratch memory
    ``[r, item_block]``, ``evaluation.metrics.target_log_softmax_in_blocks``)."""
    n_cols = params["item_out"].shape[0]
    if n_cols <= item_block:
        logp = jax.nn.log_softmax(score_items(params, y)[:, 1:], axis=-1)
        return jnp.take_along_axis(logp, targets[:, None] - 1, axis=1)[:, 0]

    return evaluation.metrics.target_log_softmax_in_blocks(_row_scorer(params, y), targets, n_cols,
                                                           block=item_block)


def target_log_probs(model: Model, params, frame: pl.DataFrame, events: np.ndarray, *,
                     batch_size: int = LANES, window: int = EVAL_WINDOW,
                     targets: Targets | None = None, chunk: int = 4096) -> np.ndarray:
    """Natural log of the model's full-softmax probability of each target event ``[R]`` (for
    ``evaluation.perplexity``); ``frame``, ``events`` and ``targets`` as :func:`states_at`."""
    y = states_at(model, params, frame, events, batch_size=batch_size, window=window,
                  targets=targets)
    items = frame["item"].to_numpy()[events].astype(np.int32)
    p_s = model.scoring_params(params)
    return np.concatenate([np.asarray(_target_log_probs(p_s, jnp.asarray(y[i:i + chunk]),
                                                        jnp.asarray(items[i:i + chunk])))
                           for i in range(0, len(events), chunk)] or [np.zeros(0, np.float32)])


def target_ratings(model: Model, params, frame: pl.DataFrame, events: np.ndarray, *,
                   batch_size: int = LANES, window: int = EVAL_WINDOW,
                   targets: Targets | None = None) -> np.ndarray:
    """The model's rating predictions for target events ``[R]`` (for ``evaluation.rmse``), from
    its rating head (``model.predict_ratings(params, y, items)``, e.g. ``meta.HRNNMeta`` with
    ``rating_weight > 0``); ``frame``, ``events`` and ``targets`` as :func:`states_at`. The
    frame's ``value`` column holds the ratings: a model fed its feedback reads those before each
    prediction, never the predicted event's own."""
    if not model.capabilities.rating_head:
        raise ValueError(f"{type(model).__name__} has no rating head (HRNNMeta: rating_weight > 0)")
    y = states_at(model, params, frame, events, batch_size=batch_size, window=window,
                  targets=targets)
    items = frame["item"].to_numpy()[events].astype(np.int32)
    return np.asarray(_ratings(model, params, jnp.asarray(y), jnp.asarray(items)))


@partial(jax.jit, static_argnums=0)
def _ratings(model, params, y, items):
    return model.predict_ratings(params, y, items)


def states_at(model: Model, params, frame: pl.DataFrame, events: np.ndarray, *,
              batch_size: int = LANES, window: int = EVAL_WINDOW,
              targets: Targets | None = None, mesh=None) -> np.ndarray:
    """Session-level outputs ``[R, H]`` at the steps whose target events are ``events``.

    ``frame``: events of whole users (sorted by user, time); ``events``: sorted row positions in
    ``frame`` of target events. ``targets`` must be the lane layout the model was trained with, and
    must reach every event (``"user"`` reaches all). ``mesh``: run the lanes on this device
    mesh (``hrnn_jax.parallel.make_mesh``; ``evaluation.on_mesh``).
    """
    evaluate = np.zeros(len(frame), bool)
    evaluate[events] = True
    targets = targets or lane_targets(model)
    lanes = lanes_for(model, frame, batch_size=batch_size, window=window, targets=targets,
                      evaluate=evaluate)
    out = np.zeros((len(events), model.output_width), np.float32)
    filled = 0
    mesh = parallel.make_mesh(mesh)
    carry = model.init_carry(batch_size) if mesh is None else None
    on = None if mesh is None else on_mesh.Forward(mesh, model, params, batch_size)
    for batch in lanes:
        if on is None:
            carry, y = forward(model, params, carry, batch)
        else:
            y = on(batch)
        sel = batch["evaluate"]
        if sel.any():
            at = np.searchsorted(events, batch["event"][sel])
            out[at] = np.asarray(y)[sel]
            filled += int(sel.sum())
    if filled != len(events):
        raise ValueError(f"the {targets!r} lanes reach {filled} of {len(events)} evaluation rows; "
                         "use targets='user' for rows whose input is in an earlier session")
    return out


_STEP_FIELDS = ("item", "target", "session_start", "user_start", "valid", "user", "evaluate")


@partial(jax.jit, static_argnums=(0, 1), donate_argnums=(3, 4))
def _final_window(model, after, params, carry, store, batch):
    """One window of lanes, one step at a time; at each user's last step (``evaluate``) its row of
    ``store`` gets the carry (before that step, or ``after`` it) and the step's output. Rows are
    written by a scatter with distinct indices (exact); other lanes write past the last row."""
    U, B = store["output"].shape[0], batch["item"].shape[0]
    steps = {k: jnp.swapaxes(batch[k], 0, 1)[:, :, None]  # [L, B, 1]
             for k in (*_STEP_FIELDS, *model.capabilities.fields)}
    steps["closing"] = batch["closing"][:, None, :]  # [L, 1, K]

    def body(state, step):
        carry, store = state
        new_user = step["user_start"][:, 0]
        at = jnp.where(step["evaluate"][:, 0], step["user"][:, 0], U + jnp.arange(B))

        def put(rows, values):
            return rows.at[at].set(values, mode="drop", unique_indices=True)

        store = dict(store)
        if not after:  # a user without earlier steps has no state yet: zeros, marked fresh
            kept = cells.select(new_user, model.init_carry(B), carry)
            store["carry"] = jax.tree_util.tree_map(put, store["carry"], kept)
            store["fresh"] = put(store["fresh"], new_user)
        carry, y, _ = model.apply(params, carry, step)
        if after:
            store["carry"] = jax.tree_util.tree_map(put, store["carry"], carry)
            store["fresh"] = put(store["fresh"], jnp.zeros_like(new_user))
        store["output"] = put(store["output"], y[:, 0])
        return (carry, store), None

    (carry, store), _ = jax.lax.scan(body, (carry, store), steps)
    return carry, store


def final_states(model: Model, params, frame: pl.DataFrame, *, n_users: int | None = None,
                 batch_size: int = LANES, window: int = EVAL_WINDOW,
                 targets: Targets | None = None) -> dict:
    """Every user's state at the end of its events in ``frame``: what ``recommend`` continues from.

    Each user's events are streamed in user-parallel lanes (as :func:`states_at`), with a
    placeholder event after the user's last one so that the last event is an input step (as
    :func:`recommend` does for one history).

    Args:
      frame: encoded events of whole users (columns user, item, session; sorted by user, time),
        e.g. the training part.
      n_users: rows of the result (user codes 0..n_users-1; default: the largest code + 1).
      targets: the lane layout the model was trained with (``models.lane_targets``).

    Returns:
      ``{"output": [U, H], "carry": the model's carry with U rows, "fresh": bool [U]}``:
      ``output`` is the session-level output after the user's last event (its scores are the next
      items). ``carry`` is the state the user's next session continues from: with ``"session"``
      targets the state after the user's last training step (the last event of a session being a
      target only), so that a new session closes the last one with Eq. 3 and starts from Eq. 4 as
      in evaluation; with ``"user"`` targets the state after the last event. ``fresh``: the user
      has no such step (e.g. only one-event sessions under ``"session"`` targets): a new session
      starts as a new user's, and ``carry`` is zeros. Users without events: zeros, fresh.
    """
    # the columns of the model's per-step fields too (HRNN-meta: time); the placeholder copies
    # the last event's, so its gap is 0 s: the output is for an event right after the last one
    cols = frame.select("user", "item", "session", *field_columns(model))
    ends = (cols.group_by("user", maintain_order=True).last()
            .with_columns(pl.lit(1, cols.schema["item"]).alias("item")))
    padded = (pl.concat([cols.with_columns(_end=pl.lit(False)),
                         ends.with_columns(_end=pl.lit(True))])
              .sort(["user", "_end"], maintain_order=True))
    U = int(cols["user"].max()) + 1 if n_users is None else n_users
    targets = targets or lane_targets(model)
    lanes = lanes_for(model, padded, batch_size=batch_size, window=window, targets=targets,
                      evaluate=padded["_end"].to_numpy())
    store = {"carry": model.init_carry(U),
             "output": jnp.zeros((U, model.output_width), jnp.float32),
             "fresh": jnp.ones((U,), bool)}
    carry = model.init_carry(batch_size)
    for batch in lanes:
        carry, store = _final_window(model, targets == "user", params, carry, store, batch)
    return jax.tree_util.tree_map(np.asarray, store)


def hidden_states(model: Model, params, stream: pl.DataFrame, rows: EvalRows, *,
                  batch_size: int = LANES, window: int = EVAL_WINDOW,
                  targets: Targets | None = None, mesh=None) -> np.ndarray:
    """Session-level outputs ``[R, H]`` at the step predicting each row's target.

    ``stream``: train and test events of every user (``hrnn_jax.data.combine``).
    """
    return states_at(model, params, stream, rows.event, batch_size=batch_size, window=window,
                     targets=targets, mesh=mesh)


def model_ranks(model: Model, params, stream, rows, *, batch_size=LANES, window=EVAL_WINDOW,
                targets=None, ties="optimistic", exclude_seen=False, chunk=1024,
                progress=None, candidates=None, mesh=None) -> np.ndarray:
    """Rank of every row's target among all items (``evaluation.rank_chunks``, which reports
    each chunk to ``progress``), or among ``candidates`` (bool ``[N+1]``, e.g.
    ``evaluation.top_items``: a target outside them is ranked against them). ``mesh``: on this
    device mesh (``evaluation.on_mesh``: lanes over ``data``, the catalogue over ``items``, the
    same ranks)."""
    outside = None
    if candidates is not None:
        mask = evaluation.check_candidates(candidates)
        if mask.size != model.n_items + 1:
            raise ValueError(f"candidates cover {mask.size - 1} items, the model {model.n_items}")
        outside = jnp.asarray(~mask)
    mesh = parallel.make_mesh(mesh)
    y = hidden_states(model, params, stream, rows, batch_size=batch_size, window=window,
                      targets=targets, mesh=mesh)
    if mesh is not None:
        return evaluation.rank_chunks(
            None, rows, ties=ties, exclude_seen=exclude_seen, chunk=chunk, progress=progress,
            rank_fn=on_mesh.rank_fn(mesh, model, params, y, ties=ties, outside=outside))
    y = jnp.asarray(y)
    p_s = model.scoring_params(params)
    return evaluation.rank_chunks(
        None, rows, ties=ties, exclude_seen=exclude_seen, chunk=chunk, progress=progress,
        rank_fn=lambda idx, targets, seen: rank_scores(p_s, y[idx], targets, seen, ties,
                                                       outside))


def evaluate_model(model: Model, params, stream, rows, *, ks=(5, 20), **kw) -> dict[str, float]:
    """Metrics (``evaluation.metrics_from_ranks``) of a trained model on ``rows``."""
    return evaluation.metrics_from_ranks(model_ranks(model, params, stream, rows, **kw), ks)


def recommend(model: Model, params, encoded, sessions, *, k: int = 10, exclude_seen: bool = False,
              targets: Targets | None = None) -> list:
    """Top-``k`` raw item ids after a user's history, the call made after training.

    sessions: the user's sessions in time order, each a list of raw item ids; the last one is the
      session in progress (the recommendation follows its last item). Unknown ids raise DataError.
    exclude_seen: leave out every item of ``sessions``.
    encoded: the ``hrnn_jax.data.Encoded`` the model was trained on (for the id maps).
    """
    if not sessions or not sessions[-1]:
        raise ValueError("recommend needs at least one non-empty session")
    items, session = [], []
    for s, raw in enumerate(sessions):
        codes = encoded.encode_items(list(raw))
        items.extend(int(c) for c in codes)
        session.extend([s] * len(codes))
    # A placeholder event closes the last session so that its last item is an input step.
    frame = pl.DataFrame({"user": [0] * (len(items) + 1), "item": items + [1],
                          "session": session + [session[-1]]})
    y_last = states_at(model, params, frame, np.array([len(items)]), batch_size=1,
                       window=max(1, len(items)), targets=targets)
    scores = _scores(model.scoring_params(params), jnp.asarray(y_last))[0]
    if exclude_seen:
        scores = scores.at[jnp.asarray(items)].set(-jnp.inf)
    top = np.asarray(jax.lax.top_k(scores, min(k, model.n_items))[1])
    return list(encoded.decode_items(top))


def recommend_by_gap(model: Model, params, history: pl.DataFrame, gaps, *, k: int = 10,
                     exclude_seen: bool = False, window: int = EVAL_WINDOW) -> np.ndarray:
    """Inference-time control (Ma & Narayanaswamy, Table 5): a user's top-``k`` item codes for
    each assumed time since the last event, ``[len(gaps), k]`` (``history``, ``gaps`` and
    ``window`` as :func:`states_by_gap`; ``exclude_seen`` leaves out the history's items)."""
    y = states_by_gap(model, params, history, gaps, window=window)
    scores = _scores(model.scoring_params(params), jnp.asarray(y))
    if exclude_seen:
        scores = scores.at[:, jnp.asarray(history["item"].to_numpy())].set(-jnp.inf)
    return np.asarray(jax.lax.top_k(scores, min(k, model.n_items))[1])


def states_by_gap(model: Model, params, history: pl.DataFrame, gaps, *,
                  window: int = EVAL_WINDOW) -> np.ndarray:
    """The outputs ``[len(gaps), H]`` after a user's history for each assumed time since its last
    event (what :func:`recommend_by_gap` ranks).

    history: the user's encoded events in time order (columns item, time, session, and the
      columns of the other fields the model reads, e.g. value), the last one being the input of
      the prediction. gaps: seconds from the last event to the predicted one.

    The gap reaches the model through the lanes' ``"gap"`` field (a model that reads it, e.g.
    ``meta.HRNNMeta``); session ids are kept, so a model that switches states at session ends
    sees no difference. Every gap is run in one pass (one copy of the history per gap).
    """
    gaps = np.atleast_1d(np.asarray(gaps, np.float64))
    if history.height == 0:
        raise ValueError("recommend_by_gap needs a history of at least one event")
    if gaps.size == 0 or np.any(~np.isfinite(gaps)) or np.any(gaps < 0):
        raise ValueError(f"gaps must be finite and >= 0 seconds, got {gaps.tolist()}")
    read = [c for c in field_columns(model) if c != "time"]
    hist = history.select("item", "time", "session", *read)  # and e.g. the values (feedback)
    last = hist.tail(1)
    frames = [pl.concat([hist, last.with_columns(pl.col("time") + g)]).with_columns(
        user=pl.lit(j, pl.Int32)) for j, g in enumerate(gaps)]
    frame = pl.concat(frames).select("user", "item", "time", "session", *read)
    events = np.arange(1, len(gaps) + 1) * (hist.height + 1) - 1  # each copy's placeholder
    return states_at(model, params, frame, events, batch_size=len(gaps), window=window,
                     targets="user")
