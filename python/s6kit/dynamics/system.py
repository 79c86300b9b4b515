"""The continuous-time selective state space system of the paper (eq. 7/8; eq. 9/11 for D = 1).

Tokens x_1, ..., x_L in R^D evolve in the depth direction t as

    dx_dl/dt = sum_{j <= l} P_dlj x_dj                                            (eq. 7)
    P_dlj    = (x_l^T M x_j) Delta_d(x_j) exp(-a_d sum_{k=j+1}^{l} Delta_d(x_k))   (eq. 8)
    Delta_d(u) = softplus(S_Delta,d . u)                                          (eq. 3)

with M = S_C^T S_B (the input-output matrix, called ``mu``), S_Delta (D, D) whose row d is
S_Delta,d, and A_d = -a_d I.

Sign of ``a``: eq. 6/8 use exp(-a sum Delta) and the text takes a > 0, as in Mamba where
A = -exp(A_log) makes every a_d positive. We follow the equations: ``a`` must be >= 0 and the factor
exp(-a_d sum Delta) is a decay in [0, 1]. Some figure captions of the paper list a negative value
(fig. 1: a = -1.08, fig. 2: a = -1.80); we read those as the diagonal entry of A = -a I (appendix B
writes "A = -0.370332 I_2" the same way) and use a = |value| (see ``figures.py``).

Everything here works on numpy float64 arrays. The D = 1 system is the general one with D = 1;
:func:`normalize_params` turns scalars into (1, 1) matrices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softplus(z: np.ndarray) -> np.ndarray:
    """ln(1 + e^z) without overflow for large z or loss of precision for very negative z."""
    return np.logaddexp(0.0, z)


@dataclass(frozen=True)
class Params:
    """Parameters of eq. 7/8 in matrix form: mu (D, D), s_delta (D, D), a (D,)."""

    mu: np.ndarray
    s_delta: np.ndarray
    a: np.ndarray
    scalar: bool  # True when given in the D = 1 form of eq. 9/11 (scalars, x of shape (L,))

    @property
    def dim(self) -> int:
        return self.mu.shape[0]


def _finite_array(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"argument '{name}' must be a real number or array, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"argument '{name}' must be finite, got {value!r}")
    return arr


def normalize_params(mu, s_delta, a) -> Params:
    """Check and convert (mu, s_delta, a) to matrix form; ValueError names the bad argument.

    D = 1 (eq. 9/11): mu, s_delta, a scalars. D > 1 (eq. 7/8): mu (D, D), s_delta (D, D),
    a (D,) or a scalar used for every channel.
    """
    mu_arr = _finite_array(mu, "mu")
    sd_arr = _finite_array(s_delta, "s_delta")
    a_arr = _finite_array(a, "a")
    if mu_arr.ndim == 0:
        if sd_arr.ndim != 0:
            raise ValueError(
                f"argument 's_delta' must be a scalar when 'mu' is a scalar (D = 1), got shape {sd_arr.shape}"
            )
        if a_arr.ndim != 0:
            raise ValueError(f"argument 'a' must be a scalar when 'mu' is a scalar (D = 1), got shape {a_arr.shape}")
        mu_arr, sd_arr, a_arr = mu_arr.reshape(1, 1), sd_arr.reshape(1, 1), a_arr.reshape(1)
        scalar = True
    else:
        if mu_arr.ndim != 2 or mu_arr.shape[0] != mu_arr.shape[1] or mu_arr.shape[0] == 0:
            raise ValueError(f"argument 'mu' must be a scalar or a square (D, D) matrix, got shape {mu_arr.shape}")
        dim = mu_arr.shape[0]
        if sd_arr.shape != (dim, dim):
            raise ValueError(f"argument 's_delta' must have shape ({dim}, {dim}) like 'mu', got {sd_arr.shape}")
        if a_arr.ndim == 0:
            a_arr = np.full(dim, float(a_arr))
        if a_arr.shape != (dim,):
            raise ValueError(f"argument 'a' must be a scalar or have shape ({dim},), got {a_arr.shape}")
        scalar = False
    if np.any(a_arr < 0):
        raise ValueError(
            "argument 'a' must be >= 0 (A_d = -a_d I, so exp(-a_d sum Delta) of eq. 8 is a decay); "
            f"got {a!r}. Figure captions of the paper that list a < 0 give the diagonal of A: pass abs(a)"
        )
    return Params(mu_arr, sd_arr, a_arr, scalar)


def as_token_matrix(x, params: Params, name: str = "x") -> np.ndarray:
    """Tokens as an (L, D) float64 array; (L,) is accepted for the D = 1 form."""
    arr = _finite_array(x, name)
    if params.scalar:
        if arr.ndim != 1 or arr.shape[0] == 0:
            raise ValueError(f"argument '{name}' must have shape (L,) with L >= 1 for D = 1, got {arr.shape}")
        return arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != params.dim or arr.shape[0] == 0:
        raise ValueError(
            f"argument '{name}' must have shape (L, {params.dim}) with L >= 1 (D = {params.dim}), got {arr.shape}"
        )
    return arr


def attention(x: np.ndarray, p: Params) -> np.ndarray:
    """Hidden attention tensor P (D, L, L) of eq. 8 for tokens x (L, D), lower-triangular in (l, j).

    The O(L^2) double sum is vectorised: with the cumulative sums S_ld = sum_{k<=l} Delta_d(x_k),
    sum_{k=j+1}^{l} Delta_d(x_k) = S_ld - S_jd, and the exponent -a_d (S_ld - S_jd) <= 0 for l >= j
    (Delta >= 0, a >= 0), so exp never overflows. Entries with l < j are exactly zero.
    """
    num_tokens = x.shape[0]
    delta = softplus(x @ p.s_delta.T)  # (L, D): delta[l, d] = softplus(S_Delta,d . x_l)
    cum = np.cumsum(delta, axis=0)  # (L, D)
    gap = cum.T[:, :, None] - cum.T[:, None, :]  # (D, L, L): S_ld - S_jd
    # cancellation in S_l - S_j can leave tiny negative values; the exact sum is >= 0
    gap = np.maximum(gap, 0.0)
    lower = np.tril(np.ones((num_tokens, num_tokens), dtype=bool))
    decay = np.where(lower, np.exp(-p.a[:, None, None] * gap), 0.0)
    quad = x @ p.mu @ x.T  # (L, L): x_l^T M x_j
    return quad[None, :, :] * delta.T[:, None, :] * decay


def velocity(x: np.ndarray, p: Params) -> np.ndarray:
    """Right-hand side of eq. 7 for tokens x (L, D): dx_dl/dt = sum_j P_dlj x_dj, shape (L, D)."""
    return np.einsum("dlj,jd->ld", attention(x, p), x)


def hidden_attention(x, mu, s_delta, a) -> np.ndarray:
    """The hidden attention matrix P of eq. 8 (eq. 11 for D = 1) at the state ``x``.

    D = 1: ``x`` (L,), scalars ``mu``, ``s_delta``, ``a``; returns (L, L), lower-triangular.
    D > 1: ``x`` (L, D), ``mu`` = S_C^T S_B (D, D), ``s_delta`` (D, D), ``a`` (D,); returns (D, L, L).
    """
    p = normalize_params(mu, s_delta, a)
    P = attention(as_token_matrix(x, p), p)
    return P[0] if p.scalar else P
