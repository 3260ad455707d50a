"""The small pieces every model shares: initialisers, affine layers, dropout masks and the one
place that makes scores.

Scores are ``score_items(model.scoring_params(params), y) = y @ item_out.T + item_bias``
(Quadrana et al. Eq. 2 before g(.); each loss applies its own g): training losses, evaluation and
``recommend`` all call :func:`score_items` and never re-derive it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hrnn_jax.models.contract import Params


def gru4rec_uniform(rng, shape, fan_in, fan_out):
    """GRU4Rec's initialisation: U(-s, s), s = sqrt(6 / (fan_in + fan_out))."""
    s = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(rng, shape, jnp.float32, -s, s)


def fan_uniform(rng, *shape: int) -> jax.Array:
    """:func:`gru4rec_uniform` over the shape's own fans (first and last axis; a vector: fan-out
    1), Glorot's uniform: the weights of HCRNN, NARM, STAMP and HRNN-meta's input maps."""
    return gru4rec_uniform(rng, shape, shape[0], shape[-1] if len(shape) > 1 else 1)


def dense_params(rng, n_in: int, n_out: int) -> Params:
    """An affine layer's parameters: ``{"kernel": Glorot-uniform [n_in, n_out], "bias": zeros
    [n_out]}`` (:func:`fan_uniform`)."""
    return {"kernel": fan_uniform(rng, n_in, n_out), "bias": jnp.zeros((n_out,), jnp.float32)}


def dense(x: jax.Array, p: Params) -> jax.Array:
    """The affine layer ``x @ kernel + bias`` of parameters ``p`` (:func:`dense_params`)."""
    return x @ p["kernel"] + p["bias"]


def tied_scoring_params(params: Params) -> Params:
    """A decoder tied to the item embedding (HCRNN, NARM, STAMP): ``item_out`` is ``item_in``,
    with no bias; the models' ``scoring_params``."""
    table = params["item_in"]
    return {**params, "item_out": table, "item_bias": jnp.zeros(table.shape[:1], table.dtype)}


def tied_embedding(rng, n_rows: int, dim: int, scale: float = 0.1) -> jax.Array:
    """An item table that is both the input embedding and the decoder (HCRNN, NARM, STAMP):
    N(0, ``scale``^2), as the HCRNN authors' code draws it. GRU4Rec's uniform (about +-0.05 at
    2,000 items) starts the tied decoder's logits near zero. Measured with this draw: HCRNN-3+Bi
    R@20 25.03 (Song et al.'s Table 3: 25.81) on the authors' CiteULike split, one run of
    ``experiments/song2019_hcrnn.py --data DIR --format hcrnn --models gru,hcrnn-3-bi`` at its
    defaults (Adam 1e-3, at most 200 epochs, patience 10, 10% of the training users validating).
    No figure is quoted for the uniform draw: none is recorded for this version of the code."""
    return scale * jax.random.normal(rng, (n_rows, dim), jnp.float32)


def dropout(rng, p: float, shape) -> jax.Array:
    """Inverted dropout mask (scaled by 1/(1-p))."""
    keep = jax.random.bernoulli(rng, 1.0 - p, shape)
    return keep.astype(jnp.float32) / (1.0 - p)


def dropout_mask(rng, p: float, shape, train: bool):
    """A dropout mask, or None where there is nothing to drop."""
    return dropout(rng, p, shape) if train and p > 0 else None


def score_items(params: Params, y: jax.Array) -> jax.Array:
    """Scores of every item, ``[..., H] -> [..., N+1]``; column 0 is padding (callers mask it).
    ``params``: the model's ``scoring_params``."""
    return y @ params["item_out"].T + params["item_bias"]


def target_mean(per_step, target):
    """The mean of ``per_step [B, L]`` over the steps with a target (``target > 0``); 0 when there
    is none. Every per-step loss term is averaged this way (ranking losses, HRNN-meta's rating
    error, HCRNN's KL)."""
    has = target > 0
    return jnp.where(has, per_step, 0.0).sum() / jnp.maximum(has.sum(), 1)
