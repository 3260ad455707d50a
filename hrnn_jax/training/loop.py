"""``fit``: epochs of the train step over user-parallel lanes, several seeds side by side,
early stopping on a validation score, bit-exact resume.

``fit(model, train, TrainConfig(...))`` builds the optimiser from the configuration's names
(``optim.make_optimizer``), or takes any optax transformation (``optimizer=tx``: adamw with a
schedule, ``optax.MultiSteps``, ``optax.inject_hyperparams``, ...). Row-sparse table updates
(``hrnn_jax.training.step``) are chosen by ``TrainConfig.row_updates``: ``"auto"`` uses them
only where they equal the dense update (the configuration's Adagrad without momentum), ``"sparse"``
asks for them with any rule (the lazy variant: GRU4Rec's official code's, for Adagrad with
momentum), ``"dense"`` never.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl

from hrnn_jax import parallel
from hrnn_jax.config import ConfigError, TrainConfig
from hrnn_jax.data.lanes import LaneGroups, Targets
from hrnn_jax.data.share import Share
from hrnn_jax.models.contract import Model, check_ids, lane_targets, lanes_for
from hrnn_jax.training import optim, sharded
from hrnn_jax.training.step import (
    RowUpdates,
    TrainState,
    TrainStep,
    make_train_step,
    popularity_cdf,
    popularity_log_q,
    steps_call,
)

RowUpdateChoice = Literal["auto", "sparse", "dense"]  # TrainConfig.row_updates (row_updates_for)
STEPS_PER_CALL = 20  # window steps one compiled call covers (20 windows of 1 step, 1 of 20, ...)


class NonFiniteLossError(FloatingPointError):
    """The training loss of ``fit`` became NaN or infinite; training stopped at that epoch.

    Attributes: ``epoch`` (1-based), ``step`` (1-based index of the training step, i.e. the
    window, within that epoch where the loss first was not finite), ``n_steps`` (windows in the
    epoch) and ``loss`` (the value found there). The usual causes are a learning rate that is
    too large or gradients that explode: lower the learning rate or clip gradients.
    """

    def __init__(self, epoch: int, step: int, n_steps: int, loss: float, seed: int | None = None):
        self.epoch, self.step, self.n_steps, self.loss, self.seed = epoch, step, n_steps, loss, seed
        where = f"epoch {epoch}, step {step} of {n_steps}" + ("" if seed is None else
                                                               f" (seed {seed})")
        super().__init__(f"training loss is not finite ({loss}) at {where}; lower the learning "
                         f"rate or clip gradients (TrainConfig.clip, the CLI's --clip)")


def check_finite_loss(step_losses, events, active, epoch: int, seed: int | None = None) -> None:
    """Raise :class:`NonFiniteLossError` at the first non-finite loss of an epoch.

    Args:
      step_losses: float [S], the loss of each step of the epoch, in order (S >= the epoch's
        windows; the tail is padding).
      events: int [S], events (targets) of each step; steps without any are not checked.
      active: bool [S], the steps that ran (False on padding steps).
      epoch: the 1-based epoch, for the message.
      seed: the seed of these losses, named in the message when several train together.

    Returns:
      None; raises on the first active step with events whose loss is NaN or infinite.
    """
    step_losses, active = np.asarray(step_losses), np.asarray(active, bool)
    bad = np.flatnonzero(active & (np.asarray(events) > 0) & ~np.isfinite(step_losses))
    if bad.size:
        first = int(bad[0])
        raise NonFiniteLossError(epoch, first + 1, int(active.sum()), float(step_losses[first]),
                                 seed)


class FitState(NamedTuple):
    """Where a :func:`fit` stands after an epoch: everything a resumed fit needs to continue bit
    for bit (``fit(..., resume=state)``). With several seeds every array has a leading seed axis.

    train_state: parameters, optimiser state, lane carry and step count (:class:`TrainState`).
    rng: the data-order-independent key stream (init, dropout, negatives), one key per seed.
    epoch: epochs completed (the next epoch's lanes are shuffled with ``seed * 1_000_003 + epoch``).
    records: one record per completed epoch.
    best: best validation score per seed so far (``-inf`` without validation).
    best_params: the parameters of those best epochs (None until a validation ran).
    bad: epochs since the last improvement of any seed.
    """

    train_state: TrainState
    rng: Any
    epoch: int
    records: tuple
    best: np.ndarray
    best_params: Any
    bad: int


class FitResult(NamedTuple):
    """``params`` (the best by validation, else the last; a leading seed axis when ``seeds`` > 1),
    the per-epoch ``records``, wall ``train_seconds``, training ``events_per_second`` (all seeds
    together, first compiling call left out) and the final :class:`FitState` (``state``)."""

    params: Any
    records: list[dict]
    train_seconds: float
    events_per_second: float
    state: FitState


def _per_seed(fn: Callable, n_seeds: int, in_axes=0) -> Callable:
    """``fn`` itself for one seed, ``jax.vmap(fn)`` for several."""
    return fn if n_seeds == 1 else jax.vmap(fn, in_axes=in_axes)


def _stack(arrays: list[np.ndarray], n: int) -> np.ndarray:
    """Arrays ``[W_i, ...]`` padded with zeros to ``n`` rows and stacked: ``[len, n, ...]``."""
    return np.stack([np.concatenate([a, np.zeros((n - len(a),) + a.shape[1:], a.dtype)])
                     for a in arrays])


def row_updates_for(config: TrainConfig, optimizer=None) -> RowUpdates:
    """``config.row_updates`` resolved: ``"auto"`` is ``"sparse"`` where sparse rows equal the
    dense update (no ``optimizer`` given, and the configuration's Adagrad without momentum),
    ``"dense"`` otherwise."""
    if config.row_updates != "auto":
        return config.row_updates
    exact = optimizer is None and config.optimizer == "adagrad" and config.momentum == 0
    return "sparse" if exact else "dense"


def train_step_for(model: Model, train: pl.DataFrame | Share, config: TrainConfig,
                   optimizer: optax.GradientTransformation | None = None) -> TrainStep:
    """The train step ``fit`` runs: ``optimizer`` or the configuration's, its loss, negatives
    (popularity-sampled from ``train``'s events, or a share's counts over the whole log, with
    their logQ correction when asked), clipping, row updates and output activation."""
    tx = optimizer if optimizer is not None else optim.make_optimizer(
        config.optimizer, config.learning_rate, config.momentum)
    events = train.item_counts if isinstance(train, Share) else train
    cdf = popularity_cdf(events, model.n_items, config.sample_alpha) if config.n_negatives \
        else None
    log_q = popularity_log_q(events, model.n_items, config.sample_alpha) if config.logq else None
    return make_train_step(model, tx, loss=config.loss, n_negatives=config.n_negatives,
                           negative_cdf=cdf, clip=config.clip,
                           row_updates=row_updates_for(config, optimizer),
                           activation=config.activation, score_reg=config.score_reg,
                           elu_alpha=config.elu_alpha, logq=config.logq,
                           negative_log_q=log_q)


def _start(step: TrainStep, config: TrainConfig, resume: FitState | None) -> FitState:
    """The fit's state before its first epoch: fresh (one key per seed, split for the
    initialisation and the stream), or a copy of ``resume`` (whose arrays stay the caller's)."""
    S = config.seeds
    if resume is not None:
        return resume._replace(train_state=jax.tree_util.tree_map(jnp.array,
                                                                  resume.train_state),
                               rng=jnp.array(resume.rng))
    keys = jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(S)]) if S > 1 else \
        jax.random.PRNGKey(config.seed)
    rng, r_init = _per_seed(lambda r: tuple(jax.random.split(r)), S)(keys)
    state = _per_seed(lambda r: step.init_state(r, config.batch_size), S)(r_init)
    return FitState(state, rng, 0, (), np.full(S, -np.inf), None, 0)


def _lane_groups(config: TrainConfig, train: pl.DataFrame | Share, mesh):
    """``(frame, groups, part)``: the events to lay out, their lane groups (a number, or a
    share's :class:`LaneGroups`) and, for a share of only some groups (which exchange their
    closing lists with the other processes' and train on a mesh only), ``(first lane of this
    process, B)``, else None. ConfigError for a share that does not fit the settings."""
    if not isinstance(train, Share):
        return train, config.lane_groups, None
    if train.n_groups != config.lane_groups:
        raise ConfigError(f"the share was read in {train.n_groups} lane groups, the "
                          f"configuration has lane_groups={config.lane_groups}: make them equal")
    if len(train.groups) == train.n_groups:
        return train.frame, LaneGroups(train.n_groups, train.bounds, train.groups), None
    if mesh is None:
        raise ConfigError("a share of some of the lane groups (data.read_share under many "
                          "processes) trains on a mesh over every process's devices: give mesh")
    lanes = parallel.axis_size(mesh, "data")
    if config.batch_size % lanes:
        raise ConfigError(f"batch_size ({config.batch_size}) must be a multiple of the mesh's "
                          f"data axis ({lanes}) when each process reads its share: each "
                          "process's lanes are its devices' slices")
    groups = LaneGroups(train.n_groups, train.bounds, train.groups, sharded.exchange_closing)
    first = train.groups.start * config.batch_size // train.n_groups
    return train.frame, groups, (first, config.batch_size)


def _epoch_windows(model: Model, train: pl.DataFrame, config: TrainConfig, targets: Targets,
                   epoch: int, K: int, groups: int | LaneGroups = 1):
    """Every seed's lanes of an epoch (users reshuffled with ``seed * 1_000_003 + epoch``) as
    ``fields [S, G * K, B, L]``, ``active [S, G * K]`` (squeezed for one seed) and each seed's
    number of windows."""
    seeds = [config.seed + i for i in range(config.seeds)]
    lanes = [lanes_for(model, train, batch_size=config.batch_size, window=config.window,
                       targets=targets, seed=s * 1_000_003 + epoch, check=False, groups=groups)
             for s in seeds]
    n = np.array([len(ln) for ln in lanes])
    total = -(-int(n.max()) // K) * K
    fields = {name: _stack([ln.window_arrays()[name] for ln in lanes], total)
              for name in lanes[0].window_arrays()}
    active = np.stack([np.arange(total) < w for w in n])
    if config.seeds == 1:
        fields, active = {k: v[0] for k, v in fields.items()}, active[0]
    return fields, active, n


class _Clock(NamedTuple):
    """Training time and events, the first (compiling) call left out."""

    seconds: float = 0.0
    events: int = 0
    first: tuple | None = None  # (time, events) after the first call, once it ran

    def tick(self, first_epoch: bool, t_epoch: float, t_end: float, events: int) -> "_Clock":
        """The clock after an epoch that ran from ``t_epoch`` to ``t_end`` (the fit's first
        epoch counts from the end of its first call)."""
        return self._replace(
            seconds=self.seconds + t_end - (self.first[0] if first_epoch else t_epoch),
            events=self.events + events - (self.first[1] if first_epoch else 0))


def _line(record: dict) -> str:
    """An epoch's log line."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in record.items() if not k.endswith("_per_seed"))


def _run_epoch(run, fs: FitState, fields, active, n, K, S, label, progress, clock: _Clock):
    """One epoch of compiled calls: ``(train state, rng, metrics of each call, clock)``. A seed
    whose epoch has fewer windows skips the padding groups: its keys stay put, as in a single run
    of that seed."""
    split2 = _per_seed(lambda r: tuple(jax.random.split(r)), S)
    split_k = _per_seed(lambda r: jax.random.split(r, K), S)
    state, rng, collected = fs.train_state, fs.rng, []  # device arrays: no host sync inside
    groups = -(-int(n.max()) // K)
    for g in range(groups):
        sl = slice(g * K, (g + 1) * K)
        sl = (slice(None), sl) if S > 1 else sl
        rng_next, r = split2(rng)
        rng = rng_next if S == 1 else jnp.where((g * K < n)[:, None], rng_next, rng)
        state, metrics = run(state, {k: v[sl] for k, v in fields.items()}, split_k(r),
                             active[sl])
        collected.append(metrics)
        if clock.first is None:  # the first call compiles: leave it out of the rate
            jax.block_until_ready(state)
            clock = clock._replace(first=(time.perf_counter(), int(np.sum(metrics["events"]))))
        if progress is not None:
            progress(label, g + 1, groups)
    return state, rng, collected, clock


def _record(collected, active, epoch: int, S: int, seeds, seconds: float) -> tuple[dict, int]:
    """The epoch's record (loss per event, rate, the model's extra terms per event) and its
    events, after checking that every loss is finite."""
    def per_seed(key):
        return np.concatenate([np.asarray(m[key]).reshape(S, -1) for m in collected], axis=1)
    ev, lo, act = per_seed("events"), per_seed("loss"), active.reshape(S, -1)
    for i in range(S):
        check_finite_loss(lo[i], ev[i], act[i], epoch + 1, seed=seeds[i] if S > 1 else None)
    ev_sum = ev.sum(axis=1)
    seed_loss = (lo * ev).sum(axis=1) / np.maximum(ev_sum, 1)
    record = {"epoch": epoch + 1, "loss": float(seed_loss.mean()), "seconds": seconds,
              "events_per_second": int(ev_sum.sum()) / seconds}
    for k in sorted(collected[0].keys() - {"loss", "events"}):  # extra terms, per event
        record[k] = float(((per_seed(k) * ev).sum(axis=1) / np.maximum(ev_sum, 1)).mean())
    if S > 1:
        record["loss_per_seed"] = seed_loss.tolist()
    return record, int(ev_sum.sum())


def _validated(fs: FitState, state, validate, record: dict, S: int) -> FitState:
    """``validate`` each seed's parameters: the record gets the scores, the best parameters
    and scores are kept, ``bad`` counts the epochs since any seed improved."""
    take = (lambda i: state.params) if S == 1 else \
        (lambda i: jax.tree_util.tree_map(lambda a: a[i], state.params))
    scores = np.array([float(validate(take(i))) for i in range(S)])
    record["valid"] = float(scores.mean())
    if S > 1:
        record["valid_per_seed"] = scores.tolist()
    improved = scores > fs.best
    host = jax.tree_util.tree_map(np.asarray, state.params)
    best_params = fs.best_params
    if best_params is None:
        best_params = host
    elif improved.any():
        def pick(new, old):
            return new if S == 1 else np.where(
                improved.reshape((S,) + (1,) * (new.ndim - 1)), new, old)
        best_params = jax.tree_util.tree_map(pick, host, best_params)
    return fs._replace(best=np.where(improved, scores, fs.best), best_params=best_params,
                       bad=0 if improved.any() else fs.bad + 1)


def _placed(mesh, step: TrainStep, K: int, S: int, fs: FitState, fields, active, run, plan,
            lanes: tuple[int, int] | None = None):
    """An epoch on ``mesh``: the compiled call and the state's plan (made at the first epoch,
    then kept), the epoch's windows padded to the mesh and ``fs`` with its train state placed
    on it. ``lanes = (first, B)``: ``fields`` hold only this process's lanes, from ``first``
    of ``B``."""
    d = 2 if S > 1 else 1  # the lane axis of the windows
    whole = {k: v if k in parallel.plans.UNLANED or lanes is None else jax.ShapeDtypeStruct(
        v.shape[:d] + (lanes[1],) + v.shape[d + 1:], v.dtype) for k, v in fields.items()}
    if run is None:
        first = {k: jax.ShapeDtypeStruct(v.shape[:d - 1] + (K,) + v.shape[d:], v.dtype)
                 for k, v in whole.items()}
        sl = (slice(None), slice(0, K)) if S > 1 else slice(0, K)
        rngs = jnp.zeros((S, K, 2) if S > 1 else (K, 2), jnp.uint32)
        run, plan = sharded.compiled_on(mesh, step, K, S, fs.train_state, first, rngs,
                                        active[sl])
    plan_w = sharded.windows_plan(whole, S)
    fields = parallel.put(mesh, fields, plan_w) if lanes is None else \
        parallel.put_part(mesh, fields, plan_w, "data", lanes[0])
    placed = fs._replace(train_state=parallel.put(mesh, fs.train_state, plan))
    return run, plan, fields, placed


def fit(model: Model, train: pl.DataFrame | Share, config: TrainConfig = TrainConfig(), *,
        optimizer: optax.GradientTransformation | None = None, targets: Targets | None = None,
        steps_per_call: int | None = None, validate: Callable[[Any], float] | None = None,
        resume: FitState | None = None, on_epoch: Callable[[FitState], None] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        log: Callable[[str], None] | None = print,
        mesh: parallel.MeshSpec = None) -> FitResult:
    """Train ``model`` on the encoded ``train`` frame (user, item, session columns), or on a
    process's share of an encoded log (``data.read_share``: every process calls ``fit`` with its
    own share, the same mesh and ``config.lane_groups`` equal to the share's).

    Args:
      config: the training settings (``hrnn_jax.config.TrainConfig``). With ``seeds`` = S > 1,
        seeds ``seed, seed + 1, ...`` train side by side in one vmapped step; seed ``seed + i``
        sees the same initialisation, dropout and data order as a single run with that seed.
      optimizer: any ``optax.GradientTransformation``, used instead of the configuration's
        ``optimizer``, ``learning_rate`` and ``momentum`` (clipping stays ``config.clip``).
      targets: the lane layout (default: the model's under the last-session protocol,
        ``models.lane_targets``).
      steps_per_call: window steps per compiled call (default: ``STEPS_PER_CALL`` steps).
      validate: ``validate(params) -> float`` (higher is better), called after every epoch for
        each seed; the best parameters are kept and training stops once no seed has improved for
        ``config.patience`` epochs (which must then be >= 1).
      resume: a :class:`FitState` from an earlier call (``FitResult.state`` or a checkpoint):
        training continues from it, and the result equals the uninterrupted run bit for bit.
      on_epoch: called with the :class:`FitState` after every epoch (e.g. to save a checkpoint).
        Its arrays are donated to the next step: copy or write what you keep before returning.
      progress: ``progress(label, done, total)`` after every call of the compiled step.
      log: one line per epoch.
      mesh: a device mesh (``jax.sharding.Mesh``, axis sizes or ``"data=4,items=2"``,
        ``hrnn_jax.parallel.make_mesh``; default: ``config.mesh``, else one device). Lanes
        are sharded over ``data``, the model's tables by rows over ``items``, seeds over
        ``seeds`` (``hrnn_jax.training.sharded``): the same training as one device, up to
        float32 reduction order. The state is gathered back after every epoch (``on_epoch``,
        ``validate``, the result and ``resume`` see arrays of true sizes, as without a mesh).

    The ids of ``train`` are checked against the model's tables first (``models.check_ids``).
    Users are reshuffled every epoch. The per-step losses are checked at the end of every epoch
    (no host sync inside it): a NaN or infinite loss raises :class:`NonFiniteLossError`.
    ``events_per_second`` counts training events of all seeds per second of training calls,
    leaving out the first call, which includes compilation.
    """
    cfg, S = config, config.seeds
    if validate is not None and cfg.patience < 1:
        raise ValueError("validate needs config.patience >= 1 (epochs without improvement)")
    mesh = parallel.make_mesh(mesh if mesh is not None else cfg.mesh)
    frame, groups, part = _lane_groups(cfg, train, mesh)
    check_ids(model, frame, "the training events")
    targets = targets or lane_targets(model)
    step = train_step_for(model, train, cfg, optimizer)
    K = steps_per_call or max(1, STEPS_PER_CALL // cfg.window)
    run, plan = (jax.jit(steps_call(step, K, S), donate_argnums=0) if mesh is None else None), None
    seeds = [cfg.seed + i for i in range(S)]
    fs = _start(step, cfg, resume)
    clock, start, first_epoch = _Clock(), time.perf_counter(), fs.epoch
    for epoch in range(first_epoch, cfg.epochs):
        fields, active, n = _epoch_windows(model, frame, cfg, targets, epoch, K, groups)
        run, plan, fields, on_mesh = (run, None, fields, fs) if mesh is None else \
            _placed(mesh, step, K, S, fs, fields, active, run, plan, part)
        t_epoch = time.perf_counter()
        label = f"epoch {epoch + 1}/{cfg.epochs}"
        state, rng, collected, clock = _run_epoch(run, on_mesh, fields, active, n, K, S, label,
                                                  progress, clock)
        jax.block_until_ready(state)
        t_end = time.perf_counter()
        state = state if mesh is None else jax.tree_util.tree_map(jnp.asarray,
                                                                  parallel.fetch(state, plan))
        record, events = _record(collected, active, epoch, S, seeds, t_end - t_epoch)
        clock = clock.tick(epoch == first_epoch, t_epoch, t_end, events)
        fs = fs._replace(train_state=state, rng=rng)
        if validate is not None:
            fs = _validated(fs, state, validate, record, S)
        fs = fs._replace(epoch=epoch + 1, records=fs.records + (record,))
        if log:
            log(_line(record))
        if on_epoch is not None:
            on_epoch(fs)
        if validate is not None and fs.bad >= cfg.patience:
            break
    return _result(fs, clock, start)


def _result(fs: FitState, clock: _Clock, start: float) -> FitResult:
    """The result of a fit that started at ``start``: the best parameters by validation (else
    the last), the records, the wall time and the training rate."""
    params = fs.train_state.params if fs.best_params is None else jax.tree_util.tree_map(
        jnp.asarray, fs.best_params)
    rate = clock.events / clock.seconds if clock.seconds else 0.0
    return FitResult(params, list(fs.records), time.perf_counter() - start, rate, fs)
