"""Full-catalogue evaluation at a million items: item scores per second and peak memory.

A random output table ``[N+1, H]`` (400 MB at N = 10^6, H = 100) and random states for a few
thousand rows are ranked by ``predict.rank_scores`` chunk by chunk (``evaluation.rank_chunks``),
each chunk's ranks over the catalogue in item blocks (``evaluation.metrics.rank_in_blocks``), as
``predict.model_ranks`` does after a model's forward pass. The measurement runs in a child
process (a fresh interpreter), so that ``peak_rss_gib`` (the child's VmHWM, Linux; not
``ru_maxrss``, which Linux carries over from the parent) is the evaluation's own peak: the
table plus the bounded scratch, never a ``[rows, N+1]`` matrix.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def add_arguments(parser) -> None:
    g = parser.add_argument_group("eval_1m")
    g.add_argument("--eval-1m-items", type=int, default=1_000_000, help="catalogue size N")
    g.add_argument("--eval-1m-hidden", type=int, default=100, help="state width H")
    g.add_argument("--eval-1m-rows", type=int, default=4096, help="rows ranked")
    g.add_argument("--eval-1m-chunk", type=int, default=1024, help="rows per jitted call")
    g.add_argument("--eval-1m-block", type=int, default=None,
                   help="items per block (default: evaluation.metrics.ITEM_BLOCK)")


def _status_gib(key: str) -> float | None:
    """A ``/proc/self/status`` memory line in GiB (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def _reset_peak() -> float | None:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5); returns the
    resident memory now, the table and the runtime (GiB)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_gib("VmRSS")


def _peak_since_reset() -> float | None:
    return _status_gib("VmHWM")


def _child_peak(setup: float | None, ranking: float | None) -> float:
    """The child's own peak (VmHWM before and after the reset; Linux), else its ``ru_maxrss``,
    which Linux carries over from the parent across exec."""
    if setup is None or ranking is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return max(setup, ranking)


def _measure(items: int, hidden: int, rows: int, chunk: int, block: int | None) -> dict:
    """In the child: build the table, compile on the first chunk, time the full ranking."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hrnn_jax import cpu, data, evaluation
    from hrnn_jax.evaluation import predict

    cpu.keep_freed_memory()
    block = block or evaluation.metrics.ITEM_BLOCK
    k_table, k_y, k_t = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"item_out": jax.random.normal(k_table, (items + 1, hidden), jnp.float32),
              "item_bias": jnp.zeros(items + 1, jnp.float32)}
    y = jax.random.normal(k_y, (rows, hidden), jnp.float32)
    target = np.asarray(jax.random.randint(k_t, (rows,), 1, items + 1), np.int32)
    ones = np.ones(rows, np.int32)
    fake = data.EvalRows(event=np.arange(rows), user=0 * ones, item=ones, target=target,
                         history_sessions=ones, position=ones, session_length=2 * ones)

    def rank(idx, t, seen):
        return predict.rank_scores(params, y[idx], t, seen, "optimistic", item_block=block)

    predict.rank_scores(params, y[:chunk], jnp.asarray(target[:chunk]), None, "optimistic",
                        item_block=block).block_until_ready()  # compile
    setup_peak = _status_gib("VmHWM")  # the table and the compiled call, before the ranking
    before = _reset_peak()
    start = time.perf_counter()
    ranks = evaluation.rank_chunks(None, fake, chunk=chunk, rank_fn=rank)
    seconds = time.perf_counter() - start
    if not (ranks.min() >= 1 and ranks.max() <= items):
        raise RuntimeError("ranks out of range")
    return {"scores_per_second": rows * items / seconds, "seconds": seconds,
            "peak_rss_gib": _child_peak(setup_peak, _peak_since_reset()),
            "rss_before_ranking_gib": before, "ranking_peak_rss_gib": _peak_since_reset(),
            "table_gib": (items + 1) * hidden * 4 / 2**30,
            "scratch_gib_per_block": chunk * block * 4 / 2**30,
            "backend": jax.default_backend(), "device_count": jax.device_count(),
            "items": items, "hidden": hidden, "rows": rows, "chunk": chunk, "block": block}


def run(args) -> dict:
    call = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r}); "
            "from scale.eval_1m import _measure; "
            f"print(json.dumps(_measure({args.eval_1m_items}, {args.eval_1m_hidden}, "
            f"{args.eval_1m_rows}, {args.eval_1m_chunk}, {args.eval_1m_block})))")
    child = subprocess.run([sys.executable, "-c", call], capture_output=True, text=True)
    if child.returncode:
        raise RuntimeError(f"eval_1m: the measuring process failed:\n{child.stderr[-3000:]}")
    out = json.loads(child.stdout.strip().splitlines()[-1])
    out["peak_rss_measured"] = ("child process: peak_rss_gib its VmHWM over the whole run "
                                "(table generation included); ranking_peak_rss_gib VmHWM after "
                                "a clear_refs reset, once the table was made and compiled")
    tag = f"[{out['backend']}, {out['device_count']} device(s)]"
    print(f"eval_1m: {out['items']} items, {out['rows']} rows: "
          f"{out['scores_per_second']:.3g} item scores/s, peak RSS {out['peak_rss_gib']:.2f} GiB "
          f"(table {out['table_gib']:.2f} GiB; during the ranking "
          f"{out['ranking_peak_rss_gib'] or float('nan'):.2f} GiB, "
          f"{out['rss_before_ranking_gib'] or float('nan'):.2f} before it) {tag}", flush=True)
    return out
