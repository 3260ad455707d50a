"""The baselines of Ma & Narayanaswamy ("Hierarchical Temporal-Contextual Recommenders", Tables 2
and 3): popularity, the rolling-average rating, and a factorisation machine for both tasks.

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
  RNNs; Adam with an L2 penalty on the factors of the rows in the batch.
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
    error). ``item_features``: ``[N+1, F]`` (row 0 padding) or None (ids only). Training:
    ``epochs`` of Adam at ``learning_rate`` over shuffled batches of ``batch_size`` pairs, with
    ``l2`` times the squared norm of the batch's factor rows added to the loss."""

    n_items: int
    task: Task = "item"
    factors: int = 32
    item_features: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 1e-2
    l2: float = 1e-5

    def __post_init__(self):
        choices.check("task", self.task, Task)
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
        side = lambda key, rows: {  # noqa: E731  (one side's slots: ids, then features)
            "w_id": jnp.zeros((rows,), jnp.float32), "w_f": jnp.zeros((F,), jnp.float32),
            "v_id": 0.01 * jax.random.normal(key, (rows, k)),
            "v_f": 0.01 * jax.random.normal(jax.random.fold_in(key, 1), (F, k))}
        return {"w0": jnp.zeros((), jnp.float32), "cand": side(keys[0], N1),
                "ctx": side(keys[1], N1),
                "feat": jnp.zeros((N1, F), jnp.float32) if self.item_features is None
                else jnp.asarray(self.item_features, jnp.float32)}

    @staticmethod
    def _side(p, feat, items):
        """One side's ``(sum v x [.., k], linear [..], pairwise [..])`` for ``items`` (Rendle's
        identity: 1/2 (|sum v x|^2 - sum |v|^2 x^2))."""
        f = jnp.take(feat, items, axis=0)  # [.., F]
        v_id = jnp.take(p["v_id"], items, axis=0)
        e = v_id + f @ p["v_f"]
        lin = jnp.take(p["w_id"], items, axis=0) + f @ p["w_f"]
        sq = (v_id**2).sum(-1) + (f**2) @ (p["v_f"] ** 2).sum(-1)
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
                  for s, ids in (("ctx", last), ("cand", items)))
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
