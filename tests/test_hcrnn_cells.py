"""The HCRNN cells (Song et al. 2019) against a plain NumPy reference of Eq. 13-24: values of the
carry (c, h) and the gates, and gradients with respect to every parameter, the carry and the
input against central differences of the reference; the W_d >= 0 projection."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn_jax.cells.hcrnn import HCRNNCell, project_nonnegative
from tests.helpers import central_differences, to64
from tests.tolerance import approx

B, D, H, K = 2, 3, 4, 3


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(P, c, h, inp, variant):
    """Eq. 13-24 for every row, from the paper's equations with the cell's parameter names."""
    x, theta = inp[:, :D], inp[:, D:]
    Wx, bx = P["x_in"]["kernel"], P["x_in"]["bias"]
    Wh = P["h_in"]["kernel"]
    blk = lambda a, i, w: a[:, i:i + w]  # noqa: E731
    xl, xz, xr, xh = blk(x @ Wx + bx, 0, D), blk(x @ Wx + bx, D, H), blk(x @ Wx + bx, D + H, H), \
        blk(x @ Wx + bx, D + 2 * H, H)
    hl, hz, hr = blk(h @ Wh, 0, D), blk(h @ Wh, D, H), blk(h @ Wh, D + H, H)
    M = P["memory"]
    alpha = np.zeros((len(x), K))
    for b in range(len(x)):
        scores = [(sigmoid(h[b] @ P["h_alpha"] + (theta[b, k] * M[k]) @ P["theta_alpha"])
                   @ P["v_alpha"])[0] for k in range(K)]  # (13)
        alpha[b] = softmax(np.array(scores))
    c_tilde = alpha @ M  # (14)
    g_c = sigmoid(xl + hl + c @ P["c_local"])  # (15)
    c_new = (1 - g_c) * c + g_c * c_tilde  # (16)
    z = sigmoid(xz + hz + c_new @ P["c_update"])  # (17)
    drift = np.ones_like(z)
    if variant == 1:
        r = sigmoid(xr + hr + c_new @ P["c_reset"])  # (18)
    elif variant == 2:
        r = sigmoid(xr + hr + (x * c_new) @ P["drift"]["kernel"])  # (21)
    else:
        drift = sigmoid((x * c_new) @ P["drift"]["kernel"] + P["drift"]["bias"])  # (22)
        r = sigmoid(xr + hr)  # (23)
    h_tilde = (r * drift * h) @ P["candidate"] + xh  # (19), (24)
    h_new = (1 - z) * h + z * np.tanh(h_tilde)  # (20)
    return c_new, h_new, {"r": r, "drift": drift, "local_gate": g_c, "alpha": alpha}


def setup_cell(variant, seed=0):
    cell = HCRNNCell(H, context_dim=D, n_contexts=K, variant=variant)
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    c = 0.8 * jnp.tanh(jax.random.normal(k[0], (B, D)))
    h = 0.8 * jnp.tanh(jax.random.normal(k[1], (B, H)))
    theta = jax.nn.softmax(2.0 * jax.random.normal(k[2], (B, K)))
    inp = jnp.concatenate([jax.random.normal(k[3], (B, D)), theta], axis=1)
    p = cell.init(jax.random.PRNGKey(seed + 1), (c, h), inp)["params"]
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(jax.random.PRNGKey(seed + 2), len(leaves))
    p = tree.unflatten([0.6 * jax.random.normal(kk, a.shape) for kk, a in zip(keys, leaves)])
    return cell, project_nonnegative(p), c, h, inp


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_cell_matches_numpy_values_and_gradients(variant):
    cell, p, c, h, inp = setup_cell(variant)
    P = to64(p)
    # jitted: one compile per program (eagerly, every small op would be compiled on its own)
    (c1, h1), y = jax.jit(lambda p, c, h, x: cell.apply({"params": p}, (c, h), x))(p, c, h, inp)
    c_ref, h_ref, gates_ref = reference(P, np.array(c, np.float64), np.array(h, np.float64),
                                        np.array(inp, np.float64), variant)
    np.testing.assert_allclose(c1, c_ref, **approx())
    np.testing.assert_allclose(h1, h_ref, **approx())
    np.testing.assert_array_equal(y, h1)
    _, _, gates = jax.jit(lambda p, c, h, x: cell.apply(
        {"params": p}, (c, h), cell.apply({"params": p}, x, method="project"),
        method="trace_step"))(p, c, h, inp)
    for name, want in gates_ref.items():
        np.testing.assert_allclose(gates[name], want, **approx(), err_msg=name)
    if variant == 3:  # the drift gate is a gate, not ones
        assert np.ptp(np.asarray(gates["drift"])) > 1e-3

    wc = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (B, D)), np.float64)
    wh = np.asarray(jax.random.normal(jax.random.PRNGKey(8), (B, H)), np.float64)

    def loss(p, c, h, inp):
        (c1, h1), _ = cell.apply({"params": p}, (c, h), inp)
        return (c1 * wc).sum() + (h1 * wh).sum()

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(p, c, h, inp)
    named, _ = jax.tree_util.tree_flatten_with_path(P)
    C, Hh, X = (np.array(a, np.float64) for a in (c, h, inp))
    arrays = [a for _, a in named] + [C, Hh, X]
    names = [jax.tree_util.keystr(k) for k, _ in named] + ["c", "h", "input"]

    def f():
        c_new, h_new, _ = reference(P, C, Hh, X, variant)
        return float((c_new * wc).sum() + (h_new * wh).sum())

    numeric = central_differences(f, arrays)
    got = jax.tree_util.tree_leaves(grads[0]) + list(grads[1:])
    assert len(got) == len(numeric)
    for name, g, want in zip(names, got, numeric):
        np.testing.assert_allclose(g, want, **approx(rtol=1e-4, atol=1e-5), err_msg=name)
        assert np.abs(want).max() > 1e-4, f"the gradient of {name} is zero: nothing compared"


def test_drift_kernel_starts_and_is_projected_nonnegative():
    cell = HCRNNCell(H, context_dim=D, n_contexts=K, variant=3)
    p = cell.init(jax.random.PRNGKey(0), cell.initialize_carry(None, (B, D + K)),
                  jnp.zeros((B, D + K)))["params"]
    assert (p["drift"]["kernel"] >= 0).all() and (p["drift"]["kernel"] > 0).any()
    bad = jax.tree_util.tree_map(lambda a: a - 1.0, p)
    fixed = project_nonnegative(bad)
    assert (fixed["drift"]["kernel"] == 0).all()  # clipped at 0
    np.testing.assert_array_equal(fixed["candidate"], bad["candidate"])  # nothing else moves
    np.testing.assert_array_equal(fixed["drift"]["bias"], bad["drift"]["bias"])
    with pytest.raises(ValueError, match="variant"):
        HCRNNCell(H, context_dim=D, variant=4).init(jax.random.PRNGKey(0),
                                                     (jnp.zeros((1, D)), jnp.zeros((1, H))),
                                                     jnp.zeros((1, D + K)))
