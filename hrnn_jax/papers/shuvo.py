"""Shuvo, Kamal, Bhuiyan et al., "Advanced Recommendations System using Hierarchical Recurrent
Neural Network" (BRAC University): the plan of its HRNN study, as data.

The study compares HRNN Init and HRNN All (Quadrana et al., RecSys 2017) with POP, BPR, FMC, FPMC,
GRU4Rec and GRU4Rec+ on MovieLens-1M and Steam, following Choe et al.'s protocol: each user's most
recent item is the test item, the second most recent the validation item, the rest train; users
with fewer than 5 events are removed; accuracy is Hit@K. The paper gives neither K nor the
models' settings; ``experiments/shuvo_hrnn.py`` reports Hit@10 and NDCG@10 (SASRec's choice on
the same two datasets) beside Recall@20 and MRR@20, and trains every model with the library's
defaults.
"""
from __future__ import annotations

# The models of the HRNN study, in the paper's order; GRU4Rec is `gru` (TOP1), GRU4Rec+ is
# `gru4rec+` (BPR-max with 2048 shared negatives, Hidasi & Karatzoglou, CIKM 2018)
MODELS = ("pop", "bpr", "fmc", "fpmc", "gru", "gru4rec+", "hrnn-init", "hrnn-all")
REFERENCE = "gru"  # the significance tests compare every model with GRU4Rec

# The protocol as configuration (flags override it): leave-one-out with the second most recent
# event as validation (early stopping), users with < 5 events removed. Items with < 5 events are
# removed as in the datasets' usual preparation (MovieLens-1M: 3,416 items of 3,706); sessions
# of one event are kept (a Steam user reviews about one game a day). The session models learn
# the next items within sessions, as Quadrana et al. train HRNN (``--train-lanes
# within-session``), and are evaluated on every test event: one that opens a session is
# predicted from the end of the previous one. Trained on whole user sequences instead (``auto``)
# they learn every cross-session step too; on the synthetic default that left HRNN Init level
# with GRU4Rec (Hit@10 .409 against .402, one seed), within sessions it is above (.432 against
# .412).
DEFAULTS = {
    "data": {"protocol": "leave-one-out", "min_user_events": 5, "min_item_support": 5,
             "min_session_len": 1},
    "train": {"patience": 2, "seeds": 3, "train_lanes": "within-session"},
    "eval": {"ks": (10, 20)},
}

# The four figures of the table: Hit@10, NDCG@10, Recall@20, MRR@20
METRICS = ("hit@10", "ndcg@10", "recall@20", "mrr@20")

# The datasets as the paper describes them (after filtering)
DATASETS = {
    "movielens-1m": {"users": 6040, "items": 3416, "mean_length": 163.5, "public": True},
    "steam": {"users": 334730, "items": 13047, "mean_length": 12.26, "public": True},
}
