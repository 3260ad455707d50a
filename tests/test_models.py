"""Cells against NumPy equations; lane scans against a per-user Python loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from hrnn_jax import cells, models
from hrnn_jax.data.lanes import make_lanes
from hrnn_jax.training import losses
from tests import reference as ref
from tests.tolerance import approx

H = 6
N_ITEMS = 15


def small_frame(seed=0, n_users=7):
    """Users with 1-4 sessions of 1-5 events: several users per lane, users ending mid-window."""
    return ref.random_log(seed, n_users, N_ITEMS, session_len=(1, 6))


def test_gru_matches_numpy_and_flax_grucell():
    cell = cells.GRU(H)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    h = jax.random.normal(jax.random.PRNGKey(2), (3, H))
    p = cell.init(jax.random.PRNGKey(0), h, x)["params"]
    p = jax.tree_util.tree_map(lambda a: a + 0.1, p)  # non-zero biases
    new, y = cell.apply({"params": p}, h, x)
    want = np.stack([ref.gru_call(p, np.asarray(h[i]), np.asarray(x[i])) for i in range(3)])
    np.testing.assert_allclose(new, want, **approx())
    np.testing.assert_array_equal(new, y)
    # The same function as flax's GRUCell with the blocks of the fused kernels moved over.
    flax_cell = nn.GRUCell(H)
    fp = flax_cell.init(jax.random.PRNGKey(0), h, x)["params"]
    Wi, bi, Wh = p["input"]["kernel"], p["input"]["bias"], p["hidden"]["kernel"]
    for g, name in enumerate("rzn"):
        fp["i" + name] = {"kernel": Wi[:, g * H:(g + 1) * H], "bias": bi[g * H:(g + 1) * H]}
        fp["h" + name] = {"kernel": Wh[:, g * H:(g + 1) * H]}
    fp["hn"]["bias"] = p["b_hn"]
    flax_new, _ = flax_cell.apply({"params": fp}, h, x)
    np.testing.assert_allclose(new, flax_new, **approx())

    # The hand-written gradient of the gates (cells.gru_gates) equals autodiff through flax's
    # GRUCell: for the state, the input and every weight block, also under vmap (seeds).
    w = jax.random.normal(jax.random.PRNGKey(3), (3, H))
    ours = jax.grad(lambda p, h, x: (cell.apply({"params": p}, h, x)[0] * w).sum(),
                    argnums=(0, 1, 2))(p, h, x)
    theirs = jax.grad(lambda p, h, x: (flax_cell.apply({"params": p}, h, x)[0] * w).sum(),
                      argnums=(0, 1, 2))(fp, h, x)
    tol = approx()
    np.testing.assert_allclose(ours[1], theirs[1], **tol)
    np.testing.assert_allclose(ours[2], theirs[2], **tol)
    gp, fg = ours[0], theirs[0]
    for g, name in enumerate("rzn"):
        blk = slice(g * H, (g + 1) * H)
        np.testing.assert_allclose(gp["input"]["kernel"][:, blk], fg["i" + name]["kernel"], **tol)
        np.testing.assert_allclose(gp["input"]["bias"][blk], fg["i" + name]["bias"], **tol)
        np.testing.assert_allclose(gp["hidden"]["kernel"][:, blk], fg["h" + name]["kernel"],
                                   **tol)
    np.testing.assert_allclose(gp["b_hn"], fg["hn"]["bias"], **tol)
    assert np.abs(gp["hidden"]["kernel"]).max() > 1e-3  # the comparison is not between zeros
    seeds = jax.vmap(jax.grad(lambda p, h: (cell.apply({"params": p}, h, x)[0] * w).sum()),
                     in_axes=(None, 0))(p, jnp.stack([h, 2 * h]))
    again = jax.grad(lambda p: (cell.apply({"params": p}, 2 * h, x)[0] * w).sum())(p)
    np.testing.assert_allclose(seeds["b_hn"][1], again["b_hn"], **tol)
    np.testing.assert_allclose(seeds["hidden"]["kernel"][1], again["hidden"]["kernel"], **tol)


def test_lanes_layout():
    frame = small_frame()
    lanes = make_lanes(frame, batch_size=3, window=4, targets="session", close_at="input", seed=3,
                       boundary_slots=3)
    steps = ref.user_steps(frame)
    n_steps = sum(len(v) for v in steps.values())
    assert int(lanes.valid.sum()) == n_steps == lanes.n_events
    assert lanes.item.shape[1:] == (3, 4)
    # every step appears once, in time order within its lane
    ev = lanes.event[lanes.valid]
    assert sorted(ev.tolist()) == sorted(r for v in steps.values() for *_, r in v)
    flat = lambda a: a.transpose(1, 0, 2).reshape(3, -1)  # noqa: E731  [B, T]
    for b in range(3):
        e, us, ss, v = (flat(lanes.event)[b], flat(lanes.user_start)[b],
                        flat(lanes.session_start)[b], flat(lanes.valid)[b])
        e = e[v]
        # users are contiguous and start exactly at user_start; events increase within a user
        user = frame["user"].to_numpy()[e]
        assert np.all((np.diff(user) != 0) == us[v][1:])
        assert np.all(np.diff(e)[~us[v][1:]] > 0)
        assert np.all(ss[v] >= us[v])
        # padding only at the end of a lane when no cap applies
        assert np.all(np.diff(v.astype(int)) <= 0)
    # a new shuffle seed gives a different user order
    other = make_lanes(frame, batch_size=3, window=4, targets="session", close_at="input",
                       seed=4)
    assert not np.array_equal(other.user, lanes.user)


def test_lanes_of_a_frame_without_steps_are_padding():
    """Sessions of one event give no step under session targets: one window of padding, which a
    model runs through without changing its state."""
    frame = ref.random_log(0, 3, N_ITEMS, session_len=(1, 2))
    lanes = make_lanes(frame, batch_size=2, window=3, targets="session", close_at="input")
    assert len(lanes) == 1 and lanes.n_events == 0 and not lanes.valid.any()
    model = make_model("init")
    params = model.init(jax.random.PRNGKey(0))
    carry, _, _ = model.apply(params, model.init_carry(2), lanes.window(0))
    for a, b in zip(jax.tree_util.tree_leaves(carry),
                    jax.tree_util.tree_leaves(model.init_carry(2))):
        np.testing.assert_array_equal(a, b)


def make_model(kind, **options):
    if kind == "gru":
        return models.SessionRNN(N_ITEMS, cells.GRU(H))
    if kind == "concat":
        return models.SessionRNN(N_ITEMS, cells.GRU(H), reset="user")
    return models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H + 1), mode=kind, **options)


HRNN_OPTIONS = [({}), dict(context_gates="rzn"), dict(first_session="zero"),
                dict(context_gates="rzn", first_session="zero", context_grad="session")]


@pytest.mark.parametrize("kind,options", [("gru", {}), ("concat", {})]
                         + [("init", o) for o in HRNN_OPTIONS[::2]]
                         + [("all", o) for o in HRNN_OPTIONS])
def test_scan_matches_per_user_loop(kind, options):
    frame = small_frame()
    targets = "user" if kind == "concat" else "session"
    model = make_model(kind, **options)
    params = model.init(jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(
        lambda a: a + 0.05 * jnp.sin(jnp.arange(a.size)).reshape(a.shape), params)
    # boundary_slots=1 forces hold steps in the middle of lanes
    lanes = make_lanes(frame, batch_size=3, window=4, targets=targets, close_at="input", seed=1,
                       boundary_slots=1)
    assert len(lanes) >= 3  # several windows: the carry crosses windows
    apply = jax.jit(lambda p, c, b: model.apply(p, c, b)[:2])
    carry = model.init_carry(3)
    got = {}
    loss_got, loss_want = [], []
    for batch in lanes:
        carry, y = apply(params, carry, batch)
        y = np.asarray(y)
        for b, t in zip(*np.nonzero(batch["valid"])):
            got[int(batch["event"][b, t])] = y[b, t]
        loss_got.append(float(losses.full_cross_entropy(params, jnp.asarray(y), batch["target"])))
    want = {}
    for steps in ref.user_steps(frame, targets).values():
        want.update(ref.run_user(params, steps, kind, H,
                                 context_gates=options.get("context_gates", "rz"),
                                 first_session=options.get("first_session", "init")))
    assert got.keys() == want.keys()
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(2e-5, 2e-6), err_msg=f"row {row}")
    # losses from the reference states, laid out in the same windows
    for batch, value in zip(lanes, loss_got):
        yw = np.zeros(batch["item"].shape + (H,))
        for b, t in zip(*np.nonzero(batch["valid"])):
            yw[b, t] = want[int(batch["event"][b, t])]
        loss_want.append(float(losses.full_cross_entropy(params, jnp.asarray(yw), batch["target"])))
    np.testing.assert_allclose(loss_got, loss_want, **approx(1e-5, 0))


@pytest.mark.parametrize("kind", ["top1", "bpr", "ce", "bpr-max", "top1-max"])
def test_ranking_losses_match_loop(kind):
    rng = np.random.default_rng(0)
    B, L, S = 4, 3, 2
    target = rng.integers(0, 5, (B, L)).astype(np.int32)  # duplicates and padding on purpose
    target[0, 0] = 0
    negatives = np.array([2, 0], np.int32)
    scores = rng.normal(size=(B, L, B + S)).astype(np.float32)
    got = losses.ranking_loss(kind, jnp.asarray(scores), jnp.asarray(target),
                              jnp.asarray(negatives), score_reg=0.7)
    np.testing.assert_allclose(got, ref.ranking_loss(kind, scores, target, negatives, 0.7),
                               rtol=1e-5)


def test_candidate_scores_layout():
    params = {"item_out": jnp.arange(12.0).reshape(6, 2) / 10, "item_bias": jnp.arange(6.0)}
    y = jnp.ones((2, 3, 2))
    target = jnp.array([[1, 2, 3], [4, 5, 0]])
    neg = jnp.array([2])
    s = np.asarray(losses.candidate_scores(params, y, target, neg))
    out, bias = np.asarray(params["item_out"]), np.asarray(params["item_bias"])
    for b in range(2):
        for t in range(3):
            cands = [int(target[0, t]), int(target[1, t]), 2]
            np.testing.assert_allclose(s[b, t], [out[c].sum() + bias[c] for c in cands], rtol=1e-6)


def test_hrnn_accepts_flax_lstm_session_cell():
    frame = small_frame(seed=2)
    model = models.HRNN(N_ITEMS, nn.LSTMCell(H), user_cell=cells.GRU(H), mode="all")
    params = model.init(jax.random.PRNGKey(0))
    lanes = make_lanes(frame, batch_size=3, window=4, targets="session", close_at="input")
    carry, y, _ = model.apply(params, model.init_carry(3), lanes.window(0))
    assert y.shape == (3, 4, H) and np.all(np.isfinite(y))
    assert isinstance(carry["session"], tuple)


def test_hrnn_boundary_slots_match_every_lane_update():
    """Updating only the K listed closing lanes (with hold steps where more lanes close at once)
    gives the same states as updating every lane (no ``closing`` field: K = B)."""
    frame = small_frame(seed=5, n_users=40)
    model = make_model("all")
    params = model.init(jax.random.PRNGKey(3))
    lanes = make_lanes(frame, batch_size=16, window=5, targets="session", close_at="input",
                       seed=0, boundary_slots=2)
    assert lanes.closing.shape[-1] == 2
    holds = (~lanes.valid).sum() - (~make_lanes(frame, batch_size=16, window=5, targets="session",
                                                close_at="input", seed=0,
                                                boundary_slots=16).valid).sum()
    assert holds != 0  # the cap of 2 forced some lanes to wait
    closing = (lanes.session_start & ~lanes.user_start).sum(axis=1)  # [W, L]
    assert closing.max() <= 2
    apply = jax.jit(lambda p, c, b: model.apply(p, c, b)[:2])
    carry_a = carry_b = model.init_carry(16)
    for batch in lanes:
        carry_a, ya = apply(params, carry_a, batch)
        every = {k: v for k, v in batch.items() if k != "closing"}
        carry_b, yb = apply(params, carry_b, every)
        np.testing.assert_allclose(ya, yb, **approx())


def test_hrnn_options_are_checked():
    with pytest.raises(ValueError, match="context_gates must be one of 'rz', 'rzn'; got 'n'"):
        make_model("all", context_gates="n")
    with pytest.raises(ValueError, match="first_session"):
        make_model("init", first_session="tanh")
    with pytest.raises(ValueError, match="context_grad"):
        make_model("all", context_grad="never")
    with pytest.raises(ValueError, match="mode"):
        make_model("both")
    # "rz" leaves the candidate's input alone: W_c has two blocks instead of three
    p_rz = make_model("all").init(jax.random.PRNGKey(0))["context"]["kernel"]
    p_rzn = make_model("all", context_gates="rzn").init(jax.random.PRNGKey(0))["context"]["kernel"]
    assert p_rz.shape == (H + 1, 2 * H) and p_rzn.shape == (H + 1, 3 * H)


@pytest.mark.parametrize("context_grad", ["step", "session"])
def test_context_grad_reaches_w_c_from_every_step(context_grad):
    """With one-step windows, a step in the middle of a session (no session closes in the window)
    gives W_c a gradient with ``context_grad="step"`` (W_c c recomputed from the carried c, as
    hgru4rec computes it at every step) and none with ``"session"``."""
    frame = ref.random_log(3, 6, N_ITEMS, session_len=(4, 7))
    model = make_model("all", context_grad=context_grad)
    params = model.init(jax.random.PRNGKey(0))
    lanes = make_lanes(frame, batch_size=2, window=1, targets="session", close_at="input",
                       boundary_slots=2)
    apply = jax.jit(lambda p, c, b: model.apply(p, c, b)[:2])

    def loss(p, c, b):
        _, y, _ = model.apply(p, c, b)
        return losses.full_cross_entropy(p, y, b["target"])

    grad = jax.jit(jax.grad(loss))  # compiled once: the windows share their shapes
    carry = model.init_carry(2)
    checked = 0
    for batch in lanes:
        boundary = batch["session_start"].any()
        has_context = bool(np.abs(np.asarray(carry["context"])).max() > 0)
        if not boundary and has_context and batch["valid"].all():
            g = np.asarray(grad(params, carry, batch)["context"]["kernel"])
            if context_grad == "step":
                assert np.abs(g).max() > 1e-6
            else:
                assert np.abs(g).max() == 0.0
            checked += 1
        carry, _ = apply(params, carry, batch)
    assert checked >= 3


def test_hrnn_dropout_only_in_training():
    frame = small_frame(seed=6, n_users=12)
    lanes = make_lanes(frame, batch_size=4, window=6, targets="session", close_at="input")
    batch = lanes.window(1)
    plain = make_model("all")
    params = plain.init(jax.random.PRNGKey(0))
    carry = plain.init_carry(4)
    _, y_eval, _ = plain.apply(params, carry, batch)
    _, y_train, _ = plain.apply(params, carry, batch, rng=jax.random.PRNGKey(1), train=True)
    np.testing.assert_allclose(y_eval, y_train, rtol=1e-6)  # rates 0: training changes nothing
    drop = models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H + 1), mode="all",
                       dropout_user=0.5, dropout_init=0.5, dropout_session=0.5)
    _, y_drop, _ = drop.apply(params, carry, batch, rng=jax.random.PRNGKey(1), train=True)
    _, y_drop_eval, _ = drop.apply(params, carry, batch)
    np.testing.assert_allclose(y_drop_eval, y_eval, rtol=1e-6)  # no dropout at evaluation
    assert not np.allclose(y_drop, y_eval)
    assert np.mean(np.asarray(y_drop) == 0) > 0.3  # output dropout zeroes about half
