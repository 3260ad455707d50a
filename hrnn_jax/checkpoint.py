"""Train one neural model, save it and load it back (``hrnn_jax.trained.Trained``).

    trained = checkpoint.train("log.csv", "hrnn-init", Config(...), out="model/")
    model = HRNN(n, nn.OptimizedLSTMCell(64), user_cell=nn.MGUCell(64), mode="all")
    trained = checkpoint.train("log.csv", model, config, optimizer=optax.adamw(1e-3), out=DIR)
    trained = hrnn_jax.load("model/")                  # load(DIR, optimizer=tx) to resume it
    trained.recommend("u17", k=10)

The command line's ``hrnn-jax train``, ``evaluate`` and ``recommend`` are thin layers over these.

A checkpoint directory holds one or more saves ``ckpt-NNNNNN`` (the highest number is the newest;
older ones are removed once a newer one is complete). Each save is one orbax checkpoint, written
to a temporary name and renamed when complete, so an interrupted save never hides the previous
one. It has two items:

* ``arrays`` (orbax PyTree): ``fit`` -- the :class:`~hrnn_jax.training.FitState`'s arrays
  (``params``, ``carry``, ``step``, ``rng``, the optimiser state's leaves in order as ``opt``,
  ``best_params`` when a validation ran); ``train`` -- the training part's events as
  item/user/session codes (int32 [E]); ``popularity`` -- training events per item code (int64
  [N+1]); for a model that reads the time to the predicted event (HRNN-meta) also the events'
  ``time`` (float64 [E]), and their ``value`` or ``event_code`` with feedback; and, once training
  has ended, ``users`` -- :func:`hrnn_jax.evaluation.predict.final_states` of the training part.
  Containers are saved as nested dicts and rebuilt from the model on load (zero-size arrays, e.g.
  HRNN Init's context, are not written).
* ``meta`` (orbax JSON): format, model name, the model's structure (``hrnn_jax.models.spec``:
  every nested cell included, so any model built from library parts or registered by a user
  loads without the registry), ``Config.to_dict()``, the optimiser's source (the configuration's,
  or a transformation given to ``train``) and its state's tree structure, epoch, per-epoch
  records, best, bad, ``complete``, the data summary, and the raw ids as JSON lists of strings:
  ``user_ids`` (user code u at position u) and ``item_ids`` (item code i at position i; position
  0, the padding, is null).

The optimiser state is restored only into the transformation that made it: the configuration's,
or the one given to :func:`load`; any other (adamw's state where adam's is expected) is a
CheckpointError, never a silent substitute. Without the transformation of a run that had its own,
the model loads for ``recommend`` and ``evaluate`` but cannot resume.

A model trained on an encoded log (``train`` of a ``data.preprocess_parquet`` directory: each
process reads only its share, and only process 0 saves) refers to that directory instead of
holding its data: the meta's ``source`` is its path, and the save has no ``train`` arrays and no
raw ids (``load`` reads the ids from the directory, and fails when it is gone or its
``info.json`` differs from the saved data summary).

A save after every epoch lets an interrupted run continue (``train(..., resume=load(DIR))``, the
CLI's ``--resume``) bit for bit; the final save adds the users' states, which ``recommend`` needs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
from typing import Callable

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import polars as pl

from hrnn_jax import compare, data, jsonio, models, training
from hrnn_jax.config import Config, ConfigError
from hrnn_jax.evaluation import predict, shares
from hrnn_jax.models.spec import SpecError, from_spec, to_spec
from hrnn_jax.trained import TRAIN_DTYPES, CheckpointError, Trained, prepare_log, train_columns
from hrnn_jax.training import optim
from hrnn_jax.training.loop import row_updates_for

FORMAT = 2
_SAVE = re.compile(r"^ckpt-(\d+)$")
_TMP = ".orbax-checkpoint-tmp"


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------
def train(source, model: str | models.Model, config: Config = Config(), *,
          optimizer: optax.GradientTransformation | None = None, out=None,
          resume: Trained | None = None, log: Callable[[str], None] | None = print,
          progress=None) -> Trained:
    """Train one neural model on ``source`` as ``compare`` does, saving it to ``out``.

    Args:
      source: the log: a path, a frame or a ``data.Prepared`` (of ``config.data``); or the
        directory of an encoded log (``data.preprocess_parquet``), read in shares with
        ``config.train.lane_groups`` groups (every process of a run calls ``train`` alike, only
        one with ``out``; ``config.data`` is replaced by the encoding's; no early stopping).
      model: a registered name (``models.model_names()``), or a model built by hand
        (``hrnn_jax.models.Model``: any composition of the library's parts, or your own).
      config: every setting; ``train.seeds`` must be 1 (one model is saved).
      optimizer: an optax transformation instead of the configuration's (``training.fit``).
      out: a checkpoint directory, saved after every epoch and at the end (see the module
        docstring); a directory that exists must be empty or hold a checkpoint (replaced).
      resume: a :func:`load`-ed checkpoint to continue bit for bit: ``model`` and ``config``
        must be its own but for ``train.epochs``, ``optimizer`` its own, and ``source`` the log
        it was trained on.
      log: one line per epoch (``training.fit``'s); progress: as ``fit``'s.

    Returns:
      the :class:`~hrnn_jax.trained.Trained` model, with every user's state at the end of its
      training events.
    """
    name = _model_name(model)
    if config.train.seeds != 1:
        raise ConfigError(f"seeds: train saves one model, got seeds={config.train.seeds}")
    if out is not None:
        check_out(out)
    if _encoded_dir(source):
        return _train_shares(os.path.abspath(os.fspath(source)), name, model, config,
                             optimizer=optimizer, out=out, resume=resume, log=log,
                             progress=progress)
    prep = prepare_log(source, config.data)
    if isinstance(model, str):  # the named model's own training settings (GRU4Rec+'s loss)
        config = compare.config_for(model, config)
    built = compare.model_for(model, prep, config) if isinstance(model, str) else model
    _check_start(built, config, out, resume, optimizer)
    if resume is not None:
        resume.check_log(prep)
    counts = np.bincount(prep.train["item"].to_numpy(), minlength=prep.encoded.n_items + 1)
    base = Trained(name, built, config,
                   data.Encoded(prep.train.select(train_columns(built)),
                                prep.encoded.user_ids, prep.encoded.item_ids),
                   None, counts.astype(np.int64), None, jsonio.to_jsonable(prep.info), optimizer)
    fit_kw = dict(log=log, progress=progress, optimizer=optimizer,
                  resume=None if resume is None else resume.state)
    return _fit_and_save(
        base, out, lambda on_epoch: compare.fit_neural(built, prep, config, on_epoch=on_epoch,
                                                       **fit_kw),
        lambda params: predict.final_states(built, params, prep.train,
                                            n_users=prep.encoded.n_users,
                                            batch_size=config.train.batch_size,
                                            targets=base.targets))


def _check_start(built, config: Config, out, resume: Trained | None, optimizer) -> None:
    """Before training: a model that cannot be saved (with ``out``), and a ``resume`` that does
    not continue this run, fail."""
    if out is not None:
        _spec(built)
    if resume is not None:
        _check_resume(resume, built, config, optimizer)


def _fit_and_save(base: Trained, out, fit: Callable, final_states: Callable) -> Trained:
    """``base`` trained by ``fit(on_epoch)`` (its FitResult; ``on_epoch`` None without
    ``out``), saved to ``out`` after every epoch and, with every user's state
    ``final_states(params)``, at the end."""
    def on_epoch(fs: training.FitState) -> None:  # before fit's next step reuses the arrays
        save(out, dataclasses.replace(base, state=fs))

    result = fit(None if out is None else on_epoch)
    done = dataclasses.replace(base, state=result.state)
    done = dataclasses.replace(done, users=final_states(done.params))
    if out is not None:
        save(out, done)
    return done


def _encoded_dir(source) -> bool:
    """``source`` is a directory of ``data.preprocess_parquet`` (read in shares)."""
    return isinstance(source, (str, os.PathLike)) and data.is_encoded(source)


def _train_shares(out_dir: str, name: str, model, config: Config, *, optimizer, out, resume,
                  log, progress) -> Trained:
    """:func:`train` on the encoded log ``out_dir``: each process reads its share
    (``data.read_share`` with ``config.train.lane_groups``), the model trains on the mesh as
    ``compare.compare_shares``' do, and the users' states are stepped share by share and
    gathered. The checkpoint refers to ``out_dir`` for the ids and the training events
    (``Trained.source``) instead of holding them."""
    compare.check_shares([], config)
    config = dataclasses.replace(config, data=data.read_data_config(out_dir))  # the encoding's
    if isinstance(model, str):
        config = compare.config_for(model, config)
    share = data.read_share(out_dir, config.train.lane_groups,
                            process=(jax.process_index(), jax.process_count()))
    user_ids, item_ids = data.read_ids(out_dir)
    built = models.build_model(model, share.n_items, config.model, n_users=len(user_ids)) \
        if isinstance(model, str) else model
    _check_start(built, config, out, resume, optimizer)
    if resume is not None:
        resume.check_source(out_dir)
    base = Trained(name, built, config, data.Encoded(None, user_ids, item_ids), None,
                   share.item_counts, None, data.read_info(out_dir), optimizer, source=out_dir)
    fit_kw = dict(log=log, progress=progress, optimizer=optimizer,
                  resume=None if resume is None else resume.state)
    return _fit_and_save(
        base, out, lambda on_epoch: compare.fit_share(built, share, config, on_epoch=on_epoch,
                                                      **fit_kw),
        lambda params: shares.share_final_states(built, params, share, len(user_ids),
                                                 batch_size=config.train.batch_size,
                                                 targets=base.targets))


def _model_name(model) -> str:
    """The name a trained model is saved under: its registry name, or its class's."""
    if isinstance(model, str):
        if model not in models.model_names():
            raise ConfigError(f"unknown model {model!r}; train one of "
                              f"{', '.join(models.model_names())}")
        return model
    if not isinstance(model, models.Model):
        raise TypeError(f"train takes a model name or a hrnn_jax.models.Model, got "
                        f"{type(model).__name__}")
    return type(model).__name__


def _spec(model) -> dict:
    try:
        return to_spec(model)
    except SpecError as err:
        raise ConfigError(f"this model cannot be saved: {err}") from None


def _check_resume(resume: Trained, model, config: Config, optimizer) -> None:
    if _spec(model) != _spec(resume.model):
        raise ConfigError(f"the checkpoint holds another model ({resume.name}) than the one "
                          "given")
    same = dataclasses.replace(config, train=dataclasses.replace(
        config.train, epochs=resume.config.train.epochs))
    if same != resume.config:
        raise ConfigError("a resumed run keeps its configuration; only train.epochs may change")
    if resume.state.train_state.opt_state is None:
        raise ConfigError("the checkpoint's optimiser state was not restored: load it with "
                          "load(DIR, optimizer=...) and the optax transformation it was trained "
                          "with")
    if (optimizer is None) != (resume.optimizer is None):
        raise ConfigError("a resumed run keeps its optimiser: give train the optimizer given to "
                          "load (or none, for the configuration's)")
    done = resume.state.epoch
    if resume.complete and config.train.epochs <= done:
        raise ConfigError(f"epochs: the checkpoint has trained {done} epoch(s) already; give "
                          f"more than {done} to train on")


# ------------------------------------------------------------------------------------------
# Saving
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
    """An orbax checkpointer of this process alone: in a run of many processes only process 0
    saves (``train``'s caller gives the others no ``out``), and each process loads by itself,
    so orbax's barriers across processes would wait for processes that never come."""
    alone = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                               active_processes={jax.process_index()})
    handler = ocp.CompositeCheckpointHandler(
        composite_options=ocp.CompositeOptions(multiprocessing_options=alone),
        arrays=ocp.PyTreeCheckpointHandler(multiprocessing_options=alone),
        meta=ocp.JsonCheckpointHandler(multiprocessing_options=alone))
    return ocp.Checkpointer(handler, multiprocessing_options=alone)


def _key(entry) -> str:
    """A pytree path entry as text (dict key, attribute or position)."""
    tu = jax.tree_util
    if isinstance(entry, tu.DictKey):
        return str(entry.key)
    if isinstance(entry, tu.GetAttrKey):
        return entry.name
    if isinstance(entry, (tu.SequenceKey, tu.FlattenedIndexKey)):
        return str(entry.idx if isinstance(entry, tu.SequenceKey) else entry.key)
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


def _arrays(trained: Trained) -> dict:
    """The arrays of a save (module docstring)."""
    fs, ts = trained.state, trained.state.train_state
    fit = {"params": ts.params, "carry": ts.carry, "step": ts.step, "rng": fs.rng}
    if ts.opt_state is not None:
        fit["opt"] = {str(i): leaf for i, leaf in enumerate(jax.tree_util.tree_leaves(
            ts.opt_state))}
    if fs.best_params is not None:
        fit["best_params"] = fs.best_params
    tree = {"fit": fit, "popularity": np.asarray(trained.popularity, np.int64)}
    if trained.source is None:
        tree["train"] = {c: trained.encoded.events[c].to_numpy().astype(TRAIN_DTYPES[c])
                         for c in train_columns(trained.model)}
    if trained.users is not None:
        tree["users"] = trained.users
    return tree


def _meta_of(trained: Trained) -> dict:
    """The JSON item of a save (module docstring)."""
    fs, opt = trained.state, trained.state.train_state.opt_state
    leaves = [] if opt is None else jax.tree_util.tree_leaves(opt)
    return {"format": FORMAT, "library": "hrnn_jax", "model": trained.name,
            "spec": _spec(trained.model), "config": trained.config.to_dict(),
            "optimizer": "config" if trained.optimizer is None else "given",
            "opt_structure": None if opt is None else str(jax.tree_util.tree_structure(opt)),
            "opt_leaves": [[list(np.shape(a)), str(np.asarray(a).dtype)] for a in leaves],
            "epoch": int(fs.epoch), "records": jsonio.to_jsonable(list(fs.records)),
            "best": [float(b) for b in fs.best], "bad": int(fs.bad),
            "best_params": fs.best_params is not None, "complete": trained.complete,
            "data": trained.info, "source": trained.source, **_ids_of(trained)}


def _ids_of(trained: Trained) -> dict:
    """The meta's ``events`` and raw ids: none for a model of an encoded log (they are in its
    ``source``)."""
    if trained.source is not None:
        return {"events": int(np.sum(trained.popularity))}
    return {"events": trained.encoded.events.height,
            "user_ids": [str(u) for u in trained.encoded.user_ids],
            "item_ids": [None] + [str(i) for i in trained.encoded.item_ids[1:]]}


def save(directory, trained: Trained) -> str:
    """Write ``trained`` as the newest save of checkpoint ``directory`` (created if needed) and
    remove older saves. Returns the path of the save. Synchronous: the arrays are written when
    it returns (``fit`` donates them to its next step)."""
    directory = os.path.abspath(os.fspath(directory))
    check_out(directory)
    meta = _meta_of(trained)
    os.makedirs(directory, exist_ok=True)
    old = _saves(directory)
    path = os.path.join(directory, f"ckpt-{(old[-1][0] + 1) if old else 1:06d}")
    _checkpointer().save(path, args=ocp.args.Composite(
        arrays=ocp.args.PyTreeSave(_nested(jax.tree_util.tree_map(np.asarray,
                                                                  _arrays(trained)))),
        meta=ocp.args.JsonSave(meta)))
    for _, name in old:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    for name in os.listdir(directory):  # saves that an interrupted run left half-written
        if name.startswith("ckpt-") and _TMP in name:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return path


# ------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------
def _latest(directory) -> str:
    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CheckpointError(f"{directory} is a file, not a checkpoint directory")
    if not os.path.isdir(directory):
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    saves = _saves(directory)
    if not saves:
        raise CheckpointError(f"{directory} is not an hrnn-jax checkpoint (no ckpt-* save in it)")
    return os.path.join(directory, saves[-1][1])


def saved_config(directory) -> tuple[str, Config]:
    """(model name, configuration) of the newest save in ``directory``, read without JAX (so a
    deterministic run can still be resumed in a fresh process)."""
    meta = _meta(_latest(directory))
    return meta["model"], Config.from_dict(meta["config"])


def _meta(path: str) -> dict:
    """The JSON item of the save at ``path``, read as plain JSON (orbax writes it as a file
    ``meta/metadata``)."""
    file = os.path.join(path, "meta", "metadata")
    try:
        with open(file, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {data.one_line(err)}") from None
    if not isinstance(meta, dict) or meta.get("library") != "hrnn_jax":
        raise CheckpointError(f"{path} is not an hrnn-jax checkpoint")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an hrnn-jax checkpoint of format {meta.get('format')}; "
                              f"this version reads format {FORMAT}: train the model again")
    return meta


def _abstract(meta: dict, model, config: Config, U: int, N1: int) -> dict:
    """Shapes and dtypes of the arrays of a save (``_arrays``) of ``U`` users and ``N1 - 1``
    items."""
    E = meta["events"]
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    fit = {"params": params,
           "carry": jax.eval_shape(lambda: model.init_carry(config.train.batch_size)),
           "step": jax.ShapeDtypeStruct((), np.int32),
           "rng": jax.eval_shape(lambda: jax.random.PRNGKey(0)),
           "opt": {str(i): jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype))
                   for i, (shape, dtype) in enumerate(meta["opt_leaves"])}}
    if meta["best_params"]:
        fit["best_params"] = params
    abstract = {"fit": fit, "popularity": jax.ShapeDtypeStruct((N1,), np.int64)}
    if meta.get("source") is None:
        abstract["train"] = {c: jax.ShapeDtypeStruct((E,), TRAIN_DTYPES[c])
                             for c in train_columns(model)}
    if meta["complete"]:
        abstract["users"] = {
            "carry": jax.eval_shape(lambda: model.init_carry(U)),
            "output": jax.ShapeDtypeStruct((U, model.output_width), np.float32),
            "fresh": jax.ShapeDtypeStruct((U,), bool)}
    return abstract


def _opt_state(meta: dict, leaves: list, model, config: Config, optimizer, path: str):
    """The optimiser state rebuilt in the structure of the transformation it belongs to (the
    configuration's, or ``optimizer``); None for a run with its own transformation when none is
    given. CheckpointError when the structures differ."""
    if meta["opt_structure"] is None or meta["optimizer"] == "given" and optimizer is None:
        return None
    t = config.train
    tx = optimizer if optimizer is not None else optim.make_optimizer(
        t.optimizer, t.learning_rate, t.momentum)
    step = training.make_train_step(model, tx, loss=t.loss,
                                    row_updates=row_updates_for(t, optimizer))
    expected = jax.eval_shape(lambda: step.init_state(jax.random.PRNGKey(0),
                                                      t.batch_size)).opt_state
    treedef = jax.tree_util.tree_structure(expected)
    if str(treedef) != meta["opt_structure"]:
        which = "the optimizer given" if optimizer is not None else \
            f"the configuration's {t.optimizer}"
        raise CheckpointError(f"the optimiser state in {path} does not fit {which}: saved "
                              f"{meta['opt_structure'][:200]}, expected {str(treedef)[:200]}; "
                              "load it with the optax transformation it was trained with")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _ignore_closed_loop() -> None:
    """When an orbax restore fails, reads still in flight finish on orbax's closed event loop
    and each reports ``RuntimeError('Event loop is closed')`` through ``sys.unraisablehook``,
    beside the CheckpointError that says what is wrong: keep those out of the terminal (every
    other unraisable exception still goes to the hook that was there)."""
    previous = sys.unraisablehook
    if getattr(previous, "hrnn_jax_closed_loop", False):
        return

    def hook(unraisable):
        err = unraisable.exc_value
        if not (isinstance(err, RuntimeError) and str(err) == "Event loop is closed"):
            previous(unraisable)
    hook.hrnn_jax_closed_loop = True
    sys.unraisablehook = hook


def load(directory, *, optimizer: optax.GradientTransformation | None = None) -> Trained:
    """The newest save of checkpoint ``directory`` (see :func:`save`) as a
    :class:`~hrnn_jax.trained.Trained`. ``optimizer``: the optax transformation a run was
    trained with when it was not the configuration's (needed to resume it; module docstring)."""
    path = _latest(directory)
    meta = _meta(path)
    config = Config.from_dict(meta["config"])
    try:
        model = from_spec(meta["spec"])
    except (SpecError, TypeError, ValueError) as err:
        raise CheckpointError(f"cannot rebuild the model of {path}: {data.one_line(err)}") from None
    encoded = _encoded_ids(meta, path)
    abstract = _abstract(meta, model, config, encoded.n_users, encoded.n_items + 1)
    nested = _nested(abstract)
    restore = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), nested)
    _ignore_closed_loop()  # before the restore: a failing read reports from orbax's threads
    try:
        arrays = _checkpointer().restore(path, args=ocp.args.Composite(
            arrays=ocp.args.PyTreeRestore(nested, restore_args=restore)))["arrays"]
        tree = _unnested(abstract, arrays)
    except (KeyError, ValueError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {data.one_line(err)}") from None
    fit = tree["fit"]
    leaves = [fit["opt"][str(i)] for i in range(len(meta["opt_leaves"]))]
    opt_state = _opt_state(meta, leaves, model, config, optimizer, path)
    state = training.FitState(
        training.TrainState(fit["params"], opt_state, fit["carry"], fit["step"]), fit["rng"],
        meta["epoch"], tuple(meta["records"]), np.array(meta["best"], np.float64),
        fit.get("best_params"), meta["bad"])
    if "train" in tree:
        encoded = dataclasses.replace(encoded, events=pl.DataFrame(
            {c: tree["train"][c] for c in train_columns(model)}))
    return Trained(meta["model"], model, config, encoded, state, tree["popularity"],
                   tree.get("users"), meta["data"], optimizer, source=meta.get("source"))


def _encoded_ids(meta: dict, path: str) -> data.Encoded:
    """The raw ids of a save (events None): from the meta, or from the encoded log the model
    was trained on (CheckpointError when it is gone or has changed since)."""
    source = meta.get("source")
    if source is None:
        return data.Encoded(None, np.array(meta["user_ids"], dtype=object),
                            np.array(meta["item_ids"], dtype=object))
    if not data.is_encoded(source):
        raise CheckpointError(f"{path} was trained on the encoded log {source}, which is not "
                              "there any more; the checkpoint reads its ids and training events "
                              "from it")
    if jsonio.to_jsonable(data.read_info(source)) != meta["data"]:
        raise CheckpointError(f"the encoded log {source} has changed since {path} was trained "
                              "on it (its info.json differs)")
    return data.Encoded(None, *data.read_ids(source))
