"""Large catalogues: ranks and log-probabilities over item blocks (bounded scratch memory), and
the logQ correction of sampled negatives."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
import pytest

from hrnn_jax import models, training
from hrnn_jax.config import ConfigError, ModelConfig, TrainConfig
from hrnn_jax.evaluation import metrics, predict, rank_targets, seen_mask, with_outside
from hrnn_jax.training import losses
from hrnn_jax.training import step as step_module
from tests import reference as ref

TIES = ("optimistic", "pessimistic", "average")


def tied_scores(rng, n_rows, n_cols):
    """Integer scores (many ties), padding column highest, and non-finite entries: the targets
    of rows 0-2 score NaN, +inf, -inf, and other items of rows 3-5 the same."""
    scores = rng.integers(0, 6, size=(n_rows, n_cols)).astype(np.float32)
    scores[:, 0] = 100.0
    targets = rng.integers(1, n_cols, size=n_rows).astype(np.int32)
    for r, bad in enumerate((np.nan, np.inf, -np.inf)):
        scores[r, targets[r]] = bad
        scores[r + 3, (targets[r + 3] % (n_cols - 1)) + 1] = bad
    return scores, targets


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("with_seen", [False, True])
@pytest.mark.parametrize("with_outside", [False, True])
@pytest.mark.parametrize("block", [3, 16, 64])
def test_rank_in_blocks_equals_rank_targets(ties, with_seen, with_outside, block):
    rng = np.random.default_rng(block)
    n_rows, n_cols = 23, 50  # 50 is no multiple of 3 or 16; 64 covers it in one block
    scores, targets = tied_scores(rng, n_rows, n_cols)
    seen = rng.integers(0, n_cols, size=(n_rows, 6)).astype(np.int32) if with_seen else None
    if with_seen:
        seen[::4, 0] = targets[::4]  # a seen target is still ranked
    outside = rng.random(n_cols) < 0.3 if with_outside else None
    if with_outside:
        outside[targets[1::5]] = True  # a target outside the candidates is ranked against them
    exclude = None if seen is None else seen_mask(jnp.asarray(seen), n_cols)
    want = np.asarray(rank_targets(scores, targets, ties=ties,
                                   exclude=with_outside_mask(exclude, outside)))
    calls = []

    def score_rows(ids):
        calls.append(ids.shape)
        return jnp.asarray(scores)[:, ids]

    got = np.asarray(metrics.rank_in_blocks(
        score_rows, targets, n_cols, ties=ties, seen=seen,
        outside=None if outside is None else jnp.asarray(outside), block=block))
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32
    assert set(calls) == {(min(block, n_cols),)}  # every product has the block's shape


def with_outside_mask(exclude, outside):
    return with_outside(exclude, None if outside is None else jnp.asarray(outside))


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("with_seen", [False, True])
def test_rank_scores_by_blocks_equals_the_whole_product(ties, with_seen):
    """Integer-valued tables and states: every product is exact, so the blocked path
    (item_block < N+1) and the whole score matrix give the same ranks, ties included."""
    rng = np.random.default_rng(7)
    n_items, h, r = 1000, 6, 40
    params = {"item_out": jnp.asarray(rng.integers(-2, 3, (n_items + 1, h)), jnp.float32),
              "item_bias": jnp.asarray(rng.integers(-2, 3, n_items + 1), jnp.float32)}
    y = jnp.asarray(rng.integers(-2, 3, (r, h)), jnp.float32)
    targets = jnp.asarray(rng.integers(1, n_items + 1, r), jnp.int32)
    seen = jnp.asarray(rng.integers(0, n_items + 1, (r, 8)), jnp.int32) if with_seen else None
    outside = jnp.asarray(rng.random(n_items + 1) < 0.2)
    for out in (None, outside):
        one = predict.rank_scores(params, y, targets, seen, ties, out, item_block=4096)
        blocked = predict.rank_scores(params, y, targets, seen, ties, out, item_block=96)
        np.testing.assert_array_equal(np.asarray(blocked), np.asarray(one))
        assert len(np.unique(np.asarray(one))) > 5


def test_blocked_ranks_follow_the_blocks_scores_exactly():
    """Float tables: the target's score comes from a product of the blocks' shape, so the ranks
    are rank_targets of the scores the blocks computed, bit for bit."""
    rng = np.random.default_rng(3)
    n_items, h, r, block = 3000, 32, 64, 512
    w = jnp.asarray(rng.normal(size=(n_items + 1, h)), jnp.float32)
    b = jnp.asarray(rng.normal(size=n_items + 1), jnp.float32)
    y = jnp.asarray(rng.normal(size=(r, h)), jnp.float32)
    targets = jnp.asarray(rng.integers(1, n_items + 1, r), jnp.int32)
    got = predict.rank_scores({"item_out": w, "item_bias": b}, y, targets, None, "average",
                              item_block=block)
    product = jax.jit(lambda ids: y @ w[ids].T + b[ids])
    scores = np.full((r, n_items + 1), np.nan, np.float32)
    for j in range(-(-(n_items + 1) // block)):
        ids = np.minimum(j * block, n_items + 1 - block) + np.arange(block)
        scores[:, ids] = np.asarray(product(jnp.asarray(ids)))
    np.testing.assert_array_equal(np.asarray(got),
                                  np.asarray(rank_targets(scores, targets, ties="average")))


def test_blocked_rank_scratch_is_bounded_by_the_block():
    """XLA's own accounting of the compiled rank: its temporaries grow with rows x block, not
    with the catalogue (the whole score matrix here would be 200 MB)."""
    n_items, h, r, block = 200_000, 8, 256, 2048
    params = {"item_out": jax.ShapeDtypeStruct((n_items + 1, h), jnp.float32),
              "item_bias": jax.ShapeDtypeStruct((n_items + 1,), jnp.float32)}
    y = jax.ShapeDtypeStruct((r, h), jnp.float32)
    t = jax.ShapeDtypeStruct((r,), jnp.int32)
    seen = jax.ShapeDtypeStruct((r, 16), jnp.int32)
    for s in (None, seen):
        mem = predict.rank_scores.lower(params, y, t, s, "pessimistic",
                                        item_block=block).compile().memory_analysis()
        if mem is None:
            pytest.skip("no memory analysis on this backend")
        assert mem.temp_size_in_bytes < 8 * r * block * 4  # a few [r, block] buffers
        assert mem.temp_size_in_bytes < r * (n_items + 1) * 4 / 10


def test_target_log_probs_by_blocks():
    rng = np.random.default_rng(4)
    n_items, h, r = 1000, 16, 30
    params = {"item_out": jnp.asarray(rng.normal(size=(n_items + 1, h)), jnp.float32),
              "item_bias": jnp.asarray(rng.normal(size=n_items + 1), jnp.float32)}
    params["item_bias"] = params["item_bias"].at[0].set(50.0)  # padding: never in the softmax
    y = jnp.asarray(rng.normal(size=(r, h)) * 3, jnp.float32)
    targets = jnp.asarray(rng.integers(1, n_items + 1, r), jnp.int32)
    one = predict._target_log_probs(params, y, targets, item_block=4096)
    blocked = predict._target_log_probs(params, y, targets, item_block=77)
    s = np.asarray(y, np.float64) @ np.asarray(params["item_out"], np.float64).T + np.asarray(
        params["item_bias"], np.float64)
    s = s[:, 1:]
    top = s.max(1, keepdims=True)
    want = s[np.arange(r), np.asarray(targets) - 1] - (top[:, 0] + np.log(
        np.exp(s - top).sum(1)))
    np.testing.assert_allclose(np.asarray(one), want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(blocked), want, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The logQ correction of sampled negatives (Yi et al., RecSys 2019)
# ---------------------------------------------------------------------------------------------
def test_logq_correction_against_numpy():
    """s^c = s - log Q(j) for every candidate column; the in-batch ce loss on the corrected
    scores is -log softmax of the positive among {positive} + its negatives."""
    rng = np.random.default_rng(11)
    B, L, S, n = 3, 4, 5, 9
    scores = rng.normal(size=(B, L, B + S)).astype(np.float32)
    log_q = np.log(rng.dirichlet(np.ones(n + 1))).astype(np.float32)
    target = rng.integers(0, n + 1, size=(B, L)).astype(np.int32)  # 0: steps without a target
    target[:, 0] = [2, 2, 5]  # a lane whose positive is another lane's target too
    negatives = rng.integers(1, n + 1, size=S).astype(np.int32)
    negatives[0] = target[0, 1]  # a sampled copy of a positive: dropped for that lane
    got = np.asarray(losses.logq_correction(jnp.asarray(scores), log_q, jnp.asarray(target),
                                            jnp.asarray(negatives)))
    want = scores.astype(np.float64).copy()
    for b in range(B):
        for step in range(L):
            for c in range(B + S):
                item = target[c, step] if c < B else negatives[c - B]
                want[b, step, c] -= log_q[item]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    loss = float(losses.ranking_loss("ce", jnp.asarray(got), jnp.asarray(target),
                                     jnp.asarray(negatives)))
    rows = []
    for b in range(B):
        for step in range(L):
            pos = target[b, step]
            if pos == 0:
                continue
            cand = [target[c, step] for c in range(B)] + list(negatives)
            neg = [c for c in range(B + S) if cand[c] > 0 and cand[c] != pos]
            logits = want[b, step, [b] + neg]
            rows.append(-(logits[0] - np.log(np.exp(logits).sum())))
    np.testing.assert_allclose(loss, np.mean(rows), rtol=1e-5)


def test_popularity_log_q_is_exact_for_rare_items():
    """log Q from counts in float64: a million-item catalogue's rarest items keep their
    probability (the float32 CDF cannot resolve steps of about 1e-9); padding and unseen: 0."""
    n = 1_000_000
    items = np.concatenate([np.full(5_000_000, 1), np.arange(2, n, dtype=np.int64)])
    train = pl.DataFrame({"item": items})
    for alpha in (1.0, 0.5):
        got = step_module.popularity_log_q(train, n, alpha)
        counts = np.bincount(items, minlength=n + 1).astype(np.float64)
        w = np.where(counts > 0, counts**alpha, 0.0)
        want = np.log(w[counts > 0] / w.sum())
        np.testing.assert_allclose(got[counts > 0], want, rtol=1e-6)
        assert got[0] == 0.0 and got[n] == 0.0 and got.dtype == np.float32


def test_logq_step_is_shift_invariant_and_needs_negatives():
    """The step's ce loss with a constant log Q is the uncorrected one (a softmax does not see a
    shift of every column), and differs under skewed popularity (the correction is applied);
    logq without sampled negatives is an error, in the step and in the configuration."""
    n = 12
    model = models.build_model("gru", n, ModelConfig(hidden=8))
    frame = ref.random_log(3, 6, n)
    batch = models.lanes_for(model, frame, batch_size=4, window=3).window(0)
    skewed = pl.DataFrame({"item": np.repeat(np.arange(1, n + 1), np.arange(1, n + 1) ** 2)})
    cdf = training.popularity_cdf(skewed, n)

    def run(log_q):
        step = training.make_train_step(model, optax.sgd(0.1), loss="ce", n_negatives=16,
                                        negative_cdf=cdf, logq=log_q is not None,
                                        negative_log_q=log_q)
        state = step.init_state(jax.random.PRNGKey(0), 4)
        new, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(1))
        return float(metrics["loss"]), np.asarray(new.params["item_out"])

    plain_loss, plain_out = run(None)
    const_loss, const_out = run(np.full(n + 1, -2.5, np.float32))
    np.testing.assert_allclose(const_loss, plain_loss, rtol=1e-5)
    np.testing.assert_allclose(const_out, plain_out, rtol=1e-5, atol=1e-7)
    skew_loss, _ = run(step_module.popularity_log_q(skewed, n))
    assert abs(skew_loss - plain_loss) > 1e-3
    from_cdf = training.make_train_step(model, optax.sgd(0.1), loss="ce", n_negatives=16,
                                        logq=True, negative_cdf=cdf)
    np.testing.assert_allclose(np.asarray(from_cdf._log_q()),
                               step_module.popularity_log_q(skewed, n), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="logq"):
        training.make_train_step(model, optax.sgd(0.1), loss="ce", logq=True)
    with pytest.raises(ConfigError, match="logq"):
        TrainConfig(logq=True)
    assert TrainConfig(logq=True, n_negatives=8).logq


def test_fit_builds_the_logq_step_from_the_configuration():
    """``TrainConfig.logq`` reaches the step ``fit`` runs, with log Q of the training events."""
    train = pl.DataFrame({"user": [0, 0, 0, 1, 1], "item": [1, 2, 1, 3, 1],
                          "session": [0, 0, 0, 1, 1]})
    model = models.build_model("gru", 4, ModelConfig(hidden=4))
    plain = training.train_step_for(model, train, TrainConfig(n_negatives=4, sample_alpha=1.0))
    step = training.train_step_for(model, train, TrainConfig(n_negatives=4, sample_alpha=1.0,
                                                             logq=True))
    assert not plain.logq and plain.negative_log_q is None
    assert step.logq
    # items 1..3 by their share of the events; item 4, never drawn, gets no correction
    np.testing.assert_allclose(step.negative_log_q[1:],
                               [np.log(3 / 5), np.log(1 / 5), np.log(1 / 5), 0.0], rtol=1e-6)
