"""Song, Ji, Park & Moon, "Hierarchical Context Enabled Recurrent Neural Network for
Recommendation" (AAAI 2019): the analyses of Fig. 5a (the drift gate after a topic change and
within a run of one topic) and Fig. 6a (attention weight by time distance), read from a trained
``hrnn_jax.models.HCRNN`` with its ``trace``."""
from __future__ import annotations

import jax
import numpy as np

from hrnn_jax.evaluation.predict import EVAL_WINDOW, LANES
from hrnn_jax.models.contract import lanes_for
from hrnn_jax.models.hcrnn import HCRNN


def analyse(model: HCRNN, params, frame, topics, *, rows=None, batch_size: int = LANES,
            window: int = EVAL_WINDOW) -> dict:
    """The paper's analyses on the events of ``frame`` (whole users, sorted by user and time),
    read with :meth:`HCRNN.trace` at evaluation:

    * Fig. 5a: the mean over units of ``r_t * G^(d)_t`` (the gate applied to ``h_{t-1}`` in
      Eq. 24) at the steps whose input item's topic differs from the previous input's
      (``drift_gate_after_change``) and at those where it is the same (``drift_gate_within_run``);
    * Fig. 6a: the mean attention weight by time distance (0 = the step itself) in each channel
      (``attention_by_distance``: ``{"local": [attention_history + 1], "temporary": [...]}``, NaN
      where no step had a key that far back; "temporary" alone with ``attention="additive"``, empty
      with ``"none"``).

    ``topics [len(frame)]``: each event's topic (e.g. ``synthetic.generate(with_topic=True)``);
    ``rows``: sorted target rows to count (default: every step).
    """
    topics = np.asarray(topics)
    user = frame["user"].to_numpy()
    lanes = lanes_for(model, frame, batch_size=batch_size, window=window, targets="user")
    trace = jax.jit(lambda p, c, b: model.trace(p, c, b))
    carry = model.init_carry(batch_size)
    T = model.attention_history
    gate = {True: [], False: []}
    channels = {"bi": ("local", "temporary"), "additive": ("temporary",), "none": ()}
    w_sum = {k: np.zeros(T + 1) for k in channels[model.attention]}
    w_n = np.zeros(T + 1)
    keep = None if rows is None else set(np.asarray(rows).tolist())
    for batch in lanes:
        carry, _, info = trace(params, carry, batch)
        g = np.asarray(info["gates"]["r"] * info["gates"]["drift"]).mean(-1)  # [B, L]
        att = None if info["attention"] is None else \
            {k: np.asarray(v) for k, v in info["attention"].items()}
        for b, t in zip(*np.nonzero(batch["valid"])):
            target = int(batch["event"][b, t])
            if keep is not None and target not in keep:
                continue
            x = target - 1  # the step's input event; its predecessor, if the same user's
            if x >= 1 and user[x - 1] == user[x]:
                gate[bool(topics[x] != topics[x - 1])].append(g[b, t])
            if att is not None:
                d = T + t - np.arange(T + t + 1)  # distance of each key up to the step itself
                seen = att["temporary"][b, t, :T + t + 1] > 0
                d = d[seen]
                ok = d <= T
                w_n[d[ok]] += 1
                for k in w_sum:
                    w_sum[k][d[ok]] += att[k][b, t, :T + t + 1][seen][ok]
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    by_distance = {
        k: np.where(w_n > 0, w_sum[k] / np.maximum(w_n, 1), np.nan).tolist() for k in w_sum}
    return {"drift_gate_after_change": mean(gate[True]),
            "drift_gate_within_run": mean(gate[False]),
            "attention_by_distance": by_distance,
            "steps": {"after_change": len(gate[True]), "within_run": len(gate[False])}}
