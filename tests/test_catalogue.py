"""An explicit catalogue (Ma & Narayanaswamy's cold start): items of an item-feature file join the
catalogue without training events, stay in test, and HRNN-meta scores and recommends them from
their features alone, from ``compare`` to a checkpoint's ``recommend``."""
import jax
import numpy as np
import polars as pl
import pytest

from hrnn_jax import checkpoint, cli, compare, data, models
from hrnn_jax.config import Config, DataConfig, ModelConfig, TrainConfig
from hrnn_jax.trained import prepare_log

GENRES = ["a", "b", "c"]


def log_and_movies(tmp_path):
    """8 users x 2 sessions over items 1..9 (each item's genre: item % 3); item 10 occurs only
    in user 0's last session (test under last-session), item 11 in no event at all; both are
    in movies.csv."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(8):
        for s in range(2):
            for e in range(4):
                rows.append((f"u{u}", str(int(rng.integers(1, 10))), 7200.0 * s + 10.0 * e))
    rows.append(("u0", "10", 7200.0 + 50.0))
    log = tmp_path / "log.csv"
    pl.DataFrame(rows, schema=["user", "item", "time"], orient="row").write_csv(log)
    movies = tmp_path / "movies.csv"
    pl.DataFrame({"movieId": [str(i) for i in range(1, 12)],
                  "title": [f"Film {i}" for i in range(1, 12)],
                  "genres": [GENRES[i % 3] for i in range(1, 12)]}).write_csv(movies)
    return log, movies


def test_encode_split_and_restrict_keep_the_catalogue():
    frame = pl.DataFrame({"user": ["u", "u", "u", "u", "v", "v"],
                          "item": ["1", "2", "3", "1", "1", "2"],
                          "time": [0.0, 1, 2, 3, 0, 1], "session": [0, 0, 1, 1, 2, 2]})
    enc = data.encode(frame, catalogue=["2", "3", "9"])
    assert list(enc.item_ids[1:]) == ["1", "2", "3", "9"]  # "9": no event, still a code
    known = enc.encode_items(["2", "3", "9"])
    plain = data.split(enc.events, "last-session")
    kept = data.split(enc.events, "last-session", known_items=known)
    assert plain[1].height == 0 and plain[2]["test_unseen_items"] == 1  # item 3 only in test
    assert kept[1].height == 2 and kept[2]["test_unseen_items"] == 0
    restricted, train, test = data.restrict_items(enc, kept[0], kept[1], known_items=known)
    assert list(restricted.item_ids[1:]) == ["1", "2", "3", "9"]
    assert restricted.decode_items(test["item"].to_numpy()).tolist() == ["3", "1"]
    with pytest.raises(data.DataError, match="not in the training part or the catalogue"):
        data.restrict_items(enc, kept[0], kept[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return log_and_movies(tmp_path_factory.mktemp("cat"))


def config(movies, **train):
    return Config(data=DataConfig(min_item_support=1, item_features=str(movies)),
                  model=ModelConfig(hidden=8),
                  train=TrainConfig(batch_size=4, seed=0, epochs=2, **train))


def test_prepare_with_items_keeps_cold_items_and_their_test_events(files):
    log, movies = files
    prep = prepare_log(log, config(movies).data)
    enc = prep.encoded
    assert {"10", "11"} <= set(enc.item_ids[1:])
    cold = set(enc.item_ids[np.flatnonzero(prep.cold_items)])
    assert cold == {"10", "11"}
    assert prep.info["catalogue"]["cold_items"] == 2
    code10 = enc.encode_items(["10"])[0]
    assert code10 in prep.test["item"].to_list()  # the cold item's test event is evaluated
    assert code10 in prep.rows.target
    g = prep.item_features
    assert g.shape == (enc.n_items + 1, 3) and np.all(g[0] == 0)
    for code in range(1, enc.n_items + 1):
        assert g[code, int(enc.item_ids[code]) % 3] == 1.0


def test_hrnn_meta_scores_cold_items_from_features_through_a_checkpoint(files, tmp_path,
                                                                         capsys):
    """Trained through the CLI with --item-features: the loaded model scores cold items by the
    feature path alone (lambda = 1), and recommend can return them."""
    log, movies = files
    out = tmp_path / "model"
    assert cli.main(["train", str(log), "--model", "hrnn-meta", "--item-features", str(movies),
                     "--hidden", "8", "--batch-size", "4", "--epochs", "2",
                     "--min-item-support", "1", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    trained = checkpoint.load(out)
    enc, p = trained.encoded, trained.params
    assert trained.model.n_features == 3
    cold = np.flatnonzero(np.asarray(p["item_cold"]) > 0)
    assert set(enc.item_ids[cold]) == {"10", "11"}
    f = np.asarray(p["item_feat"])
    y = np.asarray(trained.users["output"][:3])
    scores = np.asarray(models.score_items(trained.model.scoring_params(p), y))
    w = f[cold] @ np.asarray(p["feature_out"]["kernel"]) + np.asarray(p["feature_out"]["bias"])
    b = f[cold] @ np.asarray(p["feature_bias"]["kernel"]) + np.asarray(p["feature_bias"]["bias"])
    np.testing.assert_allclose(scores[:, cold], y @ w.T + b, rtol=1e-5, atol=1e-5)
    recs = trained.recommend(enc.user_ids[1], k=enc.n_items)
    assert {"10", "11"} <= set(recs["item"].to_list())
    metrics = trained.evaluate(log)  # the same prepared catalogue from the saved settings
    assert 0 <= metrics["recall@5"] <= 1


def test_compare_with_items_runs_every_model_on_the_same_catalogue(files):
    log, movies = files
    prep = prepare_log(log, config(movies).data)
    cfg = config(movies)
    for name in ("gru", "hrnn-meta"):
        model = compare.model_for(name, prep, cfg)
        params = model.init(jax.random.PRNGKey(0))
        assert params["item_out"].shape[0] == prep.encoded.n_items + 1
        ranks = compare.evaluate_neural(model, params, prep, cfg)
        assert len(ranks) == len(prep.rows) and np.all(ranks <= prep.encoded.n_items)
