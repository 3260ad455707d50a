"""User-based GRU cells: linear, rectified-linear and attentional user integration.

Donkers, Loepp, Ziegler 2017, "Sequential User-based Recurrent Neural Network Recommendations"
(RecSys 2017), Section 3.2, https://doi.org/10.1145/3109859.3109877. Equation numbers below refer
to that paper; T is an affine map ``W x + b``, n the number of hidden units (``features``).

Every cell follows ``flax.linen.RNNCellBase``: ``carry, y = cell(carry, x)`` with ``y = carry = h``
``[..., n]`` and ``cell.initialize_carry(rng, input_shape)``. The input is the concatenation of the
item and the user embedding, ``x = [E_i i^t, E_v v^t]`` ``[..., item_features + user_features]``:
the first ``item_features`` entries are the item part, the rest the user part. The embeddings are
the model's (tables, dropout, the L2 penalty on the user side); the cells see only vectors.

* :class:`LinearUserGRU` (Eq. 3-5): the user vector is one more input of the gates and candidate.
* :class:`RectifiedUserGRU` (Eq. 6-7): the user vector is first filtered by thresholds computed
  from ``[h, E_i i, E_v v]``; Eq. 6's step function is replaced by a trainable surrogate
  (``filter``, see :func:`rectify`).
* :class:`AttentionalUserGRU` (Eq. 8-10): a gate xi shares the input between item (1 - xi) and
  user (xi).
* :class:`StandardUserGRU`: the paper's standard GRU, the same cell without the user (Eq. 3-5
  with the user term removed; input the item vector alone), equal to :class:`LinearUserGRU`
  fed a zero user vector.

All of them share Eq. 3-5 (``_gates_fwd``), with the paper's candidate
``k = tanh(T (r * h) + ...)`` (Eq. 4): the reset gate is applied to h BEFORE the matrix product,
unlike ``flax.linen.GRUCell`` and :class:`hrnn_jax.cells.GRU`, which use ``r * (W h + b)``.

Parameters (one bias per pre-activation: the three T's of Eq. 4 have three biases whose sum is one
bias, likewise in Eq. 8 and 10)::

    hidden     [n, 2n (+2n | +n)]  h rows of T_{3n,2n} (Eq. 3), columns u, r; the rectified cell
                                   appends the h rows of Eq. 7 (kappa1, kappa2), the attentional
                                   cell those of Eq. 8 (xi)
    candidate  [n, n]              T_{n,n} applied to r * h (Eq. 4 / 10)
    item       kernel [E_i, 3n], bias [3n]   item rows, columns u, r, k (Eq. 3-4 / 9-10)
    user       kernel [E_v, 3n]              user rows, columns u, r, k (none in StandardUserGRU)
    threshold  kernel [E_i+E_v, 2n], bias [2n]   (rectified) the input part of Eq. 7
    attention  kernel [E_i+E_v, n], bias [n]     (attentional) the input part of Eq. 8

Initialisation: U(-0.1, 0.1) for every weight and bias, as the paper's Table 1 section
("Weight matrices and biases are initialized randomly with values drawn from [-0.1, 0.1]"); the
attention gate's weights and bias start at zero (see :class:`AttentionalUserGRU`).

Work outside the scan. Each cell splits like :class:`hrnn_jax.cells.GRU` (so
``hrnn_jax.cells.is_split`` is true): ``project(x) -> xp`` does everything that does not depend on
h, for all steps at once, and ``step(h, xp)`` the rest. ``project`` is affine in x, so a model may
also compute it from per-item and per-user tables. ``xp`` is ``[..., projected_features]``:

    linear       [3n]  T E_i i + T E_v v + b for u, r, k: all input work is outside the scan,
                       step costs what a GRU step costs (h @ [n, 2n], then (r*h) @ [n, n])
    standard     [3n]  T E_i i + b for u, r, k; the linear cell's step
    rectified    [6n]  T E_i i + b for u, r, k | Eq. 7's input part (kappa1, kappa2) | E_v v:
                       the filtered user vector depends on h through kappa, so its product with
                       the user kernel ([n, 3n]) and Eq. 7's h part ([n, 2n]) stay in the step
    attentional  [3n]  Eq. 8's input part (xi) | E_i i | E_v v: both inputs are weighted by xi,
                       which depends on h, so both input products ([n, 3n] each) stay in the step

Gradients. Each cell's ``step`` runs a fused function with a hand-written gradient
(:func:`linear_step`, ``_rectified(...)``, :func:`attentional_step`), and ``scan(h, xp, reset,
valid)`` runs a whole window (:func:`scan_cell`) whose backward loop carries only d h and leaves
every weight's gradient to one product after the loop. ``models.UserRNN`` uses ``scan``;
``models.HRNN`` steps the cell. Both are tested against NumPy references and a loop of steps.

Note for models: ``hrnn_jax.models`` treats a split cell with ``embed_dim=None`` as a one-hot cell
whose ``xp`` is ``3H`` wide; these cells need the model to build ``xp`` with ``project`` (or its
affine parts) and size it by :attr:`UserGRUBase.projected_features`.
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import linen as nn

from hrnn_jax import choices
from hrnn_jax.cells.base import Block, UserCell
from hrnn_jax.config import ModelConfig, default

Initializer = Any
Filter = Literal["straight_through", "relaxed", "exact"]


def symmetric_uniform(scale: float = 0.1) -> Initializer:
    """Initializer drawing from U(-scale, scale) (the paper's Table 1 setting with scale 0.1)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


# ---------------------------------------------------------------------------------------------
# Eq. 6: the rectified filter and its surrogates


def rectify_exact(v, kappa1, kappa2, omega: float):
    """Eq. 6 exactly, elementwise: 0 where v < kappa1; omega * v where kappa1 <= v < kappa2;
    v otherwise.

    The cases are read in the paper's order, first match wins: where kappa1 > kappa2 the middle
    case is empty, so v < kappa1 gives 0 and v >= kappa1 gives v (the first case wins over the
    middle one). At equality the upper case is taken (v == kappa1 is not below kappa1; v == kappa2
    is "else"). Piecewise constant in kappa: kappa gets no gradient; v gets the mask (0, omega, 1).
    """
    mask = jnp.where(v < kappa1, 0.0, jnp.where(v < kappa2, omega, 1.0))
    return v * mask


def rectify_relaxed(v, kappa1, kappa2, omega: float, temperature: float):
    """The sigmoid relaxation of Eq. 6: ``v * s1 * (omega + (1 - omega) * s2)`` with
    ``s_j = sigmoid((v - kappa_j) / temperature)``.

    It is the exact filter written as a product of steps, ``v * 1[v >= kappa1] * (omega + (1 -
    omega) 1[v >= kappa2])``, with each step replaced by a sigmoid; so it keeps the exact filter's
    reading of kappa1 > kappa2 (the kappa1 factor gates everything) and tends to it as
    temperature -> 0 away from the thresholds. Smooth: v, kappa1 and kappa2 all get gradients,
    within a few temperatures of a threshold for kappa.
    """
    s1 = jax.nn.sigmoid((v - kappa1) / temperature)
    s2 = jax.nn.sigmoid((v - kappa2) / temperature)
    return v * s1 * (omega + (1.0 - omega) * s2)


def relaxed_partials(v, kappa1, kappa2, omega: float, temperature: float):
    """Partial derivatives of :func:`rectify_relaxed` w.r.t. ``v``, ``kappa1``, ``kappa2``
    (elementwise)."""
    s1 = jax.nn.sigmoid((v - kappa1) / temperature)
    s2 = jax.nn.sigmoid((v - kappa2) / temperature)
    g = omega + (1.0 - omega) * s2
    # sigmoid'(z) = s (1 - s): two sigmoids a step, not four (this runs at every step of the
    # rectified cell); 1 - s rounds to 0 only where the derivative is below float32's resolution
    d1 = -v * g * s1 * (1.0 - s1) / temperature
    d2 = -v * s1 * (1.0 - omega) * s2 * (1.0 - s2) / temperature
    return s1 * g - d1 - d2, d1, d2


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def rectify_straight_through(v, kappa1, kappa2, omega: float, temperature: float):
    """Straight-through Eq. 6: the value of :func:`rectify_exact` (bit for bit), the derivatives
    of :func:`rectify_relaxed` (:func:`relaxed_partials`) in both forward and reverse mode."""
    return rectify_exact(v, kappa1, kappa2, omega)


@rectify_straight_through.defjvp
def _straight_through_jvp(omega, temperature, primals, tangents):
    v, kappa1, kappa2 = primals
    dv, dk1, dk2 = tangents
    gv, g1, g2 = relaxed_partials(v, kappa1, kappa2, omega, temperature)
    return rectify_exact(v, kappa1, kappa2, omega), gv * dv + g1 * dk1 + g2 * dk2


def rectify(v, kappa1, kappa2, *, omega: float, filter: Filter = "straight_through",
            temperature: float = 0.1):
    """Eq. 6 by ``filter``: ``"straight_through"`` (exact value, relaxed gradient),
    ``"relaxed"`` (sigmoid relaxation, value and gradient) or ``"exact"`` (kappa untrainable).

    Args:
      v, kappa1, kappa2: ``[..., n]`` the user vector E_v v and the thresholds of Eq. 7.
      omega: the leak of the middle case (0.2 in the paper).
      filter: which filter, see above.
      temperature: the relaxation's sigmoid scale (surrogates only).

    Returns:
      The filtered user vector ``[..., n]``.
    """
    choices.check("filter", filter, Filter)
    if filter == "exact":
        return rectify_exact(v, kappa1, kappa2, omega)
    if filter == "relaxed":
        return rectify_relaxed(v, kappa1, kappa2, omega, temperature)
    return rectify_straight_through(v, kappa1, kappa2, omega, temperature)


# ---------------------------------------------------------------------------------------------
# Fused steps: the recurrent part of each cell as one function with a hand-written gradient.
#
# Autodiff of a step slices the fused products (h @ hidden, the projected input) and pads every
# slice's gradient back to full width; in the backward scan that was most of the time (the
# rectified and attentional cells took 4-5x the linear cell's backward for 2.7-3.3x its
# products). These functions compute the same values with the same products and return each
# gradient block by one concatenation. Tested against autodiff of the plain equations
# (tests/test_user_cells.py). Shapes: h [B, n] (any leading axes), xp [B, projected], weights 2-D.


def _gates_fwd(h, pre_ur, pre_k_input, C):
    """Eq. 3-5 from the pre-activations of u, r (``pre_ur`` [.., 2n]) and k's input part."""
    n = h.shape[-1]
    ur = jax.nn.sigmoid(pre_ur)  # Eq. 3
    rh = ur[..., n:] * h
    k = jnp.tanh(rh @ C + pre_k_input)  # Eq. 4: r before T
    u = ur[..., :n]
    return (1.0 - u) * h + u * k, (ur, rh, k)  # Eq. 5


def _gates_bwd(g, h, C, res):
    """Gradients of Eq. 3-5: ``(d h (direct), d pre_ur, d pre_k, dC as factors)``."""
    ur, rh, k = res
    n = h.shape[-1]
    u, r = ur[..., :n], ur[..., n:]
    d_pre_k = g * u * (1.0 - k * k)
    d_rh = d_pre_k @ C.T
    d_pre_ur = jnp.concatenate([g * (k - h), d_rh * h], axis=-1) * ur * (1.0 - ur)
    return g * (1.0 - u) + d_rh * r, d_pre_ur, d_pre_k, (rh, d_pre_k)


# Each ``_<cell>_parts`` returns ``(d h, d xp, factors)``: the gradient of every weight is a sum
# over steps and rows of an outer product, ``left^T @ right``, given as the pair (left, right)
# (a bias as (None, right)). A single step contracts them at once (:func:`_contract`); the scan
# of :func:`scan_cell` stacks them and contracts all steps in one product per weight.


def _contract(factors):
    """Weight gradients from ``(left, right)`` factors summed over every leading axis (one step:
    the rows; a scan: steps and rows)."""
    def one(pair):
        left, right = pair
        right = right.reshape(-1, right.shape[-1])
        return right.sum(0) if left is None else left.reshape(-1, left.shape[-1]).T @ right
    return tuple(one(p) for p in factors)


def _per_step(fwd, parts):
    """The custom VJP of one step ``(h, xp, *weights)`` from its forward and its parts, both of
    which take the weights apart from the step's residuals (so a scan need not stack them)."""
    def fwd_vjp(h, xp, *weights):
        out, saved = fwd(h, xp, *weights)
        return out, (saved, weights)

    def bwd(res, g):
        saved, weights = res
        dh, dxp, factors = parts(saved, weights, g)
        return (dh, dxp, *_contract(factors))
    return fwd_vjp, bwd


@jax.custom_vjp
def linear_step(h, xp, Wh, C):
    """Eq. 3-5 of :class:`LinearUserGRU`: ``xp [.., 3n]`` the input part of u, r, k."""
    return _linear_fwd(h, xp, Wh, C)[0]


def _linear_fwd(h, xp, Wh, C):
    n = h.shape[-1]
    out, res = _gates_fwd(h, h @ Wh + xp[..., :2 * n], xp[..., 2 * n:], C)
    return out, (h, res)


def _linear_parts(saved, weights, g):
    (h, res), (Wh, C) = saved, weights
    dh, d_ur, d_k, dC = _gates_bwd(g, h, C, res)
    return dh + d_ur @ Wh.T, jnp.concatenate([d_ur, d_k], axis=-1), ((h, d_ur), dC)


linear_step.defvjp(*_per_step(_linear_fwd, _linear_parts))


@functools.lru_cache(maxsize=None)
def _rectified(omega, filter, temperature):
    """The rectified step for one filter setting, with its custom VJP (cached per setting)."""
    fwd = functools.partial(_rectified_fwd, omega=omega, filter=filter, temperature=temperature)

    @jax.custom_vjp
    def step(h, xp, Wh, C, Wu):
        return fwd(h, xp, Wh, C, Wu)[0]

    step.defvjp(*_per_step(fwd, _rectified_parts))
    step.scan_parts = (fwd, _rectified_parts)  # for scan_cell (custom_vjp owns .fwd, .bwd)
    return step


def _rectified_fwd(h, xp, Wh, C, Wu, *, omega, filter, temperature):
    n = h.shape[-1]
    hp = h @ Wh
    k1 = hp[..., 2 * n:3 * n] + xp[..., 3 * n:4 * n]  # Eq. 7
    k2 = hp[..., 3 * n:] + xp[..., 4 * n:5 * n]
    v = xp[..., 5 * n:]
    if filter == "relaxed":
        w = rectify_relaxed(v, k1, k2, omega, temperature)
    else:
        w = rectify_exact(v, k1, k2, omega)  # Eq. 6 (exact, and straight-through's value)
    if filter == "exact":
        partials = (jnp.where(v < k1, 0.0, jnp.where(v < k2, omega, 1.0)), None, None)
    else:
        partials = relaxed_partials(v, k1, k2, omega, temperature)
    g = xp[..., :3 * n] + w @ Wu
    out, res = _gates_fwd(h, hp[..., :2 * n] + g[..., :2 * n], g[..., 2 * n:], C)
    return out, (h, w, partials, res)


def _rectified_parts(saved, weights, g):
    (h, w, (gv, g1, g2), res), (Wh, C, Wu) = saved, weights
    dh, d_ur, d_k, dC = _gates_bwd(g, h, C, res)
    dg = jnp.concatenate([d_ur, d_k], axis=-1)
    dw = dg @ Wu.T
    zero = jnp.zeros_like(dw)
    dk1, dk2 = (zero, zero) if g1 is None else (dw * g1, dw * g2)
    dhp = jnp.concatenate([d_ur, dk1, dk2], axis=-1)
    return (dh + dhp @ Wh.T, jnp.concatenate([dg, dk1, dk2, dw * gv], axis=-1),
            ((h, dhp), dC, (w, dg)))


@jax.custom_vjp
def attentional_step(h, xp, Wh, C, Wi, bi, Wu):
    """Eq. 8-10 and 5 of :class:`AttentionalUserGRU`, ``xp [.., 3n]`` = [Eq. 8's input part |
    E_i i | E_v v]."""
    return _attentional_fwd(h, xp, Wh, C, Wi, bi, Wu)[0]


def _attentional_fwd(h, xp, Wh, C, Wi, bi, Wu):
    n = h.shape[-1]
    hp = h @ Wh
    xi = jax.nn.sigmoid(hp[..., 2 * n:] + xp[..., :n])  # Eq. 8
    a, b = (1.0 - xi) * xp[..., n:2 * n], xi * xp[..., 2 * n:]
    g = a @ Wi + b @ Wu + bi  # Eq. 9-10 input parts
    out, res = _gates_fwd(h, hp[..., :2 * n] + g[..., :2 * n], g[..., 2 * n:], C)
    return out, (h, xp, xi, a, b, res)


def _attentional_parts(saved, weights, g):
    (h, xp, xi, a, b, res), (Wh, C, Wi, _, Wu) = saved, weights
    n = h.shape[-1]
    dh, d_ur, d_k, dC = _gates_bwd(g, h, C, res)
    dg = jnp.concatenate([d_ur, d_k], axis=-1)
    da, db = dg @ Wi.T, dg @ Wu.T
    d_xi = (db * xp[..., 2 * n:] - da * xp[..., n:2 * n]) * xi * (1.0 - xi)
    dhp = jnp.concatenate([d_ur, d_xi], axis=-1)
    return (dh + dhp @ Wh.T, jnp.concatenate([d_xi, da * (1.0 - xi), db * xi], axis=-1),
            ((h, dhp), dC, (a, dg), (None, dg), (b, dg)))


attentional_step.defvjp(*_per_step(_attentional_fwd, _attentional_parts))


# ---------------------------------------------------------------------------------------------
# A whole sequence: the scan with its gradient written out, weight gradients after the scan.
#
# Autodiff of a scan accumulates every weight's gradient inside the backward loop, one small
# [n, B] x [B, m] product per step and weight; that was about half of the backward time of the
# rectified cell at B = 50, n = 100. scan_cell's backward loop carries only d h and emits each
# step's factors; each weight's gradient is then one product over all steps and rows.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def scan_cell(fwd, parts, h0, xp, reset, valid, weights):
    """``L`` steps of a fused step over ``xp [L, B, P]`` from ``h0 [B, n]``: at each step the
    state restarts from zeros where ``reset [L, B]``, steps to ``h'`` (the output ``y``), and is
    kept where ``valid [L, B]`` is False. Returns ``(h_L, ys [L, B, n])``. ``fwd``/``parts``:
    a step's forward and backward parts (``_<cell>_fwd``, ``_<cell>_parts``)."""
    return _scan_fwd(fwd, parts, h0, xp, reset, valid, weights)[0]


def _scan_fwd(fwd, parts, h0, xp, reset, valid, weights):
    def body(h, inp):
        xp_t, reset_t, valid_t = inp
        h = jnp.where(reset_t[:, None], 0.0, h)
        h_new, saved = fwd(h, xp_t, *weights)
        return jnp.where(valid_t[:, None], h_new, h), (h_new, saved)

    h, (ys, saved) = jax.lax.scan(body, h0, (xp, reset, valid))
    return (h, ys), (saved, reset, valid, weights)


def _scan_bwd(fwd, parts, res, cotangents):
    saved, reset, valid, weights = res
    dh_last, dys = cotangents

    def body(dh, inp):
        saved_t, dy_t, reset_t, valid_t = inp
        keep = valid_t[:, None]
        dh_in, dxp, factors = parts(saved_t, weights, dy_t + jnp.where(keep, dh, 0.0))
        dh_in = dh_in + jnp.where(keep, 0.0, dh)
        return jnp.where(reset_t[:, None], 0.0, dh_in), (dxp, factors)

    dh0, (dxp, factors) = jax.lax.scan(body, dh_last, (saved, dys, reset, valid), reverse=True)
    return dh0, dxp, None, None, _contract(factors)


scan_cell.defvjp(_scan_fwd, _scan_bwd)


# ---------------------------------------------------------------------------------------------
# The cells


class UserGRUBase(UserCell):
    """Shared parameters, checks and Eq. 3-5 of the user-based GRU cells (not used directly).

    Attributes:
      features: n, the hidden units.
      item_features: the width of the item part of ``x``; the rest of ``x`` is the user part.
      kernel_init, bias_init: initializers of every weight and bias (U(-0.1, 0.1), Table 1).
    """

    features: int
    item_features: int
    kernel_init: Initializer = symmetric_uniform(0.1)
    bias_init: Initializer = symmetric_uniform(0.1)

    extra_hidden: ClassVar[int] = 0  # further n-wide column blocks of ``hidden`` (Eq. 7 / 8)
    projected_blocks: ClassVar[int] = 3  # width of ``xp`` in units of n
    fused_scan: ClassVar[bool] = True  # scan() has a hand-written gradient (scan_cell)

    def setup(self):
        n = self.features
        if n < 1 or self.item_features < 1:
            raise ValueError(f"{type(self).__name__}: features ({n}) and item_features "
                             f"({self.item_features}) must be at least 1")
        self.hidden = self.param("hidden", self.hidden_init, (n, (2 + self.extra_hidden) * n))
        self.candidate = self.param("candidate", self.kernel_init, (n, n))
        # The item and user parts of u, r, k (Eq. 3-4), {"kernel", "bias"} and {"kernel"}, read as
        # arrays by the fused steps. The user part is n wide where the cell requires it; the
        # linear cell takes any width, known only at its first call (a Dense, used in project).
        self.item = self.param("item", self._dense_init, self.item_features, 3 * n, True)
        if self.required_user:
            self.user = self.param("user", self._dense_init, n, 3 * n, False)
        elif self.takes_user:  # (StandardUserGRU has no user kernel)
            self.user = nn.Dense(3 * n, use_bias=False, kernel_init=self.kernel_init, name="user")

    @nn.nowrap
    def hidden_init(self, key, shape, dtype=jnp.float32):
        return self.kernel_init(key, shape, dtype)

    @nn.nowrap
    def _dense_init(self, key, rows: int, width: int, bias: bool):
        """``{"kernel" [rows, width](, "bias" [width])}``, as ``nn.Dense`` names them."""
        k1, k2 = jax.random.split(key)
        out = {"kernel": self.kernel_init(k1, (rows, width))}
        if bias:
            out["bias"] = self.bias_init(k2, (width,))
        return out

    @property
    def projected_features(self) -> int:
        """The width of ``project(x)``, the input of ``step``."""
        return self.projected_blocks * self.features

    @nn.nowrap
    def split_input(self, x):
        """``x [..., E_i + E_v] -> (E_i i [..., E_i], E_v v [..., E_v])``, widths checked."""
        name, n, ei = type(self).__name__, self.features, self.item_features
        ev = x.shape[-1] - ei
        if ev < 1:
            raise ValueError(f"{name}: the input [item, user] is {x.shape[-1]} wide, so with "
                             f"item_features={ei} there is no user part (need at least 1)")
        if self.required_item and ei != n:
            raise ValueError(f"{name}: the item part must be as wide as the hidden state "
                             f"(features={n}), got item_features={ei}")
        if self.required_user and ev != n:
            raise ValueError(f"{name}: the user part must be as wide as the hidden state "
                             f"(features={n}), got {ev} (input width {x.shape[-1]} minus "
                             f"item_features={ei})")
        return x[..., :ei], x[..., ei:]

    @nn.nowrap
    def check_step(self, h, xp):
        name, n = type(self).__name__, self.features
        if h.shape[-1] != n:
            raise ValueError(f"{name}: the state is {h.shape[-1]} wide, features is {n}")
        if xp.shape[-1] != self.projected_features:
            raise ValueError(f"{name}: step takes project(x), {self.projected_features} wide; "
                             f"got {xp.shape[-1]}")

    @nn.nowrap
    def item_part(self, i):
        """``E_i i [..., E_i] -> [..., 3n]``: the item part of u, r, k with the bias."""
        return i @ self.item["kernel"] + self.item["bias"]

    def step(self, h, xp):
        """One step from ``project(x)``: ``h [..., n], xp [..., projected] -> (h', h')``."""
        self.check_step(h, xp)
        h = self.fused_step()(h, xp, *self.weights())
        return h, h

    def scan(self, h, xp, reset, valid):
        """``L`` steps at once, time-major: ``h [B, n], xp [L, B, projected], reset, valid
        [L, B] -> (h_L, ys [L, B, n])``. As ``jax.lax.scan`` of :meth:`step` where the state
        restarts from zeros at ``reset`` and is kept (``y`` still the step's output) where not
        ``valid``; its gradient is written out, with every weight's gradient one product after
        the scan (:func:`scan_cell`)."""
        self.check_step(h, xp[0])
        return scan_cell(*self.scan_parts(), h, xp, reset, valid, self.weights())

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(tuple(input_shape[:-1]) + (self.features,))


class LinearUserGRU(UserGRUBase):
    """Linear user integration (Eq. 3-5)::

        [u; r] = sigmoid(T_{3n,2n} [h; E_i i; E_v v])                  (3)
        k      = tanh(T (r * h) + T E_i i + T E_v v)                    (4)
        h'     = (1 - u) * h + u * k                                    (5)

    Eq. 4 applies r to h before the matrix product, as the paper writes it; flax's GRUCell
    computes ``r * (W h + b)`` instead. With a zero user part this is a plain GRU of the paper's
    form. ``xp = project(x)`` ``[..., 3n]`` holds all the input work; ``step`` does as much as a
    GRU step.
    """

    @property
    def blocks(self) -> tuple[Block, ...]:
        """u and r (gates, Eq. 3), then k's input part (the candidate, Eq. 4)."""
        n = self.features
        return (Block("u", 0, n, "gate"), Block("r", n, n, "gate"),
                Block("k", 2 * n, n, "candidate"))

    def project(self, x):
        """``x [..., E_i + E_v] -> [..., 3n]``: T E_i i + T E_v v + b for u, r, k."""
        i, v = self.split_input(x)
        return self.item_part(i) + self.user(v)

    def weights(self):
        return self.hidden, self.candidate

    @nn.nowrap
    def fused_step(self):
        return linear_step  # Eq. 3-5

    @nn.nowrap
    def scan_parts(self):
        return _linear_fwd, _linear_parts


class StandardUserGRU(LinearUserGRU):
    """Donkers et al.'s standard GRU: the user-based cell without the user (Eq. 3-5 with the
    user term removed; the paper's baseline, "a standard GRU network without any of our proposed
    extensions")::

        [u; r] = sigmoid(T_{2n,2n} [h; E_i i])                          (3) without E_v v
        k      = tanh(T (r * h) + T E_i i)                              (4) without T E_v v
        h'     = (1 - u) * h + u * k                                    (5)

    Everything else is the user-based cells': r applied to h before the product (Eq. 4, unlike
    :class:`hrnn_jax.cells.GRU`), U(-0.1, 0.1) initialisation, the same parameters less the user
    kernel (``hidden``, ``candidate``, ``item``). It equals a :class:`LinearUserGRU` with the same
    ``hidden``, ``candidate`` and ``item`` whose user vector is zero (the user kernel has no bias),
    step for step. The input is the item vector alone, ``x [..., item_features]``
    (``takes_user`` is False: a model gives it no user vector, see ``models.UserRNN``).
    ``xp = project(x)`` ``[..., 3n]``; the blocks, weights and steps are the linear cell's
    (inherited), only the input differs.
    """

    takes_user: ClassVar[bool] = False

    @nn.nowrap
    def split_input(self, x):
        """``x [..., E_i] -> (E_i i, None)``: the item vector alone, its width checked."""
        if x.shape[-1] != self.item_features:
            raise ValueError(f"{type(self).__name__}: the input is the item vector alone, "
                             f"item_features={self.item_features} wide; got {x.shape[-1]} (this "
                             "cell takes no user part)")
        return x, None

    def project(self, x):
        """``x [..., E_i] -> [..., 3n]``: T E_i i + b for u, r, k (Eq. 3-4)."""
        return self.item_part(self.split_input(x)[0])


class RectifiedUserGRU(UserGRUBase):
    """Rectified linear user integration (Eq. 6-7), then Eq. 3-5 with the filtered user vector::

        [kappa1; kappa2] = T_{3n,2n} [h; E_i i; E_v v]                   (7)
        w = 0 if E_v v < kappa1; omega E_v v if kappa1 < E_v v < kappa2; E_v v else   (6)
        then (3)-(5) with w in place of E_v v

    Eq. 7 sees the unfiltered user vector. Eq. 6 compares the user vector with kappa elementwise,
    so the user part must be n wide (a ValueError otherwise).

    Eq. 6 is a step function: its derivative w.r.t. kappa is zero almost everywhere, so with the
    exact filter Eq. 7's parameters never learn; and it does not say what happens where
    kappa1 > kappa2. Our choices (:func:`rectify`):

    * ``filter="straight_through"`` (default): the forward value is Eq. 6 exactly (what is
      evaluated is the paper's cell), the backward pass uses the derivatives of the sigmoid
      relaxation ``v * s1 * (omega + (1 - omega) s2)``, ``s_j = sigmoid((v - kappa_j) /
      temperature)``, so kappa1, kappa2 and v get gradients near the thresholds. Chosen over the
      relaxation because inference keeps the paper's hard filter; the price is a biased gradient.
    * ``filter="relaxed"``: the relaxation itself, value and gradient (a smooth cell, not Eq. 6).
    * ``filter="exact"``: Eq. 6 with autodiff: v gets the mask, kappa nothing.

    Where kappa1 > kappa2 all three read the cases in order: below kappa1 -> 0 (the first case
    wins), otherwise v unchanged (the middle case is empty). At a tie the upper case is taken.

    Attributes:
      omega: the leak of the middle case (0.2, the paper's grid-search value); in [0, 1].
      filter: ``"straight_through" | "relaxed" | "exact"``.
      temperature: the relaxation's scale (> 0); our choice, the paper has no relaxation.

    ``xp = project(x)`` ``[..., 6n]``: the item part of u, r, k with the bias, Eq. 7's input part
    with its bias, and E_v v. Eq. 7's h part (fused with Eq. 3's: ``h @ hidden [n, 4n]``), the
    filter and the filtered vector's product with the user kernel (``[n, 3n]``) run in ``step``.
    """

    omega: float = default(ModelConfig, "omega")
    filter: Filter = "straight_through"
    temperature: float = 0.1

    extra_hidden: ClassVar[int] = 2
    projected_blocks: ClassVar[int] = 6
    required_user: ClassVar[bool] = True

    def setup(self):
        super().setup()
        choices.check("filter", self.filter, Filter)
        if not 0.0 <= self.omega <= 1.0:
            raise ValueError(f"RectifiedUserGRU: omega must be in [0, 1], got {self.omega}")
        if self.filter != "exact" and not self.temperature > 0:
            raise ValueError(f"RectifiedUserGRU: temperature must be > 0, got {self.temperature}")
        self.kappa_input = nn.Dense(2 * self.features, kernel_init=self.kernel_init,
                                  bias_init=self.bias_init, name="threshold")

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The item parts of u, r (gates) and k (candidate), Eq. 7's input part (kappa1, kappa2),
        and E_v v."""
        n = self.features
        return (Block("u", 0, n, "gate"), Block("r", n, n, "gate"),
                Block("k", 2 * n, n, "candidate"), Block("kappa", 3 * n, 2 * n, "input"),
                Block("user", 5 * n, n, "input"))

    def project(self, x):
        """``x [..., E_i + n] -> [..., 6n]``: [T E_i i + b (u, r, k) | Eq. 7 input part | E_v v]."""
        i, v = self.split_input(x)
        return jnp.concatenate([self.item_part(i), self.kappa_input(x), v], axis=-1)

    def _kappa(self, hp, xp):
        """``(kappa1, kappa2)`` (Eq. 7) from ``hp = h @ hidden`` and ``xp``."""
        n = self.features
        kappa = hp[..., 2 * n:] + xp[..., 3 * n:5 * n]  # Eq. 7
        return kappa[..., :n], kappa[..., n:]

    def thresholds(self, h, x):
        """``(kappa1, kappa2)`` (Eq. 7) for ``h [..., n], x [..., E_i + n]`` (inspection)."""
        return self._kappa(h @ self.hidden, self.project(x))

    def filtered_user(self, h, x):
        """The filtered user vector w of Eq. 6 for ``h [..., n], x [..., E_i + n]`` (inspection)."""
        xp = self.project(x)
        return self._filter(self._kappa(h @ self.hidden, xp), xp)

    def _filter(self, kappa, xp):
        v = xp[..., 5 * self.features:]
        return rectify(v, *kappa, omega=self.omega, filter=self.filter,  # Eq. 6
                       temperature=self.temperature)

    def weights(self):
        return self.hidden, self.candidate, self.user["kernel"]

    @nn.nowrap
    def fused_step(self):
        return _rectified(self.omega, self.filter, self.temperature)  # Eq. 6-7, 3-5

    @nn.nowrap
    def scan_parts(self):
        return self.fused_step().scan_parts


class AttentionalUserGRU(UserGRUBase):
    """Attentional user integration (Eq. 8-10)::

        xi     = sigmoid(T h + T E_i i + T E_v v)                                     (8)
        [u; r] = sigmoid(T_{3n,2n} [h; (1 - xi) * E_i i; xi * E_v v])                  (9)
        k      = tanh(T (r * h) + T (1 - xi) * E_i i + T xi * E_v v)                   (10)
        h'     = (1 - u) * h + u * k                                                   (5)

    Eq. 9 weights item and user vectors elementwise by xi [n], so both parts must be n wide (a
    ValueError otherwise).

    Initialisation. The paper asks for the attention gate's parameters to start "close to zero".
    By default they start at exactly zero (``attention_kernel_init``, ``attention_bias_init``):
    then xi = sigmoid(0) = 0.5 everywhere, and the cell is NOT a plain GRU at initialisation: both
    the item and the user vectors enter at half their size (it equals a :class:`LinearUserGRU`
    with the item and user kernels halved). Pass other initializers for a different start; a
    large negative attention bias (xi -> 0) gives the paper-form GRU of the item input alone.

    ``xp = project(x)`` ``[..., 3n]``: Eq. 8's input part with its bias, E_i i and E_v v. Eq. 8's
    h part (fused with Eq. 9's: ``h @ hidden [n, 3n]``) and both input products (``[n, 3n]`` each,
    the inputs being weighted by xi, which depends on h) run in ``step``.
    """

    attention_kernel_init: Initializer = nn.initializers.zeros_init()
    attention_bias_init: Initializer = nn.initializers.zeros_init()

    extra_hidden: ClassVar[int] = 1
    projected_blocks: ClassVar[int] = 3
    required_item: ClassVar[bool] = True
    required_user: ClassVar[bool] = True

    def setup(self):
        super().setup()
        self.xi_input = nn.Dense(self.features, kernel_init=self.attention_kernel_init,
                                  bias_init=self.attention_bias_init, name="attention")

    @nn.nowrap
    def hidden_init(self, key, shape, dtype=jnp.float32):
        """Eq. 3's u, r columns from ``kernel_init``, Eq. 8's xi columns from
        ``attention_kernel_init``."""
        n = self.features
        k1, k2 = jax.random.split(key)
        return jnp.concatenate([self.kernel_init(k1, (shape[0], 2 * n), dtype),
                                self.attention_kernel_init(k2, (shape[0], n), dtype)], axis=-1)

    @property
    def blocks(self) -> tuple[Block, ...]:
        """Eq. 8's input part (the gate xi), then E_i i and E_v v."""
        n = self.features
        return (Block("xi", 0, n, "gate"), Block("item", n, n, "input"),
                Block("user", 2 * n, n, "input"))

    def project(self, x):
        """``x [..., 2n] -> [..., 3n]``: [Eq. 8 input part | E_i i | E_v v]."""
        i, v = self.split_input(x)
        return jnp.concatenate([self.xi_input(x), i, v], axis=-1)

    def _xi(self, hp, xp):
        """xi (Eq. 8) from ``hp = h @ hidden`` and ``xp``."""
        n = self.features
        return jax.nn.sigmoid(hp[..., 2 * n:] + xp[..., :n])  # Eq. 8

    def attention(self, h, x):
        """xi (Eq. 8) for ``h [..., n], x [..., 2n]`` (inspection)."""
        return self._xi(h @ self.hidden, self.project(x))

    def weights(self):
        return (self.hidden, self.candidate, self.item["kernel"], self.item["bias"],
                self.user["kernel"])

    @nn.nowrap
    def fused_step(self):
        return attentional_step  # Eq. 8-10, 5

    @nn.nowrap
    def scan_parts(self):
        return _attentional_fwd, _attentional_parts
