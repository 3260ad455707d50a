"""Training from shares of an encoded log: every process reads only its lane groups' users.

The command line does this for any neural models (``hrnn-jax compare ENCODED_DIR --lane-groups
G``, README "Scaling out"); this script shows the API calls for one model and also writes the
trained parameters and the gathered ranks, which ``tests/test_processes.py`` compares with one
process reading every group.

One command per process (here two on one machine, 4 host devices each; on a cluster drop the
XLA flag and give the real coordinator):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python experiments/share_training.py \
        ENCODED_DIR --lane-groups 2 --mesh data=8 --coordinator localhost:8476 \
        --num-processes 2 --process-id 0 --out params.npz
    (the same with --process-id 1)

``ENCODED_DIR`` is a ``data.preprocess_parquet`` output. Each process reads its share
(``data.read_share``) and calls ``training.fit`` with it, then ranks the test events of its own
users (``evaluation.shares``); process 0 prints the epochs and the metrics of the whole test part
and writes the trained parameters and the gathered ranks (``--out``, an ``.npz``: ``param_i``,
the parameters' leaves in tree order, and ``ranks``). Every process prints how many training
events it read. Without the process flags one process reads every group.
"""
from __future__ import annotations

import argparse

import jax
import numpy as np

from hrnn_jax import data, evaluation, models, training
from hrnn_jax.config import ModelConfig, TrainConfig
from hrnn_jax.evaluation import shares
from hrnn_jax.parallel import distributed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("encoded", help="a data.preprocess_parquet output directory")
    ap.add_argument("--model", default="hrnn-init")
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n-negatives", type=int, default=0)
    ap.add_argument("--lane-groups", type=int, default=2)
    ap.add_argument("--mesh", default=None, help="e.g. data=8 (lanes over data)")
    ap.add_argument("--coordinator", default=None)
    ap.add_argument("--num-processes", type=int, default=None)
    ap.add_argument("--process-id", type=int, default=None)
    ap.add_argument("--protocol", default="last-session", help="the split of the encoded log")
    ap.add_argument("--out", default=None, help="write the parameters and ranks (.npz)")
    args = ap.parse_args(argv)
    if args.coordinator is not None:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    share = data.read_share(args.encoded, args.lane_groups,
                            process=(jax.process_index(), jax.process_count()))
    print(f"process {jax.process_index()}: lane groups {list(share.groups)}, "
          f"{share.frame.height} of {int(share.item_counts.sum())} training events read",
          flush=True)
    model = models.build_model(args.model, share.n_items, ModelConfig(hidden=args.hidden))
    cfg = TrainConfig(batch_size=args.batch_size, window=args.window, epochs=args.epochs,
                      n_negatives=args.n_negatives, lane_groups=args.lane_groups)
    main_process = distributed.is_main()
    result = training.fit(model, share, cfg, mesh=args.mesh, log=print if main_process else None)
    ranks = shares.share_ranks(model, result.params, args.encoded, share, protocol=args.protocol)
    if main_process:
        metrics = evaluation.metrics_from_ranks(ranks)
        print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if main_process and args.out:
        leaves = jax.tree_util.tree_leaves(result.params)
        np.savez(args.out, ranks=ranks, **{f"param_{i}": np.asarray(a)
                                           for i, a in enumerate(leaves)})


if __name__ == "__main__":
    main()
