"""Tests for hrnn_jax.data: reading, sessions, filters, codes and splits."""
import datetime as dt

import numpy as np
import polars as pl
import pytest

from hrnn_jax import data
from hrnn_jax.data import DataError


def raw(users, items, times, **extra):
    return pl.DataFrame({"user": users, "item": items, "time": times, **extra})


def enc(users, items, times, sessions):
    """A frame in the encoded schema."""
    return pl.DataFrame({"user": users, "item": items, "time": times, "session": sessions},
                        schema={"user": pl.Int32, "item": pl.Int32, "time": pl.Float64,
                                "session": pl.Int32})


SMALL = raw(["u1", "u1", "u2"], ["a", "b", "a"], [1.0, 2.0, 3.0])


# ---------------------------------------------------------------- reading
@pytest.mark.parametrize("name,writer,sep", [
    ("x.csv", lambda df, p: df.write_csv(p), None),
    ("x.tsv", lambda df, p: df.write_csv(p, separator="\t"), None),
    ("x.txt", lambda df, p: df.write_csv(p, separator=";"), ";"),
    ("x.parquet", lambda df, p: df.write_parquet(p), None),
])
def test_round_trip(tmp_path, name, writer, sep):
    src = raw(["u1", "u1", "u2"], ["007", "b", "007"], [1, 2, 3])
    writer(src, tmp_path / name)
    out = data.read_interactions(tmp_path / name, sep=sep)
    assert out.columns == ["user", "item", "time"]
    assert out.schema["item"] == pl.String and out.schema["time"] == pl.Float64
    assert out["item"].to_list() == ["007", "b", "007"]  # leading zeros kept in CSV too
    assert out["time"].to_list() == [1.0, 2.0, 3.0]


def test_custom_columns_ms_and_int_ids(tmp_path):
    src = pl.DataFrame({"uid": [10, 2], "iid": [5, 7], "ts": [1500, 3000],
                        "kind": ["click", "view"], "r": [1, 4]})
    src.write_csv(tmp_path / "x.csv")
    out = data.read_interactions(tmp_path / "x.csv", user_col="uid", item_col="iid",
                                 time_col="ts", time_unit="ms", event_col="kind", value_col="r")
    assert out.columns == ["user", "item", "time", "event", "value"]
    assert out["user"].to_list() == ["10", "2"]
    assert out["time"].to_list() == [1.5, 3.0]
    assert out.schema["value"] == pl.Float64 and out["event"].to_list() == ["click", "view"]


def test_datetime_time_column():
    t0 = dt.datetime(2020, 1, 1)
    out = data.read_interactions(raw(["u"] * 2, ["a", "b"], [t0, t0 + dt.timedelta(seconds=90)]))
    assert out["time"].to_list() == [1577836800.0, 1577836890.0]


def test_missing_column_named(tmp_path):
    with pytest.raises(DataError, match=r"'ts'.*columns present.*'time'"):
        data.read_interactions(SMALL, time_col="ts")


def test_bad_sep_reports_missing_columns(tmp_path):
    SMALL.write_csv(tmp_path / "x.csv", separator=";")
    with pytest.raises(DataError, match=r"missing column.*user;item;time"):
        data.read_interactions(tmp_path / "x.csv")


def test_non_numeric_time():
    with pytest.raises(DataError, match=r"time column 'time' is not numeric \(dtype String\)"):
        data.read_interactions(raw(["u"], ["a"], ["yesterday"]))


@pytest.mark.parametrize("times", [[1.0, None, 3.0, None], [1.0, float("nan"), 3.0, None],
                                   [1.0, float("inf"), 3.0, -float("inf")]])
def test_null_nan_or_infinite_time(times):
    with pytest.raises(DataError, match=r"2 value\(s\) that are not finite \(null, NaN or "
                                        r"infinite\), rows \[1, 3\]"):
        data.read_interactions(raw(["u"] * 4, ["a"] * 4, times))


def test_nan_or_infinite_values():
    frame = raw(["u"] * 3, ["a"] * 3, [1.0, 2.0, 3.0]).with_columns(
        rating=pl.Series([1.0, float("inf"), None]))
    with pytest.raises(DataError, match=r"value column 'rating' has 1 NaN or infinite value"):
        data.read_interactions(frame, value_col="rating")


def test_null_ids(tmp_path):
    (tmp_path / "x.csv").write_text("user,item,time\nu,a,1\nu,,2\n,b,3\n")
    with pytest.raises(DataError, match=r"'user' has 1 null value\(s\), rows \[2\]"):
        data.read_interactions(tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"'item' has 1 null value\(s\), rows \[1\]"):
        data.read_interactions(raw(["u", "u"], ["a", None], [1, 2]))


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("user,item,time\n")
    with pytest.raises(DataError, match="empty file"):
        data.read_interactions(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="no rows"):
        data.read_interactions(tmp_path / "header.csv")
    with pytest.raises(DataError, match="file not found"):
        data.read_interactions(tmp_path / "nope.csv")


def test_unparseable_file_and_bad_unit(tmp_path):
    (tmp_path / "x.parquet").write_text("not a parquet file\nat all")
    with pytest.raises(DataError, match="cannot parse") as err:
        data.read_interactions(tmp_path / "x.parquet")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="time_unit"):
        data.read_interactions(SMALL, time_unit="minutes")


# ---------------------------------------------------------------- sessions
def test_sessionize_gap_boundaries():
    df = raw(["u"] * 4, ["a", "b", "c", "d"], [0.0, 100.0, 200.5, 300.5])
    out = data.sessionize(df, gap=100.0)  # 100 == gap stays; 100.5 > gap splits
    assert out["session"].to_list() == [0, 0, 1, 1]
    assert out.schema["session"] == pl.Int64
    with pytest.raises(DataError, match="gap"):
        data.sessionize(df, gap=0)


def test_sessionize_sorts_and_keeps_ties_stable():
    df = raw(["b", "a", "b", "a", "a"], ["x1", "y1", "x0", "tie1", "tie2"],
             [5.0, 10.0, 1.0, 3000.0, 3000.0])
    out = data.sessionize(df, gap=1800)
    assert out["user"].to_list() == ["a", "a", "a", "b", "b"]
    assert out["item"].to_list() == ["y1", "tie1", "tie2", "x0", "x1"]
    assert out["session"].to_list() == [0, 1, 1, 2, 2]


# ---------------------------------------------------------------- filters
def test_filters_iterate_until_stable():
    df = pl.DataFrame({
        "user": ["u1"] * 4 + ["u2"] * 6,
        "item": ["x", "y", "x", "z", "x", "y", "y", "y", "y", "y"],
        "time": [float(t) for t in range(10)],
        "session": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4],
    })
    out, report = data.filter_interactions(df, min_item_support=3, min_session_len=2,
                                           min_sessions=2)
    # round 1: z (1 row) by support; session 1 (x) by length; u1 (x, y) by sessions.
    # round 2: x now has support 1 -> dropped; session 2 (y) too short. Round 3: u2 keeps 2.
    assert report == {"item_support": 2, "session_length": 2, "user_sessions": 2, "user_events": 0}
    assert out["session"].to_list() == [3, 3, 4, 4]  # not renumbered
    assert out["item"].to_list() == ["y"] * 4


def test_filters_remove_everything():
    df = data.sessionize(SMALL)
    with pytest.raises(DataError, match=r"all 3 rows were removed.*item_support"):
        data.filter_interactions(df, min_item_support=10)


# ---------------------------------------------------------------- repeats within sessions
def test_dedupe_without_event_column_keeps_first_in_session():
    # u1: session 0 = a b a c b (10 s apart), session 1 (an hour later) = a a
    df = data.sessionize(raw(["u1"] * 7 + ["u2"] * 2, ["a", "b", "a", "c", "b", "a", "a", "a", "a"],
                             [0.0, 10, 20, 30, 40, 4000, 4010, 5.0, 6.0], n=list(range(9))))
    out, dropped = data.dedupe_sessions(df)
    assert dropped == 4
    # non-adjacent repeats (a, b) go, the first of each stays; session 1 keeps one a (repeats
    # across sessions are kept); u2's session is another session
    assert out["n"].to_list() == [0, 1, 3, 5, 7]
    assert out.select("user", "item").rows() == [("u1", "a"), ("u1", "b"), ("u1", "c"),
                                                 ("u1", "a"), ("u2", "a")]
    assert out.columns == df.columns
    again, none = data.dedupe_sessions(out)
    assert none == 0 and again.equals(out)


def test_dedupe_with_event_column_uses_the_type():
    df = data.read_interactions(raw(["u"] * 6, ["a", "a", "a", "b", "a", "b"],
                                    [0.0, 1, 2, 3, 4, 5],
                                    kind=["click", "bookmark", "click", "click", "bookmark",
                                          "click"]), event_col="kind")
    out, dropped = data.dedupe_sessions(data.sessionize(df))
    assert dropped == 3
    assert out.select("item", "event", "time").rows() == [
        ("a", "click", 0.0), ("a", "bookmark", 1.0), ("b", "click", 3.0)]


def test_dedupe_keeps_the_earliest_and_needs_sessions():
    # rows out of time order: sessionize sorts, so the kept row is the earliest one
    df = data.sessionize(raw(["u", "u", "u"], ["a", "b", "a"], [9.0, 5.0, 1.0], n=[0, 1, 2]))
    out, dropped = data.dedupe_sessions(df)
    assert dropped == 1 and out["n"].to_list() == [2, 1]
    with pytest.raises(DataError, match="session"):
        data.dedupe_sessions(SMALL)


# ---------------------------------------------------------------- encode
def test_encode_codes_and_round_trip():
    df = data.sessionize(raw(["10", "9", "10", "9"], ["b", "a", "c", "b"], [3.0, 1.0, 2.0, 9e4]))
    e = data.encode(df)
    ev = e.events
    assert e.n_users == 2 and e.n_items == 3
    assert list(e.user_ids) == ["9", "10"]  # integer-looking ids in numeric order
    assert e.item_ids[0] is None and list(e.item_ids[1:]) == ["a", "b", "c"]
    assert ev.schema == {"user": pl.Int32, "item": pl.Int32, "time": pl.Float64,
                         "session": pl.Int32}
    assert ev["user"].to_list() == [0, 0, 1, 1]
    assert ev["session"].to_list() == [0, 1, 2, 2]
    assert sorted(ev["item"].unique().to_list()) == [1, 2, 3]  # contiguous, 0 unused
    assert list(e.decode_items(ev["item"].to_numpy())) == ["a", "b", "c", "b"]
    x = np.array(["c", "a", "b"], dtype=object)
    assert list(e.decode_items(e.encode_items(x))) == list(x)
    with pytest.raises(DataError, match="unknown item id.*'zz'"):
        e.encode_items(["a", "zz"])
    with pytest.raises(DataError, match="unknown item code"):
        e.decode_items([4])


def test_encode_keeps_event_and_value():
    df = data.read_interactions(raw(["u", "u"], [2, 1], [2, 1], kind=["buy", "view"], r=[5, 3]),
                                event_col="kind", value_col="r")
    ev = data.encode(data.sessionize(df)).events
    assert ev.columns == ["user", "item", "time", "session", "event", "value", "event_code"]
    assert ev.select("item", "event", "value", "event_code").rows() == [(1, "view", 3.0, 1),
                                                                         (2, "buy", 5.0, 0)]


# ---------------------------------------------------------------- splits
def test_split_last_session():
    # user 0: sessions 0, 1, 2 (last has an unseen item 9 and item 1); user 1: sessions 3, 4
    # (last session: items 2, 8; 8 unseen -> 1 event left -> short); user 2: one session.
    ev = enc([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2],
             [1, 2, 2, 3, 9, 1, 3, 2, 3, 2, 8, 1, 2],
             [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 0, 1],
             [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5])
    train, test, report = data.split(ev, "last-session")
    assert report == {"test_unseen_items": 2, "test_short_sessions": 1}
    assert test["item"].to_list() == [1, 3] and test["session"].to_list() == [2, 2]
    assert train["session"].to_list() == [0, 0, 1, 1, 3, 3, 5, 5]


def test_split_leave_one_out():
    # user 0: last event item 2 (seen) -> test; user 1: last event item 7 (unseen) -> removed;
    # user 2: one event -> train only. Ties in time: the later row is the last event.
    ev = enc([0, 0, 0, 1, 1, 2], [1, 3, 2, 2, 7, 4], [0, 1, 1, 0, 1, 0], [0, 0, 0, 1, 1, 2])
    train, test, report = data.split(ev, "leave-one-out")
    assert test.rows() == [(0, 2, 1.0, 0)]
    assert report == {"test_unseen_items": 1}
    assert train["item"].to_list() == [1, 3, 2, 4]


def test_split_temporal_fraction():
    # user 0: 10 events -> ceil(0.2*10)=2 test; user 1: 3 events -> ceil(0.6)=1 test;
    # user 2: 1 event -> stays in train.
    ev = enc([0] * 10 + [1] * 3 + [2], [1, 2] * 5 + [1, 2, 5] + [1],
             list(range(10)) + [0, 1, 2] + [0], [0] * 10 + [1] * 3 + [2])
    train, test, report = data.split_temporal(ev, test_fraction=0.2)
    assert test.select("user", "item").rows() == [(0, 1), (0, 2)]
    assert report == {"test_unseen_items": 1}
    assert train.height == 11
    # float rounding: 0.1 * 30 must give 3 test events, not 4
    ev30 = enc([0] * 30, [1] * 30, list(range(30)), [0] * 30)
    assert data.split_temporal(ev30, 0.1)[1].height == 3


@pytest.mark.parametrize("protocol", data.PROTOCOLS)
def test_validation_split_disjoint(protocol):
    rng = np.random.default_rng(0)
    n = 400
    users = np.sort(rng.integers(0, 10, n))
    df = raw(users.astype(str).tolist(), rng.integers(0, 8, n).astype(str).tolist(),
             np.cumsum(rng.exponential(1000.0, n)).tolist())
    ev = data.encode(data.sessionize(df)).events.with_row_index("rid")
    train, test, _ = data.split(ev, protocol)
    train2, valid, _ = data.validation_split(train, protocol)
    parts = [set(p["rid"].to_list()) for p in (train2, valid, test)]
    assert test.height > 0 and valid.height > 0
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts[0] | parts[1] <= set(train["rid"].to_list())
    if protocol == "temporal":  # about 90/5/5
        assert abs(valid.height - test.height) <= 10


def test_bad_protocol():
    with pytest.raises(ValueError, match="protocol must be one of 'last-session', 'leave-one-out', "
                                         "'temporal', 'users'; got 'random'"):
        data.split(enc([0], [1], [0], [0]), "random")


def user_log(n_users, own_item=False):
    """Encoded events: user u has 4 events (in time order, listed in reverse) on items 1..4 and,
    with ``own_item``, a fifth on item 10 + u that no other user has."""
    rows = [(u, i, float(10 * u + i), u) for u in range(n_users) for i in (4, 3, 2, 1)]
    rows += [(u, 10 + u, 10.0 * u + 5, u) for u in range(n_users) if own_item]
    u, i, t, s = zip(*rows)
    return enc(list(u), list(i), list(t), list(s))


def test_split_users_is_a_seeded_random_share_of_the_users():
    ev = user_log(50)
    train, test, report = data.split_users(ev, 0.2, seed=3)
    test_users = set(test["user"].to_list())
    # the first round(0.2 * 50) users of a seeded permutation of the sorted user ids
    assert test_users == set(np.random.default_rng(3).permutation(np.arange(50))[:10].tolist())
    assert report == {"test_unseen_items": 0, "train_users": 40, "test_users": 10}
    assert test_users.isdisjoint(train["user"].to_list())
    assert test.height == 4 * 10 and train.height == 4 * 40  # every event of a test user
    for part in (train, test):  # sorted by (user, time) like the other splits
        assert part.equals(part.sort(["user", "time"]))
    again = data.split_users(ev, 0.2, seed=3)
    assert again[0].equals(train) and again[1].equals(test)
    assert set(data.split_users(ev, 0.2, seed=4)[1]["user"].to_list()) != test_users
    # the named protocol is the same function
    named = data.split(ev, "users", test_fraction=0.2, seed=3)
    assert named[0].equals(train) and named[1].equals(test) and named[2] == report


def test_split_users_removes_unseen_test_items():
    ev = user_log(10, own_item=True)
    train, test, report = data.split_users(ev, 0.3, seed=0)
    assert report == {"test_unseen_items": 3, "train_users": 7, "test_users": 3}
    assert test.height == 3 * 4 and test["item"].max() == 4
    kept = data.split_users(ev, 0.3, seed=0, drop_unseen=False)
    assert kept[1].height == 3 * 5 and kept[2]["test_unseen_items"] == 0
    assert kept[0].equals(train)


def test_split_users_keeps_both_parts_non_empty():
    ev = user_log(10)
    assert data.split_users(ev, 0.01)[2]["test_users"] == 1     # round(0.1) = 0 -> 1
    assert data.split_users(ev, 0.99)[2]["train_users"] == 1    # round(9.9) = 10 -> 9
    with pytest.raises(DataError, match="at least 2 users, got 1"):
        data.split_users(user_log(1), 0.5)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_split_users_bad_fraction(fraction):
    with pytest.raises(DataError, match=rf"test_fraction must be in \(0, 1\), got {fraction}"):
        data.split_users(user_log(5), fraction)


def test_validation_split_of_users_takes_a_share_of_the_training_users():
    train, test, _ = data.split(user_log(40), "users", test_fraction=0.2, seed=1)
    train2, valid, report = data.validation_split(train, "users", test_fraction=0.25, seed=1)
    assert report["test_users"] == 8 and report["train_users"] == 24   # 25% of 32, not rescaled
    assert set(valid["user"].to_list()) <= set(train["user"].to_list())
    assert set(valid["user"].to_list()).isdisjoint(train2["user"].to_list())


# ---------------------------------------------------------------- catalogue
def test_restrict_items_renumbers_to_the_training_items():
    # u0: session a d b, then the last session c d b (test; "c" occurs nowhere else, so it is
    # removed from test as unseen); u1: one session e b (train only)
    df = data.sessionize(raw(["u0"] * 6 + ["u1"] * 2,
                             ["a", "d", "b", "c", "d", "b", "e", "b"],
                             [0.0, 10, 20, 9000, 9010, 9020, 0, 10]))
    encoded = data.encode(df)
    assert list(encoded.item_ids[1:]) == ["a", "b", "c", "d", "e"]
    train, test, report = data.split(encoded.events, "last-session")
    assert report["test_unseen_items"] == 1
    before = (encoded.decode_items(train["item"].to_numpy()).tolist(),
              encoded.decode_items(test["item"].to_numpy()).tolist())
    out, train2, test2 = data.restrict_items(encoded, train, test)
    assert list(out.item_ids[1:]) == ["a", "b", "d", "e"]  # relative order kept, "c" gone
    assert out.n_items == 4 == train2["item"].n_unique()
    assert sorted(train2["item"].unique().to_list()) == [1, 2, 3, 4]
    # the same raw items, event by event, and the same frames otherwise
    assert out.decode_items(train2["item"].to_numpy()).tolist() == before[0]
    assert out.decode_items(test2["item"].to_numpy()).tolist() == before[1] == ["d", "b"]
    assert train2.drop("item").equals(train.drop("item"))
    assert train2.schema == train.schema and test2.schema == test.schema
    assert out.decode_items(out.events["item"].to_numpy()).tolist() == [
        "a", "d", "b", "d", "b", "e", "b"]  # the event of "c" left with its item
    assert list(out.user_ids) == list(encoded.user_ids)
    with pytest.raises(DataError, match="unknown item id"):
        out.encode_items(["c"])


def test_restrict_items_rejects_test_items_missing_from_train():
    encoded = data.encode(data.sessionize(raw(["u", "u", "v", "v"], ["a", "b", "a", "c"],
                                              [0.0, 1, 0, 1])))
    ev = encoded.events
    train, test = ev.filter(pl.col("user") == 0), ev.filter(pl.col("user") == 1)
    with pytest.raises(DataError, match=r"1 test event.*not in the training part.*'c'"):
        data.restrict_items(encoded, train, test)


def test_combine_order_and_summary():
    train = enc([1, 0, 0], [1, 2, 3], [5, 1, 2], [1, 0, 0])
    test = enc([0, 1], [2, 1], [3, 9], [0, 1])
    both = data.combine(train, test)
    assert both.select("user", "item", "is_test").rows() == [
        (0, 2, False), (0, 3, False), (0, 2, True), (1, 1, False), (1, 1, True)]
    assert data.summary(both) == {"users": 2, "items": 3, "sessions": 2, "events": 5}


def test_keep_max_value_keeps_the_top_rating_and_reports_the_rest():
    """Song et al.'s MovieLens: only the maximum rating is an interaction; through
    ``data.prepare`` the dropped events are reported under their reason."""
    from hrnn_jax.config import DataConfig
    raw = data.read_interactions(pl.DataFrame({
        "user": ["a"] * 6 + ["b"] * 6, "item": [1, 2, 3, 1, 2, 3] * 2,
        "time": list(range(12)), "value": [5.0, 3, 5, 4, 5, 5, 5, 5, 2, 5, 5, 5]}),
        value_col="value")
    kept, dropped = data.keep_max_value(raw)
    assert dropped == 3 and kept.height == 9 and set(kept["value"]) == {5.0}
    assert kept["time"].to_list() == [0, 2, 4, 5, 6, 7, 9, 10, 11]  # order kept
    prep = data.prepare(raw, DataConfig(max_value_only=True, min_item_support=1,
                                           min_session_len=1, protocol="leave-one-out"))
    assert prep.info["dropped"]["below_max_value"] == 3
    assert prep.info["events"] == 9
    with pytest.raises(DataError, match="needs a 'value' column"):
        data.keep_max_value(raw.drop("value"))


def test_leave_one_out_of_shuvo_et_al_test_validation_and_user_filter():
    """``--protocol leave-one-out --min-user-events 5 --patience N``: users with fewer than 5
    events leave before the split; test = each user's most recent event; the early-stopping
    validation (``compare.validation``, ``data.validation_split``) = each user's second most
    recent, trained on everything before it."""
    from hrnn_jax import compare
    from hrnn_jax.config import Config, DataConfig, TrainConfig
    counts = {"u1": 7, "u2": 5, "u3": 4, "u4": 6}  # u3: fewer than 5 events
    rows = [(u, f"i{(k + n) % 4}", 1000.0 * k + 10 * n) for n, (u, c) in
            enumerate(counts.items()) for k in range(c)]
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]  # any file order
    log = data.read_interactions(pl.DataFrame(rows, schema=["user", "item", "time"], orient="row"))
    cfg = Config(data=DataConfig(protocol="leave-one-out", min_user_events=5, min_item_support=1,
                                 min_session_len=1), train=TrainConfig(patience=2))
    prep = data.prepare(log, cfg.data)
    assert prep.info["dropped"]["user_events"] == 4 and sorted(prep.encoded.user_ids) == [
        "u1", "u2", "u4"]

    def events(part):  # (raw user, time) of each event
        return sorted(zip(prep.encoded.user_ids[part["user"].to_numpy()], part["time"]))

    kept = sorted((u, t) for u, _, t in rows if u != "u3")
    by_user = {u: [t for v, t in kept if v == u] for u in ("u1", "u2", "u4")}
    assert events(prep.test) == sorted((u, ts[-1]) for u, ts in by_user.items())
    train2, valid, _ = data.validation_split(prep.train, prep.protocol,
                                             test_fraction=cfg.data.test_fraction,
                                             seed=cfg.data.split_seed,
                                             known_items=prep.known_items)
    assert events(valid) == sorted((u, ts[-2]) for u, ts in by_user.items())
    assert events(train2) == sorted((u, t) for u, ts in by_user.items() for t in ts[:-2])
    assert compare.validation(prep, cfg)[0].equals(train2)  # what early stopping trains on
