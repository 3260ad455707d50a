"""The model contract (hrnn_jax.models.contract): every registered model keeps it, the README's
extension points are the contract's, a broken model or cell is named in its error, ids outside a
model's tables are refused at the boundary, and a model of one's own registers and runs."""
from __future__ import annotations

import dataclasses
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from hrnn_jax import cells, checkpoint, compare, data, models, precision, training
from hrnn_jax.config import Config, DataConfig, ModelConfig, TrainConfig
from hrnn_jax.data import DataError, synthetic
from hrnn_jax.evaluation import predict
from hrnn_jax.models import attention_buffer
from tests import reference as ref

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_every_registered_model_keeps_the_contract():
    cfg = ModelConfig(hidden=4, contexts=3, attention_history=3)
    for name in models.model_names():
        model = models.build_model(name, 12, cfg, n_users=5)
        models.check_model(model)  # raises with what is wrong


def test_the_readme_lists_every_extension_point_of_the_contract():
    section = README.read_text().split("## The model contract", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\* `([a-z_]+)`", section, re.M))
    declared = {f.name for f in dataclasses.fields(models.Capabilities)}
    optional = {"capabilities", "scoring_params", "constraints", "predict_ratings"}
    required = {"n_items", "output_width", "init", "init_carry", "apply"}
    assert optional | required <= set(vars(models.Model)) | {"n_items"}
    assert listed == declared | optional | required


@pytest.mark.parametrize("broken, message", [
    ("not a model", "is not a hrnn_jax.models.Model"),
    ("two outputs", "must return Output"),
    ("narrow y", "expected \\[B, L, output_width\\]"),
    ("carry without lanes", "leading lane axis"),
])
def test_check_model_names_what_is_wrong(broken, message):
    base = models.SessionRNN(10, cells.GRU(4))

    @dataclasses.dataclass(frozen=True)
    class Broken(models.SessionRNN):
        def apply(self, params, carry, batch, *, rng=None, train=False):
            out = super().apply(params, carry, batch, rng=rng, train=train)
            if broken == "two outputs":
                return out.carry, out.y
            return out._replace(y=out.y[..., :2]) if broken == "narrow y" else out

        def init_carry(self, batch_size):
            carry = super().init_carry(batch_size)
            return carry[0] if broken == "carry without lanes" else carry

    model = object() if broken == "not a model" else Broken(base.n_items, base.session_cell)
    with pytest.raises((TypeError, ValueError), match=message):
        models.check_model(model)


class SwappedOutputs(nn.RNNCellBase):
    """A flax-convention cell that returns (y, carry) with an LSTM-like carry: broken."""

    features: int

    @nn.compact
    def __call__(self, carry, x):
        c, h = carry
        h = jnp.tanh(nn.Dense(self.features)(x) + h)
        return h, (c, h)

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        zeros = jnp.zeros(input_shape[:-1] + (self.features,))
        return zeros, zeros


def test_a_wrong_cell_is_named_with_the_expected_carry_and_width():
    with pytest.raises(ValueError, match=r"session_cell SwappedOutputs must return \(carry, y\)"):
        models.SessionRNN(10, SwappedOutputs(4), embed_dim=4).init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError,
                       match=r"user_cell _Narrow .* y \(2, 5\).* got \(\(2, 5\), \(2, 2\)\)"):
        # a user cell narrower than the model's W_init expects is caught by its width
        models.HRNN(10, cells.GRU(4), user_cell=_Narrow(5)).init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="session_cell HCRNNCell fails on an input of width 4"):
        # an HCRNN cell needs its context width as input, here 6
        models.SessionRNN(10, cells.HCRNNCell(4, context_dim=6), embed_dim=4).init(
            jax.random.PRNGKey(0))


class _Narrow(nn.GRUCell):
    """A GRU cell whose output is narrower than its declared features (broken)."""

    @nn.compact
    def __call__(self, carry, x):
        carry, y = super().__call__(carry, x)
        return carry, y[..., :2]


# ------------------------------------------------------------------------------------------
# Ids at the boundary
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def log():
    frame = ref.random_log(0, 6, 12)  # item codes 1..12
    return frame.with_columns(time=np.arange(frame.height, dtype=np.float64))


def test_item_ids_outside_the_table_are_refused_in_training(log):
    model = models.SessionRNN(8, cells.GRU(4))  # a table for items 1..8 only
    top = int(log["item"].max())
    with pytest.raises(DataError, match=f"item id {top}, outside the model's item table "
                                        r"\(codes 1..8\)"):
        training.fit(model, log, TrainConfig(epochs=1, batch_size=2, window=3), log=None)
    with pytest.raises(DataError, match=f"item id {top}"):
        models.lanes_for(model, log, batch_size=2, window=3)


def test_item_ids_outside_the_table_are_refused_in_evaluation(log):
    model = models.SessionRNN(8, cells.GRU(4))
    params = model.init(jax.random.PRNGKey(0))
    stream = data.combine(log.filter(log["session"] < 2), log.filter(log["session"] >= 2))
    rows = data.make_eval_rows(stream, "user")
    with pytest.raises(DataError, match="outside the model's item table"):
        predict.evaluate_model(model, params, stream, rows, targets="user")


def test_user_ids_outside_the_user_table_are_refused(log):
    n_users = int(log["user"].max())  # one row short
    model = models.UserRNN(12, n_users, cells.LinearUserGRU(4, item_features=4), user_dim=4)
    with pytest.raises(DataError, match=f"user id {n_users}, outside the model's user table "
                                        f"\\({n_users} rows"):
        training.fit(model, log, TrainConfig(epochs=1, batch_size=2, window=3), log=None)


# ------------------------------------------------------------------------------------------
# A model of one's own: registered, compared, saved and loaded
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunningMean(models.Model):
    """A model of the contract written outside the library: the running mean of the user's item
    embeddings, scored against an output table (no recurrent cell at all)."""

    n_items: int
    dim: int = 8

    @property
    def output_width(self) -> int:
        return self.dim

    @property
    def capabilities(self) -> models.Capabilities:
        return models.Capabilities(whole_sequence=True)

    def init(self, rng):
        k1, k2 = jax.random.split(rng)
        N1 = self.n_items + 1
        return {"item_in": 0.1 * jax.random.normal(k1, (N1, self.dim)),
                "item_out": 0.1 * jax.random.normal(k2, (N1, self.dim)),
                "item_bias": jnp.zeros((N1,))}

    def init_carry(self, batch_size: int):
        return jnp.zeros((batch_size, self.dim)), jnp.zeros((batch_size,))

    def apply(self, params, carry, batch, *, rng=None, train=False):
        e = precision.take_rows(params["item_in"], batch["item"])
        means, total, count = attention_buffer.prefix_means(*carry, e, batch)
        return models.Output((total, count), means, {})


@pytest.fixture(scope="module")
def prep():
    raw = data.read_interactions(synthetic.generate(n_users=40, n_items=30, seed=3))
    return data.prepare(raw, DataConfig(min_item_support=1))


def test_a_registered_model_of_ones_own_compares_saves_loads_and_recommends(prep, tmp_path):
    config = Config(train=TrainConfig(epochs=2, batch_size=8, window=5))
    models.register_model("running-mean", lambda ctx: RunningMean(ctx.n_items, dim=6))
    try:
        with pytest.raises(ValueError, match="registered already"):
            models.register_model("running-mean", lambda ctx: RunningMean(ctx.n_items))
        assert "running-mean" in compare.model_names()
        result = compare.compare(prep, ["pop", "running-mean"], config, log=None)
        assert result["running-mean"]["recall@20"] > result["pop"]["recall@20"] / 4
        trained = checkpoint.train(prep, "running-mean", config, out=tmp_path / "m", log=None)
    finally:
        models.registry._BUILDERS.pop("running-mean", None)
    assert "running-mean" not in models.model_names()
    loaded = checkpoint.load(tmp_path / "m")  # rebuilt from its spec: no registry needed
    assert loaded.model == RunningMean(prep.encoded.n_items, dim=6)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(
        np.array_equal, loaded.params, trained.params))
    user = str(prep.encoded.user_ids[0])
    assert loaded.recommend(user, k=4, note=None).equals(trained.recommend(user, k=4, note=None))
    assert loaded.evaluate(prep) == trained.evaluate(prep)


def test_train_lanes_choose_the_targets_a_session_model_learns():
    """``--train-lanes within-session``: GRU4Rec and HRNN learn within-session targets under
    leave-one-out too (evaluated on user lanes); whole-sequence models keep user lanes."""
    from hrnn_jax.config import ModelConfig

    gru = models.build_model("gru", 20, ModelConfig(hidden=4))
    concat = models.build_model("concat", 20, ModelConfig(hidden=4))
    assert models.lane_targets(gru, "leave-one-out") == "user"
    assert models.train_lane_targets(gru, "leave-one-out") == "user"
    assert models.train_lane_targets(gru, "leave-one-out", "within-session") == "session"
    assert models.train_lane_targets(concat, "leave-one-out", "within-session") == "user"
    assert models.train_lane_targets(gru, "last-session", "within-session") == "session"
    with pytest.raises(ValueError, match="train_lanes"):
        models.train_lane_targets(gru, "leave-one-out", "sessions")
