"""Tests for the log formats that hrnn_jax.data.read_interactions reads (small generated files)."""
import datetime as dt
import re

import numpy as np
import polars as pl
import pytest

from hrnn_jax import data
from hrnn_jax.data import DataError

ML_LINES = ["1::1193::5::978300760", "1::661::3::978302109", "2::1193::4::978298413",
            "2::0914::2::978299000"]


def epoch(text: str) -> float:
    """Epoch seconds of an ISO-8601 text, computed by Python's datetime (no offset = UTC)."""
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- separators and headers
def test_movielens_double_colon_with_columns(tmp_path):
    path = write(tmp_path / "ratings.txt", ML_LINES)
    out = data.read_interactions(path, sep="::", columns=("user", "item", "rating", "time"),
                                 value_col="rating")
    assert out.columns == ["user", "item", "time", "value"]
    assert out.schema == {"user": pl.String, "item": pl.String, "time": pl.Float64,
                          "value": pl.Float64}
    assert out["item"].to_list() == ["1193", "661", "1193", "0914"]  # ids stay text
    assert out["time"].to_list() == [978300760.0, 978302109.0, 978298413.0, 978299000.0]
    assert out["value"].to_list() == [5.0, 3.0, 4.0, 2.0]


def test_dat_defaults_to_double_colon_and_skips_blank_lines(tmp_path):
    path = write(tmp_path / "ratings.dat", ML_LINES[:2] + [""] + ML_LINES[2:])
    out = data.read_interactions(path, columns="user,item,rating,time")
    assert out.height == 4 and out["user"].to_list() == ["1", "1", "2", "2"]
    assert out["time"].to_list()[0] == 978300760.0


def test_double_colon_with_header_and_crlf(tmp_path):
    (tmp_path / "x.dat").write_bytes(b"u::i::t\r\nA::007::1\r\nB::8::2.5\r\n")
    out = data.read_interactions(tmp_path / "x.dat", user_col="u", item_col="i", time_col="t")
    assert out.rows() == [("A", "007", 1.0), ("B", "8", 2.5)]


def test_headerless_tsv_with_columns(tmp_path):
    path = write(tmp_path / "x.tsv", ["u1\t007\t10\tclick", "u1\tb\t20\tbuy", "u2\t007\t30\tclick"])
    out = data.read_interactions(path, columns=("uid", "iid", "ts", "kind"), user_col="uid",
                                 item_col="iid", time_col="ts", event_col="kind")
    assert out.columns == ["user", "item", "time", "event"]
    assert out["item"].to_list() == ["007", "b", "007"]
    assert out["time"].to_list() == [10.0, 20.0, 30.0]
    assert out["event"].to_list() == ["click", "buy", "click"]


# ---------------------------------------------------------------- time columns
# track names with quote characters, as in the real file (TSV is read without quoting)
LASTFM = [("user_000001", "2009-05-04T23:08:57Z", "f1b1cf71", "Deep Dish", "", "Track One"),
          ("user_000001", "2009-05-04T13:54:10Z", "5441c29d", "David Bowie", "t-0002",
           '"Heroes" (Live)'),
          ("user_000002", "2009-05-03T15:48:25Z", "a7f7df4a", "坂本龍一", "t-0003",
           'Say "hi, there'),
          ("user_000002", "2009-05-03T15:52:25Z", "a7f7df4a", "坂本龍一", "t-0003", "Mc2")]
LASTFM_COLS = ("user", "time", "artist_id", "artist", "track_id", "track")


def test_lastfm_iso_times(tmp_path):
    rows = [r[:4] + ((r[4] or "t-0001"),) + r[5:] for r in LASTFM]
    path = write(tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv",
                 ["\t".join(r) for r in rows])
    out = data.read_interactions(path, columns=LASTFM_COLS, item_col="track_id",
                                 event_col="track")
    assert out["item"].to_list() == ["t-0001", "t-0002", "t-0003", "t-0003"]
    assert out["event"].to_list() == [r[5] for r in LASTFM]  # quotes kept as they are
    assert out["time"].to_list() == [epoch(r[1]) for r in LASTFM]
    assert out["time"][0] == 1241478537.0


def test_lastfm_empty_item_id_is_named(tmp_path):
    path = write(tmp_path / "lastfm.tsv", ["\t".join(r) for r in LASTFM])
    with pytest.raises(DataError, match=r"id column 'track_id' has 1 null value\(s\), rows \[0\]"):
        data.read_interactions(path, columns=LASTFM_COLS, item_col="track_id")


@pytest.mark.parametrize("texts", [
    ["2009-05-04 23:08:57", "2009-05-04 23:08:57.25", "2009-05-04T23:08:57.123456"],
    ["2009-05-04T23:08:57+02:00", "2009-05-04 23:08:57.5-05:30", "2009-05-04T23:08:57.75Z"],
    ["2009-05-04T23:08:57+0200", "2020-02-29T00:00:00Z", "1969-12-31T23:59:59Z"],
])
def test_iso_variants(tmp_path, texts):
    path = write(tmp_path / "x.csv", ["user,item,time"] + [f"u,{i},{t}" for i, t in
                                                           enumerate(texts)])
    out = data.read_interactions(path)
    assert out["time"].to_list() == pytest.approx([epoch(t) for t in texts], abs=1e-6)


def test_iso_date_only_and_frame_input():
    out = data.read_interactions(pl.DataFrame({"user": ["u", "u"], "item": ["a", "b"],
                                               "time": ["2020-01-01", "2020-01-01 00:01"]}))
    assert out["time"].to_list() == [1577836800.0, 1577836860.0]


def test_parquet_datetime_column(tmp_path):
    t0 = dt.datetime(2020, 1, 1, 12, 0, 0, 500000)
    src = pl.DataFrame({"u": ["a", "a"], "i": [1, 2], "when": [t0, t0 + dt.timedelta(hours=1)]})
    src.write_parquet(tmp_path / "x.parquet")
    out = data.read_interactions(tmp_path / "x.parquet", user_col="u", item_col="i",
                                 time_col="when")
    assert out["time"].to_list() == [1577880000.5, 1577883600.5]
    assert out["item"].to_list() == ["1", "2"]


def test_numeric_text_stays_numeric_and_time_unit_applies(tmp_path):
    path = write(tmp_path / "x.dat", ["1::a::1500", "1::b::3000"])
    out = data.read_interactions(path, columns=("user", "item", "time"), time_unit="ms")
    assert out["time"].to_list() == [1.5, 3.0]


# ---------------------------------------------------------------- event / value carried through
@pytest.mark.parametrize("name,sep", [("x.dat", "::"), ("x.csv", ",")])
def test_event_and_value_through_encode(tmp_path, name, sep):
    lines = ["u1", "10", "100", "view", "4.5"], ["u1", "11", "200", "buy", "3"], \
            ["u2", "10", "50", "view", "1"]
    path = write(tmp_path / name, [sep.join(r) for r in lines])
    df = data.read_interactions(path, sep=sep, columns=("user", "item", "time", "type", "r"),
                                event_col="type", value_col="r")
    assert df.schema["event"] == pl.String and df.schema["value"] == pl.Float64
    ev = data.encode(data.sessionize(df)).events
    assert ev.columns == ["user", "item", "time", "session", "event", "value", "event_code"]
    assert ev.select("user", "item", "event", "value", "event_code").rows() == [
        (0, 1, "view", 4.5, 1), (0, 2, "buy", 3.0, 0), (1, 1, "view", 1.0, 1)]


# ---------------------------------------------------------------- errors
def test_wrong_field_count_names_the_line(tmp_path):
    path = write(tmp_path / "ratings.dat", [ML_LINES[0], "", ML_LINES[1], "2::1193::4"])
    with pytest.raises(DataError, match=r"1 line\(s\).*4 fields separated by '::'.*line 4: 3$"):
        data.read_interactions(path, columns=("user", "item", "rating", "time"))


def test_wrong_field_count_with_header(tmp_path):
    path = write(tmp_path / "x.dat", ["user::item::time", "a::b::1", "a::b::c::2"])
    with pytest.raises(DataError, match=r"line 3: 4") as err:
        data.read_interactions(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name,sep", [("x.dat", "::"), ("x.tsv", "\t")])
def test_columns_count_mismatch(tmp_path, name, sep):
    path = write(tmp_path / name, [sep.join(["1", "2", "3"])] * 2)
    with pytest.raises(DataError, match=r"columns has 4 name\(s\).*has 3 field\(s\) per line"):
        data.read_interactions(path, columns=("user", "item", "rating", "time"))


def test_unparseable_time_text_names_column_and_rows(tmp_path):
    path = write(tmp_path / "x.tsv", ["u\ta\t2009-05-04T23:08:57Z", "u\tb\tyesterday",
                                      "u\tc\t2009-05-04T23:09:57Z", "u\td\t04/05/2009"])
    with pytest.raises(DataError, match=r"time column 'ts' .*2 value\(s\) are not ISO-8601.*"
                                        r"rows \[1, 3\]: \['yesterday', '04/05/2009'\]"):
        data.read_interactions(path, columns=("u", "i", "ts"), user_col="u", item_col="i",
                               time_col="ts")


def test_columns_for_parquet_or_frame(tmp_path):
    pl.DataFrame({"user": ["a"], "item": ["b"], "time": [1]}).write_parquet(tmp_path / "x.pq")
    with pytest.raises(DataError, match=r"columns.*Parquet file .*x\.pq"):
        data.read_interactions(tmp_path / "x.pq", columns=("user", "item", "time"))
    with pytest.raises(DataError, match=r"columns.*DataFrame"):
        data.read_interactions(pl.DataFrame({"user": ["a"]}), columns=("user",))


def test_missing_column_name(tmp_path):
    path = write(tmp_path / "ratings.dat", ML_LINES)
    with pytest.raises(DataError, match=r"missing column\(s\) \['rating'\].*columns present: "
                                        r"\['user', 'item', 'stars', 'time'\]"):
        data.read_interactions(path, columns=("user", "item", "stars", "time"),
                               value_col="rating")
    # a headerless file read without columns: the message says so
    with pytest.raises(DataError, match=r"missing column.*separator '::'.*--columns"):
        data.read_interactions(path)


@pytest.mark.parametrize("columns,match", [
    (("user", "item", "user"), r"columns has \[.user.\] more than once"),
    (("user", "", "time"), r"non-empty names"),
])
def test_bad_columns(tmp_path, columns, match):
    path = write(tmp_path / "x.csv", ["a,b,1"])
    with pytest.raises(DataError, match=match):
        data.read_interactions(path, columns=columns)


def test_empty_separator(tmp_path):
    path = write(tmp_path / "x.csv", ["user,item,time", "a,b,1"])
    with pytest.raises(DataError, match="separator"):
        data.read_interactions(path, sep="")


def test_blank_dat_file_is_empty(tmp_path):
    (tmp_path / "x.dat").write_text("\n\n")
    with pytest.raises(DataError, match="empty file"):
        data.read_interactions(tmp_path / "x.dat", columns=("user", "item", "time"))


# ---------------------------------------------------------------- command line
def test_cli_reads_movielens_style_file(tmp_path):
    from hrnn_jax import cli

    lines = [f"{u}::{i}::{1 + (u + i) % 5}::{1000 + 60 * k + 100000 * s}"
             for u in range(1, 5) for s in range(3) for k, i in enumerate(range(1, 5))]
    path = write(tmp_path / "ratings.dat", lines)
    assert cli.main(["compare", str(path), "--sep", "::", "--columns", "user,item,rating,time",
                     "--value-col", "rating", "--models", "pop", "--min-item-support", "1",
                     "--quiet"]) == 0


# ---------------------------------------------------------------- item features (genres)
# ml-1m's movies.dat is Latin-1 ("\xe9" is not UTF-8); ml-20m's movies.csv quotes its titles
MOVIES_DAT = (b"1::Toy Story (1995)::Animation|Children's|Comedy\n"
              b"2::Cit\xe9 des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
              b"3::Nothing (2000)::(no genres listed)\n")
MOVIES_CSV = ('movieId,title,genres\n'
              '1,Toy Story (1995),Adventure|Animation|Comedy\n'
              '11,"American President, The (1995)",Comedy|Drama|Romance\n'
              '20,"Life Is ""Beautiful"", Really (1997)",Drama\n'
              '131262,Innocence (2014),(no genres listed)\n')


def unit_rows(features, genres_of):
    """The expected matrix: 1/sqrt(k) at the k genres of each item, zeros without genres."""
    rows = []
    for item in features.item_ids:
        g = genres_of[item]
        rows.append([1 / np.sqrt(len(g)) if n in g else 0.0 for n in features.names])
    return np.array(rows, np.float32)


def test_movielens_movies_dat_latin1(tmp_path):
    (tmp_path / "movies.dat").write_bytes(MOVIES_DAT)
    f = data.read_item_features(tmp_path / "movies.dat")
    assert f.item_ids.tolist() == ["1", "2", "3"] and f.item_ids.dtype == object
    assert f.names == ("Adventure", "Animation", "Children's", "Comedy", "Sci-Fi")
    assert f.matrix.dtype == np.float32 and f.matrix.shape == (3, 5)
    np.testing.assert_allclose(f.matrix, unit_rows(f, {
        "1": {"Animation", "Children's", "Comedy"}, "2": {"Adventure", "Sci-Fi"}, "3": set()}))
    np.testing.assert_allclose(np.linalg.norm(f.matrix, axis=1), [1.0, 1.0, 0.0], rtol=1e-6)


def test_movielens_movies_csv_quoted_titles(tmp_path):
    (tmp_path / "movies.csv").write_text(MOVIES_CSV)
    f = data.read_item_features(tmp_path / "movies.csv")
    assert f.item_ids.tolist() == ["1", "11", "20", "131262"]
    assert f.names == ("Adventure", "Animation", "Comedy", "Drama", "Romance")
    np.testing.assert_allclose(f.matrix, unit_rows(f, {
        "1": {"Adventure", "Animation", "Comedy"}, "11": {"Comedy", "Drama", "Romance"},
        "20": {"Drama"}, "131262": set()}))


def test_item_features_of_other_files_by_column_name(tmp_path):
    write(tmp_path / "items.tsv", ["sku\tname\tcats", "007\ta\t x ; y", "8\tb\t", "9\tc\ty"])
    f = data.read_item_features(tmp_path / "items.tsv", item_col="sku", genres_col="cats",
                                genre_sep=";")
    assert f.item_ids.tolist() == ["007", "8", "9"] and f.names == ("x", "y")
    np.testing.assert_allclose(f.matrix, [[0.5 ** 0.5] * 2, [0, 0], [0, 1]], rtol=1e-6)
    write(tmp_path / "items.txt", ["1|a|b", "2|c|"])
    g = data.read_item_features(tmp_path / "items.txt", sep="|", columns="id,g1,g2",
                                item_col="id", genres_col="g1")
    assert g.names == ("a", "c") and g.matrix.tolist() == [[1, 0], [0, 1]]
    pl.DataFrame({"movieId": [5, 6], "genres": [["b", "a", "b"], []]}).write_parquet(
        tmp_path / "g.parquet")  # a list column; a repeated genre counts once
    h = data.read_item_features(tmp_path / "g.parquet")
    assert h.item_ids.tolist() == ["5", "6"] and h.names == ("a", "b")
    np.testing.assert_allclose(h.matrix, [[0.5 ** 0.5] * 2, [0, 0]], rtol=1e-6)


def test_item_feature_matrix_follows_the_item_codes(tmp_path):
    (tmp_path / "movies.csv").write_text(MOVIES_CSV)
    f = data.read_item_features(tmp_path / "movies.csv")
    log = data.read_interactions(pl.DataFrame({"user": [1, 1, 2], "item": [11, 999, 1],
                                               "time": [0.0, 1.0, 0.0]}))
    enc = data.encode(data.sessionize(log))
    assert enc.item_ids.tolist() == [None, "1", "11", "999"]  # raw ids are strings
    m, report = data.item_feature_matrix(f, enc.item_ids)
    assert m.dtype == np.float32 and m.shape == (4, len(f.names))
    np.testing.assert_array_equal(m[0], 0)                     # padding
    np.testing.assert_array_equal(m[1], f.matrix[0])           # "1"
    np.testing.assert_array_equal(m[2], f.matrix[1])           # "11"
    np.testing.assert_array_equal(m[3], 0)                     # "999": no features
    assert report == {"items_without_features": 1, "feature_items_not_in_log": 2}  # 20, 131262
    same, _ = data.item_feature_matrix(f, [None, 1, 11, 999])  # ids compared as strings
    np.testing.assert_array_equal(same, m)


@pytest.mark.parametrize("name, content, kw, match", [
    ("missing.csv", None, {}, "file not found"),
    ("empty.dat", "", {}, "empty file"),
    ("empty.csv", "", {}, "empty file"),
    ("header.csv", "movieId,title,genres\n", {}, "no rows in"),
    ("nogenres.csv", "movieId,title\n1,a\n", {}, r"missing column\(s\) \['genres'\]"),
    ("other.csv", "id,genres\n1,a\n", {}, r"missing column\(s\) \['movieId'\]"),
    ("dup.dat", "1::a::x\n2::b::y\n1::c::z\n", {}, r"1 item id\(s\) occur more than once.*'1'"),
    ("null.csv", "movieId,title,genres\n,a,x\n", {}, "id column 'movieId' has 1 null"),
    ("wide.dat", "1::a::x::extra\n", {}, "has 4 field"),
])
def test_item_feature_errors(tmp_path, name, content, kw, match):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=match):
        data.read_item_features(tmp_path / name, **kw)


def test_the_hcrnn_repositorys_files_and_their_given_user_split(tmp_path):
    """Song et al.'s preprocessed files (an unnamed index column, columns in either order, one
    sequence per user): the log of all three files, and the test file's users as the test part
    of the "users" protocol."""
    from hrnn_jax.config import DataConfig
    rows = {"train": [("7", "a", 10.0), ("7", "b", 20.0), ("8", "a", 5.0), ("8", "c", 9.0)],
            "valid": [("9", "b", 1.0), ("9", "c", 2.0)],
            "test": [("u5", "a", 3.0), ("u5", "c", 4.0), ("u5", "b", 6.0)]}
    for part, events in rows.items():
        lines = ["\tItemId\tSessionId\tTime\titem_idx\tsess_idx"] if part == "test" else \
            ["\tItemId\tTime\tSessionId\titem_idx\tsess_idx"]
        for n, (u, i, t) in enumerate(events):
            lines.append(f"{n}\t{i}\t{u}\t{t}\t1\t0" if part == "test" else
                         f"{n}\t{i}\t{t}\t{u}\t1\t0")
        (tmp_path / f"{part}.txt").write_text("\n".join(lines) + "\n")
    log, test_users = data.read_hcrnn(tmp_path)
    assert test_users == ["u5"] and log.height == 9
    assert log.filter(pl.col("user") == "u5")["item"].to_list() == ["a", "c", "b"]
    prep = data.prepare(log, DataConfig(protocol="users", min_item_support=1,
                                           min_session_len=1), test_users=test_users)
    assert set(prep.encoded.user_ids[prep.test["user"].unique().to_numpy()]) == {"u5"}
    assert len(prep.rows) == 2  # every step of the test user's sequence but its first
    (tmp_path / "valid.txt").write_text("\tItemId\tTime\n0\ta\t1.0\n")
    with pytest.raises(data.DataError, match=r"missing column\(s\) \['SessionId'\]"):
        data.read_hcrnn(tmp_path)


# ---------------------------------------------------------------- Steam review dumps
# Kang & McAuley's steam_reviews.json.gz: one Python-literal dict per line (not JSON)
STEAM_FIRST = ("{'username': 'Chaos Syren', 'hours': 0.1, 'products': 41, 'product_id': "
               "'725280', 'page_order': 0, 'date': '2017-12-17', 'text': 'This would not be "
               "acceptable as an entertainment even back in that day', 'early_access': False, "
               "'page': 1}")
STEAM_ROWS = [  # (user_id or None, username, product_id, date, text)
    (None, "Ryxa", "328100", "2017-12-17", "It's \"fine\"; l'été — 日本語 ✓"),
    ("76561198011965365", "hello 'world'", "725280", "2017-12-18", 'say "hi" and \'bye\''),
    (None, "Ryxa", "725280", "2017-12-17", "same day, later line\\n"),
    (None, "Ryxa", "35140", "2018-01-02", "último"),
]


def steam_line(user_id, username, product, date, text, **extra) -> str:
    rec = {"username": username, "hours": 1.5, "product_id": product, "date": date,
           "text": text, "early_access": False, **extra}
    if user_id is not None:
        rec["user_id"] = user_id
    return repr(rec)


def steam_lines() -> list[str]:
    return [STEAM_FIRST] + [steam_line(*row) for row in STEAM_ROWS]


def day(text: str) -> float:
    return epoch(text)  # a date alone: midnight UTC


@pytest.mark.parametrize("packed", [False, True])
def test_read_steam_python_literal_lines(tmp_path, packed):
    """Python-literal dicts with apostrophes, quotes and unicode in the text, plain or gzip;
    user = user_id where present else username, item = product_id, time = the day (midnight
    UTC, as read_interactions reads a date); rows in file order, blank lines skipped."""
    import gzip

    from hrnn_jax.data.read import read_steam
    text = "\n".join(steam_lines()[:3] + [""] + steam_lines()[3:]) + "\n"
    path = tmp_path / ("steam_reviews.json.gz" if packed else "steam_reviews.json")
    path.write_bytes(gzip.compress(text.encode()) if packed else text.encode())
    out = read_steam(path)
    assert out.schema == {"user": pl.String, "item": pl.String, "time": pl.Float64}
    assert out["user"].to_list() == ["Chaos Syren", "Ryxa", "76561198011965365", "Ryxa", "Ryxa"]
    assert out["item"].to_list() == ["725280", "328100", "725280", "725280", "35140"]
    assert out["time"].to_list() == [day(d) for d in ("2017-12-17", "2017-12-17", "2017-12-18",
                                                      "2017-12-17", "2018-01-02")]
    same = data.read_interactions(pl.DataFrame({"user": ["u"], "item": ["i"],
                                                "time": ["2017-12-17"]}))
    assert out["time"][0] == same["time"][0]


def test_steam_same_day_keeps_file_order_and_leave_one_out(tmp_path):
    """Equal times (one day) keep their file order through the stable sorts: a user's sessions
    are days (the default gap), and leave-one-out tests the last line of the last day."""
    from hrnn_jax.config import DataConfig
    lines = [steam_line(None, "u", item, date, "t") for item, date in
             [("b", "2017-01-02"), ("a", "2017-01-01"), ("c", "2017-01-02"), ("d", "2017-01-01")]]
    lines += [steam_line(None, "v", item, "2017-01-05", "t") for item in "abcd"]
    path = write(tmp_path / "s.json", lines)
    log = data.read_log(path, DataConfig(format="steam"))
    frame = data.sessionize(log)
    u = frame.filter(pl.col("user") == "u")
    assert u["item"].to_list() == ["a", "d", "b", "c"]
    assert u["session"].to_list() == [0, 0, 1, 1]  # one session a day
    prep = data.prepare(log, DataConfig(format="steam", protocol="leave-one-out",
                                        min_item_support=1, min_session_len=1))
    tested = dict(zip(prep.encoded.user_ids[prep.test["user"].to_numpy()],
                      prep.encoded.item_ids[prep.test["item"].to_numpy()]))
    assert tested == {"u": "c", "v": "d"}


@pytest.mark.parametrize("bad,match", [
    ("__import__('os').system('touch {flag}')", r"line 2: not a Python literal \(holds a call"),
    ("{{'username': 'x', 'product_id': __import__('os').system('touch {flag}'), "
     "'date': '2017-01-01'}}", r"line 2: not a Python literal \(holds a call"),
    ("{{'username': 'x', 'product_id': '1', 'date': '2017-01-01'", r"line 2: not a Python literal"),
    ("['x', '1', '2017-01-01']", r"line 2: expected a dict, got list"),
    ("{{'username': 'x', 'product_id': '1'}}", r"line 2: missing key\(s\) date"),
    ("{{'user_id': '', 'date': '2017-01-01', 'product_id': '1'}}",
     r"line 2: missing key\(s\) user_id or username"),
    ("{{'username': '  ', 'product_id': '1', 'date': '2017-01-01'}}",
     r"line 2: 'username' must be non-empty text"),
    ("{{'username': 'x', 'product_id': None, 'date': '2017-01-01'}}",
     r"line 2: 'product_id' must be non-empty text"),
    ("{{'username': 'x', 'product_id': '1', 'date': 20170101}}", r"line 2: 'date' must be a date"),
    ("{{'username': 'x', 'product_id': '1', 'date': '17/12/2017'}}",
     r"1 'date' value\(s\) are not dates \(YYYY-MM-DD\), line 2: '17/12/2017'"),
])
def test_read_steam_bad_lines_are_errors_naming_the_line(tmp_path, bad, match):
    """Bad lines are DataErrors naming the file and the line; code in a line is never run."""
    from hrnn_jax.data.read import read_steam
    flag = tmp_path / "EXECUTED"
    path = write(tmp_path / "bad.json", [STEAM_FIRST, bad.format(flag=flag)])
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}.*{match}"):
        read_steam(path)
    assert not flag.exists()


def test_read_steam_empty_damaged_and_misused(tmp_path):
    import gzip

    from hrnn_jax.config import DataConfig
    from hrnn_jax.data.read import read_steam
    with pytest.raises(DataError, match="empty file"):
        read_steam(write(tmp_path / "blank.json", ["", "  "]))
    (tmp_path / "empty.json").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        read_steam(tmp_path / "empty.json")
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(STEAM_FIRST.encode() * 50)[:-12])
    with pytest.raises(DataError, match="cannot read .*cut.json.gz"):
        read_steam(tmp_path / "cut.json.gz")
    (tmp_path / "latin.json").write_bytes(STEAM_FIRST.encode() + b"\n" +
                                          steam_line(None, "Jos\xe9", "1", "2017-01-01",
                                                     "t").encode("latin-1"))
    with pytest.raises(DataError, match="line 2: not UTF-8"):
        read_steam(tmp_path / "latin.json")
    with pytest.raises(DataError, match="not found"):
        read_steam(tmp_path / "nope.json")
    with pytest.raises(DataError, match="--user-col, --sep apply to --format table only"):
        data.read_log(tmp_path / "x.json", DataConfig(format="steam", user_col="u", sep=";"))


def steam_log(tmp_path, users=8, per_user=7):
    """A tiny Steam dump, gzipped: users of ``per_user`` reviews (one a day) over 6 games."""
    import gzip

    lines = [steam_line(f"7656119800000{u:04d}" if u % 2 else None, f"player '{u}' ✓",
                        str(100 + (u + k) % 6), f"2017-03-{1 + k:02d}", "it's a \"game\"")
             for u in range(users) for k in range(per_user - (u == 0) * 3)]  # user 0: 4 events
    path = tmp_path / "steam_reviews.json.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_cli_compare_steam_leave_one_out(tmp_path, capsys):
    """``hrnn-jax compare FILE --format steam`` with the seed paper's protocol: leave-one-out,
    users with < 5 events removed, early stopping on each user's second most recent event."""
    import json

    from hrnn_jax import cli
    out = tmp_path / "res.json"
    code = cli.main([
        "compare", str(steam_log(tmp_path)), "--format", "steam", "--protocol", "leave-one-out",
        "--min-user-events", "5", "--min-session-len", "1", "--min-item-support", "1",
        "--patience", "1", "--epochs", "2", "--models", "pop,gru", "--hidden", "8",
        "--batch-size", "4", "--ks", "1,5", "--quiet", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    assert res["config"]["data"]["format"] == "steam"
    assert res["data"]["users"] == 7 and res["data"]["dropped"]["user_events"] == 4
    assert res["data"]["test_events"] == 7 and set(res["models"]) == {"pop", "gru"}
    assert "--format {table,steam}" in _help(capsys, "compare")


def _help(capsys, command) -> str:
    from hrnn_jax import cli
    assert cli.main([command, "--help"]) == 0
    return capsys.readouterr().out


def test_cli_bad_steam_file_is_one_line_on_stderr(tmp_path, capsys):
    from hrnn_jax import cli
    path = write(tmp_path / "bad.json", [STEAM_FIRST, "{'username': 'x', 'product_id': '1'}"])
    code = cli.main(["compare", str(path), "--format", "steam", "--models", "pop", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("hrnn-jax: error: ")
    assert f"{path} line 2: missing key(s) date" in err
    # the demo reads no file: it has no --format
    assert "--format" not in _help(capsys, "demo")
