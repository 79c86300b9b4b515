"""Which scenario of Table 1 (D = 1) or of the appendix-B conjecture (D > 1) the parameters give."""
from __future__ import annotations

import numpy as np

from .system import as_token_matrix, normalize_params

# Eigenvalues with |lambda| <= ZERO_RTOL * max|lambda| count as zero.
ZERO_RTOL = 1e-10


def sym_eigenvalues(mu) -> np.ndarray:
    """Eigenvalues (ascending) of the symmetric part (mu + mu^T) / 2 of a square matrix (Remark 3)."""
    m = np.asarray(mu, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"argument 'mu' must be a square matrix, got shape {m.shape}")
    return np.linalg.eigvalsh(0.5 * (m + m.T))


def count_signs(eigenvalues, zero_rtol: float = ZERO_RTOL) -> tuple[int, int, int]:
    """(positive, negative, zero) counts; |lambda| <= zero_rtol * max|lambda| counts as zero."""
    ev = np.asarray(eigenvalues, dtype=np.float64)
    tol = zero_rtol * float(np.max(np.abs(ev))) if ev.size else 0.0
    return int(np.sum(ev > tol)), int(np.sum(ev < -tol)), int(np.sum(np.abs(ev) <= tol))


def classify(mu, s_delta, x0) -> str:
    """The scenario the parameters imply.

    D = 1 (scalars mu = S_C^T S_B, s_delta = S_Delta; x0 of shape (L,)), Table 1:
      mu < 0                              -> "convergent"      (Theorem 4.1)
      mu > 0 and S_Delta x_l0 < 0 for all -> "slow-divergent"  (Theorem 4.3, Lemma 4.2)
      mu > 0 and S_Delta x_l0 > 0 for one -> "fast-divergent"  (Theorem 4.4)
    Tokens with x_l0 = 0 stay zero and are ignored. S_Delta = 0 makes Delta constant (ln 2) and
    every nonzero token blows up in finite time, so it counts as "fast-divergent".

    A (1, 1) matrix with x0 (L, 1) is D = 1 and gets the same answer.

    D > 1 (mu, s_delta (D, D); x0 (L, D)): the conjecture of Remark 3 / appendix B on the
    eigenvalues of the symmetric part of mu: all negative -> "convergent", at least one positive
    -> "divergent". It is a conjecture of the paper, not a theorem; s_delta and x0 are only checked.
    With a sign-definite symmetric part the first token provably follows it (d|x_1|^2/dt has the
    sign of x_1^T mu x_1) and simulations agree for all tokens. With mixed signs simulations find
    exceptions: tokens can stop on the cone x^T mu x = 0, where the attention vanishes.

    Raises ValueError for bad shapes or values and for the cases the paper leaves open
    (mu = 0, all-zero x0, or, for D > 1, no positive eigenvalue but a zero one).
    """
    p = normalize_params(mu, s_delta, 0.0)
    x = as_token_matrix(x0, p, "x0")
    if not np.any(x != 0):
        raise ValueError("argument 'x0' must have a nonzero token: zero tokens stay zero (no scenario)")
    if p.dim == 1:
        m, s = float(p.mu[0, 0]), float(p.s_delta[0, 0])
        if m == 0:
            raise ValueError("argument 'mu' must be nonzero: with S_C^T S_B = 0 the tokens do not move")
        if m < 0:
            return "convergent"
        if s == 0 or np.any(s * x[:, 0] > 0):
            return "fast-divergent"
        return "slow-divergent"
    positive, _, zero = count_signs(sym_eigenvalues(p.mu))
    if positive > 0:
        return "divergent"
    if zero > 0:
        raise ValueError(
            "argument 'mu': the symmetric part has a zero eigenvalue and no positive one; "
            "the conjecture of appendix B covers only the all-negative and some-positive cases"
        )
    return "convergent"
