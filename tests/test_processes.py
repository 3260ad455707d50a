"""Many processes (``hrnn_jax.parallel.distributed``) through the command line: two local
processes with 4 host devices each give the table and metrics of one process with 8, only
process 0 prints and writes; the mesh and process flags fail as one line. Two processes that
each read only their share of an encoded log (``data.read_share``,
``experiments/share_training.py``) train the parameters of one process that reads it all, and
gather the ranks of every test row (``evaluation.shares``); through the command line
(``hrnn-jax compare DIR`` of an encoded log) they print the table of one process with 8 devices."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from hrnn_jax import checkpoint, cli, data, models, training
from hrnn_jax.config import Config, DataConfig, ModelConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import predict, shares

RUN = ["--models", "hrnn-init", "--hidden", "8", "--batch-size", "6", "--epochs", "1",
       "--quiet", "--mesh", "data=4,items=2"]
FLAG = "--xla_force_host_platform_device_count"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("processes") / "log.csv"
    synthetic.generate(n_users=36, n_items=70, sessions_per_user=(3, 4), seed=3).write_csv(path)
    return path


def _table(text: str, names=("hrnn-init",)) -> list[str]:
    """The metric rows of a compare table's models ``names`` (the timing columns dropped)."""
    return [" ".join(line.split()[:9]) for line in text.splitlines()
            if line.split() and line.split()[0] in names]


def _two_processes(argv, tmp_path, *, json_out: bool = True) -> list[tuple[str, str]]:
    """``hrnn-jax ARGV --json tmp_path/p{i}.json`` (without ``--json`` unless ``json_out``) in
    two local processes of 4 host devices each: their (stdout, stderr), both exited 0 and only
    process 0 printed and wrote."""
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": f"{FLAG}=4"}
    written = ["--json", str(tmp_path / "p{i}.json")] if json_out else []
    procs = [subprocess.Popen(
        [sys.executable, "-m", "hrnn_jax", *argv, *[w.format(i=i) for w in written],
         "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert outs[1][0] == "" and not (tmp_path / "p1.json").exists()  # only process 0 speaks
    return outs


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")
def test_two_processes_give_the_metrics_of_one_with_eight_devices(log_csv, tmp_path, capsys):
    ref = tmp_path / "one.json"
    assert cli.main(["compare", str(log_csv), *RUN, "--json", str(ref)]) == 0
    one_table = _table(capsys.readouterr().out)
    outs = _two_processes(["compare", str(log_csv), *RUN], tmp_path)
    assert _table(outs[0][0]) == one_table and len(one_table) == 1
    one, two = json.loads(ref.read_text()), json.loads((tmp_path / "p0.json").read_text())
    for k, v in one["models"]["hrnn-init"].items():
        if "@" in k:
            assert two["models"]["hrnn-init"][k] == pytest.approx(v, abs=1e-4), k


@pytest.mark.parametrize("flags, message", [
    (["--mesh", "data=64"], "--mesh: mesh {'data': 64} needs 64 devices"),
    (["--mesh", "rows=2"], "unknown axis 'rows'"),
    (["--coordinator", "localhost:1"], "give --num-processes, --process-id as well"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in 0..1"),
])
def test_mesh_and_process_flags_fail_as_one_line(flags, message, capsys):
    assert cli.main(["demo", "--epochs", "1", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")
def test_evaluate_takes_a_mesh_and_gives_the_metrics_of_one_device(log_csv, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert cli.main(["train", str(log_csv), "--model", "gru", "--out", str(ckpt), "--hidden",
                     "8", "--batch-size", "6", "--epochs", "1", "--quiet"]) == 0
    tables = []
    for mesh in ([], ["--mesh", "data=2,items=4"], ["--mesh", "none"]):
        assert cli.main(["evaluate", str(ckpt), str(log_csv), *mesh]) == 0
        tables.append([line for line in capsys.readouterr().out.splitlines()
                       if line.startswith("gru")])
    assert tables[0] == tables[1] == tables[2] and len(tables[0]) == 1
    assert cli.main(["evaluate", str(ckpt), str(log_csv), "--mesh", "data=64"]) == 2
    assert "--mesh: mesh {'data': 64} needs 64 devices" in capsys.readouterr().err
    trained = checkpoint.load(ckpt)  # a saved mesh this process cannot make: None is one device
    values = trained.config.to_dict()
    values["train"]["mesh"] = "data=64"
    away = dataclasses.replace(trained, config=Config.from_dict(values))
    assert away.evaluate(log_csv, mesh=None) == trained.evaluate(log_csv)
    with pytest.raises(ValueError, match="needs 64 devices"):
        away.evaluate(log_csv)


SHARE = ["--model", "hrnn-all", "--hidden", "8", "--batch-size", "8", "--window", "4",
         "--epochs", "1", "--lane-groups", "2", "--mesh", "data=8"]


@pytest.mark.slow  # about 30 s: two fresh processes compiling
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")
def test_two_processes_reading_their_shares_train_as_one_reading_all(tmp_path):
    synthetic.generate(n_users=30, n_items=40, sessions_per_user=(2, 3), seed=8).write_parquet(
        tmp_path / "log.parquet")
    enc = tmp_path / "enc"
    data.preprocess_parquet(tmp_path / "log.parquet", enc, DataConfig(min_item_support=1))
    share = data.read_share(enc, 2)
    model = models.build_model("hrnn-all", share.n_items, ModelConfig(hidden=8))
    one = training.fit(model, share, TrainConfig(batch_size=8, window=4, epochs=1,
                                                 lane_groups=2), mesh="data=8", log=None)
    port, script = _free_port(), os.path.join("experiments", "share_training.py")
    env = {**os.environ, "XLA_FLAGS": f"{FLAG}=4"}
    procs = [subprocess.Popen(
        [sys.executable, script, str(enc), *SHARE, "--out", str(tmp_path / f"p{i}.npz"),
         "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    read = [int(o[0].split("lane groups")[1].split(", ")[1].split(" of ")[0]) for o in outs]
    assert 0 < min(read) and sum(read) == share.frame.height  # each read only its own users
    assert not (tmp_path / "p1.npz").exists()
    two = np.load(tmp_path / "p0.npz")
    leaves = jax.tree_util.tree_leaves(one.params)
    assert len(two.files) == len(leaves) + 1
    for i, a in enumerate(leaves):  # float32 reduction order across processes only
        np.testing.assert_allclose(two[f"param_{i}"], a, atol=2e-5, rtol=0)
    # the gathered ranks are those of one process ranking every row with the same parameters
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(one.params),
                                          [two[f"param_{i}"] for i in range(len(leaves))])
    stream, rows = shares.share_rows(enc, share)
    np.testing.assert_array_equal(two["ranks"], predict.model_ranks(model, params, stream, rows))
    assert "recall@5=" in outs[0][0]


@pytest.mark.slow  # about 30 s: two fresh processes compiling
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")
def test_two_processes_compare_an_encoded_log_as_one_with_eight_devices(log_csv, tmp_path,
                                                                         capsys):
    log = tmp_path / "log.parquet"
    data.read_interactions(log_csv).select("user", "item", "time").write_parquet(log)
    enc = tmp_path / "enc"
    assert cli.main(["preprocess", str(log), "--out", str(enc), "--min-item-support", "1"]) == 0
    run = ["--models", "pop,ppop,hrnn-init", "--hidden", "8", "--batch-size", "8", "--epochs",
           "1", "--quiet", "--mesh", "data=8", "--lane-groups", "2"]
    assert cli.main(["compare", str(enc), *run, "--json", str(tmp_path / "one.json")]) == 0
    one_table = _table(capsys.readouterr().out, ("pop", "ppop", "hrnn-init"))
    outs = _two_processes(["compare", str(enc), *run], tmp_path)
    assert _table(outs[0][0], ("pop", "ppop", "hrnn-init")) == one_table and len(one_table) == 3
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "p0"))
    for name in ("pop", "ppop", "hrnn-init"):
        for k, v in one["models"][name].items():
            if "@" in k:
                assert two["models"][name][k] == pytest.approx(v, abs=1e-4), (name, k)


@pytest.mark.slow  # about 30 s: two fresh processes compiling
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 host devices")
def test_two_processes_train_a_checkpoint_of_an_encoded_log_as_one_with_eight_devices(
        log_csv, tmp_path, capsys):
    """``train DIR`` in two processes: only process 0 saves; the checkpoint holds the parameters
    and users' states of one process with 8 devices, and evaluates to its metrics."""
    log = tmp_path / "log.parquet"
    data.read_interactions(log_csv).select("user", "item", "time").write_parquet(log)
    enc, ck = tmp_path / "enc", tmp_path / "ck"
    assert cli.main(["preprocess", str(log), "--out", str(enc), "--min-item-support", "1"]) == 0
    outs = _two_processes(["train", str(enc), "--model", "hrnn-init", "--out", str(ck),
                           "--hidden", "8", "--batch-size", "8", "--epochs", "1", "--quiet",
                           "--mesh", "data=8", "--lane-groups", "2"], tmp_path, json_out=False)
    assert f"saved {ck}" in outs[0][0]
    saved = checkpoint.load(ck)
    config = Config(model=ModelConfig(hidden=8),
                    train=TrainConfig(batch_size=8, epochs=1, mesh="data=8", lane_groups=2))
    one = checkpoint.train(str(enc), "hrnn-init", config, log=None)
    for a, b in ((saved.params, one.params), (saved.users, one.users)):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                       atol=2e-5)
    got, want = saved.evaluate(enc), one.evaluate(enc)
    assert got == pytest.approx(want, abs=1e-4)
