"""experiments/quadrana2017.py runs end to end on a tiny synthetic log: every model of the
paper's comparison, Table 2's settings per model (explicit flags override them), mean and std over
seeds, Wilcoxon and t-test p-values against the session RNN, the breakdowns of Figs. 3-6 and the
paper's claims judged from the same figures."""
import json

import pytest

from hrnn_jax.papers import quadrana2017 as paper
from tests.helpers import load_experiment

METRICS = ("recall@5", "mrr@5")


def load():
    return load_experiment("quadrana2017")


def gain(a, b):
    return a / b - 1 if b > 0 else None


def test_tiny_run_applies_table_2_and_judges_the_claims(tmp_path, capsys):
    out = tmp_path / "quadrana.json"
    assert load().main(["--users", "30", "--items", "300", "--epochs", "1", "--hidden", "8",
                        "--seeds", "2", "--momentum", "0.05", "--quiet",
                        "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    models, settings = result["models"], result["settings"]
    assert list(models) == list(paper.MODELS)
    # Table 2's small rows, but --hidden and --momentum given: they override it for every model
    for name in paper.NEURAL:
        row = paper.TABLE2[(name, "small")]
        assert settings[name] == {
            "hidden": 8, "dropout_user": row.dropout_user, "dropout_session": row.dropout_session,
            "dropout_init": row.dropout_init, "batch_size": row.batch_size,
            "learning_rate": row.learning_rate, "momentum": 0.05, "size": "small",
            "from_flags": ["hidden", "momentum"]}
    assert settings["hrnn-init"]["batch_size"] == 50 and settings["hrnn-all"]["batch_size"] == 100
    assert settings["hrnn-all"]["dropout_init"] == 0.2 and settings["pop"] == {}
    assert result["config"]["model"]["neighbours"] == 300
    assert result["config"]["data"]["min_sessions"] == 5
    for name, r in models.items():
        assert 0 <= r["recall@5"] <= r["recall@20"] <= 1
        assert r["seeds"] == (2 if name in paper.NEURAL else 1)
        assert set(r["std"]) >= set(METRICS)
        assert set(r["breakdown"]["history"]) == {"short (<=6)", "long (>6)"}
        assert set(r["breakdown"]["position"]) == {"beginning", "middle", "end"}
        for group in (*r["breakdown"]["history"].values(), *r["breakdown"]["position"].values()):
            assert set(group) == {"recall@5", "mrr@5", "n", "sessions"}
            assert group["n"] >= group["sessions"] > 0
        per_row = r["breakdown_per_prediction"]  # the same groups and rows, averaged per row
        for kind in ("history", "position"):
            assert {g: v["n"] for g, v in per_row[kind].items()} == {
                g: v["n"] for g, v in r["breakdown"][kind].items()}
            assert all(set(v) == {"recall@5", "mrr@5", "n"} for v in per_row[kind].values())
        if name != "gru":  # Wilcoxon and t-test against the session RNN, one pair per session
            assert r["reference"] == "gru" and r["sessions"] == models["pop"]["sessions"] > 0
            for kind in ("p_value", "t_test_p_value"):
                assert all(p is None or 0 <= p <= 1 for p in r[kind].values())
                assert r[kind]["recall@5"] is not None
    checks, gru = result["checks"], models["gru"]
    for name in ("hrnn-init", "hrnn-all"):
        check = checks[f"{name.replace('-', '_')}_beats_gru"]
        for m in METRICS:
            assert check[m]["holds"] == (models[name][m] > gru[m])
            assert check[m]["p_value"] == models[name]["p_value"][m]
    h, g = models["hrnn-init"]["breakdown"]["history"], gru["breakdown"]["history"]
    for m in METRICS:
        short, long = (gain(h[k][m], g[k][m]) for k in ("short (<=6)", "long (>6)"))
        want = None if None in (short, long) else long > short
        assert checks["hrnn_init_gain_grows_with_history"][m]["holds"] == want
        a = models["hrnn-all"]["breakdown"]["history"]
        assert checks["hrnn_all_beats_gru_short_and_long"][m]["holds"] == all(
            a[k][m] > g[k][m] for k in ("short (<=6)", "long (>6)"))
    p, q = models["hrnn-init"]["breakdown"]["position"], gru["breakdown"]["position"]
    begin, end = (gain(p[k]["recall@5"], q[k]["recall@5"]) for k in ("beginning", "end"))
    assert checks["hrnn_init_recall_gain_largest_at_beginning"]["recall@5"]["holds"] == (
        None if None in (begin, end) else begin > end)
    printed = capsys.readouterr().out
    assert "against gru" in printed and "check hrnn_init_beats_gru" in printed


def test_table_2_rows_and_overrides_without_training():
    module = load()
    args, cfg, flags = module.parse(["--size", "large", "--batch-size", "7"])
    run_cfg, settings = module.model_config("hrnn-all", cfg, "large", flags)
    assert (run_cfg.model.hidden, run_cfg.train.batch_size) == (500, 7)
    assert (run_cfg.train.learning_rate, run_cfg.train.momentum) == (0.05, 0.3)
    assert (run_cfg.model.dropout_user, run_cfg.model.dropout_session,
            run_cfg.model.dropout_init) == (0.0, 0.2, 0.2)
    assert settings["from_flags"] == ["batch_size"]
    assert run_cfg.train.optimizer == "adagrad" and run_cfg.train.loss == "top1"
    assert run_cfg.train.row_updates == "auto" and run_cfg.train.epochs == 10
    assert module.model_config("itemknn", cfg, "large", flags) == (cfg, {})
    # RNN and RNN Concat share their rows; the baselines have none
    assert paper.TABLE2[("gru", "small")] == paper.TABLE2[("concat", "small")]
    assert paper.settings("pop") is None
    # a user's log gets the paper's filters, XING's item support among them
    _, cfg, _ = module.parse(["--data", "log.csv"])
    assert (cfg.data.min_item_support, cfg.data.min_session_len, cfg.data.min_sessions,
            cfg.data.dedupe, cfg.data.session_gap) == (20, 3, 5, True, 1800.0)
    _, cfg, _ = module.parse(["--data", "log.csv", "--min-item-support", "10"])
    assert cfg.data.min_item_support == 10


@pytest.mark.parametrize("argv, message", [
    (["--models", "gru,nope"], "error: unknown model(s) nope; choose from "),
    (["--size", "huge"], "error: argument --size: invalid choice: 'huge'"),
    (["--momentum", "2"], "error: argument --momentum: must be <= 0.99, got 2"),
    (["--no-such-flag"], "error: unrecognized arguments: --no-such-flag"),
    (["--json", "/no/such/dir/out.json"], "error: --json: directory does not exist"),
    (["--ks", "10,20"], "error: --ks must include 5"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert load().main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_a_missing_log_is_a_one_line_error(tmp_path, capsys):
    assert load().main(["--data", str(tmp_path / "none.csv"), "--models", "pop"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_help_names_the_override_rule(capsys):
    assert load().main(["--help"]) == 0
    assert "overrides the table for every model" in " ".join(capsys.readouterr().out.split())

