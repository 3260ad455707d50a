"""A causal temporal convolutional network (TCN) over user-parallel lanes.

Bai, Kolter, Koltun 2018, "An Empirical Evaluation of Generic Convolutional and Recurrent Networks
for Sequence Modeling" (https://arxiv.org/abs/1803.01271), Section 3: residual blocks of two
dilated causal 1-D convolutions with ReLU; block i has dilation 2^i; a 1x1 convolution matches
the residual's width where it differs. HRNN-meta (Ma & Narayanaswamy) names it as an encoder that
its control inputs make hierarchical without any change to it.

A TCN is not a cell: an output depends on the last ``receptive_field`` inputs, not on a state.
Over windows of a lane, the carry keeps each convolution's receptive-field buffer (the last
``(k - 1) d`` inputs of that convolution) with a flag per buffered position saying whether it
belongs to the lane's current user. Inside a window, an input is seen from step t only if it
belongs to the same user as t (``user_start`` starts a new user, whose history is empty): a new
user's first outputs are those of a sequence padded with zeros on the left, as in Bai et al.

Each step must be one event: lanes without hold steps (``data.make_lanes(close_at="never")``;
``meta.HRNNMeta`` asks for them), padding only at the end of a lane.

Choices: no weight normalisation and no dropout inside the blocks (Bai et al. use both; the model
applies its output dropout); ``kernel[i]`` multiplies the input ``i d`` steps back.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


class TCN(nn.Module):
    """``carry, y = tcn(carry, x [B, L, D], user_start [B, L])``, ``y [B, L, features]``.

    Attributes:
      features: channels of every block (the output width, H).
      levels: residual blocks; block i's convolutions have dilation 2^i.
      kernel_size: k, taps of every convolution.
    """

    features: int
    levels: int = 3
    kernel_size: int = 3

    @property
    def receptive_field(self) -> int:
        """Steps an output sees (itself included): 1 + 2 (k - 1) (2^levels - 1)."""
        return 1 + 2 * (self.kernel_size - 1) * (2 ** self.levels - 1)

    def buffer_lengths(self) -> list[int]:
        """Past inputs each convolution needs, in order (two per block): (k - 1) 2^i."""
        return [(self.kernel_size - 1) * 2 ** i for i in range(self.levels) for _ in range(2)]

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        """Empty buffers for ``input_shape = (B, D)``: ``{"buf": ([B, P, C], ...), "alive":
        ([B, P] bool, ...)}``, one per convolution (C = D for the first, features after)."""
        B, D = input_shape[0], input_shape[-1]
        widths = [D] + [self.features] * (2 * self.levels - 1)
        return {"buf": tuple(jnp.zeros((B, P, C), jnp.float32)
                             for P, C in zip(self.buffer_lengths(), widths)),
                "alive": tuple(jnp.zeros((B, P), bool) for P in self.buffer_lengths())}

    def _conv(self, name, x, buf, alive, seg, dilation):
        """One dilated causal convolution over ``[buffer, x]``; positions of another user than
        step t's are zeros. Returns the output and the new buffer and flags."""
        k, L, C = self.kernel_size, x.shape[1], x.shape[-1]
        kernel = self.param(f"{name}_kernel", nn.initializers.lecun_normal(),
                            (k, C, self.features))
        bias = self.param(f"{name}_bias", nn.initializers.zeros_init(), (self.features,))
        P = (k - 1) * dilation
        ext = jnp.concatenate([buf, x], axis=1)  # [B, P + L, C]
        seg_ext = jnp.concatenate([jnp.where(alive, 0, -1), seg], axis=1)  # -1: nobody's
        out = bias
        for i in range(k):  # tap i: the input i * dilation steps back
            start = P - i * dilation
            visible = seg_ext[:, start:start + L] == seg  # same user as step t
            out = out + jnp.where(visible[..., None], ext[:, start:start + L], 0.0) @ kernel[i]
        return out, ext[:, L:], seg_ext[:, L:] == seg[:, -1:]

    @nn.compact
    def __call__(self, carry, x, user_start):
        if x.ndim != 3 or user_start.shape != x.shape[:2]:
            raise ValueError(f"TCN takes x [B, L, D] and user_start [B, L], got {x.shape} and "
                             f"{user_start.shape}")
        # segment of each step: 0 = the user the carry's buffers belong to, +1 at each new user
        seg = jnp.cumsum(user_start.astype(jnp.int32), axis=1)
        bufs, alive = [], []
        h, j = x, 0
        for level in range(self.levels):
            residual = h
            for half in range(2):
                h, b, a = self._conv(f"block{level}_{half}", h, carry["buf"][j],
                                     carry["alive"][j], seg, 2 ** level)
                h = jax.nn.relu(h)
                bufs.append(b)
                alive.append(a)
                j += 1
            if residual.shape[-1] != self.features:  # 1x1 convolution on the residual
                residual = nn.Dense(self.features, name=f"block{level}_down")(residual)
            h = jax.nn.relu(h + residual)
        return {"buf": tuple(bufs), "alive": tuple(alive)}, h
