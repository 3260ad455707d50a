"""Popularity baselines of Quadrana et al. (2017), section 4.2: POP (the most frequent items of
the training part) and Personal POP (the user's own most frequent items, the global popularity
breaking ties); and what every baseline shares (the training events, the tie-breaker, the
scores' padding column).

Every baseline has the same two calls (``hrnn_jax.baselines.registry``)::

    model = build_baseline("itemknn", config).fit(train, n_items)
    ranks = rank_chunks(lambda idx: model.score(rows, idx), rows)

``fit(train, n_items)``: ``train`` has columns user, item (1..N), time, session (an ``is_test``
column, if present, is used to drop test events). ``score(rows, index)`` returns float32
[len(index), N+1] with column 0 (padding) = -inf.

Tie-breaking. PPOP and Item-KNN add a popularity tie-breaker that never overturns a difference of
the main score: the score is formed in float64 as ``main + tiebreak`` with ``tiebreak`` strictly
smaller than the smallest gap between distinct main scores, then cast to float32. Rounding to
float32 is monotone, so the cast can merge near values into ties but never reverse an order.
DecayItemKNN's tie-breaker is relative to each row instead (see its docstring); MF and sequential
MF have none (continuous scores).
"""
from __future__ import annotations

import numpy as np
import polars as pl

from hrnn_jax.data.rows import EvalRows


def train_events(train: pl.DataFrame, n_items: int) -> pl.DataFrame:
    """Training events only (rows with ``is_test`` dropped if that column exists), items checked."""
    if "is_test" in train.columns:
        train = train.filter(~pl.col("is_test"))
    items = train["item"]
    if len(items) and (items.min() < 1 or items.max() > n_items):
        raise ValueError(f"items must lie in 1..{n_items}")
    return train


def item_counts(train: pl.DataFrame, n_items: int) -> np.ndarray:
    """Number of training events of each item: int64 [N+1] (entry 0 = 0)."""
    return np.bincount(train["item"].to_numpy(), minlength=n_items + 1).astype(np.int64)


def popularity_tiebreak(counts: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """float64 [N+1]: ``scale * counts / (max(counts) + 1)``, in [0, scale), increasing with
    popularity."""
    return scale * counts.astype(np.float64) / (float(counts.max(initial=0)) + 1.0)


def finish_scores(scores: np.ndarray) -> np.ndarray:
    """float32 [r, N+1] with the padding column set to -inf."""
    scores = np.asarray(scores, dtype=np.float32)
    scores[:, 0] = -np.inf
    return scores


class CountBaseline:
    """A baseline whose fit needs only the training events per item: ``fit_counts(counts)``
    with ``counts`` int ``[N+1]`` (0 at padding). It can then be fitted from the per-item table
    of an encoded log, without every user's events in one process (``compare.compare_shares``);
    ``fit(train, n_items)`` is ``fit_counts`` of the frame's counts."""

    def fit(self, train: pl.DataFrame, n_items: int):
        return self.fit_counts(item_counts(train_events(train, n_items), n_items))

    def fit_counts(self, counts: np.ndarray):
        raise NotImplementedError


class Pop(CountBaseline):
    """Global popularity: the score of item j is its number of training events (same for all
    rows)."""

    def fit_counts(self, counts: np.ndarray) -> "Pop":
        self.n_items = len(counts) - 1
        self.counts = np.asarray(counts, dtype=np.int64)                 # [N+1]
        return self

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]."""
        return finish_scores(np.repeat(self.counts[None, :].astype(np.float32), len(index), axis=0))


class PersonalPop(CountBaseline):
    """Personal popularity (PPOP): the item the user interacted with most often.

    The score of item j for a row is the number of the user's events on j before the target event
    (training history + earlier test events), from ``rows.seen(index)`` (derived from the rows'
    histories, ``make_eval_rows``), plus ``global_count(j) / (max_global_count + 1)`` < 1, so global
    popularity only orders items with equal personal counts (items the user never touched included).
    """

    def fit_counts(self, counts: np.ndarray) -> "PersonalPop":
        self.n_items = len(counts) - 1
        self.tiebreak = popularity_tiebreak(np.asarray(counts))  # float64 [N+1], in [0, 1)
        return self

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]."""
        index = np.asarray(index, dtype=np.int64)
        seen, counts = rows.seen(index)  # [r, W], padding: item 0, count 0
        scores = np.repeat(self.tiebreak[None, :].astype(np.float32), len(index), axis=0)
        row, col = np.nonzero(counts)
        items = seen[row, col]
        scores[row, items] = (counts[row, col] + self.tiebreak[items]).astype(np.float32)
        return finish_scores(scores)
