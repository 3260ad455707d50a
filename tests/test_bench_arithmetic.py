"""``experiments/bench_throughput.py``'s arithmetic column: ``dot_flops`` counts 2 m n k per
matrix product, a scan's body times its length, a conditional's costliest branch, and on the
benchmark's train steps it gives the ratio the matrix products alone imply (HRNN's user level on
its K closing slots against the session GRU)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from tests.helpers import load_experiment

bench = load_experiment("bench_throughput")


def _flops(fn, *args) -> float:
    return bench.dot_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def test_dot_flops_counts_products_scans_and_branches():
    a, b = jnp.ones((3, 4)), jnp.ones((4, 5))
    assert _flops(lambda x, y: x @ y, a, b) == 2 * 3 * 4 * 5
    assert _flops(lambda x, y: jnp.einsum("bij,bjk->bik", x, y), jnp.ones((2, 3, 4)),
                  jnp.ones((2, 4, 5))) == 2 * 2 * 3 * 4 * 5

    def scanned(x, y):
        return jax.lax.scan(lambda c, _: (c, (x @ y).sum()), 0.0, None, length=7)[1]
    assert _flops(scanned, a, b) == 7 * 2 * 3 * 4 * 5
    assert _flops(jax.jit(scanned), a, b) == 7 * 2 * 3 * 4 * 5  # through a nested jit

    def branch(x, y, p):
        return jax.lax.cond(p, lambda: (x @ y).sum(), lambda: (x @ y @ y.T).sum())
    assert _flops(branch, a, b, True) == 2 * 3 * 4 * 5 + 2 * 3 * 5 * 4
    # the gradient's products are counted too: forward plus two products backward
    assert _flops(jax.grad(lambda x, y: (x @ y).sum(), argnums=(0, 1)), a, b) == 3 * 2 * 3 * 4 * 5


def _window_flops(name, prep, cfg):
    """Dot FLOPs of one training window of model ``name``, and its closing slots K."""
    step, (batch,) = bench.step_and_windows(name, prep, cfg, 1)
    return bench.window_dot_flops(step, batch), batch.get("closing", jnp.zeros((0, 0))).shape[1]


def test_the_counts_are_the_hand_counts_of_the_benchmarks_models():
    """Per window of L steps, B lanes, H = U units: the session GRU's recurrent products (B H 3H)
    and TOP1's in-batch scores (B B H); HRNN Init adds, on its K closing slots, the user GRU's
    input and recurrent products (H 3U, U 3U) and Eq. 4's W_init (U H); HRNN All also W_c's
    U 2H (Eq. 5, on the r and z gates) and, once per window outside the scan, W_c c of the B
    sessions in progress (forward and the weight's gradient). Each product costs three times
    its forward FLOPs with the backward pass (two products)."""
    from hrnn_jax.config import Config, ModelConfig, TrainConfig
    B, L, H = 50, 20, 100
    prep = bench.prepared(150, 200)
    cfg = Config(model=ModelConfig(hidden=H), train=TrainConfig(batch_size=B, window=L,
                                                                loss="top1"))
    gru, _ = _window_flops("gru", prep, cfg)
    assert gru == 3 * 2 * L * (B * H * 3 * H + B * B * H)
    init, K = _window_flops("hrnn-init", prep, cfg)
    assert K > 0 and init - gru == 3 * 2 * L * K * (H * 3 * H + H * 3 * H + H * H)
    all_, K_all = _window_flops("hrnn-all", prep, cfg)
    assert K_all == K
    assert all_ - init == 3 * 2 * L * K * H * 2 * H + 2 * 2 * B * H * 2 * H


def test_the_benchmark_builds_models_that_need_the_users():
    """``--models`` takes every registered model: the user-based GRUs are built with the log's
    users, as ``compare`` builds them; their user input adds products (arith. above 1)."""
    from hrnn_jax.config import Config, ModelConfig, TrainConfig
    prep = bench.prepared(60, 80)
    cfg = Config(model=ModelConfig(hidden=16), train=TrainConfig(batch_size=8, window=4,
                                                                 loss="top1"))
    ratios = bench.interleaved_ratios(["gru", "user-gru-linear"], prep, cfg, windows=1,
                                      passes=1)
    assert set(ratios) == {"gru", "user-gru-linear"}
    assert ratios["gru"]["in_turns"] == ratios["gru"]["arith"] == 1.0
    assert ratios["user-gru-linear"]["arith"] > 1.0
    # the absolute count behind the ratio: the GRU's window (hand count above) per event
    step, (batch,) = bench.step_and_windows("gru", prep, cfg, 1)
    events = int((batch["target"] > 0).sum())
    assert ratios["gru"]["flops_per_event"] == bench.window_dot_flops(step, batch) / events
    assert ratios["gru"]["events_per_second"] > 0


def test_the_reference_product_reports_its_rate():
    """The rate the ``GFLOP/s`` column is read against: 2 m k n FLOPs over the fastest call."""
    assert bench.gemm_flops_per_second(64, 8, 128, calls=2) > 0
