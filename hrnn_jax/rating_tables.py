"""Ma & Narayanaswamy's experiments on a rating log: the feature ablation of Table 2 (its ml-20m
column) and the rating table (Table 3), on MovieLens files or on synthetic ratings with user bias.

Data (:func:`prepare`): a log with ratings (``value``) and an item-feature matrix (genres,
L2-normalised rows), sessionised by the idle gap, every event kept (the paper preprocesses
nothing), split by users at random 80/20 (the paper: "We split the data by user ids into 80%
train and validation set and 20% test set"), the catalogue restricted to the training items.
Evaluated: every test event that has an earlier event of its user (the first event of a user is
no step of a sequence model), the same events for every row of a table.

Table 2, rating-log column (:func:`table2_log`), perplexity of the test events' items:

* ``none``: popularity, the training events' unigram (the paper: 2228);
* ``item``: the factorisation machine with the last item's and the candidates' features (1342);
* ``seq``: HRNN-meta over item ids with the control signal (447);
* ``all``: HRNN-meta with item features in the decoder, user features ("faked by using the
  features of the first item": the features of the user's first event) and the ratings as
  feedback (410).

Table 3 (:func:`table3`), RMSE of the test events' ratings:

* ``rolling_average``: the mean of the item's and the user's running averages, in global time
  order over the whole log (train and test users' earlier events), without looking ahead (0.933);
* ``factorization``: the factorisation machine's rating task (0.916);
* ``rnn``: the RNN without feedback encoding (0.941), ``rnn_feedback``: with it (0.857),
  ``hrnn_feedback``: HRNN-meta (the control signal) with it (0.846). Each is ``meta.HRNNMeta``
  with a rating head trained on the squared error alone (``item_weight=0``).

The paper's observation: RNNs without feedback "are unaware of the user average ratings and could
not outperform the rolling average baseline"; with feedback they do.

Synthetic ratings (:func:`synthetic_ratings`), the default where no MovieLens files are given:
users with a rating bias, items with a quality and one or two genres, sessions on one genre each
(the next item often the genre's next in a fixed chain, so sequences carry signal), a mood per
session; a rating is ``clip(round(mean + user bias + item quality + session mood + noise), 1, 5)``.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import polars as pl

from hrnn_jax import cells, data, evaluation, meta, meta_baselines, predict, training
from hrnn_jax.config import TrainConfig

TABLE2_LOG_PAPER = {"none": 2228.0, "item": 1342.0, "seq": 447.0, "all": 410.0}
TABLE3_PAPER = {"rolling_average": 0.933, "factorization": 0.916, "rnn": 0.941,
                "rnn_feedback": 0.857, "hrnn_feedback": 0.846}


def synthetic_ratings(n_users: int = 2000, *, n_items: int = 400, n_genres: int = 8,
                      seed: int = 0, mean: float = 3.6, user_bias: float = 0.8,
                      item_bias: float = 0.4, session_mood: float = 0.4, noise: float = 0.5,
                      max_sessions: int = 8, session_len: tuple[int, int] = (2, 12),
                      chain: float = 0.6) -> tuple[pl.DataFrame, data.ItemFeatures]:
    """A rating log and its items' genres, like MovieLens' ratings and movies files.

    Returns ``(log, genres)``: ``log`` with ``user`` (Int64), ``item`` (Int64, 1..n_items), ``time``
    (Float64 s), ``value`` (Float64 rating 1..5); ``genres``: the items' genres as
    ``data.read_item_features`` reads them from MovieLens' movies (``|``-separated text). Biases and mood are normal with the given standard deviations;
    ``chain``: the chance that a session's next item is its genre's next item in a fixed order
    (else a popularity draw from the genre). Times: 1-10 min within a session, 1-7 days between.
    """
    if n_users < 1 or n_items < n_genres or n_genres < 1 or max_sessions < 1:
        raise ValueError("need n_users >= 1, n_items >= n_genres >= 1 and max_sessions >= 1")
    rng = np.random.default_rng(seed)
    primary = np.arange(n_items) % n_genres  # every genre has items
    rng.shuffle(primary)
    second = np.where(rng.random(n_items) < 0.3, rng.integers(0, n_genres, n_items), primary)
    quality = rng.normal(0.0, item_bias, n_items)
    members = [np.flatnonzero(primary == g) for g in range(n_genres)]
    pop = [rng.pareto(1.5, len(m)) + 1.0 for m in members]
    pop = [p / p.sum() for p in pop]
    rows = []
    for u in range(n_users):
        bias = rng.normal(0.0, user_bias)
        taste = rng.dirichlet(np.full(n_genres, 0.3))
        t = rng.uniform(0, 30 * 86400.0)
        for _ in range(int(rng.integers(1, max_sessions + 1))):
            g = int(rng.choice(n_genres, p=taste))
            mood = rng.normal(0.0, session_mood)
            k = int(rng.choice(len(members[g]), p=pop[g]))
            for j in range(int(rng.integers(session_len[0], session_len[1] + 1))):
                if j:
                    t += rng.uniform(60.0, 600.0)
                    k = (k + 1) % len(members[g]) if rng.random() < chain else \
                        int(rng.choice(len(members[g]), p=pop[g]))
                i = int(members[g][k])
                r = np.clip(np.round(mean + bias + quality[i] + mood + rng.normal(0, noise)), 1, 5)
                rows.append((u, i + 1, t, float(r)))
            t += rng.uniform(86400.0, 7 * 86400.0)
    log = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "time": pl.Float64,
                                     "value": pl.Float64}, orient="row")
    names = [f"genre{g}" for g in range(n_genres)]
    genres = ["|".join(sorted({names[primary[i]], names[second[i]]})) for i in range(n_items)]
    items = pl.DataFrame({"movieId": np.arange(1, n_items + 1).astype(str), "genres": genres})
    return log, data.read_item_features(items)


def read_movielens_ratings(path) -> pl.DataFrame:
    """A MovieLens ratings file as a log (user, item, time, value): ``ratings.dat`` of
    ml-1m/10m (``UserID::MovieID::Rating::Timestamp``, no header) or ``ratings.csv`` of
    ml-20m/25m (header ``userId,movieId,rating,timestamp``). Read by ``data.read_interactions``
    (DataError on a bad file)."""
    if str(path).lower().endswith(".dat"):
        return data.read_interactions(path, columns=("user", "item", "value", "time"),
                                      value_col="value")
    return data.read_interactions(path, user_col="userId", item_col="movieId",
                                  time_col="timestamp", value_col="rating")


def read_movielens(ratings, movies) -> tuple[pl.DataFrame, data.ItemFeatures]:
    """MovieLens ratings and movies files: ``(log, genres)`` for :func:`prepare` (see
    :func:`read_movielens_ratings` and ``data.read_item_features``)."""
    return read_movielens_ratings(ratings), data.read_item_features(movies)


def prepare(log: pl.DataFrame, genres: data.ItemFeatures, *,
            seed: int = 0, test_fraction: float = 0.2, session_gap: float = 1800.0) -> dict:
    """The log through the library's preprocessing and the random user split (module docstring).

    ``log``: raw columns user, item, time, value; ``genres``: the items' features
    (``data.read_item_features``), lined up with the encoded catalogue. Returns ``{"encoded",
    "train", "test", "features" [N+1, G], "events" (test rows evaluated), "info"}``."""
    raw = data.read_interactions(log, value_col="value")
    frame = data.sessionize(raw, session_gap)
    frame, dropped = data.filter_interactions(frame, min_item_support=1, min_session_len=1)
    encoded = data.encode(frame)
    train, test, info = data.split_users(encoded.events, test_fraction, seed=seed + 1)
    encoded, train, test = data.restrict_items(encoded, train, test)
    features, coverage = data.item_feature_matrix(genres, encoded.item_ids)
    events = meta_baselines.consecutive_pairs(test)["row"]
    info = {**data.summary(encoded.events), **info, "dropped": dropped, "catalogue": encoded.n_items, "evaluated": int(len(events)),
            "features": int(features.shape[1]), **coverage}
    return {"encoded": encoded, "train": train, "test": test, "features": features,
            "events": events, "info": info}


def first_item_features(events: pl.DataFrame, features: np.ndarray, n_users: int) -> np.ndarray:
    """``[n_users, F]``: the features of each user's first event (zeros for a user without one),
    the paper's faked user features."""
    first = events.group_by("user").agg(pl.col("item").first())
    out = np.zeros((n_users, features.shape[1]), np.float32)
    out[first["user"].to_numpy()] = features[first["item"].to_numpy()]
    return out


def _fit(model, train, config, log, name):
    t0 = time.perf_counter()
    fit = training.fit(model, train, config, targets="user", log=None)
    if log:
        log(f"{name}: trained in {time.perf_counter() - t0:.1f} s")
    return fit.params


def table2_log(prep: dict, *, hidden: int = 64, train: TrainConfig, fm_epochs: int = 10,
               log: Callable[[str], None] | None = None) -> dict:
    """Table 2's rows on a rating log (module docstring): ``{row: {"ppl", "n", "catalogue"}}``."""
    enc, tr, te, feats, events = (prep[k] for k in ("encoded", "train", "test", "features",
                                                    "events"))
    N, items = enc.n_items, te["item"].to_numpy()[events]
    out = {"none": evaluation.perplexity(meta_baselines.popularity_log_probs(tr, N, items), N)}
    fm = meta_baselines.FactorizationMachine(N, "item", item_features=feats, epochs=fm_epochs,
                                             learning_rate=train.learning_rate)
    params = fm.fit(meta_baselines.consecutive_pairs(tr), seed=train.seed)
    pairs = meta_baselines.consecutive_pairs(te)
    out["item"] = evaluation.perplexity(np.asarray(fm.log_probs(params, pairs["last"],
                                                                pairs["item"])), N)
    gru = cells.GRU(hidden)
    user_f = first_item_features(enc.events, feats, enc.n_users)
    models = {"seq": meta.HRNNMeta(N, gru),
              "all": meta.HRNNMeta(N, gru, item_features=feats, user_features=user_f,
                                   feedback=True)}
    for name, model in models.items():
        params = _fit(model, tr, train, log, name)
        lp = predict.target_log_probs(model, params, te, events, targets="user",
                                      batch_size=train.batch_size, window=train.window)
        out[name] = evaluation.perplexity(lp, N)
    if log:
        log("table 2: " + ", ".join(f"{k} {v['ppl']:.1f}" for k, v in out.items()))
    return out


def table3_models(n_items: int, hidden: int, mean: float) -> dict:
    """Table 3's recurrent rows: rating heads trained on the squared error alone."""
    gru = cells.GRU(hidden)
    kw = dict(rating_weight=1.0, rating_mean=mean, item_weight=0.0)
    return {"rnn": meta.HRNNMeta(n_items, gru, control=False, **kw),
            "rnn_feedback": meta.HRNNMeta(n_items, gru, control=False, feedback=True, **kw),
            "hrnn_feedback": meta.HRNNMeta(n_items, gru, feedback=True, **kw)}


def table3(prep: dict, *, hidden: int = 64, train: TrainConfig, fm_epochs: int = 10,
           log: Callable[[str], None] | None = None) -> dict:
    """Table 3's rows (module docstring): ``{row: {"rmse", "n"}}``."""
    enc, tr, te, feats, events = (prep[k] for k in ("encoded", "train", "test", "features",
                                                    "events"))
    actual = te["value"].to_numpy()[events]
    mean = float(tr["value"].mean())
    # the rolling average over the whole log in global time order; the test rows picked after
    both = pl.concat([tr.with_columns(test=pl.lit(False)), te.with_columns(
        test=pl.lit(True), _row=pl.int_range(pl.len()))], how="diagonal")
    rolled = meta_baselines.rolling_average(both, prior=mean)
    at = both["_row"].to_numpy()
    pick = np.full(te.height, np.nan)
    pick[at[both["test"].to_numpy()].astype(int)] = rolled[both["test"].to_numpy()]
    out = {"rolling_average": evaluation.rmse(pick[events], actual)}
    fm = meta_baselines.FactorizationMachine(enc.n_items, "rating", item_features=feats,
                                             epochs=fm_epochs, learning_rate=train.learning_rate)
    params = fm.fit(meta_baselines.consecutive_pairs(tr), seed=train.seed, prior=mean)
    pairs = meta_baselines.consecutive_pairs(te)
    out["factorization"] = evaluation.rmse(
        np.asarray(fm.predict_ratings(params, pairs["last"], pairs["item"])), actual)
    for name, model in table3_models(enc.n_items, hidden, mean).items():
        params = _fit(model, tr, train, log, name)
        pred = predict.target_ratings(model, params, te, events, batch_size=train.batch_size,
                                      window=train.window)
        out[name] = evaluation.rmse(pred, actual)
    if log:
        log("table 3: " + ", ".join(f"{k} {v['rmse']:.3f}" for k, v in out.items()))
    return out
