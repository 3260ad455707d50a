"""Train/test splits of encoded events by a named protocol (``split``): each user's last session
(Quadrana et al.), last event (leave-one-out, Shuvo et al.), last fraction of events (Donkers et
al.'s 90/5/5 with ``validation_split``), or a random fraction of the users (Ma & Narayanaswamy,
Song et al.); the catalogue restricted to the training part's items (``restrict_items``) and the
stream of train then test events (``combine``). Every report counts dropped *events*, except the
user counts ``USER_COUNTS`` of ``split_users``.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from hrnn_jax import choices
from hrnn_jax.data.errors import DataError, bad_rows
from hrnn_jax.data.sessions import Encoded, sort_events

Protocol = Literal["last-session", "leave-one-out", "temporal", "users"]
PROTOCOLS = choices.options(Protocol)


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
    ev = sort_events(events, "user", "time")
    is_last = ((pl.col("session") == pl.col("session").max().over("user"))
               & (pl.col("session").n_unique().over("user") > 1))
    train, test = ev.filter(~is_last), ev.filter(is_last)
    test, unseen = _drop_unseen(train, test, known_items)
    kept = test.filter(pl.len().over("session") >= 2)
    report = {"test_unseen_items": unseen, "test_short_sessions": test.height - kept.height}
    return train, kept, report


def split_leave_one_out(events: pl.DataFrame, *, known_items=None):
    """Shuvo et al.: test = each user's last event (users with < 2 events: all train).

    Test events whose item is not in train are removed ("test_unseen_items"). Events are ordered
    by (user, time) stably, so among events of equal time the last row is the "last" event.

    The seed paper's protocol (Shuvo et al., after Kang & McAuley; Steam and MovieLens-1M): the
    most recent item of each user is test, the second most recent validation, the rest training,
    and users with < 5 events are removed. Flags: ``--protocol leave-one-out --min-user-events 5
    --patience N``. ``--min-user-events`` filters before the split (``filter_interactions`` in
    ``prepare``, repeated with the other filters until nothing changes); with ``--patience`` > 0
    early stopping splits the training part again by this protocol (``validation_split``, used
    by ``compare.validation``): each user's last training event, i.e. the second most recent
    event, validates, and the model trains on the events before it. As in test, a validation
    event whose item has no earlier training event is removed; the test event still follows the
    whole training part (validation event included) when the model is evaluated.
    """
    ev = sort_events(events, "user", "time")
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
    ev = sort_events(events, "user", "time")
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
    ``hrnn_jax.papers.ma2019`` keep them: they score the whole encoded catalogue).
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
    ev = sort_events(events, "user", "time")
    train, test = ev.filter(~is_test), ev.filter(is_test)
    unseen = 0
    if drop_unseen:
        test, unseen = _drop_unseen(train, test, known_items)
    return train, test, {"test_unseen_items": unseen, "train_users": train["user"].n_unique(),
                         "test_users": test["user"].n_unique()}


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
    share of the *training* users that validate (Song et al. assign "10% of the randomly chosen
    train set as the validation set"; Ma & Narayanaswamy give no share), drawn with ``seed``; the
    fraction is not rescaled.
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
    n, rows = bad_rows(test, ~known)
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
    return sort_events(both, "user", "is_test", "time")
