"""Matrix factorisation trained with BPR (Rendle et al. 2009; Donkers et al. 2017's BPR-MF, Song
et al. 2019's BPR-MF), the sequential MF of Donkers et al. (2017), section 4 (the user vector
plus the factors of the last ``window`` items, FPMC-style), and the factorised Markov chain (FMC)
and factorised personalised Markov chain (FPMC) of Rendle, Freudenthaler and Schmidt-Thieme
(WWW 2010) with baskets of one item, all by SGD over sampled negatives in jitted epochs (one
trainer, :func:`bpr_fit`). The calls are ``hrnn_jax.baselines.popularity``'s.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from hrnn_jax.baselines.popularity import finish_scores, train_events
from hrnn_jax.config import ModelConfig, default
from hrnn_jax.data.rows import EvalRows


# --------------------------------------------------------------------------------------------
# BPR matrix factorisation (MF) and sequential MF (FPMC-style)
# --------------------------------------------------------------------------------------------
def bpr_initial(seed: int, n_users: int, n_items: int, factors: int, window: int = 0,
                scale: float = 0.1, *, user_term: bool = True, bias: bool = True) -> dict:
    """The initial parameters of :func:`bpr_fit` (float32, numpy): factors ~ N(0, scale^2),
    biases 0. ``user`` [U, F] and ``item`` [N+1, F] (the MF term <user_u, item_j>; not with
    ``user_term`` False), ``bias`` [N+1] (not with ``bias`` False); with ``window`` > 0 also
    ``seq_item`` [N+1, F] (the candidate's factor in the sequential term) and ``seq_prev``
    [N+1, F] (the previous item's). Row 0 is the padding item. NumPy's generator seeded with
    ``(seed, 0)`` (host-side random numbers compile nothing), drawn in the order user, item,
    seq_item, seq_prev (the tables left out draw nothing)."""
    rng = np.random.default_rng([seed, 0])
    def normal(n):
        return (scale * rng.standard_normal((n, factors))).astype(np.float32)
    params = {}
    if user_term:
        params.update(user=normal(n_users), item=normal(n_items + 1))
    if bias:
        params["bias"] = np.zeros(n_items + 1, np.float32)
    if window > 0:
        params["seq_item"] = normal(n_items + 1)
        params["seq_prev"] = normal(n_items + 1)
    return params


def _bpr_x(g, j: str, prev_mask):
    """x_uj of gathered rows ``g`` for candidate side ``j`` ("i" or "j"): [B]; the terms whose
    tables ``g`` has (user-item, bias, sequential), summed in that order."""
    terms = []
    if "user" in g:
        terms.append(jnp.sum(g["user"] * g["item_" + j], axis=-1))
    if "bias_" + j in g:
        terms.append(g["bias_" + j])
    if "seq_prev" in g:
        n = jnp.maximum(prev_mask.sum(-1), 1.0)                                 # w' (>= 1)
        mean_prev = jnp.sum(g["seq_prev"] * prev_mask[..., None], axis=1) / n[:, None]
        terms.append(jnp.sum(g["seq_item_" + j] * mean_prev, axis=-1))
    x = terms[0]
    for t in terms[1:]:
        x = x + t
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
    g = {}
    if "user" in params:
        g.update(user=params["user"][u], item_i=params["item"][i], item_j=params["item"][j])
    if "bias" in params:
        g.update(bias_i=params["bias"][i], bias_j=params["bias"][j])
    prev_mask = None
    if "seq_prev" in params:
        prev_mask = (prev > 0).astype(jnp.float32)
        g.update(seq_item_i=params["seq_item"][i], seq_item_j=params["seq_item"][j],
                 seq_prev=params["seq_prev"][prev])
    (_, bpr), grad = jax.value_and_grad(_bpr_batch_loss, has_aux=True)(g, ok, prev_mask, reg)
    new = {}
    if "user" in params:
        new["user"] = params["user"].at[u].add(-lr * grad["user"])
        new["item"] = (params["item"].at[i].add(-lr * grad["item_i"])
                       .at[j].add(-lr * grad["item_j"]))
    if "bias" in params:
        new["bias"] = (params["bias"].at[i].add(-lr * grad["bias_i"])
                       .at[j].add(-lr * grad["bias_j"]))
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
            batch_size: int = 256, seed: int = 0, user_term: bool = True,
            bias: bool = True) -> tuple[dict, np.ndarray]:
    """Train MF (``previous`` [E, 0]) or sequential MF (``previous`` [E, w], 0 = no item) with
    the BPR criterion (Rendle et al. 2009) by mini-batch SGD; one jitted ``lax.scan`` per epoch.
    ``user_term`` / ``bias`` False leave out the <user_u, item_j> term / the item bias (their
    tables are not made, :func:`bpr_initial`): FMC and FPMC (Rendle et al. 2010).

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
    if not user_term and window == 0:
        raise ValueError("a model without the user term needs previous items (window >= 1)")
    params = {k: jnp.asarray(v) for k, v in bpr_initial(
        seed, n_users, n_items, factors, window, user_term=user_term, bias=bias).items()}
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

    def __init__(self, factors: int = default(ModelConfig, "factors"),
                 epochs: int = default(ModelConfig, "mf_epochs"),
                 learning_rate: float = default(ModelConfig, "mf_learning_rate"),
                 reg: float = 0.01, batch_size: int = 256, seed: int = 0):
        if factors < 1 or epochs < 0 or batch_size < 1 or not learning_rate > 0 or reg < 0:
            raise ValueError("need factors >= 1, epochs >= 0, batch_size >= 1, "
                             "learning_rate > 0, reg >= 0")
        self.factors, self.epochs = int(factors), int(epochs)
        self.learning_rate, self.reg = float(learning_rate), float(reg)
        self.batch_size, self.seed = int(batch_size), int(seed)

    def fit(self, train: pl.DataFrame, n_items: int) -> "MF":
        train = train_events(train, n_items)
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
        return finish_scores(self.user_factors(rows.user[index]) @ p["item"].T + p["bias"][None, :])


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

    def __init__(self, factors: int = default(ModelConfig, "factors"),
                 epochs: int = default(ModelConfig, "mf_epochs"),
                 learning_rate: float = default(ModelConfig, "mf_learning_rate"),
                 reg: float = 0.01, batch_size: int = 256, seed: int = 0,
                 window: int = default(ModelConfig, "mf_window")):
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
        return finish_scores(query @ table.T + p["bias"][None, :])


class FPMC(SeqMF):
    """FPMC, the factorised personalised Markov chain of Rendle, Freudenthaler and Schmidt-Thieme
    (WWW 2010), for sequences (a basket of one item): for user u whose previous item is l,

        score(u, i) = <V_UI[u], V_IU[i]> + <V_IL[i], V_LI[l]>

    the model of Sec. 5.2 (Lemma 1: the <V_UL[u], V_LU[l]> term of the pairwise interaction
    model of Sec. 4.2.1 does not change a user's ranking nor the S-BPR optimum, so it is left
    out) with |B_{t-1}| = 1, so the mean over the previous basket is the previous item alone.
    There is no item bias (the paper has none; :class:`SeqMF` adds one). Tables (``params``):
    ``user`` = V_UI, ``item`` = V_IU, ``seq_item`` = V_IL (the candidate's), ``seq_prev`` = V_LI
    (the previous item's): separate transition tables for the two roles of an item, as in the
    paper. This is :class:`SeqMF` with ``window`` 1, without the bias and trained on transitions
    only.

    Training: S-BPR (Sec. 5.1: sum of ln sigma(x_uti - x_utj) - lambda ||Theta||^2) by the SGD
    of :func:`bpr_fit` (as :class:`MF`: per-example L2 ``reg`` = 2 lambda on every row a triple
    touches, mini-batches whose per-example gradients are summed, factors ~ N(0, 0.1^2)). One
    quadruple (u, l, i, j) per training event that has a previous training event of the same
    user (across sessions) and epoch, the negative j uniform over the N - 1 items other than i
    (a basket of one: "j not in B_t"); the paper draws the quadruples by bootstrap sampling
    (Sec. 5.3, Fig. 5), here every epoch visits each once in a new random order. Choices the
    paper leaves open: a user's first training event (no B_{t-1}, the score is undefined) gives
    no triple; a user without a triple has zero V_UI; at scoring time a row without a previous
    item in its history (``history_start``) gets the user term alone.
    """

    window = 1
    user_term = True

    def __init__(self, factors: int = default(ModelConfig, "factors"),
                 epochs: int = default(ModelConfig, "mf_epochs"),
                 learning_rate: float = default(ModelConfig, "mf_learning_rate"),
                 reg: float = 0.01, batch_size: int = 256, seed: int = 0):
        MF.__init__(self, factors, epochs, learning_rate, reg, batch_size, seed)

    def fit(self, train: pl.DataFrame, n_items: int) -> "FPMC":
        train = train_events(train, n_items)
        self.n_items = n_items
        train, prev = previous_items(train, 1)
        users = train["user"].to_numpy().astype(np.int64)
        self.n_users = int(users.max()) + 1 if len(users) else 0
        keep = prev[:, 0] > 0                       # transitions only: a previous item exists
        self.params, self.losses = bpr_fit(
            users[keep], train["item"].to_numpy()[keep], prev[keep], self.n_users, n_items,
            factors=self.factors, epochs=self.epochs, learning_rate=self.learning_rate,
            reg=self.reg, batch_size=self.batch_size, seed=self.seed, user_term=self.user_term,
            bias=False)
        if self.user_term:
            trained = np.bincount(users[keep], minlength=self.n_users) > 0
            self.params["user"][~trained] = 0.0
        return self

    def score(self, rows: EvalRows, index: np.ndarray) -> np.ndarray:
        """float32 [len(index), N+1]: the score of the class docstring."""
        index = np.asarray(index, dtype=np.int64)
        p = self.params
        prev = self.previous(rows, index)[:, 0]
        query = p["seq_prev"][prev] * (prev > 0)[:, None].astype(np.float32)     # V_LI[l]
        scores = query @ p["seq_item"].T
        if self.user_term:
            scores = self.user_factors(rows.user[index]) @ p["item"].T + scores
        return finish_scores(scores)


class FMC(FPMC):
    """FMC, the factorised (non-personalised) Markov chain of Rendle et al. (WWW 2010), Sec.
    4.2.2 and 5.2.1 (FPMC with k_UI = 0), for sequences: with previous item l,

        score(i) = <V_IL[i], V_LI[l]>

    (the mean over the previous basket is the previous item alone); no user term, no bias.
    Trained with S-BPR exactly as :class:`FPMC` (the paper learns MF, FMC and FPMC with the same
    algorithm, Sec. 6): one (l, i, j) triple per training event with a previous training event
    of the same user, j uniform over the N - 1 other items. A row without a previous item scores
    every item 0 (ties).
    """

    user_term = False
