"""Scale-out benchmark section ``stream``: streaming preprocessing of a generated Parquet log
larger than the memory goal (``data.preprocess_parquet``, default protocol).

A log of ``--stream-events`` events (default 100M: 2.4 GB decoded, Int64 user and item ids and
Float64 times) is generated chunk by chunk into Parquet files (never held whole): about
``--stream-users`` users with log-normal activity, ``--stream-items`` items with Zipf(1)
popularity, and per user times that increase by seconds to minutes within a session and by
more than an hour plus an exponential wait (mean 1.5 days) between sessions; rows are shuffled
within each file. The preprocessing then runs in a child process, whose own peak resident set
(VmHWM on Linux, else ``ru_maxrss``) and wall time are reported (goal: at most 2 GiB for 100M
events).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

_CHUNK_USERS = 50_000  # users per generated file
_GIB = 1024 ** 3

# The child's peak: VmHWM of /proc/self/status (its own address space, Linux), else ru_maxrss
# (which Linux carries over from the parent across exec: a parent that peaked higher would show).
_CHILD = """
import json, resource, sys, time
def peak_kib():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from hrnn_jax.config import DataConfig
from hrnn_jax.data.stream import preprocess_parquet
src, out, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
start_rss = peak_kib()
t = time.perf_counter()
info = preprocess_parquet(src, out, DataConfig(), chunk_events=chunk)
print(json.dumps({"seconds": time.perf_counter() - t, "import_rss_kib": start_rss,
                  "maxrss_kib": peak_kib(), "info": info}))
"""


def add_arguments(parser) -> None:
    """The ``--stream-*`` options."""
    g = parser.add_argument_group("stream: streaming preprocessing of a generated Parquet log")
    g.add_argument("--stream-events", type=int, default=100_000_000, help="events of the log")
    g.add_argument("--stream-users", type=int, default=1_000_000, help="users of the log")
    g.add_argument("--stream-items", type=int, default=100_000, help="items of the log")
    g.add_argument("--stream-chunk", type=int, default=2_000_000,
                   help="events per user-range partition of the preprocessing (memory bound)")
    g.add_argument("--stream-seed", type=int, default=0, help="seed of the generated log")
    g.add_argument("--stream-dir", default=None,
                   help="scratch directory, which keeps the log: one generated there "
                        "earlier with the same sizes and seed is reused (default: a new "
                        "temporary directory, removed after)")
    g.add_argument("--stream-keep", action="store_true",
                   help="keep the output in --stream-dir too")


def _user_chunk(rng, first: int, n_users: int, n_events: int, popularity) -> pl.DataFrame:
    """``n_events`` events of users ``first .. first + n_users - 1`` (shuffled rows)."""
    activity = rng.lognormal(0.0, 1.0, n_users)
    per_user = rng.multinomial(n_events, activity / activity.sum())
    user = np.repeat(np.arange(first, first + n_users, dtype=np.int64), per_user)
    cdf, perm = popularity
    item = perm[np.searchsorted(cdf, rng.random(n_events))] + 1
    new_session = rng.random(n_events) < 0.12
    gap = np.where(new_session, 3600.0 + rng.exponential(1.5 * 86400.0, n_events),
                   np.clip(rng.lognormal(np.log(45.0), 1.0, n_events), 2.0, 1500.0))
    starts = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    starts = starts[per_user > 0]
    gap[starts] = rng.uniform(1.5e9, 1.5e9 + 7 * 86400.0, len(starts))
    total = np.cumsum(gap)
    offset = np.repeat(total[starts] - gap[starts], per_user[per_user > 0])
    order = rng.permutation(n_events)
    return pl.DataFrame({"user": user[order], "item": item[order],
                         "time": np.round(total - offset, 3)[order]})


def generate_log(directory: Path, events: int, users: int, items: int, seed: int) -> float:
    """Write the log as ``directory/part-NNNNN.parquet`` (``_CHUNK_USERS`` users each) unless a
    log of the same sizes and seed is there; returns the seconds spent (0 when reused)."""
    meta = {"events": events, "users": users, "items": items, "seed": seed}
    stamp = directory / "_meta.json"
    if stamp.exists() and json.loads(stamp.read_text()) == meta:
        return 0.0
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items + 1)
    popularity = (np.cumsum(weights) / weights.sum(), rng.permutation(items).astype(np.int64))
    n_chunks = -(-users // _CHUNK_USERS)
    for k in range(n_chunks):
        first = k * _CHUNK_USERS
        n_users = min(_CHUNK_USERS, users - first)
        n_events = events * (k + 1) // n_chunks - events * k // n_chunks
        _user_chunk(rng, first, n_users, n_events, popularity).write_parquet(
            directory / f"part-{k:05d}.parquet")
    stamp.write_text(json.dumps(meta))
    return time.perf_counter() - t


def _preprocess(log: Path, out: Path, chunk: int) -> dict:
    """Run ``preprocess_parquet`` in a child process; its figures (seconds, info, and its own
    peak RSS in KiB, which the child reads from its VmHWM)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(log), str(out), str(chunk)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"streaming preprocessing failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_seconds": wall}


def run(args) -> dict:
    """Generate the log, preprocess it streaming in a child process, print and return
    {"events", "seconds", "peak_rss_gib", "backend", "devices", ...}."""
    import jax

    root = Path(args.stream_dir) if args.stream_dir else Path(tempfile.mkdtemp(prefix="stream-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        gen = generate_log(root / "log", args.stream_events, args.stream_users,
                           args.stream_items, args.stream_seed)
        fig = _preprocess(root / "log", root / "out", args.stream_chunk)
        sizes = sum(p.stat().st_size for p in (root / "log").glob("*.parquet"))
    finally:  # a --stream-dir keeps its log (reused next time), and the output with --keep
        if not args.stream_dir:
            shutil.rmtree(root, ignore_errors=True)
        elif not args.stream_keep:
            shutil.rmtree(root / "out", ignore_errors=True)
    info = fig["info"]
    out = {"events": args.stream_events, "seconds": round(fig["seconds"], 2),
           "peak_rss_gib": round(fig["maxrss_kib"] * 1024 / _GIB, 3),
           "backend": jax.default_backend(), "devices": jax.device_count(),
           "import_rss_gib": round(fig["import_rss_kib"] * 1024 / _GIB, 3),
           "wall_seconds": round(fig["wall_seconds"], 2), "generate_seconds": round(gen, 2),
           "log_parquet_gib": round(sizes / _GIB, 3), "decoded_log_gib": round(
               args.stream_events * 24 / _GIB, 3), "chunk_events": args.stream_chunk,
           "cpus": os.cpu_count(), "kept_events": info["events"],
           "train_events": info["train_events"], "test_events": info["test_events"],
           "dropped": info["dropped"]}
    tag = f"[{out['backend']} x{out['devices']}]"
    print(f"{tag} stream: {out['events']:,} events preprocessed in {out['seconds']} s, peak RSS "
          f"{out['peak_rss_gib']} GiB (after imports {out['import_rss_gib']} GiB; goal <= 2 GiB"
          f"; decoded log {out['decoded_log_gib']} GiB)", flush=True)
    return out
