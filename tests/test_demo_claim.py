"""What the models must show on synthetic data (slow): the demo's claim HRNN Init > session GRU >
POP, and the fidelity bars of HRNN All on the demo and on long sessions."""
import json
import sys

import pytest

from hrnn_jax import cli, compare
from hrnn_jax.config import Config, TrainConfig

NEURAL = ("gru", "concat", "hrnn-init", "hrnn-all")


def check_bars(models: dict) -> None:
    """HRNN All >= 0.9x the session GRU, HRNN Init >= the GRU, every neural model > 2x POP, on
    Recall@5 and MRR@5."""
    for metric in ("recall@5", "mrr@5"):
        gru, pop = models["gru"][metric], models["pop"][metric]
        assert models["hrnn-all"][metric] >= 0.9 * gru, metric
        assert models["hrnn-init"][metric] >= gru, metric
        for name in NEURAL:
            if name in models:
                assert models[name][metric] > 2 * pop, (name, metric)


@pytest.mark.slow
def test_demo_claim_and_fidelity_bars(tmp_path):
    out = tmp_path / "demo.json"
    assert cli.main(["demo", "--quiet", "--json", str(out)]) == 0
    models = json.loads(out.read_text())["models"]
    for metric in ("recall@5", "mrr@5"):
        assert models["hrnn-init"][metric] > models["gru"][metric] > models["pop"][metric]
    check_bars(models)


@pytest.mark.slow
def test_hrnn_all_holds_on_long_sessions():
    sys.path.insert(0, "experiments")
    from hrnn_all_ablation import prepared

    prep = prepared()
    config = Config(train=TrainConfig(epochs=10, seed=1))
    check_bars(compare.compare(prep, ["pop", "gru", "hrnn-init", "hrnn-all"], config, log=None))
