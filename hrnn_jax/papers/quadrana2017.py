"""Quadrana, Karatzoglou, Hidasi, Cremonesi, "Personalizing Session-based Recommendations with
Hierarchical Recurrent Neural Networks" (RecSys 2017): the models of its comparison (Table 3),
which ``hrnn-jax compare`` and the demo run by default.
"""
from __future__ import annotations

# Quadrana et al.'s comparison (Table 3): what `hrnn-jax compare` and the demo run by default.
MODELS = ("pop", "ppop", "itemknn", "gru", "concat", "hrnn-init", "hrnn-all")
