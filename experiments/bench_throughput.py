"""Training and evaluation throughput of the Quadrana et al. models, measured in one run.

    python experiments/bench_throughput.py [--json PATH] [--users 1000] [--epochs 2]
        [--default-malloc] [--sections models,seeds,catalogue,eval]
        [--precision default|high|highest] [--deterministic]
        [--models gru,concat,hrnn-init,hrnn-all] [--gru-reset after|before|both]
        [--loss top1|bpr|ce|full-ce|bpr-max|top1-max]

Prints, at the paper's sizes (100 hidden units, batch 50, window 20, TOP1 with in-batch negatives;
``--loss`` another loss, e.g. ``ce``, GRU4Rec's cross-entropy over the in-batch candidates, or
``full-ce``, a softmax over the whole catalogue):

* per model (session GRU, RNN Concat, HRNN Init, HRNN All): training events/s (``training.fit``,
  first call with the compilation left out), the train step's memory (XLA's own accounting of
  arguments + outputs + temporaries) and ``ratio_to_gru``: cost per event relative to the session
  GRU (> 1 is slower; ``in turns``: the same ratio measured by :func:`interleaved_ratios`,
  which a noisy machine disturbs less; ``arith.``: the ratio of the matrix-product FLOPs per
  event of the same train steps, counted by :func:`dot_flops`, what the products alone imply
  (elementwise work, the loss's and the optimiser's included, left out); with ``--models``,
  relative to the first model named, e.g.
  ``--models gru,hcrnn-3-bi`` for HCRNN-3+Bi beside GRU4Rec). ``--gru-reset`` sets where every
  GRU's reset gate acts (``ModelConfig.gru_reset``); ``both`` measures each model in both forms
  in the same run (rows ``NAME``, the default form, and ``NAME/after``), the ratios against the
  first model's default form. ``MFLOP/ev`` is the products' FLOPs per training event and
  ``GFLOP/s`` their rate in the timed turns, printed beside the rate of one large float32 product
  on the same device: how far the step is from being bound by its arithmetic;
* the wall time of one train step for 1 seed and for 8 seeds in one ``jax.vmap``-ed step, with
  the step's scratch memory and page faults per call;
* session-GRU training events/s at 1k, 10k and 100k items (row-sparse table updates);
* full-catalogue evaluation speed at 100k items: item scores per second, ranking included, by
  item blocks and, in the same run, with the whole score matrix at once (the earlier path).

Every figure is printed with the backend, the matmul precision and whether XLA's deterministic
GPU kernels were asked for (``hrnn_jax.precision``); ``--precision`` and ``--deterministic`` set
them.

It first calls ``hrnn_jax.cpu.keep_freed_memory()`` (glibc keeps XLA's large scratch buffers mapped
between calls; see that module), unless ``--default-malloc`` is given.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import time
import typing

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from hrnn_jax import compare, cpu, data, evaluation, models, precision, training
from hrnn_jax.config import Config, DataConfig, ModelConfig, TrainConfig
from hrnn_jax.data import synthetic
from hrnn_jax.evaluation import predict
from hrnn_jax.training import losses, optim

MODELS = ("gru", "concat", "hrnn-init", "hrnn-all")
SECTIONS = ("models", "seeds", "catalogue", "eval")


def setting() -> dict:
    """Backend, matmul precision and deterministic flag: printed beside every figure."""
    return {"backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
            "precision": precision.current_matmul_precision(),
            "deterministic": precision.is_deterministic()}


def tag(s: dict) -> str:
    return (f"  [{s['backend']}, precision={s['precision']}, "
            f"deterministic={'on' if s['deterministic'] else 'off'}]")


def prepared(users: int, items: int, seed: int = 0):
    raw = data.read_interactions(synthetic.generate(n_users=users, n_items=items, seed=seed))
    return data.prepare(raw, DataConfig(min_item_support=1))


def fit_speed(name, prep, cfg, epochs):
    model = compare.model_for(name, prep, cfg)
    train_cfg = dataclasses.replace(cfg.train, epochs=epochs, seed=0)
    result = training.fit(model, prep.train, train_cfg,
                          targets=models.lane_targets(model, prep.protocol), log=None)
    return model, result.events_per_second


def step_memory_mb(model, prep, cfg) -> float:
    t = cfg.train
    tx = optim.make_optimizer("adagrad", t.learning_rate)
    step = training.make_train_step(model, tx, row_updates="sparse")
    state = step.init_state(jax.random.PRNGKey(0), t.batch_size)
    batch = models.lanes_for(model, prep.train, batch_size=t.batch_size,
                             window=t.window).window(0)
    mem = jax.jit(step, donate_argnums=0).lower(state, batch,
                                                jax.random.PRNGKey(0)).compile().memory_analysis()
    if mem is None:
        return float("nan")
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
             - mem.alias_size_in_bytes)
    return total / 2**20


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def seeds_timing(prep, cfg, n_calls=20, passes=5):
    """Seconds per train step of the session GRU: one seed, and 8 seeds in one vmapped step.

    The two alternate, pass after pass (``n_calls`` windows each), and each keeps its best pass, so
    that a slow spell of this noisy machine does not fall on one of them only. Also the page faults
    per call (see ``hrnn_jax.cpu``).
    """
    model = models.build_model("gru", prep.encoded.n_items, cfg.model)
    t = cfg.train
    tx = optim.make_optimizer("adagrad", t.learning_rate)
    lanes = models.lanes_for(model, prep.train, batch_size=t.batch_size, window=t.window, seed=0)
    batches = [lanes.window(w) for w in range(min(n_calls, len(lanes)))]
    step = training.make_train_step(model, tx, row_updates="sparse")
    runs = {}
    for label, n_seeds in (("one", 1), ("eight", 8)):
        keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
        state = jax.vmap(lambda r: step.init_state(r, t.batch_size))(keys)
        fn = jax.jit(jax.vmap(step, in_axes=(0, None, 0)), donate_argnums=0)
        rngs = [jax.random.split(jax.random.PRNGKey(i), n_seeds) for i in range(len(batches))]
        scratch = fn.lower(state, batches[0], rngs[0]).compile().memory_analysis()
        state, _ = fn(state, batches[0], rngs[0])  # compile
        jax.block_until_ready(state)
        runs[label] = {"fn": fn, "state": state, "rngs": rngs, "times": [], "faults": 0,
                       "scratch_mb": (scratch.temp_size_in_bytes / 2**20 if scratch
                                      else float("nan"))}
    for _ in range(passes):
        for r in runs.values():
            state, faults = r["state"], _minor_faults()
            start = time.perf_counter()
            for b, rng in zip(batches, r["rngs"]):
                state, _ = r["fn"](state, b, rng)
            jax.block_until_ready(state)
            r["times"].append((time.perf_counter() - start) / len(batches))
            r["faults"] += _minor_faults() - faults
            r["state"] = state
    out = {f"{label}_seconds": min(r["times"]) for label, r in runs.items()}
    out["ratio"] = out["eight_seconds"] / out["one_seconds"]
    out["faults_per_call"] = {label: r["faults"] / (passes * len(batches))
                              for label, r in runs.items()}
    out["scratch_mb"] = {label: r["scratch_mb"] for label, r in runs.items()}
    return out


def eval_speed(n_items=100_000, hidden=100, rows=4096, chunk=1024, item_block=None,
               passes=3) -> float:
    """Item scores per second of the full-catalogue rank (``predict.model_ranks``'s scoring),
    the best of ``passes`` timed passes. ``item_block``: items per block of the blocked rank
    (``evaluation.metrics.rank_in_blocks``; default ``ITEM_BLOCK``); ``n_items + 1`` or more
    scores the whole ``[chunk, N+1]`` matrix at once (the path before item blocks)."""
    rng = np.random.default_rng(0)
    params = {"item_out": jnp.asarray(rng.normal(size=(n_items + 1, hidden)), jnp.float32),
              "item_bias": jnp.zeros(n_items + 1, jnp.float32)}
    y = jnp.asarray(rng.normal(size=(rows, hidden)), jnp.float32)
    target = rng.integers(1, n_items + 1, rows).astype(np.int32)
    fake = data.EvalRows(
        event=np.arange(rows), user=np.zeros(rows, np.int32), item=np.ones(rows, np.int32),
        target=target, history_sessions=np.ones(rows, np.int32),
        position=np.ones(rows, np.int32), session_length=np.full(rows, 2, np.int32))
    block = item_block or evaluation.metrics.ITEM_BLOCK

    def rank(idx, t, seen):
        return predict.rank_scores(params, y[idx], t, seen, "optimistic", item_block=block)
    evaluation.rank_chunks(None, fake, chunk=chunk, rank_fn=rank)  # compile
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        ranks = evaluation.rank_chunks(None, fake, chunk=chunk, rank_fn=rank)
        best = min(best, time.perf_counter() - start)
    assert ranks.min() >= 1 and ranks.max() <= n_items
    return rows * n_items / best


def eval_section(t: str) -> dict:
    """Evaluation at 100k items: by item blocks (the library's path) and, in the same run, the
    whole score matrix at once (the path before blocks), alternating, each its best pass."""
    whole, blocked = [], []
    for _ in range(2):
        whole.append(eval_speed(item_block=100_001, passes=2))
        blocked.append(eval_speed(passes=2))
    out = {"eval_scores_per_second": max(blocked),
           "eval_whole_matrix_scores_per_second": max(whole)}
    print(f"evaluation at 100k items: {out['eval_scores_per_second']:.3g} item scores/s by "
          f"blocks of {evaluation.metrics.ITEM_BLOCK} items; "
          f"{out['eval_whole_matrix_scores_per_second']:.3g} with the whole score matrix{t}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS),
                    help="the models section's models (models.model_names(); the first is the "
                         "baseline of ratio_to_gru), e.g. gru,concat,hcrnn-3-bi")
    ap.add_argument("--gru-reset", choices=("after", "before", "both"),
                    default=ModelConfig().gru_reset,
                    help="where the GRUs' reset gate acts (ModelConfig.gru_reset); both: each "
                         "model in both forms")
    ap.add_argument("--loss", choices=typing.get_args(losses.Loss), default="top1",
                    help="the training loss of every section (TrainConfig.loss)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma list from {','.join(SECTIONS)} (default: all)")
    ap.add_argument("--precision", choices=precision.MATMUL_PRECISIONS, default="default",
                    help="matmul precision of the approximate products (hrnn_jax.precision)")
    ap.add_argument("--deterministic", action="store_true",
                    help="ask XLA for deterministic GPU kernels (hrnn_jax.precision)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it is (default: hrnn_jax.cpu.keep_freed_memory)")
    args = ap.parse_args(argv)
    sections = args.sections.split(",")
    if args.deterministic:
        precision.deterministic_mode()
    with precision.matmul_precision(args.precision):
        run(args, sections)


def models_section(args, prep, cfg) -> dict:
    """Training events/s and step memory of each model of ``--models``, in each GRU form asked."""
    forms = ("before", "after") if args.gru_reset == "both" else (args.gru_reset,)
    rows = {}
    for name in args.models.split(","):
        for form in forms:
            c = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, gru_reset=form))
            model, eps = fit_speed(name, prep, c, args.epochs)
            label = name if form == forms[0] else f"{name}/{form}"
            rows[label] = {"events_per_second": eps, "gru_reset": form,
                           "step_memory_mb": step_memory_mb(model, prep, c)}
    return rows


def interleaved_ratios(names: list[str], prep, cfg, windows: int = 30, passes: int = 5) -> dict:
    """Cost per event of each model against the first, measured in turns: window after window,
    every model runs its own train step on its own lanes, pass after pass; each window keeps its
    fastest call and the costs are their sums over the training events. A slow spell of this
    shared machine then falls on every model alike, where the separate ``fit`` runs of the
    events/s column can catch one model only. Returns, per model, ``in_turns`` (the time ratio),
    ``arith`` (the ratio of the matrix-product FLOPs of the same windows, :func:`dot_flops`),
    ``flops_per_event`` and ``events_per_second`` (of the timed windows' fastest calls)."""
    runs = {}
    for name in names:
        step, batches = step_and_windows(name, prep, cfg, windows)
        fn = jax.jit(step, donate_argnums=0)
        state = step.init_state(jax.random.PRNGKey(0), cfg.train.batch_size)
        state, _ = fn(state, batches[0], jax.random.PRNGKey(0))  # compile
        events = sum(int((b["target"] > 0).sum()) for b in batches)
        runs[name] = {"fn": fn, "state": state, "batches": batches, "events": events,
                      "best": np.full(len(batches), np.inf),
                      "flops": window_dot_flops(step, batches[0]) * len(batches) / events}
    for _ in range(passes):
        for w in range(max(len(r["batches"]) for r in runs.values())):
            for r in runs.values():
                if w < len(r["batches"]):
                    start = time.perf_counter()
                    r["state"], _ = r["fn"](r["state"], r["batches"][w], jax.random.PRNGKey(w))
                    jax.block_until_ready(r["state"])
                    r["best"][w] = min(r["best"][w], time.perf_counter() - start)
    cost = {name: r["best"].sum() / r["events"] for name, r in runs.items()}
    first = runs[names[0]]
    return {name: {"in_turns": cost[name] / cost[names[0]], "arith": r["flops"] / first["flops"],
                   "flops_per_event": r["flops"], "events_per_second": 1.0 / cost[name]}
            for name, r in runs.items()}


def gemm_flops_per_second(m: int = 4096, k: int = 100, n: int = 20_000, calls: int = 10) -> float:
    """FLOP/s of one large float32 product ``[m, k] @ [k, n]`` on the default device (its
    fastest of ``calls``): what the device's products reach where nothing else limits them."""
    a, b = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        product(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best


def step_and_windows(name: str, prep, cfg, windows: int):
    """Model ``name``'s train step (built as ``compare`` builds it) and its first ``windows``
    training windows."""
    model = compare.model_for(name, prep, cfg)
    step = training.train_step_for(model, prep.train, cfg.train)
    lanes = models.lanes_for(model, prep.train, batch_size=cfg.train.batch_size,
                             window=cfg.train.window, seed=0,
                             targets=models.lane_targets(model, prep.protocol))
    return step, [lanes.window(w) for w in range(min(windows, len(lanes)))]


def window_dot_flops(step, batch) -> float:
    """:func:`dot_flops` of one call of ``step`` on ``batch`` (forward and backward)."""
    state = step.init_state(jax.random.PRNGKey(0), batch["item"].shape[0])
    return dot_flops(jax.make_jaxpr(step)(state, batch, jax.random.PRNGKey(0)).jaxpr)


def dot_flops(jaxpr) -> float:
    """FLOPs of the matrix products (``dot_general``) of a jaxpr: 2 per multiply-add, a scan's
    body times its length, a conditional's costliest branch, any other nested jaxpr (a while
    loop's body: once) as it stands. The elementwise work is left out."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
            total += 2.0 * math.prod(out) * math.prod(lhs[d] for d in contract)
            continue
        inner = [dot_flops(j) for j in _jaxprs(eqn.params)]
        if name == "cond":
            total += max(inner, default=0.0)
        else:
            total += (eqn.params["length"] if name == "scan" else 1) * sum(inner)
    return total


def _jaxprs(params: dict) -> list:
    """The jaxprs among an equation's parameters (a tuple of them: a conditional's branches)."""
    found = []
    for p in params.values():
        for q in p if isinstance(p, tuple) else (p,):
            if isinstance(q, jex_core.ClosedJaxpr):
                q = q.jaxpr
            if isinstance(q, jex_core.Jaxpr):
                found.append(q)
    return found


def run(args, sections):
    args.keep_freed_memory = False if args.default_malloc else cpu.keep_freed_memory()
    print(f"keep_freed_memory: {args.keep_freed_memory}")
    cfg = Config(model=ModelConfig(hidden=100),
                 train=TrainConfig(batch_size=50, window=20, loss=args.loss))
    env = setting()
    t = tag(env)
    out = {"setting": env, "models": {}, "seeds": {}, "catalogue": {}, "config": vars(args)}
    print(f"setting: {env}")

    prep = prepared(args.users, 1000)
    print(f"data: {prep.info['train_events']} training events, {prep.info['items']} items")
    if "models" in sections:
        out["models"] = models_section(args, prep, cfg)
        gru = next(iter(out["models"].values()))["events_per_second"]
        turns = interleaved_ratios(args.models.split(","), prep, cfg)
        print(f"{'model':<22}{'events/s':>12}{'ratio_to_gru':>14}{'in turns':>10}{'arith.':>8}"
              f"{'MFLOP/ev':>10}{'GFLOP/s':>9}{'step MB':>10}")
        for name, r in out["models"].items():
            x = turns.get(name, dict.fromkeys(("in_turns", "arith", "flops_per_event",
                                               "events_per_second"), float("nan")))
            r["ratio_to_gru"] = gru / r["events_per_second"]
            r["ratio_in_turns"], r["ratio_of_dot_flops"] = x["in_turns"], x["arith"]
            r["dot_flops_per_event"] = x["flops_per_event"]
            r["dot_flops_per_second"] = x["flops_per_event"] * x["events_per_second"]
            print(f"{name:<22}{r['events_per_second']:>12.0f}{r['ratio_to_gru']:>14.2f}"
                  f"{r['ratio_in_turns']:>10.2f}{r['ratio_of_dot_flops']:>8.2f}"
                  f"{r['dot_flops_per_event'] / 1e6:>10.3f}{r['dot_flops_per_second'] / 1e9:>9.1f}"
                  f"{r['step_memory_mb']:>10.1f}{t}")
        out["gemm_flops_per_second"] = gemm_flops_per_second()
        print(f"one float32 product [4096, 100] @ [100, 20000]: "
              f"{out['gemm_flops_per_second'] / 1e9:.1f} GFLOP/s{t}")

    if "seeds" in sections:
        out["seeds"] = seeds_timing(prep, cfg)
        s = out["seeds"]
        print(f"seeds: 1 seed {s['one_seconds'] * 1e3:.1f} ms/step, 8 seeds vmapped "
              f"{s['eight_seconds'] * 1e3:.1f} ms/step ({s['ratio']:.2f}x); scratch "
              f"{s['scratch_mb']['one']:.1f} / {s['scratch_mb']['eight']:.1f} MB, page faults per "
              f"call {s['faults_per_call']['one']:.0f} / {s['faults_per_call']['eight']:.0f}{t}")

    if "catalogue" in sections:
        for items in (1000, 10_000, 100_000):
            p = prep if items == 1000 else prepared(args.users, items)
            _, eps = fit_speed("gru", p, cfg, 1 if items != 1000 else args.epochs)
            out["catalogue"][str(items)] = eps
            print(f"catalogue {items:>6} items: {eps:.0f} events/s "
                  f"({eps / out['catalogue']['1000']:.2f}x of 1k){t}")

    if "eval" in sections:
        out.update(eval_section(t))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS: {out['peak_rss_mb']:.0f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
