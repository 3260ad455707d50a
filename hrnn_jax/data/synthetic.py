"""Synthetic interaction logs with real session *and* user structure.

``generate`` returns a polars frame ``user`` (Int64, 1-based), ``item`` (Int64,
1-based raw ids), ``time`` (Float64 seconds), sorted by user then time, in which
a hierarchical (user-aware) recommender should beat a session-only one, which
should beat global popularity (POP).  numpy only, deterministic given ``seed``.

Generative story:

* **Items, topics, popularity.** Items are split at random into ``n_topics``
  topics of near-equal size.  Item popularity is Zipf-like (``1 / rank**zipf``
  over a random ranking) and topics are Zipf-weighted too (``topic_zipf``), so
  POP is a sensible but weak baseline.
* **Session signal.** Inside each topic a sparse random Markov graph gives each
  item ``n_successors`` uniformly drawn successors in its topic (never itself),
  weighted ``1, 1/2, 1/3, ...``: the current item predicts the next one.
* **User signal.** Each user has ``n_user_topics`` distinct preferred topics
  (drawn by topic weight) with Dirichlet(1) preferences, and in each topic
  ``n_favourites`` distinct favourite items (uniform in the topic, so unrelated
  to popularity) with Zipf(``fav_zipf``) weights.  Favourites recur across the
  user's sessions but are *not* reused within a session (a favourite already
  picked in this session is skipped), so only the user's earlier sessions,
  never the current one, reveal which items they will pick.
* **Sessions.** A session's intent topic is the previous session's topic slot
  with probability ``persistence``, else a fresh draw from the user's topic
  preferences.  The first item is an unused favourite with probability
  ``p_favourite / (1 - p_transition)``, else a popularity draw in the topic.
  Each later item is, with probability ``p_transition``, a Markov successor of
  the current item (session signal); with probability ``p_favourite`` an unused
  favourite of the user in the session topic (user signal); otherwise (or once
  the favourites are used up) a popularity draw in the topic.  An immediate
  repeat of the current item is replaced by a Markov successor.
* **Drift.** Before each session, with probability ``drift`` one preferred topic
  is replaced by a new topic (drawn by topic weight, favourites redrawn) and,
  independently with probability ``drift``, one favourite is replaced.
* **Sizes.** Sessions per user and session lengths are uniform integers in the
  inclusive ranges ``sessions_per_user`` and ``session_length``.
* **Time.** Users start uniformly within the first week.  Consecutive events of a
  session are ``clip(lognormal(log 45 s, 1), 2 s, 1500 s)`` apart; sessions are
  separated by ``3600 s + Exponential(mean 1.5 days)`` of idle time, so cutting
  each user's events at idle gaps > 1800 s recovers the generated sessions.

Knobs (keyword-only, defaults in ``DEFAULT_KNOBS``): the names above, plus
``with_session`` (add an Int64 ``session`` column, the 0-based index of the
session within its user: ground truth for tests) and ``with_topic`` (add an Int64
``topic`` column, the event's item's topic: the known topics of the HCRNN
analyses).
"""

from __future__ import annotations

import numpy as np
import polars as pl

DEFAULT_KNOBS = dict(n_successors=3, n_user_topics=3, n_favourites=6, fav_zipf=1.0, p_transition=0.3,
                     p_favourite=0.6, persistence=0.5, zipf=1.0, topic_zipf=1.0, with_session=False,
                     with_topic=False)
_DAY = 86400.0

# Strong, lasting per-user tastes (the Donkers et al. 2017 experiment's default data): no drift,
# most events are one of the user's favourites, long histories of many short sessions. A user
# embedding can hold these favourites outright; a GRU over the sequence must keep them in its state.
LASTING_TASTES = dict(drift=0.0, p_favourite=0.7, p_transition=0.2, n_favourites=8,
                      n_user_topics=3, persistence=0.3, sessions_per_user=(15, 30),
                      session_length=(2, 8))


def generate(n_users=1000, n_items=1000, *, n_topics=20, sessions_per_user=(5, 15), session_length=(3, 12),
             drift=0.1, seed=0, **knobs) -> pl.DataFrame:
    """Generate a hierarchical interaction log; see the module docstring."""
    unknown = set(knobs) - set(DEFAULT_KNOBS)
    if unknown:
        raise TypeError(f"unknown knobs: {sorted(unknown)}")
    k = {**DEFAULT_KNOBS, **knobs}
    (s_lo, s_hi), (l_lo, l_hi) = sessions_per_user, session_length
    if not (n_users >= 1 and 1 <= n_topics <= n_items and 1 <= s_lo <= s_hi and 1 <= l_lo <= l_hi):
        raise ValueError("need n_users >= 1, 1 <= n_topics <= n_items and valid (lo, hi) ranges")
    p_t, p_f = float(k["p_transition"]), float(k["p_favourite"])
    if not (0 <= p_t < 1 and 0 <= p_f and p_t + p_f <= 1 and 0 <= drift <= 1):
        raise ValueError("need 0 <= p_transition < 1, p_favourite >= 0, their sum <= 1, 0 <= drift <= 1")
    rng = np.random.default_rng(seed)
    U, T = int(n_users), int(n_topics)

    # Items live at "positions" grouped contiguously by topic; item id = perm[pos] + 1.
    perm = rng.permutation(n_items)
    sizes = np.array([len(a) for a in np.array_split(np.arange(n_items), T)])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    topic_of = np.repeat(np.arange(T), sizes)
    cum = np.cumsum(1.0 / (rng.permutation(n_items) + 1.0) ** k["zipf"])
    cum0 = np.r_[0.0, cum]
    lo_mass, mass = cum0[starts], cum0[starts + sizes] - cum0[starts]

    def sample_pop(t):  # popularity-weighted positions inside topics t (any shape)
        r = lo_mass[t] + rng.random(np.shape(t)) * mass[t]
        return np.clip(np.searchsorted(cum, r, side="right"), starts[t], starts[t] + sizes[t] - 1)

    def sample_uni(t):  # uniform positions inside topics t
        return starts[t] + (rng.random(np.shape(t)) * sizes[t]).astype(np.int64)

    def distinct(t, n):  # n distinct uniform positions inside each topic of the 1-d array t
        keys = rng.random((t.size, sizes.max()))
        keys[np.arange(sizes.max())[None, :] >= sizes[t][:, None]] = np.inf
        return starts[t][:, None] + np.argsort(keys, axis=1)[:, :n]

    # Within-topic Markov graph, self-loops redrawn (kept only in one-item topics).
    ns = int(k["n_successors"])
    succ = sample_uni(np.repeat(topic_of[:, None], ns, axis=1))
    for _ in range(100):
        bad = np.nonzero((succ == np.arange(n_items)[:, None]) & (sizes[topic_of][:, None] > 1))
        if not bad[0].size:
            break
        succ[bad] = sample_uni(topic_of[bad[0]])
    w_succ = 1.0 / np.arange(1, ns + 1)
    w_succ /= w_succ.sum()

    # User tastes: distinct preferred topics (Gumbel top-m by topic weight), favourites.
    m, nf = min(int(k["n_user_topics"]), T), min(int(k["n_favourites"]), int(sizes.min()))
    tw = 1.0 / (rng.permutation(T) + 1.0) ** k["topic_zipf"]
    tw /= tw.sum()
    topics = np.argsort(rng.gumbel(size=(U, T)) - np.log(tw), axis=1)[:, :m]
    tcum = np.cumsum(rng.dirichlet(np.ones(m), size=U), axis=1)
    fav = distinct(topics.ravel(), nf).reshape(U, m, nf)
    w_fav = 1.0 / np.arange(1, nf + 1) ** k["fav_zipf"]

    S, L = int(s_hi), int(l_hi)
    n_sess = rng.integers(s_lo, s_hi + 1, U)
    lens = rng.integers(l_lo, l_hi + 1, (U, S))
    pos = np.zeros((U, S, L), dtype=np.int64)
    users = np.arange(U)
    slot = np.zeros(U, dtype=np.int64)
    for s in range(S):
        d = np.flatnonzero(rng.random(U) < drift)  # replace one preferred topic
        ds, nt = rng.integers(0, m, d.size), rng.choice(T, size=d.size, p=tw)
        topics[d, ds] = nt
        fav[d, ds] = distinct(nt, nf)
        d = np.flatnonzero(rng.random(U) < drift)  # replace one favourite (kept distinct)
        ds = rng.integers(0, m, d.size)
        new = sample_uni(topics[d, ds])
        ok = ~(fav[d, ds] == new[:, None]).any(axis=1)
        fav[d[ok], ds[ok], rng.integers(0, nf, ok.sum())] = new[ok]
        fresh = (rng.random(U)[:, None] < tcum).argmax(axis=1)
        slot = fresh if s == 0 else np.where(rng.random(U) < k["persistence"], slot, fresh)
        topic = topics[users, slot]
        cur = np.zeros(U, dtype=np.int64)
        unused = np.ones((U, nf), dtype=bool)  # favourites not yet picked in this session
        for step in range(L):
            r = rng.random(U)
            wc = np.cumsum(unused * w_fav, axis=1)
            j = (rng.random(U)[:, None] * wc[:, -1:] < wc).argmax(axis=1)
            favourite, background = fav[users, slot, j], sample_pop(topic)
            if step == 0:
                pick_fav = (r < p_f / (1.0 - p_t)) & (wc[:, -1] > 0)
                cur = np.where(pick_fav, favourite, background)
            else:
                follow = succ[cur, rng.choice(ns, size=U, p=w_succ)]
                pick_fav = (r >= p_t) & (r < p_t + p_f) & (wc[:, -1] > 0)
                nxt = np.where(pick_fav, favourite, background)
                cur = np.where((r < p_t) | (nxt == cur), follow, nxt)
                pick_fav &= cur == nxt  # the favourite was actually emitted
            unused[users, j] &= ~pick_fav
            pos[:, s, step] = cur

    # Timestamps: short gaps inside sessions, long idle gaps between them.
    valid_l = np.arange(L)[None, None, :] < lens[:, :, None]
    gaps = np.clip(rng.lognormal(np.log(45.0), 1.0, (U, S, L)), 2.0, 1500.0)
    gaps[:, :, 0] = 0.0
    within = np.cumsum(gaps * valid_l, axis=2)
    idle = 3600.0 + rng.exponential(1.5 * _DAY, (U, S))
    step_s = np.concatenate([np.zeros((U, 1)), within[:, :-1, -1] + idle[:, 1:]], axis=1)
    start = rng.uniform(0.0, 7 * _DAY, (U, 1)) + np.cumsum(step_s, axis=1)
    time = start[:, :, None] + within

    valid = valid_l & (np.arange(S)[None, :, None] < n_sess[:, None, None])
    cols = {
        "user": pl.Series("user", np.broadcast_to(users[:, None, None] + 1, valid.shape)[valid], pl.Int64),
        "item": pl.Series("item", perm[pos[valid]] + 1, pl.Int64),
        "time": pl.Series("time", time[valid], pl.Float64),
    }
    if k["with_session"]:
        cols["session"] = pl.Series("session", np.broadcast_to(np.arange(S)[None, :, None], valid.shape)[valid],
                                    pl.Int64)
    if k["with_topic"]:
        cols["topic"] = pl.Series("topic", topic_of[pos[valid]], pl.Int64)
    return pl.DataFrame(cols)
