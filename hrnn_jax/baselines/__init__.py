"""Baselines by name (``registry``): popularity, Item-KNN, matrix factorisation, FMC and FPMC;
the rating baselines of HRNN-meta's tables in ``baselines.rating``."""
from hrnn_jax.baselines.factorisation import (
                                           FMC,
                                           FPMC,
                                           MF,
                                           SeqMF,
                                           bpr_batches,
                                           bpr_fit,
                                           bpr_initial,
                                           bpr_negatives,
                                           previous_items,
)
from hrnn_jax.baselines.knn import DAY, DecayItemKNN, ItemKNN
from hrnn_jax.baselines.popularity import (
                                           CountBaseline,
                                           PersonalPop,
                                           Pop,
                                           finish_scores,
                                           item_counts,
                                           popularity_tiebreak,
                                           train_events,
)
from hrnn_jax.baselines.registry import baseline_names, build_baseline, register_baseline

__all__ = [
    'CountBaseline', 'DAY', 'DecayItemKNN', 'FMC', 'FPMC', 'ItemKNN', 'MF', 'PersonalPop', 'Pop',
    'SeqMF',
    'baseline_names', 'bpr_batches', 'bpr_fit', 'bpr_initial', 'bpr_negatives', 'build_baseline',
    'finish_scores', 'item_counts', 'popularity_tiebreak', 'previous_items', 'register_baseline',
    'train_events'
]
