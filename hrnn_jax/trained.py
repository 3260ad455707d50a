"""A trained model with everything it needs to recommend and evaluate: ``Trained``, what
``hrnn_jax.checkpoint.load`` returns and ``train`` makes.

    trained = hrnn_jax.load("model/")
    trained.recommend("u17", k=10)                    # the user's next items
    trained.recommend("u17", session=["i3", "i9"])    # a new session in progress
    trained.evaluate("log.csv")                        # the metrics of ``compare``
"""
from __future__ import annotations

import dataclasses
import os
import sys
from functools import cached_property, partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl

from hrnn_jax import compare, data, evaluation, training
from hrnn_jax.config import Config, ConfigError, DataConfig, EvalConfig
from hrnn_jax.evaluation import predict
from hrnn_jax.models.contract import field_columns, lane_targets
from hrnn_jax.models.layers import score_items

SAVED_MESH = "saved"  # Trained.evaluate's default: the mesh the model was trained on
CHUNK = 256  # requests scored (and sessions stepped) per call
TRAIN_DTYPES = {"user": np.int32, "item": np.int32, "session": np.int32, "time": np.float64,
                "value": np.float64, "event_code": np.int32}


class CheckpointError(data.DataError):
    """A missing, unreadable or mismatching checkpoint (reported like other bad input)."""


def reads_time(model) -> bool:
    """The model reads the time to the predicted event (the lanes' ``"gap"``, HRNN-meta)."""
    return "gap" in model.capabilities.fields


def train_columns(model) -> tuple[str, ...]:
    """The columns of the training events a trained model keeps: the codes, and the columns of
    the per-step fields the model reads (HRNN-meta: times; values with feedback)."""
    return ("user", "item", "session") + field_columns(model)


def prepare_log(source, config: DataConfig) -> data.Prepared:
    """``data.prepare`` of ``source``: a path (read with ``config``'s reading fields), a frame,
    or an already prepared log (returned as it is)."""
    if isinstance(source, data.Prepared):
        return source
    return data.prepare(data.read_log(source, config), config)


def _stderr(message: str) -> None:
    """Print a note on stderr (``recommend``'s default ``note``)."""
    print(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------
# The trained model
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Trained:
    """A trained neural model with everything needed to continue, recommend and evaluate.

    name: the model's name (its registry name, or its class's for a model built by hand);
    model: the model (``hrnn_jax.models.Model``); config: the
    :class:`~hrnn_jax.config.Config` it was trained with; encoded: the id maps (``user_ids``,
    ``item_ids``) and, as ``events``, the training part (user, item, session codes; None for a
    model of an encoded log, whose ``source`` holds them); state: the
    :class:`~hrnn_jax.training.FitState` after the last completed epoch (``train_state.opt_state``
    None when the optimiser could not be restored: then it recommends and evaluates but does not
    resume); popularity: training events per item code ``[N+1]``; users:
    :func:`hrnn_jax.evaluation.predict.final_states` of the training part (None for a run that
    did not finish); info: the data summary of ``data.prepare``; optimizer: the optax
    transformation it was trained with when it was not the configuration's (None: the
    configuration's); source: the encoded log (``data.preprocess_parquet``'s directory) the model
    was trained on in shares (``checkpoint.train`` of such a directory), read for a user's
    training events and evaluated from shares (None: a model of a log, with ``encoded.events``).
    """

    name: str
    model: Any
    config: Config
    encoded: data.Encoded
    state: training.FitState
    popularity: np.ndarray
    users: dict | None
    info: dict
    optimizer: optax.GradientTransformation | None = None
    source: str | None = None

    @cached_property
    def params(self):
        """The parameters to use: the best by validation, else the last (as ``fit`` returns)."""
        p = self.state.best_params
        params = self.state.train_state.params if p is None else p
        return jax.tree_util.tree_map(jnp.asarray, params)

    @property
    def complete(self) -> bool:
        """True when training ended (the users' states are there)."""
        return self.users is not None

    @property
    def targets(self) -> str:
        """The lane layout the model was trained with."""
        return lane_targets(self.model, self.config.data.protocol)

    @cached_property
    def _user_codes(self) -> dict[str, int]:
        return {str(raw): code for code, raw in enumerate(self.encoded.user_ids)}

    # -- data -------------------------------------------------------------------------------
    def prepare_log(self, source) -> data.Prepared:
        """``source`` (a path, a frame or a ``data.Prepared``) prepared with the saved data
        settings; DataError unless its training part is the one this model was trained on."""
        self._check_of_log()
        prep = prepare_log(source, self.config.data)
        self.check_log(prep)
        return prep

    def _check_of_log(self) -> None:
        """CheckpointError for a model of an encoded log (it takes its directory, not a log)."""
        if self.source is not None:
            raise CheckpointError(f"this model was trained on the encoded log {self.source}; "
                                  "give that directory, not a log")

    def check_log(self, prep: data.Prepared) -> None:
        """CheckpointError unless ``prep``'s ids and training events are the saved ones."""
        self._check_of_log()
        enc, train = prep.encoded, self.encoded.events
        problem = None
        if prep.train.height != train.height:
            problem = (f"its training part has {prep.train.height} events, the checkpoint's "
                       f"{train.height}")
        elif list(enc.user_ids) != list(self.encoded.user_ids):
            problem = "its user ids differ"
        elif list(enc.item_ids[1:]) != list(self.encoded.item_ids[1:]):
            problem = "its item ids differ"
        elif not all(np.array_equal(prep.train[c].to_numpy(), train[c].to_numpy())
                     for c in ("user", "item", "session")):
            problem = "its training events differ"
        if problem:
            raise CheckpointError(f"the log does not match the checkpoint ({problem}); give the "
                                  "log the model was trained on")

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, source, eval: EvalConfig | None = None, *,
                 mesh=SAVED_MESH) -> dict[str, float]:
        """The metrics of ``compare`` for this model on ``source`` (a path, frame or Prepared:
        the log it was trained on): ``{"recall@5": ..., "mrr@5": ..., ...}``. ``eval``: the
        ranking settings (default: the saved ones). ``mesh``: a device mesh to evaluate on
        (``hrnn_jax.parallel.make_mesh``), None for one device; default (``SAVED_MESH``): the
        saved ``train.mesh``. A model of an encoded log (``source``) ranks from shares, each
        process on its own devices of the saved mesh, and takes no other."""
        saved = isinstance(mesh, str) and mesh == SAVED_MESH
        mesh = self.config.train.mesh if saved else mesh
        config = dataclasses.replace(self.config, eval=eval or self.config.eval,
                                     train=dataclasses.replace(self.config.train, mesh=None))
        if self.source is not None:
            ranks = self._share_ranks(source, config, mesh)
        else:
            ranks = compare.evaluate_neural(self.model, self.params, self.prepare_log(source),
                                            config, mesh=mesh)
        metrics = evaluation.metrics_from_ranks(ranks, config.eval.ks)
        return {k: v for k, v in metrics.items() if k != "n"}

    def check_source(self, directory) -> None:
        """CheckpointError unless ``directory`` is the encoded log this model was trained on."""
        if self.source is None:
            raise CheckpointError("this model was trained on a log, not an encoded log; give "
                                  "the log")
        if not (data.is_encoded(directory) and os.path.samefile(directory, self.source)):
            raise CheckpointError(f"this model was trained on the encoded log {self.source}, not "
                                  f"{directory}; give that directory")

    def _share_ranks(self, directory, config: Config, mesh) -> np.ndarray:
        """:meth:`evaluate`'s ranks for a model of an encoded log: each process ranks its share's
        test rows on its own devices of the saved mesh, as ``compare.compare_shares`` does."""
        self.check_source(directory)
        if mesh is not None and mesh != self.config.train.mesh:
            raise ConfigError("a model of an encoded log is evaluated from shares, each process "
                              "on its own devices of the saved mesh; give no mesh")
        share = data.read_share(self.source, config.train.lane_groups,
                                process=(jax.process_index(), jax.process_count()))
        return compare.share_model_ranks(self.model, self.params, self.source, share, config,
                                         candidates=compare.share_candidates(share, config),
                                         mesh=mesh)

    def user_events(self, code: int) -> pl.DataFrame:
        """The training events of user code ``code`` (from ``source`` for a model of an encoded
        log)."""
        if self.source is not None:
            return data.read_encoded(self.source, "train", users=(code, code + 1))
        ev = self.encoded.events
        lo, hi = np.searchsorted(ev["user"].to_numpy(), [code, code + 1])
        return ev[lo:hi]

    # -- recommendation ---------------------------------------------------------------------
    def recommend(self, user=None, *, session=None, history=None, gap: float | None = None,
                  k: int = 10, exclude_seen: bool = False,
                  note: Callable[[str], None] | None = _stderr) -> pl.DataFrame:
        """Top-``k`` items for one user: a frame with columns user, rank, item, score (raw ids).

        user: a raw user id. Without ``session``: the user's next items after its last training
          event. With ``session``: a new session in progress (a list of raw item ids): HRNN
          closes the user's last training session (Eq. 3) and starts this one from Eq. 4 (HRNN All
          also uses c as context), as in evaluation; the session GRU starts from zeros. A user not
          in the checkpoint gets the session alone (a new user), with a ``note``.
        history: instead of ``user``, a new user's sessions (lists of raw item ids, the last in
          progress), replayed from scratch as ``predict.recommend`` does.
        gap: with ``user``, for a model that reads the time to the predicted event (HRNN-meta):
          the assumed seconds from the user's last training event to the next (Ma &
          Narayanaswamy's inference-time control, Table 5); the user's training history is
          replayed with its times (``predict.states_by_gap``). Without it such a model
          recommends for an event right after the last one (a gap of 0 s). Such a model needs
          event times, so it takes no ``session`` or ``history`` (lists of ids without times).
        exclude_seen: leave out the items of the session or history, and a known user's training
          items.
        Scores are ``models.score_items`` of the session-level output, as in evaluation.
        """
        if (user is None) == (history is None):
            raise ValueError("recommend needs either user (with an optional session) or history")
        if session is not None or history is not None:
            self._check_untimed()
        if gap is not None:
            return self._recommend_by_gap(user, gap, k, exclude_seen)
        if history is None:
            return self.recommend_many([user], [session], k=k, exclude_seen=exclude_seen,
                                       note=note)
        if session is not None:
            raise ValueError("give the session in progress as the last session of history")
        if not history or not all(len(s) for s in history):
            raise data.DataError("the history needs at least one session and no empty session")
        codes = [self.encoded.encode_items(list(s)) for s in _check_items(self.encoded, history)]
        frame = pl.DataFrame({"user": np.zeros(sum(map(len, codes)), np.int32),
                              "item": np.concatenate(codes),
                              "session": np.repeat(np.arange(len(codes), dtype=np.int32),
                                                   [len(c) for c in codes])})
        y = predict.final_states(self.model, self.params, frame, n_users=1, batch_size=1,
                                 targets=self.targets)["output"]
        seen = [np.concatenate(codes)] if exclude_seen else None
        return self._frame([None], *self._top(y, seen, k))

    def recommend_many(self, users, sessions=None, *, k: int = 10, exclude_seen: bool = False,
                       note: Callable[[str], None] | None = _stderr) -> pl.DataFrame:
        """:meth:`recommend` for many users at once: ``sessions[r]`` is None or user r's session
        in progress. Returns the frame of every user's top ``k`` (user, rank, item, score)."""
        users = [str(u) for u in users]
        sessions = [None] * len(users) if sessions is None else list(sessions)
        if len(sessions) != len(users):
            raise ValueError(f"{len(users)} users but {len(sessions)} sessions")
        sessions = [None if s is None or len(s) == 0 else s for s in sessions]
        if any(s is not None for s in sessions):
            self._check_untimed()
        _check_items(self.encoded, [s for s in sessions if s is not None])
        codes = np.array([self._user_codes.get(u, -1) for u in users], np.int64)
        lost = [u for u, c, s in zip(users, codes, sessions) if c < 0 and s is None]
        if self.model.capabilities.n_users is not None:
            lost = [u for u, c in zip(users, codes) if c < 0]  # no row of the user table
            if lost:
                raise data.DataError(f"user(s) not in the checkpoint: {', '.join(lost[:5])}; "
                                     f"{self.name} has a learned vector per training user and "
                                     "cannot recommend for a new user")
        if lost:
            raise data.DataError(f"user(s) not in the checkpoint: {', '.join(lost[:5])}; a new "
                                 "user needs a session in progress (--session ITEMS)")
        if note is not None:
            for u in dict.fromkeys(u for u, c in zip(users, codes) if c < 0):
                note(f"note: user {u} is not in the checkpoint; recommending from the session "
                     "alone (a new user)")
        if (codes >= 0).any() and not self.complete:
            raise CheckpointError(f"this checkpoint is of an unfinished run (epoch "
                                  f"{self.state.epoch} of {self.config.train.epochs}) and has "
                                  "no user states; finish it with `hrnn-jax train DATA --resume "
                                  "DIR`")
        y = np.zeros((len(users), self.model.output_width), np.float32)
        stored = [r for r, s in enumerate(sessions) if s is None]
        if stored:
            y[stored] = self.users["output"][codes[stored]]
        stepped = [r for r, s in enumerate(sessions) if s is not None]
        items = {r: self.encoded.encode_items(list(sessions[r])) for r in stepped}
        for i in range(0, len(stepped), CHUNK):
            part = stepped[i:i + CHUNK]
            y[part] = self._continue(codes[part], [items[r] for r in part])
        seen = None
        if exclude_seen:
            known = self._training_items(codes[codes >= 0])
            seen = [np.concatenate([known.get(int(c), np.zeros(0, np.int32)),
                                    items.get(r, np.zeros(0, np.int32))])
                    for r, c in enumerate(codes)]
        return self._frame(users, *self._top(y, seen, k))

    def _check_untimed(self) -> None:
        """DataError for a model that reads event times, asked about sessions without times."""
        if reads_time(self.model):
            raise data.DataError(f"{self.name} reads the time between events, and a session or "
                                 "history of item ids has none: recommend for a user of the "
                                 "checkpoint, with --gap SECONDS for the time since its last "
                                 "event")

    def _recommend_by_gap(self, user, gap: float, k: int, exclude_seen: bool) -> pl.DataFrame:
        """:meth:`recommend` with ``gap`` (see there)."""
        if not reads_time(self.model):
            raise data.DataError(f"a gap (--gap) needs a model that reads the time to the "
                                 f"predicted event (hrnn-meta); {self.name} does not")
        if not np.isfinite(gap) or gap < 0:
            raise data.DataError(f"the gap must be finite and >= 0 seconds, got {gap}")
        code = self._user_codes.get(str(user))
        if code is None:
            raise data.DataError(f"user {user} is not in the checkpoint; a gap needs a user's "
                                 "training history")
        y = predict.states_by_gap(self.model, self.params, self.user_events(code), [float(gap)])
        seen = [self._training_items([code])[code]] if exclude_seen else None
        return self._frame([str(user)], *self._top(y, seen, k))

    def _training_items(self, codes) -> dict[int, np.ndarray]:
        """The training items of each user code of ``codes`` (read at once)."""
        codes = np.unique(np.asarray(codes, np.int64))
        if self.source is not None:
            ev = data.read_encoded(self.source, "train", users=codes)
        else:
            ev = self.encoded.events.filter(pl.col("user").is_in(codes.tolist()))
        user, item = ev["user"].to_numpy(), ev["item"].to_numpy()  # sorted by user
        bounds = np.searchsorted(user, np.stack([codes, codes + 1]))
        return {int(c): item[lo:hi] for c, lo, hi in zip(codes, *bounds)}

    def _continue(self, codes: np.ndarray, sessions: list[np.ndarray]) -> np.ndarray:
        """Outputs ``[R, H]`` after stepping each session from its user's stored carry (a new
        or fresh user: as a new user's first session)."""
        R, longest = len(sessions), max(len(s) for s in sessions)
        B, L = _bucket(R), _bucket(longest)
        lengths = np.zeros(B, np.int64)
        lengths[:R] = [len(s) for s in sessions]
        item = np.zeros((B, L), np.int32)
        for r, s in enumerate(sessions):
            item[r, :len(s)] = s
        col = np.arange(L)[None, :]
        first = (col == 0) & (lengths[:, None] > 0)
        new = np.ones(B, bool)
        if self.users is None:  # only new users here (see recommend_many)
            carry = self.model.init_carry(B)
        else:
            rows = np.zeros(B, np.int64)
            rows[:R] = np.maximum(codes, 0)
            new[:R] = (codes < 0) | self.users["fresh"][rows[:R]]
            carry = jax.tree_util.tree_map(lambda a: jnp.asarray(a[rows]), self.users["carry"])
        batch = {"item": item, "target": np.zeros_like(item), "session_start": first,
                 "user_start": first & new[:, None], "valid": col < lengths[:, None],
                 "user": np.repeat(np.maximum(np.pad(codes, (0, B - R)), 0)[:, None], L,
                                   axis=1).astype(np.int32)}
        y = np.asarray(_outputs(self.model, self.params, carry, batch))
        return y[np.arange(R), lengths[:R] - 1]

    def _top(self, y: np.ndarray, seen: list[np.ndarray] | None, k: int):
        """Top-``k`` item codes and scores ``[R, k]`` of outputs ``y [R, H]``; ``seen[r]``: codes
        left out of row r. Excluded items score -inf."""
        k = min(int(k), self.encoded.n_items)
        R, N1 = len(y), self.encoded.n_items + 1
        size = min(CHUNK, _bucket(R))
        codes, scores = np.zeros((R, k), np.int64), np.zeros((R, k), np.float32)
        p_s = self.model.scoring_params(self.params)
        for start in range(0, R, size):
            n = min(size, R - start)
            chunk = np.zeros((size, y.shape[1]), np.float32)
            chunk[:n] = y[start:start + n]
            mask = np.zeros((size, N1), bool)
            if seen is not None:
                for r in range(n):
                    mask[r, seen[start + r]] = True
            s, c = _top_k(p_s, jnp.asarray(chunk), jnp.asarray(mask), k)
            codes[start:start + n], scores[start:start + n] = np.asarray(c)[:n], np.asarray(s)[:n]
        return codes, scores

    def _frame(self, users, codes: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
        R, k = codes.shape
        keep = np.isfinite(scores).ravel()  # fewer than k items left after exclusions
        return pl.DataFrame({
            "user": pl.Series(np.repeat(np.array(users, dtype=object), k)[keep].tolist(),
                              dtype=pl.String),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), R)[keep],
            "item": pl.Series(self.encoded.decode_items(codes.ravel()[keep]).tolist(),
                              dtype=pl.String),
            "score": scores.ravel()[keep]})


def _bucket(n: int) -> int:
    """The next power of two >= n (shapes of the jitted calls: few compilations)."""
    return 1 << max(0, int(n) - 1).bit_length()


def _check_items(encoded: data.Encoded, sessions) -> list:
    """``sessions`` (lists of raw ids), with DataError naming every unknown item id at once."""
    known = set(str(i) for i in encoded.item_ids[1:])
    unknown = sorted({str(i) for s in sessions for i in s} - known)
    if unknown:
        raise data.DataError(f"{len(unknown)} item id(s) not in the checkpoint's catalogue: "
                             f"{', '.join(unknown[:10])}" + (" ..." if len(unknown) > 10 else ""))
    return list(sessions)


@partial(jax.jit, static_argnums=0)
def _outputs(model, params, carry, batch):
    return predict.forward(model, params, carry, batch)[1]


@partial(jax.jit, static_argnames="k")
def _top_k(params, y, exclude, k):
    scores = score_items(params, y)  # the scoring of evaluation (Eq. 2 before g)
    scores = jnp.where(exclude, -jnp.inf, scores).at[:, 0].set(-jnp.inf)
    return jax.lax.top_k(scores, k)


