"""Progress display (live on a terminal, plain lines otherwise), --quiet, and --plot's figures."""
import io
import json
import re
import sys

import numpy as np
import pytest

from hrnn_jax import cli, compare, data, evaluation, models, plots, training
from hrnn_jax.config import DataConfig, ModelConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.progress import Reporter

DEMO = ["demo", "--users", "60", "--items", "80", "--models", "pop,gru", "--hidden", "8",
        "--batch-size", "8", "--epochs", "2"]


class TTY(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


class Clock:
    """A monotonic clock that advances only when told."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def run_cli(argv, out=None, err=None):
    """``cli.main``-like run with the given streams: (status, stdout, stderr)."""
    out = io.StringIO() if out is None else out
    err = io.StringIO() if err is None else err
    try:
        args = cli.build_parser().parse_args([str(a) for a in argv])
        code = cli.run(args, out, err)
    except cli.INPUT_ERRORS as exc:
        code = 2
        err.write(f"{cli.PROG}: error: {data.one_line(exc, limit=500)}\n")
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def prep():
    raw = data.read_interactions(synthetic.generate(n_users=60, n_items=80, seed=0))
    return data.prepare(raw, DataConfig(min_item_support=1))


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    """One tiny demo with --plot and --json; stderr is not a terminal."""
    base = tmp_path_factory.mktemp("plots")
    directory, out_json = base / "figures" / "new", base / "res.json"
    code, out, err = run_cli([*DEMO, "--plot", directory, "--json", out_json])
    return code, out, err, directory, json.loads(out_json.read_text())


# ------------------------------------------------------------------------------------------
# The reporter
# ------------------------------------------------------------------------------------------
def test_plain_lines_when_the_stream_is_not_a_terminal():
    stream, clock = io.StringIO(), Clock()
    rep = Reporter(stream, plain_after=10.0)
    rep._clock = clock
    rep._last = clock()
    assert not rep.terminal
    rep.log("== gru")
    for epoch in (1, 2):
        for done in range(1, 101):
            clock.now += 0.5  # 50 s an epoch: the 25/50/75% milestones are reported
            rep(f"gru epoch {epoch}/2", done, 100)
        rep.log(f"epoch={epoch} loss=0.5")
    clock.now += 1.0
    rep("gru evaluation", 1, 1)  # short: only its end line
    rep.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "== gru"
    epoch1 = [ln for ln in lines if ln.startswith("gru epoch 1/2: ")]
    assert len(epoch1) == 4  # 25, 50, 75 and 100%
    assert epoch1[-1] == "gru epoch 1/2: 100% in 50.0 s"
    assert epoch1[1].startswith("gru epoch 1/2: 50% (50/100), 25.0 s elapsed, ETA 25.0 s")
    assert "epoch=1 loss=0.5" in lines and "epoch=2 loss=0.5" in lines
    assert lines.index("epoch=1 loss=0.5") < lines.index("gru epoch 2/2: 100% in 50.0 s")
    assert lines[-1] == "gru evaluation: 100% in 1.0 s"


def test_plain_short_tasks_give_one_line_each():
    stream = io.StringIO()
    with Reporter(stream) as rep:
        for done in range(1, 6):
            rep("pop evaluation", done, 5)
        rep("gru evaluation seed 1", 1, 1)
        rep("gru evaluation seed 2", 1, 1)
    lines = stream.getvalue().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["pop evaluation", "gru evaluation seed 1",
                                                   "gru evaluation seed 2"]
    assert all(re.fullmatch(r".+: 100% in \d+\.\d s", ln) for ln in lines)


def test_terminal_mode_shows_bars_with_elapsed_and_eta():
    stream, clock = TTY(), Clock()
    rep = Reporter(stream)
    assert rep.terminal
    rep._clock = clock
    rep._last = clock()
    for done in range(1, 5):
        clock.now += 2.0
        rep("gru epoch 1/2", done, 4)
    rep.log("epoch=1 loss=0.5")
    clock.now += 1.0
    rep("gru epoch 2/2", 1, 4)
    rep.close()
    text = stream.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "\x1b[" in text  # a live display: cursor control codes
    assert re.search(r"gru epoch 1/2 .*4/4 elapsed 0:00:08 eta 0:00:00", plain)
    # epoch 2 after 1 s for 1 of 4 calls: 3 s to go
    assert re.search(r"gru epoch 2/2 .*1/4 elapsed 0:00:01 eta 0:00:0\d", plain)
    assert "epoch=1 loss=0.5\n" in plain


def test_disabled_reporter_writes_nothing():
    for stream in (io.StringIO(), TTY()):
        with Reporter(stream, enabled=False) as rep:
            rep.log("== gru")
            rep("gru epoch 1/1", 1, 1)
        assert stream.getvalue() == ""


# ------------------------------------------------------------------------------------------
# The callbacks of training and evaluation
# ------------------------------------------------------------------------------------------
def test_fit_reports_every_call_and_reaches_total_each_epoch(prep):
    calls = []
    model = models.build_model("gru", prep.encoded.n_items, ModelConfig(hidden=8))
    training.fit(model, prep.train, TrainConfig(epochs=2, batch_size=8, window=2),
                 log=None,
                 progress=lambda *a: calls.append(a))
    assert all(isinstance(d, int) and isinstance(t, int) for _, d, t in calls)
    for epoch in (1, 2):
        mine = [(d, t) for label, d, t in calls if label == f"epoch {epoch}/2"]
        total = mine[0][1]
        assert total >= 2
        assert mine == [(d, total) for d in range(1, total + 1)]
    assert {label for label, _, _ in calls} == {"epoch 1/2", "epoch 2/2"}


def test_rank_chunks_reports_each_chunk(prep):
    rows, calls = prep.rows, []
    n_items = prep.encoded.n_items
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(len(rows), n_items + 1)).astype(np.float32)
    ranks = evaluation.rank_chunks(lambda idx: scores[idx], rows, chunk=64,
                                   progress=lambda *a: calls.append(a))
    n = -(-len(rows) // 64)
    assert n >= 3
    assert calls == [("evaluation", i, n) for i in range(1, n + 1)]
    np.testing.assert_array_equal(ranks, evaluation.rank_chunks(lambda idx: scores[idx], rows,
                                                                chunk=64))


def test_run_models_labels_tasks_with_the_model(prep):
    from hrnn_jax.config import Config

    calls = []
    config = Config(model=ModelConfig(hidden=8), train=TrainConfig(epochs=1, batch_size=8,
                                                                   window=5, seeds=2))
    ranked = compare.run_models(prep, ["pop", "gru"], config, log=None,
                                progress=lambda *a: calls.append(a))
    labels = list(dict.fromkeys(label for label, _, _ in calls))
    assert labels == ["pop evaluation", "gru epoch 1/1", "gru evaluation seed 0",
                      "gru evaluation seed 1"]
    assert ranked["pop"].records == ()
    assert len(ranked["gru"].records) == 1 and len(ranked["gru"].records[0]["loss_per_seed"]) == 2


# ------------------------------------------------------------------------------------------
# The command line: progress, --quiet, --plot
# ------------------------------------------------------------------------------------------
def test_cli_plain_progress_keeps_the_epoch_lines(plotted):
    code, out, err, _, _ = plotted
    assert code == 0, err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    for needle in ("== pop", "pop evaluation: 100% in ", "== gru", "gru epoch 1/2: 100% in ",
                   "gru epoch 2/2: 100% in ", "gru evaluation: 100% in "):
        assert any(ln.startswith(needle) for ln in lines), needle
    epochs = [ln for ln in lines if ln.startswith("epoch=")]
    assert len(epochs) == 2
    assert all(re.fullmatch(r"epoch=\d+ loss=\S+ seconds=\S+ events_per_second=\S+", ln)
               for ln in epochs)
    assert lines[-1].startswith("total ")


def test_cli_quiet_prints_nothing_to_stderr(tmp_path):
    code, out, err = run_cli([*DEMO, "--epochs", "1", "--quiet", "--plot", tmp_path / "q"])
    assert code == 0
    assert err == ""
    assert out.splitlines()[1].startswith("model")
    assert (tmp_path / "q" / "training_loss.png").exists()


def test_cli_live_display_on_a_terminal():
    err = TTY()
    code, out, _ = run_cli([*DEMO, "--epochs", "1"], err=err)
    assert code == 0
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err.getvalue())
    assert re.search(r"gru epoch 1/1 .*(\d+)/\1 elapsed \d:\d\d:\d\d eta", plain)
    assert re.search(r"gru evaluation .*elapsed", plain)
    assert re.search(r"(^|\r)epoch=1 loss=\S+ seconds=", plain, re.M)  # above the bars


def test_plot_pngs_open_and_are_not_blank(plotted):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    code, out, err, directory, _ = plotted
    assert code == 0, err
    names = ["breakdown_history.png", "breakdown_position.png", "training_loss.png"]
    line = [ln for ln in out.splitlines() if ln.startswith("plots: ")]
    assert line == ["plots: " + ", ".join(str(directory / n) for n in names)]
    for name in names:
        img = matplotlib_image.imread(directory / name)
        assert img.ndim == 3 and img.shape[2] in (3, 4) and min(img.shape[:2]) > 100, name
        assert len(np.unique(img.reshape(-1, img.shape[2]), axis=0)) > 1, name


def test_breakdown_figure_has_one_bar_series_per_model(plotted):
    pytest.importorskip("matplotlib")
    results = plotted[4]["models"]
    for by, groups in (("history", ["short (<=6)", "long (>6)"]),
                       ("position", ["beginning", "middle", "end"])):
        d = plots.breakdown_data(results, by)
        assert d["k"] == 5
        assert d["groups"] == [g for g in groups if g in results["gru"]["breakdown"][by]]
        fig = plots.breakdown_figure(results, by)
        recall_ax, mrr_ax = fig.axes[:2]
        assert recall_ax.get_ylabel() == "Recall@5" and mrr_ax.get_ylabel() == "MRR@5"
        for ax, metric in ((recall_ax, "recall"), (mrr_ax, "mrr")):
            assert [c.get_label() for c in ax.containers] == ["pop", "gru"]
            for c, name in zip(ax.containers, ["pop", "gru"]):
                want = [results[name]["breakdown"][by][g][f"{metric}@5"] for g in d["groups"]]
                np.testing.assert_allclose([b.get_height() for b in c], want)
            ticks = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
            assert ticks == d["groups"]


def test_loss_curves_of_several_seeds(tmp_path):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    from matplotlib.collections import PolyCollection

    histories = {"gru": [{"epoch": e, "loss": 1.0 / e, "loss_per_seed": [0.9 / e, 1.1 / e]}
                         for e in (1, 2, 3)],
                 "hrnn-init": [{"epoch": e, "loss": 1.2 / e} for e in (1, 2, 3)]}
    fig = plots.loss_figure(histories)
    ax = fig.axes[0]
    assert [ln.get_label().split()[0] for ln in ax.get_lines()] == ["gru", "hrnn-init"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [1.0, 0.5, 1 / 3])
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # gru's seed band
    path = plots.loss_curves(histories, tmp_path / "d")
    assert path == str(tmp_path / "d" / "training_loss.png")
    assert matplotlib_image.imread(path).shape[2] in (3, 4)
    with pytest.raises(ValueError, match="no training records"):
        plots.loss_figure({"pop": ()})


@pytest.fixture
def no_matplotlib(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib(.x)` fails


def test_missing_matplotlib_is_one_line_exit_2_before_training(no_matplotlib, monkeypatch,
                                                                capsys, tmp_path):
    def must_not_run(*a, **kw):
        raise AssertionError("work started before --plot was checked")

    monkeypatch.setattr(cli, "load_prepared", must_not_run)
    monkeypatch.setattr(compare, "run_models", must_not_run)
    code = cli.main([*DEMO, "--plot", str(tmp_path / "p")])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err == "hrnn-jax: error: --plot needs matplotlib: pip install 'hrnn_jax[plots]'\n"
    with pytest.raises(plots.MissingDependency, match=re.escape("pip install 'hrnn_jax[plots]'")):
        plots.breakdown_figures({}, tmp_path)
    assert issubclass(plots.MissingDependency, ImportError)


def test_plot_path_that_is_a_file_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(compare, "run_models", lambda *a, **kw: pytest.fail("trained"))
    afile = tmp_path / "taken"
    afile.write_text("x")
    code = cli.main([*DEMO, "--plot", str(afile)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err == f"hrnn-jax: error: --plot: not a directory: {afile}\n"
