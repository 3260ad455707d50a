"""Recurrent cells in the flax convention (``carry, y = cell(carry, x)``), what a cell may
declare (``SplitCell``, ``UserCell``), and the one time scan that drives every cell."""
from hrnn_jax.cells.base import (
                                 Block,
                                 SplitCell,
                                 UserCell,
                                 check_cell,
                                 hidden_of,
                                 hidden_size,
                                 is_split,
                                 is_user_cell,
                                 masked_scan,
                                 run_cell,
                                 select,
                                 with_hidden,
                                 zero_carry,
)
from hrnn_jax.cells.gru import GRU, gru_gates
from hrnn_jax.cells.hcrnn import HCRNNCell, project_nonnegative
from hrnn_jax.cells.tcn import TCN
from hrnn_jax.cells.user_gru import (
                                 AttentionalUserGRU,
                                 LinearUserGRU,
                                 RectifiedUserGRU,
                                 StandardUserGRU,
                                 UserGRUBase,
                                 attentional_step,
                                 linear_step,
                                 rectify,
                                 rectify_exact,
                                 rectify_relaxed,
                                 rectify_straight_through,
                                 relaxed_partials,
                                 scan_cell,
                                 symmetric_uniform,
)

__all__ = [
    'AttentionalUserGRU', 'Block', 'GRU', 'HCRNNCell', 'LinearUserGRU', 'RectifiedUserGRU',
    'SplitCell', 'StandardUserGRU', 'TCN', 'UserCell', 'UserGRUBase', 'attentional_step',
    'check_cell', 'gru_gates', 'hidden_of', 'hidden_size', 'is_split', 'is_user_cell',
    'linear_step', 'masked_scan',
    'project_nonnegative', 'rectify', 'rectify_exact', 'rectify_relaxed',
    'rectify_straight_through', 'relaxed_partials', 'run_cell', 'scan_cell', 'select',
    'symmetric_uniform', 'with_hidden', 'zero_carry'
]
