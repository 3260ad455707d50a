"""Evaluation: ranks, metrics and breakdowns (``metrics``); running trained models
(``predict``); significance tests (``significance``)."""
from hrnn_jax.evaluation.metrics import (
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
                                         rank_targets,
                                         rmse,
                                         seen_mask,
                                         top_items,
                                         with_outside,
)

__all__ = [
    'TIES', 'Ties', 'breakdown', 'breakdown_by_history', 'breakdown_by_position',
    'check_candidates', 'metrics_from_ranks', 'metrics_per_session', 'perplexity', 'rank_chunks',
    'rank_targets', 'rmse', 'seen_mask', 'top_items', 'with_outside'
]
