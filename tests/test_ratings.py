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
from tests.helpers import N_ITEMS, H, perturbed, timed_log


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
        new, metrics = step(state, batch, jax.random.PRNGKey(1))
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
    the sum over every pair a < b."""
    p = jax.tree_util.tree_map(np.asarray, params)
    N1, f = fm.n_items + 1, p["feat"]
    x = np.concatenate([np.eye(N1)[item], f[item], np.eye(N1)[last], f[last]])
    w = np.concatenate([p["cand"]["w_id"], p["cand"]["w_f"], p["ctx"]["w_id"], p["ctx"]["w_f"]])
    V = np.concatenate([p["cand"]["v_id"], p["cand"]["v_f"], p["ctx"]["v_id"], p["ctx"]["v_f"]])
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
