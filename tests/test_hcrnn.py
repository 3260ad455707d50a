"""The HCRNN model (hrnn_jax.models.hcrnn): the lanes' scan against a per-user Python loop (theta's
amortised inference, the cell, the bi-channel attention, the tied decoder), causality, the KL
term, and W_d >= 0 through training."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn_jax import models, training
from hrnn_jax.config import TrainConfig
from hrnn_jax.models import hcrnn
from hrnn_jax.papers import song2019
from tests.helpers import N_ITEMS, perturbed, run_lanes, timed_log
from tests.tolerance import approx

D, H, K = 6, 5, 4


def model(**kw):
    return hcrnn.HCRNN(N_ITEMS, embed_dim=D, hidden=H, n_contexts=K,
                       **{"attention_history": 4, **kw})


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def user_reference(m, params, frame, u):
    """One user's outputs ``{target row: y}`` from its events alone, one step at a time: theta
    from the running mean of the input embeddings (f, mu; the mean at evaluation), the cell
    (tested against its equations in test_hcrnn_cells), attention over the last
    ``attention_history`` steps including the current one (Eq. 25-27) and the tied decoder's
    input W_B [...] (28)."""
    P = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    rows = np.flatnonzero(frame["user"].to_numpy() == u)
    items = frame["item"].to_numpy()
    cell = m.session_cell
    carry = cell.initialize_carry(None, (1, D + K))
    cs, hs, out = [], [], {}
    for n, i in enumerate(rows[:-1]):
        mean = P["item_in"][items[rows[:n + 1]]].mean(0)
        f = mean @ P["infer"]["kernel"] + P["infer"]["bias"]
        f = np.where(f > 0, f, np.expm1(f))  # elu
        theta = np_softmax(f @ P["mu"]["kernel"] + P["mu"]["bias"])
        x = np.concatenate([P["item_in"][items[i]], theta])[None].astype(np.float32)
        carry, h = cell.apply({"params": params["session"]}, carry, jnp.asarray(x))
        c, h = np.asarray(carry[0][0], np.float64), np.asarray(h[0], np.float64)
        cs.append(c)
        hs.append(h)
        z = h
        if m.attention != "none":
            a = P["attend"]
            C, Hs = np.array(cs[-m.attention_history:]), np.array(hs[-m.attention_history:])
            s_h = (1 / (1 + np.exp(-(h @ a["h_query"] + Hs @ a["h_key"])))) @ a["v"]
            z = np.concatenate([h, np_softmax(s_h) @ Hs])  # the authors' "additive"
        if m.attention == "bi":
            s_c = (c @ a["c_query"]) @ (C @ a["c_key"]).T / np.sqrt(H)
            z = np.concatenate([h, np_softmax(s_c) @ Hs, np_softmax(s_h) @ Hs])
        out[int(rows[n + 1])] = z @ P["decoder"]
    return out


# HCRNN-1's cell differs from the others' only inside the step (tested in test_hcrnn_cells)
@pytest.mark.parametrize("variant,attention", [(3, "bi"), (2, "none"), (1, "additive"),
                                               pytest.param(1, "bi", marks=pytest.mark.slow)])
def test_scan_matches_a_per_user_loop(variant, attention):
    """3 lanes, windows of 4 (users cross windows and lanes), attention_history 4 < most users'
    lengths: the buffer carries exactly the last steps across windows and is cleared at a new
    user."""
    frame = timed_log(seed=1, n_users=7)
    m = model(variant=variant, attention=attention)
    params = perturbed(m.init(jax.random.PRNGKey(0)))
    got = run_lanes(m, params, frame)
    want = {}
    for u in np.unique(frame["user"].to_numpy()):
        want.update(user_reference(m, params, frame, u))
    assert got.keys() == want.keys() and len(want) > 20
    # the buffer matters
    assert max(np.bincount(frame["user"].to_numpy())) > m.attention_history + 4
    for row in want:
        np.testing.assert_allclose(got[row], want[row], **approx(1e-4, 1e-5), err_msg=f"row {row}")


def test_decoder_is_tied_to_the_item_embedding():
    m = model()
    params = m.init(jax.random.PRNGKey(0))
    p = m.scoring_params(params)
    assert p["item_out"] is params["item_in"] and not np.asarray(p["item_bias"]).any()
    assert m.capabilities.row_tables == {}  # dense: the full softmax reads every row


def test_a_future_item_moves_no_earlier_score_nor_theta():
    """Changing the item of event k (an input from step k on, the target of step k - 1) leaves
    every output and theta of the steps before k unchanged: theta is causal."""
    frame = timed_log(seed=2, n_users=5)
    m = model()
    params = perturbed(m.init(jax.random.PRNGKey(1)))
    user = frame["user"].to_numpy()
    k = int(np.flatnonzero(user == user[0])[5])

    trace = jax.jit(m.trace)

    def outputs(fr):
        lanes = models.lanes_for(m, fr, batch_size=2, window=3, targets="user")
        carry, y_at, theta_at = m.init_carry(2), {}, {}
        for batch in lanes:
            carry, y, info = trace(params, carry, batch)
            for b, t in zip(*np.nonzero(batch["valid"])):
                y_at[int(batch["event"][b, t])] = np.asarray(y)[b, t]
                theta_at[int(batch["event"][b, t])] = np.asarray(info["theta"])[b, t]
        return y_at, theta_at

    items = frame["item"].to_numpy().copy()
    y0, t0 = outputs(frame)
    items[k] = items[k] % N_ITEMS + 1
    y1, t1 = outputs(frame.with_columns(item=items))
    first = int(np.flatnonzero(user == user[0])[0])
    for row in range(first + 1, k + 1):  # steps whose input precedes event k (target <= k)
        np.testing.assert_array_equal(y1[row], y0[row])
        np.testing.assert_array_equal(t1[row], t0[row])
    assert not np.allclose(y1[k + 1], y0[k + 1]) and not np.allclose(t1[k + 1], t0[k + 1])


def test_kl_term_is_the_weighted_mean_kl_of_the_steps_with_a_target():
    m = model(kl_weight=0.3, dropout_input=0.0, dropout_output=0.0)
    params = perturbed(m.init(jax.random.PRNGKey(2)))
    lanes = models.lanes_for(m, timed_log(), batch_size=3, window=4, targets="user")
    batch = lanes.window(len(lanes) - 1)  # with padding steps
    _, _, extra = m.apply(params, m.init_carry(3), batch, rng=jax.random.PRNGKey(0), train=True)
    e = np.asarray(params["item_in"])[batch["item"]]
    ok = batch["valid"]
    # the running means within this window (a fresh carry: every lane starts at zero)
    s = np.cumsum(np.where(ok[..., None], e, 0.0), axis=1)
    seg_start = np.maximum.accumulate(np.where(batch["user_start"], np.arange(4), 0), axis=1)
    means = np.zeros_like(e)
    for b in range(3):
        for t in range(4):
            lo = seg_start[b, t]
            n = ok[b, lo:t + 1].sum()
            means[b, t] = np.where(ok[b, lo:t + 1, None], e[b, lo:t + 1], 0).sum(0) / max(n, 1)
    P = jax.tree_util.tree_map(np.asarray, params)
    f = means @ P["infer"]["kernel"] + P["infer"]["bias"]
    f = np.where(f > 0, f, np.expm1(f))
    mu = f @ P["mu"]["kernel"] + P["mu"]["bias"]
    ls = f @ P["log_sigma"]["kernel"] + P["log_sigma"]["bias"]
    kl = 0.5 * (mu**2 + np.exp(2 * ls) - 2 * ls - 1).sum(-1)
    has = batch["target"] > 0
    assert has.any() and (~has).any()
    np.testing.assert_allclose(extra["kl"], 0.3 * kl[has].mean(), rtol=1e-4)
    del s


DRIFT_RUN = TrainConfig(epochs=2, batch_size=4, window=4, optimizer="adam", learning_rate=0.3,
                        loss="full-ce")


def drift_kernel(constrained: bool, monkeypatch) -> np.ndarray:
    """W_d after fit with a large learning rate, with or without the projection."""
    if not constrained:
        # the contract's default: no projection (identity)
        monkeypatch.setattr(hcrnn.HCRNN, "constraints", models.Model.constraints)
    fit = training.fit(model(variant=3), timed_log(seed=3, n_users=20), DRIFT_RUN,
                       targets="user", log=None)
    return np.asarray(fit.params["session"]["drift"]["kernel"])


def test_drift_weights_stay_nonnegative_through_training(monkeypatch):
    """W_d >= 0 after training, and the projection was at work (entries held at 0)."""
    kernel = drift_kernel(True, monkeypatch)
    assert kernel.min() >= 0 and (kernel == 0).any()


@pytest.mark.slow
def test_without_the_projection_the_same_run_makes_drift_weights_negative(monkeypatch):
    """The check above can fail: without the projection the same run drives entries below 0."""
    assert drift_kernel(False, monkeypatch).min() < 0


@pytest.mark.slow  # tests/test_composition.py trains HRNN All with this cell in the default run
def test_an_hcrnn3_cell_runs_as_hrnns_session_cell():
    """models.HRNN with an HCRNN-3 session cell (no theta: uniform proportions) and a GRU user
    cell: its outputs do not depend on the lanes or windows, and training keeps W_d >= 0 (the
    cell's projection through the model's constraints hook) while the loss falls."""
    from hrnn_jax import cells
    from hrnn_jax.cells.hcrnn import HCRNNCell
    frame = timed_log(seed=4, n_users=8)
    m = models.HRNN(N_ITEMS, HCRNNCell(H, context_dim=D, n_contexts=K, variant=3),
                    user_cell=cells.GRU(H), embed_dim=D)
    params = perturbed(m.init(jax.random.PRNGKey(0)))
    outs, apply = [], jax.jit(lambda p, c, b: m.apply(p, c, b)[:2])
    for batch_size, window in ((2, 3), (5, 7)):
        lanes = models.lanes_for(m, frame, batch_size=batch_size, window=window,
                                 targets="session")
        carry, got = m.init_carry(batch_size), {}
        for batch in lanes:
            carry, y = apply(params, carry, batch)
            for b, t in zip(*np.nonzero(batch["valid"] & (batch["target"] > 0))):
                got[int(batch["event"][b, t])] = np.asarray(y)[b, t]
        outs.append(got)
    assert outs[0].keys() == outs[1].keys() and len(outs[0]) > 10
    for row in outs[0]:
        np.testing.assert_allclose(outs[0][row], outs[1][row], **approx(1e-5, 1e-6))
    cfg = TrainConfig(epochs=2, batch_size=4, window=4, optimizer="adam", learning_rate=0.05,
                      loss="full-ce")
    fit = training.fit(m, frame, cfg, log=None)
    assert np.asarray(fit.params["session"]["drift"]["kernel"]).min() >= 0
    assert fit.records[-1]["loss"] < fit.records[0]["loss"]


def test_analyse_groups_the_traced_gates_and_attention_by_step():
    """song2019.analyse against the same trace read by hand (one window holds every user): the
    drift gate product averaged by whether the step's input changes topic, pooled and by the
    length of the same-topic run before it (Fig. 5a), and the attention weights by distance and
    the mean attended distance (Fig. 6a)."""
    frame = timed_log(seed=5, n_users=4)
    topics = np.random.default_rng(0).integers(0, 2, frame.height)
    m = model(attention_history=3)
    params = perturbed(m.init(jax.random.PRNGKey(3)))
    got = song2019.analyse(m, params, frame, topics, batch_size=4, window=64)
    lanes = models.lanes_for(m, frame, batch_size=4, window=64, targets="user")
    assert len(lanes) == 1
    batch = lanes.window(0)
    _, _, info = m.trace(params, m.init_carry(4), batch)
    g = np.asarray(info["gates"]["r"] * info["gates"]["drift"]).mean(-1)
    user = frame["user"].to_numpy()
    groups, by_run = {True: [], False: []}, {}
    by_d, n_d = {k: np.zeros(4) for k in ("local", "temporary")}, np.zeros(4)
    dist, steps = {k: 0.0 for k in by_d}, 0
    for b, t in zip(*np.nonzero(batch["valid"])):
        x = int(batch["event"][b, t]) - 1
        if user[x - 1] == user[x] and x >= 1:
            change = bool(topics[x] != topics[x - 1])
            groups[change].append(g[b, t])
            n = 1  # same-topic items of this user ending at the input's predecessor
            while x - 1 - n >= 0 and user[x - 1 - n] == user[x] and \
                    topics[x - 1 - n] == topics[x - 1]:
                n += 1
            by_run.setdefault((change, min(n, song2019.RUN_CAP)), []).append(g[b, t])
        first = t - np.flatnonzero(batch["user_start"][b, :t + 1])[-1]  # steps of this user
        steps += 1
        for d in range(min(first, 2) + 1):  # the last 3 steps, the step itself included
            n_d[d] += 1
            for k in by_d:
                w = np.asarray(info["attention"][k])[b, t, 3 + t - d]
                by_d[k][d] += w
                dist[k] += d * w
    assert groups[True] and groups[False]
    assert got["drift_gate_after_change"] == pytest.approx(np.mean(groups[True]), rel=1e-5)
    assert got["drift_gate_within_run"] == pytest.approx(np.mean(groups[False]), rel=1e-5)
    runs = got["drift_gate_by_run"]
    assert len({n for _, n in by_run}) > 2  # runs of several lengths
    for change, key in ((True, "change"), (False, "same")):
        for n in range(1, song2019.RUN_CAP + 1):
            want = by_run.get((change, n), [])
            assert runs[f"steps_{key}"][n - 1] == len(want)
            if want:
                assert runs[key][n - 1] == pytest.approx(np.mean(want), rel=1e-5)
            else:
                assert np.isnan(runs[key][n - 1])
    for k in by_d:
        np.testing.assert_allclose(got["attention_by_distance"][k][:3], by_d[k][:3] / n_d[:3],
                                   rtol=1e-5)
        assert got["mean_attended_distance"][k] == pytest.approx(dist[k] / steps, rel=1e-5)


def test_attention_modes_reach_the_model_and_bad_ones_are_refused():
    """``hcrnn-1/2/3`` take ``ModelConfig.hcrnn_attention`` (the paper's text: none; the authors'
    code: additive); ``hcrnn-3-bi`` is always the bi-channel attention."""
    from hrnn_jax.config import ModelConfig
    cfg = ModelConfig(hidden=H, contexts=K, hcrnn_attention="additive")
    for name in ("hcrnn-1", "hcrnn-2", "hcrnn-3"):
        assert models.build_model(name, N_ITEMS, cfg).attention == "additive"
    assert models.build_model("hcrnn-3-bi", N_ITEMS, cfg).attention == "bi"
    assert models.build_model("hcrnn-2", N_ITEMS, ModelConfig(hidden=H)).attention == "none"
    p = model(attention="additive").init(jax.random.PRNGKey(0))
    assert set(p["attend"]) == {"h_query", "h_key", "v"} and p["decoder"].shape == (2 * H, D)
    with pytest.raises(ValueError, match="HCRNN attention must be one of 'bi', 'additive', 'none'"):
        model(attention=True)
