"""Evaluation: ranks, metrics and breakdowns (``metrics``); running trained models
(``predict``); significance tests (``significance``)."""
from hrnn_jax.evaluation.metrics import (
                                         TIES,
                                         Ties,
                                         breakdown,
                                         breakdown_by_history,
                                         breakdown_by_position,
                                         metrics_from_ranks,
                                         perplexity,
                                         rank_chunks,
                                         rank_targets,
                                         rmse,
                                         seen_mask,
)

__all__ = [
    'TIES', 'Ties', 'breakdown', 'breakdown_by_history', 'breakdown_by_position',
    'metrics_from_ranks', 'perplexity', 'rank_chunks', 'rank_targets', 'rmse', 'seen_mask'
]
