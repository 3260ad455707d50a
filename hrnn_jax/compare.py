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
session, so every model runs with ``"user"`` targets there.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import polars as pl

from hrnn_jax import baselines, cells, data, evaluation, losses, models, predict, training

NEURAL = ("gru", "concat", "hrnn-init", "hrnn-all")
MODELS = ("pop", "ppop", "itemknn") + NEURAL
# Evaluation runs forward only, and its results do not depend on the window (tested), so it
# always uses long windows: few dispatches whatever the training window.
EVAL_WINDOW = 20


@dataclasses.dataclass(frozen=True)
class Config:
    hidden: int = 100
    batch: int = 50
    window: int = 1  # the original training: one step per mini-batch (measured best here)
    epochs: int = 10
    optimizer: str = "adagrad"
    lr: float = 0.1
    momentum: float = 0.0
    loss: str = "top1"
    n_negatives: int = 0
    clip: float | None = None
    dropout: tuple[float, float, float] = (0.0, 0.1, 0.0)  # user GRU, session GRU, init (Table 2)
    activation: losses.Activation = "linear"  # g(.) of the scores in the training loss
    # models.HRNN's options (defaults chosen by experiments/hrnn_all_ablation.py)
    context_gates: models.ContextGates = "rz"
    first_session: models.FirstSession = "init"
    context_grad: models.ContextGrad = "step"
    patience: int = 0  # > 0: early stopping on a validation split of the training part
    neighbours: int = 100
    ks: tuple[int, ...] = (5, 20)
    ties: str = "optimistic"
    exclude_seen: bool = False
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Prepared:
    encoded: data.Encoded
    protocol: str
    train: pl.DataFrame
    test: pl.DataFrame
    stream: pl.DataFrame
    rows: evaluation.EvalRows
    info: dict


def rows_targets(protocol: str) -> str:
    return "session" if protocol == "last-session" else "user"


def lane_targets(name: str, protocol: str) -> str:
    return "user" if name == "concat" else rows_targets(protocol)


def prepare(raw: pl.DataFrame, *, protocol: str = "last-session", session_gap: float = 1800.0,
            min_item_support: int = 5, min_session_len: int = 2, min_sessions: int = 1,
            test_fraction: float = 0.05, dedupe: bool = False) -> Prepared:
    """From a validated log (``data.read_interactions``) to train/test parts and evaluation rows.

    Sessionise, drop repeated interactions within sessions (``dedupe``; off by default), filter,
    encode, split, and restrict the catalogue to the items of the training part
    (``data.restrict_items``): every model ranks the same N items.

    ``info``: summary of the filtered log before the split (users, items, sessions, events),
    train/test sizes, ``dropped`` (events per reason) and ``catalogue`` = {"items": N,
    "removed_items": number of ITEMS of the filtered log that occur only outside the training
    part, e.g. only in removed test events}; so ``items`` = N + ``removed_items``.
    """
    frame = data.sessionize(raw, session_gap)
    repeats = {}
    if dedupe:
        frame, repeats["repeated_in_session"] = data.dedupe_sessions(frame)
    frame, dropped = data.filter_interactions(
        frame, min_item_support=min_item_support, min_session_len=min_session_len,
        min_sessions=min_sessions)
    encoded = data.encode(frame)
    train, test, split_report = data.split(encoded.events, protocol, test_fraction=test_fraction)
    if test.height == 0:
        raise data.DataError(f"the {protocol} split left no test events; users need more history")
    restricted, train, test = data.restrict_items(encoded, train, test)
    stream = data.combine(train, test)
    rows = evaluation.make_eval_rows(stream, rows_targets(protocol))
    info = {**data.summary(encoded.events), "train_events": train.height,
            "test_events": test.height, "evaluated": len(rows),
            "dropped": {**repeats, **dropped, **split_report},
            "catalogue": {"items": restricted.n_items,
                          "removed_items": encoded.n_items - restricted.n_items}}
    return Prepared(restricted, protocol, train, test, stream, rows, info)


def build_model(name: str, n_items: int, cfg: Config):
    """The paper's models with GRU cells of ``cfg.hidden`` units (HRNN: 100+100 in 'small')."""
    d_user, d_session, d_init = cfg.dropout
    if name == "gru":
        return models.SessionRNN(n_items, cells.GRU(cfg.hidden), dropout_session=d_session)
    if name == "concat":
        return models.SessionRNN(n_items, cells.GRU(cfg.hidden), reset="user",
                                 dropout_session=d_session)
    if name in ("hrnn-init", "hrnn-all"):
        return models.HRNN(n_items, cells.GRU(cfg.hidden), user_cell=cells.GRU(cfg.hidden),
                           mode=name.split("-")[1], dropout_session=d_session,
                           dropout_user=d_user, dropout_init=d_init,
                           context_gates=cfg.context_gates, first_session=cfg.first_session,
                           context_grad=cfg.context_grad)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def _fit(name, prep: Prepared, cfg: Config, log):
    model = build_model(name, prep.encoded.n_items, cfg)
    targets = lane_targets(name, prep.protocol)
    train, validate = prep.train, None
    if cfg.patience > 0:
        train, valid, _ = data.validation_split(prep.train, prep.protocol)
        v_stream = data.combine(train, valid)
        v_rows = evaluation.make_eval_rows(v_stream, rows_targets(prep.protocol))
        k = max(cfg.ks)

        def validate(params):
            ranks = predict.model_ranks(model, params, v_stream, v_rows, batch_size=cfg.batch,
                                        window=EVAL_WINDOW, targets=targets, ties=cfg.ties)
            return evaluation.metrics_from_ranks(ranks, (k,))[f"mrr@{k}"]

    result = training.fit(model, train, epochs=cfg.epochs, batch_size=cfg.batch,
                          window=cfg.window, optimizer=cfg.optimizer, learning_rate=cfg.lr,
                          momentum=cfg.momentum, loss=cfg.loss, n_negatives=cfg.n_negatives,
                          clip=cfg.clip, activation=cfg.activation, targets=targets,
                          seed=cfg.seed, validate=validate,
                          patience=max(cfg.patience, 1), log=log)
    ranks = predict.model_ranks(model, result.params, prep.stream, prep.rows,
                                batch_size=cfg.batch, window=EVAL_WINDOW, targets=targets,
                                ties=cfg.ties, exclude_seen=cfg.exclude_seen)
    return ranks, result.train_seconds, result.events_per_second


def _baseline(name, prep: Prepared, cfg: Config):
    kw = {"neighbours": cfg.neighbours} if name == "itemknn" else {}
    start = time.perf_counter()
    model = baselines.make_baseline(name, **kw).fit(prep.train, prep.encoded.n_items)
    seconds = time.perf_counter() - start
    ranks = evaluation.rank_chunks(lambda idx: model.score(prep.rows, idx), prep.rows,
                                   ties=cfg.ties, exclude_seen=cfg.exclude_seen)
    return ranks, seconds, prep.train.height / seconds if seconds else 0.0


def compare(prep: Prepared, names, cfg: Config = Config(),
            log: Callable[[str], None] | None = print) -> dict:
    """Train/fit and evaluate each model; ``{name: {metric: value, "train_seconds", ...}}``.

    Also per model: ``"breakdown"`` by user history length and by position in the session
    (Quadrana et al. 4.3.1 and 4.3.2) at the smallest K.
    """
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    results = {}
    for name in names:
        if log:
            log(f"== {name}")
        if name in NEURAL:
            ranks, seconds, eps = _fit(name, prep, cfg, log)
        else:
            ranks, seconds, eps = _baseline(name, prep, cfg)
        metrics = evaluation.metrics_from_ranks(ranks, cfg.ks)
        k0 = (min(cfg.ks),)
        results[name] = {
            **{k: v for k, v in metrics.items() if k != "n"},
            "train_seconds": seconds,
            "events_per_second": eps,
            "breakdown": {
                "history": evaluation.breakdown_by_history(prep.rows, ranks, k0),
                "position": evaluation.breakdown_by_position(prep.rows, ranks, k0),
            },
        }
    return results


def table(results: dict, ks=(5, 20)) -> str:
    """The comparison as a plain-text table, one line per model."""
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "mrr", "precision", "ndcg")]
    head = f"{'model':<10}" + "".join(f"{c:>13}" for c in cols) + f"{'train s':>9}{'events/s':>10}"
    lines = [head]
    for name, r in results.items():
        lines.append(f"{name:<10}" + "".join(f"{r[c]:>13.4f}" for c in cols)
                     + f"{r['train_seconds']:>9.1f}{r['events_per_second']:>10.0f}")
    return "\n".join(lines)
