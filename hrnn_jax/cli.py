"""Command-line interface: ``hrnn-jax compare DATA``, ``hrnn-jax demo``, ``train``,
``evaluate`` and ``recommend`` (one model's checkpoint), and ``preprocess`` (a Parquet log larger
than memory into encoded Parquet, ``data.preprocess_parquet``; ``compare DIR`` and ``train DIR`` of
such a directory have each process read only its share, ``compare.compare_shares`` and
``checkpoint.train``).

Every setting is a field of ``hrnn_jax.config`` and its flag is generated from it (``--batch-size``
for ``TrainConfig.batch_size``); ``--config run.toml`` sets fields by section and flags override
the file. ``compare`` and ``demo`` run the pipeline of ``hrnn_jax.compare`` (prepare -> compare ->
table): the table goes to stdout, per-epoch progress to stderr (``--quiet`` silences it; a live
display on a terminal, ``hrnn_jax.progress``), ``--json PATH`` writes the setting, data summary,
metrics and the configuration (``Config.to_dict``), and ``--plot DIR`` draws the breakdown
figures and training-loss curves (``hrnn_jax.plots``; matplotlib, checked before any work).

Errors. Bad input (a file, a column, a flag or config value) ends with one line
``hrnn-jax: error: <message>`` on stderr and exit status 2; a training loss that becomes NaN or
infinite (``training.NonFiniteLossError``: a run that diverged) ends the same way with status 1.
Anything else is a bug of the library: it shows its traceback (status 1). ``main(argv)`` returns
the exit status instead of exiting.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from hrnn_jax import (
    checkpoint,
    data,
    jsonio,
    models,
    parallel,
    plots,
    precision,
    request_files,
    tables,
    training,
)
from hrnn_jax import compare as cmp
from hrnn_jax import config as conf
from hrnn_jax.papers import quadrana2017
from hrnn_jax.parallel import distributed
from hrnn_jax.progress import Reporter
from hrnn_jax.trained import prepare_log

PROG = "hrnn-jax"
DEFAULT_MODELS = ",".join(quadrana2017.MODELS)
CHECK_K = 5  # the demo's claim: HRNN Init > GRU > POP on recall@5 and mrr@5
# The demo's log has no rare items to filter: its own default, before any file or flag.
DEMO_BASE = {"data": {"min_item_support": 1}}


class UsageError(ValueError):
    """A bad command-line value (reported like any other input error)."""


INPUT_ERRORS = (data.DataError, conf.ConfigError, UsageError, OSError)


class _Parser(argparse.ArgumentParser):
    """argparse, but every error is one line ``hrnn-jax: error: ...`` and exit status 2, and
    only full flag names are taken (no prefixes: ``--k`` was once ambiguous with
    ``--kl-weight``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)


# ------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------
def _models(text: str) -> tuple[str, ...]:
    names = []
    for p in text.split(","):
        name = p.strip().lower().replace("_", "-")
        if name and name not in names:
            names.append(name)
    if not names:
        raise argparse.ArgumentTypeError(f"no model names in {text!r}")
    unknown = [n for n in names if n not in cmp.model_names()]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(cmp.model_names())}")
    return tuple(names)


def _model(text: str) -> str:
    names = _models(text)
    if len(names) != 1:
        raise argparse.ArgumentTypeError(f"expected one model name, got {text!r}")
    return names[0]


def add_reference(p: argparse.ArgumentParser) -> None:
    """``--reference MODEL``: the compared model the others are tested against."""
    p.add_argument("--reference", type=_model, default=None, metavar="MODEL",
                   help="test every other model against this one (one of --models): Wilcoxon "
                        "signed-rank and paired t-test on per-test-session recall@k and mrr@k; "
                        "the table marks p < 0.05 (*) and p < 0.01 (**) (default: no test)")


def check_reference(args) -> None:
    """``--reference`` names one of the compared models (before any work)."""
    ref = getattr(args, "reference", None)
    if ref is not None and ref not in args.models:
        raise UsageError(f"--reference: {ref} is not among the compared models "
                         f"({','.join(args.models)}); add it to --models")


def add_config(p: argparse.ArgumentParser, sections, *, skip_data=(),
               processes: bool = True) -> None:
    """``--config``, the flags of the given config sections and (``processes``) those of many
    processes."""
    p.add_argument("--config", metavar="TOML", default=None,
                   help="settings by section ([data], [model], [train], [eval], [synthetic]); "
                        "flags override them")
    for section in sections:
        conf.add_arguments(p, section, skip=skip_data if section == "data" else ())
    if not processes:
        return
    g = p.add_argument_group("many processes (README: Scaling out); none: this process alone, "
                             "or JAX's cluster environment with --num-processes 0")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="address of process 0, which every process connects to")
    g.add_argument("--num-processes", type=int, metavar="N", default=None,
                   help="number of processes (each runs this same command)")
    g.add_argument("--process-id", type=int, metavar="I", default=None,
                   help="this process's index, 0..N-1; only process 0 prints and writes")


def add_output(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="PATH", default=None,
                   help="also write setting, data summary, metrics and configuration as JSON")
    g.add_argument("--quiet", action="store_true",
                   help="no progress display and no per-model/per-epoch lines on stderr")
    g.add_argument("--plot", metavar="DIR", default=None,
                   help="draw the breakdown figures (Recall/MRR by user history length and by "
                        "position in the session) and the training-loss curves as PNG files "
                        f"into DIR (created if missing; needs matplotlib: {plots.INSTALL})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Hierarchical recurrent recommenders in JAX: "
                     "train and compare POP, PPOP, Item-KNN, session GRU, RNN Concat and HRNN.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser("compare", help="compare models on an interaction log (CSV/TSV/Parquet)",
                       description="Read an interaction log, sessionise, filter, split, train "
                                   "and evaluate the chosen models, print a table.")
    c.add_argument("data", metavar="DATA", help="interaction log: .csv, .tsv, .parquet, .dat; "
                                                "or a preprocess output directory, of which each "
                                                "process reads only its share")
    c.add_argument("--models", type=_models, default=None,
                   help=f"comma list from {', '.join(cmp.model_names())} "
                        f"(default: {DEFAULT_MODELS}, Quadrana et al.'s comparison; for an "
                        "encoded log, those of them that run from shares)")
    add_reference(c)
    add_config(c, ("data", "model", "train", "eval"))
    add_output(c)

    d = sub.add_parser("demo", help="compare models on built-in synthetic data",
                       description="Generate a synthetic log with session and user structure "
                                   "and compare the models on it; reports whether HRNN Init > "
                                   "session GRU > POP on Recall@5 and MRR@5.")
    d.add_argument("--models", type=_models, default=_models(DEFAULT_MODELS),
                   help=f"comma list from {', '.join(cmp.model_names())} "
                        f"(default: {DEFAULT_MODELS}, Quadrana et al.'s comparison)")
    add_reference(d)
    add_config(d, ("synthetic", "data", "model", "train", "eval"), skip_data=data.READING)
    add_output(d)
    add_checkpoint_commands(sub)
    add_preprocess_command(sub)
    return parser


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
def config_of(args) -> conf.Config:
    """The command's :class:`~hrnn_jax.config.Config`: its defaults, the TOML file, the flags."""
    base = DEMO_BASE if args.command == "demo" else {}
    toml = conf.load_toml(args.config) if getattr(args, "config", None) else {}
    merged = {s: {**base.get(s, {}), **toml.get(s, {})} for s in conf.SECTIONS}
    return conf.from_sources(args, merged)


def summary_line(info: dict) -> str:
    dropped = info.get("dropped", {})
    parts = [f"data: {info['users']} users, {info['items']} items, {info['sessions']} sessions, "
             f"{info['events']} events; train {info['train_events']}, test {info['test_events']}"]
    if "evaluated" in info:
        parts.append(f" ({info['evaluated']} predictions scored)")
    if dropped:
        parts.append("; dropped rows: " + ", ".join(f"{k}={v}" for k, v in dropped.items()))
    if "catalogue" in info:
        cat = info["catalogue"]
        parts.append(f"; catalogue: {cat['items']} items of the training part "
                     f"({cat['removed_items']} items found only outside it removed)")
    return "".join(parts)


def check_line(results: dict, k: int = CHECK_K) -> str:
    """The demo's claim, HRNN Init > GRU > POP on recall@k and mrr@k, as one line."""
    need = ("hrnn-init", "gru", "pop")
    metrics = (f"recall@{k}", f"mrr@{k}")
    if not all(n in results for n in need) or not all(m in results["pop"] for m in metrics):
        return (f"check HRNN Init > GRU > POP on recall@{k} and mrr@{k}: not run "
                f"(needs models {', '.join(need)} and --ks including {k})")
    parts, held = [], True
    for m in metrics:
        a, b, c = (results[n][m] for n in need)
        ok = a > b > c
        held &= ok
        parts.append(f"{m} {a:.4f} {'>' if a > b else '<='} {b:.4f} {'>' if b > c else '<='} "
                     f"{c:.4f}")
    verdict = "HELD" if held else "DID NOT HOLD"
    return f"check HRNN Init > GRU > POP: {verdict} ({'; '.join(parts)})"


def check_json_path(path: str | None, flag: str = "--json") -> None:
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag}: directory does not exist: {parent}")
    if os.path.isdir(path):
        raise UsageError(f"{flag}: is a directory: {path}")


def check_plot_dir(path: str | None, flag: str = "--plot") -> None:
    """Before any work: matplotlib importable and ``path`` a writable directory (created)."""
    if path is None:
        return
    try:
        plots.require()
    except plots.MissingDependency:
        raise UsageError(f"{flag} needs matplotlib: {plots.INSTALL}") from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag}: not a directory: {path}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create directory {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: directory is not writable: {path}")


def draw_plots(directory: str, results: dict, ranked: dict) -> list[str]:
    """The breakdown figures of ``results`` and the loss curves of the neural models."""
    paths = plots.breakdown_figures(results, directory)
    histories = {name: r.records for name, r in ranked.items() if r.records}
    if histories:
        paths.append(plots.loss_curves(histories, directory))
    return paths


def setting() -> dict:
    """Where and how the numbers were computed: backend, matmul precision, deterministic flag."""
    import jax

    return {"backend": jax.default_backend(), "precision": precision.current_matmul_precision(),
            "deterministic": precision.is_deterministic()}


def load_prepared(args, config: conf.Config) -> data.Prepared:
    if args.command == "demo":
        from hrnn_jax.data import synthetic

        s = config.synthetic
        raw = data.read_interactions(synthetic.generate(n_users=s.users, n_items=s.items,
                                                        seed=s.data_seed))
    else:
        raw = data.read_log(args.data, config.data)
    return data.prepare(raw, config.data)


def run_compare(args, config: conf.Config, out, err) -> int:
    """``compare`` and ``demo``."""
    shares = args.command == "compare" and reads_shares(args.data)
    if args.models is None:
        args.models = tuple(n for n in _models(DEFAULT_MODELS)
                            if not shares or cmp.runs_from_shares(n, config))
    if shares:
        return run_compare_shares(args, config, out, err)
    check_json_path(args.json)
    check_reference(args)
    check_plot_dir(getattr(args, "plot", None))
    start = time.perf_counter()
    prep = load_prepared(args, config)
    print(summary_line(prep.info), file=out, flush=True)

    def log(msg: str) -> None:
        print(msg, file=err, flush=True)

    with Reporter(err, enabled=not args.quiet) as reporter:  # a live display on a terminal
        ranked = cmp.run_models(prep, list(args.models), config,
                                log=None if args.quiet else reporter.log,
                                progress=None if args.quiet else reporter)
    results = cmp.summarise(prep, ranked, config, reference=getattr(args, "reference", None))
    print(tables.table(results, config.eval.ks), file=out)
    if args.command == "demo":
        print(check_line(results), file=out)
    if getattr(args, "plot", None):
        print("plots: " + ", ".join(draw_plots(args.plot, results, ranked)), file=out, flush=True)
    if not args.quiet:
        log(f"total {time.perf_counter() - start:.1f} s; {setting()}")
    if args.json:
        info = {k: prep.info[k] for k in ("users", "items", "sessions", "events", "train_events",
                                          "test_events", "dropped", "catalogue")}
        jsonio.write_json(args.json, {"setting": setting(), "data": info, "models": results,
                               "command": {"name": args.command, "models": list(args.models),
                                           "data": getattr(args, "data", None),
                                           **({"reference": args.reference}
                                              if getattr(args, "reference", None) else {})},
                               "config": config.to_dict()})
    return 0


def reads_shares(path: str) -> bool:
    """``path`` is an encoded log (``preprocess``), read in shares; UsageError for a directory
    that is not one."""
    if data.is_encoded(path):
        return True
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory but not an encoded log (hrnn-jax preprocess "
                         "writes one, with info.json and train.parquet); give a log file or "
                         "such a directory")
    return False


def check_encoded_flags(args) -> None:
    """UsageError for data settings given with an encoded log ``args.data``: its settings are
    those it was preprocessed with."""
    data_flags = [f for f in _given_flags(args) if f in _DATA_FLAGS]
    toml = conf.load_toml(args.config) if args.config else {}
    if data_flags or toml.get("data"):
        raise UsageError(f"{args.data} is an encoded log: its data settings are those it was "
                         f"preprocessed with; leave out {', '.join(data_flags) or '[data]'}")


def run_compare_shares(args, config: conf.Config, out, err) -> int:
    """``compare DIR`` of an encoded log (``preprocess``): each process reads only its share
    (``compare.compare_shares``)."""
    check_encoded_flags(args)
    for flag, value in (("--reference", args.reference), ("--plot", args.plot)):
        if value is not None:
            raise UsageError(f"{flag} needs every test row in one process; not available for an "
                             "encoded log read in shares")
    cmp.check_shares(args.models, config)
    check_json_path(args.json)
    encoding = data.read_data_config(args.data)  # a missing one named before any output
    info = data.read_info(args.data)
    print(summary_line(info), file=out, flush=True)
    with Reporter(err, enabled=not args.quiet) as reporter:
        results = cmp.compare_shares(args.data, list(args.models), config,
                                     log=None if args.quiet else reporter.log,
                                     progress=None if args.quiet else reporter)
    print(tables.table(results, config.eval.ks), file=out)
    if args.json:
        config = dataclasses.replace(config, data=encoding)
        jsonio.write_json(args.json, {"setting": setting(), "data": info, "models": results,
                                      "command": {"name": "compare", "models": list(args.models),
                                                  "data": args.data, "shares": True},
                                      "config": config.to_dict()})
    return 0


_DATA_FLAGS = {conf.flag_of(f) for f in dataclasses.fields(conf.DataConfig)}


# ------------------------------------------------------------------------------------------
# train, evaluate, recommend: one model and its checkpoint (hrnn_jax.checkpoint)
# ------------------------------------------------------------------------------------------
def _neural_model(text: str) -> str:
    name = _model(text)
    if name not in models.model_names():
        raise argparse.ArgumentTypeError(f"{name} is not a neural model; train one of "
                                         f"{', '.join(models.model_names())}")
    return name


def _positive(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_checkpoint_commands(sub) -> None:
    """The parsers of ``train``, ``evaluate`` and ``recommend``."""
    t = sub.add_parser("train", help="train one neural model and save it as a checkpoint",
                       description="Train one neural model on an interaction log as compare "
                                   "does and save it in a checkpoint directory (after every "
                                   "epoch and at the end) for evaluate, recommend and --resume.")
    t.add_argument("data", metavar="DATA", help="interaction log: .csv, .tsv, .parquet, .dat, or "
                   "the directory of an encoded log (hrnn-jax preprocess), read in shares")
    t.add_argument("--model", type=_neural_model, default=None,
                   help=f"the model, one of {', '.join(models.model_names())} "
                        "(required unless --resume)")
    t.add_argument("--out", metavar="DIR", default=None,
                   help="checkpoint directory: new, empty, or a checkpoint (replaced); default "
                        "with --resume: the resumed one")
    t.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run saved in DIR with its configuration and the same DATA; "
                        "only --epochs may be given (to train longer)")
    add_config(t, ("data", "model", "train"))
    t.add_argument("--quiet", action="store_true",
                   help="no progress display and no per-epoch lines on stderr")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on the log it was trained on",
                       description="The metrics of compare for a saved model, on the log it was "
                                   "trained on (read with the saved data settings); eval flags "
                                   "override the saved ones.")
    e.add_argument("checkpoint", metavar="DIR", help="checkpoint directory (train --out)")
    e.add_argument("data", metavar="DATA", help="the interaction log (or encoded log directory) "
                   "the model was trained on")
    add_config(e, ("eval",))
    e.add_argument("--mesh", dest="eval_mesh", metavar="AXIS=SIZE,...", default=None,
                   help="evaluate on this device mesh, e.g. data=4,items=2, or none for one "
                        "device (default: the mesh the checkpoint was trained on)")
    e.add_argument("--json", metavar="PATH", default=None,
                   help="also write setting, data summary, metrics and configuration as JSON")

    r = sub.add_parser("recommend", help="top-k items from a checkpoint (raw ids)",
                       description="Recommend items with a saved model: one line per item "
                                   "(rank, item, score), or a CSV/Parquet file with --out.")
    r.add_argument("checkpoint", metavar="DIR", help="checkpoint directory (train --out)")
    who = r.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID",
                     help="a user of the checkpoint: the next items after its last training "
                          "event or, with --session, in a new session (an unknown user needs "
                          "--session and is treated as a new user)")
    who.add_argument("--history", metavar="FILE",
                     help="a new user's history: CSV/Parquet with columns session,item (raw ids "
                          "in time order; the last session is in progress)")
    who.add_argument("--users-file", metavar="USERS",
                     help="CSV/Parquet with a column user and optionally session (raw item ids "
                          "separated by spaces); needs --out")
    r.add_argument("--session", metavar="ITEMS", default=None,
                   help="with --user: a new session in progress, comma-separated raw item ids")
    r.add_argument("--gap", metavar="SECONDS", type=float, default=None,
                   help="with --user, for hrnn-meta: the assumed time since the user's last "
                        "event (e.g. 30, 3600, 86400: Ma & Narayanaswamy's inference-time "
                        "control); default 0")
    r.add_argument("--top-k", type=_positive, default=10,
                   help="items per user (default: 10)")
    r.add_argument("--exclude-seen", action="store_true",
                   help="leave out the items of the session or history and, for a known user, "
                        "its training items")
    r.add_argument("--out", metavar="FILE", default=None,
                   help="write columns user, rank, item, score to FILE (.csv or .parquet)")


def _given_flags(args) -> list[str]:
    """The config flags given on the command line (``--config`` included), as written."""
    flags = ["--config"] if getattr(args, "config", None) else []
    for key in vars(args):
        if "." in key:
            section, name = key.split(".", 1)
            flags.append(conf.flag_of(conf.SECTIONS[section].__dataclass_fields__[name]))
    return flags


def run_train(args, config: conf.Config, out, err) -> int:
    """``train``: one neural model, saved after every epoch and at the end."""
    name, previous, directory = args.model, None, args.out or args.resume
    if args.resume is not None:
        extra = [f for f in _given_flags(args) if f != "--epochs"]
        if extra:
            raise UsageError(f"--resume continues with the checkpoint's configuration; only "
                             f"--epochs may be given with it, not {', '.join(extra)}")
        name, saved = checkpoint.saved_config(args.resume)
        if args.model is not None and args.model != name:
            raise UsageError(f"--model {args.model}: the checkpoint {args.resume} holds {name}")
        values = saved.to_dict()
        values["train"]["epochs"] = getattr(args, "train.epochs", saved.train.epochs)
        config = conf.Config.from_dict(values)
        if config.train.deterministic and not precision.is_deterministic():
            try:
                precision.deterministic_mode()
            except RuntimeError as exc:
                raise UsageError(f"--resume of a deterministic run: {exc}") from None
        previous = checkpoint.load(args.resume)
    elif name is None or directory is None:
        raise UsageError("train needs --model NAME and --out DIR (or --resume DIR)")
    checkpoint.check_out(directory)
    if previous is not None and previous.source is not None:
        previous.check_source(args.data)  # before any reading
    with precision.matmul_precision(config.train.precision):
        if reads_shares(args.data):  # each process reads its share (checkpoint.train)
            check_encoded_flags(args)
            source, info = args.data, data.read_info(args.data)
        else:
            source = prepare_log(args.data, config.data)
            info = source.info
        print(summary_line(info), file=out, flush=True)
        with Reporter(err, enabled=not args.quiet) as reporter:
            trained = checkpoint.train(source, name if previous is None else previous.model,
                                       config, out=directory if distributed.is_main() else None,
                                       resume=previous,
                                       log=reporter.log, progress=reporter)
    last = trained.state.records[-1] if trained.state.records else None
    loss = f", loss {last['loss']:.4g}" if last else ""
    print(f"trained {name}: {trained.state.epoch} of {config.train.epochs} epochs{loss}; "
          f"saved {directory}", file=out)
    return 0


def run_evaluate(args, config: conf.Config, out, err) -> int:
    """``evaluate``: the metrics of ``compare`` for a checkpoint."""
    check_json_path(args.json)
    trained = checkpoint.load(args.checkpoint)
    toml = conf.load_toml(args.config).get("eval", {}) if args.config else {}
    flags = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("eval.")}
    values = trained.config.to_dict()
    if args.eval_mesh is not None:
        values["train"]["mesh"] = None if args.eval_mesh.lower() == "none" else args.eval_mesh
    config = conf.Config.from_dict({**values, "eval": {**values["eval"], **toml, **flags}})
    try:
        if trained.source is None:  # a model of an encoded log is evaluated from shares
            parallel.make_mesh(config.train.mesh)
    except ValueError as exc:
        which = "--mesh" if args.eval_mesh is not None else \
            "the checkpoint's mesh (--mesh none evaluates on one device)"
        raise UsageError(f"{which}: {exc}") from None
    with precision.matmul_precision(config.train.precision):
        if trained.source is not None:  # a model of an encoded log, evaluated from shares
            if args.eval_mesh is not None:
                raise UsageError("--mesh: a model of an encoded log is evaluated from shares, "
                                 "each process on its own devices of the saved mesh")
            trained.check_source(args.data)
            info = data.read_info(args.data)
            source, mesh = args.data, None
        else:
            source = trained.prepare_log(args.data)
            info, mesh = source.info, config.train.mesh
        print(summary_line(info), file=out, flush=True)
        metrics = trained.evaluate(source, config.eval, mesh=mesh)
    print(tables.table({trained.name: metrics}, config.eval.ks), file=out)
    if args.json:
        info = {k: info[k] for k in ("users", "items", "sessions", "events", "train_events",
                                     "test_events", "dropped", "catalogue") if k in info}
        jsonio.write_json(args.json, {"setting": setting(), "data": info,
                               "models": {trained.name: metrics},
                               "command": {"name": "evaluate", "checkpoint": args.checkpoint,
                                           "data": args.data},
                               "config": config.to_dict()})
    return 0


def run_recommend(args, config: conf.Config, out, err) -> int:
    """``recommend``: top-k items for a user, a new user's history, or a file of users."""
    if args.session is not None and args.user is None:
        raise UsageError("--session goes with --user (the last session of a --history file is "
                         "the one in progress; a --users-file has a session column)")
    if args.gap is not None and (args.user is None or args.session is not None):
        raise UsageError("--gap goes with --user alone (the time since that user's last "
                         "training event)")
    if args.users_file is not None and args.out is None:
        raise UsageError("--users-file needs --out FILE.csv or FILE.parquet")
    if args.out is not None:
        check_json_path(args.out, "--out")
        if not args.out.lower().endswith((".csv", ".parquet", ".pq")):
            raise UsageError(f"--out: give a .csv or .parquet file, got {args.out}")
    session = None
    if args.session is not None:
        session = [i.strip() for i in args.session.split(",") if i.strip()]
        if not session:
            raise UsageError("--session: no item ids")
    trained = checkpoint.load(args.checkpoint)
    kw = dict(k=args.top_k, exclude_seen=args.exclude_seen,
              note=lambda message: print(message, file=err, flush=True))
    with precision.matmul_precision(trained.config.train.precision):
        if args.user is not None:
            recs = trained.recommend(args.user, session=session, gap=args.gap, **kw)
        elif args.history is not None:
            recs = trained.recommend(history=request_files.read_history(args.history), **kw)
        else:
            recs = trained.recommend_many(*request_files.read_requests(args.users_file), **kw)
    if args.out is not None:
        request_files.write_table(recs, args.out)
        print(f"wrote {recs.height} recommendations for {recs['user'].n_unique()} user(s) to "
              f"{args.out}", file=out)
    else:
        for rank, item, score in recs.select("rank", "item", "score").iter_rows():
            print(f"{rank}\t{item}\t{score:.6g}", file=out)
    return 0


# ------------------------------------------------------------------------------------------
# preprocess: a Parquet log larger than memory, streamed into encoded Parquet (data.stream)
# ------------------------------------------------------------------------------------------
def add_preprocess_command(sub) -> None:
    p = sub.add_parser(
        "preprocess", help="sessionise, filter, encode and split a Parquet log larger than "
                           "memory into encoded Parquet (streaming)",
        description="The data steps of compare (sessions, the support filters, the codes, the "
                    "split) on polars' streaming engine, with memory bounded by --chunk-events, "
                    "not by the log. Writes train.parquet, test.parquet, users.parquet, "
                    "items.parquet, info.json and data_config.json into DIR, of which each "
                    "process of `compare DIR` then reads only its share (README: Scaling "
                    "out).")
    p.add_argument("data", metavar="LOG", help="a Parquet file, or a directory of *.parquet "
                                               "files (rows in file-name order)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="output directory (created; files of the same names are replaced)")
    p.add_argument("--chunk-events", type=_positive, default=2_000_000, metavar="N",
                   help="events per user-range partition, the bound on memory (default: "
                        "2000000)")
    p.add_argument("--scratch", metavar="DIR", default=None,
                   help="directory for temporary files (default: inside --out)")
    add_config(p, ("data",), processes=False)


def run_preprocess(args, config: conf.Config, out, err) -> int:
    """``preprocess``: ``data.preprocess_parquet``; prints the data summary, dropped rows
    included."""
    for flag, path in (("--out", args.out), ("--scratch", args.scratch)):
        if path is not None and os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"{flag}: not a directory: {path}")
    start = time.perf_counter()
    info = data.preprocess_parquet(args.data, args.out, config.data,
                                   chunk_events=args.chunk_events, scratch=args.scratch)
    print(summary_line(info), file=out)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s", file=out)
    return 0


COMMANDS = {"compare": run_compare, "demo": run_compare, "train": run_train,
            "evaluate": run_evaluate, "recommend": run_recommend, "preprocess": run_preprocess}


def _join_processes(args) -> bool:
    """With ``--coordinator/--num-processes/--process-id`` (or ``--num-processes 0``: JAX's
    cluster environment), join the other processes (``parallel.distributed``) before JAX starts.
    True for every process but process 0: it neither prints nor writes (its ``--json``,
    ``--plot`` and checkpoint are dropped)."""
    flags = [getattr(args, k, None) for k in ("coordinator", "num_processes", "process_id")]
    if all(f is None for f in flags):
        return False
    try:
        if flags[1] == 0 and flags[0] is None and flags[2] is None:
            distributed.initialize()
        else:
            distributed.initialize(*flags)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # the collectives' own lines (gloo's "Rank i is connected ...") are written to file
    # descriptor 1 by native code: send them to stderr, and keep stdout for the command's output
    sys.stdout.flush()
    kept = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(kept, "w", buffering=1)
    if distributed.is_main():
        return False
    dropped = ("json", "plot", "out") if args.command == "recommend" else ("json", "plot")
    for name in dropped:
        if getattr(args, name, None) is not None:
            setattr(args, name, None)
    return True


def run(args, out=None, err=None) -> int:
    """Run a parsed command; prints to ``out``/``err`` (default: the current stdout/stderr).

    ``--deterministic`` needs a process in which JAX has not computed anything yet (the command
    line's); ``--precision`` applies to everything the command computes.
    """
    quiet = _join_processes(args)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if quiet:
        out = err = open(os.devnull, "w")
    config = config_of(args)
    if config.train.deterministic:
        try:
            precision.deterministic_mode()
        except RuntimeError as exc:
            raise UsageError(f"--deterministic: {exc}") from None
    if config.train.mesh is not None:
        try:
            parallel.make_mesh(config.train.mesh)
        except ValueError as exc:
            raise UsageError(f"--mesh: {exc}") from None
    with precision.matmul_precision(config.train.precision):
        return COMMANDS[args.command](args, config, out, err)


def main(argv=None) -> int:
    """Entry point of ``hrnn-jax``; returns the exit status (0 ok, 1 diverged training, 2 bad
    input). A bug of the library is not caught: its traceback shows, status 1."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return run(args)
    except SystemExit as exc:  # --help / --version from argparse
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # the reader of stdout went away (`hrnn-jax ... | head`): stop quietly
        sys.stdout = open(os.devnull, "w")
        return 141  # 128 + SIGPIPE, as shell tools report it
    except INPUT_ERRORS as exc:
        print(f"{PROG}: error: {data.one_line(exc, limit=500)}", file=sys.stderr)
        return 2
    except training.NonFiniteLossError as exc:  # not bad input: the training diverged
        print(f"{PROG}: error: {data.one_line(exc, limit=500)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
