"""One registry of models by name: each name has a builder that makes the model from the model
section of the configuration and what the prepared data says (catalogue, users, features).
``hrnn-jax compare --models``, ``train --model``, the experiments and ``build_model`` read it;
your own models join it with :func:`register_model`::

    @register_model("my-gru")
    def my_gru(ctx: BuildContext) -> Model:
        return SessionRNN(ctx.n_items, flax.linen.GRUCell(ctx.config.hidden))

A checkpoint does not need the registry to load a model: it stores the model's own structure
(``hrnn_jax.models.spec``).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import numpy as np
from flax import linen as nn

from hrnn_jax import cells
from hrnn_jax.cells import user_gru
from hrnn_jax.cells.gru import GRUReset  # noqa: F401  (ModelConfig.gru_reset's option type)
from hrnn_jax.config import ModelConfig, TrainConfig, make
from hrnn_jax.models.attention import NARM, STAMP
from hrnn_jax.models.contract import Model
from hrnn_jax.models.hcrnn import HCRNN
from hrnn_jax.models.hrnn import HRNN
from hrnn_jax.models.hrnn_meta import HRNNMeta
from hrnn_jax.models.session import SessionRNN
from hrnn_jax.models.user_rnn import UserRNN

# Options of ModelConfig that the builders read
HCRNNAttention = Literal["none", "additive"]  # hcrnn-1/2/3's decoder input (hcrnn-3-bi: "bi")
Feedback = Literal["none", "value", "event"]  # hrnn-meta's feedback input


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a builder gets: the catalogue size (items 1..``n_items``), the model section of the
    configuration, and what the data brings: the users (``n_users``, rows of a user table),
    item features ``[N+1, G]`` and cold items ``bool [N+1]`` (an item-feature file), the number
    of event types (``feedback_levels``, for ``--feedback event``)."""

    n_items: int
    config: ModelConfig = ModelConfig()
    n_users: int | None = None
    item_features: np.ndarray | None = dataclasses.field(default=None, repr=False)
    cold_items: np.ndarray | None = dataclasses.field(default=None, repr=False)
    feedback_levels: int = 0


Builder = Callable[[BuildContext], Model]
_BUILDERS: dict[str, Builder] = {}
_TRAIN: dict[str, dict] = {}


def register_model(name: str, builder: Builder | None = None, *, replace: bool = False,
                   train: dict | None = None):
    """Register ``builder(ctx: BuildContext) -> Model`` under ``name`` (lower case, no spaces);
    as a decorator, ``@register_model(name)``. A name that is taken is a ValueError unless
    ``replace``. Returns the builder.

    ``train``: training settings that belong to the named model, fields of ``TrainConfig``
    (GRU4Rec+ is GRU4Rec trained with BPR-max and sampled negatives); they replace the
    configuration's wherever the model is trained by name (:func:`train_config_for`), so they
    win over flags such as ``--loss``. Checked when registered.
    """
    if not name or name != name.strip().lower() or " " in name or "," in name:
        raise ValueError(f"a model name is lower case without spaces or commas, got {name!r}")
    settings = dict(train or {})
    make(TrainConfig, settings, where=f"model {name}")  # checks names and values

    def add(fn: Builder) -> Builder:
        if name in _BUILDERS and not replace:
            raise ValueError(f"model {name!r} is registered already (replace=True to replace it)")
        _BUILDERS[name] = fn
        _TRAIN[name] = settings
        return fn

    return add if builder is None else add(builder)


def train_config_for(name: str, config: TrainConfig = TrainConfig()) -> TrainConfig:
    """``config`` with the training settings registered with model ``name`` (none for most)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(_BUILDERS)}")
    return dataclasses.replace(config, **_TRAIN[name]) if _TRAIN[name] else config


def model_names() -> tuple[str, ...]:
    """The registered names, in the order of registration."""
    return tuple(_BUILDERS)


def build_model(name: str, n_items: int, config: ModelConfig = ModelConfig(), *,
                n_users: int | None = None, item_features: np.ndarray | None = None,
                cold_items: np.ndarray | None = None, feedback_levels: int = 0) -> Model:
    """The model registered as ``name``, for ``n_items`` items and the ``config`` (see
    :class:`BuildContext` for the rest)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(_BUILDERS)}")
    return _BUILDERS[name](BuildContext(n_items, config, n_users, item_features, cold_items,
                                        feedback_levels))


# ------------------------------------------------------------------------------------------
# The papers' models, with config.hidden units (HRNN: 100 + 100, the paper's 'small')
# ------------------------------------------------------------------------------------------
def _gru_cell(cfg: ModelConfig) -> cells.GRU:
    """A ``cells.GRU`` of ``cfg.hidden`` units with the reset gate where ``cfg.gru_reset`` says
    (by default before the recurrent product, Cho et al.'s and GRU4Rec's form, or after it,
    flax's)."""
    return cells.GRU(cfg.hidden, reset_gate=cfg.gru_reset)


@register_model("gru")
def _gru(ctx: BuildContext) -> Model:
    """GRU4Rec: a session GRU with one-hot items (or ``embed_dim``)."""
    cfg = ctx.config
    return SessionRNN(ctx.n_items, _gru_cell(cfg), embed_dim=cfg.embed_dim,
                      dropout_session=cfg.dropout_session)


@register_model("concat")
def _concat(ctx: BuildContext) -> Model:
    """RNN Concat: the sessions of a user as one sequence."""
    cfg = ctx.config
    return SessionRNN(ctx.n_items, _gru_cell(cfg), reset="user", embed_dim=cfg.embed_dim,
                      dropout_session=cfg.dropout_session)


def _hrnn(ctx: BuildContext, mode: str) -> Model:
    cfg = ctx.config
    return HRNN(ctx.n_items, _gru_cell(cfg), user_cell=_gru_cell(cfg), mode=mode,
                embed_dim=cfg.embed_dim, dropout_session=cfg.dropout_session,
                dropout_user=cfg.dropout_user, dropout_init=cfg.dropout_init,
                context_gates=cfg.context_gates, first_session=cfg.first_session,
                context_grad=cfg.context_grad)


# GRU4Rec+ (Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for Session-based
# Recommendations", CIKM 2018): GRU4Rec trained with BPR-max on the in-batch negatives and 2048
# more drawn from popularity^0.5 and shared by the step's lanes, ELU(0.5) scores, score
# regularisation 1.0: the defaults of the official GRU4Rec (github hidasib/GRU4Rec_PyTorch_
# Official). The optimiser, learning rate and dropout stay the configuration's.
GRU4REC_PLUS = {"loss": "bpr-max", "n_negatives": 2048, "sample_alpha": 0.5, "score_reg": 1.0,
                "activation": "elu", "elu_alpha": 0.5}
register_model("gru4rec+", _gru, train=GRU4REC_PLUS)

register_model("hrnn-init", lambda ctx: _hrnn(ctx, "init"))
register_model("hrnn-all", lambda ctx: _hrnn(ctx, "all"))

# Donkers et al.: UserRNN with item and user embeddings as wide as the hidden state (Table 1)
USER_GRUS = {"user-gru-linear": user_gru.LinearUserGRU,
             "user-gru-rectified": user_gru.RectifiedUserGRU,
             "user-gru-attentional": user_gru.AttentionalUserGRU}


# ... and their standard GRU, "the same network without the user": the user-based cell with the
# user term removed (cells.StandardUserGRU), the same dropout on the item vector and U(-0.1, 0.1)
# initialisation; no user table
STANDARD_USER_GRU = "user-gru-none"


def _user_gru(ctx: BuildContext, name: str) -> Model:
    cfg = ctx.config
    if ctx.n_users is None:
        raise ValueError(f"{name} runs over each user's sequence: build it with n_users")
    kw = {"omega": cfg.omega} if name == "user-gru-rectified" else {}
    cls = user_gru.StandardUserGRU if name == STANDARD_USER_GRU else USER_GRUS[name]
    cell = cls(cfg.hidden, item_features=cfg.hidden, **kw)
    return UserRNN(ctx.n_items, ctx.n_users, cell, user_dim=cfg.hidden,
                   dropout_item=cfg.dropout_item, dropout_user=cfg.dropout_user_vector,
                   l2_user=cfg.l2_user)


for _name in (*USER_GRUS, STANDARD_USER_GRU):
    register_model(_name, lambda ctx, name=_name: _user_gru(ctx, name))


@register_model("hrnn-meta")
def _hrnn_meta(ctx: BuildContext) -> Model:
    """Ma & Narayanaswamy: a GRU over the user's sequence fed the level of the time to the
    predicted event (Table 5's edges); with ``config.feedback`` each event's value, or its type,
    joins its input; with item features its decoder mixes them in and cold items are scored from
    them alone."""
    cfg = ctx.config
    return HRNNMeta(ctx.n_items, _gru_cell(cfg), embed_dim=cfg.embed_dim,
                    dropout_session=cfg.dropout_session, item_features=ctx.item_features,
                    cold_items=ctx.cold_items, feedback=cfg.feedback != "none",
                    feedback_levels=ctx.feedback_levels if cfg.feedback == "event" else 0)


# Song et al.: variant, bi-channel attention ("+Bi"); dropout 0.25 on inputs, 0.5 on the decoder
HCRNNS = {"hcrnn-1": (1, False), "hcrnn-2": (2, False), "hcrnn-3": (3, False),
          "hcrnn-3-bi": (3, True)}


def _hcrnn(ctx: BuildContext, name: str) -> Model:
    cfg = ctx.config
    variant, bi = HCRNNS[name]
    return HCRNN(ctx.n_items, embed_dim=cfg.embed_dim or cfg.hidden, hidden=cfg.hidden,
                 n_contexts=cfg.contexts, variant=variant,
                 attention="bi" if bi else cfg.hcrnn_attention,
                 attention_history=cfg.attention_history, kl_weight=cfg.kl_weight)


for _name in HCRNNS:
    register_model(_name, lambda ctx, name=_name: _hcrnn(ctx, name))


@register_model("hrnn-hcrnn-3")
def _hrnn_hcrnn(ctx: BuildContext) -> Model:
    """HRNN Init with an HCRNN-3 session cell (no theta is inferred there: every global context
    weighs the same) and a GRU user cell: the cells compose."""
    cfg = ctx.config
    D = cfg.embed_dim or cfg.hidden
    return HRNN(ctx.n_items, cells.HCRNNCell(cfg.hidden, context_dim=D,
                                                   n_contexts=cfg.contexts, variant=3),
                user_cell=_gru_cell(cfg), mode="init", embed_dim=D,
                dropout_session=cfg.dropout_session, dropout_user=cfg.dropout_user,
                dropout_init=cfg.dropout_init)


@register_model("lstm4rec")
def _lstm4rec(ctx: BuildContext) -> Model:
    """Song et al.'s GRU4Rec variant with an LSTM: RNN Concat with flax's LSTMCell and a learned
    embedding."""
    cfg = ctx.config
    return SessionRNN(ctx.n_items, nn.LSTMCell(cfg.hidden), reset="user",
                      embed_dim=cfg.embed_dim or cfg.hidden, dropout_session=cfg.dropout_session)


@register_model("narm")
def _narm(ctx: BuildContext) -> Model:
    """NARM, a GRU of ``config.hidden`` units with additive attention."""
    cfg = ctx.config
    return NARM(ctx.n_items, embed_dim=cfg.embed_dim or cfg.hidden, hidden=cfg.hidden,
                attention_history=cfg.attention_history)


@register_model("stamp")
def _stamp(ctx: BuildContext) -> Model:
    """STAMP, short-term attention over the item embeddings."""
    cfg = ctx.config
    return STAMP(ctx.n_items, embed_dim=cfg.embed_dim or cfg.hidden,
                 attention_history=cfg.attention_history)
