"""experiments/donkers2017.py: its JSON, its errors, and (slow) the paper's claim on its default."""
import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import donkers2017

from hrnn_jax.papers import donkers2017 as donkers_paper

USER_GRUS = ("user-gru-linear", "user-gru-rectified", "user-gru-attentional")
TINY = ["--users", "40", "--items", "120", "--hidden", "8", "--epochs", "1", "--patience", "0"]


def test_every_name_runs_and_the_json_has_the_papers_fields(tmp_path, capsys):
    out = tmp_path / "d.json"
    assert donkers2017.main(TINY + ["--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert tuple(result["models"]) == donkers_paper.MODELS
    for name, r in result["models"].items():
        assert 0.0 <= r["mrr@20"] <= r["recall@20"] <= 1.0, name
        assert r["events_per_second"] > 0, name  # baselines: training events / fit seconds
    assert result["data"]["source"] == "synthetic" and result["data"]["generated"]["users"] == 40
    assert result["data"]["users"] == 40 and result["data"]["evaluated"] > 0  # the filtered log
    assert result["config"]["data"]["protocol"] == "temporal"
    assert result["config"]["model"]["embed_dim"] == 8  # Table 1: embeddings as wide as h
    printed = capsys.readouterr().out
    assert "vs GRU" in printed and all(name in printed for name in USER_GRUS)


def test_a_log_file_and_its_errors(tmp_path, capsys):
    log = tmp_path / "ratings.dat"
    rows = [f"{u}::{i}::4::{1000 * u + 60 * t}" for u in range(1, 31) for t, i in
            enumerate([(u * 7 + k * 3) % 40 + 1 for k in range(30)])]
    log.write_text("\n".join(rows) + "\n")
    out = tmp_path / "d.json"
    flags = ["--data", str(log), "--columns", "user,item,rating,time", "--min-item-support", "1",
             "--models", "itemknn,user-gru-linear", "--json", str(out)]
    assert donkers2017.main(flags + TINY[4:]) == 0
    result = json.loads(out.read_text())
    assert result["data"]["source"] == str(log) and result["data"]["users"] == 30
    capsys.readouterr()
    assert donkers2017.main(["--data", str(tmp_path / "missing.dat")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert donkers2017.main(TINY + ["--models", "concat,nope"]) == 2
    assert "unknown model(s) nope" in capsys.readouterr().err


@pytest.mark.slow
def test_every_user_based_gru_beats_the_standard_gru_on_the_default(tmp_path):
    out = tmp_path / "d.json"
    assert donkers2017.main(["--models", ",".join(("concat",) + USER_GRUS),
                             "--json", str(out)]) == 0
    models = json.loads(out.read_text())["models"]
    for name in USER_GRUS:
        for metric in ("mrr@20", "recall@20"):
            assert models[name][metric] > models["concat"][metric], (name, metric)
