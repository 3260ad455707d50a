"""The user-based RNN of Donkers, Loepp, Ziegler, "Sequential User-based Recurrent Neural
Network Recommendations" (RecSys 2017): one user-based cell (``hrnn_jax.cells.user_gru``) over
each user's whole sequence, fed the item and a learned user vector. Equation numbers refer to that
paper."""
from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import linen as nn

from hrnn_jax import cells, precision
from hrnn_jax.config import ModelConfig, default
from hrnn_jax.models.contract import Capabilities, Model, Output, Params
from hrnn_jax.models.layers import dropout_mask


@dataclasses.dataclass(frozen=True)
class UserRNN(Model):
    """Donkers et al. 2017: one recurrent cell over each user's whole sequence, fed the item and a
    learned user embedding, ``x_t = [E_i i_t, E_v v]`` (Eq. 2), scored against every item (Eq. 1:
    ``o = T h``, an affine map: ``item_out`` and ``item_bias``; cross-entropy over all items).

    ``cell``: a user-based cell (``hrnn_jax.cells.UserCell``: linear, rectified-linear,
    attentional), with ``item_features = item_dim``; its ``project`` runs outside the scan. The
    state resets at a new user only (a whole-sequence model: ``"user"`` targets).

    Choices, each as the paper's Table 1 where it says:

    * Embeddings ``item_in [N+1, item_dim]`` and ``user_in [U, user_dim]`` and the output layer are
      drawn from U(-0.1, 0.1); dropout on the item vector (``dropout_item``, keep 0.8) and on the
      user vector (``dropout_user``, keep 0.5), both drawn outside the scan.
    * The L2 penalty on the user side (``l2_user``, 0.01) is an extra loss term (``apply``'s
      ``extra``): ``l2_user`` times the mean squared norm of the user vectors of the window's
      valid steps (per occurrence, so the user table stays a sparse-row table: only the
      rows of the batch's users are touched). The paper applies L2 "on user side" without saying
      to which parameters or how it is scaled; this is our reading, chosen by measurement: also
      penalising the cell's user kernel (``+ |W_u|^2`` per step, against a loss that is a mean
      over the window's events) drove W_u towards zero, and the linear user-based GRU then scored
      as the standard GRU (MRR@20 .0744 against .0732 on the experiment's synthetic log, 10
      epochs) where it reaches .1165 without that term.
    * ``user_in`` is a sparse-row table indexed by the batch's ``user`` (``capabilities``).

    With a cell that takes no user input (``cell.takes_user`` False:
    ``cells.StandardUserGRU``, the paper's standard GRU, "the same network without the user")
    the model has no user table, no user dropout and no L2 term: ``x_t = E_i i_t`` (dropped at
    keep 0.8), everything else as above; ``user_dim``, ``dropout_user`` and ``l2_user`` are
    unused.
    """

    n_items: int
    n_users: int
    cell: nn.Module
    user_dim: int = default(ModelConfig, "hidden")
    dropout_item: float = default(ModelConfig, "dropout_item")
    dropout_user: float = default(ModelConfig, "dropout_user_vector")
    l2_user: float = default(ModelConfig, "l2_user")

    def __post_init__(self):
        if not cells.is_user_cell(self.cell):
            raise ValueError(f"UserRNN needs a user-based cell (hrnn_jax.cells.UserCell, e.g. "
                             f"LinearUserGRU); got {type(self.cell).__name__}")

    @property
    def capabilities(self) -> Capabilities:
        """The item tables and the user table ``user_in`` (by ``user``), over each user's whole
        sequence."""
        tables = {"item_in": "item", "user_in": "user", "item_out": "target",
                  "item_bias": "target"}
        if not self.cell.takes_user:
            del tables["user_in"]
        return Capabilities(row_tables=tables, whole_sequence=True, n_users=self.n_users)

    @property
    def hidden(self) -> int:
        return cells.hidden_size(self.cell)

    @property
    def output_width(self) -> int:
        return self.hidden

    @property
    def item_dim(self) -> int:
        return int(self.cell.item_features)

    def init(self, rng) -> Params:
        k_item, k_user, k_out, k_bias, k_cell = jax.random.split(rng, 5)
        N, H = self.n_items + 1, self.hidden
        def u(k, shape):
            return jax.random.uniform(k, shape, jnp.float32, -0.1, 0.1)
        takes_user = self.cell.takes_user
        x = jnp.zeros((1, self.item_dim + (self.user_dim if takes_user else 0)))
        cells.check_cell(self.cell, x.shape[1], "cell")
        params = {
            "item_in": u(k_item, (N, self.item_dim)),
            "user_in": u(k_user, (self.n_users, self.user_dim)),
            "item_out": u(k_out, (N, H)),
            "item_bias": u(k_bias, (N,)),
            "cell": self.cell.init(k_cell, self.cell.initialize_carry(k_cell, x.shape),
                                   x)["params"],
        }
        if not takes_user:  # the same keys drawn, so the shared tables start as a user cell's
            del params["user_in"]
        return params

    def init_carry(self, batch_size: int):
        return jnp.zeros((batch_size, self.hidden), jnp.float32)

    def apply(self, params, carry, batch, *, rng=None, train=False) -> Output:
        chex.assert_rank([batch["item"], batch["user"], batch["user_start"]], 2)
        e_item = precision.take_rows(params["item_in"], batch["item"])  # E_i i_t [B, L, E_i]
        r_item, r_user = jax.random.split(rng) if train else (None, None)
        m_item = dropout_mask(r_item, self.dropout_item, e_item.shape, train)
        x = e_item if m_item is None else e_item * m_item
        extra = {}
        if self.cell.takes_user:
            e_user = precision.take_rows(params["user_in"], batch["user"])  # E_v v [B, L, E_v]
            m_user = dropout_mask(r_user, self.dropout_user, e_user.shape, train)
            x = jnp.concatenate([x, e_user if m_user is None else e_user * m_user], axis=-1)
            extra = {"l2_user": self._l2_user(e_user, batch["valid"])}
        xp = self.cell.apply({"params": params["cell"]}, x, method="project")  # outside the scan
        # Eq. 3-10 over the window; a new user starts from zeros, padding keeps the state
        carry, ys = cells.run_cell(self.cell, params["cell"], carry, jnp.swapaxes(xp, 0, 1),
                                   batch["user_start"].T, batch["valid"].T)
        return Output(carry, jnp.swapaxes(ys, 0, 1), extra)

    def _l2_user(self, e_user, valid):
        """``l2_user`` times the mean squared norm of the valid steps' user vectors."""
        valid = valid.astype(jnp.float32)
        user_sq = ((e_user ** 2).sum(-1) * valid).sum() / jnp.maximum(valid.sum(), 1.0)
        return self.l2_user * user_sq
