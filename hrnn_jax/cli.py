"""Command-line interface: ``hrnn-jax compare DATA`` and ``hrnn-jax demo``.

Both commands run the pipeline of ``hrnn_jax.compare`` (prepare -> compare -> table): ``compare``
on an interaction log read with ``data.read_interactions``, ``demo`` on the synthetic log of
``synthetic.generate``. The table goes to stdout, per-epoch progress to stderr (``--quiet``
silences it), and ``--json PATH`` writes data summary, metrics and configuration.

Any bad input (file, column, flag value) ends with one line ``hrnn-jax: error: <message>`` on
stderr and exit status 2; a training loss that becomes NaN or infinite
(``training.NonFiniteLossError``: not bad input, but a run that diverged) ends the same way with
exit status 1. ``main(argv)`` returns the exit status instead of exiting.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from hrnn_jax import compare as cmp
from hrnn_jax import choices, data, evaluation, losses, models, optim, precision, training

PROG = "hrnn-jax"
SPLITS = data.PROTOCOLS
OPTIMIZERS = optim.OPTIMIZERS
LOSSES = losses.LOSSES
TIES = evaluation.TIES
TIME_UNITS = tuple(data.TIME_UNITS)
DEFAULT_MODELS = ",".join(cmp.MODELS)
DEMO_EPOCHS = 10
CHECK_K = 5  # the demo's claim: HRNN Init > GRU > POP on recall@5 and mrr@5


class UsageError(ValueError):
    """A bad command-line value (reported like any other input error)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but every error is one line ``hrnn-jax: error: ...`` and exit status 2."""

    def error(self, message):  # noqa: D102 (argparse API)
        raise UsageError(message)


# ------------------------------------------------------------------------------------------
# Value types (raise ArgumentTypeError -> "argument --x: <message>")
# ------------------------------------------------------------------------------------------
def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def _float_in(lo: float, hi: float = math.inf, *, lo_open=False, hi_open=True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= lo if lo_open else value < lo
        too_high = value >= hi if hi_open else value > hi
        if math.isnan(value) or too_low or too_high:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(f"must be in {left}{lo:g}, {hi:g}{right}, got {text}")
        return value
    parse.__name__ = "float"
    return parse


def _ks(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}")
    ks = []
    for p in parts:
        try:
            k = int(p)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma list of positive integers, got {text!r}") from None
        if k < 1:
            raise argparse.ArgumentTypeError(f"cut-offs must be >= 1, got {k}")
        ks.append(k)
    return tuple(sorted(set(ks)))


def _dropout(text: str) -> tuple[float, float, float]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(
            f"expected three comma-separated numbers user,session,init, got {text!r}")
    if not all(0.0 <= v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"each dropout rate must be in [0, 1), got {text!r}")
    return values


def _models(text: str) -> tuple[str, ...]:
    names = []
    for p in text.split(","):
        name = p.strip().lower().replace("_", "-")
        if name and name not in names:
            names.append(name)
    if not names:
        raise argparse.ArgumentTypeError(f"no model names in {text!r}")
    unknown = [n for n in names if n not in cmp.MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(cmp.MODELS)}")
    return tuple(names)


def _sep(text: str) -> str:
    text = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"separator must be one character, got {text!r}")
    return text


# ------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------
def _add_protocol(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation protocol")
    g.add_argument("--split", choices=SPLITS, default="last-session",
                   help="train/test split (default: %(default)s)")
    g.add_argument("--test-fraction", type=_float_in(0.0, 1.0, lo_open=True), default=0.05,
                   help="share of each user's events in test for --split temporal "
                        "(default: %(default)s)")


def _add_dedupe(g) -> None:
    g.add_argument("--dedupe", action="store_true",
                   help="drop repeated interactions with the same item (and type, with "
                        "--event-col) within a session, keeping the first, before the filters, "
                        "as Quadrana et al. 4.1 (default: off)")


def _add_common(p: argparse.ArgumentParser, *, default_models: str, epochs: int) -> None:
    g = p.add_argument_group("models and training")
    g.add_argument("--models", type=_models, default=_models(default_models),
                   help=f"comma list from {', '.join(cmp.MODELS)} (default: {default_models})")
    g.add_argument("--epochs", type=_int_at_least(1), default=epochs,
                   help="training epochs (default: %(default)s)")
    g.add_argument("--hidden", type=_int_at_least(1), default=100,
                   help="GRU units of each layer (default: %(default)s)")
    g.add_argument("--batch", type=_int_at_least(1), default=50,
                   help="parallel user lanes per mini-batch (default: %(default)s)")
    g.add_argument("--window", type=_int_at_least(1), default=1,
                   help="steps per training step; 1 = one step per mini-batch as in the "
                        "original code (default: %(default)s)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adagrad",
                   help="(default: %(default)s)")
    g.add_argument("--lr", type=_float_in(0.0, lo_open=True), default=0.1,
                   help="learning rate (default: %(default)s)")
    g.add_argument("--momentum", type=_float_in(0.0, 1.0), default=0.0,
                   help="momentum (default: %(default)s)")
    g.add_argument("--loss", choices=LOSSES, default="top1", help="(default: %(default)s)")
    g.add_argument("--negatives", type=_int_at_least(0), default=0,
                   help="extra popularity-sampled negatives per step (default: %(default)s)")
    g.add_argument("--clip", type=_float_in(0.0, lo_open=True), default=None,
                   help="clip gradients to this global norm (default: no clipping)")
    g.add_argument("--dropout", type=_dropout, default=(0.0, 0.1, 0.0),
                   help="dropout user,session,init (default: 0.0,0.1,0.0)")
    g.add_argument("--patience", type=_int_at_least(0), default=0,
                   help="> 0: early stopping on a validation split of the training part after "
                        "this many epochs without improvement (default: 0, off)")
    g.add_argument("--neighbours", type=_int_at_least(1), default=100,
                   help="Item-KNN neighbours per item (default: %(default)s)")
    g.add_argument("--seed", type=_int_at_least(0), default=0, help="(default: %(default)s)")
    g.add_argument("--activation", choices=choices.options(losses.Activation), default="linear",
                   help="output activation g(.) of the scores in the training loss; tanh as the "
                        "authors' code (measured worse here) (default: %(default)s)")

    h = p.add_argument_group("HRNN options (models.HRNN; defaults chosen by measurement, the "
                             "alternatives are the authors' hgru4rec choices or ours before)")
    h.add_argument("--context-gates", choices=choices.options(models.ContextGates), default="rz",
                   help="HRNN All: gates of the session GRU that receive W_c c: reset and update "
                        "(rz, as hgru4rec) or also the candidate (rzn) (default: %(default)s)")
    h.add_argument("--first-session", choices=choices.options(models.FirstSession),
                   default="init", help="a user's first session starts from Eq. 4 with c = 0, "
                   "tanh(b_init) (init), or zeros (zero, as hgru4rec) (default: %(default)s)")
    h.add_argument("--context-grad", choices=choices.options(models.ContextGrad), default="step",
                   help="HRNN All: W_c learns from every step (step, as hgru4rec) or only within "
                        "the window where its session starts (session) (default: %(default)s)")

    x = p.add_argument_group("precision and determinism (hrnn_jax.precision)")
    x.add_argument("--precision", choices=precision.MATMUL_PRECISIONS, default="default",
                   help="precision of the approximate matrix products; on a GPU 'default' is "
                        "TF32, 'highest' full float32; lane copies and row gradients are exact "
                        "in every case (default: %(default)s)")
    x.add_argument("--deterministic", action="store_true",
                   help="ask XLA for deterministic GPU kernels (--xla_gpu_deterministic_ops); "
                        "CPU runs are deterministic anyway")

    e = p.add_argument_group("evaluation and output")
    e.add_argument("--k", type=_ks, default=(5, 20),
                   help="comma list of cut-offs (default: 5,20)")
    e.add_argument("--ties", choices=TIES, default="optimistic",
                   help="rank of the target among equal scores (default: %(default)s)")
    e.add_argument("--exclude-seen", action="store_true",
                   help="never recommend items the user has already interacted with")
    e.add_argument("--json", metavar="PATH", default=None,
                   help="also write data summary, metrics and configuration as JSON")
    e.add_argument("--quiet", action="store_true", help="no per-model/per-epoch progress")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Hierarchical recurrent recommenders in JAX: "
                     "train and compare POP, PPOP, Item-KNN, session GRU, RNN Concat and HRNN.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser("compare", help="compare models on an interaction log (CSV/TSV/Parquet)",
                       description="Read an interaction log, sessionise, filter, split, train "
                                   "and evaluate the chosen models, print a table.")
    c.add_argument("data", metavar="DATA", help="interaction log: .csv, .tsv, .parquet")
    f = c.add_argument_group("input")
    f.add_argument("--user-col", default="user", help="(default: %(default)s)")
    f.add_argument("--item-col", default="item", help="(default: %(default)s)")
    f.add_argument("--time-col", default="time", help="(default: %(default)s)")
    f.add_argument("--sep", type=_sep, default=None,
                   help="CSV separator ('\\t' or 'tab' for tab; default: ',' or tab for .tsv)")
    f.add_argument("--time-unit", choices=TIME_UNITS, default="s",
                   help="unit of a numeric time column (default: %(default)s)")
    f.add_argument("--event-col", default=None,
                   help="column of the interaction type (click, bookmark, ...); --dedupe then "
                        "drops only repeats of the same item AND type (default: none, the type "
                        "is ignored)")
    s = c.add_argument_group("sessions and filters")
    s.add_argument("--session-gap", type=_float_in(0.0, lo_open=True), default=1800.0,
                   help="idle seconds that start a new session (default: %(default)g)")
    s.add_argument("--min-item-support", type=_int_at_least(1), default=5,
                   help="drop items with fewer events (default: %(default)s)")
    s.add_argument("--min-session-len", type=_int_at_least(1), default=2,
                   help="drop sessions with fewer events (default: %(default)s)")
    s.add_argument("--min-sessions", type=_int_at_least(1), default=1,
                   help="drop users with fewer sessions (default: %(default)s)")
    _add_dedupe(s)
    _add_protocol(c)
    _add_common(c, default_models=DEFAULT_MODELS, epochs=10)

    d = sub.add_parser("demo", help="compare models on built-in synthetic data",
                       description="Generate a synthetic log with session and user structure "
                                   "and compare the models on it; reports whether HRNN Init > "
                                   "session GRU > POP on Recall@5 and MRR@5.")
    g = d.add_argument_group("synthetic data")
    g.add_argument("--users", type=_int_at_least(1), default=1000, help="(default: %(default)s)")
    g.add_argument("--items", type=_int_at_least(20), default=1000, help="(default: %(default)s)")
    _add_dedupe(g)
    _add_protocol(d)
    _add_common(d, default_models=DEFAULT_MODELS, epochs=DEMO_EPOCHS)
    return parser


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
def _config(args) -> cmp.Config:
    return cmp.Config(hidden=args.hidden, batch=args.batch, window=args.window,
                      epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
                      momentum=args.momentum, loss=args.loss, n_negatives=args.negatives,
                      clip=args.clip, dropout=tuple(args.dropout), patience=args.patience,
                      neighbours=args.neighbours, ks=tuple(args.k), ties=args.ties,
                      exclude_seen=args.exclude_seen, seed=args.seed, activation=args.activation,
                      context_gates=args.context_gates, first_session=args.first_session,
                      context_grad=args.context_grad)


def to_jsonable(obj):
    """Recursively turn numpy scalars/arrays and tuples into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


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
                f"(needs models {', '.join(need)} and --k including {k})")
    parts, held = [], True
    for m in metrics:
        a, b, c = (results[n][m] for n in need)
        ok = a > b > c
        held &= ok
        parts.append(f"{m} {a:.4f} {'>' if a > b else '<='} {b:.4f} {'>' if b > c else '<='} "
                     f"{c:.4f}")
    verdict = "HELD" if held else "DID NOT HOLD"
    return f"check HRNN Init > GRU > POP: {verdict} ({'; '.join(parts)})"


def setting() -> dict:
    """Where and how the numbers were computed: backend, matmul precision, deterministic flag."""
    import jax

    return {"backend": jax.default_backend(), "precision": precision.current_matmul_precision(),
            "deterministic": precision.is_deterministic()}


def _check_json_path(path: str | None) -> None:
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--json: directory does not exist: {parent}")
    if os.path.isdir(path):
        raise UsageError(f"--json: is a directory: {path}")


def _load(args):
    if args.command == "compare":
        raw = data.read_interactions(args.data, user_col=args.user_col, item_col=args.item_col,
                                     time_col=args.time_col, sep=args.sep,
                                     time_unit=args.time_unit, event_col=args.event_col)
        filters = dict(session_gap=args.session_gap, min_item_support=args.min_item_support,
                       min_session_len=args.min_session_len, min_sessions=args.min_sessions)
    else:
        from hrnn_jax import synthetic
        raw = data.read_interactions(synthetic.generate(n_users=args.users, n_items=args.items,
                                                        seed=args.seed))
        filters = dict(session_gap=1800.0, min_item_support=1, min_session_len=2,
                       min_sessions=1)
    return cmp.prepare(raw, protocol=args.split, test_fraction=args.test_fraction,
                       dedupe=args.dedupe, **filters)


def run(args, out=None, err=None) -> int:
    """Run a parsed command; prints to ``out``/``err`` (default: the current stdout/stderr).

    ``--deterministic`` needs a process in which JAX has not computed anything yet (the command
    line's); ``--precision`` applies to everything the command computes.
    """
    if args.deterministic:
        try:
            precision.deterministic_mode()
        except RuntimeError as exc:
            raise UsageError(f"--deterministic: {exc}") from None
    with precision.matmul_precision(args.precision):
        return _run(args, out, err)


def _run(args, out, err) -> int:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    _check_json_path(args.json)
    cfg = _config(args)
    start = time.perf_counter()
    prep = _load(args)
    print(summary_line(prep.info), file=out, flush=True)

    def log(msg: str) -> None:
        print(msg, file=err, flush=True)

    results = cmp.compare(prep, list(args.models), cfg, log=None if args.quiet else log)
    print(cmp.table(results, cfg.ks), file=out)
    if args.command == "demo":
        print(check_line(results), file=out)
    if not args.quiet:
        log(f"total {time.perf_counter() - start:.1f} s; {setting()}")
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"}
        payload = {"setting": setting(),
                   "data": {k: prep.info[k] for k in ("users", "items", "sessions", "events",
                                                       "train_events", "test_events", "dropped",
                                                       "catalogue")},
                   "models": results, "config": config}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(to_jsonable(payload), fh, indent=2)
            fh.write("\n")
    return 0


def main(argv=None) -> int:
    """Entry point of ``hrnn-jax``; returns the exit status (0 ok, 1 diverged training, 2 bad
    input)."""
    import polars as pl

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return run(args)
    except SystemExit as exc:  # --help / --version from argparse
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # the reader of stdout went away (`hrnn-jax ... | head`): stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  nothing more can reach the reader
        return 141  # 128 + SIGPIPE, as shell tools report it
    except (ValueError, OSError, pl.exceptions.PolarsError) as exc:  # DataError is a ValueError
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
