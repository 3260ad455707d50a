"""The gated recurrent unit with its input projection split out (a
:class:`~hrnn_jax.cells.base.SplitCell`).

:class:`GRU` is the same cell as ``flax.linen.GRUCell`` (same equations, same gate order) split in
two methods, so that the models can move the input projection out of the time scan:

* ``project(x)``: the input part ``W_x x + b`` of all three gates, ``[..., E] -> [..., 3H]``; it
  does not depend on the recurrent state, so a model computes it for all steps at once.
* ``step(h, xp)``: the recurrent part, ``[B, H], [B, 3H] -> [B, H]``.

With one-hot item inputs (GRU4Rec and HRNN use the item ID as a one-hot vector) ``project`` of a
one-hot vector is a row of ``W_x`` plus ``b``; the models then keep those rows as an item table of
width 3H and never call ``project`` (see ``hrnn_jax.models.session``).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from hrnn_jax.cells.base import Block, SplitCell


class GRU(SplitCell):
    """Gated recurrent unit (Cho et al. 2014) with the input projection split out.

    Equations (as ``flax.linen.GRUCell``), with ``xp = W_x x + b_x`` split into three H-blocks:
        r = sigmoid(xp_r + W_hr h)
        z = sigmoid(xp_z + W_hz h)
        n = tanh(xp_n + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    The gates run through :func:`gru_gates`, whose gradient is written out to keep less memory for
    the backward pass (tested against autodiff through flax's ``GRUCell``).
    """

    features: int
    kernel_init: Any = nn.initializers.lecun_normal()
    recurrent_kernel_init: Any = nn.initializers.orthogonal()

    def setup(self):
        self.input = nn.Dense(3 * self.features, kernel_init=self.kernel_init, name="input")
        # W_hr, W_hz, W_hn as one [H, 3H] matmul; b_hn is the only recurrent bias.
        self.hidden = nn.Dense(3 * self.features, use_bias=False,
                               kernel_init=self.recurrent_kernel_init, name="hidden")
        self.b_hn = self.param("b_hn", nn.initializers.zeros_init(), (self.features,))

    @property
    def projected_features(self) -> int:
        return 3 * self.features

    @property
    def blocks(self) -> tuple[Block, ...]:
        """r and z (gates), then n (the candidate), H each."""
        H = self.features
        return (Block("r", 0, H, "gate"), Block("z", H, H, "gate"),
                Block("n", 2 * H, H, "candidate"))

    def project(self, x):
        """Input part of the gates, ``[..., E] -> [..., 3H]`` (order r, z, n)."""
        return self.input(x)

    def step(self, h, xp):
        """One recurrent step from projected inputs: ``[B, H], [B, 3H] -> (h', h')``."""
        h = gru_gates(xp, self.hidden(h), h, self.b_hn)
        return h, h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape[:-1] + (self.features,))


@jax.custom_vjp
def gru_gates(xp, hp, h, b_hn):
    """The GRU's gates given both projections, ``xp = W_x x + b_x`` and ``hp = W_h h``
    (``[..., 3H]``, blocks r, z, n), the state ``h [..., H]`` and the bias ``b_hn [H]``: returns h'.
    Same function as plain JAX code; its hand-written gradient keeps only r, z, n, W_hn h + b_hn and
    h for the backward pass (autodiff kept about twice as many ``[B, H]`` arrays per step), which is
    what a scan over many steps and seeds stores."""
    return _gates(xp, hp, h, b_hn)[0]


def _gates(xp, hp, h, b_hn):
    H = h.shape[-1]
    rz = jax.nn.sigmoid(xp[..., : 2 * H] + hp[..., : 2 * H])
    r, z = rz[..., :H], rz[..., H:]
    hn = hp[..., 2 * H:] + b_hn
    n = jnp.tanh(xp[..., 2 * H:] + r * hn)
    return (1.0 - z) * n + z * h, (rz, n, hn, h)


def _gates_bwd(res, g):
    rz, n, hn, h = res
    H = h.shape[-1]
    r, z = rz[..., :H], rz[..., H:]
    d_pre_n = g * (1.0 - z) * (1.0 - n * n)  # through tanh
    d_pre_rz = jnp.concatenate([d_pre_n * hn, g * (h - n)], axis=-1) * rz * (1.0 - rz)
    d_hn = d_pre_n * r
    d_xp = jnp.concatenate([d_pre_rz, d_pre_n], axis=-1)
    d_hp = jnp.concatenate([d_pre_rz, d_hn], axis=-1)
    d_b = d_hn.reshape(-1, H).sum(0)
    return d_xp, d_hp, g * z, d_b


gru_gates.defvjp(_gates, _gates_bwd)
