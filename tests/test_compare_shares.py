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
from tests.helpers import encoded_log

RUN = ["--hidden", "8", "--batch-size", "6", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """A Parquet log and its encoding under the leave-one-out protocol."""
    return encoded_log(tmp_path_factory.mktemp("shares"), "--protocol", "leave-one-out")


def _rows(text: str) -> dict[str, str]:
    """The table's rows by model, the timing columns dropped."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model "))
    return {line.split()[0]: " ".join(line.split()[1:9]) for line in lines[head + 1:]
            if line.split()}


def test_one_process_compares_as_compare_on_the_log(logs, tmp_path, capsys):
    """The default models that run from shares (all of Quadrana et al.'s comparison but
    Item-KNN), and the table of compare on the log for those of them it runs here."""
    log, enc = logs
    assert cli.main(["compare", str(log), "--models", "pop,ppop,gru,hrnn-init", *RUN,
                     "--min-item-support", "1", "--protocol", "leave-one-out", "--json",
                     str(tmp_path / "log.json")]) == 0
    want = capsys.readouterr().out
    assert cli.main(["compare", str(enc), *RUN, "--json", str(tmp_path / "enc.json")]) == 0
    got = capsys.readouterr().out
    assert list(_rows(got)) == ["pop", "ppop", "gru", "concat", "hrnn-init", "hrnn-all"]
    assert {m: _rows(got)[m] for m in _rows(want)} == _rows(want)
    assert got.splitlines()[0] == want.splitlines()[0]  # the data summary
    saved = json.loads((tmp_path / "enc.json").read_text())
    assert saved["config"]["data"]["protocol"] == "leave-one-out"  # the encoding's settings
    assert saved["command"]["shares"] is True


def test_the_encodings_settings_are_kept_and_others_refused(logs, tmp_path, capsys):
    _, enc = logs
    assert data.read_data_config(enc) == DataConfig(min_item_support=1, protocol="leave-one-out")
    with pytest.raises(ConfigError, match="itemknn, fpmc: these baselines read every user"):
        compare_shares(enc, ["gru", "pop", "itemknn", "fpmc"], Config())
    with pytest.raises(ConfigError, match="patience"):
        compare_shares(enc, ["gru"], Config(train=TrainConfig(patience=2)))
    toml = tmp_path / "run.toml"
    toml.write_text("[data]\nsession_gap = 60\n")
    for argv, message in [
            (["--models", "gru", "--min-item-support", "3"], "leave out --min-item-support"),
            (["--models", "gru", "--config", str(toml)], "leave out [data]"),
            (["--models", "gru,hrnn-init", "--reference", "gru"], "--reference needs every"),
            (["--models", "gru", "--plot", str(tmp_path)], "--plot needs every"),
            (["--models", "gru,itemknn"], "itemknn: these baselines read every user's events"),
            (["--models", "gru", "--lane-groups", "4", "--batch-size", "6"],
             "lane_groups (4) must divide batch_size")]:
        assert cli.main(["compare", str(enc), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("hrnn-jax: error: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1


def test_an_encoding_without_its_settings_is_named(logs, tmp_path, capsys):
    _, enc = logs
    old = tmp_path / "old"
    old.mkdir()
    for name in ("train", "test", "users", "items"):
        pl.read_parquet(enc / f"{name}.parquet").write_parquet(old / f"{name}.parquet")
    (old / "info.json").write_text((enc / "info.json").read_text())
    assert data.is_encoded(old) and not data.is_encoded(enc / "train.parquet")
    with pytest.raises(data.DataError, match="no data_config.json.*preprocess the log again"):
        compare_shares(old, ["gru"])
    assert cli.main(["compare", str(old), "--models", "gru"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no data_config.json" in err  # named before any output
    (old / "info.json").unlink()  # a directory that is not an encoded log
    assert cli.main(["compare", str(old), "--models", "gru"]) == 2
    assert "is a directory but not an encoded log" in capsys.readouterr().err
