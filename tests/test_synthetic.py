"""Tests for hrnn_jax.synthetic: format, determinism, sizes, sessions, and real structure."""

import numpy as np
import polars as pl
import pytest

from hrnn_jax.data.synthetic import generate

GAP = 1800.0


@pytest.fixture(scope="module")
def default_log():
    return generate(with_session=True)


def test_columns_and_dtypes():
    df = generate(50, 100, seed=1)
    assert df.columns == ["user", "item", "time"]
    assert df.schema == {"user": pl.Int64, "item": pl.Int64, "time": pl.Float64}
    assert df.height > 0 and df.null_count().sum_horizontal().item() == 0
    assert df.equals(df.sort("user", "time"))  # sorted by user, then time
    assert generate(5, 30, with_session=True).schema["session"] == pl.Int64


def test_deterministic():
    a, b, c = generate(80, 120, seed=7), generate(80, 120, seed=7), generate(80, 120, seed=8)
    assert a.equals(b)
    assert not a.equals(c)


def test_unknown_knob_and_bad_args():
    with pytest.raises(TypeError):
        generate(10, 20, not_a_knob=1)
    with pytest.raises(ValueError):
        generate(10, 20, n_topics=30)
    with pytest.raises(ValueError):
        generate(10, 20, p_transition=0.7, p_favourite=0.5)


@pytest.mark.parametrize("n_users,n_items,n_topics,spu,slen", [
    (1000, 1000, 20, (5, 15), (3, 12)),
    (37, 45, 7, (1, 3), (1, 4)),
    (10, 5, 5, (2, 2), (6, 6)),  # one-item topics, more events than favourites
])
def test_sizes_follow_arguments(n_users, n_items, n_topics, spu, slen):
    df = generate(n_users, n_items, n_topics=n_topics, sessions_per_user=spu, session_length=slen,
                  seed=3, with_session=True)
    assert (df["user"].n_unique() == n_users and df["user"].min() == 1
            and df["user"].max() == n_users)
    assert df["item"].min() >= 1 and df["item"].max() <= n_items
    per_user = df.group_by("user").agg(pl.col("session").n_unique().alias("n"),
                                       pl.col("session").max().alias("mx"))
    assert per_user["n"].min() >= spu[0] and per_user["n"].max() <= spu[1]
    assert (per_user["n"] == per_user["mx"] + 1).all()
    lengths = df.group_by("user", "session").len()["len"]
    assert lengths.min() >= slen[0] and lengths.max() <= slen[1]
    if n_users >= 1000:  # the ranges are actually used, not just respected
        assert (per_user["n"].min(), per_user["n"].max()) == spu
        assert (lengths.min(), lengths.max()) == slen


def _sessionise(df, gap=GAP):
    """Cut each user's time-ordered events at idle gaps > gap; adds a global session id ``sid``."""
    return df.sort("user", "time").with_columns(
        (pl.col("time").diff().over("user").fill_null(float("inf")) > gap).cum_sum().alias("sid"))


def test_gap_sessionising_recovers_sessions(default_log):
    df = default_log.sort("user", "time").with_columns(
        pl.col("time").diff().over("user").alias("dt"),
        (pl.col("session") != pl.col("session").shift().over("user")).alias("boundary"))
    inner = df.filter(~pl.col("boundary"))["dt"]
    between = df.filter(pl.col("boundary"))["dt"]
    assert inner.min() > 0 and inner.max() < GAP
    assert between.min() > GAP
    s = _sessionise(default_log)
    truth = s.group_by("user", "session").agg(pl.col("sid").unique())
    assert (truth["sid"].list.len() == 1).all()  # no generated session is split ...
    assert truth["sid"].list.first().n_unique() == truth.height  # ... and none are merged


def _last_session_split(df):
    """train = all sessions but each user's last; test = next-item pairs inside the last session."""
    s = _sessionise(df).with_columns(
        (pl.col("sid") == pl.col("sid").max().over("user")).alias("last"))
    pairs = s.with_columns(pl.col("item").shift(-1).over("sid").alias("nxt")).drop_nulls("nxt")
    return s.filter(~pl.col("last")), pairs.filter(~pl.col("last")), pairs.filter(pl.col("last"))


def counting_hit_rates(df, k=5):
    """Hit@k of three counting predictors for next-item prediction in each user's last session.

    pop:      the k most frequent training items.
    trans:    first-order transitions, P(next | current) from training pairs (session-only).
    personal: trans + the user's own training item frequencies, restricted to items ever seen
              after the current item (a rough same-topic filter, as the user's counts span all
              their topics).  Ties are broken by popularity in all three.
    """
    train, train_pairs, test = _last_session_split(df)
    n_items, n_users = int(df["item"].max()) + 1, int(df["user"].max()) + 1
    pop = np.bincount(train["item"].to_numpy(), minlength=n_items).astype(float)
    trans = np.zeros((n_items, n_items))
    np.add.at(trans, (train_pairs["item"].to_numpy(), train_pairs["nxt"].to_numpy()), 1.0)
    own = np.zeros((n_users, n_items))
    np.add.at(own, (train["user"].to_numpy(), train["item"].to_numpy()), 1.0)
    pop /= pop.sum()
    trans_p = trans / np.maximum(trans.sum(1, keepdims=True), 1.0)
    own_p = own / np.maximum(own.sum(1, keepdims=True), 1.0)
    cur, nxt, user = (test[c].to_numpy() for c in ("item", "nxt", "user"))

    def hit(score):
        score = score + 1e-9 * pop
        score[:, 0] = -np.inf  # id 0 is unused
        top = np.argpartition(-score, k, axis=1)[:, :k]
        return float((top == nxt[:, None]).any(axis=1).mean())

    return {
        "pop": hit(np.tile(pop, (len(cur), 1))),
        "trans": hit(trans_p[cur]),
        "personal": hit(trans_p[cur] + own_p[user] * (trans[cur] > 0)),
        "n_test": len(cur),
    }


def test_structure_session_and_user_signal(default_log):
    h = counting_hit_rates(default_log.drop("session"))
    print(h)
    assert h["n_test"] > 3000
    assert h["pop"] > 5 / 1000  # popularity skew: POP beats random ...
    assert h["trans"] > 3 * h["pop"]  # ... the current item predicts the next far better ...
    # ... and the user's history adds what the session can't see
    assert h["personal"] >= 1.10 * h["trans"]


def test_structure_other_seed_and_size():
    h = counting_hit_rates(generate(800, 800, n_topics=16, seed=11))
    assert h["trans"] > 3 * h["pop"]
    assert h["personal"] >= 1.10 * h["trans"]


def test_no_user_signal_without_favourites():
    """Control: with p_favourite=0 the user's history should not help beyond the transitions."""
    h = counting_hit_rates(generate(p_favourite=0.0, seed=2))
    assert h["personal"] < 1.05 * h["trans"]


def test_with_topic_adds_each_items_topic_and_changes_nothing_else():
    plain = generate(60, 120, n_topics=6, seed=3)
    topical = generate(60, 120, n_topics=6, seed=3, with_topic=True)
    assert topical.drop("topic").equals(plain)
    per_item = topical.group_by("item").agg(pl.col("topic").n_unique().alias("n"),
                                            pl.col("topic").first().alias("t"))
    assert (per_item["n"] == 1).all()  # an item has one topic
    assert set(per_item["t"].to_list()) <= set(range(6)) and per_item["t"].n_unique() > 1
