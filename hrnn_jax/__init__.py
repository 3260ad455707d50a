"""hrnn_jax: hierarchical and personalised recurrent recommenders in JAX.

The names a user needs, from the modules that own them:

* configuration: :class:`Config` and its sections (``hrnn_jax.config``);
* data: :func:`read_interactions`, :func:`prepare` (sessions, filters, split, catalogue);
* models: :class:`SessionRNN` (GRU4Rec, RNN Concat), :class:`HRNN` (Init/All), :class:`UserRNN`
  (Donkers et al.'s user-based GRUs over ``hrnn_jax.cells.user_gru``), :class:`HRNNMeta` (the
  time-gap control input), :class:`HCRNN`, :class:`NARM`, :class:`STAMP`, the contract
  :class:`Model` and :class:`Capabilities` (``hrnn_jax.models.contract``), the registry
  (:func:`register_model`, :func:`build_model`), the cell :class:`GRU`;
* training: :func:`fit`, :func:`init_state`, :func:`make_train_step`;
* evaluation: :func:`evaluate_model`, :func:`recommend` (and ``hrnn_jax.compare`` for the
  paper's whole comparison);
* checkpoints: :func:`train`, :func:`save`, :func:`load` (a :class:`Trained` model).

The modules themselves (``hrnn_jax.data``, ``hrnn_jax.models``, ...) hold the rest.
"""
from hrnn_jax.cells import GRU
from hrnn_jax.checkpoint import load, save, train
from hrnn_jax.config import (
                             Config,
                             DataConfig,
                             EvalConfig,
                             ModelConfig,
                             SyntheticConfig,
                             TrainConfig,
)
from hrnn_jax.data import prepare, read_interactions
from hrnn_jax.evaluation.predict import evaluate_model, recommend
from hrnn_jax.models import (
                             HCRNN,
                             HRNN,
                             NARM,
                             STAMP,
                             Capabilities,
                             HRNNMeta,
                             Model,
                             SessionRNN,
                             UserRNN,
                             build_model,
                             register_model,
                             score_items,
)
from hrnn_jax.trained import Trained
from hrnn_jax.training import fit, init_state, make_train_step

__all__ = [
    "Capabilities", "Config", "DataConfig", "EvalConfig", "GRU", "HCRNN", "HRNN", "HRNNMeta",
    "Model", "ModelConfig", "NARM", "STAMP", "SessionRNN", "SyntheticConfig", "TrainConfig",
    "Trained", "UserRNN", "build_model", "evaluate_model", "fit", "init_state", "load",
    "make_train_step", "prepare", "read_interactions", "recommend", "register_model", "save",
    "score_items", "train",
]
