"""Command-line interface: compare/demo runs, JSON output, determinism and one-line errors."""
import contextlib
import io
import json
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from hrnn_jax import cli, jsonio
from hrnn_jax.data import synthetic

TINY = ["--hidden", "16", "--batch-size", "8", "--window", "5", "--epochs", "1", "--quiet"]
METRICS = ("recall", "mrr", "precision", "hit", "ndcg")
DATA_KEYS = {"users", "items", "sessions", "events", "train_events", "test_events", "dropped",
             "catalogue"}


@pytest.fixture(scope="module")
def log_frame():
    return synthetic.generate(n_users=60, n_items=80, seed=3)


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory, log_frame):
    path = tmp_path_factory.mktemp("cli") / "log.csv"
    log_frame.write_csv(path)
    return path


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def model_keys(ks):
    return ({f"{m}@{k}" for m in METRICS for k in ks}
            | {"train_seconds", "events_per_second", "breakdown"})


COMPARE = ["--models", "pop,ppop,itemknn,gru", "--ks", "3,10", "--min-item-support", "2",
           "--seed", "7", *TINY]


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory, csv_path):
    """One compare run (its output is checked by the tests below)."""
    out_json = tmp_path_factory.mktemp("run") / "res.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in ["compare", csv_path, "--json", out_json, *COMPARE]])
    return code, out.getvalue(), err.getvalue(), json.loads(out_json.read_text())


def test_compare_csv_table_and_json(compare_run, csv_path):
    code, out, err, res = compare_run
    assert code == 0, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert lines[0].startswith("data: 60 users")
    assert "dropped rows:" in lines[0]
    assert f"catalogue: {res['data']['catalogue']['items']} items of the training part" in lines[0]
    assert "repeated_in_session" not in lines[0]  # --dedupe is opt-in
    assert "recall@3" in lines[1] and "mrr@10" in lines[1]
    assert [ln.split()[0] for ln in lines[2:6]] == ["pop", "ppop", "itemknn", "gru"]
    assert set(res) == {"setting", "data", "models", "command", "config"}
    assert res["setting"] == {"backend": "cpu", "precision": "default", "deterministic": False}
    assert set(res["data"]) == DATA_KEYS
    assert res["data"]["users"] == 60
    assert res["data"]["train_events"] + res["data"]["test_events"] <= res["data"]["events"]
    assert set(res["models"]) == {"pop", "ppop", "itemknn", "gru"}
    for name, r in res["models"].items():
        assert set(r) == model_keys((3, 10)), name
        assert 0.0 <= r["mrr@3"] <= r["recall@3"] <= r["recall@10"] <= 1.0
        assert r["precision@3"] == pytest.approx(r["recall@3"] / 3)
        assert set(r["breakdown"]) == {"history", "position"}
    assert res["config"]["eval"]["ks"] == [3, 10]
    assert res["config"]["train"]["seed"] == 7 and res["config"]["model"]["hidden"] == 16
    assert res["command"] == {"name": "compare", "models": ["pop", "ppop", "itemknn", "gru"],
                              "data": str(csv_path)}


def test_same_seed_same_metrics(capsys, tmp_path, csv_path, compare_run):
    """Rerun pop and gru alone with the same seed: identical metrics to the first run."""
    def metrics(res):
        return {n: {k: v for k, v in r.items() if k not in ("train_seconds", "events_per_second")}
                for n, r in res["models"].items() if n in ("pop", "gru")}

    argv = [a if a != "pop,ppop,itemknn,gru" else "pop,gru" for a in COMPARE]
    code, _, err = run_cli(capsys, "compare", csv_path, "--json", tmp_path / "b.json", *argv)
    assert code == 0, err
    first, second = metrics(compare_run[3]), metrics(json.loads((tmp_path / "b.json").read_text()))
    assert first == second
    assert first["gru"]["recall@3"] != first["pop"]["recall@3"]


def test_deterministic_and_precision_flags_in_a_fresh_process(tmp_path, csv_path, compare_run):
    """--deterministic must reach XLA before JAX starts: the command line's own process. On CPU
    the figures are those of the default run, and the JSON says how they were computed."""
    argv = [a if a != "pop,ppop,itemknn,gru" else "gru" for a in COMPARE]
    proc = subprocess.run([sys.executable, "-m", "hrnn_jax", "compare", str(csv_path), *argv,
                           "--deterministic", "--precision", "highest", "--json",
                           str(tmp_path / "d.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "d.json").read_text())
    assert res["setting"] == {"backend": "cpu", "precision": "highest", "deterministic": True}
    first = compare_run[3]["models"]["gru"]
    for k in ("recall@3", "mrr@10"):
        assert res["models"]["gru"][k] == first[k]


@pytest.mark.slow  # test budget: the options' flow through the configuration is the same for
# every flag (test_config); --gru-reset reaches the models in test_quadrana_options
@pytest.mark.parametrize("options", [
    (["--context-gates", "rzn"], ["--activation", "tanh"]),
    pytest.param((["--first-session", "zero"], ["--context-grad", "session"]),
                 marks=pytest.mark.slow)])
def test_hrnn_options_reach_the_model(capsys, tmp_path, csv_path, options):
    base = ["--models", "hrnn-all", "--ks", "5", "--min-item-support", "2", *TINY]
    got = {}
    for extra in ([], *options):
        path = tmp_path / f"{len(got)}.json"
        code, _, err = run_cli(capsys, "compare", csv_path, *base, *extra, "--json", path)
        assert code == 0, err
        res = json.loads(path.read_text())
        got[" ".join(extra)] = res["models"]["hrnn-all"]["mrr@5"]
        if extra:
            section = "train" if extra[0] == "--activation" else "model"
            assert res["config"][section][extra[0][2:].replace("-", "_")] == extra[1]
    assert len(set(got.values())) == len(got), got  # every option changes the model
    code, _, err = run_cli(capsys, "compare", csv_path, *base, "--context-gates", "n")
    assert code == 2 and err.count("\n") == 1 and "--context-gates" in err


def test_custom_columns_separator_and_ms(capsys, tmp_path, log_frame):
    path = tmp_path / "log.txt"
    (log_frame.rename({"user": "uid", "item": "sku", "time": "ts"})
     .with_columns((pl.col("ts") * 1000).round(0).cast(pl.Int64))
     .write_csv(path, separator=";"))
    out_json = tmp_path / "res.json"
    argv = ["compare", path, "--user-col", "uid", "--item-col", "sku", "--time-col", "ts",
            "--sep", ";", "--time-unit", "ms", "--models", "pop,itemknn", "--json", out_json,
            "--quiet"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    ms = json.loads(out_json.read_text())
    # same sessions as the same log in seconds with default columns
    ref_path = tmp_path / "ref.csv"
    log_frame.write_csv(ref_path)
    code, _, err = run_cli(capsys, "compare", ref_path, "--models", "pop,itemknn",
                           "--json", out_json, "--quiet")
    assert code == 0, err
    ref = json.loads(out_json.read_text())
    assert ms["data"] == ref["data"]
    assert ms["models"]["pop"]["recall@5"] == ref["models"]["pop"]["recall@5"]


def test_dedupe_and_event_col_end_to_end(capsys, tmp_path, log_frame):
    """--dedupe drops repeats within a session (the type from --event-col counts); the summary
    line and the JSON report the drop, before the other filters."""
    # every event is doubled 1 s later: once as the same type, once as another type
    kinds = log_frame.with_columns(kind=pl.lit("click"))
    doubled = pl.concat([kinds, kinds.with_columns(pl.col("time") + 1.0),
                         kinds.with_columns(pl.col("time") + 2.0, kind=pl.lit("cart"))])
    path = tmp_path / "dup.csv"
    doubled.write_csv(path)
    argv = ["compare", path, "--models", "pop", "--min-item-support", "2", "--quiet"]

    def dropped(*extra):
        code, out, err = run_cli(capsys, *argv, "--json", tmp_path / "r.json", *extra)
        assert code == 0, err
        res = json.loads((tmp_path / "r.json").read_text())
        return out.splitlines()[0], res["data"]["dropped"]

    # repeats within 1-2 s never open a new session, and the original log's (session, item)
    # repeats add to them
    n = log_frame.height
    line, d = dropped("--dedupe")
    assert d["repeated_in_session"] >= 2 * n
    first = f"repeated_in_session={d['repeated_in_session']},"
    assert line.split("dropped rows: ")[1].startswith(first)
    line_t, d_t = dropped("--dedupe", "--event-col", "kind")
    assert n <= d_t["repeated_in_session"] < d["repeated_in_session"]  # "cart" copies stay
    line_0, d_0 = dropped()
    assert "repeated_in_session" not in d_0 and "repeated_in_session" not in line_0
    code, _, err = run_cli(capsys, *argv, "--event-col", "type")
    assert code == 2 and "type" in err


def test_demo_dedupe_flag(capsys):
    code, out, err = run_cli(capsys, "demo", "--users", "60", "--items", "80", "--models", "pop",
                             "--dedupe", "--quiet")
    assert code == 0, err
    assert "repeated_in_session=" in out.splitlines()[0]


def test_non_finite_training_loss_exits_1(capsys, csv_path):
    """A learning rate of 1e38 makes the GRU's loss NaN within the first epoch: one error line
    naming the epoch and the step, exit status 1 (a diverged run, not bad input)."""
    code, out, err = run_cli(capsys, "compare", csv_path, "--models", "gru",
                             "--learning-rate", "1e38", "--min-item-support", "2", *TINY)
    assert code == 1
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(r"hrnn-jax: error: training loss is not finite \((nan|inf|-inf)\) at "
                        r"epoch 1, step \d+ of \d+; lower the learning rate or clip gradients.*",
                        lines[0]), lines[0]


def test_demo_tiny_writes_json(capsys, tmp_path):
    out_json = tmp_path / "demo.json"
    code, out, err = run_cli(capsys, "demo", "--users", "60", "--items", "80", "--models",
                             "pop,gru", "--json", out_json, *TINY)
    assert code == 0, err
    assert "check HRNN Init > GRU > POP" in out and "not run" in out
    res = json.loads(out_json.read_text())
    assert set(res["data"]) == DATA_KEYS
    assert set(res["models"]) == {"pop", "gru"}
    assert set(res["models"]["gru"]) == model_keys((5, 20))
    assert res["command"]["name"] == "demo" and res["config"]["synthetic"]["users"] == 60
    assert res["config"]["data"]["min_item_support"] == 1  # the demo's own default


def test_compare_with_a_random_split_of_users(capsys, tmp_path, csv_path):
    """``--split`` is ``--protocol``; every scored row belongs to a test user, who has no training
    history (PersonalPop and Item-KNN cope; the neural models: test_compare)."""
    argv = ["compare", csv_path, "--split", "users", "--test-fraction", "0.2", "--split-seed", "4",
            "--models", "pop,ppop,itemknn,mf", "--ks", "5", "--min-item-support", "2", *TINY]
    code, out, err = run_cli(capsys, *argv, "--json", tmp_path / "users.json")
    assert code == 0, err
    res = json.loads((tmp_path / "users.json").read_text())
    assert (res["config"]["data"]["protocol"], res["config"]["data"]["split_seed"]) == ("users", 4)
    assert set(res["models"]) == {"pop", "ppop", "itemknn", "mf"}
    args = cli.build_parser().parse_args([str(a) for a in argv])
    prep = cli.load_prepared(args, cli.config_of(args))
    test_users = set(prep.test["user"].to_list())
    assert len(test_users) == round(0.2 * res["data"]["users"])
    assert test_users.isdisjoint(prep.train["user"].to_list())
    assert set(prep.rows.user.tolist()) == test_users
    assert len(prep.rows) == prep.test.height - len(test_users)  # all but each one's first event
    assert f"({len(prep.rows)} predictions scored)" in out.splitlines()[0]


def test_split_flags_in_help(capsys):
    for command in ("compare", "train"):
        assert cli.main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "--protocol {last-session,leave-one-out,temporal,users}, --split" in out
        assert "--split-seed SPLIT_SEED" in out


def test_check_line():
    r = {"hrnn-init": {"recall@5": 0.5, "mrr@5": 0.3}, "gru": {"recall@5": 0.4, "mrr@5": 0.2},
         "pop": {"recall@5": 0.1, "mrr@5": 0.05}}
    assert "HELD" in cli.check_line(r) and "DID NOT" not in cli.check_line(r)
    r["gru"]["mrr@5"] = 0.35
    assert "DID NOT HOLD" in cli.check_line(r)


def test_to_jsonable_numpy():
    value = {"a": np.int64(3), "b": (np.float32(0.5), np.bool_(True)), 4: np.arange(2)}
    assert json.loads(json.dumps(jsonio.to_jsonable(value))) == {"a": 3, "b": [0.5, True],
                                                              "4": [0, 1]}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, log_frame):
    d = tmp_path_factory.mktemp("bad")
    log_frame.write_csv(d / "ok.csv")
    log_frame.with_columns(pl.col("time").cast(pl.String) + "x").write_csv(d / "text_time.csv")
    (d / "empty.csv").write_text("")
    (d / "typo.toml").write_text("[train]\nepoch = 3\n")
    (d / "badvalue.toml").write_text("[train]\nbatch_size = 0\n")
    (d / "section.toml").write_text("[training]\nepochs = 3\n")
    log_frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(float("inf"))
                           .otherwise(pl.col("time").cast(pl.Float64)).alias("time")
                           ).write_csv(d / "inf_time.csv")
    (d / "twice.csv").write_text("user,item,time,item\n1,a,1,b\n")
    (d / "a_directory.csv").mkdir()
    return d


@pytest.mark.parametrize("argv, needle", [
    (["compare", "{d}/missing.csv"], "file not found"),
    (["compare", "{d}/ok.csv", "--user-col", "customer"], "customer"),
    (["compare", "{d}/text_time.csv"], "not numeric"),
    (["compare", "{d}/empty.csv"], "empty file"),
    (["compare", "{d}/inf_time.csv"], "time column 'time' has 1 value(s) that are not finite"),
    (["compare", "{d}/twice.csv"], "names column(s) ['item'] more than once"),
    (["compare", "{d}/a_directory.csv"], "a_directory.csv is a directory but not an encoded log"),
    (["compare", "{d}/ok.csv", "--epoch", "3"], "unrecognized arguments: --epoch"),
    (["compare", "{d}/ok.csv", "--k", "5"], "unrecognized arguments: --k"),
    (["compare", "{d}/ok.csv", "--models", "pop,lstm"], "lstm"),
    (["compare", "{d}/ok.csv", "--ks", "5,x"], "--ks"),
    (["compare", "{d}/ok.csv", "--ks", "0"], "--ks"),
    (["compare", "{d}/ok.csv", "--protocol", "random"], "--protocol"),
    (["compare", "{d}/ok.csv", "--split", "random"], "--split"),
    (["compare", "{d}/ok.csv", "--split-seed", "-1"], "--split-seed"),
    (["compare", "{d}/ok.csv", "--dropout-user", "1"], "--dropout-user"),
    (["compare", "{d}/ok.csv", "--epochs", "0"], "--epochs"),
    (["compare", "{d}/ok.csv", "--learning-rate", "-1"], "--learning-rate"),
    (["compare", "{d}/ok.csv", "--seeds", "0"], "--seeds"),
    (["compare", "{d}/ok.csv", "--config", "{d}/missing.toml"], "config file not found"),
    (["compare", "{d}/ok.csv", "--config", "{d}/typo.toml"], "unknown setting(s) epoch in [train]"),
    (["compare", "{d}/ok.csv", "--config", "{d}/badvalue.toml"], "batch_size: must be >= 1"),
    (["compare", "{d}/ok.csv", "--config", "{d}/section.toml"], "unknown section(s) training"),
    (["compare", "{d}/ok.csv", "--min-item-support", "100000"], "removed by the filters"),
    (["compare", "{d}/ok.csv", "--json", "{d}/no/such/dir/x.json"], "--json"),
    (["compare"], "DATA"),
    (["demo", "--users", "0"], "--users"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_one_line_exit_2(capsys, bad_files, argv, needle):
    code, out, err = run_cli(capsys, *[a.format(d=bad_files) for a in argv])
    assert code == 2
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hrnn-jax: error: ")
    assert needle in lines[0]


def test_help_exits_zero(capsys):
    assert cli.main(["--help"]) == 0
    assert "compare" in capsys.readouterr().out


def test_python_dash_m_help():
    proc = subprocess.run([sys.executable, "-m", "hrnn_jax", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "compare" in proc.stdout and "demo" in proc.stdout


def test_closed_stdout_ends_quietly(monkeypatch, capsys):
    """`hrnn-jax ... | head`: a closed stdout ends the run with status 141 and no error line."""

    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert cli.main(["demo", "--users", "60", "--items", "80", "--models", "pop", "--quiet"]) == 141
    assert "error" not in capsys.readouterr().err


def test_a_library_bug_is_not_reported_as_bad_input(tmp_path, csv_path):
    """Only input errors become one line with status 2: a ValueError raised by a bug inside the
    library shows its traceback and ends with status 1."""
    code = ("import sys\n"
            "from hrnn_jax import cli, compare\n"
            "def broken(*a, **k):\n"
            "    raise ValueError('a bug inside the library')\n"
            "compare.run_models = broken\n"
            f"sys.exit(cli.main(['compare', {str(csv_path)!r}, '--models', 'pop', '--quiet']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "a bug inside the library" in proc.stderr
    assert "hrnn-jax: error" not in proc.stderr
