"""Session-based GRU (GRU4Rec) and RNN Concat, and what every model over item sequences shares.

Quadrana, Karatzoglou, Hidasi, Cremonesi, "Personalizing Session-based Recommendations with
Hierarchical Recurrent Neural Networks" (RecSys 2017). Equation numbers refer to that paper.

Inputs (:attr:`ItemRNN.input_path`, decided once per model from what its cell declares):

* ``"one_hot"``: a split cell that takes one-hot items (``hrnn_jax.cells.GRU``) and no
  ``embed_dim``, as the paper: the projection of a one-hot vector is one row of W_x, so the model
  keeps an item table as wide as the cell's projected input (``item_in``, 3H for a GRU) and the
  input bias is folded into its rows (one row is active per step, so row + b is the same family
  of functions).
* ``"project"``: a split cell fed an embedding (``embed_dim=E``, a user cell's
  ``item_features``, or the cell's hidden size): the cell's ``project`` runs for all steps at once,
  outside the scan.
* ``"concat"``: any other cell (flax ``GRUCell``, ``LSTMCell``, ...) gets its whole input at every
  step (the E-dimensional embedding, E defaulting to its hidden size; HRNN All and HRNN-meta
  concatenate their further inputs to it) and does its own projection.

Work that does not depend on the state (look-ups, projections, dropout masks, scoring) is done for
all steps at once, outside the scan; the scan is ``hrnn_jax.cells.run_cell``'s.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import chex
import jax
import jax.numpy as jnp
from flax import linen as nn

from hrnn_jax import cells, choices, precision
from hrnn_jax.models.contract import Capabilities, Model, Output, Params
from hrnn_jax.models.layers import dropout, gru4rec_uniform

Reset = Literal["session", "user"]
InputPath = Literal["one_hot", "project", "concat"]


@dataclasses.dataclass(frozen=True)
class ItemRNN(Model):
    """The part of a model that every item-sequence model shares: the item tables (``item_in``,
    ``item_out``, ``item_bias``, GRU4Rec's uniform initialisation), the session cell and its
    input path, output dropout (``dropout_session``, on the outputs before scoring, not on the
    recurrent connection). Not a model by itself."""

    n_items: int
    session_cell: nn.Module
    embed_dim: int | None = None
    dropout_session: float = 0.0

    @property
    def hidden(self) -> int:
        """The session cell's units (its ``features``)."""
        return cells.hidden_size(self.session_cell)

    @property
    def output_width(self) -> int:
        return self.hidden

    @property
    def input_path(self) -> InputPath:
        """How an item reaches the session cell (module docstring)."""
        cell = self.session_cell
        if not cells.is_split(cell):
            return "concat"
        if self.embed_dim is None and cell.one_hot_input:
            return "one_hot"
        return "project"

    @property
    def item_width(self) -> int:
        """The width of ``item_in``'s rows."""
        cell = self.session_cell
        if self.input_path == "one_hot":
            return cell.projected_features
        if cells.is_user_cell(cell):
            return int(cell.item_features)
        return self.embed_dim or self.hidden

    def constraints(self, params: Params) -> Params:
        """The session cell's projection after every update (HCRNN's W_d >= 0)."""
        if not cells.is_split(self.session_cell):
            return params
        return {**params, "session": self.session_cell.constraints(params["session"])}

    def _check_user_cell(self):
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
        """Width of what the model joins to the item before the cell (HRNN All's c, ...)."""
        return 0

    def _init_common(self, rng) -> Params:
        N, H, D = self.n_items + 1, self.hidden, self.item_width
        k_in, k_out, k_cell = jax.random.split(rng, 3)
        params = {
            "item_in": gru4rec_uniform(k_in, (N, D), N, D),
            "item_out": gru4rec_uniform(k_out, (N, H), N, H),
            "item_bias": jnp.zeros((N,), jnp.float32),
        }
        if cells.is_user_cell(self.session_cell):
            self._check_user_cell()
        params["session"] = self._init_cell(k_cell)
        return params

    def _init_cell(self, rng) -> Params:
        """The session cell's parameters (after :func:`hrnn_jax.cells.check_cell`)."""
        cell = self.session_cell
        carry, D = cells.zero_carry(cell, 1), self.item_width + self._extra_input()
        if self.input_path == "one_hot":  # the item table holds the projections: step only
            cells.check_cell(cell, self.hidden, "session_cell")
            return cell.init(rng, carry, jnp.zeros((1, self.item_width)), method="step")["params"]
        cells.check_cell(cell, D, "session_cell")
        return cell.init(rng, carry, jnp.zeros((1, D)))["params"]

    def _inputs(self, params, items, user=None):
        """Per-step inputs of the session cell, outside the scan: ``[B, L] -> [B, L, D]``; with
        ``user [B, L, U]`` (a user-based cell) the cell projects ``[E_i i, user]``."""
        x = precision.take_rows(params["item_in"], items)
        if user is not None:
            x = jnp.concatenate([x, user], axis=-1)
        if self.input_path == "project":
            x = self.session_cell.apply({"params": params["session"]}, x, method="project")
        return x

    def _session_step(self, params, carry, x):
        """One step of the session cell from :meth:`_inputs`' output."""
        cell, p = self.session_cell, {"params": params["session"]}
        if self.input_path == "concat":
            return cell.apply(p, carry, x)
        return cell.apply(p, carry, x, method="step")

    def _output(self, ys, rng, train):
        """Scan outputs ``[L, B, H]`` -> ``[B, L, H]`` with session-level dropout on the outputs."""
        y = jnp.swapaxes(ys, 0, 1)
        if train and self.dropout_session > 0:
            y = y * dropout(rng, self.dropout_session, y.shape)
        return y


@dataclasses.dataclass(frozen=True)
class SessionRNN(ItemRNN):
    """GRU4Rec (``reset="session"``: state reset at every session start, Eq. 1 with s_{m,0} = 0) or
    RNN Concat (``reset="user"``: the sessions of a user are one sequence, reset only at a new user,
    which makes it a whole-sequence model)."""

    reset: Reset = "session"
    unroll: int = 2  # scan steps per loop iteration: measured ~1.4x faster than 1 on 2 CPU cores

    def __post_init__(self):
        choices.check("reset", self.reset, Reset)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(whole_sequence=self.reset == "user")

    def init(self, rng) -> Params:
        return self._init_common(rng)

    def init_carry(self, batch_size: int):
        return cells.zero_carry(self.session_cell, batch_size)

    def apply(self, params, carry, batch, *, rng=None, train=False) -> Output:
        chex.assert_rank([batch["item"], batch["session_start"]], 2)
        x = self._step_inputs(params, batch)
        reset = batch["session_start"] if self.reset == "session" else batch["user_start"]
        carry, ys = self.scan(params, carry, x, reset, batch["valid"])
        return Output(carry, self._output(ys, rng, train), {})

    def scan(self, params, carry, x, reset, valid):
        """The session cell over one window (Eq. 1): per-step inputs ``x [B, L, .]`` (as
        :meth:`_step_inputs` makes them), ``reset`` and ``valid`` ``[B, L]`` -> ``(carry, outputs
        [L, B, H])``, time-major as ``jax.lax.scan``'s. A reset step starts from zeros (Eq. 1:
        s_{m,0} = 0); a step that is not valid keeps the state. Reads only
        ``params["session"]``, so a model with its own inputs and head
        (``hrnn_jax.models.attention.NARM``) scans its cell with it."""
        return cells.run_cell(self.session_cell, params["session"], carry,
                              jnp.swapaxes(x, 0, 1), reset.T, valid.T, unroll=self.unroll)

    def _step_inputs(self, params, batch):
        """The cell's per-step inputs ``[B, L, D]``, outside the scan (models with further input
        channels, e.g. ``hrnn_jax.models.hrnn_meta.HRNNMeta``, add theirs here)."""
        return self._inputs(params, batch["item"])
