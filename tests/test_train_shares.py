"""``train`` on an encoded log (``hrnn-jax preprocess``; ``checkpoint.train`` of its directory):
each process reads only its share, and the checkpoint refers to the directory for the ids and
the training events instead of holding them. With one process it is ``train`` on the log itself:
the same parameters and users' states bit for bit, the same metrics and recommendations. Two
processes: ``tests/test_processes.py``."""
from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest

from hrnn_jax import checkpoint, cli, compare, data, parallel
from hrnn_jax.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig
from hrnn_jax.trained import CheckpointError
from tests.helpers import encoded_log

CONFIG = Config(data=DataConfig(min_item_support=1), model=ModelConfig(hidden=8),
                train=TrainConfig(batch_size=6, epochs=2))
RUN = ["--hidden", "8", "--batch-size", "6", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """A Parquet log and its encoding (last-session protocol)."""
    return encoded_log(tmp_path_factory.mktemp("train_shares"))


def _same(a, b) -> bool:
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a, b)))


@pytest.fixture(scope="module")
def trained(logs, tmp_path_factory):
    """HRNN All trained on the log, and on its encoding into a checkpoint (loaded back)."""
    log, enc = logs
    out = tmp_path_factory.mktemp("ckpt") / "hrnn"
    on_log = checkpoint.train(str(log), "hrnn-all", CONFIG, log=None)
    on_enc = checkpoint.train(str(enc), "hrnn-all", CONFIG, out=out, log=None)
    return on_log, on_enc, checkpoint.load(out), out


def test_training_on_the_encoding_is_training_on_the_log(logs, trained):
    log, enc = logs
    on_log, on_enc, loaded, _ = trained
    assert _same(on_log.params, on_enc.params) and _same(on_log.params, loaded.params)
    assert _same(on_log.users, on_enc.users) and _same(on_log.users, loaded.users)
    assert loaded.source == os.path.abspath(enc) and loaded.encoded.events is None
    assert list(loaded.encoded.user_ids) == list(on_log.encoded.user_ids)
    assert np.array_equal(loaded.popularity, on_log.popularity)
    assert loaded.evaluate(enc) == on_log.evaluate(log)


def test_a_checkpoint_of_the_encoding_recommends_as_one_of_the_log(trained):
    on_log, _, loaded, _ = trained
    for user in on_log.encoded.user_ids[[0, 7, 35]]:
        want = on_log.recommend(user, k=5, exclude_seen=True)
        assert loaded.recommend(user, k=5, exclude_seen=True).equals(want)
        session = list(on_log.encoded.item_ids[[3, 9]])
        assert loaded.recommend(user, session=session, k=5).equals(
            on_log.recommend(user, session=session, k=5))
    users = list(on_log.encoded.user_ids[[35, 0, 7, 0]])  # many users: their items read at once
    many = loaded.recommend_many(users, k=4, exclude_seen=True)
    assert many.equals(on_log.recommend_many(users, k=4, exclude_seen=True))
    for user in set(users):
        assert many.filter(many["user"] == str(user)).head(4)["item"].to_list() == \
            on_log.recommend(user, k=4, exclude_seen=True)["item"].to_list()
    code = 7  # the training items read from the directory are the user's own
    items = on_log.encoded.events.filter(on_log.encoded.events["user"] == code)["item"]
    assert np.array_equal(loaded.user_events(code)["item"].to_numpy(), items.to_numpy())


def test_resuming_from_the_encoding_continues_bit_for_bit(logs, trained, tmp_path):
    _, enc = logs
    one = dataclass_epochs(CONFIG, 1)
    checkpoint.train(str(enc), "hrnn-all", one, out=tmp_path / "a", log=None)
    with pytest.raises(CheckpointError, match="not a log"):  # a resumed run keeps its source
        checkpoint.train(str(logs[0]), "hrnn-all", CONFIG, log=None,
                         resume=checkpoint.load(tmp_path / "a"))
    resumed = checkpoint.train(str(enc), "hrnn-all", CONFIG, out=tmp_path / "a", log=None,
                               resume=checkpoint.load(tmp_path / "a"))
    assert _same(resumed.params, trained[1].params)


def dataclass_epochs(config: Config, epochs: int) -> Config:
    values = config.to_dict()
    values["train"]["epochs"] = epochs
    return Config.from_dict(values)


def test_misuse_is_named(logs, trained, tmp_path):
    log, enc = logs
    _, _, loaded, out = trained
    with pytest.raises(CheckpointError, match="not .*log.parquet; give that directory"):
        loaded.evaluate(log)
    with pytest.raises(ConfigError, match="give no mesh"):
        loaded.evaluate(enc, mesh="data=2")
    with pytest.raises(ConfigError, match="patience"):
        checkpoint.train(str(enc), "gru", dataclass_patience(CONFIG), log=None)
    moved = tmp_path / "moved"
    shutil.copytree(enc, moved)
    with pytest.raises(CheckpointError, match="not .*moved"):
        loaded.check_source(moved)
    copy = tmp_path / "ckpt"
    shutil.copytree(out, copy)
    meta = next(copy.glob("ckpt-*")) / "meta" / "metadata"
    saved = json.loads(meta.read_text())
    meta.write_text(json.dumps({**saved, "source": str(tmp_path / "gone")}))
    with pytest.raises(CheckpointError, match="gone, which is not there any more"):
        checkpoint.load(copy)
    meta.write_text(json.dumps({**saved, "source": str(moved)}))
    info = json.loads((moved / "info.json").read_text())
    (moved / "info.json").write_text(json.dumps({**info, "events": info["events"] + 1}))
    with pytest.raises(CheckpointError, match="has changed since"):
        checkpoint.load(copy)


def dataclass_patience(config: Config) -> Config:
    values = config.to_dict()
    values["train"]["patience"] = 2
    return Config.from_dict(values)


def test_the_command_line_trains_evaluates_and_recommends_from_the_encoding(logs, tmp_path,
                                                                            capsys):
    log, enc = logs
    assert cli.main(["compare", str(enc), "--models", "gru", *RUN]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gru ")]
    ck = tmp_path / "gru"
    assert cli.main(["train", str(enc), "--model", "gru", "--out", str(ck), *RUN]) == 0
    assert f"saved {ck}" in capsys.readouterr().out
    assert cli.main(["evaluate", str(ck), str(enc)]) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gru ")]
    assert [row.split()[:9] for row in got] == [row.split()[:9] for row in table] and got
    assert cli.main(["recommend", str(ck), "--user", "5", "--top-k", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert cli.main(["train", str(enc), "--resume", str(ck), "--epochs", "2", "--quiet"]) == 0
    assert "trained gru: 2 of 2 epochs" in capsys.readouterr().out
    for argv, message in (
            (["train", str(enc), "--model", "gru", "--out", str(tmp_path / "x"),
              "--protocol", "users"], "encoded log: its data settings"),
            (["evaluate", str(ck), str(log)], "give that directory"),
            (["train", str(log), "--resume", str(ck), "--epochs", "2"], "give that directory"),
            (["evaluate", str(ck), str(enc), "--mesh", "data=2"], "evaluated from shares")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")
def test_each_process_ranks_its_share_on_its_own_devices_as_on_one(logs, trained):
    """``parallel.local_mesh``: the process's devices, the training mesh's ``items`` kept where
    it divides them; ranking a share on it gives the ranks of one device."""
    _, enc = logs
    on_log = trained[0]
    assert parallel.local_mesh(None) is None
    assert dict(parallel.local_mesh("data=4,items=2").shape) == {"data": 4, "items": 2}
    assert dict(parallel.local_mesh("data=2,items=3").shape) == {"data": 8, "items": 1}
    share = data.read_share(enc, 1)
    config = Config(data=data.read_data_config(enc), train=TrainConfig(batch_size=6))
    ranks = [compare.share_model_ranks(on_log.model, on_log.params, enc, share, config, mesh=m)
             for m in (None, "data=4,items=2", "data=8")]
    assert len(ranks[0]) > 100
    assert np.array_equal(ranks[0], ranks[1]) and np.array_equal(ranks[0], ranks[2])
