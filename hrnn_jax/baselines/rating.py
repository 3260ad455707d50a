"""The baselines of Ma & Narayanaswamy ("Hierarchical Temporal-Contextual Recommenders", NeurIPS
2018 Workshop on Modeling and Decision-Making in the Spatiotemporal Domain; Tables 2 and 3):
popularity, the rolling-average rating, a factorisation machine for both tasks, and I-AutoRec.

* :func:`popularity_log_probs`: the unigram model of the training events, for perplexity (Table 2's
  "popularity baseline", PPL 2228 on ml-20m).
* :func:`rolling_average`: "predicts the next item rating as a simple average of the item average
  rating and user average rating" (Table 3), computed in global time order without looking ahead:
  an event's prediction reads only events with a strictly earlier time (events at the same time do
  not see each other). Where the item has no earlier rating, the user's average alone; where the
  user has none either, the item's; where neither has, the mean of every earlier rating (and, for
  the very first events, the mean of the ``prior`` ratings).
* :class:`FactorizationMachine`: Rendle's second-order factorisation machine "with features from a
  user's last item and features of all possible future items" (Table 2), for next-item perplexity
  and for rating RMSE (Table 3). The feature vector of a (last item i, candidate j) pair is
  ``x = [one-hot(j), f_j, one-hot(i), f_i]`` (the candidate's and the last item's ids and, if
  given, their feature vectors, e.g. L2-normalised genres); the model is Rendle 2012's

      y(x) = w_0 + sum_a w_a x_a + sum_{a<b} <v_a, v_b> x_a x_b,

  computed by its linear-time identity per side: with the candidate's part e_j = sum v_a x_a over
  its slots and the context's part c_i likewise, y = w_0 + lin_i + pair_i + lin_j + pair_j +
  <c_i, e_j>, where pair = 1/2 (|sum v_a x_a|^2 - sum |v_a|^2 x_a^2) over one side's slots. For the
  next item the scores of all candidates j are a softmax (the context's own terms cancel there);
  for ratings y is the prediction (squared error). Our choices where the paper is silent: no user
  id (a user split leaves test users unseen, so their ids carry nothing), the last item's own
  rating not a feature (the "vanilla" machine; feedback is what separates the RNN rows of Table 3),
  a user's first event (no last item) not a training or evaluation pair, as it is no step of the
  RNNs; Adam with an L2 penalty on the factors of the id rows in the batch (the feature factors,
  a few rows seen by every pair, unpenalised).

  Which one-hot ids ``x`` holds (``ids``): ``"factors"`` (default) both items' ids with their
  weights and factors, as above: the id pair makes the machine a factorised first-order Markov
  chain over the items; ``"bias"`` only the candidate's id with its weight (a per-item bias: the
  popularity baseline's term) and no id of the last item; ``"none"`` no id at all,
  ``x = [f_j, f_i]``: item features only, so two items with the same features get the same
  score, and a last item counts only through its features (Table 2's "item features only" row,
  where the sequence column is unmarked).
* :class:`IAutoRec`: I-AutoRec (Sedhain et al., "AutoRec: Autoencoders Meet Collaborative
  Filtering", WWW 2015), the item-based autoencoder of Table 3 (its docstring).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl

from hrnn_jax import choices

Task = Literal["item", "rating"]
Ids = Literal["factors", "bias", "none"]  # the machine's one-hot id slots (module docstring)


def popularity_log_probs(train: pl.DataFrame, n_items: int, items) -> np.ndarray:
    """Natural log of each item's share of the training events, ``items [R] -> [R]`` (items with
    no training event get -inf: restrict the catalogue to the training items first)."""
    counts = np.bincount(train["item"].to_numpy(), minlength=n_items + 1)[1:].astype(np.float64)
    with np.errstate(divide="ignore"):
        logp = np.log(counts / counts.sum())
    return logp[np.asarray(items) - 1]


def rolling_average(events: pl.DataFrame, *, prior: float | None = None) -> np.ndarray:
    """Each event's rating predicted from the strictly earlier events: ``[R]`` in the frame's row
    order (module docstring). ``events``: columns user, item, time, value (any order)."""
    missing = {"user", "item", "time", "value"} - set(events.columns)
    if missing:
        raise ValueError(f"rolling_average needs the columns {sorted(missing)}")
    df = events.select("user", "item", "time", pl.col("value").cast(pl.Float64)).with_row_index()
    if df["value"].is_null().any() or not np.all(np.isfinite(df["value"].to_numpy())):
        raise ValueError("rolling_average: the value column has missing or non-finite ratings")

    def earlier(keys: list[str]) -> pl.DataFrame:
        """Sum and count of the ratings of the same key at strictly earlier times."""
        g = (df.group_by([*keys, "time"]).agg(s=pl.col("value").sum(), n=pl.len())
             .sort([*keys, "time"]))
        over = keys or None
        cum = lambda c: (pl.col(c).cum_sum() - pl.col(c)) if over is None else \
            (pl.col(c).cum_sum() - pl.col(c)).over(over)  # noqa: E731
        return g.with_columns(s=cum("s"), n=cum("n")).drop_nulls()

    out = df
    for name, keys in (("item", ["item"]), ("user", ["user"]), ("all", [])):
        e = earlier(keys).rename({"s": f"s_{name}", "n": f"n_{name}"})
        out = out.join(e, on=[*keys, "time"], how="left")
    out = out.sort("index")
    mean = lambda name: np.where(out[f"n_{name}"].to_numpy() > 0,  # noqa: E731
                                 out[f"s_{name}"].to_numpy() / np.maximum(
                                     out[f"n_{name}"].to_numpy(), 1), np.nan)
    item, user, every = mean("item"), mean("user"), mean("all")
    first = float(df["value"].mean()) if prior is None else float(prior)
    both = np.where(np.isnan(item), user, np.where(np.isnan(user), item, (item + user) / 2))
    return np.where(np.isnan(both), np.where(np.isnan(every), first, every), both)


def consecutive_pairs(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """Every event with an earlier event of the same user, as a pair: ``{"row" [R] (its position
    in ``frame``), "last" [R] (the previous event's item), "item" [R], "value" [R] (its rating, if
    the frame has values)}``. ``frame`` sorted by user, time."""
    user = frame["user"].to_numpy()
    if len(user) and np.any(np.diff(user) < 0):
        raise ValueError("consecutive_pairs: the frame must be sorted by user, then time")
    row = np.flatnonzero(np.r_[False, user[1:] == user[:-1]])
    item = frame["item"].to_numpy().astype(np.int32)
    out = {"row": row, "last": item[row - 1], "item": item[row]}
    if "value" in frame.columns:
        out["value"] = frame["value"].to_numpy().astype(np.float32)[row]
    return out


@dataclasses.dataclass(frozen=True)
class FactorizationMachine:
    """Rendle's factorisation machine over (last item, candidate) pairs (module docstring).

    ``task``: ``"item"`` (softmax over the catalogue, for perplexity) or ``"rating"`` (squared
    error). ``item_features``: ``[N+1, F]`` (row 0 padding) or None (ids only). ``ids``: the
    one-hot id slots (``"factors"``, ``"bias"``, ``"none"``: module docstring). Training:
    ``epochs`` of Adam at ``learning_rate`` over shuffled batches of ``batch_size`` pairs, with
    ``l2`` times the squared norm of the batch's id factor rows added to the loss."""

    n_items: int
    task: Task = "item"
    factors: int = 32
    item_features: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 1e-2
    l2: float = 1e-5
    ids: Ids = "factors"

    def __post_init__(self):
        choices.check("task", self.task, Task)
        choices.check("ids", self.ids, Ids)
        if self.ids == "none" and self.item_features is None:
            raise ValueError("FactorizationMachine(ids='none') scores items by their features: "
                             "give item_features")
        if self.n_items < 1 or self.factors < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("FactorizationMachine: need n_items, factors, epochs and batch_size "
                             ">= 1")
        f = self.item_features
        if f is not None and (np.ndim(f) != 2 or np.shape(f)[0] != self.n_items + 1
                              or not np.all(np.isfinite(f))):
            raise ValueError(f"FactorizationMachine: item_features must be a finite [n_items + 1,"
                             f" F] array, got shape {np.shape(f)}")

    def init(self, rng) -> dict:
        N1, k = self.n_items + 1, self.factors
        F = 0 if self.item_features is None else int(np.shape(self.item_features)[1])
        keys = jax.random.split(rng, 4)

        def side(key, w_id: bool, v_id: bool) -> dict:
            """One side's slots: the id's weight and factors (where ``ids`` has them), then the
            features'."""
            out = {"w_f": jnp.zeros((F,), jnp.float32),
                   "v_f": 0.01 * jax.random.normal(jax.random.fold_in(key, 1), (F, k))}
            if w_id:
                out["w_id"] = jnp.zeros((N1,), jnp.float32)
            if v_id:
                out["v_id"] = 0.01 * jax.random.normal(key, (N1, k))
            return out

        both = self.ids == "factors"
        return {"w0": jnp.zeros((), jnp.float32),
                "cand": side(keys[0], self.ids != "none", both), "ctx": side(keys[1], both, both),
                "feat": jnp.zeros((N1, F), jnp.float32) if self.item_features is None
                else jnp.asarray(self.item_features, jnp.float32)}

    @staticmethod
    def _side(p, feat, items):
        """One side's ``(sum v x [.., k], linear [..], pairwise [..])`` for ``items`` (Rendle's
        identity: 1/2 (|sum v x|^2 - sum |v|^2 x^2))."""
        f = jnp.take(feat, items, axis=0)  # [.., F]
        e = f @ p["v_f"]
        lin = f @ p["w_f"]
        sq = (f**2) @ (p["v_f"] ** 2).sum(-1)
        if "v_id" in p:  # the id's one-hot slot (ids="factors")
            v_id = jnp.take(p["v_id"], items, axis=0)
            e, sq = v_id + e, (v_id**2).sum(-1) + sq
        if "w_id" in p:
            lin = jnp.take(p["w_id"], items, axis=0) + lin
        return e, lin, 0.5 * ((e**2).sum(-1) - sq)

    def log_probs(self, params, last, items):
        """Next-item log-probabilities ``[R]`` of ``items`` after ``last`` (softmax over 1..N)."""
        feat = jax.lax.stop_gradient(params["feat"])
        c, _, _ = self._side(params["ctx"], feat, last)
        e, lin, pair = self._side(params["cand"], feat, jnp.arange(self.n_items + 1))
        logits = (c @ e.T + lin + pair).at[:, 0].set(-jnp.inf)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return jnp.take_along_axis(logp, items[:, None], axis=1)[:, 0]

    def predict_ratings(self, params, last, items):
        """Predicted ratings ``[R]`` of ``items`` after ``last``: the full y(x)."""
        feat = jax.lax.stop_gradient(params["feat"])
        c, lin_c, pair_c = self._side(params["ctx"], feat, last)
        e, lin_j, pair_j = self._side(params["cand"], feat, items)
        return params["w0"] + lin_c + pair_c + lin_j + pair_j + (c * e).sum(-1)

    def loss(self, params, last, items, value, weight):
        """Mean loss over the pairs with ``weight`` 1 (padding 0), plus the factors' L2."""
        if self.task == "item":
            per = -self.log_probs(params, last, items)
        else:
            per = (self.predict_ratings(params, last, items) - value) ** 2
        reg = sum((jnp.take(params[s]["v_id"], ids, axis=0) ** 2).sum(-1)
                  for s, ids in (("ctx", last), ("cand", items)) if "v_id" in params[s])
        return ((per + self.l2 * reg) * weight).sum() / jnp.maximum(weight.sum(), 1.0)

    def fit(self, pairs: dict[str, np.ndarray], *, seed: int = 0, prior: float = 0.0) -> dict:
        """Parameters trained on ``pairs`` (:func:`consecutive_pairs` of the training users; the
        rating task needs their ``value``); ``prior`` starts w_0 (e.g. the mean rating)."""
        if self.task == "rating" and "value" not in pairs:
            raise ValueError("FactorizationMachine(task='rating') needs the pairs' ratings (value)")
        R = len(pairs["item"])
        if R == 0:
            raise ValueError("FactorizationMachine.fit: no training pairs")
        tx = optax.adam(self.learning_rate)
        params = self.init(jax.random.PRNGKey(seed))
        params["w0"] = jnp.asarray(prior if self.task == "rating" else 0.0, jnp.float32)
        opt = tx.init(params)
        B = min(self.batch_size, R)
        n_batches = -(-R // B)
        value = pairs.get("value", np.zeros(R, np.float32))
        grad = jax.value_and_grad(self.loss)

        @jax.jit
        def epoch(params, opt, order, last, item, value):
            def step(state, idx):
                params, opt = state
                ok = (idx < R).astype(jnp.float32)
                i = jnp.minimum(idx, R - 1)
                _, g = grad(params, last[i], item[i], value[i], ok)
                g["feat"] = jnp.zeros_like(g["feat"])  # data, not a parameter
                upd, opt = tx.update(g, opt, params)
                return (optax.apply_updates(params, upd), opt), None
            (params, opt), _ = jax.lax.scan(step, (params, opt), order.reshape(n_batches, B))
            return params, opt

        rng = np.random.default_rng(seed)
        data = [jnp.asarray(pairs["last"], jnp.int32), jnp.asarray(pairs["item"], jnp.int32),
                jnp.asarray(value, jnp.float32)]
        for _ in range(self.epochs):
            order = np.full(n_batches * B, R, np.int32)  # R: padding (weight 0)
            order[:R] = rng.permutation(R)
            params, opt = epoch(params, opt, jnp.asarray(order), *data)
        return params


@dataclasses.dataclass(frozen=True)
class IAutoRec:
    """I-AutoRec (Sedhain et al., "AutoRec: Autoencoders Meet Collaborative Filtering", WWW
    2015), the item-based autoencoder of Ma & Narayanaswamy's Table 3.

    Item i's partially observed vector of ratings by the ``n_users`` users, r^(i) in R^m (0 where
    unobserved), is reconstructed through one hidden layer (AutoRec Eq. 2):

        h(r; theta) = f(W g(V r + mu) + b),   g = sigmoid, f = identity,

    with V [k, m], mu [k], W [m, k], b [m] (stored by user: ``V`` [m, k] holds V's columns,
    ``W`` [m, k] its rows). The objective (AutoRec Eq. 3) sums the squared error over the observed
    entries only, plus the L2 penalty:

        sum_i || r^(i) - h(r^(i)) ||^2_observed + l2 / 2 (||W||_F^2 + ||V||_F^2),

    minimised by full-batch resilient propagation (Rprop, as the paper; ``steps`` updates,
    ``learning_rate`` the initial step). The prediction of user u's rating of item i is
    h(r^(i))_u = W_u . g_i + b_u, with the item's code g_i = g(V r^(i) + mu).

    Our choices where the paper is silent: a user who rated an item more than once counts with
    the mean of those ratings (one matrix entry); b starts at ``prior`` (the training mean), the
    weights uniform in +-sqrt(6 / (m + k)).

    Users outside the training matrix (a split by users, as Ma & Narayanaswamy's): their W_u and
    b_u were never trained, so :meth:`fold_in` fits them on the user's strictly earlier ratings
    with the item codes fixed, by the same objective restricted to the user's parameters (ridge
    regression with penalty l2 / 2 on W_u, none on b_u, solved exactly), and predicts each rating
    after the user's first from the ones before it, as the sequence models do.
    """

    n_items: int
    n_users: int
    hidden: int = 500
    l2: float = 1.0
    steps: int = 300
    learning_rate: float = 1e-3

    def __post_init__(self):
        if self.n_items < 1 or self.n_users < 1 or self.hidden < 1 or self.steps < 1:
            raise ValueError("IAutoRec: need n_items, n_users, hidden and steps >= 1")
        if not (self.l2 >= 0 and self.learning_rate > 0):
            raise ValueError(f"IAutoRec: need l2 >= 0 and learning_rate > 0, got {self.l2}, "
                             f"{self.learning_rate}")

    def init(self, rng, prior: float = 0.0) -> dict:
        m, k = self.n_users, self.hidden
        s = float(np.sqrt(6.0 / (m + k)))
        kv, kw = jax.random.split(rng)
        return {"V": jax.random.uniform(kv, (m, k), jnp.float32, -s, s),
                "mu": jnp.zeros((k,), jnp.float32),
                "W": jax.random.uniform(kw, (m, k), jnp.float32, -s, s),
                "b": jnp.full((m,), prior, jnp.float32)}

    def codes(self, params, users, items, values):
        """Every item's hidden code g(V r^(i) + mu) ``[n_items + 1, k]`` from the observed entries
        ``(users, items, values)`` (each ``[E]``)."""
        vr = jax.ops.segment_sum(jnp.take(params["V"], users, axis=0) * values[:, None], items,
                                 num_segments=self.n_items + 1)
        return jax.nn.sigmoid(vr + params["mu"])

    @staticmethod
    def predict(params, codes, users, items):
        """h(r^(i))_u for the pairs ``(users, items)`` ``[E]``: W_u . g_i + b_u."""
        return (jnp.take(params["W"], users, axis=0) * jnp.take(codes, items, axis=0)).sum(-1) \
            + jnp.take(params["b"], users)

    def loss(self, params, users, items, values):
        """The objective: squared error summed over the observed entries, plus the L2 term."""
        err = self.predict(params, self.codes(params, users, items, values), users, items) - values
        return (err**2).sum() + 0.5 * self.l2 * ((params["W"] ** 2).sum()
                                                 + (params["V"] ** 2).sum())

    def entries(self, users, items, values):
        """The observed matrix entries ``(users, items, values)`` of a log's events: one per
        (user, item), the mean of its ratings."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        if len(users) == 0:
            raise ValueError("IAutoRec: no training ratings")
        if users.min() < 0 or users.max() >= self.n_users or items.min() < 1 \
                or items.max() > self.n_items:
            raise ValueError(f"IAutoRec: user codes must be in 0..{self.n_users - 1} and items "
                             f"in 1..{self.n_items}")
        key, inv = np.unique(users * (self.n_items + 1) + items, return_inverse=True)
        mean = np.bincount(inv, weights=np.asarray(values, np.float64)) / np.bincount(inv)
        return ((key // (self.n_items + 1)).astype(np.int32),
                (key % (self.n_items + 1)).astype(np.int32), mean.astype(np.float32))

    def fit(self, users, items, values, *, seed: int = 0, prior: float | None = None) -> dict:
        """Parameters trained on the events ``(users, items, values)`` (user codes 0..m-1, item
        codes 1..n_items, ratings); ``prior`` starts b (default: the entries' mean)."""
        u, i, v = (jnp.asarray(a) for a in self.entries(users, items, values))
        params = self.init(jax.random.PRNGKey(seed), float(v.mean()) if prior is None else prior)
        tx = optax.rprop(self.learning_rate)
        grad = jax.grad(self.loss)

        @jax.jit
        def run(params):
            def step(state, _):
                params, opt = state
                upd, opt = tx.update(grad(params, u, i, v), opt, params)
                return (optax.apply_updates(params, upd), opt), None
            (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None,
                                          length=self.steps)
            return params

        return run(params)

    def fold_in(self, params, train, frame: pl.DataFrame, *, chunk: int = 256) -> np.ndarray:
        """Each event's rating predicted from its user's earlier events in ``frame`` (columns
        user, item, value; sorted by user, then time): ``[R]`` in row order, NaN at each user's
        first event. ``train``: the training events ``(users, items, values)`` given to
        :meth:`fit` (the items' codes are computed from them). Per user, (W_u, b_u) minimise
        sum_j (r_j - W_u . g_{i_j} - b_u)^2 + l2 / 2 |W_u|^2 over the events j before the
        predicted one (class docstring); needs ``l2 > 0``."""
        if not self.l2 > 0:
            raise ValueError("IAutoRec.fold_in: needs l2 > 0 (a user with one earlier rating "
                             "has no unique W_u otherwise)")
        g = np.asarray(self.codes(params, *(jnp.asarray(a) for a in self.entries(*train))),
                       np.float64)
        user = frame["user"].to_numpy()
        if len(user) and np.any(np.diff(user) < 0):
            raise ValueError("IAutoRec.fold_in: the frame must be sorted by user, then time")
        X = np.concatenate([g[frame["item"].to_numpy()], np.ones((len(user), 1))], axis=1)
        r = frame["value"].to_numpy().astype(np.float64)
        penalty = np.diag(np.r_[np.full(self.hidden, self.l2 / 2), 0.0])
        out = np.full(len(user), np.nan)
        starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(user) else []
        for a, z in zip(starts, [*starts[1:], len(user)]):
            gram, rhs = penalty.copy(), np.zeros(self.hidden + 1)  # over the events before
            for c in range(a, z, chunk):  # the running sums, a chunk of events at a time
                x, y = X[c:min(c + chunk, z)], r[c:min(c + chunk, z)]
                G = gram + np.cumsum(x[:, :, None] * x[:, None, :], axis=0) \
                    - x[:, :, None] * x[:, None, :]  # exclusive: the events before each one
                R = rhs + np.cumsum(x * y[:, None], axis=0) - x * y[:, None]
                first = int(c == a)  # the user's first event has nothing before it
                theta = np.linalg.solve(G[first:], R[first:, :, None])[..., 0]
                out[c + first:c + len(x)] = (x[first:] * theta).sum(-1)
                gram, rhs = G[-1] + np.outer(x[-1], x[-1]), R[-1] + x[-1] * y[-1]
        return out
