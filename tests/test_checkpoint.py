"""Train, save, resume, evaluate and recommend from a checkpoint (``hrnn_jax.checkpoint``)."""
import dataclasses
import json
import pathlib
import re
import shlex

import jax
import numpy as np
import polars as pl
import pytest

import hrnn_jax
from hrnn_jax import checkpoint, cli, data, models
from hrnn_jax.config import Config, DataConfig, ModelConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import predict
from hrnn_jax.trained import Trained, prepare_log
from tests.tolerance import approx

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
# the tiny setting of every run here, as flags and as the same Config
FLAGS = ["--hidden", "8", "--batch-size", "4", "--min-item-support", "2", "--seed", "3",
         "--quiet"]


def config(epochs: int) -> Config:
    return Config(data=DataConfig(min_item_support=2), model=ModelConfig(hidden=8),
                  train=TrainConfig(batch_size=4, seed=3, epochs=epochs))


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_trees_equal(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_same_run(a: Trained, b: Trained):
    """Bit for bit: parameters, optimiser state, lane carry, rng, losses and user states."""
    assert_trees_equal(a.state.train_state, b.state.train_state)
    assert_trees_equal(a.state.rng, b.state.rng)
    np.testing.assert_array_equal([h["loss"] for h in a.state.records],
                                  [h["loss"] for h in b.state.records])
    assert_trees_equal(a.users, b.users)


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "log.csv"
    synthetic.generate(n_users=40, n_items=50, seed=0).write_csv(path)
    return path


@pytest.fixture(scope="module")
def prep(log_csv):
    return prepare_log(log_csv, config(1).data)


@pytest.fixture(scope="module")
def gru_dir(tmp_path_factory, log_csv):
    """The session GRU trained 2 epochs through the command line."""
    out = tmp_path_factory.mktemp("gru") / "model"
    assert cli.main(["train", str(log_csv), "--model", "gru", "--epochs", "2", "--out", str(out),
                     *FLAGS]) == 0
    return out


@pytest.fixture(scope="module")
def gru(gru_dir):
    return checkpoint.load(gru_dir)


@pytest.fixture(scope="module")
def hrnn_run(tmp_path_factory, prep):
    """HRNN Init trained 1 epoch through the API: (returned Trained, its directory)."""
    out = tmp_path_factory.mktemp("hrnn") / "model"
    return checkpoint.train(prep, "hrnn-init", config(1), out=out, log=None), out


@pytest.fixture(scope="module")
def hrnn(hrnn_run):
    return checkpoint.load(hrnn_run[1])


def training_sessions(prep, code: int) -> list[list[str]]:
    """A user's training sessions as raw item ids."""
    events = prep.train.filter(pl.col("user") == code)
    return [list(prep.encoded.item_ids[g["item"].to_numpy()])
            for _, g in events.group_by("session", maintain_order=True)]


# ---------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------
def test_save_load_round_trip(hrnn_run, hrnn, tmp_path):
    trained, _ = hrnn_run
    hrnn_jax.save(tmp_path / "again", hrnn)
    for loaded in (hrnn, hrnn_jax.load(tmp_path / "again")):
        assert loaded.name == "hrnn-init" and loaded.complete
        assert loaded.config == trained.config == config(1)
        assert loaded.model == trained.model
        assert list(loaded.encoded.user_ids) == list(trained.encoded.user_ids)
        assert list(loaded.encoded.item_ids) == list(trained.encoded.item_ids)
        assert loaded.encoded.events.equals(trained.encoded.events)
        np.testing.assert_array_equal(loaded.popularity, trained.popularity)
        assert loaded.popularity.sum() == trained.encoded.events.height
        assert_same_run(loaded, trained)
        assert_trees_equal(loaded.params, trained.params)
        assert loaded.state.epoch == 1 and loaded.state.bad == trained.state.bad
        assert loaded.state.records == trained.state.records
        np.testing.assert_array_equal(loaded.state.best, trained.state.best)
        assert loaded.info == trained.info
    assert [p.name for p in (tmp_path / "again").iterdir()] == ["ckpt-000001"]


def test_final_states_match_a_per_user_loop():
    """predict.final_states in lanes == each user streamed alone (random parameters)."""
    raw = synthetic.generate(n_users=12, n_items=20, n_topics=4, sessions_per_user=(2, 4),
                             session_length=(1, 5), seed=0)
    prep = data.prepare(data.read_interactions(raw),
                        DataConfig(min_item_support=1, min_session_len=1))
    # and a user whose sessions have one event each: no step under "session" targets (fresh)
    U, S = prep.encoded.n_users, int(prep.train["session"].max()) + 1
    extra = pl.DataFrame({"user": [U, U], "item": [1, 2], "session": [S, S + 1]},
                         schema={"user": pl.Int32, "item": pl.Int32, "session": pl.Int32})
    frame = pl.concat([prep.train.select("user", "item", "session"), extra])
    for name in ("concat", "hrnn-all"):  # "user" and "session" targets
        model = models.build_model(name, prep.encoded.n_items, ModelConfig(hidden=8))
        params = model.init(jax.random.PRNGKey(1))
        targets = models.lane_targets(model, "last-session")
        got = predict.final_states(model, params, frame, batch_size=3, window=4,
                                   targets=targets)
        assert got["output"].shape == (U + 1, 8)
        assert got["fresh"][U] == (targets == "session")
        apply = jax.jit(lambda p, c, b: model.apply(p, c, b)[:2])
        for u in range(U + 1):
            events = frame.filter(pl.col("user") == u)
            padded = pl.concat([events, events.tail(1).with_columns(item=pl.lit(1, pl.Int32))])
            y = predict.states_at(model, params, padded, np.array([len(events)]), batch_size=1,
                                  targets=targets)
            np.testing.assert_allclose(got["output"][u], y[0], **approx(), err_msg=name)
            # the carry the next session continues from: after the last event ("user" targets),
            # after the last training step ("session" targets; the last event is a target only)
            # (none with "session" targets when every session has one event: a fresh user)
            fresh = targets == "session" and events.group_by("session").len()["len"].max() < 2
            assert got["fresh"][u] == fresh, (name, u)
            carry = model.init_carry(1)
            if not fresh:
                stream = padded if targets == "user" else events
                for batch in models.lanes_for(model, stream, batch_size=1, window=4,
                                              targets=targets):
                    carry, _ = apply(params, carry, batch)
            jax.tree_util.tree_map(
                lambda a, b: np.testing.assert_allclose(a[u], np.asarray(b)[0], **approx()),
                got["carry"], carry)


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------
def test_resume_is_bit_for_bit_through_the_api(tmp_path, prep, gru):
    out = tmp_path / "model"
    first = checkpoint.train(prep, "gru", config(1), out=out, log=None)
    assert first.state.epoch == 1
    resumed = checkpoint.train(prep, "gru", config(2), out=out, resume=hrnn_jax.load(out),
                               log=None)
    assert resumed.state.epoch == 2
    assert_same_run(resumed, gru)
    assert_same_run(checkpoint.load(out), gru)
    with pytest.raises(ValueError, match="only train.epochs"):
        checkpoint.train(prep, "gru", Config(model=ModelConfig(hidden=8)), resume=resumed)


def test_interrupted_run_resumes_through_the_cli(tmp_path, capsys, log_csv, prep, gru):
    out = tmp_path / "model"

    def interrupt(label, done, total):
        if label.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.train(prep, "gru", config(2), out=out, log=None, progress=interrupt)
    saved = checkpoint.load(out)  # the save after epoch 1
    assert saved.state.epoch == 1 and not saved.complete
    code, _, err = run_cli(capsys, "recommend", out, "--user", prep.encoded.user_ids[0])
    assert code == 2 and "unfinished run" in err and len(err.splitlines()) == 1
    code, stdout, err = run_cli(capsys, "train", log_csv, "--resume", out, "--quiet")
    assert code == 0, err
    assert "trained gru: 2 of 2 epochs" in stdout and f"saved {out}" in stdout
    assert_same_run(checkpoint.load(out), gru)


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------
def test_evaluate_equals_compare(tmp_path, capsys, log_csv, gru_dir):
    ks = ["--ks", "3,10"]
    code, _, err = run_cli(capsys, "compare", log_csv, "--models", "gru", "--epochs", "2", *ks,
                           *FLAGS, "--json", tmp_path / "compare.json")
    assert code == 0, err
    code, out, err = run_cli(capsys, "evaluate", gru_dir, log_csv, *ks,
                             "--json", tmp_path / "evaluate.json")
    assert code == 0, err
    assert out.splitlines()[0].startswith("data: 40 users")
    assert out.splitlines()[2].split()[0] == "gru"
    want = json.loads((tmp_path / "compare.json").read_text())
    got = json.loads((tmp_path / "evaluate.json").read_text())
    assert got["data"] == want["data"] and got["config"]["eval"]["ks"] == [3, 10]
    for metric in ("recall@3", "mrr@3", "recall@10", "mrr@10", "ndcg@10"):
        assert got["models"]["gru"][metric] == want["models"]["gru"][metric], metric
    assert 0 < got["models"]["gru"]["mrr@3"] < 1  # not a degenerate ranking


# ---------------------------------------------------------------------------------------------
# recommend
# ---------------------------------------------------------------------------------------------
def scores_of(frame: pl.DataFrame) -> np.ndarray:
    return frame["score"].to_numpy()


def test_user_next_items_equal_predict_recommend(prep, gru, hrnn):
    for trained in (gru, hrnn):
        for code in (0, 7, 23):
            user = prep.encoded.user_ids[code]
            history = training_sessions(prep, code)
            got = trained.recommend(user, k=6)
            assert got.columns == ["user", "rank", "item", "score"]
            assert got["rank"].to_list() == list(range(1, 7)) and set(got["user"]) == {user}
            assert got["item"].to_list() == predict.recommend(
                trained.model, trained.params, prep.encoded, history, k=6,
                targets=trained.targets)
            # the same scores: the output after the whole history, scored as evaluation does
            items, sessions = [], []
            for s, raw in enumerate(history):
                items += prep.encoded.encode_items(raw).tolist()
                sessions += [s] * len(raw)
            frame = pl.DataFrame({"user": [0] * (len(items) + 1), "item": items + [1],
                                  "session": sessions + sessions[-1:]})
            y = predict.states_at(trained.model, trained.params, frame, np.array([len(items)]),
                                  batch_size=1, targets=trained.targets)
            scores = np.asarray(models.score_items(trained.params, y))[0]
            np.testing.assert_allclose(scores_of(got), scores[prep.encoded.encode_items(
                got["item"].to_list())], **approx())
            seen = set(prep.encoded.item_ids[items])
            assert not set(trained.recommend(user, k=6, exclude_seen=True)["item"]) & seen


def test_new_session_of_a_known_user_continues_as_evaluation(prep, hrnn):
    """A known user's new session: Eq. 3 closes the last training session, Eq. 4 starts this
    one, as when evaluation streams the user's test session after its training history."""
    rows = prep.rows
    y = predict.hidden_states(hrnn.model, hrnn.params, prep.stream, rows, batch_size=4,
                              targets=hrnn.targets)
    firsts = np.flatnonzero(rows.position == 1)[:5]
    assert len(firsts) == 5
    for r in firsts:
        user = prep.encoded.user_ids[rows.user[r]]
        got = hrnn.recommend(user, session=[prep.encoded.item_ids[rows.item[r]]], k=5)
        scores = np.array(models.score_items(hrnn.params, y[r]))
        scores[0] = -np.inf
        np.testing.assert_allclose(scores_of(got), np.sort(scores)[::-1][:5], **approx())


def test_returning_user_differs_from_a_new_user(prep, gru, hrnn):
    user, item = prep.encoded.user_ids[5], prep.encoded.item_ids[3]
    notes = []
    for trained, same in ((hrnn, False), (gru, True)):
        known = trained.recommend(user, session=[item], k=8)
        new = trained.recommend("nobody", session=[item], k=8, note=notes.append)
        assert set(new["user"]) == {"nobody"}
        if same:  # the session GRU has no user state: both start from zeros
            assert known["item"].to_list() == new["item"].to_list()
            np.testing.assert_array_equal(scores_of(known), scores_of(new))
        else:  # HRNN Init starts the session from the user's state (Eq. 4)
            assert not np.allclose(scores_of(known), scores_of(new))
    assert notes == ["note: user nobody is not in the checkpoint; recommending from the session "
                     "alone (a new user)"] * 2


def test_recommend_cli_user_history_and_unknown_user(tmp_path, capsys, prep, hrnn_run):
    trained, directory = hrnn_run
    user, items = prep.encoded.user_ids[2], list(prep.encoded.item_ids[[4, 9]])
    code, out, err = run_cli(capsys, "recommend", directory, "--user", user, "--top-k", "4")
    assert code == 0 and err == ""
    lines = [ln.split("\t") for ln in out.splitlines()]
    assert [ln[:2] for ln in lines] == [[str(r), i] for r, i in
                                        zip(range(1, 5), trained.recommend(user, k=4)["item"])]
    code, out, err = run_cli(capsys, "recommend", directory, "--user", "stranger",
                             "--session", ",".join(items), "--top-k", "3", "--exclude-seen")
    assert code == 0
    assert err.startswith("note: user stranger is not in the checkpoint")
    assert len(out.splitlines()) == 3
    assert not {ln.split("\t")[1] for ln in out.splitlines()} & set(items)
    history = tmp_path / "history.csv"
    pl.DataFrame({"session": ["a", "a", "b"], "item": items + items[:1]}).write_csv(history)
    code, out, err = run_cli(capsys, "recommend", directory, "--history", history, "--top-k", "5")
    assert code == 0, err
    assert [ln.split("\t")[1] for ln in out.splitlines()] == predict.recommend(
        trained.model, trained.params, prep.encoded, [items, items[:1]], k=5)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_recommend_batch_writes_k_rows_per_user(tmp_path, capsys, prep, hrnn_run, suffix):
    trained, directory = hrnn_run
    users = list(prep.encoded.user_ids[:3]) + ["newcomer"]
    item = prep.encoded.item_ids[1]
    requests = tmp_path / "users.csv"
    pl.DataFrame({"user": users, "session": ["", f"{item} {item}", None, item]}).write_csv(
        requests)
    out = tmp_path / f"recs.{suffix}"
    code, stdout, err = run_cli(capsys, "recommend", directory, "--users-file", requests,
                                "--top-k", "7", "--out", out)
    assert code == 0, err
    assert "note: user newcomer" in err
    assert stdout.strip() == f"wrote 28 recommendations for 4 user(s) to {out}"
    recs = pl.read_csv(out) if suffix == "csv" else pl.read_parquet(out)
    assert recs.columns == ["user", "rank", "item", "score"]
    assert recs.group_by("user").len().sort("user")["len"].to_list() == [7] * 4
    first = recs.filter(pl.col("user").cast(pl.String) == users[0])
    want = trained.recommend(users[0], k=7)["item"].to_list()
    assert first["item"].cast(pl.String).to_list() == want


def test_bad_cases_are_one_line_errors(tmp_path, capsys, log_csv, gru_dir):
    other = tmp_path / "other.csv"
    synthetic.generate(n_users=30, n_items=50, seed=1).write_csv(other)
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    cases = [
        (["recommend", tmp_path / "missing", "--user", "1"], "checkpoint directory not found"),
        (["recommend", tmp_path / "empty", "--user", "1"], "is not an hrnn-jax checkpoint"),
        (["evaluate", tmp_path / "junk", log_csv], "is not an hrnn-jax checkpoint"),
        (["recommend", gru_dir, "--user", "1", "--session", "1,no-such-item,also-not"],
         "2 item id(s) not in the checkpoint's catalogue: also-not, no-such-item"),
        (["recommend", gru_dir, "--user", "nobody"], "user(s) not in the checkpoint: nobody"),
        (["recommend", gru_dir, "--users-file", log_csv], "--users-file needs --out"),
        (["recommend", gru_dir, "--history", log_csv, "--session", "1"], "--session goes with"),
        (["train", log_csv, "--resume", gru_dir, "--epochs", "3", "--hidden", "16",
          "--learning-rate", "0.2"], "only --epochs may be given with it, not --hidden, "
                                     "--learning-rate"),
        (["train", other, "--resume", gru_dir, "--epochs", "3"], "does not match the checkpoint"),
        (["train", log_csv, "--resume", gru_dir], "trained 2 epoch(s) already"),
        (["train", log_csv, "--model", "pop", "--out", tmp_path / "m"], "not a neural model"),
        (["train", log_csv, "--model", "gru"], "train needs --model NAME and --out DIR"),
        (["train", log_csv, "--model", "gru", "--out", tmp_path / "junk"],
         "holds no hrnn-jax checkpoint"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert len(err.splitlines()) == 1 and err.startswith("hrnn-jax: error: "), (argv, err)
        assert message in err, (argv, err)
    assert len(list(gru_dir.iterdir())) == 1 and checkpoint.load(gru_dir).state.epoch == 2


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------
def readme_commands() -> list[str]:
    section = README.read_text().split("## Train, save, recommend", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_commands_run(tmp_path, monkeypatch, capsys):
    commands = readme_commands()
    assert [shlex.split(c)[:2] for c in commands] == [
        ["python", "-c"], ["hrnn-jax", "train"], ["hrnn-jax", "recommend"]]
    monkeypatch.chdir(tmp_path)
    exec(shlex.split(commands[0])[2], {})
    for command in commands[1:]:
        code, out, err = run_cli(capsys, *shlex.split(command)[1:])
        assert code == 0, (command, err)
    lines = out.splitlines()
    k = int(shlex.split(commands[2])[shlex.split(commands[2]).index("--top-k") + 1])
    assert [ln.split("\t")[0] for ln in lines] == [str(i + 1) for i in range(k)]


def test_user_table_model_recommends_with_the_users_own_vector(prep):
    """A user-based GRU (Donkers et al.) continues a known user's sequence with that user's
    row of the user table: two users with the same new session get different scores; a user
    without a row is refused with a one-line error."""
    trained = checkpoint.train(prep, "user-gru-linear", config(1), log=None)
    user, item = prep.encoded.user_ids[2], prep.encoded.item_ids[3]
    before = trained.recommend(user, session=[item], k=8)
    ts = trained.state.train_state
    table = ts.params["user_in"]
    swapped = {**ts.params, "user_in": table.at[2].add(0.5)}  # user 2's row only
    other = dataclasses.replace(trained, state=trained.state._replace(
        train_state=ts._replace(params=swapped)))
    after = other.recommend(user, session=[item], k=8)
    assert not np.allclose(scores_of(before), scores_of(after))
    untouched = prep.encoded.user_ids[7]
    np.testing.assert_array_equal(scores_of(trained.recommend(untouched, session=[item], k=8)),
                                  scores_of(other.recommend(untouched, session=[item], k=8)))
    with pytest.raises(data.DataError, match="user-gru-linear has a learned vector per training "
                                             "user and cannot recommend for a new user"):
        trained.recommend("nobody", session=[item], k=8)


def test_hrnn_meta_saves_times_and_recommends_by_gap(tmp_path, capsys, prep, log_csv):
    """HRNN-meta through train / load / recommend: its checkpoint keeps the training events'
    times; ``--gap`` equals ``predict.recommend_by_gap`` on the user's history; without it the
    stored output is the gap of 0 s; sessions without times and --gap on other models are
    one-line errors."""
    out = tmp_path / "meta"
    assert cli.main(["train", str(log_csv), "--model", "hrnn-meta", "--epochs", "1", "--out",
                     str(out), *FLAGS]) == 0
    capsys.readouterr()
    trained = checkpoint.load(out)
    assert trained.encoded.events.columns == ["user", "item", "session", "time"]
    np.testing.assert_array_equal(trained.encoded.events["time"].to_numpy(),
                                  prep.train["time"].to_numpy())
    code = 4
    user = prep.encoded.user_ids[code]
    history = prep.train.filter(pl.col("user") == code)
    for gap in (0.0, 86400.0 * 3):
        want = predict.recommend_by_gap(trained.model, trained.params, history, [gap], k=5)[0]
        got = trained.recommend(user, gap=gap, k=5)
        assert got["item"].to_list() == list(prep.encoded.item_ids[want])
    assert trained.recommend(user, k=5)["item"].to_list() == \
        trained.recommend(user, gap=0.0, k=5)["item"].to_list()
    rc, stdout, err = run_cli(capsys, "recommend", out, "--user", user, "--gap", "259200",
                              "--top-k", "5")
    assert rc == 0, err
    assert [ln.split("\t")[1] for ln in stdout.splitlines()] == \
        trained.recommend(user, gap=259200.0, k=5)["item"].to_list()
    item = prep.encoded.item_ids[1]
    for argv, needle in (
            (["--user", user, "--session", item], "reads the time between events"),
            (["--user", user, "--gap", "-5"], "finite and >= 0"),
            (["--user", "stranger", "--gap", "60"], "not in the checkpoint")):
        rc, stdout, err = run_cli(capsys, "recommend", out, *argv)
        assert rc != 0 and needle in err and len(err.strip().splitlines()) == 1, err


def test_gap_needs_a_model_that_reads_it(capsys, prep, gru_dir):
    rc, _, err = run_cli(capsys, "recommend", gru_dir, "--user", prep.encoded.user_ids[0],
                         "--gap", "60")
    assert rc != 0 and "needs a model that reads the time" in err


def test_hrnn_meta_with_feedback_from_the_value_column(tmp_path, capsys, log_csv):
    """--feedback feeds each event's value (--value-col) to hrnn-meta: the checkpoint keeps the
    values, and the gap recommendation replays them (the values change the result); without a
    value column it is a one-line error."""
    frame = pl.read_csv(log_csv)
    rated = tmp_path / "rated.csv"
    frame.with_columns(rating=pl.Series(np.random.default_rng(0).integers(1, 6, frame.height))
                       ).write_csv(rated)
    out = tmp_path / "meta"
    assert cli.main(["train", str(rated), "--model", "hrnn-meta", "--feedback", "value",
                     "--value-col", "rating", "--epochs", "1", "--out", str(out), *FLAGS]) == 0
    capsys.readouterr()
    trained = checkpoint.load(out)
    assert trained.model.feedback and trained.model.capabilities.fields == ("gap", "feedback")
    assert "value" in trained.encoded.events.columns
    code = 3
    ev = trained.encoded.events.filter(pl.col("user") == code)
    user = trained.encoded.user_ids[code]
    want = predict.states_by_gap(trained.model, trained.params, ev, [60.0])
    flipped = predict.states_by_gap(trained.model, trained.params,
                                    ev.with_columns(value=6.0 - pl.col("value")), [60.0])
    assert not np.allclose(want, flipped)
    got = trained.recommend(user, gap=60.0, k=3)
    np.testing.assert_allclose(scores_of(got), np.sort(np.asarray(models.score_items(
        trained.model.scoring_params(trained.params), want))[0, 1:])[::-1][:3],
        **approx())
    rc, _, err = run_cli(capsys, "train", log_csv, "--model", "hrnn-meta", "--feedback",
                         "value", "--epochs", "1", "--out", tmp_path / "none", *FLAGS)
    assert rc != 0 and "--value-col" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # the event-type channel itself is in test_meta's per-user reference test
def test_hrnn_meta_with_the_event_type_as_feedback(tmp_path, capsys, log_csv):
    """--feedback event: each event's type (--event-col) is a categorical input, a learned row
    per type (the codes 0..K-1 in sorted order of the names); the checkpoint keeps the codes,
    and changing an event's type changes the state after it."""
    frame = pl.read_csv(log_csv)
    typed = tmp_path / "typed.csv"
    kinds = np.array(["click", "purchase", "view"])[
        np.random.default_rng(1).integers(0, 3, frame.height)]
    frame.with_columns(kind=pl.Series(kinds)).write_csv(typed)
    out = tmp_path / "meta"
    assert cli.main(["train", str(typed), "--model", "hrnn-meta", "--feedback", "event",
                     "--event-col", "kind", "--epochs", "1", "--out", str(out), *FLAGS]) == 0
    capsys.readouterr()
    trained = checkpoint.load(out)
    assert trained.model.feedback_levels == 3
    assert trained.model.capabilities.fields == ("gap", "event_type")
    assert trained.params["feedback_in"]["kernel"].shape == (3, 3 * 8)  # 3H: the split GRU
    ev = trained.encoded.events.filter(pl.col("user") == 2)
    y = predict.states_by_gap(trained.model, trained.params, ev, [60.0])
    other = ev.with_columns(event_code=(pl.col("event_code") + 1) % 3)
    assert not np.allclose(y, predict.states_by_gap(trained.model, trained.params, other, [60.0]))
    rc, _, err = run_cli(capsys, "train", log_csv, "--model", "hrnn-meta", "--feedback",
                         "event", "--epochs", "1", "--out", tmp_path / "none", *FLAGS)
    assert rc != 0 and "--event-col" in err


def test_hcrnn_saves_and_recommends_with_its_attention_history(tmp_path, prep):
    """HCRNN-3+Bi (its carry holds a running mean and an attention buffer, its decoder is tied)
    round-trips bit for bit, and a loaded model recommends what ``predict.recommend`` gives."""
    cfg = dataclasses.replace(config(1), model=ModelConfig(hidden=8, contexts=3,
                                                           attention_history=4))
    trained = checkpoint.train(prep, "hcrnn-3-bi", cfg, out=tmp_path / "m", log=None)
    loaded = checkpoint.load(tmp_path / "m")
    assert loaded.model == trained.model and loaded.targets == "user"
    assert_same_run(loaded, trained)
    user = prep.encoded.user_ids[5]
    history = [item for s in training_sessions(prep, 5) for item in s]  # one sequence
    got = loaded.recommend(user, k=5)
    assert got["item"].to_list() == predict.recommend(
        trained.model, trained.params, prep.encoded, [history], k=5, targets="user")
