"""The session GRU's training speed in GRU4Rec's settings, and its log for the official code.

    python experiments/bench_gru4rec.py [--json PATH] [--tsv PATH] [--users 1000] [--items 1100]
        [--epochs 3] [--settings ce,ce+2048,bpr-max+2048,full-ce]

Trains the session GRU (``gru``: one-hot input, 100 units, batch 50, one step per mini-batch,
Adagrad at 0.1, no dropout) on a synthetic log of about 1.1k items with ``training.fit``, as
``compare`` does, and prints its events per second in each epoch (the first one includes the
compilation) for each setting:

* ``ce``: cross-entropy over the in-batch candidates (GRU4Rec's ``cross-entropy`` with
  ``n_sample=0``);
* ``ce+2048``: the same plus 2048 negatives shared by the mini-batch, drawn from popularity^0.5
  (``n_sample=2048``, ``sample_alpha=0.5``);
* ``bpr-max+2048``: BPR-max with ELU(0.5) scores and score regularisation 1.0 over the same
  candidates (GRU4Rec+: ``loss=bpr-max``, ``elu_param=0.5``, ``bpreg=1.0``);
* ``full-ce``: a softmax over the whole catalogue (no official counterpart: its nearest is
  ``n_sample=2048``, more candidates than this catalogue has items).

``--tsv`` writes the same training events as GRU4Rec's tab-separated input (``SessionId``,
``ItemId``, ``Time``; one session id per user session), and the script prints, per setting, the
parameter string with which the official GRU4Rec (``run.py PATH -ps ... -d cpu``) trains the same
model on it, so that both can be timed on one machine. Nothing of the official code is part of
this project.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from hrnn_jax import compare, models, training
from hrnn_jax.config import Config, ModelConfig, TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_throughput import prepared  # the benchmarks' synthetic log, prepared alike

SAMPLED = dict(n_negatives=2048, sample_alpha=0.5)
# name: (our TrainConfig fields, the official GRU4Rec's parameters for the same model)
SETTINGS = {
    "ce": (dict(loss="ce"), "loss=cross-entropy,n_sample=0"),
    "ce+2048": (dict(loss="ce", **SAMPLED), "loss=cross-entropy,n_sample=2048,sample_alpha=0.5"),
    "bpr-max+2048": (dict(loss="bpr-max", activation="elu", elu_alpha=0.5, score_reg=1.0,
                          **SAMPLED),
                     "loss=bpr-max,n_sample=2048,sample_alpha=0.5,elu_param=0.5,bpreg=1.0"),
    "full-ce": (dict(loss="full-ce"), None),
}
# what every setting shares: 100 units, one-hot input, batch 50, Adagrad at 0.1, no dropout
COMMON = ("layers=100,batch_size=50,constrained_embedding=False,embedding=0,dropout_p_embed=0.0,"
          "dropout_p_hidden=0.0,learning_rate=0.1,momentum=0.0,logq=0.0")


def gru4rec_tsv(train: pl.DataFrame) -> pl.DataFrame:
    """The training events in GRU4Rec's input format: one ``SessionId`` per (user, session)."""
    return train.sort("user", "session", "time").select(
        pl.struct("user", "session").rank("dense").alias("SessionId"),
        pl.col("item").alias("ItemId"), pl.col("time").alias("Time"))


def official_parameters(setting: str, epochs: int) -> str | None:
    own = SETTINGS[setting][1]
    return None if own is None else f"{own},{COMMON},n_epochs={epochs}"


def speed(prep, setting: str, epochs: int) -> list[float]:
    """Training events per second of each epoch of the session GRU in ``setting``."""
    train = TrainConfig(batch_size=50, window=1, learning_rate=0.1, epochs=epochs, seed=0,
                        **SETTINGS[setting][0])
    cfg = Config(model=ModelConfig(hidden=100, dropout_session=0.0), train=train)
    model = compare.model_for("gru", prep, cfg)
    result = training.fit(model, prep.train, train, log=None,
                          targets=models.lane_targets(model, prep.protocol))
    return [float(r["events_per_second"]) for r in result.records]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--tsv", help="write the training events for the official GRU4Rec here")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--items", type=int, default=1100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma list from {','.join(SETTINGS)} (default: all)")
    args = ap.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    prep = prepared(args.users, args.items)
    predictions = int((prep.train.group_by("user", "session").len()["len"] - 1).sum())
    print(f"log: {prep.train.height} training events, {predictions} predictions, "
          f"{prep.encoded.n_items} items")
    if args.tsv:
        gru4rec_tsv(prep.train).write_csv(args.tsv, separator="\t")
        print(f"wrote {args.tsv}: run the official GRU4Rec on it with run.py {args.tsv} -ps "
              "PARAMETERS -d cpu")
    figures = {}
    for s in settings:
        eps = speed(prep, s, args.epochs)
        best = max(eps[1:] or eps)
        figures[s] = dict(events_per_second=eps, best_after_compile=best,
                          official_parameters=official_parameters(s, args.epochs))
        print(f"{s:14} events/s per epoch {[round(e) for e in eps]}  best after the first "
              f"{best:,.0f}")
        if figures[s]["official_parameters"]:
            print(f"{'':14} official: -ps {figures[s]['official_parameters']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(log=dict(events=prep.train.height, predictions=predictions,
                                    items=prep.encoded.n_items), settings=figures), f, indent=1)
    return figures


if __name__ == "__main__":
    main()
