"""The HCRNN cells of Song, Ji, Park & Moon, "Hierarchical Context Enabled Recurrent Neural Network
for Recommendation" (AAAI 2019), in the flax recurrent convention.

A cell keeps two contexts in its carry ``(c, h)``: the local context ``c [B, D]`` (as wide as the
item embedding) and the temporary context ``h [B, H]``. The global context is a memory
``M [K, D]`` (a parameter) and the step's global context proportion ``theta [B, K]`` (a
probability vector inferred outside the cell, ``hrnn_jax.models.hcrnn``). The cell's input is
``[x_t, theta_t]`` (``[B, D + K]``), its output ``h_t``. An input of width D alone (a model that
infers no theta, e.g. ``models.HRNN`` with this cell as its session cell) means the uniform
proportion theta = 1/K: every global context weighs the same in Eq. 13.

HCRNN-1 (Eq. 13-20):

    alpha_t^(k) = softmax_k( v^T sigmoid(h_{t-1} W_ha + (theta^(k) M^(k)) W_ta) )    (13)
    c~_t  = sum_k alpha_t^(k) M^(k)                                                 (14)
    G^c_t = sigmoid(x_t W_xl + h_{t-1} W_hl + c_{t-1} W_cl + b_l)                   (15)
    c_t   = (1 - G^c_t) * c_{t-1} + G^c_t * c~_t                                    (16)
    z_t   = sigmoid(x_t W_xz + h_{t-1} W_hz + c_t W_cz + b_z)                       (17)
    r_t   = sigmoid(x_t W_xr + h_{t-1} W_hr + c_t W_cr + b_r)                       (18)
    h~_t  = (r_t * h_{t-1}) W_hh + x_t W_xh + b_h                                   (19)
    h_t   = (1 - z_t) * h_{t-1} + z_t * tanh(h~_t)                                  (20)

HCRNN-2 replaces (18) by ``r_t = sigmoid(x_t W_xr + h_{t-1} W_hr + (x_t * c_t) W_d + b_r)``,
``W_d >= 0`` (21). HCRNN-3 adds the drift gate ``G^d_t = sigmoid((x_t * c_t) W_d + b_d)``,
``W_d >= 0`` (22), takes ``r_t = sigmoid(x_t W_xr + h_{t-1} W_hr + b_r)`` (23) and
``h~_t = (r_t * (G^d_t * h_{t-1})) W_hh + x_t W_xh + b_h`` (24).

Choices (the paper is silent or the authors' code, github gtshs2/HCRNN, differs):

* Eq. 18 reads the new local context ``c_t`` as the paper writes it; the authors' HCRNN-1 cell
  reads ``c_{t-1}`` there (their ``HCRNN_cell_v1``); HCRNN-2/3 agree with the paper.
* The attention's inner width (``W_ha [H, H]``, ``W_ta [D, H]``, ``v [H]``) is H, no bias, as
  the authors' code.
* ``W_d >= 0`` (parameter ``drift/kernel``): initialised as the absolute value of a Glorot draw
  (so the constraint holds from the first step; the authors' code draws Glorot and clips after
  the first update) and kept by projection after every update (:func:`project_nonnegative`, the
  models' ``constraints`` hook that ``training.make_train_step`` applies; the paper: "a
  projection operator"; the code: clip to [1e-12, inf)).
* Biases start at zero; weights Glorot-uniform, ``M`` too (as the authors' code).

The input projections (every ``x_t W`` and ``b``) do not depend on the carry:
:meth:`HCRNNCell.project` computes them for all steps at once and :meth:`HCRNNCell.step` is the
recurrent part, as ``cells.GRU``. :meth:`HCRNNCell.trace_step` returns the gates too (``r``,
``drift``, ``local_gate``, ``alpha``) for the paper's analyses.
"""
from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from hrnn_jax.cells.base import Block, SplitCell
from hrnn_jax.config import ModelConfig, default

VARIANTS = (1, 2, 3)
glorot = nn.initializers.glorot_uniform()


def _abs_glorot(key, shape, dtype=jnp.float32):
    """A Glorot-uniform draw made non-negative (W_d >= 0 from the start)."""
    return jnp.abs(glorot(key, shape, dtype))


class HCRNNCell(SplitCell):
    """HCRNN-1, -2 or -3 (``variant``) with H = ``features`` temporary units, local context and
    item embedding of width ``context_dim`` (D) and ``n_contexts`` (K) global contexts.

    ``carry = (c [B, D], h [B, H])``; input ``[B, D + K]`` (item embedding, then theta); output
    ``h_t [B, H]``. See the module docstring for the equations.
    """

    features: int
    context_dim: int
    n_contexts: int = default(ModelConfig, "contexts")
    variant: int = 3

    one_hot_input: ClassVar[bool] = False  # step reads the item embedding itself (x * c_t)

    def setup(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"HCRNNCell: variant must be 1, 2 or 3, got {self.variant}")
        H, D, K = self.features, self.context_dim, self.n_contexts
        # x_t W_xl + b_l (D) | x_t W_xz + b_z | x_t W_xr + b_r | x_t W_xh + b_h (H each)
        self.x_in = nn.Dense(D + 3 * H, kernel_init=glorot, name="x_in")
        # h_{t-1} W_hl (D) | h_{t-1} W_hz | h_{t-1} W_hr (H each)
        self.h_in = nn.Dense(D + 2 * H, use_bias=False, kernel_init=glorot, name="h_in")
        self.memory = self.param("memory", glorot, (K, D))  # M_global
        self.theta_alpha = self.param("theta_alpha", glorot, (D, H))  # W_ta (13)
        self.h_alpha = self.param("h_alpha", glorot, (H, H))  # W_ha (13)
        self.v_alpha = self.param("v_alpha", glorot, (H, 1))  # v (13)
        self.c_local = self.param("c_local", glorot, (D, D))  # W_cl (15)
        self.c_update = self.param("c_update", glorot, (D, H))  # W_cz (17)
        self.candidate = self.param("candidate", glorot, (H, H))  # W_hh (19)
        if self.variant == 1:
            self.c_reset = self.param("c_reset", glorot, (D, H))  # W_cr (18)
        else:  # W_d >= 0 (21, 22)
            self.drift = nn.Dense(H, use_bias=self.variant == 3, kernel_init=_abs_glorot,
                                  name="drift")

    @property
    def projected_features(self) -> int:
        return 2 * self.context_dim + 3 * self.features + self.n_contexts

    @property
    def blocks(self) -> tuple[Block, ...]:
        """x_t (passed through), the input parts of G^c (15), z (17), r (18), h~ (19), theta."""
        H, D, K = self.features, self.context_dim, self.n_contexts
        return (Block("x", 0, D, "input"), Block("local", D, D, "gate"),
                Block("z", 2 * D, H, "gate"), Block("r", 2 * D + H, H, "gate"),
                Block("n", 2 * D + 2 * H, H, "candidate"),
                Block("theta", 2 * D + 3 * H, K, "input"))

    def project(self, inputs):
        """The carry-free parts of a step, ``[..., D + K] -> [..., D + (D + 3H) + K]``: the item
        embedding itself, its projections with the biases, and theta (its term of Eq. 13,
        ``(theta^(k) M^(k)) W_ta = theta^(k) (M^(k) W_ta)``, is formed in the step from the
        K x H product, not stored per step as a ``[K, H]`` block)."""
        D, K = self.context_dim, self.n_contexts
        x = inputs[..., :D]
        if inputs.shape[-1] == D:  # no theta given (e.g. as models.HRNN's session cell): uniform
            theta = jnp.full(inputs.shape[:-1] + (K,), 1.0 / K, inputs.dtype)
        else:
            theta = inputs[..., D:D + K]
        return jnp.concatenate([x, self.x_in(x), theta], axis=-1)

    def _step(self, carry, xp):
        c, h = carry
        H, D = self.features, self.context_dim
        x, xw, theta = xp[..., :D], xp[..., D:2 * D + 3 * H], xp[..., 2 * D + 3 * H:]
        att = theta[..., :, None] * (self.memory @ self.theta_alpha)  # (theta^(k) M^(k)) W_ta
        hw = self.h_in(h)
        score = jax.nn.sigmoid((h @ self.h_alpha)[..., None, :] + att) @ self.v_alpha  # (13)
        alpha = jax.nn.softmax(score[..., 0], axis=-1)  # [B, K]
        c_tilde = alpha @ self.memory  # (14)
        local = jax.nn.sigmoid(xw[..., :D] + hw[..., :D] + c @ self.c_local)  # (15)
        c = (1.0 - local) * c + local * c_tilde  # (16)
        z = jax.nn.sigmoid(xw[..., D:D + H] + hw[..., D:D + H] + c @ self.c_update)  # (17)
        pre_r = xw[..., D + H:D + 2 * H] + hw[..., D + H:D + 2 * H]
        drift = None
        if self.variant == 1:
            r = jax.nn.sigmoid(pre_r + c @ self.c_reset)  # (18)
            kept = r * h
        elif self.variant == 2:
            r = jax.nn.sigmoid(pre_r + self.drift(x * c))  # (21)
            kept = r * h
        else:
            drift = jax.nn.sigmoid(self.drift(x * c))  # (22)
            r = jax.nn.sigmoid(pre_r)  # (23)
            kept = r * (drift * h)  # (24)
        h_tilde = kept @ self.candidate + xw[..., D + 2 * H:]  # (19) / (24)
        h = (1.0 - z) * h + z * jnp.tanh(h_tilde)  # (20)
        gates = {"r": r, "drift": drift if drift is not None else jnp.ones_like(r),
                 "local_gate": local, "alpha": alpha}
        return (c, h), gates

    def step(self, carry, xp):
        """One recurrent step from :meth:`project`'s output: ``(carry', h_t)``."""
        carry, _ = self._step(carry, xp)
        return carry, carry[1]

    def trace_step(self, carry, xp):
        """:meth:`step` with the gate values: ``(carry', h_t, {"r", "drift" (ones for HCRNN-1/2),
        "local_gate", "alpha"})``."""
        carry, gates = self._step(carry, xp)
        return carry, carry[1], gates

    @staticmethod
    def constraints(params: Any) -> Any:
        """The projection onto W_d >= 0 of this cell's parameters (:func:`project_nonnegative`):
        a model with this cell applies it after every update."""
        return project_nonnegative(params)

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        batch = input_shape[:-1]
        return (jnp.zeros(batch + (self.context_dim,)), jnp.zeros(batch + (self.features,)))


def project_nonnegative(params: Any) -> Any:
    """``params`` with every ``drift`` kernel (W_d of Eq. 21-22) clipped at 0: the projection
    onto the constraint ``W_d >= 0`` (the models' ``constraints`` hook)."""
    def fix(path, leaf):
        keys = [getattr(k, "key", None) for k in path]
        return jnp.maximum(leaf, 0.0) if keys[-2:] == ["drift", "kernel"] else leaf
    return jax.tree_util.tree_map_with_path(fix, params)
