"""Evaluation: ranks, metrics and breakdowns (``metrics``); running trained models
(``predict``); significance tests (``significance``)."""
from hrnn_jax.evaluation.metrics import (
                                         ITEM_BLOCK,
                                         TIES,
                                         Ties,
                                         breakdown,
                                         breakdown_by_history,
                                         breakdown_by_position,
                                         check_candidates,
                                         metrics_from_ranks,
                                         metrics_per_session,
                                         perplexity,
                                         rank_chunks,
                                         rank_in_blocks,
                                         rank_targets,
                                         rmse,
                                         seen_mask,
                                         target_log_softmax_in_blocks,
                                         top_items,
                                         with_outside,
)

__all__ = [
    'ITEM_BLOCK', 'TIES', 'Ties', 'breakdown', 'breakdown_by_history', 'breakdown_by_position',
    'check_candidates', 'metrics_from_ranks', 'metrics_per_session', 'perplexity', 'rank_chunks',
    'rank_in_blocks', 'rank_targets', 'rmse', 'seen_mask', 'target_log_softmax_in_blocks',
    'top_items', 'with_outside'
]
