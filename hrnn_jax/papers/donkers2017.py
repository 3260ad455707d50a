"""Donkers, Loepp, Ziegler, "Sequential User-based Recurrent Neural Network Recommendations"
(RecSys 2017): the models of its Table 2 (``experiments/donkers2017.py``).
"""
from __future__ import annotations

from hrnn_jax.models.registry import USER_GRUS

# Donkers et al.'s Table 2 (experiments/donkers2017.py).
MODELS = ("itemknn", "decay-itemknn", "mf", "seq-mf", "concat") + tuple(USER_GRUS)
