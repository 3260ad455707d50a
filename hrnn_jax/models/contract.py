"""The model contract: what a model of this library is, and everything it may declare. Read it
first.

A model is a frozen dataclass that subclasses :class:`Model`: its hyper-parameters and cells,
and pure functions of explicit parameters, so ``jax.jit`` and ``jax.vmap`` (over seeds) apply
to everything that uses it. Training (``hrnn_jax.training``), evaluation and ``recommend``
(``hrnn_jax.evaluation.predict``) and checkpoints use the members below and nothing else.

Required (abstract in :class:`Model`):

* ``n_items: int``: items are codes 1..N; 0 is padding.
* ``output_width -> int``: the width of ``y``, which the scores read.
* ``init(rng) -> params``: a dict of arrays (vmappable over ``rng``).
* ``init_carry(batch_size) -> carry``: the recurrent state of B lanes, any pytree whose leaves
  have the leading axis B. Whatever must outlive a window (an attention model's buffer of past
  steps, a running mean, a TCN's receptive field) lives in the carry: nothing to declare.
* ``apply(params, carry, batch, *, rng=None, train=False) -> Output(carry, y, extra)``: one
  window of the batch contract (``hrnn_jax.data.lanes``), ``y [B, L, output_width]``, ``extra`` a
  dict of scalar loss terms, already weighted (an L2 penalty, a KL term; empty for most models),
  that the train step adds to the ranking loss and reports.

Optional (defaults in :class:`Model`; override them in a subclass):

* ``capabilities -> Capabilities``: the record of what the model needs from the library
  (:class:`Capabilities`: row tables, per-step fields, where sessions close, whole-sequence
  lanes, a user table, the weight of the ranking loss, a rating head).
* ``scoring_params(params, *, rng=None, train=False) -> params``: the parameters the scores
  read, ``item_out [N+1, output_width]`` and ``item_bias [N+1]`` (default: ``params`` as they
  are). A decoder tied to the embedding or mixed with item features maps its tables here; every
  loss, evaluation and ``recommend`` scores ``score_items(model.scoring_params(params), y)``.
  Inside a sparse train step ``params`` holds only the gathered rows: map rows to rows.
* ``constraints(params) -> params``: a projection the train step applies to the dense parameters
  after every update (default: none; HCRNN's W_d >= 0).
* ``predict_ratings(params, y, items) -> ratings``: the rating head, with
  ``capabilities.rating_head`` (HRNN-meta).

:func:`check_model` says what a model does wrong; :func:`check_ids` and :func:`lanes_for` keep
ids inside the model's tables at the boundary (on the host, once per dataset: the jitted step
trusts them).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Literal, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from hrnn_jax import choices
from hrnn_jax.data.errors import DataError
from hrnn_jax.data.lanes import EXTRA_FIELDS, CloseAt, LaneGroups, Lanes, Targets, make_lanes
from hrnn_jax.data.rows import rows_targets

Params = dict[str, Any]
Carry = Any
# The item tables of GRU4Rec-style models: inputs by the batch's ``item``, the output layer by
# ``target`` (which also covers sampled negatives).
ITEM_TABLES = {"item_in": "item", "item_out": "target", "item_bias": "target"}
ROW_FIELDS = ("item", "target", "user")  # the batch fields that may index a row table


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a model needs from the library beyond the required members (every default is the
    plain case: a session model over the item tables).

    Attributes:
      row_tables: ``{param: batch field}``, the tables a train step may update by sparse rows and
        the field (``item``, ``target`` or ``user``) whose ids index each. Inside such a step the
        model sees only the gathered rows, and every indexing field but ``target`` holds row
        positions in them instead of ids: a model that reads such a field for anything else
        must not declare a table indexed by it. Empty: every table dense.
      fields: the optional per-step lane fields it reads (names of
        ``hrnn_jax.data.lanes.EXTRA_FIELDS``, e.g. HRNN-meta's ``"gap"``), built only when asked.
      close_at: where its user level closes a session: ``"input"``, ``"target"`` (a hierarchical
        model; lanes list the closing lanes, with hold steps above the cap) or ``"never"`` (no
        user level: lanes without hold steps).
      whole_sequence: it runs over each user's whole sequence (``"user"`` targets) under every
        protocol; otherwise the protocol decides (:func:`lane_targets`).
      n_users: the users it has rows for (a user table, user features): ids must be below it;
        None: any user id.
      item_weight: the weight of the ranking loss (0: trained on its ``extra`` terms alone, and
        the step makes no scores).
      rating_head: it has ``predict_ratings`` (``predict.target_ratings``).
      tables: ``{param: batch field}`` like ``row_tables``, every parameter with a row per item
        (``item``, ``target``) or per user (``user``), updated by rows or not: on a device mesh
        they are sharded by rows over the ``items`` axis (``hrnn_jax.parallel``). None (default):
        the row tables. A model with a dense table (HCRNN's tied embedding) declares it here.
    """

    row_tables: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(ITEM_TABLES))
    fields: tuple[str, ...] = ()
    close_at: CloseAt = "never"
    whole_sequence: bool = False
    n_users: int | None = None
    item_weight: float = 1.0
    rating_head: bool = False
    tables: Mapping[str, str] | None = None

    @property
    def sharded_tables(self) -> Mapping[str, str]:
        """The tables sharded by rows on a mesh: ``tables``, or the row tables."""
        return self.row_tables if self.tables is None else self.tables

    def __post_init__(self):
        choices.check("Capabilities.close_at", self.close_at, CloseAt)
        unknown = sorted(set(self.fields) - set(EXTRA_FIELDS))
        if unknown:
            raise ValueError(f"Capabilities.fields: unknown per-step field(s) {unknown}; known: "
                             f"{sorted(EXTRA_FIELDS)}")
        for name, tables in (("row_tables", self.row_tables), ("tables", self.tables or {})):
            bad = {k: f for k, f in tables.items() if f not in ROW_FIELDS}
            if bad:
                raise ValueError(f"Capabilities.{name}: {bad}: a table is indexed by one of "
                                 f"{ROW_FIELDS}")
        if not self.item_weight >= 0:
            raise ValueError(f"Capabilities.item_weight must be >= 0, got {self.item_weight}")
        if self.n_users is not None and self.n_users < 1:
            raise ValueError(f"Capabilities.n_users must be >= 1 or None, got {self.n_users}")


class Output(NamedTuple):
    """What ``apply`` returns: the new ``carry``, the outputs ``y [B, L, output_width]`` and
    ``extra``, a dict of weighted scalar loss terms (empty: none)."""

    carry: Carry
    y: jax.Array
    extra: dict


class Model(abc.ABC):
    """The base of every model: the required members are abstract, the optional ones have their
    defaults here (module docstring). Subclasses are frozen dataclasses with a field
    ``n_items``."""

    n_items: int

    @property
    @abc.abstractmethod
    def output_width(self) -> int:
        """The width of ``apply``'s ``y``."""

    @abc.abstractmethod
    def init(self, rng) -> Params:
        """Fresh parameters drawn from ``rng``."""

    @abc.abstractmethod
    def init_carry(self, batch_size: int) -> Carry:
        """The state of ``batch_size`` lanes before any event."""

    @abc.abstractmethod
    def apply(self, params: Params, carry: Carry, batch: dict, *, rng=None,
              train: bool = False) -> Output:
        """One window of the batch contract."""

    @property
    def capabilities(self) -> Capabilities:
        """What the model needs from the library (:class:`Capabilities`)."""
        return Capabilities()

    def scoring_params(self, params: Params, *, rng=None, train: bool = False) -> Params:
        """The parameters the scores read (``item_out``, ``item_bias``)."""
        return params

    def constraints(self, params: Params) -> Params:
        """The projection of the dense parameters after every update."""
        return params

    def predict_ratings(self, params: Params, y: jax.Array, items: jax.Array) -> jax.Array:
        """Ratings of ``items [...]`` from states ``y [..., output_width]`` (a rating head)."""
        raise NotImplementedError(f"{type(self).__name__} has no rating head")


# ------------------------------------------------------------------------------------------
# What the library derives from the declarations
# ------------------------------------------------------------------------------------------
def lane_targets(model: Model, protocol: str = "last-session") -> Targets:
    """The lane layout of ``model`` under ``protocol``: ``"user"`` for a whole-sequence model,
    else the protocol's (``hrnn_jax.data.rows.rows_targets``)."""
    return "user" if model.capabilities.whole_sequence else rows_targets(protocol)


TrainLanes = Literal["auto", "within-session"]  # TrainConfig.train_lanes


def train_lane_targets(model: Model, protocol: str = "last-session",
                       train_lanes: TrainLanes = "auto") -> Targets:
    """The lane layout ``model`` trains on: its evaluation layout (:func:`lane_targets`) with
    ``"auto"``; with ``"within-session"``, a model that is not whole-sequence learns only the
    targets within a session (``"session"``, Quadrana et al.'s training) even where it is
    evaluated on ``"user"`` lanes (leave-one-out: a test event that opens a session is then
    predicted from the end of the previous one, a step the model was not trained on)."""
    choices.check("train_lanes", train_lanes, TrainLanes)
    if train_lanes == "within-session" and not model.capabilities.whole_sequence:
        return "session"
    return lane_targets(model, protocol)


def field_columns(model: Model) -> tuple[str, ...]:
    """The frame columns its per-step fields read (``EXTRA_FIELDS``), sorted: what a frame must
    keep beside user, item and session for this model (HRNN-meta: time, and value or
    event_code with feedback)."""
    return tuple(sorted({EXTRA_FIELDS[f][0] for f in model.capabilities.fields}))


def check_ids(model: Model, frame: pl.DataFrame, where: str = "the events") -> None:
    """DataError unless every item code of ``frame`` is in 1..``n_items`` and every user code in
    0..``capabilities.n_users - 1`` (when the model has rows per user); the message names the
    largest id and the table's size. On the host: call it once per dataset."""
    items = frame["item"].to_numpy()
    if items.size and (items.max() > model.n_items or items.min() < 1):
        worst = int(items.max()) if items.max() > model.n_items else int(items.min())
        raise DataError(f"{where} hold item id {worst}, outside the model's item table (codes "
                        f"1..{model.n_items}): encode them with the catalogue the model was "
                        "built for")
    n_users = model.capabilities.n_users
    if n_users is not None and "user" in frame.columns and frame.height:
        users = frame["user"].to_numpy()
        if users.max() >= n_users or users.min() < 0:
            worst = int(users.max()) if users.max() >= n_users else int(users.min())
            raise DataError(f"{where} hold user id {worst}, outside the model's user table "
                            f"({n_users} rows, codes 0..{n_users - 1})")


def lanes_for(model: Model, frame: pl.DataFrame, *, batch_size: int, window: int,
              targets: Targets | None = None, seed: int | None = None,
              evaluate: np.ndarray | None = None, boundary_slots: int | None = None,
              check: bool = True, groups: int | LaneGroups = 1) -> Lanes:
    """``make_lanes`` for ``model``: its per-step fields and where its sessions close, after
    :func:`check_ids` (``check``; off only where the caller checked the same frame already).
    ``targets``: default :func:`lane_targets` under the last-session protocol; the other
    arguments are ``make_lanes``'."""
    if check:
        check_ids(model, frame)
    caps = model.capabilities
    return make_lanes(frame, batch_size=batch_size, window=window,
                      targets=targets or lane_targets(model), close_at=caps.close_at, seed=seed,
                      evaluate=evaluate, boundary_slots=boundary_slots, fields=caps.fields,
                      groups=groups)


# ------------------------------------------------------------------------------------------
# Checking a model against the contract
# ------------------------------------------------------------------------------------------
def example_batch(model: Model, batch_size: int = 2, window: int = 3) -> dict:
    """A window of the batch contract for ``model`` (every lane one user, one session, item 1
    everywhere, its per-step fields zero): for :func:`check_model` and abstract evaluation."""
    B, L = batch_size, window
    first = np.zeros((B, L), bool)
    first[:, 0] = True
    batch = {"item": np.ones((B, L), np.int32), "target": np.ones((B, L), np.int32),
             "session_start": first, "user_start": first, "valid": np.ones((B, L), bool),
             "user": np.zeros((B, L), np.int32), "event": np.zeros((B, L), np.int64),
             "evaluate": np.zeros((B, L), bool),
             "closing": np.broadcast_to(B + np.arange(B, dtype=np.int32), (L, B)).copy()}
    batch.update({f: np.zeros((B, L), np.float32) for f in model.capabilities.fields})
    return batch


def check_model(model: Model) -> None:
    """TypeError or ValueError saying what breaks the contract: not a :class:`Model`, a
    capabilities record of the wrong type, parameters that are not a dict, row tables that are not
    parameters with a row per id, a carry whose leaves lack the leading lane axis, an ``apply``
    that does not return an :class:`Output` with ``y [B, L, output_width]`` and a carry shaped as
    the one it got. Abstract evaluation only: nothing is computed."""
    name = type(model).__name__
    if not isinstance(model, Model):
        raise TypeError(f"{name} is not a hrnn_jax.models.Model (subclass it)")
    caps = model.capabilities
    if not isinstance(caps, Capabilities):
        raise TypeError(f"{name}.capabilities must be a Capabilities record, got {type(caps)}")
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    if not isinstance(params, dict):
        raise TypeError(f"{name}.init must return a dict of parameters, got {type(params)}")
    for table, field in {**caps.row_tables, **caps.sharded_tables}.items():
        if table not in params or not hasattr(params[table], "shape"):
            raise ValueError(f"{name}: table {table!r} (indexed by {field!r}) is not an "
                             f"array parameter; parameters: {sorted(params)}")
    for table, field in caps.sharded_tables.items():
        rows = caps.n_users if field == "user" else model.n_items + 1
        if rows is not None and (not params[table].shape or params[table].shape[0] != rows):
            raise ValueError(f"{name}: table {table!r} (indexed by {field!r}) has shape "
                             f"{params[table].shape}, expected {rows} rows")
    B, L = 2, 3
    carry = jax.eval_shape(lambda: model.init_carry(B))
    short = [a.shape for a in jax.tree_util.tree_leaves(carry) if not a.shape or a.shape[0] != B]
    if short:
        raise ValueError(f"{name}.init_carry({B}): every leaf needs the leading lane axis {B}, "
                         f"got shapes {short}")
    batch = {k: jnp.asarray(v) for k, v in example_batch(model, B, L).items()}
    out = jax.eval_shape(lambda p, c: model.apply(p, c, batch, rng=jax.random.PRNGKey(0),
                                                  train=True), params, carry)
    if not isinstance(out, Output):
        raise TypeError(f"{name}.apply must return Output(carry, y, extra), got {type(out)}")
    if out.y.shape != (B, L, model.output_width):
        raise ValueError(f"{name}.apply: y is {out.y.shape}, expected [B, L, output_width] = "
                         f"{(B, L, model.output_width)}")
    if jax.tree_util.tree_structure(out.carry) != jax.tree_util.tree_structure(carry):
        raise ValueError(f"{name}.apply must return a carry shaped as init_carry's")
    if not isinstance(out.extra, dict) or any(np.shape(v) for v in out.extra.values()):
        raise ValueError(f"{name}.apply: extra must be a dict of scalar loss terms")
