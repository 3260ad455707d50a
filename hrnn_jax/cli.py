"""Command-line interface: ``hrnn-jax compare DATA``, ``hrnn-jax demo`` (and the commands that
the other modules register here).

Every setting is a field of ``hrnn_jax.config`` and its flag is generated from it (``--batch-size``
for ``TrainConfig.batch_size``); ``--config run.toml`` sets fields by section and flags override
the file. ``compare`` and ``demo`` run the pipeline of ``hrnn_jax.compare`` (prepare -> compare ->
table): the table goes to stdout, per-epoch progress to stderr (``--quiet`` silences it), and
``--json PATH`` writes the setting, data summary, metrics and the configuration (``Config.to_dict``).

Errors. Bad input (a file, a column, a flag or config value) ends with one line
``hrnn-jax: error: <message>`` on stderr and exit status 2; a training loss that becomes NaN or
infinite (``training.NonFiniteLossError``: a run that diverged) ends the same way with status 1.
Anything else is a bug of the library: it shows its traceback (status 1). ``main(argv)`` returns
the exit status instead of exiting.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from hrnn_jax import compare as cmp
from hrnn_jax import config as conf
from hrnn_jax import data, precision, training

PROG = "hrnn-jax"
DEFAULT_MODELS = ",".join(cmp.MODELS)
CHECK_K = 5  # the demo's claim: HRNN Init > GRU > POP on recall@5 and mrr@5
# The demo's log has no rare items to filter: its own default, before any file or flag.
DEMO_BASE = {"data": {"min_item_support": 1}}


class UsageError(ValueError):
    """A bad command-line value (reported like any other input error)."""


INPUT_ERRORS = (data.DataError, conf.ConfigError, UsageError, OSError)


class _Parser(argparse.ArgumentParser):
    """argparse, but every error is one line ``hrnn-jax: error: ...`` and exit status 2."""

    def error(self, message):  # noqa: D102 (argparse API)
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
    unknown = [n for n in names if n not in cmp.MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(cmp.MODELS)}")
    return tuple(names)


READING = ("user_col", "item_col", "time_col", "sep", "columns", "time_unit", "event_col",
           "value_col")


def add_config(p: argparse.ArgumentParser, sections, *, skip_data=()) -> None:
    """``--config`` and the flags of the given config sections."""
    p.add_argument("--config", metavar="TOML", default=None,
                   help="settings by section ([data], [model], [train], [eval], [synthetic]); "
                        "flags override them")
    for section in sections:
        conf.add_arguments(p, section, skip=skip_data if section == "data" else ())


def add_output(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="PATH", default=None,
                   help="also write setting, data summary, metrics and configuration as JSON")
    g.add_argument("--quiet", action="store_true", help="no per-model/per-epoch progress")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Hierarchical recurrent recommenders in JAX: "
                     "train and compare POP, PPOP, Item-KNN, session GRU, RNN Concat and HRNN.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser("compare", help="compare models on an interaction log (CSV/TSV/Parquet)",
                       description="Read an interaction log, sessionise, filter, split, train "
                                   "and evaluate the chosen models, print a table.")
    c.add_argument("data", metavar="DATA", help="interaction log: .csv, .tsv, .parquet, .dat")
    c.add_argument("--models", type=_models, default=_models(DEFAULT_MODELS),
                   help=f"comma list from {', '.join(cmp.MODELS)} (default: all)")
    add_config(c, ("data", "model", "train", "eval"))
    add_output(c)

    d = sub.add_parser("demo", help="compare models on built-in synthetic data",
                       description="Generate a synthetic log with session and user structure "
                                   "and compare the models on it; reports whether HRNN Init > "
                                   "session GRU > POP on Recall@5 and MRR@5.")
    d.add_argument("--models", type=_models, default=_models(DEFAULT_MODELS),
                   help=f"comma list from {', '.join(cmp.MODELS)} (default: all)")
    add_config(d, ("synthetic", "data", "model", "train", "eval"), skip_data=READING)
    add_output(d)
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


def setting() -> dict:
    """Where and how the numbers were computed: backend, matmul precision, deterministic flag."""
    import jax

    return {"backend": jax.default_backend(), "precision": precision.current_matmul_precision(),
            "deterministic": precision.is_deterministic()}


def read_log(path, cfg: conf.DataConfig):
    """The interaction log at ``path`` read with the reading fields of ``cfg``."""
    return data.read_interactions(path, **{k: getattr(cfg, k) for k in READING})


def load_prepared(args, config: conf.Config) -> cmp.Prepared:
    if args.command == "demo":
        from hrnn_jax import synthetic

        s = config.synthetic
        raw = data.read_interactions(synthetic.generate(n_users=s.users, n_items=s.items,
                                                        seed=s.data_seed))
    else:
        raw = read_log(args.data, config.data)
    return cmp.prepare(raw, config.data)


def write_json(path: str, payload: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(to_jsonable(payload), fh, indent=2)
        fh.write("\n")


def run_compare(args, config: conf.Config, out, err) -> int:
    """``compare`` and ``demo``."""
    check_json_path(args.json)
    start = time.perf_counter()
    prep = load_prepared(args, config)
    print(summary_line(prep.info), file=out, flush=True)

    def log(msg: str) -> None:
        print(msg, file=err, flush=True)

    results = cmp.compare(prep, list(args.models), config, log=None if args.quiet else log)
    print(cmp.table(results, config.eval.ks), file=out)
    if args.command == "demo":
        print(check_line(results), file=out)
    if not args.quiet:
        log(f"total {time.perf_counter() - start:.1f} s; {setting()}")
    if args.json:
        info = {k: prep.info[k] for k in ("users", "items", "sessions", "events", "train_events",
                                          "test_events", "dropped", "catalogue")}
        write_json(args.json, {"setting": setting(), "data": info, "models": results,
                               "command": {"name": args.command, "models": list(args.models),
                                           "data": getattr(args, "data", None)},
                               "config": config.to_dict()})
    return 0


COMMANDS = {"compare": run_compare, "demo": run_compare}


def run(args, out=None, err=None) -> int:
    """Run a parsed command; prints to ``out``/``err`` (default: the current stdout/stderr).

    ``--deterministic`` needs a process in which JAX has not computed anything yet (the command
    line's); ``--precision`` applies to everything the command computes.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    config = config_of(args)
    if config.train.deterministic:
        try:
            precision.deterministic_mode()
        except RuntimeError as exc:
            raise UsageError(f"--deterministic: {exc}") from None
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
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  nothing more can reach the reader
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
