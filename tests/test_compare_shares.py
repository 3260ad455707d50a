"""``compare`` on an encoded log (``hrnn-jax preprocess``; ``compare.compare_shares``): every
process reads only its share. With one process it is ``compare`` on the log itself; what needs
every row in one process is refused by name. Two processes: ``tests/test_processes.py``."""
from __future__ import annotations

import json

import polars as pl
import pytest

from hrnn_jax import cli, data
from hrnn_jax.compare import compare_shares
from hrnn_jax.config import Config, ConfigError, DataConfig, TrainConfig
from hrnn_jax.data import synthetic

RUN = ["--hidden", "8", "--batch-size", "6", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """A Parquet log and its encoding under the leave-one-out protocol."""
    root = tmp_path_factory.mktemp("shares")
    synthetic.generate(n_users=36, n_items=70, sessions_per_user=(3, 4), seed=3).write_parquet(
        root / "log.parquet")
    assert cli.main(["preprocess", str(root / "log.parquet"), "--out", str(root / "enc"),
                     "--min-item-support", "1", "--protocol", "leave-one-out"]) == 0
    return root / "log.parquet", root / "enc"


def _rows(text: str) -> list[str]:
    """The table's rows, the timing columns dropped."""
    return [" ".join(line.split()[:9]) for line in text.splitlines()
            if line.split() and line.split()[0] in ("gru", "hrnn-init")]


def test_one_process_compares_as_compare_on_the_log(logs, tmp_path, capsys):
    log, enc = logs
    models = ["--models", "gru,hrnn-init"]
    assert cli.main(["compare", str(log), *models, *RUN, "--min-item-support", "1",
                     "--protocol", "leave-one-out", "--json", str(tmp_path / "log.json")]) == 0
    want = capsys.readouterr().out
    assert cli.main(["compare", str(enc), *models, *RUN, "--json",
                     str(tmp_path / "enc.json")]) == 0
    got = capsys.readouterr().out
    assert _rows(got) == _rows(want) and len(_rows(got)) == 2
    assert got.splitlines()[0] == want.splitlines()[0]  # the data summary
    saved = json.loads((tmp_path / "enc.json").read_text())
    assert saved["config"]["data"]["protocol"] == "leave-one-out"  # the encoding's settings
    assert saved["command"]["shares"] is True


def test_the_encodings_settings_are_kept_and_others_refused(logs, tmp_path, capsys):
    _, enc = logs
    assert data.read_data_config(enc) == DataConfig(min_item_support=1, protocol="leave-one-out")
    with pytest.raises(ConfigError, match="pop: only neural models"):
        compare_shares(enc, ["gru", "pop"], Config())
    with pytest.raises(ConfigError, match="patience"):
        compare_shares(enc, ["gru"], Config(train=TrainConfig(patience=2)))
    toml = tmp_path / "run.toml"
    toml.write_text("[data]\nsession_gap = 60\n")
    for argv, message in [
            (["--models", "gru", "--min-item-support", "3"], "leave out --min-item-support"),
            (["--models", "gru", "--config", str(toml)], "leave out [data]"),
            (["--models", "gru,hrnn-init", "--reference", "gru"], "--reference needs every"),
            (["--models", "gru", "--plot", str(tmp_path)], "--plot needs every"),
            (["--models", "gru,itemknn"], "itemknn: only neural models"),
            (["--models", "gru", "--lane-groups", "4", "--batch-size", "6"],
             "lane_groups (4) must divide batch_size")]:
        assert cli.main(["compare", str(enc), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("hrnn-jax: error: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1


def test_an_encoding_without_its_settings_is_named(logs, tmp_path):
    _, enc = logs
    old = tmp_path / "old"
    old.mkdir()
    for name in ("train", "test", "users", "items"):
        pl.read_parquet(enc / f"{name}.parquet").write_parquet(old / f"{name}.parquet")
    (old / "info.json").write_text((enc / "info.json").read_text())
    assert data.is_encoded(old) and not data.is_encoded(enc / "train.parquet")
    with pytest.raises(data.DataError, match="no data_config.json.*preprocess the log again"):
        compare_shares(old, ["gru"])
