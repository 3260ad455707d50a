import math

import jax
import numpy as np
import polars as pl
import pytest

from hrnn_jax.data import EvalRows, make_eval_rows
from hrnn_jax.evaluation import (
    breakdown_by_history,
    breakdown_by_position,
    metrics_from_ranks,
    rank_chunks,
    rank_targets,
)

# ---------------------------------------------------------------------------------------------
# A hand-built stream (sorted by user, is_test, time); comments give the event index.
# ---------------------------------------------------------------------------------------------
STREAM_ROWS = [
    # user, item, session, is_test
    (0, 1, 10, False),  # 0
    (0, 2, 10, False),  # 1
    (0, 1, 10, False),  # 2
    (0, 3, 11, False),  # 3
    (0, 2, 12, True),   # 4
    (0, 4, 12, True),   # 5
    (0, 2, 12, True),   # 6
    (1, 5, 20, False),  # 7
    (1, 6, 20, False),  # 8
    (1, 6, 21, True),   # 9   one-event test session
    (2, 1, 30, True),   # 10  user without training history
    (2, 1, 30, True),   # 11
    (3, 2, 40, False),  # 12
    (3, 3, 40, False),  # 13
    (3, 4, 40, True),   # 14  leave-one-out style: test event inside a training session
]


def hand_stream() -> pl.DataFrame:
    u, i, s, t = zip(*STREAM_ROWS)
    return pl.DataFrame({
        "user": pl.Series(u, dtype=pl.Int32),
        "item": pl.Series(i, dtype=pl.Int32),
        "time": pl.Series(np.arange(len(u), dtype=np.float64)),
        "session": pl.Series(s, dtype=pl.Int32),
        "is_test": pl.Series(t, dtype=pl.Boolean),
    })


def seen_lists(rows, chunk=3):
    """[(seen items, counts)] of every row, from ``rows.seen`` over chunks of ``chunk`` rows (the
    padding must be item 0 with count 0, after the row's items); checks ``seen_of`` too."""
    out = []
    for start in range(0, len(rows), chunk):
        index = np.arange(start, min(start + chunk, len(rows)))
        items, counts = rows.seen(index)
        assert items.dtype == counts.dtype == np.int32 and items.shape == counts.shape
        width = items.shape[1]
        assert width >= 8 and width & (width - 1) == 0  # a power of two
        for i, r in enumerate(index):
            n = int((counts[i] > 0).sum())
            assert (counts[i, n:] == 0).all() and (items[i, n:] == 0).all()
            assert rows.seen_of(r).tolist() == items[i, :n].tolist()
            out.append((items[i, :n].tolist(), counts[i, :n].tolist()))
    return out


def test_make_eval_rows_session_targets():
    rows = make_eval_rows(hand_stream(), targets="session")
    assert rows.event.tolist() == [5, 6, 11, 14]
    assert rows.user.tolist() == [0, 0, 2, 3]
    assert rows.item.tolist() == [2, 4, 1, 3]
    assert rows.target.tolist() == [4, 2, 1, 4]
    assert rows.history_sessions.tolist() == [2, 2, 0, 1]
    assert rows.position.tolist() == [1, 2, 1, 2]
    assert rows.session_length.tolist() == [3, 3, 2, 3]
    assert rows.same_session.tolist() == [True] * 4
    assert seen_lists(rows) == [
        ([1, 2, 3], [2, 2, 1]),
        ([1, 2, 3, 4], [2, 2, 1, 1]),
        ([1], [1]),
        ([2, 3], [1, 1]),
    ]
    assert seen_lists(rows, chunk=len(rows)) == seen_lists(rows, chunk=1)
    for name in ("user", "item", "target", "history_sessions", "position", "session_length"):
        assert getattr(rows, name).dtype == np.int32, name
    assert rows.event.dtype == np.int64


def test_make_eval_rows_user_targets():
    rows = make_eval_rows(hand_stream(), targets="user")
    assert rows.event.tolist() == [4, 5, 6, 9, 11, 14]
    assert rows.item.tolist() == [3, 2, 4, 6, 1, 3]
    assert rows.target.tolist() == [2, 4, 2, 6, 1, 4]
    assert rows.history_sessions.tolist() == [2, 2, 2, 1, 0, 1]
    # event 4 is predicted from event 3 (1st event of session 11); event 9 from event 8 (2nd of s20)
    assert rows.position.tolist() == [1, 1, 2, 2, 1, 2]
    assert rows.session_length.tolist() == [3, 3, 3, 1, 2, 3]
    assert rows.same_session.tolist() == [False, True, True, False, True, True]
    assert seen_lists(rows)[0] == ([1, 2, 3], [2, 1, 1])
    assert seen_lists(rows)[3] == ([5, 6], [1, 1])


def test_make_eval_rows_rejects_bad_targets():
    with pytest.raises(ValueError):
        make_eval_rows(hand_stream(), targets="all")


def test_make_eval_rows_seen_matches_brute_force():
    rng = np.random.default_rng(3)
    recs = []
    session = 0
    for u in range(20):
        n_train, n_test = rng.integers(0, 4), rng.integers(1, 3)
        for k in range(n_train + n_test):
            session += 1
            for _ in range(rng.integers(1, 5)):
                recs.append((u, int(rng.integers(1, 9)), session, k >= n_train))
    u, i, s, t = zip(*recs)
    stream = pl.DataFrame({"user": pl.Series(u, dtype=pl.Int32),
                           "item": pl.Series(i, dtype=pl.Int32),
                           "time": np.arange(len(u), dtype=np.float64),
                           "session": pl.Series(s, dtype=pl.Int32),
                           "is_test": pl.Series(t, dtype=pl.Boolean)})
    for mode in ("session", "user"):
        rows = make_eval_rows(stream, targets=mode)
        expected = []
        for e, (ue, ie, se, te) in enumerate(recs):
            if (not te or e == 0 or recs[e - 1][0] != ue
                    or (mode == "session" and recs[e - 1][2] != se)):
                continue
            before = [r[1] for r in recs[:e] if r[0] == ue]
            items = sorted(set(before))
            expected.append((e, items, [before.count(x) for x in items]))
        assert rows.event.tolist() == [x[0] for x in expected]
        assert seen_lists(rows) == [(x[1], x[2]) for x in expected]
        assert seen_lists(rows, chunk=len(rows)) == seen_lists(rows, chunk=1)
        # any order of rows, repeats included (a user's rows need not be together)
        index = np.concatenate([np.random.default_rng(0).permutation(len(rows)), [0, 0]])
        items, counts = rows.seen(index)
        for i, r in enumerate(index):
            n = len(expected[r][1])
            assert items[i, :n].tolist() == expected[r][1] and (items[i, n:] == 0).all()
            assert counts[i, :n].tolist() == expected[r][2] and (counts[i, n:] == 0).all()


# ---------------------------------------------------------------------------------------------
# Ranks
# ---------------------------------------------------------------------------------------------
def brute_rank(scores, target, ties, exclude=None):
    above = equal = 0
    for j in range(1, len(scores)):
        if j == target or (exclude is not None and exclude[j]):
            continue
        if scores[j] > scores[target]:
            above += 1
        elif scores[j] == scores[target]:
            equal += 1
    return 1 + above + {"optimistic": 0, "pessimistic": equal, "average": equal / 2}[ties]


def tied_scores(rng, n_rows, n_cols):
    scores = rng.integers(0, 6, size=(n_rows, n_cols)).astype(np.float32)  # many ties
    scores[:, 0] = 100.0  # padding scores highest: must never count
    return scores


@pytest.mark.parametrize("ties", ["optimistic", "pessimistic", "average"])
@pytest.mark.parametrize("with_exclude", [False, True])
def test_rank_targets_matches_brute_force(ties, with_exclude):
    rng = np.random.default_rng(0)
    scores = tied_scores(rng, 40, 13)
    targets = rng.integers(1, 13, size=40)
    exclude = rng.random((40, 13)) < 0.3 if with_exclude else None
    if with_exclude:
        exclude[np.arange(0, 40, 3), targets[::3]] = True  # the target itself is never removed
    got = np.asarray(rank_targets(scores, targets, ties=ties, exclude=exclude))
    want = [brute_rank(scores[r], targets[r], ties, None if exclude is None else exclude[r])
            for r in range(40)]
    np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float32))
    assert got.dtype == np.float32


def test_rank_targets_jit_and_padding():
    scores = np.array([[9.0, 1.0, 2.0, 2.0, 3.0]], dtype=np.float32)
    jitted = jax.jit(rank_targets, static_argnames="ties")
    t = np.array([2])
    assert float(jitted(scores, t, ties="optimistic")[0]) == 2.0  # only item 4 is above
    assert float(jitted(scores, t, ties="pessimistic")[0]) == 3.0
    assert float(jitted(scores, t, ties="average")[0]) == 2.5
    with pytest.raises(ValueError):
        rank_targets(scores, t, ties="random")


@pytest.mark.parametrize("ties", ["optimistic", "pessimistic", "average"])
@pytest.mark.parametrize("with_exclude", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_target_ranks_last(ties, with_exclude, bad):
    """A NaN / +inf / -inf target ranks 1 + (number of counted items), whatever the policy."""
    scores = np.array([[9.0, 1.0, 2.0, 2.0, 3.0, np.nan, np.inf, -np.inf]] * 3, np.float32)
    targets = np.array([2, 5, 7])  # finite; NaN; -inf (replaced by ``bad`` below)
    scores[0, 2] = bad
    scores[1, 5] = bad
    scores[2, 7] = bad
    exclude = np.zeros(scores.shape, bool)
    if with_exclude:
        exclude[:, [1, 6]] = True      # two other items removed from the ranking
        exclude[0, 2] = True           # the target itself is marked: it is still ranked
    n_counted = 7 - 1 - (2 if with_exclude else 0)  # real items, less the target, less excluded
    got = np.asarray(rank_targets(scores, targets, ties=ties,
                                  exclude=exclude if with_exclude else None))
    np.testing.assert_array_equal(got, np.full(3, 1.0 + n_counted, np.float32))
    jitted = jax.jit(rank_targets, static_argnames="ties")
    np.testing.assert_array_equal(np.asarray(jitted(scores, targets, ties=ties)),
                                  np.full(3, 1.0 + 7 - 1, np.float32))
    m = metrics_from_ranks(got, ks=(1, 4))  # last = rank 5 or 7: no credit at these cut-offs
    assert m["recall@4"] == 0.0 and m["mrr@4"] == 0.0 and m["ndcg@4"] == 0.0


def test_nan_items_other_than_the_target_never_count():
    scores = np.array([[0.0, np.nan, 2.0, np.nan, 1.0]], np.float32)
    for ties in ("optimistic", "pessimistic", "average"):
        assert float(rank_targets(scores, np.array([4]), ties=ties)[0]) == 2.0  # only item 2


def random_rows(rng, n_rows, n_items, max_seen=6):
    """Rows of one-row users: row r's history is a shuffled list of ``seen[r]`` (distinct items,
    some repeated) followed by its target event. Returns (rows, seen)."""
    seen = [rng.choice(np.arange(1, n_items + 1), size=n, replace=False)
            for n in rng.integers(0, max_seen, size=n_rows)]
    histories = [rng.permutation(np.concatenate([s, s[:rng.integers(0, len(s) + 1)]]))
                 for s in seen]
    target = rng.integers(1, n_items + 1, size=n_rows).astype(np.int32)
    lengths = np.array([len(h) + 1 for h in histories], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    stream_item = np.concatenate([np.append(h, t) for h, t in zip(histories, target)]
                                 + [np.zeros(0)]).astype(np.int32)
    z = np.zeros(n_rows, dtype=np.int32)
    rows = EvalRows(event=start + lengths - 1, user=np.arange(n_rows, dtype=np.int32), item=z + 1,
                    target=target, history_sessions=z, position=z + 1, session_length=z + 2,
                    history_start=start, stream_item=stream_item,
                    stream_time=np.arange(len(stream_item), dtype=np.float64))
    return rows, seen


def test_seen_matches_the_histories():
    rng = np.random.default_rng(5)
    rows, seen = random_rows(rng, 40, 30, max_seen=20)
    for index in (np.arange(40), rng.permutation(40)[:13], np.array([7, 7, 3]), np.zeros(0, int)):
        items, counts = rows.seen(index)
        for i, r in enumerate(index):
            history = rows.stream_item[rows.history_start[r]:rows.event[r]].tolist()
            want = sorted(set(history))
            assert want == sorted(seen[r].tolist())
            n = len(want)
            assert items[i, :n].tolist() == want and (items[i, n:] == 0).all()
            assert counts[i, :n].tolist() == [history.count(x) for x in want]
            assert (counts[i, n:] == 0).all()
        longest = max([len(seen[r]) for r in index], default=0)
        assert items.shape == (len(index), max(8, 1 << (longest - 1).bit_length()))
    with pytest.raises(ValueError, match="history"):
        hand_rows([1], [1], [5]).seen(np.array([0]))


@pytest.mark.parametrize("ties", ["optimistic", "average"])
def test_rank_chunks_equals_one_shot(ties):
    rng = np.random.default_rng(1)
    n_rows, n_items = 37, 11
    rows, seen = random_rows(rng, n_rows, n_items)
    scores = tied_scores(rng, n_rows, n_items + 1)
    sizes = []

    def score_fn(idx):
        sizes.append(len(idx))
        return scores[idx]

    got = rank_chunks(score_fn, rows, ties=ties, chunk=8)
    want = np.asarray(rank_targets(scores, rows.target, ties=ties))
    np.testing.assert_array_equal(got, want)
    assert set(sizes) == {8} and len(sizes) == 5  # last chunk padded to the fixed size

    mask = np.zeros_like(scores, dtype=bool)
    for r in range(n_rows):
        mask[r, seen[r]] = True
    got = rank_chunks(score_fn, rows, ties=ties, chunk=8, exclude_seen=True)
    want = [brute_rank(scores[r], rows.target[r], ties, mask[r]) for r in range(n_rows)]
    np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float32))
    assert (got <= np.asarray(rank_targets(scores, rows.target, ties=ties))).all()


def test_rank_chunks_small_and_empty():
    rng = np.random.default_rng(2)
    rows, _ = random_rows(rng, 3, 5)
    scores = rng.random((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(rank_chunks(lambda i: scores[i], rows, chunk=1024),
                                  np.asarray(rank_targets(scores, rows.target)))
    empty, _ = random_rows(rng, 0, 5)
    assert rank_chunks(lambda i: scores[i], empty).shape == (0,)


# ---------------------------------------------------------------------------------------------
# Metrics and breakdowns
# ---------------------------------------------------------------------------------------------
def test_metrics_from_ranks_hand_values():
    ranks = np.array([1, 3, 6, 2.5, 21])
    m = metrics_from_ranks(ranks, ks=(1, 5, 20))
    assert m["n"] == 5
    assert m["recall@1"] == pytest.approx(0.2) and m["mrr@1"] == pytest.approx(0.2)
    assert m["ndcg@1"] == pytest.approx(0.2)
    assert m["recall@5"] == pytest.approx(0.6) and m["hit@5"] == pytest.approx(0.6)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 3 + 1 / 2.5) / 5)
    assert m["ndcg@5"] == pytest.approx((1 + 0.5 + 1 / math.log2(3.5)) / 5)
    assert m["recall@20"] == pytest.approx(0.8)
    assert m["mrr@20"] == pytest.approx((1 + 1 / 3 + 1 / 6 + 1 / 2.5) / 5)
    assert m["ndcg@20"] == pytest.approx((1 + 0.5 + 1 / math.log2(7) + 1 / math.log2(3.5)) / 5)
    for k in (1, 5, 20):
        assert m[f"precision@{k}"] == pytest.approx(m[f"recall@{k}"] / k)
    with pytest.raises(ValueError):
        metrics_from_ranks(np.array([]))


def hand_rows(history, position, length, same=None):
    n = len(history)
    z = np.zeros(n, dtype=np.int32)
    return EvalRows(event=np.arange(n, dtype=np.int64), user=z, item=z + 1, target=z + 2,
                    history_sessions=np.asarray(history, dtype=np.int32),
                    position=np.asarray(position, dtype=np.int32),
                    session_length=np.asarray(length, dtype=np.int32),
                    same_session=None if same is None else np.asarray(same))


def test_breakdown_by_history():
    rows = hand_rows([1, 6, 7, 12], [1] * 4, [5] * 4)
    ranks = np.array([1.0, 10.0, 2.0, 3.0])
    b = breakdown_by_history(rows, ranks, ks=(5,))
    assert set(b) == {"short (<=6)", "long (>6)"}
    assert b["short (<=6)"]["n"] == 2 and b["short (<=6)"]["recall@5"] == pytest.approx(0.5)
    assert b["long (>6)"]["mrr@5"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    only_short = breakdown_by_history(hand_rows([1, 2], [1, 1], [5, 5]), np.array([1.0, 2.0]))
    assert set(only_short) == {"short (<=6)"}
    with pytest.raises(ValueError):
        breakdown_by_history(rows, ranks[:3])


def test_breakdown_by_position():
    #           beginning  beginning  middle  middle  end  end  too short  other session
    position = [1,         2,         3,      4,      5,   9,   1,         2]
    length = [6, 6, 6, 6, 10, 10, 4, 8]
    same = [True] * 7 + [False]
    ranks = np.array([1.0, 7.0, 2.0, 4.0, 5.0, 6.0, 1.0, 1.0])
    b = breakdown_by_position(hand_rows([1] * 8, position, length, same), ranks, ks=(5,))
    assert list(b) == ["beginning", "middle", "end"]
    assert [b[g]["n"] for g in b] == [2, 2, 2]
    assert b["beginning"]["recall@5"] == pytest.approx(0.5)
    assert b["middle"]["mrr@5"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert b["end"]["recall@5"] == pytest.approx(0.5)
    b = breakdown_by_position(hand_rows([1] * 3, [1, 2, 1], [2, 6, 6]), np.ones(3),
                              min_session_len=5)
    assert list(b) == ["beginning"] and b["beginning"]["n"] == 2
