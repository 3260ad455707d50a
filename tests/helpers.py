"""Helpers that several test modules share (no test module imports another's helpers)."""
from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from hrnn_jax.models import lanes_for
from tests import reference as ref

# A small timed log for the HRNN-meta, HCRNN and attention tests
N_ITEMS, H = 9, 6


def timed_log(seed=0, n_users=7):
    """reference.random_log with times: 5-100 s within a session, 1 h to 3 days between."""
    frame = ref.random_log(seed, n_users, N_ITEMS)
    rng = np.random.default_rng(seed + 100)
    user, session = frame["user"].to_numpy(), frame["session"].to_numpy()
    t, times = 0.0, []
    for i in range(len(user)):
        if i and user[i] == user[i - 1]:
            t += (rng.uniform(5, 100) if session[i] == session[i - 1]
                  else rng.uniform(3600, 3 * 86400))
        else:
            t = rng.uniform(0, 1000)
        times.append(t)
    return frame.with_columns(time=pl.Series(times))


def perturbed(params):
    """Every parameter moved off its initial value (so no test passes on a special value)."""
    return jax.tree_util.tree_map(
        lambda a: a + 0.05 * jnp.sin(jnp.arange(a.size)).reshape(a.shape), params)


def run_lanes(model, params, frame, targets="user", **lane_kw):
    """Outputs by target row, from the model's scan over several windows of 3 lanes."""
    lanes = lanes_for(model, frame, batch_size=3, window=4, targets=targets, seed=1, **lane_kw)
    assert len(lanes) >= 3  # the carry crosses windows
    apply = jax.jit(lambda p, c, b: model.apply(p, c, b)[:2])
    carry, got = model.init_carry(3), {}
    for batch in lanes:
        carry, y = apply(params, carry, batch)
        for b, t in zip(*np.nonzero(batch["valid"])):
            got[int(batch["event"][b, t])] = np.asarray(y)[b, t]
    return got


# Gradient checks of the cells
EPS = 1e-6


def to64(tree):
    """Every leaf as a float64 NumPy array."""
    return jax.tree_util.tree_map(lambda a: np.array(a, np.float64), tree)


def central_differences(f, arrays, eps=EPS):
    """d f() / d arrays, each array perturbed in place (float64)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            keep = a[idx]
            a[idx] = keep + eps
            up = f()
            a[idx] = keep - eps
            down = f()
            a[idx] = keep
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def load_experiment(script: str):
    """``experiments/<script>.py`` as a freshly executed module (the scripts are no package)."""
    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"{script}_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def encoded_log(root: pathlib.Path, *flags: str) -> tuple[pathlib.Path, pathlib.Path]:
    """A 36-user synthetic Parquet log ``root/log.parquet`` and its encoding ``root/enc``
    (``hrnn-jax preprocess`` with ``--min-item-support 1`` and ``flags``)."""
    from hrnn_jax import cli
    from hrnn_jax.data import synthetic

    log, enc = root / "log.parquet", root / "enc"
    synthetic.generate(n_users=36, n_items=70, sessions_per_user=(3, 4), seed=3).write_parquet(log)
    assert cli.main(["preprocess", str(log), "--out", str(enc), "--min-item-support", "1",
                     *flags]) == 0
    return log, enc
