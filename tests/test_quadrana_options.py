"""Options for Quadrana et al. (RecSys 2017): the GRU with the reset gate before the recurrent
product (Cho et al. 2014, GRU4Rec), the breakdowns averaged per test session (Sec. 4.3.1),
ranking among the most supported items (VIDEOXXL, Table 5), and where the user GRU learns under
truncated back-propagation through time."""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn_jax import baselines, cells, compare, data, evaluation, models
from hrnn_jax import config as conf
from hrnn_jax.config import Config, DataConfig, EvalConfig
from hrnn_jax.data import synthetic
from hrnn_jax.data.rows import EvalRows
from hrnn_jax.evaluation import predict
from hrnn_jax.models import spec
from hrnn_jax.models.layers import score_items
from tests import reference as ref
from tests.helpers import run_lanes
from tests.tolerance import approx, max_rank_changes

H = 5
N_ITEMS = 12


def _perturbed(params, scale=0.1):
    """Non-zero biases and no symmetric weights: every term of the equations matters."""
    return jax.tree_util.tree_map(
        lambda a: a + scale * jnp.sin(jnp.arange(a.size) + 1.0).reshape(a.shape), params)


# -- the GRU's reset gate ----------------------------------------------------------------------
def test_gru_reset_before_matches_numpy_and_differs_from_after():
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    h = jax.random.normal(jax.random.PRNGKey(2), (3, H))
    after, before = cells.GRU(H), cells.GRU(H, reset_gate="before")
    p_after = after.init(jax.random.PRNGKey(0), h, x)["params"]
    p_before = before.init(jax.random.PRNGKey(0), h, x)["params"]
    # the same parameters, initialised alike: only the equations differ
    for a, b in zip(jax.tree_util.tree_leaves(p_after), jax.tree_util.tree_leaves(p_before)):
        np.testing.assert_array_equal(a, b)
    assert jax.tree_util.tree_structure(p_after) == jax.tree_util.tree_structure(p_before)
    p = _perturbed(p_before)
    new, y = before.apply({"params": p}, h, x)
    want = np.stack([ref.gru_call(p, np.asarray(h[i]), np.asarray(x[i]), "before")
                     for i in range(3)])
    np.testing.assert_allclose(new, want, **approx())
    np.testing.assert_array_equal(new, y)
    other = np.asarray(after.apply({"params": p}, h, x)[0])
    assert np.abs(other - want).max() > 1e-3  # the two forms are different functions
    # its gradient (autodiff) through b_hn equals the candidate's input bias's, as the equation
    # adds both to the same pre-activation
    g = jax.grad(lambda p: before.apply({"params": p}, h, x)[0].sum())(p)
    np.testing.assert_allclose(g["b_hn"], g["input"]["bias"][2 * H:], **approx())
    with pytest.raises(ValueError, match="reset_gate"):
        cells.GRU(H, reset_gate="inside")


def test_scan_with_reset_before_matches_per_user_loop(kind="all"):
    """HRNN All with both GRUs in the paper's form (the session GRU alone is the same cell)."""
    frame = ref.random_log(0, 5, N_ITEMS, session_len=(1, 6))
    gru = cells.GRU(H, reset_gate="before")
    model = (models.SessionRNN(N_ITEMS, gru) if kind == "gru" else
             models.HRNN(N_ITEMS, gru, user_cell=cells.GRU(H + 1, reset_gate="before"),
                         mode="all"))
    params = _perturbed(model.init(jax.random.PRNGKey(0)), 0.05)
    got = run_lanes(model, params, frame, targets="session", boundary_slots=1)
    want = {}
    for steps in ref.user_steps(frame, "session").values():
        want.update(ref.run_user(params, steps, kind, H, reset_gate="before"))
    assert got.keys() == want.keys() and want
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(2e-5, 2e-6), err_msg=f"row {row}")


def test_gru_reset_reaches_the_models_from_the_configuration():
    ap = argparse.ArgumentParser()
    conf.add_arguments(ap, "model")
    after = conf.from_sources(ap.parse_args(["--gru-reset", "after", "--hidden", "4"])).model
    default = conf.ModelConfig(hidden=4)
    assert default.gru_reset == "before" and after.gru_reset == "after"
    for name in ("gru", "gru4rec+", "concat", "hrnn-init", "hrnn-all", "hrnn-meta"):
        for cfg in (default, after):
            model = models.build_model(name, 9, cfg)
            gru_cells = [c for c in (model.session_cell, getattr(model, "user_cell", None))
                         if isinstance(c, cells.GRU)]
            assert gru_cells and all(c.reset_gate == cfg.gru_reset for c in gru_cells), name
            back = spec.from_spec(spec.to_spec(model))  # a checkpoint rebuilds the form
            assert back.session_cell.reset_gate == cfg.gru_reset, name
    # the registry's default form is written into a spec; flax's form, the cell's own default,
    # is not: checkpoints saved before the option existed (all "after") load unchanged
    assert "reset_gate" in str(spec.to_spec(models.build_model("hrnn-all", 9, default)))
    assert "reset_gate" not in str(spec.to_spec(models.build_model("hrnn-all", 9, after)))
    assert cells.GRU(4).reset_gate == "after"
    with pytest.raises(conf.ConfigError, match="gru_reset"):
        conf.ModelConfig(gru_reset="inside")


# -- breakdowns averaged per test session -----------------------------------------------------
def test_metrics_per_session_weigh_every_session_alike():
    ranks = np.array([1.0, 7.0, 2.0, 30.0, 3.0, 4.0])
    sessions = np.array([10, 10, 10, 10, 42, 7])
    m = evaluation.metrics_per_session(ranks, sessions, ks=(5,))
    # session 10: hits 1, 0, 1, 0 (recall .5, mrr (1 + 1/2) / 4); 42: 1/3; 7: 1/4
    assert m["n"] == 6 and m["sessions"] == 3
    assert m["recall@5"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["mrr@5"] == pytest.approx(((1 + 0.5) / 4 + 1 / 3 + 1 / 4) / 3)
    assert m["precision@5"] == pytest.approx(m["recall@5"] / 5)
    per_row = evaluation.metrics_from_ranks(ranks, ks=(5,))
    assert per_row["recall@5"] == pytest.approx(4 / 6) != m["recall@5"]
    # one row per session: the two averages agree
    same = evaluation.metrics_per_session(ranks, np.arange(6), ks=(5, 20))
    full = evaluation.metrics_from_ranks(ranks, ks=(5, 20))
    assert {k: pytest.approx(v) for k, v in full.items()} == {
        k: v for k, v in same.items() if k != "sessions"}
    with pytest.raises(ValueError):
        evaluation.metrics_per_session(ranks, sessions[:3])


def test_breakdowns_per_session():
    n = 7
    z = np.zeros(n, np.int32)
    rows = EvalRows(event=np.arange(n, dtype=np.int64), user=z, item=z + 1, target=z + 2,
                    history_sessions=np.array([2, 2, 2, 2, 2, 9, 9], np.int32),
                    position=np.array([1, 2, 5, 6, 7, 5, 1], np.int32),
                    session_length=np.array([8, 8, 8, 8, 8, 6, 6], np.int32))
    sessions = np.array([1, 1, 1, 1, 1, 2, 2])
    ranks = np.array([1.0, 9.0, 9.0, 9.0, 9.0, 1.0, 9.0])
    hist = evaluation.breakdown_by_history(rows, ranks, sessions=sessions)
    assert hist["short (<=6)"]["recall@5"] == pytest.approx(1 / 5)
    assert hist["long (>6)"]["sessions"] == 1 and hist["long (>6)"]["recall@5"] == 0.5
    pos = evaluation.breakdown_by_position(rows, ranks, sessions=sessions)
    # end: session 1 has 0 of 3 hits, session 2 one of one -> .5 per session, .25 per row
    assert pos["end"]["recall@5"] == pytest.approx(0.5) and pos["end"]["sessions"] == 2
    assert evaluation.breakdown_by_position(rows, ranks)["end"]["recall@5"] == pytest.approx(0.25)
    # beginning: session 1 hits 1 of 2, session 2 none of 1 -> .25 per session, 1/3 per row
    assert pos["beginning"]["recall@5"] == pytest.approx(0.25)
    assert evaluation.breakdown_by_position(rows, ranks)["beginning"]["recall@5"] == \
        pytest.approx(1 / 3)


# -- ranking among the most supported items ---------------------------------------------------
def test_top_items_and_ranks_among_them():
    counts = np.array([0, 5, 9, 5, 1, 9, 0])  # items 1..6
    assert np.flatnonzero(evaluation.top_items(counts, 3)).tolist() == [1, 2, 5]  # 1 before 3
    assert evaluation.top_items(counts, 99)[1:].all() and not evaluation.top_items(counts, 99)[0]
    rng = np.random.default_rng(0)
    R, N = 40, 6
    scores = rng.normal(size=(R, N + 1)).astype(np.float32)
    scores[:5] = np.round(scores[:5])  # ties
    target = rng.integers(1, N + 1, R).astype(np.int32)
    z = np.zeros(R, np.int32)
    rows = EvalRows(event=np.arange(R, dtype=np.int64), user=z, item=z + 1, target=target,
                    history_sessions=z, position=z + 1, session_length=z + 2)
    top = evaluation.top_items(counts, 3)
    for ties in ("optimistic", "pessimistic"):
        got = evaluation.rank_chunks(lambda idx: scores[idx], rows, ties=ties, chunk=16,
                                     candidates=top)
        for r in range(R):  # the target against the candidates other than itself
            others = [j for j in range(1, N + 1) if top[j] and j != target[r]]
            above = sum(scores[r, j] > scores[r, target[r]] for j in others)
            equal = sum(scores[r, j] == scores[r, target[r]] for j in others)
            assert got[r] == 1 + above + (equal if ties == "pessimistic" else 0), (r, ties)
    assert (got <= 4).all() and (got[~top[target]] >= 1).all()  # outside targets are ranked
    every = evaluation.rank_chunks(lambda idx: scores[idx], rows, candidates=np.ones(N + 1, bool))
    np.testing.assert_array_equal(every, evaluation.rank_chunks(lambda idx: scores[idx], rows))
    with pytest.raises(ValueError, match="candidates"):
        evaluation.rank_chunks(lambda idx: scores[idx], rows, candidates=np.zeros(N + 1, bool))
    ap = argparse.ArgumentParser()
    conf.add_arguments(ap, "eval")
    assert conf.from_sources(ap.parse_args(["--rank-top-items", "50000"])).eval.rank_top_items \
        == 50000 and conf.EvalConfig().rank_top_items is None
    with pytest.raises(conf.ConfigError, match="rank_top_items"):
        conf.EvalConfig(rank_top_items=0)


def test_model_ranks_among_candidates_equal_ranks_of_its_scores():
    raw = synthetic.generate(n_users=12, n_items=20, n_topics=4, sessions_per_user=(2, 4),
                             session_length=(2, 5), seed=0)
    prep = data.prepare(data.read_interactions(raw), DataConfig(min_item_support=1))
    N = prep.encoded.n_items
    model = models.SessionRNN(N, cells.GRU(H))
    params = model.init(jax.random.PRNGKey(0))
    frame, rows = prep.stream, prep.rows
    cfg = Config(eval=EvalConfig(rank_top_items=4))
    top = compare.candidates(prep, cfg)  # the 4 items with the most training events
    counts = baselines.item_counts(baselines.train_events(prep.train, N), N)
    assert top.sum() == 4 and counts[top].min() >= counts[~top][1:].max()
    assert compare.candidates(prep, Config()) is None
    got = predict.model_ranks(model, params, frame, rows, batch_size=2, candidates=top)
    np.testing.assert_array_equal(got, compare.evaluate_neural(model, params, prep, cfg))
    y = predict.hidden_states(model, params, frame, rows, batch_size=2)
    scores = np.asarray(score_items(model.scoring_params(params), jnp.asarray(y)))
    want = np.asarray(evaluation.rank_targets(scores, rows.target, exclude=~top[None, :]))
    assert (got != want).sum() <= max_rank_changes(len(got))  # none in full float32
    assert not np.array_equal(got, predict.model_ranks(model, params, frame, rows, batch_size=2))


# -- the user GRU's gradient under truncated BPTT ---------------------------------------------
def _two_sessions(window_split: bool):
    """One user: session A (items 1, 2), session B (items 3, 4, 5, 6): four steps, inputs 1, 3,
    4, 5 (``close_at="input"``: Eq. 3-4 run at B's first step). Whole: one window; split: B's
    first step ends the first window and the carry crosses into the second with its gradient
    stopped, as ``training.step`` does."""
    item = np.array([[1, 3, 4, 5]], np.int32)
    batch = {"item": item, "target": np.array([[2, 4, 5, 6]], np.int32),
             "session_start": np.array([[True, True, False, False]]),
             "user_start": np.array([[True, False, False, False]]),
             "valid": np.ones((1, 4), bool), "user": np.zeros((1, 4), np.int32)}
    if not window_split:
        return [batch]
    return [{k: v[:, :2] for k, v in batch.items()}, {k: v[:, 2:] for k, v in batch.items()}]


def test_user_gru_learns_within_a_session_only_in_the_window_of_its_start(mode="all"):
    """HRNN All (what holds for HRNN Init's user GRU and Eq. 4, and W_c besides)."""
    model = models.HRNN(N_ITEMS, cells.GRU(H), user_cell=cells.GRU(H), mode=mode)
    params = model.init(jax.random.PRNGKey(0))

    def last_output(p, windows):
        carry = model.init_carry(1)
        for w in windows[:-1]:
            carry = jax.lax.stop_gradient(model.apply(p, carry, w).carry)
        return model.apply(p, carry, windows[-1]).y[0, -1].sum()

    grad = jax.jit(jax.grad(last_output))
    whole = grad(params, _two_sessions(False))
    split = grad(params, _two_sessions(True))
    norm = lambda tree: float(sum(jnp.abs(a).sum() for a in jax.tree_util.tree_leaves(tree)))  # noqa: E731
    assert norm(whole["user"]) > 1e-4 and norm(whole["init"]) > 1e-4
    assert norm(split["user"]) == 0.0 and norm(split["init"]) == 0.0
    if mode == "all":  # W_c c is recomputed from the carried c: W_c learns in every window
        assert norm(split["context"]) > 1e-4
