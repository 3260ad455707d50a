"""Composition and training with any optax transformation: HRNN All with every session cell the
library ships and with a two-gate cell of one's own, built-from-parts models that save, load and
recommend, optimiser states that restore only into their own transformation, and the train step's
explicit row-sparse choice and its checks."""
from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from hrnn_jax import cells, checkpoint, data, models, training
from hrnn_jax.cells import Block, SplitCell
from hrnn_jax.config import Config, DataConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import predict
from hrnn_jax.trained import CheckpointError

N, H = 30, 6


class TwoGate(SplitCell):
    """A minimal gated unit written outside the library as a split cell: one gate f and a
    candidate n, h' = (1 - f) h + f n, f = sigmoid(xp_f + U_f h), n = tanh(xp_n + U_n (f h))."""

    features: int

    def setup(self):
        self.input = nn.Dense(2 * self.features)
        self.u_f = nn.Dense(self.features, use_bias=False)
        self.u_n = nn.Dense(self.features, use_bias=False)

    @property
    def projected_features(self) -> int:
        return 2 * self.features

    @property
    def blocks(self):
        H = self.features
        return Block("f", 0, H, "gate"), Block("n", H, H, "candidate")

    def project(self, x):
        return self.input(x)

    def step(self, h, xp):
        H = self.features
        f = jax.nn.sigmoid(xp[..., :H] + self.u_f(h))
        n = jnp.tanh(xp[..., H:] + self.u_n(f * h))
        h = (1.0 - f) * h + f * n
        return h, h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape[:-1] + (self.features,))


SESSION_CELLS = {
    "gru": lambda: cells.GRU(H),
    "lstm": lambda: nn.LSTMCell(H),
    "optimized-lstm": lambda: nn.OptimizedLSTMCell(H),
    "hcrnn-1": lambda: cells.HCRNNCell(H, context_dim=H, n_contexts=3, variant=1),
    "hcrnn-2": lambda: cells.HCRNNCell(H, context_dim=H, n_contexts=3, variant=2),
    "hcrnn-3": lambda: cells.HCRNNCell(H, context_dim=H, n_contexts=3, variant=3),
    "linear-user": lambda: cells.LinearUserGRU(H, item_features=H),
    "rectified-user": lambda: cells.RectifiedUserGRU(H, item_features=H),
    "attentional-user": lambda: cells.AttentionalUserGRU(H, item_features=H),
    "two-gate": lambda: TwoGate(H),
}


def hrnn_all(name, user_cell=None):
    cell = SESSION_CELLS[name]()
    embed = H if isinstance(cell, cells.HCRNNCell) else None
    return models.HRNN(N, cell, user_cell=user_cell or cells.GRU(H), mode="all", embed_dim=embed)


@pytest.mark.parametrize("name", sorted(SESSION_CELLS))
def test_hrnn_all_takes_every_session_cell(name):
    models.check_model(hrnn_all(name))


def _placed(model, g):
    """W_c c ``g`` placed on the model's gates and added to a zero step input."""
    x = jnp.zeros((1, model.session_cell.projected_features))
    return model._add_context(x, model._place_gates(g))


def test_w_c_c_goes_to_the_gates_each_cell_declares():
    g = jnp.arange(1.0, 1.0 + 2 * H)[None]  # W_c c for two gates of width H
    placed = _placed(hrnn_all("gru"), g)  # r, z | n
    np.testing.assert_array_equal(placed, jnp.concatenate([g, jnp.zeros((1, H))], -1))
    placed = _placed(hrnn_all("two-gate"), g[:, :H])  # f | n
    np.testing.assert_array_equal(placed, jnp.concatenate([g[:, :H], jnp.zeros((1, H))], -1))
    g3 = jnp.arange(1.0, 1.0 + 3 * H)[None]
    placed = _placed(hrnn_all("hcrnn-3"), g3)  # x | local, z, r | n | theta
    np.testing.assert_array_equal(placed[:, H:4 * H], g3)
    assert not placed[:, :H].any() and not placed[:, 4 * H:].any()
    rzn = models.HRNN(N, TwoGate(H), user_cell=cells.GRU(H), mode="all", context_gates="rzn")
    np.testing.assert_array_equal(_placed(rzn, g), g)


@pytest.fixture(scope="module")
def prep():
    raw = data.read_interactions(synthetic.generate(n_users=60, n_items=N, seed=5))
    return data.prepare(raw, DataConfig(min_item_support=1))


# HRNN with an HCRNN-3 session cell also trains and evaluates in the default run as hrnn-hcrnn-3
# (tests/test_song_experiment.py's tiny run)
@pytest.mark.parametrize("name", [pytest.param("hcrnn-3", marks=pytest.mark.slow), "two-gate"])
def test_hrnn_all_with_an_hcrnn_or_a_two_gate_cell_trains_and_evaluates(prep, name):
    cell = SESSION_CELLS[name]()
    embed = H if name == "hcrnn-3" else None
    model = models.HRNN(prep.encoded.n_items, cell, user_cell=cells.GRU(H), mode="all",
                        embed_dim=embed)
    config = TrainConfig(epochs=3, batch_size=10, window=5, learning_rate=0.2)
    result = training.fit(model, prep.train, config, log=None)
    losses = [r["loss"] for r in result.records]
    assert losses[-1] < losses[0]
    metrics = predict.evaluate_model(model, result.params, prep.stream, prep.rows, ks=(20,))
    assert 0 < metrics["recall@20"] <= 1


def test_hrnn_all_without_w_c_is_hrnn_init(prep):
    """With W_c = 0, HRNN All's steps are HRNN Init's: the gates path adds exactly W_c c."""
    init = models.HRNN(prep.encoded.n_items, TwoGate(H), user_cell=cells.GRU(H), mode="init")
    all_ = models.HRNN(prep.encoded.n_items, TwoGate(H), user_cell=cells.GRU(H), mode="all")
    params = all_.init(jax.random.PRNGKey(0))
    zero = {**params, "context": {"kernel": jnp.zeros_like(params["context"]["kernel"])}}
    plain = {k: v for k, v in params.items() if k != "context"}
    y0 = predict.states_at(init, plain, prep.stream, prep.rows.event, batch_size=7, window=4)
    y1 = predict.states_at(all_, zero, prep.stream, prep.rows.event, batch_size=7, window=4)
    y2 = predict.states_at(all_, params, prep.stream, prep.rows.event, batch_size=7, window=4)
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-6)
    assert np.abs(y2 - y0).max() > 1e-3


# ------------------------------------------------------------------------------------------
# Any optax transformation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_tx", [
    lambda: optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 0.02, 5, 50)),
    lambda: optax.MultiSteps(optax.adam(0.02), every_k_schedule=2),
    lambda: optax.inject_hyperparams(optax.sgd)(learning_rate=0.5),
], ids=["adamw-schedule", "multisteps", "inject-hyperparams"])
def test_fit_takes_any_optax_transformation(prep, make_tx):
    model = models.SessionRNN(prep.encoded.n_items, cells.GRU(H))
    config = TrainConfig(epochs=3, batch_size=10, window=5)
    result = training.fit(model, prep.train, config, optimizer=make_tx(), log=None)
    losses = [r["loss"] for r in result.records]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_row_updates_are_an_explicit_choice(prep):
    """Sparse rows equal the dense update for plain Adagrad, and differ (the lazy variant) with
    weight decay; the default is dense, and fit's "auto" picks sparse only where exact."""
    model = models.SessionRNN(prep.encoded.n_items, cells.GRU(H))
    lanes = models.lanes_for(model, prep.train, batch_size=8, window=5, seed=0)
    batches = [lanes.window(w) for w in range(4)]

    def run(tx, row_updates):
        step = training.make_train_step(model, tx, row_updates=row_updates)
        state = step.init_state(jax.random.PRNGKey(0), 8)
        for i, b in enumerate(batches):
            state, _ = jax.jit(step)(state, b, jax.random.PRNGKey(i))
        return state.params["item_in"]

    adagrad = optax.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-6)
    np.testing.assert_allclose(run(adagrad, "sparse"), run(adagrad, "dense"), rtol=0, atol=1e-6)
    adamw = optax.adamw(0.01, weight_decay=0.1)
    assert np.abs(run(adamw, "sparse") - run(adamw, "dense")).max() > 1e-4
    assert training.make_train_step(model, adamw).row_updates == "dense"
    assert training.row_updates_for(TrainConfig()) == "sparse"  # adagrad, no momentum
    assert training.row_updates_for(TrainConfig(momentum=0.5)) == "dense"
    assert training.row_updates_for(TrainConfig(), optimizer=adamw) == "dense"
    assert training.row_updates_for(TrainConfig(optimizer="adam", row_updates="sparse")) == \
        "sparse"


def test_a_state_of_another_step_or_batch_size_is_named(prep):
    model = models.SessionRNN(prep.encoded.n_items, cells.GRU(H))
    tx = optax.adagrad(0.1)
    batch = models.lanes_for(model, prep.train, batch_size=8, window=5).window(0)
    sparse = training.make_train_step(model, tx, row_updates="sparse")
    dense_state = training.make_train_step(model, tx).init_state(jax.random.PRNGKey(0), 8)
    with pytest.raises(ValueError, match="row_updates='sparse'.*init_state"):
        sparse(dense_state, batch, jax.random.PRNGKey(0))
    small = sparse.init_state(jax.random.PRNGKey(0), 4)
    with pytest.raises(ValueError, match="the batch has 8 lanes, the train state's carry 4"):
        sparse(small, batch, jax.random.PRNGKey(0))


# ------------------------------------------------------------------------------------------
# Built from parts: save, load, recommend; the optimiser state
# ------------------------------------------------------------------------------------------
def test_an_hrnn_of_flax_cells_saves_loads_resumes_and_recommends(prep, tmp_path):
    model = models.HRNN(prep.encoded.n_items, nn.OptimizedLSTMCell(H), user_cell=nn.MGUCell(H),
                        mode="all")
    config = Config(data=DataConfig(min_item_support=1),
                    train=TrainConfig(epochs=1, batch_size=10, window=5))
    tx = optax.adamw(1e-2)
    trained = checkpoint.train(prep, model, config, optimizer=tx, out=tmp_path / "m", log=None)
    loaded = checkpoint.load(tmp_path / "m")  # no optimizer: it recommends, cannot resume
    assert loaded.model == model and loaded.name == "HRNN"
    assert loaded.state.train_state.opt_state is None
    user = str(prep.encoded.user_ids[3])
    assert loaded.recommend(user, k=5, note=None).equals(trained.recommend(user, k=5, note=None))
    longer = Config(data=config.data, train=TrainConfig(epochs=2, batch_size=10, window=5))
    with pytest.raises(Exception, match="optimiser state was not restored"):
        checkpoint.train(prep, model, longer, out=tmp_path / "m", resume=loaded, log=None)
    with pytest.raises(CheckpointError, match="does not fit the optimizer given"):
        checkpoint.load(tmp_path / "m", optimizer=optax.adam(1e-2))  # adam's state is not adamw's
    resumable = checkpoint.load(tmp_path / "m", optimizer=tx)
    resumed = checkpoint.train(prep, model, longer, optimizer=tx, out=tmp_path / "m",
                               resume=resumable, log=None)
    straight = checkpoint.train(prep, model, longer, optimizer=tx, log=None)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(
        np.array_equal, resumed.params, straight.params))


def test_a_damaged_checkpoint_is_one_line_and_nothing_more(prep, tmp_path):
    model = models.SessionRNN(prep.encoded.n_items, cells.GRU(H))
    config = Config(data=DataConfig(min_item_support=1),
                    train=TrainConfig(epochs=1, batch_size=10, window=5))
    checkpoint.train(prep, model, config, out=tmp_path / "m", log=None)
    arrays = sorted(p for p in (tmp_path / "m").rglob("*") if p.is_file()
                    and "arrays" in p.parts and p.parent.name == "d" and p.stat().st_size > 1000)
    arrays[0].write_bytes(arrays[0].read_bytes()[:100])  # a truncated array file
    user = str(prep.encoded.user_ids[0])
    run = subprocess.run([sys.executable, "-m", "hrnn_jax", "recommend", str(tmp_path / "m"),
                          "--user", user], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("hrnn-jax: error: cannot read checkpoint")
