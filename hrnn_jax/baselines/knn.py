"""Item-KNN (Quadrana et al. 2017, section 4.2: session co-occurrence, cosine similarity, the
``neighbours`` most similar items of the last item) and the time-decayed Item-KNN of Donkers et
al. (2017), section 4 (every item of the user's history, weighted by its age). The calls and the
tie-breaker are ``hrnn_jax.baselines.popularity``'s.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from hrnn_jax.baselines.popularity import (
    finish_scores,
    item_counts,
    popularity_tiebreak,
    train_events,
)
from hrnn_jax.config import ModelConfig, default
from hrnn_jax.data.rows import EvalRows


class ItemKNN:
    """Item-to-item cosine similarity on session co-occurrence (Quadrana et al. 4.2, GRU4Rec's
    Item-KNN).

    sim(i, j) = |S_i ∩ S_j| / sqrt(|S_i| |S_j|), S_i = the training sessions containing item i (a
    session counts once per item). Only the ``neighbours`` most similar items of each item are kept
    (ties in similarity broken by smaller item id), stored as ``nbr_item`` int32 [N+1, k] and
    ``nbr_sim`` float64 [N+1, k] (unused slots: item 0, similarity 0).

    The score of candidate j for a row is sim(input item, j) + a popularity tie-breaker below
    min(1e-6, half the smallest gap between distinct kept similarities, 0 included), so it orders
    only items of equal similarity — in practice the non-neighbours. With ``self_similarity=False``
    (default, as GRU4Rec's baseline) an item is not its own neighbour: the input item is neither
    boosted nor removed, it scores like any non-neighbour (tie-breaker only).
    ``self_similarity=True`` keeps the diagonal (sim(i, i) = 1, so the input item ranks first).

    Co-occurrence window: the training session. Two items co-occur when both occur in one
    training session, however far apart and in either order; a session counts once per pair.
    Sessions are the pipeline's (``data.sessionize``): a user's events cut where the idle time
    exceeds ``DataConfig.session_gap``, 1800 s (30 minutes) by default, whatever the log. So on a
    log without sessions (MovieLens ratings) the window is a burst of events with no gap over 30
    minutes. Donkers et al. (2017) give no window: they describe their Item-KNN as the
    unpersonalised item-based k-NN of Hidasi et al. ("Session-based Recommendations with
    Recurrent Neural Networks", ICLR 2016), whose similarity counts co-occurrence in sessions,
    with each prediction depending on the last item only (as :meth:`score` here), 100 neighbours;
    how their session-less logs were cut into sessions is not said.

    The co-occurrence is built sparsely by a self-join of the distinct (session, item) pairs on
    session: cost grows with sum over sessions of (distinct items)^2, not with N^2.
    """

    def __init__(self, neighbours: int = default(ModelConfig, "neighbours"),
                 self_similarity: bool = False):
        if neighbours < 1:
            raise ValueError("neighbours must be >= 1")
        self.neighbours = int(neighbours)
        self.self_similarity = bool(self_similarity)

    def fit(self, train: pl.DataFrame, n_items: int) -> "ItemKNN":
        train = train_events(train, n_items)
        self.n_items = n_items
        k = self.neighbours
        pairs = train.select(pl.col("session"), pl.col("item").cast(pl.Int32)).unique()
        # |S_i|
        support = np.bincount(pairs["item"].to_numpy(), minlength=n_items + 1).astype(np.float64)
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
        # unused slots hit col 0
        scores[np.arange(len(inputs))[:, None], cols] = vals.astype(np.float32)
        return finish_scores(scores)


DAY = 86400.0   # seconds per day: the unit of DecayItemKNN's decay rate


def _row_blocks(cost: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Contiguous row blocks ``[a, b)`` whose summed ``cost`` stays about ``budget`` (at most
    ``budget`` + the cost of one row; a row dearer than ``budget`` is a block of its own), found
    without a per-row loop."""
    if len(cost) == 0:
        return []
    before = np.cumsum(cost) - cost
    block = before // max(int(budget), 1)
    cuts = np.flatnonzero(np.diff(block)) + 1
    edges = np.concatenate([[0], cuts, [len(cost)]]).astype(np.int64)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


class DecayItemKNN(ItemKNN):
    """Time-decayed Item-KNN (Ding & Li 2005, "time weight collaborative filtering", as the
    exponentially decaying item-based k-NN baseline of Donkers et al. 2017, Table 1: decay 1).

    The neighbourhoods are :class:`ItemKNN`'s (its ``fit``: session co-occurrence cosine, the
    ``neighbours`` most similar items of each item). The score of candidate j for a row is

        sum over the row's history h of  exp(-decay * age_days(h)) * sim(item_h, j)

    where the history is every event of the user before the target (training events and earlier
    test events, ``EvalRows.history``), each event counting on its own (an item seen three times
    contributes three decayed terms), and ``age_days(h) = (time of the target - time of h) /
    86400``: ``decay`` is a rate PER DAY for logs whose time is in seconds (an event one day
    before the target weighs exp(-decay)); ``decay=0`` gives the plain, unweighted sum of the
    similarities over the history. An age below zero (an event stamped after the target, only
    possible in hand-made streams) counts as 0.

    Tie-breaking: there is no clean gap between sums of decayed similarities, so the popularity
    tie-breaker is relative to each row: ``popularity(j) / (max + 1) * 1e-9 * m_r`` with ``m_r``
    the row's smallest positive decayed score (1 if none), added in float64 before the cast to
    float32. It is below every positive score of the row, so it orders the items of score 0 (the
    non-neighbours of the whole history) by popularity and can only reorder two positive scores
    that differ by less than 1e-9 of the row's smallest, far below float32's resolution.

    Scoring is vectorised per chunk: the decayed weights of each (row, history item) pair are
    summed first (repeats of an item add up), then expanded to the item's ``neighbours`` and
    accumulated with ``np.bincount``; the chunk's rows are processed in blocks that keep the
    (pair, neighbour) arrays and the block's dense output near ``max_pairs`` entries.
    """

    def __init__(self, neighbours: int = default(ModelConfig, "neighbours"),
                 decay: float = default(ModelConfig, "decay"), self_similarity: bool = False,
                 max_pairs: int = 1 << 22):
        super().__init__(neighbours, self_similarity)
        if not decay >= 0:
            raise ValueError("decay must be >= 0")
        self.decay = float(decay)
        self.max_pairs = int(max_pairs)

    def fit(self, train: pl.DataFrame, n_items: int) -> "DecayItemKNN":
        super().fit(train, n_items)
        # popularity in [0, 1), scaled per row at scoring time (replaces ItemKNN's global scale)
        self.popularity = popularity_tiebreak(item_counts(train_events(train, n_items), n_items))
        return self

    def history_weights(self, rows: EvalRows, index: np.ndarray):
        """The rows' history events: ``(row [n], item [n], weight [n] float64)``, ``row`` the
        position in ``index`` and ``weight = exp(-decay * age in days)``."""
        if rows.stream_time is None:
            raise ValueError("DecayItemKNN needs the rows' history "
                             "(build them with make_eval_rows)")
        index = np.asarray(index, dtype=np.int64)
        flat, row = rows.history(index)
        target_time = rows.stream_time[rows.event[index]]
        age = np.maximum(target_time[row] - rows.stream_time[flat], 0.0) / DAY
        return row, rows.stream_item[flat].astype(np.int64), np.exp(-self.decay * age)

    def _blocks(self, rows: EvalRows, index: np.ndarray):
        """Yield ``(a, b, scores float64 [b - a, N+1])``: the decayed scores (no tie-breaker) of
        rows ``index[a:b]``."""
        n1 = self.n_items + 1
        r = len(index)
        row, item, w = self.history_weights(rows, index)
        # one weight per distinct (row, history item): repeats add up
        keys, inverse = np.unique(row * n1 + item, return_inverse=True)
        pair_w = np.bincount(inverse.reshape(-1), weights=w, minlength=len(keys))
        pair_row, pair_item = keys // n1, keys % n1                    # sorted by row
        ptr = np.searchsorted(pair_row, np.arange(r + 1))
        cost = np.diff(ptr) * self.neighbours + n1                      # pair entries + output
        for a, b in _row_blocks(cost, self.max_pairs):
            p = slice(ptr[a], ptr[b])
            cols = self.nbr_item[pair_item[p]]                          # [m, k]; unused slots: 0
            vals = pair_w[p, None] * self.nbr_sim[pair_item[p]]         # [m, k]
            flat_keys = (pair_row[p, None] - a) * n1 + cols
            out = np.bincount(flat_keys.reshape(-1), weights=vals.reshape(-1),
                              minlength=(b - a) * n1).reshape(b - a, n1)
            out[:, 0] = 0.0                                             # padding column
            yield a, b, out

    def decayed_scores(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float64 [len(index), N+1]: the decayed sums without the tie-breaker (column 0 = 0)."""
        index = np.asarray(index, dtype=np.int64)
        out = np.zeros((len(index), self.n_items + 1))
        for a, b, block in self._blocks(rows, index):
            out[a:b] = block
        return out

    def tiebreak_scale(self, decayed: np.ndarray) -> np.ndarray:
        """float64 [r]: 1e-9 x the smallest positive score of each row (1e-9 if none)."""
        positive = np.where(decayed > 0, decayed, np.inf).min(axis=1)
        return 1e-9 * np.where(np.isfinite(positive), positive, 1.0)

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]: decayed sum + the row-relative popularity tie-breaker."""
        index = np.asarray(index, dtype=np.int64)
        scores = np.empty((len(index), self.n_items + 1), dtype=np.float32)
        for a, b, block in self._blocks(rows, index):
            scale = self.tiebreak_scale(block)
            scores[a:b] = block + scale[:, None] * self.popularity[None, :]
        return finish_scores(scores)
