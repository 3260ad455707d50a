"""The simulation studies of Ma & Narayanaswamy, "Hierarchical Temporal-Contextual Recommenders"
(Section 3), seeded and reproducible.

Table 1, hierarchical sessions (:func:`hierarchical_sessions`, :func:`table1`). "We simulated
sequences containing random numbers (0-5) of sessions, each of which contains a random number
(1-5) of items. The item ids remain the same within a session [...] and increment by 1 between
sessions." Three models are trained to predict every next item and evaluated by perplexity on the
first item of each new session: a vanilla RNN (not session-aware), HGRU (``models.HRNN``, which
switches hidden states at session ends) and HRNN-meta (``meta.HRNNMeta``, the session told by a
control input). The paper: PPL 2 / 1 / 1 and 0.3 s / 25.5 s / 0.3 s per epoch.

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
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import polars as pl

from hrnn_jax import cells, data, evaluation, meta, meta_baselines, models, predict, training
from hrnn_jax.config import TrainConfig

TABLE2_PAPER = {"none": 100.0, "item": 54.0, "seq": 3.0, "all": 1.0}
TABLE1_PAPER = {"rnn": {"ppl": 2.0, "seconds_per_epoch": 0.3},
                "hgru": {"ppl": 1.0, "seconds_per_epoch": 25.5},
                "hrnn_meta": {"ppl": 1.0, "seconds_per_epoch": 0.3}}


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


def preprocess(raw: pl.DataFrame, test_fraction: float, *, seed: int, session_gap: float = 1800.0):
    """The simulations' preprocessing of a validated log: sessions, no filter, codes and a random
    user split (``data.split_users`` drawn from ``seed``) that keeps every test event, as the
    perplexity is over the whole encoded catalogue: ``(encoded, train, test, info)``, info the
    log's summary, both parts' user counts and the rows each filter dropped (none)."""
    frame = data.sessionize(raw, session_gap)
    frame, dropped = data.filter_interactions(frame, min_item_support=1, min_session_len=1)
    encoded = data.encode(frame)
    train, test, split = data.split_users(encoded.events, test_fraction, seed=seed,
                                          drop_unseen=False)
    info = {**data.summary(encoded.events), **{k: split[k] for k in data.USER_COUNTS},
            "dropped": dropped}
    return encoded, train, test, info


def table1_data(n_users: int = 2500, *, seed: int = 0, test_fraction: float = 0.2,
                session_gap: float = 1800.0, **knobs):
    """Table 1's data through the library's preprocessing: ``(encoded, train, test, info)``.

    ``train``/``test``: encoded events of a random ``1 - test_fraction`` / ``test_fraction`` of
    the users (drawn from ``seed``); ``info``: sizes and the rows each filter dropped (none)."""
    raw = data.read_interactions(hierarchical_sessions(n_users, seed=seed, **knobs))
    return preprocess(raw, test_fraction, seed=seed + 1, session_gap=session_gap)


def first_in_session(frame: pl.DataFrame) -> np.ndarray:
    """Row positions of the events that open a session other than the user's first (sorted)."""
    user, session = frame["user"].to_numpy(), frame["session"].to_numpy()
    opens = np.zeros(len(user), bool)
    opens[1:] = (user[1:] == user[:-1]) & (session[1:] != session[:-1])
    return np.flatnonzero(opens)


def table1_models(n_items: int, hidden: int) -> dict[str, models.Model]:
    """Table 1's three models, each a GRU of ``hidden`` units over one-hot items."""
    return {
        "rnn": models.SessionRNN(n_items, cells.GRU(hidden), reset="user"),
        "hgru": models.HRNN(n_items, cells.GRU(hidden), user_cell=cells.GRU(hidden),
                            close_at="target"),
        "hrnn_meta": meta.HRNNMeta(n_items, cells.GRU(hidden)),
    }


def table1(n_users: int = 2500, *, seed: int = 0, hidden: int = 32,
           train: TrainConfig = TrainConfig(epochs=15, batch_size=50, window=10,
                                             optimizer="adam", learning_rate=1e-2,
                                             loss="full-ce"),
           names=("rnn", "hgru", "hrnn_meta"), keep_fitted: bool = False,
           log: Callable[[str], None] | None = None) -> dict:
    """Train Table 1's models and measure them: ``{"models": {name: {"ppl", "seconds_per_epoch",
    "n", "catalogue"}}, "data": info}``.

    ``seconds_per_epoch``: the mean wall time of the training epochs after the first (which
    compiles). With ``keep_fitted``, also ``"fitted": {name: (model, params)}`` and ``"test"``
    (the test users' encoded events). ``ppl``: :func:`hrnn_jax.evaluation.perplexity` of the test users' first items of
    every session but their first, from the full softmax over the catalogue.
    """
    encoded, tr, te, info = table1_data(n_users, seed=seed)
    events = first_in_session(te)
    info = {**info, "evaluated": int(len(events))}
    out, fitted = {}, {}
    for name, model in table1_models(encoded.n_items, hidden).items():
        if name not in names:
            continue
        t0 = time.perf_counter()
        fit = training.fit(model, tr, train, targets="user", log=None)
        seconds = [h["seconds"] for h in fit.history[1:]] or [fit.history[0]["seconds"]]
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
    """Table 2's data: ``(encoded, train, test, item_features [N+1, 3], user_features [U, n_bets],
    info)``. Item features: (even, odd, start); user features: the one-hot first bet (zeros for a
    sequence without bets)."""
    log = betting(n_sequences, seed=seed, n_bets=n_bets, **knobs)
    raw = data.read_interactions(log.drop("first"), value_col="value")
    encoded, train, test, info = preprocess(raw, test_fraction, seed=seed + 1)
    ids = encoded.item_ids
    item_features = np.zeros((len(ids), 3), np.float32)
    for code in range(1, len(ids)):
        item_features[code, 2 if ids[code] == "start" else int(ids[code]) % 2] = 1.0
    first = dict(zip(log["user"].cast(pl.String).to_list(), log["first"].to_list()))
    user_features = np.zeros((encoded.n_users, n_bets), np.float32)
    for code, raw_id in enumerate(encoded.user_ids):
        if first[str(raw_id)] >= 0:
            user_features[code, first[str(raw_id)]] = 1.0
    return encoded, train, test, item_features, user_features, info


def table2_models(n_items: int, hidden: int, item_features, user_features) -> dict:
    """Table 2's rows, each an HRNN-meta GRU with the information its name says."""
    gru = cells.GRU(hidden)
    return {
        "none": meta.HRNNMeta(n_items, gru, item_input="none"),
        "item": meta.HRNNMeta(n_items, gru, item_input="features", item_features=item_features),
        "seq": meta.HRNNMeta(n_items, gru),
        "all": meta.HRNNMeta(n_items, gru, item_features=item_features,
                             user_features=user_features, feedback=True),
    }


def table2(n_sequences: int = 1000, *, seed: int = 0, hidden: int = 32,
           train: TrainConfig = TrainConfig(epochs=30, batch_size=50, window=10,
                                             optimizer="adam", learning_rate=1e-2,
                                             loss="full-ce"),
           log: Callable[[str], None] | None = None) -> dict:
    """Train Table 2's rows and measure them: ``{"models": {row: {"ppl", "n", "catalogue"}},
    "data": info}``; the perplexity is over every bet of the test sequences."""
    encoded, tr, te, item_f, user_f, info = table2_data(n_sequences, seed=seed)
    events = meta_baselines.consecutive_pairs(te)["row"]  # every bet (not the start event)
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
