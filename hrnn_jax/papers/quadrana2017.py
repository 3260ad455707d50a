"""Quadrana, Karatzoglou, Hidasi, Cremonesi, "Personalizing Session-based Recommendations with
Hierarchical Recurrent Neural Networks" (RecSys 2017): the models of its comparison (Table 3),
which ``hrnn-jax compare`` and the demo run by default, its preprocessing (Sec. 4.1), its
hyper-parameters (Table 2) and its results on XING (Table 3), as data for
``experiments/quadrana2017.py``.

Table 2 (:data:`TABLE2`) gives the settings of the neural models on XING only: the paper does not
publish those of VIDEO (nor does any other source we know of), so the experiment uses XING's for
every dataset. The paper's RNN and RNN Concat share one row of the table. "small" networks have
100 units per GRU layer, "large" ones 500 (HRNN: as many in the user-level GRU). Every model is
trained with TOP1 and Adagrad with momentum (``TrainConfig(optimizer="adagrad", loss="top1")``:
``hrnn_jax.training.optim``'s Adagrad followed by a momentum trace, as GRU4Rec's code) for 10
epochs; dropout is on the session GRU's output for RNN and RNN Concat, and on the user GRU's
output, the session GRU's output and the session initialisation (Eq. 4), in this order, for
HRNN.
"""
from __future__ import annotations

from typing import NamedTuple

# Quadrana et al.'s comparison (Table 3): what `hrnn-jax compare` and the demo run by default.
MODELS = ("pop", "ppop", "itemknn", "gru", "concat", "hrnn-init", "hrnn-all")
NEURAL = ("gru", "concat", "hrnn-init", "hrnn-all")  # the models of Table 2
SIZES = {"small": 100, "large": 500}  # units per GRU layer (Sec. 4.2)
EPOCHS = 10  # Sec. 4.2 ("increasing the number of epochs did not significantly improve the loss")
NEIGHBOURS = 300  # Item-KNN's neighbourhood, tuned for both datasets (Sec. 4.2)
HISTORY_THRESHOLD = 6  # Sec. 4.3.1: short histories have <= 6 sessions (evaluation.breakdown_*)


class Settings(NamedTuple):
    """One row of Table 2: the mini-batch size, the dropout probabilities (user-level GRU,
    session-level GRU, session initialisation; RNN's one value is the session GRU's), and
    Adagrad's learning rate and momentum."""

    batch_size: int
    dropout_user: float
    dropout_session: float
    dropout_init: float
    learning_rate: float
    momentum: float

    def model_fields(self) -> dict:
        """The ``ModelConfig`` fields of this row."""
        return {"dropout_user": self.dropout_user, "dropout_session": self.dropout_session,
                "dropout_init": self.dropout_init}

    def train_fields(self) -> dict:
        """The ``TrainConfig`` fields of this row."""
        return {"batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "momentum": self.momentum}


_RNN = {"small": Settings(100, 0.0, 0.2, 0.0, 0.1, 0.1),
        "large": Settings(100, 0.0, 0.2, 0.0, 0.1, 0.0)}
# Table 2 of the paper (XING): {(model, size): Settings}. RNN (gru) and RNN Concat (concat) share
# their rows.
TABLE2 = {
    ("gru", "small"): _RNN["small"],
    ("gru", "large"): _RNN["large"],
    ("concat", "small"): _RNN["small"],
    ("concat", "large"): _RNN["large"],
    ("hrnn-all", "small"): Settings(100, 0.1, 0.1, 0.2, 0.1, 0.2),
    ("hrnn-all", "large"): Settings(50, 0.0, 0.2, 0.2, 0.05, 0.3),
    ("hrnn-init", "small"): Settings(50, 0.0, 0.1, 0.0, 0.1, 0.0),
    ("hrnn-init", "large"): Settings(100, 0.1, 0.2, 0.2, 0.1, 0.1),
}

# The preprocessing of Sec. 4.1 as DataConfig fields: sessions cut at 30 idle minutes, repeated
# interactions (same item and type) within a session dropped, items with fewer than 20 events
# (XING; 10 for VIDEO) removed, sessions of fewer than 3 events removed, users with at least 5
# sessions kept; each user's last session is the test set. (XING's 'delete' interactions, which
# the paper discards, must be removed from the file beforehand.)
PREPROCESSING = {"session_gap": 1800.0, "dedupe": True, "min_item_support": 20,
                 "min_session_len": 3, "min_sessions": 5, "protocol": "last-session"}
MIN_ITEM_SUPPORT = {"xing": 20, "video": 10}

# Table 3 on XING (Recall@5, MRR@5, Precision@5): {size: {model: (r, m, p)}}; the baselines are
# the same for both sizes.
PAPER_XING = {
    "small": {"itemknn": (0.0697, 0.0406, 0.0139), "ppop": (0.1326, 0.0939, 0.0265),
              "gru": (0.1292, 0.0799, 0.0258), "concat": (0.1358, 0.0844, 0.0272),
              "hrnn-all": (0.1334, 0.0842, 0.0267), "hrnn-init": (0.1337, 0.0832, 0.0267)},
    "large": {"itemknn": (0.0697, 0.0406, 0.0139), "ppop": (0.1326, 0.0939, 0.0265),
              "gru": (0.1317, 0.0796, 0.0263), "concat": (0.1467, 0.0878, 0.0293),
              "hrnn-all": (0.1482, 0.0925, 0.0296), "hrnn-init": (0.1473, 0.0901, 0.0295)},
}
PAPER_METRICS = ("recall@5", "mrr@5", "precision@5")


def settings(model: str, size: str = "small") -> Settings | None:
    """Table 2's row of ``model`` at ``size`` (``"small"`` or ``"large"``); None for a model the
    table does not cover (the baselines, or a model outside the paper)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return TABLE2.get((model, size))
