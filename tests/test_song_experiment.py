"""experiments/song2019_hcrnn.py runs end to end on a tiny synthetic log and writes the JSON the
issue names (models with R@3/R@20/M@3/M@20 and speed, the analyses)."""
import importlib.util
import json
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "song2019_hcrnn.py"


def load():
    spec = importlib.util.spec_from_file_location("song2019_hcrnn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_the_papers_fields(tmp_path, capsys):
    out = tmp_path / "song.json"
    assert load().main(["--users", "40", "--items", "50", "--topics", "4", "--epochs", "1",
                        "--hidden", "8", "--models", "pop,spop,gru,hcrnn-3-bi,hrnn-hcrnn-3",
                        "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"pop", "spop", "gru", "hcrnn-3-bi", "hrnn-hcrnn-3"}
    for name, r in result["models"].items():
        assert set(r) == {"recall@3", "recall@20", "mrr@3", "mrr@20", "events_per_second"}
        assert 0 <= r["recall@3"] <= r["recall@20"] <= 1
    assert result["models"]["hcrnn-3-bi"]["events_per_second"] > 0
    a = result["analysis"]
    assert 0 < a["drift_gate_after_change"] < 1 and 0 < a["drift_gate_within_run"] < 1
    assert set(a["attention_by_distance"]) == {"local", "temporary"}
    assert result["data"]["test_users"] > 0
    # the paper's paired t-test and the Wilcoxon test against GRU4Rec, one pair per test user
    assert set(result["tests"]) == {"pop", "spop", "hcrnn-3-bi", "hrnn-hcrnn-3"}
    for tests in result["tests"].values():
        assert tests["reference"] == "gru" and tests["sessions"] == result["data"]["test_users"]
        for kind in ("t_test_p_value", "p_value"):
            assert set(tests[kind]) >= {"recall@3", "recall@20", "mrr@3", "mrr@20"}
            assert all(p is None or 0 <= p <= 1 for p in tests[kind].values())
    assert "paired t-test (two-sided) against gru" in capsys.readouterr().out
    # the paper's claims, judged from the same figures
    m = result["models"]
    assert result["checks"]["hcrnn_3_bi_beats_gru"] == {
        k: m["hcrnn-3-bi"][k] > m["gru"][k] for k in ("recall@20", "mrr@20")}
    assert result["checks"]["drift_gate_smaller_after_change"] == (
        a["drift_gate_after_change"] < a["drift_gate_within_run"])


def test_bad_arguments_are_one_line_errors(capsys, tmp_path):
    module = load()
    assert module.main(["--models", "gru,nope"]) == 2
    assert "unknown model(s) ['nope']" in capsys.readouterr().err
    assert module.main(["--format", "hcrnn"]) == 2
    assert capsys.readouterr().err == "error: --format hcrnn needs --data\n"
    assert module.main(["--max-rating-only"]) == 2
    assert capsys.readouterr().err == "error: --max-rating-only needs --format movielens\n"
    assert module.main(["--data", str(tmp_path), "--format", "hcrnn"]) == 1
    assert capsys.readouterr().err.startswith("error: file not found")


def test_movielens_ratings_at_the_maximum_only(tmp_path):
    """``--format movielens --max-rating-only``: a ratings.dat keeps its 5-star events only, and
    the JSON reports how many were dropped."""
    import numpy as np

    from hrnn_jax.data import synthetic
    log = synthetic.generate(n_users=30, n_items=40, seed=1)
    stars = np.where(np.arange(log.height) % 4 == 0, 3, 5)
    path = tmp_path / "ratings.dat"
    path.write_text("".join(f"{u}::{i}::{r}::{int(t)}\n" for u, i, r, t in
                            zip(log["user"], log["item"], stars, log["time"])))
    out = tmp_path / "ml.json"
    assert load().main(["--data", str(path), "--format", "movielens", "--max-rating-only",
                        "--models", "pop", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["data"]["dropped"]["below_max_value"] == int((stars == 3).sum())
    assert result["config"]["data"]["max_value_only"] is True
