"""Compare models on a prepared log: train the neural ones with ``training.fit``, fit the
baselines, and rank every evaluation row against the whole catalogue with the same code for all
of them (``hrnn_jax.evaluation``); then the metrics, breakdowns and significance tests.

    prep = data.prepare(log, DataConfig(...))           # hrnn_jax.data.pipeline
    results = compare(prep, ["pop", "gru", "hrnn-init"], Config(...), reference="gru")
    print(tables.table(results))

Models are named by the two registries (``models.model_names()``, ``baselines.baseline_names()``).
Lane layouts: a model's own (``models.lane_targets``): the session GRU and the HRNNs learn
within-session targets under the last-session protocol, as the paper; whole-sequence models
(RNN Concat, the user-based GRUs, HRNN-meta, HCRNN, NARM, STAMP) run over each user's sequence
(RNN Concat's first prediction of a session, made from the previous session, is not scored:
Quadrana et al.'s footnote 5). Under leave-one-out, temporal and user splits a test event may open
a session, so every model runs with ``"user"`` targets there.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from hrnn_jax import baselines, data, evaluation, models, parallel, training
from hrnn_jax.config import Config, ConfigError
from hrnn_jax.data.pipeline import Prepared
from hrnn_jax.data.rows import rows_targets
from hrnn_jax.evaluation import predict, shares, significance
from hrnn_jax.parallel.distributed import concat_over_processes
from hrnn_jax.progress import tagged


def model_names() -> tuple[str, ...]:
    """Every name ``compare`` runs: the baselines', then the neural models' (both registries)."""
    neural, simple = models.model_names(), baselines.baseline_names()
    shared = sorted(set(neural) & set(simple))
    if shared:
        raise ValueError(f"model name(s) {shared} are registered both as a baseline and as a "
                         "neural model")
    return simple + neural


def is_neural(name: str) -> bool:
    """``name`` is a model of the neural registry (trained by ``training.fit``)."""
    return name in models.model_names()


class Ranked(NamedTuple):
    """A model's evaluation: ``ranks [S, R]`` (one row per seed; S = 1 for baselines) of every
    evaluation row's target, its training cost and the per-epoch ``records`` of
    ``training.fit`` (empty for baselines)."""

    ranks: np.ndarray
    train_seconds: float
    events_per_second: float
    records: tuple = ()


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
    v_rows = data.make_eval_rows(v_stream, rows_targets(prep.protocol))
    k = max(config.eval.ks)

    def factory(model, targets):
        def validate(params):
            ranks = predict.model_ranks(model, params, v_stream, v_rows,
                                        batch_size=config.train.batch_size, targets=targets,
                                        ties=config.eval.ties, mesh=config.train.mesh)
            return evaluation.metrics_from_ranks(ranks, (k,))[f"mrr@{k}"]
        return validate

    return train, factory


def model_for(name: str, prep: Prepared, config: Config) -> models.Model:
    """The registered model ``name`` (``models.build_model``) for ``prep``'s catalogue, users,
    item features and event types."""
    source = {"value": ("value", "--value-col"), "event": ("event_code", "--event-col")}
    levels = 0
    if config.model.feedback != "none":
        column, flag = source[config.model.feedback]
        if column not in prep.train.columns:
            raise data.DataError(f"--feedback {config.model.feedback} reads each event's "
                                 f"{config.model.feedback}: give the log's column with {flag}")
        if column == "event_code":
            levels = int(prep.encoded.events["event_code"].max()) + 1
    return models.build_model(name, prep.encoded.n_items, config.model,
                              n_users=prep.encoded.n_users, item_features=prep.item_features,
                              cold_items=prep.cold_items, feedback_levels=levels)


def config_for(name: str, config: Config) -> Config:
    """``config`` with the training settings registered with model ``name``
    (``models.train_config_for``: GRU4Rec+'s loss and negatives); unchanged for a baseline."""
    if not is_neural(name):
        return config
    return dataclasses.replace(config, train=models.train_config_for(name, config.train))


def lane_targets(model: models.Model, prep: Prepared) -> str:
    """The lanes ``model`` trains and runs with on ``prep`` (``models.lane_targets``)."""
    return models.lane_targets(model, prep.protocol)


def seed_params(params, n_seeds: int) -> list:
    """The parameters of each seed: ``params`` itself for one, slices of the seed axis else."""
    if n_seeds == 1:
        return [params]
    return [jax.tree_util.tree_map(lambda a: a[i], params) for i in range(n_seeds)]


def fit_neural(model: models.Model, prep: Prepared, config: Config, log=None, progress=None, *,
               optimizer=None, resume=None, on_epoch=None):
    """Train ``model`` on ``prep`` (``config.train.seeds`` seeds at once): its FitResult.
    ``optimizer``, ``resume`` and ``on_epoch``: as ``training.fit``'s (``hrnn_jax.checkpoint``
    uses them)."""
    targets = lane_targets(model, prep)
    train, validate = prep.train, None
    if config.train.patience > 0:
        train, factory = validation(prep, config)
        validate = factory(model, targets)
    learn = models.train_lane_targets(model, prep.protocol, config.train.train_lanes)
    return training.fit(model, train, config.train, optimizer=optimizer, targets=learn,
                        validate=validate, log=log, progress=progress, resume=resume,
                        on_epoch=on_epoch)


def candidates(prep: Prepared, config: Config) -> np.ndarray | None:
    """The items every target is ranked against: None for the whole catalogue, or with
    ``config.eval.rank_top_items`` = n the n items with the most training events
    (``evaluation.top_items``; Quadrana et al.'s Table 5). Early stopping's validation ranks
    against the whole catalogue either way."""
    n = config.eval.rank_top_items
    if n is None:
        return None
    N = prep.encoded.n_items
    return evaluation.top_items(baselines.item_counts(baselines.train_events(prep.train, N), N), n)


def evaluate_neural(model: models.Model, params, prep: Prepared, config: Config,
                    progress=None, *, mesh=None) -> np.ndarray:
    """Ranks of every evaluation row under ``params`` of one seed: ``[R]``; on ``mesh``
    (default: ``config.train.mesh``)."""
    return predict.model_ranks(model, params, prep.stream, prep.rows,
                               batch_size=config.train.batch_size,
                               targets=lane_targets(model, prep), ties=config.eval.ties,
                               exclude_seen=config.eval.exclude_seen, progress=progress,
                               candidates=candidates(prep, config),
                               mesh=config.train.mesh if mesh is None else mesh)


def run_baseline(name: str, prep: Prepared, config: Config, progress=None) -> Ranked:
    """Fit baseline ``name`` (``baselines.build_baseline``) and rank every evaluation row."""
    start = time.perf_counter()
    model = baselines.build_baseline(name, config).fit(prep.train, prep.encoded.n_items)
    seconds = time.perf_counter() - start
    ranks = evaluation.rank_chunks(lambda idx: model.score(prep.rows, idx), prep.rows,
                                   ties=config.eval.ties, exclude_seen=config.eval.exclude_seen,
                                   progress=progress, candidates=candidates(prep, config))
    return Ranked(ranks[None], seconds, prep.train.height / seconds if seconds else 0.0)


def run_models(prep: Prepared, names, config: Config = Config(),
               log: Callable[[str], None] | None = print, progress=None) -> dict[str, Ranked]:
    """Train/fit and rank every evaluation row for each model: ``{name: Ranked}``.

    ``progress(label, done, total)`` (``hrnn_jax.progress``) follows every epoch and evaluation,
    labelled with the model's name: ``"gru epoch 3/10"``, ``"gru evaluation"``.
    """
    known = model_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    out = {}
    for name in names:
        if log:
            log(f"== {name}")
        if is_neural(name):
            model = model_for(name, prep, config)
            result = fit_neural(model, prep, config_for(name, config), log,
                                tagged(progress, name))
            S = config.train.seeds
            ranks = np.stack([
                evaluate_neural(model, p, prep, config, tagged(
                    progress, name, "" if S == 1 else f" seed {config.train.seed + i}"))
                for i, p in enumerate(seed_params(result.params, S))])
            out[name] = Ranked(ranks, result.train_seconds, result.events_per_second,
                               tuple(result.records))
        else:
            out[name] = run_baseline(name, prep, config, tagged(progress, name))
    return out


def summarise(prep: Prepared, ranked: dict[str, Ranked], config: Config = Config(), *,
              reference: str | None = None) -> dict:
    """``{name: {metric: value, "train_seconds", "events_per_second", "breakdown"}}``.

    Metrics of several seeds are their mean. ``breakdown``: by user history length and by position
    in the session (Quadrana et al. 4.3.1 and 4.3.2) at the smallest K, of the first seed,
    averaged per prediction (``experiments/quadrana2017.py`` also averages them per test session,
    as the paper: ``evaluation.breakdown_by_history(..., sessions=...)``).

    With ``config.train.seeds`` > 1 every model also gets ``seeds`` (its runs: S for the neural
    models, 1 for the deterministic baselines), ``mean`` and ``std`` (sample standard deviation
    over the seeds, ddof 1; 0 for one run) of every metric, and ``per_seed`` (each seed's values).

    ``reference``: a model of ``ranked``; every other model gets ``p_value`` (Wilcoxon
    signed-rank) and ``t_test_p_value`` (paired t-test) of its per-test-session recall@k and
    mrr@k against it, with ``reference`` and ``sessions`` (the pairs), see
    ``hrnn_jax.evaluation.significance.against_reference``.
    """
    ks, k0 = config.eval.ks, (min(config.eval.ks),)
    tests = {}
    if reference is not None:
        tests = significance.against_reference(
            {name: r.ranks for name, r in ranked.items()}, reference,
            significance.row_sessions(prep.stream, prep.rows), ks)
    results = {}
    for name, r in ranked.items():
        results[name] = {
            **ranked_metrics(r, config),
            **tests.get(name, {}),
            "breakdown": {
                "history": evaluation.breakdown_by_history(prep.rows, r.ranks[0], k0),
                "position": evaluation.breakdown_by_position(prep.rows, r.ranks[0], k0),
            },
        }
    return results


def ranked_metrics(r: Ranked, config: Config) -> dict:
    """The metrics of one model's :class:`Ranked` (their mean over seeds; with several seeds also
    ``seeds``, ``mean``, ``std`` and ``per_seed``), ``train_seconds`` and ``events_per_second``:
    :func:`summarise` without the breakdowns and tests."""
    per_seed = [evaluation.metrics_from_ranks(x, config.eval.ks) for x in r.ranks]
    names = [k for k in per_seed[0] if k != "n"]
    metrics = {k: float(np.mean([m[k] for m in per_seed])) for k in names}
    seeds = {}
    if config.train.seeds > 1:
        values = {k: [float(m[k]) for m in per_seed] for k in names}
        seeds = {"seeds": len(per_seed), "mean": metrics,
                 "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
                         for k, v in values.items()},
                 "per_seed": values}
    return {**metrics, **seeds, "train_seconds": r.train_seconds,
            "events_per_second": r.events_per_second}


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


# ------------------------------------------------------------------------------------------
# From the shares of an encoded log: every process reads only its users
# ------------------------------------------------------------------------------------------
def runs_from_shares(name: str, config: Config = Config()) -> bool:
    """True for the models :func:`compare_shares` runs: the neural ones and the baselines fitted
    from the per-item counts alone (``baselines.CountBaseline``: POP, PPOP)."""
    return is_neural(name) or isinstance(baselines.build_baseline(name, config),
                                         baselines.CountBaseline)


def check_shares(names, config: Config) -> None:
    """ConfigError unless ``names`` and ``config`` can be compared from shares."""
    others = [n for n in names if not runs_from_shares(n, config)]
    if others:
        raise ConfigError(f"{', '.join(others)}: these baselines read every user's events in "
                          "one process, which no process does from the shares of an encoded "
                          "log; leave them out (the neural models, pop and ppop run) and "
                          "compare them on the log itself")
    if config.train.patience > 0:
        raise ConfigError("patience: early stopping holds out validation users from the "
                          "training part, which no process reads whole from shares; give "
                          "--patience 0")


def compare_shares(out_dir, names, config: Config = Config(),
                   log: Callable[[str], None] | None = print, progress=None) -> dict:
    """Train and evaluate models on an encoded log (``data.preprocess_parquet``), every process
    reading only its share (``data.read_share`` with ``config.train.lane_groups`` groups) and
    ranking only its users' test events (``evaluation.shares``). Every process calls it alike
    (``jax.distributed``; one process reads every group). The neural models train on the
    share; POP and PPOP are fitted from the per-item counts of the whole training part
    (:func:`runs_from_shares`); the other baselines are refused (ConfigError).

    Returns ``{name: metrics}`` as :func:`ranked_metrics` gives them (the metrics of the whole
    test part in every process). Each process ranks its rows on its own devices of the training
    mesh (``parallel.local_mesh``: a process's rows are not the mesh's). ``config.data`` is
    replaced by the settings the log was encoded with (``data.read_data_config``: the protocol).
    ``eval.rank_top_items`` ranks against the items with the most training events, as
    :func:`candidates`.
    """
    check_shares(names, config)
    config = dataclasses.replace(config, data=data.read_data_config(out_dir))
    share = data.read_share(out_dir, config.train.lane_groups,
                            process=(jax.process_index(), jax.process_count()))
    cands = share_candidates(share, config)
    rows = shares.share_rows(out_dir, share, config.data.protocol)  # (stream, rows), read once
    n_users = data.count_users(out_dir)
    results = {}
    for name in names:
        if log:
            log(f"== {name}")
        if is_neural(name):
            ranked = _neural_share(name, out_dir, share, rows, n_users, config, cands, log,
                                   tagged(progress, name))
        else:
            ranked = _baseline_share(name, share, rows[1], config, cands, tagged(progress, name))
        results[name] = ranked_metrics(ranked, config)
    return results


def _neural_share(name, out_dir, share, rows, n_users: int, config: Config, cands, log,
                  progress) -> Ranked:
    """A neural model trained on the share and its ranks gathered from every process;
    ``rows``: the share's ``(stream, rows)`` (``evaluation.shares.share_rows``)."""
    model = models.build_model(name, share.n_items, config.model, n_users=n_users)
    own = config_for(name, config)
    train = own.train
    result = fit_share(model, share, own, log=log, progress=progress)
    ranks = np.stack([share_model_ranks(model, p, out_dir, share, config, rows=rows,
                                        candidates=cands, mesh=train.mesh)
                      for p in seed_params(result.params, train.seeds)])
    return Ranked(ranks, result.train_seconds, result.events_per_second, tuple(result.records))


def fit_share(model: models.Model, share, config: Config, **kw):
    """:func:`fit_neural` for a process's share of an encoded log (``data.read_share``): its
    FitResult; ``kw``: ``training.fit``'s (log, progress, optimizer, resume, on_epoch)."""
    t = config.train
    return training.fit(model, share, t, targets=models.train_lane_targets(
        model, config.data.protocol, t.train_lanes), **kw)


def share_candidates(share, config: Config) -> np.ndarray | None:
    """:func:`candidates` from a share's per-item counts (of the whole training part)."""
    top = config.eval.rank_top_items
    return None if top is None else evaluation.top_items(share.item_counts, top)


def share_model_ranks(model: models.Model, params, out_dir, share, config: Config, *, rows=None,
                      candidates=None, mesh=None) -> np.ndarray:
    """Ranks of every test row of an encoded log under ``params`` of one seed, each process
    ranking its share's rows (``evaluation.shares.share_ranks``) with ``config``'s evaluation
    settings; ``candidates``: :func:`share_candidates`. ``mesh``: the training mesh; each
    process ranks on its own devices of it (``parallel.local_mesh``; one device without)."""
    return shares.share_ranks(model, params, out_dir, share, protocol=config.data.protocol,
                              rows=rows, batch_size=config.train.batch_size,
                              ties=config.eval.ties, exclude_seen=config.eval.exclude_seen,
                              candidates=candidates, mesh=parallel.local_mesh(mesh))


def _baseline_share(name, share, rows, config: Config, cands, progress) -> Ranked:
    """A :class:`~hrnn_jax.baselines.CountBaseline` fitted from the share's per-item counts (of
    the whole training part), its ranks of the share's evaluation ``rows`` gathered from every
    process."""
    start = time.perf_counter()
    model = baselines.build_baseline(name, config).fit_counts(share.item_counts)
    seconds = time.perf_counter() - start
    ranks = evaluation.rank_chunks(lambda idx: model.score(rows, idx), rows,
                                   ties=config.eval.ties, exclude_seen=config.eval.exclude_seen,
                                   progress=progress, candidates=cands)
    events = int(share.item_counts.sum())
    return Ranked(concat_over_processes(ranks)[None], seconds, events / seconds if seconds else 0.0)
