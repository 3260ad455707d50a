"""The train step: a pure, jittable, vmappable function of the train state, a window and a key.

    step = make_train_step(model, tx, loss="top1")             # any optax transformation
    state = step.init_state(rng, batch_size=50)                # the state this step takes
    state, metrics = jax.jit(step, donate_argnums=0)(state, batch, rng)

The recurrent state of the lanes lives in ``state.carry`` and is carried from one window to the
next (truncated BPTT: no gradient flows into the previous window). ``init_state`` and the step are
pure functions of their inputs, so ``jax.vmap`` over keys trains several seeds side by side.

Row-sparse updates are a choice (``row_updates``), made here once for the step and its state:

* ``"dense"`` (default): ``tx`` updates every parameter, as optax does; the cost of a step grows
  with the catalogue.
* ``"sparse"``: the model's row tables (``capabilities.row_tables``: the item tables, a user
  table) are updated only on the rows the window touches (its items, targets, users and sampled
  negatives; ``optim.row_update``), so a step's cost does not depend on the catalogue (jit with
  ``donate_argnums=0`` so the tables are updated in place). It equals the dense update for rules
  whose state and update are zero where the gradient is (SGD, Adagrad without momentum). For any
  other rule it is the *lazy* variant, as GRU4Rec's official code applies Adagrad with momentum:
  an untouched row keeps its momentum unapplied (and Adam's, and is not decayed by weight decay)
  until it is touched again. ``full-ce`` scores every item, so the output tables are dense under
  it either way.

``training.fit`` chooses for you (``TrainConfig.row_updates``, "auto": sparse only where it is
exact).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl

from hrnn_jax import choices, precision
from hrnn_jax.models.contract import Model
from hrnn_jax.training import losses, optim
from hrnn_jax.training.losses import Activation, Loss

RowUpdates = Literal["dense", "sparse"]


class TrainState(NamedTuple):
    """Parameters, optimiser state (``{"dense": ..., "rows": {table: ...}}``), the lanes' carry
    and the step count."""

    params: Any
    opt_state: Any
    carry: Any
    step: jax.Array


def _item_counts(train: pl.DataFrame | np.ndarray, n_items: int, alpha: float) -> np.ndarray:
    """Training events per item ``[N+1]`` (float64, 0 at the padding) of the frame ``train``, or
    ``train`` itself when it is those counts already (``data.Share.item_counts``), after
    checking that the sampling exponent ``alpha`` is >= 0."""
    if alpha < 0:
        raise ValueError(f"the sampling exponent alpha must be >= 0, got {alpha}")
    if isinstance(train, np.ndarray):
        if train.shape != (n_items + 1,):
            raise ValueError(f"item counts must be [n_items + 1] = [{n_items + 1}], got "
                             f"{train.shape}")
        counts = train.astype(np.float64)
    else:
        counts = np.bincount(train["item"].to_numpy(), minlength=n_items + 1).astype(np.float64)
    counts[0] = 0.0
    return counts


def popularity_cdf(train: pl.DataFrame | np.ndarray, n_items: int,
                   alpha: float = 1.0) -> np.ndarray:
    """Cumulative distribution of item popularity^alpha, ``[N+1]`` (padding has mass 0): item i
    is drawn with probability count_i^alpha / sum_j count_j^alpha (GRU4Rec's ``sample_alpha``:
    1 samples by popularity, 0 uniformly over the items with training events)."""
    counts = _item_counts(train, n_items, alpha)
    p = np.where(counts > 0, counts**alpha, 0.0)  # 0**0 is 1: items without events stay at 0
    return (np.cumsum(p) / p.sum()).astype(np.float32)


def popularity_log_q(train: pl.DataFrame | np.ndarray, n_items: int,
                     alpha: float = 1.0) -> np.ndarray:
    """log Q(j), ``[N+1]`` float32: the natural log of the probability that :func:`popularity_cdf`
    draws item j, count_j^alpha / sum_i count_i^alpha, computed in float64 (a difference of the
    float32 CDF loses the rare items of a large catalogue); 0 at the padding and at items without
    training events, which are never drawn (no correction). For ``logq`` in
    :func:`make_train_step`."""
    counts = _item_counts(train, n_items, alpha)
    log_p = np.where(counts > 0, alpha * np.log(np.maximum(counts, 1.0)), -np.inf)
    log_p = log_p - np.logaddexp.reduce(log_p[counts > 0])
    return np.where(counts > 0, log_p, 0.0).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainStep:
    """``step(state, batch, rng, active=None) -> (state, {"loss", "events", **extra})``, pure; jit
    it once. Made by :func:`make_train_step` (its arguments are documented there); its
    :meth:`init_state` makes the state it takes."""

    model: Model
    tx: optax.GradientTransformation
    loss: Loss = "top1"
    n_negatives: int = 0
    negative_cdf: np.ndarray | None = None
    clip: float | None = None
    row_updates: RowUpdates = "dense"
    activation: Activation = "linear"
    score_reg: float = losses.SCORE_REG
    elu_alpha: float = losses.ELU_ALPHA
    logq: bool = False
    negative_log_q: np.ndarray | None = None

    def __post_init__(self):
        choices.check("loss", self.loss, Loss)
        choices.check("activation", self.activation, Activation)
        choices.check("row_updates", self.row_updates, RowUpdates)
        if isinstance(self.tx, optax.MultiSteps):  # optax's wrapper: its transformation
            object.__setattr__(self, "tx", self.tx.gradient_transformation())
        if not isinstance(self.tx, optax.GradientTransformation):
            raise TypeError(f"tx must be an optax.GradientTransformation (or optax.MultiSteps), "
                            f"got {type(self.tx).__name__}")
        if self.score_reg < 0 or self.elu_alpha <= 0:
            raise ValueError(f"score_reg must be >= 0 and elu_alpha > 0, got {self.score_reg} "
                             f"and {self.elu_alpha}")
        if self.n_negatives and self.negative_cdf is None:
            raise ValueError("n_negatives > 0 needs negative_cdf (see popularity_cdf)")
        if self.logq and (not self.n_negatives or self.loss == "full-ce"):
            raise ValueError("logq corrects sampled negatives: it needs n_negatives > 0 and a "
                             f"sampled loss (got n_negatives={self.n_negatives}, "
                             f"loss={self.loss!r})")

    @property
    def row_tables(self) -> dict[str, str]:
        """The tables updated by sparse rows, ``{param: batch field}``: the model's row tables with
        ``row_updates="sparse"`` (without those indexed by ``target`` under ``full-ce``, which
        scores every item), none with ``"dense"``."""
        if self.row_updates == "dense":
            return {}
        return {k: f for k, f in self.model.capabilities.row_tables.items()
                if not (self.loss == "full-ce" and f == "target")}

    def init_state(self, rng, batch_size: int) -> TrainState:
        """Fresh parameters (from ``rng``), optimiser state and lane state. Vmappable over
        ``rng``."""
        params = self.model.init(rng)
        rows = self.row_tables
        dense = {k: v for k, v in params.items() if k not in rows}
        opt_state = {"dense": self.tx.init(dense),
                     "rows": {k: self.tx.init(params[k]) for k in rows}}
        return TrainState(params, opt_state, self.model.init_carry(batch_size),
                          jnp.zeros((), jnp.int32))

    def __call__(self, state: TrainState, batch: dict, rng, active=None):
        self._check(state, batch)
        r_neg, r_model = jax.random.split(rng)
        neg = self._negatives(r_neg)
        rows = self.row_tables
        params = state.params
        uniq, local, l_target, l_neg = self._touched(params, batch, neg)
        dense = {k: v for k, v in params.items() if k not in rows}
        # padding ids read a clipped row that no step refers to
        gathered = {k: params[k].at[uniq[f]].get(mode="clip") for k, f in rows.items()}
        loss_fn = self._loss_fn(state.carry, {**batch, **local}, r_model, l_target, l_neg, neg)
        (_, (carry, value, extra)), (g_dense, g_rows) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(dense, gathered)
        if self.clip:  # dense and row gradients together, by their global norm
            clipped, _ = optax.clip_by_global_norm(self.clip).update(
                {"dense": g_dense, "rows": g_rows}, optax.EmptyState())
            g_dense, g_rows = clipped["dense"], clipped["rows"]
        updates, dense_state = self.tx.update(g_dense, state.opt_state["dense"], dense)
        # the model's projection after the update (HCRNN: W_d >= 0)
        new_params = self.model.constraints(optax.apply_updates(dense, updates))
        # "loss" is the ranking loss alone (unweighted; 0 for a model with item_weight 0); the
        # model's extra terms (added to it for the gradient) are reported beside it
        metrics = {"loss": value, "events": (batch["target"] > 0).sum(), **extra}
        carry = jax.lax.stop_gradient(carry)
        if active is not None:  # the small parts as a whole; the tables' rows in row_update
            def keep(new, old):
                return jnp.where(active, new, old)
            new_params = jax.tree_util.tree_map(keep, new_params, dense)
            dense_state = jax.tree_util.tree_map(keep, dense_state, state.opt_state["dense"])
            carry = jax.tree_util.tree_map(keep, carry, state.carry)
            metrics = jax.tree_util.tree_map(lambda m: keep(m, jnp.zeros_like(m)), metrics)
        row_states = {}
        for k, f in rows.items():
            new_params[k], row_states[k] = optim.row_update(
                self.tx, params[k], state.opt_state["rows"][k], uniq[f], g_rows[k], active=active)
        step = state.step + (1 if active is None else jnp.asarray(active, state.step.dtype))
        return TrainState(new_params, {"dense": dense_state, "rows": row_states}, carry,
                          step), metrics

    # -- the parts of a step -----------------------------------------------------------------
    def _check(self, state: TrainState, batch: dict) -> None:
        """At trace time: the state is this step's and the batch has the state's lanes."""
        if not isinstance(state, TrainState) or not isinstance(state.opt_state, dict) or \
                set(state.opt_state) != {"dense", "rows"}:
            raise TypeError("the train state must come from this step's init_state (a TrainState "
                            "with opt_state {'dense', 'rows'})")
        made, wanted = sorted(state.opt_state["rows"]), sorted(self.row_tables)
        if made != wanted:
            raise ValueError(f"the train state updates the tables {made} by sparse rows, this "
                             f"step {wanted} (loss={self.loss!r}, row_updates="
                             f"{self.row_updates!r}): make the state with this step's "
                             "init_state")
        lanes = {a.shape[0] for a in jax.tree_util.tree_leaves(state.carry) if a.ndim}
        B = batch["item"].shape[0]
        if lanes and lanes != {B}:
            raise ValueError(f"the batch has {B} lanes, the train state's carry "
                             f"{sorted(lanes)[0]}: make the state with init_state(rng, "
                             f"batch_size={B}), or batches with batch_size={sorted(lanes)[0]}")

    def _negatives(self, rng) -> jax.Array:
        """The window's extra negatives, drawn from ``negative_cdf`` (``[S]`` item ids)."""
        if not self.n_negatives:
            return jnp.zeros((0,), jnp.int32)
        u = jax.random.uniform(rng, (self.n_negatives,))
        return jnp.searchsorted(jnp.asarray(self.negative_cdf), u, side="right").astype(jnp.int32)

    def _log_q(self) -> jax.Array:
        """log Q(j) ``[N+1]`` of the negatives' distribution: ``negative_log_q``, or else the
        differences of ``negative_cdf`` (in float64; float32 CDF steps below about 1e-7, the
        rarest items of a large catalogue, are then coarse: give ``popularity_log_q``)."""
        if self.negative_log_q is not None:
            return jnp.asarray(self.negative_log_q, jnp.float32)
        p = np.diff(np.asarray(self.negative_cdf, np.float64), prepend=0.0)
        return jnp.asarray(np.where(p > 0, np.log(np.maximum(p, 1e-300)), 0.0), jnp.float32)

    def _touched(self, params, batch, neg):
        """The rows of every row table the window touches: per indexing field, the sorted
        distinct ids ``uniq[f]`` (``precision.unique_rows``), and the batch's ids as positions in
        them (``local`` fields; for ``target``, ``l_target`` and ``l_neg``: targets and sampled
        negatives index the output tables)."""
        rows, target = self.row_tables, batch["target"]
        uniq, local, l_target, l_neg = {}, {}, target, neg
        for f in sorted(set(rows.values())):
            n_rows = params[next(k for k, g in rows.items() if g == f)].shape[0]
            ids = jnp.concatenate([target.ravel(), neg]) if f == "target" else batch[f]
            uniq[f], inv = precision.unique_rows(ids, n_rows)
            if f == "target":
                l_target, l_neg = inv[:target.size].reshape(target.shape), inv[target.size:]
            else:
                local[f] = inv
        return uniq, local, l_target, l_neg

    def _loss_fn(self, carry, batch, rng, l_target, l_neg, neg) -> Callable:
        """``loss_fn(dense, gathered) -> (total, (carry, ranking loss, extra))``."""
        model, target = self.model, batch["target"]
        item_weight = model.capabilities.item_weight

        def loss_fn(dense, gathered):
            p = {**dense, **gathered}
            carry_new, y, extra = model.apply(p, carry, batch, rng=rng, train=True)
            if not item_weight:  # a model trained on its own terms alone: no item scores
                return sum(extra.values()), (carry_new, jnp.zeros((), y.dtype), extra)
            p = model.scoring_params(p, rng=jax.random.fold_in(rng, 1), train=True)
            if self.loss == "full-ce":
                value = losses.full_cross_entropy(p, y, target, self.activation, self.elu_alpha)
            else:
                scores = losses.activate(self.activation,
                                         losses.candidate_scores(p, y, l_target, l_neg),
                                         self.elu_alpha)
                if self.logq:
                    scores = losses.logq_correction(scores, self._log_q(), target, neg)
                value = losses.ranking_loss(self.loss, scores, target, neg, self.score_reg)
            return item_weight * value + sum(extra.values()), (carry_new, value, extra)

        return loss_fn


def make_train_step(model: Model, tx: optax.GradientTransformation, *, loss: Loss = "top1",
                    n_negatives: int = 0, negative_cdf: np.ndarray | None = None,
                    clip: float | None = None, row_updates: RowUpdates = "dense",
                    activation: Activation = "linear", score_reg: float = losses.SCORE_REG,
                    elu_alpha: float = losses.ELU_ALPHA, logq: bool = False,
                    negative_log_q: np.ndarray | None = None) -> TrainStep:
    """The train step of ``model`` under ``tx`` (any ``optax.GradientTransformation``).

    Args:
      loss: ``top1`` | ``bpr`` | ``ce`` | ``bpr-max`` | ``top1-max`` (in-batch negatives plus
        ``n_negatives`` items drawn from ``negative_cdf``, shared by the lanes of a step, see
        :func:`popularity_cdf`) | ``full-ce`` (softmax over every item); ``losses.ranking_loss``.
      clip: clip the global gradient norm (dense and row gradients together) to this value.
      row_updates: ``"dense"`` or ``"sparse"`` (module docstring: exact for SGD and plain
        Adagrad, the lazy variant for other rules).
      activation: output activation applied to the scores before the loss (``losses.activate``;
        ``elu_alpha``: the alpha of ``"elu"``).
      score_reg: BPR-max's score regularisation weight (GRU4Rec's ``bpreg``).
      logq: the logQ correction of Yi et al. (RecSys 2019), ``losses.logq_correction``: every
        candidate's score less log Q(j), Q the distribution of the sampled negatives;
        ``negative_log_q`` its logs (:func:`popularity_log_q`; None: from ``negative_cdf``).
        Needs ``n_negatives > 0`` and a sampled loss (ValueError otherwise).

    Returns:
      a :class:`TrainStep`: ``step(state, batch, rng, active=None) -> (state, metrics)`` and
      ``step.init_state(rng, batch_size)``. A state made otherwise (another loss or
      ``row_updates``) or a batch with another number of lanes is a ValueError when the step is
      traced.

    Row gradients are accumulated without atomics (``hrnn_jax.precision``): the step is
    deterministic on every backend as far as the library's own ops go. ``active``: an optional
    traced bool scalar; False leaves the state exactly as it was and returns zero metrics (the
    step is still computed). It writes only the rows the step touches, where a ``lax.cond`` on a
    per-seed flag becomes, under ``jax.vmap``, a select that copies every table on every step
    (:func:`scan_steps` with ``masked=True``).
    """
    return TrainStep(model, tx, loss, n_negatives, negative_cdf, clip, row_updates, activation,
                     score_reg, elu_alpha, logq, negative_log_q)


def init_state(model: Model, tx: optax.GradientTransformation, rng, batch_size: int, *,
               loss: Loss = "top1", row_updates: RowUpdates = "dense") -> TrainState:
    """``make_train_step(model, tx, loss=loss, row_updates=row_updates).init_state(rng,
    batch_size)``: the state of that step. Vmappable over ``rng``."""
    return make_train_step(model, tx, loss=loss, row_updates=row_updates).init_state(
        rng, batch_size)


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

            def skip(state, batch, rng):
                shapes = jax.eval_shape(train_step, state, batch, rng)[1]
                return state, jax.tree_util.tree_map(jnp.zeros_like, shapes)
            return jax.lax.cond(on, train_step, skip, state, batch, rng)

        return jax.lax.scan(body, state, (batches, rngs, active))

    return run


def steps_call(train_step: Callable, k: int, seeds: int) -> Callable:
    """``run(state, batches [k, ...], rngs [k], active [k]) -> (state, metrics [k])`` before
    jit: one call of ``fit`` (``training.loop``, and on a mesh ``training.sharded``). One seed
    and one window per call run the step itself; otherwise :func:`scan_steps`, masked and
    ``jax.vmap``-ed over a leading seed axis for several seeds."""
    if k == 1 and seeds == 1:
        def run(state, batches, rngs, active):
            state, metrics = train_step(state, {n: v[0] for n, v in batches.items()}, rngs[0])
            return state, {n: v[None] for n, v in metrics.items()}
        return run
    run = scan_steps(train_step, masked=seeds > 1)
    return run if seeds == 1 else jax.vmap(run)
