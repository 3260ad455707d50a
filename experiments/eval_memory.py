"""Peak memory of the evaluation on long histories (LastFM-1K averages 1,738 events a user).

    python experiments/eval_memory.py [--users 1000] [--events 2000] [--items 5000] [--hidden 32]
        [--chunk 1024]

Generates a log of ``--users`` users x ``--events`` events (each user draws items from its own
Zipf-like preference over ``--items`` items; times increase, with session gaps), prepares it with
the per-user temporal split (``data.prepare``, ``protocol="temporal"``, 5% test), and ranks
every evaluation row against the whole catalogue with the items seen before the target excluded,
through (a) the PersonalPop baseline (``evaluation.rank_chunks``) and (b) an untrained session GRU
run over the users' whole sequences (``predict.model_ranks``, ``targets="user"``).

After each stage it prints the process's peak resident memory so far (``ru_maxrss``, a high-water
mark, so the last figure is the peak of the whole script), its current resident memory, the
stage's seconds, and the row and event counts. This is a measurement, not a unit test.
"""
from __future__ import annotations

import argparse
import resource
import time

import jax
import numpy as np
import polars as pl

from hrnn_jax import baselines, cells, data, evaluation, models
from hrnn_jax.config import DataConfig
from hrnn_jax.evaluation import predict

MiB = 1024.0 ** 2


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / MiB


def generate(users: int, events: int, items: int, seed: int = 0) -> pl.DataFrame:
    """``users`` x ``events`` events; user u draws ranks from a Zipf(1.1) law truncated to the
    catalogue and maps them through its own permutation of the items. Gaps between events are
    exponential (mean 3 minutes), with a one-day break before about 1 event in 20."""
    rng = np.random.default_rng(seed)
    rank = np.minimum(rng.zipf(1.1, size=(users, events)), items) - 1
    item = np.empty((users, events), np.int64)
    for u in range(users):
        item[u] = rng.permutation(items)[rank[u]]
    gaps = (rng.exponential(180.0, size=(users, events))
            + 86400.0 * (rng.random((users, events)) < 0.05))
    time_ = np.cumsum(gaps, axis=1)
    frame = pl.DataFrame({"user": np.repeat(np.arange(users), events).astype(np.int64),
                          "item": item.reshape(-1), "time": time_.reshape(-1)})
    return data.read_interactions(frame)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--events", type=int, default=2000, help="events per user")
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=1024, help="evaluation rows per ranking chunk")
    args = ap.parse_args(argv)
    print(f"backend {jax.default_backend()}; {args.users} users x {args.events} events, "
          f"{args.items} items", flush=True)

    def report(stage, start, **extra):
        more = "".join(f", {k} {v}" for k, v in extra.items())
        print(f"{stage:<12} {time.perf_counter() - start:8.1f} s   "
              f"peak RSS {peak_mib():8.0f} MiB   "
              f"current RSS {current_mib():8.0f} MiB{more}", flush=True)

    report("start", time.perf_counter())
    t = time.perf_counter()
    raw = generate(args.users, args.events, args.items)
    report("generate", t, events=raw.height)

    t = time.perf_counter()
    prep = data.prepare(raw, DataConfig(protocol="temporal", min_item_support=1))
    rows = prep.rows
    n_items = prep.encoded.n_items
    stored = sum(getattr(rows, f).nbytes for f in rows.__dataclass_fields__
                 if isinstance(getattr(rows, f), np.ndarray))
    report("prepare", t, stream_events=prep.stream.height, rows=len(rows), items=n_items,
           eval_rows_MiB=f"{stored / MiB:.0f}")
    del raw

    t = time.perf_counter()
    ppop = baselines.PersonalPop().fit(prep.train, n_items)
    ranks = evaluation.rank_chunks(lambda idx: ppop.score(rows, idx), rows, exclude_seen=True,
                                   chunk=args.chunk)
    m = evaluation.metrics_from_ranks(ranks, (20,))
    report("ppop", t, **{"recall@20": f"{m['recall@20']:.4f}", "mrr@20": f"{m['mrr@20']:.4f}"})

    t = time.perf_counter()
    model = models.SessionRNN(n_items, cells.GRU(args.hidden), reset="user")
    params = model.init(jax.random.PRNGKey(0))
    ranks = predict.model_ranks(model, params, prep.stream, rows, targets="user",
                                exclude_seen=True, chunk=args.chunk)
    m = evaluation.metrics_from_ranks(ranks, (20,))
    report("gru", t, **{"recall@20": f"{m['recall@20']:.4f}", "mrr@20": f"{m['mrr@20']:.4f}"})
    print(f"peak RSS of the whole script: {peak_mib() / 1024:.2f} GiB")


if __name__ == "__main__":
    main()
