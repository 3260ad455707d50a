"""Train one neural model, save it, load it, and recommend or evaluate from it.

    trained = checkpoint.train("log.csv", "hrnn-init", Config(...), out="model/")
    trained = hrnn_jax.load("model/")
    trained.recommend("u17", k=10)                    # the user's next items
    trained.recommend("u17", session=["i3", "i9"])    # a new session in progress
    trained.evaluate("log.csv")                        # the metrics of ``compare``

The command line's ``hrnn-jax train``, ``evaluate`` and ``recommend`` are thin layers over these.

A checkpoint directory holds one or more saves ``ckpt-NNNNNN`` (the highest number is the newest;
older ones are removed once a newer one is complete). Each save is one orbax checkpoint, written
to a temporary name and renamed when complete, so an interrupted save never hides the previous
one. It has two items:

* ``arrays`` (orbax PyTree): ``fit`` -- the :class:`~hrnn_jax.training.FitState`'s arrays
  (``train_state``: params, optimiser state, lane carry, step; ``rng``; ``best_params`` when a
  validation ran); ``train`` -- the training part's events as item/user/session codes (int32 [E]);
  ``popularity`` -- training events per item code (int64 [N+1]); for a model that reads the time to
  the predicted event (HRNN-meta) also the events' ``time`` (float64 [E]), and their ``value`` or
  ``event_code`` with feedback; and, once training has ended,
  ``users`` -- :func:`hrnn_jax.predict.final_states` of the training part: each user's output after
  its last training event, the carry its next session continues from (HRNN: session, user and
  context states) and ``fresh``. Containers are saved as nested dicts and rebuilt from the model
  and optimiser on load (zero-size arrays, e.g. HRNN Init's context, are not written).
* ``meta`` (orbax JSON): format, model name, ``Config.to_dict()``, epoch, history, best, bad,
  ``complete``, the data summary, and the raw ids as JSON lists of strings (the reader reads ids
  as text): ``user_ids`` (user code u at position u) and ``item_ids`` (item code i at position i;
  position 0, the padding, is null).

A save after every epoch lets an interrupted run continue (``train(..., resume=load(DIR))``, the
CLI's ``--resume``) bit for bit; the final save adds the users' states, which ``recommend`` needs.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from functools import cached_property, partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import polars as pl

from hrnn_jax import compare, data, evaluation, jsonio, models, optim, predict, training
from hrnn_jax.batching import field_columns, lane_options
from hrnn_jax.config import Config, ConfigError, DataConfig, EvalConfig
from hrnn_jax.models import score_items

FORMAT = 1
_SAVE = re.compile(r"^ckpt-(\d+)$")
_TMP = ".orbax-checkpoint-tmp"
CHUNK = 256  # requests scored (and sessions stepped) per call


_TRAIN_DTYPES = {"user": np.int32, "item": np.int32, "session": np.int32, "time": np.float64,
                 "value": np.float64, "event_code": np.int32}


def _reads_time(model) -> bool:
    """The model reads the time to the predicted event (the lanes' ``"gap"``, HRNN-meta)."""
    return "gap" in lane_options(model)["fields"]


def _train_columns(model) -> tuple[str, ...]:
    """The columns of the training events a checkpoint keeps: the codes, and the columns of the
    per-step fields the model reads (HRNN-meta: times; values with feedback)."""
    return ("user", "item", "session") + field_columns(model)


class CheckpointError(data.DataError):
    """A missing, unreadable or mismatching checkpoint (reported like other bad input)."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------
# The trained model
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Trained:
    """A trained neural model with everything needed to continue, recommend and evaluate.

    name: one of ``compare.NEURAL``; model: ``compare.build_model(name, ...)``; config: the
    :class:`~hrnn_jax.config.Config` it was trained with; encoded: the id maps (``user_ids``,
    ``item_ids``) and, as ``events``, the training part (user, item, session codes); state: the
    :class:`~hrnn_jax.training.FitState` after the last completed epoch; popularity: training
    events per item code ``[N+1]``; users: :func:`hrnn_jax.predict.final_states` of the training
    part (None for a run that did not finish); info: the data summary of ``compare.prepare``.
    """

    name: str
    model: Any
    config: Config
    encoded: data.Encoded
    state: training.FitState
    popularity: np.ndarray
    users: dict | None
    info: dict

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
        return compare.lane_targets(self.name, self.config.data.protocol)

    @cached_property
    def _user_codes(self) -> dict[str, int]:
        return {str(raw): code for code, raw in enumerate(self.encoded.user_ids)}

    # -- data -------------------------------------------------------------------------------
    def prepare(self, source) -> compare.Prepared:
        """``source`` (a path, a frame or a ``compare.Prepared``) prepared with the saved data
        settings; DataError unless its training part is the one this model was trained on."""
        prep = prepare(source, self.config.data)
        self.check_log(prep)
        return prep

    def check_log(self, prep: compare.Prepared) -> None:
        """CheckpointError unless ``prep``'s ids and training events are the saved ones."""
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
    def evaluate(self, source, eval: EvalConfig | None = None) -> dict[str, float]:
        """The metrics of ``compare`` for this model on ``source`` (a path, frame or Prepared:
        the log it was trained on): ``{"recall@5": ..., "mrr@5": ..., ...}``. ``eval``: the
        ranking settings (default: the saved ones)."""
        prep = self.prepare(source)
        config = dataclasses.replace(self.config, eval=eval or self.config.eval)
        ranks = compare.evaluate_neural(self.name, self.model, self.params, prep, config)
        metrics = evaluation.metrics_from_ranks(ranks, config.eval.ks)
        return {k: v for k, v in metrics.items() if k != "n"}

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
                                 window=compare.EVAL_WINDOW, targets=self.targets)["output"]
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
        if "user_in" in models.row_tables(self.model):
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
        y = np.zeros((len(users), self.model.hidden), np.float32)
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
            seen = [np.concatenate([self._training_items(c) if c >= 0 else np.zeros(0, np.int32),
                                    items.get(r, np.zeros(0, np.int32))])
                    for r, c in enumerate(codes)]
        return self._frame(users, *self._top(y, seen, k))

    def _check_untimed(self) -> None:
        """DataError for a model that reads event times, asked about sessions without times."""
        if _reads_time(self.model):
            raise data.DataError(f"{self.name} reads the time between events, and a session or "
                                 "history of item ids has none: recommend for a user of the "
                                 "checkpoint, with --gap SECONDS for the time since its last "
                                 "event")

    def _recommend_by_gap(self, user, gap: float, k: int, exclude_seen: bool) -> pl.DataFrame:
        """:meth:`recommend` with ``gap`` (see there)."""
        if not _reads_time(self.model):
            raise data.DataError(f"a gap (--gap) needs a model that reads the time to the "
                                 f"predicted event (hrnn-meta); {self.name} does not")
        if not np.isfinite(gap) or gap < 0:
            raise data.DataError(f"the gap must be finite and >= 0 seconds, got {gap}")
        code = self._user_codes.get(str(user))
        if code is None:
            raise data.DataError(f"user {user} is not in the checkpoint; a gap needs a user's "
                                 "training history")
        ev = self.encoded.events
        user_col = ev["user"].to_numpy()
        lo, hi = np.searchsorted(user_col, [code, code + 1])
        y = predict.states_by_gap(self.model, self.params, ev[lo:hi], [float(gap)],
                                  window=compare.EVAL_WINDOW)
        seen = [self._training_items(code)] if exclude_seen else None
        return self._frame([str(user)], *self._top(y, seen, k))

    def _training_items(self, code: int) -> np.ndarray:
        user = self.encoded.events["user"].to_numpy()
        lo, hi = np.searchsorted(user, [code, code + 1])
        return self.encoded.events["item"].to_numpy()[lo:hi]

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
        p_s = models.scoring_params(self.model, self.params)
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


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------
def prepare(source, config: DataConfig) -> compare.Prepared:
    """``compare.prepare`` of ``source``: a path (read with ``config``'s reading fields), a
    frame, or an already prepared log (returned as it is)."""
    if isinstance(source, compare.Prepared):
        return source
    return compare.prepare(data.read_log(source, config), config)


def train(source, model_name: str, config: Config = Config(), *, out=None,
          resume: Trained | None = None, log: Callable[[str], None] | None = print,
          progress=None) -> Trained:
    """Train neural model ``model_name`` (``compare.NEURAL``) on ``log`` as ``compare`` does.

    Args:
      source: the log: a path, a frame or a ``compare.Prepared`` (of ``config.data``).
      config: every setting; ``train.seeds`` must be 1 (one model is saved).
      out: a checkpoint directory, saved after every epoch and at the end (see the module
        docstring); a directory that exists must be empty or hold a checkpoint (replaced).
      resume: a :func:`load`-ed checkpoint to continue bit for bit: ``config`` must be its
        configuration but for ``train.epochs``, and ``source`` the log it was trained on.
      log: one line per epoch (``training.fit``'s); progress: as ``fit``'s.

    Returns:
      the :class:`Trained` model, with every user's state at the end of its training events.
    """
    if model_name not in compare.NEURAL:
        raise ConfigError(f"unknown model {model_name!r}; train one of "
                          f"{', '.join(compare.NEURAL)}")
    if config.train.seeds != 1:
        raise ConfigError(f"seeds: train saves one model, got seeds={config.train.seeds}")
    if resume is not None:
        _check_resume(resume, model_name, config)
    if out is not None:
        check_out(out)
    prep = prepare(source, config.data)
    if resume is not None:
        resume.check_log(prep)

    counts = np.bincount(prep.train["item"].to_numpy(), minlength=prep.encoded.n_items + 1)
    model = compare.model_for(model_name, prep, config)
    base = Trained(model_name, model, config,
                   data.Encoded(prep.train.select(_train_columns(model)),
                                prep.encoded.user_ids, prep.encoded.item_ids),
                   None, counts.astype(np.int64), None, jsonio.to_jsonable(prep.info))

    def on_epoch(fs: training.FitState) -> None:  # before fit's next step reuses the arrays
        save(out, dataclasses.replace(base, state=fs))

    _, result = compare.fit_neural(model_name, prep, config, log=log, progress=progress,
                                   resume=None if resume is None else resume.state,
                                   on_epoch=None if out is None else on_epoch)
    done = dataclasses.replace(base, state=result.state)
    users = predict.final_states(done.model, done.params, prep.train,
                                 n_users=prep.encoded.n_users, batch_size=config.train.batch_size,
                                 window=compare.EVAL_WINDOW, targets=done.targets)
    done = dataclasses.replace(done, users=users)
    if out is not None:
        save(out, done)
    return done


def _check_resume(resume: Trained, model_name: str, config: Config) -> None:
    if model_name != resume.name:
        raise ConfigError(f"the checkpoint holds model {resume.name}, not {model_name}")
    same = dataclasses.replace(config, train=dataclasses.replace(
        config.train, epochs=resume.config.train.epochs))
    if same != resume.config:
        raise ConfigError("a resumed run keeps its configuration; only train.epochs may change")
    done = resume.state.epoch
    if resume.complete and config.train.epochs <= done:
        raise ConfigError(f"epochs: the checkpoint has trained {done} epoch(s) already; give "
                          f"more than {done} to train on")


# ------------------------------------------------------------------------------------------
# Saving and loading
# ------------------------------------------------------------------------------------------
def _saves(directory: str) -> list[tuple[int, str]]:
    """(number, name) of the complete saves in ``directory``, oldest first."""
    found = [(int(m.group(1)), name) for name in os.listdir(directory)
             if (m := _SAVE.match(name)) and os.path.isdir(os.path.join(directory, name))]
    return sorted(found)


def check_out(directory) -> None:
    """CheckpointError unless ``directory`` can take a checkpoint: missing, empty, or holding
    one (which a new save replaces)."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CheckpointError(f"not a directory: {directory}")
    if os.path.isdir(directory) and os.listdir(directory) and not _saves(directory):
        raise CheckpointError(f"{directory} exists and holds no hrnn-jax checkpoint; give a new "
                              "or empty directory")


def _checkpointer():
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def _key(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    raise TypeError(f"unexpected pytree key {entry!r}")


def _nested(tree) -> dict:
    """``tree`` as nested dicts keyed by its paths, zero-size arrays left out (orbax does not
    write them)."""
    out: dict = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if np.size(leaf) == 0:
            continue
        node = out
        for entry in path[:-1]:
            node = node.setdefault(_key(entry), {})
        node[_key(path[-1])] = leaf
    return out


def _unnested(abstract, nested: dict):
    """The inverse of :func:`_nested` for a tree shaped like ``abstract``."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(abstract)
    out = []
    for path, leaf in leaves:
        if np.size(leaf) == 0:
            out.append(np.zeros(leaf.shape, leaf.dtype))
            continue
        node = nested
        for entry in path:
            node = node[_key(entry)]
        out.append(node)
    return jax.tree_util.tree_unflatten(tree, out)


def save(directory, trained: Trained) -> str:
    """Write ``trained`` as the newest save of checkpoint ``directory`` (created if needed) and
    remove older saves. Returns the path of the save. Synchronous: the arrays are written when
    it returns (``fit`` donates them to its next step)."""
    directory = os.path.abspath(os.fspath(directory))
    check_out(directory)
    os.makedirs(directory, exist_ok=True)
    old = _saves(directory)
    path = os.path.join(directory, f"ckpt-{(old[-1][0] + 1) if old else 1:06d}")
    fs = trained.state
    tree = {"fit": {"train_state": fs.train_state, "rng": fs.rng},
            "train": {c: trained.encoded.events[c].to_numpy().astype(_TRAIN_DTYPES[c])
                      for c in _train_columns(trained.model)},
            "popularity": np.asarray(trained.popularity, np.int64)}
    if fs.best_params is not None:
        tree["fit"]["best_params"] = fs.best_params
    if trained.users is not None:
        tree["users"] = trained.users
    meta = {"format": FORMAT, "library": "hrnn_jax", "model": trained.name,
            "config": trained.config.to_dict(), "epoch": int(fs.epoch),
            "history": jsonio.to_jsonable(list(fs.history)), "best": [float(b) for b in fs.best],
            "bad": int(fs.bad), "best_params": fs.best_params is not None,
            "complete": trained.complete, "data": trained.info,
            "events": trained.encoded.events.height,
            # the item features' width: they are data in the parameters (HRNN-meta)
            "item_features": getattr(trained.model, "n_features", 0),
            "feedback_levels": getattr(trained.model, "feedback_levels", 0),
            "user_ids": [str(u) for u in trained.encoded.user_ids],
            "item_ids": [None] + [str(i) for i in trained.encoded.item_ids[1:]]}
    _checkpointer().save(path, args=ocp.args.Composite(
        arrays=ocp.args.PyTreeSave(_nested(jax.tree_util.tree_map(np.asarray, tree))),
        meta=ocp.args.JsonSave(meta)))
    for _, name in old:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    for name in os.listdir(directory):  # saves that an interrupted run left half-written
        if name.startswith("ckpt-") and _TMP in name:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return path


def _latest(directory) -> str:
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    saves = _saves(directory)
    if not saves:
        raise CheckpointError(f"{directory} is not an hrnn-jax checkpoint (no ckpt-* save in it)")
    return os.path.join(directory, saves[-1][1])


def saved_config(directory) -> tuple[str, Config]:
    """(model name, configuration) of the newest save in ``directory``, without its arrays."""
    meta = _meta(_latest(directory))
    return meta["model"], Config.from_dict(meta["config"])


def _meta(path: str) -> dict:
    try:
        meta = _checkpointer().restore(path, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
    except (KeyError, ValueError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {data.one_line(err)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an hrnn-jax checkpoint of format {FORMAT}")
    return meta


def load(directory) -> Trained:
    """The newest save of checkpoint ``directory`` (see :func:`save`) as a :class:`Trained`."""
    path = _latest(directory)
    meta = _meta(path)
    config = Config.from_dict(meta["config"])
    item_ids = np.array(meta["item_ids"], dtype=object)
    G = meta.get("item_features", 0)  # the saved parameters hold the features themselves
    model = compare.build_model(meta["model"], len(item_ids) - 1, config.model,
                                n_users=len(meta["user_ids"]),
                                item_features=np.zeros((len(item_ids), G), np.float32)
                                if G else None, feedback_levels=meta.get("feedback_levels", 0))
    t = config.train
    tx = optim.make_optimizer(t.optimizer, t.learning_rate, t.momentum)
    train_state = jax.eval_shape(lambda: training.init_state(
        model, tx, jax.random.PRNGKey(0), t.batch_size, loss=t.loss))
    E, U = meta["events"], len(meta["user_ids"])
    abstract = {"fit": {"train_state": train_state,
                        "rng": jax.eval_shape(lambda: jax.random.PRNGKey(0))},
                "train": {c: jax.ShapeDtypeStruct((E,), _TRAIN_DTYPES[c])
                          for c in _train_columns(model)},
                "popularity": jax.ShapeDtypeStruct((len(item_ids),), np.int64)}
    if meta["best_params"]:
        abstract["fit"]["best_params"] = train_state.params
    if meta["complete"]:
        abstract["users"] = {
            "carry": jax.eval_shape(lambda: model.init_carry(U)),
            "output": jax.ShapeDtypeStruct((U, model.hidden), np.float32),
            "fresh": jax.ShapeDtypeStruct((U,), bool)}
    nested = _nested(abstract)
    restore = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), nested)
    try:
        arrays = _checkpointer().restore(path, args=ocp.args.Composite(
            arrays=ocp.args.PyTreeRestore(nested, restore_args=restore)))["arrays"]
        tree = _unnested(abstract, arrays)
    except (KeyError, ValueError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {data.one_line(err)}") from None
    fit = tree["fit"]
    state = training.FitState(fit["train_state"], fit["rng"],
                              meta["epoch"], tuple(meta["history"]),
                              np.array(meta["best"], np.float64), fit.get("best_params"),
                              meta["bad"])
    encoded = data.Encoded(pl.DataFrame({c: tree["train"][c] for c in _train_columns(model)}),
                           np.array(meta["user_ids"], dtype=object), item_ids)
    return Trained(meta["model"], model, config, encoded, state, tree["popularity"],
                   tree.get("users"), meta["data"])


# ------------------------------------------------------------------------------------------
# Request files of the command line
# ------------------------------------------------------------------------------------------
def _read_table(path, columns: dict) -> pl.DataFrame:
    """A CSV or Parquet file (by extension) with the given columns read as text."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise data.DataError(f"file not found: {path}")
    try:
        if path.lower().endswith((".parquet", ".pq")):
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, schema_overrides={c: pl.String for c in columns})
    except (pl.exceptions.PolarsError, OSError, UnicodeError) as err:
        raise data.DataError(f"cannot parse {path}: {data.one_line(err)}") from None
    missing = [c for c, required in columns.items() if required and c not in frame.columns]
    if missing:
        raise data.DataError(f"missing column(s) {missing} in {path}; columns present: "
                             f"{frame.columns}")
    return frame.with_columns(pl.col(c).cast(pl.String) for c in columns if c in frame.columns)


def read_history(path) -> list[list[str]]:
    """A new user's history from a CSV/Parquet file with columns session, item (raw ids in time
    order): its sessions, in order of first appearance, as lists of raw item ids."""
    frame = _read_table(path, {"session": True, "item": True})
    if frame.height == 0 or frame["item"].null_count() or frame["session"].null_count():
        raise data.DataError(f"{path}: needs at least one row and no empty session or item")
    sessions: dict[str, list[str]] = {}
    for s, i in zip(frame["session"].to_list(), frame["item"].to_list()):
        sessions.setdefault(s, []).append(i)
    return list(sessions.values())


def read_requests(path) -> tuple[list[str], list[list[str] | None]]:
    """Users (column ``user``) and optional sessions in progress (column ``session``: raw item
    ids separated by spaces; empty: none) from a CSV/Parquet file."""
    frame = _read_table(path, {"user": True, "session": False})
    if frame.height == 0 or frame["user"].null_count():
        raise data.DataError(f"{path}: needs at least one row and a user on every row")
    text = frame["session"].to_list() if "session" in frame.columns else [None] * frame.height
    return frame["user"].to_list(), [s.split() if s and s.split() else None for s in text]


def write_table(frame: pl.DataFrame, path) -> None:
    """Write ``frame`` as CSV or Parquet, by the extension of ``path``."""
    path = os.fspath(path)
    if path.lower().endswith((".parquet", ".pq")):
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
