"""Training speed against the catalogue size: the session GRU with a sampled loss at 1k, 100k
and 1M items, the same events and users for each size.

The events are one synthetic log (``hrnn_jax.data.synthetic``, 1000 items, prepared as the
demo); for each size N its item codes are spread over 1..N by a fixed random injective map, and
the model (registry ``"gru"``) has N items. Training follows GRU4Rec+ (Hidasi & Karatzoglou,
CIKM 2018, as the registry's ``gru4rec+``): BPR-max over in-batch negatives plus 2048 shared
negatives drawn from popularity^0.5, ELU scores; the tables are updated on the rows a step
touches (``row_updates="sparse"``), so a step's cost should not depend on N. Events/s are
``training.fit``'s (the first, compiling call left out); ``ratio_to_1k`` is the speed at N
against the speed at 1k items (the issue's goal: >= 0.5 at 1M).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

SIZES = (1000, 100_000, 1_000_000)


def add_arguments(parser) -> None:
    g = parser.add_argument_group("catalogue")
    g.add_argument("--catalogue-sizes", default=",".join(map(str, SIZES)),
                   help="comma-separated catalogue sizes (the first is the reference)")
    g.add_argument("--catalogue-users", type=int, default=1000, help="users of the log")
    g.add_argument("--catalogue-epochs", type=int, default=2)
    g.add_argument("--catalogue-negatives", type=int, default=2048,
                   help="shared sampled negatives per step")
    g.add_argument("--catalogue-hidden", type=int, default=100)


def _spread(train, n_enc: int, n_items: int, seed: int = 0):
    """``train`` with its item codes 1..n_enc mapped injectively into 1..n_items."""
    import polars as pl

    codes = np.zeros(n_enc + 1, np.int64)
    codes[1:] = np.random.default_rng(seed).choice(n_items, size=n_enc, replace=False) + 1
    return train.with_columns(pl.Series("item", codes[train["item"].to_numpy()]).cast(
        train.schema["item"]))


def run(args) -> dict:
    from hrnn_jax import cpu, data, models, training
    from hrnn_jax.config import DataConfig, ModelConfig, TrainConfig
    from hrnn_jax.data import synthetic

    cpu.keep_freed_memory()
    prep = data.prepare(data.read_interactions(
        synthetic.generate(n_users=args.catalogue_users, n_items=1000, seed=0)),
        DataConfig(min_item_support=1))
    n_enc = prep.encoded.n_items
    cfg = TrainConfig(loss="bpr-max", n_negatives=args.catalogue_negatives, sample_alpha=0.5,
                      activation="elu", elu_alpha=0.5, score_reg=1.0, row_updates="sparse",
                      epochs=args.catalogue_epochs, seed=0)
    setting = {"backend": jax.default_backend(), "device_count": jax.device_count(),
               "train_events": int(prep.info["train_events"]), "users": args.catalogue_users,
               "config": dataclasses.asdict(cfg)}
    out = {"setting": setting, "events_per_second": {}, "ratio_to_1k": {}}
    sizes = [int(s) for s in args.catalogue_sizes.split(",")]
    tag = f"[{setting['backend']}, {setting['device_count']} device(s)]"
    for n_items in sizes:
        train = _spread(prep.train, n_enc, n_items)
        model = models.build_model("gru", n_items, ModelConfig(hidden=args.catalogue_hidden))
        result = training.fit(model, train, cfg, log=None,
                              targets=models.lane_targets(model, prep.protocol))
        eps = float(result.events_per_second)
        out["events_per_second"][str(n_items)] = eps
        out["ratio_to_1k"][str(n_items)] = eps / out["events_per_second"][str(sizes[0])]
        print(f"catalogue {n_items:>8} items: {eps:.0f} events/s "
              f"({out['ratio_to_1k'][str(n_items)]:.2f}x of {sizes[0]}) {tag}", flush=True)
        del model, result
    return out
