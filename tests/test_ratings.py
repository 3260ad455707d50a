"""Rating prediction (Ma & Narayanaswamy, Table 3): HRNN-meta's rating head and loss, RMSE, the
rolling-average and factorisation-machine baselines, and the rating-log tables."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
import pytest

from hrnn_jax import cells, evaluation, training
from hrnn_jax.baselines import rating as meta_baselines
from hrnn_jax.config import TrainConfig
from hrnn_jax.data.lanes import make_lanes
from hrnn_jax.evaluation import predict
from hrnn_jax.models import hrnn_meta as meta
from hrnn_jax.models import lanes_for
from hrnn_jax.papers import ma2019
from tests.helpers import N_ITEMS, H, perturbed, run_lanes, timed_log


def rated_log(seed=0, n_users=7):
    """timed_log with ratings 1..5 in ``value``."""
    frame = timed_log(seed, n_users)
    rng = np.random.default_rng(seed + 7)
    return frame.with_columns(value=pl.Series(rng.integers(1, 6, frame.height).astype(float)))


def rating_model(**kw):
    return meta.HRNNMeta(N_ITEMS, cells.GRU(H), rating_weight=1.0, rating_mean=3.0, **kw)


# --- the rating head


def test_rating_head_and_loss_match_numpy():
    """r_hat = mu + c_j + u_j^T h for the step's target j; the extra loss is rating_weight times
    the mean squared error over the steps with a target."""
    model = meta.HRNNMeta(N_ITEMS, cells.GRU(H), rating_weight=0.7, rating_mean=3.0,
                          feedback=True)
    assert model.capabilities.fields == ("gap", "feedback", "rating")
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    lanes = lanes_for(model, rated_log(), batch_size=3, window=4, targets="user")
    batch = lanes.window(len(lanes) - 1)  # the last window: with padding
    carry, y, extra = model.apply(params, model.init_carry(3), batch, train=True)
    y, t = np.asarray(y), batch["target"]
    p = jax.tree_util.tree_map(np.asarray, params)
    want = p["rating_bias"] + p["rating_item_bias"][t] + (p["rating_out"][t] * y).sum(-1)
    np.testing.assert_allclose(model.predict_ratings(params, y, t), want, rtol=1e-5, atol=1e-5)
    has = t > 0
    assert has.any() and (~has).any()  # padding steps are left out
    mse = ((want - batch["rating"])[has] ** 2).mean()
    np.testing.assert_allclose(extra["rating"], 0.7 * mse, rtol=1e-5)
    assert model.apply(params, model.init_carry(3), batch).extra == {}  # evaluation: no terms


def test_rating_label_is_the_target_events_value_and_feedback_the_inputs():
    frame = rated_log()
    v = frame["value"].to_numpy()
    lanes = make_lanes(frame, batch_size=3, window=4, targets="user", close_at="input",
                       fields=("feedback", "rating"))
    ev, ok = lanes.event, lanes.valid
    np.testing.assert_array_equal(lanes.extras["rating"][ok], v[ev[ok]])
    np.testing.assert_array_equal(lanes.extras["feedback"][ok], v[ev[ok] - 1])


def test_a_rating_only_step_leaves_the_item_decoder_alone():
    """item_weight=0: the train step's loss is the rating term alone, and the next-item
    decoder's rows do not move, while the rating head does."""
    model = rating_model(item_weight=0.0, control=False)
    assert model.capabilities.fields == ("rating",)
    assert model.capabilities.item_weight == 0.0
    assert "control" not in model.init(jax.random.PRNGKey(0))
    tx = optax.adam(1e-2)
    batch = lanes_for(model, rated_log(), batch_size=3, window=4, targets="user").window(0)
    # sparse row updates (the old default) and dense ones (the new default), each step with its
    # own state
    for row_updates in ("sparse", "dense"):
        step = training.make_train_step(model, tx, loss="full-ce", row_updates=row_updates)
        state = step.init_state(jax.random.PRNGKey(0), 3)
        # jitted, as fit runs it: one compilation, not one per operation (test budget)
        new, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(1))
        assert float(metrics["loss"]) == 0.0 and float(metrics["rating"]) > 0, row_updates
        for k in ("item_out", "item_bias"):
            np.testing.assert_array_equal(new.params[k], state.params[k], err_msg=row_updates)
        assert not np.allclose(new.params["rating_out"], state.params["rating_out"])
        assert not np.allclose(new.params["session"]["hidden"]["kernel"],
                               state.params["session"]["hidden"]["kernel"])


def test_weights_are_checked():
    with pytest.raises(ValueError, match="not both"):
        meta.HRNNMeta(N_ITEMS, cells.GRU(H), rating_weight=0.0, item_weight=0.0)
    with pytest.raises(ValueError, match="no rating head"):
        m = meta.HRNNMeta(N_ITEMS, cells.GRU(H))
        predict.target_ratings(m, m.init(jax.random.PRNGKey(0)), rated_log(), np.array([1]))


def test_target_ratings_never_read_the_predicted_events_own_rating():
    """A model fed its feedback reads the ratings before each prediction: changing the rating of
    event k moves no prediction for events up to k (and moves later ones of the same user)."""
    frame = rated_log()
    model = rating_model(feedback=True)
    params = perturbed(model.init(jax.random.PRNGKey(3)))
    user = frame["user"].to_numpy()
    events = np.flatnonzero(np.r_[False, user[1:] == user[:-1]])
    base = predict.target_ratings(model, params, frame, events, batch_size=3, window=4)
    inner = events[(events + 1 < len(user)) & (user[np.minimum(events + 1, len(user) - 1)]
                                                == user[events])]
    k = int(inner[len(inner) // 2])  # an event with a later one of the same user
    v = frame["value"].to_numpy().copy()
    v[k] = 6.0 - v[k] + 10.0
    moved = predict.target_ratings(model, params, frame.with_columns(value=pl.Series(v)), events,
                                   batch_size=3, window=4)
    upto = events <= k
    np.testing.assert_array_equal(moved[upto], base[upto])
    later = (events > k) & (user[events] == user[k])
    assert later.any() and not np.allclose(moved[later], base[later])


def test_rmse():
    assert evaluation.rmse([1.0, 3.0], [2.0, 5.0]) == {"rmse": pytest.approx(np.sqrt(2.5)), "n": 2}
    with pytest.raises(ValueError, match="no rows"):
        evaluation.rmse([], [])
    with pytest.raises(ValueError, match="3 predictions for 2"):
        evaluation.rmse([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        evaluation.rmse([np.nan], [1.0])


# --- the rolling average


def test_rolling_average_by_hand():
    df = pl.DataFrame({"user": [1, 1, 2, 2, 1, 3], "item": [1, 2, 1, 3, 3, 2],
                       "time": [0.0, 1, 1, 2, 5, 5], "value": [4.0, 2, 5, 3, 1, 4]})
    # row 0: nothing earlier (the prior); 1: user 1's 4; 2: item 1's 4 (row 1 has the same time
    # and is not seen); 3: user 2's 5; 4: mean of item 3 (3) and user 1 (3); 5: item 2's 2
    np.testing.assert_allclose(meta_baselines.rolling_average(df, prior=3.5),
                               [3.5, 4.0, 4.0, 5.0, 3.0, 2.0])


def test_rolling_average_never_looks_ahead():
    rng = np.random.default_rng(0)
    n = 300
    df = pl.DataFrame({"user": rng.integers(0, 20, n), "item": rng.integers(0, 15, n),
                       "time": np.round(rng.uniform(0, 100, n)),
                       "value": rng.integers(1, 6, n) * 1.0})
    base = meta_baselines.rolling_average(df, prior=3.0)
    t = df["time"].to_numpy()
    cut = np.median(t)
    v = df["value"].to_numpy().copy()
    v[t >= cut] = 1.0  # every rating at or after the cut changes
    moved = meta_baselines.rolling_average(df.with_columns(value=pl.Series(v)), prior=3.0)
    np.testing.assert_array_equal(moved[t <= cut], base[t <= cut])
    assert not np.allclose(moved[t > cut], base[t > cut])
    # the same as a slow loop over the rows in time order
    want = []
    for i in range(n):
        before = t < t[i]
        it = before & (df["item"].to_numpy() == df["item"][i])
        us = before & (df["user"].to_numpy() == df["user"][i])
        parts = [df["value"].to_numpy()[m].mean() for m in (it, us) if m.any()]
        want.append(np.mean(parts) if parts else (df["value"].to_numpy()[before].mean()
                                                  if before.any() else 3.0))
    np.testing.assert_allclose(base, want, rtol=1e-12)


# --- the factorisation machine


def brute_force_fm(fm, params, last, item):
    """Rendle's y(x) from an explicit feature vector x = [one-hot(j), f_j, one-hot(i), f_i] and
    the sum over every pair a < b; a one-hot slot the machine's ``ids`` leaves out is absent from
    x (no weight, no factor: zero there)."""
    p = jax.tree_util.tree_map(np.asarray, params)
    N1, f = fm.n_items + 1, p["feat"]
    k = p["cand"]["v_f"].shape[1]
    x = np.concatenate([np.eye(N1)[item], f[item], np.eye(N1)[last], f[last]])
    w = np.concatenate([p[s].get("w_id", np.zeros(N1)) if t == "id" else p[s]["w_f"]
                        for s in ("cand", "ctx") for t in ("id", "f")])
    V = np.concatenate([p[s].get("v_id", np.zeros((N1, k))) if t == "id" else p[s]["v_f"]
                        for s in ("cand", "ctx") for t in ("id", "f")])
    y = p["w0"] + w @ x
    for a, b in itertools.combinations(np.flatnonzero(x), 2):
        y += V[a] @ V[b] * x[a] * x[b]
    return y


def test_factorization_machine_matches_rendles_equation():
    feats = np.abs(np.random.default_rng(1).normal(size=(N_ITEMS + 1, 3))).astype(np.float32)
    fm = meta_baselines.FactorizationMachine(N_ITEMS, "rating", factors=4, item_features=feats)
    params = perturbed(fm.init(jax.random.PRNGKey(0)))
    params["feat"] = jnp.asarray(feats)
    last, item = np.array([1, 4, 9, 2]), np.array([3, 4, 1, 9])
    got = np.asarray(fm.predict_ratings(params, jnp.asarray(last), jnp.asarray(item)))
    want = [brute_force_fm(fm, params, i, j) for i, j in zip(last, item)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # next item: the softmax over every candidate of the same y (the context's terms cancel)
    lp = np.asarray(fm.log_probs(params, jnp.asarray(last), jnp.asarray(item)))
    for r, (i, j) in enumerate(zip(last, item)):
        ys = np.array([brute_force_fm(fm, params, i, c) for c in range(1, N_ITEMS + 1)])
        np.testing.assert_allclose(lp[r], ys[j - 1] - np.log(np.exp(ys).sum()), atol=1e-4)


@pytest.mark.parametrize("ids", ["none", "bias"])
def test_factorization_machine_without_the_id_pair_matches_rendle_and_is_no_markov_chain(ids):
    """ids="none": x = [f_j, f_i] (item features only); "bias": plus the candidate's id weight.
    Either way the last item counts only through its features: two last items with the same
    features give the same distribution (no Markov chain over ids); with "none" two candidates
    with the same features get the same probability."""
    feats = np.abs(np.random.default_rng(1).normal(size=(N_ITEMS + 1, 3))).astype(np.float32)
    feats[4], feats[7] = feats[2], feats[9]  # look-alikes: 2 and 4, 9 and 7
    fm = meta_baselines.FactorizationMachine(N_ITEMS, "rating", factors=4, item_features=feats,
                                             ids=ids)
    params = perturbed(fm.init(jax.random.PRNGKey(0)))
    params["feat"] = jnp.asarray(feats)
    assert "v_id" not in params["cand"] and set(params["ctx"]) == {"w_f", "v_f"}
    assert ("w_id" in params["cand"]) == (ids == "bias")
    last, item = np.array([1, 4, 9, 2]), np.array([3, 4, 1, 9])
    got = np.asarray(fm.predict_ratings(params, jnp.asarray(last), jnp.asarray(item)))
    want = [brute_force_fm(fm, params, i, j) for i, j in zip(last, item)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    cands = jnp.arange(1, N_ITEMS + 1)
    lp = {i: np.asarray(fm.log_probs(params, jnp.full(N_ITEMS, i), cands)) for i in (2, 4, 5)}
    np.testing.assert_allclose(lp[2], lp[4], rtol=1e-6)  # same features: same context
    assert not np.allclose(lp[2], lp[5])  # the features do count
    if ids == "none":
        np.testing.assert_allclose(lp[5][9 - 1], lp[5][7 - 1], rtol=1e-6)
    else:  # the candidate's own weight tells look-alikes apart
        assert not np.isclose(lp[5][9 - 1], lp[5][7 - 1])
    with pytest.raises(ValueError, match="give item_features"):
        meta_baselines.FactorizationMachine(N_ITEMS, ids="none")
    with pytest.raises(ValueError, match="ids"):
        meta_baselines.FactorizationMachine(N_ITEMS, ids="markov")


def test_factorization_machine_learns_a_transition_that_popularity_cannot():
    """Item i is always followed by i + 1 (mod N): the machine's perplexity goes near 1, far
    below the popularity baseline's (about N)."""
    n, N = 400, 12
    rng = np.random.default_rng(0)
    first = rng.integers(1, N + 1, n)
    frame = pl.DataFrame({"user": np.repeat(np.arange(n), 4),
                          "item": ((first[:, None] - 1 + np.arange(4)) % N + 1).ravel()})
    pairs = meta_baselines.consecutive_pairs(frame)
    fm = meta_baselines.FactorizationMachine(N, "item", factors=8, epochs=30, batch_size=128,
                                             learning_rate=5e-2)
    params = fm.fit(pairs, seed=0)
    ppl = evaluation.perplexity(fm.log_probs(params, pairs["last"], pairs["item"]), N)["ppl"]
    pop = evaluation.perplexity(meta_baselines.popularity_log_probs(frame, N, pairs["item"]),
                                N)["ppl"]
    assert ppl < 1.3 and pop > 10


def test_consecutive_pairs_skip_each_users_first_event():
    frame = pl.DataFrame({"user": [0, 0, 0, 1, 2, 2], "item": [5, 6, 7, 8, 9, 1],
                          "value": [1.0, 2, 3, 4, 5, 1]})
    p = meta_baselines.consecutive_pairs(frame)
    np.testing.assert_array_equal(p["row"], [1, 2, 5])
    np.testing.assert_array_equal(p["last"], [5, 6, 9])
    np.testing.assert_array_equal(p["item"], [6, 7, 1])
    np.testing.assert_array_equal(p["value"], [2, 3, 1])


# --- the rating-log tables


def test_synthetic_ratings_have_the_user_bias():
    log, genres = ma2019.synthetic_ratings(300, n_items=60, n_genres=4, seed=0)
    assert log["value"].min() >= 1 and log["value"].max() <= 5
    assert set(genres.item_ids) >= set(log["item"].cast(pl.String).unique().to_list())
    np.testing.assert_allclose(np.linalg.norm(genres.matrix, axis=1), 1.0, rtol=1e-6)
    # the user bias: users' mean ratings spread far more than the sampling error of a mean
    by_user = (log.group_by("user").agg(m=pl.col("value").mean(), n=pl.len())
               .filter(pl.col("n") >= 10))
    assert by_user["m"].std() > 0.5
    again, _ = ma2019.synthetic_ratings(300, n_items=60, n_genres=4, seed=0)
    assert again.equals(log)


def test_movielens_files_reach_the_tables(tmp_path):
    """ratings.dat + movies.dat (ml-1m) and ratings.csv + movies.csv (ml-20m) give the same log
    and features; prepare lines the genres up with the catalogue."""
    log, genres = ma2019.synthetic_ratings(40, n_items=30, n_genres=3, seed=1)
    log = log.with_columns(pl.col("time").round().cast(pl.Int64))
    names = dict(zip(genres.item_ids, ["|".join(n for n, v in zip(genres.names, row) if v > 0)
                                       for row in genres.matrix]))
    (tmp_path / "ratings.dat").write_text("".join(
        f"{u}::{i}::{int(v)}::{t}\n" for u, i, t, v in log.iter_rows()))
    (tmp_path / "movies.dat").write_text("".join(
        f"{i}::Film {i} (1999)::{g}\n" for i, g in names.items()))
    log.rename({"user": "userId", "item": "movieId", "value": "rating", "time": "timestamp"}
               ).write_csv(tmp_path / "ratings.csv")
    pl.DataFrame({"movieId": list(names), "title": [f"Film, {i}" for i in names],
                  "genres": list(names.values())}).write_csv(tmp_path / "movies.csv")
    a = ma2019.read_movielens(tmp_path / "ratings.dat", tmp_path / "movies.dat")
    b = ma2019.read_movielens(tmp_path / "ratings.csv", tmp_path / "movies.csv")
    assert a[0].sort("user", "time", "item").equals(b[0].sort("user", "time", "item"))
    np.testing.assert_array_equal(a[1].matrix, b[1].matrix)
    prep = ma2019.prepare_ratings(*a)
    enc, feats = prep["encoded"], prep["features"]
    assert feats.shape == (enc.n_items + 1, 3) and np.all(feats[0] == 0)
    row = {i: r for i, r in zip(genres.item_ids, genres.matrix)}
    for code in (1, enc.n_items):
        np.testing.assert_allclose(feats[code], row[str(enc.item_ids[code])], rtol=1e-6)
    assert prep["info"]["items_without_features"] == 0


@pytest.mark.slow
def test_table3_feedback_beats_the_rolling_average_and_no_feedback_does_not():
    prep = ma2019.prepare_ratings(*ma2019.synthetic_ratings(600, n_items=200, seed=0))
    cfg = TrainConfig(epochs=8, batch_size=50, window=10, optimizer="adam", learning_rate=1e-2,
                      loss="full-ce")
    r = {k: v["rmse"] for k, v in ma2019.table3(prep, hidden=32, train=cfg).items()}
    assert r["rnn_feedback"] < r["rolling_average"] < r["rnn"]


# --- I-AutoRec


def autorec_numpy(model, params, users, items, values):
    """I-AutoRec from its equations on the dense matrix: r^(i) [m] (0 where unobserved), h(r) =
    W sigmoid(V r + mu) + b, the squared error over the observed entries plus l2 / 2 (|W|^2 +
    |V|^2). Returns (reconstruction [m, N+1], loss)."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    m, N1 = model.n_users, model.n_items + 1
    R, seen = np.zeros((m, N1)), np.zeros((m, N1), bool)
    R[users, items], seen[users, items] = values, True
    V, W = p["V"].T, p["W"]  # the paper's V [k, m] and W [m, k]
    recon = np.stack([W @ (1 / (1 + np.exp(-(V @ R[:, i] + p["mu"])))) + p["b"]
                      for i in range(N1)], axis=1)
    loss = ((recon - R)[seen] ** 2).sum() + model.l2 / 2 * ((W**2).sum() + (V**2).sum())
    return recon, loss


def test_i_autorec_matches_its_equations_in_numpy():
    model = meta_baselines.IAutoRec(N_ITEMS, 5, hidden=3, l2=0.3)
    rng = np.random.default_rng(0)
    users = np.array([0, 0, 1, 2, 2, 3, 4, 4, 1])
    items = np.array([1, 3, 3, 2, 9, 1, 5, 3, 7])
    values = rng.integers(1, 6, len(users)).astype(np.float32)
    params = perturbed(model.init(jax.random.PRNGKey(1), prior=3.0))
    recon, want = autorec_numpy(model, params, users, items, values)
    u, i, v = (jnp.asarray(a) for a in (users, items, values))
    np.testing.assert_allclose(model.loss(params, u, i, v), want, rtol=1e-5)
    who, what = np.arange(5), np.array([4, 1, 8, 2, 6])  # entries observed or not
    got = model.predict(params, model.codes(params, u, i, v), jnp.asarray(who), jnp.asarray(what))
    np.testing.assert_allclose(got, recon[who, what], rtol=1e-5, atol=1e-6)
    # a rating given twice is one entry, the mean
    eu, ei, ev = model.entries(np.r_[users, 0], np.r_[items, 1], np.r_[values, 5.0])
    assert len(eu) == len(users)
    np.testing.assert_allclose(ev[(eu == 0) & (ei == 1)], (values[0] + 5.0) / 2)
    # training lowers the objective (Rprop on the full batch)
    fitted = model.fit(users, items, values, seed=0)
    assert float(model.loss(fitted, u, i, v)) < float(model.loss(
        model.init(jax.random.PRNGKey(0), prior=float(values.mean())), u, i, v))
    with pytest.raises(ValueError, match="user codes must be"):
        model.entries([5], [1], [3.0])


def test_i_autorec_fold_in_is_each_users_ridge_regression_on_earlier_ratings():
    """A user outside the training matrix: W_u, b_u minimise the objective over the ratings
    before each one (item codes fixed), by a generic least-squares solver; the first rating
    has no prediction; chunking the running sums changes nothing."""
    model = meta_baselines.IAutoRec(N_ITEMS, 4, hidden=3, l2=0.8)
    rng = np.random.default_rng(2)
    train = (rng.integers(0, 4, 30), rng.integers(1, N_ITEMS + 1, 30),
             rng.integers(1, 6, 30).astype(np.float32))
    params = model.fit(*train, seed=0)
    frame = pl.DataFrame({"user": [7] * 6 + [8] * 2 + [9],
                          "item": [2, 5, 5, 1, 9, 3, 4, 4, 6],
                          "value": [4.0, 2, 3, 5, 1, 2, 3, 5, 1]})
    got = model.fold_in(params, train, frame)
    np.testing.assert_allclose(got, model.fold_in(params, train, frame, chunk=2), rtol=1e-9)
    assert np.isnan(got[[0, 6, 8]]).all() and not np.isnan(np.delete(got, [0, 6, 8])).any()
    codes = np.asarray(model.codes(params, *(jnp.asarray(a) for a in model.entries(*train))),
                       np.float64)
    items, r = frame["item"].to_numpy(), frame["value"].to_numpy()
    for start, stop in ((0, 6), (6, 8)):
        for k in range(start + 1, stop):
            X = np.c_[codes[items[start:k]], np.ones(k - start)]
            # the ridge as an augmented least-squares problem: sqrt(l2/2) rows penalise W_u only
            A = np.r_[X, np.c_[np.sqrt(model.l2 / 2) * np.eye(3), np.zeros(3)]]
            theta = np.linalg.lstsq(A, np.r_[r[start:k], np.zeros(3)], rcond=None)[0]
            np.testing.assert_allclose(got[k], np.r_[codes[items[k]], 1.0] @ theta, rtol=1e-6)
    with pytest.raises(ValueError, match="sorted by user"):
        model.fold_in(params, train, frame.reverse())


def test_i_autorec_beats_the_global_mean_on_new_users():
    """Ratings = user bias + item quality + a shared taste: folded-in users' later ratings are
    predicted better than by the training mean."""
    rng = np.random.default_rng(3)
    N, m, n_new = 30, 120, 30
    quality, taste = rng.normal(0, 1, N + 1), rng.normal(0, 1, N + 1)
    bias, pref = rng.normal(0, 0.7, m + n_new), rng.choice([-1.0, 1.0], m + n_new)
    rows = [(u, i, float(np.clip(3 + bias[u] + quality[i] + 0.5 * pref[u] * taste[i]
                                 + rng.normal(0, 0.2), 1, 5)))
            for u in range(m + n_new)
            for i in rng.choice(np.arange(1, N + 1), 20, replace=False)]
    log = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "value": pl.Float64},
                       orient="row")
    train, test = log.filter(pl.col("user") < m), log.filter(pl.col("user") >= m)
    events = (train["user"].to_numpy(), train["item"].to_numpy(), train["value"].to_numpy())
    model = meta_baselines.IAutoRec(N, m, hidden=8, l2=1.0)
    pred = model.fold_in(model.fit(*events, seed=0), events, test)
    later = ~np.isnan(pred)
    actual = test["value"].to_numpy()[later]
    rmse = evaluation.rmse(pred[later], actual)["rmse"]
    base = evaluation.rmse(np.full(later.sum(), events[2].mean()), actual)["rmse"]
    assert rmse < 0.7 * base, (rmse, base)  # 0.54 of it (seeds 3-5: 0.46-0.54)


# --- standardised feedback


def test_feedback_enters_standardised_by_the_training_statistics():
    """HRNN-meta with feedback_mean/std on raw ratings computes what the plain model computes
    on ratings standardised beforehand; the statistics are the training events' only."""
    frame = rated_log()
    mean, std = ma2019.feedback_standardisation(frame)
    v = frame["value"].to_numpy()
    np.testing.assert_allclose((mean, std), (v.mean(), v.std()))
    assert mean > 2 and abs(std - 1) > 0.1  # far from 0 and 1: the comparison below can fail
    standard = meta.HRNNMeta(N_ITEMS, cells.GRU(H), feedback=True, feedback_mean=mean,
                             feedback_std=std)
    plain = meta.HRNNMeta(N_ITEMS, cells.GRU(H), feedback=True)
    params = perturbed(plain.init(jax.random.PRNGKey(0)))
    scaled = frame.with_columns((pl.col("value") - mean) / std)
    got, want = run_lanes(standard, params, frame), run_lanes(plain, params, scaled)
    assert got.keys() == want.keys()
    for row in got:
        np.testing.assert_allclose(got[row], want[row], rtol=1e-5, atol=1e-6)
    rnn = ma2019.table3_models(N_ITEMS, H, 3.0, (mean, std))
    assert (rnn["rnn_feedback"].feedback_mean, rnn["hrnn_feedback"].feedback_std) == (mean, std)
    assert not rnn["rnn"].feedback
    with pytest.raises(ValueError, match="feedback_std"):
        meta.HRNNMeta(N_ITEMS, cells.GRU(H), feedback=True, feedback_std=0.0)
    with pytest.raises(ValueError, match="std 0"):
        ma2019.feedback_standardisation(frame.with_columns(value=pl.lit(3.0)))
