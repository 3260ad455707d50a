"""HRNN-meta (Ma & Narayanaswamy, "Hierarchical Temporal-Contextual Recommenders", NeurIPS 2018
Workshop on Modeling and Decision-Making in the Spatiotemporal Domain): the session hierarchy as
an input rather than a switch of hidden states.

HRNN (Quadrana et al., "HGRU" in this paper) closes a session by running a user-level cell and
re-initialising the session state. HRNN-meta keeps one recurrent encoder over the user's whole
sequence (reset only at a new user) and feeds it a *control signal* at every step: the level of
the time gap between the step's input event and the event it predicts (Section 2, Figure 1's
second input position). Nothing but the inputs changes, so any encoder works and batches keep the
plain lane layout.

Control levels. The gap in seconds (``batching`` field ``"gap"``: target time - input time) is
mapped to a level by ``gap_edges`` (ascending, seconds): level ``j`` = the number of edges <= the
gap. The default ``(60, 3600, 86400)`` gives the paper's Table 5 levels: within a minute, an hour,
a day, and longer. The gap is the one to the *target* (not to the previous event): the model is
told whether the event it predicts opens a new session, which is what lets it predict a session's
first item (Table 1).

How the level enters (the paper's Figure 2 concatenates a learned embedding with the input):

* A split cell (``hrnn_jax.cells.GRU``): ``[x; e_level]`` projected by the cell's input kernel is
  ``W_x x + W_e e_level``, so the level's part is one learned row per level in the projected 3H
  space (``control [levels, 3H]``), added to the projected item input outside the scan: a step
  costs what the plain GRU's does.
* A cell that projects its own input (flax ``GRUCell``, ``LSTMCell``) or the temporal
  convolution encoder (``hrnn_jax.cells.TCN``): a learned embedding ``control [levels,
  control_dim]`` concatenated with the item embedding.

Encoders. ``session_cell`` is any of them: a cell scanned step by step (reset at a new user), or
a :class:`hrnn_jax.cells.TCN`, which convolves the whole window at once with its receptive-field
buffers in the carry (a new user inside a lane sees none of the previous user's steps).

Item features in the decoder (Section 2). The vanilla decoder scores item j by
``phi_j(h) = w_j^T h + b_j``; with features ``f_j`` it becomes

    score_j = (1 - lambda) (w_j^T h + b_j) + lambda (w(f_j)^T h + b(f_j))

with ``w(f) = f W_w + c_w`` and ``b(f) = f v_b + c_b`` learned affine maps (our choice: the paper
says "learnable functions"). The mix is linear in the output rows, so it is a
``scoring_params`` (the contract's): the effective rows ``(1 - lambda) w_j +
lambda w(f_j)`` and biases replace ``item_out``/``item_bias`` wherever scores are made (every
loss, evaluation, ``recommend``), also for the rows a sparse training step gathers. lambda:

* in training, drawn from U(0, 1) once per training step (``random_mix``, the paper's trick that
  makes feature embeddings substitutes rather than complements of the item rows); one draw per
  step keeps the decoder a table of rows, so the full softmax costs one product as before;
* at evaluation (and in training without ``random_mix``) ``feature_mix`` (0.5, the mean of the
  training draws);
* 1 for cold items (``cold_items``): items in the catalogue without training events are scored
  from their features alone, so they can be ranked and recommended.

The feature table and the cold flags are data, kept in the parameters (``item_feat``,
``item_cold``: saved with them, gathered with the item rows) behind ``stop_gradient``, so no
optimiser moves them.

User features and feedback (Section 2, Figure 2) join the input beside the control signal, each
embedded by a learned affine map to the control's width (added in the 3H space of a split cell,
concatenated otherwise): a user's feature vector ``user_features[user]`` (``[n_users, F_u]``, data
like the item features), and the input event's feedback: its value (lane field ``"feedback"``, the
log's ``value``: a rating, a click/purchase code), standardised as ``(value - feedback_mean) /
feedback_std`` (the paper: "interaction feedback were the standardized rating values"; give the
training events' mean and standard deviation, ``papers.ma2019.feedback_standardisation``; the
defaults 0 and 1 feed the value as it is). ``item_input`` says what the
encoder sees of the input item: its id (``"id"``, default), its feature vector (``"features"``,
embedded by a learned affine map) or nothing (``"none"``, a learned constant): the ablations of
the paper's Table 2.

Rating prediction (Section 3, Table 3: "we can extend the objective to root-mean-square error
(RMSE) for rating predictions"). With ``rating_weight > 0`` the model gains a regression head that
predicts the rating of the step's target item j from the state h (our choice of form, the paper
gives none: the decoder's, on a table of its own)

    r_hat_j(h) = mu + c_j + u_j^T h

and its training loss gains ``rating_weight`` times the mean squared error against the lane field
``"rating"`` (the target event's ``value``) on the steps with a target. ``item_weight`` weights the
next-item loss (0: a pure rating model, the paper's RMSE rows; its step skips the item scores).
``mu`` starts at ``rating_mean`` (e.g. the training mean). The head's tables ``rating_out
[N+1, H]`` and ``rating_item_bias [N+1]`` are dense parameters, not row tables: they are indexed by
the target inside ``apply``, which sees global target ids (``capabilities.row_tables``), and they
are read only there. :meth:`HRNNMeta.predict_ratings` gives the head's predictions for any states;
``predict.target_ratings`` runs it over users' histories. With ``control=False`` the gap signal
is left out: the vanilla RNN ("RNN wo./w. feedback encoding" in Table 3), beside HRNN-meta with
it ("HRNN w/ feedback encoding").

Everything else is :class:`hrnn_jax.models.SessionRNN` (item tables, dropout, scoring); with
``reset="user"`` (the default here) it is RNN Concat with the control input, the vanilla RNN of the
paper's Table 1 plus the control channel.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from hrnn_jax import choices, precision
from hrnn_jax.cells.tcn import TCN
from hrnn_jax.models.contract import ITEM_TABLES, Capabilities, Output, Params
from hrnn_jax.models.layers import dense, dense_params, target_mean
from hrnn_jax.models.session import Reset, SessionRNN

TABLE5_EDGES = (60.0, 3600.0, 86400.0)  # within a minute, an hour, a day; longer
ItemInput = Literal["id", "features", "none"]


def gap_levels(gap, edges) -> jax.Array:
    """Control level of each gap (seconds): the number of ``edges`` that are <= the gap, so
    ``len(edges) + 1`` levels. ``gap [...] -> int32 [...]``."""
    return jnp.searchsorted(jnp.asarray(edges, jnp.float32), gap, side="right").astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class HRNNMeta(SessionRNN):
    """A recurrent encoder over each user's sequence with the time-gap control signal as input.

    Attributes (beyond :class:`hrnn_jax.models.SessionRNN`'s):
      gap_edges: ascending level edges in seconds (default: Table 5's minute, hour, day).
      control_dim: width of the level embedding for a cell that projects its own input (default:
        the hidden size); unused with a split cell, whose level rows are 3H wide.
      item_features: ``[N+1, F]`` feature vectors of the items (row 0, padding, is ignored), or
        None for the vanilla decoder.
      cold_items: bool ``[N+1]``: items scored from their features alone (lambda = 1), e.g. the
        catalogue's items without training events. Needs ``item_features``.
      feature_mix: lambda at evaluation (and in training without ``random_mix``), in [0, 1].
      random_mix: draw lambda from U(0, 1) at every training step.
      user_features: ``[n_users, F_u]`` feature vectors of the users (by user code), or None.
      feedback: the input event's feedback joins the input: its value (lane field
        ``"feedback"``), or with ``feedback_levels`` K > 0 its type (lane field
        ``"event_type"``: codes 0..K-1, e.g. click/purchase), embedded by a row per type.
      feedback_mean, feedback_std: the value feedback enters as (value - mean) / std (the
        training events' statistics; defaults 0 and 1: as it is).
      item_input: ``"id"`` | ``"features"`` | ``"none"``: what the encoder sees of the input item.
      control: feed the time-gap control signal (False: the vanilla RNN with the other channels).
      rating_weight: weight of the rating head's squared error in the training loss; 0 (default):
        no rating head.
      rating_mean: the head's initial global bias mu (e.g. the training ratings' mean).
      item_weight: weight of the next-item loss (0: trained on ratings alone).

    The batch must carry the fields it reads (``fields``: ``"gap"`` with the control signal,
    ``"feedback"``, ``"rating"``; ``capabilities.fields``). The feature
    table and cold flags are copied into the parameters at ``init`` (they are not part of the
    model's identity: two models that differ only there compare equal).
    """

    reset: Reset = "user"
    gap_edges: tuple[float, ...] = TABLE5_EDGES
    control_dim: int | None = None
    item_features: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    cold_items: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    feature_mix: float = 0.5
    random_mix: bool = True
    user_features: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    feedback: bool = False
    feedback_levels: int = 0
    feedback_mean: float = 0.0
    feedback_std: float = 1.0
    item_input: ItemInput = "id"
    control: bool = True
    rating_weight: float = 0.0
    rating_mean: float = 0.0
    item_weight: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self._tcn and self.reset != "user":
            raise ValueError("HRNNMeta: the TCN encoder resets at a new user only (reset='user'); "
                             "the control input tells it about sessions")
        edges = np.asarray(self.gap_edges, float)
        if edges.ndim != 1 or len(edges) < 1 or np.any(np.diff(edges) <= 0) \
                or not np.all(np.isfinite(edges)):
            raise ValueError(f"HRNNMeta: gap_edges must be finite and strictly ascending, got "
                             f"{self.gap_edges}")
        if self.control_dim is not None and self.control_dim < 1:
            raise ValueError(f"HRNNMeta: control_dim must be >= 1, got {self.control_dim}")
        choices.check("item_input", self.item_input, ItemInput)
        if self.item_input == "features" and self.item_features is None:
            raise ValueError("HRNNMeta: item_input='features' needs item_features")
        if self.user_features is not None:
            u = np.asarray(self.user_features)
            if u.ndim != 2 or u.shape[1] < 1 or not np.all(np.isfinite(u)):
                raise ValueError(f"HRNNMeta: user_features must be a finite [n_users, F_u] "
                                 f"array, got shape {u.shape}")
        if not (self.rating_weight >= 0 and self.item_weight >= 0
                and self.rating_weight + self.item_weight > 0):
            raise ValueError(f"HRNNMeta: rating_weight and item_weight must be >= 0 and not both "
                             f"0, got {self.rating_weight}, {self.item_weight}")
        if not np.isfinite(self.rating_mean):
            raise ValueError(f"HRNNMeta: rating_mean must be finite, got {self.rating_mean}")
        if self.feedback_levels < 0 or (self.feedback_levels and not self.feedback):
            raise ValueError(f"HRNNMeta: feedback_levels (event types) must be >= 0 and needs "
                             f"feedback=True, got {self.feedback_levels}")
        if not (np.isfinite(self.feedback_mean) and np.isfinite(self.feedback_std)
                and self.feedback_std > 0):
            raise ValueError(f"HRNNMeta: feedback_mean must be finite and feedback_std finite and "
                             f"> 0, got {self.feedback_mean}, {self.feedback_std}")
        if not 0.0 <= self.feature_mix <= 1.0:
            raise ValueError(f"HRNNMeta: feature_mix must be in [0, 1], got {self.feature_mix}")
        N1 = self.n_items + 1
        if self.item_features is not None:
            f = np.asarray(self.item_features)
            if f.ndim != 2 or f.shape[0] != N1 or f.shape[1] < 1:
                raise ValueError(f"HRNNMeta: item_features must be [n_items + 1, F] = [{N1}, F>=1] "
                                 f"(row 0 is padding), got {f.shape}")
            if not np.all(np.isfinite(f)):
                raise ValueError("HRNNMeta: item_features has NaN or infinite values")
        if self.cold_items is not None:
            if self.item_features is None:
                raise ValueError("HRNNMeta: cold_items are scored from their features: give "
                                 "item_features too")
            if np.shape(self.cold_items) != (N1,):
                raise ValueError(f"HRNNMeta: cold_items must be bool [n_items + 1] = [{N1}], got "
                                 f"{np.shape(self.cold_items)}")

    @property
    def capabilities(self) -> Capabilities:
        """Each user's whole sequence (no user level: lanes without hold steps); the lane fields
        it reads (the gap with the control signal, the feedback value or type, the rating label,
        each if used); the item tables, without ``item_in`` when the encoder does not see ids,
        with the feature table and cold flags when there are features (gathered with the output
        rows, by ``target``, so a sparse step's ``scoring_params`` sees the same rows); the item
        and rating weights; the users of ``user_features``."""
        used = {"gap": self.control, "feedback": self.feedback and not self.feedback_levels,
                "event_type": self.feedback and self.feedback_levels > 0,
                "rating": self.rating_weight > 0}
        tables = dict(ITEM_TABLES)
        if self.item_input != "id":  # no input table: the batch's items stay global ids
            del tables["item_in"]
        if self.n_features:
            tables.update(item_feat="target", item_cold="target")
        n_users = None if self.user_features is None else int(np.shape(self.user_features)[0])
        return Capabilities(row_tables=tables, whole_sequence=True,
                            fields=tuple(name for name, on in used.items() if on),
                            n_users=n_users, item_weight=self.item_weight,
                            rating_head=self.rating_weight > 0)

    @property
    def n_features(self) -> int:
        return 0 if self.item_features is None else int(np.shape(self.item_features)[1])

    @property
    def n_channels(self) -> int:
        """Input channels beside the item: control, user features, feedback."""
        return int(self.control) + (self.user_features is not None) + self.feedback

    @property
    def _tcn(self) -> bool:
        return isinstance(self.session_cell, TCN)

    @property
    def n_levels(self) -> int:
        return len(self.gap_edges) + 1

    @property
    def control_width(self) -> int:
        """Width of a level's row: a split cell's projected input's (3H for a GRU: added to it)
        or ``control_dim`` (concatenated with the item embedding)."""
        if self._added:
            return self.session_cell.projected_features
        return self.control_dim or self.hidden

    @property
    def _added(self) -> bool:
        """The channels are added in a split cell's projected space (else concatenated)."""
        return self.input_path != "concat"

    def _extra_input(self) -> int:
        return 0 if self._added else self.n_channels * self.control_width

    def init(self, rng) -> Params:
        k_common, k_control = jax.random.split(rng)
        params = self._init_common(k_common)
        C = self.control_width
        s = np.sqrt(6.0 / (self.n_levels + C))  # GRU4Rec's initialisation, as the item table
        if self.control:
            params["control"] = jax.random.uniform(k_control, (self.n_levels, C), jnp.float32,
                                                   -s, s)
        if self.rating_weight > 0:
            N1, H = self.n_items + 1, self.hidden
            params["rating_out"] = jax.random.uniform(jax.random.fold_in(k_control, 3), (N1, H),
                                                      jnp.float32, -0.01, 0.01)
            params["rating_item_bias"] = jnp.zeros((N1,), jnp.float32)
            params["rating_bias"] = jnp.asarray(self.rating_mean, jnp.float32)
        if self.n_features:
            F, H = self.n_features, self.hidden
            k_w, k_b = jax.random.split(jax.random.fold_in(k_control, 1))
            params["feature_out"] = dense_params(k_w, F, H)
            params["feature_bias"] = {"kernel": jnp.zeros((F,), jnp.float32),
                                      "bias": jnp.zeros((), jnp.float32)}
            params["item_feat"] = jnp.asarray(self.item_features, jnp.float32)
            cold = np.zeros(self.n_items + 1) if self.cold_items is None else self.cold_items
            params["item_cold"] = jnp.asarray(cold, jnp.float32)
        keys = iter(jax.random.split(jax.random.fold_in(k_control, 2), 3))
        D = self.item_width  # the item input's width before the cell (3H one-hot)
        if self.item_input != "id":
            del params["item_in"]  # the encoder does not see item ids
        if self.item_input == "features":
            params["item_feature_in"] = dense_params(next(keys), self.n_features, D)
        elif self.item_input == "none":
            params["item_const"] = jnp.zeros((D,), jnp.float32)
        if self.user_features is not None:
            params["user_feat"] = jnp.asarray(self.user_features, jnp.float32)
            params["user_feature_in"] = dense_params(next(keys), params["user_feat"].shape[1], C)
        if self.feedback:
            params["feedback_in"] = dense_params(next(keys), max(self.feedback_levels, 1), C)
        return params

    def _init_cell(self, rng) -> Params:
        if not self._tcn:
            return super()._init_cell(rng)
        D = self.item_width + self._extra_input()
        x = jnp.zeros((1, 1, D))
        return self.session_cell.init(rng, self.init_carry(1), x, jnp.zeros((1, 1), bool))["params"]

    def init_carry(self, batch_size: int):
        if not self._tcn:
            return super().init_carry(batch_size)
        return self.session_cell.initialize_carry(None, (batch_size,
                                                         self.item_width + self._extra_input()))

    def apply(self, params, carry, batch, *, rng=None, train=False) -> Output:
        """``y``; with a rating head in training ``extra`` holds ``{"rating": loss}``."""
        if not self._tcn:
            carry, y, _ = super().apply(params, carry, batch, rng=rng, train=train)
        else:
            x = self._step_inputs(params, batch)  # [B, L, E + C]
            carry, y = self.session_cell.apply({"params": params["session"]}, carry, x,
                                               batch["user_start"])
            y = self._output(jnp.swapaxes(y, 0, 1), rng, train)
        if not (train and self.rating_weight > 0):
            return Output(carry, y, {})
        err = self.predict_ratings(params, y, batch["target"]) - batch["rating"]
        mse = target_mean(err**2, batch["target"])
        return Output(carry, y, {"rating": self.rating_weight * mse})

    def predict_ratings(self, params, y, items):
        """The rating head: ``r_hat = mu + c_j + u_j^T h`` for states ``y [..., H]`` and the items
        ``[...]`` (global ids) whose ratings are predicted -> ``[...]``."""
        u = precision.take_rows(params["rating_out"], items)
        c = precision.take_rows(params["rating_item_bias"], items)
        return params["rating_bias"] + c + (u * y).sum(-1)

    def scoring_params(self, params, *, rng=None, train=False):
        """The output rows with item features mixed in (module docstring); unchanged without
        features. Works on whole tables and on the rows a training step gathered."""
        if "item_feat" not in params:
            return params
        f = jax.lax.stop_gradient(params["item_feat"])  # data, not parameters
        cold = jax.lax.stop_gradient(params["item_cold"])
        w_f = dense(f, params["feature_out"])  # w(f_j)
        b_f = dense(f, params["feature_bias"])  # b(f_j)
        lam = self.feature_mix
        if train and self.random_mix:
            lam = jax.random.uniform(rng, ())  # one lambda per training step
        lam = jnp.where(cold > 0, 1.0, lam)  # cold items: features alone
        return {**params,
                "item_out": (1.0 - lam)[:, None] * params["item_out"] + lam[:, None] * w_f,
                "item_bias": (1.0 - lam) * params["item_bias"] + lam * b_f}

    def _item_input(self, params, items):
        """What the encoder sees of the input items ``[B, L] -> [B, L, D]`` (``item_input``)."""
        if self.item_input == "id":
            return self._inputs(params, items)
        if self.item_input == "features":
            f = jnp.take(jax.lax.stop_gradient(params["item_feat"]), items, axis=0)
            x = dense(f, params["item_feature_in"])
        else:
            x = jnp.broadcast_to(params["item_const"], items.shape + params["item_const"].shape)
        if self.input_path == "project":
            x = self.session_cell.apply({"params": params["session"]}, x, method="project")
        return x

    def _step_inputs(self, params, batch):
        """The item input with the control signal of each step's gap to its target and, if used,
        the user's features and the input event's feedback, each embedded."""
        x = self._item_input(params, batch["item"])  # [B, L, 3H] (split) or [B, L, E]
        channels = []
        if self.control:
            level = gap_levels(batch["gap"], self.gap_edges)  # [B, L]
            channels.append(precision.take_rows(params["control"], level))  # [B, L, C]
        if "user_feat" in params:
            u = jnp.take(jax.lax.stop_gradient(params["user_feat"]), batch["user"], axis=0)
            channels.append(dense(u, params["user_feature_in"]))
        if self.feedback and self.feedback_levels:  # the event type's row (one-hot, affine)
            code = batch["event_type"].astype(jnp.int32)
            channels.append(precision.take_rows(params["feedback_in"]["kernel"], code)
                            + params["feedback_in"]["bias"])
        elif self.feedback:  # the standardised value, embedded by an affine map
            value = (batch["feedback"] - self.feedback_mean) / self.feedback_std
            channels.append(value[..., None] * params["feedback_in"]["kernel"][0]
                            + params["feedback_in"]["bias"])
        if self._added:  # each channel's rows in the projected space
            return x + sum(channels) if channels else x
        return jnp.concatenate([x, *channels], axis=-1)
