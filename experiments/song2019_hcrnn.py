"""Song, Ji, Park & Moon, "Hierarchical Context Enabled Recurrent Neural Network for
Recommendation" (AAAI 2019): Table 3 and the analyses of Fig. 5a and 6a.

    python experiments/song2019_hcrnn.py [--data PATH --format hcrnn|csv|movielens|steam]
                                         [--json PATH]

Data: by default a synthetic log with known topics (``synthetic.generate(with_topic=True)``);
``--data DIR --format hcrnn`` reads the authors' preprocessed files (``train.txt``, ``valid.txt``,
``test.txt`` of their repository's ``data/<name>/``, given by path, never downloaded) with their
user split; ``--data FILE --format csv`` any log (columns user, item, time), split by users at
random; ``--data ratings.dat --format movielens [--max-rating-only]`` a MovieLens ratings file
(``.dat`` or ``.csv``), with ``--max-rating-only`` only its maximum ratings as the paper (binary
implicit feedback); ``--data steam_reviews.json.gz --format steam`` a Steam review dump of Kang &
McAuley (``hrnn_jax.data.read.read_steam``). Protocol of the paper: one sequence per user (no
session cut), users split about 80/20 (``TEST_FRACTION``; the authors' files: their split), 10% of
the training users as validation (``VALID_FRACTION``, the paper: "10% of the randomly chosen train
set as the validation set"), every step of a test sequence evaluated (its first event has no
input), sequences of at least 10 events, items only in test removed; R@3, R@20, M@3, M@20.

Models (``hrnn-jax compare --models`` names): ``pop``, ``spop``, ``itemknn``, ``bpr-mf``, ``gru``
(GRU4Rec over the user's sequence), ``lstm4rec``, ``narm``, ``stamp`` (the attention baselines,
``hrnn_jax.models.attention``), ``hcrnn-1``, ``hcrnn-2``, ``hcrnn-3``, ``hcrnn-3-bi``; and
``hrnn-hcrnn-3``, Quadrana et al.'s HRNN with an HCRNN-3 session cell (the cells compose; not a row
of the paper's table). HCRNN-1/2/3 decode h_t alone as the paper describes them;
``--hcrnn-attention additive`` adds the one additive attention over past h_j that the authors' code
gives them (and that produced the paper's rows).

Paper settings as defaults: item embedding 100 for every neural model (``--embedding``; GRU4Rec's
too, a learned table in place of one-hot inputs, as the paper sets it "for fair performance
comparisons"), hidden 100, dropout 0.25 on inputs and 0.5 on the decoder's input (HCRNN and NARM;
the GRUs' output dropout 0.5 and no input dropout; STAMP none, as the authors' code),
Adam at the paper's 1e-3 (STAMP 5e-3) unless ``--learning-rate`` is given (on the rows a window
touches for the GRUs' untied item tables: the lazy variant, ``row_updates="sparse"``), full softmax,
at most 200 epochs with early stopping after 10 without a better validation MRR@20 (the authors'
code watches R@20); batch: B = 50 lanes of windows of L = 20 steps, 1,000 targets a step (the
paper's batch is 512 prefixes, one target each).

Analyses (``song2019.analyse`` on the test users, HCRNN-3+Bi): the mean of r_t * G^(d)_t by the
length of the same-topic run before the step, for steps that continue the topic and steps that
change it (Fig. 5a as the paper draws it; pooled over the runs too), and the mean attention weight
by time distance in both channels, and NARM's when ``narm`` is among the models (Fig. 6a); drawn to
``--plot PATH`` when matplotlib is installed. Topics are known for the synthetic log only.

JSON: ``{"models": {name: {"recall@3", "recall@20", "mrr@3", "mrr@20", "events_per_second"}},
"analysis": {...}, "tests": {name: significance against gru}, "checks": {...}, "paper": {...},
"data": {...}, "config": {...}}``. ``checks`` holds the paper's claims as measured here:
``hcrnn_3_bi_beats_gru`` (``{"recall@20": bool, "mrr@20": bool}``, with both models run) and
``drift_gate_smaller_after_change``, ``drift_gate_smaller_after_longer_runs`` and
``local_attention_nearer_than_temporary`` (with the analysis), each absent when it cannot be
judged (``claims``).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import polars as pl

from hrnn_jax import compare, data, evaluation, jsonio
from hrnn_jax.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.data.read import read_steam
from hrnn_jax.evaluation import significance
from hrnn_jax.papers import ma2019, song2019

MODELS = ("pop", "spop", "itemknn", "bpr-mf", "gru", "lstm4rec", "narm", "stamp", "hcrnn-1",
          "hcrnn-2", "hcrnn-3", "hcrnn-3-bi", "hrnn-hcrnn-3")
LEARNING_RATE = {"stamp": 5e-3}  # the paper's Adam steps: STAMP's, and PAPER_LR for the rest
PAPER_LR = 1e-3
PAPER_EMBED = 100  # "the item embedding (100)", every neural model's, GRU4Rec's included
TEST_FRACTION = 0.2  # raw logs: about 80/20 by users (Table 2: 38,724 train / 9,140 test)
VALID_FRACTION = 0.1  # "10% of the randomly chosen train set as the validation set"
# Table 3 of the paper, CiteULike (percent)
PAPER_CITEULIKE = {
    "pop": (1.44, 5.78, 0.92, 1.44), "spop": (1.26, 4.99, 0.79, 1.23),
    "itemknn": (0.00, 6.90, 0.00, 4.79), "bpr-mf": (0.49, 3.15, 0.27, 0.60),
    "lstm4rec": (7.07, 23.33, 4.93, 6.82), "gru": (8.37, 24.19, 5.98, 7.86),
    "narm": (7.81, 24.82, 5.40, 7.41), "stamp": (5.09, 21.93, 3.25, 5.22),
    "hcrnn-1": (8.60, 25.36, 6.18, 8.16), "hcrnn-2": (8.83, 25.10, 6.41, 8.38),
    "hcrnn-3": (9.21, 25.42, 6.65, 8.61), "hcrnn-3-bi": (9.33, 25.81, 6.74, 8.70)}
METRICS = ("recall@3", "recall@20", "mrr@3", "mrr@20")
REFERENCE = "gru"  # the significance tests compare every model with GRU4Rec, as the paper


def load(args):
    """``(log, test_users or None, topic of each raw item id or None, source)``."""
    if args.data is None:
        log = synthetic.generate(args.users, args.items, n_topics=args.topics, seed=args.seed,
                                 with_topic=True)
        topic = dict(zip(log["item"].cast(pl.String).to_list(), log["topic"].to_list()))
        return (data.read_interactions(log.drop("topic")), None, topic,
                f"synthetic ({args.users} users, {args.items} items, {args.topics} topics)")
    if args.format == "hcrnn":
        log, test_users = data.read_hcrnn(args.data)
        return log, test_users, None, f"{args.data} (the authors' files and split)"
    if args.format == "movielens":
        return ma2019.read_movielens_ratings(args.data), None, None, args.data
    if args.format == "steam":
        return read_steam(args.data), None, None, args.data
    return data.read_interactions(args.data), None, None, args.data


def parse(argv) -> argparse.Namespace:
    """The command line's flags."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a log file, or the authors' data directory")
    ap.add_argument("--format", choices=("hcrnn", "csv", "movielens", "steam"), default="csv",
                    help="movielens: a ratings.dat or ratings.csv file; steam: a Steam dump")
    ap.add_argument("--max-rating-only", action="store_true",
                    help="--format movielens: keep only the maximum rating (the paper's MovieLens)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--users", type=int, default=1500, help="synthetic users")
    ap.add_argument("--items", type=int, default=1000, help="synthetic items")
    ap.add_argument("--topics", type=int, default=20, help="synthetic topics")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--learning-rate", type=float, default=None,
                    help="Adam's step for every model (default: the paper's, 1e-3; STAMP 5e-3)")
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--embedding", type=int, default=PAPER_EMBED,
                    help="item embedding of every neural model (GRU4Rec's too; the paper's 100)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--hcrnn-attention", choices=("none", "additive"), default="none",
                    help="hcrnn-1/2/3: none (the paper's text) or additive (the authors' code, "
                         "which produced the paper's rows)")
    ap.add_argument("--min-item-support", type=int, default=1,
                    help="the authors' files are filtered already; the paper: 50/50/25")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None, help="draw the analyses here (needs matplotlib)")
    return ap.parse_args(argv)


def problem_with(args, names: list[str]) -> str | None:
    """The first thing wrong with the flags, as one line, or None."""
    known = compare.model_names()
    unknown = [n for n in names if n not in known]
    return (f"unknown model(s) {unknown}; choose from {', '.join(known)}" if unknown
            else f"--format {args.format} needs --data" if args.format != "csv"
            and args.data is None
            else "--max-rating-only needs --format movielens"
            if args.max_rating_only and args.format != "movielens" else None)


def experiment_config(args, authors_split: bool) -> Config:
    """The paper's settings (Sec. 4), the flags' sizes."""
    return Config(
        data=DataConfig(protocol="users", test_fraction=TEST_FRACTION,
                        split_seed=args.seed, session_gap=1e12, min_session_len=1,
                        # the authors' files are filtered already (some of their sequences are
                        # shorter than 10 after their item filter): nothing is dropped there
                        min_user_events=1 if authors_split else 10,
                        min_item_support=args.min_item_support,
                        max_value_only=args.max_rating_only),
        model=ModelConfig(hidden=args.hidden, embed_dim=args.embedding, dropout_session=0.5,
                          hcrnn_attention=args.hcrnn_attention),
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, window=args.window,
                          optimizer="adam", learning_rate=args.learning_rate or PAPER_LR,
                          loss="full-ce", patience=args.patience, seed=args.seed,
                          row_updates="sparse"),
        eval=EvalConfig(ks=(3, 20)))


def run_models(names: list[str], prep, config: Config, learning_rate: float | None):
    """Each model trained (the neural ones) and ranked on the test rows, its line printed.

    Returns ``(out, fitted, ranks)``: ``{name: metrics and events_per_second}``, ``{name: (model,
    params)}`` of the neural models, ``{name: ranks}``.
    """
    out, fitted, all_ranks = {}, {}, {}
    for name in names:
        if compare.is_neural(name):
            lr = learning_rate or LEARNING_RATE.get(name, PAPER_LR)
            model = compare.model_for(name, prep, config)
            fit = compare.fit_neural(model, prep, fit_config(config, lr))
            ranks, speed = compare.evaluate_neural(model, fit.params, prep, config), \
                fit.events_per_second
            fitted[name] = (model, fit.params)
        else:
            ranked = compare.run_baseline(name, prep, config)
            ranks, speed = ranked.ranks[0], None
        all_ranks[name] = ranks
        m = evaluation.metrics_from_ranks(ranks, (3, 20))
        out[name] = {**{k: m[k] for k in METRICS}, "events_per_second": speed}
        print(f"{name:<12}" + "".join(f"{100 * m[k]:>8.2f}" for k in METRICS)
              + (f"{speed:>10.0f} ev/s" if speed else ""), flush=True)
    return out, fitted, all_ranks


def print_table(out: dict, tests: dict, checks: dict) -> None:
    """Table 3's rows beside the paper's CiteULike figures, the t-tests' marks and the claims."""
    print(f"\n{'model':<12}" + "".join(f"{k:>10}" for k in METRICS) + "   paper (CiteULike)")
    for name, r in out.items():
        paper = PAPER_CITEULIKE.get(name)
        t = tests.get(name, {}).get("t_test_p_value", {})
        print(f"{name:<12}" + "".join(f"{100 * r[k]:>8.2f}{significance.marks(t.get(k)):<2}"
                                      for k in METRICS)
              + ("   " + " / ".join(f"{v:.2f}" for v in paper) if paper else ""))
    if tests:
        print(f"* p < 0.05, ** p < 0.01: {significance.T_TEST} against {REFERENCE}, one pair "
              f"per test user (the Wilcoxon test's p-values are in the JSON)")
    if checks:
        print("the paper's claims here: " + "; ".join(
            f"{name} {v}" if isinstance(v, bool) else
            f"{name} " + ", ".join(f"{k} {b}" for k, b in v.items())
            for name, v in checks.items()))


def main(argv=None) -> int:
    args = parse(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    problem = problem_with(args, names)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        log, test_users, topic_of, source = load(args)
    except data.DataError as err:
        print(f"error: {data.one_line(err)}", file=sys.stderr)
        return 1
    config = experiment_config(args, authors_split=test_users is not None)
    prep = data.prepare(log, config.data, test_users=test_users)
    info = prep.info
    print(f"{source}: {info['events']} events, {info['train_users']} train / "
          f"{info['test_users']} test users, {info['evaluated']} predictions, "
          f"{prep.encoded.n_items} items")
    out, fitted, all_ranks = run_models(names, prep, config, args.learning_rate)
    analysis = {}
    if "hcrnn-3-bi" in fitted and topic_of is not None:
        analysis = analyse(fitted, prep, topic_of, config.train.batch_size)
        if args.plot:
            plot(analysis, args.plot)
    checks = claims(out, analysis)
    tests = {}
    if REFERENCE in all_ranks and len(all_ranks) > 1:  # one sequence per user: pairs are users
        tests = significance.against_reference(
            all_ranks, REFERENCE, significance.row_sessions(prep.stream, prep.rows), (3, 20))
    print_table(out, tests, checks)
    if args.json:
        jsonio.write_json(args.json, {
            "models": out, "analysis": analysis, "tests": tests, "checks": checks,
            "paper": {"citeulike": {k: dict(zip(METRICS, v)) for k, v in PAPER_CITEULIKE.items()}},
            "data": {**info, "source": source},
            "config": {**config.to_dict(), "models": names, "valid_fraction": VALID_FRACTION}})
    return 0


def analyse(fitted: dict, prep, topic_of: dict, batch_size: int) -> dict:
    """``song2019.analyse`` of the trained HCRNN-3+Bi on the test users (NARM's attention too
    when it was trained), printed."""
    model, params = fitted["hcrnn-3-bi"]
    topics = np.array([topic_of[str(i)] for i in
                       prep.encoded.item_ids[prep.test["item"].to_numpy()]])
    a = song2019.analyse(model, params, prep.test, topics, batch_size=batch_size,
                         narm=fitted.get("narm"))
    print(f"r * G^(d): {a['drift_gate_after_change']:.4f} after a topic change, "
          f"{a['drift_gate_within_run']:.4f} within a run")
    runs = a["drift_gate_by_run"]
    print("Fig. 5a, r * G^(d) by the same-topic run before the step (1 .. "
          f"{song2019.RUN_CAP}+):\n  same topic   " + " ".join(f"{v:.4f}" for v in runs["same"])
          + "\n  topic change " + " ".join(f"{v:.4f}" for v in runs["change"]))
    print("Fig. 6a, mean attended distance: " + ", ".join(
        f"{k} {v:.2f}" for k, v in a["mean_attended_distance"].items()))
    return a


def fit_config(config: Config, learning_rate: float) -> Config:
    """``config`` for ``compare.fit_neural``: Adam's ``learning_rate``, and the validation users
    drawn as ``VALID_FRACTION`` of the training users (``compare.validation`` reads the share from
    ``data.test_fraction``; the test split is made before, at ``TEST_FRACTION`` or the authors'
    files)."""
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, test_fraction=VALID_FRACTION),
        train=dataclasses.replace(config.train, learning_rate=learning_rate))


def claims(out: dict, analysis: dict) -> dict:
    """The paper's claims judged on this run, each absent when it cannot be judged:
    ``hcrnn_3_bi_beats_gru`` (Table 3, R@20 and M@20); Fig. 5a's two: the drift gate r * G^(d)
    smaller after a topic change than within a run (``drift_gate_smaller_after_change``), and
    after a change smaller the longer the run it ends (``drift_gate_smaller_after_longer_runs``:
    the least-squares slope of the change steps' gate on the run's length, each step one point,
    is negative); Fig. 6a's: the local channel attends nearer the step than the temporary one
    (``local_attention_nearer_than_temporary``, by the mean attended distance)."""
    checks = {}
    if "hcrnn-3-bi" in out and "gru" in out:
        checks["hcrnn_3_bi_beats_gru"] = {k: bool(out["hcrnn-3-bi"][k] > out["gru"][k])
                                          for k in ("recall@20", "mrr@20")}
    if not analysis:
        return checks
    known = lambda *v: all(x == x for x in v)  # noqa: E731 (NaN: no step to judge)
    after, within = analysis["drift_gate_after_change"], analysis["drift_gate_within_run"]
    if known(after, within):
        checks["drift_gate_smaller_after_change"] = bool(after < within)
    runs = analysis["drift_gate_by_run"]
    n = np.array(runs["steps_change"], float)
    if (n > 0).sum() >= 2:  # the slope of the change steps' gate on the run's length
        g, x = np.nan_to_num(np.array(runs["change"])), np.arange(1, len(n) + 1)
        mx = np.dot(n, x) / n.sum()
        slope = np.dot(n, (x - mx) * g) / np.dot(n, (x - mx) ** 2)
        checks["drift_gate_smaller_after_longer_runs"] = bool(slope < 0)
    d = analysis["mean_attended_distance"]
    if "local" in d and known(d["local"], d["temporary"]):
        checks["local_attention_nearer_than_temporary"] = bool(d["local"] < d["temporary"])
    return checks


def plot(analysis: dict, path: str) -> None:
    """Fig. 5a and 6a of the paper from ``song2019.analyse``'s output (skipped without
    matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    runs = analysis["drift_gate_by_run"]
    n = np.arange(1, len(runs["same"]) + 1)
    a.plot(n, runs["same"], "o-", label="same topic as the run")
    a.plot(n, runs["change"], "s-", label="topic change")
    a.set_xticks(n, [*map(str, n[:-1]), f"{n[-1]}+"])
    a.set_xlabel("same-topic items before the step")
    a.set_ylabel("mean r * G^(d)")
    a.set_title("Fig. 5a")
    a.legend()
    names = {"narm": "NARM alpha", "local": "alpha^(c)", "temporary": "alpha^(h)"}
    for k in ("narm", "local", "temporary"):
        if k in analysis["attention_by_distance"]:
            v = analysis["attention_by_distance"][k]
            b.plot(np.arange(len(v)), v, label=names[k])
    b.set_xlabel("time distance (0: the step itself)")
    b.set_ylabel("mean attention weight")
    b.set_title("Fig. 6a")
    b.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
