"""The hierarchical RNN (HRNN Init / HRNN All) of Quadrana, Karatzoglou, Hidasi, Cremonesi,
"Personalizing Session-based Recommendations with Hierarchical Recurrent Neural Networks" (RecSys
2017). Equation numbers refer to that paper.

A user-level cell over the sessions of a user (Eq. 3) initialises the session-level cell (Eq. 4)
and, in HRNN All, is also an input at every step (Eq. 5). Hierarchy is a combinator: any session
cell and any user cell compose (:class:`HRNN`), the session cell's input path being
``hrnn_jax.models.session``'s.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import chex
import jax
import jax.numpy as jnp
from flax import linen as nn

from hrnn_jax import cells, choices, precision
from hrnn_jax.config import ModelConfig, default
from hrnn_jax.models.contract import ITEM_TABLES, Capabilities, Output, Params
from hrnn_jax.models.layers import dropout_mask, gru4rec_uniform
from hrnn_jax.models.session import ItemRNN

Mode = Literal["init", "all"]
ContextGates = Literal["rz", "rzn"]
FirstSession = Literal["init", "zero"]
ContextGrad = Literal["step", "session"]
CloseAt = Literal["input", "target"]
UserVector = Literal["table", "state"]
# How the user level reaches the session cell between session starts (HRNN._context)
Context = Literal["none", "gates", "concat", "user"]


@dataclasses.dataclass(frozen=True)
class HRNN(ItemRNN):
    """Hierarchical RNN: a user-level cell over the sessions of a user (Eq. 3) initialises the
    session-level cell (Eq. 4) and, in ``mode="all"``, is also an input at every step (Eq. 5).

    Any two cells compose: ``session_cell`` (``cells.GRU(100)``, flax's ``LSTMCell``, an HCRNN
    cell, a user-based cell, a cell of your own) and ``user_cell`` (any flax-convention cell fed
    the session state, e.g. ``cells.GRU(100)`` or flax's ``MGUCell``). How HRNN All's c (Eq. 5)
    enters depends on what the session cell declares (``hrnn_jax.cells.base``):

    * a split cell (:class:`~hrnn_jax.cells.SplitCell`): ``W_c c`` is added to the blocks of its
      projected input chosen by ``context_gates``: ``"rz"`` (default, as hgru4rec) the blocks
      of kind ``"gate"`` (a GRU's reset and update gates, an HCRNN cell's local, update and reset
      gates, a two-gate cell's one gate), ``"rzn"`` also the candidate's. A constant per-session
      shift of the candidate swamps the item signal in long sessions (HRNN All fell to about half
      the session GRU's Recall@5 with ``"rzn"``);
    * any other cell (flax's) receives ``[item, c]`` concatenated and projects it itself;
    * a user-based cell (:class:`~hrnn_jax.cells.UserCell`: Donkers et al.'s linear,
      rectified-linear and attentional GRUs) takes c as its own user input, integrating it
      itself where HRNN All adds W_c c to a GRU's gates (below).

    User-based session cells run with the input ``x_t = [E_i i_t, v]``: the item from ``item_in
    [N+1, item_features]`` (an embedding, never one-hot; ``embed_dim`` stays None) and a user
    vector v as wide as the user cell's output, U, from ``user_vector``:

    * ``"state"`` (the default, and what ``mode="all"`` means for these cells): v = c, the user
      cell's output that initialised the session (Eq. 3), carried in ``context``, c_{u,0} = 0
      in a user's first session, ``dropout_user`` applied as for Eq. 4. The cell integrates c
      at every step whatever the mode, so HRNN Init and HRNN All coincide for such a cell;
      ``context_grad`` applies to the cell's user weights as it does to W_c.
    * ``"table"`` (``mode="init"`` only): v = ``user_in[user]``, a learned embedding ``[n_users,
      U]`` (U(-0.1, 0.1), as UserRNN's) looked up by the batch's ``user`` and updated by sparse
      rows (a row table). No dropout and no L2 term on it.

    With both, Eq. 3-4 set the session state at every session start as for a GRU session cell.
    The rectified and attentional cells need U == H (and the attentional one item_features == H);
    ``n_users`` is required with ``"table"`` and refused otherwise, ``user_vector`` is refused
    with a session cell that is not user-based (ValueErrors). Where v enters, and the cost:
    ``"table"``: all of x is known before the scan, so the cell's ``project`` runs outside it.
    ``"state"``: v changes only at session boundaries and ``project`` is affine in x (the
    :class:`~hrnn_jax.cells.UserCell` contract), so ``project([E_i i, c]) = project([E_i i, 0]) +
    (project([0, c]) - project([0, 0]))``: the first term runs outside the scan for all steps,
    c's part (:meth:`_user_gate`) at each session end for the K closing lanes and once per window
    from the carried c, and it is added at each step, exactly where HRNN All adds W_c c.

    Options where the paper is silent, each with the choice of the authors' Theano code
    (mquad/hgru4rec, ``hgru4rec.py``) available and the default chosen by measurement (see the
    README and ``experiments/hrnn_all_ablation.py``):

    * ``context_gates``: above.
    * ``first_session``: the session state at a user's first session. ``"init"`` (default): Eq. 4
      with c_{u,0} = 0, i.e. tanh(b_init); ``"zero"``: zeros, as hgru4rec.
    * ``context_grad``: how W_c learns. ``"step"`` (default, as hgru4rec, which computes W_c c at
      every step): the carry holds c and W_c c is recomputed at every window start with the
      current W_c, so W_c receives a gradient from every step of a session, also with windows of
      one step. ``"session"``: W_c c is computed once at the session boundary; with truncated
      BPTT, W_c then learns only from the steps of the window in which its session started.

    Where the user GRU learns. The paper (Sec. 3.2.1): "The weights of GRU_usr are updated only
    between sessions, i.e. when a session ends and when the forthcoming session starts. However,
    when the user representation is propagated in input to GRU_ses, the weights of GRU_usr are
    updated also within sessions even if c_{u,m} is kept fixed." Here the carry crosses windows
    with its gradient stopped (``training.step``), so the user GRU's weights and W_init / b_init
    (Eq. 3-4) receive gradient from the loss of the steps that follow a session start in the
    same window: with windows of one step (``window=1``, the original training) only from the
    session's first prediction, as hgru4rec (whose user state is a shared variable updated
    between steps); with a window of L steps (truncated BPTT) from the steps of the new session
    up to the window's end, never from later windows. Within a session the user level learns
    through W_c alone (HRNN All, ``context_grad="step"``: W_c c is recomputed from the carried
    c with the current W_c at every window start, as hgru4rec recomputes it at every step), which
    is how we read "updated also within sessions": c itself, the user GRU's output, stays fixed
    and passes no gradient to the user GRU after its window. Tested in
    ``tests/test_quadrana_options.py``.

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
      which that first item is scored; the next step continues from it. Its lanes have ``"user"``
      targets under every protocol (a whole-sequence model).

    Carry: ``{"session": s, "user": u, "context": c}``, c ``[B, U]`` being the user output that
    initialised the current session (width 0 when nothing reads it between session starts).

    Speed. Eq. 3 and 4 (and HRNN All's W_c c) run once per session, only for the lanes whose
    session ends at this step: the batcher caps them at K slots per step
    (``make_lanes(boundary_slots=K)``, about 1.2x their mean rate) and lists them in
    ``closing``; the scan gathers those K rows, updates them and scatters them back (exact copies,
    ``hrnn_jax.precision.take_lanes``), with no control flow. The per-step cost is the session
    cell plus K rows of user-level work, not B.
    """

    user_cell: nn.Module = None
    mode: Mode = "init"
    context_gates: ContextGates = default(ModelConfig, "context_gates")
    first_session: FirstSession = default(ModelConfig, "first_session")
    context_grad: ContextGrad = default(ModelConfig, "context_grad")
    dropout_user: float = default(ModelConfig, "dropout_user")
    dropout_init: float = default(ModelConfig, "dropout_init")
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
        if cells.is_user_cell(self.session_cell):
            self._check_user_options()
        elif self.user_vector is not None or self.n_users is not None:
            raise ValueError(
                f"HRNN: user_vector and n_users are options of a user-based session cell "
                "(hrnn_jax.cells.UserCell: LinearUserGRU, RectifiedUserGRU, AttentionalUserGRU); "
                f"{type(self.session_cell).__name__} has no user input (for the user state at "
                "every step of another cell use mode='all')")

    def _check_user_options(self):
        """The options of a user-based session cell."""
        cell, source = self.session_cell, self.user_source
        name, H, U = type(cell).__name__, self.hidden, self.user_hidden
        if not cell.takes_user:
            raise ValueError(f"HRNN: {name} takes no user input; give HRNN a user-based cell "
                             "(LinearUserGRU, ...) or a plain cell (cells.GRU)")
        if self.mode == "all" and self.user_vector == "table":
            raise ValueError(f"HRNN: mode='all' feeds the user state c to {name} at every step "
                             "(user_vector='state'); user_vector='table' is an option of "
                             "mode='init'")
        if self.context_gates != "rz":
            raise ValueError(f"HRNN: context_gates={self.context_gates!r} chooses the gates that "
                             f"receive W_c c; {name} takes c as its own user input instead")
        if source == "table" and (self.n_users is None or self.n_users < 1):
            raise ValueError(f"HRNN: user_vector='table' needs n_users >= 1 (the rows of the "
                             f"user table), got {self.n_users}")
        if source == "state" and self.n_users is not None:
            raise ValueError("HRNN: n_users sizes the user table of user_vector='table'; with "
                             "user_vector='state' the user vector is the user cell's output c")
        if cell.required_user and U != H:
            raise ValueError(
                f"HRNN: {name} needs a user vector as wide as its hidden state ({H}); the user "
                f"vector is as wide as the user cell's output, {U} (user_cell's features), for "
                "both user_vector sources: make them equal")
        if cell.required_item and cell.item_features != H:
            raise ValueError(f"HRNN: {name} needs item_features == features ({H}), got "
                             f"{cell.item_features}")
        self._check_user_cell()

    # -- what the model declares -------------------------------------------------------------
    @property
    def user_source(self) -> UserVector | None:
        """Where a user-based session cell's user vector comes from (None for other cells)."""
        if not cells.is_user_cell(self.session_cell):
            return None
        return self.user_vector or "state"

    @property
    def capabilities(self) -> Capabilities:
        """The item tables (and the user table with ``user_vector="table"``), sessions closed at
        ``close_at``; whole sequences when the boundary is the target's."""
        tables = dict(ITEM_TABLES)
        if self.user_source == "table":
            tables["user_in"] = "user"
        return Capabilities(row_tables=tables, close_at=self.close_at,
                            whole_sequence=self.close_at == "target",
                            n_users=self.n_users if self.user_source == "table" else None)

    @property
    def _context(self) -> Context:
        """How c reaches the session cell between session starts: not at all (HRNN Init),
        ``W_c c`` on a split cell's gates, concatenated to a flax cell's input, or as a user
        cell's user input (``user_vector="state"``)."""
        if self.user_source is not None:
            return "user" if self.user_source == "state" else "none"
        if self.mode == "init":
            return "none"
        return "gates" if cells.is_split(self.session_cell) else "concat"

    @property
    def _gate_blocks(self) -> list[tuple[bool, int]]:
        """HRNN All with a split cell: (receives W_c c, width) of each block of its input."""
        kinds = ("gate",) if self.context_gates == "rz" else ("gate", "candidate")
        return [(b.kind in kinds, b.width) for b in self.session_cell.blocks]

    @property
    def user_hidden(self) -> int:
        return cells.hidden_size(self.user_cell)

    def _extra_input(self) -> int:
        """c joined to the item: a flax cell in HRNN All, a user cell's user vector."""
        return self.user_hidden if self._context == "concat" or self.user_source else 0

    # -- parameters and carry ----------------------------------------------------------------
    def init(self, rng) -> Params:
        k_common, k_user, k_init, k_ctx = jax.random.split(rng, 4)
        params = self._init_common(k_common)
        H, U = self.hidden, self.user_hidden
        cells.check_cell(self.user_cell, H, "user_cell")
        u0 = cells.zero_carry(self.user_cell, 1)
        params["user"] = self.user_cell.init(k_user, u0, jnp.zeros((1, H)))["params"]
        params["init"] = {"kernel": gru4rec_uniform(k_init, (U, H), U, H),
                          "bias": jnp.zeros((H,), jnp.float32)}
        if self._context == "gates":  # one U x H block per gate, each initialised as hgru4rec's
            width = sum(w for on, w in self._gate_blocks if on)
            params["context"] = {"kernel": gru4rec_uniform(k_ctx, (U, width), U, H)}
        if self.user_source == "table":  # U(-0.1, 0.1), as UserRNN's (Donkers et al., Table 1)
            params["user_in"] = jax.random.uniform(jax.random.fold_in(k_ctx, 1),
                                                   (self.n_users, U), jnp.float32, -0.1, 0.1)
        return params

    def init_carry(self, batch_size: int):
        width = 0 if self._context == "none" else self.user_hidden
        return {"session": cells.zero_carry(self.session_cell, batch_size),
                "user": cells.zero_carry(self.user_cell, batch_size),
                "context": jnp.zeros((batch_size, width), jnp.float32)}

    # -- the user level's inputs to the session cell -----------------------------------------
    def _user_gate(self, p_session, c):
        """What c adds to the projected input of a user-based session cell (``user_vector=
        "state"``): ``project([0, c]) - project([0, 0])``, exact because ``project`` is affine in
        its input: added to ``project([E_i i, 0])`` it gives ``project([E_i i, c])``.
        ``c [K, U] -> [K, projected_features]``."""
        cell, E = self.session_cell, self.session_cell.item_features
        p = {"params": p_session}
        xp = cell.apply(p, jnp.concatenate([jnp.zeros((c.shape[0], E), c.dtype), c], axis=-1),
                        method="project")
        return xp - cell.apply(p, jnp.zeros((1, E + c.shape[1]), c.dtype), method="project")

    def _gate_input(self, c, W_c, p_session):
        """What the session cell's input gets from user outputs ``c [., U]`` between session
        starts (``_context``): W_c c (Eq. 5), c itself, or a user cell's c part."""
        if self._context == "user":
            return self._user_gate(p_session, c)
        if self._context == "none":
            return jnp.zeros((c.shape[0], 0), c.dtype)
        return self._place_gates(c @ W_c) if self._context == "gates" else c

    def _place_gates(self, gate):
        """W_c c ``[., gate blocks' width]`` placed on the blocks of a split cell's projected
        input chosen by ``context_gates``, zeros on the others: ``[., projected_features]``.
        Placed once per session (and window) rather than at every step, so that each step adds
        it whole (``_add_context``)."""
        pieces, at = [], 0
        for on, width in self._gate_blocks:
            pieces.append(gate[:, at:at + width] if on else jnp.zeros(
                (gate.shape[0], width), gate.dtype))
            at += width if on else 0
        return jnp.concatenate(pieces, axis=-1)

    def _add_context(self, x_t, gate):
        """The step's input with the user level's part (Eq. 5): W_c c on the chosen blocks of a
        split cell's input (``gate`` already placed by ``_place_gates``), ``[x, c]`` for a flax
        cell, a user cell's c part added."""
        if self._context == "none":
            return x_t
        if self._context == "concat":
            return jnp.concatenate([x_t, gate], axis=-1)
        return x_t + gate  # Eq. 5: W_x i + W_c c on the gates (zeros on the others)

    # -- the forward pass --------------------------------------------------------------------
    def apply(self, params, carry, batch, *, rng=None, train=False) -> Output:
        chex.assert_rank([batch["item"], batch["session_start"], batch["user_start"]], 2)
        B, L = batch["item"].shape
        U = self.user_hidden
        # A user cell's input [E_i i, v]: v from the user table, or zero ("state": c's part is
        # added in the scan, see _user_gate)
        v = None
        if self.user_source == "table":
            v = precision.take_rows(params["user_in"], batch["user"])  # E_v v [B, L, U]
        elif self.user_source == "state":
            v = jnp.zeros((B, L, U), jnp.float32)
        x = self._inputs(params, batch["item"], v)
        closing = self._closing(batch)
        *masks, r_out = self._dropout_masks(rng, train, L, closing.shape[1], B)
        # The gate input of the sessions in progress, from the carried c with the current
        # weights: once per window, outside the scan ("step": W_c learns from every step).
        W_c = params["context"]["kernel"] if "context" in params else None
        grad = self.context_grad == "step"
        gate0 = self._gate_input(carry["context"], W_c if grad or W_c is None else
                                 jax.lax.stop_gradient(W_c), params["session"] if grad else
                                 jax.lax.stop_gradient(params["session"]))
        step, fresh, close = self._step_fns(params, B)

        def hold(valid_t, new, old):  # the user level changes only at (valid) session ends
            return {**new, "session": cells.select(valid_t, new["session"], old["session"])}
        inputs = (jnp.swapaxes(x, 0, 1), closing, *masks)
        at_input = self.close_at == "input"
        state, ys = cells.masked_scan(step, {**carry, "gate": gate0}, inputs,
                                      reset=batch["user_start"].T, fresh=fresh,
                                      valid=batch["valid"].T, hold=hold,
                                      before=close if at_input else None,
                                      after=None if at_input else close, unroll=self.unroll)
        state.pop("gate")
        return Output(state, self._output(ys, r_out, train), {})

    def _closing(self, batch):
        """The lanes that close a session at each step, ``[L, K]`` (ascending, padded with
        distinct values >= B): the batch's ``closing``, or every session start that is not a
        user start (K = B) for a batch without one."""
        closing = batch.get("closing")
        if closing is None and self.close_at == "target":
            raise ValueError("HRNN(close_at='target') needs the batch's 'closing' lanes from "
                             "make_lanes(close_at='target', targets='user')")
        if closing is None:
            B = batch["item"].shape[0]
            boundary = (batch["session_start"] & ~batch["user_start"]).T  # [L, B]
            closing = jnp.sort(jnp.where(boundary, jnp.arange(B), B + jnp.arange(B)), axis=1)
        return closing

    def _dropout_masks(self, rng, train, L, K, B):
        """Dropout masks, drawn outside the scan: on c for the K slots ``[L, K, U]``, on Eq. 4
        for the K slots ``[L, K, H]`` and for a new user's B lanes ``[L, B, H]`` (None where the
        rate is 0 or not training), and the key of the output dropout."""
        H, U = self.hidden, self.user_hidden
        r_user, r_init, r_new, r_out = jax.random.split(rng, 4) if train else (None,) * 4
        m_user = dropout_mask(r_user, self.dropout_user, (L, K, U), train)
        m_init = dropout_mask(r_init, self.dropout_init, (L, K, H), train)
        m_new = None if self.first_session == "zero" else dropout_mask(
            r_new, self.dropout_init, (L, B, H), train)
        return m_user, m_init, m_new, r_out

    def _step_fns(self, params, B):
        """``(step, fresh, close)`` for ``cells.masked_scan``: one step of the session cell; a new
        user's state (the user state restarts, c_{u,0} = 0, and the session state is Eq. 4 with
        c = 0, tanh(b_init), or zeros with ``first_session="zero"``, as hgru4rec); and the close
        of the sessions that end at a step (Eq. 3-4), before the step (``close_at="input"``:
        ``before``) or after it (``"target"``: ``after``, the step's output then being the next
        session's initial state, from which that session's first item is scored)."""
        H = self.hidden
        b_init = params["init"]["bias"]
        W_c = params["context"]["kernel"] if "context" in params else None
        W_user = params["init"]["kernel"] if W_c is None else jnp.concatenate(
            [params["init"]["kernel"], W_c], axis=1)
        zero_s = cells.zero_carry(self.session_cell, B)
        zero_u = cells.zero_carry(self.user_cell, B)

        def close_sessions(st, idx, mu_t, mi_t):
            s, u = precision.take_lanes(idx, (st["session"], st["user"]))  # [B, ...] -> [K, ...]
            u_k, c = self.user_cell.apply({"params": params["user"]}, u,
                                          cells.hidden_of(s))  # Eq. 3
            c = c if mu_t is None else c * mu_t
            proj = c @ W_user  # [W_init | W_c] in one product
            s0 = jnp.tanh(proj[:, :H] + b_init)  # Eq. 4
            s0 = s0 if mi_t is None else s0 * mi_t
            new = {"session": cells.with_hidden(s, s0), "user": u_k}
            if self._context != "none":  # what c adds to the next session's steps (Eq. 5)
                gate = self._place_gates(proj[:, H:]) if self._context == "gates" else \
                    self._gate_input(c, None, params["session"])
                new.update(context=c, gate=gate)
            return {**st, **precision.put_lanes({k: st[k] for k in new}, idx, new)}

        def fresh(inp):
            if self.first_session == "zero":
                s = zero_s
            else:
                h0 = jnp.broadcast_to(jnp.tanh(b_init), (B, H))
                s = cells.with_hidden(zero_s, h0 if inp[4] is None else h0 * inp[4])
            c0 = jnp.zeros((B, self.user_hidden if self._context != "none" else 0))
            return {"session": s, "user": zero_u, "context": c0,
                    "gate": jnp.zeros((B, self._gate_width))}

        def close(st, inp, y=None):
            st = close_sessions(st, *inp[1:4])
            if y is None:  # close_at="input": before the step
                return st
            # close_at="target": a cell's output is its new hidden state, so on valid steps this
            # is y except on the closing lanes, where it is the next session's initial state
            return st, cells.hidden_of(st["session"])

        def step(st, inp):
            s_new, y = self._session_step(params, st["session"],
                                          self._add_context(inp[0], st["gate"]))  # Eq. 1 / 5
            return {**st, "session": s_new}, y

        return step, fresh, close

    @property
    def _gate_width(self) -> int:
        """The width of the carried gate input (``_gate_input``'s)."""
        if self._context in ("gates", "user"):
            return self.session_cell.projected_features
        return self.user_hidden if self._context == "concat" else 0
