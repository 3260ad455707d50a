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

from hrnn_jax import evaluation
from hrnn_jax.batching import make_lanes
from hrnn_jax.models import score_items


@partial(jax.jit, static_argnums=0)
def _forward(model, params, carry, batch):
    return model.apply(params, carry, batch)


@jax.jit
def _scores(params, y):
    return score_items(params, y).at[:, 0].set(-jnp.inf)


@partial(jax.jit, static_argnames=("ties",))
def _ranks(params, y, targets, seen, ties):
    """Scores of every item and the targets' ranks in one jitted call (scores stay inside it)."""
    scores = score_items(params, y)
    exclude = None if seen is None else evaluation.seen_mask(seen, scores.shape[1])
    return evaluation.rank_targets(scores, targets, ties=ties, exclude=exclude)


def states_at(model, params, frame: pl.DataFrame, events: np.ndarray, *, batch_size: int = 50,
              window: int = 20, targets: str = "session") -> np.ndarray:
    """Session-level outputs ``[R, H]`` at the steps whose target events are ``events``.

    ``frame``: events of whole users (sorted by user, time); ``events``: sorted row positions in
    ``frame`` of target events. ``targets`` must be the lane layout the model was trained with, and
    must reach every event (``"user"`` reaches all).
    """
    evaluate = np.zeros(len(frame), bool)
    evaluate[events] = True
    lanes = make_lanes(frame, batch_size=batch_size, window=window, targets=targets,
                       evaluate=evaluate)
    out = np.zeros((len(events), model.hidden), np.float32)
    filled = 0
    carry = model.init_carry(batch_size)
    for batch in lanes:
        carry, y = _forward(model, params, carry, batch)
        sel = batch["evaluate"]
        if sel.any():
            at = np.searchsorted(events, batch["event"][sel])
            out[at] = np.asarray(y)[sel]
            filled += int(sel.sum())
    if filled != len(events):
        raise ValueError(f"the {targets!r} lanes reach {filled} of {len(events)} evaluation rows; "
                         "use targets='user' for rows whose input is in an earlier session")
    return out


def hidden_states(model, params, stream: pl.DataFrame, rows: evaluation.EvalRows, *,
                  batch_size: int = 50, window: int = 20, targets: str = "session") -> np.ndarray:
    """Session-level outputs ``[R, H]`` at the step predicting each row's target.

    ``stream``: train and test events of every user (``hrnn_jax.data.combine``).
    """
    return states_at(model, params, stream, rows.event, batch_size=batch_size, window=window,
                     targets=targets)


def model_ranks(model, params, stream, rows, *, batch_size=50, window=20, targets="session",
                ties="optimistic", exclude_seen=False, chunk=1024) -> np.ndarray:
    """Rank of every row's target among all items (``evaluation.rank_chunks``)."""
    y = jnp.asarray(hidden_states(model, params, stream, rows, batch_size=batch_size,
                                  window=window, targets=targets))
    return evaluation.rank_chunks(
        None, rows, ties=ties, exclude_seen=exclude_seen, chunk=chunk,
        rank_fn=lambda idx, targets, seen: _ranks(params, y[idx], targets, seen, ties))


def evaluate_model(model, params, stream, rows, *, ks=(5, 20), **kw) -> dict[str, float]:
    """Metrics (``evaluation.metrics_from_ranks``) of a trained model on ``rows``."""
    return evaluation.metrics_from_ranks(model_ranks(model, params, stream, rows, **kw), ks)


def recommend(model, params, encoded, sessions, *, k: int = 10, exclude_seen: bool = False,
              targets: str = "session") -> list:
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
    scores = _scores(params, jnp.asarray(y_last))[0]
    if exclude_seen:
        scores = scores.at[jnp.asarray(items)].set(-jnp.inf)
    top = np.asarray(jax.lax.top_k(scores, min(k, model.n_items))[1])
    return list(encoded.decode_items(top))
