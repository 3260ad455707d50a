"""experiments/shuvo_hrnn.py (Shuvo et al.'s HRNN study) runs end to end on a tiny synthetic log:
every model of the seed's list, the four metrics with mean and std over seeds, the tests against
GRU4Rec, the study's expectations judged from the same figures."""
import json

from hrnn_jax.papers import shuvo
from tests.helpers import load_experiment


def load():
    return load_experiment("shuvo_hrnn")


def test_tiny_run_writes_the_studys_table(tmp_path, capsys):
    out = tmp_path / "shuvo.json"
    assert load().main(["--users", "50", "--items", "60", "--epochs", "1", "--hidden", "8",
                        "--seeds", "2", "--batch-size", "10", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    m = result["models"]
    assert list(m) == list(shuvo.MODELS)
    for name, r in m.items():
        for k in shuvo.METRICS:
            assert 0 <= r[k] <= 1
            assert r["std"][k] >= 0 and len(r["per_seed"][k]) == (2 if name in (
                "gru", "gru4rec+", "hrnn-init", "hrnn-all") else 1)
        assert r["hit@10"] <= r["recall@20"]
        if name != "gru":
            assert r["reference"] == "gru" and r["sessions"] == result["data"]["test_events"]
            assert all(p is None or 0 <= p <= 1 for p in r["t_test_p_value"].values())
    # the protocol: leave-one-out, users with < 5 events out, patience on the validation item
    cfg = result["config"]
    assert (cfg["data"]["protocol"], cfg["data"]["min_user_events"], cfg["train"]["patience"]) \
        == ("leave-one-out", 5, 2)
    assert 0 < result["data"]["test_events"] <= result["data"]["users"]  # at most one per user
    assert result["checks"] == {
        "hrnn_init_beats_gru": {"hit@10": m["hrnn-init"]["hit@10"] > m["gru"]["hit@10"]},
        "gru4rec_plus_at_least_gru": {k: m["gru4rec+"][k] >= m["gru"][k]
                                      for k in ("recall@20", "mrr@20")}}
    printed = capsys.readouterr().out
    assert "paired t-test (two-sided) against gru" in printed and "±" in printed


def test_bad_arguments_are_one_line_errors(capsys, tmp_path):
    module = load()
    assert module.main(["--models", "gru,nope"]) == 2
    assert "unknown model(s) ['nope']" in capsys.readouterr().err
    assert module.main(["--models", "pop,fmc"]) == 2
    assert capsys.readouterr().err == ("error: --models must include gru (the reference of the "
                                       "tests)\n")
    assert module.main(["--ks", "5"]) == 2
    assert "--ks must include 10 and 20" in capsys.readouterr().err
    assert module.main(["--data", str(tmp_path / "missing.csv")]) == 1
    assert capsys.readouterr().err.startswith("error: file not found")
