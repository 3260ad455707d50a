"""Ranks against the whole catalogue, the metrics made from them, and the breakdowns.

    ranks = rank_chunks(score_fn, rows, ties="optimistic")     # [R] rank of each target
    metrics_from_ranks(ranks, ks=(5, 20))                      # recall@k, mrr@k, ...
    breakdown_by_history(rows, ranks); breakdown_by_position(rows, ranks)
    breakdown_by_history(rows, ranks, sessions=s)              # averaged per test session
    rank_chunks(..., candidates=top_items(counts, 50_000))     # among the most supported items

``score_fn(index) -> scores [r, N+1]`` is the only thing a model (neural or baseline) supplies
(``rows`` from ``hrnn_jax.data.make_eval_rows``). Column 0 of every score matrix is the padding
item: it is never ranked, whatever its score.

Metrics follow Quadrana et al. (2017), section 4.3: one relevant item per prediction (the next
event), Recall@k (= hit rate), Precision@k = Recall@k / k, MRR@k with the reciprocal rank set to
zero beyond k; NDCG@k is added for convenience; perplexity and RMSE for HRNN-meta's tables.
"""
from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from hrnn_jax import choices
from hrnn_jax.data.rows import EvalRows

Ties = Literal["optimistic", "pessimistic", "average"]
TIES = choices.options(Ties)


# --------------------------------------------------------------------------------------------
# Ranks
# --------------------------------------------------------------------------------------------
def rank_targets(scores, targets, *, ties: str = "optimistic", exclude=None) -> jax.Array:
    """Rank of each target among the real items (1..N) of its row. Jittable (``ties`` static).

    scores:  float [R, N+1]; column 0 is padding and never counts, whatever its score.
    targets: int [R], values in 1..N.
    exclude: optional bool [R, N+1]; marked items are removed from the ranking (they never count),
             except the target itself, which is always ranked even if marked.
    Returns float32 [R].

    Tie policy, with ``above`` = number of counted items scoring strictly above the target and
    ``equal`` = number of counted items other than the target scoring exactly the same:
      * "optimistic":  rank = 1 + above                (ties in the target's favour)
      * "pessimistic": rank = 1 + above + equal        (ties against the target)
      * "average":     rank = 1 + above + equal / 2    (expected rank under random tie-breaking)
    A target whose score is not finite (NaN, +inf or -inf) ranks last among the counted items,
    rank = 1 + (number of counted items), under every tie policy: a model that scores its
    target NaN or infinite gets no credit for it. Other items with a NaN score compare false and
    are never counted above (or equal to) a finite target.
    """
    choices.check("ties", ties, TIES)
    scores = jnp.asarray(scores)
    targets = jnp.asarray(targets).astype(jnp.int32)
    n_cols = scores.shape[1]
    cols = jnp.arange(n_cols, dtype=jnp.int32)
    is_target = cols[None, :] == targets[:, None]                        # [R, N+1]
    counted = (cols[None, :] > 0) & ~is_target                          # [R, N+1]
    if exclude is not None:
        counted = counted & ~jnp.asarray(exclude, dtype=bool)
    target_score = jnp.take_along_axis(scores, targets[:, None], axis=1)  # [R, 1]
    above = jnp.sum(counted & (scores > target_score), axis=1, dtype=jnp.int32)
    rank = 1.0 + above.astype(jnp.float32)
    if ties != "optimistic":
        equal = jnp.sum(counted & (scores == target_score), axis=1, dtype=jnp.int32)
        rank = rank + equal.astype(jnp.float32) * (1.0 if ties == "pessimistic" else 0.5)
    last = 1.0 + jnp.sum(counted, axis=1, dtype=jnp.int32).astype(jnp.float32)
    return jnp.where(jnp.isfinite(target_score[:, 0]), rank, last)


_rank_jit = jax.jit(rank_targets, static_argnames=("ties",))


# Items per block of the blocked rank: a row chunk of 1024 against 2048 items keeps the block's
# scores (8 MB) near the cores' caches; bench_throughput's eval section measures the choice.
ITEM_BLOCK = 2048


def rank_in_blocks(score_rows: Callable[[jax.Array], jax.Array], targets, n_cols: int, *,
                   ties: str = "optimistic", seen=None, outside=None,
                   block: int = ITEM_BLOCK) -> jax.Array:
    """:func:`rank_targets` over the catalogue in blocks of items, with a running count: the
    scratch memory is ``[r, block]``, never ``[r, N+1]``. Jittable (``ties``, ``block`` static).

    score_rows: ``score_rows(ids [block]) -> [r, block]``, every row's scores of the items
      ``ids`` (e.g. ``models.layers.score_items`` on those rows of the tables).
    targets: int [r], values in 1..N. n_cols: N + 1 (column 0 is padding).
    seen: optional int [r, W], items removed from each row's ranking (0: none), the target
      excepted, as ``exclude=seen_mask(seen, n_cols)`` in :func:`rank_targets`.
    outside: optional bool [N+1], items removed from every row's ranking (the target excepted).

    Every block is scored by one call of ``score_rows`` on ``block`` ids: the blocks
    ``[j * block, (j + 1) * block)`` of the catalogue (the last one moved back to end at N, its
    columns already counted skipped), and the targets' own rows, gathered ``block`` at a time.
    A target's score is thus computed by the same product, at the same shape, as the blocks',
    and the ranks equal :func:`rank_targets` on the blocks' scores, for every tie policy,
    exclusion and non-finite target score. (Scores computed at another shape, e.g. the whole
    ``[r, N+1]`` product, may differ in the last bit, and so may ranks decided by such a tie.)
    Returns float32 [r].
    """
    choices.check("ties", ties, TIES)
    targets = jnp.asarray(targets).astype(jnp.int32)
    block = min(int(block), int(n_cols))
    if block > 1 << 24:
        raise ValueError(f"rank_in_blocks: block {block} > 2**24 (counts are float32 sums)")
    t = block_target_scores(score_rows, targets, block)
    counts = ("above",) + (("equal",) if ties != "optimistic" else ()) + \
        (("counted",) if seen is not None else ())

    def body(j, acc):
        first = j * block
        start = jnp.minimum(first, n_cols - block)
        cols = start + jnp.arange(block, dtype=jnp.int32)
        counted = ((cols >= first) & (cols > 0))[None, :]
        if outside is not None:
            counted = counted & ~jax.lax.dynamic_slice_in_dim(outside, start, block)[None, :]
        if seen is not None:
            counted = counted & ~block_seen(seen, start, block)
        s = score_rows(cols)
        # the target's own column scores exactly t, so it is never above: only equal and
        # counted leave it out by name
        other = cols[None, :] != targets[:, None]
        masks = {"above": counted & (s > t[:, None]),
                 "equal": counted & other & (s == t[:, None]), "counted": counted & other}
        return tuple(a + row_count(masks[name]) for a, name in zip(acc, counts))

    zeros = tuple(jnp.zeros(targets.shape, jnp.int32) for _ in counts)
    acc = dict(zip(counts, jax.lax.fori_loop(0, -(-n_cols // block), body, zeros)))
    rank = 1.0 + acc["above"].astype(jnp.float32)
    if ties != "optimistic":
        rank = rank + acc["equal"].astype(jnp.float32) * (1.0 if ties == "pessimistic" else 0.5)
    n_counted = acc["counted"] if seen is not None else _n_counted(targets, n_cols, outside)
    return jnp.where(jnp.isfinite(t), rank, 1.0 + n_counted.astype(jnp.float32))


def target_log_softmax_in_blocks(score_rows: Callable[[jax.Array], jax.Array], targets,
                                 n_cols: int, *, block: int = ITEM_BLOCK) -> jax.Array:
    """log softmax over items 1..N (column 0, padding, left out) at each row's target ``[r]``,
    over the catalogue in blocks of items: a running maximum and a running sum of exponentials
    (the streaming log-sum-exp of Milakov & Gimelshein, "Online normalizer calculation for
    softmax", arXiv 2018), so the scratch memory is ``[r, block]``. ``score_rows``, ``targets``
    and ``n_cols`` as :func:`rank_in_blocks`; equal to ``jax.nn.log_softmax`` up to rounding."""
    targets = jnp.asarray(targets).astype(jnp.int32)
    block = min(int(block), int(n_cols))
    r = targets.shape[0]

    def body(j, acc):
        m, total = acc
        first = j * block
        start = jnp.minimum(first, n_cols - block)
        cols = start + jnp.arange(block, dtype=jnp.int32)
        s = jnp.where(((cols >= first) & (cols > 0))[None, :], score_rows(cols), -jnp.inf)
        new_m = jnp.maximum(m, jnp.max(s, axis=1))
        safe = jnp.where(jnp.isfinite(new_m), new_m, 0.0)
        total = total * jnp.exp(m - safe) + jnp.sum(jnp.exp(s - safe[:, None]), axis=1)
        return new_m, total

    init = (jnp.full((r,), -jnp.inf, jnp.float32), jnp.zeros((r,), jnp.float32))
    m, total = jax.lax.fori_loop(0, -(-n_cols // block), body, init)
    lse = jnp.where(jnp.isfinite(m), m, 0.0) + jnp.log(total)
    return block_target_scores(score_rows, targets, block) - lse


def row_count(mask) -> jax.Array:
    """int32 [r]: the True entries of each row of ``mask [r, n]`` (n <= 2**24), summed as
    float32, which XLA's CPU backend vectorises better than an integer sum of booleans."""
    return jnp.sum(jnp.where(mask, 1.0, 0.0), axis=1).astype(jnp.int32)


def block_target_scores(score_rows, targets, block: int) -> jax.Array:
    """Each row's score of its own target ``[r]``, by :func:`rank_in_blocks`'s ``score_rows`` on
    the targets' ids, ``block`` at a time (the rows of piece k read the diagonal of its scores)."""
    r = targets.shape[0]
    pieces = []
    for k in range(0, r, block):
        ids = targets[k:k + block]
        n = ids.shape[0]
        s = score_rows(jnp.pad(ids, (0, block - n)))[k:k + n]  # [n, block]
        pieces.append(s[jnp.arange(n), jnp.arange(n)])
    return jnp.concatenate(pieces) if pieces else jnp.zeros((0,), jnp.float32)


def block_seen(seen, start, block: int) -> jax.Array:
    """bool [r, block]: True where column ``start + c`` is among the row's ``seen`` items."""
    local = jnp.asarray(seen, jnp.int32) - start
    local = jnp.where((local >= 0) & (local < block), local, block)  # out of the block: dropped
    r = local.shape[0]
    mask = jnp.zeros((r, block), dtype=bool)
    return mask.at[jnp.arange(r)[:, None], local].set(True, mode="drop")


def _n_counted(targets, n_cols: int, outside) -> jax.Array:
    """Items a row ranks its target against without seen items: 1..N (or the candidates), less
    the target itself."""
    real = (targets > 0) & (targets < n_cols)
    if outside is None:
        return (n_cols - 1) - real.astype(jnp.int32)
    inside = ~jnp.asarray(outside, bool)
    n_in = jnp.sum(inside[1:], dtype=jnp.int32)
    return n_in - (real & inside[jnp.clip(targets, 0, n_cols - 1)]).astype(jnp.int32)


def seen_mask(seen_idx: jax.Array, n_cols: int) -> jax.Array:
    """bool [r, N+1] with True at ``seen_idx`` [r, L] (padding entries point at column 0).
    Jittable."""
    r = seen_idx.shape[0]
    mask = jnp.zeros((r, n_cols), dtype=bool)
    return mask.at[jnp.arange(r)[:, None], seen_idx].set(True)


_seen_mask = jax.jit(seen_mask, static_argnames=("n_cols",))


def top_items(counts, n: int) -> np.ndarray:
    """The ``n`` most supported items as a candidate set: bool ``[N+1]``, True at the ``n`` items
    with the most training events (``counts [N+1]``, e.g. ``baselines.item_counts``; entry 0, the
    padding, is never chosen), equal counts broken towards the smaller item id; every item when
    ``n >= N``. Quadrana et al. (RecSys 2017, Sec. 4.3.3, Table 5) rank VIDEOXXL's targets
    against its 50,000 most supported items, "as done in" Hidasi et al. (RecSys 2016)."""
    counts = np.asarray(counts).reshape(-1)
    if n < 1:
        raise ValueError(f"top_items: n must be >= 1, got {n}")
    if counts.size < 2:
        raise ValueError("top_items: counts must cover items 1..N (N >= 1) and the padding 0")
    ids = np.arange(1, counts.size)
    order = np.lexsort((ids, -counts[1:].astype(np.float64)))  # most events first, then id
    mask = np.zeros(counts.size, dtype=bool)
    mask[ids[order[:n]]] = True
    return mask


def rank_chunks(score_fn: Callable[[np.ndarray], object] | None, rows: EvalRows, *,
                ties: str = "optimistic", exclude_seen: bool = False, chunk: int = 1024,
                rank_fn: Callable | None = None,
                progress: Callable[[str, int, int], None] | None = None,
                candidates: np.ndarray | None = None) -> np.ndarray:
    """Ranks of all rows' targets, computed ``chunk`` rows at a time. Returns float32 [R].

    ``score_fn(index) -> scores [len(index), N+1]`` (numpy or jax) for ``index`` int64 row positions
    into ``rows``. Every call receives exactly ``min(chunk, R)`` indices: the last chunk is padded
    by repeating its last index (the padded ranks are dropped), so a jitted ``score_fn`` and the
    jitted rank each compile once.

    ``rank_fn(index, targets, seen) -> ranks`` replaces ``score_fn`` where scoring and ranking are
    one jitted function (neural models: the scores never leave the fused computation); ``seen`` is
    ``None`` or the padded seen items ``[r, W]`` for :func:`seen_mask`, and the function must
    follow :func:`rank_targets` with ``ties``.

    ``exclude_seen``: remove from the ranking the items the user interacted with before the target
    (``rows.seen``, derived chunk by chunk from the rows' histories), the target itself excepted
    (see ``rank_targets``).

    ``progress``: ``progress("evaluation", done, total)`` after every chunk (``hrnn_jax.progress``).

    ``candidates``: bool ``[N+1]`` (:func:`top_items`), the items a target is ranked against
    (``score_fn`` path; a ``rank_fn`` applies them itself, as ``predict.model_ranks`` does):
    the others never count, like seen items. A target outside the set is still ranked, against
    the set: its rank is 1 + the candidates scoring above it, as GRU4Rec's evaluation adds such
    a target to the items it compares. None: the whole catalogue.
    """
    choices.check("ties", ties, TIES)
    if candidates is not None and rank_fn is not None:
        raise ValueError("rank_chunks: give the candidates to rank_fn itself (rank_fn ranks)")
    outside = None if candidates is None else jnp.asarray(~check_candidates(candidates))
    n_rows = len(rows)
    out = np.empty(n_rows, dtype=np.float32)
    if n_rows == 0:
        return out
    size = min(int(chunk), n_rows)
    n_chunks = -(-n_rows // size)
    for start in range(0, n_rows, size):
        n = min(size, n_rows - start)
        index = np.arange(start, start + size, dtype=np.int64)
        index[n:] = start + n - 1
        targets = jnp.asarray(rows.target[index])
        seen = jnp.asarray(rows.seen(index)[0]) if exclude_seen else None
        if rank_fn is not None:
            ranks = rank_fn(index, targets, seen)
        else:
            scores = jnp.asarray(score_fn(index))
            if scores.shape[0] != size:
                raise ValueError(f"score_fn returned {scores.shape[0]} rows for {size} indices")
            exclude = None if seen is None else _seen_mask(seen, n_cols=scores.shape[1])
            if outside is not None:
                if outside.shape[0] != scores.shape[1]:
                    raise ValueError(f"candidates cover {outside.shape[0] - 1} items, the scores "
                                     f"{scores.shape[1] - 1}")
                exclude = with_outside(exclude, outside)
            ranks = _rank_jit(scores, targets, ties=ties, exclude=exclude)
        out[start:start + n] = np.asarray(ranks)[:n]
        if progress is not None:
            progress("evaluation", start // size + 1, n_chunks)
    return out


def with_outside(exclude, outside):
    """The items a row's rank skips: the seen mask ``exclude`` ``[r, N+1]`` (or None) joined with
    ``outside`` ``[N+1]``, the items not among the candidates (None: all are)."""
    if outside is None:
        return exclude
    return outside[None, :] if exclude is None else exclude | outside[None, :]


def check_candidates(candidates) -> np.ndarray:
    """``candidates`` as bool ``[N+1]`` with at least one item (ValueError otherwise)."""
    mask = np.asarray(candidates)
    if mask.dtype != bool or mask.ndim != 1 or mask.size < 2:
        raise ValueError("candidates must be a bool mask [N+1] over the items (top_items)")
    if not mask[1:].any():
        raise ValueError("candidates: no item to rank against")
    return mask


# --------------------------------------------------------------------------------------------
# Metrics and breakdowns
# --------------------------------------------------------------------------------------------
def metrics_from_ranks(ranks, ks=(5, 20)) -> dict[str, float]:
    """Top-k metrics from ranks [R] (one relevant item per row; fractional ranks allowed).

    For each k: ``recall@k`` = ``hit@k`` = mean(rank <= k); ``precision@k`` = recall@k / k;
    ``mrr@k`` = mean(1/rank if rank <= k else 0); ``ndcg@k`` = mean(1/log2(rank+1) if rank <= k
    else 0). Also ``n`` = R. Raises ValueError on empty ranks.
    """
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if ranks.size == 0:
        raise ValueError("metrics_from_ranks: no ranks")
    out: dict[str, float] = {"n": int(ranks.size)}
    for k in ks:
        hit = ranks <= k
        recall = float(hit.mean())
        out[f"recall@{k}"] = recall
        out[f"hit@{k}"] = recall
        out[f"precision@{k}"] = recall / k
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    return out


def metrics_per_session(ranks, sessions, ks=(5, 20)) -> dict[str, float]:
    """Top-k metrics averaged per test session (Quadrana et al., RecSys 2017, Sec. 4.3.1: "the
    average Recall@5 and MRR@5 per test session"): each session's mean over its rows, then the
    mean over the sessions, so that every session weighs the same whatever its number of
    predictions (:func:`metrics_from_ranks` weighs every prediction the same; the two agree when
    every session has as many rows).

    ranks: [R]; sessions: [R], the test session of each row (``significance.row_sessions``).
    Returns the keys of :func:`metrics_from_ranks`, ``n`` = R, and ``sessions`` = their number.
    """
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    sessions = np.asarray(sessions).reshape(-1)
    if sessions.shape != ranks.shape:
        raise ValueError(f"metrics_per_session: {ranks.size} ranks, {sessions.size} sessions")
    if ranks.size == 0:
        raise ValueError("metrics_per_session: no ranks")
    _, which, size = np.unique(sessions, return_inverse=True, return_counts=True)
    which = which.reshape(-1)
    weight = 1.0 / (size[which] * len(size))  # each session 1/S, shared by its rows

    def mean(values):
        return float(np.sum(weight * values))

    out: dict[str, float] = {"n": int(ranks.size), "sessions": int(len(size))}
    for k in ks:
        hit = ranks <= k
        recall = mean(hit)
        out[f"recall@{k}"] = recall
        out[f"hit@{k}"] = recall
        out[f"precision@{k}"] = recall / k
        out[f"mrr@{k}"] = mean(np.where(hit, 1.0 / ranks, 0.0))
        out[f"ndcg@{k}"] = mean(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0))
    return out


def perplexity(log_probs, n_items: int) -> dict[str, float]:
    """Perplexity of next-item predictions (Brown et al. 1992, as Ma & Narayanaswamy use it):
    ``exp(-mean log p(target))`` over the rows, ``log_probs [R]`` natural logs of the full
    softmax over the catalogue. A perplexity of p is a uniform guess among p items, so it depends
    on the catalogue: the result states it (``{"ppl", "n", "catalogue": n_items}``)."""
    lp = np.asarray(log_probs, dtype=np.float64).reshape(-1)
    if lp.size == 0:
        raise ValueError("perplexity: no rows")
    return {"ppl": float(np.exp(-lp.mean())), "n": int(lp.size), "catalogue": int(n_items)}


def rmse(predicted, actual) -> dict[str, float]:
    """Root-mean-square error of rating predictions (Ma & Narayanaswamy, Table 3):
    ``sqrt(mean((predicted - actual)^2))`` over the rows (``[R]`` each): ``{"rmse", "n"}``."""
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    if p.shape != a.shape:
        raise ValueError(f"rmse: {p.size} predictions for {a.size} ratings")
    if p.size == 0:
        raise ValueError("rmse: no rows")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(a))):
        raise ValueError("rmse: predictions or ratings are NaN or infinite")
    return {"rmse": float(np.sqrt(np.mean((p - a) ** 2))), "n": int(p.size)}


def breakdown(ranks, groups: dict[str, np.ndarray], ks=(5,), sessions=None) -> dict[str, dict]:
    """Metrics per group: ``groups`` maps a label to a bool mask [R]; empty groups are omitted.
    ``sessions`` (int [R], the test session of each row): averaged per test session within each
    group (:func:`metrics_per_session`); None: per prediction (:func:`metrics_from_ranks`)."""
    ranks = np.asarray(ranks)
    if sessions is None:
        return {name: metrics_from_ranks(ranks[mask], ks)
                for name, mask in groups.items() if mask.any()}
    sessions = np.asarray(sessions)
    if sessions.shape != ranks.shape:
        raise ValueError(f"sessions has shape {sessions.shape}, ranks {ranks.shape}")
    return {name: metrics_per_session(ranks[mask], sessions[mask], ks)
            for name, mask in groups.items() if mask.any()}


def _check_len(rows: EvalRows, ranks) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.shape != (len(rows),):
        raise ValueError(f"ranks has shape {ranks.shape}, rows has {len(rows)} rows")
    return ranks


def breakdown_by_history(rows: EvalRows, ranks, ks=(5,), threshold: int = 6,
                         sessions=None) -> dict[str, dict]:
    """Quadrana et al. 4.3.1: users with a short vs long history.

    Groups by ``rows.history_sessions`` (distinct training sessions of the user):
    "short (<=6)" for ``<= threshold`` and "long (>6)" for more (the paper's text says "<= 6" and
    "6 or more"; we make the groups disjoint). Returns {label: metrics}; empty groups omitted.
    ``sessions`` (int [R], ``significance.row_sessions``): the metrics averaged per test session,
    as the paper computes them ("the average Recall@5 and MRR@5 per test session"); None (the
    default): per prediction, each row weighing the same (long sessions weigh more).
    """
    ranks = _check_len(rows, ranks)
    short = rows.history_sessions <= threshold
    return breakdown(ranks, {f"short (<={threshold})": short, f"long (>{threshold})": ~short}, ks,
                     sessions)


def breakdown_by_position(rows: EvalRows, ranks, ks=(5,), min_session_len: int = 5,
                          sessions=None) -> dict[str, dict]:
    """Quadrana et al. 4.3.2: position within the session.

    Only rows whose target session has ``session_length >= min_session_len`` and whose input is in
    the target's session (``same_session``; cross-session rows exist only with ``targets="user"``).
    Groups by the 1-based position of the INPUT event: "beginning" (1st-2nd event), "middle"
    (3rd-4th), "end" (5th and later). Returns {label: metrics}; empty groups omitted.
    ``sessions`` (int [R]): each group's metrics averaged per test session (a session's mean over
    its rows in the group, then the mean over sessions), as Sec. 4.3.1 averages; None (the
    default): per prediction. Only "end" can differ between the two, unless rows are missing:
    a session has two rows at the beginning and two in the middle, and len - 5 at its end.
    """
    ranks = _check_len(rows, ranks)
    ok = rows.session_length >= min_session_len
    if rows.same_session is not None:
        ok = ok & rows.same_session
    pos = rows.position
    return breakdown(ranks, {"beginning": ok & (pos <= 2),
                             "middle": ok & (pos >= 3) & (pos <= 4),
                             "end": ok & (pos >= 5)}, ks, sessions)
