"""Non-neural baselines of Quadrana et al. (2017), section 4.2: Pop, Personal Pop (PPOP), Item-KNN.

Every baseline has the same two calls:

    model = make_baseline("itemknn", neighbours=100).fit(train, n_items)
    ranks = rank_chunks(lambda idx: model.score(rows, idx), rows)

``fit(train, n_items)``: ``train`` has columns user, item (1..N), time, session (an ``is_test``
column, if present, is used to drop test events). ``score(rows, index)`` returns float32
[len(index), N+1] with column 0 (padding) = -inf.

Tie-breaking. PPOP and Item-KNN add a popularity tie-breaker that never overturns a difference of
the main score: the score is formed in float64 as ``main + tiebreak`` with ``tiebreak`` strictly
smaller than the smallest gap between distinct main scores, then cast to float32. Rounding to float32
is monotone, so the cast can merge near values into ties but never reverse an order.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from .evaluation import EvalRows, csr_ranges


def _train_events(train: pl.DataFrame, n_items: int) -> pl.DataFrame:
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
    """float64 [N+1]: ``scale * counts / (max(counts) + 1)``, in [0, scale), increasing with popularity."""
    return scale * counts.astype(np.float64) / (float(counts.max(initial=0)) + 1.0)


def _finish(scores: np.ndarray) -> np.ndarray:
    """float32 [r, N+1] with the padding column set to -inf."""
    scores = np.asarray(scores, dtype=np.float32)
    scores[:, 0] = -np.inf
    return scores


class Pop:
    """Global popularity: the score of item j is its number of training events (same for all rows)."""

    def fit(self, train: pl.DataFrame, n_items: int) -> "Pop":
        train = _train_events(train, n_items)
        self.n_items = n_items
        self.counts = item_counts(train, n_items)                      # [N+1]
        return self

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]."""
        return _finish(np.repeat(self.counts[None, :].astype(np.float32), len(index), axis=0))


class PersonalPop:
    """Personal popularity (PPOP): the item the user interacted with most often.

    The score of item j for a row is the number of the user's events on j before the target event
    (training history + earlier test events), read from ``rows.seen_items`` / ``rows.seen_counts``
    (built by ``make_eval_rows``), plus ``global_count(j) / (max_global_count + 1)`` < 1, so global
    popularity only orders items with equal personal counts (items the user never touched included).
    """

    def fit(self, train: pl.DataFrame, n_items: int) -> "PersonalPop":
        train = _train_events(train, n_items)
        self.n_items = n_items
        self.tiebreak = popularity_tiebreak(item_counts(train, n_items))  # float64 [N+1], in [0, 1)
        return self

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]."""
        if rows.seen_counts is None:
            raise ValueError("PersonalPop needs rows.seen_counts (build rows with make_eval_rows)")
        index = np.asarray(index, dtype=np.int64)
        scores = np.repeat(self.tiebreak[None, :].astype(np.float32), len(index), axis=0)
        starts = rows.seen_ptr[index]
        flat, row = csr_ranges(starts, rows.seen_ptr[index + 1] - starts)
        items = rows.seen_items[flat]
        scores[row, items] = (rows.seen_counts[flat] + self.tiebreak[items]).astype(np.float32)
        return _finish(scores)


class ItemKNN:
    """Item-to-item cosine similarity on session co-occurrence (Quadrana et al. 4.2, GRU4Rec's Item-KNN).

    sim(i, j) = |S_i ∩ S_j| / sqrt(|S_i| |S_j|), S_i = the training sessions containing item i (a
    session counts once per item). Only the ``neighbours`` most similar items of each item are kept
    (ties in similarity broken by smaller item id), stored as ``nbr_item`` int32 [N+1, k] and
    ``nbr_sim`` float64 [N+1, k] (unused slots: item 0, similarity 0).

    The score of candidate j for a row is sim(input item, j) + a popularity tie-breaker below
    min(1e-6, half the smallest gap between distinct kept similarities, 0 included), so it orders only items
    of equal similarity — in practice the non-neighbours. With ``self_similarity=False`` (default,
    as GRU4Rec's baseline) an item is not its own neighbour: the input item is neither boosted nor
    removed, it scores like any non-neighbour (tie-breaker only). ``self_similarity=True`` keeps the
    diagonal (sim(i, i) = 1, so the input item ranks first).

    The co-occurrence is built sparsely by a self-join of the distinct (session, item) pairs on
    session: cost grows with sum over sessions of (distinct items)^2, not with N^2.
    """

    def __init__(self, neighbours: int = 100, self_similarity: bool = False):
        if neighbours < 1:
            raise ValueError("neighbours must be >= 1")
        self.neighbours = int(neighbours)
        self.self_similarity = bool(self_similarity)

    def fit(self, train: pl.DataFrame, n_items: int) -> "ItemKNN":
        train = _train_events(train, n_items)
        self.n_items = n_items
        k = self.neighbours
        pairs = train.select(pl.col("session"), pl.col("item").cast(pl.Int32)).unique()
        support = np.bincount(pairs["item"].to_numpy(), minlength=n_items + 1).astype(np.float64)  # |S_i|
        co = pairs.join(pairs.rename({"item": "other"}), on="session")
        if not self.self_similarity:
            co = co.filter(pl.col("item") != pl.col("other"))
        co = co.group_by("item", "other").agg(pl.len().alias("both"))        # |S_i ∩ S_j|
        i = co["item"].to_numpy()
        j = co["other"].to_numpy()
        # cosine; rounded to 1e-12 so equal similarities computed along different paths are equal
        sim = np.round(co["both"].to_numpy() / np.sqrt(support[i] * support[j]), 12)

        top = (pl.DataFrame({"item": i, "other": j, "sim": sim})
               .sort(["item", "sim", "other"], descending=[False, True, False])
               .with_columns(slot=pl.int_range(pl.len()).over("item"))
               .filter(pl.col("slot") < k))
        self.nbr_item = np.zeros((n_items + 1, k), dtype=np.int32)
        self.nbr_sim = np.zeros((n_items + 1, k), dtype=np.float64)
        ti, ts = top["item"].to_numpy(), top["slot"].to_numpy()
        self.nbr_item[ti, ts] = top["other"].to_numpy()
        self.nbr_sim[ti, ts] = top["sim"].to_numpy()

        values = np.unique(np.concatenate([[0.0], top["sim"].to_numpy()]))
        gap = float(np.diff(values).min()) if values.size > 1 else 1.0
        scale = min(0.5 * gap, 1e-6)      # below every similarity gap, and tiny in absolute terms
        self.tiebreak = popularity_tiebreak(item_counts(train, n_items), scale=scale)  # [N+1]
        return self

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]: sim(rows.item[index], j) + tie-breaker."""
        inputs = rows.item[np.asarray(index, dtype=np.int64)]
        scores = np.repeat(self.tiebreak[None, :].astype(np.float32), len(inputs), axis=0)
        cols = self.nbr_item[inputs]                                          # [r, k]
        vals = self.nbr_sim[inputs] + self.tiebreak[cols]                     # [r, k] float64
        scores[np.arange(len(inputs))[:, None], cols] = vals.astype(np.float32)  # unused slots hit col 0
        return _finish(scores)


BASELINES = {"pop": Pop, "ppop": PersonalPop, "itemknn": ItemKNN}


def make_baseline(name: str, **kw):
    """A baseline by name: "pop", "ppop" or "itemknn" (case-insensitive); ``kw`` go to its constructor."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    return BASELINES[key](**kw)
