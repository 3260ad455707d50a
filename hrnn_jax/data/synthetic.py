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

DEFAULT_KNOBS = dict(n_successors=3, n_user_topics=3, n_favourites=6, fav_zipf=1.0,
                     p_transition=0.3, p_favourite=0.6, persistence=0.5, zipf=1.0, topic_zipf=1.0,
                     with_session=False, with_topic=False)
_DAY = 86400.0

# Strong, lasting per-user tastes (the Donkers et al. 2017 experiment's default data): no drift,
# most events are one of the user's favourites, long histories of many short sessions. A user
# embedding can hold these favourites outright; a GRU over the sequence must keep them in its state.
LASTING_TASTES = dict(drift=0.0, p_favourite=0.7, p_transition=0.2, n_favourites=8,
                      n_user_topics=3, persistence=0.3, sessions_per_user=(15, 30),
                      session_length=(2, 8))


class _Catalogue:
    """Items at "positions" grouped contiguously by topic (item id = ``perm[pos] + 1``), with a
    Zipf popularity over positions, and the draws the generator makes from them (every draw from
    the one ``rng``, in the generator's order)."""

    def __init__(self, rng, n_items: int, n_topics: int, zipf: float):
        self.rng = rng
        self.perm = rng.permutation(n_items)
        self.sizes = np.array([len(a) for a in np.array_split(np.arange(n_items), n_topics)])
        self.starts = np.r_[0, np.cumsum(self.sizes)[:-1]]
        self.topic_of = np.repeat(np.arange(n_topics), self.sizes)
        self.cum = np.cumsum(1.0 / (rng.permutation(n_items) + 1.0) ** zipf)
        cum0 = np.r_[0.0, self.cum]
        self.lo_mass = cum0[self.starts]
        self.mass = cum0[self.starts + self.sizes] - cum0[self.starts]

    def popular(self, t):
        """Popularity-weighted positions inside topics ``t`` (any shape)."""
        r = self.lo_mass[t] + self.rng.random(np.shape(t)) * self.mass[t]
        return np.clip(np.searchsorted(self.cum, r, side="right"), self.starts[t],
                       self.starts[t] + self.sizes[t] - 1)

    def uniform(self, t):
        """Uniform positions inside topics ``t``."""
        return self.starts[t] + (self.rng.random(np.shape(t)) * self.sizes[t]).astype(np.int64)

    def distinct(self, t, n):
        """``n`` distinct uniform positions inside each topic of the 1-d array ``t``."""
        keys = self.rng.random((t.size, self.sizes.max()))
        keys[np.arange(self.sizes.max())[None, :] >= self.sizes[t][:, None]] = np.inf
        return self.starts[t][:, None] + np.argsort(keys, axis=1)[:, :n]

    def successors(self, ns: int):
        """The within-topic Markov graph: ``ns`` successors per position (self-loops redrawn,
        kept only in one-item topics) and their weights."""
        n_items = len(self.topic_of)
        succ = self.uniform(np.repeat(self.topic_of[:, None], ns, axis=1))
        for _ in range(100):
            bad = np.nonzero((succ == np.arange(n_items)[:, None])
                             & (self.sizes[self.topic_of][:, None] > 1))
            if not bad[0].size:
                break
            succ[bad] = self.uniform(self.topic_of[bad[0]])
        w_succ = 1.0 / np.arange(1, ns + 1)
        return succ, w_succ / w_succ.sum()


def _tastes(cat: _Catalogue, U: int, T: int, k: dict):
    """Each user's distinct preferred topics (Gumbel top-m by topic weight), their cumulative
    weights and the user's favourites in each: ``(topics [U, m], tcum [U, m], fav [U, m, nf],
    w_fav [nf], tw [T])``."""
    rng = cat.rng
    m, nf = min(int(k["n_user_topics"]), T), min(int(k["n_favourites"]), int(cat.sizes.min()))
    tw = 1.0 / (rng.permutation(T) + 1.0) ** k["topic_zipf"]
    tw /= tw.sum()
    topics = np.argsort(rng.gumbel(size=(U, T)) - np.log(tw), axis=1)[:, :m]
    tcum = np.cumsum(rng.dirichlet(np.ones(m), size=U), axis=1)
    fav = cat.distinct(topics.ravel(), nf).reshape(U, m, nf)
    return topics, tcum, fav, 1.0 / np.arange(1, nf + 1) ** k["fav_zipf"], tw


def _drift(cat: _Catalogue, topics, fav, tw, drift: float) -> None:
    """Between sessions: some users replace a preferred topic, some a favourite (kept
    distinct); in place."""
    rng, (U, m, nf) = cat.rng, fav.shape
    d = np.flatnonzero(rng.random(U) < drift)  # replace one preferred topic
    ds, nt = rng.integers(0, m, d.size), rng.choice(len(tw), size=d.size, p=tw)
    topics[d, ds] = nt
    fav[d, ds] = cat.distinct(nt, nf)
    d = np.flatnonzero(rng.random(U) < drift)  # replace one favourite (kept distinct)
    ds = rng.integers(0, m, d.size)
    new = cat.uniform(topics[d, ds])
    ok = ~(fav[d, ds] == new[:, None]).any(axis=1)
    fav[d[ok], ds[ok], rng.integers(0, nf, ok.sum())] = new[ok]


def _session(cat: _Catalogue, topic, fav_s, w_fav, succ, w_succ, L: int, k: dict):
    """One session of every user in topic ``topic [U]`` with favourites ``fav_s [U, nf]``:
    positions ``[U, L]``. A step follows the Markov graph, picks a favourite not yet picked in
    the session, or draws by popularity."""
    rng, (U, nf) = cat.rng, fav_s.shape
    p_t, p_f = float(k["p_transition"]), float(k["p_favourite"])
    users, out = np.arange(U), np.zeros((U, L), dtype=np.int64)
    cur = np.zeros(U, dtype=np.int64)
    unused = np.ones((U, nf), dtype=bool)  # favourites not yet picked in this session
    for step in range(L):
        r = rng.random(U)
        wc = np.cumsum(unused * w_fav, axis=1)
        j = (rng.random(U)[:, None] * wc[:, -1:] < wc).argmax(axis=1)
        favourite, background = fav_s[users, j], cat.popular(topic)
        if step == 0:
            pick_fav = (r < p_f / (1.0 - p_t)) & (wc[:, -1] > 0)
            cur = np.where(pick_fav, favourite, background)
        else:
            follow = succ[cur, rng.choice(len(w_succ), size=U, p=w_succ)]
            pick_fav = (r >= p_t) & (r < p_t + p_f) & (wc[:, -1] > 0)
            nxt = np.where(pick_fav, favourite, background)
            cur = np.where((r < p_t) | (nxt == cur), follow, nxt)
            pick_fav &= cur == nxt  # the favourite was actually emitted
        unused[users, j] &= ~pick_fav
        out[:, step] = cur
    return out


def _times(rng, lens, U: int, S: int, L: int):
    """Timestamps ``[U, S, L]``: short gaps inside sessions, long idle gaps between them; and
    which steps of each session are real (``lens [U, S]`` steps)."""
    valid_l = np.arange(L)[None, None, :] < lens[:, :, None]
    gaps = np.clip(rng.lognormal(np.log(45.0), 1.0, (U, S, L)), 2.0, 1500.0)
    gaps[:, :, 0] = 0.0
    within = np.cumsum(gaps * valid_l, axis=2)
    idle = 3600.0 + rng.exponential(1.5 * _DAY, (U, S))
    step_s = np.concatenate([np.zeros((U, 1)), within[:, :-1, -1] + idle[:, 1:]], axis=1)
    start = rng.uniform(0.0, 7 * _DAY, (U, 1)) + np.cumsum(step_s, axis=1)
    return start[:, :, None] + within, valid_l


def _check(n_users, n_items, n_topics, sessions_per_user, session_length, drift, k) -> None:
    (s_lo, s_hi), (l_lo, l_hi) = sessions_per_user, session_length
    if not (n_users >= 1 and 1 <= n_topics <= n_items and 1 <= s_lo <= s_hi and 1 <= l_lo <= l_hi):
        raise ValueError("need n_users >= 1, 1 <= n_topics <= n_items and valid (lo, hi) ranges")
    p_t, p_f = float(k["p_transition"]), float(k["p_favourite"])
    if not (0 <= p_t < 1 and 0 <= p_f and p_t + p_f <= 1 and 0 <= drift <= 1):
        raise ValueError("need 0 <= p_transition < 1, p_favourite >= 0, their sum <= 1, "
                         "0 <= drift <= 1")


def generate(n_users=1000, n_items=1000, *, n_topics=20, sessions_per_user=(5, 15),
             session_length=(3, 12), drift=0.1, seed=0, **knobs) -> pl.DataFrame:
    """Generate a hierarchical interaction log; see the module docstring."""
    unknown = set(knobs) - set(DEFAULT_KNOBS)
    if unknown:
        raise TypeError(f"unknown knobs: {sorted(unknown)}")
    k = {**DEFAULT_KNOBS, **knobs}
    _check(n_users, n_items, n_topics, sessions_per_user, session_length, drift, k)
    (s_lo, s_hi), (l_lo, l_hi) = sessions_per_user, session_length
    rng = np.random.default_rng(seed)
    U, T = int(n_users), int(n_topics)
    cat = _Catalogue(rng, n_items, T, k["zipf"])
    succ, w_succ = cat.successors(int(k["n_successors"]))
    topics, tcum, fav, w_fav, tw = _tastes(cat, U, T, k)
    S, L = int(s_hi), int(l_hi)
    n_sess = rng.integers(s_lo, s_hi + 1, U)
    lens = rng.integers(l_lo, l_hi + 1, (U, S))
    pos = np.zeros((U, S, L), dtype=np.int64)
    users = np.arange(U)
    slot = np.zeros(U, dtype=np.int64)
    for s in range(S):
        _drift(cat, topics, fav, tw, drift)
        fresh = (rng.random(U)[:, None] < tcum).argmax(axis=1)
        slot = fresh if s == 0 else np.where(rng.random(U) < k["persistence"], slot, fresh)
        pos[:, s] = _session(cat, topics[users, slot], fav[users, slot], w_fav, succ, w_succ, L, k)
    time, valid_l = _times(rng, lens, U, S, L)
    valid = valid_l & (np.arange(S)[None, :, None] < n_sess[:, None, None])
    user_col = np.broadcast_to(users[:, None, None] + 1, valid.shape)[valid]
    cols = {"user": pl.Series("user", user_col, pl.Int64),
            "item": pl.Series("item", cat.perm[pos[valid]] + 1, pl.Int64),
            "time": pl.Series("time", time[valid], pl.Float64)}
    if k["with_session"]:
        session = np.broadcast_to(np.arange(S)[None, :, None], valid.shape)[valid]
        cols["session"] = pl.Series("session", session, pl.Int64)
    if k["with_topic"]:
        cols["topic"] = pl.Series("topic", cat.topic_of[pos[valid]], pl.Int64)
    return pl.DataFrame(cols)
