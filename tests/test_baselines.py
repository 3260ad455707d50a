import dataclasses
import math
import time

import numpy as np
import polars as pl
import pytest

from hrnn_jax import baselines, compare, data
from hrnn_jax.baselines import (
    FMC,
    FPMC,
    MF,
    DecayItemKNN,
    ItemKNN,
    PersonalPop,
    Pop,
    SeqMF,
    baseline_names,
    build_baseline,
    factorisation,
)
from hrnn_jax.config import Config, DataConfig, ModelConfig
from hrnn_jax.data import EvalRows, make_eval_rows, synthetic
from hrnn_jax.evaluation import metrics_from_ranks, rank_chunks


def frame(recs, with_test=False):
    """recs: (user, item, session[, is_test]) tuples in stream order."""
    cols = list(zip(*recs))
    data = {"user": pl.Series(cols[0], dtype=pl.Int32), "item": pl.Series(cols[1], dtype=pl.Int32),
            "time": np.arange(len(recs), dtype=np.float64),
            "session": pl.Series(cols[2], dtype=pl.Int32)}
    if with_test:
        data["is_test"] = pl.Series(cols[3], dtype=pl.Boolean)
    return pl.DataFrame(data)


def rows_with_inputs(items):
    """Minimal EvalRows whose only meaningful field is the input item."""
    n = len(items)
    z = np.zeros(n, dtype=np.int32)
    return EvalRows(event=np.arange(n, dtype=np.int64), user=z,
                    item=np.asarray(items, dtype=np.int32),
                    target=z + 1, history_sessions=z, position=z + 1, session_length=z + 2)


# Item-KNN training data: sessions {1,2,3} (item 1 twice), {1,2}, {1,4}, {2,3}; item 5 never seen.
KNN_TRAIN = [(0, 1, 1), (0, 2, 1), (0, 1, 1), (0, 3, 1),
             (0, 1, 2), (0, 2, 2),
             (1, 1, 3), (1, 4, 3),
             (1, 2, 4), (1, 3, 4)]
# supports |S_1|=3 |S_2|=3 |S_3|=2 |S_4|=1; co-occurrences (1,2)=2 (1,3)=1 (1,4)=1 (2,3)=2
SIM = {(1, 2): 2 / 3, (1, 3): 1 / math.sqrt(6), (1, 4): 1 / math.sqrt(3), (2, 3): 2 / math.sqrt(6)}


def test_pop_scores():
    model = build_baseline("pop", Config()).fit(frame(KNN_TRAIN), n_items=5)
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
    # non-neighbours (the input item 1 itself included) are ordered by popularity:
    # 1 (4) > 3 (2) > 5 (0)
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
    # user 0 trains on 1,1,2 ; user 1 (other) makes item 3 very popular;
    # test session of user 0: 4, 2, 3
    recs = [(0, 1, 1, False), (0, 1, 1, False), (0, 2, 1, False),
            (0, 4, 2, True), (0, 2, 2, True), (0, 3, 2, True)] + \
           [(1, 3, 10 + k // 2, False) for k in range(20)]
    recs.sort(key=lambda r: (r[0], r[3]))
    stream = frame(recs, with_test=True)
    rows = make_eval_rows(stream, targets="session")
    assert rows.target.tolist() == [2, 3]
    model = build_baseline("ppop", Config()).fit(stream.filter(~pl.col("is_test")).drop("is_test"),
                                                 n_items=5)
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


def test_baseline_registry():
    assert baseline_names() == ("pop", "ppop", "spop", "itemknn", "decay-itemknn", "mf",
                                "bpr-mf", "seq-mf", "bpr", "fmc", "fpmc")
    knn = build_baseline("itemknn", Config(model=ModelConfig(neighbours=3)))
    assert type(knn) is ItemKNN and knn.neighbours == 3
    assert build_baseline("itemknn").neighbours == ModelConfig().neighbours  # Config() default
    assert isinstance(build_baseline("ppop", Config()), PersonalPop)
    assert isinstance(build_baseline("pop", Config()), Pop)
    assert type(build_baseline("spop", Config())) is PersonalPop
    # names are exact: no case folding, no "-"/"_" normalisation
    for name in ("BPR", "ItemKNN", "item-knn", "POP", ""):
        with pytest.raises(ValueError):
            build_baseline(name, Config())
    with pytest.raises(ValueError):
        Pop().fit(frame([(0, 7, 1)]), n_items=5)


def test_register_baseline_adds_a_name():
    name = "test-pop-registered"
    assert name not in baseline_names()
    seen = []

    def builder(config):
        seen.append(config)
        return ItemKNN(neighbours=config.model.neighbours + 1)

    try:
        assert baselines.register_baseline(name, builder) is builder
        assert baseline_names()[-1] == name and name in compare.model_names()
        config = Config(model=ModelConfig(neighbours=4))
        model = build_baseline(name, config)
        assert type(model) is ItemKNN and model.neighbours == 5 and seen == [config]
        with pytest.raises(ValueError, match="registered already"):
            baselines.register_baseline(name, lambda config: Pop())
        assert build_baseline(name, config).neighbours == 5      # not replaced
        baselines.register_baseline(name, lambda config: Pop(), replace=True)
        assert type(build_baseline(name, config)) is Pop
        for bad in ("Upper", "with space", "a,b", ""):
            with pytest.raises(ValueError):
                baselines.register_baseline(bad, builder)
            assert bad not in baseline_names()
    finally:
        baselines.registry._BUILDERS.pop(name, None)
    assert name not in baseline_names()
    with pytest.raises(ValueError):
        build_baseline(name, Config())


def transition_stream(seed=0, n_users=150, n_items=60, sessions=4, length=6):
    """Sessions follow item -> succ[item] with prob 0.9 (else a random item); last
    session = test."""
    rng = np.random.default_rng(seed)
    succ = rng.permutation(n_items) + 1
    recs, sid = [], 0
    for u in range(n_users):
        for k in range(sessions):
            sid += 1
            item = int(rng.integers(1, n_items + 1))
            for _ in range(length):
                recs.append((u, item, sid, k == sessions - 1))
                item = (int(succ[item - 1]) if rng.random() < 0.9
                        else int(rng.integers(1, n_items + 1)))
    return frame(recs, with_test=True), n_items


def test_itemknn_beats_pop_on_transitions():
    stream, n_items = transition_stream()
    rows = make_eval_rows(stream, targets="session")
    train = stream.filter(~pl.col("is_test"))
    results = {}
    for name in ("pop", "itemknn"):
        model = build_baseline(name, Config()).fit(train, n_items)
        results[name] = metrics_from_ranks(rank_chunks(lambda idx: model.score(rows, idx), rows,
                                                       chunk=128))
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


# --------------------------------------------------------------------------------------------
# Donkers et al. (2017) baselines: time-decayed Item-KNN, BPR-MF, sequential MF
# --------------------------------------------------------------------------------------------

DAY = 86400.0


@pytest.fixture(scope="module")
def small_prep():
    return data.prepare(synthetic.generate(n_users=30, n_items=60, seed=1),
                           DataConfig(protocol="temporal"))


def dense_similarity(model):
    """[N+1, N+1] float64 similarity table from the kept neighbourhoods."""
    sim = np.zeros((model.n_items + 1, model.n_items + 1))
    rows = np.repeat(np.arange(model.n_items + 1), model.neighbours)
    np.add.at(sim, (rows, model.nbr_item.reshape(-1)), model.nbr_sim.reshape(-1))
    sim[:, 0] = 0.0
    return sim


def decayed_reference(model, rows, decay):
    """Per-row loop: sum over the history of exp(-decay * age in days) * sim(item_h, .)."""
    sim = dense_similarity(model)
    out = np.zeros((len(rows), model.n_items + 1))
    for r in range(len(rows)):
        t = rows.stream_time[rows.event[r]]
        for h in range(rows.history_start[r], rows.event[r]):
            w = math.exp(-decay * (t - rows.stream_time[h]) / DAY)
            out[r] += w * sim[rows.stream_item[h]]
    return out


def test_decay_itemknn_matches_loop_reference(small_prep):
    rows, n = small_prep.rows, small_prep.encoded.n_items
    index = np.arange(len(rows))
    model = DecayItemKNN(neighbours=10, decay=0.5).fit(small_prep.train, n)
    ref = decayed_reference(model, rows, 0.5)
    assert (np.diff(rows.event - rows.history_start) != 0).any()   # histories of several lengths
    np.testing.assert_allclose(model.decayed_scores(rows, index), ref, rtol=1e-10, atol=1e-300)
    # sub-blocks of a few rows give the same result
    tiny = DecayItemKNN(neighbours=10, decay=0.5, max_pairs=300).fit(small_prep.train, n)
    assert len(list(tiny._blocks(rows, index))) > 10
    np.testing.assert_allclose(tiny.decayed_scores(rows, index), ref, rtol=1e-10, atol=1e-300)
    s = model.score(rows, index)
    assert s.shape == (len(rows), n + 1) and s.dtype == np.float32 and np.isneginf(s[:, 0]).all()
    scale = model.tiebreak_scale(ref)
    expect = (ref + scale[:, None] * model.popularity[None, :]).astype(np.float32)
    np.testing.assert_allclose(s[:, 1:], expect[:, 1:], rtol=1e-6)
    np.testing.assert_array_equal(tiny.score(rows, index), s)


def test_decay_zero_is_the_unweighted_history_sum(small_prep):
    rows, n = small_prep.rows, small_prep.encoded.n_items
    model = DecayItemKNN(neighbours=10, decay=0.0).fit(small_prep.train, n)
    counts = np.zeros((len(rows), n + 1))                       # history item counts per row
    for r in range(len(rows)):
        np.add.at(counts[r], rows.stream_item[rows.history_start[r]:rows.event[r]], 1.0)
    assert counts.max() > 1                                      # repeats occur and count again
    np.testing.assert_allclose(model.decayed_scores(rows, np.arange(len(rows))),
                               counts @ dense_similarity(model), rtol=1e-10)


def timed_stream():
    """KNN_TRAIN (users 0, 1; training) and user 2 with test events only, one day apart:
    (day 0) item 4, (day 1) item 3, (day 2) item 5, (day 3) item 3, (day 4) item 2."""
    recs = [(u, i, s, False, float(t)) for t, (u, i, s) in enumerate(KNN_TRAIN)]
    recs += [(2, i, 30 + d, True, d * DAY) for d, i in enumerate([4, 3, 5, 3, 2])]
    cols = list(zip(*recs))
    return pl.DataFrame({"user": pl.Series(cols[0], dtype=pl.Int32),
                         "item": pl.Series(cols[1], dtype=pl.Int32),
                         "session": pl.Series(cols[2], dtype=pl.Int32),
                         "is_test": pl.Series(cols[3], dtype=pl.Boolean),
                         "time": pl.Series(cols[4], dtype=pl.Float64)})


def test_decay_itemknn_unit_and_recency():
    stream = timed_stream()
    rows = make_eval_rows(stream, targets="user")
    assert rows.target.tolist() == [3, 5, 3, 2] and rows.item.tolist() == [4, 3, 5, 3]
    sim = np.zeros((6, 6))
    for (a, b), v in SIM.items():
        sim[a, b] = sim[b, a] = v
    idx = np.arange(4)
    e = math.exp
    for decay in (0.0, 0.7, 1.0):
        model = DecayItemKNN(neighbours=10, decay=decay).fit(stream, n_items=5)
        got = model.decayed_scores(rows, idx)
        # row 1 (target day 2): item 4 two days old, item 3 one day old -> exp(-2d), exp(-d)
        np.testing.assert_allclose(got[1], e(-2 * decay) * sim[4] + e(-decay) * sim[3], rtol=1e-12)
        # row 3 (day 4): 4 (4 days), 3 (3 days and 1 day: repeats count again), 5 (2 days)
        np.testing.assert_allclose(
            got[3], e(-4 * decay) * sim[4] + (e(-3 * decay) + e(-decay)) * sim[3] + 0.0,
            rtol=1e-12)
    # decay 0: item 1 (sim 1/sqrt3 + 1/sqrt6) beats item 2 (2/sqrt6) in row 1
    s0 = DecayItemKNN(decay=0.0).fit(stream, 5).score(rows, idx)
    assert s0[1, 1] > s0[1, 2]
    # a huge decay: the most recent item (3) dominates and item 2 (its best neighbour) wins
    big = DecayItemKNN(decay=50.0).fit(stream, 5)
    s = big.score(rows, idx)
    assert s[1, 2] > s[1, 1] > 0
    np.testing.assert_allclose(big.decayed_scores(rows, idx)[1] / e(-50.0), sim[3], rtol=1e-9)
    # tie-breaker: zero-score items (3, 4: not their own neighbours; 5: unseen) by popularity,
    # all below the row's smallest positive score
    assert min(s[1, 1], s[1, 2]) > s[1, 3] > s[1, 4] > s[1, 5] >= 0.0


def test_decay_itemknn_beats_random_on_sequential_log():
    prep = data.prepare(synthetic.generate(n_users=100, n_items=200, seed=3),
                           DataConfig(protocol="temporal"))
    n, rows = prep.encoded.n_items, prep.rows
    model = DecayItemKNN().fit(prep.train, n)
    m = metrics_from_ranks(rank_chunks(lambda idx: model.score(rows, idx), rows), ks=(20,))
    random_recall = 20 / n
    random_mrr = sum(1 / k for k in range(1, 21)) / n
    assert m["recall@20"] > 2 * random_recall, (m, n)
    assert m["mrr@20"] > 3 * random_mrr, (m, n)


@pytest.fixture(scope="module")
def fitted_mf(small_prep):
    n = small_prep.encoded.n_items
    return MF(seed=3).fit(small_prep.train, n), SeqMF(seed=3).fit(small_prep.train, n)


def test_mf_scores_are_the_formula(small_prep, fitted_mf):
    mf, _ = fitted_mf
    rows, p = small_prep.rows, mf.params
    index = np.array([0, 5, 17, len(rows) - 1])
    s = mf.score(rows, index)
    assert s.shape == (4, small_prep.encoded.n_items + 1) and np.isneginf(s[:, 0]).all()
    for k, r in enumerate(index):
        u = rows.user[r]
        expect = np.array([p["user"][u] @ p["item"][j] + p["bias"][j]
                           for j in range(1, mf.n_items + 1)])
        np.testing.assert_allclose(s[k, 1:], expect, rtol=1e-5, atol=1e-6)


def previous_by_walking(rows, r, window):
    """The last ``window`` items of row r's user before the target, by walking the stream."""
    out, pos = [], rows.event[r] - 1
    while len(out) < window and pos >= rows.history_start[r]:
        out.append(int(rows.stream_item[pos]))
        pos -= 1
    return out


def seq_formula(p, user_vec, prev, j):
    x = user_vec @ p["item"][j] + p["bias"][j]
    if prev:
        x += np.mean([p["seq_item"][j] @ p["seq_prev"][prev_item] for prev_item in prev])
    return x


def test_seq_mf_scores_are_the_formula(small_prep, fitted_mf):
    _, seq = fitted_mf
    rows, p = small_prep.rows, seq.params
    index = np.array([0, 1, 17, len(rows) - 1])
    s = seq.score(rows, index)
    for k, r in enumerate(index):
        prev = previous_by_walking(rows, r, 2)
        assert len(prev) == 2 and prev[0] == rows.item[r]
        expect = [seq_formula(p, p["user"][rows.user[r]], prev, j)
                  for j in range(1, seq.n_items + 1)]
        np.testing.assert_allclose(s[k, 1:], expect, rtol=1e-5, atol=1e-6)


def test_seq_mf_window_stays_within_the_user():
    stream = timed_stream()                     # user 2: test events only, no training events
    rows = make_eval_rows(stream, targets="user")
    model = SeqMF(window=3, epochs=2, seed=0).fit(stream, n_items=5)
    prev = model.previous(rows, np.arange(4))
    # row 0's history is user 2's first event only: user 1's events before it are not used
    assert prev.tolist() == [[4, 0, 0], [3, 4, 0], [5, 3, 4], [3, 5, 3]]
    assert ([previous_by_walking(rows, r, 3) for r in range(4)]
            == [[4], [3, 4], [5, 3, 4], [3, 5, 3]])
    s = model.score(rows, np.arange(4))
    p = model.params
    assert model.n_users == 2                    # user 2 has no training row: zero factors
    for r in range(4):
        expect = [seq_formula(p, np.zeros(model.factors), previous_by_walking(rows, r, 3), j)
                  for j in range(1, 6)]
        np.testing.assert_allclose(s[r, 1:], expect, rtol=1e-5, atol=1e-6)
    # MF: a user without training events is ranked by the item bias alone
    mf = MF(epochs=2).fit(stream, n_items=5)
    np.testing.assert_allclose(mf.score(rows, np.array([0]))[0, 1:], mf.params["bias"][1:],
                               rtol=1e-6)


def bpr_auc_and_loss(params, users, pos, neg, prev):
    def x(j):
        out = np.sum(params["user"][users] * params["item"][j], 1) + params["bias"][j]
        if prev is not None:
            mask = (prev > 0)[..., None]
            mean = (params["seq_prev"][prev] * mask).sum(1) / np.maximum(mask.sum(1), 1)
            out = out + np.sum(params["seq_item"][j] * mean, 1)
        return out
    d = x(pos) - x(neg)
    return float((d > 0).mean()), float(np.mean(np.logaddexp(0.0, -d)))


def test_bpr_training_improves_training_triples(small_prep, fitted_mf):
    n = small_prep.encoded.n_items
    train, prev = baselines.previous_items(small_prep.train, 2)
    users, pos = train["user"].to_numpy(), train["item"].to_numpy()
    rng = np.random.default_rng(0)
    neg = rng.integers(1, n, size=len(pos))
    neg = neg + (neg >= pos)
    assert (neg != pos).all() and neg.max() <= n
    for model, p in zip(fitted_mf, (None, prev)):
        init = baselines.bpr_initial(3, model.n_users, n, model.factors, model.window)
        auc0, loss0 = bpr_auc_and_loss(init, users, pos, neg, p)
        auc1, loss1 = bpr_auc_and_loss(model.params, users, pos, neg, p)
        assert auc1 > 0.85 and auc1 > auc0 + 0.2, (auc0, auc1)
        assert loss1 < loss0 - 0.3, (loss0, loss1)
        assert model.losses[-1] < model.losses[0] and len(model.losses) == 30


def test_bpr_same_seed_same_factors(small_prep, fitted_mf):
    n = small_prep.encoded.n_items
    for model in fitted_mf:
        again = type(model)(seed=3).fit(small_prep.train, n)
        other = type(model)(seed=4).fit(small_prep.train, n)
        for k, v in model.params.items():
            np.testing.assert_array_equal(again.params[k], v)
        assert not np.array_equal(other.params["item"], model.params["item"])
        np.testing.assert_array_equal(again.losses, model.losses)


def test_new_baselines_registry():
    decay = build_baseline("decay-itemknn", Config(model=ModelConfig(decay=0.5)))
    assert isinstance(decay, DecayItemKNN) and decay.decay == 0.5
    assert build_baseline("decay-itemknn", Config(model=ModelConfig(neighbours=7))).neighbours == 7
    for name in ("Decay_ItemKNN", "decayitemknn", "seqmf", "bprmf"):
        with pytest.raises(ValueError):
            build_baseline(name, Config())
    assert type(build_baseline("mf", Config())) is MF
    assert type(build_baseline("bpr-mf", Config())) is MF
    assert isinstance(build_baseline("seq-mf", Config()), SeqMF)
    assert build_baseline("seq-mf", Config(model=ModelConfig(mf_window=3))).window == 3
    with pytest.raises(ValueError):
        DecayItemKNN(decay=-1.0)
    with pytest.raises(ValueError):
        SeqMF(window=0)


def test_new_baselines_through_compare(small_prep, monkeypatch):
    names = ["decay-itemknn", "mf", "seq-mf"]
    assert set(names) <= set(compare.model_names())
    made = {}
    real = baselines.build_baseline

    def spy(name, config):
        model = real(name, config)
        made[name] = dict(vars(model))      # its settings, before fit adds its tables
        return model

    monkeypatch.setattr(compare.baselines, "build_baseline", spy)
    config = Config(model=ModelConfig(neighbours=7, decay=0.25, factors=20, mf_epochs=30,
                                      mf_learning_rate=0.01, mf_window=2))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=3))
    out = compare.run_models(small_prep, names, config, log=None)
    # exactly the baselines the constructors make from these settings (the rest at defaults)
    assert made["decay-itemknn"] == vars(DecayItemKNN(neighbours=7, decay=0.25))
    mf_kw = {"factors": 20, "epochs": 30, "learning_rate": 0.01, "seed": 3}
    assert made["mf"] == vars(MF(**mf_kw)) and made["seq-mf"] == vars(SeqMF(**mf_kw, window=2))
    assert made["mf"]["seed"] == 3 and made["seq-mf"]["window"] == 2
    n, r = small_prep.encoded.n_items, len(small_prep.rows)
    for name in names:
        ranks = out[name].ranks
        assert ranks.shape == (1, r)
        assert ranks.min() >= 1 and ranks.max() <= n


# --------------------------------------------------------------------------------------------
# The seed paper's (Shuvo et al.) baselines: BPR (BPR-MF), FMC and FPMC (Rendle et al. 2010)
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted_fpmc(small_prep):
    n = small_prep.encoded.n_items
    return FMC(seed=3).fit(small_prep.train, n), FPMC(seed=3).fit(small_prep.train, n)


def fpmc_reference(p, user_vec, prev):
    """FPMC's (user_vec given) or FMC's (user_vec None) score of every item 1..N, by plain NumPy:
    <V_UI[u], V_IU[i]> + <V_IL[i], V_LI[l]> with l the previous item (no term without one)."""
    n = p["seq_item"].shape[0] - 1
    out = np.zeros(n)
    for i in range(1, n + 1):
        if user_vec is not None:
            out[i - 1] += float(np.dot(user_vec.astype(np.float64), p["item"][i]))
        if prev:
            out[i - 1] += float(np.dot(p["seq_item"][i].astype(np.float64), p["seq_prev"][prev[0]]))
    return out


def test_fmc_fpmc_scores_are_the_formula(small_prep, fitted_fpmc):
    fmc, fpmc = fitted_fpmc
    rows = small_prep.rows
    assert set(fmc.params) == {"seq_item", "seq_prev"}                 # no user term, no bias
    assert set(fpmc.params) == {"user", "item", "seq_item", "seq_prev"}  # no bias
    index = np.array([0, 1, 17, len(rows) - 1])
    for model in fitted_fpmc:
        s = model.score(rows, index)
        assert s.shape == (4, small_prep.encoded.n_items + 1) and s.dtype == np.float32
        assert np.isneginf(s[:, 0]).all()
        for k, r in enumerate(index):
            prev = previous_by_walking(rows, r, 1)
            assert prev == [rows.item[r]]                    # the row's input item
            user = None if model is fmc else fpmc.user_factors(rows.user[[r]])[0]
            np.testing.assert_allclose(s[k, 1:], fpmc_reference(model.params, user, prev),
                                       rtol=1e-5, atol=1e-6)
    # two rows of different users with the same previous item: FMC scores them alike, FPMC not
    pairs = [(a, b) for a in range(len(rows)) for b in range(a + 1, len(rows))
             if rows.item[a] == rows.item[b] and rows.user[a] != rows.user[b]]
    a, b = pairs[0]
    for model, same in ((fmc, True), (fpmc, False)):
        s = model.score(rows, np.array([a, b]))
        assert np.allclose(s[0, 1:], s[1, 1:], rtol=1e-5, atol=1e-7) == same


def test_fpmc_trains_on_transitions_only(monkeypatch):
    # user 0: 1 2 3 (one session), 4 (next session); user 1: 5 (one training event only);
    # user 2: 2 then 2 again (a repeat is a transition too)
    recs = [(0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 2), (1, 5, 3), (2, 2, 4), (2, 2, 4)]
    seen = []
    real = factorisation.bpr_fit

    def spy(users, positives, previous, *args, **kw):
        seen.append((np.asarray(users).tolist(), np.asarray(positives).tolist(),
                     np.asarray(previous).tolist(), kw["user_term"], kw["bias"]))
        return real(users, positives, previous, *args, **kw)

    monkeypatch.setattr(factorisation, "bpr_fit", spy)
    fpmc = FPMC(epochs=3, seed=1).fit(frame(recs), n_items=5)
    fmc = FMC(epochs=3, seed=1).fit(frame(recs), n_items=5)
    # the first event of every user gives no (l, i, j) triple: no previous item
    transitions = ([0, 0, 0, 2], [2, 3, 4, 2], [[1], [2], [3], [2]])
    assert seen == [(*transitions, True, False), (*transitions, False, False)]
    assert fpmc.n_users == 3 and len(fpmc.losses) == 3
    assert not fpmc.params["user"][1].any() and fpmc.params["user"][[0, 2]].all()
    assert "user" not in fmc.params
    with pytest.raises(ValueError, match="previous items"):
        baselines.bpr_fit([0], [1], np.zeros((1, 0), np.int32), 1, 3, user_term=False)


def frame_with_test(recs):
    """recs: (user, item, session, is_test) in stream order (time = position)."""
    return frame(recs, with_test=True)


def successor_log(seed=0, n_users=40, n_items=30, length=8):
    """One session per user: a random first item, then item i -> i % N + 1; the last = test."""
    rng = np.random.default_rng(seed)
    recs = []
    for u in range(n_users):
        item = int(rng.integers(1, n_items + 1))
        for k in range(length):
            recs.append((u, item, u, k == length - 1))
            item = item % n_items + 1
    return frame_with_test(recs), n_items


def last_event_metrics(model, stream, n_items):
    rows = make_eval_rows(stream, targets="session")
    model.fit(stream.filter(~pl.col("is_test")).drop("is_test"), n_items)
    return metrics_from_ranks(rank_chunks(lambda idx: model.score(rows, idx), rows), ks=(1, 5))


def test_fmc_learns_a_deterministic_transition():
    stream, n = successor_log()
    fmc = last_event_metrics(FMC(seed=0), stream, n)
    pop = last_event_metrics(Pop(), stream, n)
    assert fmc["n"] == 40
    assert fmc["hit@1"] >= 0.8 and fmc["hit@1"] > pop["hit@1"] + 0.6, (fmc, pop)
    assert fmc["recall@5"] > pop["recall@5"] + 0.5, (fmc, pop)


def favourite_log(seed=0, n_users=40, n_items=40, length=12):
    """One session per user u: its favourite item u % N + 1 at every odd position, uniform random
    items between; the second last event is item 1 for everyone and the last (the favourite) is
    the test event. The next item depends on the user, not on the previous item."""
    rng = np.random.default_rng(seed)
    recs = []
    for u in range(n_users):
        for k in range(length):
            item = (u % n_items + 1 if k % 2 == 1 else
                    1 if k == length - 2 else int(rng.integers(1, n_items + 1)))
            recs.append((u, item, u, k == length - 1))
    return frame_with_test(recs), n_items


def test_fpmc_user_term_beats_fmc_on_user_preferences():
    stream, n = favourite_log()
    rows = make_eval_rows(stream, targets="session")
    assert (rows.item == 1).all() and len(set(rows.user.tolist())) == 40
    fmc, fpmc = FMC(seed=0), FPMC(seed=0)
    m_fmc, m_fpmc = last_event_metrics(fmc, stream, n), last_event_metrics(fpmc, stream, n)
    assert m_fpmc["hit@5"] >= 0.8 and m_fpmc["hit@5"] > m_fmc["hit@5"] + 0.5, (m_fpmc, m_fmc)
    assert m_fpmc["hit@1"] > m_fmc["hit@1"] + 0.4, (m_fpmc, m_fmc)
    # the same previous item for every row: FMC scores every user alike, FPMC does not
    index = np.arange(len(rows))
    s_fmc, s_fpmc = fmc.score(rows, index), fpmc.score(rows, index)
    np.testing.assert_allclose(s_fmc[:, 1:], np.broadcast_to(s_fmc[:1, 1:], (len(rows), n)),
                               rtol=1e-5, atol=1e-7)
    assert len({tuple(np.argsort(-s[1:])[:3]) for s in s_fpmc}) > 20


def test_bpr_is_bpr_mf(small_prep):
    n = small_prep.encoded.n_items
    config = Config(model=ModelConfig(factors=8, mf_epochs=3, mf_learning_rate=0.02))
    bpr, bpr_mf = build_baseline("bpr", config), build_baseline("bpr-mf", config)
    assert type(bpr) is MF and vars(bpr) == vars(bpr_mf)
    index = np.arange(len(small_prep.rows))
    np.testing.assert_array_equal(bpr.fit(small_prep.train, n).score(small_prep.rows, index),
                                  bpr_mf.fit(small_prep.train, n).score(small_prep.rows, index))


def test_seed_paper_baselines_registry_and_compare(small_prep):
    names = ["bpr", "fmc", "fpmc"]
    assert set(names) <= set(baseline_names()) and set(names) <= set(compare.model_names())
    model = ModelConfig(factors=6, mf_epochs=4, mf_learning_rate=0.03)
    config = Config(model=model)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=5))
    kw = {"factors": 6, "epochs": 4, "learning_rate": 0.03, "seed": 5}
    built = {name: build_baseline(name, config) for name in names}
    assert type(built["fmc"]) is FMC and vars(built["fmc"]) == vars(FMC(**kw))
    assert type(built["fpmc"]) is FPMC and vars(built["fpmc"]) == vars(FPMC(**kw))
    assert type(built["bpr"]) is MF and vars(built["bpr"]) == vars(MF(**kw))
    out = compare.compare(small_prep, names, config, log=None)
    assert set(out) == set(names)
    for name in names:
        for k in config.eval.ks:
            assert 0.0 <= out[name][f"hit@{k}"] <= 1.0 and 0.0 <= out[name][f"ndcg@{k}"] <= 1.0
            assert out[name][f"ndcg@{k}"] <= out[name][f"hit@{k}"]
