"""GRU4Rec+ (Hidasi & Karatzoglou, CIKM 2018): BPR-max and TOP1-max against their formulas, the
ELU output, the popularity^alpha sampling of the shared negatives, and the named model."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
import pytest

from hrnn_jax import cli, compare, data, models, training
from hrnn_jax.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.training import losses


def one_step_scores(pos, negs):
    """Scores ``[1, 1, 1 + S]`` of one lane and one step: the positive, then S sampled ones."""
    return jnp.asarray([[[pos, *negs]]], jnp.float32)


def test_bpr_max_follows_the_highest_scoring_negative():
    """With one negative far above the others, the softmax weights put (almost) all mass on it:
    BPR-max is BPR against that negative alone (plus its regularisation), unlike plain BPR,
    which averages over every negative."""
    target, negs = jnp.asarray([[1]]), jnp.asarray([2, 3, 4, 5])
    scores = one_step_scores(0.5, [5.0, -10.0, -12.0, -11.0])
    got = float(losses.ranking_loss("bpr-max", scores, target, negs, score_reg=0.0))
    assert got == pytest.approx(-np.log(1 / (1 + np.exp(-(0.5 - 5.0)))), rel=1e-3)
    bpr = float(losses.ranking_loss("bpr", scores, target, negs))
    assert bpr < got / 2  # averaged over the negatives, the one hard negative is diluted
    reg = float(losses.ranking_loss("bpr-max", scores, target, negs, score_reg=0.1))
    assert reg - got == pytest.approx(0.1 * 5.0**2, rel=1e-3)


def test_top1_max_weights_by_softmax():
    target, negs = jnp.asarray([[1]]), jnp.asarray([2, 3])
    r = np.array([1.0, 2.0])
    got = float(losses.ranking_loss("top1-max", one_step_scores(0.0, r), target, negs))
    s = np.exp(r) / np.exp(r).sum()
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert got == pytest.approx(float(np.sum(s * (sig(r) + sig(r**2)))), rel=1e-5)


@pytest.mark.parametrize("kind", ["bpr-max", "top1-max"])
def test_max_losses_without_negatives_and_at_extreme_scores(kind):
    """A step whose only candidates are itself or padding contributes 0; scores of 1e4 keep the
    loss and its gradient finite (the softmax over the negatives is shifted, the log has the
    official code's 1e-24)."""
    target = jnp.asarray([[3]])
    assert float(losses.ranking_loss(kind, one_step_scores(1.0, [5.0, 7.0]), target,
                                     jnp.asarray([3, 0]))) == 0.0
    f = lambda s: losses.ranking_loss(kind, s, target, jnp.asarray([1, 2]))  # noqa: E731
    scores = one_step_scores(-1e4, [1e4, 5e3])
    value, grad = jax.value_and_grad(f)(scores)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))


def test_elu_activation():
    x = jnp.asarray([-3.0, -0.5, 0.0, 2.0])
    want = np.where(np.asarray(x) > 0, np.asarray(x), 0.5 * (np.exp(np.asarray(x)) - 1))
    np.testing.assert_allclose(losses.activate("elu", x, 0.5), want, rtol=1e-6)
    assert losses.ELU_ALPHA == TrainConfig().elu_alpha == 0.5


def test_popularity_cdf_is_popularity_to_the_alpha():
    train = pl.DataFrame({"item": [1, 1, 1, 1, 2, 4]})
    for alpha in (1.0, 0.5, 0.0):
        cdf = training.popularity_cdf(train, 5, alpha)
        p = np.diff(np.concatenate([[0.0], cdf]))
        counts = np.array([0, 4, 1, 0, 1, 0], float)
        want = np.where(counts > 0, counts**alpha, 0.0)
        np.testing.assert_allclose(p, want / want.sum(), rtol=1e-6)  # 3 and 5: never drawn
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        training.popularity_cdf(train, 5, -1.0)


def test_shared_negatives_are_drawn_from_the_distribution():
    """The step's S extra negatives (one set shared by all lanes) follow popularity^alpha: the
    frequencies of 400,000 draws are within 0.005 of it, items without events never appear."""
    train = pl.DataFrame({"item": [1] * 9 + [2] * 4 + [3] + [5] * 16})
    cdf = training.popularity_cdf(train, 6, 0.5)
    model = models.build_model("gru", 6, ModelConfig(hidden=4))
    step = training.make_train_step(model, optax.sgd(0.1), loss="bpr-max", n_negatives=4000,
                                    negative_cdf=cdf)
    draws = jax.vmap(step._negatives)(jax.random.split(jax.random.PRNGKey(0), 100)).ravel()
    freq = np.bincount(np.asarray(draws), minlength=7) / draws.size
    want = np.array([0, 3, 2, 1, 0, 4, 0]) / 10  # sqrt of 9, 4, 1, 16
    np.testing.assert_allclose(freq, want, atol=0.005)
    assert freq[0] == freq[4] == freq[6] == 0


@pytest.fixture(scope="module")
def prep():
    log = synthetic.generate(n_users=80, n_items=60, seed=5)
    return data.prepare(log, DataConfig(min_item_support=2))


def test_gru4rec_plus_is_gru4rec_with_the_official_bpr_max_settings(prep):
    cfg = Config(train=TrainConfig(loss="top1", epochs=1, batch_size=8))
    plus = compare.config_for("gru4rec+", cfg).train
    assert (plus.loss, plus.n_negatives, plus.sample_alpha, plus.score_reg, plus.activation,
            plus.elu_alpha) == ("bpr-max", 2048, 0.5, 1.0, "elu", 0.5)
    assert (plus.batch_size, plus.epochs) == (8, 1)  # everything else: the configuration's
    assert compare.config_for("gru", cfg) == cfg and compare.config_for("pop", cfg) == cfg
    assert models.to_spec(compare.model_for("gru4rec+", prep, cfg)) == models.to_spec(
        compare.model_for("gru", prep, cfg))
    with pytest.raises(ConfigError, match="unknown setting"):
        models.register_model("x-bad", lambda ctx: None, train={"lossy": "top1"})
    with pytest.raises(ConfigError, match="loss"):
        models.register_model("x-bad", lambda ctx: None, train={"loss": "nope"})
    assert "x-bad" not in models.model_names()


def test_bpr_max_with_elu_and_shared_negatives_trains(prep):
    """fit with BPR-max, ELU scores and 256 shared negatives: the loss falls and the model ranks
    the test events above chance."""
    cfg = Config(train=TrainConfig(loss="bpr-max", activation="elu", n_negatives=256,
                                   sample_alpha=0.5, epochs=4, batch_size=8, window=5))
    model = compare.model_for("gru", prep, cfg)
    result = compare.fit_neural(model, prep, cfg)
    epoch_loss = [r["loss"] for r in result.records]
    assert np.all(np.isfinite(epoch_loss)) and epoch_loss[-1] < epoch_loss[0]
    ranks = compare.evaluate_neural(model, result.params, prep, cfg)
    assert np.mean(ranks <= 10) > 2 * 10 / prep.encoded.n_items


def test_compare_with_bpr_max_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "log.csv"
    synthetic.generate(n_users=40, n_items=50, seed=2).write_csv(path)
    out = tmp_path / "r.json"
    code = cli.main(["compare", str(path), "--json", str(out), "--loss", "bpr-max",
                     "--n-negatives", "2048", "--sample-alpha", "0.5", "--score-reg", "0.5",
                     "--activation", "elu", "--models", "gru,gru4rec+", "--min-item-support", "2",
                     "--hidden", "8", "--batch-size", "8", "--epochs", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    train = res["config"]["train"]
    assert (train["loss"], train["n_negatives"], train["sample_alpha"], train["score_reg"]) == (
        "bpr-max", 2048, 0.5, 0.5)
    assert set(res["models"]) == {"gru", "gru4rec+"}
    capsys.readouterr()
    assert cli.main(["compare", str(path), "--sample-alpha", "-1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "sample-alpha" in err
