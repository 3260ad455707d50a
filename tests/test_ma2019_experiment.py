"""experiments/ma2019_hrnn_meta.py prints and writes each of its figures beside the paper's (the
tables' code is stubbed here with figures of our own: what is checked is that every figure reaches
the output next to the paper's, with the catalogue and the timing ratio); a tiny real run is
marked slow."""
import json

import pytest

from hrnn_jax.papers import ma2019
from tests.helpers import load_experiment


def load():
    return load_experiment("ma2019_hrnn_meta")


def stub_tables(monkeypatch):
    """Figures no model would give (so a printed one is ours, not the paper's)."""
    t1 = {"rnn": 2.345, "hgru": 1.234, "hrnn_meta": 1.111}
    sec = {"rnn": 0.5, "hgru": 4.0, "hrnn_meta": 0.8}
    monkeypatch.setattr(ma2019, "table1", lambda *a, **k: {
        "models": {n: {"ppl": p, "seconds_per_epoch": sec[n], "n": 9, "catalogue": 54}
                   for n, p in t1.items()}, "data": {"evaluated": 9}})
    t2 = {"none": 97.5, "item": 51.25, "seq": 2.75, "all": 1.25}
    monkeypatch.setattr(ma2019, "table2", lambda *a, **k: {
        "models": {n: {"ppl": p, "n": 9, "catalogue": 102} for n, p in t2.items()},
        "data": {"evaluated": 9}})
    log = {"none": 301.5, "item": 222.25, "item_popularity": 111.5, "item_ids_markov": 15.75,
           "seq": 14.25, "all": 13.5}
    monkeypatch.setattr(ma2019, "table2_log", lambda prep, **k: {
        n: {"ppl": p, "n": 9, "catalogue": prep["encoded"].n_items} for n, p in log.items()})
    rmse = {"rolling_average": 0.777, "factorization": 0.999, "i_autorec": 0.725, "rnn": 1.011,
            "rnn_feedback": 0.655, "hrnn_feedback": 0.651}
    monkeypatch.setattr(ma2019, "table3", lambda prep, **k: {
        n: {"rmse": r, "n": 9, **({"l2": 100.0, "validation": {"100": 0.7}}
                                  if n == "i_autorec" else {})} for n, r in rmse.items()})
    return t1, t2, log, rmse


def test_every_figure_is_printed_and_written_beside_the_papers(tmp_path, capsys, monkeypatch):
    t1, t2, log, rmse = stub_tables(monkeypatch)
    out = tmp_path / "ma.json"
    assert load().main(["--rating-users", "40", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert {k: v["ppl"] for k, v in r["table1"].items()} == t1
    assert r["table2"] == t2 and r["table2_log"] == log and r["rmse"] == rmse
    # the paper's figures, from papers.ma2019, beside ours
    assert r["paper"]["table1"] == ma2019.TABLE1_PAPER
    assert r["paper"]["table2"] == ma2019.TABLE2_PAPER
    assert r["paper"]["table2_log"] == ma2019.TABLE2_LOG_PAPER
    assert r["paper"]["rmse"] == ma2019.TABLE3_PAPER and set(ma2019.TABLE3_PAPER) == set(rmse)
    for name, ppl in t2.items():
        assert f"{name:<10}{ppl:>9.2f}{ma2019.TABLE2_PAPER[name]:>7.0f}" in text
    for name, value in rmse.items():
        assert f"{name:<17}{value:>7.3f}{ma2019.TABLE3_PAPER[name]:>7.3f}" in text
    assert f"{'item_ids_markov':<17}{15.75:>10.2f}{'-':>7}" in text  # labelled, not the paper's
    assert f"{'item':<17}{222.25:>10.2f}{1342:>7.0f}" in text
    # Table 1's time per epoch: measured, as ratios, beside the paper's claims
    assert r["timing"] == {"hgru_over_hrnn_meta": 4.0 / 0.8, "rnn_over_hrnn_meta": 0.5 / 0.8}
    assert r["paper"]["timing"] == {"table1_hgru_over_hrnn": 25.5 / 0.3, "abstract_up_to": 10.0}
    assert "HGRU / HRNN-meta: 5.00x here; the paper: 85x (Table 1" in text
    assert f"{'hgru':<11}{1.234:>8.3f}{1:>7.0f}{4.0:>10.3f}{25.5:>7.1f}" in text
    # the perplexity's catalogue stated beside the paper's
    assert r["catalogue"]["paper"] == 131263 == ma2019.ML20M_PAPER["catalogue"]
    assert f"perplexity over the {r['catalogue']['table2_log']} training items" in text
    assert r["i_autorec"] == {"l2": 100.0, "validation": {"100": 0.7}}


def test_bad_arguments_are_one_line_errors(capsys):
    module = load()
    assert module.main(["--epochs", "1"]) == 2
    assert "--epochs >= 2" in capsys.readouterr().err
    assert module.main(["--data", "ratings.csv"]) == 2
    assert "--data and --items go together" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_real_run(tmp_path):
    out = tmp_path / "ma.json"
    assert load().main(["--users", "60", "--epochs", "2", "--sequences", "30", "--epochs2", "1",
                        "--rating-users", "60", "--epochs3", "1", "--hidden", "4",
                        "--hidden3", "4", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["rmse"]) == set(ma2019.TABLE3_PAPER)
    assert set(r["table2_log"]) >= set(ma2019.TABLE2_LOG_PAPER)
    assert r["timing"]["hgru_over_hrnn_meta"] > 0
    assert all(v["seconds_per_epoch"] > 0 for v in r["table1"].values())
