"""Baselines by name (``registry``): popularity, Item-KNN, matrix factorisation; the rating
baselines of HRNN-meta's tables in ``baselines.rating``."""
from hrnn_jax.baselines.popularity import (train_events, item_counts, popularity_tiebreak,
                                           finish_scores, Pop, PersonalPop)
from hrnn_jax.baselines.knn import (ItemKNN, DAY, DecayItemKNN)
from hrnn_jax.baselines.factorisation import (bpr_initial, bpr_negatives, bpr_batches, bpr_fit,
                                              previous_items, MF, SeqMF)
from hrnn_jax.baselines.registry import (register_baseline, baseline_names, build_baseline)

__all__ = [
    'DAY', 'DecayItemKNN', 'ItemKNN', 'MF', 'PersonalPop', 'Pop', 'SeqMF', 'baseline_names',
    'bpr_batches', 'bpr_fit', 'bpr_initial', 'bpr_negatives', 'build_baseline', 'finish_scores',
    'item_counts', 'popularity_tiebreak', 'previous_items', 'register_baseline', 'train_events'
]
