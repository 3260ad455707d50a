"""Quadrana, Karatzoglou, Hidasi, Cremonesi, "Personalizing Session-based Recommendations with
Hierarchical Recurrent Neural Networks" (RecSys 2017): Table 3 with Table 2's settings, the
breakdowns of Figs. 3-6 and the Wilcoxon tests against the session RNN.

    python experiments/quadrana2017.py [--data PATH] [--size small|large] [--seeds N]
                                       [--models NAMES] [--json PATH] [config flags]

Models (``hrnn-jax compare`` names): POP (``pop``), Personal Pop (``ppop``), Item-KNN
(``itemknn``, 300 neighbours as the paper), RNN (``gru``: GRU4Rec over each session), RNN Concat
(``concat``: the user's sessions concatenated; its first prediction of a session is not scored,
the paper's footnote 5), HRNN Init (``hrnn-init``) and HRNN All (``hrnn-all``).

Settings: every neural model trains 10 epochs with TOP1 and Adagrad with momentum (the library's
``adagrad`` with ``--momentum``: Adagrad's step followed by a momentum trace, as GRU4Rec's code;
``--row-updates auto``: the item tables are updated on the rows a batch touches where that equals
the dense update, without momentum, and densely with it), one-hot items, ``--size small`` (100
units per GRU layer; HRNN 100+100) or ``large`` (500), and Table 2's batch size, dropout (user
GRU / session GRU / initialisation) and learning rate / momentum
(``hrnn_jax.papers.quadrana2017.TABLE2``; the paper gives them for XING only, VIDEO's are not
published, so XING's are used on every log):

    model            batch  dropout         lr / momentum
    gru, concat  S   100    0.2             0.1 / 0.1
    gru, concat  L   100    0.2             0.1 / 0.0
    hrnn-all     S   100    0.1/0.1/0.2     0.1 / 0.2
    hrnn-all     L    50    0.0/0.2/0.2     0.05 / 0.3
    hrnn-init    S    50    0.0/0.1/0.0     0.1 / 0.0
    hrnn-init    L   100    0.1/0.2/0.2     0.1 / 0.1

A flag given on the command line (``--batch-size``, ``--dropout-user``, ``--dropout-session``,
``--dropout-init``, ``--learning-rate``, ``--momentum``, ``--hidden``) overrides the table for
every model; the JSON's ``settings`` holds what each model ran with and which fields came from
flags.

Data and protocol (Sec. 4.1). ``--data PATH`` reads a log with the library's formats
(``hrnn_jax.data.read_log``: every ``--sep``, ``--columns``, ``--item-col``, ``--time-col`` ...
flag of ``hrnn-jax compare`` works) and preprocesses it as the paper: sessions cut at 30 idle
minutes, repeated items within a session dropped (``--dedupe``), items with fewer than 20 events
(XING's threshold; VIDEO's was 10: ``--min-item-support 10``), sessions of fewer than 3 events
and users with fewer than 5 sessions removed; each user's last session is the test set (test
items unseen in training removed). Without ``--data``: the demo's synthetic log
(``hrnn_jax.data.synthetic``, ``--users`` x ``--items``, ``--data-seed``; as ``hrnn-jax demo``)
with the same filters except the item support (1, the demo's: the threshold of 20 would drop half
of the generated catalogue, mostly users' favourite items).

The paper's datasets are not public: XING is the RecSys Challenge 2016 log (distributed to the
challenge's participants only) and VIDEO a proprietary video-on-demand log. A public log with
returning users and sessions is LastFM-1K (``userid-timestamp-artid-artname-traid-traname.tsv``,
19M plays of 992 users; remove its rows without a track id first, e.g. ``awk -F'\\t' '$5 != ""'``):

    python experiments/quadrana2017.py --data lastfm.tsv \\
        --columns user,time,artist_id,artist,track_id,track --item-col track_id --json lastfm.json

(the paper's filters apply by default; it is a long run on CPUs).

Results. The table shows Recall@5, MRR@5 (and @20) as mean ± std over ``--seeds`` seeds of each
neural model (default 5; the paper averages 10) with ``*``/``**`` for Wilcoxon signed-rank p <
0.05/0.01 against RNN (``gru``) per test session (the paper's test; the paired t-test's p-values
are in the JSON), beside the paper's XING figures; then Recall@5/MRR@5 by user history length
(short <= 6 sessions, long > 6; Figs. 3-4) and by position of the input in test sessions of >= 5
events (beginning = events 1-2, middle = 3-4, end = 5+; Figs. 5-6), each the median over the
seeds as in the paper, twice: averaged per test session as Sec. 4.3.1 says ("the average
Recall@5 and MRR@5 per test session": each session's mean over its rows in the group, then the
mean over the sessions; the paper's checks below use these) and per prediction (every row
weighs the same, so long sessions weigh more; only "end" differs by position, as every session
has two rows at its beginning and two in its middle). ``--rank-top-items N`` ranks every target
against the N items with the most training events only, as the paper's VIDEOXXL (Table 5, N =
50000); a target outside them is ranked against them. The default run (synthetic log, small,
5 seeds, 7 models) took 4 min 6 s wall time on 2 CPU cores shared with other jobs (3 seeds:
3 min 5 s).

JSON: ``{"models": {name: {metrics (mean over seeds), "mean", "std", "per_seed", "p_value"
(Wilcoxon) and "t_test_p_value" against gru, "breakdown": {"history", "position"} (per test
session, with "n" rows and "sessions"), "breakdown_per_prediction" (the same per row), ...}},
"settings": {name: {...}}, "checks": {...}, "paper": {...}, "data": {...}, "config": {...}}``.
``checks`` holds the paper's claims judged on this run, each absent when its models were not run:
``hrnn_init_beats_gru`` and ``hrnn_all_beats_gru`` (Table 3: per metric, ``holds`` and the
figures and p-values beside); ``hrnn_init_gain_grows_with_history`` (Sec. 4.3.1, VIDEO: HRNN
Init's relative gain over RNN larger for long histories than for short ones, on Recall@5 and
MRR@5); ``hrnn_all_beats_gru_short_and_long`` (Sec. 4.3.1, XING: HRNN All ahead of RNN in both
groups); ``hrnn_init_recall_gain_largest_at_beginning`` (Sec. 4.3.2, VIDEO: HRNN Init's Recall@5
gain over RNN larger at the beginning of a session than at its end).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
import time

import numpy as np

from hrnn_jax import cli, compare, data, evaluation, jsonio, precision, training
from hrnn_jax import config as conf
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import significance
from hrnn_jax.papers import quadrana2017 as paper

MODELS = paper.MODELS
REFERENCE = "gru"  # the session-based RNN: every model is tested against it
K = 5  # the paper's cut-off; Figs. 3-6 are at 5
SEEDS = 5
TABLE_FIELDS = {"model": ("hidden", "dropout_user", "dropout_session", "dropout_init"),
                "train": ("batch_size", "learning_rate", "momentum")}
OVERRIDE_NOTE = textwrap.fill(
    "Table 2's settings are applied per model (--size chooses its row); a flag given here "
    "(--hidden, --batch-size, --dropout-user, --dropout-session, --dropout-init, "
    "--learning-rate, --momentum) overrides the table for every model. The '(default: ...)' "
    "below is the library's; this experiment's own replace it: Table 2's values, --seeds "
    f"{SEEDS}, --neighbours {paper.NEIGHBOURS}, the paper's filters (--dedupe, "
    "--min-session-len 3, --min-sessions 5, --min-item-support 20 for --data and 1 for the "
    "synthetic log), --ks 5,20.", width=96)


def defaults(synthetic_log: bool) -> dict:
    """The experiment's config defaults (below the flags): the paper's preprocessing, 10 epochs
    of TOP1 with Adagrad, Item-KNN's 300 neighbours, cut-offs 5 and 20, ``SEEDS`` seeds."""
    prep = dict(paper.PREPROCESSING)
    if synthetic_log:
        prep["min_item_support"] = 1  # the demo's: a generated catalogue has no noise items
    return {"data": prep, "model": {"neighbours": paper.NEIGHBOURS},
            "train": {"epochs": paper.EPOCHS, "optimizer": "adagrad", "loss": "top1",
                      "seeds": SEEDS},
            "eval": {"ks": (K, 20)}}


class _Parser(argparse.ArgumentParser):
    """Errors raise (one line in :func:`main`) instead of printing the usage and exiting."""

    def error(self, message):
        raise cli.UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(description=__doc__.split("\n\n")[0] + "\n\n" + OVERRIDE_NOTE,
                 formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    ap.add_argument("--data", default=None,
                    help="a log file (default: the demo's synthetic log)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma list (default: {','.join(MODELS)})")
    ap.add_argument("--size", choices=tuple(paper.SIZES), default="small",
                    help="Table 2's row: small (100 units per GRU layer) or large (500); "
                         "explicit flags override the row's values (default: small)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--quiet", action="store_true", help="no per-model/per-epoch lines on stderr")
    for section in ("synthetic", "data", "model", "train", "eval"):
        conf.add_arguments(ap, section)
    return ap


def given(args) -> dict[str, set]:
    """The config fields given on the command line, by section."""
    out = {s: set() for s in conf.SECTIONS}
    for key in vars(args):
        if "." in key:
            section, name = key.split(".", 1)
            out[section].add(name)
    return out


def model_config(name: str, cfg: conf.Config, size: str, flags: dict) -> tuple:
    """``(config, settings)`` of model ``name``: Table 2's row at ``size`` on ``cfg``'s model and
    train sections, except the fields given as flags; ``settings``: the values it runs with and
    the fields that came from flags (empty for a model outside Table 2)."""
    row = paper.settings(name, size)
    if row is None:
        return cfg, {}
    table = {"model": {"hidden": paper.SIZES[size], **row.model_fields()},
             "train": row.train_fields()}
    sections = {s: dataclasses.replace(getattr(cfg, s), **{
        k: v for k, v in table[s].items() if k not in flags[s]}) for s in table}
    cfg = dataclasses.replace(cfg, **sections)
    values = {f: getattr(getattr(cfg, s), f) for s, fs in TABLE_FIELDS.items() for f in fs}
    overridden = sorted(f for s, fs in TABLE_FIELDS.items() for f in fs if f in flags[s])
    return cfg, {**values, "size": size, "from_flags": overridden}


def load(args, cfg: conf.Config) -> tuple:
    """``(raw log, source)``: the file of ``--data`` or the demo's synthetic log."""
    if args.data is None:
        s = cfg.synthetic
        raw = synthetic.generate(n_users=s.users, n_items=s.items, seed=s.data_seed)
        return data.read_interactions(raw), {"source": "synthetic", "generated": {
            "users": s.users, "items": s.items, "seed": s.data_seed}}
    return data.read_log(args.data, cfg.data), {"source": str(args.data)}


def run(prep, names, cfg: conf.Config, args, flags: dict) -> tuple[dict, dict]:
    """Each model with its own settings: ``({name: compare.Ranked}, {name: settings})``."""
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    ranked, settings = {}, {}
    for name in names:
        mcfg, settings[name] = model_config(name, cfg, args.size, flags)
        if settings[name] and log:
            shown = {k: v for k, v in settings[name].items() if k not in ("size", "from_flags")}
            log(f"{name}: {shown}")
        ranked.update(compare.run_models(prep, [name], mcfg, log=log))
    return ranked, settings


def breakdowns(prep, ranks: np.ndarray, sessions: np.ndarray | None) -> dict:
    """Recall@K/MRR@K (and the rows, ``n``) by history length and by position in the session:
    the median over the seeds (rows of ``ranks [S, R]``), as the paper's Figs. 3-6. With
    ``sessions`` (the test session of each row) each group's figures are averaged per test
    session, as Sec. 4.3.1 says (``sessions`` also counts them); None: per prediction."""
    out = {}
    for kind, fn in (("history", evaluation.breakdown_by_history),
                     ("position", evaluation.breakdown_by_position)):
        per_seed = [fn(prep.rows, r, (K,), sessions=sessions) for r in ranks]
        counts = ("n", "sessions") if sessions is not None else ("n",)
        out[kind] = {group: {m: float(np.median([s[group][m] for s in per_seed]))
                             for m in (f"recall@{K}", f"mrr@{K}")}
                     | {c: per_seed[0][group][c] for c in counts} for group in per_seed[0]}
    return out


def gain(a: float, b: float) -> float | None:
    """Relative gain of ``a`` over ``b`` (None when ``b`` is 0)."""
    return a / b - 1.0 if b > 0 else None


def beats(results: dict, name: str, metrics=(f"recall@{K}", f"mrr@{K}")) -> dict:
    """``name`` above the reference per metric, with both figures and the p-values beside."""
    r, ref = results[name], results[REFERENCE]
    return {m: {"holds": bool(r[m] > ref[m]), name: r[m], REFERENCE: ref[m],
                "p_value": r.get("p_value", {}).get(m),
                "t_test_p_value": r.get("t_test_p_value", {}).get(m)} for m in metrics}


def claims(results: dict) -> dict:
    """The paper's claims judged on this run (see the module docstring): ``{claim: {metric:
    {"holds": bool or None, figures}}}``; a claim whose models or groups are missing is left
    out, ``holds`` is None where a gain cannot be computed (RNN at 0)."""
    checks, metrics = {}, (f"recall@{K}", f"mrr@{K}")
    if REFERENCE not in results:
        return checks
    for name in ("hrnn-init", "hrnn-all"):
        if name in results:
            checks[f"{name.replace('-', '_')}_beats_gru"] = beats(results, name)
    part = lambda n, kind: results[n]["breakdown"][kind]  # noqa: E731
    short, long = (f"short (<={paper.HISTORY_THRESHOLD})", f"long (>{paper.HISTORY_THRESHOLD})")
    both = {short, long} <= set(part(REFERENCE, "history"))
    if "hrnn-init" in results and both:
        checks["hrnn_init_gain_grows_with_history"] = grows(
            part("hrnn-init", "history"), part(REFERENCE, "history"), short, long, metrics)
    if "hrnn-all" in results and both:
        h, g = part("hrnn-all", "history"), part(REFERENCE, "history")
        checks["hrnn_all_beats_gru_short_and_long"] = {
            m: {"holds": bool(h[short][m] > g[short][m] and h[long][m] > g[long][m]),
                "hrnn-all": {short: h[short][m], long: h[long][m]},
                REFERENCE: {short: g[short][m], long: g[long][m]}} for m in metrics}
    if "hrnn-init" in results and {"beginning", "end"} <= set(part(REFERENCE, "position")):
        checks["hrnn_init_recall_gain_largest_at_beginning"] = grows(
            part("hrnn-init", "position"), part(REFERENCE, "position"), "end", "beginning",
            metrics[:1])
    return checks


def grows(model: dict, ref: dict, low: str, high: str, metrics) -> dict:
    """Per metric: the relative gain of ``model`` over ``ref`` in groups ``low`` and ``high``
    of a breakdown, and whether it is larger in ``high``."""
    out = {}
    for m in metrics:
        g = {low: gain(model[low][m], ref[low][m]), high: gain(model[high][m], ref[high][m])}
        out[m] = {"holds": None if None in g.values() else bool(g[high] > g[low]), "gain": g}
    return out


def cell(r: dict, m: str) -> str:
    text = f"{r[m]:.4f}" + (f"±{r['std'][m]:.4f}" if r.get("seeds", 1) > 1 else "")
    return text + significance.marks(r.get("p_value", {}).get(m))


def print_results(results: dict, size: str, ks) -> None:
    """The table (mean ± std, Wilcoxon marks, the paper's XING figures) and the breakdowns."""
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "mrr")]
    xing = paper.PAPER_XING[size]
    print(f"\n{'model':<10}" + "".join(f"{c:>18}" for c in cols) + f"{'train s':>9}"
          + f"   paper XING {size} R@5 / M@5")
    for name, r in results.items():
        ref = xing.get(name)
        print(f"{name:<10}" + "".join(f"{cell(r, c):>18}" for c in cols)
              + f"{r['train_seconds']:>9.1f}" + (f"   {ref[0]:.4f} / {ref[1]:.4f}" if ref else ""))
    seeds, units = significance.footnote(results)
    if seeds > 1:
        print(f"mean±std over {seeds} seeds (the baselines: one deterministic run)")
    if units:
        print(f"* p < 0.05, ** p < 0.01: {significance.WILCOXON} against {REFERENCE}, "
              f"{units} test sessions (paired t-tests in the JSON)")
    for key, how in (("breakdown", "averaged per test session, as the paper"),
                     ("breakdown_per_prediction", "averaged per prediction")):
        first = next(iter(results.values()))[key]
        groups = [(kind, g) for kind in ("history", "position") for g in first[kind]]
        print(f"\nR@{K}/M@{K} by history length and position in the session, {how} (median "
              "over seeds)")
        print(f"{'model':<10}" + "".join(f"{g:>16}" for _, g in groups))
        for name, r in results.items():
            b = r[key]
            print(f"{name:<10}" + "".join(
                f"{b[kind][g][f'recall@{K}']:>8.4f}/{b[kind][g][f'mrr@{K}']:.4f}"
                if g in b[kind] else f"{'-':>16}" for kind, g in groups))
    print("rows: " + ", ".join(f"{g} {first[kind][g]['n']}" for kind, g in groups))
    first = next(iter(results.values()))["breakdown"]
    print("sessions: " + ", ".join(f"{g} {first[kind][g]['sessions']}" for kind, g in groups))


def print_checks(checks: dict) -> None:
    verdict = {True: "held", False: "not held", None: "undecided"}
    for name, v in checks.items():
        parts = []
        for m, c in v.items():
            text = f"{m} {verdict[c['holds']]}"
            if c.get("p_value") is not None:
                text += f" (Wilcoxon p {c['p_value']:.3g})"
            if "gain" in c:
                text += " (gain " + ", ".join(f"{g} {100 * x:+.1f}%" if x is not None
                                              else f"{g} -" for g, x in c["gain"].items()) + ")"
            parts.append(text)
        print(f"check {name}: " + "; ".join(parts))


def parse(argv) -> tuple:
    """``(args, config, flags)``; UsageError for bad arguments."""
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    known = compare.model_names()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise cli.UsageError(f"unknown model(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(known)}" if unknown else "--models: no model names")
    args.models = list(dict.fromkeys(names))
    cli.check_json_path(args.json)
    cfg = conf.from_sources(args, defaults(args.data is None))
    if K not in cfg.eval.ks:
        raise cli.UsageError(f"--ks must include {K}, the paper's cut-off (Table 3, Figs. 3-6)")
    if cfg.train.deterministic:
        try:
            precision.deterministic_mode()
        except RuntimeError as exc:
            raise cli.UsageError(f"--deterministic: {exc}") from None
    return args, cfg, given(args)


def main(argv=None) -> int:
    try:
        args, cfg, flags = parse(argv)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except (cli.UsageError, conf.ConfigError) as err:
        print(f"error: {data.one_line(err)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        with precision.matmul_precision(cfg.train.precision):
            raw, source = load(args, cfg)
            prep = data.prepare(raw, cfg.data)
            print(cli.summary_line(prep.info), flush=True)
            ranked, settings = run(prep, args.models, cfg, args, flags)
    except (data.DataError, conf.ConfigError, OSError) as err:
        print(f"error: {data.one_line(err)}", file=sys.stderr)
        return 2
    except training.NonFiniteLossError as err:
        print(f"error: {data.one_line(err)}", file=sys.stderr)
        return 1
    reference = REFERENCE if REFERENCE in ranked and len(ranked) > 1 else None
    results = compare.summarise(prep, ranked, cfg, reference=reference)
    sessions = significance.row_sessions(prep.stream, prep.rows)
    for name, r in ranked.items():
        results[name]["breakdown"] = breakdowns(prep, r.ranks, sessions)  # the paper's
        results[name]["breakdown_per_prediction"] = breakdowns(prep, r.ranks, None)
    checks = claims(results)
    print_results(results, args.size, cfg.eval.ks)
    print_checks(checks)
    seconds = time.perf_counter() - start
    print(f"total {seconds:.0f} s")
    if args.json:
        jsonio.write_json(args.json, {
            "models": results, "settings": settings, "checks": checks,
            "paper": {"table2": {f"{m} {s}": row._asdict() for (m, s), row in
                                 paper.TABLE2.items()},
                      "xing": {s: {m: dict(zip(paper.PAPER_METRICS, v)) for m, v in t.items()}
                               for s, t in paper.PAPER_XING.items()}},
            "data": {**source, **prep.info}, "seconds": seconds,
            "config": {**cfg.to_dict(), "models": args.models, "size": args.size,
                       "reference": reference}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
