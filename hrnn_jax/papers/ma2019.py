"""The experiments of Ma & Narayanaswamy, "Hierarchical Temporal-Contextual Recommenders"
(NeurIPS 2018 Workshop on Modeling and Decision-Making in the Spatiotemporal Domain): the two
simulation studies (Section 3) and the tables on a rating log, seeded and reproducible.

**The simulations.** Table 1, hierarchical sessions (:func:`hierarchical_sessions`, :func:`table1`).
"We simulated sequences containing random numbers (0-5) of sessions, each of which contains a random
number (1-5) of items. The item ids remain the same within a session [...] and increment by 1
between sessions." Three models are trained to predict every next item and evaluated by perplexity
on the first item of each new session: a vanilla RNN (not session-aware), HGRU (``models.HRNN``,
which switches hidden states at session ends) and HRNN-meta (``meta.HRNNMeta``, the session told by
a control input). The paper: PPL 2 / 1 / 1 and 0.3 s / 25.5 s / 0.3 s per epoch (``TABLE1_PAPER``:
HGRU 85x the time per epoch of HRNN in Table 1, while the abstract claims "up to 10x better
computational efficiency", ``TIMING_PAPER``); ours are measured by :func:`table1`.

Choices where the text is silent (all parameters of the functions):

* The first session's item is uniform in 1..``n_first_items`` (50); the paper gives no range.
  The item of a session predicts the next session's; nothing predicts the first.
* Times: events of a session are ``within_gap`` (10 s) apart and sessions ``between_gap`` (two
  days) apart; the log is cut into sessions by the library's idle-gap rule (30 minutes), which
  recovers them exactly, and sessions of one item are kept (no filter removes anything; the data
  report says so). A user with no session has no events; one with a single event has no step.
* Train and test are a random 80/20 split of the users (``data.split_users``; test events of
  items seen only in test are kept: the models score the whole encoded catalogue); the
  perplexity is over the test users' first items of a session other than their first (the only
  first-in-session items with an input before them).
* HGRU closes a session when the next session's first item is predicted (``close_at="target"``):
  with the library's default (the session is closed one step later) no model could predict the
  first item of a session from the session's end.

Table 2, the betting toy (:func:`betting`, :func:`table2`). "The first item is uniformly random,
and is also presented as user feature side information. [...] The following bets are always +1 or
-1 in item ids depending on the previous interaction outcomes. The parity of the bet is recorded
as item features. The total range is 0-100 and there are 1000 independent sequences of random
lengths 0-20." Our reading, chosen so that each row of the table has the information its name
says and the paper's figures follow from it:

* A sequence is a start event (item ``"start"``) then n ~ U{0..20} bets a_1..a_n, a_1 ~ U{0..100};
  bet k has outcome o_k = +1 or -1 (a fair coin, the event's ``value``, i.e. its feedback), and
  a_{k+1} = a_k + o_k, wrapping around 0..100 (so the outcomes determine the bets). Events are
  10 s apart (the control signal is the same at every step).
* Every bet is a target, the first one included (predicted from the start event): the paper's
  "1-in-3 chance of success, including the first item" for the sequence model is the geometric
  mean of about 2 (later bets: +1 or -1) and 101 (the first).
* Rows (``meta.HRNNMeta`` options): ``none``: the encoder sees nothing of the items
  (``item_input="none"``): about 101; ``item``: it sees the items' features, the parity, as input
  and in the decoder (``item_input="features"``): half of the bets after the first, the paper's
  54; ``seq``: item ids: 3; ``all``: ids, item features, the first bet as a one-hot user feature
  and the outcomes as feedback: every bet is determined, 1.
* The catalogue is the 101 bets and the start item (102), stated with the perplexity.

**The rating log.** Data (:func:`prepare_ratings`): a log with ratings (``value``) and an
item-feature matrix (genres, L2-normalised rows), sessionised by the idle gap, every event kept (the
paper preprocesses nothing), split by users at random 80/20 (the paper: "We split the data by user
ids into 80% train and validation set and 20% test set"), the catalogue restricted to the training
items. Evaluated: every test event that has an earlier event of its user (the first event of a user
is no step of a sequence model), the same events for every row of a table.

Table 2, rating-log column (:func:`table2_log`), perplexity of the test events' items over the
catalogue of the training items (stated with the figures; the paper's ml-20m perplexities are over
its index space of 131,263 ids, of which 26,744 items occur: ``ML20M_PAPER``):

* ``none``: popularity, the training events' unigram (the paper: 2228);
* ``item``: the factorisation machine with item features only, the last item's and the
  candidates' genres, no id (``ids="none"``; 1342): the row's "Seq" is unmarked, so no id of
  the last item may enter (with it the machine is a Markov chain over the items);
* labelled variants beside it, not the paper's row: ``item_popularity`` (``ids="bias"``: the
  candidate's id weight, a popularity term, added: "item features also improved popularity
  baseline" read literally) and ``item_ids_markov`` (``ids="factors"``: both items' one-hot ids
  too, a factorised Markov chain);
* ``seq``: HRNN-meta over item ids with the control signal (447);
* ``all``: HRNN-meta with item features in the decoder, user features ("faked by using the
  features of the first item": the features of the user's first event) and the ratings as
  feedback, standardised by the training events' mean and standard deviation
  (:func:`feedback_standardisation`; "interaction feedback were the standardized rating
  values") (410).

Table 3 (:func:`table3`), RMSE of the test events' ratings:

* ``rolling_average``: the mean of the item's and the user's running averages, in global time
  order over the whole log (train and test users' earlier events), without looking ahead (0.933);
* ``factorization``: the factorisation machine's rating task (0.916);
* ``i_autorec``: I-AutoRec (``baselines.rating.IAutoRec``; 0.871), hidden units as the RNNs',
  its L2 weight picked from the AutoRec paper's grid on 10% of the training users
  (:func:`i_autorec`); the test users' output rows fitted on their earlier ratings;
* ``rnn``: the RNN without feedback encoding (0.941), ``rnn_feedback``: with it (0.857),
  ``hrnn_feedback``: HRNN-meta (the control signal) with it (0.846). Each is ``meta.HRNNMeta``
  with a rating head trained on the squared error alone (``item_weight=0``); the feedback is
  the standardised rating, as in Table 2 (the label, the target's rating, stays on its scale).

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

from hrnn_jax import cells, data, evaluation, training
from hrnn_jax.baselines import rating
from hrnn_jax.config import DataConfig, TrainConfig
from hrnn_jax.evaluation import predict
from hrnn_jax.models import HRNN, HRNNMeta, Model, SessionRNN

TABLE2_PAPER = {"none": 100.0, "item": 54.0, "seq": 3.0, "all": 1.0}
TABLE1_PAPER = {"rnn": {"ppl": 2.0, "seconds_per_epoch": 0.3},
                "hgru": {"ppl": 1.0, "seconds_per_epoch": 25.5},
                "hrnn_meta": {"ppl": 1.0, "seconds_per_epoch": 0.3}}
# the paper's timing claims: Table 1's HGRU / HRNN time per epoch, and the abstract's "up to 10x
# better computational efficiency due to better ability to align batches"
TIMING_PAPER = {"table1_hgru_over_hrnn": 25.5 / 0.3, "abstract_up_to": 10.0}


def hierarchical_sessions(n_users: int, *, seed: int = 0, max_sessions: int = 5,
                          max_session_len: int = 5, n_first_items: int = 50,
                          within_gap: float = 10.0, between_gap: float = 2 * 86400.0
                          ) -> pl.DataFrame:
    """Table 1's log: ``user`` (Int64), ``item`` (Int64, raw ids >= 1), ``time`` (Float64 s).

    Each user has ``U{0..max_sessions}`` sessions of ``U{1..max_session_len}`` events; all events
    of session j carry item ``a + j`` with ``a ~ U{1..n_first_items}``.
    """
    if n_users < 1 or max_sessions < 0 or max_session_len < 1 or n_first_items < 1:
        raise ValueError("need n_users >= 1, max_sessions >= 0, max_session_len >= 1 and "
                         "n_first_items >= 1")
    if not 0 < within_gap < between_gap:
        raise ValueError(f"need 0 < within_gap < between_gap, got {within_gap}, {between_gap}")
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(n_users):
        n_sessions = int(rng.integers(0, max_sessions + 1))
        first = int(rng.integers(1, n_first_items + 1))
        t = 0.0
        for j in range(n_sessions):
            if j:
                t += between_gap
            for k in range(int(rng.integers(1, max_session_len + 1))):
                if k:
                    t += within_gap
                users.append(u)
                items.append(first + j)
                times.append(t)
    return pl.DataFrame({"user": users, "item": items, "time": times},
                        schema={"user": pl.Int64, "item": pl.Int64, "time": pl.Float64})


def prepare_users(raw: pl.DataFrame, test_fraction: float, *, seed: int,
                  session_gap: float = 1800.0, catalogue: str = "train") -> data.Prepared:
    """The paper's preprocessing, through the library's pipeline (``data.prepare``): sessions by
    the idle gap, no filter (sessions of one event kept), codes, and a random split of the users
    (drawn from ``seed``). ``catalogue``: ``"log"`` (the simulations: every test event kept, the
    perplexity being over the whole encoded catalogue) or ``"train"`` (the rating log: the
    training part's items)."""
    return data.prepare(raw, DataConfig(session_gap=session_gap, min_item_support=1,
                                        min_session_len=1, protocol="users",
                                        test_fraction=test_fraction, split_seed=seed,
                                        catalogue=catalogue))


def table1_data(n_users: int = 2500, *, seed: int = 0, test_fraction: float = 0.2,
                session_gap: float = 1800.0, **knobs) -> data.Prepared:
    """Table 1's log (:func:`hierarchical_sessions`) through :func:`prepare_users`: the train and
    test parts are a random ``1 - test_fraction`` / ``test_fraction`` of the users (drawn from
    ``seed + 1``), every test event kept."""
    raw = data.read_interactions(hierarchical_sessions(n_users, seed=seed, **knobs))
    return prepare_users(raw, test_fraction, seed=seed + 1, session_gap=session_gap,
                         catalogue="log")


def first_in_session(frame: pl.DataFrame) -> np.ndarray:
    """Row positions of the events that open a session other than the user's first (sorted)."""
    user, session = frame["user"].to_numpy(), frame["session"].to_numpy()
    opens = np.zeros(len(user), bool)
    opens[1:] = (user[1:] == user[:-1]) & (session[1:] != session[:-1])
    return np.flatnonzero(opens)


def table1_models(n_items: int, hidden: int) -> dict[str, Model]:
    """Table 1's three models, each a GRU of ``hidden`` units over one-hot items."""
    return {
        "rnn": SessionRNN(n_items, cells.GRU(hidden), reset="user"),
        "hgru": HRNN(n_items, cells.GRU(hidden), user_cell=cells.GRU(hidden),
                            close_at="target"),
        "hrnn_meta": HRNNMeta(n_items, cells.GRU(hidden)),
    }


def table1(n_users: int = 2500, *, seed: int = 0, hidden: int = 32,
           train: TrainConfig = TrainConfig(epochs=15, batch_size=50, window=10,
                                             optimizer="adam", learning_rate=1e-2,
                                             loss="full-ce", row_updates="sparse"),
           names=("rnn", "hgru", "hrnn_meta"), keep_fitted: bool = False,
           log: Callable[[str], None] | None = None) -> dict:
    """Train Table 1's models and measure them: ``{"models": {name: {"ppl", "seconds_per_epoch",
    "n", "catalogue"}}, "data": info}``.

    ``seconds_per_epoch``: the mean wall time of the training epochs after the first (which
    compiles). With ``keep_fitted``, also ``"fitted": {name: (model, params)}`` and ``"test"``
    (the test users' encoded events). ``ppl``: :func:`hrnn_jax.evaluation.perplexity` of the test
    users' first items of every session but their first, from the full softmax over the catalogue.
    """
    prep = table1_data(n_users, seed=seed)
    encoded, tr, te, info = prep.encoded, prep.train, prep.test, prep.info
    events = first_in_session(te)
    info = {**info, "evaluated": int(len(events))}
    out, fitted = {}, {}
    for name, model in table1_models(encoded.n_items, hidden).items():
        if name not in names:
            continue
        t0 = time.perf_counter()
        fit = training.fit(model, tr, train, targets="user", log=None)
        seconds = [h["seconds"] for h in fit.records[1:]] or [fit.records[0]["seconds"]]
        lp = predict.target_log_probs(model, fit.params, te, events, targets="user",
                                      batch_size=train.batch_size, window=train.window)
        out[name] = {**evaluation.perplexity(lp, encoded.n_items),
                     "seconds_per_epoch": float(np.mean(seconds))}
        fitted[name] = (model, fit.params)
        if log:
            log(f"{name}: ppl {out[name]['ppl']:.3f}, {out[name]['seconds_per_epoch']:.3f} s per "
                f"epoch ({time.perf_counter() - t0:.1f} s in all)")
    result = {"models": out, "data": info}
    return {**result, "fitted": fitted, "test": te} if keep_fitted else result


def betting(n_sequences: int = 1000, *, seed: int = 0, max_len: int = 20, n_bets: int = 101,
            gap: float = 10.0) -> pl.DataFrame:
    """Table 2's log: ``user`` (Int64), ``item`` (String: ``"start"`` or the bet 0..n_bets-1),
    ``time`` (Float64 s), ``value`` (Float64: the bet's outcome +1/-1, 0 for the start event),
    ``first`` (Int64: the sequence's first bet, -1 without bets; the user feature)."""
    if n_sequences < 1 or max_len < 0 or n_bets < 2 or not gap > 0:
        raise ValueError("need n_sequences >= 1, max_len >= 0, n_bets >= 2 and gap > 0")
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_sequences):
        n = int(rng.integers(0, max_len + 1))
        bet = int(rng.integers(0, n_bets))
        first = bet if n else -1
        rows.append((u, "start", 0.0, 0.0, first))
        for k in range(n):
            outcome = 1.0 if rng.random() < 0.5 else -1.0
            rows.append((u, str(bet), gap * (k + 1), outcome, first))
            bet = (bet + int(outcome)) % n_bets  # the outcome decides the next bet
    return pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.String, "time": pl.Float64,
                                      "value": pl.Float64, "first": pl.Int64}, orient="row")


def table2_data(n_sequences: int = 1000, *, seed: int = 0, test_fraction: float = 0.2,
                n_bets: int = 101, **knobs):
    """Table 2's data: ``(prep, item_features [N+1, 3], user_features [U, n_bets])``, ``prep``
    the betting log (:func:`betting`) through :func:`prepare_users` (every test event kept).
    Item features: (even, odd, start); user features: the one-hot first bet (zeros for a
    sequence without bets)."""
    log = betting(n_sequences, seed=seed, n_bets=n_bets, **knobs)
    raw = data.read_interactions(log.drop("first"), value_col="value")
    prep = prepare_users(raw, test_fraction, seed=seed + 1, catalogue="log")
    encoded = prep.encoded
    ids = encoded.item_ids
    item_features = np.zeros((len(ids), 3), np.float32)
    for code in range(1, len(ids)):
        item_features[code, 2 if ids[code] == "start" else int(ids[code]) % 2] = 1.0
    first = dict(zip(log["user"].cast(pl.String).to_list(), log["first"].to_list()))
    user_features = np.zeros((encoded.n_users, n_bets), np.float32)
    for code, raw_id in enumerate(encoded.user_ids):
        if first[str(raw_id)] >= 0:
            user_features[code, first[str(raw_id)]] = 1.0
    return prep, item_features, user_features


def table2_models(n_items: int, hidden: int, item_features, user_features) -> dict:
    """Table 2's rows, each an HRNN-meta GRU with the information its name says."""
    gru = cells.GRU(hidden)
    return {
        "none": HRNNMeta(n_items, gru, item_input="none"),
        "item": HRNNMeta(n_items, gru, item_input="features", item_features=item_features),
        "seq": HRNNMeta(n_items, gru),
        "all": HRNNMeta(n_items, gru, item_features=item_features,
                             user_features=user_features, feedback=True),
    }


def table2(n_sequences: int = 1000, *, seed: int = 0, hidden: int = 32,
           train: TrainConfig = TrainConfig(epochs=30, batch_size=50, window=10,
                                             optimizer="adam", learning_rate=1e-2,
                                             loss="full-ce", row_updates="sparse"),
           log: Callable[[str], None] | None = None) -> dict:
    """Train Table 2's rows and measure them: ``{"models": {row: {"ppl", "n", "catalogue"}},
    "data": info}``; the perplexity is over every bet of the test sequences."""
    prep, item_f, user_f = table2_data(n_sequences, seed=seed)
    encoded, tr, te, info = prep.encoded, prep.train, prep.test, prep.info
    events = rating.consecutive_pairs(te)["row"]  # every bet (not the start event)
    info = {**info, "evaluated": int(len(events))}
    out = {}
    for name, model in table2_models(encoded.n_items, hidden, item_f, user_f).items():
        fit = training.fit(model, tr, train, targets="user", log=None)
        lp = predict.target_log_probs(model, fit.params, te, events, targets="user",
                                      batch_size=train.batch_size, window=train.window)
        out[name] = evaluation.perplexity(lp, encoded.n_items)
        if log:
            log(f"{name}: ppl {out[name]['ppl']:.3f}")
    return {"models": out, "data": info}


# ------------------------------------------------------------------------------------------
# The rating log: Table 2's ml-20m column and Table 3
# ------------------------------------------------------------------------------------------
TABLE2_LOG_PAPER = {"none": 2228.0, "item": 1342.0, "seq": 447.0, "all": 410.0}
TABLE3_PAPER = {"rolling_average": 0.933, "factorization": 0.916, "i_autorec": 0.871,
                "rnn": 0.941, "rnn_feedback": 0.857, "hrnn_feedback": 0.846}
# ml-20m as the paper counts it: its perplexities are over the index space of 131,263 ids
# ("We treat the size of the index space as the number of items despite only 26 744 unique items
# being included"); ours are over the training items of the log.
ML20M_PAPER = {"catalogue": 131263, "items": 26744, "users": 138493}
AUTOREC_L2_GRID = (0.001, 0.01, 0.1, 1.0, 100.0, 1000.0)  # AutoRec's grid for lambda


def synthetic_ratings(n_users: int = 2000, *, n_items: int = 400, n_genres: int = 8,
                      seed: int = 0, mean: float = 3.6, user_bias: float = 0.8,
                      item_bias: float = 0.4, session_mood: float = 0.4, noise: float = 0.5,
                      max_sessions: int = 8, session_len: tuple[int, int] = (2, 12),
                      chain: float = 0.6) -> tuple[pl.DataFrame, data.ItemFeatures]:
    """A rating log and its items' genres, like MovieLens' ratings and movies files.

    Returns ``(log, genres)``: ``log`` with ``user`` (Int64), ``item`` (Int64, 1..n_items), ``time``
    (Float64 s), ``value`` (Float64 rating 1..5); ``genres``: the items' genres as
    ``data.read_item_features`` reads them from MovieLens' movies (``|``-separated text). Biases and
    mood are normal with the given standard deviations; ``chain``: the chance that a session's next
    item is its genre's next item in a fixed order (else a popularity draw from the genre). Times:
    1-10 min within a session, 1-7 days between.
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
    """MovieLens ratings and movies files: ``(log, genres)`` for :func:`prepare_ratings` (see
    :func:`read_movielens_ratings` and ``data.read_item_features``)."""
    return read_movielens_ratings(ratings), data.read_item_features(movies)


def prepare_ratings(log: pl.DataFrame, genres: data.ItemFeatures, *,
                    seed: int = 0, test_fraction: float = 0.2, session_gap: float = 1800.0) -> dict:
    """The rating log through :func:`prepare_users` (the random user split drawn from ``seed +
    1``, the catalogue restricted to the training items).

    ``log``: raw columns user, item, time, value; ``genres``: the items' features
    (``data.read_item_features``), lined up with the encoded catalogue. Returns ``{"encoded",
    "train", "test", "features" [N+1, G], "events" (test rows evaluated), "info"}``."""
    raw = data.read_interactions(log, value_col="value")
    prep = prepare_users(raw, test_fraction, seed=seed + 1, session_gap=session_gap)
    features, coverage = data.item_feature_matrix(genres, prep.encoded.item_ids)
    events = rating.consecutive_pairs(prep.test)["row"]
    info = {**prep.info, "evaluated": int(len(events)), "features": int(features.shape[1]),
            **coverage}
    return {"encoded": prep.encoded, "train": prep.train, "test": prep.test,
            "features": features, "events": events, "info": info}


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


def feedback_standardisation(train: pl.DataFrame) -> tuple[float, float]:
    """``(mean, std)`` of the training events' values: the feedback of HRNN-meta enters standardised
    by them (``HRNNMeta(feedback_mean=, feedback_std=)``; "interaction feedback were the
    standardized rating values"). Training events only, so no test rating shapes the input."""
    v = train["value"].to_numpy().astype(np.float64)
    if len(v) == 0 or not np.all(np.isfinite(v)):
        raise ValueError("feedback_standardisation: the training values are empty or not finite")
    std = float(v.std())
    if not std > 0:
        raise ValueError("feedback_standardisation: every training value is the same (std 0)")
    return float(v.mean()), std


def fm_rows(n_items: int, feats: np.ndarray, train: TrainConfig, epochs: int) -> dict:
    """Table 2's factorisation machines (module docstring): the "item features only" row and the
    two labelled variants with ids."""
    kw = dict(item_features=feats, epochs=epochs, learning_rate=train.learning_rate)
    return {"item": rating.FactorizationMachine(n_items, "item", ids="none", **kw),
            "item_popularity": rating.FactorizationMachine(n_items, "item", ids="bias", **kw),
            "item_ids_markov": rating.FactorizationMachine(n_items, "item", ids="factors", **kw)}


def table2_log(prep: dict, *, hidden: int = 64, train: TrainConfig, fm_epochs: int = 10,
               log: Callable[[str], None] | None = None) -> dict:
    """Table 2's rows on a rating log (module docstring): ``{row: {"ppl", "n", "catalogue"}}``,
    the paper's four and the labelled factorisation-machine variants."""
    enc, tr, te, feats, events = (prep[k] for k in ("encoded", "train", "test", "features",
                                                    "events"))
    N, items = enc.n_items, te["item"].to_numpy()[events]
    out = {"none": evaluation.perplexity(rating.popularity_log_probs(tr, N, items), N)}
    pairs, test_pairs = rating.consecutive_pairs(tr), rating.consecutive_pairs(te)
    for name, fm in fm_rows(N, feats, train, fm_epochs).items():
        params = fm.fit(pairs, seed=train.seed)
        out[name] = evaluation.perplexity(np.asarray(fm.log_probs(params, test_pairs["last"],
                                                                  test_pairs["item"])), N)
    gru = cells.GRU(hidden)
    user_f = first_item_features(enc.events, feats, enc.n_users)
    mean, std = feedback_standardisation(tr)
    models = {"seq": HRNNMeta(N, gru),
              "all": HRNNMeta(N, gru, item_features=feats, user_features=user_f,
                              feedback=True, feedback_mean=mean, feedback_std=std)}
    for name, model in models.items():
        params = _fit(model, tr, train, log, name)
        lp = predict.target_log_probs(model, params, te, events, targets="user",
                                      batch_size=train.batch_size, window=train.window)
        out[name] = evaluation.perplexity(lp, N)
    if log:
        log("table 2: " + ", ".join(f"{k} {v['ppl']:.1f}" for k, v in out.items()))
    return out


def i_autorec(prep: dict, *, hidden: int = 64, seed: int = 0, grid=AUTOREC_L2_GRID,
              validation: float = 0.1, log: Callable[[str], None] | None = None) -> dict:
    """I-AutoRec's predictions of the evaluated test ratings (``baselines.rating.IAutoRec``): the
    L2 weight picked from ``grid`` (the AutoRec paper's) by the RMSE on a random ``validation``
    share of the training users (trained on the rest, folded in as the test users are), then
    trained on every training user. ``{"pred" [R], "l2", "validation": {l2: rmse}}``."""
    tr, te, N = prep["train"], prep["test"], prep["encoded"].n_items
    users = np.unique(tr["user"].to_numpy())
    rng = np.random.default_rng(seed + 2)
    held = set(rng.choice(users, max(1, int(round(validation * len(users)))), replace=False))
    is_held = tr["user"].is_in(sorted(held))
    fit_part, val_part = tr.filter(~is_held), tr.filter(is_held)
    val_rows = rating.consecutive_pairs(val_part)["row"]

    def run(train_part, frame, l2):
        codes, u = np.unique(train_part["user"].to_numpy(), return_inverse=True)
        events = (u, train_part["item"].to_numpy(), train_part["value"].to_numpy())
        model = rating.IAutoRec(N, len(codes), hidden=hidden, l2=l2)
        return model.fold_in(model.fit(*events, seed=seed), events, frame)

    scores = {}
    for l2 in grid:
        pred = run(fit_part, val_part, l2)[val_rows]
        scores[l2] = evaluation.rmse(pred, val_part["value"].to_numpy()[val_rows])["rmse"]
    best = min(scores, key=scores.get)
    if log:
        log("i-autorec validation rmse by l2: " + ", ".join(f"{k:g} {v:.3f}"
                                                           for k, v in scores.items()))
    return {"pred": run(tr, te, best)[prep["events"]], "l2": best,
            "validation": {f"{k:g}": v for k, v in scores.items()}}


def table3_models(n_items: int, hidden: int, mean: float,
                  feedback: tuple[float, float] = (0.0, 1.0)) -> dict:
    """Table 3's recurrent rows: rating heads trained on the squared error alone; ``feedback``:
    the ``(mean, std)`` standardising the feedback input (:func:`feedback_standardisation`)."""
    gru = cells.GRU(hidden)
    kw = dict(rating_weight=1.0, rating_mean=mean, item_weight=0.0)
    fb = dict(feedback=True, feedback_mean=feedback[0], feedback_std=feedback[1])
    return {"rnn": HRNNMeta(n_items, gru, control=False, **kw),
            "rnn_feedback": HRNNMeta(n_items, gru, control=False, **fb, **kw),
            "hrnn_feedback": HRNNMeta(n_items, gru, **fb, **kw)}


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
    rolled = rating.rolling_average(both, prior=mean)
    at = both["_row"].to_numpy()
    pick = np.full(te.height, np.nan)
    pick[at[both["test"].to_numpy()].astype(int)] = rolled[both["test"].to_numpy()]
    out = {"rolling_average": evaluation.rmse(pick[events], actual)}
    fm = rating.FactorizationMachine(enc.n_items, "rating", item_features=feats,
                                             epochs=fm_epochs, learning_rate=train.learning_rate)
    params = fm.fit(rating.consecutive_pairs(tr), seed=train.seed, prior=mean)
    pairs = rating.consecutive_pairs(te)
    out["factorization"] = evaluation.rmse(
        np.asarray(fm.predict_ratings(params, pairs["last"], pairs["item"])), actual)
    autorec = i_autorec(prep, hidden=hidden, seed=train.seed, log=log)
    out["i_autorec"] = {**evaluation.rmse(autorec["pred"], actual), "l2": autorec["l2"],
                        "validation": autorec["validation"]}
    models = table3_models(enc.n_items, hidden, mean, feedback_standardisation(tr))
    for name, model in models.items():
        params = _fit(model, tr, train, log, name)
        pred = predict.target_ratings(model, params, te, events, batch_size=train.batch_size,
                                      window=train.window)
        out[name] = evaluation.rmse(pred, actual)
    if log:
        log("table 3: " + ", ".join(f"{k} {v['rmse']:.3f}" for k, v in out.items()))
    return out
