"""Models of the library's contract (``hrnn_jax.models.contract``: read it first): the session
GRU and RNN Concat, HRNN, the user-based RNN, HCRNN, HRNN-meta, NARM, STAMP; the registry and
the spec that checkpoints store."""
from hrnn_jax.models.attention import NARM, STAMP
from hrnn_jax.models.contract import (
                                      ITEM_TABLES,
                                      Capabilities,
                                      Model,
                                      Output,
                                      TrainLanes,
                                      check_ids,
                                      check_model,
                                      example_batch,
                                      field_columns,
                                      lane_targets,
                                      lanes_for,
                                      train_lane_targets,
)
from hrnn_jax.models.hcrnn import HCRNN, Attention
from hrnn_jax.models.hrnn import HRNN, ContextGates, ContextGrad, FirstSession
from hrnn_jax.models.hrnn_meta import HRNNMeta, gap_levels
from hrnn_jax.models.layers import (
                                      dense,
                                      dense_params,
                                      dropout,
                                      dropout_mask,
                                      fan_uniform,
                                      gru4rec_uniform,
                                      score_items,
                                      target_mean,
                                      tied_embedding,
                                      tied_scoring_params,
)
from hrnn_jax.models.registry import (
                                      HCRNNS,
                                      USER_GRUS,
                                      BuildContext,
                                      Feedback,
                                      HCRNNAttention,
                                      build_model,
                                      model_names,
                                      register_model,
                                      train_config_for,
)
from hrnn_jax.models.session import ItemRNN, SessionRNN
from hrnn_jax.models.spec import SpecError, from_spec, to_spec
from hrnn_jax.models.user_rnn import UserRNN

__all__ = [
    'Attention', 'BuildContext', 'Capabilities', 'ContextGates', 'ContextGrad', 'Feedback',
    'FirstSession', 'HCRNN', 'HCRNNAttention', 'HCRNNS', 'HRNN', 'HRNNMeta', 'ITEM_TABLES',
    'ItemRNN', 'Model', 'NARM', 'Output', 'STAMP', 'SessionRNN', 'SpecError', 'USER_GRUS',
    'UserRNN', 'build_model', 'check_ids', 'check_model', 'dense', 'dense_params', 'dropout',
    'dropout_mask', 'example_batch', 'fan_uniform', 'field_columns', 'from_spec', 'gap_levels',
    'gru4rec_uniform', 'lane_targets', 'lanes_for', 'model_names', 'register_model', 'score_items',
    'target_mean', 'tied_embedding', 'tied_scoring_params', 'to_spec', 'train_config_for',
    'train_lane_targets', 'TrainLanes'
]
