"""Training: a pure, jittable, vmappable ``train_step`` and a ``fit`` loop around it.

``state = init_state(model, tx, rng, batch_size)`` and
``state, metrics = train_step(state, batch, rng)`` with ``train_step = make_train_step(model, tx)``.
The recurrent state of the lanes lives in ``state.carry`` and is carried from one window to the next
(truncated BPTT: no gradient flows into the previous window). ``init_state`` and ``train_step`` are
pure functions of their inputs, so ``jax.vmap`` over rngs trains several seeds side by side.

Sparse rows (``sparse=True``, the default): the item tables (``item_in``, and with a sampled loss
``item_out`` and ``item_bias``) are updated only on the rows the window touches (its items, targets
and sampled negatives), see ``hrnn_jax.optim.row_update``; jit the step with ``donate_argnums=0`` so
the tables are updated in place. ``full-ce`` scores every item, so its output tables are dense.
"""
from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl

from hrnn_jax import choices, losses, models, optim, precision
from hrnn_jax.config import TrainConfig
from hrnn_jax.models import Model
from hrnn_jax.batching import lane_options, make_lanes

class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    carry: Any
    step: jax.Array


def sparse_tables(model: Model, loss: str, sparse: bool = True) -> dict[str, str]:
    """The row tables updated by sparse rows, ``{param: batch field}`` (``models.row_tables``);
    none when ``sparse`` is False. ``full-ce`` scores every item, so the tables indexed by the
    target are dense there."""
    if not sparse:
        return {}
    return {k: f for k, f in models.row_tables(model).items()
            if not (loss == "full-ce" and f == "target")}


def init_state(model: Model, tx: optax.GradientTransformation, rng, batch_size: int, *,
               loss: str = "top1", sparse: bool = True) -> TrainState:
    """Fresh parameters (from ``rng``), optimiser state and lane state. Vmappable over ``rng``."""
    params = model.init(rng)
    rows = sparse_tables(model, loss, sparse)
    dense = {k: v for k, v in params.items() if k not in rows}
    opt_state = {"dense": tx.init(dense), "rows": {k: tx.init(params[k]) for k in rows}}
    return TrainState(params, opt_state, model.init_carry(batch_size), jnp.zeros((), jnp.int32))


def popularity_cdf(train: pl.DataFrame, n_items: int, alpha: float = 1.0) -> np.ndarray:
    """Cumulative distribution of item popularity^alpha, ``[N+1]`` (padding has mass 0)."""
    counts = np.bincount(train["item"].to_numpy(), minlength=n_items + 1).astype(np.float64)
    counts[0] = 0.0
    p = counts**alpha
    return (np.cumsum(p) / p.sum()).astype(np.float32)


def make_train_step(model: Model, tx: optax.GradientTransformation, *, loss: str = "top1",
                    n_negatives: int = 0, negative_cdf: np.ndarray | None = None,
                    clip: float | None = None, sparse: bool = True,
                    activation: losses.Activation = "linear") -> Callable:
    """``train_step(state, batch, rng, active=None) -> (state, {"loss", "events"})``, pure; jit it
    once.

    loss: ``top1`` | ``bpr`` | ``ce`` (in-batch negatives plus ``n_negatives`` items drawn from
      ``negative_cdf``, see :func:`popularity_cdf`) | ``full-ce`` (softmax over every item).
    clip: clip the global gradient norm (dense and row gradients together) to this value.
    activation: output activation applied to the scores before the loss (``losses.activate``).

    Row gradients are accumulated without atomics (``hrnn_jax.precision``): the step is
    deterministic on every backend as far as the library's own ops go.

    ``active``: an optional traced bool scalar; False leaves the state exactly as it was and
    returns zero metrics (the step is still computed). It writes only the rows the step touches,
    where a ``lax.cond`` on a per-seed flag becomes, under ``jax.vmap``, a select that copies every
    table on every step (:func:`scan_steps` with ``masked=True``).
    """
    choices.check("loss", loss, losses.LOSSES)
    if n_negatives and negative_cdf is None:
        raise ValueError("n_negatives > 0 needs negative_cdf (see popularity_cdf)")
    choices.check("activation", activation, losses.Activation)
    rows = sparse_tables(model, loss, sparse)
    fields = sorted(set(rows.values()))
    cdf = None if negative_cdf is None else jnp.asarray(negative_cdf)
    clipper = optax.clip_by_global_norm(clip) if clip else None
    item_weight = float(getattr(model, "item_weight", 1.0))  # the model's weight of the item loss
    constrain = getattr(model, "constraints", None)

    def train_step(state: TrainState, batch, rng, active=None):
        r_neg, r_model = jax.random.split(rng)
        item, target = batch["item"], batch["target"]
        if n_negatives:
            u = jax.random.uniform(r_neg, (n_negatives,))
            neg = jnp.searchsorted(cdf, u, side="right").astype(jnp.int32)
        else:
            neg = jnp.zeros((0,), jnp.int32)
        params = state.params
        # Gather the touched rows of every row table (models.row_tables): the batch field that
        # indexes it (targets and sampled negatives for the output tables) gives the rows, and the
        # batch's ids become positions in the gathered rows (`uniq`).
        local, l_target, l_neg, uniq = {}, target, neg, {}
        for f in fields:
            n_rows = params[next(k for k, g in rows.items() if g == f)].shape[0]
            ids = jnp.concatenate([target.ravel(), neg]) if f == "target" else batch[f]
            uniq[f], inv = precision.unique_rows(ids, n_rows)
            if f == "target":
                l_target, l_neg = inv[:target.size].reshape(target.shape), inv[target.size:]
            else:
                local[f] = inv
        dense = {k: v for k, v in params.items() if k not in rows}
        # padding ids read a clipped row that no step refers to
        gathered = {k: params[k].at[uniq[f]].get(mode="clip") for k, f in rows.items()}

        def loss_fn(dense, gathered):
            p = {**dense, **gathered}
            carry, y, extra = models.apply_with_aux(model, p, state.carry, {**batch, **local},
                                                    rng=r_model, train=True)
            if not item_weight:  # a model trained on its own terms alone: no item scores
                value = jnp.zeros((), y.dtype)
                return sum(extra.values()), (carry, value, extra)
            p = models.scoring_params(model, p, rng=jax.random.fold_in(r_model, 1), train=True)
            if loss == "full-ce":
                value = losses.full_cross_entropy(p, y, target, activation)
            else:
                scores = losses.activate(activation, losses.candidate_scores(p, y, l_target, l_neg))
                value = losses.ranking_loss(loss, scores, target, neg)
            return item_weight * value + sum(extra.values()), (carry, value, extra)

        (_, (carry, value, extra)), (g_dense, g_rows) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(dense, gathered)
        if clipper is not None:
            clipped, _ = clipper.update({"dense": g_dense, "rows": g_rows}, optax.EmptyState())
            g_dense, g_rows = clipped["dense"], clipped["rows"]
        updates, dense_state = tx.update(g_dense, state.opt_state["dense"], dense)
        new_params = optax.apply_updates(dense, updates)
        if constrain is not None:  # the model's projection after the update (HCRNN: W_d >= 0)
            new_params = constrain(new_params)
        # "loss" is the ranking loss alone (unweighted; 0 for a model with item_weight 0); the
        # model's extra terms (added to it for the gradient) are reported beside it
        metrics = {"loss": value, "events": (target > 0).sum(), **extra}
        carry = jax.lax.stop_gradient(carry)
        if active is not None:  # the small parts as a whole; the tables' rows in row_update
            keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
            new_params = jax.tree_util.tree_map(keep, new_params, dense)
            dense_state = jax.tree_util.tree_map(keep, dense_state, state.opt_state["dense"])
            carry = jax.tree_util.tree_map(keep, carry, state.carry)
            metrics = jax.tree_util.tree_map(lambda m: jnp.where(active, m, jnp.zeros_like(m)),
                                             metrics)
        row_states = {}
        for k, f in rows.items():
            new_params[k], row_states[k] = optim.row_update(
                tx, params[k], state.opt_state["rows"][k], uniq[f], g_rows[k], active=active)
        step = state.step + (1 if active is None else jnp.asarray(active, state.step.dtype))
        new_state = TrainState(new_params, {"dense": dense_state, "rows": row_states}, carry, step)
        return new_state, metrics

    return train_step


def scan_steps(train_step: Callable, masked: bool = False) -> Callable:
    """Many train steps in one call: ``(state, batches [K, B, L], rngs [K], active [K])``.

    Steps with ``active`` False leave the state unchanged, so a fixed K serves the last, shorter
    group of windows too (one compilation). With windows of L = 1 this is the original one step
    per mini-batch training without paying one dispatch per step.

    ``masked``: pass ``active`` to ``train_step`` (see :func:`make_train_step`) instead of skipping
    inactive steps with ``lax.cond``; for ``jax.vmap`` over seeds, whose flags differ: there the
    cond would become a select of the whole state, every table copied on every step (a third to a
    half of the vmapped step's time on 2 CPU cores at the demo's sizes). The states are the same
    either way.
    """

    def run(state, batches, rngs, active):
        def body(state, inp):
            batch, rng, on = inp
            if masked:
                return train_step(state, batch, rng, on)
            skip = lambda state, batch, rng: (state, jax.tree_util.tree_map(  # noqa: E731
                jnp.zeros_like, jax.eval_shape(train_step, state, batch, rng)[1]))
            return jax.lax.cond(on, train_step, skip, state, batch, rng)

        return jax.lax.scan(body, state, (batches, rngs, active))

    return run


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
    history: one record per completed epoch.
    best: best validation score per seed so far (``-inf`` without validation).
    best_params: the parameters of those best epochs (None until a validation ran).
    bad: epochs since the last improvement of any seed.
    """

    train_state: TrainState
    rng: Any
    epoch: int
    history: tuple
    best: np.ndarray
    best_params: Any
    bad: int


class FitResult(NamedTuple):
    """``params`` (the best by validation, else the last; a leading seed axis when ``seeds`` > 1),
    the per-epoch ``history``, wall ``train_seconds``, training ``events_per_second`` (all seeds
    together, first compiling call left out) and the final :class:`FitState` (``state``)."""

    params: Any
    history: list[dict]
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


def fit(model: Model, train: pl.DataFrame, config: TrainConfig = TrainConfig(), *,
        targets: str = "session", sparse: bool = True, steps_per_call: int | None = None,
        validate: Callable[[Any], float] | None = None, resume: FitState | None = None,
        on_epoch: Callable[[FitState], None] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        log: Callable[[str], None] | None = print) -> FitResult:
    """Train ``model`` on the encoded ``train`` frame (user, item, session columns).

    Args:
      config: the training settings (``hrnn_jax.config.TrainConfig``). With ``seeds`` = S > 1,
        seeds ``seed, seed + 1, ...`` train side by side in one vmapped step; seed ``seed + i``
        sees the same initialisation, dropout and data order as a single run with that seed.
      targets: the lane layout (``batching.make_lanes``).
      validate: ``validate(params) -> float`` (higher is better), called after every epoch for
        each seed; the best parameters are kept and training stops once no seed has improved for
        ``config.patience`` epochs (which must then be >= 1).
      resume: a :class:`FitState` from an earlier call (``FitResult.state`` or a checkpoint):
        training continues from it, and the result equals the uninterrupted run bit for bit.
      on_epoch: called with the :class:`FitState` after every epoch (e.g. to save a checkpoint).
        Its arrays are donated to the next step: copy or write what you keep before returning.
      progress: ``progress(label, done, total)`` after every call of the compiled step.
      log: one line per epoch.

    Users are reshuffled every epoch. The per-step losses are checked at the end of every epoch
    (no host sync inside it): a NaN or infinite loss raises :class:`NonFiniteLossError`.
    ``events_per_second`` counts training events of all seeds per second of training calls,
    leaving out the first call, which includes compilation.
    """
    cfg = config
    S = cfg.seeds
    if validate is not None and cfg.patience < 1:
        raise ValueError("validate needs config.patience >= 1 (epochs without improvement)")
    tx = optim.make_optimizer(cfg.optimizer, cfg.learning_rate, cfg.momentum)
    cdf = popularity_cdf(train, model.n_items) if cfg.n_negatives else None
    step = make_train_step(model, tx, loss=cfg.loss, n_negatives=cfg.n_negatives,
                           negative_cdf=cdf, clip=cfg.clip, sparse=sparse,
                           activation=cfg.activation)
    K = steps_per_call or max(1, 20 // cfg.window)
    if K == 1 and S == 1:
        one = jax.jit(step, donate_argnums=0)

        def run(state, batches, rngs, active):
            state, metrics = one(state, {k: v[0] for k, v in batches.items()}, rngs[0])
            return state, {k: v[None] for k, v in metrics.items()}
    else:
        run = jax.jit(_per_seed(scan_steps(step, masked=S > 1), S), donate_argnums=0)
    seeds = [cfg.seed + i for i in range(S)]
    split2 = _per_seed(lambda r: tuple(jax.random.split(r)), S)
    split_k = _per_seed(lambda r: jax.random.split(r, K), S)
    if resume is None:
        keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds]) if S > 1 else \
            jax.random.PRNGKey(cfg.seed)
        rng, r_init = split2(keys)
        init = _per_seed(lambda r: init_state(model, tx, r, cfg.batch_size, loss=cfg.loss,
                                              sparse=sparse), S)
        fs = FitState(init(r_init), rng, 0, (), np.full(S, -np.inf), None, 0)
    else:  # a copy: the arrays of `resume` stay valid for the caller
        fs = resume._replace(train_state=jax.tree_util.tree_map(jnp.array, resume.train_state),
                             rng=jnp.array(resume.rng))
    state, rng, history = fs.train_state, fs.rng, list(fs.history)
    best, best_params, bad = np.array(fs.best, np.float64), fs.best_params, fs.bad
    events, seconds, start, first_call = 0, 0.0, time.perf_counter(), True
    first_epoch = fs.epoch
    for epoch in range(first_epoch, cfg.epochs):
        lanes = [make_lanes(train, batch_size=cfg.batch_size, window=cfg.window, targets=targets,
                            seed=s * 1_000_003 + epoch, **lane_options(model)) for s in seeds]
        W = max(len(ln) for ln in lanes)
        groups = -(-W // K)
        fields = {name: _stack([ln.window_arrays()[name] for ln in lanes], groups * K)
                  for name in lanes[0].window_arrays()}
        active = np.stack([np.arange(groups * K) < len(ln) for ln in lanes])
        if S == 1:
            fields, active = {k: v[0] for k, v in fields.items()}, active[0]
        t_epoch = time.perf_counter()
        collected = []  # device arrays: no host sync inside the epoch
        for g in range(groups):
            sl = slice(g * K, (g + 1) * K)
            sl = (slice(None), sl) if S > 1 else sl
            rng_next, r = split2(rng)
            # a seed whose epoch has fewer windows skips the padding groups: its keys stay put,
            # as in a single run of that seed
            live = np.array([g * K < len(ln) for ln in lanes])
            rng = rng_next if S == 1 else jnp.where(live[:, None], rng_next, rng)
            state, metrics = run(state, {k: v[sl] for k, v in fields.items()}, split_k(r),
                                 active[sl])
            collected.append(metrics)
            if first_call:  # the first call compiles: leave it out of the rate
                jax.block_until_ready(state)
                t_first, first_events = time.perf_counter(), int(np.sum(metrics["events"]))
                first_call = False
            if progress is not None:
                progress(f"epoch {epoch + 1}/{cfg.epochs}", g + 1, groups)
        jax.block_until_ready(state)
        t_end = time.perf_counter()
        ev = np.concatenate([np.asarray(m["events"]).reshape(S, -1) for m in collected], axis=1)
        lo = np.concatenate([np.asarray(m["loss"]).reshape(S, -1) for m in collected], axis=1)
        act = active.reshape(S, -1)
        for i in range(S):
            check_finite_loss(lo[i], ev[i], act[i], epoch + 1, seed=seeds[i] if S > 1 else None)
        ev_sum = ev.sum(axis=1)
        seconds += t_end - (t_first if epoch == first_epoch else t_epoch)
        events += int(ev_sum.sum()) - (first_events if epoch == first_epoch else 0)
        seed_loss = (lo * ev).sum(axis=1) / np.maximum(ev_sum, 1)
        record = {"epoch": epoch + 1, "loss": float(seed_loss.mean()), "seconds": t_end - t_epoch,
                  "events_per_second": int(ev_sum.sum()) / (t_end - t_epoch)}
        for k in sorted(collected[0].keys() - {"loss", "events"}):  # the model's extra terms, per event
            term = np.concatenate([np.asarray(m[k]).reshape(S, -1) for m in collected], axis=1)
            record[k] = float(((term * ev).sum(axis=1) / np.maximum(ev_sum, 1)).mean())
        if S > 1:
            record["loss_per_seed"] = seed_loss.tolist()
        if validate is not None:
            take = (lambda i: state.params) if S == 1 else \
                (lambda i: jax.tree_util.tree_map(lambda a: a[i], state.params))
            scores = np.array([float(validate(take(i))) for i in range(S)])
            record["valid"] = float(scores.mean())
            if S > 1:
                record["valid_per_seed"] = scores.tolist()
            improved = scores > best
            host = jax.tree_util.tree_map(np.asarray, state.params)
            if best_params is None:
                best_params = host
            elif improved.any():
                pick = (lambda new, old: new) if S == 1 else \
                    (lambda new, old: np.where(improved.reshape((S,) + (1,) * (new.ndim - 1)),
                                               new, old))
                best_params = jax.tree_util.tree_map(pick, host, best_params)
            best = np.where(improved, scores, best)
            bad = 0 if improved.any() else bad + 1
        history.append(record)
        fs = FitState(state, rng, epoch + 1, tuple(history), best, best_params, bad)
        if log:
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in record.items() if not k.endswith("_per_seed")))
        if on_epoch is not None:
            on_epoch(fs)
        if validate is not None and bad >= cfg.patience:
            break
    params = state.params if best_params is None else jax.tree_util.tree_map(jnp.asarray,
                                                                             best_params)
    total = time.perf_counter() - start
    return FitResult(params, history, total, events / seconds if seconds else 0.0, fs)
