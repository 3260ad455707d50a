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

from hrnn_jax import choices, losses, optim, precision
from hrnn_jax.batching import make_lanes

TABLES = ("item_in", "item_out", "item_bias")


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    carry: Any
    step: jax.Array


def _sparse_tables(loss: str, sparse: bool) -> tuple[str, ...]:
    if not sparse:
        return ()
    return ("item_in",) if loss == "full-ce" else TABLES


def init_state(model, tx: optax.GradientTransformation, rng, batch_size: int, *,
               loss: str = "top1", sparse: bool = True) -> TrainState:
    """Fresh parameters (from ``rng``), optimiser state and lane state. Vmappable over ``rng``."""
    params = model.init(rng)
    rows = _sparse_tables(loss, sparse)
    dense = {k: v for k, v in params.items() if k not in rows}
    opt_state = {"dense": tx.init(dense), "rows": {k: tx.init(params[k]) for k in rows}}
    return TrainState(params, opt_state, model.init_carry(batch_size), jnp.zeros((), jnp.int32))


def popularity_cdf(train: pl.DataFrame, n_items: int, alpha: float = 1.0) -> np.ndarray:
    """Cumulative distribution of item popularity^alpha, ``[N+1]`` (padding has mass 0)."""
    counts = np.bincount(train["item"].to_numpy(), minlength=n_items + 1).astype(np.float64)
    counts[0] = 0.0
    p = counts**alpha
    return (np.cumsum(p) / p.sum()).astype(np.float32)


def make_train_step(model, tx: optax.GradientTransformation, *, loss: str = "top1",
                    n_negatives: int = 0, negative_cdf: np.ndarray | None = None,
                    clip: float | None = None, sparse: bool = True,
                    activation: losses.Activation = "linear") -> Callable:
    """``train_step(state, batch, rng) -> (state, {"loss", "events"})``, pure; jit it once.

    loss: ``top1`` | ``bpr`` | ``ce`` (in-batch negatives plus ``n_negatives`` items drawn from
      ``negative_cdf``, see :func:`popularity_cdf`) | ``full-ce`` (softmax over every item).
    clip: clip the global gradient norm (dense and row gradients together) to this value.
    activation: output activation applied to the scores before the loss (``losses.activate``).

    Row gradients are accumulated without atomics (``hrnn_jax.precision``): the step is
    deterministic on every backend as far as the library's own ops go.
    """
    if loss not in losses.LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose from {losses.LOSSES}")
    if n_negatives and negative_cdf is None:
        raise ValueError("n_negatives > 0 needs negative_cdf (see popularity_cdf)")
    choices.check("activation", activation, losses.Activation)
    rows = _sparse_tables(loss, sparse)
    cdf = None if negative_cdf is None else jnp.asarray(negative_cdf)
    clipper = optax.clip_by_global_norm(clip) if clip else None

    def train_step(state: TrainState, batch, rng):
        r_neg, r_model = jax.random.split(rng)
        item, target = batch["item"], batch["target"]
        if n_negatives:
            u = jax.random.uniform(r_neg, (n_negatives,))
            neg = jnp.searchsorted(cdf, u, side="right").astype(jnp.int32)
        else:
            neg = jnp.zeros((0,), jnp.int32)
        params = state.params
        # Gather the touched rows: inputs index item_in, targets and negatives the output tables;
        # the batch's ids become positions in the gathered rows (`uniq`).
        l_item, l_target, l_neg, uniq = item, target, neg, {}
        if "item_in" in rows:
            u, l_item = precision.unique_rows(item, params["item_in"].shape[0])
            uniq["item_in"] = u
        if "item_out" in rows:
            u, inv = precision.unique_rows(jnp.concatenate([target.ravel(), neg]),
                                           params["item_out"].shape[0])
            l_target, l_neg = inv[:target.size].reshape(target.shape), inv[target.size:]
            uniq["item_out"] = uniq["item_bias"] = u
        dense = {k: v for k, v in params.items() if k not in rows}
        # padding ids read a clipped row that no step refers to
        gathered = {k: params[k].at[uniq[k]].get(mode="clip") for k in rows}

        def loss_fn(dense, gathered):
            p = {**dense, **gathered}
            carry, y = model.apply(p, state.carry, {**batch, "item": l_item}, rng=r_model,
                                   train=True)
            if loss == "full-ce":
                value = losses.full_cross_entropy(p, y, target, activation)
            else:
                scores = losses.activate(activation, losses.candidate_scores(p, y, l_target, l_neg))
                value = losses.ranking_loss(loss, scores, target, neg)
            return value, carry

        (value, carry), (g_dense, g_rows) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(dense, gathered)
        if clipper is not None:
            clipped, _ = clipper.update({"dense": g_dense, "rows": g_rows}, optax.EmptyState())
            g_dense, g_rows = clipped["dense"], clipped["rows"]
        updates, dense_state = tx.update(g_dense, state.opt_state["dense"], dense)
        new_params = optax.apply_updates(dense, updates)
        row_states = {}
        for k in rows:
            new_params[k], row_states[k] = optim.row_update(
                tx, params[k], state.opt_state["rows"][k], uniq[k], g_rows[k])
        new_state = TrainState(new_params, {"dense": dense_state, "rows": row_states},
                               jax.lax.stop_gradient(carry), state.step + 1)
        return new_state, {"loss": value, "events": (target > 0).sum()}

    return train_step


def scan_steps(train_step: Callable) -> Callable:
    """Many train steps in one call: ``(state, batches [K, B, L], rngs [K], active [K])``.

    Steps with ``active`` False leave the state unchanged, so a fixed K serves the last, shorter
    group of windows too (one compilation). With windows of L = 1 this is the original one step
    per mini-batch training without paying one dispatch per step.
    """

    def run(state, batches, rngs, active):
        def body(state, inp):
            batch, rng, on = inp
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

    def __init__(self, epoch: int, step: int, n_steps: int, loss: float):
        self.epoch, self.step, self.n_steps, self.loss = epoch, step, n_steps, loss
        super().__init__(f"training loss is not finite ({loss}) at epoch {epoch}, step {step} of "
                         f"{n_steps}; lower the learning rate or clip gradients (fit's clip, "
                         f"the CLI's --clip)")


def check_finite_loss(step_losses, events, active, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` at the first non-finite loss of an epoch.

    Args:
      step_losses: float [S], the loss of each step of the epoch, in order (S >= the epoch's
        windows; the tail is padding).
      events: int [S], events (targets) of each step; steps without any are not checked.
      active: bool [S], the steps that ran (False on padding steps).
      epoch: the 1-based epoch, for the message.

    Returns:
      None; raises on the first active step with events whose loss is NaN or infinite.
    """
    step_losses, active = np.asarray(step_losses), np.asarray(active, bool)
    bad = np.flatnonzero(active & (np.asarray(events) > 0) & ~np.isfinite(step_losses))
    if bad.size:
        first = int(bad[0])
        raise NonFiniteLossError(epoch, first + 1, int(active.sum()), float(step_losses[first]))


class FitResult(NamedTuple):
    params: Any
    history: list[dict]
    train_seconds: float
    events_per_second: float


def fit(model, train: pl.DataFrame, *, epochs: int = 10, batch_size: int = 50, window: int = 20,
        optimizer: str = "adagrad", learning_rate: float = 0.1, momentum: float = 0.0,
        loss: str = "top1", n_negatives: int = 0, clip: float | None = None, sparse: bool = True,
        activation: losses.Activation = "linear", targets: str = "session", seed: int = 0,
        steps_per_call: int | None = None,
        validate: Callable[[Any], float] | None = None, patience: int = 2,
        log: Callable[[str], None] | None = print) -> FitResult:
    """Train ``model`` on the encoded ``train`` frame (user, item, session columns).

    Users are reshuffled every epoch (seed, epoch). ``validate(params) -> float`` (higher is better)
    is called after every epoch: the best parameters are kept and training stops after ``patience``
    epochs without improvement. ``events_per_second`` counts training events (steps with a target)
    per second of training calls, leaving out the first call, which includes compilation.

    The per-step losses are checked at the end of every epoch (no host sync inside it): a NaN or
    infinite loss raises :class:`NonFiniteLossError` naming the epoch and the first bad step.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    tx = optim.make_optimizer(optimizer, learning_rate, momentum)
    cdf = popularity_cdf(train, model.n_items) if n_negatives else None
    step = make_train_step(model, tx, loss=loss, n_negatives=n_negatives, negative_cdf=cdf,
                           clip=clip, sparse=sparse, activation=activation)
    K = steps_per_call or max(1, 20 // window)
    if K == 1:
        one = jax.jit(step, donate_argnums=0)

        def run(state, batches, rngs, active):
            state, metrics = one(state, {k: v[0] for k, v in batches.items()}, rngs[0])
            return state, {k: v[None] for k, v in metrics.items()}
    else:
        run = jax.jit(scan_steps(step), donate_argnums=0)
    rng = jax.random.PRNGKey(seed)
    rng, r_init = jax.random.split(rng)
    state = init_state(model, tx, r_init, batch_size, loss=loss, sparse=sparse)
    history, best, best_params, bad = [], -np.inf, None, 0
    events, seconds, start = 0, 0.0, time.perf_counter()
    for epoch in range(epochs):
        lanes = make_lanes(train, batch_size=batch_size, window=window, targets=targets,
                           seed=seed * 1_000_003 + epoch)
        W = len(lanes)
        groups = -(-W // K)
        pad = groups * K - W
        fields = {name: np.concatenate([arr, np.zeros((pad,) + arr.shape[1:], arr.dtype)])
                  for name, arr in lanes.window_arrays().items()}
        active = np.arange(groups * K) < W
        t_epoch = time.perf_counter()
        collected = []  # device arrays: no host sync inside the epoch
        for g in range(groups):
            sl = slice(g * K, (g + 1) * K)
            rng, r = jax.random.split(rng)
            state, metrics = run(state, {k: v[sl] for k, v in fields.items()},
                                 jax.random.split(r, K), active[sl])
            collected.append(metrics)
            if epoch == 0 and g == 0:  # the first call compiles: leave it out of the rate
                jax.block_until_ready(state)
                t_first, first_events = time.perf_counter(), int(metrics["events"].sum())
        jax.block_until_ready(state)
        t_end = time.perf_counter()
        ev = np.concatenate([np.asarray(m["events"]) for m in collected])
        lo = np.concatenate([np.asarray(m["loss"]) for m in collected])
        check_finite_loss(lo, ev, active, epoch + 1)
        ev_sum = int(ev.sum())
        loss_sum = float((lo * ev).sum())
        seconds += t_end - (t_first if epoch == 0 else t_epoch)
        events += ev_sum - (first_events if epoch == 0 else 0)
        record = {"epoch": epoch + 1, "loss": loss_sum / max(ev_sum, 1),
                  "seconds": t_end - t_epoch, "events_per_second": ev_sum / (t_end - t_epoch)}
        if validate is not None:
            record["valid"] = float(validate(state.params))
        history.append(record)
        if log:
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in record.items()))
        if validate is None:
            continue
        if record["valid"] > best:
            best, bad = record["valid"], 0
            best_params = jax.tree_util.tree_map(np.asarray, state.params)
        else:
            bad += 1
            if bad >= patience:
                break
    params = state.params if best_params is None else jax.tree_util.tree_map(jnp.asarray,
                                                                             best_params)
    total = time.perf_counter() - start
    return FitResult(params, history, total, events / seconds if seconds else 0.0)
