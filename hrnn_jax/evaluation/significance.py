"""Per-test-session metrics and paired significance tests between two models.

Quadrana et al. (2017) test the differences between their models with the Wilcoxon signed-rank
test; the HCRNN paper (Song et al. 2019) uses the paired t-test.
Both compare two models on the same test sessions, so the unit of a test is a session, not a
prediction: the predictions of one session are not independent of each other.

    sessions = row_sessions(prep.stream, prep.rows)              # session of each row's target
    a = session_metrics(ranks_a, sessions, ks=(5, 20))           # {"recall@5": [U], ...}
    b = session_metrics(ranks_b, sessions, ks=(5, 20))
    wilcoxon(a.values["recall@5"], b.values["recall@5"]).p_value
    paired_tests(a, b)  # {"p_value": {metric: p}, "t_test_p_value": {metric: p}}

Zero differences. Sessions on which both models score the same (both miss every target, say) are
common. The Wilcoxon test here discards them before ranking, ``zero_method="wilcox"``, as in
Wilcoxon's original definition (Wilcoxon 1945); the t-test keeps them (they are real paired
observations of a difference of 0). When every difference is zero there is no evidence of a
difference at all: both tests then return statistic 0 and p = 1.0 (scipy would give NaN).

References:
  F. Wilcoxon. Individual comparisons by ranking methods. Biometrics Bulletin 1(6), 1945.
  M. Quadrana, A. Karatzoglou, B. Hidasi, P. Cremonesi. Personalizing session-based
  recommendations with hierarchical recurrent neural networks. RecSys 2017.
  K. Song, M. Ji, S. Park, I.-C. Moon. Hierarchical context enabled recurrent neural network
  for recommendation (HCRNN). AAAI 2019.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl
from scipy import stats

from hrnn_jax.data.rows import EvalRows

WILCOXON = "Wilcoxon signed-rank (two-sided, zero differences discarded)"
T_TEST = "paired t-test (two-sided)"


class SessionMetrics(NamedTuple):
    """Metrics per test session.

    sessions: int64 [U], the ids of the sessions (ascending) that have at least one row.
    values: ``{"recall@k": float64 [U], "mrr@k": float64 [U]}`` for every k, parallel to
      ``sessions``: the mean over the session's rows (and over seeds, see
      :func:`session_metrics`).
    rows: int64 [U], the number of rows (predictions) of each session.
    """

    sessions: np.ndarray
    values: dict[str, np.ndarray]
    rows: np.ndarray


class PairedTest(NamedTuple):
    """A paired test's ``statistic``, two-sided ``p_value`` and ``n``, the number of pairs it
    used (for Wilcoxon the nonzero differences)."""

    statistic: float
    p_value: float
    n: int


def row_sessions(stream: pl.DataFrame, rows: EvalRows) -> np.ndarray:
    """The session of each evaluation row: the session of its TARGET event.

    Args:
      stream: the combined train+test stream the rows were made from (``Prepared.stream``).
      rows: its evaluation rows (``data.make_eval_rows``); ``rows.event`` indexes
        ``stream``.

    Returns:
      int64 [R], ``stream["session"][rows.event]``.
    """
    return stream["session"].to_numpy().astype(np.int64)[rows.event]


def row_metrics(ranks, ks=(5, 20)) -> dict[str, np.ndarray]:
    """Per-row Recall@k and MRR@k from ranks (as ``evaluation.metrics_from_ranks`` before its
    mean): ``recall@k`` = 1 if rank <= k else 0, ``mrr@k`` = 1/rank if rank <= k else 0.

    Args:
      ranks: ranks of the targets, any shape (e.g. [R] or [S, R]).
      ks: the cut-offs.

    Returns:
      ``{"recall@k": float64, "mrr@k": float64}`` arrays of the shape of ``ranks``.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"mrr@{k}"] = np.where(hit, 1.0 / ranks, 0.0)
    return out


def session_metrics(ranks, sessions, ks=(5, 20)) -> SessionMetrics:
    """Recall@k and MRR@k of every test session: the mean over the session's rows.

    With several seeds (``ranks`` [S, R]) each seed's per-session values are computed first and
    then averaged over the seeds, so a session is one paired observation whatever S.

    Args:
      ranks: float [R] or [S, R], the rank of each row's target (one row per seed).
      sessions: int [R], the session of each row (:func:`row_sessions`).
      ks: the cut-offs.

    Returns:
      :class:`SessionMetrics` over the sessions that have rows, in ascending session id.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    ranks = ranks[None] if ranks.ndim == 1 else ranks
    sessions = np.asarray(sessions).reshape(-1)
    if ranks.ndim != 2 or ranks.shape[1] != sessions.shape[0]:
        raise ValueError(f"ranks has shape {ranks.shape}, sessions has {sessions.shape[0]} rows")
    ids, index, counts = np.unique(sessions, return_inverse=True, return_counts=True)
    values = {}
    for name, per_row in row_metrics(ranks, ks).items():
        per_seed = np.stack([np.bincount(index, weights=v, minlength=len(ids)) for v in per_row])
        values[name] = (per_seed / counts).mean(axis=0)
    return SessionMetrics(ids.astype(np.int64), values, counts.astype(np.int64))


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need the same 1-d shape, got {a.shape} and {b.shape}")
    return a, b


def wilcoxon(a, b) -> PairedTest:
    """Wilcoxon signed-rank test of ``a - b`` (two-sided), ``scipy.stats.wilcoxon``.

    Zero differences are discarded (``zero_method="wilcox"``, Wilcoxon 1945); tied absolute
    differences get their mean rank. The statistic is the smaller of the sums of the ranks of
    the positive and of the negative differences. scipy's ``method="auto"`` gives the p-value
    (scipy 1.17): exact for up to 50 differences without ties, all 2^n sign assignments for up
    to 13 with ties, else the normal approximation with the tie correction (no continuity
    correction); the per-session metrics of a comparison are many and tied, so the latter.

    Args:
      a, b: float [U], the paired observations (e.g. one model's and the reference's metric on
        the same sessions, :func:`session_metrics`).

    Returns:
      :class:`PairedTest`; statistic 0 and p = 1.0 when every difference is zero.
    """
    a, b = _paired(a, b)
    d = a - b
    n = int(np.count_nonzero(d))
    if n == 0:
        return PairedTest(0.0, 1.0, 0)
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return PairedTest(float(res.statistic), float(res.pvalue), n)


def paired_t_test(a, b) -> PairedTest:
    """Paired t-test of the means of ``a`` and ``b`` (two-sided), ``scipy.stats.ttest_rel``.

    Args:
      a, b: float [U], paired observations.

    Returns:
      :class:`PairedTest` with the t statistic; statistic 0 and p = 1.0 when every difference is
      zero; NaN with fewer than two pairs.
    """
    a, b = _paired(a, b)
    if not np.any(a != b):
        return PairedTest(0.0, 1.0, int(a.size))
    res = stats.ttest_rel(a, b)
    return PairedTest(float(res.statistic), float(res.pvalue), int(a.size))


def paired_tests(model: SessionMetrics, reference: SessionMetrics) -> dict[str, dict]:
    """Both tests of ``model`` against ``reference`` on every metric, session by session.

    Args:
      model, reference: :func:`session_metrics` of two models on the same rows.

    Returns:
      ``{"p_value": {metric: Wilcoxon p}, "t_test_p_value": {metric: t-test p}}``.
    """
    if not np.array_equal(model.sessions, reference.sessions):
        raise ValueError("the two models were not evaluated on the same sessions")
    out = {"p_value": {}, "t_test_p_value": {}}
    for name, values in model.values.items():
        out["p_value"][name] = wilcoxon(values, reference.values[name]).p_value
        out["t_test_p_value"][name] = paired_t_test(values, reference.values[name]).p_value
    return out


def marks(p_value: float | None) -> str:
    """``"**"`` for p < 0.01, ``"*"`` for p < 0.05, else ``""`` (also for a missing or NaN p)."""
    if p_value is None or not p_value == p_value:
        return ""
    return "**" if p_value < 0.01 else "*" if p_value < 0.05 else ""


def against_reference(ranks: dict[str, np.ndarray], reference: str, sessions,
                      ks=(5, 20)) -> dict[str, dict]:
    """Every model tested against ``reference`` on per-session Recall@k and MRR@k.

    Args:
      ranks: ``{name: float [S, R] or [R]}``, each model's ranks on the same rows (seeds are
        averaged per session first, :func:`session_metrics`).
      reference: the name in ``ranks`` the others are tested against.
      sessions: int [R], the session of each row (:func:`row_sessions`).
      ks: the cut-offs.

    Returns:
      ``{name: {"reference": reference, "sessions": U, "p_value": {metric: Wilcoxon p},
      "t_test_p_value": {metric: paired t-test p}}}`` for every name but ``reference``; a p-value
      that cannot be computed (a t-test on one session) is None.
    """
    if reference not in ranks:
        raise ValueError(f"reference model {reference!r} is not among the compared models "
                         f"({', '.join(ranks)})")
    ref = session_metrics(ranks[reference], sessions, ks)
    out = {}
    for name, r in ranks.items():
        if name == reference:
            continue
        tests = paired_tests(session_metrics(r, sessions, ks), ref)
        clean = {kind: {m: (p if np.isfinite(p) else None) for m, p in ps.items()}
                 for kind, ps in tests.items()}
        out[name] = {"reference": reference, "sessions": int(ref.sessions.size), **clean}
    return out


def footnote(results: dict[str, dict]) -> tuple[int, int | None]:
    """What a table of ``results`` (``{name: row}``) averaged and tested over, for its footnote.

    Returns ``(seeds, units)``: the most seeds any row averages (1 for single runs) and the number
    of test units (users or sessions) of the paired tests, None where no row was tested (rows of
    :func:`against_reference` carry ``"reference"`` and ``"sessions"``).
    """
    seeds = max(r.get("seeds", 1) for r in results.values())
    tested = next((r for r in results.values() if "reference" in r), None)
    return seeds, (tested["sessions"] if tested else None)
