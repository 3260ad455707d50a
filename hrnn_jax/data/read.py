"""Reading an interaction log with polars: CSV, TSV, Parquet, text with separators of any length
(MovieLens ``::``), headerless files with named columns, numeric or ISO-8601 times; validated
(missing or duplicated columns, non-finite times or values, empty ids: a DataError naming the
column and rows), the authors' preprocessed files of Song et al. (``read_hcrnn``) and the Steam
review dumps of Kang & McAuley (``read_steam``); ``read_log`` reads by ``DataConfig.format``.

Frames after reading: ``user``, ``item`` (raw ids as text), ``time`` (Float64 epoch seconds),
and ``event`` / ``value`` when asked for.
"""
from __future__ import annotations

import ast
import csv
import gzip
import os
import zlib
from typing import Literal

import polars as pl

from hrnn_jax import choices
from hrnn_jax.config import DataConfig
from hrnn_jax.data.errors import DataError, bad_rows, check_file, one_line

TimeUnit = Literal["s", "ms", "us", "ns"]
TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}  # divisors to seconds
assert tuple(TIME_UNITS) == choices.options(TimeUnit)
LogFormat = Literal["table", "steam"]  # DataConfig.format: read_interactions, or read_steam


_DEFAULT_SEP = {".tsv": "\t", ".dat": "::"}  # by extension; otherwise ","
_LINE_SEP = "\x00"  # reading whole lines: a "separator" that text files do not contain
# ISO-8601 after normalisation (see _parse_iso): date, " ", time, optional offset
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M%#z",
                "%Y-%m-%d %H:%M", "%Y-%m-%d")


def column_names(columns) -> tuple[str, ...] | None:
    """Check ``columns`` (a sequence of names, or one comma-separated string)."""
    if columns is None:
        return None
    names = tuple(columns.split(",") if isinstance(columns, str) else columns)
    if not names or any(not isinstance(c, str) or not c.strip() for c in names):
        raise DataError(f"columns must be non-empty names, got {list(names)}")
    names = tuple(c.strip() for c in names)
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise DataError(f"columns has {dup} more than once: {list(names)}")
    return names


def _count_mismatch(names, width, path, sep) -> DataError:
    return DataError(f"columns has {len(names)} name(s) {list(names)} but {path} has "
                     f"{width} field(s) per line (separator {sep!r})")


def _infer_numbers(df: pl.DataFrame, keep: set[str]) -> pl.DataFrame:
    """Cast String columns (except ``keep``) to Int64, else Float64, where every value parses."""
    for c in df.columns:
        if c in keep or df.schema[c] != pl.String:
            continue
        for dtype in (pl.Int64, pl.Float64):
            cast = df[c].cast(dtype, strict=False)
            if cast.null_count() == df[c].null_count():
                df = df.with_columns(cast)
                break
    return df


def _read_split(path, sep, columns, id_cols, encoding="utf8") -> pl.DataFrame:
    """Read a text file whose fields are separated by ``sep`` of any length (e.g. "::").

    Lines are read with polars and split on ``sep`` literally (no quoting); blank lines are
    skipped. The first non-blank line is the header unless ``columns`` names the fields. A line
    with another number of fields is a DataError naming its (1-based) line number.
    """
    lines = pl.read_csv(path, has_header=False, separator=_LINE_SEP, quote_char=None,
                        new_columns=["line"], infer_schema=False, encoding=encoding)
    lines = (lines.with_row_index("_line", offset=1)
             .filter(pl.col("line").str.strip_chars().str.len_chars() > 0)
             .select("_line", pl.col("line").str.strip_suffix("\r").str.split(sep).alias("f")))
    if lines.height == 0:
        raise DataError(f"empty file: {path}")
    if columns is None:
        names = tuple(lines["f"][0].to_list())
        lines = lines.slice(1)
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            raise DataError(f"header of {path} names column(s) {dup} more than once "
                            f"(separator {sep!r}): {list(names)}")
    else:
        names = columns
        widths = lines["f"].list.len().unique()
        if widths.len() == 1 and widths[0] != len(names):
            raise _count_mismatch(names, widths[0], path, sep)
    n = len(names)
    bad = lines.filter(pl.col("f").list.len() != n)
    if bad.height:
        first = bad.head(5)
        found = ", ".join(f"line {ln}: {k}" for ln, k in
                          zip(first["_line"].to_list(), first["f"].list.len().to_list()))
        raise DataError(f"{bad.height} line(s) of {path} do not have {n} fields separated by "
                        f"{sep!r} ({', '.join(names)}); fields found: {found}"
                        + (" ..." if bad.height > 5 else ""))
    df = lines.select([pl.col("f").list.get(i).alias(name) for i, name in enumerate(names)])
    df = df.with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in names)
    return _infer_numbers(df, set(id_cols))


def load_table(path, sep, id_cols, columns=None,
               encoding="utf8") -> tuple[pl.DataFrame, str | None]:
    """Read a CSV / TSV / ``::`` / Parquet file with polars; id columns are read as strings.

    ``encoding``: of text files, polars' "utf8" (invalid bytes are an error) or "utf8-lossy"
    (they become U+FFFD). Returns (frame, separator used; None for Parquet).
    """
    path = check_file(path)
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".parquet", ".pq"):
            if columns is not None:
                raise DataError(f"columns {list(columns)} given for Parquet file {path}, which "
                                f"names its own columns; leave columns out")
            return pl.read_parquet(path), None
        if sep is None:
            sep = _DEFAULT_SEP.get(ext, ",")
        if not isinstance(sep, str) or not sep:
            raise DataError(f"separator must be a non-empty string, got {sep!r}")
        if len(sep.encode()) > 1:
            return _read_split(path, sep, columns, id_cols, encoding), sep
        quote = None if sep == "\t" else '"'  # TSV has no quoting (LastFM-1K: '"Heroes"')
        if columns is None:
            _check_header(path, sep, quote, encoding)
            overrides = {c: pl.String for c in id_cols}
            return pl.read_csv(path, separator=sep, quote_char=quote,
                               schema_overrides=overrides, encoding=encoding), sep
        # no header: read every field as text, name the columns, then infer numbers
        df = pl.read_csv(path, has_header=False, separator=sep, quote_char=quote,
                         infer_schema=False, encoding=encoding)
        if df.width != len(columns):
            raise _count_mismatch(columns, df.width, path, sep)
        return _infer_numbers(df.rename(dict(zip(df.columns, columns))), set(id_cols)), sep
    except pl.exceptions.NoDataError:
        raise DataError(f"empty file: {path}") from None
    except (pl.exceptions.PolarsError, OSError, UnicodeError) as err:
        raise DataError(f"cannot parse {path}: {one_line(err)}") from None


def _check_header(path: str, sep: str, quote: str | None, encoding: str) -> None:
    """DataError when the header line of a one-character-separated file names a column twice
    (polars would rename the second one and read on)."""
    with open(path, encoding="utf-8", errors="replace" if encoding == "utf8-lossy" else
              "strict", newline="") as fh:
        first = fh.readline()
    row = next(csv.reader([first], delimiter=sep, quotechar=quote or '"',
                          quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE), [])
    dup = sorted({c.strip() for c in row if [x.strip() for x in row].count(c.strip()) > 1})
    if dup:
        raise DataError(f"header of {path} names column(s) {dup} more than once "
                        f"(separator {sep!r}): {[c.strip() for c in row]}")


def _parse_iso(col: pl.Expr) -> pl.Expr:
    """ISO-8601 text -> Datetime(us, UTC); null where it does not parse.

    Accepts "T" or " " between date and time, optional seconds and fraction, and an optional
    offset ("Z", "UTC", "+02:00", "+0200", "+02"); text without an offset is taken as UTC.
    A date alone is midnight UTC.
    """
    text = (col.str.strip_chars()
            .str.replace(r"^(\d{4}-\d{2}-\d{2})[Tt ]\s*", "${1} ")
            .str.replace(r"\s*(?:[Zz]|UTC)$", "+00:00")
            .str.replace(r"\s+([+-]\d{2}(?::?\d{2})?)$", "${1}"))
    return pl.coalesce([text.str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False)
                        for fmt in _ISO_FORMATS])


def read_interactions(path, *, user_col="user", item_col="item", time_col="time", sep=None,
                      columns=None, time_unit="s", event_col=None, value_col=None
                      ) -> pl.DataFrame:
    """Read and validate an interaction log.

    Formats (all read with polars):

    * Parquet (``.parquet`` / ``.pq``): column names from the file.
    * Text with a one-character separator: ``sep``, or by default a tab for ``.tsv`` and ","
      otherwise. CSV quoting ('"') applies, except with a tab: tab-separated fields are taken
      as they are, quotes included (LastFM-1K track names such as ``"Heroes" (Live)``).
    * Text with a separator of any length, e.g. MovieLens-1M/10M ``ratings.dat``
      (``1::1193::5::978300760``): ``sep="::"``, which is also the default for ``.dat`` files.
      Lines are split literally (no quoting) and blank lines are skipped; a line with another
      number of fields is an error naming the line.
    * Headerless text: ``columns`` names the fields in order, e.g.
      ``columns=("user", "item", "rating", "time")`` with ``value_col="rating"``; without it the
      first line is the header.

    Args:
      path: a file as above, or an already-loaded ``pl.DataFrame``.
      user_col, item_col, time_col: the columns of user ids, item ids and timestamps (names
        from the header, from ``columns``, or of the frame).
      sep: field separator of text files (any length); None: by file extension as above.
      columns: names of the columns of a headerless text file, in order (a sequence, or one
        comma-separated string); None: the file has a header. Not for Parquet or frames.
      time_unit: unit of a numeric time column: "s", "ms", "us" or "ns".
      event_col: optional column of the interaction type (click, purchase, ...).
      value_col: optional numeric column (rating, duration, ...).

    Returns:
      A frame with ``user``, ``item`` (raw ids as String; ids are never parsed as numbers, so
      "007" stays "007"), ``time`` (Float64 epoch seconds), and ``event`` (String) /
      ``value`` (Float64) when ``event_col`` / ``value_col`` are given, in file order. The time
      column may hold numbers (divided by the ``time_unit`` factor), Datetime/Date values, or
      ISO-8601 text such as LastFM-1K's ``2009-05-04T23:08:57Z`` or ``2009-05-04 23:08:57.25``
      ("T" or space, optional fraction, optional offset "Z"/"+02:00"; no offset means UTC).

    Raises:
      DataError: on any problem, with a one-line message naming the column, or the rows
        (0-based data rows, header and blank lines not counted) or file lines (1-based) at fault.
    """
    if time_unit not in TIME_UNITS:
        raise DataError(f"bad time_unit {time_unit!r}; valid: {', '.join(TIME_UNITS)}")
    columns = column_names(columns)
    used_sep = None
    if isinstance(path, pl.DataFrame):
        if columns is not None:
            raise DataError(f"columns {list(columns)} given for a DataFrame, which names its "
                            f"own columns; leave columns out")
        df, where = path, "frame"
    else:
        df, used_sep = load_table(path, sep, [user_col, item_col], columns)
        where = os.fspath(path)
    wanted = {"user": user_col, "item": item_col, "time": time_col}
    if event_col is not None:
        wanted["event"] = event_col
    if value_col is not None:
        wanted["value"] = value_col
    check_columns(df, wanted.values(), where, used_sep, columns)
    df = df.select([pl.col(src).alias(dst) for dst, src in wanted.items()])

    df = df.with_columns(_seconds(df, time_col, time_unit).alias("time"),
                         pl.col("user", "item").cast(pl.String))
    if "event" in df.columns:
        df = df.with_columns(pl.col("event").cast(pl.String))
    if "value" in df.columns:
        df = _checked_values(df, value_col)
    n, rows = bad_rows(df, pl.col("time").is_null() | ~pl.col("time").is_finite())
    if n:
        raise DataError(f"time column {time_col!r} has {n} value(s) that are not finite "
                        f"(null, NaN or infinite), rows {rows}")
    for dst, src in (("user", user_col), ("item", item_col)):
        check_ids(df, dst, src)
    return df


def _seconds(df: pl.DataFrame, time_col: str, time_unit: str) -> pl.Expr:
    """The time column in epoch seconds (Float64): numbers divided by the ``time_unit`` factor,
    Datetime/Date values, or ISO-8601 text (DataError naming the rows that are none of these)."""
    dtype = df.schema["time"]
    if isinstance(dtype, (pl.Datetime, pl.Date)):
        return pl.col("time").dt.epoch("us").cast(pl.Float64) / 1e6
    if dtype.is_numeric():
        return pl.col("time").cast(pl.Float64) / TIME_UNITS[time_unit]
    if dtype != pl.String:
        raise DataError(f"time column {time_col!r} is not numeric (dtype {dtype})")
    parsed = _parse_iso(pl.col("time"))
    n, rows = bad_rows(df, pl.col("time").is_not_null() & parsed.is_null())
    if n:
        shown = [v if len(v) <= 40 else v[:40] + "..." for v in df["time"][rows].to_list()]
        raise DataError(f"time column {time_col!r} is not numeric (dtype String) and {n} "
                        f"value(s) are not ISO-8601 date-times (e.g. 2009-05-04T23:08:57Z), "
                        f"rows {rows}: {shown}")
    return parsed.dt.epoch("us").cast(pl.Float64) / 1e6


def _checked_values(df: pl.DataFrame, value_col: str) -> pl.DataFrame:
    """``df`` with its ``value`` column as Float64; DataError if it is not numeric or holds NaN
    or infinite values."""
    if not df.schema["value"].is_numeric():
        raise DataError(f"value column {value_col!r} is not numeric (dtype {df.schema['value']})")
    df = df.with_columns(pl.col("value").cast(pl.Float64))
    n, rows = bad_rows(df, pl.col("value").is_not_null() & ~pl.col("value").is_finite())
    if n:
        raise DataError(f"value column {value_col!r} has {n} NaN or infinite value(s), rows "
                        f"{rows}")
    return df


def check_columns(df: pl.DataFrame, wanted, where: str, sep: str | None, columns) -> None:
    """DataError if a ``wanted`` column is missing (naming those present) or there is no row."""
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        hint = "" if sep is None else f" (separator {sep!r}" + (
            "; for a file without a header line, name its columns with columns= / --columns)"
            if columns is None else ")")
        raise DataError(f"missing column(s) {missing} in {where}; columns present: "
                        f"{df.columns}{hint}")
    if df.height == 0:
        raise DataError(f"no rows in {where}")


def check_ids(df: pl.DataFrame, col: str, name: str) -> None:
    """DataError naming the rows where id column ``col`` (``name`` in the file) is null."""
    n, rows = bad_rows(df, pl.col(col).is_null())
    if n:
        raise DataError(f"id column {name!r} has {n} null value(s), rows {rows}")


TABLE_READING = ("user_col", "item_col", "time_col", "sep", "columns", "time_unit", "event_col",
                 "value_col")  # the keywords of read_interactions: DataConfig fields of "table"
READING = ("format",) + TABLE_READING  # the reading fields of DataConfig


def read_log(path, config: DataConfig) -> pl.DataFrame:
    """The log at ``path`` read as ``config.format`` says: "table" by :func:`read_interactions`
    with the reading fields of ``config``, "steam" by :func:`read_steam` (whose keys are fixed:
    a table's reading field set to other than its default is then a DataError)."""
    if config.format == "steam":
        fields = DataConfig.__dataclass_fields__
        changed = ["--" + k.replace("_", "-") for k in TABLE_READING
                   if getattr(config, k) != fields[k].default]
        if changed:
            raise DataError(f"{', '.join(changed)} apply to --format table only: --format steam "
                            f"reads the keys user_id/username, product_id and date of each line")
        return read_steam(path)
    return read_interactions(path, **{k: getattr(config, k) for k in TABLE_READING})


_STEAM_ITEM, _STEAM_DATE = "product_id", "date"
_STEAM_USERS = ("user_id", "username")  # user_id where not empty, else username


def _steam_lines(path: str):
    """(1-based line number, text) of the non-blank lines of a plain or gzip file (told apart
    by the gzip magic bytes, not the name); DataError for bytes that are not UTF-8 or a damaged
    gzip stream."""
    with open(path, "rb") as fh:
        packed = fh.read(2) == b"\x1f\x8b"
    n = 0
    try:
        with (gzip.open(path, "rb") if packed else open(path, "rb")) as fh:
            for n, raw in enumerate(fh, 1):
                text = raw.decode("utf-8")
                if text.strip():
                    yield n, text
    except UnicodeDecodeError as err:
        raise DataError(f"{path} line {n}: not UTF-8 text ({one_line(err)})") from None
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path} after line {n}: {one_line(err)}") from None


def _steam_id(rec: dict, key: str, where: str) -> str:
    """``rec[key]`` as an id: text that is not blank, or an integer (as text)."""
    value = rec[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key!r} must be non-empty text, got {value!r:.60}")
    return value


def _steam_record(text: str, where: str) -> tuple[str, str, str]:
    """(user, item, date text) of one line: a Python-literal dict parsed by
    ``ast.literal_eval`` (literals only: nothing in the line is ever run)."""
    shown = repr(text.strip()[:80])
    try:
        rec = ast.literal_eval(text.strip())
    except SyntaxError as err:
        raise DataError(f"{where}: not a Python literal ({err.msg}): {shown}") from None
    except (ValueError, TypeError) as err:  # a call, a name, an operator: never evaluated
        what = "a call, a name or an operator" if "malformed" in str(err) else one_line(err, 80)
        raise DataError(f"{where}: not a Python literal (holds {what}; nothing of it is "
                        f"evaluated): {shown}") from None
    except (MemoryError, RecursionError):
        raise DataError(f"{where}: not a Python literal (nested too deeply): {shown}") from None
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a dict, got {type(rec).__name__}: {shown}")
    user = "user_id" if rec.get("user_id") not in (None, "") else (
        "username" if "username" in rec else None)
    missing = [k for k in (_STEAM_ITEM, _STEAM_DATE) if k not in rec]
    if user is None or missing:
        need = missing + ([] if user else [" or ".join(_STEAM_USERS)])
        raise DataError(f"{where}: missing key(s) {', '.join(need)}; keys present: "
                        f"{sorted(map(str, rec))}")
    date = rec[_STEAM_DATE]
    if not isinstance(date, str):
        raise DataError(f"{where}: {_STEAM_DATE!r} must be a date as text (YYYY-MM-DD), got "
                        f"{date!r:.60}")
    return _steam_id(rec, user, where), _steam_id(rec, _STEAM_ITEM, where), date


def read_steam(path) -> pl.DataFrame:
    """The Steam review dumps of Kang & McAuley ("Self-Attentive Sequential Recommendation",
    ICDM 2018) and Wan & McAuley (RecSys 2018), e.g. ``steam_reviews.json.gz``, plain or gzip:
    despite the name not JSON but one Python-literal dict per line, e.g. ``{'username': 'Chaos
    Syren', 'hours': 0.1, 'product_id': '725280', 'date': '2017-12-17', 'text': '...', ...}``.

    Each line is parsed with ``ast.literal_eval`` (literals only; a line such as
    ``__import__('os').system(...)`` is rejected, never run). The log: ``user`` = ``user_id``
    where a line has one (not empty), else ``username`` (so a person whose lines carry the id
    only sometimes counts as two users); ``item`` = ``product_id``; ``time`` = ``date``, a day,
    as :func:`read_interactions` reads a date (midnight UTC in Float64 epoch seconds; an ISO-8601
    date-time is taken as it is); other keys are ignored. Rows are in file order; blank lines
    are skipped. Parsing takes some 40 µs a line on one core: minutes for the 7.8 million lines
    of ``steam_reviews.json.gz``.

    Bad lines are errors, not dropped: the public dumps parse whole, so a bad line means a
    damaged or different file. A line that is not a Python literal, not a dict, lacks the user
    (``user_id`` or ``username``), ``product_id`` or ``date`` key, has an empty or non-text id or
    a date that does not parse: a DataError naming the file, the (1-based) line and the problem;
    so is an empty file, text that is not UTF-8 and a damaged gzip stream.

    Equal times: every event of a day has the same time, and the library sorts stably by (user,
    time) (``sort_events``), so a user's events of one day keep their file order (in the dumps,
    the order of the scraped pages, not necessarily the order of writing); under ``--protocol
    leave-one-out`` the "most recent" event is the last line of the user's last day.

    Sessions: times are whole days, so any ``--session-gap`` below 86400 s (the default 1800
    too) makes one session per user and day; 86400 or more also joins consecutive days (a gap
    must be exceeded), and a huge gap (1e12) makes one sequence per user. Most users review one
    game a day: ``--min-session-len 1`` keeps those days (the default 2 drops them).
    """
    path = check_file(path)
    users, items, dates, lines = [], [], [], []
    for n, text in _steam_lines(path):
        user, item, date = _steam_record(text, f"{path} line {n}")
        users.append(user)
        items.append(item)
        dates.append(date)
        lines.append(n)
    if not lines:
        raise DataError(f"empty file: {path} (no Steam records, one dict per line)")
    df = pl.DataFrame({"user": users, "item": items, "date": dates, "line": lines},
                      schema={"user": pl.String, "item": pl.String, "date": pl.String,
                              "line": pl.Int64})
    df = df.with_columns(_parse_iso(pl.col("date")).alias("time"))
    bad = df.filter(pl.col("time").is_null())
    if bad.height:
        first = bad.head(5)
        shown = ", ".join(f"line {n}: {d[:40]!r}" for n, d in zip(first["line"], first["date"]))
        raise DataError(f"{path}: {bad.height} {_STEAM_DATE!r} value(s) are not dates "
                        f"(YYYY-MM-DD), {shown}" + (" ..." if bad.height > 5 else ""))
    return read_interactions(df.select("user", "item", "time"))


def read_hcrnn(directory) -> tuple[pl.DataFrame, list[str]]:
    """The preprocessed files of Song et al.'s HCRNN repository (``data/<name>/`` of
    github gtshs2/HCRNN, given by path; never downloaded): ``train.txt``, ``valid.txt`` and
    ``test.txt``, tab-separated with a header (an unnamed index column, then ``ItemId``,
    ``Time``, ``SessionId`` (the user), ``item_idx``, ``sess_idx`` in any order), one sequence
    per user.

    Returns ``(log, test_users)``: the three files' events as a log (``user`` = SessionId,
    ``item`` = ItemId, ``time`` = Time, validated by :func:`read_interactions`) and the raw ids
    of the users of ``test.txt`` (for :func:`split_users`' ``test_users``). The validation users
    join the training part: a validation split is drawn from it again, as the authors drew
    theirs from the training users.
    """
    frames, test_users = [], []
    for part in ("train", "valid", "test"):
        path = os.path.join(os.fspath(directory), f"{part}.txt")
        df, used_sep = load_table(path, "\t", ["ItemId", "SessionId"])
        check_columns(df, ("ItemId", "Time", "SessionId"), path, used_sep, None)
        frames.append(df.select(pl.col("SessionId").cast(pl.String).alias("user"),
                                pl.col("ItemId").cast(pl.String).alias("item"),
                                pl.col("Time").alias("time")))
        if part == "test":
            test_users = frames[-1]["user"].unique(maintain_order=True).to_list()
    return read_interactions(pl.concat(frames)), test_users
