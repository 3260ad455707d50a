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
                        "--hidden", "8", "--models", "pop,spop,hcrnn-3-bi",
                        "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"pop", "spop", "hcrnn-3-bi"}
    for name, r in result["models"].items():
        assert set(r) == {"recall@3", "recall@20", "mrr@3", "mrr@20", "events_per_second"}
        assert 0 <= r["recall@3"] <= r["recall@20"] <= 1
    assert result["models"]["hcrnn-3-bi"]["events_per_second"] > 0
    a = result["analysis"]
    assert 0 < a["drift_gate_after_change"] < 1 and 0 < a["drift_gate_within_run"] < 1
    assert set(a["attention_by_distance"]) == {"local", "temporary"}
    assert result["data"]["test_users"] > 0


def test_bad_arguments_are_one_line_errors(capsys, tmp_path):
    module = load()
    assert module.main(["--models", "gru,nope"]) == 2
    assert "unknown model(s) ['nope']" in capsys.readouterr().err
    assert module.main(["--format", "hcrnn"]) == 2
    assert capsys.readouterr().err == "error: --format hcrnn needs --data DIR\n"
    assert module.main(["--data", str(tmp_path), "--format", "hcrnn"]) == 1
    assert capsys.readouterr().err.startswith("error: file not found")
