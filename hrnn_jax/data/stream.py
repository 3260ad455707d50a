"""Preprocessing a log larger than memory: the sessionise, filter, encode and split steps of
``data.prepare`` on polars' lazy/streaming engine over Parquet, writing encoded Parquet parts
that training reads in slices of users (``read_encoded``).

    info = data.preprocess_parquet("log.parquet", "out/", DataConfig())
    mine = data.read_encoded("out/", "train", users=(lo, hi))   # one process's users

Same results as ``data.prepare`` on the same log read by ``data.read_interactions`` (same user
and item codes, session ids, filters, split, dropped-row report and ``info``), with memory
bounded by ``chunk_events``, not by the log.

Method: user-range partitions. Two small streaming aggregations give every user's and every
item's event count (a table per user and per item, never per event). Users are ordered as
``data.encode`` orders them (numeric ids numerically, else as text) and cut into ranges of about
``chunk_events`` events each; one streaming pass (``sink_parquet`` with ``pl.PartitionBy``) writes
each range to its own scratch Parquet file. Every step that needs a user's events in time order
(sessions, the session and user filters, the splits) is local to a user, so it runs on one
partition in memory at a time; the steps that are global (the item-support filter, the unseen
test items, the codes) need only per-item and per-partition counts, which are carried between
passes as small arrays. The item-support filter of a round uses the counts left after the
previous round, exactly as the in-memory loop, which is repeated until a whole round removes
nothing. Because the partitions are ranges of users in code order, writing them one after
another gives parts sorted by (user, time); a last streaming pass joins them into one file per
part. Peak memory: about ``chunk_events`` events of one partition (a single user with more events
makes a larger partition), plus the per-user and per-item tables.

Supported (``DataConfig``): ``format="table"`` with ``user_col``, ``item_col``, ``time_col``
(integer or text ids; numeric times in ``time_unit``, or Datetime/Date), ``session_gap``,
``dedupe``, ``min_item_support``, ``min_session_len``, ``min_sessions``, ``min_user_events``,
every ``protocol`` ("last-session", "leave-one-out", "temporal", "users" with ``test_fraction``
and ``split_seed``) and both ``catalogue`` choices. Not supported (a DataError naming the
option): ``format="steam"``, ``columns``, ``event_col``, ``value_col``, ``max_value_only`` and
``item_features``; ``sep`` is ignored, as by the in-memory Parquet reader.

Output directory: ``train.parquet`` and ``test.parquet`` (the encoded schema: ``user`` Int32,
``item`` Int32 1..N, ``time`` Float64, ``session`` Int32; sorted by user then time, in row groups
of ``ROW_GROUP`` rows whose statistics let a reader skip other users), ``users.parquet`` (``user``
code, raw ``user_id``), ``items.parquet`` (``item`` code 1..N, raw ``item_id``), ``info.json``
(``info`` as ``data.prepare`` reports it) and ``data_config.json`` (the ``DataConfig`` it was
encoded with, :func:`read_data_config`: the protocol that evaluation from the parts follows).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np
import polars as pl

from hrnn_jax.config import ConfigError, DataConfig, make
from hrnn_jax.data.errors import DataError, check_file
from hrnn_jax.data.read import TIME_UNITS
from hrnn_jax.data.rows import rows_targets
from hrnn_jax.data.sessions import (
    id_order,  # the order of data.encode's codes
    session_starts,
    user_rules,
)

PARTS = ("train", "test")
CONFIG_FILE = "data_config.json"
ROW_GROUP = 1 << 17  # rows per row group of the encoded parts
_FILTERS = ("item_support", "session_length", "user_sessions", "user_events")
_SCHEMA = {"user": pl.Int32, "item": pl.Int32, "time": pl.Float64, "session": pl.Int32}


def _streamed(lf: pl.LazyFrame) -> pl.DataFrame:
    return lf.collect(engine="streaming")


def _check_config(cfg: DataConfig) -> None:
    """DataError naming every option of ``cfg`` that the streaming pipeline does not support."""
    bad = [f"{k}={getattr(cfg, k)!r}" for k in ("columns", "event_col", "value_col",
                                                 "item_features") if getattr(cfg, k) is not None]
    if cfg.format != "table":
        bad.insert(0, f"format={cfg.format!r}")
    if cfg.max_value_only:
        bad.append("max_value_only=True")
    if bad:
        raise DataError(f"preprocess_parquet does not support {', '.join(bad)}: it reads a "
                        f"Parquet table of user, item and time columns; use data.prepare on a "
                        f"log that fits in memory for these options")


def _files(source) -> list[str]:
    """The Parquet file ``source``, or the ``*.parquet`` files of directory ``source`` in name
    order (their rows in that order make the log)."""
    path = os.fspath(source)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".parquet"))
        if not files:
            raise DataError(f"no .parquet files in directory {path}")
        return files
    return [check_file(path, "Parquet log")]


def _seconds(dtype, col: str, unit: str) -> pl.Expr:
    """Column ``col`` in Float64 epoch seconds, as ``data.read_interactions`` converts it."""
    if isinstance(dtype, (pl.Datetime, pl.Date)):
        return pl.col(col).dt.epoch("us").cast(pl.Float64) / 1e6
    if dtype.is_numeric():
        return pl.col(col).cast(pl.Float64) / TIME_UNITS[unit]
    raise DataError(f"time column {col!r} has dtype {dtype}: the streaming pipeline reads "
                    f"numeric times (in --time-unit) or Datetime/Date; convert text dates first")


def _is_id(dtype) -> bool:
    return dtype.is_integer() or dtype == pl.String or isinstance(dtype, (pl.Categorical,
                                                                          pl.Enum))


def scan_log(source, config: DataConfig = DataConfig()) -> pl.LazyFrame:
    """The Parquet log ``source`` (a file, or a directory of ``*.parquet`` files) as a checked
    lazy frame ``user``, ``item`` (String), ``time`` (Float64 seconds), ``_row`` (row number).

    Checks, streaming (never the whole log in memory): the columns ``config.user_col``,
    ``item_col`` and ``time_col`` exist, ids are integers or text, times are numeric or
    Datetime/Date, there is a row, no time is null, NaN or infinite and no id is null; a
    DataError names the column and the first bad rows (0-based), as ``data.read_interactions``.
    """
    files = _files(source)
    where = files[0] if len(files) == 1 else os.fspath(source)
    try:
        lf = pl.scan_parquet(files, hive_partitioning=False)
        schema = lf.collect_schema()
    except pl.exceptions.PolarsError as err:
        raise DataError(f"cannot read {where} as Parquet: {err}") from None
    cols = {"user": config.user_col, "item": config.item_col, "time": config.time_col}
    missing = [c for c in cols.values() if c not in schema]
    if missing:
        raise DataError(f"missing column(s) {missing} in {where}; columns present: "
                        f"{schema.names()}")
    for name in (config.user_col, config.item_col):
        if not _is_id(schema[name]):
            raise DataError(f"id column {name!r} has dtype {schema[name]}: ids must be integers "
                            f"or text")
    time = _seconds(schema[config.time_col], config.time_col, config.time_unit)
    lf = lf.select(pl.col(config.user_col).cast(pl.String).alias("user"),
                   pl.col(config.item_col).cast(pl.String).alias("item"),
                   time.alias("time")).with_row_index("_row")
    _check_rows(lf, cols, where)
    return lf


def _check_rows(lf: pl.LazyFrame, cols: dict, where: str) -> None:
    """DataError for an empty log, bad times or null ids (one streaming pass; a second one finds
    the first bad rows)."""
    masks = {"time": pl.col("time").is_null() | ~pl.col("time").is_finite(),
             "user": pl.col("user").is_null(), "item": pl.col("item").is_null()}
    counts = _streamed(lf.select(pl.len().alias("_n"),
                                 *(m.sum().alias(k) for k, m in masks.items()))).row(0, named=True)
    if counts["_n"] == 0:
        raise DataError(f"no rows in {where}")
    for key, mask in masks.items():
        n = counts[key]
        if not n:
            continue
        rows = _streamed(lf.filter(mask).select("_row").head(5))["_row"].to_list()
        if key == "time":
            raise DataError(f"time column {cols['time']!r} has {n} value(s) that are not finite "
                            f"(null, NaN or infinite), rows {rows}")
        raise DataError(f"id column {cols[key]!r} has {n} null value(s), rows {rows}")


def _counts(lf: pl.LazyFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids of ``col`` in code order, events of each), by a streaming group-by."""
    table = _streamed(lf.group_by(col).agg(pl.len().alias("n")))
    ids = id_order(table[col])
    order = pl.DataFrame({col: ids.tolist()}, schema={col: pl.String})
    n = order.join(table, on=col, how="left", maintain_order="left")["n"].to_numpy()
    return ids, n.astype(np.int64)


def _partition(lf: pl.LazyFrame, scratch: str, chunk_events: int):
    """Write the log as user-range partitions ``_u``, ``_i`` (raw-id ranks, Int32), ``time``,
    ``_row``; returns (user ids, item ids, item counts, partition globs in user order)."""
    user_ids, user_n = _counts(lf, "user")
    item_ids, item_n = _counts(lf, "item")
    before = np.cumsum(user_n) - user_n
    _, part = np.unique(before // chunk_events, return_inverse=True)
    umap = pl.DataFrame({"user": user_ids.tolist(), "_u": np.arange(len(user_ids)),
                         "part": part}, schema={"user": pl.String, "_u": pl.Int32,
                                                "part": pl.Int32})
    imap = pl.DataFrame({"item": item_ids.tolist(), "_i": np.arange(len(item_ids))},
                        schema={"item": pl.String, "_i": pl.Int32})
    base = os.path.join(scratch, "raw")
    (lf.join(umap.lazy(), on="user").join(imap.lazy(), on="item")
     .select("_u", "_i", "time", "_row", "part")
     .sink_parquet(pl.PartitionBy(base, key="part", include_key=False), mkdir=True))
    globs = [os.path.join(base, f"part={k}", "*.parquet") for k in range(int(part.max()) + 1)]
    return user_ids, item_ids, item_n, globs


def _read(path: str) -> pl.DataFrame:
    return pl.read_parquet(path, hive_partitioning=False)


def _sessions(df: pl.DataFrame, cfg: DataConfig) -> tuple[pl.DataFrame, int]:
    """One partition sorted by (user, time, row) with ``session`` (ids unique in the partition,
    increasing in that order), as ``data.sessionize``; then ``data.dedupe_sessions`` when
    ``cfg.dedupe``. Returns (frame, repeats dropped)."""
    df = df.sort(["_u", "time", "_row"])
    df = df.with_columns(session=session_starts("_u", cfg.session_gap).cast(pl.Int64).cum_sum()
                         - 1)
    if not cfg.dedupe:
        return df, 0
    kept = df.unique(subset=["session", "_i"], keep="first", maintain_order=True)
    return kept, df.height - kept.height


def _filter_once(df: pl.DataFrame, keep_items: np.ndarray, cfg: DataConfig,
                 report: dict) -> tuple[pl.DataFrame, int]:
    """One round of ``data.filter_interactions``' filters on one partition, in its order; the
    item filter keeps the items of ``keep_items`` (global counts at the round's start). Adds the
    drops to ``report``; returns (frame, rows removed)."""
    rules = user_rules("_u", cfg.min_session_len, cfg.min_sessions, cfg.min_user_events)
    start = df.height
    df = df.filter(pl.Series(keep_items[df["_i"].to_numpy()]))
    report["item_support"] += start - df.height
    for reason, keep in rules:
        before = df.height
        df = df.filter(keep)
        report[reason] += before - df.height
    return df, start - df.height


def _deduped_counts(parts: list[str], cfg: DataConfig, n_items: int) -> tuple[np.ndarray, int]:
    """Item counts and repeats dropped after ``_sessions`` (the first filter round's counts)."""
    counts, repeats = np.zeros(n_items, np.int64), 0
    for part in parts:
        df, n = _sessions(_read(part), cfg)
        counts += np.bincount(df["_i"].to_numpy(), minlength=n_items)
        repeats += n
    return counts, repeats


def _filter(parts: list[str], item_n: np.ndarray, cfg: DataConfig, scratch: str):
    """Sessions, then the filters repeated until a whole round removes nothing, partition by
    partition; a partition is rewritten only when a round changes it.

    Returns (filtered partition files, repeats dropped, filter report, final item counts,
    per-partition [users, sessions])."""
    report = dict.fromkeys(_FILTERS, 0)
    repeats = 0
    if cfg.dedupe:
        item_n, repeats = _deduped_counts(parts, cfg, len(item_n))
    n_start = int(item_n.sum())
    files = [os.path.join(scratch, f"filtered-{k:05d}.parquet") for k in range(len(parts))]
    first, counts = True, item_n
    while True:
        keep = counts >= cfg.min_item_support
        counts, sizes, changed = np.zeros_like(item_n), [], False
        for k, part in enumerate(parts):
            df = _sessions(_read(part), cfg)[0] if first else _read(files[k])
            df, removed = _filter_once(df, keep, cfg, report)
            if first or removed:
                df.write_parquet(files[k])
            changed |= removed > 0
            counts += np.bincount(df["_i"].to_numpy(), minlength=len(counts))
            sizes.append((df["_u"].n_unique(), df["session"].n_unique()))
        first = False
        if not changed:
            break
    if counts.sum() == 0:
        raise DataError(f"all {n_start} rows were removed by the filters: {report}")
    return files, repeats, report, counts, np.array(sizes, np.int64).reshape(-1, 2)


def _is_test(cfg: DataConfig, test_codes: np.ndarray | None) -> pl.Expr:
    """The split of ``data.split`` by ``cfg.protocol`` on one encoded partition (users whole,
    rows in (user, time) order): True for test events, before unseen items are removed."""
    u = pl.col("user")
    if cfg.protocol == "last-session":
        return ((pl.col("session") == pl.col("session").max().over(u))
                & (pl.col("session").n_unique().over(u) > 1))
    n = pl.len().over(u)
    if cfg.protocol == "leave-one-out":
        return (pl.int_range(pl.len()).over(u) == n - 1) & (n >= 2)
    if cfg.protocol == "temporal":
        k = (n.cast(pl.Float64) * cfg.test_fraction - 1e-9).ceil()
        return (pl.int_range(pl.len()).over(u) >= n - k) & (n - k >= 1)
    return u.is_in(pl.Series(test_codes, dtype=pl.Int32).implode())


def _test_users(cfg: DataConfig, n_users: int) -> np.ndarray | None:
    """The test users' codes of the "users" protocol (as ``data.split_users`` draws them)."""
    if cfg.protocol != "users":
        return None
    if n_users < 2:
        raise DataError(f"the users split needs at least 2 users, got {n_users}")
    n_test = min(max(int(round(cfg.test_fraction * n_users)), 1), n_users - 1)
    users = np.arange(n_users, dtype=np.int32)
    return np.random.default_rng(cfg.split_seed).permutation(users)[:n_test]


def _encoded(df: pl.DataFrame, user0: int, session0: int, cfg: DataConfig,
             test_codes) -> pl.DataFrame:
    """One filtered partition with user and session codes (``data.encode``: users 0..U-1 and
    sessions 0..S-1 in (user, time) order, from the partition's offsets) and ``is_test``."""
    df = df.with_columns(
        user=(pl.col("_u").rank("dense").cast(pl.Int64) - 1 + user0).cast(pl.Int32),
        session=(pl.col("session").rank("dense").cast(pl.Int64) - 1 + session0).cast(pl.Int32))
    return df.with_columns(is_test=_is_test(cfg, test_codes))


def _offsets(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)])[:-1]


def _train_items(files, sizes, cfg, test_codes, n_items: int) -> np.ndarray:
    """Which raw-rank items have a training event (bool per item), one partition at a time."""
    seen = np.zeros(n_items, bool)
    users, sessions = _offsets(sizes[:, 0]), _offsets(sizes[:, 1])
    for k, path in enumerate(files):
        df = _encoded(_read(path), users[k], sessions[k], cfg, test_codes)
        seen[df.filter(~pl.col("is_test"))["_i"].unique().to_numpy()] = True
    return seen


def _evaluated(train: pl.DataFrame, test: pl.DataFrame, targets: str) -> int:
    """Rows of ``data.make_eval_rows`` on ``data.combine(train, test)`` (one partition)."""
    both = pl.concat([train.select("user", "session", is_test=pl.lit(False)),
                      test.select("user", "session", is_test=pl.lit(True))])
    both = both.sort(["user", "is_test"], maintain_order=True)
    prev = pl.col("session").shift(1).over("user")
    keep = pl.col("is_test") & prev.is_not_null()
    if targets == "session":
        keep = keep & (prev == pl.col("session"))
    return int(both.select(keep.sum()).item())


def _split_part(df: pl.DataFrame, known: np.ndarray, codes: np.ndarray, cfg: DataConfig,
                tally: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train and test of one encoded partition: unseen test items removed (``known``: items
    kept, by raw rank), then (last-session) test sessions under 2 events; items recoded by
    ``codes`` (restricted codes by raw rank). Adds the counts to ``tally``."""
    train, test = df.filter(~pl.col("is_test")), df.filter(pl.col("is_test"))
    seen = test.filter(pl.Series(known[test["_i"].to_numpy()]))
    tally["test_unseen_items"] += test.height - seen.height
    if cfg.protocol == "last-session":
        test = seen.filter(pl.len().over("session") >= 2)
        tally["test_short_sessions"] += seen.height - test.height
    else:
        test = seen
    out = []
    for part in (train, test):
        item = pl.Series("item", codes[part["_i"].to_numpy()], pl.Int32)
        out.append(part.with_columns(item).select(list(_SCHEMA)))
    tally["evaluated"] += _evaluated(out[0], out[1], rows_targets(cfg.protocol))
    for name, part in zip(PARTS, out):
        tally[f"{name}_events"] += part.height
        tally[f"{name}_users"] += part["user"].n_unique()
    return out[0], out[1]


def _write_parts(files, sizes, cfg, known, codes, test_codes, scratch: str) -> dict:
    """Split, recode and write every partition (``scratch/train-K``, ``scratch/test-K``);
    returns the tally of events, users, evaluation rows and split drops."""
    tally = dict.fromkeys(("train_events", "test_events", "train_users", "test_users",
                           "evaluated", "test_unseen_items", "test_short_sessions"), 0)
    users, sessions = _offsets(sizes[:, 0]), _offsets(sizes[:, 1])
    for k, path in enumerate(files):
        df = _encoded(_read(path), users[k], sessions[k], cfg, test_codes)
        for name, part in zip(PARTS, _split_part(df, known, codes, cfg, tally)):
            part.write_parquet(os.path.join(scratch, f"{name}-{k:05d}.parquet"))
    return tally


def _info(item_n, sizes, repeats, report, tally, cfg, n_kept: int) -> dict:
    """``info`` as ``data.prepare`` reports it."""
    split = {"test_unseen_items": tally["test_unseen_items"]}
    if cfg.protocol == "last-session":
        split["test_short_sessions"] = tally["test_short_sessions"]
    users = ({k: tally[k] for k in ("train_users", "test_users")} if cfg.protocol == "users"
             else {})
    n_items = int((item_n > 0).sum())
    return {"users": int(sizes[:, 0].sum()), "items": n_items, "sessions": int(sizes[:, 1].sum()),
            "events": int(item_n.sum()), "train_events": tally["train_events"],
            "test_events": tally["test_events"], **users, "evaluated": tally["evaluated"],
            "dropped": {**({"repeated_in_session": repeats} if cfg.dedupe else {}), **report,
                        **split},
            "catalogue": {"items": n_kept, "removed_items": n_items - n_kept}}


def _write_ids(out: str, user_ids, alive_users, item_ids, kept_items) -> None:
    """``users.parquet`` (code, raw id) and ``items.parquet`` (code 1..N, raw id)."""
    users, items = user_ids[alive_users], item_ids[kept_items]
    pl.DataFrame({"user": np.arange(len(users)), "user_id": users.tolist()},
                 schema={"user": pl.Int32, "user_id": pl.String}).write_parquet(
        os.path.join(out, "users.parquet"))
    pl.DataFrame({"item": np.arange(1, len(items) + 1), "item_id": items.tolist()},
                 schema={"item": pl.Int32, "item_id": pl.String}).write_parquet(
        os.path.join(out, "items.parquet"))


def preprocess_parquet(source, out_dir, config: DataConfig = DataConfig(), *,
                       chunk_events: int = 2_000_000, scratch=None) -> dict:
    """Preprocess the Parquet log ``source`` as ``data.prepare`` would, streaming, into
    ``out_dir`` (see the module docstring for the method, the options supported and the files).

    Args:
      source: a Parquet file, or a directory of ``*.parquet`` files (rows in file-name order).
      out_dir: output directory (created; files of the same names are replaced).
      config: the ``DataConfig`` (options outside the supported ones: DataError).
      chunk_events: events per user-range partition: the bound on memory (a user with more
        events than this makes a partition of its own).
      scratch: directory for temporary files (a temporary directory inside it, removed at the
        end); default ``out_dir``.

    Returns:
      ``info``: the same dictionary as ``data.prepare(read_interactions(source), config).info``
      (also written to ``out_dir/info.json``; ``config`` to ``out_dir/data_config.json``).

    Raises:
      DataError: bad input (missing columns, wrong dtypes, null/NaN times, null ids, no rows),
        unsupported options, everything filtered out, or no test events.
    """
    _check_config(config)
    if chunk_events < 1:
        raise DataError(f"chunk_events must be >= 1, got {chunk_events}")
    lf = scan_log(source, config)
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".stream-", dir=scratch or out) as tmp:
        user_ids, item_ids, item_n, parts = _partition(lf, tmp, chunk_events)
        files, repeats, report, item_n, sizes = _filter(parts, item_n, config, tmp)
        shutil.rmtree(os.path.join(tmp, "raw"))
        test_codes = _test_users(config, int(sizes[:, 0].sum()))
        alive = item_n > 0
        known = (_train_items(files, sizes, config, test_codes, len(item_n))
                 if config.catalogue == "train" else alive)
        codes = np.cumsum(known).astype(np.int32)
        tally = _write_parts(files, sizes, config, known, codes, test_codes, tmp)
        if tally["test_events"] == 0:
            raise DataError(f"the {config.protocol} split left no test events; users need more "
                            "history")
        for name in PARTS:
            paths = [os.path.join(tmp, f"{name}-{k:05d}.parquet") for k in range(len(files))]
            pl.scan_parquet(paths).sink_parquet(os.path.join(out, f"{name}.parquet"),
                                                row_group_size=ROW_GROUP)
        alive_users = _streamed(pl.scan_parquet(files).select(pl.col("_u").unique()))["_u"]
        _write_ids(out, user_ids, np.sort(alive_users.to_numpy()), item_ids, known)
    info = _info(item_n, sizes, repeats, report, tally, config, int(known.sum()))
    with open(os.path.join(out, "info.json"), "w") as fh:
        json.dump(info, fh, indent=2)
    with open(os.path.join(out, CONFIG_FILE), "w") as fh:
        json.dump(dataclasses.asdict(config), fh, indent=2)
    return info


def is_encoded(path) -> bool:
    """True if ``path`` is a directory written by :func:`preprocess_parquet` (it holds
    ``info.json`` and ``train.parquet``)."""
    path = os.fspath(path)
    return all(os.path.isfile(os.path.join(path, name)) for name in ("info.json", "train.parquet"))


def read_info(out_dir) -> dict:
    """The ``info`` of a :func:`preprocess_parquet` output (its ``info.json``)."""
    with open(check_file(os.path.join(os.fspath(out_dir), "info.json"), "data summary")) as fh:
        return json.load(fh)


def read_data_config(out_dir) -> DataConfig:
    """The ``DataConfig`` a :func:`preprocess_parquet` output was encoded with."""
    path = os.path.join(os.fspath(out_dir), CONFIG_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{out_dir} has no {CONFIG_FILE}: it was written by an older "
                        "preprocess_parquet; preprocess the log again")
    with open(path) as fh:
        values = json.load(fh)
    try:
        return make(DataConfig, values, where="data")
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from None


def read_encoded(out_dir, part: str = "train", users=None) -> pl.DataFrame:
    """Part ``part`` ("train" or "test") of a ``preprocess_parquet`` output, only the rows of
    ``users``: None (all), a tuple ``(lo, hi)`` (user codes lo <= user < hi), or an array/list of
    user codes. Read with ``scan_parquet`` and a filter, so row groups of other users are skipped;
    rows in the file's order (user, then time)."""
    if part not in PARTS:
        raise DataError(f"part must be one of {list(PARTS)}, got {part!r}")
    lf = pl.scan_parquet(check_file(os.path.join(os.fspath(out_dir), f"{part}.parquet"),
                                    f"encoded {part} part"))
    if isinstance(users, tuple):
        if len(users) != 2:
            raise DataError(f"users as a tuple is a range (lo, hi), got {users!r}")
        lf = lf.filter(pl.col("user").is_between(int(users[0]), int(users[1]), closed="left"))
    elif users is not None:
        codes = np.asarray(users).ravel()
        if codes.size and not np.issubdtype(codes.dtype, np.integer):
            raise DataError(f"users must be integer user codes, got dtype {codes.dtype}")
        lf = lf.filter(pl.col("user").is_in(pl.Series(codes, dtype=pl.Int64).implode()))
    return lf.collect()


def count_users(out_dir) -> int:
    """The number of user codes of a ``preprocess_parquet`` output (its ``users.parquet``'s rows,
    read from the file's metadata, not its ids)."""
    path = check_file(os.path.join(os.fspath(out_dir), "users.parquet"), "user ids")
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def read_ids(out_dir) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, item ids) of a ``preprocess_parquet`` output, as ``data.Encoded`` holds them:
    raw id of user code u at position u; of item code i at position i, None at 0 (padding)."""
    out = os.fspath(out_dir)
    users = pl.read_parquet(check_file(os.path.join(out, "users.parquet"), "user ids"))
    items = pl.read_parquet(check_file(os.path.join(out, "items.parquet"), "item ids"))
    user_ids = users.sort("user")["user_id"].to_numpy().astype(object)
    item_ids = np.concatenate([np.array([None], dtype=object),
                               items.sort("item")["item_id"].to_numpy().astype(object)])
    return user_ids, item_ids
