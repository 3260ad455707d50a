"""User-based GRU cells (Donkers, Loepp, Ziegler 2017, Eq. 3-10) against NumPy references.

The references below are written from the paper's equations, in float64, one affine map per
term; gradients are checked against central differences of them.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn_jax import cells
from hrnn_jax.cells import user_gru as uc
from tests import reference
from tests.helpers import central_differences, to64
from tests.tolerance import approx

N = 4  # hidden units n
B = 3  # rows


# ----------------------------------------------------------------------------------------------
# NumPy references of the equations


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_gru(p, h, item_in, user_in):
    """Eq. 3-5 with the given item and user inputs (the user input possibly filtered, Eq. 6, or
    both weighted by xi, Eq. 9-10)."""
    n = h.shape[-1]
    Wh, U = p["hidden"][:, :2 * n], p["candidate"]
    Wi, b, Wv = p["item"]["kernel"], p["item"]["bias"], p["user"]["kernel"]
    a = h @ Wh + item_in @ Wi[:, :2 * n] + user_in @ Wv[:, :2 * n] + b[:2 * n]  # Eq. 3
    u, r = sigmoid(a[:, :n]), sigmoid(a[:, n:])
    k = np.tanh((r * h) @ U  # Eq. 4: r before the matrix
                + item_in @ Wi[:, 2 * n:] + user_in @ Wv[:, 2 * n:] + b[2 * n:])
    return (1.0 - u) * h + u * k  # Eq. 5


def ref_linear(p, h, x, ei):
    return ref_gru(p, h, x[:, :ei], x[:, ei:])


def ref_kappa(p, h, x):
    n = h.shape[-1]
    T = p["threshold"]
    kappa = h @ p["hidden"][:, 2 * n:] + x @ T["kernel"] + T["bias"]  # Eq. 7
    return kappa[:, :n], kappa[:, n:]


def ref_rectified(p, h, x, ei, filt):
    """Eq. 7, Eq. 6 by ``filt(v, kappa1, kappa2)``, then Eq. 3-5."""
    k1, k2 = ref_kappa(p, h, x)
    return ref_gru(p, h, x[:, :ei], filt(x[:, ei:], k1, k2))


def ref_xi(p, h, x):
    n = h.shape[-1]
    return sigmoid(h @ p["hidden"][:, 2 * n:] + x @ p["attention"]["kernel"]
                   + p["attention"]["bias"])  # Eq. 8


def ref_attentional(p, h, x):
    n = h.shape[-1]
    xi = ref_xi(p, h, x)
    return ref_gru(p, h, (1.0 - xi) * x[:, :n], xi * x[:, n:])  # Eq. 9, 10, 5


def plain_paper_gru(h, i, Wh_u, Wh_r, Wi_u, Wi_r, Wi_k, b_u, b_r, b_k, U):
    """A plain GRU in the paper's form, gate by gate: r multiplies h before the matrix U."""
    u = sigmoid(h @ Wh_u + i @ Wi_u + b_u)
    r = sigmoid(h @ Wh_r + i @ Wi_r + b_r)
    k = np.tanh((r * h) @ U + i @ Wi_k + b_k)
    return (1.0 - u) * h + u * k


def plain_from(p, h, i):
    n = h.shape[-1]
    Wh, Wi, b = p["hidden"], p["item"]["kernel"], p["item"]["bias"]
    blk = [slice(0, n), slice(n, 2 * n), slice(2 * n, 3 * n)]
    return plain_paper_gru(h, i, Wh[:, blk[0]], Wh[:, blk[1]], *(Wi[:, s] for s in blk),
                           *(b[s] for s in blk), p["candidate"])


def np_exact(v, k1, k2, omega):
    """Eq. 6, cases in order, first match wins."""
    return np.where(v < k1, 0.0, np.where(v < k2, omega * v, v))


def np_relaxed(v, k1, k2, omega, tau):
    s1, s2 = sigmoid((v - k1) / tau), sigmoid((v - k2) / tau)
    return v * s1 * (omega + (1 - omega) * s2)


def np_relaxed_partials(v, k1, k2, omega, tau):
    """d/dv, d/dk1, d/dk2 of np_relaxed, derived by hand (sigma' = s (1 - s))."""
    s1, s2 = sigmoid((v - k1) / tau), sigmoid((v - k2) / tau)
    ds1, ds2 = s1 * (1 - s1) / tau, s2 * (1 - s2) / tau
    g = omega + (1 - omega) * s2
    dv = s1 * g + v * ds1 * g + v * s1 * (1 - omega) * ds2
    return dv, -v * ds1 * g, -v * s1 * (1 - omega) * ds2


# ----------------------------------------------------------------------------------------------
# helpers


def random_params(cell, h, x, seed, scale=0.5):
    """The cell's parameter tree with every leaf drawn from N(0, scale^2) (non-zero biases and
    attention gate, gates away from saturation)."""
    p = cell.init(jax.random.PRNGKey(seed), h, x)["params"]
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return tree.unflatten([scale * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])


def inputs(seed, width, scale=1.0):
    kh, kx = jax.random.split(jax.random.PRNGKey(seed))
    h = 0.8 * jnp.tanh(jax.random.normal(kh, (B, N)))
    return h, scale * jax.random.normal(kx, (B, width))


def check_against_reference(cell, p, h, x, ref, ref_grad=None):
    """Values of ``cell`` equal ``ref(P, H, X)``; the gradient of a weighted sum of the output
    w.r.t. every parameter, h and x equals central differences of ``ref_grad`` (default ``ref``).
    Returns the JAX gradients by name."""
    ref_grad = ref_grad or ref
    P, H, X = to64(p), np.array(h, np.float64), np.array(x, np.float64)
    new, y = cell.apply({"params": p}, h, x)
    np.testing.assert_allclose(new, ref(P, H, X), **approx())
    np.testing.assert_array_equal(new, y)

    w = np.asarray(jax.random.normal(jax.random.PRNGKey(99), new.shape), np.float64)
    grads = jax.grad(lambda p, h, x: (cell.apply({"params": p}, h, x)[0] * w).sum(),
                     argnums=(0, 1, 2))(p, h, x)
    named, _ = jax.tree_util.tree_flatten_with_path(P)
    arrays = [a for _, a in named] + [H, X]
    names = [jax.tree_util.keystr(k) for k, _ in named] + ["h", "x"]
    numeric = central_differences(lambda: float((ref_grad(P, H, X) * w).sum()), arrays)
    got = jax.tree_util.tree_leaves(grads[0]) + [grads[1], grads[2]]
    out = {}
    for name, g, want in zip(names, got, numeric):
        np.testing.assert_allclose(g, want, **approx(rtol=1e-4, atol=1e-5), err_msg=name)
        out[name] = np.asarray(g)
    return out


def all_nonzero(grads, skip=()):
    for name, g in grads.items():
        if name not in skip:
            assert np.abs(g).max() > 1e-3, f"gradient of {name} is zero: the check compares zeros"


# ----------------------------------------------------------------------------------------------
# values and gradients against the references


def test_linear_matches_numpy_values_and_gradients():
    ei, ev = 3, 2  # neither part needs to be n wide
    cell = uc.LinearUserGRU(N, item_features=ei)
    h, x = inputs(0, ei + ev)
    p = random_params(cell, h, x, 1)
    grads = check_against_reference(cell, p, h, x, lambda P, H, X: ref_linear(P, H, X, ei))
    all_nonzero(grads)


def rectified_setup(filter, temperature=0.5):
    ei = 3
    cell = uc.RectifiedUserGRU(N, item_features=ei, filter=filter, temperature=temperature)
    h, x = inputs(2, ei + N, scale=1.5)
    p = random_params(cell, h, x, 3)
    P, H, X = to64(p), np.array(h, np.float64), np.array(x, np.float64)
    k1, k2 = ref_kappa(P, H, X)
    v = X[:, ei:]
    return cell, p, h, x, ei, v, k1, k2


def test_rectified_inputs_cover_every_case():
    """The gradient tests below see all three cases of Eq. 6, none within reach of the
    central-difference step."""
    *_, v, k1, k2 = rectified_setup("exact")
    assert (v < k1).any() and ((k1 <= v) & (v < k2)).any() and ((v >= k1) & (v >= k2)).any()
    assert min(np.abs(v - k1).min(), np.abs(v - k2).min()) > 1e-3


@pytest.mark.parametrize("filter", ["exact", "relaxed", "straight_through"])
def test_rectified_matches_numpy_values_and_gradients(filter):
    cell, p, h, x, ei, v0, k10, k20 = rectified_setup(filter)
    omega, tau = cell.omega, cell.temperature
    exact = lambda v, k1, k2: np_exact(v, k1, k2, omega)  # noqa: E731
    relaxed = lambda v, k1, k2: np_relaxed(v, k1, k2, omega, tau)  # noqa: E731
    # Straight-through as a smooth function: the exact value at the point, the relaxed slope.
    st = lambda v, k1, k2: (exact(v0, k10, k20) + relaxed(v, k1, k2)  # noqa: E731
                            - relaxed(v0, k10, k20))
    value_filter = relaxed if filter == "relaxed" else exact
    grad_filter = {"exact": exact, "relaxed": relaxed, "straight_through": st}[filter]
    grads = check_against_reference(
        cell, p, h, x, lambda P, H, X: ref_rectified(P, H, X, ei, value_filter),
        lambda P, H, X: ref_rectified(P, H, X, ei, grad_filter))
    if filter == "exact":  # Eq. 6 is flat in kappa: Eq. 7's parameters get nothing
        assert np.abs(grads["['threshold']['kernel']"]).max() == 0
        assert np.abs(grads["['hidden']"][:, 2 * N:]).max() == 0
        all_nonzero(grads, skip=("['threshold']['kernel']", "['threshold']['bias']"))
    else:
        all_nonzero(grads)


def test_attentional_matches_numpy_values_and_gradients():
    cell = uc.AttentionalUserGRU(N, item_features=N)
    h, x = inputs(4, 2 * N)
    p = random_params(cell, h, x, 5)  # attention gate away from its zero start
    grads = check_against_reference(cell, p, h, x, ref_attentional)
    all_nonzero(grads)
    P = to64(p)
    xi = cell.apply({"params": p}, h, x, method="attention")
    np.testing.assert_allclose(xi, ref_xi(P, np.asarray(h, np.float64), np.asarray(x, np.float64)),
                               **approx())


# ----------------------------------------------------------------------------------------------
# Eq. 6: the exact filter and its surrogates


def test_exact_filter_cases():
    omega = 0.2
    # kappa1 < kappa2: below kappa1, between, above kappa2, and both ties
    v = jnp.array([-1.0, 0.5, 2.0, 0.0, 1.0])
    k1, k2 = jnp.zeros(5), jnp.ones(5)
    out = uc.rectify(v, k1, k2, omega=omega, filter="exact")
    np.testing.assert_array_equal(out, np.float32([0.0, 0.2 * 0.5, 2.0, 0.0, 1.0]))
    # kappa1 > kappa2: the middle case is empty; below kappa1 -> 0 (first case wins), else v
    v = jnp.array([-1.0, 0.5, 2.0])
    k1, k2 = jnp.ones(3), jnp.zeros(3)
    out = uc.rectify(v, k1, k2, omega=omega, filter="exact")
    np.testing.assert_array_equal(out, np.float32([0.0, 0.0, 2.0]))
    np.testing.assert_array_equal(out, np_exact(np.asarray(v), 1.0, 0.0, omega).astype(np.float32))
    # gradient: v gets the mask, kappa nothing
    v = jnp.array([-1.0, 0.5, 2.0])
    gv, g1, g2 = jax.grad(lambda v, a, b: uc.rectify(v, a, b, omega=omega, filter="exact").sum(),
                          argnums=(0, 1, 2))(v, jnp.zeros(3), jnp.ones(3))
    np.testing.assert_array_equal(gv, np.float32([0.0, omega, 1.0]))
    np.testing.assert_array_equal(g1, 0.0)
    np.testing.assert_array_equal(g2, 0.0)


def test_rectified_cell_applies_each_case():
    """Thresholds forced through Eq. 7's bias: element 0 below kappa1, 1 between, 2 above kappa2,
    3 with kappa1 > kappa2 and kappa2 < v < kappa1 (-> 0). The cell equals Eq. 3-5 fed with the
    user vector filtered by hand."""
    ei, omega = 3, 0.2
    cell = uc.RectifiedUserGRU(N, item_features=ei, omega=omega, filter="exact")
    h, x = inputs(6, ei + N)
    p = random_params(cell, h, x, 7)
    p["hidden"] = p["hidden"].at[:, 2 * N:].set(0.0)
    p["threshold"]["kernel"] = jnp.zeros_like(p["threshold"]["kernel"])
    k1, k2 = np.float32([0.0, 0.0, 0.0, 1.0]), np.float32([1.0, 1.0, 1.0, -1.0])
    p["threshold"]["bias"] = jnp.asarray(np.concatenate([k1, k2]))
    v = np.float32([-0.7, 0.6, 1.8, 0.3])
    x = x.at[:, ei:].set(jnp.asarray(v))
    by_hand = np.tile(np.float32([0.0, omega * 0.6, 1.8, 0.0]), (B, 1))
    np.testing.assert_allclose(cell.apply({"params": p}, h, x, method="filtered_user"),
                               by_hand, rtol=1e-6)
    P = to64(p)
    H, X = np.asarray(h, np.float64), np.asarray(x, np.float64)
    want = ref_gru(P, H, X[:, :ei], by_hand.astype(np.float64))
    np.testing.assert_allclose(cell.apply({"params": p}, h, x)[0], want, **approx())
    kappa = cell.apply({"params": p}, h, x, method="thresholds")
    np.testing.assert_allclose(kappa[0], np.tile(k1, (B, 1)), atol=1e-6)


@pytest.mark.parametrize("filter", ["relaxed", "straight_through"])
def test_surrogate_values_and_gradients(filter):
    omega, tau = 0.2, 0.02
    rng = np.random.default_rng(0)
    # near kappa1, near kappa2, far from both (three cases), and kappa1 > kappa2
    v = np.float32([0.05, 0.95, -2.0, 0.5, 3.0, 0.05, 0.3, 1.2])
    k1 = np.float32([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    k2 = np.float32([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0])
    v[5] = -0.05  # just below kappa1
    def f(v, a, b):
        return uc.rectify(v, a, b, omega=omega, filter=filter, temperature=tau)

    out = f(jnp.asarray(v), jnp.asarray(k1), jnp.asarray(k2))
    if filter == "straight_through":  # the forward value is Eq. 6 itself, bit for bit
        np.testing.assert_array_equal(out, uc.rectify_exact(jnp.asarray(v), jnp.asarray(k1),
                                                            jnp.asarray(k2), omega))
        np.testing.assert_allclose(out, np_exact(v, k1, k2, omega), rtol=1e-6)
    else:
        np.testing.assert_allclose(out, np_relaxed(v.astype(np.float64), k1, k2, omega, tau),
                                   rtol=1e-5, atol=1e-7)
    # reverse mode: the relaxation's partial derivatives, for any cotangent
    w = rng.normal(size=v.shape).astype(np.float32)
    gv, g1, g2 = jax.grad(lambda *a: (f(*a) * w).sum(), argnums=(0, 1, 2))(
        jnp.asarray(v), jnp.asarray(k1), jnp.asarray(k2))
    dv, d1, d2 = np_relaxed_partials(v.astype(np.float64), k1, k2, omega, tau)
    for got, want in ((gv, dv * w), (g1, d1 * w), (g2, d2 * w)):
        # float32 autodiff of a sigmoid loses digits in 1 - s far out in the tail
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # where the relaxation says: kappa1 learns near kappa1, kappa2 near kappa2, neither far off
    gv, g1, g2 = (np.asarray(g) for g in jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2))(
        jnp.asarray(v), jnp.asarray(k1), jnp.asarray(k2)))
    assert abs(g1[0]) > 0.01 and abs(g1[5]) > 0.01 and abs(g2[1]) > 0.01
    assert np.abs(g1[[2, 3, 4]]).max() < 1e-6 and np.abs(g2[[0, 2, 4]]).max() < 1e-6
    np.testing.assert_allclose(gv[[2, 3, 4]], [0.0, omega, 1.0], atol=1e-4)  # the exact mask
    # forward mode agrees (the straight-through rule is a custom JVP)
    tangents = tuple(jnp.asarray(rng.normal(size=v.shape), jnp.float32) for _ in range(3))
    _, jvp = jax.jvp(f, (jnp.asarray(v), jnp.asarray(k1), jnp.asarray(k2)), tangents)
    want = sum(d * np.asarray(t) for d, t in zip((dv, d1, d2), tangents))
    np.testing.assert_allclose(jvp, want, rtol=1e-5, atol=1e-6)
    # kappa1 > kappa2 reads as the exact filter: between them ~0, above kappa1 ~v
    np.testing.assert_allclose(np.asarray(out)[[6, 7]], [0.0, 1.2], atol=1e-3)


def test_relaxed_tends_to_exact():
    v = jnp.linspace(-2.0, 3.0, 41) + 0.013  # off the thresholds
    k1, k2 = jnp.zeros_like(v), jnp.ones_like(v)
    exact = uc.rectify_exact(v, k1, k2, 0.2)
    relaxed = uc.rectify_relaxed(v, k1, k2, 0.2, 1e-3)
    np.testing.assert_allclose(relaxed, exact, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# special cases: plain GRU of the paper's form, the attention gate at its start


def test_linear_with_zero_user_part_is_paper_gru():
    ei, ev = N, 3
    cell = uc.LinearUserGRU(N, item_features=ei)
    h, x = inputs(8, ei + ev)
    x = x.at[:, ei:].set(0.0)
    p = random_params(cell, h, x, 9)
    H, X = np.asarray(h, np.float64), np.asarray(x, np.float64)
    want = plain_from(to64(p), H, X[:, :ei])
    np.testing.assert_allclose(cell.apply({"params": p}, h, x)[0], want, **approx())
    # ... which is not flax's form r * (U h): the same weights there give another state
    n = N
    P = to64(p)
    a = H @ P["hidden"] + X[:, :ei] @ P["item"]["kernel"][:, :2 * n] + P["item"]["bias"][:2 * n]
    u, r = sigmoid(a[:, :n]), sigmoid(a[:, n:])
    k = np.tanh(r * (H @ P["candidate"]) + X[:, :ei] @ P["item"]["kernel"][:, 2 * n:]
                + P["item"]["bias"][2 * n:])
    assert np.abs((1 - u) * H + u * k - want).max() > 1e-3


def test_attentional_starts_at_half_gate():
    cell = uc.AttentionalUserGRU(N, item_features=N)
    h, x = inputs(10, 2 * N)
    p = cell.init(jax.random.PRNGKey(11), h, x)["params"]
    assert np.all(np.asarray(p["hidden"][:, 2 * N:]) == 0)
    assert np.all(np.asarray(p["attention"]["kernel"]) == 0)
    assert np.all(np.asarray(p["attention"]["bias"]) == 0)
    xi = cell.apply({"params": p}, h, x, method="attention")
    np.testing.assert_array_equal(xi, 0.5)  # sigma(0), exactly
    # Not a plain GRU: both inputs enter halved, as the linear cell of the halved inputs.
    H, X = np.asarray(h, np.float64), np.asarray(x, np.float64)
    want = ref_linear(to64(p), H, 0.5 * X, N)
    np.testing.assert_allclose(cell.apply({"params": p}, h, x)[0], want, **approx())
    assert np.abs(ref_linear(to64(p), H, X, N) - want).max() > 1e-4


def test_attentional_with_closed_gate_is_paper_gru_of_the_item():
    cell = uc.AttentionalUserGRU(N, item_features=N)
    h, x = inputs(12, 2 * N)
    p = random_params(cell, h, x, 13)
    p["attention"]["bias"] = jnp.full((N,), -1e4)  # xi = sigma(-1e4) = 0
    np.testing.assert_array_equal(cell.apply({"params": p}, h, x, method="attention"), 0.0)
    H, X = np.asarray(h, np.float64), np.asarray(x, np.float64)
    want = plain_from(to64(p), H, X[:, :N])
    new = cell.apply({"params": p}, h, x)[0]
    np.testing.assert_allclose(new, want, **approx())
    other_user = x.at[:, N:].set(jax.random.normal(jax.random.PRNGKey(14), (B, N)))
    np.testing.assert_array_equal(cell.apply({"params": p}, h, other_user)[0], new)


# ----------------------------------------------------------------------------------------------
# the standard GRU of the paper: the user-based cell without the user


def test_standard_matches_numpy_values_and_gradients():
    ei = 3  # the item part need not be n wide
    cell = uc.StandardUserGRU(N, item_features=ei)
    h, x = inputs(20, ei)
    p = random_params(cell, h, x, 21)
    assert set(p) == {"hidden", "candidate", "item"}  # no user kernel
    assert p["hidden"].shape == (N, 2 * N) and p["item"]["kernel"].shape == (ei, 3 * N)
    grads = check_against_reference(
        cell, p, h, x, lambda P, H, X: reference.standard_user_gru_step(P, H, X))
    all_nonzero(grads)


def test_standard_equals_linear_without_user_input():
    """With the linear cell's hidden, candidate and item parameters, the standard cell equals the
    linear cell fed a zero user part, bit for bit, step and scan (with resets and padding; the
    linear cell's scan is tested against a loop of steps below); a non-zero user part
    differs."""
    ei, ev, L = N, N, 6
    linear = uc.LinearUserGRU(N, item_features=ei)
    standard = uc.StandardUserGRU(N, item_features=ei)
    h, x = inputs(22, ei + ev)
    p = random_params(linear, h, x, 23)
    q = {k: p[k] for k in ("hidden", "candidate", "item")}
    zero_user = x.at[:, ei:].set(0.0)
    want = linear.apply({"params": p}, h, zero_user)[0]
    np.testing.assert_array_equal(standard.apply({"params": q}, h, x[:, :ei])[0], want)
    assert np.abs(np.asarray(linear.apply({"params": p}, h, x)[0] - want)).max() > 1e-3
    rng = np.random.default_rng(24)
    xs = jnp.asarray(rng.normal(size=(L, B, ei)), jnp.float32)
    reset, valid = jnp.asarray(rng.random((L, B)) < 0.3), jnp.asarray(rng.random((L, B)) < 0.8)
    xs_lin = jnp.concatenate([xs, jnp.zeros((L, B, ev))], axis=-1)
    run = {}
    for name, cell, params, inp in (("linear", linear, p, xs_lin), ("standard", standard, q, xs)):
        xp = cell.apply({"params": params}, inp, method="project")
        run[name] = cell.apply({"params": params}, h, xp, reset, valid, method="scan")
    for a, b in zip(run["linear"], run["standard"]):
        np.testing.assert_array_equal(a, b)


def test_standard_initialisation_is_the_linear_cells():
    """U(-0.1, 0.1), and under one key the same draws as the linear cell's shared parameters."""
    h = jnp.zeros((1, 50))
    standard = uc.StandardUserGRU(50, item_features=50).init(
        jax.random.PRNGKey(3), h, jnp.zeros((1, 50)))["params"]
    linear = uc.LinearUserGRU(50, item_features=50).init(
        jax.random.PRNGKey(3), h, jnp.zeros((1, 100)))["params"]
    for path, a in jax.tree_util.tree_flatten_with_path(standard)[0]:
        a = np.asarray(a)
        assert 0.09 < np.abs(a).max() <= 0.1, jax.tree_util.keystr(path)
    for name in ("hidden", "candidate", "item"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, standard[name], linear[name])


# ----------------------------------------------------------------------------------------------
# the flax contract: carry, vmap, scan, project/step


CELLS = [
    (uc.LinearUserGRU(N, item_features=3), 3 + 2),
    (uc.RectifiedUserGRU(N, item_features=3), 3 + N),
    (uc.RectifiedUserGRU(N, item_features=3, filter="relaxed"), 3 + N),
    (uc.AttentionalUserGRU(N, item_features=N), 2 * N),
]


@pytest.mark.parametrize("cell,width", CELLS + [(uc.RectifiedUserGRU(N, item_features=3,
                                                                     filter="exact"), 3 + N)],
                         ids=["linear", "rectified", "rectified-relaxed", "attentional", "exact"])
def test_scan_equals_a_loop_of_steps_values_and_gradients(cell, width):
    """``cell.scan`` (the gradient written out, weight gradients after the scan) equals a Python
    loop of ``step`` with resets and padding steps: outputs, final state and the gradients of
    every parameter, the initial state and the projected inputs."""
    L = 7
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(L, B, width)), jnp.float32)
    h0 = jnp.asarray(rng.normal(size=(B, N)) * 0.5, jnp.float32)
    reset = jnp.asarray(rng.random((L, B)) < 0.25)
    valid = jnp.asarray(rng.random((L, B)) < 0.8)
    p = cell.init(jax.random.PRNGKey(0), h0, x[0])["params"]
    p = jax.tree_util.tree_map(lambda a: a + 0.3 * jnp.asarray(rng.normal(size=a.shape),
                                                               a.dtype), p)
    xp = cell.apply({"params": p}, x, method="project")
    w_y = jnp.asarray(rng.normal(size=(L, B, N)), jnp.float32)
    w_h = jnp.asarray(rng.normal(size=(B, N)), jnp.float32)

    def fused(p, h0, xp):
        h, ys = cell.apply({"params": p}, h0, xp, reset, valid, method="scan")
        return (ys * w_y).sum() + (h * w_h).sum(), (h, ys)

    def loop(p, h0, xp):
        h, ys = h0, []
        for t in range(L):
            h = jnp.where(reset[t][:, None], 0.0, h)
            h_new, y = cell.apply({"params": p}, h, xp[t], method="step")
            h = jnp.where(valid[t][:, None], h_new, h)
            ys.append(y)
        ys = jnp.stack(ys)
        return (ys * w_y).sum() + (h * w_h).sum(), (h, ys)

    (_, got), g_got = jax.value_and_grad(fused, argnums=(0, 1, 2), has_aux=True)(p, h0, xp)
    (_, want), g_want = jax.value_and_grad(loop, argnums=(0, 1, 2), has_aux=True)(p, h0, xp)
    for a, b in zip(jax.tree_util.tree_leaves((got, g_got)),
                    jax.tree_util.tree_leaves((want, g_want))):
        np.testing.assert_allclose(a, b, **approx(1e-5, 1e-6))
    # the check compares non-zero gradients (project's own weights get none here: xp is given)
    for g in (g_got[0]["hidden"], g_got[0]["candidate"], g_got[1], g_got[2]):
        assert np.abs(np.asarray(g)).max() > 1e-3


@pytest.mark.parametrize("cell,width", CELLS,
                         ids=["linear", "rectified", "rectified-relaxed", "attentional"])
def test_flax_contract_vmap_and_scan(cell, width):
    L = 5
    rng = jax.random.PRNGKey(0)
    carry = cell.initialize_carry(rng, (B, width))
    assert carry.shape == (B, N) and np.all(np.asarray(carry) == 0)
    assert cell.num_feature_axes == 1
    assert cells.is_split(cell)
    xs = jax.random.normal(jax.random.PRNGKey(1), (L, B, width))
    p = {"params": random_params(cell, carry, xs[0], 2)}
    xp = cell.apply(p, xs, method="project")  # all steps at once, outside the scan
    assert xp.shape == (L, B, cell.projected_features)

    def body(h, xp_t):
        return cell.apply(p, h, xp_t, method="step")

    last, ys = jax.lax.scan(body, carry, xp)
    assert ys.shape == (L, B, N)
    h = carry
    for t in range(L):  # a Python loop of the plain call
        h, y = cell.apply(p, h, xs[t])
        np.testing.assert_allclose(ys[t], y, **approx())
    np.testing.assert_allclose(last, h, **approx())
    # vmap over a leading axis (e.g. seeds) of states and inputs, and over parameter trees
    hs = jnp.stack([carry, ys[0], ys[1]])
    out, _ = jax.vmap(lambda h, x: cell.apply(p, h, x))(hs, xs[:3])
    assert out.shape == (3, B, N)
    np.testing.assert_allclose(out[1], cell.apply(p, ys[0], xs[1])[0], **approx())
    ps = jax.vmap(lambda k: cell.init(k, carry, xs[0]))(jax.random.split(rng, 2))
    out, _ = jax.vmap(lambda p: cell.apply(p, carry, xs[0]))(ps)
    assert out.shape == (2, B, N)
    # a single unbatched row works too
    assert cell.apply(p, carry[0], xs[0, 0])[0].shape == (N,)


def test_initialisation_is_paper_uniform():
    cell = uc.RectifiedUserGRU(50, item_features=20)
    p = cell.init(jax.random.PRNGKey(0), jnp.zeros((1, 50)), jnp.zeros((1, 70)))["params"]
    for path, a in jax.tree_util.tree_flatten_with_path(p)[0]:
        a = np.asarray(a)
        assert np.abs(a).max() <= 0.1 and np.abs(a).max() > 0.09, jax.tree_util.keystr(path)
        assert abs(a.mean()) < 0.02, jax.tree_util.keystr(path)


# ----------------------------------------------------------------------------------------------
# bad widths and options


@pytest.mark.parametrize("cell,width,match", [
    (uc.LinearUserGRU(N, item_features=5), 5, "no user part"),
    (uc.LinearUserGRU(N, item_features=0), 5, "at least 1"),
    (uc.RectifiedUserGRU(N, item_features=3), 3 + N - 1, "user part must be as wide"),
    (uc.RectifiedUserGRU(N, item_features=3), 3 + N + 1, "user part must be as wide"),
    (uc.AttentionalUserGRU(N, item_features=3), 3 + N, "item part must be as wide"),
    (uc.AttentionalUserGRU(N, item_features=N), 2 * N + 2, "user part must be as wide"),
    (uc.StandardUserGRU(N, item_features=3), 3 + N, "takes no user part"),
])
def test_bad_widths_raise(cell, width, match):
    with pytest.raises(ValueError, match=match):
        cell.init(jax.random.PRNGKey(0), jnp.zeros((2, N)), jnp.zeros((2, width)))


def test_bad_step_inputs_raise():
    cell = uc.RectifiedUserGRU(N, item_features=3)
    p = cell.init(jax.random.PRNGKey(0), jnp.zeros((2, N)), jnp.zeros((2, 3 + N)))
    with pytest.raises(ValueError, match="step takes project"):
        cell.apply(p, jnp.zeros((2, N)), jnp.zeros((2, 3 * N)), method="step")
    with pytest.raises(ValueError, match="state is 5 wide"):
        cell.apply(p, jnp.zeros((2, 5)), jnp.zeros((2, 3 + N)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(filter="surrogate"), "filter must be one of"),
    (dict(omega=1.5), "omega"),
    (dict(temperature=0.0), "temperature"),
])
def test_bad_options_raise(kwargs, match):
    cell = uc.RectifiedUserGRU(N, item_features=3, **kwargs)
    with pytest.raises(ValueError, match=match):
        cell.init(jax.random.PRNGKey(0), jnp.zeros((2, N)), jnp.zeros((2, 3 + N)))
