"""Lane groups (``data.LaneGroups``) and a process's share of an encoded log
(``data.read_share``): each group lays out its own users, a share of some groups gives exactly
those lanes of the whole layout, ``fit`` on a share equals ``fit`` on the frame, and the shares'
ranks (``evaluation.shares``) are those of the whole test part."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from hrnn_jax import data, evaluation, models, training
from hrnn_jax.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import predict, shares

LANED = ("item", "target", "session_start", "user_start", "valid", "user", "evaluate")


@pytest.fixture(scope="module")
def frame():
    raw = data.read_interactions(synthetic.generate(n_users=90, n_items=60, seed=4))
    return data.prepare(raw, DataConfig(min_item_support=1)).train


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    d = tmp_path_factory.mktemp("share")
    synthetic.generate(n_users=40, n_items=50, seed=6).write_parquet(d / "log.parquet")
    cfg = DataConfig(min_item_support=1)
    data.preprocess_parquet(d / "log.parquet", d / "enc", cfg, chunk_events=300)
    return d / "enc", data.prepare(data.read_interactions(d / "log.parquet"), cfg)


def _lanes(frame, groups, seed=3, **kw):
    return data.make_lanes(frame, batch_size=12, window=4, targets="session", close_at="input",
                           seed=seed, groups=groups, **kw)


def test_bounds_cut_users_into_ranges_of_about_equal_events():
    events = np.array([5, 1, 1, 7, 2, 2, 2, 9, 1, 3])
    bounds = data.group_bounds(events, 3)
    assert bounds[0] == 0 and bounds[-1] == len(events) and np.all(np.diff(bounds) >= 0)
    sums = [events[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    assert sum(sums) == events.sum() and max(sums) - events.sum() / 3 <= events.max()
    np.testing.assert_array_equal(data.group_bounds(events, 1), [0, len(events)])


@pytest.mark.parametrize("G", [2, 3])
def test_each_group_lays_out_its_own_users_and_every_step_once(frame, G):
    groups = data.lane_groups(frame, G)
    ln = _lanes(frame, groups)
    whole = _lanes(frame, 1)
    assert ln.n_events == whole.n_events
    np.testing.assert_array_equal(np.sort(ln.event[ln.event >= 0]),
                                  np.sort(whole.event[whole.event >= 0]))
    B_g = 12 // G
    for g in range(G):
        lane_user = ln.user[:, g * B_g:(g + 1) * B_g][ln.valid[:, g * B_g:(g + 1) * B_g]]
        assert lane_user.size and lane_user.min() >= groups.bounds[g]
        assert lane_user.max() < groups.bounds[g + 1]
    # closing: ascending, distinct, slot j padded with B + j, the lanes that close a session
    closing = ln.closing.reshape(-1, ln.closing.shape[-1])
    valid = ln.valid.transpose(0, 2, 1).reshape(-1, 12)
    opens = (ln.session_start & ~ln.user_start).transpose(0, 2, 1).reshape(-1, 12) & valid
    for t, row in enumerate(closing):
        real = row[row < 12]
        np.testing.assert_array_equal(real, np.flatnonzero(opens[t]))
        np.testing.assert_array_equal(row[len(real):], 12 + np.arange(len(real), len(row)))


def test_one_group_is_the_ungrouped_layout(frame):
    a, b = _lanes(frame, 1), _lanes(frame, data.LaneGroups(1, np.array([0, 10**6]), range(1)))
    for k, v in a.window_arrays().items():
        np.testing.assert_array_equal(v, b.window_arrays()[k], err_msg=k)


def test_a_share_of_groups_gives_those_lanes_of_the_whole_layout(frame):
    G, B_g = 3, 4
    whole = data.lane_groups(frame, G)
    full = _lanes(frame, whole)
    users = frame["user"].to_numpy()
    parts, lists = {}, {}
    for g in range(G):  # each "process" alone first, to learn its groups' closing lists
        part = frame.filter((users >= whole.bounds[g]) & (users < whole.bounds[g + 1]))
        parts[g] = part
        _lanes(part, dataclasses.replace(whole, mine=range(g, g + 1),
                                         exchange=lambda own: lists.update(own) or own))
    for g in range(G):  # then with every group's lists, as the all-gather gives them
        own = _lanes(parts[g], dataclasses.replace(whole, mine=range(g, g + 1),
                                                   exchange=lambda _: dict(lists)))
        np.testing.assert_array_equal(own.closing, full.closing)
        for k in LANED:
            np.testing.assert_array_equal(getattr(own, k),
                                          getattr(full, k)[:, g * B_g:(g + 1) * B_g], err_msg=k)


def test_bad_group_counts_are_named(frame, encoded):
    with pytest.raises(ValueError, match="multiple of the lane groups"):
        _lanes(frame, 5)
    with pytest.raises(ConfigError, match="lane_groups .5. must divide batch_size .12."):
        TrainConfig(batch_size=12, lane_groups=5)
    enc, _ = encoded
    with pytest.raises(data.DataError, match="multiple of the processes"):
        data.read_share(enc, 3, process=(0, 2))
    with pytest.raises(data.DataError, match="0 <= index < count"):
        data.read_share(enc, 2, process=(2, 2))
    model = models.build_model("gru", 60, ModelConfig(hidden=4))
    share = data.read_share(enc, 2)
    with pytest.raises(ConfigError, match="read in 2 lane groups.*lane_groups=1"):
        training.fit(model, share, TrainConfig(epochs=1), log=None)
    some = data.read_share(enc, 2, process=(1, 2))
    with pytest.raises(ConfigError, match="trains on a mesh"):
        training.fit(model, some, TrainConfig(epochs=1, lane_groups=2), log=None)
    if len(jax.devices()) >= 8:  # before any lane is laid out: the command line's one line
        with pytest.raises(ConfigError, match=r"batch_size \(6\) must be a multiple of the "
                                              r"mesh's data axis \(8\)"):
            training.fit(model, some, TrainConfig(epochs=1, lane_groups=2, batch_size=6),
                         mesh="data=8", log=None)


def test_shares_partition_the_users_and_count_every_item(encoded):
    enc, prep = encoded
    shares = [data.read_share(enc, 4, process=(i, 2)) for i in range(2)]
    assert [s.groups for s in shares] == [range(0, 2), range(2, 4)]
    joined = shares[0].frame.vstack(shares[1].frame)
    assert joined.equals(data.read_encoded(enc, "train"))
    assert shares[0].frame.height and shares[1].frame.height
    counts = np.bincount(prep.train["item"].to_numpy(), minlength=prep.encoded.n_items + 1)
    counts[0] = 0
    np.testing.assert_array_equal(shares[0].item_counts, counts)
    assert shares[0].n_items == prep.encoded.n_items


def test_fit_on_a_share_equals_fit_on_the_frame(encoded):
    enc, prep = encoded
    cfg = TrainConfig(batch_size=6, window=4, epochs=2, lane_groups=2, n_negatives=8)
    model = models.build_model("hrnn-all", prep.encoded.n_items, ModelConfig(hidden=8))
    a = training.fit(model, prep.train, cfg, log=None)
    b = training.fit(model, data.read_share(enc, 2), cfg, log=None)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    assert a.records[-1]["loss"] == b.records[-1]["loss"]


@pytest.mark.parametrize("protocol", ["last-session", "users"])
def test_shares_evaluate_every_test_row_as_the_whole_frame(tmp_path, protocol):
    synthetic.generate(n_users=40, n_items=50, seed=6).write_parquet(tmp_path / "log.parquet")
    cfg = DataConfig(min_item_support=1, protocol=protocol, test_fraction=0.3)
    data.preprocess_parquet(tmp_path / "log.parquet", tmp_path / "enc", cfg, chunk_events=300)
    prep = data.prepare(data.read_interactions(tmp_path / "log.parquet"), cfg)
    model = models.build_model("hrnn-init", prep.encoded.n_items, ModelConfig(hidden=8))
    params = model.init(jax.random.PRNGKey(0))
    targets = models.lane_targets(model, protocol)
    whole = predict.model_ranks(model, params, prep.stream, prep.rows, targets=targets)
    parts = []
    for i in range(2):  # what each of two processes ranks (gathered in process order)
        share = data.read_share(tmp_path / "enc", 4, process=(i, 2))
        stream, rows = shares.share_rows(tmp_path / "enc", share, protocol)
        parts.append(predict.model_ranks(model, params, stream, rows, targets=targets))
    assert min(len(p) for p in parts) > 0
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    one = data.read_share(tmp_path / "enc", 4)
    assert shares.evaluate_share(model, params, tmp_path / "enc", one, protocol=protocol) == \
        pytest.approx(evaluation.metrics_from_ranks(whole), abs=1e-12)


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")
def test_a_process_places_its_block_of_lanes_and_only_its_own():
    from hrnn_jax import parallel
    from hrnn_jax.parallel.layout import Split
    mesh = parallel.make_mesh("seeds=2,data=4")
    a = np.arange(3 * 8 * 2, dtype=np.float32).reshape(3, 8, 2)
    plan = (Split("seeds", 0, 3), Split("data", 1, 8))  # 3 seeds stored padded to 4
    whole = parallel.put_part(mesh, a, plan, "data", 0)
    np.testing.assert_array_equal(whole, parallel.put(mesh, a, plan))
    assert whole.sharding == parallel.put(mesh, a, plan).sharding
    with pytest.raises(ValueError, match="holds indices 4..7 along 'data'; its devices need 0"):
        parallel.put_part(mesh, a[:, 4:], plan, "data", 4)  # one process has every device here
