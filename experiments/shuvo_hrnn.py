"""Shuvo et al., "Advanced Recommendations System using Hierarchical Recurrent Neural Network": the
HRNN study. HRNN Init and HRNN All against POP, BPR, FMC, FPMC, GRU4Rec (TOP1) and GRU4Rec+
(BPR-max), leave-one-out, Hit@10, NDCG@10, Recall@20 and MRR@20 over several seeds, each model
tested against GRU4Rec.

    python experiments/shuvo_hrnn.py [--data PATH [reading flags]] [--json PATH] [--models ...]
                                     [config flags]

Data. Without ``--data``: the demo's synthetic log (``synthetic.generate``) of ``--users`` x
``--items``, sessions of users with lasting tastes. With it, any log the library reads; the
seed's two datasets are public (neither is shipped or downloaded):

* MovieLens-1M (GroupLens), its ``ratings.dat``::

      python experiments/shuvo_hrnn.py --data ml-1m/ratings.dat --columns user,item,rating,time

* Steam (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018; the review dump
  ``steam_reviews.json.gz``, one Python-literal dict per line, read safely)::

      python experiments/shuvo_hrnn.py --data steam_reviews.json.gz --format steam

Protocol (``hrnn_jax.papers.shuvo.DEFAULTS``; flags override it): users with fewer than 5
events and items with fewer than 5 are removed, each user's most recent event is the test
event, the second most recent the validation event for early stopping (``--patience 2`` on
validation MRR@20), the rest train (``--protocol leave-one-out``); sessions split at 30 minutes
of inactivity (``--session-gap``; a Steam review has a day as its time, so a session is a day),
sessions of one event kept. The session models (GRU4Rec, GRU4Rec+, HRNN) learn the next items
within sessions, as Quadrana et al. train HRNN (``--train-lanes within-session``), and are
evaluated on every test event: one that opens a session is predicted from the end of the
previous session. Every model ranks the whole catalogue. Settings: the library's
defaults (the paper gives none): 100 units, Adagrad 0.1, batch 50, at most 10 epochs, 3 seeds of
each neural model trained side by side (``--seeds``); GRU4Rec+ is ``gru4rec+``, the official
GRU4Rec's BPR-max defaults (``hrnn_jax.models.registry.GRU4REC_PLUS``).

Output: a table of mean ± std over the seeds (the baselines are deterministic: one run), with
``*``/``**`` where the paired t-test against GRU4Rec over the test users gives p < 0.05/0.01
(Hit@K is Recall@K with one test item, so Hit@10's test is Recall@10's). JSON: ``{"models":
{name: metrics, mean, std, per_seed, p_value, t_test_p_value}, "checks": {...}, "paper": {...},
"data": {...}, "config": {...}}``; ``checks`` holds the study's expectations as measured:
HRNN Init above GRU4Rec on Hit@10, and GRU4Rec+ at or above GRU4Rec on Recall@20 and MRR@20.
"""
from __future__ import annotations

import argparse
import sys

from hrnn_jax import compare, data, jsonio
from hrnn_jax import config as conf
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import significance
from hrnn_jax.papers import shuvo


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a log file (default: synthetic)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--models", default=",".join(shuvo.MODELS),
                    help=f"comma list (default: {','.join(shuvo.MODELS)})")
    ap.add_argument("--users", type=int, default=1000, help="synthetic users")
    ap.add_argument("--items", type=int, default=1000, help="synthetic items")
    ap.add_argument("--data-seed", type=int, default=0, help="synthetic seed")
    for section in ("data", "model", "train", "eval"):
        conf.add_arguments(ap, section)
    args = ap.parse_args(argv)
    return args, conf.from_sources(args, shuvo.DEFAULTS)


def load(args, cfg: conf.Config):
    if args.data is None:
        raw = synthetic.generate(n_users=args.users, n_items=args.items, seed=args.data_seed)
        return data.read_interactions(raw), {"source": "synthetic", "generated": {
            "users": args.users, "items": args.items, "seed": args.data_seed}}
    return data.read_log(args.data, cfg.data), {"source": str(args.data)}


def problem(args, cfg: conf.Config, names) -> str | None:
    """What is wrong with the command line, or None."""
    unknown = [n for n in names if n not in compare.model_names()]
    if unknown:
        return (f"unknown model(s) {unknown}; choose from {', '.join(compare.model_names())}")
    if shuvo.REFERENCE not in names:
        return f"--models must include {shuvo.REFERENCE} (the reference of the tests)"
    if not {10, 20} <= set(cfg.eval.ks):
        return "--ks must include 10 and 20 (the table's cut-offs)"
    return None


def main(argv=None) -> int:
    args, cfg = parse(argv)
    names = [n for n in args.models.split(",") if n]
    wrong = problem(args, cfg, names)
    if wrong:
        print(f"error: {wrong}", file=sys.stderr)
        return 2
    try:
        raw, source = load(args, cfg)
        prep = data.prepare(raw, cfg.data)
    except (data.DataError, conf.ConfigError, OSError) as err:
        print(f"error: {data.one_line(err)}", file=sys.stderr)
        return 1
    print(f"data: {prep.info}", flush=True)
    results = compare.compare(prep, names, cfg, log=print, reference=shuvo.REFERENCE)
    checks = claims(results)
    print_table(results, cfg.train.seeds)
    print("the study's expectations here: " + "; ".join(
        f"{name} {'HELD' if all(v.values()) else 'NOT HELD'} ({v})"
        for name, v in checks.items()))
    if args.json:
        jsonio.write_json(args.json, {
            "models": results, "checks": checks,
            "paper": {"metrics": shuvo.METRICS, "datasets": shuvo.DATASETS,
                      "reference": shuvo.REFERENCE},
            "data": {**source, **prep.info}, "config": cfg.to_dict()})
    return 0


def cell(r: dict, metric: str, seeds: int) -> str:
    """``mean ± std`` of one metric (the mean alone for one seed) and the t-test's mark."""
    test_metric = metric.replace("hit@", "recall@")  # Hit@K is Recall@K with one test item
    mark = significance.marks((r.get("t_test_p_value") or {}).get(test_metric))
    if seeds > 1 and "std" in r:
        return f"{r[metric]:.4f}±{r['std'][metric]:.4f}{mark:<2}"
    return f"{r[metric]:.4f}{mark:<2}"


def print_table(results: dict, seeds: int) -> None:
    width = 17 if seeds > 1 else 10
    print(f"\n{'model':<12}" + "".join(f"{m:>{width}}" for m in shuvo.METRICS))
    for name, r in results.items():
        print(f"{name:<12}" + "".join(f"{cell(r, m, seeds):>{width}}" for m in shuvo.METRICS))
    print(f"* p < 0.05, ** p < 0.01: {significance.T_TEST} against {shuvo.REFERENCE}, one pair "
          "per test user (seeds averaged)")


def claims(results: dict) -> dict:
    """The study's expectations judged on this run (the models that ran)."""
    ref, checks = results.get(shuvo.REFERENCE), {}
    if ref is None:
        return checks
    if "hrnn-init" in results:
        checks["hrnn_init_beats_gru"] = {"hit@10": results["hrnn-init"]["hit@10"] > ref["hit@10"]}
    if "gru4rec+" in results:
        checks["gru4rec_plus_at_least_gru"] = {
            k: results["gru4rec+"][k] >= ref[k] for k in ("recall@20", "mrr@20")}
    return checks


if __name__ == "__main__":
    sys.exit(main())
