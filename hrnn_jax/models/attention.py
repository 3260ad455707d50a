"""The attention baselines of Song et al.'s Table 3 (HCRNN, AAAI 2019), NARM and STAMP, as models of
the library's contract, run over each user's whole sequence (``targets="user"`` lanes) like HCRNN.

Both attend over a user's past steps, which outlive a window: each lane's last ``attention_history``
steps are kept in the carry (``hrnn_jax.models.attention_buffer``), cleared at a new user; step t
attends over its user's steps j <= t among them (itself included), never past its user's start or
into padding. Both decoders are tied to the item embedding (``scoring_params`` makes ``item_in`` the
output table, no bias): ``apply`` returns ``y [B, L, D]`` and item i scores ``<y_t, e_i>``. The tied
table is dense (``row_tables`` is empty), as HCRNN's: the full softmax the paper trains with reads
every row at every step, so a row-sparse update would touch them all anyway.

NARM (Li, Ren, Chen, Ren, Lian & Ma, CIKM 2017), equation numbers of that paper::

    h_t     = GRU(h_{t-1}, e_t)                       (1-4)  one GRU over the user's sequence
    c^g_t   = h_t                                     (5)    global encoder
    c^l_t   = sum_j alpha_tj h_j                      (6)    local encoder, j over the visible steps
    alpha_tj = softmax_j q(h_t, h_j)                  (7)
    q(h_t, h_j) = v^T sigmoid(A_1 h_t + A_2 h_j)      (8)
    c_t     = [c^g_t ; c^l_t]                         (9)
    S_i     = e_i^T B c_t                             (10)   bi-linear decoder, y_t = B c_t

Choices: the global and local encoders share one GRU (the paper: their states "have the same
values"; the authors' code has one), ``cells.GRU`` scanned by ``models.SessionRNN.scan`` and reset
at a new user (the authors' code uses TensorFlow's GRUCell, whose reset gate multiplies h before
the product and whose gate biases start at 1; ours is the library's, flax's equations). The
weights alpha are a softmax over the visible steps, as the HCRNN authors' code has them (Eq. 7
as printed leaves them unnormalised). The authors train on every prefix of a sequence as its own
example and attend over the whole prefix; ours makes one pass per sequence and attends over the
last ``attention_history`` steps (50 by default; the authors' prefixes reach 99). Their code
concatenates ``[c^l_t, c^g_t]``, the paper ``[c^g_t, c^l_t]`` (ours): a permutation of B's columns.
Dropout as their settings: 0.25 on the item embeddings fed to the GRU, 0.5 on c_t before B.

STAMP (Liu, Zeng, Mokhosi & Zhang, KDD 2018), equation numbers of that paper; no RNN::

    m_s   = (1/t) sum_{i<=t} x_i                                 (1)  the user's prefix mean
    alpha_i = w_0^T sigmoid(W_1 x_i + W_2 x_t + W_3 m_s + b_a)   (8)  i over the visible steps
    m_a   = sum_i alpha_i x_i                                    (9)
    h_s   = tanh(W_s m_a + b_s)                                  (2)  with m_a for m_s (STAMP)
    h_t   = tanh(W_t x_t + b_t)                                  (3)  x_t = m_t, the last item
    z_i   = <h_s, h_t, x_i> = (h_s * h_t) . x_i                  (4-5) y_t = h_s * h_t

Choices: m_s is a running mean in the carry over the user's whole prefix (reset at a new user,
``attention_buffer.prefix_means``), as the paper's 1/t sum and the authors' code (their mean
includes x_t); the attention reads the last ``attention_history`` steps. The alphas are not
normalised (the paper; the authors' softmax is commented out), and m_a adds nothing else (neither
the paper nor the authors' code adds m_s to it). The paper and the authors' code put a sigmoid on z
before the softmax (Eq. 4, 6); ours scores ``z_i`` itself, because the library's scores are linear
in y (``models.score_items``) and every loss applies its own g. Ranks are the same (the sigmoid is
monotone); training differs: under the sigmoid the full softmax sees logits in (0, 1), so no item
can get more than e times another's probability. No dropout: the authors' STAMP applies none.

Initialisation (both): the tied item table from N(0, 0.1^2) as the authors'
(``models.tied_embedding``); GRU4Rec's uniform (Glorot's, TensorFlow's default the authors'
weights get) for every matrix, zero biases, flax's defaults for the GRU.

Equation numbers are those of the two papers as we read them: Li, Ren, Chen, Ren, Lian, Ma,
"Neural Attentive Session-based Recommendation" (CIKM 2017) and Liu, Zeng, Mokhosi, Zhang,
"STAMP: Short-Term Attention/Memory Priority Model for Session-based Recommendation" (KDD 2018).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hrnn_jax import cells, precision
from hrnn_jax.config import ModelConfig, default
from hrnn_jax.models import attention_buffer
from hrnn_jax.models.contract import Capabilities, Model, Output, Params
from hrnn_jax.models.layers import (
    dense,
    dense_params,
    dropout_mask,
    fan_uniform,
    tied_embedding,
    tied_scoring_params,
)
from hrnn_jax.models.session import SessionRNN


class _TiedAttention(Model):
    """What NARM and STAMP share: one sequence per user (no user level), the decoder tied to the
    item embedding with no bias, a dense item table, and the attended history's checks."""

    @property
    def capabilities(self) -> Capabilities:
        """Whole sequences; every table dense: the full softmax reads every row of the tied
        table (module docstring)."""
        return Capabilities(row_tables={}, whole_sequence=True, tables={"item_in": "item"})

    @property
    def output_width(self) -> int:
        """The width of ``apply``'s output, scored against the item embedding."""
        return self.embed_dim

    def scoring_params(self, params, *, rng=None, train=False):
        """The decoder tied to the item embedding: ``item_out = item_in``, no bias."""
        return tied_scoring_params(params)

    def _check(self, *sizes: int):
        name = type(self).__name__
        if min(self.n_items, self.embed_dim, self.attention_history, *sizes) < 1:
            raise ValueError(f"{name}: n_items, embed_dim, attention_history and hidden sizes "
                             "must be >= 1")


@dataclasses.dataclass(frozen=True)
class NARM(_TiedAttention):
    """NARM over items 1..``n_items``: embedding ``embed_dim`` (D), a GRU of ``hidden_units`` (H),
    attention over the last ``attention_history`` steps, dropout ``dropout_input`` on the GRU's
    inputs and ``dropout_output`` on c_t (module doc for the equations and choices)."""

    n_items: int
    embed_dim: int = default(ModelConfig, "hidden")
    hidden: int = default(ModelConfig, "hidden")
    attention_history: int = default(ModelConfig, "attention_history")
    dropout_input: float = 0.25
    dropout_output: float = 0.5

    def __post_init__(self):
        self._check(self.hidden)
        if not (0 <= self.dropout_input < 1 and 0 <= self.dropout_output < 1):
            raise ValueError("NARM: dropouts must be in [0, 1)")

    @property
    def encoder(self) -> SessionRNN:
        """The GRU over the user's sequence (Eq. 1-4), scanned by ``SessionRNN.scan``."""
        return SessionRNN(self.n_items, cells.GRU(self.hidden), embed_dim=self.embed_dim,
                          reset="user")

    def init(self, rng) -> Params:
        N1, D, H = self.n_items + 1, self.embed_dim, self.hidden
        k_item, k_gru, k_a1, k_a2, k_v, k_b = jax.random.split(rng, 6)
        gru = self.encoder.session_cell
        return {
            "item_in": tied_embedding(k_item, N1, D),
            "session": gru.init(k_gru, cells.zero_carry(gru, 1), jnp.zeros((1, D)))["params"],
            "attend": {"query": fan_uniform(k_a1, H, H),  # A_1 (8)
                       "key": fan_uniform(k_a2, H, H),  # A_2 (8)
                       "v": fan_uniform(k_v, H)},
            "decoder": fan_uniform(k_b, 2 * H, D),  # B (10), as y = c_t B
        }

    def init_carry(self, batch_size: int):
        return {"gru": jnp.zeros((batch_size, self.hidden)),
                **attention_buffer.empty_buffer(batch_size, self.attention_history, h=self.hidden)}

    def apply(self, params, carry, batch, *, rng=None, train=False) -> Output:
        """``y = B c_t [B, L, D]``."""
        return self._forward(params, carry, batch, rng, train)[0]

    def trace(self, params, carry, batch):
        """The attention weights of one window at evaluation (Song et al.'s Fig. 6a draws them
        beside HCRNN's): ``(carry, y, {"attention": {"narm": alpha [B, L, history + L]}})``, key
        k < history the buffer's slot k, k >= history the window's step k - history (as
        ``HCRNN.trace``)."""
        out, alpha = self._forward(params, carry, batch, None, False)
        return out.carry, out.y, {"attention": {"narm": alpha}}

    def _forward(self, params, carry, batch, rng, train):
        r_in, r_out = jax.random.split(rng) if rng is not None else (None, None)
        e = precision.take_rows(params["item_in"], batch["item"])  # [B, L, D]
        m_in = dropout_mask(r_in, self.dropout_input, e.shape, train)
        encoder = self.encoder
        xp = encoder.session_cell.apply({"params": params["session"]},
                                        e if m_in is None else e * m_in, method="project")
        gru, hs = encoder.scan(params, carry["gru"], xp, batch["user_start"], batch["valid"])
        h = jnp.swapaxes(hs, 0, 1)  # c^g_t = h_t [B, L, H] (5)
        past = attention_buffer.extend(carry, {"h": h}, batch)
        a = params["attend"]
        q = attention_buffer.additive_scores(h @ a["query"], past.keys["h"] @ a["key"],
                                             a["v"])  # (8)
        alpha = attention_buffer.masked_softmax(q, past.visible)  # (7)
        local = jnp.einsum("blk,bkh->blh", alpha, past.keys["h"])  # c^l_t (6)
        c = jnp.concatenate([h, local], axis=-1)  # (9)
        m_out = dropout_mask(r_out, self.dropout_output, c.shape, train)
        y = (c if m_out is None else c * m_out) @ params["decoder"]  # B c_t (10)
        return Output({"gru": gru, **past.buffer}, y, {}), alpha


@dataclasses.dataclass(frozen=True)
class STAMP(_TiedAttention):
    """STAMP over items 1..``n_items`` with embedding ``embed_dim`` (D, also the width of every
    layer), attention over the last ``attention_history`` steps (module doc for the equations and
    choices)."""

    n_items: int
    embed_dim: int = default(ModelConfig, "hidden")
    attention_history: int = default(ModelConfig, "attention_history")

    def __post_init__(self):
        self._check()

    def init(self, rng) -> Params:
        N1, D = self.n_items + 1, self.embed_dim
        k = iter(jax.random.split(rng, 7))

        return {
            "item_in": tied_embedding(next(k), N1, D),
            "attend": {"item": fan_uniform(next(k), D, D),  # W_1 (8)
                       "last": fan_uniform(next(k), D, D),  # W_2 (8)
                       "mean": fan_uniform(next(k), D, D), "bias": jnp.zeros((D,)),  # W_3, b_a (8)
                       "v": fan_uniform(next(k), D)},  # w_0 (8)
            "general": dense_params(next(k), D, D),  # W_s, b_s (2)
            "current": dense_params(next(k), D, D),  # W_t, b_t (3)
        }

    def init_carry(self, batch_size: int):
        B, D = batch_size, self.embed_dim
        return {"sum": jnp.zeros((B, D)), "count": jnp.zeros((B,)),
                **attention_buffer.empty_buffer(B, self.attention_history, x=D)}

    def apply(self, params, carry, batch, *, rng=None, train=False) -> Output:
        """``y = h_s * h_t [B, L, D]``; no dropout, so ``rng`` is unused."""
        x = precision.take_rows(params["item_in"], batch["item"])  # x_t = m_t [B, L, D]
        m_s, total, count = attention_buffer.prefix_means(carry["sum"], carry["count"], x,
                                                          batch)  # (1)
        past = attention_buffer.extend(carry, {"x": x}, batch)
        a = params["attend"]
        query = x @ a["last"] + m_s @ a["mean"] + a["bias"]
        alpha = attention_buffer.additive_scores(query, past.keys["x"] @ a["item"], a["v"])  # (8)
        alpha = jnp.where(past.visible, alpha, 0.0)  # not normalised
        m_a = jnp.einsum("blk,bkd->bld", alpha, past.keys["x"])  # (9)
        h_s = jnp.tanh(dense(m_a, params["general"]))  # (2), m_a for m_s
        h_t = jnp.tanh(dense(x, params["current"]))  # (3)
        carry = {"sum": total, "count": count, **past.buffer}
        return Output(carry, h_s * h_t, {})  # <h_s, h_t, x_i> (4-5)
