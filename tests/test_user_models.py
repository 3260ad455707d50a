"""models.UserRNN (Donkers et al. 2017) over the user-based cells: scan against a per-user loop,
dropout, the user table's sparse rows and the user-side L2 term."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn_jax import cells, models, optim, training, user_cells
from hrnn_jax.batching import make_lanes
from tests import reference as ref
from tests.tolerance import approx

N_ITEMS, N_USERS, H, B = 15, 7, 6, 3
CELLS = {"linear": user_cells.LinearUserGRU, "rectified": user_cells.RectifiedUserGRU,
         "attentional": user_cells.AttentionalUserGRU}


def make(kind, **kw):
    return models.UserRNN(N_ITEMS, N_USERS, CELLS[kind](H, item_features=H), user_dim=H, **kw)


def frame():
    return ref.random_log(2, N_USERS, N_ITEMS, session_len=(2, 6))


@pytest.mark.parametrize("kind", list(CELLS))
def test_scan_matches_per_user_loop(kind):
    """Lanes of several users a lane, windows of 4 carried across: each step's output equals the
    cell called step by step on ``[E_i i_t, E_v v]`` over the user's own sequence from zeros."""
    model = make(kind)
    params = model.init(jax.random.PRNGKey(0))
    data = frame()
    lanes = make_lanes(data, batch_size=B, window=4, targets="user", seed=1)
    assert len(lanes) >= 3
    apply = jax.jit(lambda p, c, b: model.apply(p, c, b)[:2])
    carry, got = model.init_carry(B), {}
    for batch in lanes:
        carry, y = apply(params, carry, batch)
        for b, t in zip(*np.nonzero(batch["valid"])):
            got[int(batch["event"][b, t])] = np.asarray(y)[b, t]
    want = {}
    p = {"params": params["cell"]}
    for user, steps in ref.user_steps(data, "user").items():
        h = jnp.zeros(H)
        for item, _, _, row in steps:
            x = jnp.concatenate([params["item_in"][item], params["user_in"][user]])
            h, _ = model.cell.apply(p, h, x)  # the cell's own __call__: project and step
            want[row] = np.asarray(h)
    assert got.keys() == want.keys()
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(2e-5, 2e-6), err_msg=f"row {row}")


def test_dropout_only_in_training_and_l2_term():
    model = make("linear", dropout_item=0.5, dropout_user=0.5, l2_user=0.3)
    params = model.init(jax.random.PRNGKey(0))
    batch = make_lanes(frame(), batch_size=B, window=5, targets="user").window(0)
    carry = model.init_carry(B)
    _, y_eval, extra = model.apply(params, carry, batch)
    _, y_eval2, _ = model.apply(params, carry, batch)
    _, y_train, extra_t = model.apply(params, carry, batch, rng=jax.random.PRNGKey(1), train=True)
    np.testing.assert_array_equal(y_eval, y_eval2)
    assert not np.allclose(y_eval, y_train)
    plain = models.UserRNN(N_ITEMS, N_USERS, model.cell, user_dim=H, dropout_item=0.0,
                           dropout_user=0.0)
    np.testing.assert_array_equal(plain.apply(params, carry, batch, rng=jax.random.PRNGKey(1),
                                              train=True)[1], y_eval)
    # l2: 0.3 * (mean squared norm of the valid steps' user vectors + |W_user|^2)
    valid = batch["valid"]
    users = np.asarray(params["user_in"])[batch["user"][valid]]
    want = 0.3 * ((users ** 2).sum(1).mean()
                  + (np.asarray(params["cell"]["user"]["kernel"]) ** 2).sum())
    np.testing.assert_allclose(extra["l2_user"], want, rtol=1e-5)
    np.testing.assert_allclose(extra_t["l2_user"], want, rtol=1e-5)  # of the vectors, not masked


def test_user_table_is_updated_by_sparse_rows():
    """Full-softmax CE with plain Adagrad: the sparse path (item and user rows) equals the dense
    one, and the rows of users not in the window are left exactly as they were."""
    model = make("rectified")
    tx = optim.make_optimizer("adagrad", 0.1)
    lanes = make_lanes(frame(), batch_size=B, window=4, targets="user", seed=0)
    states, steps = {}, {}
    for sparse in (True, False):
        states[sparse] = training.init_state(model, tx, jax.random.PRNGKey(0), B, loss="full-ce",
                                             sparse=sparse)
        steps[sparse] = jax.jit(training.make_train_step(model, tx, loss="full-ce",
                                                         sparse=sparse))
    assert set(states[True].opt_state["rows"]) == {"item_in", "user_in"}
    before = np.asarray(states[True].params["user_in"])
    batch = lanes.window(0)
    for sparse in (True, False):
        states[sparse], metrics = steps[sparse](states[sparse], batch, jax.random.PRNGKey(5))
        assert float(metrics["l2_user"]) > 0
    for name in ("item_in", "user_in", "item_out", "cell"):
        for a, b in zip(jax.tree_util.tree_leaves(states[True].params[name]),
                        jax.tree_util.tree_leaves(states[False].params[name])):
            np.testing.assert_allclose(a, b, **approx(1e-5, 1e-6), err_msg=name)
    after = np.asarray(states[True].params["user_in"])
    in_window = np.unique(batch["user"][batch["valid"]])
    others = np.setdiff1d(np.arange(N_USERS), np.unique(batch["user"]))
    assert others.size and np.all(np.abs(after[in_window] - before[in_window]).max(1) > 0)
    np.testing.assert_array_equal(after[others], before[others])


def test_needs_a_user_cell():
    with pytest.raises(ValueError, match="user-based cell"):
        models.UserRNN(N_ITEMS, N_USERS, cells.GRU(H))
    assert isinstance(make("attentional"), models.Model)
