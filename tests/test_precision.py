"""The precision policy (hrnn_jax.precision): exact lane copies, deterministic row gradients,
no atomic scatter-add in a train step, the settings."""
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn_jax import cells, models, precision, training
from hrnn_jax.data.lanes import make_lanes
from hrnn_jax.training import losses, optim
from tests import reference as ref

N_ITEMS, H, B = 15, 6, 4


def nasty_floats(shape, seed=0):
    """float32 values whose low mantissa bits all matter (and a few tiny and huge ones)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * np.exp(rng.uniform(-20, 20, size=shape))
    x.flat[:3] = [1e-38, -3.4e38, 1.0 + 2.0**-23]
    return jnp.asarray(x, jnp.float32)


# ---------------------------------------------------------------------------------------------
# 1. exact lane copies
# ---------------------------------------------------------------------------------------------
def test_lane_copies_are_bit_exact():
    """Gathers and scatters: every value survives bit for bit, subnormals, inf and NaN included
    (a one-hot matrix product flushed the subnormal to zero on this CPU, and would spread the NaN
    of one lane to every row), whatever the matmul precision."""
    a = {"s": nasty_floats((5, 7)), "u": nasty_floats((5, 3), 1)}
    a["u"] = a["u"].at[4, 0].set(jnp.nan).at[1, 2].set(jnp.inf)
    idx = jnp.array([0, 3, 5])  # ascending closing lanes, then padding >= B = 5
    part = {"s": nasty_floats((3, 7), 2), "u": nasty_floats((3, 3), 3)}
    with jax.default_matmul_precision("bfloat16"):
        taken, put = jax.jit(lambda a, p: (precision.take_lanes(idx, a),
                                           precision.put_lanes(a, idx, p)))(a, part)
    for k in a:
        full = np.asarray(a[k])
        np.testing.assert_array_equal(taken[k][:2], full[[0, 3]])
        np.testing.assert_array_equal(taken[k][2], 0.0)  # padding reads zeros
        want = full.copy()
        want[[0, 3]] = np.asarray(part[k])[:2]
        np.testing.assert_array_equal(put[k], want)  # padding writes nothing
    assert np.asarray(taken["s"])[0, 0] == np.float32(1e-38)  # the subnormal


def test_hrnn_keeps_the_other_lanes_bit_for_bit():
    """A window in which some lanes close sessions leaves the user state and c of every other lane
    exactly as they were, even with values a product would round or spread."""
    frame = ref.random_log(4, 12, N_ITEMS, session_len=(2, 4))
    model = models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H), mode="all")
    params = model.init(jax.random.PRNGKey(0))
    lanes = make_lanes(frame, batch_size=B, window=3, targets="session", close_at="input",
                       boundary_slots=2)
    carry = {**model.init_carry(B), "user": nasty_floats((B, H)),
             "context": nasty_floats((B, H), 1)}
    for w in range(len(lanes)):
        batch = lanes.window(w)
        closing = (batch["session_start"] & ~batch["user_start"]).any(1)
        quiet = ~closing & ~batch["user_start"].any(1)
        if closing.any() and quiet.any():
            break
    else:
        raise AssertionError("no window with both closing and quiet lanes")
    # a NaN in a closing lane's user state stays in that lane (a product would spread it)
    carry["user"] = carry["user"].at[int(np.flatnonzero(closing)[0]), 0].set(jnp.nan)
    with jax.default_matmul_precision("bfloat16"):
        new, _, _ = jax.jit(model.apply)(params, carry, batch)
    for k in ("user", "context"):
        np.testing.assert_array_equal(np.asarray(new[k])[quiet], np.asarray(carry[k])[quiet])
        assert not np.array_equal(np.asarray(new[k])[closing], np.asarray(carry[k])[closing])


def test_every_product_of_a_model_follows_the_precision_setting():
    model = models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H), mode="all")
    params = model.init(jax.random.PRNGKey(0))
    batch = make_lanes(ref.random_log(0, 8, N_ITEMS), batch_size=B, window=3, targets="session",
                       close_at="input").window(0)
    for name, attr in (("high", "HIGH"), ("highest", "HIGHEST")):
        with precision.matmul_precision(name):
            text = jax.jit(model.apply).lower(params, model.init_carry(B), batch).as_text()
        dots = re.findall(r"dot_general.*precision = \[(\w+), (\w+)\]", text)
        assert len(dots) >= 3 and {p[0] for p in dots} == {attr}


# ---------------------------------------------------------------------------------------------
# 2. deterministic row gradients and unique rows
# ---------------------------------------------------------------------------------------------
def test_segment_sum_matches_a_loop():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 9, 200)
    ids[:5] = 12  # out of range: dropped
    data = rng.normal(size=(200, 2, 3)).astype(np.float32)
    # jitted: the same program as in a train step, compiled once (eagerly, each of its many
    # small ops would be compiled on its own)
    segment_sum = jax.jit(precision.segment_sum, static_argnums=2)
    got = np.asarray(segment_sum(jnp.asarray(data), jnp.asarray(ids), 10))
    want = np.zeros((10, 2, 3))
    for i, d in zip(ids, data):
        if i < 10:
            want[i] += d
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(got[9] == 0)  # an id without rows sums to exactly zero
    assert segment_sum(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32), 4).shape == (4, 3)


@pytest.mark.parametrize("num_segments", [10, 2**24])  # packed keys; too wide for them
def test_stable_order_is_a_stable_argsort_for_the_ids_in_range(num_segments):
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 10, 300).astype(np.int32)  # many ties: stability shows
    ids[:7] = [-4, -1, num_segments, num_segments + 3, -4, 2**31 - 1, -2**31]
    order, sid = jax.jit(precision.stable_order, static_argnums=1)(jnp.asarray(ids), num_segments)
    want = np.argsort(ids, kind="stable")
    in_range = (ids[want] >= 0) & (ids[want] < num_segments)
    # the rows in range at the positions and in the order of a stable argsort ...
    np.testing.assert_array_equal(np.asarray(order)[in_range], want[in_range])
    np.testing.assert_array_equal(np.asarray(sid)[in_range], ids[want][in_range])
    # ... the others before them (below the range, read as -1) or after them (num_segments)
    below, above = (ids < 0).sum(), (ids >= num_segments).sum()
    np.testing.assert_array_equal(np.asarray(sid)[:below], -1)
    np.testing.assert_array_equal(np.asarray(sid)[len(ids) - above:], num_segments)
    assert sorted(np.asarray(order).tolist()) == list(range(len(ids)))  # a permutation


@pytest.mark.parametrize("n", [40, 3000])  # every pair compared; a binary search
@pytest.mark.parametrize("side", ["left", "right"])
def test_search_sorted_is_searchsorted(n, side):
    rng = np.random.default_rng(4)
    a = np.sort(rng.integers(0, n // 2, n)).astype(np.int32)  # ties
    v = rng.integers(-3, n // 2 + 3, n).astype(np.int32)  # below, between and above
    got = jax.jit(precision.search_sorted, static_argnums=2)(jnp.asarray(a), jnp.asarray(v), side)
    np.testing.assert_array_equal(np.asarray(got), np.searchsorted(a, v, side=side))


def test_segment_sum_is_bit_for_bit_the_sums_of_a_stable_argsort():
    """The packed-key sort changes no bit of the sums: the reference sorts by a stable argsort
    and sums with the same segmented tree."""
    def reference(data, ids, num_segments):
        order = jnp.argsort(ids, stable=True)
        sid, x = ids[order], data[order]
        first = jnp.concatenate([jnp.ones((1,), bool), sid[1:] != sid[:-1]])
        sums, _ = jax.lax.associative_scan(
            lambda a, b: (jnp.where(b[1][:, None], b[0], a[0] + b[0]), a[1] | b[1]), (x, first))
        last = jnp.clip(jnp.searchsorted(sid, jnp.arange(num_segments), side="right") - 1, 0,
                        len(ids) - 1)
        return jnp.where((sid[last] == jnp.arange(num_segments))[:, None], sums[last], 0.0)
    rng = np.random.default_rng(3)
    ids = jnp.asarray(rng.integers(-2, 60, 2000), jnp.int32)
    scale = 10.0 ** rng.uniform(-3, 3, (2000, 1))
    data = jnp.asarray(rng.normal(size=(2000, 5)) * scale, jnp.float32)
    got = jax.jit(precision.segment_sum, static_argnums=2)(data, ids, 50)
    want = jax.jit(reference, static_argnums=2)(data, ids, 50)
    np.testing.assert_array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))


def test_take_rows_of_several_tables_is_take_rows_of_each_bit_for_bit():
    rng = np.random.default_rng(5)
    out = jnp.asarray(rng.normal(size=(30, 7)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(30,)), jnp.float32)
    ids = jnp.asarray(rng.integers(0, 30, (6, 9)))  # repeats: sums of several rows
    w, v = (jnp.asarray(rng.normal(size=s) * 10.0 ** rng.uniform(-3, 3, s), jnp.float32)
            for s in [(6, 9, 7), (6, 9)])

    def together(o, b):
        o_t, b_t = precision.take_rows_of((o, b), ids)
        return (o_t * w).sum() + (b_t * v).sum()

    def apart(o, b):
        return (precision.take_rows(o, ids) * w).sum() + (precision.take_rows(b, ids) * v).sum()
    got = jax.jit(jax.grad(together, argnums=(0, 1)))(out, bias)
    want = jax.jit(jax.grad(apart, argnums=(0, 1)))(out, bias)
    for g, h in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g).view(np.uint32), np.asarray(h).view(np.uint32))
    o_t, b_t = precision.take_rows_of((out, bias), ids)
    np.testing.assert_array_equal(o_t, out[ids])
    np.testing.assert_array_equal(b_t, bias[ids])


def test_take_rows_gradient_equals_autodiff_of_a_gather_without_scatter():
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.normal(size=(9, 4)), jnp.float32)
    ids = jnp.asarray(rng.integers(0, 9, (5, 6)))  # many repeats
    w = jnp.asarray(rng.normal(size=(5, 6, 4)), jnp.float32)
    f_ours = lambda t: (precision.take_rows(t, ids) * w).sum()  # noqa: E731
    f_plain = lambda t: (t[ids] * w).sum()  # noqa: E731
    np.testing.assert_array_equal(precision.take_rows(table, ids), table[ids])
    np.testing.assert_allclose(jax.jit(jax.grad(f_ours))(table), jax.grad(f_plain)(table),
                               rtol=1e-5, atol=1e-6)
    assert "scatter" not in jax.jit(jax.grad(f_ours)).lower(table).as_text()
    assert "scatter" in jax.jit(jax.grad(f_plain)).lower(table).as_text()  # what it replaces
    bias = jnp.arange(9.0)  # a 1-D table
    squares = jax.jit(jax.grad(lambda b: (precision.take_rows(b, ids) ** 2).sum()))
    np.testing.assert_allclose(squares(bias), jax.grad(lambda b: (b[ids] ** 2).sum())(bias))


def test_unique_rows():
    ids = jnp.array([[7, 2, 7], [0, 2, 5]])
    uniq, inv = precision.unique_rows(ids, 8)
    uniq, inv = np.asarray(uniq), np.asarray(inv)
    np.testing.assert_array_equal(uniq[:4], [0, 2, 5, 7])
    assert np.all(uniq[4:] > 8) and len(set(uniq.tolist())) == 6  # distinct, out of range
    assert np.all(np.diff(uniq) > 0)  # sorted
    np.testing.assert_array_equal(uniq[inv], np.asarray(ids))


# ---------------------------------------------------------------------------------------------
# 3. a train step has no scatter that needs atomics
# ---------------------------------------------------------------------------------------------
def scatter_ops(text: str):
    """(unique_indices, combiner) of every scatter in StableHLO text; combiner "add" when the
    scatter's region adds, else "set"."""
    out = []
    for m in re.finditer(r'"stablehlo\.scatter".*?unique_indices = (true|false)', text):
        region = text[m.end():m.end() + 400].split("})")[0]
        out.append((m.group(1) == "true", "add" if "stablehlo.add" in region else "set"))
    return out


@pytest.mark.parametrize("kind,loss,n_neg,row_updates", [
    ("gru", "top1", 0, "sparse"), ("all", "bpr", 3, "sparse"), ("init", "full-ce", 0, "sparse"),
    ("all", "top1", 0, "dense")])
def test_train_step_scatters_need_no_atomics(kind, loss, n_neg, row_updates):
    """Every scatter that adds declares distinct indices, so a GPU needs no atomics and the step
    is deterministic there by construction. The rest are sets (optimiser state rows)."""
    if kind == "gru":
        model = models.SessionRNN(N_ITEMS, cells.GRU(H))
    else:
        model = models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H), mode=kind,
                            dropout_user=0.1, dropout_init=0.1, dropout_session=0.1)
    tx = optim.make_optimizer("adagrad", 0.1, momentum=0.1)
    cdf = np.linspace(0, 1, N_ITEMS + 1).astype(np.float32) if n_neg else None
    step = training.make_train_step(model, tx, loss=loss, n_negatives=n_neg, negative_cdf=cdf,
                                    row_updates=row_updates, clip=1.0)
    state = step.init_state(jax.random.PRNGKey(0), B)
    batch = make_lanes(ref.random_log(0, 8, N_ITEMS), batch_size=B, window=3, targets="session",
                       close_at="input").window(0)
    ops = scatter_ops(jax.jit(step).lower(state, batch, jax.random.PRNGKey(1)).as_text())
    assert all(unique for unique, combiner in ops if combiner == "add"), ops
    if row_updates == "sparse":
        assert step.row_tables  # the step does update rows
        assert any(combiner == "add" for _, combiner in ops)  # the row updates were found


def test_scatter_ops_parser_sees_atomic_adds():
    text = jax.jit(jax.grad(lambda t: t[jnp.array([1, 1])].sum())).lower(jnp.ones(3)).as_text()
    assert scatter_ops(text) == [(False, "add")]


# ---------------------------------------------------------------------------------------------
# 4. settings
# ---------------------------------------------------------------------------------------------
def test_matmul_precision_setting():
    with pytest.raises(ValueError, match="matmul precision must be one of"):
        precision.matmul_precision("tf32")
    assert precision.current_matmul_precision() == "default"
    with precision.matmul_precision("highest"):
        assert precision.current_matmul_precision() == "highest"
    assert precision.current_matmul_precision() == "default"


def test_deterministic_mode_before_and_after_backend_start():
    code = (
        "import os; os.environ.pop('XLA_FLAGS', None)\n"
        "from hrnn_jax import precision\n"
        "precision.deterministic_mode(); precision.deterministic_mode()\n"
        "assert os.environ['XLA_FLAGS'].split() == ['--xla_gpu_deterministic_ops=true']\n"
        "assert precision.is_deterministic()\n"
        "import jax.numpy as jnp; jnp.ones(1).block_until_ready()\n"
        "os.environ['XLA_FLAGS'] = ''\n"
        "try:\n"
        "    precision.deterministic_mode()\n"
        "except RuntimeError as e:\n"
        "    print('late:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert ("late: deterministic_mode() must be called before the first JAX computation"
            in out.stdout)


def test_activation_option():
    scores = jnp.array([-3.0, 0.5, 40.0])
    np.testing.assert_array_equal(losses.activate("linear", scores), scores)
    np.testing.assert_allclose(losses.activate("tanh", scores), np.tanh(scores), rtol=1e-6)
    with pytest.raises(ValueError, match="activation must be one of 'linear', 'tanh'"):
        losses.activate("relu", scores)
