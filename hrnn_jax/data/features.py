"""Item features (Ma & Narayanaswamy: "movie genre vectors, with L2 normalization"): MovieLens
``movies.dat`` / ``movies.csv`` or any file with an id and a genres column, read into L2-normalised
multi-hot genre vectors, and lined up with the item codes (``item_feature_matrix``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import polars as pl

from hrnn_jax.data.errors import DataError
from hrnn_jax.data.read import check_columns, check_ids, column_names, load_table

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
    columns = column_names(columns)
    if isinstance(path, pl.DataFrame):  # already loaded (e.g. generated): its own column names
        if columns is not None:
            raise DataError(f"columns {list(columns)} given for a DataFrame, which names its "
                            f"own columns; leave columns out")
        df, used_sep, where = path, None, "frame"
    else:
        if columns is None and os.path.splitext(os.fspath(path))[1].lower() == ".dat":
            columns = MOVIELENS_MOVIES
        df, used_sep = load_table(path, sep, [item_col, genres_col], columns, encoding="utf8-lossy")
        where = os.fspath(path)
    check_columns(df, (item_col, genres_col), where, used_sep, columns)
    check_ids(df, item_col, item_col)
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
