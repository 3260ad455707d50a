"""Ma & Narayanaswamy, "Hierarchical Temporal-Contextual Recommenders" (HRNN-meta): the simulations
of Tables 1 and 2, our figures beside the paper's.

    python experiments/ma2019_hrnn_meta.py [--users N] [--epochs E] [--hidden H] [--json PATH]

Table 1 (``hrnn_jax.simulations.table1``): users with 0-5 sessions of 1-5 events, the item
constant within a session and +1 between sessions. A vanilla RNN (a GRU over the user's sequence),
HGRU (``models.HRNN`` closing a session when the next session's first item is predicted) and
HRNN-meta (the GRU with the time-gap control input) are trained on every next item and evaluated
by perplexity on the first item of each new session of held-out users. Time per epoch: the mean of
the epochs after the first (which compiles), on this machine; the paper's HGRU took 85x its
vanilla RNN's time, HRNN-meta the same as the RNN.

Table 2 (``hrnn_jax.simulations.table2``): the betting toy, 1000 sequences of 0-20 bets moving +1
or -1 by the previous outcome; four HRNN-meta models that see nothing of the items, their
features, their ids, or everything (ids, features, the first bet as a user feature, the outcomes
as feedback); perplexity over every bet of held-out sequences. The docstring of
``hrnn_jax.simulations`` says how the text was read.

Still to come (the rest of the issue): the feature ablation on a rating log (Table 2's ml-20m
column) and the rating table (Table 3).

JSON: ``{"table1": {"rnn": {"ppl", "seconds_per_epoch", ...}, "hgru": {...}, "hrnn_meta": {...}},
"table2": {"none": ppl, "item": ppl, "seq": ppl, "all": ppl}, "paper": {...}, "data": {...},
"config": {...}}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from hrnn_jax import jsonio, simulations
from hrnn_jax.config import TrainConfig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10000, help="simulated users (80%% train)")
    ap.add_argument("--hidden", type=int, default=32, help="GRU units of every model")
    ap.add_argument("--epochs", type=int, default=15, help="Table 1's epochs")
    ap.add_argument("--sequences", type=int, default=1000, help="Table 2's betting sequences")
    ap.add_argument("--epochs2", type=int, default=30, help="Table 2's epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.users < 10 or args.sequences < 10 or args.hidden < 1 or args.epochs < 2 \
            or args.epochs2 < 1:
        print("error: need --users >= 10, --sequences >= 10, --hidden >= 1, --epochs >= 2 (the "
              "first epoch compiles and is left out of the time per epoch) and --epochs2 >= 1",
              file=sys.stderr)
        return 2
    train = TrainConfig(epochs=args.epochs, batch_size=50, window=10, optimizer="adam",
                        learning_rate=1e-2, loss="full-ce", seed=args.seed)
    result = simulations.table1(args.users, seed=args.seed, hidden=args.hidden, train=train,
                                log=print)
    t1, paper = result["models"], simulations.TABLE1_PAPER
    print(f"\nTable 1 ({result['data']['evaluated']} first-in-session test items, catalogue "
          f"{t1['rnn']['catalogue']} items)")
    print(f"{'model':<11}{'PPL':>8}{'paper':>7}{'s/epoch':>10}{'paper':>7}{'vs RNN':>8}"
          f"{'paper':>7}")
    base, base_paper = t1["rnn"]["seconds_per_epoch"], paper["rnn"]["seconds_per_epoch"]
    for name, r in t1.items():
        ratio = r["seconds_per_epoch"] / base
        print(f"{name:<11}{r['ppl']:>8.3f}{paper[name]['ppl']:>7.0f}"
              f"{r['seconds_per_epoch']:>10.3f}{paper[name]['seconds_per_epoch']:>7.1f}"
              f"{ratio:>7.2f}x{paper[name]['seconds_per_epoch'] / base_paper:>6.0f}x")
    train2 = dataclasses.replace(train, epochs=args.epochs2)
    result2 = simulations.table2(args.sequences, seed=args.seed, hidden=args.hidden, train=train2,
                                 log=print)
    t2, paper2 = result2["models"], simulations.TABLE2_PAPER
    print(f"\nTable 2, the betting toy ({result2['data']['evaluated']} test bets, catalogue "
          f"{t2['none']['catalogue']} items)")
    print(f"{'features':<10}{'PPL':>9}{'paper':>7}")
    for name, r in t2.items():
        print(f"{name:<10}{r['ppl']:>9.2f}{paper2[name]:>7.0f}")
    if args.json:
        jsonio.write_json(args.json, {"table1": t1,
                                      "table2": {name: r["ppl"] for name, r in t2.items()},
                                      "paper": {"table1": paper, "table2": paper2},
                                      "data": {"table1": result["data"],
                                               "table2": result2["data"]},
                                      "config": {"users": args.users,
                                                 "sequences": args.sequences,
                                                 "hidden": args.hidden, "seed": args.seed,
                                                 "train": dataclasses.asdict(train),
                                                 "epochs2": args.epochs2}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
