"""The whole experiment of the paper as two functions: ``prepare`` a log, ``compare`` models on it.

``prepare``: sessionise, optionally drop repeated interactions within sessions, filter (with a
report of every dropped row), encode, split, restrict the catalogue to the training part's items,
and build the evaluation rows. ``compare``: train the neural models with ``training.fit``, fit the
baselines, and rank every evaluation row against the whole catalogue with the same code for all of
them.

Lane layouts (``targets``): the session GRU and the HRNNs learn within-session targets under the
last-session protocol, as the paper; RNN Concat treats a user's sessions as one sequence, so it
learns and is run with ``"user"`` targets (its first prediction of a session, made from the previous
session, is not scored: footnote 5). Under leave-one-out and temporal splits a test event may open a
session, so every model runs with ``"user"`` targets there; so it does under the random user split
(``"users"``, Ma & Narayanaswamy), where every event of a test user but its first (which has no
input) is a prediction.
"""
from __future__ import annotations










# Quadrana et al.'s comparison (Table 3): what `hrnn-jax compare` and the demo run by default.
MODELS = ("pop", "ppop", "itemknn", "gru", "concat", "hrnn-init", "hrnn-all")
