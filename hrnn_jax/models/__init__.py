"""Models of the library's contract (``hrnn_jax.models.contract``: read it first): the session
GRU and RNN Concat, HRNN, the user-based RNN, HCRNN, HRNN-meta, NARM, STAMP; the registry and
the spec that checkpoints store."""
from hrnn_jax.models.contract import (ITEM_TABLES, Capabilities, Output, Model, lane_targets,
                                      field_columns, check_ids, lanes_for, example_batch,
                                      check_model)
from hrnn_jax.models.layers import (gru4rec_uniform, fan_uniform, dense_params, dense,
                                    tied_scoring_params, tied_embedding, dropout, dropout_mask,
                                    score_items, target_mean)
from hrnn_jax.models.session import (ItemRNN, SessionRNN)
from hrnn_jax.models.hrnn import (HRNN)
from hrnn_jax.models.user_rnn import (UserRNN)
from hrnn_jax.models.hcrnn import (HCRNN)
from hrnn_jax.models.hrnn_meta import (gap_levels, HRNNMeta)
from hrnn_jax.models.attention import (NARM, STAMP)
from hrnn_jax.models.registry import (BuildContext, register_model, model_names, build_model,
                                      USER_GRUS, HCRNNS)
from hrnn_jax.models.spec import (SpecError, to_spec, from_spec)

__all__ = [
    'BuildContext', 'Capabilities', 'HCRNN', 'HCRNNS', 'HRNN', 'HRNNMeta', 'ITEM_TABLES',
    'ItemRNN', 'Model', 'NARM', 'Output', 'STAMP', 'SessionRNN', 'SpecError', 'USER_GRUS',
    'UserRNN', 'build_model', 'check_ids', 'check_model', 'dense', 'dense_params', 'dropout',
    'dropout_mask', 'example_batch', 'fan_uniform', 'field_columns', 'from_spec', 'gap_levels',
    'gru4rec_uniform', 'lane_targets', 'lanes_for', 'model_names', 'register_model', 'score_items',
    'target_mean', 'tied_embedding', 'tied_scoring_params', 'to_spec'
]
