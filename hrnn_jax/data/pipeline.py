"""The one preprocessing pipeline, from a validated log to what every model is trained and
evaluated on (``prepare``): sessionise, optionally keep the maximum value only and drop repeated
interactions within sessions, filter (with a report of every dropped row), encode, split by
protocol, restrict the catalogue, and build the evaluation rows (``Prepared``). ``compare``, the
command line, checkpoints, the experiments and the papers' tables all prepare data through it.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import polars as pl

from hrnn_jax import data
from hrnn_jax.config import DataConfig
from hrnn_jax.data.rows import EvalRows, make_eval_rows, rows_targets

Catalogue = Literal["train", "log"]  # DataConfig.catalogue: the items every model ranks


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A prepared log. With an item-feature file (``DataConfig.item_features``), also
    ``item_features`` ``[N+1, G]`` (lined up with the codes), ``cold_items`` (bool ``[N+1]``:
    catalogue items without training events) and ``known_items`` (codes of the file's items, which
    every split keeps in test)."""

    encoded: data.Encoded
    protocol: str
    train: pl.DataFrame
    test: pl.DataFrame
    stream: pl.DataFrame
    rows: EvalRows
    info: dict
    item_features: np.ndarray | None = None
    cold_items: np.ndarray | None = None
    known_items: np.ndarray | None = None


def prepare(raw: pl.DataFrame, config: DataConfig = DataConfig(), *,
            test_users=None) -> Prepared:
    """From a validated log (``data.read_interactions``) to train/test parts and evaluation rows.

    Keep only the events at the maximum value (``config.max_value_only``: Song et al.'s MovieLens;
    off by default), sessionise, drop repeated interactions within sessions (``config.dedupe``;
    off by default),
    filter, encode, split by ``config.protocol``, and restrict the catalogue to the items of the
    training part (``data.restrict_items``; with ``config.catalogue="log"`` every item of the
    filtered log stays, and so do the test events of items without training events): every
    model ranks the same N items.

    ``test_users``: raw user ids to put in test under the "users" protocol instead of a random
    draw (a given split, e.g. ``data.read_hcrnn``'s).

    ``info``: summary of the filtered log before the split (users, items, sessions, events),
    train/test sizes (for the "users" protocol also ``train_users`` and ``test_users``),
    ``dropped`` (events per reason) and ``catalogue`` = {"items": N,
    "removed_items": number of ITEMS of the filtered log that occur only outside the training
    part, e.g. only in removed test events}; so ``items`` = N + ``removed_items``.
    """
    cfg = config
    repeats = {}
    if cfg.max_value_only:
        raw, repeats["below_max_value"] = data.keep_max_value(raw)
    frame = data.sessionize(raw, cfg.session_gap)
    if cfg.dedupe:
        frame, repeats["repeated_in_session"] = data.dedupe_sessions(frame)
    frame, dropped = data.filter_interactions(
        frame, min_item_support=cfg.min_item_support, min_session_len=cfg.min_session_len,
        min_sessions=cfg.min_sessions, min_user_events=cfg.min_user_events)
    genres = None if cfg.item_features is None else data.read_item_features(cfg.item_features)
    encoded = data.encode(frame, catalogue=None if genres is None else genres.item_ids)
    known = None if genres is None else encoded.encode_items(genres.item_ids)
    if cfg.catalogue == "log":  # every item of the log stays, with its test events
        known = np.arange(1, encoded.n_items + 1)
    train, test, split_report = data.split(encoded.events, cfg.protocol,
                                           test_fraction=cfg.test_fraction, seed=cfg.split_seed,
                                           known_items=known, test_users=None if test_users is None
                                           else _user_codes(encoded, test_users))
    users = {k: split_report.pop(k) for k in data.USER_COUNTS if k in split_report}
    if test.height == 0:
        raise data.DataError(f"the {cfg.protocol} split left no test events; users need more "
                             "history")
    restricted, train, test = data.restrict_items(encoded, train, test, known_items=known)
    stream = data.combine(train, test)
    features = cold = None
    catalogue = {"items": restricted.n_items,
                 "removed_items": encoded.n_items - restricted.n_items}
    if genres is not None:
        features, coverage = data.item_feature_matrix(genres, restricted.item_ids)
        known = restricted.encode_items(genres.item_ids)
        cold = np.ones(restricted.n_items + 1, bool)
        cold[0] = False
        cold[np.unique(train["item"].to_numpy())] = False
        catalogue.update(cold_items=int(cold.sum()), genres=features.shape[1], **coverage)
    rows = make_eval_rows(stream, rows_targets(cfg.protocol))
    info = {**data.summary(encoded.events), "train_events": train.height,
            "test_events": test.height, **users, "evaluated": len(rows),
            "dropped": {**repeats, **dropped, **split_report},
            "catalogue": catalogue}
    return Prepared(restricted, cfg.protocol, train, test, stream, rows, info, features, cold,
                    known)


def _user_codes(encoded: data.Encoded, raw_ids) -> np.ndarray:
    """The codes of the raw user ids that are in the log (others were filtered out)."""
    codes = {str(u): c for c, u in enumerate(encoded.user_ids)}
    return np.array([codes[str(u)] for u in raw_ids if str(u) in codes], np.int64)
