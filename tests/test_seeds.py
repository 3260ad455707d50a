"""Several seeds side by side (mean ± std) and paired significance tests against a reference."""
import itertools
import json

import jax
import numpy as np
import pytest
from scipy import stats

from hrnn_jax import cli, compare, data, models, precision, tables, training
from hrnn_jax.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.data.lanes import make_lanes
from hrnn_jax.evaluation import significance
from hrnn_jax.training import optim
from tests.tolerance import approx, max_rank_changes

# dropout everywhere: the seeds' dropout masks must follow their single runs too
MODEL = ModelConfig(hidden=8, dropout_session=0.2, dropout_user=0.2, dropout_init=0.2)
TRAIN = dict(batch_size=4, epochs=2, seed=5)


@pytest.fixture(scope="module", autouse=True)
def full_float32():
    """Full float32 products (on CPU, as always): these tests check that vmapped seeds equal
    single runs, not TF32 roundoff, which grows over a thousand steps: on an H100 at the default
    precision one item_in entry of a vmapped HRNN All seed ended 0.009 from its single run after
    2 epochs (1e-5 at "highest")."""
    with precision.matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def prep():
    raw = synthetic.generate(n_users=40, n_items=50, seed=0)
    return data.prepare(data.read_interactions(raw), DataConfig(min_item_support=1))


def host(params):
    return jax.tree_util.tree_map(np.asarray, params)


# ---------------------------------------------------------------------------------------------
# (a) fit with S seeds = S single fits
# ---------------------------------------------------------------------------------------------
def config_of(seed, seeds, window=1, ks=(5, 20)):
    return Config(model=MODEL, train=TrainConfig(**{**TRAIN, "seed": seed}, seeds=seeds,
                                                 window=window), eval=EvalConfig(ks=ks))


@pytest.fixture(scope="module")
def fitted(prep):
    """``fitted(name, seed, seeds, window) -> (model, FitResult)`` through ``compare.fit_neural``
    (as ``compare.run_models`` trains), each fit once per module: compiling dominates here."""
    cache = {}

    def get(name, seed, seeds, window=1):
        key = (name, seed, seeds, window)
        if key not in cache:
            config = config_of(seed, seeds, window)
            model = compare.model_for(name, prep, config)
            result = compare.fit_neural(model, prep, config)
            cache[key] = (model, result._replace(params=host(result.params)))
        return cache[key]

    return get


# HRNN's vmapped step is checked against single seeds in the default run by
# tests/test_training.py::test_vmapped_seeds_match_single_seed_training (test budget)
# and the vmapped fit of the session GRU by test_seeds_compare_equals_single_compares (below)
@pytest.mark.parametrize("name,window", [pytest.param("gru", 1, marks=pytest.mark.slow),
                                         pytest.param("gru", 4, marks=pytest.mark.slow),
                                         pytest.param("hrnn-all", 1, marks=pytest.mark.slow),
                                         pytest.param("hrnn-all", 4, marks=pytest.mark.slow)])
def test_vmapped_fit_equals_single_fits(fitted, name, window):
    S, seed = 3, TRAIN["seed"]
    _, many = fitted(name, seed, S, window)
    per_seed = np.array([h["loss_per_seed"] for h in many.records])  # [epochs, S]
    assert per_seed.shape == (TRAIN["epochs"], S)
    for i in range(S):
        _, one = fitted(name, seed + i, 1, window)
        np.testing.assert_allclose(per_seed[:, i], [h["loss"] for h in one.records],
                                   **approx(1e-5, 1e-5), err_msg=f"losses of seed {i}")
        want = dict(jax.tree_util.tree_leaves_with_path(one.params))
        for key, got in jax.tree_util.tree_leaves_with_path(many.params):
            np.testing.assert_allclose(got[i], want[key], **approx(1e-5, 1e-5),
                                       err_msg=f"seed {i} {jax.tree_util.keystr(key)}")
    # the seeds really differ
    assert not np.allclose(per_seed[:, 0], per_seed[:, 1])


@pytest.mark.parametrize("opt, row_updates", [
    ("adagrad", "sparse"), ("adam", "dense"),
    # the other two pairs exercise no path these two do not (test budget)
    pytest.param("adagrad", "dense", marks=pytest.mark.slow),
    pytest.param("adam", "sparse", marks=pytest.mark.slow)])
def test_masked_step_inactive_leaves_state_exactly(prep, opt, row_updates):
    """``active`` False: nothing changes, bit for bit (momentum, Adam's count, carry, tables);
    True: the plain step. ``fit`` runs the vmapped seeds' steps this way, with sparse row
    updates (the old default of make_train_step) or dense ones (its default now, and what fit
    picks for these two optimisers under ``row_updates="auto"``)."""
    model = models.build_model("hrnn-init", prep.encoded.n_items, MODEL)
    tx = optim.make_optimizer(opt, 0.1, momentum=0.5 if opt == "adagrad" else 0.0)
    step = training.make_train_step(model, tx, row_updates=row_updates)
    assert bool(step.row_tables) == (row_updates == "sparse")
    lanes = make_lanes(prep.train, batch_size=4, window=2, seed=0, targets="session",
                       close_at="input")
    plain = jax.jit(step)
    masked = jax.jit(lambda st, b, r, on: step(st, b, r, on))
    state, _ = plain(step.init_state(jax.random.PRNGKey(0), 4), lanes.window(0),
                     jax.random.PRNGKey(1))  # nonzero momentum and accumulators
    before = host(state)
    off, m_off = masked(state, lanes.window(1), jax.random.PRNGKey(2), False)
    for a, b in zip(jax.tree_util.tree_leaves(host(off)), jax.tree_util.tree_leaves(before)):
        np.testing.assert_array_equal(a, b)
    assert float(m_off["loss"]) == 0.0 and int(m_off["events"]) == 0
    on, m_on = masked(state, lanes.window(1), jax.random.PRNGKey(2), True)
    want, m_want = plain(state, lanes.window(1), jax.random.PRNGKey(2))
    # another compiled program: XLA may fuse (and round) differently, so float32 roundoff apart
    for a, b in zip(jax.tree_util.tree_leaves(host(on)), jax.tree_util.tree_leaves(host(want))):
        np.testing.assert_allclose(a, b, **approx())
    assert float(m_on["loss"]) == pytest.approx(float(m_want["loss"]), rel=1e-6)
    assert int(m_on["events"]) == int(m_want["events"]) > 0
    assert int(on.step) == int(state.step) + 1 == int(off.step) + 1


# ---------------------------------------------------------------------------------------------
# (b) compare with S seeds = S single-seed compares
# ---------------------------------------------------------------------------------------------
def test_seeds_compare_equals_single_compares(prep, fitted):
    S, names = 3, ["pop", "gru"]
    config = config_of(TRAIN["seed"], S)
    ranked = compare.run_models(prep, names, config, log=None)
    assert ranked["gru"].ranks.shape == (S, len(prep.rows))
    assert ranked["pop"].ranks.shape == (1, len(prep.rows))
    results = compare.summarise(prep, ranked, config, reference="pop")
    gru = results["gru"]
    assert gru["seeds"] == S and results["pop"]["seeds"] == 1
    for i in range(S):
        # a single-seed compare: run_models' fit (shared with test (a)) and evaluation
        single_cfg = config_of(TRAIN["seed"] + i, 1)
        model, result = fitted("gru", TRAIN["seed"] + i, 1)
        single = compare.Ranked(compare.evaluate_neural(model, result.params, prep,
                                                        single_cfg)[None], 0.0, 0.0)
        moved = int((single.ranks[0] != ranked["gru"].ranks[i]).sum())
        assert moved <= max_rank_changes(len(prep.rows)), f"seed {i}: {moved} ranks moved"
        one = compare.summarise(prep, {"gru": single}, single_cfg)["gru"]
        for metric, values in gru["per_seed"].items():
            assert abs(values[i] - one[metric]) <= 1e-6, (i, metric)
    for metric, values in gru["per_seed"].items():
        assert gru[metric] == gru["mean"][metric] == pytest.approx(np.mean(values), abs=1e-12)
        assert gru["std"][metric] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert len(set(gru["per_seed"]["mrr@20"])) > 1  # the seeds differ
    # the baseline: one deterministic run
    assert all(v == 0.0 for v in results["pop"]["std"].values())
    assert "p_value" not in results["pop"]
    # the test is on the seed-averaged per-session metrics
    sessions = significance.row_sessions(prep.stream, prep.rows)
    a = significance.session_metrics(ranked["gru"].ranks, sessions).values["mrr@20"]
    b = significance.session_metrics(ranked["pop"].ranks, sessions).values["mrr@20"]
    assert gru["p_value"]["mrr@20"] == stats.wilcoxon(a - b, zero_method="wilcox").pvalue
    assert gru["t_test_p_value"]["mrr@20"] == stats.ttest_rel(a, b).pvalue
    assert gru["reference"] == "pop" and gru["sessions"] == len(np.unique(sessions))
    assert set(gru["p_value"]) == {"recall@5", "mrr@5", "recall@20", "mrr@20"}


# ---------------------------------------------------------------------------------------------
# (c) the Wilcoxon signed-rank test
# ---------------------------------------------------------------------------------------------
def signed_rank_by_hand(d):
    """Plain loops: zero differences dropped, mid-ranks of |d|, W+ and W-, and the two-sided p
    of min(W+, W-) over all 2^n equally likely sign assignments."""
    d = [x for x in d if x != 0]
    ranks = []
    for x in d:
        below = sum(1 for y in d if abs(y) < abs(x))
        same = sum(1 for y in d if abs(y) == abs(x))
        ranks.append(below + (same + 1) / 2)
    w_plus = sum(r for r, x in zip(ranks, d) if x > 0)
    w_minus = sum(r for r, x in zip(ranks, d) if x < 0)
    t = min(w_plus, w_minus)
    sums = np.array([sum(r for r, s in zip(ranks, signs) if s)
                     for signs in itertools.product((0, 1), repeat=len(ranks))])
    return w_plus, w_minus, t, min(1.0, 2 * float(np.mean(sums <= t)))


def test_wilcoxon_textbook_case():
    """Wikipedia's example of the test: 10 pairs, one zero difference, two tied |d| = 5;
    W+ = 27, W- = 18 (its signed-rank sum W = 9)."""
    before = [125, 115, 130, 140, 140, 115, 140, 125, 140, 135]
    after = [110, 122, 125, 120, 140, 124, 123, 137, 135, 145]
    d = np.subtract(before, after)
    w_plus, w_minus, t, p = signed_rank_by_hand(d)
    assert (w_plus, w_minus, t) == (27.0, 18.0, 18.0)
    assert p == 0.6328125  # 2 * 162 / 512
    res = significance.wilcoxon(before, after)
    assert (res.statistic, res.p_value, res.n) == (18.0, p, 9)
    ref = stats.wilcoxon(before, after, zero_method="wilcox")
    assert (res.statistic, res.p_value) == (ref.statistic, ref.pvalue)


def test_wilcoxon_known_case():
    """Darwin's plant heights (Fisher, The Design of Experiments), scipy's own example:
    statistic 24, exact two-sided p = 0.041259765625."""
    d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    res = significance.wilcoxon(d, np.zeros(len(d)))
    ref = stats.wilcoxon(d)
    assert (res.statistic, res.p_value) == (ref.statistic, ref.pvalue) == (24.0, 0.041259765625)
    _, _, t, p = signed_rank_by_hand(d)
    assert (t, p) == (24.0, 0.041259765625)
    assert significance.marks(res.p_value) == "*"


def test_tests_on_large_tied_samples_and_zero_differences():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, 300) / 2.0  # many ties and zero differences: the normal approximation
    b = np.clip(a + rng.choice([-0.5, 0.0, 0.0, 0.5, 0.5], 300), 0, 1)
    res = significance.wilcoxon(a, b)
    ref = stats.wilcoxon(a - b, zero_method="wilcox")
    assert (res.statistic, res.p_value) == (ref.statistic, ref.pvalue)
    assert res.n == np.count_nonzero(a - b) < 300
    t = significance.paired_t_test(a, b)
    ref_t = stats.ttest_rel(a, b)
    assert (t.statistic, t.p_value, t.n) == (ref_t.statistic, ref_t.pvalue, 300)
    # no difference at all: p = 1, not scipy's NaN
    assert significance.wilcoxon(a, a) == (0.0, 1.0, 0)
    assert significance.paired_t_test(a, a) == (0.0, 1.0, 300)
    with pytest.raises(ValueError, match="same 1-d shape"):
        significance.wilcoxon(a, b[:-1])


# ---------------------------------------------------------------------------------------------
# (d) per-session metrics
# ---------------------------------------------------------------------------------------------
def test_session_metrics_against_a_loop():
    rng = np.random.default_rng(1)
    S, R, ks = 3, 200, (1, 5)
    sessions = rng.choice([3, 7, 8, 20, 41, 42], R)
    ranks = rng.integers(1, 12, (S, R)).astype(np.float32)
    ranks[0, :3] = [2.5, 5.0, 5.5]  # fractional ranks (ties="average") and the cut-off itself
    got = significance.session_metrics(ranks, sessions, ks)
    assert got.sessions.tolist() == [3, 7, 8, 20, 41, 42]
    for j, sess in enumerate(got.sessions):
        mine = [r for r in range(R) if sessions[r] == sess]
        assert got.rows[j] == len(mine)
        for k in ks:
            recall = mrr = 0.0
            for s in range(S):
                hits = [1.0 if ranks[s, r] <= k else 0.0 for r in mine]
                rr = [1.0 / float(ranks[s, r]) if ranks[s, r] <= k else 0.0 for r in mine]
                recall += sum(hits) / len(mine) / S
                mrr += sum(rr) / len(mine) / S
            assert got.values[f"recall@{k}"][j] == pytest.approx(recall, abs=1e-12)
            assert got.values[f"mrr@{k}"][j] == pytest.approx(mrr, abs=1e-12)
    one = significance.session_metrics(ranks[1], sessions, ks)  # [R]: one seed
    mine = sessions == 41
    assert one.values["recall@5"][4] == pytest.approx(np.mean(ranks[1][mine] <= 5))


def test_row_sessions_are_the_target_sessions(prep):
    sessions = significance.row_sessions(prep.stream, prep.rows)
    stream_sessions = prep.stream["session"].to_list()
    assert sessions.tolist() == [stream_sessions[e] for e in prep.rows.event]
    # last-session protocol: one test session per user with rows
    assert len(np.unique(sessions)) == len(np.unique(prep.rows.user))


# ---------------------------------------------------------------------------------------------
# (e) table and JSON
# ---------------------------------------------------------------------------------------------
def fake(value, **extra):
    cols = {f"{m}@{k}": value for k in (5, 20) for m in ("recall", "hit", "mrr", "precision",
                                                       "ndcg")}
    return {**cols, "train_seconds": 1.25, "events_per_second": 1000.0, **extra}


def old_table(results, ks=(5, 20)):
    """The table as it was before seeds and significance."""
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "mrr", "precision", "ndcg")]
    head = f"{'model':<10}" + "".join(f"{c:>13}" for c in cols) + f"{'train s':>9}{'events/s':>10}"
    lines = [head]
    for name, r in results.items():
        lines.append(f"{name:<10}" + "".join(f"{r[c]:>13.4f}" for c in cols)
                     + f"{r['train_seconds']:>9.1f}{r['events_per_second']:>10.0f}")
    return "\n".join(lines)


def test_table_unchanged_for_one_seed_without_reference():
    results = {"pop": fake(0.1), "gru": fake(0.28141)}
    assert tables.table(results) == old_table(results)


def test_table_marks_and_footer():
    std = {k: 0.0031 for k in fake(0)}
    p = {"recall@5": 0.004, "mrr@5": 0.03, "recall@20": 0.2, "mrr@20": 0.0499}
    results = {
        "pop": fake(0.1, seeds=1, std={k: 0.0 for k in std}),
        "gru": fake(0.28141, seeds=5, std=std, reference="pop", sessions=123, p_value=p,
                    t_test_p_value=p),
    }
    lines = tables.table(results).splitlines()
    assert len(lines) == 5
    cells = lines[2].split()
    assert cells[0] == "gru"
    # columns: recall, mrr, precision, ndcg at 5, then at 20; only recall and mrr are tested
    assert cells[1:9] == ["0.2814±0.0031**", "0.2814±0.0031*", "0.2814±0.0031",
                          "0.2814±0.0031", "0.2814±0.0031", "0.2814±0.0031*",
                          "0.2814±0.0031", "0.2814±0.0031"]
    assert lines[1].split()[1:3] == ["0.1000", "0.1000"]  # one run: no ±, no mark
    assert "over 5 seeds" in lines[3]
    assert lines[4].startswith("* p < 0.05, ** p < 0.01: Wilcoxon signed-rank")
    assert "against pop" in lines[4] and "123 sessions" in lines[4]
    # one seed with a reference: marks only, the plain widths
    one = {"pop": fake(0.1), "gru": fake(0.28141, reference="pop", sessions=9, p_value=p)}
    lines = tables.table(one).splitlines()
    assert lines[0] == old_table(one).splitlines()[0]
    assert lines[2].split()[1:] == ["0.2814**", "0.2814*", "0.2814", "0.2814", "0.2814",
                                    "0.2814*", "0.2814", "0.2814", "1.2", "1000"]
    assert len(lines) == 4 and lines[3].startswith("* p < 0.05")


def test_cli_demo_json_seeds_and_reference(capsys, tmp_path):
    path = tmp_path / "out.json"
    argv = ["demo", "--users", "60", "--items", "80", "--models", "pop,gru", "--seeds", "2",
            "--reference", "pop", "--json", str(path), "--hidden", "8", "--batch-size", "8",
            "--epochs", "1", "--quiet"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "±" in out and "over 2 seeds" in out and "against pop" in out
    payload = json.loads(path.read_text())
    assert payload["command"]["reference"] == "pop"
    gru, pop = payload["models"]["gru"], payload["models"]["pop"]
    assert gru["seeds"] == 2 and pop["seeds"] == 1
    for r in (gru, pop):
        assert set(r["mean"]) == set(r["std"]) == set(r["per_seed"]) >= {"recall@5", "mrr@20"}
        assert r["mean"]["recall@5"] == r["recall@5"]
    assert len(gru["per_seed"]["mrr@5"]) == 2
    assert gru["reference"] == "pop"
    assert set(gru["p_value"]) == set(gru["t_test_p_value"]) == {"recall@5", "mrr@5",
                                                                 "recall@20", "mrr@20"}
    assert all(0.0 <= v <= 1.0 for v in gru["p_value"].values())
    assert "p_value" not in pop


# ---------------------------------------------------------------------------------------------
# (f) --reference must be a compared model
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ref, needle", [("gru", "--reference: gru is not among the compared"),
                                         ("nope", "--reference")])
def test_reference_not_compared_is_a_usage_error(capsys, ref, needle):
    assert cli.main(["demo", "--users", "20", "--models", "pop", "--reference", ref,
                     "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hrnn-jax: error:") and needle in err


def test_compare_checks_reference_before_training(prep):
    with pytest.raises(ValueError, match="not among the compared models"):
        compare.compare(prep, ["pop"], config_of(0, 1), log=None, reference="gru")
