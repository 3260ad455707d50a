"""data.prepare: the catalogue is the training part's items; repeated interactions (opt-in)."""
import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from hrnn_jax import baselines, compare, data, evaluation, models
from hrnn_jax.config import Config, DataConfig, ModelConfig
from hrnn_jax.evaluation import predict

ONLY_IN_TEST = "X"


def log_with_item_only_in_test(seed=0):
    """6 users x 3 sessions (an hour apart) x 4 events over items i0..i9; user u0's last event
    is item "X", which occurs nowhere else (the last event under every protocol)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(6):
        for s in range(3):
            for e in range(4):
                rows.append((f"u{u}", f"i{rng.integers(10)}", 3600.0 * s + 10.0 * e))
    rows.append(("u0", ONLY_IN_TEST, 3600.0 * 2 + 40.0))
    frame = pl.DataFrame(rows, schema=["user", "item", "time"], orient="row")
    return data.read_interactions(frame)


# the random user split: half of the 6 users, drawn with a seed that puts u0 (and so "X") in test
USERS = {"test_fraction": 0.5, "split_seed": 1}


def data_config(protocol):
    return DataConfig(protocol=protocol, min_item_support=1,
                      **(USERS if protocol == "users" else {}))


@pytest.fixture(scope="module", params=data.PROTOCOLS)
def prep(request):
    return data.prepare(log_with_item_only_in_test(), data_config(request.param))


def test_catalogue_is_the_training_items(prep):
    enc = prep.encoded
    train_items = set(enc.decode_items(prep.train["item"].unique().to_numpy()).tolist())
    assert ONLY_IN_TEST not in enc.item_ids.tolist()
    assert set(enc.item_ids[1:].tolist()) == train_items
    assert enc.n_items == len(train_items) == prep.train["item"].n_unique()
    assert sorted(prep.train["item"].unique().to_list()) == list(range(1, enc.n_items + 1))
    assert prep.test["item"].is_in(prep.train["item"].implode()).all()
    assert prep.info["catalogue"] == {"items": enc.n_items, "removed_items": 1}
    assert prep.info["items"] == enc.n_items + 1  # the filtered log, X included
    assert prep.info["dropped"]["test_unseen_items"] >= 1  # X's event, a row
    with pytest.raises(data.DataError, match="unknown item id"):
        enc.encode_items([ONLY_IN_TEST])


def test_users_protocol_scores_every_step_of_the_test_users_only():
    raw = log_with_item_only_in_test()
    prep = data.prepare(raw, data_config("users"))
    train_users = set(prep.train["user"].to_list())
    test_users = set(prep.test["user"].to_list())
    assert 0 in test_users and train_users.isdisjoint(test_users)       # u0 is a test user
    assert (prep.info["train_users"], prep.info["test_users"]) == (3, 3)
    assert "test_users" not in prep.info["dropped"]                    # users, not dropped rows
    assert data.rows_targets("users") == "user"
    # every test event but each test user's first (it has no input) is a row, across sessions
    assert set(prep.rows.user.tolist()) == test_users
    assert len(prep.rows) == prep.test.height - len(test_users) == prep.info["evaluated"]
    assert (~prep.rows.same_session).any()
    assert (prep.rows.history_sessions == 0).all()                     # no training history
    assert data.prepare(raw, data_config("users")).test.equals(prep.test)
    other = data.prepare(raw, DataConfig(protocol="users", min_item_support=1,
                                         test_fraction=0.5, split_seed=0))
    assert set(other.test["user"].to_list()) != test_users
    # validation: the same share of the training users, drawn with the same seed
    train, _ = compare.validation(prep, Config(data=data_config("users")))
    assert set(train["user"].to_list()) < train_users


def n_training_items(prep):
    return prep.train["item"].n_unique()


@pytest.mark.parametrize("name", [n for n in compare.model_names()
                                  if n not in models.model_names()])
def test_baseline_scores_cover_the_catalogue(prep, name):
    n = n_training_items(prep)
    model = baselines.build_baseline(name, Config()).fit(prep.train, prep.encoded.n_items)
    index = np.arange(len(prep.rows))
    assert model.score(prep.rows, index).shape == (len(prep.rows), n + 1)
    ranks = evaluation.rank_chunks(lambda idx: model.score(prep.rows, idx), prep.rows,
                                   ties="pessimistic")
    assert ranks.max() <= n


# HCRNN-2 and -3 differ from HCRNN-1 only inside the cell (tested in test_hcrnn_cells)
@pytest.mark.parametrize("name", [n for n in models.model_names()
                                  if n not in ("hcrnn-2", "hcrnn-3")])
def test_neural_scores_cover_the_catalogue(prep, name):
    """All-zero output rows: every item ties with the target, so the pessimistic rank counts
    every item of the catalogue: exactly N, the training items (an item only in test would add
    one)."""
    n = n_training_items(prep)
    model = models.build_model(name, prep.encoded.n_items, ModelConfig(hidden=8),
                               n_users=prep.encoded.n_users)
    params = model.init(jax.random.PRNGKey(0))
    assert model.scoring_params(params)["item_out"].shape[0] == n + 1
    # the scored rows all zero: HCRNN's decoder is tied to its input embedding
    zero = ("item_out", "item_bias") if "item_out" in params else ("item_in",)
    params = {**params, **{k: jnp.zeros_like(params[k]) for k in zero}}
    y = predict.hidden_states(model, params, prep.stream, prep.rows, batch_size=4,
                              targets=compare.lane_targets(model, prep))
    assert models.score_items(model.scoring_params(params),
                              jnp.asarray(y)).shape == (len(prep.rows), n + 1)
    ranks = predict.model_ranks(model, params, prep.stream, prep.rows, batch_size=4,
                                targets=compare.lane_targets(model, prep),
                                ties="pessimistic")
    np.testing.assert_array_equal(ranks, np.full(len(prep.rows), n, np.float32))


def test_recommend_never_returns_an_item_outside_training(prep):
    model = models.build_model("gru", prep.encoded.n_items, ModelConfig(hidden=8))
    params = model.init(jax.random.PRNGKey(1))
    history = [prep.encoded.item_ids[1:3].tolist()]
    recs = predict.recommend(model, params, prep.encoded, history, k=10_000)
    assert ONLY_IN_TEST not in recs
    assert sorted(recs) == sorted(prep.encoded.item_ids[1:].tolist())


def test_prepare_dedupe_reports_repeats_before_the_filters():
    # sessions (an hour apart): u0 = [a b a g], [g b c]; u1 = [a g b], [a g c]
    # events per item: a 4 (one a repeat within u0's first session), b 3, g 4, c 2
    frame = pl.DataFrame({
        "user": ["u0"] * 7 + ["u1"] * 6,
        "item": ["a", "b", "a", "g", "g", "b", "c", "a", "g", "b", "a", "g", "c"],
        "time": [0.0, 10, 20, 30, 4000, 4010, 4020, 0, 10, 20, 4000, 4010, 4020]})
    raw = data.read_interactions(frame)
    plain = data.prepare(raw, DataConfig(min_item_support=1))
    assert "repeated_in_session" not in plain.info["dropped"]
    deduped = data.prepare(raw, DataConfig(min_item_support=1, dedupe=True))
    dropped = deduped.info["dropped"]
    assert list(dropped)[0] == "repeated_in_session" and dropped["repeated_in_session"] == 1
    assert deduped.info["events"] == plain.info["events"] - 1 == 12
    # support >= 4 is counted after the repeat is gone: "a" (now 3 events) goes too
    kw = dict(min_item_support=4, min_session_len=1, protocol="leave-one-out")
    assert data.prepare(raw, DataConfig(**kw)).info["dropped"]["item_support"] == 3 + 2  # b, c
    strict = data.prepare(raw, DataConfig(dedupe=True, **kw)).info["dropped"]
    assert strict["repeated_in_session"] == 1
    assert strict["item_support"] == 3 + 3 + 2                                    # a, b, c
