"""The demo's claim on the built-in synthetic data: HRNN Init > session GRU > POP (slow)."""
import json

import pytest

from hrnn_jax import cli


@pytest.mark.slow
def test_demo_hrnn_init_beats_gru_beats_pop(tmp_path):
    out = tmp_path / "demo.json"
    assert cli.main(["demo", "--models", "pop,gru,hrnn-init", "--quiet", "--json", str(out)]) == 0
    models = json.loads(out.read_text())["models"]
    for metric in ("recall@5", "mrr@5"):
        assert models["hrnn-init"][metric] > models["gru"][metric] > models["pop"][metric]
