"""HRNN-meta (hrnn_jax.meta), the per-step fields of the lanes, HGRU with the boundary known
(HRNN close_at="target"), perplexity and Table 1's simulation (Ma & Narayanaswamy)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
import pytest
from flax import linen as nn

from hrnn_jax import cells, evaluation, models, training
from hrnn_jax.cells.tcn import TCN
from hrnn_jax.config import TrainConfig
from hrnn_jax.data.lanes import make_lanes
from hrnn_jax.evaluation import predict
from hrnn_jax.models import hrnn_meta as meta
from hrnn_jax.papers import ma2019 as simulations
from hrnn_jax.training import losses
from tests import reference as ref
from tests.helpers import N_ITEMS, H, perturbed, run_lanes, timed_log
from tests.tolerance import approx

# --- lanes: per-step fields and where sessions close


def test_gap_field_is_the_time_to_the_target_and_costs_nothing_unasked():
    frame = timed_log()
    t = frame["time"].to_numpy()
    lanes = make_lanes(frame, batch_size=3, window=4, targets="user", close_at="input",
                       fields=("gap",))
    gap, event, valid = lanes.extras["gap"], lanes.event, lanes.valid
    np.testing.assert_allclose(gap[valid], (t[event[valid]] - t[event[valid] - 1]), rtol=1e-6)
    assert (gap[~valid] == 0).all()
    assert "gap" in lanes.window(0) and lanes.window(0)["gap"].shape == (3, 4)
    plain = make_lanes(frame, batch_size=3, window=4, targets="user", close_at="input")
    assert plain.extras == {} and set(plain.window(0)) == set(lanes.window(0)) - {"gap"}


def test_lane_fields_are_checked():
    frame = timed_log()
    with pytest.raises(ValueError, match="unknown per-step field"):
        make_lanes(frame, batch_size=2, window=2, targets="user", close_at="input",
                   fields=("bogus",))
    with pytest.raises(ValueError, match="needs a 'time' column"):
        make_lanes(frame.drop("time"), batch_size=2, window=2, targets="user", close_at="input",
                   fields=("gap",))
    with pytest.raises(ValueError, match="only targets='user'"):
        make_lanes(frame, batch_size=2, window=2, targets="session", close_at="target")


def test_close_at_target_lists_the_step_whose_target_opens_a_session():
    frame = timed_log()
    session = frame["session"].to_numpy()
    for close_at in ("input", "target"):
        lanes = make_lanes(frame, batch_size=3, window=4, targets="user", close_at=close_at,
                           boundary_slots=1)  # one slot: hold steps in the middle of lanes
        W, B, L = lanes.item.shape
        listed = np.zeros((W, B, L), bool)
        for w in range(W):
            for t in range(L):
                lanes_t = lanes.closing[w, t]
                listed[w, lanes_t[lanes_t < B], t] = True
        ev = lanes.event
        opens_target = lanes.valid & (session[ev] != session[np.maximum(ev - 1, 0)])
        want = opens_target if close_at == "target" else lanes.session_start & ~lanes.user_start
        np.testing.assert_array_equal(listed, want & lanes.valid)


# --- HGRU with the boundary known (HRNN close_at="target")


def hgru_reference(params, frame, u):
    """HRNN Init (one-hot GRUs) for user u, closing each session right after its last input:
    Eq. 3-4 run at the step whose target opens the next session, whose output is Eq. 4's state."""
    P = jax.tree_util.tree_map(np.asarray, params)
    rows = np.flatnonzero(frame["user"].to_numpy() == u)
    item, session = frame["item"].to_numpy(), frame["session"].to_numpy()
    c = np.zeros(P["init"]["kernel"].shape[0])
    s = np.tanh(P["init"]["bias"])  # Eq. 4 with c_{u,0} = 0
    ys = {}
    for i in rows[:-1]:
        s = ref.gru_step(P["session"], s, P["item_in"][item[i]])  # Eq. 1
        if session[i + 1] != session[i]:  # the target opens the next session
            c = ref.gru_call(P["user"], c, s)  # Eq. 3
            s = np.tanh(c @ P["init"]["kernel"] + P["init"]["bias"])  # Eq. 4
        ys[i + 1] = s.copy()
    return ys


def test_hrnn_close_at_target_matches_per_user_loop():
    frame = timed_log()
    model = models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H + 1), close_at="target")
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    got = run_lanes(model, params, frame, boundary_slots=1)
    want = {}
    for u in np.unique(frame["user"].to_numpy()):
        want.update(hgru_reference(params, frame, u))
    assert got.keys() == want.keys()
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(2e-5, 2e-6), err_msg=f"row {row}")


def test_hrnn_close_at_target_needs_its_lanes():
    model = models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H), close_at="target")
    assert model.capabilities.fields == () and model.capabilities.close_at == "target"
    batch = make_lanes(timed_log(), batch_size=2, window=3, targets="user",
                       close_at="input").window(0)
    batch.pop("closing")
    with pytest.raises(ValueError, match="close_at='target'"):
        model.apply(model.init(jax.random.PRNGKey(0)), model.init_carry(2), batch)
    with pytest.raises(ValueError, match="close_at"):
        models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H), close_at="output")


# --- HRNN-meta: the control signal, any cell


def test_gap_levels_follow_the_edges():
    gaps = jnp.array([0.0, 59.9, 60.0, 3599.0, 3600.0, 86399.0, 86400.0, 1e9])
    np.testing.assert_array_equal(meta.gap_levels(gaps, meta.TABLE5_EDGES),
                                  [0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(ValueError, match="ascending"):
        meta.HRNNMeta(N_ITEMS, cells.GRU(H), gap_edges=(3600.0, 60.0))


def meta_reference(model, params, frame, u):
    """HRNN-meta for user u, one step at a time: the cell over [item input, level of the gap to
    the target, user features, feedback] (a split GRU: each channel's row added to the item's
    projected row; other cells: concatenated)."""
    rows = np.flatnonzero(frame["user"].to_numpy() == u)
    item, t = frame["item"].to_numpy(), frame["time"].to_numpy()
    level = np.searchsorted(np.asarray(model.gap_edges), t[rows[1:]] - t[rows[:-1]], side="right")
    P = jax.tree_util.tree_map(np.asarray, params)
    cell = model.session_cell
    carry = np.zeros(H) if cells.is_split(cell) else cells.zero_carry(cell, 1)
    ys = {}
    for n, i in enumerate(rows[:-1]):
        channels = [P["control"][level[n]]] if model.control else []
        if model.user_features is not None:
            a = P["user_feature_in"]
            channels.append(P["user_feat"][u] @ a["kernel"] + a["bias"])
        if model.feedback and model.feedback_levels:  # the type's row
            a = P["feedback_in"]
            channels.append(a["kernel"][frame["event_code"][int(i)]] + a["bias"])
        elif model.feedback:
            a = P["feedback_in"]
            channels.append(frame["value"][int(i)] * a["kernel"][0] + a["bias"])
        if cells.is_split(cell):  # one-hot: the item's row of W_x plus each channel's row
            carry = ref.gru_step(P["session"], carry, P["item_in"][item[i]] + sum(channels, 0))
            ys[i + 1] = carry.copy()
        else:  # the cell projects [embedding, channels] itself
            x = np.concatenate([P["item_in"][item[i]], *channels])[None]
            carry, y = cell.apply({"params": params["session"]}, carry, jnp.asarray(x))
            ys[i + 1] = np.asarray(y)[0]
    return ys


SIDE = {"plain": ({}, ("gap",)),
        "user-feedback": (dict(user_features=np.random.default_rng(6).normal(size=(7, 2)),
                               feedback=True), ("gap", "feedback")),
        "event-types": (dict(feedback=True, feedback_levels=3), ("gap", "event_type")),
        "no-control": (dict(control=False, feedback=True), ("feedback",))}


@pytest.mark.parametrize("cell,side", [(cells.GRU(H), "plain"), (nn.GRUCell(H), "plain"),
                                       (nn.LSTMCell(H), "plain"), (cells.GRU(H), "user-feedback"),
                                       (nn.LSTMCell(H), "user-feedback"),
                                       (cells.GRU(H), "event-types"),
                                       (nn.GRUCell(H), "event-types"),
                                       (cells.GRU(H), "no-control")],
                         ids=["split-gru", "flax-gru", "flax-lstm", "split-gru-user-feedback",
                              "flax-lstm-user-feedback", "split-gru-event-types",
                              "flax-gru-event-types", "split-gru-no-control"])
def test_hrnn_meta_scan_matches_per_user_loop(cell, side):
    frame = timed_log()
    rng = np.random.default_rng(5)
    frame = frame.with_columns(value=pl.Series(rng.normal(size=frame.height)),
                               event_code=pl.Series(rng.integers(0, 3, frame.height)))
    kw, fields = SIDE[side]
    model = meta.HRNNMeta(N_ITEMS, cell, control_dim=3, **kw)
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    if model.control:
        assert params["control"].shape == (4, 3 * H if cells.is_split(cell) else 3)
    else:
        assert "control" not in params
    assert model.capabilities.fields == fields
    got = run_lanes(model, params, frame)
    want = {}
    for u in np.unique(frame["user"].to_numpy()):
        want.update(meta_reference(model, params, frame, u))
    assert got.keys() == want.keys()
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(2e-5, 2e-6), err_msg=f"row {row}")


def test_hrnn_meta_scores_move_with_the_gap_only_where_the_level_changes():
    frame = timed_log()
    model = meta.HRNNMeta(N_ITEMS, cells.GRU(H))
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    batch = make_lanes(frame, batch_size=3, window=4, targets="user", close_at="input",
                       fields=("gap",)).window(0)
    _, y, _ = model.apply(params, model.init_carry(3), batch)
    # a gap in the same level: same outputs; a gap of another level at the first step: different
    same = {**batch, "gap": np.where(batch["gap"] < 60, 1.0, batch["gap"])}
    moved = {**batch, "gap": batch["gap"].copy()}
    moved["gap"][:, 0] = np.where(batch["gap"][:, 0] < 60, 1e6, 1.0)
    np.testing.assert_array_equal(model.apply(params, model.init_carry(3), same)[1], y)
    y2 = np.asarray(model.apply(params, model.init_carry(3), moved)[1])
    assert not np.allclose(y2[:, 0], y[:, 0])


def tcn_reference(P, x, levels, k, F):
    """The TCN over one user's whole input sequence ``x [T, D]``, zeros before its start."""
    def shift(a, n):  # a[t - n], zeros before the start
        out = np.zeros_like(a)
        out[n:] = a[:max(len(a) - n, 0)]
        return out
    h = x
    for level in range(levels):
        res = h
        for half in range(2):
            W, b = P[f"block{level}_{half}_kernel"], P[f"block{level}_{half}_bias"]
            h = np.maximum(b + sum(shift(h, i * 2 ** level) @ W[i] for i in range(k)), 0.0)
        if res.shape[-1] != F:
            res = res @ P[f"block{level}_down"]["kernel"] + P[f"block{level}_down"]["bias"]
        h = np.maximum(h + res, 0.0)
    return h


def test_hrnn_meta_with_a_tcn_matches_each_users_whole_sequence():
    frame = timed_log(n_users=9)
    tcn = TCN(H, levels=2, kernel_size=3)
    assert tcn.receptive_field == 13 and tcn.buffer_lengths() == [2, 2, 4, 4]
    model = meta.HRNNMeta(N_ITEMS, tcn, control_dim=3)
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    got = run_lanes(model, params, frame)  # windows of 4 < the receptive field: buffers carry
    P = jax.tree_util.tree_map(np.asarray, params)
    item, t, user = (frame[c].to_numpy() for c in ("item", "time", "user"))
    want = {}
    for u in np.unique(user):
        rows = np.flatnonzero(user == u)
        level = np.searchsorted(np.asarray(model.gap_edges), t[rows[1:]] - t[rows[:-1]],
                                side="right")
        x = np.concatenate([P["item_in"][item[rows[:-1]]], P["control"][level]], axis=1)
        for r, y in zip(rows[1:], tcn_reference(P["session"], x, 2, 3, H)):
            want[int(r)] = y
    assert got.keys() == want.keys()
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(2e-5, 2e-6), err_msg=f"row {row}")
    with pytest.raises(ValueError, match="reset='user'"):
        meta.HRNNMeta(N_ITEMS, tcn, reset="session")


def test_models_without_a_user_level_get_lanes_without_hold_steps():
    frame = timed_log()
    for model in (meta.HRNNMeta(N_ITEMS, cells.GRU(H)),
                  models.SessionRNN(N_ITEMS, cells.GRU(H), reset="user")):
        lanes = models.lanes_for(model, frame, batch_size=3, window=4, targets="user")
        for b in range(3):  # valid steps first, then only the lane's final padding
            v = lanes.valid.transpose(1, 0, 2).reshape(3, -1)[b]
            assert not np.any(v[1:] & ~v[:-1])
    held = make_lanes(frame, batch_size=3, window=4, targets="user", close_at="input",
                      boundary_slots=1)
    v = held.valid.transpose(1, 0, 2).reshape(3, -1)
    assert np.any(v[:, 1:] & ~v[:, :-1])  # HRNN's cap does hold lanes


# --- perplexity and Table 1


def test_perplexity_of_known_probabilities():
    got = evaluation.perplexity(np.log([0.5, 0.25, 1.0, 0.125]), 40)
    assert got == {"ppl": pytest.approx(2 ** (6 / 4)), "n": 4, "catalogue": 40}
    with pytest.raises(ValueError, match="no rows"):
        evaluation.perplexity([], 3)


def test_target_log_probs_are_the_full_softmax_at_the_target():
    frame = timed_log()
    model = models.SessionRNN(N_ITEMS, cells.GRU(H), reset="user")
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    events = simulations.first_in_session(frame)
    lp = predict.target_log_probs(model, params, frame, events, targets="user", chunk=3)
    y = predict.states_at(model, params, frame, events, targets="user")
    scores = y @ np.asarray(params["item_out"]).T + np.asarray(params["item_bias"])
    scores = scores[:, 1:]
    want = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    np.testing.assert_allclose(lp, want[np.arange(len(events)),
                                        frame["item"].to_numpy()[events] - 1], rtol=1e-5)


def test_hierarchical_sessions_follow_the_paper():
    log = simulations.hierarchical_sessions(300, seed=3)
    prep = simulations.table1_data(300, seed=3)
    encoded, train, test, info = prep.encoded, prep.train, prep.test, prep.info
    assert info["dropped"] == {"item_support": 0, "session_length": 0, "user_sessions": 0,
                               "user_events": 0, "test_unseen_items": 0}  # (the split's too)
    assert info["events"] == log.height  # sessions of one item survive preprocessing
    per_session = encoded.events.group_by("session").agg(pl.col("item").n_unique().alias("k"),
                                                         pl.len().alias("n"))
    assert (per_session["k"] == 1).all() and per_session["n"].is_between(1, 5).all()
    assert (per_session["n"] == 1).any()
    ev = encoded.events
    firsts = simulations.first_in_session(ev)
    items = ev["item"].to_numpy()
    raw = encoded.item_ids[items].astype(int)
    np.testing.assert_array_equal(raw[firsts], raw[firsts - 1] + 1)  # +1 between sessions
    sessions = ev.group_by("user").agg(pl.col("session").n_unique())["session"]
    assert sessions.max() <= 5
    assert set(train["user"].to_list()).isdisjoint(test["user"].to_list())
    assert abs(info["test_users"] / (info["train_users"] + info["test_users"]) - 0.2) < 0.01


@pytest.fixture(scope="module")
def table1_result():
    return simulations.table1(2000, seed=0, keep_fitted=True)


def test_table1_is_reproduced(table1_result):
    m = table1_result["models"]
    assert m["rnn"]["ppl"] >= 1.8  # not session-aware
    assert m["hgru"]["ppl"] <= 1.1  # boundary known
    assert m["hrnn_meta"]["ppl"] <= 1.1  # control inputs
    assert m["hrnn_meta"]["catalogue"] == m["rnn"]["catalogue"] >= 50


def test_the_gap_changes_the_top_item_of_a_trained_model(table1_result):
    """Within a session the item repeats; a day later the next session's item (+1) comes."""
    model, params = table1_result["fitted"]["hrnn_meta"]
    test = table1_result["test"]
    checked = 0
    for u in np.unique(test["user"].to_numpy())[:20]:
        history = test.filter(pl.col("user") == u)
        top = predict.recommend_by_gap(model, params, history, [0.0, 86400.0], k=1)[:, 0]
        last = int(history["item"][-1])
        assert top[0] == last and top[1] == last + 1 and top[0] != top[1], (u, top, last)
        checked += 1
    assert checked == 20


# --- item features in the decoder, cold start


def topic_log(seed, n_users, n_topics=6, per_topic=10, length=12):
    """Users each browse one topic: items t*per_topic+1 .. (t+1)*per_topic, 10 s apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t = rng.integers(n_topics)
        for k, i in enumerate(rng.integers(0, per_topic, length)):
            rows.append((u, int(t * per_topic + i + 1), u, 10.0 * k))
    return pl.DataFrame(rows, schema={"user": pl.Int32, "item": pl.Int32, "session": pl.Int32,
                                      "time": pl.Float64}, orient="row")


def test_feature_mix_is_linear_in_the_rows_and_cold_items_use_features_alone():
    feats = np.random.default_rng(0).normal(size=(N_ITEMS + 1, 4)).astype(np.float32)
    cold = np.zeros(N_ITEMS + 1, bool)
    cold[[2, 5]] = True
    model = meta.HRNNMeta(N_ITEMS, cells.GRU(H), item_features=feats, cold_items=cold,
                          feature_mix=0.3)
    fresh = model.init(jax.random.PRNGKey(0))
    params = {**perturbed(fresh), "item_feat": fresh["item_feat"], "item_cold": fresh["item_cold"]}
    np.testing.assert_array_equal(params["item_feat"], feats)
    np.testing.assert_array_equal(params["item_cold"], cold)
    y = np.random.default_rng(1).normal(size=(3, H)).astype(np.float32)
    P = jax.tree_util.tree_map(np.asarray, params)
    w_f = feats @ P["feature_out"]["kernel"] + P["feature_out"]["bias"]
    b_f = feats @ P["feature_bias"]["kernel"] + P["feature_bias"]["bias"]
    lam = np.where(cold, 1.0, 0.3)
    want = ((1 - lam) * (y @ P["item_out"].T + P["item_bias"]) + lam * (y @ w_f.T + b_f))
    got = models.score_items(model.scoring_params(params), jnp.asarray(y))
    np.testing.assert_allclose(got, want, **approx(1e-5, 1e-5))
    # training draws lambda per step; the same rng gives the same rows
    a = model.scoring_params(params, rng=jax.random.PRNGKey(3), train=True)
    b = model.scoring_params(params, rng=jax.random.PRNGKey(4), train=True)
    assert not np.allclose(a["item_out"][1], b["item_out"][1])
    np.testing.assert_array_equal(a["item_out"][2], b["item_out"][2])  # cold: lambda = 1 always
    # the feature table is data: no gradient reaches it
    grad = jax.grad(lambda p: models.score_items(model.scoring_params(p),
                                                 jnp.asarray(y)).sum())(params)
    assert not np.any(np.asarray(grad["item_feat"])) and not np.any(np.asarray(grad["item_cold"]))
    with pytest.raises(ValueError, match="item_features must be"):
        meta.HRNNMeta(N_ITEMS, cells.GRU(H), item_features=feats[1:])
    with pytest.raises(ValueError, match="give item_features"):
        meta.HRNNMeta(N_ITEMS, cells.GRU(H), cold_items=cold)


@pytest.mark.parametrize("loss", ["full-ce", pytest.param("bpr", marks=pytest.mark.slow)])
def test_cold_items_with_features_rank_better_than_chance(loss):
    n_topics, per_topic = 6, 10
    N = n_topics * per_topic
    train, test = topic_log(0, 300), topic_log(1, 60).with_columns(pl.col("user") + 1000,
                                                                    pl.col("session") + 1000)
    held = np.array([t * per_topic + k + 1 for t in range(n_topics) for k in (0, 1)])
    train = train.filter(~pl.col("item").is_in(held.tolist()))  # never seen in training
    feats = np.zeros((N + 1, n_topics), np.float32)
    feats[1:, :] = np.repeat(np.eye(n_topics), per_topic, axis=0)  # one-hot topic
    cold = np.isin(np.arange(N + 1), held)
    cfg = TrainConfig(epochs=6, batch_size=20, window=6, optimizer="adam", learning_rate=0.02,
                      loss=loss)
    events = np.flatnonzero(np.isin(test["item"].to_numpy(), held)
                            & (test["user"].to_numpy() == np.roll(test["user"].to_numpy(), 1)))
    ranks = {}
    for name, kw in (("features", dict(item_features=feats, cold_items=cold)), ("ids", {})):
        model = meta.HRNNMeta(N, cells.GRU(16), **kw)
        fit = training.fit(model, train, cfg, targets="user", log=None)
        y = predict.states_at(model, fit.params, test, events, targets="user")
        scores = np.asarray(models.score_items(model.scoring_params(fit.params),
                                               jnp.asarray(y)))[:, 1:]
        target = scores[np.arange(len(events)), test["item"].to_numpy()[events] - 1]
        ranks[name] = 1 + (scores > target[:, None]).sum(1)
    chance = (N + 1) / 2
    assert len(events) > 50
    assert ranks["features"].mean() < chance, ranks["features"].mean()
    assert np.median(ranks["features"]) <= per_topic  # among its topic's items
    assert ranks["features"].mean() < ranks["ids"].mean()


def test_betting_toy_follows_its_rules():
    log = simulations.betting(200, seed=2)
    for _, seq in log.group_by("user", maintain_order=True):
        assert seq["item"][0] == "start" and seq["value"][0] == 0.0
        bets = seq["item"][1:].cast(pl.Int64).to_numpy()
        out = seq["value"][1:].to_numpy()
        assert len(bets) <= 20 and np.isin(out, [-1.0, 1.0]).all()
        np.testing.assert_array_equal(bets[1:], (bets[:-1] + out[:-1].astype(int)) % 101)
        assert seq["first"][0] == (bets[0] if len(bets) else -1)
    prep, item_f, user_f = simulations.table2_data(200, seed=2)
    encoded, info = prep.encoded, prep.info
    assert info["dropped"]["item_support"] == 0
    assert item_f.shape == (encoded.n_items + 1, 3) and (item_f[1:].sum(1) == 1).all()
    assert user_f.shape == (encoded.n_users, 101) and user_f.sum(1).max() == 1


@pytest.mark.slow
def test_table2_is_reproduced_in_shape():
    ppl = {k: v["ppl"] for k, v in simulations.table2(1000, seed=0)["models"].items()}
    assert ppl["none"] > ppl["item"] > ppl["seq"] > ppl["all"], ppl
    assert ppl["all"] <= 1.5, ppl


@pytest.mark.parametrize("item_input", ["features", pytest.param("none", marks=pytest.mark.slow)])
def test_the_train_step_loss_is_the_models_loss_when_items_are_not_ids(item_input):
    """A row table's index field is replaced by local row ids inside the train step: a model
    whose encoder reads the item's features must not declare the item table (it reads global
    ids). The step's loss equals the loss of apply on the global batch."""
    feats = np.random.default_rng(0).normal(size=(N_ITEMS + 1, 3)).astype(np.float32)
    model = meta.HRNNMeta(N_ITEMS, cells.GRU(H), item_input=item_input, item_features=feats,
                          random_mix=False)
    assert "item_in" not in model.capabilities.row_tables
    tx = optax.adam(1e-3)
    # sparse row updates (the old default; now asked for), the state from the same step
    step = training.make_train_step(model, tx, loss="full-ce", row_updates="sparse")
    assert "item_in" not in step.row_tables
    state = step.init_state(jax.random.PRNGKey(0), 3)
    batch = models.lanes_for(model, timed_log(), batch_size=3, window=4, targets="user",
                             seed=2).window(1)
    # jitted, as fit runs them: one compilation each, not one per operation (test budget)
    _, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(1))
    _, y, _ = jax.jit(model.apply)(state.params, state.carry, batch)
    want = losses.full_cross_entropy(model.scoring_params(state.params), y,
                                     batch["target"])
    np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
