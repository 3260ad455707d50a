"""Interaction data: reading, sessions, filters, integer codes and train/test splits; item features.

Data flow (every step a pure function of its inputs)::

    read_interactions -> sessionize -> [dedupe_sessions] -> filter_interactions -> encode
        -> split -> restrict_items -> combine
    read_item_features -> item_feature_matrix(features, encoded.item_ids)   (rows by item code)

Frames after ``encode`` use the *encoded schema*: ``user`` Int32 (0..U-1), ``item`` Int32
(1..N, 0 is padding), ``time`` Float64 seconds, ``session`` Int32, plus ``event`` / ``value``
when present, sorted by (user, time). All report dictionaries count dropped *events* (rows),
except the user counts ``USER_COUNTS`` of ``split_users``. After ``restrict_items`` the catalogue
(codes 1..N) is exactly the items of the training part.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from hrnn_jax import choices
from hrnn_jax.config import DataConfig, Protocol, TimeUnit

PROTOCOLS = choices.options(Protocol)
TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}  # divisors to seconds
assert tuple(TIME_UNITS) == choices.options(TimeUnit)


class DataError(ValueError):
    """Bad input data; message names the column(s) or rows at fault."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """An error's message on one line, cut at ``limit`` characters (its type name if empty)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def _bad_rows(df: pl.DataFrame, mask: pl.Expr) -> tuple[int, list[int]]:
    """Number of rows where ``mask`` holds and the first few 0-based row numbers."""
    rows = df.with_row_index("_row").filter(mask)["_row"]
    return rows.len(), rows.head(5).to_list()


_DEFAULT_SEP = {".tsv": "\t", ".dat": "::"}  # by extension; otherwise ","
_LINE_SEP = "\x00"  # reading whole lines: a "separator" that text files do not contain
# ISO-8601 after normalisation (see _parse_iso): date, " ", time, optional offset
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M%#z",
                "%Y-%m-%d %H:%M", "%Y-%m-%d")


def _column_names(columns) -> tuple[str, ...] | None:
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


def _load(path, sep, id_cols, columns=None, encoding="utf8") -> tuple[pl.DataFrame, str | None]:
    """Read a CSV / TSV / ``::`` / Parquet file with polars; id columns are read as strings.

    ``encoding``: of text files, polars' "utf8" (invalid bytes are an error) or "utf8-lossy"
    (they become U+FFFD). Returns (frame, separator used; None for Parquet).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}")
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
    columns = _column_names(columns)
    used_sep = None
    if isinstance(path, pl.DataFrame):
        if columns is not None:
            raise DataError(f"columns {list(columns)} given for a DataFrame, which names its "
                            f"own columns; leave columns out")
        df, where = path, "frame"
    else:
        df, used_sep = _load(path, sep, [user_col, item_col], columns)
        where = os.fspath(path)
    wanted = {"user": user_col, "item": item_col, "time": time_col}
    if event_col is not None:
        wanted["event"] = event_col
    if value_col is not None:
        wanted["value"] = value_col
    _check_columns(df, wanted.values(), where, used_sep, columns)
    df = df.select([pl.col(src).alias(dst) for dst, src in wanted.items()])

    dtype = df.schema["time"]
    if isinstance(dtype, (pl.Datetime, pl.Date)):
        time = pl.col("time").dt.epoch("us").cast(pl.Float64) / 1e6
    elif dtype.is_numeric():
        time = pl.col("time").cast(pl.Float64) / TIME_UNITS[time_unit]
    elif dtype == pl.String:
        parsed = _parse_iso(pl.col("time"))
        n, rows = _bad_rows(df, pl.col("time").is_not_null() & parsed.is_null())
        if n:
            shown = [v if len(v) <= 40 else v[:40] + "..." for v in df["time"][rows].to_list()]
            raise DataError(f"time column {time_col!r} is not numeric (dtype String) and {n} "
                            f"value(s) are not ISO-8601 date-times (e.g. 2009-05-04T23:08:57Z), "
                            f"rows {rows}: {shown}")
        time = parsed.dt.epoch("us").cast(pl.Float64) / 1e6
    else:
        raise DataError(f"time column {time_col!r} is not numeric (dtype {dtype})")
    df = df.with_columns(time.alias("time"), pl.col("user", "item").cast(pl.String))
    if "event" in df.columns:
        df = df.with_columns(pl.col("event").cast(pl.String))
    if "value" in df.columns:
        if not df.schema["value"].is_numeric():
            raise DataError(f"value column {value_col!r} is not numeric "
                            f"(dtype {df.schema['value']})")
        df = df.with_columns(pl.col("value").cast(pl.Float64))

    n, rows = _bad_rows(df, pl.col("time").is_null() | pl.col("time").is_nan())
    if n:
        raise DataError(f"time column {time_col!r} has {n} null/NaN value(s), rows {rows}")
    for dst, src in (("user", user_col), ("item", item_col)):
        _check_ids(df, dst, src)
    return df


def _check_columns(df: pl.DataFrame, wanted, where: str, sep: str | None, columns) -> None:
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


def _check_ids(df: pl.DataFrame, col: str, name: str) -> None:
    """DataError naming the rows where id column ``col`` (``name`` in the file) is null."""
    n, rows = _bad_rows(df, pl.col(col).is_null())
    if n:
        raise DataError(f"id column {name!r} has {n} null value(s), rows {rows}")


READING = ("user_col", "item_col", "time_col", "sep", "columns", "time_unit", "event_col",
           "value_col")  # the reading fields of DataConfig: the keywords of read_interactions


def read_log(path, config: DataConfig) -> pl.DataFrame:
    """``read_interactions(path)`` with the reading fields of ``config``."""
    return read_interactions(path, **{k: getattr(config, k) for k in READING})


# ------------------------------------------------------------------------------------------
# Item features (Ma & Narayanaswamy: "movie genre vectors, with L2 normalization")
# ------------------------------------------------------------------------------------------
MOVIELENS_MOVIES = ("movieId", "title", "genres")  # movies.dat's fields; movies.csv's header
NO_GENRES = "(no genres listed)"  # MovieLens' genres of a movie without any


@dataclass(frozen=True)
class ItemFeatures:
    """Multi-hot genre vectors of items, each row of unit L2 norm (all zeros: no genre)."""

    item_ids: np.ndarray  # raw item ids (str, object array), in file order
    names: tuple[str, ...]  # the genre of each column, sorted
    matrix: np.ndarray  # float32 [n, G]


def read_item_features(path, *, item_col: str = "movieId", genres_col: str = "genres",
                       sep: str | None = None, columns=None, genre_sep: str = "|"
                       ) -> ItemFeatures:
    """Read an item file with a column of ``genre_sep``-separated genres (MovieLens' movies).

    The defaults read MovieLens as it comes:

    * ml-1m / ml-10m ``movies.dat`` (``1::Toy Story (1995)::Animation|Children's|Comedy``): a
      ``.dat`` file is split on "::" and, without ``columns``, has no header and the fields
      ``MOVIELENS_MOVIES`` = (movieId, title, genres).
    * ml-20m / ml-25m ``movies.csv``: header ``movieId,title,genres``, CSV quoting (titles with
      commas are quoted).

    ``path`` may also be a ``pl.DataFrame`` with those columns. Other files (CSV / TSV / any
    separator / Parquet, read with polars as
    :func:`read_interactions`) name the columns with ``item_col`` and ``genres_col``, and
    ``columns`` when they have no header. Text is decoded as UTF-8 with invalid bytes replaced
    (ml-1m's titles are Latin-1; ids and genres are ASCII). Genres are stripped of spaces;
    ``NO_GENRES`` and empty fields are no genre.

    Returns:
      ``ItemFeatures``: ``item_ids`` (raw ids as text, as ``read_interactions`` reads them),
      ``names`` (every genre, sorted) and ``matrix`` float32 ``[n, G]``, the multi-hot genres
      divided by their L2 norm (a row without genres stays all zeros).

    Raises:
      DataError: one line naming the problem: a missing file or column, an empty file, a null
        or duplicate item id.
    """
    columns = _column_names(columns)
    if isinstance(path, pl.DataFrame):  # already loaded (e.g. generated): its own column names
        if columns is not None:
            raise DataError(f"columns {list(columns)} given for a DataFrame, which names its "
                            f"own columns; leave columns out")
        df, used_sep, where = path, None, "frame"
    else:
        if columns is None and os.path.splitext(os.fspath(path))[1].lower() == ".dat":
            columns = MOVIELENS_MOVIES
        df, used_sep = _load(path, sep, [item_col, genres_col], columns, encoding="utf8-lossy")
        where = os.fspath(path)
    _check_columns(df, (item_col, genres_col), where, used_sep, columns)
    _check_ids(df, item_col, item_col)
    ids = df[item_col].cast(pl.String)
    dup = ids.filter(ids.is_duplicated()).unique(maintain_order=True)
    if dup.len():
        raise DataError(f"{dup.len()} item id(s) occur more than once in column {item_col!r} of "
                        f"{where}: {dup.head(5).to_list()}")
    genres = df[genres_col]
    if not isinstance(genres.dtype, pl.List):
        genres = genres.cast(pl.String).str.split(genre_sep)
    pairs = (pl.DataFrame({"row": np.arange(df.height), "genre": genres.cast(pl.List(pl.String))})
             .explode("genre")
             .with_columns(pl.col("genre").str.strip_chars())
             .filter(pl.col("genre").is_not_null() & (pl.col("genre") != "")
                     & (pl.col("genre") != NO_GENRES)))
    names = tuple(sorted(pairs["genre"].unique().to_list()))
    matrix = np.zeros((df.height, len(names)), np.float32)
    col = np.searchsorted(np.array(names, dtype=str), pairs["genre"].to_numpy().astype(str))
    matrix[pairs["row"].to_numpy(), col] = 1.0
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return ItemFeatures(item_ids=ids.to_numpy().astype(object), names=names, matrix=matrix)


def item_feature_matrix(features: ItemFeatures, item_ids) -> tuple[np.ndarray, dict[str, int]]:
    """The rows of ``features`` in the order of ``item_ids``, e.g. ``Encoded.item_ids``.

    Args:
      features: from :func:`read_item_features`.
      item_ids: the raw id of each item code (any scalars, compared as strings); ``None`` entries
        (the padding code 0 of ``Encoded.item_ids``) get zero rows.

    Returns:
      (matrix float32 ``[len(item_ids), G]``, report): row i is the features of ``item_ids[i]``,
      zeros where it has none; report ``{"items_without_features": ids (not None) missing from
      the features, "feature_items_not_in_log": feature ids not among item_ids}``.
    """
    raw = [None if r is None else str(r) for r in np.asarray(item_ids, dtype=object).ravel()]
    index = {r: i for i, r in enumerate(features.item_ids)}
    rows = np.array([index.get(r, -1) if r is not None else -1 for r in raw], dtype=np.int64)
    matrix = np.zeros((len(raw), len(features.names)), np.float32)
    found = rows >= 0
    matrix[found] = features.matrix[rows[found]]
    logged = set(raw)
    report = {"items_without_features": int(sum(r is not None for r in raw) - found.sum()),
              "feature_items_not_in_log": sum(r not in logged for r in features.item_ids)}
    return matrix, report


def _sort(df: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Stable sort (ties keep their current order)."""
    return df.sort(list(keys), maintain_order=True)


def sessionize(df: pl.DataFrame, gap: float = 1800.0) -> pl.DataFrame:
    """Sort by (user, time) stably and add ``session`` (Int64, global ids 0..S-1).

    A session starts at a user's first event and whenever the idle time since the user's
    previous event is strictly greater than ``gap`` seconds (a gap equal to ``gap`` stays).
    """
    if not gap > 0:
        raise DataError(f"session gap must be > 0 seconds, got {gap}")
    df = _sort(df.drop("session", strict=False), "user", "time")
    new = ((pl.col("user") != pl.col("user").shift(1))
           | ((pl.col("time") - pl.col("time").shift(1)) > gap)).fill_null(True)
    return df.with_columns(session=new.cast(pl.Int64).cum_sum() - 1)


def dedupe_sessions(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Drop repeated interactions of the same type within a session (Quadrana et al. 4.1).

    An event is dropped when an earlier row of the same session has the same item and, if there
    is an ``event`` column, the same interaction type (without one, the type is ignored); the
    first occurrence is kept, repeats need not be adjacent, and repeats in other sessions are
    kept. Row order is kept. Run it after ``sessionize`` (rows in (user, time) order, so "first"
    is the earliest) and before ``filter_interactions``; once is enough, as removing repeats
    cannot create new ones.

    Args:
      df: events with ``session`` and ``item`` columns (``event`` optional).

    Returns:
      (the events without repeats, number of events dropped).
    """
    if "session" not in df.columns:
        raise DataError("dedupe_sessions needs a 'session' column; call sessionize first")
    key = ["session", "item"] + (["event"] if "event" in df.columns else [])
    kept = df.unique(subset=key, keep="first", maintain_order=True)
    return kept, df.height - kept.height


def keep_max_value(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Only the events whose ``value`` is the log's maximum: explicit ratings made binary
    implicit feedback, as Song et al. (2019) treat MovieLens ("activating only the maximum
    rating"). Row order is kept.

    Returns:
      (the kept events, number of events dropped).
    """
    if "value" not in df.columns:
        raise DataError("keeping the maximum rating needs a 'value' column (the ratings)")
    top = df["value"].max()
    kept = df.filter(pl.col("value") == top)
    return kept, df.height - kept.height


def filter_interactions(df: pl.DataFrame, *, min_item_support: int = 5, min_session_len: int = 2,
                        min_sessions: int = 1, min_user_events: int = 1
                        ) -> tuple[pl.DataFrame, dict[str, int]]:
    """Quadrana et al. section 4.1 filters, repeated until nothing changes.

    Each round removes, in order: events of items with fewer than ``min_item_support`` events,
    sessions with fewer than ``min_session_len`` events, users with fewer than ``min_sessions``
    sessions, users with fewer than ``min_user_events`` events (Shuvo et al. use 5; HCRNN keeps
    sequences of at least 10). The report counts removed events per reason, summed over rounds. Session ids are
    kept as they are (not renumbered). Needs a ``session`` column (see ``sessionize``).
    """
    if "session" not in df.columns:
        raise DataError("filter_interactions needs a 'session' column; call sessionize first")
    report = {"item_support": 0, "session_length": 0, "user_sessions": 0, "user_events": 0}
    n_start = df.height
    rules = (("item_support", pl.len().over("item") >= min_item_support),
             ("session_length", pl.len().over("session") >= min_session_len),
             ("user_sessions", pl.col("session").n_unique().over("user") >= min_sessions),
             ("user_events", pl.len().over("user") >= min_user_events))
    changed = True
    while changed and df.height:
        changed = False
        for reason, keep in rules:
            before = df.height
            df = df.filter(keep)
            report[reason] += before - df.height
            changed |= df.height < before
    if df.height == 0:
        raise DataError(f"all {n_start} rows were removed by the filters: {report}")
    return df, report


def _id_order(ids: pl.Series) -> np.ndarray:
    """Unique raw ids, sorted numerically when they all look like integers, else as strings."""
    ids = ids.cast(pl.String).unique()
    frame = pl.DataFrame({"raw": ids, "num": ids.cast(pl.Int64, strict=False)})
    keys = ["raw"] if frame["num"].null_count() else ["num", "raw"]
    return frame.sort(keys)["raw"].to_numpy().astype(object)


@dataclass(frozen=True)
class Encoded:
    """Integer-coded events plus the tables that map codes back to raw ids."""

    events: pl.DataFrame
    user_ids: np.ndarray  # raw id of user code u at position u
    item_ids: np.ndarray  # raw id of item code i at position i; position 0 (padding) is None

    @property
    def n_items(self) -> int:
        """Number of items N (codes 1..N), padding excluded."""
        return len(self.item_ids) - 1

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @cached_property
    def _item_codes(self) -> dict[str, int]:
        return {raw: code for code, raw in enumerate(self.item_ids) if code > 0}

    def encode_items(self, raw) -> np.ndarray:
        """Raw item ids (any scalar type; compared as strings) -> int32 codes 1..N."""
        raw = [str(r) for r in np.atleast_1d(np.asarray(raw, dtype=object))]
        unknown = sorted({r for r in raw if r not in self._item_codes})
        if unknown:
            raise DataError(f"{len(unknown)} unknown item id(s): {unknown[:5]}")
        return np.array([self._item_codes[r] for r in raw], dtype=np.int32)

    def decode_items(self, codes) -> np.ndarray:
        """Item codes 0..N -> raw ids (object array; code 0 gives the padding entry None)."""
        codes = np.asarray(codes)
        bad = codes[(codes < 0) | (codes > self.n_items)]
        if bad.size:
            raise DataError(f"{bad.size} unknown item code(s) (valid 0..{self.n_items}): "
                            f"{sorted(set(bad.tolist()))[:5]}")
        return self.item_ids[codes]


def encode(df: pl.DataFrame, catalogue=None) -> Encoded:
    """Map raw ids to integer codes and renumber sessions 0..S-1 in (user, time) order.

    Users get codes 0..U-1 and items 1..N in sorted raw-id order (numeric order when all ids
    are integers). Rows are sorted by (user, time) stably.

    ``catalogue``: raw item ids (e.g. ``ItemFeatures.item_ids``) that get codes too, whether or
    not they occur in ``df``: an explicit catalogue, so that items without events (cold items)
    can be scored and recommended.

    With an ``event`` column (the interaction type) the events also get ``event_code`` (Int32):
    0..K-1 in sorted order of the type names.
    """
    if "session" not in df.columns:
        raise DataError("encode needs a 'session' column; call sessionize first")
    user_ids = _id_order(df["user"])
    items = df["item"].cast(pl.String)
    if catalogue is not None:
        items = pl.concat([items, pl.Series(np.asarray(catalogue, dtype=object).astype(str),
                                            dtype=pl.String)])
    item_ids = np.concatenate([np.array([None], dtype=object), _id_order(items)])
    user_map = pl.DataFrame({"user": user_ids.tolist(), "_u": np.arange(len(user_ids))},
                            schema={"user": pl.String, "_u": pl.Int32})
    item_map = pl.DataFrame({"item": item_ids[1:].tolist(), "_i": np.arange(1, len(item_ids))},
                            schema={"item": pl.String, "_i": pl.Int32})
    extra = [c for c in ("event", "value") if c in df.columns]
    ev = (df.with_columns(pl.col("user", "item").cast(pl.String))
          .with_row_index("_row")
          .join(user_map, on="user", how="left")
          .join(item_map, on="item", how="left")
          .sort(["_u", "time", "_row"])
          .with_row_index("_pos"))
    # a session's new id is the rank of its first row in (user, time) order
    first_pos = pl.col("_pos").min().over(["_u", "session"])
    ev = ev.with_columns(session=first_pos.rank("dense") - 1)
    events = ev.select(pl.col("_u").alias("user"), pl.col("_i").alias("item"),
                       pl.col("time").cast(pl.Float64), pl.col("session").cast(pl.Int32), *extra)
    if "event" in events.columns:  # the types' codes 0..K-1 in sorted order of their names
        events = events.with_columns(
            event_code=(pl.col("event").rank("dense") - 1).cast(pl.Int32))
    return Encoded(events=events, user_ids=user_ids, item_ids=item_ids)


def _drop_unseen(train: pl.DataFrame, test: pl.DataFrame, known_items=None
                 ) -> tuple[pl.DataFrame, int]:
    """Remove test events whose item never occurs in train, unless it is one of ``known_items``
    (codes: catalogue items scored without training events, e.g. from their features)."""
    seen = train["item"].unique()
    if known_items is not None:
        seen = pl.concat([seen, pl.Series(np.asarray(known_items), dtype=seen.dtype)])
    kept = test.filter(pl.col("item").is_in(seen.implode()))
    return kept, test.height - kept.height


def split_last_session(events: pl.DataFrame, *, known_items=None):
    """Quadrana et al.: test = each user's last session, train = all earlier sessions.

    Users with a single session keep it in train and get no test session. Test events whose
    item is not in train are removed ("test_unseen_items"), then test sessions left with fewer
    than 2 events are removed ("test_short_sessions"; counted in events). Returns
    (train, test, report).
    """
    ev = _sort(events, "user", "time")
    is_last = ((pl.col("session") == pl.col("session").max().over("user"))
               & (pl.col("session").n_unique().over("user") > 1))
    train, test = ev.filter(~is_last), ev.filter(is_last)
    test, unseen = _drop_unseen(train, test, known_items)
    kept = test.filter(pl.len().over("session") >= 2)
    report = {"test_unseen_items": unseen, "test_short_sessions": test.height - kept.height}
    return train, kept, report


def split_leave_one_out(events: pl.DataFrame, *, known_items=None):
    """Shuvo et al.: test = each user's last event (users with < 2 events: all train).

    Test events whose item is not in train are removed ("test_unseen_items").
    """
    ev = _sort(events, "user", "time")
    is_last = ((pl.int_range(pl.len()).over("user") == pl.len().over("user") - 1)
               & (pl.len().over("user") >= 2))
    train, test = ev.filter(~is_last), ev.filter(is_last)
    test, unseen = _drop_unseen(train, test, known_items)
    return train, test, {"test_unseen_items": unseen}


def split_temporal(events: pl.DataFrame, test_fraction: float = 0.05, *, known_items=None):
    """Donkers et al.: per user, the last ceil(test_fraction * n_u) events by time are test.

    A user's tail goes to test only if at least one train event is left. ceil is taken with a
    1e-9 tolerance so that e.g. 0.1 * 30 gives 3. Unseen test items are removed as in
    ``split_last_session``. Call twice (or use ``validation_split``) for 90/5/5.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ev = _sort(events, "user", "time")
    n = pl.len().over("user")
    k = (n.cast(pl.Float64) * test_fraction - 1e-9).ceil()
    is_test = (pl.int_range(pl.len()).over("user") >= n - k) & (n - k >= 1)
    train, test = ev.filter(~is_test), ev.filter(is_test)
    test, unseen = _drop_unseen(train, test, known_items)
    return train, test, {"test_unseen_items": unseen}


USER_COUNTS = ("train_users", "test_users")  # split_users' report: users, not dropped events


def split_users(events: pl.DataFrame, test_fraction: float = 0.2, *, seed: int = 0,
                drop_unseen: bool = True, known_items=None, test_users=None):
    """Ma & Narayanaswamy, Song et al.: a random ``test_fraction`` of the users, with all their
    events, is test; the other users are train.

    The sorted unique user ids are permuted by ``np.random.default_rng(seed)`` and the first
    n_test = round(test_fraction * n_users) are the test users (at least 1 and at most
    n_users - 1, so that neither part is empty). Test events whose item is not in train are
    removed ("test_unseen_items", events) unless ``drop_unseen`` is False (the simulations of
    ``hrnn_jax.simulations`` keep them: they score the whole encoded catalogue).
    ``test_users``: user codes to put in test instead of a random draw (a given split, e.g. the
    authors' files of Song et al., :func:`read_hcrnn`); ``test_fraction`` and ``seed`` are then
    unused.

    Returns:
      (train, test, report): report ``{"test_unseen_items", "train_users", "test_users"}``;
      the last two (``USER_COUNTS``) count the users of the returned parts, not events.
    """
    users = np.unique(events["user"].to_numpy())
    if len(users) < 2:
        raise DataError(f"the users split needs at least 2 users, got {len(users)}")
    if test_users is not None:  # a given split (e.g. the authors' files)
        chosen = np.intersect1d(users, np.asarray(test_users))
        if not 0 < len(chosen) < len(users):
            raise DataError(f"the given test users must be some but not all of the log's users "
                            f"({len(chosen)} of {len(users)} found)")
    else:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        n_test = min(max(int(round(test_fraction * len(users))), 1), len(users) - 1)
        chosen = np.random.default_rng(seed).permutation(users)[:n_test]
    is_test = pl.col("user").is_in(pl.Series(chosen.tolist(), dtype=events.schema["user"])
                                   .implode())
    ev = _sort(events, "user", "time")
    train, test = ev.filter(~is_test), ev.filter(is_test)
    unseen = 0
    if drop_unseen:
        test, unseen = _drop_unseen(train, test, known_items)
    return train, test, {"test_unseen_items": unseen, "train_users": train["user"].n_unique(),
                         "test_users": test["user"].n_unique()}


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
        df, used_sep = _load(path, "\t", ["ItemId", "SessionId"])
        _check_columns(df, ("ItemId", "Time", "SessionId"), path, used_sep, None)
        frames.append(df.select(pl.col("SessionId").cast(pl.String).alias("user"),
                                pl.col("ItemId").cast(pl.String).alias("item"),
                                pl.col("Time").alias("time")))
        if part == "test":
            test_users = frames[-1]["user"].unique(maintain_order=True).to_list()
    return read_interactions(pl.concat(frames)), test_users


def split(events: pl.DataFrame, protocol: str, *, test_fraction: float = 0.05, seed: int = 0,
          known_items=None, test_users=None):
    """Split by a named protocol: "last-session", "leave-one-out", "temporal" (each user's last
    ``test_fraction`` of events) or "users" (a random ``test_fraction`` of the users, drawn from
    ``seed``, or the given ``test_users`` codes; ``seed`` and ``test_users`` are used by no other
    protocol). Returns (train, test, report).

    Every protocol removes test events whose item has no training event, except items in
    ``known_items`` (codes of an explicit catalogue's items, scored from their features)."""
    choices.check("protocol", protocol, PROTOCOLS)
    if test_users is not None and protocol != "users":
        raise DataError(f"given test users need the users protocol, not {protocol!r}")
    kw = {"known_items": known_items}
    if protocol == "last-session":
        return split_last_session(events, **kw)
    if protocol == "leave-one-out":
        return split_leave_one_out(events, **kw)
    if protocol == "users":
        return split_users(events, test_fraction, seed=seed, test_users=test_users, **kw)
    return split_temporal(events, test_fraction, **kw)


def validation_split(train: pl.DataFrame, protocol: str, *, test_fraction: float = 0.05,
                     seed: int = 0, known_items=None):
    """Apply ``protocol`` again to the training part: (train2, valid, report).

    For "temporal" the fraction becomes test_fraction / (1 - test_fraction), so that two
    calls with 0.05 give 90/5/5 of the original events. For "users" ``test_fraction`` is the
    share of the *training* users that validate (Ma & Narayanaswamy hold out 10% of them), drawn
    with ``seed``; the fraction is not rescaled.
    """
    if protocol == "temporal":
        if not 0.0 < test_fraction < 0.5:
            raise DataError(f"test_fraction must be in (0, 0.5), got {test_fraction}")
        test_fraction = test_fraction / (1.0 - test_fraction)
    return split(train, protocol, test_fraction=test_fraction, seed=seed,
                 known_items=known_items)


def restrict_items(encoded: Encoded, train: pl.DataFrame, test: pl.DataFrame, *,
                   known_items=None) -> tuple[Encoded, pl.DataFrame, pl.DataFrame]:
    """Make the catalogue exactly the items of the training part (and ``known_items``).

    Items that occur only outside ``train`` (e.g. only in test events removed as unseen) leave
    the catalogue: the training items are renumbered 1..N in their current order, and ``train``
    and ``test`` are remapped, so every model scores and ranks the same N items.

    Args:
      encoded: the ``Encoded`` that ``train`` and ``test`` were split from.
      train: training events (encoded schema).
      test: test events (encoded schema); every item must occur in ``train`` or ``known_items``
        (the splits remove unseen test items), otherwise DataError.
      known_items: codes of items that stay in the catalogue without training events: an
        explicit catalogue's items (``encode(catalogue=)``), scored from their features (cold
        start). They keep their order among the training items.

    Returns:
      (encoded, train, test) with the new codes; ``encoded.events`` keeps only the events of
      catalogue items, ``encoded.item_ids`` maps the new codes back to raw ids.
    """
    kept = np.unique(train["item"].to_numpy())                   # old codes, ascending
    if known_items is not None:
        kept = np.union1d(kept, np.asarray(known_items, dtype=kept.dtype))
    known = pl.col("item").is_in(pl.Series(kept).implode())
    n, rows = _bad_rows(test, ~known)
    if n:
        raw = encoded.item_ids[test["item"].to_numpy()[rows]].tolist()
        raise DataError(f"{n} test event(s) have items that are not in the training part or "
                        f"the catalogue (test rows {rows}, raw item ids {raw}); remove unseen "
                        f"test items first")
    new = pl.col("item").replace_strict(kept, np.arange(1, len(kept) + 1), return_dtype=pl.Int32)
    events = encoded.events.filter(known)
    item_ids = np.concatenate([np.array([None], dtype=object), encoded.item_ids[kept]])
    restricted = Encoded(events=events.with_columns(new), user_ids=encoded.user_ids,
                         item_ids=item_ids)
    return restricted, train.with_columns(new), test.with_columns(new)


def combine(train: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """One frame with ``is_test``; sorted by (user, is_test, time), stably.

    Each user's training history comes first, then its test events; other modules address
    events by their row position in this frame.
    """
    both = pl.concat([train.with_columns(is_test=pl.lit(False)),
                      test.with_columns(is_test=pl.lit(True))], how="vertical")
    return _sort(both, "user", "is_test", "time")


def summary(events: pl.DataFrame) -> dict:
    """Counts: {"users", "items", "sessions", "events"}."""
    return {"users": events["user"].n_unique(), "items": events["item"].n_unique(),
            "sessions": events["session"].n_unique(), "events": events.height}
