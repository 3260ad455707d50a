"""The gated recurrent unit with its input projection split out (a
:class:`~hrnn_jax.cells.base.SplitCell`).

:class:`GRU` is the same cell as ``flax.linen.GRUCell`` (same equations, same gate order; with
``reset_gate="before"`` Cho et al.'s and GRU4Rec's candidate instead) split in two methods, so
that the models can move the input projection out of the time scan:

* ``project(x)``: the input part ``W_x x + b`` of all three gates, ``[..., E] -> [..., 3H]``; it
  does not depend on the recurrent state, so a model computes it for all steps at once.
* ``step(h, xp)``: the recurrent part, ``[B, H], [B, 3H] -> [B, H]``.

With one-hot item inputs (GRU4Rec and HRNN use the item ID as a one-hot vector) ``project`` of a
one-hot vector is a row of ``W_x`` plus ``b``; the models then keep those rows as an item table of
width 3H and never call ``project`` (see ``hrnn_jax.models.session``).
"""
from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import linen as nn

from hrnn_jax import choices
from hrnn_jax.cells.base import Block, SplitCell

# Where the reset gate acts in the candidate: on the recurrent product (flax, cuDNN) or on the
# state before it (Cho et al. 2014, GRU4Rec, hgru4rec)
GRUReset = Literal["after", "before"]


class GRU(SplitCell):
    """Gated recurrent unit (Cho et al. 2014) with the input projection split out.

    Equations (as ``flax.linen.GRUCell``), with ``xp = W_x x + b_x`` split into three H-blocks:
        r = sigmoid(xp_r + W_hr h)
        z = sigmoid(xp_z + W_hz h)
        n = tanh(xp_n + r * (W_hn h + b_hn))            reset_gate="after" (the default)
        n = tanh(xp_n + W_hn (r * h) + b_hn)            reset_gate="before"
        h' = (1 - z) * n + z * h

    ``reset_gate`` says where the reset gate acts in the candidate. ``"after"`` (the default):
    on the recurrent product, as flax's ``GRUCell`` and cuDNN. ``"before"``: on the state before
    the product, as the unit of Cho et al., "Learning Phrase Representations using RNN
    Encoder-Decoder for Statistical Machine Translation" (EMNLP 2014, Eq. 5-8: h~ = tanh(W x +
    U (r * h))), the GRU of the paper Quadrana et al. (RecSys 2017) cite for theirs (Cho et al.,
    "On the Properties of Neural Machine Translation: Encoder-Decoder Approaches", SSST-8 2014);
    GRU4Rec (Hidasi et al., ICLR 2016) and the HRNN authors' code (mquad/hgru4rec) use it too.
    The cell's own default is flax's form, so that ``cells.GRU(H)`` is a drop-in for
    ``GRUCell`` and a spec without the field (every checkpoint saved before the option existed)
    rebuilds the cell it was saved from; every GRU of the registry's models takes the paper's
    form, ``ModelConfig.gru_reset = "before"``, chosen by measurement (README, "The GRU's reset
    gate"). Both forms have the same parameters, initialised alike (same seed, same values); in
    ``"before"`` b_hn is one more bias of the candidate, beside the input's b_n. The update (z
    keeps the old state) is Cho et al.'s Eq. 5 and flax's in both forms; hgru4rec's z weighs the
    candidate instead, the same family of functions (z -> 1 - z).

    With ``"after"`` the gates run through :func:`gru_gates`, whose gradient is written out to
    keep less memory for the backward pass (tested against autodiff through flax's ``GRUCell``);
    ``"before"`` is plain JAX code (autodiff), tested against a NumPy reference of its equations.
    """

    features: int
    kernel_init: Any = nn.initializers.lecun_normal()
    recurrent_kernel_init: Any = nn.initializers.orthogonal()
    reset_gate: GRUReset = "after"

    def __post_init__(self):
        choices.check("reset_gate", self.reset_gate, GRUReset)
        super().__post_init__()

    def setup(self):
        self.input = nn.Dense(3 * self.features, kernel_init=self.kernel_init, name="input")
        # W_hr, W_hz, W_hn as one [H, 3H] kernel; b_hn is the only recurrent bias.
        if self.reset_gate == "after":
            self.hidden = nn.Dense(3 * self.features, use_bias=False,
                                   kernel_init=self.recurrent_kernel_init, name="hidden")
        else:  # the same parameter (params["hidden"]["kernel"], same initial values), sliced
            self.hidden = _Kernel(self.features, 3 * self.features,
                                  self.recurrent_kernel_init, name="hidden")
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
        if self.reset_gate == "before":
            h = gru_gates_reset_before(xp, self.hidden(), h, self.b_hn)
            return h, h
        h = gru_gates(xp, self.hidden(h), h, self.b_hn)
        return h, h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape[:-1] + (self.features,))


class _Kernel(nn.Module):
    """The recurrent kernel ``[H, 3H]`` alone (``reset_gate="before"`` slices it): the parameter
    ``kernel`` of a bias-free ``nn.Dense`` of the same name, created by the same initialiser."""

    rows: int
    cols: int
    kernel_init: Any

    @nn.compact
    def __call__(self):
        return self.param("kernel", self.kernel_init, (self.rows, self.cols), jnp.float32)


def gru_gates_reset_before(xp, kernel, h, b_hn):
    """The GRU's gates with the reset gate on the state (Cho et al. 2014, GRU4Rec): ``xp = W_x x
    + b_x [..., 3H]`` (blocks r, z, n), the recurrent ``kernel [H, 3H]``, the state ``h [..., H]``
    and ``b_hn [H]``; returns h'."""
    H = h.shape[-1]
    rz = jax.nn.sigmoid(xp[..., : 2 * H] + h @ kernel[:, : 2 * H])  # Cho Eq. 7-8: r, z
    r, z = rz[..., :H], rz[..., H:]
    n = jnp.tanh(xp[..., 2 * H:] + (r * h) @ kernel[:, 2 * H:] + b_hn)  # Cho Eq. 6: U (r * h)
    return (1.0 - z) * n + z * h  # Cho Eq. 5: z keeps the old state


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
