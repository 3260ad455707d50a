"""Donkers, Loepp, Ziegler 2017, Table 2: the baselines, the standard GRU and the three user-based
GRUs on one log, by MRR@20 and Recall@20, with each neural model's training throughput.

    python experiments/donkers2017.py [--data PATH] [--json PATH] [--models NAMES] [--seeds N]
        [--paper-table auto|none|movielens|lastfm] [--user-sample F [--sample-seed S]]
        [--event-sample F] [config flags]

Data. ``--data PATH`` reads a log with the library's formats (``hrnn_jax.data.read_log``; every
``--sep``, ``--columns``, ``--time-col`` ... flag of ``hrnn-jax compare`` works), e.g. MovieLens-10M
``ratings.dat`` (``--columns user,item,rating,time``; ``::`` is the default separator of ``.dat``)
or the LastFM-1K TSV (``--columns user,time,artist_id,artist,item_id,item --item-col item``, ISO
times). Without it: ``synthetic.generate(**synthetic.LASTING_TASTES)`` of ``--users`` x
``--items``, strong and lasting per-user tastes. The default, 1,000 users and 15,000 generated
items, has about 111,000 events over 8,500 items: a catalogue of the order of the paper's
MovieLens-10M (10,681 items; LastFM-1K's is larger still). The catalogue sets how the models'
costs compare: the output layer costs n x N per event for every model, the user-based cells add
0-7 n^2 (below); on 1,800 items (``--items 2000``) the gradient of a window of the rectified and
attentional variants took 1.6x and 1.4x the standard GRU's, at 8,500 items 1.15x and 1.04x.

Protocol (Section 4.1): per user, the first 90% of events train, the next 5% validate (early
stopping, ``--patience``), the last 5% test, order kept (``--protocol temporal``, test fraction
0.05 twice); no support filter (``--min-item-support 1``: the paper preprocesses nothing), test
items unseen in training are removed; MRR@20 and Recall@20 over every test event against the
whole catalogue.

Settings (Table 1 unless said): Adam 1e-3 (the item and user tables updated on the rows a window
touches, ``--row-updates sparse``: the lazy variant of Adam, as GRU4Rec's official code applies
its optimiser to embeddings), full softmax cross-entropy, gradient norm clipped at 5,
windows of 20 steps (the "unfold dimension"), U(-0.1, 0.1) initialisation (the user-based models),
item/user dropout keep 0.8/0.5, L2 on the user side 0.01, omega 0.2; Item-KNN 100 neighbours,
decay 1 per day (our unit: the paper gives the constant without one), MF 20 factors, 30 epochs,
lr 0.01, sequential MF window 2. The paper's 1000 hidden units and batch 1000 are
``--hidden`` and ``--batch-size``; with the defaults here (100 and 50) and one seed the whole
experiment (before ``user-gru-none`` joined it) took about 18 minutes on 2 CPU cores; three seeds
of every model (``--seeds 3``) took 70 minutes.
Epochs: the paper trains 10 iterations over MovieLens-10M, thousands of optimiser steps each; the
synthetic default gives about 100 steps an epoch, so it trains up to 30 epochs with early stopping
(patience 3 on the validation MRR@20): at Adam's 1e-3 every neural model was still improving after
10.
The standard GRU is ``user-gru-none``: the paper's "standard GRU network without any of our
proposed extensions", i.e. the user-based network without the user (``cells.StandardUserGRU`` in
``models.UserRNN``: Eq. 3-5 without the user term, r applied to h before the product, dropout
keep 0.8 on the item vector, U(-0.1, 0.1) initialisation, no user table). Every other model is
tested against it. RNN Concat (``concat``, last row) is the library's GRU4Rec-form GRU over the
same sequences (r after the recurrent product, dropout 0.2 on the GRU's outputs, GRU4Rec's
initialisation, an item embedding as wide as h): kept for comparison, it is not the paper's
baseline.

Seeds and tests. ``--seeds N`` trains N seeds of each neural model side by side (the
baselines are deterministic: one run); the table then shows mean±std over the seeds. Every
model is compared with ``user-gru-none`` by a paired test over the test users (one pair per
user: the user's MRR@20 and Recall@20 over their test events, the seeds averaged first;
``hrnn_jax.evaluation.significance``): the table shows the Wilcoxon signed-rank p-values, the
JSON also the paired t-test's. The paper names no test.

Table 2. ``--paper-table`` prints the paper's figures (MRR@20 / Recall@20) beside each model:
``movielens`` or ``lastfm`` (``hrnn_jax.papers.donkers2017.TABLE2``); ``auto`` (default)
chooses by the log's file name (``ratings.dat``, "ml-10m", "movielens" -> movielens; "lastfm",
"userid-timestamp" -> lastfm; none for the synthetic log).

LastFM-1K subsample. The paper evaluates "a 10% subsample" without saying of what. ``--user-sample
0.1 [--sample-seed S]`` keeps a random 10% of the users, each whole (deterministic per seed);
``--event-sample 0.1`` keeps each user's most recent 10% of events. The paper's average sequence
length of 1,738 (19,150,868 events of 992 users, 19,305 a user) fits the latter better.

Item-KNN's co-occurrence window is the training session (``baselines.ItemKNN``): sessions are
cut at 30 idle minutes (``--session-gap``), also on MovieLens; the paper does not state it.

Beside each neural model it prints training events/s and its ratio to the standard GRU's (the paper
reports the user-based variants at 92%). It first calls ``hrnn_jax.cpu.keep_freed_memory()``
(``--default-malloc`` to leave malloc as it is): the full softmax's step has a scratch buffer of
tens of MB, which glibc otherwise unmaps after every call, so every call page-faults it in again;
at 8,500 items that was about 30% of the standard GRU's gradient time (89 ms against 62 ms a
window) and more of the user-based GRUs' (whose residuals make the buffer larger). Per step and row
the cells cost, in multiply-adds against the state: the standard GRU 3n^2, linear 3n^2 (its user
input is projected outside the scan), rectified 8n^2 (Eq. 7's thresholds and the filtered user
vector's product depend on h), attentional 10n^2 (both inputs are weighted by xi, which depends on
h). JSON: ``{"models": {name: {"mrr@20", "recall@20", "events_per_second", ("seeds", "mean",
"std", "per_seed",) "reference", "unit", "sessions" (the test users), "p_value",
"t_test_p_value", ...}}, "reference": "user-gru-none", "labels", "paper": {"table", "metrics",
"figures"} or null, "data": {...}, "config": {...}}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from hrnn_jax import compare, cpu, data, jsonio
from hrnn_jax import config as conf
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import significance
from hrnn_jax.papers import donkers2017

MODELS = donkers2017.MODELS
REFERENCE = donkers2017.REFERENCE  # the standard GRU: every other model is tested against it
# The experiment's defaults (the paper's Table 1 where it says); flags override them.
DEFAULTS = {
    "data": {"protocol": "temporal", "test_fraction": 0.05, "min_item_support": 1,
             "min_session_len": 1},
    "model": {"hidden": 100, "dropout_session": 0.2},
    "train": {"optimizer": "adam", "learning_rate": 1e-3, "loss": "full-ce", "clip": 5.0,
              "window": 20, "batch_size": 50, "epochs": 30, "patience": 3,
              "row_updates": "sparse"},
    "eval": {"ks": (20,)},
}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a log file (default: synthetic)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma list (default: {','.join(MODELS)})")
    ap.add_argument("--users", type=int, default=1000, help="synthetic users")
    ap.add_argument("--items", type=int, default=15000, help="synthetic items (generated; those "
                    "never drawn are not in the catalogue)")
    ap.add_argument("--data-seed", type=int, default=0, help="synthetic seed")
    ap.add_argument("--paper-table", choices=("auto", "none", *donkers2017.TABLE2),
                    default="auto", help="Table 2's column printed beside the results (default "
                    "auto: by the log's file name, none for the synthetic log)")
    ap.add_argument("--user-sample", type=float, default=None, metavar="FRACTION",
                    help="keep a random FRACTION of the log's users, each whole (--sample-seed)")
    ap.add_argument("--event-sample", type=float, default=None, metavar="FRACTION",
                    help="keep each user's most recent FRACTION of events")
    ap.add_argument("--sample-seed", type=int, default=0, help="seed of --user-sample")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it is (default: hrnn_jax.cpu.keep_freed_memory)")
    for section in ("data", "model", "train", "eval"):
        conf.add_arguments(ap, section)
    args = ap.parse_args(argv)
    cfg = conf.from_sources(args, DEFAULTS)
    if not hasattr(args, "model.embed_dim"):  # Table 1: item embeddings as wide as the state
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                                 embed_dim=cfg.model.hidden))
    return args, cfg


def load(args, cfg: conf.Config):
    if args.data is None:
        raw = synthetic.generate(n_users=args.users, n_items=args.items, seed=args.data_seed,
                                 **synthetic.LASTING_TASTES)
        log, source = data.read_interactions(raw), {"source": "synthetic", "generated": {
            "users": args.users, "items": args.items, "seed": args.data_seed,
            "knobs": synthetic.LASTING_TASTES}}
    else:
        log, source = data.read_log(args.data, cfg.data), {"source": str(args.data)}
    if args.user_sample is not None:
        log = donkers2017.sample_users(log, args.user_sample, args.sample_seed)
        source["user_sample"] = {"fraction": args.user_sample, "seed": args.sample_seed}
    if args.event_sample is not None:
        log = donkers2017.sample_events(log, args.event_sample)
        source["event_sample"] = {"fraction": args.event_sample}
    if args.user_sample is not None or args.event_sample is not None:
        source["sampled_events"] = log.height
    return log, source


def user_tests(prep, ranked: dict, ks) -> dict:
    """Each model against :data:`REFERENCE`: Wilcoxon and paired t-test p-values of its
    per-user MRR@k and Recall@k (one pair per test user, seeds averaged first;
    ``significance.against_reference`` with the user as the unit)."""
    if REFERENCE not in ranked:
        return {}
    users = prep.stream["user"].to_numpy().astype(np.int64)[prep.rows.event]
    tests = significance.against_reference({n: r.ranks for n, r in ranked.items()}, REFERENCE,
                                           users, ks)
    return {name: {**t, "unit": "user"} for name, t in tests.items()}


def cell(r: dict, metric: str) -> str:
    """``mean`` or ``mean±std`` (several seeds)."""
    if r.get("seeds", 1) > 1:
        return f"{r[metric]:.4f}±{r['std'][metric]:.4f}"
    return f"{r[metric]:.4f}"


def print_table(results: dict, table: str | None) -> None:
    """MRR@20, Recall@20 (mean±std over seeds), the Wilcoxon p-values against the standard GRU,
    events/s and its ratio to the standard GRU's, and Table 2's column if ``table``."""
    ref = results.get(REFERENCE, {}).get("events_per_second")
    paper = donkers2017.TABLE2.get(table, {}) if table else {}
    print(f"\n{'model':<22}{'MRR@20':>16}{'Recall@20':>16}{'p MRR':>9}{'p Rec':>9}"
          f"{'events/s':>10}{'vs GRU':>8}" + (f"   paper {table} MRR/Recall" if table else ""))
    for name, r in results.items():
        neural = compare.is_neural(name)
        eps = f"{r['events_per_second']:>10.0f}" if neural else f"{'-':>10}"
        ratio = f"{r['events_per_second'] / ref:>8.2f}" if neural and ref else f"{'-':>8}"
        ps = r.get("p_value", {})
        pv = "".join(f"{ps[m]:>9.2g}" if ps.get(m) is not None else f"{'-':>9}"
                     for m in donkers2017.TABLE2_METRICS)
        fig = paper.get(name)
        print(f"{name:<22}{cell(r, 'mrr@20'):>16}{cell(r, 'recall@20'):>16}{pv}{eps}{ratio}"
              + (f"   {fig[0]:.5f} / {fig[1]:.5f}" if fig else ""))
    seeds, units = significance.footnote(results)
    if seeds > 1:
        print(f"mean±std over {seeds} seeds (the baselines: one deterministic run)")
    if units:
        print(f"p: {significance.WILCOXON} against {REFERENCE} (the paper's standard GRU), one "
              f"pair per test user ({units} users; paired t-tests in the JSON)")
    if "concat" in results:
        print(f"concat: {donkers2017.LABELS['concat']}")


def main(argv=None) -> int:
    args, cfg = parse(argv)
    names = [n for n in args.models.split(",") if n]
    known = compare.model_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; choose from "
              f"{', '.join(known)}", file=sys.stderr)
        return 2
    try:
        raw, source = load(args, cfg)
        prep = data.prepare(raw, cfg.data)
    except (data.DataError, conf.ConfigError, OSError) as err:
        print(f"error: {data.one_line(err)}", file=sys.stderr)
        return 1
    print(f"data: {prep.info}", flush=True)
    kept = False if args.default_malloc else cpu.keep_freed_memory()
    print(f"keep_freed_memory: {kept}", flush=True)
    ranked = compare.run_models(prep, names, cfg, log=print)
    results = compare.summarise(prep, ranked, cfg)
    for name, tests in user_tests(prep, ranked, cfg.eval.ks).items():
        results[name].update(tests)
    table = donkers2017.paper_table(args.paper_table, args.data)
    print_table(results, table)
    if args.json:
        paper = ({"table": table, "metrics": list(donkers2017.TABLE2_METRICS),
                  "figures": donkers2017.TABLE2[table]} if table else None)
        jsonio.write_json(args.json, {"models": results, "reference": REFERENCE,
                                      "labels": donkers2017.LABELS, "paper": paper,
                                      "data": {**source, **prep.info},
                                      "config": cfg.to_dict(), "keep_freed_memory": kept})
    return 0


if __name__ == "__main__":
    sys.exit(main())
