"""Session-based GRU (GRU4Rec), RNN Concat and the hierarchical RNN (HRNN Init / HRNN All).

Quadrana, Karatzoglou, Hidasi, Cremonesi 2017, "Personalizing Session-based Recommendations with
Hierarchical Recurrent Neural Networks". Equation numbers below refer to that paper.

A model is a frozen dataclass of hyper-parameters and flax cells with three pure functions:

* ``init(rng) -> params``
* ``init_carry(batch_size) -> carry``: the recurrent state of B lanes
* ``apply(params, carry, batch, *, rng=None, train=False) -> (carry, y)``: scan one window of the
  batch contract (``hrnn_jax.batching``) and return the session-level outputs ``y [B, L, H]``.

Scores are ``score_items(params, y) = y @ item_out.T + item_bias`` (Eq. 2 before g(.); the loss
applies its own g), shared by training, evaluation and ``recommend``.

Inputs. With a split cell (``hrnn_jax.cells.GRU``) and ``embed_dim=None`` the item is one-hot, as in
the paper: the input projection of a one-hot vector is one row of W_x, so the model keeps an item
table of width 3H (``item_in``) and the input bias is folded into its rows (one row is active per
step, so row + b is the same family of functions). With ``embed_dim=E`` items are embedded to E
dimensions and projected by the cell. A cell without ``project`` (flax ``GRUCell``, ``LSTMCell``)
receives the E-dimensional embedding (E defaults to its hidden size) and does its own projection.
A user-based cell (``hrnn_jax.user_cells``, with ``item_features``) gets an ``item_features``-wide
item embedding and a user vector beside it (see :class:`HRNN`). Work that does not depend on the
state (look-ups, projections, dropout masks, scoring) is done for all steps at once, outside
``jax.lax.scan``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol, runtime_checkable

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from hrnn_jax import cells, choices, precision
from hrnn_jax.config import ContextGates, ContextGrad, FirstSession

Params = dict[str, Any]


@runtime_checkable
class Model(Protocol):
    """The model contract: what ``training``, ``predict`` and evaluation use, and all they use.

    ``n_items`` (N: item codes 1..N, 0 is padding) and ``hidden`` (H, the width of ``y``);
    ``init(rng) -> params`` (vmappable over ``rng``); ``init_carry(batch_size) -> carry`` for B
    lanes; ``apply(params, carry, batch, *, rng=None, train=False) -> (carry, y [B, L, H])`` for
    one window of the batch contract (``hrnn_jax.batching``). Scores are
    ``score_items(scoring_params(model, params), y)``.

    Optional, read by :func:`row_tables` and :func:`apply_with_aux`: ``row_tables`` (which
    parameters are tables updated by sparse rows, and the batch field that indexes each), and an
    ``apply`` that returns ``(carry, y, extra)``, ``extra`` a dict of scalar loss terms (already
    weighted: an L2 penalty, a KL term) that the train step adds to the ranking loss; a
    ``scoring_params`` hook (see :func:`scoring_params`); ``item_weight``, the weight of the
    ranking loss (default 1; 0: trained on its extra terms alone); ``constraints(params) ->
    params``, a projection the train step applies to the dense parameters after every update
    (HCRNN's W_d >= 0); the per-step fields it reads
    (``fields``) and where sessions close (``close_at``), see ``batching.lane_options``.
    """

    n_items: int

    @property
    def hidden(self) -> int: ...

    def init(self, rng) -> Params: ...

    def init_carry(self, batch_size: int) -> Any: ...

    def apply(self, params: Params, carry: Any, batch: dict, *, rng=None,
              train: bool = False) -> tuple[Any, jax.Array]: ...


ITEM_TABLES = {"item_in": "item", "item_out": "target", "item_bias": "target"}


def row_tables(model) -> dict[str, str]:
    """``{param: batch field}`` of the tables a train step updates by sparse rows: the model's own
    ``row_tables`` if it declares them, else the item tables (inputs by ``item``, the output
    weights and biases by ``target``, which also covers sampled negatives).

    Inside the train step the model sees only the gathered rows, and each indexing field other
    than ``target`` holds row positions in them instead of ids: a model that reads such a field
    for anything else (e.g. features by item id) must not declare a table indexed by it."""
    return dict(getattr(model, "row_tables", ITEM_TABLES))


def apply_with_aux(model, params, carry, batch, *, rng=None, train=False):
    """``model.apply`` as ``(carry, y, extra)``: ``extra`` is the dict of scalar loss terms the
    model returns as a third element, or empty."""
    out = model.apply(params, carry, batch, rng=rng, train=train)
    return (*out, {}) if len(out) == 2 else out


Mode = Literal["init", "all"]
Reset = Literal["session", "user"]
CloseAt = Literal["input", "target"]
UserVector = Literal["table", "state"]


def _is_user_based(cell) -> bool:
    """A user-based cell (``hrnn_jax.user_cells``): split, fed ``[item (item_features), user]``."""
    return cells.is_split(cell) and hasattr(cell, "item_features")


def gru4rec_uniform(rng, shape, fan_in, fan_out):
    """GRU4Rec's initialisation: U(-s, s), s = sqrt(6 / (fan_in + fan_out))."""
    s = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(rng, shape, jnp.float32, -s, s)


def fan_uniform(rng, *shape: int) -> jax.Array:
    """:func:`gru4rec_uniform` over the shape's own fans (first and last axis; a vector: fan-out
    1), Glorot's uniform: the weights of HCRNN, NARM and STAMP."""
    return gru4rec_uniform(rng, shape, shape[0], shape[-1] if len(shape) > 1 else 1)


def tied_scoring_params(params: Params) -> Params:
    """A decoder tied to the item embedding (HCRNN, NARM, STAMP): ``item_out`` is ``item_in``,
    with no bias; the models' ``scoring_params`` hook."""
    table = params["item_in"]
    return {**params, "item_out": table, "item_bias": jnp.zeros(table.shape[:1], table.dtype)}


def tied_embedding(rng, n_rows: int, dim: int, scale: float = 0.1) -> jax.Array:
    """An item table that is both the input embedding and the decoder (HCRNN, NARM, STAMP):
    N(0, ``scale``^2), as the HCRNN authors' code draws it. GRU4Rec's uniform (about +-0.05 at
    2,000 items) starts the tied decoder's logits near zero, and on CiteULike HCRNN-3+Bi then
    trained to R@20 22.91 in 150 epochs at Adam 1e-3; with N(0, 0.1^2), 25.24 (paper 25.81)."""
    return scale * jax.random.normal(rng, (n_rows, dim), jnp.float32)


def _dropout(rng, p: float, shape) -> jax.Array:
    """Inverted dropout mask (scaled by 1/(1-p))."""
    keep = jax.random.bernoulli(rng, 1.0 - p, shape)
    return keep.astype(jnp.float32) / (1.0 - p)


def dropout_mask(rng, p: float, shape, train: bool):
    """A dropout mask, or None where there is nothing to drop."""
    return _dropout(rng, p, shape) if train and p > 0 else None


def score_items(params: Params, y: jax.Array) -> jax.Array:
    """Scores of every item, ``[..., H] -> [..., N+1]``; column 0 is padding (callers mask it).
    ``params``: the model's :func:`scoring_params`."""
    return y @ params["item_out"].T + params["item_bias"]


def scoring_params(model, params: Params, *, rng=None, train: bool = False) -> Params:
    """The parameters the scores read (``item_out``, ``item_bias``): the model's own
    ``scoring_params(params, rng=, train=)`` if it declares one (a decoder that mixes item
    features into the output rows, ``meta.HRNNMeta``), else ``params`` as they are. Training
    losses, evaluation and ``recommend`` all score through it; ``params`` may hold only the rows
    a training step gathered (a hook maps rows to rows)."""
    hook = getattr(model, "scoring_params", None)
    return params if hook is None else hook(params, rng=rng, train=train)


@dataclasses.dataclass(frozen=True)
class _Base:
    n_items: int
    session_cell: nn.Module
    embed_dim: int | None = None
    dropout_session: float = 0.0

    @property
    def hidden(self) -> int:
        return cells.hidden_size(self.session_cell)

    @property
    def _split(self) -> bool:
        """The session cell projects its input outside the scan (``cells.is_split``)."""
        return cells.is_split(self.session_cell)

    @property
    def user_based(self) -> bool:
        """The session cell is a user-based cell (``hrnn_jax.user_cells``): its item table is
        ``item_features`` wide and its input is ``[E_i i, user vector]`` (see :class:`HRNN`)."""
        return _is_user_based(self.session_cell)

    @property
    def one_hot(self) -> bool:
        return cells.is_split(self.session_cell) and self.embed_dim is None and not self.user_based

    @property
    def input_width(self) -> int:
        if self.one_hot:
            return 3 * self.hidden
        if self.user_based:
            return int(self.session_cell.item_features)
        return self.embed_dim or self.hidden

    @property
    def constraints(self):
        """The session cell's projection after every update (``project_params``: HCRNN's
        W_d >= 0), as the train step's ``constraints`` hook; None for cells without one."""
        fix = getattr(type(self.session_cell), "project_params", None)
        if fix is None:
            return None
        return lambda params: {**params, "session": fix(params["session"])}

    def _check_user_based(self):
        """A user-based session cell: ``embed_dim`` is its ``item_features`` (or None), and the
        model must give it a user part (``_extra_input() >= 1``)."""
        cell, name = self.session_cell, type(self).__name__
        if self.embed_dim is not None and self.embed_dim != cell.item_features:
            raise ValueError(f"{name}: a user-based session cell ({type(cell).__name__}) embeds "
                             f"items to its item_features ({cell.item_features}); got "
                             f"embed_dim={self.embed_dim} (leave it None)")
        if self._extra_input() < 1:
            raise ValueError(f"{name}: the user-based session cell {type(cell).__name__} needs a "
                             "user vector beside the item: use models.HRNN (user_vector='state' "
                             "or 'table') or models.UserRNN")

    def _extra_input(self) -> int:
        return 0

    def _init_common(self, rng) -> Params:
        N, H, D = self.n_items + 1, self.hidden, self.input_width
        k_in, k_out, k_cell = jax.random.split(rng, 3)
        params = {
            "item_in": gru4rec_uniform(k_in, (N, D), N, D),
            "item_out": gru4rec_uniform(k_out, (N, H), N, H),
            "item_bias": jnp.zeros((N,), jnp.float32),
        }
        if self.user_based:
            self._check_user_based()
        params["session"] = self._init_cell(k_cell)
        return params

    def _init_cell(self, rng) -> Params:
        """The session cell's parameters."""
        carry, D = cells.zero_carry(self.session_cell, 1), self.input_width
        if self.one_hot:
            return self.session_cell.init(rng, carry, jnp.zeros((1, D)), method="step")["params"]
        x = jnp.zeros((1, D + self._extra_input()))
        return self.session_cell.init(rng, carry, x)["params"]

    def _inputs(self, params, items, user=None):
        """Per-step inputs of the session cell, outside the scan: ``[B, L] -> [B, L, D]``; with
        ``user [B, L, U]`` (a user-based cell) the cell projects ``[E_i i, user]``."""
        x = precision.take_rows(params["item_in"], items)
        if user is not None:
            x = jnp.concatenate([x, user], axis=-1)
        if cells.is_split(self.session_cell) and not self.one_hot:
            x = self.session_cell.apply({"params": params["session"]}, x, method="project")
        return x

    def _session_step(self, params, carry, x):
        cell, p = self.session_cell, {"params": params["session"]}
        if cells.is_split(cell):
            return cell.apply(p, carry, x, method="step")
        return cell.apply(p, carry, x)

    def _output(self, ys, rng, train):
        """Scan outputs ``[L, B, H]`` -> ``[B, L, H]`` with session-level dropout on the outputs."""
        y = jnp.swapaxes(ys, 0, 1)
        if train and self.dropout_session > 0:
            y = y * _dropout(rng, self.dropout_session, y.shape)
        return y


@dataclasses.dataclass(frozen=True)
class SessionRNN(_Base):
    """GRU4Rec (``reset="session"``: state reset at every session start, Eq. 1 with s_{m,0} = 0) or
    RNN Concat (``reset="user"``: the sessions of a user are one sequence, reset only at a new user).

    Dropout (``dropout_session``) is applied to the hidden outputs before scoring, not to the
    recurrent connection.
    """

    reset: Reset = "session"
    unroll: int = 2  # scan steps per loop iteration: measured ~1.4x faster than 1 on 2 CPU cores

    def __post_init__(self):
        choices.check("reset", self.reset, Reset)

    def init(self, rng) -> Params:
        return self._init_common(rng)

    def init_carry(self, batch_size: int):
        return cells.zero_carry(self.session_cell, batch_size)

    def apply(self, params, carry, batch, *, rng=None, train=False):
        chex.assert_rank([batch["item"], batch["session_start"]], 2)
        x = self._step_inputs(params, batch)
        reset = batch["session_start"] if self.reset == "session" else batch["user_start"]
        carry, ys = self.scan(params, carry, x, reset, batch["valid"])
        return carry, self._output(ys, rng, train)

    def scan(self, params, carry, x, reset, valid):
        """The session cell over one window (Eq. 1): per-step inputs ``x [B, L, .]`` (as
        :meth:`_step_inputs` makes them), ``reset`` and ``valid`` ``[B, L]`` -> ``(carry, outputs
        [L, B, H])``, time-major as ``jax.lax.scan``'s. A reset step starts from zeros; a step
        that is not valid keeps the state. Reads only ``params["session"]``, so a model with its
        own inputs and head (``session_attention.NARM``) scans its cell with it."""
        zero = cells.zero_carry(self.session_cell, x.shape[0])

        def body(s, inp):
            x_t, reset_t, valid_t = inp
            s = cells.select(reset_t, zero, s)  # Eq. 1: s_{m,0} = 0
            s_new, y = self._session_step(params, s, x_t)  # Eq. 1
            return cells.select(valid_t, s_new, s), y  # hold and padding steps keep the state

        return jax.lax.scan(body, carry, (jnp.swapaxes(x, 0, 1), reset.T, valid.T),
                            unroll=self.unroll)

    def _step_inputs(self, params, batch):
        """The cell's per-step inputs ``[B, L, D]``, outside the scan (models with further input
        channels, e.g. ``hrnn_jax.meta.HRNNMeta``, add theirs here)."""
        return self._inputs(params, batch["item"])


@dataclasses.dataclass(frozen=True)
class HRNN(_Base):
    """Hierarchical RNN: a user-level cell over the sessions of a user (Eq. 3) initialises the
    session-level cell (Eq. 4) and, in ``mode="all"``, is also an input at every step (Eq. 5).

    Any two cells compose: ``session_cell`` (e.g. ``cells.GRU(100)`` or flax's ``LSTMCell``) and
    ``user_cell`` (e.g. ``cells.GRU(100)``).

    User-based session cells (``hrnn_jax.user_cells``: ``LinearUserGRU``, ``RectifiedUserGRU``,
    ``AttentionalUserGRU``; Donkers et al. 2017) run as the session cell with the input
    ``x_t = [E_i i_t, v]``: the item from ``item_in [N+1, item_features]`` (an embedding, never
    one-hot; ``embed_dim`` stays None) and a user vector v as wide as the user cell's output, U,
    from ``user_vector``:

    * ``"state"`` (the default for these cells): v = c, the user cell's output that initialised
      the session (Eq. 3), as HRNN All's c: carried in ``context``, c_{u,0} = 0 in a user's first
      session, ``dropout_user`` applied as for Eq. 4. The cell integrates c itself (linearly,
      rectified, attentionally) where HRNN All adds W_c c to a GRU's gates, so ``mode`` stays
      ``"init"`` (``"all"`` and ``context_gates`` are ValueErrors); ``context_grad`` applies to
      the cell's user weights as it does to W_c.
    * ``"table"``: v = ``user_in[user]``, a learned embedding ``[n_users, U]`` (U(-0.1, 0.1), as
      UserRNN's) looked up by the batch's ``user`` and updated by sparse rows (``row_tables``).
      No dropout and no L2 term on it (UserRNN's ``dropout_user``/``l2_user`` are not repeated).

    With both, Eq. 3-4 set the session state at every session start as for a GRU session cell.
    The rectified and attentional cells need U == H (and the attentional one item_features == H);
    ``n_users`` is required with ``"table"`` and refused otherwise, ``user_vector`` is refused
    with a session cell that is not user-based (ValueErrors). Where v enters, and the cost:
    ``"table"``: all of x is known before the scan, so the cell's ``project`` runs outside it and
    a step costs the cell's ``step``, as in UserRNN. ``"state"``: v changes only at session
    boundaries and ``project`` is affine in x (every user cell's is), so ``project([E_i i, c]) =
    project([E_i i, 0]) + (project([0, c]) - project([0, 0]))``: the first term runs outside the
    scan for all steps, c's part (``_user_gate``) at each session end for the K closing lanes and
    once per window from the carried c, and it is added at each step, exactly where HRNN All
    adds W_c c: a step costs the cell's ``step`` plus one add. (A cell whose ``project`` were not
    affine would need ``project`` inside the scan.)

    Options where the paper is silent, each with the choice of the authors' Theano code
    (mquad/hgru4rec, ``hgru4rec.py``) available and the default chosen by measurement (see the
    README and ``experiments/hrnn_all_ablation.py``):

    * ``context_gates`` (HRNN All with a split cell): which gates of the session GRU receive
      W_c c in Eq. 5. ``"rz"`` (default, as hgru4rec): the reset and update gates only; ``"rzn"``:
      also the candidate. A constant per-session shift of the candidate swamps the item signal in
      long sessions (HRNN All fell to about half the session GRU's Recall@5 with ``"rzn"``).
      A cell that projects its own input (flax cells) receives ``[item, c]`` concatenated.
    * ``first_session``: the session state at a user's first session. ``"init"`` (default): Eq. 4
      with c_{u,0} = 0, i.e. tanh(b_init); ``"zero"``: zeros, as hgru4rec.
    * ``context_grad``: how W_c learns. ``"step"`` (default, as hgru4rec, which computes W_c c at
      every step): the carry holds c and W_c c is recomputed at every window start with the
      current W_c, so W_c receives a gradient from every step of a session, also with windows of
      one step. ``"session"``: W_c c is computed once at the session boundary; with truncated
      BPTT, W_c then learns only from the steps of the window in which its session started.

    Other choices, all tested:

    * The user cell's input is the hidden state of the session cell after the session's last step
      (with ``targets="session"`` lanes: after its second-to-last event, the last one being a target
      only, as in the original code).
    * Dropout: ``dropout_user`` on the user cell's output c (kept for the whole session, as
      hgru4rec keeps its dropped-out user state), ``dropout_init`` on the initial session state of
      Eq. 4, ``dropout_session`` on the session outputs before scoring (Table 2's three rates).
    * For a session cell with a tuple carry (LSTM), Eq. 4 sets the hidden part; the memory is zero.
    * ``close_at``: when a session is closed (Eq. 3) and the next one initialised (Eq. 4).
      ``"input"`` (default, as the paper and hgru4rec): at the step whose input is the new
      session's first event, so the prediction of that first event is still made from the old
      session's state. ``"target"``: the boundary is known when the next session's first item is
      predicted (Ma & Narayanaswamy's HGRU in their Table 1): at the step whose target opens the
      next session, the session state first takes the step's input (the session's last event),
      then Eq. 3-4 run and the step's output is the new session's initial state (Eq. 4), from
      which that first item is scored; the next step continues from it. Needs lanes made with
      ``close_at="target"`` and ``targets="user"`` (``batching.lane_options``).

    Carry: ``{"session": s, "user": u, "context": c}``, c ``[B, U]`` being the user output that
    initialised the current session (width 0 in ``mode="init"`` unless ``user_vector="state"``).

    Speed. Eq. 3 and 4 (and HRNN All's W_c c) run once per session, only for the lanes whose
    session ends at this step: the batcher caps them at K slots per step
    (``batching.make_lanes(boundary_slots=K)``, about 1.2x their mean rate) and lists them in
    ``closing``; the scan gathers those K rows, updates them and scatters them back (exact copies,
    ``hrnn_jax.precision.take_lanes``), with no control flow. The per-step cost
    is the session GRU plus K rows of user-level work, not B.
    """

    user_cell: nn.Module = None
    mode: Mode = "init"
    context_gates: ContextGates = "rz"
    first_session: FirstSession = "init"
    context_grad: ContextGrad = "step"
    dropout_user: float = 0.0
    dropout_init: float = 0.0
    unroll: int = 2  # scan steps per loop iteration: 2 measured ~4% faster than 1 on 2 CPU cores
    user_vector: UserVector | None = None  # user-based session cell: "state" (default) | "table"
    n_users: int | None = None  # rows of the user table (user_vector="table" only)
    close_at: CloseAt = "input"

    def __post_init__(self):
        choices.check("mode", self.mode, Mode)
        choices.check("close_at", self.close_at, CloseAt)
        choices.check("context_gates", self.context_gates, ContextGates)
        choices.check("first_session", self.first_session, FirstSession)
        choices.check("context_grad", self.context_grad, ContextGrad)
        if self.user_vector is not None:
            choices.check("user_vector", self.user_vector, UserVector)
        if self.user_cell is None:
            raise ValueError("HRNN needs a user_cell (e.g. hrnn_jax.cells.GRU(100))")
        self._check_user_vector()

    def _check_user_vector(self):
        """The options of a user-based session cell, and that they are not given without one."""
        cell, source = self.session_cell, self.user_source
        if not self.user_based:
            if self.user_vector is not None:
                raise ValueError(
                    f"HRNN: user_vector={self.user_vector!r} needs a user-based session cell "
                    "(hrnn_jax.user_cells: LinearUserGRU, RectifiedUserGRU, AttentionalUserGRU); "
                    f"{type(cell).__name__} has no user input (for the user state at every "
                    "step of a plain cell use mode='all')")
            if self.n_users is not None:
                raise ValueError("HRNN: n_users sizes the user table of user_vector='table' (a "
                                 "user-based session cell); this model has none")
            return
        name, H, U = type(cell).__name__, self.hidden, self.user_hidden
        if self.mode != "init":
            raise ValueError(
                f"HRNN: mode={self.mode!r} adds W_c c to a GRU's gates; the user-based session "
                f"cell {name} takes the user vector as its own input instead (user_vector="
                "'state' feeds it c at every step, as HRNN All does): leave mode='init'")
        if self.context_gates != "rz":
            raise ValueError(f"HRNN: context_gates={self.context_gates!r} is an option of "
                             f"mode='all' with a GRU session cell, not of {name}")
        if source == "table" and (self.n_users is None or self.n_users < 1):
            raise ValueError(f"HRNN: user_vector='table' needs n_users >= 1 (the rows of the "
                             f"user table), got {self.n_users}")
        if source == "state" and self.n_users is not None:
            raise ValueError("HRNN: n_users sizes the user table of user_vector='table'; with "
                             "user_vector='state' the user vector is the user cell's output c")
        if getattr(cell, "required_user", False) and U != H:
            raise ValueError(
                f"HRNN: {name} needs a user vector as wide as its hidden state ({H}); the user "
                f"vector is as wide as the user cell's output, {U} (user_cell's features), for "
                "both user_vector sources: make them equal")
        if getattr(cell, "required_item", False) and cell.item_features != H:
            raise ValueError(f"HRNN: {name} needs item_features == features ({H}), got "
                             f"{cell.item_features}")
        self._check_user_based()

    @property
    def user_source(self) -> UserVector | None:
        """Where a user-based session cell's user vector comes from (None for other cells)."""
        if not self.user_based:
            return None
        return self.user_vector or "state"

    @property
    def row_tables(self) -> dict[str, str]:
        """The item tables, and with ``user_vector="table"`` the user table ``user_in`` by
        ``user`` (see :func:`row_tables`)."""
        tables = dict(ITEM_TABLES)
        if self.user_source == "table":
            tables["user_in"] = "user"
        return tables

    @property
    def _carries_context(self) -> bool:
        """The carry holds c of the session in progress (HRNN All, or c as the user vector)."""
        return self.mode == "all" or self.user_source == "state"

    def _user_gate(self, p_session, c):
        """What c adds to the projected input of a user-based session cell (``user_vector=
        "state"``): ``project([0, c]) - project([0, 0])``, exact because ``project`` is affine in
        its input (as every cell of ``hrnn_jax.user_cells``): added to ``project([E_i i, 0])``
        it gives ``project([E_i i, c])``. ``c [K, U] -> [K, projected_features]``."""
        cell, E = self.session_cell, self.session_cell.item_features
        p = {"params": p_session}
        xp = cell.apply(p, jnp.concatenate([jnp.zeros((c.shape[0], E), c.dtype), c], axis=-1),
                        method="project")
        return xp - cell.apply(p, jnp.zeros((1, E + c.shape[1]), c.dtype), method="project")

    @property
    def user_hidden(self) -> int:
        return cells.hidden_size(self.user_cell)

    def _extra_input(self) -> int:
        # HRNN All with a cell that projects its own input: c is concatenated to the item input;
        # a user-based cell: the user vector (U wide, from either source) is.
        if self.user_based or (self.mode == "all" and not self._split):
            return self.user_hidden
        return 0

    @property
    def _gate_width(self) -> int:
        """Width of W_c c in the projected input space of a split cell (r, z[, n] blocks)."""
        return len(self.context_gates) * self.hidden

    def init(self, rng) -> Params:
        k_common, k_user, k_init, k_ctx = jax.random.split(rng, 4)
        params = self._init_common(k_common)
        H, U = self.hidden, self.user_hidden
        u0 = cells.zero_carry(self.user_cell, 1)
        params["user"] = self.user_cell.init(k_user, u0, jnp.zeros((1, H)))["params"]
        params["init"] = {"kernel": gru4rec_uniform(k_init, (U, H), U, H),
                          "bias": jnp.zeros((H,), jnp.float32)}
        if self.mode == "all" and self._split:
            # one U x H block per gate, each initialised as hgru4rec's
            params["context"] = {"kernel": gru4rec_uniform(k_ctx, (U, self._gate_width), U, H)}
        if self.user_source == "table":  # U(-0.1, 0.1), as UserRNN's (Donkers et al., Table 1)
            params["user_in"] = jax.random.uniform(jax.random.fold_in(k_ctx, 1),
                                                   (self.n_users, U), jnp.float32, -0.1, 0.1)
        return params

    def init_carry(self, batch_size: int):
        return {
            "session": cells.zero_carry(self.session_cell, batch_size),
            "user": cells.zero_carry(self.user_cell, batch_size),
            "context": jnp.zeros((batch_size, self.user_hidden if self._carries_context else 0),
                                 jnp.float32),
        }

    def _gate_input(self, c, W_c, p_session=None):
        """What HRNN All adds to the session cell's input for user outputs ``c [., U]`` (Eq. 5);
        with ``user_vector="state"``, what c as the user vector adds to the projected input."""
        if self.user_source == "state":
            return self._user_gate(p_session, c)
        if self.mode == "init":
            return jnp.zeros((c.shape[0], 0), c.dtype)
        return c @ W_c if self._split else c

    def apply(self, params, carry, batch, *, rng=None, train=False):
        chex.assert_rank([batch["item"], batch["session_start"], batch["user_start"]], 2)
        B, L = batch["item"].shape
        H, U = self.hidden, self.user_hidden
        # A user-based cell projects [E_i i, v] here: v from the user table ("table"), or zero
        # ("state": c's part, W c, is added in the scan, see _user_gate)
        source = self.user_source
        if source == "table":
            v = precision.take_rows(params["user_in"], batch["user"])  # E_v v [B, L, U]
        else:
            v = jnp.zeros((B, L, U), jnp.float32) if source == "state" else None
        x = self._inputs(params, batch["item"], v)
        # Lanes that close a session (not a new user) run Eq. 3-4 at this step. The batcher lists
        # them in `closing [L, K]` (ascending, padded with distinct values >= B); without it every
        # lane is a slot (K = B). Their rows are gathered and scattered back (exact copies).
        closing = batch.get("closing")
        if closing is None and self.close_at == "target":
            raise ValueError("HRNN(close_at='target') needs the batch's 'closing' lanes from "
                             "batching.make_lanes(close_at='target', targets='user')")
        if closing is None:
            boundary = (batch["session_start"] & ~batch["user_start"]).T  # [L, B]
            closing = jnp.sort(jnp.where(boundary, jnp.arange(B), B + jnp.arange(B)), axis=1)
        K = closing.shape[1]
        # Dropout masks (drawn outside the scan) for the K slots and, for Eq. 4 at a new user, the
        # B lanes; None when the rate is 0 or not training.
        r_user, r_init, r_new, r_out = jax.random.split(rng, 4) if train else (None,) * 4
        m_user = dropout_mask(r_user, self.dropout_user, (L, K, U), train)
        m_init = dropout_mask(r_init, self.dropout_init, (L, K, H), train)
        zero_start = self.first_session == "zero"
        m_new = None if zero_start else dropout_mask(r_new, self.dropout_init, (L, B, H), train)
        zero_s = cells.zero_carry(self.session_cell, B)
        zero_u = cells.zero_carry(self.user_cell, B)
        W_init, b_init = params["init"]["kernel"], params["init"]["bias"]
        W_c = params["context"]["kernel"] if "context" in params else None
        W_user = W_init if W_c is None else jnp.concatenate([W_init, W_c], axis=1)
        p_user = {"params": params["user"]}
        # HRNN All's gate input of the sessions in progress, from the carried c with the current
        # W_c: once per window, outside the scan ("step": W_c learns from every step).
        # With user_vector="state", likewise c's part of the user-based cell's projected input
        # (its user weights in place of W_c).
        W_c0 = W_c if self.context_grad == "step" or W_c is None else jax.lax.stop_gradient(W_c)
        p_s0 = params["session"] if self.context_grad == "step" else \
            jax.lax.stop_gradient(params["session"])
        gate0 = self._gate_input(carry["context"], W_c0, p_s0)
        pad_n = (3 * H - gate0.shape[1]) if self.mode == "all" and self._split else 0

        def close_sessions(st, idx, mu_t, mi_t):
            s, u = precision.take_lanes(idx, (st["session"], st["user"]))  # [B, ...] -> [K, ...]
            u_k, c = self.user_cell.apply(p_user, u, cells.hidden_of(s))  # Eq. 3
            c = c if mu_t is None else c * mu_t
            proj = c @ W_user  # [W_init | W_c] in one product
            s0 = jnp.tanh(proj[:, :H] + b_init)  # Eq. 4
            s0 = s0 if mi_t is None else s0 * mi_t
            new = {"session": cells.with_hidden(s, s0), "user": u_k}
            if self.mode == "all":  # Eq. 5: W_c c (a split cell) or c itself (a flax cell)
                new.update(context=c, gate=proj[:, H:] if self._split else c)
            elif source == "state":  # c is the user vector of the session it opens
                new.update(context=c, gate=self._user_gate(params["session"], c))
            return {**st, **precision.put_lanes({k: st[k] for k in new}, idx, new)}

        at_target = self.close_at == "target"

        def body(st, inp):
            x_t, ustart_t, valid_t, idx, mu_t, mi_t, mn_t = inp
            if not at_target:
                st = close_sessions(st, idx, mu_t, mi_t)
            # A new user: the user state restarts (c_{u,0} = 0) and the session state is Eq. 4
            # with c = 0, tanh(b_init), or zeros (first_session="zero", as hgru4rec).
            if zero_start:
                s_new_user = zero_s
            else:
                h0 = jnp.broadcast_to(jnp.tanh(b_init), (B, H))
                s_new_user = cells.with_hidden(zero_s, h0 if mn_t is None else h0 * mn_t)
            new_user = lambda fresh, old: cells.select(ustart_t, fresh, old)  # noqa: E731
            st = {"session": new_user(s_new_user, st["session"]),
                  "user": new_user(zero_u, st["user"]),
                  "context": new_user(jnp.zeros_like(st["context"]), st["context"]),
                  "gate": new_user(jnp.zeros_like(st["gate"]), st["gate"])}
            if pad_n:
                x_t = x_t + jnp.pad(st["gate"], ((0, 0), (0, pad_n)))  # Eq. 5: W_c c on r, z
            elif self.mode == "all" and self._split:
                x_t = x_t + st["gate"]  # Eq. 5: W_x i + W_c c on every gate
            elif source == "state":
                x_t = x_t + st["gate"]  # project([E_i i, 0]) + c's part = project([E_i i, c])
            elif self.mode == "all":
                x_t = jnp.concatenate([x_t, st["gate"]], axis=-1)  # Eq. 5: the cell projects [i, c]
            s_new, y = self._session_step(params, st["session"], x_t)  # Eq. 1 / 5
            st["session"] = cells.select(valid_t, s_new, st["session"])  # hold/padding: unchanged
            if at_target:  # the target opens the next session: close this one now, score Eq. 4
                st = close_sessions(st, idx, mu_t, mi_t)
                # a cell's output is its new hidden state, so on valid steps this is y except on
                # the closing lanes, where it is the next session's initial state
                y = cells.hidden_of(st["session"])
            return st, y

        inputs = (jnp.swapaxes(x, 0, 1), batch["user_start"].T, batch["valid"].T, closing,
                  m_user, m_init, m_new)
        state = {**carry, "gate": gate0}
        state, ys = jax.lax.scan(body, state, inputs, unroll=self.unroll)
        state.pop("gate")
        return state, self._output(ys, r_out, train)


@dataclasses.dataclass(frozen=True)
class UserRNN:
    """Donkers et al. 2017: one recurrent cell over each user's whole sequence, fed the item and a
    learned user embedding, ``x_t = [E_i i_t, E_v v]`` (Eq. 2), scored against every item (Eq. 1:
    ``o = T h``, an affine map: ``item_out`` and ``item_bias``; cross-entropy over all items).

    ``cell``: a user-based cell of ``hrnn_jax.user_cells`` (linear, rectified-linear,
    attentional), with ``item_features = item_dim``; its ``project`` runs outside the scan. The
    state resets at a new user only (targets within the user: ``make_lanes(targets="user")``).

    Choices, each as the paper's Table 1 where it says:

    * Embeddings ``item_in [N+1, item_dim]`` and ``user_in [U, user_dim]`` and the output layer are
      drawn from U(-0.1, 0.1); dropout on the item vector (``dropout_item``, keep 0.8) and on the
      user vector (``dropout_user``, keep 0.5), both drawn outside the scan.
    * The L2 penalty on the user side (``l2_user``, 0.01) is an extra loss term (see
      :func:`apply_with_aux`): ``l2_user`` times the mean squared norm of the user vectors of the
      window's valid steps (per occurrence, so the user table stays a sparse-row table: only the
      rows of the batch's users are touched). The paper applies L2 "on user side" without saying
      to which parameters or how it is scaled; this is our reading, chosen by measurement: also
      penalising the cell's user kernel (``+ |W_u|^2`` per step, against a loss that is a mean
      over the window's events) drove W_u towards zero, and the linear user-based GRU then scored
      as the standard GRU (MRR@20 .0744 against .0732 on the experiment's synthetic log, 10
      epochs) where it reaches .1165 without that term.
    * ``user_in`` is a sparse-row table indexed by the batch's ``user`` (:attr:`row_tables`).
    """

    n_items: int
    n_users: int
    cell: nn.Module
    user_dim: int = 100
    dropout_item: float = 0.2
    dropout_user: float = 0.5
    l2_user: float = 0.01

    row_tables = {"item_in": "item", "user_in": "user", "item_out": "target",
                  "item_bias": "target"}

    def __post_init__(self):
        if not cells.is_split(self.cell) or not hasattr(self.cell, "item_features"):
            raise ValueError("UserRNN needs a user-based cell of hrnn_jax.user_cells (with "
                             "item_features, project and step)")

    @property
    def hidden(self) -> int:
        return cells.hidden_size(self.cell)

    @property
    def item_dim(self) -> int:
        return int(self.cell.item_features)

    def init(self, rng) -> Params:
        k_item, k_user, k_out, k_bias, k_cell = jax.random.split(rng, 5)
        N, H = self.n_items + 1, self.hidden
        u = lambda k, shape: jax.random.uniform(k, shape, jnp.float32, -0.1, 0.1)  # noqa: E731
        x = jnp.zeros((1, self.item_dim + self.user_dim))
        return {
            "item_in": u(k_item, (N, self.item_dim)),
            "user_in": u(k_user, (self.n_users, self.user_dim)),
            "item_out": u(k_out, (N, H)),
            "item_bias": u(k_bias, (N,)),
            "cell": self.cell.init(k_cell, self.cell.initialize_carry(k_cell, x.shape), x)["params"],
        }

    def init_carry(self, batch_size: int):
        return jnp.zeros((batch_size, self.hidden), jnp.float32)

    def apply(self, params, carry, batch, *, rng=None, train=False):
        chex.assert_rank([batch["item"], batch["user"], batch["user_start"]], 2)
        e_item = precision.take_rows(params["item_in"], batch["item"])  # E_i i_t [B, L, E_i]
        e_user = precision.take_rows(params["user_in"], batch["user"])  # E_v v   [B, L, E_v]
        r_item, r_user = jax.random.split(rng) if train else (None, None)
        m_item = dropout_mask(r_item, self.dropout_item, e_item.shape, train)
        m_user = dropout_mask(r_user, self.dropout_user, e_user.shape, train)
        x = jnp.concatenate([e_item if m_item is None else e_item * m_item,
                             e_user if m_user is None else e_user * m_user], axis=-1)
        p = {"params": params["cell"]}
        xp = self.cell.apply(p, x, method="project")  # all input work, outside the scan
        # Eq. 3-10 over the window; a new user starts from zeros, padding keeps the state
        carry, ys = self.cell.apply(p, carry, jnp.swapaxes(xp, 0, 1), batch["user_start"].T,
                                    batch["valid"].T, method="scan")
        valid = batch["valid"].astype(jnp.float32)
        user_sq = ((e_user ** 2).sum(-1) * valid).sum() / jnp.maximum(valid.sum(), 1.0)
        extra = {"l2_user": self.l2_user * user_sq}
        return carry, jnp.swapaxes(ys, 0, 1), extra
