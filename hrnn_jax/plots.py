"""Figures of a comparison: the paper's breakdowns and training-loss curves (PNG files).

``breakdown_figures(results, directory)`` draws Recall@k and MRR@k by user history length and by
position in the session for every model of ``results`` (``hrnn_jax.compare.summarise``), as
Quadrana et al. (2017) Figs. 3-6: bars grouped by history length ("short (<=6)", "long (>6)") or
position ("beginning", "middle", "end"), one bar per model in each group, at the k the breakdowns
hold (the smallest of ``--ks``). ``loss_curves(records, directory)`` draws the training loss per
epoch of each neural model (``training.fit``'s per-epoch ``records``); with several seeds the
mean and the band between the lowest and the highest seed.

matplotlib is an optional dependency (``pip install 'hrnn_jax[plots]'``), imported when a figure
is drawn; without it the functions raise :class:`MissingDependency`. Figures are drawn with the
Agg canvas, without ``pyplot``: nothing global (the backend, open figures) changes.
"""
from __future__ import annotations

import math
import os

from hrnn_jax.compare import model_names

INSTALL = "pip install 'hrnn_jax[plots]'"
BREAKDOWNS = {
    "history": "by user history length (training sessions)",
    "position": "by position in the session (sessions of >= 5 events)",
}
FILES = {"history": "breakdown_history.png", "position": "breakdown_position.png",
         "loss": "training_loss.png"}
DPI = 100


class MissingDependency(ImportError):
    """matplotlib, which drawing needs, is not installed (``pip install 'hrnn_jax[plots]'``)."""


def require():
    """The ``matplotlib`` module; :class:`MissingDependency` when it cannot be imported."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(f"drawing needs matplotlib: {INSTALL}") from exc
    return matplotlib


def _color(name: str, names) -> tuple:
    """The same colour for a model in every figure: by its place in ``compare.model_names()``."""
    import matplotlib

    known = model_names()
    order = list(known) + [n for n in names if n not in known]
    return matplotlib.colormaps["tab10"](order.index(name) % 10)


def _save(fig, directory, name: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


# ------------------------------------------------------------------------------------------
# Breakdowns
# ------------------------------------------------------------------------------------------
def breakdown_data(results: dict, by: str) -> dict:
    """The numbers of one breakdown figure (``by``: ``"history"`` or ``"position"``).

    Returns ``{"k", "groups": [label], "n": [rows per group], "models": {name: {"recall":
    [value per group], "mrr": [...]}}}``; a group a model has no rows in is NaN. Models without a
    breakdown are left out.
    """
    if by not in BREAKDOWNS:
        raise ValueError(f"by must be one of {tuple(BREAKDOWNS)}, got {by!r}")
    parts = {name: r["breakdown"][by] for name, r in results.items()
             if isinstance(r.get("breakdown"), dict) and by in r["breakdown"]}
    groups, n = [], {}
    for part in parts.values():
        for label, m in part.items():
            if label not in groups:
                groups.append(label)
            n.setdefault(label, m.get("n"))
    ks = sorted({int(key.split("@")[1]) for part in parts.values() for m in part.values()
                 for key in m if key.startswith("recall@")})
    k = ks[0] if ks else None
    models = {name: {metric: [float(part[g][f"{metric}@{k}"]) if g in part else math.nan
                              for g in groups] for metric in ("recall", "mrr")}
              for name, part in parts.items()}
    return {"k": k, "groups": groups, "n": [n[g] for g in groups], "models": models}


def breakdown_figure(results: dict, by: str):
    """A matplotlib ``Figure``: Recall@k and MRR@k side by side, bars grouped by the breakdown's
    groups, one bar per model in each group (one ``BarContainer`` per model, labelled with its
    name)."""
    require()
    from matplotlib.figure import Figure

    data = breakdown_data(results, by)
    names, groups, k = list(data["models"]), data["groups"], data["k"]
    fig = Figure(figsize=(min(14.0, max(8.0, 3.0 + 0.7 * len(groups) * len(names))), 4.2),
                 layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / max(len(names), 1)
    ticks = [f"{g}\nn={n}" if n is not None else g for g, n in zip(groups, data["n"])]
    for ax, metric, title in zip(axes, ("recall", "mrr"), ("Recall", "MRR")):
        for i, name in enumerate(names):
            xs = [j - 0.4 + width * (i + 0.5) for j in range(len(groups))]
            ax.bar(xs, data["models"][name][metric], width, label=name,
                   color=_color(name, names))
        ax.set_xticks(range(len(groups)), ticks)
        ax.set_ylabel(f"{title}@{k}")
        ax.set_title(f"{title}@{k}")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    if names:  # outside the axes: it never hides a bar
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper",
                   fontsize="small")
    fig.suptitle(f"Recall@{k} and MRR@{k} {BREAKDOWNS[by]}")
    return fig


def breakdown_figures(results: dict, directory) -> list[str]:
    """Draw both breakdowns of ``results`` into ``directory`` (created if missing); their paths:
    ``breakdown_history.png``, ``breakdown_position.png`` (a breakdown no model has is skipped).
    """
    require()
    paths = []
    for by in BREAKDOWNS:
        if breakdown_data(results, by)["groups"]:
            paths.append(_save(breakdown_figure(results, by), directory, FILES[by]))
    return paths


# ------------------------------------------------------------------------------------------
# Training loss
# ------------------------------------------------------------------------------------------
def loss_figure(records: dict):
    """A matplotlib ``Figure`` of the training loss per epoch, one line per model of
    ``records`` (``{name: [record per epoch]}``, ``training.fit``'s ``records``); with
    ``loss_per_seed`` in the records, the line is the mean and a band spans the seeds."""
    require()
    from matplotlib.figure import Figure

    records = {name: list(r) for name, r in records.items() if r}
    if not records:
        raise ValueError("no training records to draw (only neural models have them)")
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    names = list(records)
    for name, per_epoch in records.items():
        epochs = [r["epoch"] for r in per_epoch]
        color = _color(name, names)
        per_seed = [r.get("loss_per_seed") for r in per_epoch]
        label = name
        if all(p is not None for p in per_seed):
            label = f"{name} (mean of {len(per_seed[0])} seeds, band: min-max)"
            ax.fill_between(epochs, [min(p) for p in per_seed], [max(p) for p in per_seed],
                            color=color, alpha=0.2, linewidth=0)
        ax.plot(epochs, [r["loss"] for r in per_epoch], marker="o", color=color, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss per epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def loss_curves(records: dict, directory) -> str:
    """Draw :func:`loss_figure` into ``directory/training_loss.png`` (directory created if
    missing); its path. ValueError when no model has records."""
    return _save(loss_figure(records), directory, FILES["loss"])
