"""``experiments/bench_gru4rec.py``: the session GRU's speed in GRU4Rec's settings, and the same
training events written for the official code."""
from __future__ import annotations

import json

import polars as pl
import pytest

from tests.helpers import load_experiment

bench = load_experiment("bench_gru4rec")


def test_it_times_each_setting_and_writes_the_log_for_the_official_code(tmp_path):
    out, tsv = tmp_path / "b.json", tmp_path / "train.tsv"
    bench.main(["--users", "20", "--items", "60", "--epochs", "2", "--settings",
                "ce,bpr-max+2048", "--json", str(out), "--tsv", str(tsv)])
    got = json.loads(out.read_text())
    assert set(got["settings"]) == {"ce", "bpr-max+2048"}
    for s in got["settings"].values():
        assert len(s["events_per_second"]) == 2 and min(s["events_per_second"]) > 0
        assert s["best_after_compile"] == s["events_per_second"][1]
        assert "batch_size=50" in s["official_parameters"]
        assert "layers=100" in s["official_parameters"]
    assert "loss=bpr-max" in got["settings"]["bpr-max+2048"]["official_parameters"]
    # the same events, one session id per user session, in time order within each session
    log = pl.read_csv(tsv, separator="\t")
    assert log.columns == ["SessionId", "ItemId", "Time"]
    prep = bench.prepared(20, 60)
    assert log.height == prep.train.height == got["log"]["events"]
    sessions = prep.train.select(pl.struct("user", "session").n_unique()).item()
    assert log["SessionId"].n_unique() == sessions
    assert got["log"]["predictions"] == prep.train.height - sessions
    assert log.group_by("SessionId").agg(pl.col("Time").is_sorted().alias("ok"))["ok"].all()
    assert sorted(log["ItemId"].to_list()) == sorted(prep.train["item"].to_list())


def test_full_ce_has_no_official_counterpart_and_unknown_settings_are_refused(capsys):
    assert bench.official_parameters("full-ce", 3) is None
    with pytest.raises(SystemExit) as e:
        bench.main(["--settings", "ce,nope"])
    assert e.value.code == 2
    assert "unknown settings ['nope']" in capsys.readouterr().err
