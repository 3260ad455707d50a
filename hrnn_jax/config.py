"""One configuration: frozen dataclasses that are the single source of defaults and names.

    Config(data=DataConfig(...), model=ModelConfig(...), train=TrainConfig(...),
           eval=EvalConfig(...))

* The library takes these names: ``data.read_interactions(path, user_col=...)``,
  ``data.prepare(raw, DataConfig(...))``, ``training.fit(model, train, TrainConfig(...))``,
  ``predict.evaluate_model(..., ks=..., ties=...)``.
* The command line is generated from them (:func:`add_arguments`): field ``batch_size`` is flag
  ``--batch-size``, its help text is the field's ``help`` metadata, its checks (``choices`` from a
  ``Literal`` type, ``min``/``max`` bounds) are the field's. A boolean field ``dedupe`` is
  ``--dedupe`` / ``--no-dedupe``; a tuple is a comma list; ``none`` clears an optional value.
  A field's ``aliases`` are further spellings of its flag (``--split`` for ``--protocol``).
* A TOML file (``--config run.toml``, read with ``tomllib``) sets fields by section::

      [data]
      min_item_support = 20
      [train]
      epochs = 5

  Flags override the file, which overrides the defaults (:func:`from_sources`).
* The JSON ``config`` of every result is ``dataclasses.asdict`` of the :class:`Config` used.

Every value is checked by one validator (:func:`check_field`), whichever way it arrives.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import math
import typing
from typing import Any, Literal

import tomllib

from hrnn_jax import choices

# The option types of the fields (``Literal``s) live beside the code that reads them; a section's
# are looked up in these modules when the section is first checked (they import this module, so
# it cannot import them at its top).
if typing.TYPE_CHECKING:  # the same names for readers and type checkers
    from hrnn_jax.cells.gru import GRUReset
    from hrnn_jax.data.pipeline import Catalogue
    from hrnn_jax.data.read import LogFormat, TimeUnit
    from hrnn_jax.data.splits import Protocol
    from hrnn_jax.evaluation.metrics import Ties
    from hrnn_jax.models.contract import TrainLanes
    from hrnn_jax.models.hrnn import ContextGates, ContextGrad, FirstSession
    from hrnn_jax.models.registry import Feedback, HCRNNAttention
    from hrnn_jax.precision import MatmulPrecision
    from hrnn_jax.training.loop import RowUpdateChoice
    from hrnn_jax.training.losses import Activation, Loss
    from hrnn_jax.training.optim import Optimizer
OPTION_MODULES = {
    "DataConfig": ("hrnn_jax.data.read", "hrnn_jax.data.splits", "hrnn_jax.data.pipeline"),
    "ModelConfig": ("hrnn_jax.models.hrnn", "hrnn_jax.models.registry"),
    "TrainConfig": ("hrnn_jax.training.losses", "hrnn_jax.training.optim",
                    "hrnn_jax.training.loop", "hrnn_jax.precision", "hrnn_jax.models.contract"),
    "EvalConfig": ("hrnn_jax.evaluation.metrics",),
}


class ConfigError(ValueError):
    """A configuration value (flag, file entry or argument) that is not allowed; names the field."""


def field(default, help: str, *, min: float | None = None, max: float | None = None,
          open_min: bool = False, flag: str | None = None, aliases: tuple[str, ...] = ()):
    """A dataclass field with its help text and bounds (``min``/``max`` inclusive unless
    ``open_min``). ``flag`` overrides the generated flag name (without ``--``); ``aliases``:
    further spellings of the flag (without ``--``), e.g. ``--split`` for ``--protocol``."""
    meta = {"help": help, "min": min, "max": max, "open_min": open_min, "flag": flag,
            "aliases": aliases}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata=meta)


# ------------------------------------------------------------------------------------------
# The sections
# ------------------------------------------------------------------------------------------
class _Checked:
    """Every field is checked (and converted: a list to a tuple) when a section is made."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_field(type(self), f.name, getattr(self, f.name)))


@dataclasses.dataclass(frozen=True)
class DataConfig(_Checked):
    """Reading, sessions, filters and the train/test split (Quadrana et al. Sec. 4.1)."""

    format: LogFormat = field("table", "format of the log: table (CSV/TSV/Parquet/'::' text, "
                                       "read with the column flags below) or steam (Kang & "
                                       "McAuley's Steam dumps, .gz or plain: one Python-literal "
                                       "dict per line; user_id or username, product_id, date)")
    user_col: str = field("user", "column of user ids")
    item_col: str = field("item", "column of item ids")
    time_col: str = field("time", "column of timestamps: numbers (see --time-unit), or dates and "
                                  "ISO-8601 text")
    sep: str | None = field(None, "field separator, any length ('\\t' or 'tab' for a tab); "
                                  "default ',', tab for .tsv, '::' for .dat (MovieLens)")
    columns: tuple[str, ...] | None = field(
        None, "the file has no header: names of its columns in order, comma-separated "
              "(e.g. user,item,rating,time)")
    time_unit: TimeUnit = field("s", "unit of a numeric time column")
    event_col: str | None = field(None, "column of the interaction type (click, purchase, ...)")
    value_col: str | None = field(None, "numeric column carried as 'value' (rating, duration)")
    session_gap: float = field(1800.0, "idle seconds that start a new session", min=0.0,
                               open_min=True)
    dedupe: bool = field(False, "drop repeated interactions with the same item (and type, with "
                                "--event-col) within a session, keeping the first (Quadrana et "
                                "al. 4.1)")
    max_value_only: bool = field(False, "keep only the events at the log's maximum --value-col, "
                                        "e.g. ratings as implicit feedback (Song et al.'s "
                                        "MovieLens: the maximum rating)")
    min_item_support: int = field(5, "drop items with fewer events", min=1)
    min_session_len: int = field(2, "drop sessions with fewer events", min=1)
    min_sessions: int = field(1, "drop users with fewer sessions", min=1)
    min_user_events: int = field(1, "drop users with fewer events", min=1)
    protocol: Protocol = field("last-session", "train/test split: each user's last session, "
                                               "last event, or last fraction of events; or "
                                               "users: a random fraction of the users (all "
                                               "their events) in test (Ma & Narayanaswamy)",
                               aliases=("split",))
    test_fraction: float = field(0.05, "--protocol temporal: share of each user's events in test "
                                       "(and in validation); --protocol users: share of the "
                                       "users in test (the papers' 0.2), and of the training "
                                       "users in validation", min=0.0, max=0.5, open_min=True)
    split_seed: int = field(0, "seed of the random user split (--protocol users)", min=0)
    catalogue: Catalogue = field("train", "the items every model ranks: those of the training "
                                          "part (test events of other items removed), or every "
                                          "item of the filtered log (Ma & Narayanaswamy's "
                                          "simulations: every test event kept)")
    item_features: str | None = field(None, "item-feature file: MovieLens movies.dat or "
                                            "movies.csv (or columns movieId,genres): its items "
                                            "join the catalogue even without training events, "
                                            "and hrnn-meta scores items from their genres too "
                                            "(cold items from genres alone)")


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Checked):
    """The models' sizes and the options of HRNN (``models.HRNN``) and Item-KNN."""

    hidden: int = field(100, "units of each GRU layer (session and user level)", min=1)
    gru_reset: GRUReset = field(
        "before", "GRU layers of gru, gru4rec+, concat, hrnn-*, hrnn-meta: the reset gate on the "
                  "state before the recurrent product, U (r * h) (before: Cho et al. 2014's, "
                  "GRU4Rec's and the HRNN authors' code) or on the product, r * (U h + b) "
                  "(after: flax's and cuDNN's form)")
    embed_dim: int | None = field(None, "gru, concat, hrnn: width of a learned item embedding "
                                        "(none: one-hot items, as GRU4Rec)", min=1)
    dropout_user: float = field(0.0, "HRNN: dropout on the user GRU's output", min=0.0, max=0.99)
    dropout_session: float = field(0.1, "dropout on the session GRU's outputs", min=0.0,
                                   max=0.99)
    dropout_init: float = field(0.0, "HRNN: dropout on the session initialisation (Eq. 4)",
                                min=0.0, max=0.99)
    context_gates: ContextGates = field(
        "rz", "HRNN All: gates of the session GRU that receive W_c c: reset and update (rz, as "
              "hgru4rec) or also the candidate (rzn)")
    first_session: FirstSession = field(
        "init", "HRNN: a user's first session starts from Eq. 4 with c = 0 (init) or zeros "
                "(zero, as hgru4rec)")
    context_grad: ContextGrad = field(
        "step", "HRNN All: W_c learns from every step (step, as hgru4rec) or only in the window "
                "where its session starts (session)")
    neighbours: int = field(100, "Item-KNN neighbours per item", min=1)
    dropout_item: float = field(0.2, "user-based GRUs: dropout on the item vector (keep 0.8, "
                                     "Donkers et al. Table 1)", min=0.0, max=0.99)
    dropout_user_vector: float = field(0.5, "user-based GRUs: dropout on the user vector (keep "
                                            "0.5, Donkers et al. Table 1)", min=0.0, max=0.99)
    l2_user: float = field(0.01, "user-based GRUs: weight of the L2 penalty on the user side",
                           min=0.0)
    omega: float = field(0.2, "rectified user-based GRU: leak of Eq. 6's middle case", min=0.0,
                         max=1.0)
    decay: float = field(1.0, "decaying Item-KNN: decay rate per day of a history event's age "
                              "(weight exp(-decay * days before the target))", min=0.0)
    factors: int = field(20, "MF (bpr), sequential MF, FMC, FPMC: latent factors", min=1)
    mf_epochs: int = field(30, "MF (bpr), sequential MF, FMC, FPMC: passes over the training "
                               "events", min=1)
    mf_learning_rate: float = field(0.01, "MF (bpr), sequential MF, FMC, FPMC: SGD learning rate",
                                    min=0.0,
                                    open_min=True)
    mf_window: int = field(2, "sequential MF: previous items in the window (FPMC-style)", min=1)
    contexts: int = field(50, "HCRNN: global contexts K (50 as the authors' code)", min=1)
    kl_weight: float = field(0.001, "HCRNN: weight of the KL term of theta's inference "
                                    "(0.001 as the authors' code)", min=0.0)
    attention_history: int = field(50, "HCRNN +Bi, NARM, STAMP: past steps the attention reads",
                                   min=1)
    hcrnn_attention: HCRNNAttention = field(
        "none", "hcrnn-1/2/3 (not -bi): none, the decoder reads h_t as the paper describes; "
                "additive, one attention over past h_j as the authors' code that produced the "
                "paper's rows")
    feedback: Feedback = field("none", "hrnn-meta: feedback joined to the input: each event's "
                                       "value (--value-col: a rating) or its type (--event-col: "
                                       "click/purchase, a learned row per type)")


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Checked):
    """Training (``training.fit``)."""

    epochs: int = field(10, "training epochs", min=1)
    batch_size: int = field(50, "parallel user lanes per mini-batch", min=1)
    window: int = field(1, "steps per training step; 1 = one step per mini-batch, as the "
                           "original code", min=1)
    optimizer: Optimizer = field("adagrad", "update rule")
    learning_rate: float = field(0.1, "learning rate", min=0.0, open_min=True)
    momentum: float = field(0.0, "momentum", min=0.0, max=0.99)
    loss: Loss = field("top1", "ranking loss over in-batch (and sampled) negatives, or full "
                               "softmax; bpr-max and top1-max: GRU4Rec+ (Hidasi & Karatzoglou "
                               "2018)")
    n_negatives: int = field(0, "extra negatives per step, shared by its lanes, drawn from "
                                "popularity^--sample-alpha (GRU4Rec+ uses 2048)", min=0)
    sample_alpha: float = field(1.0, "exponent of the popularity that --n-negatives are drawn "
                                     "from: 1 by popularity, 0 uniformly (GRU4Rec's default "
                                     "0.5)", min=0.0)
    score_reg: float = field(1.0, "bpr-max: weight of the score regularisation sum_j s_j r_j^2 "
                                  "(GRU4Rec's bpreg)", min=0.0)
    logq: bool = field(False, "logQ correction (Yi et al., RecSys 2019): subtract log Q(j), the "
                              "probability of drawing item j from popularity^--sample-alpha, "
                              "from every candidate's score in the loss; needs --n-negatives")
    clip: float | None = field(None, "clip gradients to this global norm (none: no clipping)",
                               min=0.0, open_min=True)
    row_updates: RowUpdateChoice = field(
        "auto", "update the item (and user) tables only on the rows a batch touches: auto where "
                "that equals the dense update (adagrad without momentum), sparse with any rule "
                "(the lazy variant for momentum and adam, as GRU4Rec's official code), or dense")
    activation: Activation = field("linear", "output activation g(.) of the scores in the "
                                             "training loss; tanh as hgru4rec; elu with "
                                             "bpr-max, as GRU4Rec+")
    elu_alpha: float = field(0.5, "--activation elu: its alpha (GRU4Rec's elu_param)", min=0.0,
                             open_min=True)
    train_lanes: TrainLanes = field(
        "auto", "targets the session models learn: auto, those they are evaluated on (under "
                "leave-one-out, temporal and user splits every model runs over whole user "
                "sequences), or within-session, only the next items within a session as "
                "Quadrana et al. train (GRU4Rec, HRNN; whole-sequence models unchanged)")
    patience: int = field(0, "> 0: early stopping on a validation split of the training part "
                             "after this many epochs without improvement", min=0)
    seed: int = field(0, "random seed (initialisation, dropout, data order)", min=0)
    seeds: int = field(1, "train this many seeds (seed, seed+1, ...) of each neural model side "
                          "by side in one vmapped step", min=1)
    precision: MatmulPrecision = field("default", "precision of the approximate matrix "
                                                  "products (hrnn_jax.precision)")
    deterministic: bool = field(False, "ask XLA for deterministic GPU kernels")
    mesh: str | None = field(None, "device mesh AXIS=SIZE,..., e.g. data=4,items=2: lanes over "
                                   "data, item and user tables by rows over items, seeds over "
                                   "seeds (hrnn_jax.parallel; on CPU, host devices come from "
                                   "XLA_FLAGS=--xla_force_host_platform_device_count=N); none: "
                                   "one device")
    lane_groups: int = field(1, "lay the lanes out in this many independent groups of users "
                                "(a divisor of batch_size), so that under many processes each "
                                "one reads only its groups' users (data.read_share)", min=1)

    def __post_init__(self):
        super().__post_init__()
        if self.batch_size % self.lane_groups:
            raise ConfigError(f"lane_groups ({self.lane_groups}) must divide batch_size "
                              f"({self.batch_size})")
        if self.mesh is not None:
            from hrnn_jax.parallel.mesh import parse_mesh  # imports jax: not at the top
            try:
                parse_mesh(self.mesh)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.logq and not self.n_negatives:
            raise ConfigError("logq: the logQ correction is for sampled negatives; set "
                              "n_negatives > 0 (--n-negatives)")


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Checked):
    """Evaluation (``predict.evaluate_model``, ``evaluation.rank_chunks``)."""

    ks: tuple[int, ...] = field((5, 20), "cut-offs of the metrics, comma-separated", min=1)
    ties: Ties = field("optimistic", "rank of the target among equal scores")
    exclude_seen: bool = field(False, "never recommend items the user has already interacted "
                                      "with")
    rank_top_items: int | None = field(
        None, "rank each target against the N items with the most training events only "
              "(Quadrana et al.'s VIDEOXXL, Table 5: 50000); a target outside them is still "
              "ranked, against them, as GRU4Rec's evaluation (none: the whole catalogue)", min=1)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(_Checked):
    """The demo's generated log (``synthetic.generate``)."""

    users: int = field(1000, "users of the synthetic log", min=1)
    items: int = field(1000, "items of the synthetic log", min=20)
    data_seed: int = field(0, "seed of the synthetic log", min=0)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig,
            "synthetic": SyntheticConfig}


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole configuration of a command or experiment, one section per concern."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """The inverse of :meth:`to_dict` (lists become tuples); every value is checked."""
        parts = {}
        for name, section in SECTIONS.items():
            values = dict(d.get(name, {}))
            parts[name] = make(section, values, where=name)
        return cls(**parts)


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------
@functools.cache
def _hints(cls) -> dict[str, Any]:
    """The field types of section ``cls``, its option types taken from ``OPTION_MODULES``."""
    names: dict[str, Any] = {}
    for module in OPTION_MODULES.get(cls.__name__, ()):
        names.update(vars(importlib.import_module(module)))
    return typing.get_type_hints(cls, localns=names)


def _base(tp):
    """(core type, optional): ``X | None`` -> (X, True)."""
    args = typing.get_args(tp)
    if type(None) in args and typing.get_origin(tp) is not Literal:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def check_field(cls, name: str, value):
    """``value`` converted and checked for field ``name`` of section ``cls``; ConfigError names
    the field and says what is allowed."""
    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    tp, optional = _base(_hints(cls)[name])
    meta = f.metadata
    label = meta.get("flag") or name
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{label}: a value is required")
    if typing.get_origin(tp) is Literal:
        try:
            return choices.check(label, value, tp)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if typing.get_origin(tp) is tuple:
        item_tp = typing.get_args(tp)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{label}: expected a non-empty list, got {value!r}")
        items = tuple(_scalar(label, item_tp, v, meta) for v in value)
        return tuple(sorted(set(items))) if item_tp is int else items
    return _scalar(label, tp, value, meta)


def _scalar(label, tp, value, meta):
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{label}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{label}: expected a number, got {value!r}")
        try:
            number = tp(value)
        except (TypeError, ValueError):
            kind = "an integer" if tp is int else "a number"
            raise ConfigError(f"{label}: expected {kind}, got {value!r}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{label}: expected an integer, got {value!r}")
        lo, hi, open_lo = meta.get("min"), meta.get("max"), meta.get("open_min")
        if isinstance(number, float) and math.isnan(number):
            raise ConfigError(f"{label}: expected a number, got nan")
        if lo is not None and (number <= lo if open_lo else number < lo):
            raise ConfigError(f"{label}: must be {'>' if open_lo else '>='} {lo:g}, got {value}")
        if hi is not None and number > hi:
            raise ConfigError(f"{label}: must be <= {hi:g}, got {value}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{label}: expected text, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {label}")


def default(cls, name: str):
    """The default of field ``name`` of section ``cls``: where a class of the library has the same
    setting (``HCRNN.n_contexts`` is ``ModelConfig.contexts``), its default is read from here, so
    each default is written once."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].default


def make(cls, values: dict, where: str = ""):
    """Section ``cls`` from a dict of field values (unknown names and bad values: ConfigError)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        place = f" in [{where}]" if where else ""
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}{place}; known: "
                          f"{', '.join(sorted(names))}")
    return cls(**values)


def load_toml(path) -> dict:
    """The sections of a TOML config file as nested dicts (ConfigError on a bad file)."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    bad = sorted(k for k in raw if k not in SECTIONS or not isinstance(raw[k], dict))
    if bad:
        raise ConfigError(f"config file {path}: unknown section(s) {', '.join(bad)}; known: "
                          f"{', '.join(SECTIONS)}")
    return raw


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------
def flag_of(f: dataclasses.Field) -> str:
    return "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))


def _parse(cls, name):
    """argparse ``type`` for a field: text -> checked value (``none`` clears optional ones)."""
    tp, optional = _base(_hints(cls)[name])

    def parse(text: str):
        if optional and text.strip().lower() == "none":
            return None
        if tp in (int, float) or typing.get_origin(tp) is tuple:
            value = text
        else:
            value = {"\\t": "\t", "tab": "\t"}.get(text, text) if name == "sep" else text
        try:
            return check_field(cls, name, value)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None

    parse.__name__ = getattr(tp, "__name__", "value")
    return parse


def add_arguments(parser: argparse.ArgumentParser, section: str, *, skip=()) -> None:
    """Flags for every field of ``SECTIONS[section]`` (but ``skip``), as an argument group; their
    values land in ``args`` as ``<section>.<field>`` and only when given (no argparse defaults, so
    a config file is not overridden by them)."""
    cls = SECTIONS[section]
    group = parser.add_argument_group(f"{section} ({cls.__name__})", cls.__doc__)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, _ = _base(_hints(cls)[f.name])
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{f.metadata['help']} (default: {shown})".replace("%", "%%")
        kw = dict(dest=f"{section}.{f.name}", default=argparse.SUPPRESS, help=help_text)
        flags = [flag_of(f)] + [f"--{a}" for a in f.metadata.get("aliases", ())]
        if tp is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(tp) is Literal:
            group.add_argument(*flags, choices=choices.options(tp), **kw)
        else:
            group.add_argument(*flags, type=_parse(cls, f.name), metavar=f.name.upper(), **kw)


def from_sources(args: argparse.Namespace, toml: dict | None = None) -> Config:
    """The :class:`Config` of a command: defaults, then the TOML sections, then the flags given."""
    values = {name: dict((toml or {}).get(name, {})) for name in SECTIONS}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            values[section][name] = value
    return Config.from_dict(values)
