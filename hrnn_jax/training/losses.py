"""Ranking losses of GRU4Rec / HRNN over in-batch (and sampled) negatives, and full softmax.

In-batch negatives (Quadrana et al. Sec. 3.1): at step t of lane b the positive is lane b's target;
the negatives are the targets of the other lanes at the same step (popularity-based sampling, since
an item appears in a mini-batch in proportion to its frequency), optionally followed by S extra
items sampled by popularity and shared by the whole window. A negative is dropped when it is
padding or the same item as the positive. Steps without a target contribute nothing; the loss is
the mean over steps with a target.

GRU4Rec+ (Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for Session-based
Recommendations", CIKM 2018): ``bpr-max`` and ``top1-max`` weight each negative by its softmax
score among the step's negatives, so the loss follows the highest-scoring negatives as the number
of samples grows (their "ranking-max" loss family); BPR-max adds the score regularisation
lambda * sum_j s_j r_j^2 (``score_reg``, the official code's ``bpreg``), and its authors apply an
ELU to the scores first (``activation="elu"``, ``elu_alpha``, the official ``elu_param``). Read
against the official GRU4Rec (github hidasib/GRU4Rec_PyTorch_Official, ``bpr_max_loss_with_elu``
and the Theano version's ``top1_max``): theirs excludes only the positive's own column from the
negatives; ours also drops padding and any candidate that is the positive item itself (a lane
with the same target, or a sampled copy of it), as for every loss here, so an item is never its
own negative. Theirs sums over the mini-batch and divides by the batch size; ours is the mean
over the steps with a target (the same for full batches).

All functions take global item ids for the masks (``target``, ``negatives``) and the score tables
indexed by ``lookup`` ids, which are the same ids or, in the sparse-row training path, the ids
local to the gathered rows; equality between ids is preserved by that remapping.
"""
from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from hrnn_jax import choices
from hrnn_jax.config import TrainConfig, default
from hrnn_jax.models.layers import target_mean
from hrnn_jax.precision import take_rows_of

Loss = Literal["top1", "bpr", "ce", "full-ce", "bpr-max", "top1-max"]
Activation = Literal["linear", "tanh", "elu"]
LOSSES = choices.options(Loss)
NEG_INF = -1e30
ELU_ALPHA = default(TrainConfig, "elu_alpha")  # 0.5, the official GRU4Rec's elu_param
SCORE_REG = default(TrainConfig, "score_reg")  # 1.0, the official GRU4Rec's bpreg


def activate(name: Activation, scores, elu_alpha: float = ELU_ALPHA):
    """The output activation g(.) of Quadrana et al. Eq. 2 applied to raw scores before a loss.

    ``"linear"``: none. ``"tanh"``: as the authors' code (hgru4rec's default for TOP1 and BPR;
    for cross-entropy its optional ``softmaxth``). ``"elu"``: ELU with ``elu_alpha`` (x for
    x > 0, alpha (e^x - 1) else), which GRU4Rec's authors pair with BPR-max. Training only:
    evaluation and ``recommend`` rank the raw scores, which tanh and ELU (monotone) would order
    the same way except where tanh saturates into ties in float32.
    """
    choices.check("activation", name, Activation)
    if name == "elu":
        return jax.nn.elu(scores, elu_alpha)
    return jnp.tanh(scores) if name == "tanh" else scores


def candidate_scores(params, y, lookup_target, lookup_neg):
    """Scores of the step's candidates: ``y [B, L, H]`` -> ``[B, L, B + S]``.

    Column c < B is lane c's target at the same step; column B + s is the s-th sampled negative.
    """
    tables = params["item_out"], params["item_bias"]
    o_t, b_t = take_rows_of(tables, lookup_target)  # [B, L, H], [B, L]
    s_batch = jnp.einsum("blh,clh->blc", y, o_t) + b_t.T[None]
    o_n, b_n = take_rows_of(tables, lookup_neg)  # [S, H], [S]
    s_neg = y @ o_n.T + b_n  # [B, L, S]
    return jnp.concatenate([s_batch, s_neg], axis=-1)


def logq_correction(scores, log_q, target, negatives):
    """The logQ correction of Yi et al. ("Sampling-Bias-Corrected Neural Modeling for Large
    Corpus Item Recommendations", RecSys 2019, Eq. 3): ``s^c(x, j) = s(x, j) - log Q(j)``, with
    Q(j) the probability that item j is drawn as a candidate, applied to the step's candidate
    scores ``[B, L, B + S]`` (:func:`candidate_scores`) before the loss.

    log_q: float ``[N+1]``, log Q(j) of the distribution the ``negatives [S]`` are drawn from
      (popularity^alpha, ``training.step.popularity_log_q``); global ids ``target [B, L]`` and
      ``negatives`` index it.

    Every column is corrected, as Yi et al. correct every in-batch logit: the sampled negatives
    by the probability they were drawn with, and the in-batch columns (the other lanes' targets,
    and the positive itself in its own column) by the same Q, since an item is another lane's
    target in proportion to its popularity (exactly so at alpha = 1, approximately otherwise).
    A constant shift of every column changes no softmax, so Q(j) and S Q(j), the expected
    number of draws, give the same ``ce``, ``bpr-max`` and ``top1-max``.
    """
    lq = jnp.asarray(log_q, scores.dtype)
    B, L = target.shape
    batch = jnp.broadcast_to(jnp.take(lq, target.T, axis=0)[None], (B, L, B))  # [B, L, B]
    sampled = jnp.broadcast_to(jnp.take(lq, negatives, axis=0), (B, L, negatives.shape[0]))
    return scores - jnp.concatenate([batch, sampled], axis=-1)


def candidate_mask(target, negatives):
    """Which candidates are negatives for each step: ``bool [B, L, B + S]``."""
    B = target.shape[0]
    cand = jnp.concatenate([
        jnp.broadcast_to(target.T[None], (B,) + target.T.shape),
        jnp.broadcast_to(negatives, target.shape + negatives.shape),
    ], axis=-1)
    return (cand > 0) & (cand != target[..., None])


def ranking_loss(kind: str, scores, target, negatives, score_reg: float = SCORE_REG):
    """Mean TOP1 / BPR / in-batch cross-entropy / BPR-max / TOP1-max over the steps with a target.

    scores: ``[B, L, B + S]`` from :func:`candidate_scores`; the positive of lane b is column b;
    r_i is the positive's score, r_j a negative's, N_s the step's negatives.
    TOP1 (Hidasi et al. 2016): mean_j sigmoid(r_j - r_i) + sigmoid(r_j^2).
    BPR: -mean_j log sigmoid(r_i - r_j).
    ce: -log softmax over {positive} + negatives.
    With s_j = softmax(r)_j over the negatives (Hidasi & Karatzoglou 2018, ranking-max losses):
    top1-max: sum_j s_j (sigmoid(r_j - r_i) + sigmoid(r_j^2));
    bpr-max with score regularisation:
    -log sum_j s_j sigmoid(r_i - r_j) + score_reg * sum_j s_j r_j^2.
    A step without negatives contributes 0.
    """
    B = target.shape[0]
    # the positive of lane b is column b: a masked sum (its gradient is a select, not a scatter)
    own = jnp.eye(B, scores.shape[-1], dtype=bool)[:, None, :]  # [B, 1, B + S]
    pos = jnp.where(own, scores, 0.0).sum(-1)  # [B, L]
    neg = candidate_mask(target, negatives)
    n_neg = jnp.maximum(neg.sum(-1), 1)
    diff = scores - pos[..., None]
    if kind == "top1":
        per = jax.nn.sigmoid(diff) + jax.nn.sigmoid(scores**2)
        row = jnp.where(neg, per, 0.0).sum(-1) / n_neg
    elif kind == "bpr":
        row = jnp.where(neg, -jax.nn.log_sigmoid(-diff), 0.0).sum(-1) / n_neg
    elif kind == "ce":
        logits = jnp.where(neg, scores, NEG_INF)
        lse = jnp.logaddexp(jax.nn.logsumexp(logits, axis=-1), pos)
        row = lse - pos
    elif kind in ("bpr-max", "top1-max"):
        # on rows [B L, B + S]: XLA on CPU reduces a [B, 1, C] array several times slower than
        # a [B, C] one (GRU4Rec+ at window 1 trained 1.4x faster so, in an in-process A/B)
        C = scores.shape[-1]
        row = _max_loss(kind, scores.reshape(-1, C), diff.reshape(-1, C), neg.reshape(-1, C),
                        score_reg).reshape(scores.shape[:-1])
    else:
        raise ValueError(f"unknown sampled loss {kind!r}; choose from {LOSSES}")
    return target_mean(row, target)


def negative_softmax(scores, neg):
    """s_j: the softmax of the scores over the negatives ``neg`` (0 elsewhere, and 0 everywhere
    on a row without negatives)."""
    s = jax.nn.softmax(jnp.where(neg, scores, NEG_INF), axis=-1)
    return jnp.where(neg, s, 0.0)


def _max_loss(kind: str, scores, diff, neg, score_reg: float):
    """Per-step BPR-max / TOP1-max (:func:`ranking_loss`); ``diff`` = r_j - r_i."""
    s = negative_softmax(scores, neg)
    if kind == "top1-max":  # TOP1-max
        row = (s * (jax.nn.sigmoid(diff) + jax.nn.sigmoid(scores**2))).sum(-1)
        return jnp.where(neg.any(-1), row, 0.0)
    # BPR-max, with 1e-24 inside the log as the official code (a step whose negatives all
    # outscore the positive by far keeps a finite loss), plus the score regularisation
    fit = -jnp.log((s * jax.nn.sigmoid(-diff)).sum(-1) + 1e-24)
    reg = score_reg * (s * scores**2).sum(-1)
    return jnp.where(neg.any(-1), fit + reg, 0.0)


def full_cross_entropy(params, y, target, activation: Activation = "linear",
                       elu_alpha: float = ELU_ALPHA):
    """Softmax cross-entropy against the whole catalogue (padding column excluded).

    The target's log-probability is picked by a mask (no gather, whose gradient is a scatter).
    """
    logits = activate(activation, y @ params["item_out"].T + params["item_bias"], elu_alpha)
    cols = jnp.arange(logits.shape[-1])
    logits = jnp.where(cols == 0, NEG_INF, logits)
    logp = jax.nn.log_softmax(logits, axis=-1)
    row = -jnp.where(cols == target[..., None], logp, 0.0).sum(-1)
    return target_mean(row, target)
