"""What a cell is, what it may declare, and the one time scan that drives every cell.

Every cell follows ``flax.linen.RNNCellBase``: ``carry, y = cell(carry, x)`` with
``y [B, features]`` and ``cell.initialize_carry(rng, input_shape)``; ``features`` is its output
width. flax's own ``GRUCell``, ``LSTMCell``, ``OptimizedLSTMCell`` and ``MGUCell`` drop into every
model unchanged: a model hands them the whole input of a step (concatenated, e.g. ``[item, c]`` for
HRNN All).

A cell may declare more by subclassing :class:`SplitCell`: its input work ``project(x) -> xp``
depends on no state, so a model does it for all steps at once, outside the scan, and the scan
runs only ``step(carry, xp)``. A split cell states the layout of ``xp`` (:attr:`SplitCell.blocks`:
which slices are gate pre-activations, which the candidate's), so a model can add a per-session
term to chosen gates (HRNN All's ``W_c c``) whatever the cell. :class:`UserCell` is a split cell
whose input is ``[item vector, user vector]`` (Donkers et al.'s user-based GRUs).

:func:`masked_scan` is the one time scan of the library: ``jax.lax.scan`` with the batch
contract's masks (a row restarts from a fresh carry where ``reset``, keeps its carry where not
``valid``). :func:`run_cell` lifts any cell over a window with it (as ``flax.linen.RNN`` does),
or calls the cell's own window scan where the cell declares one (:attr:`SplitCell.fused_scan`).
:func:`check_cell` says what is wrong with a cell that breaks the contract.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import linen as nn

from hrnn_jax import choices

Carry = Any
BlockKind = Literal["gate", "candidate", "input"]


@dataclasses.dataclass(frozen=True)
class Block:
    """A slice ``[start, start + width)`` of a split cell's projected input ``xp``: the
    pre-activation of a gate (``"gate"``), of the candidate state (``"candidate"``), or input
    that is neither (``"input"``, e.g. HCRNN's item embedding passed through)."""

    name: str
    start: int
    width: int
    kind: BlockKind

    def __post_init__(self):
        choices.check("Block.kind", self.kind, BlockKind)
        if self.start < 0 or self.width < 1:
            raise ValueError(f"Block {self.name}: start must be >= 0 and width >= 1, got "
                             f"{self.start} and {self.width}")


class SplitCell(nn.RNNCellBase):
    """A cell whose input projection is done outside the time scan (declare, don't probe).

    Subclasses implement ``project(x) -> xp [..., projected_features]`` (no state: a model runs it
    for all steps at once), ``step(carry, xp) -> (carry, y)``, ``initialize_carry`` and the
    :attr:`projected_features` and :attr:`blocks` properties. ``__call__`` is ``step(carry,
    project(x))``, so a split cell works wherever a flax cell does.

    Declared capabilities (class variables, defaults here):

    * ``one_hot_input`` (True): ``project`` is affine in ``x`` and ``step`` reads ``x`` only
      through ``xp``, so a model may feed one-hot items as learned rows of ``xp`` (GRU4Rec's
      one-hot input: the projection of a one-hot vector is one row of the kernel plus the bias).
    * ``fused_scan`` (False): the cell has its own window scan ``scan(carry, xp [L, B, P], reset,
      valid) -> (carry, ys [L, B, ...])`` with :func:`masked_scan`'s semantics (e.g. a
      hand-written gradient); :func:`run_cell` calls it.

    :meth:`constraints` is the projection of the cell's parameters that a model applies after
    every update (identity by default; HCRNN's W_d >= 0).
    """

    one_hot_input: ClassVar[bool] = True
    fused_scan: ClassVar[bool] = False

    @property
    def projected_features(self) -> int:
        """The width P of ``project(x)``, the input of ``step``."""
        raise NotImplementedError(f"{type(self).__name__} must declare projected_features")

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The layout of ``xp``: blocks in order, covering ``[0, P)``."""
        raise NotImplementedError(f"{type(self).__name__} must declare blocks (the layout of xp)")

    def project(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement project(x)")

    def step(self, carry, xp):
        raise NotImplementedError(f"{type(self).__name__} must implement step(carry, xp)")

    def __call__(self, carry, x):
        return self.step(carry, self.project(x))

    @staticmethod
    def constraints(params: Any) -> Any:
        """The projection of this cell's parameters after every update (none by default)."""
        return params

    @property
    def num_feature_axes(self) -> int:
        return 1


class UserCell(SplitCell):
    """A split cell fed ``x = [item vector (item_features wide), user vector]`` (Donkers et al.'s
    user-based GRUs, ``hrnn_jax.cells.user_gru``). Subclasses have the field ``item_features``
    and declare whether the user part (``required_user``) or the item part (``required_item``)
    must be as wide as the hidden state; a cell with ``takes_user`` False (Donkers et al.'s
    standard GRU, the same cell without the user) is fed the item vector alone. ``project`` must
    be affine in ``x``: a model may add the
    user part's projection, ``project([0, v]) - project([0, 0])``, to the item part's (HRNN feeds
    the user-level state this way, :class:`hrnn_jax.models.HRNN`)."""

    one_hot_input: ClassVar[bool] = False
    required_item: ClassVar[bool] = False
    required_user: ClassVar[bool] = False
    takes_user: ClassVar[bool] = True  # False: x is the item vector alone (no user part)


def is_split(cell: nn.Module) -> bool:
    """The cell projects its input outside the scan (a :class:`SplitCell`)."""
    return isinstance(cell, SplitCell)


def is_user_cell(cell: nn.Module) -> bool:
    """The cell takes ``[item vector, user vector]`` (a :class:`UserCell`)."""
    return isinstance(cell, UserCell)


def hidden_size(cell: nn.Module) -> int:
    """The cell's output width, its ``features``."""
    try:
        return int(cell.features)
    except (AttributeError, TypeError):
        raise ValueError(f"{type(cell).__name__}: a cell declares its output width as "
                         "`features` (flax's recurrent convention)") from None


def zero_carry(cell: nn.Module, batch: int) -> Carry:
    """The cell's zero state for ``batch`` rows (flax cells need no rng for zeros)."""
    return cell.initialize_carry(jax.random.PRNGKey(0), (batch, 1))


def hidden_of(carry: Carry) -> jax.Array:
    """The hidden vector of a carry: the carry itself (GRU) or its last element (flax
    LSTM (c, h))."""
    return carry[-1] if isinstance(carry, tuple) else carry


def with_hidden(carry: Carry, h: jax.Array) -> Carry:
    """A carry whose hidden vector is ``h`` and whose other parts (LSTM memory) are zero.

    HRNN's session initialisation (Eq. 4) sets the hidden state of the session cell; for an LSTM
    session cell the memory cell of a new session starts at zero (our choice, the paper uses a GRU).
    """
    if isinstance(carry, tuple):
        return tuple(jnp.zeros_like(c) for c in carry[:-1]) + (h,)
    return h


def select(mask: jax.Array, new: Carry, old: Carry) -> Carry:
    """Per-row choice between two carries: ``new`` where ``mask [B]`` is True (leaves
    ``[B, ...]``)."""
    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (jnp.ndim(a) - 1)), a, b)
    return jax.tree_util.tree_map(pick, new, old)


# ------------------------------------------------------------------------------------------
# The time scan
# ------------------------------------------------------------------------------------------
def masked_scan(step: Callable, carry: Carry, xs: Any, *, reset: jax.Array | None = None,
                fresh: Carry | Callable | None = None, valid: jax.Array | None = None,
                before: Callable | None = None, hold: Callable | None = None,
                after: Callable | None = None, unroll: int = 1):
    """``jax.lax.scan`` of ``step(carry, x_t) -> (carry, y_t)`` with the batch contract's masks.

    Each step: ``before`` (if given), the resets, ``step``, the hold of invalid rows, ``after``
    (if given).

    Args:
      step: one step; ``carry`` is any pytree of ``[B, ...]`` arrays.
      carry: the state before the window.
      xs: the per-step inputs, a pytree of time-major arrays ``[L, ...]`` (None leaves allowed).
      reset: bool ``[L, B]``: before the step, the row's carry becomes ``fresh`` (a new session or
        user).
      fresh: a carry of ``[B, ...]`` arrays, or a function ``fresh(x_t) -> carry`` (e.g. with a
        per-step dropout mask in it).
      valid: bool ``[L, B]``: where False (padding, hold steps) the row keeps its carry; ``y_t``
        is still the step's output.
      before: ``before(carry, x_t) -> carry``, work due at the step's start, before the resets
        (HRNN's user level closing the sessions that end there).
      hold: ``hold(valid_t, new, old) -> carry``, keeping the invalid rows' carry (default:
        :func:`select`, every leaf); a model may hold only the parts its ``step`` changes (HRNN:
        the session state).
      after: ``after(carry, x_t, y_t) -> (carry, y_t)``, work due at the step's end (HRNN closing
        a session at the step whose target opens the next one).
      unroll: steps per loop iteration (``jax.lax.scan``'s).

    Returns:
      ``(carry, ys)``, ``ys`` time-major, as ``jax.lax.scan``.
    """
    if reset is not None and fresh is None:
        raise ValueError("masked_scan: reset needs fresh, the carry a reset row starts from")
    hold = hold or select

    def body(c, inp):
        x_t, reset_t, valid_t = inp
        if before is not None:
            c = before(c, x_t)
        if reset_t is not None:
            c = select(reset_t, fresh(x_t) if callable(fresh) else fresh, c)
        c_new, y = step(c, x_t)
        if valid_t is not None:
            c_new = hold(valid_t, c_new, c)
        if after is not None:
            c_new, y = after(c_new, x_t, y)
        return c_new, y

    return jax.lax.scan(body, carry, (xs, reset, valid), unroll=unroll)


def run_cell(cell: nn.Module, params: Any, carry: Carry, xs: jax.Array, reset: jax.Array,
             valid: jax.Array, unroll: int = 1):
    """A cell over one window, as ``flax.linen.RNN`` lifts a cell over time: ``xs [L, B, .]`` (a
    split cell's ``project`` output, else the cell's input), ``reset`` and ``valid`` ``[L, B]``
    -> ``(carry, ys [L, B, features])``. A reset row starts from the zero carry; an invalid row
    keeps its carry (:func:`masked_scan`). A cell with ``fused_scan`` runs its own scan."""
    p = {"params": params}
    if is_split(cell) and cell.fused_scan:
        return cell.apply(p, carry, xs, reset, valid, method="scan")
    if is_split(cell):
        def step(c, x):
            return cell.apply(p, c, x, method="step")
    else:
        def step(c, x):
            return cell.apply(p, c, x)
    return masked_scan(step, carry, xs, reset=reset, fresh=zero_carry(cell, xs.shape[1]),
                       valid=valid, unroll=unroll)


# ------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------
def _describe(tree) -> str:
    return str(jax.tree_util.tree_map(lambda a: tuple(a.shape), tree))


def check_cell(cell: nn.Module, input_width: int, role: str = "cell") -> None:
    """ValueError naming ``role``, the cell and what was expected, unless ``cell`` keeps the
    contract for inputs ``[B, input_width]``: ``cell(carry, x)`` (a split cell: ``project`` then
    ``step``) returns ``(carry, y)`` with the carry shaped as ``initialize_carry``'s and ``y [B,
    features]``, and a split cell's ``project`` is ``projected_features`` wide, its blocks
    covering it. Abstract evaluation only: nothing is computed."""
    name = f"{role} {type(cell).__name__}"
    H, B = hidden_size(cell), 2
    x = jnp.zeros((B, input_width))

    def run():
        carry = zero_carry(cell, B)
        variables = cell.init(jax.random.PRNGKey(0), carry, x)
        out = cell.apply(variables, carry, x)
        xp = cell.apply(variables, x, method="project") if is_split(cell) else None
        return carry, out, xp
    try:
        carry, out, xp = jax.eval_shape(run)
    except Exception as err:
        raise ValueError(f"{name} fails on an input of width {input_width} (batch {B}): "
                         f"{type(err).__name__}: {' '.join(str(err).split())[:300]}") from err
    expected = f"(carry {_describe(carry)}, y ({B}, {H}))"
    if not isinstance(out, tuple) or len(out) != 2:
        raise ValueError(f"{name} must return (carry, y) = {expected}; got {_describe(out)}")
    new, y = out
    same = (jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(carry) and all(
        a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(new),
                                           jax.tree_util.tree_leaves(carry))))
    if not same or not hasattr(y, "shape") or y.shape != (B, H):
        raise ValueError(f"{name} must return (carry, y) = {expected} (y as wide as features="
                         f"{H}, the carry as initialize_carry's); got {_describe(out)}")
    if xp is not None:
        P, blocks = cell.projected_features, cell.blocks
        if xp.shape[-1] != P:
            raise ValueError(f"{name}: project(x) is {xp.shape[-1]} wide, projected_features "
                             f"says {P}")
        ends = [0] + [b.start + b.width for b in blocks]
        if [b.start for b in blocks] != ends[:-1] or ends[-1] != P:
            raise ValueError(f"{name}: blocks must cover [0, {P}) in order without gaps; got "
                             f"{[(b.name, b.start, b.width) for b in blocks]}")
