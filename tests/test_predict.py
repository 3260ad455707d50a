"""Evaluation of trained models and ``recommend``: lane invariance, brute force, raw ids."""
import jax
import numpy as np
import pytest

from hrnn_jax import cells, data, evaluation, models
from hrnn_jax.config import DataConfig
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import predict
from tests.tolerance import approx, max_rank_changes

H = 8
SHAPES = [(1, 1), (3, 4), (7, 2), (16, 9)]  # (batch_size, window)


def synthetic_log(session_length=(2, 5), seed=0):
    raw = synthetic.generate(n_users=12, n_items=20, n_topics=4, sessions_per_user=(2, 4),
                             session_length=session_length, seed=seed)
    return data.read_interactions(raw)


@pytest.fixture(scope="module")
def prep():
    prep = data.prepare(synthetic_log(), DataConfig(min_item_support=1))
    assert len(prep.rows) >= 20
    return prep


def random_params(model, seed):
    """Initial parameters plus noise everywhere (biases too): no structural ties between items."""
    params = model.init(jax.random.PRNGKey(seed))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, leaves)


def build(kind, n_items):
    if kind == "gru":
        return models.SessionRNN(n_items, cells.GRU(H))
    return models.HRNN(n_items, cells.GRU(H), user_cell=cells.GRU(H), mode=kind)


@pytest.fixture(scope="module", params=["gru", "all"])
def model_params(request, prep):
    model = build(request.param, prep.encoded.n_items)
    return model, random_params(model, 3)


def brute_ranks(y, params, rows, exclude_seen=False):
    """1 + #items in 1..N (other than the target) scoring strictly above it, in numpy."""
    out = np.asarray(params["item_out"], np.float64)
    bias = np.asarray(params["item_bias"], np.float64)
    ranks = np.empty(len(rows))
    for r in range(len(rows)):
        s = out @ np.asarray(y[r], np.float64) + bias
        t = rows.target[r]
        counted = np.ones(len(s), bool)
        counted[0] = counted[t] = False
        if exclude_seen:
            counted[rows.seen_of(r)] = False
            counted[t] = False
        ranks[r] = 1 + np.sum(counted & (s > s[t]))
    return ranks


# ---------------------------------------------------------------------------------------------
# 1. invariance to the lane layout
# ---------------------------------------------------------------------------------------------
def test_ranks_do_not_depend_on_lanes_or_window(prep, model_params):
    model, params = model_params
    ys, ranks, metrics = [], [], []
    for batch_size, window in SHAPES:
        kw = dict(batch_size=batch_size, window=window)
        ys.append(predict.hidden_states(model, params, prep.stream, prep.rows, **kw))
        ranks.append(predict.model_ranks(model, params, prep.stream, prep.rows, **kw))
        metrics.append(predict.evaluate_model(model, params, prep.stream, prep.rows, ks=(3, 10),
                                              **kw))
    assert ranks[0].shape == (len(prep.rows),)
    assert len(np.unique(ranks[0])) > 3  # random parameters: a spread of ranks, not all ties
    for shape, y, r, m in zip(SHAPES[1:], ys[1:], ranks[1:], metrics[1:]):
        np.testing.assert_allclose(y, ys[0], **approx(), err_msg=str(shape))
        assert (r != ranks[0]).sum() <= max_rank_changes(len(r)), shape
        assert m.keys() == metrics[0].keys()
        for k in m:
            tol = 0.02 if max_rank_changes(len(r)) else 1e-12
            assert m[k] == pytest.approx(metrics[0][k], abs=tol), (shape, k)
    assert metrics[0] == evaluation.metrics_from_ranks(ranks[0], (3, 10))


# ---------------------------------------------------------------------------------------------
# 4. evaluation against a brute-force loop
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exclude_seen", [False, True])
def test_model_ranks_match_brute_force(prep, model_params, exclude_seen):
    model, params = model_params
    kw = dict(batch_size=3, window=4)
    y = predict.hidden_states(model, params, prep.stream, prep.rows, **kw)
    assert y.shape == (len(prep.rows), H)
    assert np.all(np.any(y != 0, axis=1))  # every row was filled
    want = brute_ranks(y, params, prep.rows, exclude_seen)
    got = predict.model_ranks(model, params, prep.stream, prep.rows, exclude_seen=exclude_seen,
                              chunk=7, **kw)
    np.testing.assert_array_equal(got, want)
    m = predict.evaluate_model(model, params, prep.stream, prep.rows, ks=(5,),
                               exclude_seen=exclude_seen, **kw)
    assert m["n"] == len(prep.rows)
    assert m["recall@5"] == pytest.approx(np.mean(want <= 5))
    assert m["mrr@5"] == pytest.approx(np.mean(np.where(want <= 5, 1 / want, 0)))


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_model_ranks_put_a_nan_scored_target_last(prep, exclude_seen):
    """A NaN row of ``item_out`` scores that item NaN: as a target it ranks last (no credit), and
    as another item it is never counted above a target (the fused path ranks with rank_targets)."""
    model = build("gru", prep.encoded.n_items)
    params = random_params(model, 4)
    bad = int(np.bincount(prep.rows.target).argmax())  # the most frequent target
    params = {**params, "item_out": params["item_out"].at[bad].set(np.nan)}
    kw = dict(batch_size=3, window=4, exclude_seen=exclude_seen)
    got = predict.model_ranks(model, params, prep.stream, prep.rows, **kw)
    y = predict.hidden_states(model, params, prep.stream, prep.rows, batch_size=3, window=4)
    want = brute_ranks(y, params, prep.rows, exclude_seen)  # NaN compares false: never above
    is_bad = prep.rows.target == bad
    assert is_bad.sum() >= 2
    seen = [prep.rows.seen_of(r) for r in range(len(prep.rows))]
    n_seen = np.array([len(s) - (bad in s) for s in seen])
    last = 1 + (prep.encoded.n_items - 1) - (n_seen if exclude_seen else 0)
    np.testing.assert_array_equal(got[is_bad], last[is_bad] if exclude_seen
                                  else np.full(is_bad.sum(), last, np.float32))
    np.testing.assert_array_equal(got[~is_bad], want[~is_bad])
    m = predict.evaluate_model(model, params, prep.stream, prep.rows, ks=(5,), **kw)
    assert m["recall@5"] == pytest.approx(np.mean((got <= 5) & ~is_bad))


def test_hidden_states_are_the_output_before_each_target(prep):
    """Row r's state is the model's output after its input item: rerun each user alone."""
    model = build("all", prep.encoded.n_items)
    params = random_params(model, 5)
    y = predict.hidden_states(model, params, prep.stream, prep.rows, batch_size=4, window=3)
    stream = prep.stream
    users = stream["user"].to_numpy()
    for u in np.unique(prep.rows.user)[:3]:
        sub = stream.filter(stream["user"] == int(u))
        first = int(np.flatnonzero(users == u)[0])
        rows = data.make_eval_rows(sub, "session")
        y_u = predict.hidden_states(model, params, sub, rows, batch_size=1, window=50)
        idx = np.searchsorted(prep.rows.event, rows.event + first)
        np.testing.assert_array_equal(prep.rows.event[idx], rows.event + first)
        np.testing.assert_allclose(y[idx], y_u, **approx())


# ---------------------------------------------------------------------------------------------
# 2. lanes that cannot reach the rows
# ---------------------------------------------------------------------------------------------
def test_session_lanes_cannot_reach_user_rows():
    prep = data.prepare(synthetic_log(session_length=(1, 3), seed=1),
                        DataConfig(min_item_support=1, min_session_len=1,
                                   protocol="leave-one-out"))
    rows = data.make_eval_rows(prep.stream, "user")
    assert not rows.same_session.all()  # some test event opens a session
    model = build("gru", prep.encoded.n_items)
    params = model.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"'session' lanes reach \d+ of \d+.*targets='user'"):
        predict.hidden_states(model, params, prep.stream, rows, batch_size=4, window=5,
                              targets="session")
    y = predict.hidden_states(model, params, prep.stream, rows, batch_size=4, window=5,
                              targets="user")
    assert y.shape == (len(rows), H) and np.all(np.any(y != 0, axis=1))


# ---------------------------------------------------------------------------------------------
# 3. recommend
# ---------------------------------------------------------------------------------------------
def user_history(prep, n_sessions=3):
    """Raw-id sessions of the first user with ``n_sessions`` training sessions, the
    last >= 2 long."""
    ev = prep.train
    for u in np.unique(ev["user"].to_numpy()):
        sub = ev.filter(ev["user"] == int(u))
        sessions = [prep.encoded.decode_items(g["item"].to_numpy()).tolist()
                    for _, g in sub.group_by("session", maintain_order=True)]
        if len(sessions) >= n_sessions and len(sessions[-1]) >= 2:
            return sessions[-n_sessions:]
    raise AssertionError("no user with enough sessions")


def hand_scores(model, params, encoded, sessions):
    """Scores after the history with ``model.apply`` on one hand-built lane, as the session
    lanes see it: an earlier session's last event is a target only (not an input)."""
    items, s_start = [], []
    for s, raw in enumerate(sessions):
        codes = encoded.encode_items(raw).tolist()
        inputs = codes if s == len(sessions) - 1 else codes[:-1]
        items += inputs
        s_start += [True] + [False] * (len(inputs) - 1) if inputs else []
    n = len(items)
    u_start = np.zeros((1, n), bool)
    u_start[0, 0] = True
    batch = {"item": np.array([items], np.int32), "target": np.zeros((1, n), np.int32),
             "session_start": np.array([s_start]), "user_start": u_start,
             "valid": np.ones((1, n), bool), "user": np.zeros((1, n), np.int32)}
    _, y, _ = model.apply(params, model.init_carry(1), batch)
    scores = np.array(models.score_items(params, y[0, -1]))
    scores[0] = -np.inf
    return scores


def test_recommend(prep, model_params):
    model, params = model_params
    enc = prep.encoded
    sessions = user_history(prep)
    recs = predict.recommend(model, params, enc, sessions, k=5)
    assert len(recs) == 5 and len(set(recs)) == 5
    assert all(isinstance(r, str) for r in recs)
    assert set(recs) <= set(enc.item_ids[1:].tolist())
    assert predict.recommend(model, params, enc, sessions, k=5) == recs  # deterministic
    # the same as the top of the scores computed by hand
    scores = hand_scores(model, params, enc, sessions)
    order = np.argsort(-scores, kind="stable")
    assert recs == enc.decode_items(order[:5]).tolist()
    # exclude_seen: nothing of the history; the best unseen items in score order
    seen = {i for s in sessions for i in s}
    recs_new = predict.recommend(model, params, enc, sessions, k=5, exclude_seen=True)
    assert len(recs_new) == 5 and not set(recs_new) & seen
    unseen_order = [i for i in enc.decode_items(order[:-1]).tolist() if i not in seen]
    assert recs_new == unseen_order[:5]


def test_recommend_bad_input(prep):
    model = build("gru", prep.encoded.n_items)
    params = model.init(jax.random.PRNGKey(0))
    known = prep.encoded.item_ids[1]
    with pytest.raises(data.DataError, match="unknown item id.*no-such-item"):
        predict.recommend(model, params, prep.encoded, [[known, "no-such-item"]])
    with pytest.raises(ValueError):
        predict.recommend(model, params, prep.encoded, [])
    with pytest.raises(ValueError):
        predict.recommend(model, params, prep.encoded, [[known], []])
    # a k larger than the catalogue gives the whole catalogue
    recs = predict.recommend(model, params, prep.encoded, [[known]], k=10_000)
    assert sorted(recs) == sorted(prep.encoded.item_ids[1:].tolist())
