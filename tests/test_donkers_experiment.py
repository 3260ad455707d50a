"""experiments/donkers2017.py: its JSON, its errors, and (slow) the paper's claim on its default."""
import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import donkers2017

from hrnn_jax import data
from hrnn_jax.data import synthetic
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
    for name in donkers_paper.MODELS[:4] + USER_GRUS + ("concat",):  # all against the reference
        r = result["models"][name]
        assert r["reference"] == "user-gru-none" and set(r["p_value"]) == {"mrr@20", "recall@20"}
    assert "p_value" not in result["models"]["user-gru-none"] and result["paper"] is None
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


@pytest.mark.slow  # about 20 s; the default suite checks the reference and p-values above
def test_the_standard_gru_is_the_reference_with_p_values(tmp_path, capsys):
    """user-gru-none is the reference: every other model has Wilcoxon and t-test p-values of
    MRR@20 and Recall@20 over the test users; several seeds give mean and std; a user sample
    and Table 2's column reach the run."""
    out = tmp_path / "d.json"
    models = "itemknn,user-gru-none"  # one neural model: the test stays short
    assert donkers2017.main(TINY + ["--models", models, "--seeds", "2", "--user-sample", "0.5",
                                    "--sample-seed", "3", "--paper-table", "movielens",
                                    "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["reference"] == donkers_paper.REFERENCE == "user-gru-none"
    assert "reference" not in result["models"]["user-gru-none"]
    tested = result["models"]["itemknn"]
    assert tested["reference"] == "user-gru-none" and tested["unit"] == "user"
    assert tested["sessions"] == result["data"]["users"] == 20  # one pair per test user
    for kind in ("p_value", "t_test_p_value"):
        for metric in ("mrr@20", "recall@20"):
            assert 0.0 <= tested[kind][metric] <= 1.0, (kind, metric)
    ref = result["models"]["user-gru-none"]
    assert ref["seeds"] == 2 and len(ref["per_seed"]["mrr@20"]) == 2
    assert ref["std"]["mrr@20"] > 0.0  # two seeds, two results
    assert result["data"]["user_sample"] == {"fraction": 0.5, "seed": 3}
    assert result["paper"]["table"] == "movielens"
    assert result["paper"]["figures"]["user-gru-none"] == [0.0473, 0.15773]
    printed = capsys.readouterr().out
    assert "paper movielens" in printed and "0.04730 / 0.15773" in printed
    assert "against user-gru-none" in printed


def test_table2_is_the_papers():
    """Table 2 as printed in the paper: every model of both columns, the standard GRU below every
    user-based GRU (the paper's claim) and above every baseline."""
    for column in ("movielens", "lastfm"):
        figures = donkers_paper.TABLE2[column]
        assert set(figures) == set(donkers_paper.MODELS) - {"concat"}
        for i in range(2):
            ref = figures["user-gru-none"][i]
            assert all(figures[n][i] > ref for n in USER_GRUS)
            assert all(figures[n][i] < ref for n in ("itemknn", "decay-itemknn", "mf", "seq-mf"))
    assert donkers_paper.TABLE2["lastfm"]["user-gru-rectified"] == (0.19154, 0.25409)


@pytest.mark.parametrize("path,table", [
    (None, None), ("ml-10M100K/ratings.dat", "movielens"), ("data/ML-10M.csv", "movielens"),
    ("lastfm-dataset-1K/userid-timestamp-artid-artname-traid-traname.tsv", "lastfm"),
    ("lastfm_sample.tsv", "lastfm"), ("other.csv", None)])
def test_paper_table_by_the_logs_name(path, table):
    assert donkers_paper.paper_table("auto", path) == table
    assert donkers_paper.paper_table("none", path) is None
    assert donkers_paper.paper_table("lastfm", path) == "lastfm"


def generated_log():
    return data.read_interactions(synthetic.generate(n_users=50, n_items=200, seed=4))


def test_user_sample_is_deterministic_and_keeps_users_whole():
    log = generated_log()
    sample = donkers_paper.sample_users(log, 0.1, seed=7)
    users = sample["user"].unique().sort().to_list()
    assert len(users) == 5  # round(0.1 * 50)
    assert donkers_paper.sample_users(log, 0.1, seed=7).equals(sample)  # deterministic
    assert donkers_paper.sample_users(log, 0.1, seed=8)["user"].unique().sort().to_list() != users
    whole = log.filter(log["user"].is_in(users))
    assert sample.equals(whole)  # every event of a kept user, in the log's order
    assert donkers_paper.sample_users(log, 1.0, seed=7).equals(log)
    assert donkers_paper.sample_users(log, 0.001, seed=7)["user"].n_unique() == 1


def test_event_sample_keeps_each_users_most_recent_events():
    log = generated_log()
    sample = donkers_paper.sample_events(log, 0.25)
    assert sample["user"].n_unique() == log["user"].n_unique()
    for user in log["user"].unique().to_list()[:10]:
        full = log.filter(log["user"] == user).sort("time", maintain_order=True)
        kept = sample.filter(sample["user"] == user)
        n = -(-full.height // 4)  # ceil(0.25 n)
        assert kept.height == n and kept.sort("time", maintain_order=True).equals(full.tail(n))


def test_bad_samples_raise():
    log = generated_log()
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(data.DataError, match="fraction in"):
            donkers_paper.sample_users(log, bad)
        with pytest.raises(data.DataError, match="fraction in"):
            donkers_paper.sample_events(log, bad)
    with pytest.raises(data.DataError, match="time"):
        donkers_paper.sample_events(log.drop("time"), 0.5)


@pytest.mark.slow
def test_every_user_based_gru_beats_the_standard_gru_on_the_default(tmp_path):
    out = tmp_path / "d.json"
    assert donkers2017.main(["--models", ",".join(("user-gru-none",) + USER_GRUS),
                             "--json", str(out)]) == 0
    models = json.loads(out.read_text())["models"]
    for name in USER_GRUS:
        for metric in ("mrr@20", "recall@20"):
            assert models[name][metric] > models["user-gru-none"][metric], (name, metric)
