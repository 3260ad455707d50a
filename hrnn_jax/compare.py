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

import dataclasses
import time
from typing import Callable, NamedTuple

import jax
import numpy as np
import polars as pl
from flax import linen as nn

from hrnn_jax import (baselines, cells, data, evaluation, hcrnn, hcrnn_cells, meta, models,
                      predict, session_attention, significance, training, user_cells)
from hrnn_jax.config import Config, DataConfig, ModelConfig
from hrnn_jax.progress import tagged

USER_GRUS = {"user-gru-linear": user_cells.LinearUserGRU,
             "user-gru-rectified": user_cells.RectifiedUserGRU,
             "user-gru-attentional": user_cells.AttentionalUserGRU}
HCRNNS = {"hcrnn-1": (1, False), "hcrnn-2": (2, False), "hcrnn-3": (3, False),
          "hcrnn-3-bi": (3, True)}  # Song et al.: variant, bi-channel attention ("+Bi")
NEURAL = ("gru", "concat", "hrnn-init", "hrnn-all") + tuple(USER_GRUS) + ("hrnn-meta",) \
    + tuple(HCRNNS) + ("hrnn-hcrnn-3", "lstm4rec", "narm", "stamp")
# models over each user's whole sequence: their lanes have "user" targets under every protocol
WHOLE_SEQUENCE = ("concat", "hrnn-meta", "lstm4rec", "narm", "stamp") + tuple(USER_GRUS) \
    + tuple(HCRNNS)
MODELS = ("pop", "ppop", "spop", "itemknn", "decay-itemknn", "mf", "bpr-mf", "seq-mf") + NEURAL
# Quadrana et al.'s comparison (Table 3): what `hrnn-jax compare` and the demo run by default.
QUADRANA = ("pop", "ppop", "itemknn", "gru", "concat", "hrnn-init", "hrnn-all")
# Donkers et al.'s Table 2 (experiments/donkers2017.py).
DONKERS = ("itemknn", "decay-itemknn", "mf", "seq-mf", "concat") + tuple(USER_GRUS)
# Evaluation runs forward only, and its results do not depend on the window (tested), so it
# always uses long windows: few dispatches whatever the training window.
EVAL_WINDOW = 20


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A prepared log. With an item-feature file (``DataConfig.item_features``), also ``item_features``
    ``[N+1, G]`` (lined up with the codes), ``cold_items`` (bool ``[N+1]``: catalogue items
    without training events) and ``known_items`` (codes of the file's items, which every split
    keeps in test)."""

    encoded: data.Encoded
    protocol: str
    train: pl.DataFrame
    test: pl.DataFrame
    stream: pl.DataFrame
    rows: evaluation.EvalRows
    info: dict
    item_features: np.ndarray | None = None
    cold_items: np.ndarray | None = None
    known_items: np.ndarray | None = None


def rows_targets(protocol: str) -> str:
    """The targets of the evaluation rows: within the test session for "last-session", else the
    user's previous event in any session (for "users": every step of a test user's sequence)."""
    return "session" if protocol == "last-session" else "user"


def lane_targets(name: str, protocol: str) -> str:
    """RNN Concat, the user-based GRUs (Donkers et al.) and HRNN-meta (Ma & Narayanaswamy) run
    over the user's whole sequence."""
    return "user" if name in WHOLE_SEQUENCE else rows_targets(protocol)


def prepare(raw: pl.DataFrame, config: DataConfig = DataConfig(), *,
            test_users=None) -> Prepared:
    """From a validated log (``data.read_interactions``) to train/test parts and evaluation rows.

    Keep only the events at the maximum value (``config.max_value_only``: Song et al.'s MovieLens;
    off by default), sessionise, drop repeated interactions within sessions (``config.dedupe``;
    off by default),
    filter, encode, split by ``config.protocol``, and restrict the catalogue to the items of the
    training part (``data.restrict_items``): every model ranks the same N items.

    ``test_users``: raw user ids to put in test under the "users" protocol instead of a random
    draw (a given split, e.g. ``data.read_hcrnn``'s).

    ``info``: summary of the filtered log before the split (users, items, sessions, events),
    train/test sizes (for the "users" protocol also ``train_users`` and ``test_users``),
    ``dropped`` (events per reason) and ``catalogue`` = {"items": N,
    "removed_items": number of ITEMS of the filtered log that occur only outside the training
    part, e.g. only in removed test events}; so ``items`` = N + ``removed_items``.
    """
    cfg = config
    repeats = {}
    if cfg.max_value_only:
        raw, repeats["below_max_value"] = data.keep_max_value(raw)
    frame = data.sessionize(raw, cfg.session_gap)
    if cfg.dedupe:
        frame, repeats["repeated_in_session"] = data.dedupe_sessions(frame)
    frame, dropped = data.filter_interactions(
        frame, min_item_support=cfg.min_item_support, min_session_len=cfg.min_session_len,
        min_sessions=cfg.min_sessions, min_user_events=cfg.min_user_events)
    genres = None if cfg.item_features is None else data.read_item_features(cfg.item_features)
    encoded = data.encode(frame, catalogue=None if genres is None else genres.item_ids)
    known = None if genres is None else encoded.encode_items(genres.item_ids)
    train, test, split_report = data.split(encoded.events, cfg.protocol,
                                           test_fraction=cfg.test_fraction, seed=cfg.split_seed,
                                           known_items=known, test_users=None if test_users is None
                                           else _user_codes(encoded, test_users))
    users = {k: split_report.pop(k) for k in data.USER_COUNTS if k in split_report}
    if test.height == 0:
        raise data.DataError(f"the {cfg.protocol} split left no test events; users need more "
                             "history")
    restricted, train, test = data.restrict_items(encoded, train, test, known_items=known)
    stream = data.combine(train, test)
    features = cold = None
    catalogue = {"items": restricted.n_items,
                 "removed_items": encoded.n_items - restricted.n_items}
    if genres is not None:
        features, coverage = data.item_feature_matrix(genres, restricted.item_ids)
        known = restricted.encode_items(genres.item_ids)
        cold = np.ones(restricted.n_items + 1, bool)
        cold[0] = False
        cold[np.unique(train["item"].to_numpy())] = False
        catalogue.update(cold_items=int(cold.sum()), genres=features.shape[1], **coverage)
    rows = evaluation.make_eval_rows(stream, rows_targets(cfg.protocol))
    info = {**data.summary(encoded.events), "train_events": train.height,
            "test_events": test.height, **users, "evaluated": len(rows),
            "dropped": {**repeats, **dropped, **split_report},
            "catalogue": catalogue}
    return Prepared(restricted, cfg.protocol, train, test, stream, rows, info, features, cold,
                    known)


def _user_codes(encoded: data.Encoded, raw_ids) -> np.ndarray:
    """The codes of the raw user ids that are in the log (others were filtered out)."""
    codes = {str(u): c for c, u in enumerate(encoded.user_ids)}
    return np.array([codes[str(u)] for u in raw_ids if str(u) in codes], np.int64)


def build_model(name: str, n_items: int, config: ModelConfig = ModelConfig(), *,
                n_users: int | None = None, item_features: np.ndarray | None = None,
                cold_items: np.ndarray | None = None, feedback_levels: int = 0) -> models.Model:
    """The papers' models with ``config.hidden`` units (HRNN: 100+100 'small').

    ``user-gru-linear|rectified|attentional``: ``models.UserRNN`` (Donkers et al.) with item and
    user embeddings as wide as the hidden state (their Table 1) and ``config``'s item/user
    dropout, L2 on the user side and omega; they need ``n_users`` (the user table's rows).
    ``hrnn-meta``: ``meta.HRNNMeta`` (a GRU over the user's sequence fed the level of the time to
    the predicted event, Table 5's edges; with ``config.feedback`` each event's value, or its
    type among ``feedback_levels`` types, joins its input); with ``item_features`` ``[N+1, G]`` its decoder mixes
    them in (lambda randomised in training) and ``cold_items`` are scored from them alone. The
    other models ignore features. ``lstm4rec``: RNN Concat with flax's ``LSTMCell`` and a
    learned embedding (Song et al.'s baseline). ``hcrnn-1|2|3``, ``hcrnn-3-bi``: ``hcrnn.HCRNN`` (Song et al.)
    with embedding ``config.embed_dim`` (default: the hidden size), ``config.contexts`` global
    contexts, ``config.kl_weight`` and, for "-bi", the bi-channel attention over the last
    ``config.attention_history`` steps (without "-bi": ``config.hcrnn_attention``); dropout 0.25 on inputs and 0.5 on the decoder's input
    as the paper. ``narm``, ``stamp``: ``session_attention.NARM`` (a GRU of ``config.hidden``
    units) and ``session_attention.STAMP``, Song et al.'s attention baselines, with embedding
    ``config.embed_dim`` (default: the hidden size) and attention over the last
    ``config.attention_history`` steps. ``hrnn-hcrnn-3``: ``models.HRNN`` (Init) with an HCRNN-3
    session cell (no theta is inferred there: every global context weighs the same, see
    ``hrnn_jax.hcrnn_cells``) and a GRU user cell."""
    cfg = config
    if name == "gru":
        return models.SessionRNN(n_items, cells.GRU(cfg.hidden), embed_dim=cfg.embed_dim,
                                 dropout_session=cfg.dropout_session)
    if name == "concat":
        return models.SessionRNN(n_items, cells.GRU(cfg.hidden), reset="user",
                                 embed_dim=cfg.embed_dim, dropout_session=cfg.dropout_session)
    if name in ("hrnn-init", "hrnn-all"):
        return models.HRNN(n_items, cells.GRU(cfg.hidden), user_cell=cells.GRU(cfg.hidden),
                           mode=name.split("-")[1], embed_dim=cfg.embed_dim,
                           dropout_session=cfg.dropout_session,
                           dropout_user=cfg.dropout_user, dropout_init=cfg.dropout_init,
                           context_gates=cfg.context_gates, first_session=cfg.first_session,
                           context_grad=cfg.context_grad)
    if name == "hrnn-meta":  # the time-gap control input: Table 5's levels
        return meta.HRNNMeta(n_items, cells.GRU(cfg.hidden), embed_dim=cfg.embed_dim,
                             dropout_session=cfg.dropout_session, item_features=item_features,
                             cold_items=cold_items, feedback=cfg.feedback != "none",
                             feedback_levels=feedback_levels if cfg.feedback == "event" else 0)
    if name == "lstm4rec":  # Song et al.'s GRU4Rec variant with an LSTM: flax's LSTMCell
        return models.SessionRNN(n_items, nn.LSTMCell(cfg.hidden), reset="user",
                                 embed_dim=cfg.embed_dim or cfg.hidden,
                                 dropout_session=cfg.dropout_session)
    if name == "hrnn-hcrnn-3":  # composability: HRNN Init with an HCRNN-3 session cell
        D = cfg.embed_dim or cfg.hidden
        return models.HRNN(n_items, hcrnn_cells.HCRNNCell(cfg.hidden, context_dim=D,
                                                          n_contexts=cfg.contexts, variant=3),
                           user_cell=cells.GRU(cfg.hidden), mode="init", embed_dim=D,
                           dropout_session=cfg.dropout_session, dropout_user=cfg.dropout_user,
                           dropout_init=cfg.dropout_init)
    if name in HCRNNS:
        variant, attention = HCRNNS[name]
        return hcrnn.HCRNN(n_items, embed_dim=cfg.embed_dim or cfg.hidden,
                           hidden_units=cfg.hidden, n_contexts=cfg.contexts, variant=variant,
                           attention="bi" if attention else cfg.hcrnn_attention,
                           history=cfg.attention_history,
                           kl_weight=cfg.kl_weight)
    if name == "narm":
        return session_attention.NARM(n_items, embed_dim=cfg.embed_dim or cfg.hidden,
                                      hidden_units=cfg.hidden, history=cfg.attention_history)
    if name == "stamp":
        return session_attention.STAMP(n_items, embed_dim=cfg.embed_dim or cfg.hidden,
                                       history=cfg.attention_history)
    if name in USER_GRUS:
        if n_users is None:
            raise ValueError(f"{name} has a user table: build_model needs n_users")
        kw = {"omega": cfg.omega} if name == "user-gru-rectified" else {}
        cell = USER_GRUS[name](cfg.hidden, item_features=cfg.hidden, **kw)
        return models.UserRNN(n_items, n_users, cell, user_dim=cfg.hidden,
                              dropout_item=cfg.dropout_item,
                              dropout_user=cfg.dropout_user_vector, l2_user=cfg.l2_user)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


class Ranked(NamedTuple):
    """A model's evaluation: ``ranks [S, R]`` (one row per seed; S = 1 for baselines) of every
    evaluation row's target, its training cost and the per-epoch ``history`` of
    ``training.fit`` (empty for baselines)."""

    ranks: np.ndarray
    train_seconds: float
    events_per_second: float
    history: tuple = ()


def validation(prep: Prepared, config: Config):
    """``(train, validate_fn_factory)`` for early stopping: the training part split again by the
    same protocol, ``test_fraction`` and ``split_seed`` (``data.validation_split``); the factory
    takes a model and its lane targets and returns ``validate(params) -> MRR@max(ks)`` on the
    validation rows.
    """
    train, valid, _ = data.validation_split(prep.train, prep.protocol,
                                            test_fraction=config.data.test_fraction,
                                            seed=config.data.split_seed,
                                            known_items=prep.known_items)
    v_stream = data.combine(train, valid)
    v_rows = evaluation.make_eval_rows(v_stream, rows_targets(prep.protocol))
    k = max(config.eval.ks)

    def factory(model, targets):
        def validate(params):
            ranks = predict.model_ranks(model, params, v_stream, v_rows,
                                        batch_size=config.train.batch_size, window=EVAL_WINDOW,
                                        targets=targets, ties=config.eval.ties)
            return evaluation.metrics_from_ranks(ranks, (k,))[f"mrr@{k}"]
        return validate

    return train, factory


def model_for(name: str, prep: Prepared, config: Config) -> models.Model:
    """:func:`build_model` for ``prep``'s catalogue, users and item features."""
    source = {"value": ("value", "--value-col"), "event": ("event_code", "--event-col")}
    levels = 0
    if name == "hrnn-meta" and config.model.feedback != "none":
        column, flag = source[config.model.feedback]
        if column not in prep.train.columns:
            raise data.DataError(f"--feedback {config.model.feedback} reads each event's "
                                 f"{config.model.feedback}: give the log's column with {flag}")
        if column == "event_code":
            levels = int(prep.encoded.events["event_code"].max()) + 1
    return build_model(name, prep.encoded.n_items, config.model, n_users=prep.encoded.n_users,
                       item_features=prep.item_features, cold_items=prep.cold_items,
                       feedback_levels=levels)


def seed_params(params, n_seeds: int) -> list:
    """The parameters of each seed: ``params`` itself for one, slices of the seed axis else."""
    if n_seeds == 1:
        return [params]
    return [jax.tree_util.tree_map(lambda a: a[i], params) for i in range(n_seeds)]


def fit_neural(name: str, prep: Prepared, config: Config, log=None, progress=None, *,
               resume=None, on_epoch=None):
    """Train neural model ``name`` (``config.train.seeds`` seeds at once): (model, FitResult).
    ``resume`` and ``on_epoch``: as ``training.fit``'s (``hrnn_jax.checkpoint`` uses them)."""
    model = model_for(name, prep, config)
    targets = lane_targets(name, prep.protocol)
    train, validate = prep.train, None
    if config.train.patience > 0:
        train, factory = validation(prep, config)
        validate = factory(model, targets)
    result = training.fit(model, train, config.train, targets=targets, validate=validate,
                          log=log, progress=progress, resume=resume, on_epoch=on_epoch)
    return model, result


def evaluate_neural(name: str, model: models.Model, params, prep: Prepared, config: Config,
                    progress=None) -> np.ndarray:
    """Ranks of every evaluation row under ``params`` of one seed: ``[R]``."""
    return predict.model_ranks(model, params, prep.stream, prep.rows,
                               batch_size=config.train.batch_size, window=EVAL_WINDOW,
                               targets=lane_targets(name, prep.protocol), ties=config.eval.ties,
                               exclude_seen=config.eval.exclude_seen, progress=progress)


def run_baseline(name: str, prep: Prepared, config: Config, progress=None) -> Ranked:
    m = config.model
    mf = {"factors": m.factors, "epochs": m.mf_epochs, "learning_rate": m.mf_learning_rate,
          "seed": config.train.seed}
    kw = {"itemknn": {"neighbours": m.neighbours},
          "decay-itemknn": {"neighbours": m.neighbours, "decay": m.decay},
          "mf": mf, "bpr-mf": mf, "seq-mf": {**mf, "window": m.mf_window}}.get(name, {})
    start = time.perf_counter()
    model = baselines.make_baseline(name, **kw).fit(prep.train, prep.encoded.n_items)
    seconds = time.perf_counter() - start
    ranks = evaluation.rank_chunks(lambda idx: model.score(prep.rows, idx), prep.rows,
                                   ties=config.eval.ties, exclude_seen=config.eval.exclude_seen,
                                   progress=progress)
    return Ranked(ranks[None], seconds, prep.train.height / seconds if seconds else 0.0)


def run_models(prep: Prepared, names, config: Config = Config(),
               log: Callable[[str], None] | None = print, progress=None) -> dict[str, Ranked]:
    """Train/fit and rank every evaluation row for each model: ``{name: Ranked}``.

    ``progress(label, done, total)`` (``hrnn_jax.progress``) follows every epoch and evaluation,
    labelled with the model's name: ``"gru epoch 3/10"``, ``"gru evaluation"``.
    """
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    out = {}
    for name in names:
        if log:
            log(f"== {name}")
        if name in NEURAL:
            model, result = fit_neural(name, prep, config, log, tagged(progress, name))
            S = config.train.seeds
            ranks = np.stack([
                evaluate_neural(name, model, p, prep, config, tagged(
                    progress, name, "" if S == 1 else f" seed {config.train.seed + i}"))
                for i, p in enumerate(seed_params(result.params, S))])
            out[name] = Ranked(ranks, result.train_seconds, result.events_per_second,
                               tuple(result.history))
        else:
            out[name] = run_baseline(name, prep, config, tagged(progress, name))
    return out


def summarise(prep: Prepared, ranked: dict[str, Ranked], config: Config = Config(), *,
              reference: str | None = None) -> dict:
    """``{name: {metric: value, "train_seconds", "events_per_second", "breakdown"}}``.

    Metrics of several seeds are their mean. ``breakdown``: by user history length and by position
    in the session (Quadrana et al. 4.3.1 and 4.3.2) at the smallest K, of the first seed.

    With ``config.train.seeds`` > 1 every model also gets ``seeds`` (its runs: S for the neural
    models, 1 for the deterministic baselines), ``mean`` and ``std`` (sample standard deviation
    over the seeds, ddof 1; 0 for one run) of every metric, and ``per_seed`` (each seed's values).

    ``reference``: a model of ``ranked``; every other model gets ``p_value`` (Wilcoxon
    signed-rank) and ``t_test_p_value`` (paired t-test) of its per-test-session recall@k and
    mrr@k against it, with ``reference`` and ``sessions`` (the pairs), see
    ``hrnn_jax.significance.against_reference``.
    """
    ks, k0 = config.eval.ks, (min(config.eval.ks),)
    tests = {}
    if reference is not None:
        tests = significance.against_reference(
            {name: r.ranks for name, r in ranked.items()}, reference,
            significance.row_sessions(prep.stream, prep.rows), ks)
    results = {}
    for name, r in ranked.items():
        per_seed = [evaluation.metrics_from_ranks(x, ks) for x in r.ranks]
        names = [k for k in per_seed[0] if k != "n"]
        metrics = {k: float(np.mean([m[k] for m in per_seed])) for k in names}
        seeds = {}
        if config.train.seeds > 1:
            values = {k: [float(m[k]) for m in per_seed] for k in names}
            seeds = {"seeds": len(per_seed), "mean": metrics,
                     "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
                             for k, v in values.items()},
                     "per_seed": values}
        results[name] = {
            **metrics,
            **seeds,
            **tests.get(name, {}),
            "train_seconds": r.train_seconds,
            "events_per_second": r.events_per_second,
            "breakdown": {
                "history": evaluation.breakdown_by_history(prep.rows, r.ranks[0], k0),
                "position": evaluation.breakdown_by_position(prep.rows, r.ranks[0], k0),
            },
        }
    return results


def compare(prep: Prepared, names, config: Config = Config(),
            log: Callable[[str], None] | None = print, progress=None, *,
            reference: str | None = None) -> dict:
    """Train/fit and evaluate each model: :func:`summarise` of :func:`run_models`; ``reference``:
    the model the others are tested against (:func:`summarise`)."""
    if reference is not None and reference not in names:
        raise ValueError(f"reference model {reference!r} is not among the compared models "
                         f"({', '.join(names)})")
    return summarise(prep, run_models(prep, names, config, log, progress), config,
                     reference=reference)


def table(results: dict, ks=(5, 20)) -> str:
    """The comparison as a plain-text table, one line per model.

    Models of several seeds show ``mean±std`` (deterministic baselines their one value); with a
    reference model (:func:`summarise`), recall@k and mrr@k of the other models carry ``*``
    (Wilcoxon p < 0.05) or ``**`` (p < 0.01), explained in footer lines. Without either the
    table is the plain one.
    """
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "mrr", "precision", "ndcg")]
    seeds = max((r.get("seeds", 1) for r in results.values()), default=1)
    ref = next((r["reference"] for r in results.values() if "reference" in r), None)
    width = 13 if seeds == 1 else 16 if ref is None else 18

    def cell(r, c):
        text = f"{r[c]:.4f}"
        if r.get("seeds", 1) > 1:
            text += f"±{r['std'][c]:.4f}"
        return text + significance.marks(r.get("p_value", {}).get(c))

    pad = max([10] + [len(name) + 1 for name in results])
    head = (f"{'model':<{pad}}" + "".join(f"{c:>{width}}" for c in cols)
            + f"{'train s':>9}{'events/s':>10}")
    lines = [head]
    for name, r in results.items():
        cost = (f"{r['train_seconds']:>9.1f}{r['events_per_second']:>10.0f}"
                if "train_seconds" in r else f"{'-':>9}{'-':>10}")  # e.g. a loaded checkpoint
        lines.append(f"{name:<{pad}}" + "".join(f"{cell(r, c):>{width}}" for c in cols) + cost)
    if seeds > 1:
        one = [name for name, r in results.items() if r.get("seeds", 1) == 1]
        lines.append(f"mean±std (sample standard deviation) over {seeds} seeds"
                     + (f"; {', '.join(one)}: deterministic, one run" if one else ""))
    if ref is not None:
        sessions = next(r["sessions"] for r in results.values() if "reference" in r)
        lines.append(f"* p < 0.05, ** p < 0.01: {significance.WILCOXON} against {ref} on "
                     f"recall@k and mrr@k per test session ({sessions} sessions)")
    return "\n".join(lines)
