"""Recurrent cells in the flax convention (``carry, y = cell(carry, x)``), what a cell may
declare (``SplitCell``, ``UserCell``), and the one time scan that drives every cell."""
from hrnn_jax.cells.base import (Block, SplitCell, UserCell, is_split, is_user_cell, hidden_size,
                                 zero_carry, hidden_of, with_hidden, select, masked_scan, run_cell,
                                 check_cell)
from hrnn_jax.cells.gru import (GRU, gru_gates)
from hrnn_jax.cells.user_gru import (symmetric_uniform, rectify_exact, rectify_relaxed,
                                     relaxed_partials, rectify_straight_through, rectify,
                                     linear_step, attentional_step, scan_cell, UserGRUBase,
                                     LinearUserGRU, RectifiedUserGRU, AttentionalUserGRU)
from hrnn_jax.cells.hcrnn import (HCRNNCell, project_nonnegative)
from hrnn_jax.cells.tcn import (TCN)

__all__ = [
    'AttentionalUserGRU', 'Block', 'GRU', 'HCRNNCell', 'LinearUserGRU', 'RectifiedUserGRU',
    'SplitCell', 'TCN', 'UserCell', 'UserGRUBase', 'attentional_step', 'check_cell', 'gru_gates',
    'hidden_of', 'hidden_size', 'is_split', 'is_user_cell', 'linear_step', 'masked_scan',
    'project_nonnegative', 'rectify', 'rectify_exact', 'rectify_relaxed',
    'rectify_straight_through', 'relaxed_partials', 'run_cell', 'scan_cell', 'select',
    'symmetric_uniform', 'with_hidden', 'zero_carry'
]
