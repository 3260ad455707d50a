"""bench_scale section ``devices``: session-GRU training events/s on 1, 2, 4 and 8 host devices
(``--mesh data=k``), in one child process started with 8 host CPU devices (the flag must be set
before JAX starts). On CPU the host devices share the machine's cores, so the figure shows what
the mesh costs there, not a speed-up: on a GPU or TPU pod each device is its own chip.

    python experiments/scale/devices.py --counts 1,2,4,8 --json FILE   # the child
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FLAG = "--xla_force_host_platform_device_count"


def add_arguments(parser) -> None:
    g = parser.add_argument_group("devices")
    g.add_argument("--devices-counts", default="1,2,4,8", help="device counts (data axis)")
    g.add_argument("--devices-users", type=int, default=1000, help="synthetic users")
    g.add_argument("--devices-epochs", type=int, default=2, help="epochs per count")


def run(args) -> dict:
    """Run the child with 8 host devices; print and return its figures."""
    counts = [int(c) for c in args.devices_counts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "devices.json"
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                                          f"{FLAG}={max(counts)}".strip()}
        subprocess.run([sys.executable, __file__, "--counts", args.devices_counts,
                        "--users", str(args.devices_users), "--epochs", str(args.devices_epochs),
                        "--json", str(out)], env=env, check=True)
        result = json.loads(out.read_text())
    for k, v in result["events_per_second"].items():
        print(f"devices {k}: {v:,.0f} training events/s  [{result['backend']}, "
              f"{result['devices']} devices]")
    return result


def _measure(counts: list[int], users: int, epochs: int) -> dict:
    import jax

    from hrnn_jax import data, models, training
    from hrnn_jax.config import DataConfig, ModelConfig, TrainConfig
    from hrnn_jax.data import synthetic

    prep = data.prepare(synthetic.generate(n_users=users, n_items=1000, seed=0), DataConfig())
    model = models.build_model("gru", prep.encoded.n_items, ModelConfig())
    config = TrainConfig(epochs=epochs, batch_size=48)  # lanes divisible by 8: no padding
    rates = {}
    for k in counts:
        fit = training.fit(model, prep.train, config, log=None,
                           mesh=None if k == 1 else f"data={k}")
        rates[str(k)] = fit.events_per_second
    return {"events_per_second": rates, "backend": jax.default_backend(),
            "devices": len(jax.devices()), "model": "gru", "batch_size": 48,
            "train_events": prep.train.height, "epochs": epochs}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="the devices section's child process")
    p.add_argument("--counts", default="1,2,4,8")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    Path(a.json).write_text(json.dumps(_measure([int(c) for c in a.counts.split(",")],
                                                a.users, a.epochs)))
