"""The comparison as a plain-text table (``compare``'s results): one line per model, mean±std
over seeds and significance marks when there are several seeds and a reference model.
"""
from __future__ import annotations

from hrnn_jax.evaluation import significance


def table(results: dict, ks=(5, 20)) -> str:
    """The comparison as a plain-text table, one line per model.

    Models of several seeds show ``mean±std`` (deterministic baselines their one value); with a
    reference model (:func:`summarise`), recall@k and mrr@k of the other models carry ``*``
    (Wilcoxon p < 0.05) or ``**`` (p < 0.01), explained in footer lines. Without either the
    table is the plain one.
    """
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "mrr", "precision", "ndcg")]
    seeds = max((r.get("seeds", 1) for r in results.values()), default=1)
    ref = next((r["reference"] for r in results.values() if "reference" in r), None)
    width = 13 if seeds == 1 else 16 if ref is None else 18

    def cell(r, c):
        text = f"{r[c]:.4f}"
        if r.get("seeds", 1) > 1:
            text += f"±{r['std'][c]:.4f}"
        return text + significance.marks(r.get("p_value", {}).get(c))

    pad = max([10] + [len(name) + 1 for name in results])
    head = (f"{'model':<{pad}}" + "".join(f"{c:>{width}}" for c in cols)
            + f"{'train s':>9}{'events/s':>10}")
    lines = [head]
    for name, r in results.items():
        cost = (f"{r['train_seconds']:>9.1f}{r['events_per_second']:>10.0f}"
                if "train_seconds" in r else f"{'-':>9}{'-':>10}")  # e.g. a loaded checkpoint
        lines.append(f"{name:<{pad}}" + "".join(f"{cell(r, c):>{width}}" for c in cols) + cost)
    if seeds > 1:
        one = [name for name, r in results.items() if r.get("seeds", 1) == 1]
        lines.append(f"mean±std (sample standard deviation) over {seeds} seeds"
                     + (f"; {', '.join(one)}: deterministic, one run" if one else ""))
    if ref is not None:
        sessions = next(r["sessions"] for r in results.values() if "reference" in r)
        lines.append(f"* p < 0.05, ** p < 0.01: {significance.WILCOXON} against {ref} on "
                     f"recall@k and mrr@k per test session ({sessions} sessions)")
    return "\n".join(lines)
