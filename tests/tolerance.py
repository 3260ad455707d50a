"""Tolerances per backend, for the comparisons that are approximate by design.

Two float32 computations of the same maths in a different order (a scan against a NumPy loop, B
lanes against 3, a vmapped batch against one seed) agree to a few units of float32 roundoff when
the matrix products run in full float32: always on CPU, and on an accelerator at matmul precision
"highest". At the default precision an accelerator multiplies in TF32 or bf16 (see
``hrnn_jax.precision``), so such comparisons get a looser bound there. Promises of exactness (lane
copies, the same seed twice, rows the optimiser does not touch) are asserted exactly everywhere and
never use these.
"""
from __future__ import annotations

import jax

from hrnn_jax import precision


def reduced_precision() -> bool:
    """True where float32 matrix products may run in TF32/bf16 (an accelerator, not "highest")."""
    return jax.default_backend() != "cpu" and precision.current_matmul_precision() != "highest"


def approx(rtol: float = 1e-5, atol: float = 1e-6) -> dict:
    """``assert_allclose`` keywords: as given in full float32, TF32-sized (about 2^-10 per
    product, grown over a scan) at reduced precision."""
    if reduced_precision():
        return dict(rtol=max(rtol, 3e-2), atol=max(atol, 3e-3))
    return dict(rtol=rtol, atol=atol)


def max_rank_changes(n: int) -> int:
    """How many of ``n`` ranks may move when scores are approximate: none in full float32; at
    reduced precision near-ties can swap, so 2% of them."""
    return int(0.02 * n) if reduced_precision() else 0
