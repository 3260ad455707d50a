"""HCRNN (Song, Ji, Park & Moon, AAAI 2019) as a model of the library's contract: an HCRNN cell
(``hrnn_jax.cells.hcrnn``) scanned over each user's whole sequence, its global context proportion
theta inferred by an amortised network, the bi-channel attention over the user's past steps and
the bi-linear decoder tied to the item embedding.

Global context by amortised inference (Eq. 11-12, 30-33):

    f_t            = elu(s_t W_f + b_f)                                 (f: one ELU layer, as
                                                                          the authors' code)
    mu_t           = f_t W_q1 + b_q1                                    (32)
    log sigma_t    = f_t W_q2 + b_q2                                    (33)
    theta~_t ~ N(mu_t, diag(sigma_t^2)),  theta_t = softmax(theta~_t)   (11, 12)

with one reparameterised draw per step in training and ``theta~_t = mu_t`` at evaluation. The
paper writes theta(x_{1:T}) for the whole sequence, which would let a prediction at step t read
the items after t (its own target among them). Ours is causal: ``s_t`` is the mean embedding of
the user's items up to and including the step's input (a running mean in the carry, reset at a new
user), so theta_t reads only the prefix; a test changes a future item and checks that earlier
scores do not move. The authors' code gets the same effect differently: it trains on every prefix
as a separate example and infers one theta per prefix from the set of its items (a sum of the
distinct items' embeddings); a running mean keeps one pass per sequence (a sum grows without bound
over the long histories our lanes stream). The KL term of the ELBO (Eq. 30) against the standard
normal prior, ``0.5 sum_k (mu^2 + sigma^2 - log sigma^2 - 1)`` per step, enters the training loss
as an extra term (``apply``'s third output, averaged over the steps with a target) times
``kl_weight``. Eq. 30 as written subtracts the KL from the log-likelihood with weight 1 (with
theta inferred per step here, ``kl_weight=1`` puts each step's KL beside its own cross-entropy);
the default, 0.001, is the authors' code's (``reg_lambda``, beside their mean cross-entropy), a
deviation from Eq. 30 that the paper does not state. K = 50 as the authors' code (the paper gives
no K).

Bi-channel attention (Eq. 25-27): each step t attends over the user's last ``history`` steps
j <= t (itself included, as the authors' code; they attend over whole prefixes of at most 99
steps) in two channels, the local contexts by scaled dot products
``(c_t W_c1)(c_j W_c2)^T / sqrt(H)`` and the temporary contexts additively
``v^T sigmoid(h_t W_h1 + h_j W_h2)``, both with values h_j. Past steps outlive a window: the carry
keeps the last ``history`` steps of each lane (c, h and a validity flag), cleared at a new user.
The decoder (Eq. 28) scores item i by ``e_i^T W_B [h_t, h^c_t, h^h_t]`` with ``e_i`` the input
embedding (tied, no bias): :meth:`HCRNN.apply` returns ``W_B [...]`` (width D, the model's
``hidden``) and the ``scoring_params`` hook makes the item embedding the output table. Without
``attention`` (``attention="none"``: HCRNN-1/2/3 as the paper describes them) the decoder reads
``W_B h_t``. The authors' code, which produced the paper's HCRNN-1/2/3 rows, puts a NARM-style
attention there instead (their ``normal_att``), which the paper does not describe:
``attention="additive"`` is that, Eq. 26-27's temporary channel alone, ``W_B [h_t, h^h_t]``.

The tied table is dense (``row_tables`` is empty): the full softmax reads every row at every step,
so a row-sparse update would touch them all anyway. ``W_d >= 0`` (HCRNN-2/3) is kept by the
``constraints`` hook, a projection the train step applies after every update.

Dropout as the paper: 0.25 on the item embeddings fed to the cell and to f, 0.5 on the decoder's
input. Initialisation as the authors' code: the item table from N(0, 0.1^2)
(``models.tied_embedding``; GRU4Rec's smaller uniform left the tied decoder's logits near zero
and HCRNN-3+Bi 2.3 points of R@20 short of the paper on CiteULike), every matrix
Glorot-uniform, biases zero.

Measured against the paper on the authors' CiteULike split (``experiments/song2019_hcrnn.py
--data DIR --format hcrnn --models gru,hcrnn-3-bi``, one run, figures in the README): HCRNN-3+Bi
R@20 25.03 and M@20 8.76 (Table 3: 25.81 / 8.70), within 10%, and above GRU4Rec with its 100-d
item embedding (23.58 / 8.39; paired t-test over the 360 test users: p = 0.035 for R@20, 0.052
for M@20).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from hrnn_jax import cells, choices, precision
from hrnn_jax.cells.hcrnn import HCRNNCell
from hrnn_jax.config import ModelConfig, default
from hrnn_jax.models import attention_buffer
from hrnn_jax.models.contract import Capabilities, Model, Output, Params
from hrnn_jax.models.layers import (
    dense,
    dense_params,
    dropout_mask,
    fan_uniform,
    target_mean,
    tied_embedding,
    tied_scoring_params,
)

Attention = Literal["bi", "additive", "none"]


@dataclasses.dataclass(frozen=True)
class HCRNN(Model):
    """HCRNN-1/2/3 (``variant``) over items 1..``n_items``; embedding and local context
    ``embed_dim`` (D), ``hidden`` temporary units (H), ``n_contexts`` global contexts (K);
    ``history`` past steps attended. ``attention``: ``"bi"`` the bi-channel attention ("+Bi",
    Eq. 25-27), ``"none"`` the decoder reads h_t alone (the paper's HCRNN-1/2/3), ``"additive"``
    one additive attention over the temporary contexts, the authors' code's HCRNN-1/2/3 (see the
    module doc). ``session_cell`` is built from these (an
    :class:`hrnn_jax.cells.HCRNNCell`)."""

    n_items: int
    embed_dim: int = default(ModelConfig, "hidden")
    hidden: int = default(ModelConfig, "hidden")
    n_contexts: int = default(ModelConfig, "contexts")
    variant: int = 3
    attention: Attention = "bi"
    attention_history: int = default(ModelConfig, "attention_history")
    kl_weight: float = default(ModelConfig, "kl_weight")
    dropout_input: float = 0.25
    dropout_output: float = 0.5


    def __post_init__(self):
        if self.variant not in (1, 2, 3):
            raise ValueError(f"HCRNN: variant must be 1, 2 or 3, got {self.variant}")
        choices.check("HCRNN attention", self.attention, Attention)
        if min(self.n_items, self.embed_dim, self.hidden, self.n_contexts,
               self.attention_history) < 1:
            raise ValueError("HCRNN: n_items, embed_dim, hidden, n_contexts and "
                             "attention_history must be >= 1")
        if not (0 <= self.dropout_input < 1 and 0 <= self.dropout_output < 1
                and self.kl_weight >= 0):
            raise ValueError("HCRNN: dropouts must be in [0, 1) and kl_weight >= 0")

    @property
    def session_cell(self) -> HCRNNCell:
        return HCRNNCell(self.hidden, context_dim=self.embed_dim,
                         n_contexts=self.n_contexts, variant=self.variant)

    @property
    def output_width(self) -> int:
        """The decoder's D (scored against the embeddings)."""
        return self.embed_dim

    @property
    def capabilities(self) -> Capabilities:
        """Each user's whole sequence; every table dense (the tied table is read whole by the
        full softmax, module docstring)."""
        return Capabilities(row_tables={}, whole_sequence=True, tables={"item_in": "item"})

    # -- parameters and carry ----------------------------------------------------------------
    def init(self, rng) -> Params:
        N1, D, H, K = self.n_items + 1, self.embed_dim, self.hidden, self.n_contexts
        k = iter(jax.random.split(rng, 12))
        cell = self.session_cell
        x = jnp.zeros((1, D + K))

        def u(*shape):  # Glorot's uniform over the shape's two fans
            return fan_uniform(next(k), *shape)

        Z = {"bi": 3, "additive": 2, "none": 1}[self.attention] * H
        params = {
            "item_in": tied_embedding(next(k), N1, D),  # N(0, 0.1^2), the authors' draw
            "session": cell.init(next(k), cell.initialize_carry(None, x.shape), x)["params"],
            "infer": dense_params(next(k), D, D), "mu": dense_params(next(k), D, K),  # f, (32)
            "log_sigma": dense_params(next(k), D, K),  # (33)
            "decoder": u(Z, D),  # W_B (28)
        }
        if self.attention == "bi":  # (25), (26)
            params["attend"] = {"c_query": u(D, H), "c_key": u(D, H), "h_query": u(H, H),
                                "h_key": u(H, H), "v": u(H)}
        elif self.attention == "additive":  # (26)
            params["attend"] = {"h_query": u(H, H), "h_key": u(H, H), "v": u(H)}
        return params

    def init_carry(self, batch_size: int):
        B, D, H, T = batch_size, self.embed_dim, self.hidden, self.attention_history
        carry = {"cell": self.session_cell.initialize_carry(None, (B, D + self.n_contexts)),
                 "sum": jnp.zeros((B, D)), "count": jnp.zeros((B,))}
        if self.attention == "bi":
            carry.update(attention_buffer.empty_buffer(B, T, c=D, h=H))
        elif self.attention == "additive":
            carry.update(attention_buffer.empty_buffer(B, T, h=H))
        return carry

    def constraints(self, params: Params) -> Params:
        """The projection after each update: W_d >= 0 (Eq. 21-22)."""
        return {**params, "session": self.session_cell.constraints(params["session"])}

    def scoring_params(self, params, *, rng=None, train=False):
        """The decoder tied to the item embedding (Eq. 28): no separate output table, no bias."""
        return tied_scoring_params(params)

    # -- the forward pass --------------------------------------------------------------------
    def _prefix_means(self, carry, e, batch):
        """Running mean of the user's input embeddings up to each step ``[B, L, D]`` and the
        carried sum and count (reset at a new user, unchanged on padding)."""
        return attention_buffer.prefix_means(carry["sum"], carry["count"], e, batch)

    def _theta(self, params, means, rng, train):
        """theta_t and the per-step KL (Eq. 11-12, 30-33)."""
        f = jax.nn.elu(dense(means, params["infer"]))
        mu = dense(f, params["mu"])  # (32)
        log_sigma = dense(f, params["log_sigma"])  # (33)
        t = mu
        if train:
            t = mu + jnp.exp(log_sigma) * jax.random.normal(rng, mu.shape)  # (11)
        kl = 0.5 * (mu**2 + jnp.exp(2 * log_sigma) - 2 * log_sigma - 1.0).sum(-1)
        return jax.nn.softmax(t, axis=-1), kl  # (12)

    def _scan(self, params, carry, xp, batch, trace=False):
        """The cell over the window, a new user starting from zeros: ``(carry, c [B, L, D], h
        [B, L, H], gates or None)``; with ``trace`` the gates of every step too."""
        cell, p = self.session_cell, {"params": params["session"]}
        zero = cell.initialize_carry(None, (xp.shape[0], self.embed_dim + self.n_contexts))

        def step(s, x_t):
            if trace:
                s_new, h, gates = cell.apply(p, s, x_t, method="trace_step")
            else:
                (s_new, h), gates = cell.apply(p, s, x_t, method="step"), None
            return s_new, (s_new, h, gates)

        state, (cs, hs, gates) = cells.masked_scan(
            step, carry, jnp.swapaxes(xp, 0, 1), reset=batch["user_start"].T, fresh=zero,
            valid=batch["valid"].T)
        c = jnp.swapaxes(cs[0], 0, 1)  # [B, L, D]
        h = jnp.swapaxes(hs, 0, 1)  # [B, L, H]
        gates = None if gates is None else jax.tree_util.tree_map(
            lambda a: jnp.swapaxes(a, 0, 1), gates)
        return state, c, h, gates

    def _attend(self, params, carry, c, h, batch):
        """The attention over the user's steps j <= t in the buffer and the window: the decoder's
        input ``z`` (``[h_t, h^c_t, h^h_t]`` for "bi", Eq. 25-28; ``[h_t, h^h_t]`` for
        "additive"), the weights of each channel and the new buffer."""
        a = params["attend"]
        bi = self.attention == "bi"
        past = attention_buffer.extend(carry, {"c": c, "h": h} if bi else {"h": h}, batch)
        keys_h = past.keys["h"]  # [B, T + L, H]
        s_h = attention_buffer.additive_scores(h @ a["h_query"], keys_h @ a["h_key"],
                                               a["v"])  # (26)
        w_h = attention_buffer.masked_softmax(s_h, past.visible)
        h_h = jnp.einsum("blk,bkh->blh", w_h, keys_h)  # (27), values h_j in both channels
        if not bi:
            return jnp.concatenate([h, h_h], axis=-1), {"temporary": w_h}, past.buffer
        H = self.hidden
        s_c = jnp.einsum("blh,bkh->blk", c @ a["c_query"],
                         past.keys["c"] @ a["c_key"]) / np.sqrt(H)  # (25)
        w_c = attention_buffer.masked_softmax(s_c, past.visible)
        h_c = jnp.einsum("blk,bkh->blh", w_c, keys_h)  # (27)
        z = jnp.concatenate([h, h_c, h_h], axis=-1)  # [h_t, h^c_t, h^h_t] (28)
        return z, {"local": w_c, "temporary": w_h}, past.buffer

    def _forward(self, params, carry, batch, rng, train, trace=False):
        r_in, r_f, r_theta, r_out = jax.random.split(rng, 4) if rng is not None else (None,) * 4
        e = precision.take_rows(params["item_in"], batch["item"])  # [B, L, D]
        means, s, n = self._prefix_means(carry, e, batch)
        m_f = dropout_mask(r_f, self.dropout_input, means.shape, train)
        theta, kl = self._theta(params, means if m_f is None else means * m_f, r_theta, train)
        m_in = dropout_mask(r_in, self.dropout_input, e.shape, train)
        x = jnp.concatenate([e if m_in is None else e * m_in, theta], axis=-1)
        xp = self.session_cell.apply({"params": params["session"]}, x, method="project")
        cell_state, c, h, gates = self._scan(params, carry["cell"], xp, batch, trace)
        new = {**carry, "cell": cell_state, "sum": s, "count": n}
        z, weights = h, None
        if self.attention != "none":
            z, weights, buf = self._attend(params, carry, c, h, batch)
            new.update(buf)
        m_out = dropout_mask(r_out, self.dropout_output, z.shape, train)
        y = (z if m_out is None else z * m_out) @ params["decoder"]  # W_B [...] (28)
        kl_mean = target_mean(kl, batch["target"])
        return new, y, kl_mean, {"gates": gates, "attention": weights, "theta": theta}

    def apply(self, params, carry, batch, *, rng=None, train=False) -> Output:
        """``y [B, L, D]``; in training ``extra`` holds ``{"kl": kl_weight * mean KL}``."""
        carry, y, kl, _ = self._forward(params, carry, batch, rng, train)
        extra = {"kl": self.kl_weight * kl} if train and self.kl_weight > 0 else {}
        return Output(carry, y, extra)

    def trace(self, params, carry, batch):
        """The analyses' inspection of one window at evaluation: ``(carry, y, {"gates": {"r",
        "drift", "local_gate", "alpha"} each [B, L, ...], "attention": {"local", "temporary"}
        [B, L, history + L] (None without attention; key k < history is the buffer's slot k,
        k >= history the window's step k - history), "theta": [B, L, K]})``."""
        carry, y, _, info = self._forward(params, carry, batch, None, False, trace=True)
        return carry, y, info
