"""Streaming preprocessing of a Parquet log (``data.preprocess_parquet``): the same parts, codes,
sessions, split and dropped-row report as ``data.prepare``, slices of users, and bad inputs."""
import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from hrnn_jax import data
from hrnn_jax.config import DataConfig
from hrnn_jax.data import DataError, synthetic


def rough_log(seed=0, n_users=60, n_items=70) -> pl.DataFrame:
    """Text ids (so codes follow text order: "u10" < "u2"), whole-second times with ties, short
    sessions and rare items: the filters need several rounds and the splits drop unseen items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t = int(rng.integers(0, 5000))
        for _ in range(int(rng.integers(1, 6))):
            for _ in range(int(rng.integers(1, 6))):
                item = min(int(rng.zipf(1.3)), n_items)
                rows.append((f"u{u}", f"i{item}", t))
                t += int(rng.choice([0, 10, 60, 600]))
            t += int(rng.integers(2000, 90_000))
    order = rng.permutation(len(rows))
    user, item, time = zip(*(rows[i] for i in order))
    return pl.DataFrame({"user": user, "item": item, "time": time})


def assert_same(path, tmp_path, cfg, chunk_events=40):
    """preprocess_parquet(path) and prepare(read_interactions(path)) agree on every output."""
    ref = data.prepare(data.read_interactions(path, time_unit=cfg.time_unit), cfg)
    out = tmp_path / "out"
    info = data.preprocess_parquet(path, out, cfg, chunk_events=chunk_events)
    assert info == ref.info
    assert data.read_encoded(out, "train").equals(ref.train)
    assert data.read_encoded(out, "test").equals(ref.test)
    users, items = data.read_ids(out)
    assert users.tolist() == ref.encoded.user_ids.tolist()
    assert items.tolist() == ref.encoded.item_ids.tolist()
    assert not [p for p in out.iterdir() if p.name.startswith(".stream-")]  # scratch removed
    return ref


def one_round(frame: pl.DataFrame, cfg: DataConfig) -> pl.DataFrame:
    """One round of data.filter_interactions' filters."""
    for keep in (pl.len().over("item") >= cfg.min_item_support,
                 pl.len().over("session") >= cfg.min_session_len,
                 pl.col("session").n_unique().over("user") >= cfg.min_sessions,
                 pl.len().over("user") >= cfg.min_user_events):
        frame = frame.filter(keep)
    return frame


CONFIGS = [dict(min_item_support=3),
           dict(min_item_support=3, protocol="leave-one-out", min_user_events=3),
           dict(min_item_support=2, min_session_len=1, protocol="temporal", test_fraction=0.3),
           dict(min_item_support=3, protocol="users", test_fraction=0.3, split_seed=4),
           dict(min_item_support=2, dedupe=True, min_sessions=2),
           dict(min_item_support=3, catalogue="log", session_gap=3000.0),
           dict(min_item_support=2, min_session_len=1, protocol="temporal", catalogue="log")]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_same_as_prepare_on_a_rough_log(tmp_path, kw):
    path = tmp_path / "log.parquet"
    rough_log(seed=1).write_parquet(path)
    ref = assert_same(path, tmp_path, DataConfig(**kw))
    assert ref.info["dropped"]["item_support"] > 0


def test_filters_repeated_over_several_rounds(tmp_path):
    cfg = DataConfig(min_item_support=2, min_sessions=2, dedupe=True)
    log = rough_log(seed=3)
    frame = data.dedupe_sessions(data.sessionize(data.read_interactions(log)))[0]
    once = one_round(frame, cfg)
    assert one_round(once, cfg).height < once.height  # a second round removes more
    path = tmp_path / "log.parquet"
    log.write_parquet(path)
    ref = assert_same(path, tmp_path, cfg, chunk_events=25)
    dropped = ref.info["dropped"]
    assert dropped["test_unseen_items"] > 0 and ref.info["catalogue"]["removed_items"] > 0
    assert min(dropped[k] for k in ("repeated_in_session", "item_support", "session_length",
                                    "user_sessions", "test_short_sessions")) > 0


@pytest.mark.parametrize("chunk_events", [1, 1000, 10**9])
def test_numeric_ids_any_partition_size(tmp_path, chunk_events):
    path = tmp_path / "log.parquet"
    synthetic.generate(40, 60, seed=2).write_parquet(path)  # Int64 ids: numeric order
    assert_same(path, tmp_path, DataConfig(min_item_support=10), chunk_events=chunk_events)


def test_directory_of_parts_datetime_and_millisecond_times(tmp_path):
    log = rough_log(seed=5)
    ms = log.with_columns(pl.col("time") * 1000)
    ms.write_parquet(tmp_path / "ms.parquet")
    assert_same(tmp_path / "ms.parquet", tmp_path, DataConfig(min_item_support=3, time_unit="ms"))
    parts = tmp_path / "parts"
    parts.mkdir()
    stamps = log.with_columns(pl.from_epoch("time", time_unit="s"))
    for k, chunk in enumerate(stamps.iter_slices(100)):  # rows in file-name order
        chunk.write_parquet(parts / f"{k:03d}.parquet")
    cfg = DataConfig(min_item_support=3)
    info = data.preprocess_parquet(parts, tmp_path / "dir", cfg, chunk_events=50)
    ref = data.prepare(data.read_interactions(stamps), cfg)
    assert info == ref.info
    assert data.read_encoded(tmp_path / "dir", "test").equals(ref.test)


def test_read_a_slice_of_users(tmp_path):
    path = tmp_path / "log.parquet"
    synthetic.generate(50, 60, seed=1).write_parquet(path)
    out = tmp_path / "out"
    data.preprocess_parquet(path, out, DataConfig(min_item_support=5), chunk_events=200)
    for part in data.stream.PARTS:
        whole = data.read_encoded(out, part)
        assert whole["user"].is_sorted()
        assert data.read_encoded(out, part, (10, 20)).equals(
            whole.filter(pl.col("user").is_between(10, 19)))
        assert data.read_encoded(out, part, [3, 41, 7]).equals(
            whole.filter(pl.col("user").is_in([3, 7, 41])))
        assert data.read_encoded(out, part, np.array([], np.int64)).height == 0
    with pytest.raises(DataError, match="part must be one of"):
        data.read_encoded(out, "valid")
    with pytest.raises(DataError, match="range"):
        data.read_encoded(out, "train", (1, 2, 3))


def bad(tmp_path, frame, cfg=DataConfig(), match=""):
    path = tmp_path / "bad.parquet"
    frame.write_parquet(path)
    with pytest.raises(DataError, match=match):
        data.preprocess_parquet(path, tmp_path / "out", cfg)


def test_bad_inputs_named(tmp_path):
    good = {"user": [1, 1, 2], "item": ["a", "b", "a"], "time": [1.0, 2.0, 3.0]}
    bad(tmp_path, pl.DataFrame({k: v for k, v in good.items() if k != "item"}),
        match=r"missing column\(s\) \['item'\].*columns present: \['user', 'time'\]")
    bad(tmp_path, pl.DataFrame(good), DataConfig(user_col="uid"), match=r"\['uid'\]")
    bad(tmp_path, pl.DataFrame({**good, "user": [1.0, 1.0, 2.0]}),
        match="id column 'user' has dtype Float64")
    bad(tmp_path, pl.DataFrame({**good, "time": ["2020-01-01"] * 3}),
        match="time column 'time' has dtype String")
    bad(tmp_path, pl.DataFrame({**good, "time": [1.0, float("nan"), None]}),
        match=r"time column 'time' has 2 value\(s\) that are not finite.*rows \[1, 2\]")
    bad(tmp_path, pl.DataFrame({**good, "time": [1.0, float("inf"), 2.0]}), match="not finite")
    bad(tmp_path, pl.DataFrame({**good, "item": ["a", None, "b"]}),
        match=r"id column 'item' has 1 null value\(s\), rows \[1\]")
    bad(tmp_path, pl.DataFrame(good).clear(), match="no rows")
    bad(tmp_path, pl.DataFrame(good), match="all 3 rows were removed by the filters")
    with pytest.raises(DataError, match="not found"):
        data.preprocess_parquet(tmp_path / "none.parquet", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .parquet files"):
        data.preprocess_parquet(tmp_path / "empty", tmp_path / "out")


@pytest.mark.parametrize("kw, name", [(dict(max_value_only=True, value_col="r"), "value_col"),
                                      (dict(event_col="kind"), "event_col"),
                                      (dict(format="steam"), "format='steam'"),
                                      (dict(item_features="movies.dat"), "item_features"),
                                      (dict(columns=("user", "item", "time")), "columns")])
def test_unsupported_options_named(tmp_path, kw, name):
    frame = pl.DataFrame({"user": [1], "item": [1], "time": [dt.datetime(2020, 1, 1)]})
    bad(tmp_path, frame, DataConfig(**kw), match=f"does not support .*{name}")


def test_no_test_events(tmp_path):
    log = pl.DataFrame({"user": [1] * 6, "item": [1, 2, 1, 2, 1, 2],
                        "time": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})  # one session: all train
    bad(tmp_path, log, DataConfig(min_item_support=1), match="left no test events")


def test_the_preprocess_command_writes_what_the_api_writes(tmp_path, capsys):
    """``hrnn-jax preprocess``: the files and info of ``preprocess_parquet`` with the same data
    flags, the summary with the dropped rows printed; bad input is one line and status 2."""
    from hrnn_jax import cli

    path = tmp_path / "log.parquet"
    rough_log(seed=3).write_parquet(path)
    cfg = DataConfig(min_item_support=3, protocol="leave-one-out")
    ref = data.preprocess_parquet(path, tmp_path / "api", cfg, chunk_events=50)
    out = tmp_path / "cli"
    argv = ["preprocess", str(path), "--out", str(out), "--chunk-events", "50",
            "--min-item-support", "3", "--protocol", "leave-one-out"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert cli.summary_line(ref) in printed and "dropped rows: " in printed
    assert json.loads((out / "info.json").read_text()) == json.loads(
        (tmp_path / "api" / "info.json").read_text())
    for part in ("train", "test", "users", "items"):
        assert pl.read_parquet(out / f"{part}.parquet").equals(
            pl.read_parquet(tmp_path / "api" / f"{part}.parquet")), part
    (tmp_path / "a_file").write_text("x")
    for argv, message in [
            ([str(path), "--out", str(tmp_path / "a_file")], "--out: not a directory"),
            ([str(tmp_path / "none.parquet"), "--out", str(out)], "not found"),
            ([str(path), "--out", str(out), "--format", "steam"], "does not support"),
            ([str(path), "--out", str(out), "--chunk-events", "0"], "positive integer"),
            ([str(path)], "--out")]:
        assert cli.main(["preprocess", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("hrnn-jax: error: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
