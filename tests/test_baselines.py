import math
import time

import numpy as np
import polars as pl
import pytest

from hrnn_jax.baselines import ItemKNN, PersonalPop, Pop, make_baseline
from hrnn_jax.evaluation import EvalRows, make_eval_rows, metrics_from_ranks, rank_chunks


def frame(recs, with_test=False):
    """recs: (user, item, session[, is_test]) tuples in stream order."""
    cols = list(zip(*recs))
    data = {"user": pl.Series(cols[0], dtype=pl.Int32), "item": pl.Series(cols[1], dtype=pl.Int32),
            "time": np.arange(len(recs), dtype=np.float64), "session": pl.Series(cols[2], dtype=pl.Int32)}
    if with_test:
        data["is_test"] = pl.Series(cols[3], dtype=pl.Boolean)
    return pl.DataFrame(data)


def rows_with_inputs(items):
    """Minimal EvalRows whose only meaningful field is the input item."""
    n = len(items)
    z = np.zeros(n, dtype=np.int32)
    return EvalRows(event=np.arange(n, dtype=np.int64), user=z, item=np.asarray(items, dtype=np.int32),
                    target=z + 1, history_sessions=z, position=z + 1, session_length=z + 2,
                    seen_ptr=np.zeros(n + 1, dtype=np.int64), seen_items=np.zeros(0, dtype=np.int32),
                    seen_counts=np.zeros(0, dtype=np.int32))


# Item-KNN training data: sessions {1,2,3} (item 1 twice), {1,2}, {1,4}, {2,3}; item 5 never seen.
KNN_TRAIN = [(0, 1, 1), (0, 2, 1), (0, 1, 1), (0, 3, 1),
             (0, 1, 2), (0, 2, 2),
             (1, 1, 3), (1, 4, 3),
             (1, 2, 4), (1, 3, 4)]
# supports |S_1|=3 |S_2|=3 |S_3|=2 |S_4|=1; co-occurrences (1,2)=2 (1,3)=1 (1,4)=1 (2,3)=2
SIM = {(1, 2): 2 / 3, (1, 3): 1 / math.sqrt(6), (1, 4): 1 / math.sqrt(3), (2, 3): 2 / math.sqrt(6)}


def test_pop_scores():
    model = make_baseline("pop").fit(frame(KNN_TRAIN), n_items=5)
    s = model.score(rows_with_inputs([1, 4]), np.array([0, 1]))
    assert s.shape == (2, 6) and s.dtype == np.float32
    assert np.isneginf(s[:, 0]).all()
    np.testing.assert_array_equal(s[:, 1:], [[4, 3, 2, 1, 0]] * 2)


def test_itemknn_cosine_and_truncation():
    model = ItemKNN(neighbours=2).fit(frame(KNN_TRAIN), n_items=5)
    assert model.nbr_item.shape == (6, 2) and model.nbr_sim.shape == (6, 2)
    # item 1: neighbours 2 (2/3) and 4 (1/sqrt 3); item 3 (1/sqrt 6) is cut by the top-2 truncation
    assert model.nbr_item[1].tolist() == [2, 4]
    np.testing.assert_allclose(model.nbr_sim[1], [SIM[1, 2], SIM[1, 4]])
    assert model.nbr_item[2].tolist() == [3, 1]
    np.testing.assert_allclose(model.nbr_sim[2], [SIM[2, 3], SIM[1, 2]])
    assert model.nbr_item[4].tolist() == [1, 0]            # one neighbour, one empty slot
    assert model.nbr_item[5].tolist() == [0, 0]

    s = model.score(rows_with_inputs([1, 5]), np.array([0, 1]))
    assert s.shape == (2, 6) and s.dtype == np.float32 and np.isneginf(s[:, 0]).all()
    np.testing.assert_allclose(s[0, [2, 4]], [SIM[1, 2], SIM[1, 4]], rtol=1e-5)
    # non-neighbours (the input item 1 itself included) are ordered by popularity: 1 (4) > 3 (2) > 5 (0)
    assert s[0, 2] > s[0, 4] > s[0, 1] > s[0, 3] > s[0, 5] == 0.0
    assert 0 < s[0, 1] <= 1e-6                             # tie-breaker far below any similarity
    # an unseen input item: popularity order only
    assert s[1, 1] > s[1, 2] > s[1, 3] > s[1, 4] > s[1, 5]

    full = ItemKNN(neighbours=10).fit(frame(KNN_TRAIN), n_items=5)
    np.testing.assert_allclose(full.nbr_sim[1], [SIM[1, 2], SIM[1, 4], SIM[1, 3]] + [0] * 7)
    selfsim = ItemKNN(neighbours=10, self_similarity=True).fit(frame(KNN_TRAIN), n_items=5)
    assert selfsim.nbr_item[1, 0] == 1 and selfsim.nbr_sim[1, 0] == pytest.approx(1.0)


def test_itemknn_tiebreak_never_overturns_similarity():
    # items 1..3 in one session; item 4 co-occurs with 1 in two sessions; items 5 are very popular
    recs = [(0, 1, 1), (0, 2, 1), (0, 1, 2), (0, 3, 2)] + [(1, 5, 10 + k) for k in range(50)]
    model = ItemKNN(neighbours=5).fit(frame(recs), n_items=5)
    s = model.score(rows_with_inputs([1]), np.array([0]))[0]
    assert s[2] == s[3] or abs(s[2] - s[3]) < 1e-6        # equal similarities: tie-breaker only
    assert min(s[2], s[3]) > s[5]                          # popular non-neighbour stays below


def test_ppop_scores_and_ordering():
    # user 0 trains on 1,1,2 ; user 1 (other) makes item 3 very popular; test session of user 0: 4, 2, 3
    recs = [(0, 1, 1, False), (0, 1, 1, False), (0, 2, 1, False),
            (0, 4, 2, True), (0, 2, 2, True), (0, 3, 2, True)] + \
           [(1, 3, 10 + k // 2, False) for k in range(20)]
    recs.sort(key=lambda r: (r[0], r[3]))
    stream = frame(recs, with_test=True)
    rows = make_eval_rows(stream, targets="session")
    assert rows.target.tolist() == [2, 3]
    model = make_baseline("ppop").fit(stream.filter(~pl.col("is_test")).drop("is_test"), n_items=5)
    s = model.score(rows, np.array([0, 1]))
    assert s.shape == (2, 6) and s.dtype == np.float32 and np.isneginf(s[:, 0]).all()
    pop = np.array([0, 2, 1, 20, 0, 0]) / 21.0               # global training counts / (max + 1)
    # before event 4 the user has 1 x2, 2 x1, 4 x1; before event 5 also 2 x2
    np.testing.assert_allclose(s[0, 1:], [2 + pop[1], 1 + pop[2], pop[3], 1, 0], rtol=1e-6)
    np.testing.assert_allclose(s[1, 1:], [2 + pop[1], 2 + pop[2], pop[3], 1, 0], rtol=1e-6)
    # a personal count always beats global popularity; equal counts are ordered by popularity
    assert s[0, 4] > s[0, 3] and s[0, 2] > s[0, 4] and s[1, 1] > s[1, 2]
    # fit drops is_test rows itself when given the whole stream
    again = PersonalPop().fit(stream, n_items=5).score(rows, np.array([0, 1]))
    np.testing.assert_array_equal(again, s)


def test_ppop_with_rank_chunks_finds_repeats():
    recs = [(0, 1, 1, False), (0, 1, 1, False), (0, 2, 2, True), (0, 1, 2, True)] + \
           [(1, 3, 5, False)] * 5
    stream = frame(recs, with_test=True)
    rows = make_eval_rows(stream)
    model = PersonalPop().fit(stream, n_items=3)
    ranks = rank_chunks(lambda idx: model.score(rows, idx), rows)
    assert ranks.tolist() == [1.0]                          # item 1 (count 2) first
    assert rank_chunks(lambda idx: Pop().fit(stream, 3).score(rows, idx), rows).tolist() == [2.0]


def test_make_baseline_registry():
    assert isinstance(make_baseline("ItemKNN", neighbours=3), ItemKNN)
    assert make_baseline("itemknn", neighbours=3).neighbours == 3
    assert isinstance(make_baseline("ppop"), PersonalPop) and isinstance(make_baseline("pop"), Pop)
    with pytest.raises(ValueError):
        make_baseline("bpr")
    with pytest.raises(ValueError):
        Pop().fit(frame([(0, 7, 1)]), n_items=5)


def transition_stream(seed=0, n_users=150, n_items=60, sessions=4, length=6):
    """Sessions follow item -> succ[item] with prob 0.9 (else a random item); last session = test."""
    rng = np.random.default_rng(seed)
    succ = rng.permutation(n_items) + 1
    recs, sid = [], 0
    for u in range(n_users):
        for k in range(sessions):
            sid += 1
            item = int(rng.integers(1, n_items + 1))
            for _ in range(length):
                recs.append((u, item, sid, k == sessions - 1))
                item = int(succ[item - 1]) if rng.random() < 0.9 else int(rng.integers(1, n_items + 1))
    return frame(recs, with_test=True), n_items


def test_itemknn_beats_pop_on_transitions():
    stream, n_items = transition_stream()
    rows = make_eval_rows(stream, targets="session")
    train = stream.filter(~pl.col("is_test"))
    results = {}
    for name in ("pop", "itemknn"):
        model = make_baseline(name).fit(train, n_items)
        results[name] = metrics_from_ranks(rank_chunks(lambda idx: model.score(rows, idx), rows, chunk=128))
    assert results["itemknn"]["recall@5"] > 0.8
    assert results["itemknn"]["recall@5"] > results["pop"]["recall@5"] + 0.5


def test_itemknn_scales():
    rng = np.random.default_rng(0)
    n_items, n_events, length = 10_000, 100_000, 10
    items = (rng.zipf(1.3, size=n_events) % n_items + 1).astype(np.int32)
    sessions = np.arange(n_events) // length
    train = pl.DataFrame({"user": pl.Series(sessions // 5, dtype=pl.Int32), "item": items,
                          "time": np.arange(n_events, dtype=np.float64),
                          "session": pl.Series(sessions, dtype=pl.Int32)})
    t0 = time.perf_counter()
    model = ItemKNN(neighbours=100).fit(train, n_items)
    rows = rows_with_inputs(items[:512])
    s = model.score(rows, np.arange(512))
    elapsed = time.perf_counter() - t0
    assert s.shape == (512, n_items + 1)
    assert elapsed < 30.0, elapsed
