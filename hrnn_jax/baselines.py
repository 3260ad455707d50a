"""Non-neural baselines of Quadrana et al. (2017), section 4.2: Pop, Personal Pop (PPOP), Item-KNN;
and of Donkers et al. (2017), section 4: time-decayed Item-KNN, BPR-MF, sequential MF.

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
DecayItemKNN's tie-breaker is relative to each row instead (see its docstring); MF and sequential
MF have none (continuous scores).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from .evaluation import EvalRows


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
    (training history + earlier test events), from ``rows.seen(index)`` (derived from the rows'
    histories, ``make_eval_rows``), plus ``global_count(j) / (max_global_count + 1)`` < 1, so global
    popularity only orders items with equal personal counts (items the user never touched included).
    """

    def fit(self, train: pl.DataFrame, n_items: int) -> "PersonalPop":
        train = _train_events(train, n_items)
        self.n_items = n_items
        self.tiebreak = popularity_tiebreak(item_counts(train, n_items))  # float64 [N+1], in [0, 1)
        return self

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]."""
        index = np.asarray(index, dtype=np.int64)
        seen, counts = rows.seen(index)  # [r, W], padding: item 0, count 0
        scores = np.repeat(self.tiebreak[None, :].astype(np.float32), len(index), axis=0)
        row, col = np.nonzero(counts)
        items = seen[row, col]
        scores[row, items] = (counts[row, col] + self.tiebreak[items]).astype(np.float32)
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

    def __init__(self, neighbours: int = 100, decay: float = 1.0, self_similarity: bool = False,
                 max_pairs: int = 1 << 22):
        super().__init__(neighbours, self_similarity)
        if not decay >= 0:
            raise ValueError("decay must be >= 0")
        self.decay = float(decay)
        self.max_pairs = int(max_pairs)

    def fit(self, train: pl.DataFrame, n_items: int) -> "DecayItemKNN":
        super().fit(train, n_items)
        # popularity in [0, 1), scaled per row at scoring time (replaces ItemKNN's global scale)
        self.popularity = popularity_tiebreak(item_counts(_train_events(train, n_items), n_items))
        return self

    def history_weights(self, rows: EvalRows, index: np.ndarray):
        """The rows' history events: ``(row [n], item [n], weight [n] float64)``, ``row`` the
        position in ``index`` and ``weight = exp(-decay * age in days)``."""
        if rows.stream_time is None:
            raise ValueError("DecayItemKNN needs the rows' history (build them with make_eval_rows)")
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
        return _finish(scores)


# --------------------------------------------------------------------------------------------
# BPR matrix factorisation (MF) and sequential MF (FPMC-style)
# --------------------------------------------------------------------------------------------
def bpr_initial(seed: int, n_users: int, n_items: int, factors: int, window: int = 0,
                scale: float = 0.1) -> dict:
    """The initial parameters of :func:`bpr_fit` (float32, numpy): factors ~ N(0, scale^2),
    biases 0. ``user`` [U, F] and ``item`` [N+1, F] (the MF term <user_u, item_j>), ``bias``
    [N+1]; with ``window`` > 0 also ``seq_item`` [N+1, F] (the candidate's factor in the
    sequential term) and ``seq_prev`` [N+1, F] (the previous item's). Row 0 is the padding item.
    NumPy's generator seeded with ``(seed, 0)`` (host-side random numbers compile nothing)."""
    rng = np.random.default_rng([seed, 0])
    normal = lambda n: (scale * rng.standard_normal((n, factors))).astype(np.float32)
    params = {"user": normal(n_users), "item": normal(n_items + 1),
              "bias": np.zeros(n_items + 1, np.float32)}
    if window > 0:
        params["seq_item"] = normal(n_items + 1)
        params["seq_prev"] = normal(n_items + 1)
    return params


def _bpr_x(g, j: str, prev_mask):
    """x_uj of gathered rows ``g`` for candidate side ``j`` ("i" or "j"): [B]."""
    x = jnp.sum(g["user"] * g["item_" + j], axis=-1) + g["bias_" + j]
    if "seq_prev" in g:
        n = jnp.maximum(prev_mask.sum(-1), 1.0)                                 # w' (>= 1)
        mean_prev = jnp.sum(g["seq_prev"] * prev_mask[..., None], axis=1) / n[:, None]
        x = x + jnp.sum(g["seq_item_" + j] * mean_prev, axis=-1)
    return x


def _bpr_batch_loss(g, ok, prev_mask, reg):
    """Summed BPR loss of a mini-batch over gathered rows ``g``: -ln sigma(x_ui - x_uj) + reg/2
    x (squared norms of every row the example touches), padding examples (``ok`` 0) excluded."""
    d = _bpr_x(g, "i", prev_mask) - _bpr_x(g, "j", prev_mask)
    sq = sum(jnp.sum(jnp.square(v).reshape(v.shape[0], -1), axis=1)
             for k, v in g.items() if k != "seq_prev")
    if "seq_prev" in g:
        sq = sq + jnp.sum(jnp.square(g["seq_prev"]) * prev_mask[..., None], axis=(1, 2))
    return jnp.sum(ok * (jax.nn.softplus(-d) + 0.5 * reg * sq)), jnp.sum(ok * jax.nn.softplus(-d))


def _bpr_step(params, batch, lr, reg):
    """One synchronous SGD step on a mini-batch of triples: the per-example gradients (each
    example's gradient touches only its own rows) are summed, so ``lr`` is per-example SGD's."""
    u, i, j, prev, ok = batch
    g = {"user": params["user"][u], "item_i": params["item"][i], "item_j": params["item"][j],
         "bias_i": params["bias"][i], "bias_j": params["bias"][j]}
    prev_mask = None
    if "seq_prev" in params:
        prev_mask = (prev > 0).astype(jnp.float32)
        g.update(seq_item_i=params["seq_item"][i], seq_item_j=params["seq_item"][j],
                 seq_prev=params["seq_prev"][prev])
    (_, bpr), grad = jax.value_and_grad(_bpr_batch_loss, has_aux=True)(g, ok, prev_mask, reg)
    new = {"user": params["user"].at[u].add(-lr * grad["user"]),
           "item": params["item"].at[i].add(-lr * grad["item_i"]).at[j].add(-lr * grad["item_j"]),
           "bias": params["bias"].at[i].add(-lr * grad["bias_i"]).at[j].add(-lr * grad["bias_j"])}
    if "seq_prev" in params:
        new["seq_item"] = (params["seq_item"].at[i].add(-lr * grad["seq_item_i"])
                           .at[j].add(-lr * grad["seq_item_j"]))
        new["seq_prev"] = params["seq_prev"].at[prev].add(-lr * grad["seq_prev"])
    return new, bpr


def bpr_negatives(rng: np.random.Generator, positives: np.ndarray, n_items: int) -> np.ndarray:
    """One negative per positive, uniform over the N - 1 items other than the positive."""
    neg = rng.integers(1, n_items, size=len(positives))                        # 1..N-1
    return (neg + (neg >= positives)).astype(np.int32)


def bpr_batches(rng: np.random.Generator, users, positives, previous, n_items: int,
                batch_size: int):
    """One epoch's triples in a random order with fresh negatives, as mini-batches: (users,
    positives, negatives [S, B], previous [S, B, w], ok [S, B]); the last batch is padded with
    examples of weight ``ok`` = 0."""
    n = len(users)
    steps = -(-n // batch_size)
    order = np.zeros(steps * batch_size, dtype=np.int64)
    order[:n] = rng.permutation(n)
    ok = (np.arange(steps * batch_size) < n).astype(np.float32)
    neg = bpr_negatives(rng, positives, n_items)
    shape = (steps, batch_size)
    return (users[order].reshape(shape), positives[order].reshape(shape),
            neg[order].reshape(shape), previous[order].reshape(shape + previous.shape[1:]),
            ok.reshape(shape))


def _bpr_epoch(params, batches, lr, reg):
    """One pass of SGD steps over ``batches`` (:func:`bpr_batches`): (params, summed BPR loss
    -ln sigma(x_ui - x_uj) of the triples, each measured before its step)."""
    params, losses = jax.lax.scan(lambda p, b: _bpr_step(p, b, lr, reg), params, batches)
    return params, losses.sum()


_bpr_epoch_jit = jax.jit(_bpr_epoch, static_argnames=("lr", "reg"), donate_argnums=(0,))


def bpr_fit(users, positives, previous, n_users: int, n_items: int, *, factors: int = 20,
            epochs: int = 30, learning_rate: float = 0.01, reg: float = 0.01,
            batch_size: int = 256, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Train MF (``previous`` [E, 0]) or sequential MF (``previous`` [E, w], 0 = no item) with
    the BPR criterion (Rendle et al. 2009) by mini-batch SGD; one jitted ``lax.scan`` per epoch.

    ``users``, ``positives`` [E]: one triple per training event and epoch, the negative drawn
    uniformly among the other N - 1 items (:func:`bpr_negatives`; other items of the user may be
    drawn), a new random order and new negatives every epoch (:func:`bpr_batches`, drawn on the
    host by NumPy's generator seeded with ``(seed, 1)``). Returns ``(params, losses)``: numpy
    parameters (:func:`bpr_initial`'s layout) and the mean BPR loss of every epoch.
    Deterministic given ``seed`` (CPU; GPU scatter-adds may sum duplicates in any order).
    """
    if n_items < 2:
        raise ValueError("BPR needs at least 2 items")
    users, positives = np.asarray(users, np.int32), np.asarray(positives, np.int32)
    previous = np.asarray(previous, np.int32)
    window = int(previous.shape[1])
    params = {k: jnp.asarray(v) for k, v in
              bpr_initial(seed, n_users, n_items, factors, window).items()}
    rng = np.random.default_rng([seed, 1])          # order and negatives of every epoch
    losses = []
    for _ in range(epochs):
        batches = bpr_batches(rng, users, positives, previous, n_items, int(batch_size))
        params, loss = _bpr_epoch_jit(params, batches, lr=float(learning_rate), reg=float(reg))
        losses.append(loss)
    losses = np.asarray(losses, dtype=np.float64) / max(len(users), 1)
    return {k: np.array(v) for k, v in params.items()}, losses


def previous_items(train: pl.DataFrame, window: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Training events sorted by (user, time) (stable) and, for each, the items of the same
    user's ``window`` preceding training events, most recent first: int32 [E, window], 0 where
    the user has fewer."""
    train = train.sort(["user", "time"], maintain_order=True)
    prev = train.select([pl.col("item").shift(k).over("user").fill_null(0).alias(f"p{k}")
                         for k in range(1, window + 1)])
    return train, prev.to_numpy().astype(np.int32).reshape(train.height, window)


class MF:
    """BPR-MF (Rendle et al. 2009), Donkers et al.'s "Matrix Factorization" (Table 1: 20 factors,
    30 iterations, learning rate 0.01): score(u, j) = <user_u, item_j> + bias_j.

    Training (:func:`bpr_fit`): one triple (user, item of a training event, uniform negative) per
    training event and epoch (repeated events count again), SGD on -ln sigma(x_ui - x_uj) with L2
    ``reg`` (0.01) on every row a triple touches (factors and biases), applied per example as in
    Rendle's SGD; mini-batches of ``batch_size`` (256) triples whose per-example gradients are
    summed (so ``learning_rate`` keeps its per-example meaning; the examples of one batch see the
    same parameters). Factors start ~ N(0, 0.1^2), biases at 0.

    A user without training events (or an id beyond the training users) has zero factors: only
    the item bias ranks for them.
    """

    window = 0

    def __init__(self, factors: int = 20, epochs: int = 30, learning_rate: float = 0.01,
                 reg: float = 0.01, batch_size: int = 256, seed: int = 0):
        if factors < 1 or epochs < 0 or batch_size < 1 or not learning_rate > 0 or reg < 0:
            raise ValueError("need factors >= 1, epochs >= 0, batch_size >= 1, "
                             "learning_rate > 0, reg >= 0")
        self.factors, self.epochs = int(factors), int(epochs)
        self.learning_rate, self.reg = float(learning_rate), float(reg)
        self.batch_size, self.seed = int(batch_size), int(seed)

    def fit(self, train: pl.DataFrame, n_items: int) -> "MF":
        train = _train_events(train, n_items)
        self.n_items = n_items
        train, prev = previous_items(train, self.window)
        users = train["user"].to_numpy().astype(np.int64)
        self.n_users = int(users.max()) + 1 if len(users) else 0
        self.params, self.losses = bpr_fit(
            users, train["item"].to_numpy(), prev, self.n_users, n_items, factors=self.factors,
            epochs=self.epochs, learning_rate=self.learning_rate, reg=self.reg,
            batch_size=self.batch_size, seed=self.seed)
        self.params["user"][np.bincount(users, minlength=self.n_users) == 0] = 0.0
        return self

    def user_factors(self, users: np.ndarray) -> np.ndarray:
        """float32 [r, F]; zeros for ids without a trained row."""
        users = np.asarray(users, dtype=np.int64)
        out = np.zeros((len(users), self.factors), dtype=np.float32)
        known = (users >= 0) & (users < self.n_users)
        out[known] = self.params["user"][users[known]]
        return out

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]: <user_u, item_j> + bias_j."""
        index = np.asarray(index, dtype=np.int64)
        p = self.params
        return _finish(self.user_factors(rows.user[index]) @ p["item"].T + p["bias"][None, :])


class SeqMF(MF):
    """Sequential MF, FPMC-style (Rendle et al. 2010; Donkers et al.'s "Seq. Matrix
    Factorization" with a window of 2 previous items): for user u with previous items
    l_1..l_w' (the last ``window`` items of the user's history before the target, w' <= window
    of them available),

        score(u, j) = <user_u, item_j> + (1/w') sum_l <seq_item_j, seq_prev_l> + bias_j

    (no sequential term when w' = 0). Trained like :class:`MF` (the same :func:`bpr_fit`) on
    triples of the training events, each with the items of the same user's preceding training
    events (across sessions). At scoring time the previous items come from the row's history
    (training and earlier test events): stream positions ``event - 1 .. event - window`` that
    are not before ``history_start``.
    """

    def __init__(self, factors: int = 20, epochs: int = 30, learning_rate: float = 0.01,
                 reg: float = 0.01, batch_size: int = 256, seed: int = 0, window: int = 2):
        super().__init__(factors, epochs, learning_rate, reg, batch_size, seed)
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = int(window)

    def previous(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """int32 [r, window]: the rows' previous items, most recent first (0 = none)."""
        if rows.history_start is None:
            raise ValueError("SeqMF needs the rows' history (build them with make_eval_rows)")
        index = np.asarray(index, dtype=np.int64)
        pos = rows.event[index, None] - np.arange(1, self.window + 1)[None, :]
        valid = pos >= rows.history_start[index, None]
        return np.where(valid, rows.stream_item[np.where(valid, pos, 0)], 0).astype(np.int32)

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]: the FPMC-style score of the class docstring."""
        index = np.asarray(index, dtype=np.int64)
        p = self.params
        prev = self.previous(rows, index)
        mask = (prev > 0).astype(np.float32)
        mean_prev = ((p["seq_prev"][prev] * mask[..., None]).sum(1)
                     / np.maximum(mask.sum(1), 1.0)[:, None])
        query = np.concatenate([self.user_factors(rows.user[index]), mean_prev], axis=1)
        table = np.concatenate([p["item"], p["seq_item"]], axis=1)
        return _finish(query @ table.T + p["bias"][None, :])


BASELINES = {"pop": Pop, "ppop": PersonalPop, "itemknn": ItemKNN, "decayitemknn": DecayItemKNN,
             "mf": MF, "seqmf": SeqMF,
             # Song et al.'s names: S-POP, the most frequent item of the current sequence, is
             # PersonalPop when a sequence is a user's history (their setting); BPR-MF is MF
             "spop": PersonalPop, "bprmf": MF}


def make_baseline(name: str, **kw):
    """A baseline by name: "pop", "ppop", "itemknn", "decay-itemknn", "mf" or "seq-mf", or
    Song et al.'s names for two of them, "spop" (PersonalPop) and "bpr-mf" (MF)
    (case-insensitive, "-" and "_" ignored); ``kw`` go to its constructor."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    return BASELINES[key](**kw)
