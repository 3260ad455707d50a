"""Training: sparse rows vs dense updates, lazy momentum, vmapped seeds, scan_steps, fit."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
import pytest

from hrnn_jax import cells, data, models, training
from hrnn_jax.config import DataConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.data.lanes import make_lanes
from hrnn_jax.training import loop, optim
from tests.reference import random_log
from tests.tolerance import approx

H = 8
N_ITEMS = 20
B = 4
L = 3
# Compiling is what these tests spend their time on; XLA's backend optimisations buy nothing at
# these sizes. Only the test's own jits use this (fit's internal jit is left as it is).
FAST = {"xla_backend_optimization_level": 0}


def jit(f, **kw):
    return jax.jit(f, compiler_options=FAST, **kw)


def small_frame(seed=0, n_users=10):
    """Users with 1-4 sessions of 2-5 events over N_ITEMS items (encoded schema, sorted)."""
    return random_log(seed, n_users, N_ITEMS, session_len=(2, 6))


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def change(a, b):
    """Euclidean distance between two pytrees of the same structure."""
    return float(np.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(leaves(a), leaves(b)))))


def assert_tree_allclose(a, b, rtol=None, atol=None, msg=""):
    """Leaf-wise allclose; without tolerances, ``tests.tolerance.approx()`` (1e-5, 1e-6 in full
    float32). ``rtol=atol=0`` asserts exact equality."""
    if rtol is None:
        rtol, atol = approx()["rtol"], approx()["atol"]
    ta, tb = jax.tree_util.tree_structure(a), jax.tree_util.tree_structure(b)
    assert ta == tb, f"{msg}: tree structures differ"
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                                   err_msg=f"{msg} {jax.tree_util.keystr(path)}")


def gru_model():
    return models.SessionRNN(N_ITEMS, cells.GRU(H))


def hrnn_model(mode="init"):
    return models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H), mode=mode)


@pytest.fixture(scope="module")
def frame():
    return small_frame()


@pytest.fixture(scope="module")
def lanes(frame):
    lanes = make_lanes(frame, batch_size=B, window=L, targets="session", close_at="input",
                       seed=0)
    assert len(lanes) >= 5
    return lanes


def jitted_step(kind="gru", optimizer="adagrad", lr=0.1, momentum=0.0, loss="top1", n_negatives=0,
                clip=None, row_updates="sparse"):
    """``(init(key), jitted step, step)``, one per configuration, shared by the tests: compiling a
    train step is what costs time here. Sparse rows unless ``row_updates="dense"``."""
    return _jitted_step(kind, optimizer, lr, momentum, loss, n_negatives, clip, row_updates)


@functools.lru_cache(maxsize=None)
def _jitted_step(kind, optimizer, lr, momentum, loss, n_negatives, clip, row_updates):
    model = gru_model() if kind == "gru" else hrnn_model(kind)
    tx = optim.make_optimizer(optimizer, lr, momentum=momentum)
    cdf = training.popularity_cdf(small_frame(), N_ITEMS) if n_negatives else None
    step = training.make_train_step(model, tx, loss=loss, n_negatives=n_negatives,
                                    negative_cdf=cdf, clip=clip, row_updates=row_updates)
    assert step.row_updates == row_updates

    def init(key):
        return step.init_state(key, B)

    return init, jit(step), step


def hand_batch(items, targets):
    """A [B, L] batch of one session per lane, from explicit item/target grids."""
    item = np.asarray(items, np.int32)
    target = np.asarray(targets, np.int32)
    starts = np.zeros(item.shape, bool)
    starts[:, 0] = True
    return {"item": item, "target": target, "session_start": starts, "user_start": starts.copy(),
            "valid": item > 0, "user": np.tile(np.arange(item.shape[0], dtype=np.int32)[:, None],
                                                (1, item.shape[1])),
            "event": np.zeros(item.shape, np.int64), "evaluate": np.zeros(item.shape, bool)}


# ---------------------------------------------------------------------------------------------
# 1. sparse rows == dense for plain Adagrad
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_negatives", [0, 3])
def test_sparse_rows_equal_dense_plain_adagrad(lanes, n_negatives):
    init_s, step_s, _ = jitted_step(n_negatives=n_negatives, row_updates="sparse")
    init_d, step_d, _ = jitted_step(n_negatives=n_negatives, row_updates="dense")
    key = jax.random.PRNGKey(0)
    s_state, d_state = init_s(key), init_d(key)
    assert_tree_allclose(s_state.params, d_state.params, rtol=0, atol=0)
    start = d_state.params
    for w in range(5):
        rng = jax.random.PRNGKey(100 + w)
        s_state, s_m = step_s(s_state, lanes.window(w), rng)
        d_state, d_m = step_d(d_state, lanes.window(w), rng)
        np.testing.assert_allclose(s_m["loss"], d_m["loss"], rtol=1e-5)
        assert int(s_m["events"]) == int(d_m["events"]) > 0
        assert_tree_allclose(s_state.params, d_state.params, msg=f"step {w}")
        assert_tree_allclose(s_state.carry, d_state.carry, msg=f"carry step {w}")
    # training did something: every part moved
    for name in ("item_in", "item_out", "item_bias", "session"):
        assert change(start[name], d_state.params[name]) > 1e-4, name


@dataclasses.dataclass(frozen=True)
class UserShift(models.SessionRNN):
    """A session GRU plus a per-user vector added to its outputs: a user table updated by sparse
    rows (indexed by the batch's ``user``) and an L2 penalty on the rows in use as an extra loss
    term, the two extension points a user-based model needs."""

    n_users: int = 10  # small_frame's users
    l2: float = 0.0

    @property
    def capabilities(self):
        return dataclasses.replace(super().capabilities,
                                   row_tables={**models.ITEM_TABLES, "user_shift": "user"},
                                   n_users=self.n_users)

    def init(self, rng):
        params = super().init(rng)
        shift = jax.random.normal(jax.random.fold_in(rng, 7), (self.n_users, H)) * 0.1
        return {**params, "user_shift": shift}

    def apply(self, params, carry, batch, *, rng=None, train=False):
        carry, y, extra = super().apply(params, carry, batch, rng=rng, train=train)
        rows = params["user_shift"][batch["user"]]  # [B, L, H]
        return models.Output(carry, y + rows,
                             {**extra, "l2": self.l2 * (rows ** 2).sum() / rows.shape[0]})


def user_shift_steps(l2, row_updates):
    model = UserShift(N_ITEMS, cells.GRU(H), l2=l2)
    tx = optim.make_optimizer("adagrad", 0.1)
    return (lambda key: training.init_state(model, tx, key, B, row_updates=row_updates),
            jit(training.make_train_step(model, tx, row_updates=row_updates)))


def test_model_declared_row_tables_and_extra_loss_terms(lanes):
    """A model's own row table is updated by sparse rows exactly as densely (plain Adagrad), rows
    of users not in the batch stay as they were, and its extra loss term joins the gradient and
    the metrics without changing the reported ranking loss."""
    key = jax.random.PRNGKey(0)
    (init_s, step_s), (init_d, step_d) = (user_shift_steps(0.5, "sparse"),
                                          user_shift_steps(0.5, "dense"))
    init_0, step_0 = user_shift_steps(0.0, "sparse")
    s, d, z = init_s(key), init_d(key), init_0(key)
    assert "user_shift" in s.opt_state["rows"] and "user_shift" not in s.opt_state["dense"]
    assert not d.opt_state["rows"]  # the dense step updates every table densely
    batch = lanes.window(0)
    users = np.unique(batch["user"])
    s1, ms = step_s(s, batch, key)
    d1, md = step_d(d, batch, key)
    z1, mz = step_0(z, batch, key)
    assert_tree_allclose(s1.params, d1.params)
    np.testing.assert_allclose(ms["l2"], md["l2"], rtol=1e-6)
    assert float(ms["l2"]) > 0 and float(mz["l2"]) == 0.0
    np.testing.assert_allclose(ms["loss"], mz["loss"], rtol=1e-6)  # the same ranking loss
    moved = np.abs(np.asarray(s1.params["user_shift"] - z1.params["user_shift"])).max(axis=1)
    assert np.all(moved[users] > 0)  # the penalty reached the rows in use
    untouched = np.setdiff1d(np.arange(10), users)
    assert untouched.size
    np.testing.assert_array_equal(s1.params["user_shift"][untouched],
                                  s.params["user_shift"][untouched])


def test_row_update_equals_dense_update():
    tx = optim.make_optimizer("adagrad", 0.3, momentum=0.0)
    rng = np.random.default_rng(0)
    table = jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)
    ids = jnp.array([0, 2, 5, 8, 9], jnp.int32)  # 8, 9 (out of range): unique_rows' padding
    g_rows = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)  # padding gradients are ignored
    s_table, s_state = table, tx.init(table)
    d_table, d_state = table, tx.init(table)
    for it in range(3):
        g = g_rows * (it + 1)
        s_table, s_state = optim.row_update(tx, s_table, s_state, ids, g)
        dense_g = jnp.zeros_like(table).at[ids[:3]].add(g[:3])
        upd, d_state = tx.update(dense_g, d_state, d_table)
        d_table = optax.apply_updates(d_table, upd)
        np.testing.assert_allclose(s_table, d_table, rtol=1e-6, atol=1e-7)
        assert_tree_allclose(s_state, d_state, rtol=1e-6, atol=1e-7)
    # untouched rows are exactly the original ones; touched rows moved
    for r in (1, 3, 4, 6):
        np.testing.assert_array_equal(s_table[r], table[r])
    for r in (0, 2, 5):
        assert not np.allclose(s_table[r], table[r])


# ---------------------------------------------------------------------------------------------
# 2. momentum: the lazy variant
# ---------------------------------------------------------------------------------------------
def test_momentum_is_lazy_on_untouched_rows():
    mom = 0.5
    init_s, step_s, _ = jitted_step(momentum=mom, row_updates="sparse")
    init_d, step_d, _ = jitted_step(momentum=mom, row_updates="dense")
    # step 1 touches items 1..13; step 2 only items 14..20
    b1 = hand_batch([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]],
                    [[2, 3, 13], [5, 6, 1], [8, 9, 4], [11, 12, 7]])
    b2 = hand_batch([[14, 15, 16], [17, 18, 19], [20, 14, 15], [16, 17, 18]],
                    [[15, 16, 17], [18, 19, 20], [14, 15, 16], [17, 18, 19]])
    key = jax.random.PRNGKey(1)
    s0, d0 = init_s(key), init_d(key)
    s1, _ = step_s(s0, b1, jax.random.PRNGKey(2))
    d1, _ = step_d(d0, b1, jax.random.PRNGKey(2))
    # first step from zero momentum: identical
    assert_tree_allclose(s1.params, d1.params, msg="first step")
    s2, _ = step_s(s1, b2, jax.random.PRNGKey(3))
    d2, _ = step_d(d1, b2, jax.random.PRNGKey(3))
    r = 1  # touched by step 1 (input and target), not by step 2
    for table in ("item_in", "item_out"):
        moved1 = np.asarray(d1.params[table][r] - d0.params[table][r])
        assert np.abs(moved1).max() > 1e-4, table
        # sparse: row r unchanged by a step that does not touch it
        np.testing.assert_array_equal(s2.params[table][r], s1.params[table][r])
        # dense: row r moves by the momentum alone, momentum * (previous update)
        moved2 = np.asarray(d2.params[table][r] - d1.params[table][r])
        np.testing.assert_allclose(moved2, mom * moved1, rtol=1e-4, atol=1e-7)
    # rows touched by step 2 still agree between the two (their momentum was zero before)
    for table in ("item_in", "item_out"):
        np.testing.assert_allclose(s2.params[table][14:], d2.params[table][14:], rtol=1e-5,
                                   atol=1e-6)


# ---------------------------------------------------------------------------------------------
# 3. vmapped seeds
# ---------------------------------------------------------------------------------------------
def test_vmapped_seeds_match_single_seed_training(lanes):
    model = hrnn_model("init")
    tx = optim.make_optimizer("adagrad", 0.1, momentum=0.2)
    step = training.make_train_step(model, tx, row_updates="sparse")
    keys = jax.random.split(jax.random.PRNGKey(7), 4)
    states = jax.vmap(lambda r: step.init_state(r, B))(keys)
    vstep = jit(jax.vmap(step, in_axes=(0, None, 0)))
    single = jit(step)
    n_windows = 3
    # the windows close sessions (Eq. 3-4 on the closing slots) and start users mid-lane
    assert (lanes.session_start[:n_windows] & ~lanes.user_start[:n_windows]).sum() >= 3
    assert lanes.user_start[1:n_windows].any()
    step_keys = [jax.random.split(jax.random.PRNGKey(50 + w), 4) for w in range(n_windows)]
    v_losses = []
    for w in range(n_windows):
        states, m = vstep(states, lanes.window(w), step_keys[w])
        v_losses.append(np.asarray(m["loss"]))
    v_losses = np.stack(v_losses, axis=1)  # [seeds, windows]
    assert v_losses.shape == (4, n_windows)
    for s in range(4):
        state = training.init_state(model, tx, keys[s], B, row_updates="sparse")
        got = []
        for w in range(n_windows):
            state, m = single(state, lanes.window(w), step_keys[w][s])
            got.append(float(m["loss"]))
        np.testing.assert_allclose(v_losses[s], got, **approx(), err_msg=f"seed {s}")
        one = jax.tree_util.tree_map(lambda a: a[s], states.params)
        assert_tree_allclose(one, state.params, **approx(), msg=f"seed {s}")
    # the seeds really differ
    assert not np.allclose(v_losses[0], v_losses[1])


# ---------------------------------------------------------------------------------------------
# 4. scan_steps
# ---------------------------------------------------------------------------------------------
def test_scan_steps_inactive_steps_leave_state_unchanged(lanes):
    init, single, step = jitted_step(momentum=0.5)
    K, n_active = 4, 2
    batches = {k: v[:K] for k, v in lanes.window_arrays().items()}
    rngs = jax.random.split(jax.random.PRNGKey(3), K)
    active = np.arange(K) < n_active
    state0 = init(jax.random.PRNGKey(0))
    got, metrics = jit(training.scan_steps(step))(state0, batches, rngs, active)
    want, losses = state0, []
    for k in range(n_active):
        want, m = single(want, lanes.window(k), rngs[k])
        losses.append(float(m["loss"]))
    assert_tree_allclose(got, want, msg="state")
    assert int(got.step) == n_active
    np.testing.assert_allclose(np.asarray(metrics["loss"])[:n_active], losses, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(metrics["loss"])[n_active:], 0.0)
    np.testing.assert_array_equal(np.asarray(metrics["events"])[n_active:], 0)
    # and one more active step would have changed it
    more, _ = single(want, lanes.window(n_active), rngs[n_active])
    assert not np.allclose(more.params["item_in"], want.params["item_in"])


# ---------------------------------------------------------------------------------------------
# 5, 8. fit: loss decreases, early stopping, determinism
# ---------------------------------------------------------------------------------------------
FIT_KW = dict(epochs=4, batch_size=4, window=4, learning_rate=0.1, loss="top1")


def snapshot(params):
    """A host copy that survives the donation of the training state's buffers."""
    return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), params)


@pytest.fixture(scope="module")
def synth_train():
    raw = synthetic.generate(n_users=16, n_items=20, n_topics=4, sessions_per_user=(2, 4),
                             session_length=(2, 6), seed=0)
    prep = data.prepare(data.read_interactions(raw), DataConfig(min_item_support=1))
    return prep.train, prep.encoded.n_items


def fit_capturing(model, train, seed, values, **kw):
    """``fit`` with a ``validate`` that returns ``values`` in turn and records the params it saw."""
    seen = []

    def validate(params):
        seen.append(snapshot(params))
        return values[len(seen) - 1]

    result = training.fit(model, train, TrainConfig(**{**FIT_KW, "seed": seed, **kw}),
                          validate=validate, log=None)
    return result, seen


@pytest.fixture(scope="module")
def fitted(synth_train):
    train, n = synth_train
    model = models.SessionRNN(n, cells.GRU(H))
    # an improving validation score: never stops, the best epoch is the last
    result, seen = fit_capturing(model, train, 0, [0.1, 0.2, 0.3, 0.4], patience=1)
    return model, result, seen


def test_fit_lowers_training_loss(fitted):
    _, result, seen = fitted
    hist = [h["loss"] for h in result.records]
    assert [h["epoch"] for h in result.records] == [1, 2, 3, 4]
    assert all(np.isfinite(hist))
    assert hist[-1] < hist[0] - 0.01, hist
    assert len(seen) == 4
    assert_tree_allclose(result.params, seen[-1], rtol=0, atol=0, msg="best = last epoch")
    assert result.events_per_second > 0


def test_fit_rate_leaves_out_only_the_first_call(synth_train, monkeypatch):
    """With a clock that ticks once per reading and one call per epoch, every epoch is one tick
    long after its first call: the rate is the events after the first call per tick (it once
    counted from epoch 1's first call again at every epoch)."""
    train, n = synth_train
    ticks = iter(range(10**6))
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(ticks)))
    model = models.SessionRNN(n, cells.GRU(H))
    result = training.fit(model, train, TrainConfig(**FIT_KW), steps_per_call=1000, log=None)
    events = [h["events_per_second"] * h["seconds"] for h in result.records]
    assert len(events) == 4 and min(events) > 0
    assert result.events_per_second == pytest.approx(sum(events[1:]) / len(events))


def test_fit_early_stopping_returns_best_params(fitted, synth_train):
    train, _ = synth_train
    model, first, first_seen = fitted
    result, seen = fit_capturing(model, train, 1, [1.0, 0.5, 0.2, 0.1, 0.05], patience=1,
                                 epochs=5)
    assert len(seen) == 2 and len(result.records) == 2  # stopped after the first worse epoch
    assert [h["valid"] for h in result.records] == [1.0, 0.5]
    assert_tree_allclose(result.params, seen[0], rtol=0, atol=0, msg="best = epoch 1")
    # epoch 2 did change the parameters, so returning epoch 1's is a real choice
    assert change(seen[0], seen[1]) > 1e-3
    # 8. another seed gives other parameters after the same single epoch
    assert change(seen[0], first_seen[0]) > 1e-3


def test_fit_is_deterministic(fitted, synth_train):
    train, _ = synth_train
    model, first, first_seen = fitted
    again, again_seen = fit_capturing(model, train, 0, [0.1, 0.2, 0.3, 0.4], patience=1)
    assert [h["loss"] for h in again.records] == [h["loss"] for h in first.records]
    for a, b in zip(again_seen, first_seen):
        assert_tree_allclose(a, b, rtol=0, atol=0, msg="same seed")
    assert_tree_allclose(again.params, first.params, rtol=0, atol=0, msg="same seed")


# ---------------------------------------------------------------------------------------------
# 9. fit stops on a non-finite loss
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NaNInputRows(models.SessionRNN):
    """A session GRU whose initial input rows of ``nan_items`` are NaN."""

    nan_items: tuple[int, ...] = ()

    def init(self, rng):
        params = super().init(rng)
        rows = jnp.asarray(self.nan_items, jnp.int32)
        return {**params, "item_in": params["item_in"].at[rows].set(jnp.nan)}


def test_fit_raises_on_nan_params_at_epoch_1_step_1(synth_train):
    train, n = synth_train
    model = NaNInputRows(n, cells.GRU(H), nan_items=tuple(range(1, n + 1)))
    with pytest.raises(training.NonFiniteLossError,
                       match=r"not finite \(nan\) at epoch 1, step 1 of \d+;.*learning rate.*clip"
                       ) as info:
        training.fit(model, train, TrainConfig(**FIT_KW), log=None)
    assert (info.value.epoch, info.value.step) == (1, 1)
    assert isinstance(info.value, FloatingPointError)


@pytest.mark.parametrize("window, step, n_steps", [(1, 5, 6), (2, 3, 3)])
def test_fit_names_the_first_non_finite_step(window, step, n_steps):
    """Two users of 7 events in one session each (6 steps), in two lanes; item 5 (NaN input row)
    is the input of user 0's 5th step, so the loss is first NaN in window ceil(5 / window)."""
    train = pl.DataFrame({"user": [0] * 7 + [1] * 7, "item": list(range(1, 8)) + list(range(8, 15)),
                          "session": [0] * 7 + [1] * 7})
    model = NaNInputRows(N_ITEMS, cells.GRU(H), nan_items=(5,))
    with pytest.raises(training.NonFiniteLossError,
                       match=rf"at epoch 1, step {step} of {n_steps};") as info:
        training.fit(model, train, TrainConfig(epochs=2, batch_size=2, window=window), log=None)
    assert (info.value.epoch, info.value.step, info.value.n_steps) == (1, step, n_steps)


def test_check_finite_loss_skips_padding_and_empty_steps():
    losses = np.array([0.5, np.nan, 0.4, np.inf, np.nan, np.nan])
    events = np.array([3, 0, 2, 4, 2, 2])        # step 2 has no events: not checked
    active = np.array([1, 1, 1, 1, 1, 0], bool)  # step 6 is padding: not checked
    with pytest.raises(training.NonFiniteLossError,
                       match=r"\(inf\) at epoch 2, step 4 of 5;") as info:
        training.check_finite_loss(losses, events, active, epoch=2)
    assert (info.value.epoch, info.value.step, info.value.n_steps) == (2, 4, 5)
    training.check_finite_loss(losses[:3], events[:3], active[:3], epoch=1)  # no raise
    training.check_finite_loss(losses[4:], events[4:], [False, False], epoch=1)


# ---------------------------------------------------------------------------------------------
# 6. losses, optimisers, clipping
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss,optimizer,n_negatives", [
    ("top1", "adagrad", 0), ("bpr", "adagrad", 2), ("ce", "adagrad", 2), ("full-ce", "adagrad", 0),
    ("top1", "adam", 0)])
def test_each_loss_and_optimizer_trains(lanes, loss, optimizer, n_negatives):
    momentum = 0.5 if optimizer == "adagrad" else 0.0  # Adagrad with momentum, as the paper
    init, step, _ = jitted_step(optimizer=optimizer, momentum=momentum, loss=loss,
                                n_negatives=n_negatives)
    state = init(jax.random.PRNGKey(0))
    batch = lanes.window(0)
    new, m = step(state, batch, jax.random.PRNGKey(1))
    assert np.isfinite(float(m["loss"])) and float(m["loss"]) > 0
    assert int(m["events"]) == int((batch["target"] > 0).sum())
    for name in ("item_in", "item_out", "session"):
        assert change(state.params[name], new.params[name]) > 1e-4, name
    assert all(np.all(np.isfinite(x)) for x in leaves(new.params))
    assert int(new.step) == 1


def test_gradient_clipping_shrinks_the_update(lanes):
    # Adagrad's update g / sqrt(sum g^2 + eps) is scale-free only where g^2 >> eps = 1e-6: a
    # gradient clipped to norm 1e-3 is below that, so the parameters move much less.
    moves = {}
    for clip in (None, 1e-3):
        init, step, _ = jitted_step(clip=clip)
        state = init(jax.random.PRNGKey(0))
        s1, _ = step(state, lanes.window(0), jax.random.PRNGKey(1))
        s2, m = step(s1, lanes.window(1), jax.random.PRNGKey(2))
        assert np.isfinite(float(m["loss"]))
        moves[clip] = (change(state.params, s1.params), change(s1.params, s2.params))
    for k in range(2):
        assert 0 < moves[1e-3][k] < 0.5 * moves[None][k], moves


# ---------------------------------------------------------------------------------------------
# 7. bad arguments
# ---------------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors(frame):
    model = gru_model()
    tx = optim.make_optimizer("adagrad", 0.1)
    with pytest.raises(ValueError, match=r"loss must be one of 'top1'.*; got 'hinge'"):
        training.make_train_step(model, tx, loss="hinge")
    with pytest.raises(ValueError, match="negative_cdf"):
        training.make_train_step(model, tx, n_negatives=3)
    with pytest.raises(ValueError, match=r"optimizer must be one of 'adagrad', 'adam'; got 'sgd'"):
        optim.make_optimizer("sgd", 0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        optim.make_optimizer("adagrad", 0.0)
    with pytest.raises(ValueError, match="epochs: must be >= 1, got 0"):
        training.fit(model, frame, TrainConfig(epochs=0), log=None)
    with pytest.raises(ValueError, match="patience >= 1"):
        training.fit(model, frame, TrainConfig(epochs=1), validate=lambda p: 0.0, log=None)


def test_popularity_cdf(frame):
    cdf = training.popularity_cdf(frame, N_ITEMS)
    counts = np.bincount(frame["item"].to_numpy(), minlength=N_ITEMS + 1)
    assert cdf.shape == (N_ITEMS + 1,) and cdf[0] == 0.0
    np.testing.assert_allclose(np.diff(cdf), counts[1:] / counts.sum(), rtol=1e-5, atol=1e-7)
    assert cdf[-1] == pytest.approx(1.0)
    # inverse-CDF draws, as the train step makes them: real items only, by popularity
    u = np.random.default_rng(0).uniform(size=20_000).astype(np.float32)
    draws = np.searchsorted(cdf, u, side="right")
    assert draws.min() >= 1 and draws.max() <= N_ITEMS
    np.testing.assert_allclose(np.bincount(draws, minlength=N_ITEMS + 1)[1:] / len(u),
                               counts[1:] / counts.sum(), atol=0.01)
