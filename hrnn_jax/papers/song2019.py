"""Song, Ji, Park & Moon, "Hierarchical Context enabled Recurrent Neural Network for
Recommendation" (AAAI 2019): the analyses of Fig. 5a (the drift gate r_t * G^(d)_t by the length
of the same-topic run before the step, after a topic change and within the run) and Fig. 6a (the
mean attention weight by time distance, HCRNN's two channels beside NARM's), read from trained
models with their ``trace`` (``hrnn_jax.models.HCRNN.trace``, ``hrnn_jax.models.NARM.trace``)."""
from __future__ import annotations

import jax
import numpy as np

from hrnn_jax.evaluation.predict import EVAL_WINDOW, LANES
from hrnn_jax.models.contract import Model, lanes_for
from hrnn_jax.models.hcrnn import HCRNN

RUN_CAP = 10  # Fig. 5a's x-axis: runs of 1 .. RUN_CAP - 1 items, and RUN_CAP for RUN_CAP or more


def same_topic_runs(user, topics) -> np.ndarray:
    """The length of the run of one topic that ends at each event, within its user: 1 at a
    user's first event and wherever the topic differs from the previous event's."""
    user, topics = np.asarray(user), np.asarray(topics)
    run = np.ones(len(topics), np.int64)
    same = (user[1:] == user[:-1]) & (topics[1:] == topics[:-1])
    for i in np.flatnonzero(same) + 1:
        run[i] = run[i - 1] + 1
    return run


def _traced(model: Model, params, frame, rows, batch_size: int, window: int):
    """``(info, [(b, t, target row)])`` for each window of ``frame``'s lanes: ``model.trace``'s
    third output (as NumPy) and the valid steps whose target row is in ``rows`` (every one when
    ``rows`` is None)."""
    lanes = lanes_for(model, frame, batch_size=batch_size, window=window, targets="user")
    trace = jax.jit(lambda p, c, b: model.trace(p, c, b))
    carry = model.init_carry(batch_size)
    keep = None if rows is None else set(np.asarray(rows).tolist())
    for batch in lanes:
        carry, _, info = trace(params, carry, batch)
        info = jax.tree_util.tree_map(np.asarray, info)
        steps = [(b, t, int(batch["event"][b, t])) for b, t in zip(*np.nonzero(batch["valid"]))]
        yield info, [s for s in steps if keep is None or s[2] in keep]


class _ByDistance:
    """Fig. 6a's accumulator: the sum of each channel's weight by distance (0 = the step itself)
    over the steps that see a key that far back, and each channel's attended distance
    ``sum_j alpha_tj (t - j)`` summed over the steps."""

    def __init__(self, history: int, channels):
        self.T = history
        self.w = {k: np.zeros(history + 1) for k in channels}
        self.n = np.zeros(history + 1)
        self.d = {k: 0.0 for k in channels}
        self.steps = 0

    def add(self, attention: dict, b: int, t: int):
        T = self.T
        row = {k: attention[k][b, t, :T + t + 1] for k in self.w}
        seen = np.max(np.stack(list(row.values())), axis=0) > 0  # the visible keys
        d = (T + t - np.arange(T + t + 1))[seen]  # distance of each key up to the step itself
        ok = d <= T
        self.n[d[ok]] += 1
        self.steps += 1
        for k, w in row.items():
            self.w[k][d[ok]] += w[seen][ok]
            self.d[k] += float(np.dot(w[seen], d))

    def result(self) -> tuple[dict, dict]:
        """``({channel: [mean weight at distance 0 .. T] (NaN where no step saw it)},
        {channel: mean attended distance})``."""
        by = {k: np.where(self.n > 0, w / np.maximum(self.n, 1), np.nan).tolist()
              for k, w in self.w.items()}
        mean = {k: v / self.steps if self.steps else float("nan") for k, v in self.d.items()}
        return by, mean


def narm_attention(model, params, frame, *, rows=None, batch_size: int = LANES,
                   window: int = EVAL_WINDOW) -> tuple[dict, dict]:
    """Fig. 6a's NARM curve: ``({"narm": [mean weight by distance]}, {"narm": mean attended
    distance})`` over the events of ``frame`` (as :func:`analyse`), read with ``model.trace``
    (``hrnn_jax.models.NARM``)."""
    acc = _ByDistance(model.attention_history, ("narm",))
    for info, steps in _traced(model, params, frame, rows, batch_size, window):
        for b, t, _ in steps:
            acc.add(info["attention"], b, t)
    return acc.result()


def _mean(v) -> float:
    return float(np.mean(v)) if len(v) else float("nan")


def analyse(model: HCRNN, params, frame, topics, *, rows=None, batch_size: int = LANES,
            window: int = EVAL_WINDOW, narm=None) -> dict:
    """The paper's analyses on the events of ``frame`` (whole users, sorted by user and time),
    read with :meth:`HCRNN.trace` at evaluation. The gate is the mean over units of
    ``r_t * G^(d)_t`` (the gate applied to ``h_{t-1}`` in Eq. 24) at a step whose input item and
    its predecessor (the same user's) are both known:

    * Fig. 5a as the paper draws it (its x-axis: "the number of consecutive items which has the
      same genre until the right before timestep"): ``drift_gate_by_run``, ``{"same": [...],
      "change": [...], "steps_same": [...], "steps_change": [...]}``, entry n - 1 for a run of n
      same-topic items ending at the input's predecessor (n = 1 .. ``RUN_CAP``, the last entry
      for ``RUN_CAP`` or more), split by whether the input continues that topic ("same") or
      leaves it ("change"); NaN where no step had that run;
    * the same gate pooled over the runs: ``drift_gate_after_change`` and
      ``drift_gate_within_run``;
    * Fig. 6a: the mean attention weight by time distance (0 = the step itself) in each channel
      (``attention_by_distance``: ``{"local": [attention_history + 1], "temporary": [...]}``,
      NaN where no step had a key that far back; "temporary" alone with
      ``attention="additive"``, empty with ``"none"``) and each channel's mean attended distance
      ``mean_t sum_j alpha_tj (t - j)`` (``mean_attended_distance``); with ``narm=(model,
      params)``, a trained ``hrnn_jax.models.NARM``, its channel "narm" too (the paper's third
      curve; ``narm_attention``).

    ``topics [len(frame)]``: each event's topic (e.g. ``synthetic.generate(with_topic=True)``);
    ``rows``: sorted target rows to count (default: every step).
    """
    topics = np.asarray(topics)
    user = frame["user"].to_numpy()
    run = np.minimum(same_topic_runs(user, topics), RUN_CAP)
    channels = {"bi": ("local", "temporary"), "additive": ("temporary",), "none": ()}
    acc = _ByDistance(model.attention_history, channels[model.attention])
    gate = {True: [[] for _ in range(RUN_CAP)], False: [[] for _ in range(RUN_CAP)]}
    for info, steps in _traced(model, params, frame, rows, batch_size, window):
        g = (info["gates"]["r"] * info["gates"]["drift"]).mean(-1)  # [B, L]
        for b, t, target in steps:
            x = target - 1  # the step's input event; its predecessor, if the same user's
            if x >= 1 and user[x - 1] == user[x]:
                gate[bool(topics[x] != topics[x - 1])][run[x - 1] - 1].append(g[b, t])
            if info["attention"] is not None:
                acc.add(info["attention"], b, t)
    by_distance, attended = acc.result()
    if narm is not None:
        more = narm_attention(*narm, frame, rows=rows, batch_size=batch_size, window=window)
        by_distance, attended = {**by_distance, **more[0]}, {**attended, **more[1]}
    pooled = {k: [g for run_n in v for g in run_n] for k, v in gate.items()}
    return {"drift_gate_after_change": _mean(pooled[True]),
            "drift_gate_within_run": _mean(pooled[False]),
            "drift_gate_by_run": {"same": [_mean(v) for v in gate[False]],
                                  "change": [_mean(v) for v in gate[True]],
                                  "steps_same": [len(v) for v in gate[False]],
                                  "steps_change": [len(v) for v in gate[True]]},
            "attention_by_distance": by_distance,
            "mean_attended_distance": attended,
            "steps": {"after_change": len(pooled[True]), "within_run": len(pooled[False])}}
