"""models.UserRNN (Donkers et al. 2017) over the user-based cells: scan against a per-user loop,
dropout, the user table's sparse rows and the user-side L2 term."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn_jax import cells, models, training
from hrnn_jax.cells import user_gru as user_cells
from hrnn_jax.data.lanes import make_lanes
from hrnn_jax.training import optim
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
    lanes = make_lanes(data, batch_size=B, window=4, targets="user", close_at="input", seed=1)
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
    batch = make_lanes(frame(), batch_size=B, window=5, targets="user",
                       close_at="input").window(0)
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
    # l2: 0.3 * the mean squared norm of the valid steps' user vectors (not the cell's kernel)
    valid = batch["valid"]
    users = np.asarray(params["user_in"])[batch["user"][valid]]
    want = 0.3 * (users ** 2).sum(1).mean()
    np.testing.assert_allclose(extra["l2_user"], want, rtol=1e-5)
    np.testing.assert_allclose(extra_t["l2_user"], want, rtol=1e-5)  # of the vectors, not masked


ROWS = {True: "sparse", False: "dense"}  # row_updates of the sparse-row and the dense step


def test_user_table_is_updated_by_sparse_rows():
    """Full-softmax CE with plain Adagrad: the sparse path (item and user rows) equals the dense
    one, and the rows of users not in the window are left exactly as they were."""
    model = make("rectified")
    tx = optim.make_optimizer("adagrad", 0.1)
    lanes = make_lanes(frame(), batch_size=B, window=4, targets="user", close_at="input",
                       seed=0)
    states, steps = {}, {}
    for sparse in (True, False):
        step = training.make_train_step(model, tx, loss="full-ce", row_updates=ROWS[sparse])
        states[sparse] = step.init_state(jax.random.PRNGKey(0), B)
        steps[sparse] = jax.jit(step)
    assert set(states[True].opt_state["rows"]) == {"item_in", "user_in"}
    metrics = sparse_equals_dense(states, steps, lanes.window(0),
                                  ("item_in", "user_in", "item_out", "cell"))
    assert float(metrics["l2_user"]) > 0


def sparse_equals_dense(states, steps, batch, names):
    """One step of the sparse-row and the dense train step: equal parameters; the user table's
    rows change for the window's users only. Returns the sparse step's metrics."""
    before = np.asarray(states[True].params["user_in"])
    metrics = {}
    for sparse in (True, False):
        states[sparse], metrics[sparse] = steps[sparse](states[sparse], batch,
                                                        jax.random.PRNGKey(5))
    for name in names:
        for a, b in zip(jax.tree_util.tree_leaves(states[True].params[name]),
                        jax.tree_util.tree_leaves(states[False].params[name])):
            np.testing.assert_allclose(a, b, **approx(1e-5, 1e-6), err_msg=name)
    after = np.asarray(states[True].params["user_in"])
    in_window = np.unique(batch["user"][batch["valid"]])
    others = np.setdiff1d(np.arange(N_USERS), np.unique(batch["user"]))
    assert others.size and np.all(np.abs(after[in_window] - before[in_window]).max(1) > 0)
    np.testing.assert_array_equal(after[others], before[others])
    return metrics[True]


def standard(**kw):
    return models.UserRNN(N_ITEMS, N_USERS, user_cells.StandardUserGRU(H, item_features=H), **kw)


def test_standard_gru_matches_numpy_reference():
    """``UserRNN`` with the paper's standard GRU (``user-gru-none``): each output equals the
    NumPy reference of Eq. 3-5 without the user term over the user's own sequence; no user
    table, no L2 term."""
    model = standard()
    params = model.init(jax.random.PRNGKey(0))
    assert set(params) == {"item_in", "item_out", "item_bias", "cell"}
    assert "user_in" not in model.capabilities.row_tables
    data = frame()
    lanes = make_lanes(data, batch_size=B, window=4, targets="user", close_at="input", seed=1)
    apply = jax.jit(model.apply)
    carry, got = model.init_carry(B), {}
    for batch in lanes:
        carry, y, extra = apply(params, carry, batch)
        assert extra == {}
        for b, t in zip(*np.nonzero(batch["valid"])):
            got[int(batch["event"][b, t])] = np.asarray(y)[b, t]
    want = {}
    for steps in ref.user_steps(data, "user").values():
        want.update(ref.run_standard_user_gru(params, steps))
    assert got.keys() == want.keys()
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(2e-5, 2e-6), err_msg=f"row {row}")


def linear_and_standard():
    """The linear model with a zero user table and the standard GRU with its shared parameters:
    ``(linear, standard, params of linear (zero users), params of standard, params of linear
    as initialised)``."""
    linear, none = make("linear"), standard()
    p_lin = linear.init(jax.random.PRNGKey(4))
    p_none = none.init(jax.random.PRNGKey(4))
    for name in ("item_in", "item_out", "item_bias"):  # the same draws for the shared tables
        np.testing.assert_array_equal(p_lin[name], p_none[name])
    p_none = {**p_none, "cell": {k: p_lin["cell"][k] for k in ("hidden", "candidate", "item")}}
    zero = {**p_lin, "user_in": jnp.zeros_like(p_lin["user_in"])}
    return linear, none, zero, p_none, p_lin


def test_standard_gru_is_the_linear_model_without_its_user():
    """The standard GRU equals the linear user-based model whose user vectors are zero, in
    training (the same item dropout; no L2 term left) as in evaluation; with the user table as
    initialised the linear model differs."""
    linear, none, zero, p_none, p_lin = linear_and_standard()
    batch = make_lanes(frame(), batch_size=B, window=5, targets="user",
                       close_at="input").window(0)
    carry = linear.init_carry(B)
    for kw in ({}, {"rng": jax.random.PRNGKey(2), "train": True}):
        out_lin, out_none = linear.apply(zero, carry, batch, **kw), none.apply(p_none, carry,
                                                                              batch, **kw)
        np.testing.assert_allclose(out_lin.y, out_none.y, **approx(1e-6, 1e-7))
        assert float(out_lin.extra["l2_user"]) == 0.0 and out_none.extra == {}
    assert np.abs(np.asarray(linear.apply(p_lin, carry, batch).y - out_none.y)).max() > 1e-4


@pytest.mark.slow
def test_standard_gru_gradients_are_the_linear_models_without_its_user():
    """... and the gradient of every shared parameter is the same (training mode)."""
    linear, none, zero, p_none, _ = linear_and_standard()
    batch = make_lanes(frame(), batch_size=B, window=5, targets="user",
                       close_at="input").window(0)
    carry = linear.init_carry(B)
    w = jax.random.normal(jax.random.PRNGKey(3), (B, 5, H))

    def grad(model, p):
        def loss(p):
            out = model.apply(p, carry, batch, rng=jax.random.PRNGKey(2), train=True)
            return (out.y * w).sum() + sum(out.extra.values())
        return jax.grad(loss)(p)

    g_lin, g_none = grad(linear, zero), grad(none, p_none)
    for name in ("item_in", "item_out", "item_bias"):
        np.testing.assert_allclose(g_lin[name], g_none[name], **approx(1e-5, 1e-6))
    for name in ("hidden", "candidate", "item"):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, **approx(1e-5, 1e-6)),
                               g_lin["cell"][name], g_none["cell"][name])
    assert np.abs(np.asarray(g_none["cell"]["candidate"])).max() > 1e-4


def test_standard_gru_is_registered_with_the_papers_settings():
    model = models.build_model("user-gru-none", N_ITEMS, n_users=N_USERS)
    assert isinstance(model.cell, user_cells.StandardUserGRU)
    assert model.dropout_item == 0.2  # keep 0.8 on the item vector, as the user-based GRUs
    assert model.item_dim == model.hidden  # Table 1: embeddings as wide as the state
    params = model.init(jax.random.PRNGKey(0))
    for path, a in jax.tree_util.tree_flatten_with_path(params)[0]:
        assert 0.09 < np.abs(np.asarray(a)).max() <= 0.1, jax.tree_util.keystr(path)  # U(-.1,.1)
    with pytest.raises(ValueError, match="n_users"):
        models.build_model("user-gru-none", N_ITEMS)
    with pytest.raises(ValueError, match="takes no user input"):
        models.HRNN(N_ITEMS, user_cells.StandardUserGRU(H, item_features=H),
                    user_cell=cells.GRU(H))


def test_needs_a_user_cell():
    with pytest.raises(ValueError, match="user-based cell"):
        models.UserRNN(N_ITEMS, N_USERS, cells.GRU(H))
    assert isinstance(make("attentional"), models.Model)


# ---------------------------------------------------------------------------------------------
# models.HRNN with a user-based session cell: the user vector from the user table or from the
# user-level state c (Quadrana et al.'s hierarchy around Donkers et al.'s cells)

SOURCES = ("state", "table")
# (session cell, user cell width U): the user vector is U wide; the linear cell takes any widths
HRNN_CELLS = {
    "linear": lambda: (user_cells.LinearUserGRU(H, item_features=H), H),
    "rectified": lambda: (user_cells.RectifiedUserGRU(H, item_features=H), H),
    "attentional": lambda: (user_cells.AttentionalUserGRU(H, item_features=H), H),
    "linear-widths": lambda: (user_cells.LinearUserGRU(H, item_features=4), H + 2),
}


def make_hrnn(kind, source, **kw):
    cell, U = HRNN_CELLS[kind]()
    if source == "table":
        kw["n_users"] = N_USERS
    return models.HRNN(N_ITEMS, cell, user_cell=cells.GRU(U), user_vector=source, **kw)


def hrnn_frame(seed=0):
    """Users with 1-4 sessions of 1-5 events (sessions of one event give no step)."""
    return ref.random_log(seed, N_USERS, N_ITEMS, session_len=(1, 6))


def perturbed(params):
    """Non-zero biases, b_init and attention weights (which start at zero)."""
    return jax.tree_util.tree_map(
        lambda a: a + 0.05 * jnp.sin(jnp.arange(a.size)).reshape(a.shape), params)


def hrnn_outputs(model, params, lanes, apply=None):
    """{target row: y} over all windows, the carry crossing them (``apply``: jitted once)."""
    apply = apply or jax.jit(model.apply)
    carry, got = model.init_carry(B), {}
    for batch in lanes:
        carry, y, extra = apply(params, carry, batch)
        assert extra == {}
        y = np.asarray(y)
        for b, t in zip(*np.nonzero(batch["valid"])):
            got[int(batch["event"][b, t])] = y[b, t]
    return got


def first_session_rows(data):
    """Target rows (session targets) that lie in their user's first session."""
    user, session = data["user"].to_numpy(), data["session"].to_numpy()
    first = {}
    for u, s in zip(user, session):
        first.setdefault(int(u), int(s))
    return {row for row in range(len(user)) if session[row] == first[int(user[row])]}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", list(HRNN_CELLS))
def test_hrnn_user_cell_matches_per_user_loop(kind, source):
    """Windows of 4 with hold steps (one boundary slot), several sessions a user: each output
    equals the loop of ``ref.run_user_based`` (Eq. 3 at a session end, Eq. 4, then the whole cell
    ``cell.apply(p, h, [E_i i, v])`` step by step), v the user's table row or c."""
    model = make_hrnn(kind, source)
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    data = hrnn_frame()
    lanes = models.lanes_for(model, data, batch_size=B, window=4, targets="session", seed=1,
                             boundary_slots=1)
    assert len(lanes) >= 3
    got = hrnn_outputs(model, params, lanes)
    p = {"params": params["session"]}
    call = jax.jit(lambda h, x: model.session_cell.apply(p, h, x)[0])
    want, steps = {}, ref.user_steps(data)
    assert max(len({s for _, _, s, _ in st}) for st in steps.values()) >= 3
    for user, st in steps.items():
        row = params["user_in"][user] if source == "table" else None
        want.update(ref.run_user_based(params, st, call, source, row))
    assert got.keys() == want.keys()
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(2e-5, 2e-6), err_msg=f"row {row}")


def test_hrnn_table_row_changes_only_its_users_outputs():
    """``user_vector="table"``: every step of user u sees row u, and only u's steps do."""
    model = make_hrnn("attentional", "table")
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    data = hrnn_frame()
    lanes = models.lanes_for(model, data, batch_size=B, window=4, targets="session", seed=1)
    user = data["user"].to_numpy()
    apply = jax.jit(model.apply)
    base = hrnn_outputs(model, params, lanes, apply)
    u = 4  # 9 steps in 3 sessions
    other = hrnn_outputs(model, {**params, "user_in": params["user_in"].at[u].add(0.5)}, lanes,
                         apply)
    assert sum(user[row] == u for row in base) >= 3
    for row in base:
        if user[row] == u:
            assert np.abs(other[row] - base[row]).max() > 1e-4, row
        else:
            np.testing.assert_array_equal(other[row], base[row], err_msg=f"row {row}")


@pytest.mark.parametrize("source", SOURCES)
def test_hrnn_user_cell_params_reach_only_later_sessions(source):
    """Changing the user-level GRU changes every output from a user's second session on and none
    of the first session's (c_{u,0} = 0 there). With ``"state"`` and W_init = 0 (Eq. 4 then
    ignores c) it does so through the user vector alone; with ``"table"`` through Eq. 4 alone."""
    model = make_hrnn("rectified", source)
    params = perturbed(model.init(jax.random.PRNGKey(0)))
    if source == "state":
        params["init"] = {**params["init"], "kernel": jnp.zeros_like(params["init"]["kernel"])}
    data = hrnn_frame()
    lanes = models.lanes_for(model, data, batch_size=B, window=4, targets="session", seed=1,
                             boundary_slots=1)
    apply = jax.jit(model.apply)
    base = hrnn_outputs(model, params, lanes, apply)
    user = jax.tree_util.tree_map(lambda a: 1.5 * a + 0.1, params["user"])
    other = hrnn_outputs(model, {**params, "user": user}, lanes, apply)
    first = first_session_rows(data)
    assert 0 < len(first & base.keys()) < len(base)
    for row in base:
        if row in first:
            np.testing.assert_array_equal(other[row], base[row], err_msg=f"row {row}")
        else:
            assert np.abs(other[row] - base[row]).max() > 1e-5, row


@pytest.mark.parametrize("source", SOURCES)
def test_hrnn_user_cell_trains(source):
    """A few epochs of ``training.fit`` (with dropout on c, Eq. 4 and the outputs) run and lower
    the loss."""
    from hrnn_jax.config import TrainConfig

    model = make_hrnn("linear", source, dropout_user=0.2, dropout_init=0.2, dropout_session=0.1)
    data = ref.random_log(3, N_USERS, N_ITEMS, session_len=(2, 7))
    result = training.fit(model, data, TrainConfig(epochs=8, batch_size=B, window=4,
                                                   loss="full-ce", learning_rate=0.2), log=None)
    loss = [h["loss"] for h in result.records]
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.95 * loss[0], loss


@pytest.mark.slow  # test budget: the sparse user rows of UserRNN are checked in the default run
def test_hrnn_user_table_is_updated_by_sparse_rows():
    """``user_vector="table"`` declares ``user_in`` a row table by ``user``: with Adagrad the
    sparse step equals the dense one, and the rows of users not in the window stay exactly."""
    model = make_hrnn("linear", "table")
    assert model.capabilities.row_tables == {**models.ITEM_TABLES, "user_in": "user"}
    assert make_hrnn("linear", "state").capabilities.row_tables == models.ITEM_TABLES
    tx = optim.make_optimizer("adagrad", 0.1)
    lanes = models.lanes_for(model, hrnn_frame(), batch_size=B, window=4, targets="session",
                             seed=0)
    states, steps = {}, {}
    for sparse in (True, False):
        step = training.make_train_step(model, tx, row_updates=ROWS[sparse])
        states[sparse] = step.init_state(jax.random.PRNGKey(0), B)
        steps[sparse] = jax.jit(step)
    assert set(states[True].opt_state["rows"]) == {"item_in", "user_in", "item_out", "item_bias"}
    sparse_equals_dense(states, steps, lanes.window(0),
                        ("item_in", "user_in", "item_out", "session", "user", "init"))


def test_hrnn_user_vector_options_are_checked():
    gru, lin = cells.GRU(H), user_cells.LinearUserGRU(H, item_features=H)
    def hrnn(cell, user_cell=gru, **kw):
        return models.HRNN(N_ITEMS, cell, user_cell=user_cell, **kw)

    bad = [
        (r"user_vector and n_users are options of a user-based session cell.*GRU has no user "
         "input", gru, dict(user_vector="table")),
        (r"user_vector and n_users are options of a user-based session cell.*GRU has no user "
         "input", gru, dict(n_users=N_USERS)),
        ("user_vector must be one of", lin, dict(user_vector="lookup")),
        ("needs n_users >= 1", lin, dict(user_vector="table")),
        ("with user_vector='state' the user vector is", lin, dict(n_users=N_USERS)),
        # mode='all' means user_vector='state' for a user cell (checked below): not the table
        (r"mode='all' feeds the user state c to LinearUserGRU.*user_vector='table' is an option "
         "of mode='init'", lin, dict(mode="all", user_vector="table", n_users=N_USERS)),
        (r"context_gates='rzn' chooses the gates that receive W_c c; LinearUserGRU takes c as "
         "its own user input", lin, dict(context_gates="rzn")),
        (r"as wide as its hidden state \(6\).*output, 7",
         user_cells.RectifiedUserGRU(H, item_features=4), dict(user_cell=cells.GRU(H + 1))),
        (r"needs item_features == features \(6\), got 4",
         user_cells.AttentionalUserGRU(H, item_features=4), {}),
        ("embeds items to its item_features", lin, dict(embed_dim=H + 1)),
    ]
    for match, cell, kw in bad:
        with pytest.raises(ValueError, match=match):
            hrnn(cell, **kw)
    with pytest.raises(ValueError, match="needs a user vector beside the item"):
        models.SessionRNN(N_ITEMS, lin).init(jax.random.PRNGKey(0))
    model = hrnn(user_cells.LinearUserGRU(H, item_features=4), user_cell=cells.GRU(H + 2))
    assert model.user_source == "state" and isinstance(model, models.Model)
    params = model.init(jax.random.PRNGKey(0))
    assert params["item_in"].shape == (N_ITEMS + 1, 4) and "user_in" not in params
    assert model.init_carry(B)["context"].shape == (B, H + 2)
    table = make_hrnn("rectified", "table")
    assert table.init(jax.random.PRNGKey(0))["user_in"].shape == (N_USERS, H)
    assert table.init_carry(B)["context"].shape == (B, 0)
    # mode='all' with a user cell: the user vector is c, so it is user_vector='state' (whose
    # outputs test_hrnn_user_cell_matches_per_user_loop checks): same parameters, carry and
    # outputs, with or without user_vector='state' spelled out
    state = hrnn(lin, user_vector="state")
    fresh = state.init(jax.random.PRNGKey(0))
    params = perturbed(fresh)
    data = hrnn_frame()
    lanes = models.lanes_for(state, data, batch_size=B, window=4, targets="session", seed=1,
                             boundary_slots=1)
    want = hrnn_outputs(state, params, lanes)
    for every in (hrnn(lin, mode="all"), hrnn(lin, mode="all", user_vector="state")):
        assert every.mode == "all" and every.user_source == "state"
        assert every.capabilities == state.capabilities
        init = every.init(jax.random.PRNGKey(0))
        assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(fresh)
        for a, b in zip(jax.tree_util.tree_leaves(init), jax.tree_util.tree_leaves(fresh)):
            np.testing.assert_array_equal(a, b)
        assert every.init_carry(B)["context"].shape == (B, H)
        got = hrnn_outputs(every, params, lanes)
        assert got.keys() == want.keys() and len(want) > 20
        for row in want:
            np.testing.assert_array_equal(got[row], want[row], err_msg=f"row {row}")
