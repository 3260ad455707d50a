"""NARM and STAMP (hrnn_jax.models.attention): the lanes' scores against a per-user NumPy loop of
the papers' equations (the history buffer across windows, its reset at a new user), causality,
a short training run, and their names in compare."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn_jax import compare, models, training
from hrnn_jax.config import ModelConfig, TrainConfig
from hrnn_jax.models.attention import NARM, STAMP
from tests import reference as ref
from tests.helpers import perturbed, run_lanes
from tests.tolerance import approx

N_ITEMS, D, H, T = 7, 4, 5, 3


def log(seed=1, n_users=6):
    return ref.random_log(seed, n_users, N_ITEMS)


def build(name):
    if name == "narm":
        return NARM(N_ITEMS, embed_dim=D, hidden=H, attention_history=T)
    return STAMP(N_ITEMS, embed_dim=D, attention_history=T)


def np_softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def narm_outputs(P, inputs, alphas=None):
    """NARM's y_t = B c_t for one user's input items, one step at a time (Li et al. Eq. 1-10),
    attending over the last T steps, the step itself included (each step's weights, oldest
    first, appended to ``alphas`` if given)."""
    a, h, hs, ys = P["attend"], np.zeros(H), [], []
    for item in inputs:
        h = ref.gru_call(P["session"], h, P["item_in"][item])  # (1-4)
        hs.append(h)
        past = np.array(hs[-T:])
        alpha = np_softmax(ref.sigmoid(h @ a["query"] + past @ a["key"]) @ a["v"])  # (7-8)
        if alphas is not None:
            alphas.append(alpha)
        c = np.concatenate([h, alpha @ past])  # (5, 6, 9)
        ys.append(c @ P["decoder"])  # (10)
    return ys


def stamp_outputs(P, inputs):
    """STAMP's y_t = h_s * h_t for one user's input items (Liu et al. Eq. 1-5, 8-9): m_s over the
    whole prefix, unnormalised attention over the last T items."""
    a, g, c, xs, ys = P["attend"], P["general"], P["current"], [], []
    for item in inputs:
        x = P["item_in"][item]
        xs.append(x)
        m_s = np.mean(xs, axis=0)  # (1)
        past = np.array(xs[-T:])
        alpha = ref.sigmoid(past @ a["item"] + x @ a["last"] + m_s @ a["mean"] + a["bias"]) @ a["v"]
        h_s = np.tanh((alpha @ past) @ g["kernel"] + g["bias"])  # (9), (2)
        h_t = np.tanh(x @ c["kernel"] + c["bias"])  # (3)
        ys.append(h_s * h_t)
    return ys


REFERENCES = {"narm": narm_outputs, "stamp": stamp_outputs}


@pytest.mark.parametrize("name", ["narm", "stamp"])
def test_scores_match_a_per_user_loop_of_the_equations(name):
    """3 lanes, windows of 4: users cross windows and share lanes, and some are longer than the
    history plus a window, so the buffer carries exactly the last T steps and is cleared at a
    new user. Scores are <y_t, e_i> for every item (the tied decoder)."""
    frame = log()
    m = build(name)
    params = perturbed(m.init(jax.random.PRNGKey(0)))
    got = run_lanes(m, params, frame)
    P = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params)
    user, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    assert max(np.bincount(user)) > T + 4  # the buffer matters
    table = np.asarray(m.scoring_params(params)["item_out"], np.float64)
    n = 0
    for u in np.unique(user):
        rows = np.flatnonzero(user == u)
        for row, y in zip(rows[1:], REFERENCES[name](P, items[rows[:-1]])):
            want = y @ P["item_in"].T
            np.testing.assert_allclose(got[row] @ table.T, want, **approx(1e-4, 1e-5),
                                       err_msg=f"row {row}")
            n += 1
    assert n == len(got) > 20


def test_narm_trace_gives_the_weights_of_the_equations_by_distance():
    """``song2019.narm_attention`` (Song et al.'s Fig. 6a NARM curve, read with ``NARM.trace``)
    against the weights of the per-user loop: the mean weight at each distance over the steps
    that see that far back, and the mean attended distance; lanes of windows of 4, so the
    buffer's keys count too."""
    from hrnn_jax.papers import song2019
    frame = log(seed=4)
    m = build("narm")
    params = perturbed(m.init(jax.random.PRNGKey(2)))
    by, attended = song2019.narm_attention(m, params, frame, batch_size=3, window=4)
    P = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params)
    user, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    w, n, dist, steps = np.zeros(T + 1), np.zeros(T + 1), 0.0, 0
    for u in np.unique(user):
        alphas = []
        narm_outputs(P, items[np.flatnonzero(user == u)[:-1]], alphas)
        for alpha in alphas:
            d = np.arange(len(alpha))[::-1]  # the last key is the step itself
            w[d] += alpha
            n[d] += 1
            dist += float(alpha @ d)
            steps += 1
    assert n[T - 1] > 0 and n[T] == 0  # some steps see the whole history, none beyond it
    np.testing.assert_allclose(by["narm"][:T], w[:T] / n[:T], rtol=1e-4)
    assert np.isnan(by["narm"][T])
    assert attended["narm"] == pytest.approx(dist / steps, rel=1e-4)


@pytest.mark.parametrize("name", ["narm", "stamp"])
def test_a_future_item_moves_no_earlier_output(name):
    """Changing the item of event k (an input from step k on) leaves every output of the steps
    before k unchanged, and moves the step that reads it."""
    frame = log(seed=2, n_users=4)
    m = build(name)
    params = perturbed(m.init(jax.random.PRNGKey(1)))
    user = frame["user"].to_numpy()
    rows = np.flatnonzero(user == user[0])
    assert len(rows) > 6
    k = int(rows[5])
    items = frame["item"].to_numpy().copy()
    y0 = run_lanes(m, params, frame)
    items[k] = items[k] % N_ITEMS + 1
    y1 = run_lanes(m, params, frame.with_columns(item=items))
    for row in range(rows[0] + 1, k + 1):  # steps whose input precedes event k
        np.testing.assert_array_equal(y1[row], y0[row])
    assert not np.allclose(y1[k + 1], y0[k + 1])


@pytest.mark.parametrize("name", ["narm", "stamp"])
def test_training_lowers_the_loss(name):
    cfg = TrainConfig(epochs=3, batch_size=4, window=4, optimizer="adam", learning_rate=0.05,
                      loss="full-ce")
    fit = training.fit(build(name), log(seed=3, n_users=12), cfg, targets="user", log=None)
    assert fit.records[-1]["loss"] < fit.records[0]["loss"]


def test_compare_builds_both_with_the_configs_sizes():
    cfg = ModelConfig(hidden=H, embed_dim=D, attention_history=T)
    narm, stamp = (models.build_model(n, N_ITEMS, cfg) for n in ("narm", "stamp"))
    assert narm == NARM(N_ITEMS, embed_dim=D, hidden=H, attention_history=T)
    assert stamp == STAMP(N_ITEMS, embed_dim=D, attention_history=T)
    assert models.build_model("stamp", N_ITEMS, ModelConfig(hidden=H)).embed_dim == H
    for name, m in (("narm", narm), ("stamp", stamp)):
        assert name in models.model_names() and name in compare.model_names()
        assert models.lane_targets(m, "last-session") == "user"
        params = m.init(jax.random.PRNGKey(0))
        p = m.scoring_params(params)
        assert p["item_out"] is params["item_in"] and not np.asarray(p["item_bias"]).any()
        assert m.capabilities.row_tables == {} and m.output_width == D
        batch = {"item": jnp.ones((2, 3), jnp.int32), "user_start": jnp.zeros((2, 3), bool),
                 "valid": jnp.ones((2, 3), bool)}
        carry, y, _ = jax.eval_shape(lambda: m.apply(params, m.init_carry(2), batch))
        assert y.shape == (2, 3, D)
