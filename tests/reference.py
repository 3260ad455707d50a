"""Plain NumPy references of the paper's equations, one user at a time (no lanes, no scan)."""
from __future__ import annotations

import numpy as np
import polars as pl


def random_log(seed: int, n_users: int, n_items: int, session_len=(1, 6)) -> pl.DataFrame:
    """Encoded-schema events: users with 1-4 sessions of ``session_len`` (low inclusive, high
    exclusive) events over items 1..n_items, sorted by user and time."""
    rng = np.random.default_rng(seed)
    rows, session = [], 0
    for u in range(n_users):
        for _ in range(rng.integers(1, 5)):
            for _ in range(rng.integers(*session_len)):
                rows.append((u, int(rng.integers(1, n_items + 1)), session))
            session += 1
    return pl.DataFrame(rows, schema=["user", "item", "session"], orient="row")


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gru_step(p, h, xp, reset_gate="after"):
    """cells.GRU from its equations: xp = W_x x + b_x (three blocks r, z, n). ``reset_gate``:
    r * (U_n h + b_hn) ("after", flax's form) or U_n (r * h) + b_hn ("before", Cho et al. 2014
    Eq. 6, GRU4Rec's)."""
    H = h.shape[-1]
    U = np.asarray(p["hidden"]["kernel"])
    r = sigmoid(xp[:H] + h @ U[:, :H])
    z = sigmoid(xp[H:2 * H] + h @ U[:, H:2 * H])
    if reset_gate == "before":
        n = np.tanh(xp[2 * H:] + (r * h) @ U[:, 2 * H:] + np.asarray(p["b_hn"]))
    else:
        n = np.tanh(xp[2 * H:] + r * (h @ U[:, 2 * H:] + np.asarray(p["b_hn"])))
    return (1 - z) * n + z * h


def gru_call(p, h, x, reset_gate="after"):
    xp = x @ np.asarray(p["input"]["kernel"]) + np.asarray(p["input"]["bias"])
    return gru_step(p, h, xp, reset_gate)


def user_steps(frame, targets="session"):
    """{user: [(item, target, session, target_row), ...]} in time order, as the paper's iterator."""
    user = frame["user"].to_numpy()
    item = frame["item"].to_numpy()
    session = frame["session"].to_numpy()
    out: dict[int, list] = {}
    for i in range(len(user) - 1):
        if user[i + 1] != user[i]:
            continue
        if targets == "session" and session[i + 1] != session[i]:
            continue
        out.setdefault(int(user[i]), []).append((int(item[i]), int(item[i + 1]),
                                                 int(session[i]), i + 1))
    return out


def run_user(params, steps, kind, H, context_gates="rz", first_session="init",
             reset_gate="after"):
    """Hidden outputs of one user's steps for kind in gru|concat|init|all (one-hot GRU cells).

    Eq. 1 (session GRU), Eq. 3 (user GRU at each session end), Eq. 4 (tanh init),
    Eq. 5 (HRNN All: W_c c added to the input of every step of the next session, on the reset and
    update gates only (``context_gates="rz"``, as hgru4rec) or on all three (``"rzn"``)).
    ``first_session``: the first session starts from tanh(b_init) (``"init"``) or zeros.
    ``reset_gate``: both GRUs' form (:func:`gru_step`).
    """
    P = {k: (np.asarray(v) if not isinstance(v, dict) else v) for k, v in params.items()}
    item_in = np.asarray(P["item_in"])
    ys = {}
    s = np.zeros(H)
    c_state = None
    ctx = 0.0
    prev_session = None
    for n, (item, _, session, row) in enumerate(steps):
        if n == 0:
            if kind in ("init", "all"):
                c_state = np.zeros(np.asarray(P["init"]["kernel"]).shape[0])
                s = np.tanh(np.asarray(P["init"]["bias"]))  # Eq. 4 with c_{u,0} = 0
                if first_session == "zero":
                    s = np.zeros(H)
                ctx = 0.0
            else:
                s = np.zeros(H)
        elif session != prev_session:
            if kind == "gru":
                s = np.zeros(H)  # Eq. 1: s_{m,0} = 0
            elif kind in ("init", "all"):
                c_state = gru_call(P["user"], c_state, s, reset_gate)  # Eq. 3
                s = np.tanh(c_state @ np.asarray(P["init"]["kernel"])
                            + np.asarray(P["init"]["bias"]))  # Eq. 4
                if kind == "all":
                    ctx = c_state @ np.asarray(P["context"]["kernel"])  # Eq. 5
                    if context_gates == "rz":
                        ctx = np.concatenate([ctx, np.zeros(H)])  # no shift of the candidate
        prev_session = session
        s = gru_step(P["session"], s, item_in[item] + ctx, reset_gate)  # Eq. 1 / 5
        ys[row] = s.copy()
    return ys


def ranking_loss(kind, scores, target, negatives, score_reg=1.0):
    """Loop version of losses.ranking_loss: scores [B, L, B+S] with lane b's positive at
    column b; bpr-max / top1-max as Hidasi & Karatzoglou (2018) write them."""
    B, L, _ = scores.shape
    total, count = 0.0, 0
    for b in range(B):
        for t in range(L):
            if target[b, t] <= 0:
                continue
            cands = list(target[:, t]) + list(negatives)
            pos = scores[b, t, b]
            if kind in ("bpr-max", "top1-max"):
                r = np.array([scores[b, t, j] for j, item in enumerate(cands)
                              if item > 0 and item != target[b, t]], np.float64)
                total += max_loss(kind, pos, r, score_reg) if len(r) else 0.0
                count += 1
                continue
            terms = []
            for j, item in enumerate(cands):
                if item <= 0 or item == target[b, t]:
                    continue
                r = scores[b, t, j]
                if kind == "top1":
                    terms.append(sigmoid(r - pos) + sigmoid(r**2))
                elif kind == "bpr":
                    terms.append(-np.log(sigmoid(pos - r)))
                else:
                    terms.append(r)
            if kind == "ce":
                logits = np.array([pos] + terms)
                m = logits.max()
                value = m + np.log(np.exp(logits - m).sum()) - pos
            else:
                value = np.mean(terms) if terms else 0.0
            total += value
            count += 1
    return total / max(count, 1)


def max_loss(kind, pos, r, score_reg):
    """BPR-max / TOP1-max of one step: positive score ``pos``, negatives' scores ``r``."""
    s = np.exp(r - r.max())
    s /= s.sum()
    if kind == "top1-max":
        return float(np.sum(s * (sigmoid(r - pos) + sigmoid(r**2))))
    return float(-np.log(np.sum(s * sigmoid(pos - r)) + 1e-24) + score_reg * np.sum(s * r**2))


def run_user_based(params, steps, cell_call, source, user_vec=None, first_session="init"):
    """Hidden outputs of one user's steps of HRNN with a user-based session cell
    (``hrnn_jax.user_cells``, Donkers et al.) and a GRU user cell, one step at a time.

    At a session start after the user's first: the user GRU takes the last session state (Eq. 3),
    and Eq. 4 sets the session state from its output c. Every step calls the whole cell,
    ``s = cell_call(s, [E_i i, v])``, with v the user's table row ``user_vec`` (``source="table"``)
    or c of the session's start (``source="state"``; c_{u,0} = 0 in the first session).
    """
    item_in = np.asarray(params["item_in"])
    W, b = np.asarray(params["init"]["kernel"]), np.asarray(params["init"]["bias"])
    c = np.zeros(W.shape[0])  # c_{u,0}
    s = np.zeros(W.shape[1]) if first_session == "zero" else np.tanh(b)  # Eq. 4 with c = 0
    ys, prev_session = {}, None
    for n, (item, _, session, row) in enumerate(steps):
        if n and session != prev_session:
            c = gru_call(params["user"], c, s)  # Eq. 3
            s = np.tanh(c @ W + b)  # Eq. 4
        prev_session = session
        v = c if source == "state" else np.asarray(user_vec)
        s = np.asarray(cell_call(s, np.concatenate([item_in[item], v])), np.float64)
        ys[row] = s.copy()
    return ys


def standard_user_gru_step(p, h, i):
    """Donkers et al.'s standard GRU (``cells.StandardUserGRU``): the user-based cell's Eq. 3-5
    with the user term removed, gate by gate; r multiplies h BEFORE the matrix (Eq. 4).
    ``p``: the cell's parameters (``hidden`` [n, 2n], ``candidate`` [n, n], ``item``)."""
    n = h.shape[-1]
    Wh, U = np.asarray(p["hidden"], np.float64), np.asarray(p["candidate"], np.float64)
    Wi, b = np.asarray(p["item"]["kernel"], np.float64), np.asarray(p["item"]["bias"], np.float64)
    u = sigmoid(h @ Wh[:, :n] + i @ Wi[:, :n] + b[:n])  # Eq. 3
    r = sigmoid(h @ Wh[:, n:2 * n] + i @ Wi[:, n:2 * n] + b[n:2 * n])
    k = np.tanh((r * h) @ U + i @ Wi[:, 2 * n:] + b[2 * n:])  # Eq. 4 without T E_v v
    return (1.0 - u) * h + u * k  # Eq. 5


def run_standard_user_gru(params, steps):
    """Hidden outputs of one user's steps of ``UserRNN`` with ``cells.StandardUserGRU`` (no
    dropout): from zeros, ``h = standard_user_gru_step(h, E_i i_t)`` over the whole sequence."""
    item_in = np.asarray(params["item_in"], np.float64)
    h = np.zeros(np.asarray(params["cell"]["candidate"]).shape[0])
    ys = {}
    for item, _, _, row in steps:
        h = standard_user_gru_step(params["cell"], h, item_in[item])
        ys[row] = h.copy()
    return ys
