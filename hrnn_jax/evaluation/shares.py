"""Evaluation from shares of an encoded log (``data.read_share``): each process ranks the test
events of its own users only, and the ranks are gathered, so every process gets the metrics of
the whole test part.

    share = data.read_share(out_dir, G, process=(jax.process_index(), jax.process_count()))
    params = training.fit(model, share, TrainConfig(lane_groups=G), mesh=...).params
    metrics = evaluation.shares.evaluate_share(model, params, out_dir, share)

A process reads the test events of the users of its groups (the last process also those with
codes past the training part's, e.g. test-only users under the "users" protocol), joins them to
its share's training events (``data.combine``) and ranks them with ``predict.model_ranks`` on its
own devices. A row's rank depends only on its own user's events, so the ranks are those of one
process ranking every row; they are gathered exactly (integers), in process order.
"""
from __future__ import annotations

import jax
import numpy as np

from hrnn_jax import data, evaluation
from hrnn_jax.data.share import Share
from hrnn_jax.evaluation import predict
from hrnn_jax.models.contract import Model, lane_targets
from hrnn_jax.parallel.distributed import concat_over_processes


def share_rows(out_dir, share: Share, protocol: str = "last-session"):
    """``(stream, rows)`` of the share's users: their training and test events combined, and
    the evaluation rows of their test events (``data.make_eval_rows``, targets of
    ``protocol``)."""
    lo, hi = share.users
    if share.groups.stop == share.n_groups:
        hi = np.iinfo(np.int32).max
    test = data.read_encoded(out_dir, "test", users=(lo, hi))
    stream = data.combine(share.frame, test)
    return stream, data.make_eval_rows(stream, data.rows_targets(protocol))


def share_ranks(model: Model, params, out_dir, share: Share, *, protocol: str = "last-session",
                rows=None, **kw) -> np.ndarray:
    """The ranks of every process's rows, in process order (``predict.model_ranks``' keywords
    in ``kw``; its lanes' targets default to the model's under ``protocol``). ``rows``:
    :func:`share_rows`' ``(stream, rows)`` when the caller has them already (read here when
    None)."""
    stream, rows = share_rows(out_dir, share, protocol) if rows is None else rows
    kw.setdefault("targets", lane_targets(model, protocol))
    return concat_over_processes(predict.model_ranks(model, params, stream, rows, **kw))


def share_final_states(model: Model, params, share: Share, n_users: int, *,
                       batch_size: int = predict.LANES, targets=None) -> dict:
    """``predict.final_states`` of every user of the encoded log, ``[n_users]`` rows in every
    process: each process steps only its share's users (a user's state depends on its own
    events alone), and the rows are gathered exactly in process order. Users past the training
    part's codes (no training events) get zeros and ``fresh``, as ``final_states`` gives them."""
    lo, hi = share.users
    mine = predict.final_states(model, params, share.frame, n_users=hi, batch_size=batch_size,
                                targets=targets)
    rows = jax.tree_util.tree_map(lambda a: concat_over_processes(a[lo:hi]), mine)
    rest = {"carry": model.init_carry(n_users - len(rows["fresh"])),
            "output": np.zeros((n_users - len(rows["fresh"]), model.output_width), np.float32),
            "fresh": np.ones(n_users - len(rows["fresh"]), bool)}
    return jax.tree_util.tree_map(lambda a, b: np.concatenate([a, np.asarray(b)]), rows, rest)


def evaluate_share(model: Model, params, out_dir, share: Share, *,
                   protocol: str = "last-session", ks=(5, 20), **kw) -> dict[str, float]:
    """Metrics (``evaluation.metrics_from_ranks``) of the whole test part, from the shares."""
    ranks = share_ranks(model, params, out_dir, share, protocol=protocol, **kw)
    return evaluation.metrics_from_ranks(ranks, ks)
