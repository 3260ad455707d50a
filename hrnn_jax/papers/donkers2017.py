"""Donkers, Loepp, Ziegler, "Sequential User-based Recurrent Neural Network Recommendations"
(RecSys 2017): the models of its Table 2, the table's figures, and the LastFM-1K subsample
(``experiments/donkers2017.py``).
"""
from __future__ import annotations

import numpy as np
import polars as pl

from hrnn_jax.data.errors import DataError
from hrnn_jax.models.registry import STANDARD_USER_GRU, USER_GRUS

# The paper's standard GRU ("without any of our proposed extensions"): the user-based cell without
# the user (cells.StandardUserGRU); every user-based GRU is tested against it
REFERENCE = STANDARD_USER_GRU

# Donkers et al.'s Table 2 (experiments/donkers2017.py), then RNN Concat (``concat``): the
# library's GRU4Rec-form GRU over each user's sequence (r after the recurrent product, dropout
# 0.2 on the outputs, GRU4Rec's initialisation), kept as a row for comparison; not the paper's.
MODELS = ("itemknn", "decay-itemknn", "mf", "seq-mf", REFERENCE) + tuple(USER_GRUS) + ("concat",)

LABELS = {"itemknn": "Item-based k-NN", "decay-itemknn": "Exp. Dec. Item-based k-NN",
          "mf": "Matrix Factorization", "seq-mf": "Seq. Matrix Factorization",
          REFERENCE: "Standard GRU", "user-gru-linear": "Linear User-based GRU",
          "user-gru-rectified": "Rectified Linear User-based GRU",
          "user-gru-attentional": "Attentional User-based GRU",
          "concat": "RNN Concat (GRU4Rec-form GRU; not the paper's)"}

# Table 2: (MRR@20, Recall@20) per model on MovieLens-10M and the LastFM-1K subsample
TABLE2 = {
    "movielens": {"itemknn": (0.03639, 0.12142), "decay-itemknn": (0.04231, 0.12853),
                  "mf": (0.01192, 0.07744), "seq-mf": (0.01550, 0.10730),
                  REFERENCE: (0.04730, 0.15773), "user-gru-linear": (0.05251, 0.16028),
                  "user-gru-rectified": (0.05901, 0.18697),
                  "user-gru-attentional": (0.06255, 0.20540)},
    "lastfm": {"itemknn": (0.04438, 0.10126), "decay-itemknn": (0.05594, 0.16724),
               "mf": (0.03289, 0.12723), "seq-mf": (0.02769, 0.11224),
               REFERENCE: (0.14374, 0.20269), "user-gru-linear": (0.18252, 0.24920),
               "user-gru-rectified": (0.19154, 0.25409),
               "user-gru-attentional": (0.18731, 0.25485)},
}
TABLE2_METRICS = ("mrr@20", "recall@20")

# Section 4.1.2: LastFM-1K, "a 10% subsample" (of what, the paper does not say; see sample_users)
LASTFM_SAMPLE = 0.1


def paper_table(choice: str, data_path: str | None) -> str | None:
    """Which of Table 2's columns to print beside a run: ``"movielens"``, ``"lastfm"`` or None.

    ``choice``: ``"auto"`` (by the log's file name: ``ratings.dat`` or a name with "ml-10m",
    "ml10m" or "movielens" -> movielens; a name with "lastfm" or "userid-timestamp" -> lastfm;
    otherwise, and for the synthetic log, none), ``"none"``, or a column's name."""
    if choice != "auto":
        return None if choice == "none" else choice
    if data_path is None:
        return None
    name = str(data_path).replace("\\", "/").rsplit("/", 1)[-1].lower()
    if name == "ratings.dat" or any(k in name for k in ("ml-10m", "ml10m", "movielens")):
        return "movielens"
    if any(k in name for k in ("lastfm", "userid-timestamp")):
        return "lastfm"
    return None


def sample_users(log: pl.DataFrame, fraction: float, seed: int = 0) -> pl.DataFrame:
    """The events of a random ``fraction`` of the log's users (each user kept whole).

    Deterministic: the distinct users in sorted order are permuted by
    ``numpy.random.default_rng(seed)`` and the first ``max(1, round(fraction * users))`` kept; the
    log's row order is kept.

    The paper evaluates LastFM-1K on "a 10% subsample" with an average sequence length of 1,738;
    LastFM-1K has 19,150,868 events of 992 users (19,305 a user), so a 10% sample of users would
    average about 19,000 events a user, while 10% of each user's events average about 1,930:
    the reported length fits a sample of events better. Neither is stated; this samples users
    (each sequence intact) and :func:`sample_events` the events.

    Raises:
      DataError: ``fraction`` not in (0, 1], or a log without a ``user`` column.
    """
    _check_fraction(fraction, "--user-sample")
    if "user" not in log.columns:
        raise DataError(f"--user-sample needs a user column; the log has {log.columns}")
    users = np.sort(log["user"].unique().to_numpy())
    keep = max(1, int(round(fraction * users.size)))
    chosen = np.random.default_rng(seed).permutation(users)[:keep]
    return log.filter(pl.col("user").is_in(chosen.tolist()))


def sample_events(log: pl.DataFrame, fraction: float) -> pl.DataFrame:
    """Each user's most recent ``fraction`` of events (``max(1, ceil(fraction * n))`` of a user
    with n events; by ``time``, ties in the log's order): one contiguous piece of every
    sequence, so the sequences stay sequences. Deterministic, no seed.

    Raises:
      DataError: ``fraction`` not in (0, 1], or a log without ``user`` and ``time`` columns.
    """
    _check_fraction(fraction, "--event-sample")
    missing = {"user", "time"} - set(log.columns)
    if missing:
        raise DataError(f"--event-sample needs the columns {sorted(missing)}; the log has "
                        f"{log.columns}")
    order = pl.int_range(pl.len()).alias("_row")
    ranked = (log.with_columns(order)
              .sort(["user", "time", "_row"])
              .with_columns(_pos=pl.int_range(pl.len()).over("user"),
                            _n=pl.len().over("user")))
    keep = pl.col("_pos") >= pl.col("_n") - (pl.col("_n") * fraction).ceil().clip(1)
    return ranked.filter(keep).sort("_row").drop("_row", "_pos", "_n")


def _check_fraction(fraction: float, flag: str) -> None:
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"{flag} is a fraction in (0, 1], got {fraction}")
